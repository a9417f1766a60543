"""export → validate → (compress) → (TensorRT) → publish, generic over a ModelSpec and a BuildJob
(what is model-specific, as data and callables); and the ranker's job. The CLI only parses
arguments and calls these."""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from build_scripts import compress, golden, trt_stage
from build_scripts.export import export_onnx
from build_scripts.metrics import auc, log_loss
from build_scripts.publish import Published, publish
from build_scripts.specs import RANKER, ExportSpec, ModelSpec, Tolerance
from build_scripts.train_ranker import TrainConfig, TrainedRanker, encode, train_ranker
from build_scripts.serving_config import model_config
from sentinel.triton_config import to_pbtxt
from build_scripts.validate import ParityError, check_parity
from python_backend.faults import FAULT_KINDS, Fault
from python_backend.ranker_features import encode_requests, parse_request
from python_backend.runners import OrtRunner, RunnerOptions

ROOT = Path(__file__).resolve().parents[1]
ADAPTERS = ROOT / "model_repository"
Progress = Callable[[str], None]
Predict = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]
Inputs = Mapping[str, np.ndarray]
# Parity and offline metrics run with every core; latency is timed as served (one thread).
BUILD_RUNNER = RunnerOptions(intra_op_threads=os.cpu_count() or 1)

# What each --fault does, in the words the docs and `sentinel build --help` use.
FAULT_PRESETS: dict[str, dict] = {
    "errors": {"kind": "errors", "fraction": 0.3},
    "latency": {"kind": "latency", "latency_ms": 1.0, "latency_factor": 1.0},
    "nan": {"kind": "nan", "fraction": 1.0},
    "constant": {"kind": "constant"},
    "shift": {"kind": "shift", "shift": 1.5},
    "crash": {"kind": "crash", "after_requests": 50},
    "load_failure": {"kind": "load_failure"},
}
assert set(FAULT_PRESETS) == set(FAULT_KINDS)


class BuildError(RuntimeError):
    pass


class VariantRejected(BuildError):
    """A reduced-precision variant lost more accuracy than its budget; nothing was published."""

    def __init__(self, report: compress.VariantReport):
        self.report = report
        super().__init__(f"{report.precision} variant ({report.method}) changes {report.metric} by "
                         f"{report.delta:+.4f} ({report.fp32:.4f} → {report.value:.4f}); the budget "
                         f"is -{report.budget}; not published")


@dataclass(frozen=True)
class BuildJob:
    """Everything model-specific the generic pipeline needs. Callables receive a `Predict` of the
    artefact being judged or published, so the same code measures FP32 and its variants."""
    spec: ModelSpec
    manifest: Mapping[str, Any]                        # source, metrics, fault, ...
    golden: Callable[[Predict | None, Mapping[str, Path]], list[dict]]
    model: torch.nn.Module | None = None
    reference: Predict | None = None                   # torch, for parity
    cases: Mapping[str, Inputs] = field(default_factory=dict)  # parity inputs; first = export sample
    evaluate: Callable[[Predict], Mapping[str, float]] | None = None  # offline metrics of an artefact
    extra_parity: Callable[[Predict], Mapping[str, float]] | None = None
    files: Mapping[str, Path] = field(default_factory=dict)    # version files besides the model
    derived_files: Callable[[Predict | None, Path], Mapping[str, Path]] | None = None
    calibration: Sequence[Inputs] = ()                 # static INT8 calibration inputs
    bench_inputs: Inputs | None = None                 # one request-sized input for latency


@dataclass(frozen=True)
class PredictRunner:
    """A bare Predict behind the Runner protocol, so a service can run any artefact under test."""
    run: Predict
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    name: str = "predict"

    @classmethod
    def of(cls, predict: Predict, export: ExportSpec) -> "PredictRunner":
        return cls(predict, tuple(t.name for t in export.inputs),
                   tuple(t.name for t in export.outputs))


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def source(spec: ModelSpec, **extra) -> dict:
    return {"spec": spec.name, "git_commit": _git_commit(), **extra}


def _relaxed(spec: ModelSpec):
    """The export spec with no elementwise tolerance: a variant is judged by its accuracy budget,
    but NaN/Inf and shape changes still fail it."""
    inf = Tolerance(atol=float("inf"), rtol=0.0)
    return dataclasses.replace(spec.export, tolerance={o.name: inf for o in spec.export.outputs})


def _variant(job: BuildJob, fp32: Path, fp32_runner: OrtRunner, precision: str, work: Path,
             progress: Progress) -> tuple[Path, OrtRunner, dict, dict]:
    spec, comp = job.spec, job.spec.compression
    if comp is None or job.evaluate is None or job.bench_inputs is None:
        raise BuildError(f"{spec.name} has no compression spec / evaluation; it builds fp32 only")
    progress(f"making the {precision} variant ({compress.method(precision, comp)})")
    path = compress.make_variant(fp32, work / f"model.{precision}.onnx", precision, comp,
                                 job.calibration)
    runner = OrtRunner(path, BUILD_RUNNER)
    try:
        parity = check_parity(_relaxed(spec), job.reference, runner.run, job.cases)
    except ParityError as exc:
        raise BuildError(f"{precision} variant of {spec.name} is broken: {exc}") from exc
    progress(f"measuring {comp.metric} of fp32 and {precision}, and their latency side by side")
    base, metrics = job.evaluate(fp32_runner.run), job.evaluate(runner.run)
    latency = compress.side_by_side({"fp32": OrtRunner(fp32).run, precision: OrtRunner(path).run},
                                    job.bench_inputs)
    report = compress.judge(precision, comp, base, metrics, latency, path.stat().st_size,
                            fp32.stat().st_size)
    progress(f"{precision}: {comp.metric} {report.value:.4f} (fp32 {report.fp32:.4f}, Δ "
             f"{report.delta:+.4f}, budget -{report.budget}); {report.ms:.3f} ms vs "
             f"{report.fp32_ms:.3f} ms fp32 (speed-up ×{report.speedup:.2f})")
    if not report.accepted:
        raise VariantRejected(report)
    record = {**report.as_dict(), "fp32_metrics": dict(base),
              "latency": {k: asdict(v) for k, v in latency.items()}}
    return path, runner, record, parity.as_dict()


def _engine(job: BuildJob, precision: str, fp32: Path, artefact: Path, work: Path) -> trt_stage.EngineOutcome:
    """FP32/FP16 engines are built from the FP32 graph (TensorRT lowers precision itself); INT8
    needs Q/DQ scales, i.e. the static variant."""
    spec = job.spec

    def build(onnx_path, export, prec, plan_path):
        src = onnx_path
        if prec == "int8" and spec.compression and spec.compression.int8_method != "static":
            static = dataclasses.replace(spec.compression, int8_method="static")
            src = compress.make_variant(fp32, work / "model.qdq.onnx", "int8", static, job.calibration)
        return trt_stage.build_engine(src, export, prec, plan_path)

    source_graph = artefact if precision == "int8" else fp32  # build() swaps in a QDQ graph
    return trt_stage.engine_stage(spec.export, source_graph, precision, work / "model.plan",
                                  build=build)


def _engine_parity(job: BuildJob, precision: str, plan: Path) -> dict:
    """The engine against torch on the same cases: FP32 within the spec's tolerance, FP16/INT8
    free of NaN/Inf and shape changes (their accuracy is the variant's, judged on CPU)."""
    from python_backend.trt_runner import TrtRunner
    engine = TrtRunner(plan)
    try:
        spec = job.spec.export if precision == "fp32" else _relaxed(job.spec)
        return check_parity(spec, job.reference, engine.run, job.cases).as_dict()
    finally:
        engine.close()


def _served_options(spec: ModelSpec) -> RunnerOptions:
    return RunnerOptions(intra_op_threads=int(spec.serving.parameters.get("ORT_INTRA_OP_THREADS", "1")))


def run_pipeline(job: BuildJob, repository: Path, precision: str = "fp32",
                 progress: Progress = lambda _: None) -> Published:
    spec = job.spec
    if precision not in compress.PRECISIONS:
        raise BuildError(f"unknown precision {precision!r}; choose one of {compress.PRECISIONS}")
    if precision != "fp32" and spec.export is None:
        raise BuildError(f"{spec.name} has no model of its own to compress; build it fp32")
    with tempfile.TemporaryDirectory(prefix="sentinel-build-") as tmp:
        work = Path(tmp)
        files = dict(job.files)
        manifest = dict(job.manifest)
        runtime: dict[str, Any] = {"engine": "onnxruntime" if spec.export else "python",
                                   "precision": precision}
        predict: Predict | None = None
        if spec.export is not None:
            axes = sorted({a for t in spec.export.inputs for a in t.dynamic_axes().values()})
            progress(f"exporting to ONNX (dynamic axes: {', '.join(axes)})")
            sample = next(iter(job.cases.values()))
            fp32 = export_onnx(job.model, spec.export, sample, work / "model.fp32.onnx")
            runner = OrtRunner(fp32, BUILD_RUNNER)
            progress(f"validating ONNX Runtime against torch on {len(job.cases)} input sets")
            manifest["parity"] = check_parity(spec.export, job.reference, runner.run,
                                              job.cases).as_dict()
            if job.extra_parity is not None:
                manifest["parity"].update(job.extra_parity(runner.run))
            artefact = fp32
            if precision != "fp32":
                artefact, runner, manifest["compression"], variant_parity = _variant(
                    job, fp32, runner, precision, work, progress)
                manifest["parity"]["variant_vs_torch"] = variant_parity
            outcome = _engine(job, precision, fp32, artefact, work)
            progress(outcome.reason)
            runtime["tensorrt"] = outcome.as_dict()
            if outcome.plan is not None:
                manifest["parity"]["tensorrt"] = _engine_parity(job, precision, outcome.plan)
                files["model.plan"] = outcome.plan
                config_path = work / "tensorrt_plan.pbtxt"  # for serving the engine directly
                config_path.write_text(to_pbtxt(trt_stage.tensorrt_plan_config(spec.name, spec.export)))
                files["tensorrt_plan.pbtxt"] = config_path
            files["model.onnx"] = artefact
            predict = runner.run
            if job.evaluate is not None:  # metrics of the artefact that is published
                manifest["metrics"] = {**manifest.get("metrics", {}), **job.evaluate(predict)}
        if job.derived_files is not None:
            files.update(job.derived_files(predict, work))
        if spec.export is not None:  # expected outputs from the runner exactly as it is served
            predict = OrtRunner(files["model.onnx"], _served_options(spec)).run
        manifest["golden"] = job.golden(predict, files)
        manifest["created"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        manifest["runtime"] = runtime
        published = publish(Path(repository), model_config(spec.name, spec.serving), files,
                            manifest, adapter=ADAPTERS / spec.name / "model.py")
    progress(f"published {published.model} version {published.version} at {published.path}")
    return published


# --- the ranker's job -------------------------------------------------------------------------

def _torch_predict(model: torch.nn.Module):
    def predict(inputs):
        with torch.no_grad():
            out = model(torch.from_numpy(inputs["cat"]), torch.from_numpy(inputs["dense"]))
        return {"score": out.numpy()}
    return predict


def _parity_cases(trained: TrainedRanker, seed: int) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    cat, dense, _ = encode(trained.tables, trained.split.test)
    cases = {}
    for i in range(4):  # real rows of the test period, in request-sized chunks
        idx = rng.choice(len(cat), size=256, replace=False)
        cases[f"real[{i}]"] = {"cat": cat[idx], "dense": dense[idx]}
    card = trained.tables.cardinalities()
    for i, n in enumerate((1, 7, 1000)):  # random rows in range, incl. batch 1 and the max
        rcat = np.stack([rng.integers(0, c, size=n) for c in card], axis=1).astype(np.int64)
        rdense = rng.random((n, dense.shape[1]), dtype=np.float32)
        cases[f"random[{i}]"] = {"cat": rcat, "dense": rdense}
    return cases


def _golden_set(trained: TrainedRanker, predict: Predict, count: int) -> list[dict]:
    reqs = golden.ranking_requests(trained.split.test, trained.tables.n_items, count)
    out = []
    for r in reqs:
        parsed = parse_request(trained.tables, np.array([r["user_id"]]), np.array(r["item_ids"]),
                               np.array([r["timestamp"]]), now=0)
        cat, dense = encode_requests(trained.tables, [parsed])
        scores = predict({"cat": cat, "dense": dense})["score"]
        out.append({"inputs": r, "expected": {"scores": [float(s) for s in scores]}})
    return out


def _ranker_evaluate(trained: TrainedRanker) -> Callable[[Predict], dict[str, float]]:
    cat, dense, y = encode(trained.tables, trained.split.test)

    def evaluate(predict: Predict) -> dict[str, float]:
        p = np.asarray(predict({"cat": cat, "dense": dense})["score"], np.float64).reshape(-1)
        return {"auc": auc(y, p), "log_loss": log_loss(y, p)}
    return evaluate


def ranker_job(trained: TrainedRanker, workdir: Path, cfg: TrainConfig = TrainConfig(),
               spec: ModelSpec = RANKER, fault: str | None = None) -> BuildJob:
    """The ranker as a BuildJob; its feature tables are written to `workdir`."""
    cases = _parity_cases(trained, cfg.seed)
    trained.tables.save(workdir / "features.npz")
    cat, dense, _ = encode(trained.tables, trained.split.train)
    calibration = [{"cat": cat[i:i + 256], "dense": dense[i:i + 256]}
                   for i in range(0, 256 * 16, 256)]
    manifest = {
        "source": source(spec, train=asdict(cfg),
                         data="MovieLens-100k (recbole package), per-user time split 80/10/10"),
        "metrics": asdict(trained.metrics),
        "fault": FAULT_PRESETS[fault] if fault else None,
    }
    job = BuildJob(spec=spec, manifest=manifest, model=trained.model,
                   reference=_torch_predict(trained.model), cases=cases,
                   evaluate=_ranker_evaluate(trained),
                   golden=lambda predict, _files: _golden_set(trained, predict,
                                                              spec.golden_requests),
                   files={"features.npz": workdir / "features.npz"}, calibration=calibration,
                   bench_inputs=cases["real[0]"])
    return job


def build_ranker(repository: Path, fault: str | None = None, cfg: TrainConfig = TrainConfig(),
                 progress: Progress = lambda _: None, spec: ModelSpec = RANKER,
                 trained: TrainedRanker | None = None, precision: str = "fp32") -> Published:
    """Train (or reuse `trained`), export, validate, optionally compress, and publish one new
    ranker version."""
    if fault is not None and fault not in FAULT_PRESETS:
        raise BuildError(f"unknown fault {fault!r}; choose one of {sorted(FAULT_PRESETS)}")
    if fault:
        Fault.from_manifest(FAULT_PRESETS[fault])  # fail the build, not the server, on a typo
    if trained is None:
        progress("training the DCN-v2 ranker on MovieLens-100k")
        trained = train_ranker(cfg, progress)
    m = trained.metrics
    progress(f"test AUC {m.auc:.4f} (popularity {m.baseline_auc:.4f}), "
             f"log-loss {m.log_loss:.4f} (popularity {m.baseline_log_loss:.4f})")
    if m.auc <= m.baseline_auc:
        raise BuildError(f"ranker AUC {m.auc:.4f} does not beat the popularity baseline "
                         f"{m.baseline_auc:.4f}; refusing to publish")
    with tempfile.TemporaryDirectory(prefix="sentinel-ranker-") as tmp:
        return run_pipeline(ranker_job(trained, Path(tmp), cfg, spec, fault), repository,
                            precision, progress)
