"""export → validate → (compress) → (TensorRT) → publish, generic over a ModelSpec and a BuildJob
(what is model-specific, as data and callables). Each model's job is in its own module
(ranker_build, seqrec_build, search_build, recommend_build); the CLI only parses arguments and
calls them."""
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

from build_scripts import compress, trt_stage
from build_scripts.export import export_onnx
from build_scripts.publish import Published, publish
from build_scripts.specs import ExportSpec, ModelSpec, Tolerance
from build_scripts.serving_config import model_config
from build_scripts.validate import ParityError, check_parity
from python_backend.runners import OrtRunner, RunnerOptions
from sentinel.triton_config import to_pbtxt

ROOT = Path(__file__).resolve().parents[1]
ADAPTERS = ROOT / "model_repository"
Progress = Callable[[str], None]
Predict = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]
Inputs = Mapping[str, np.ndarray]
# Parity and offline metrics run with every core; latency is timed as served (one thread).
BUILD_RUNNER = RunnerOptions(intra_op_threads=os.cpu_count() or 1)

class BuildError(RuntimeError):
    pass


class VariantRejected(BuildError):
    """A reduced-precision or compressed variant lost more accuracy than its budget; nothing was
    published."""

    def __init__(self, report: compress.VariantReport):
        self.report = report
        super().__init__(f"{report.variant or report.precision} variant ({report.method}) changes "
                         f"{report.metric} by "
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
    # smaller models made from `model` (compress.COMPRESSIONS): judged and published like variants
    compressors: Mapping[str, Callable[[Progress], compress.Compressed]] = field(default_factory=dict)


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


def torch_predict(model: torch.nn.Module, export: ExportSpec) -> Predict:
    """A torch module whose forward() takes the export spec's inputs in order, as a Predict."""
    def predict(inputs: Inputs) -> dict[str, np.ndarray]:
        with torch.no_grad():
            out = model(*(torch.from_numpy(np.ascontiguousarray(inputs[t.name])) for t in export.inputs))
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return {t.name: o.numpy() for t, o in zip(export.outputs, outs)}
    return predict


@dataclass(frozen=True)
class _Student:
    """A compressed model, exported and checked against its own torch forward."""
    name: str
    made: compress.Compressed
    onnx: Path
    reference: Predict
    parity: dict


def _student(job: BuildJob, name: str, work: Path, progress: Progress) -> _Student:
    spec = job.spec
    progress(f"making the {name} model from the fp32 one")
    made = job.compressors[name](progress)
    path = export_onnx(made.model, spec.export, next(iter(job.cases.values())),
                       work / f"model.{name}.onnx")
    reference = torch_predict(made.model, spec.export)
    try:  # the export of the smaller model is held to the spec's tolerance against its own torch
        parity = check_parity(spec.export, reference, OrtRunner(path, BUILD_RUNNER).run, job.cases)
    except ParityError as exc:
        raise BuildError(f"the {name} model's ONNX export differs from its torch model: {exc}") from exc
    progress(f"{name}: {made.method}, exported and checked against its torch model")
    return _Student(name, made, path, reference, parity.as_dict())


def _variant(job: BuildJob, fp32: Path, fp32_runner: OrtRunner, precision: str, work: Path,
             progress: Progress, student: _Student | None = None
             ) -> tuple[Path, OrtRunner, dict, dict]:
    """The variant made of `precision` applied to the FP32 model, or to the student's export,
    judged against the FP32 original."""
    spec, comp = job.spec, job.spec.compression
    if comp is None or job.evaluate is None or job.bench_inputs is None:
        raise BuildError(f"{spec.name} has no compression spec / evaluation; it builds fp32 only")
    name = compress.variant_name(precision, student and student.name)
    src = student.onnx if student else fp32
    progress(f"making the {name} variant ({compress.method(precision, comp)} of "
             f"{student.made.method if student else 'the fp32 model'})")
    path = compress.make_variant(src, work / f"model.{name}.onnx", precision, comp, job.calibration)
    runner = OrtRunner(path, BUILD_RUNNER)
    try:
        parity = check_parity(_relaxed(spec), job.reference, runner.run, job.cases)
    except ParityError as exc:
        raise BuildError(f"{name} variant of {spec.name} is broken: {exc}") from exc
    progress(f"measuring {comp.metric} of fp32 and {name}, and their latency side by side")
    base, metrics = job.evaluate(fp32_runner.run), job.evaluate(runner.run)
    latency = compress.side_by_side({"fp32": OrtRunner(fp32).run, name: OrtRunner(path).run},
                                    job.bench_inputs)
    report = compress.judge(precision, comp, base, metrics, latency, path.stat().st_size,
                            fp32.stat().st_size, compression=student and student.name,
                            structure=student and student.made.method)
    progress(f"{name}: {comp.metric} {report.value:.4f} (fp32 {report.fp32:.4f}, Δ "
             f"{report.delta:+.4f}, budget -{report.budget}); {report.ms:.3f} ms vs "
             f"{report.fp32_ms:.3f} ms fp32 (speed-up ×{report.speedup:.2f})"
             + "".join(f"; {k} Δ {w['delta']:+.4f}" for k, w in report.watched.items()))
    if not report.accepted:
        raise VariantRejected(report)
    record = {**report.as_dict(), "fp32_metrics": dict(base),
              "latency": {k: asdict(v) for k, v in latency.items()}}
    if student is not None:
        record["model"] = {"method": student.made.method, **student.made.details}
    return path, runner, record, parity.as_dict()


def _engine(job: BuildJob, precision: str, fp32: Path, artefact: Path, work: Path) -> trt_stage.EngineOutcome:
    """FP32/FP16 engines are built from the FP32 graph (TensorRT lowers precision itself); INT8
    needs Q/DQ scales, i.e. the static variant. `fp32` is the published model's FP32 graph (a
    student's, for a compressed variant)."""
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


def _engine_parity(job: BuildJob, precision: str, plan: Path, reference: Predict) -> dict:
    """The engine against torch on the same cases: FP32 within the spec's tolerance, FP16/INT8
    free of NaN/Inf and shape changes (their accuracy is the variant's, judged on CPU)."""
    from python_backend.trt_runner import TrtRunner
    engine = TrtRunner(plan)
    try:
        spec = job.spec.export if precision == "fp32" else _relaxed(job.spec)
        return check_parity(spec, reference, engine.run, job.cases).as_dict()
    finally:
        engine.close()


def _served_options(spec: ModelSpec) -> RunnerOptions:
    return RunnerOptions(intra_op_threads=int(spec.serving.parameters.get("ORT_INTRA_OP_THREADS", "1")))


def run_pipeline(job: BuildJob, repository: Path, precision: str = "fp32",
                 progress: Progress = lambda _: None, compression: str | None = None) -> Published:
    """`compression` ("pruned", "distilled", see job.compressors) publishes a smaller model made
    from the FP32 one, with `precision` on top, only if the pair stays within its budget."""
    spec = job.spec
    if precision not in compress.PRECISIONS:
        raise BuildError(f"unknown precision {precision!r}; choose one of {compress.PRECISIONS}")
    if (precision != "fp32" or compression is not None) and spec.export is None:
        raise BuildError(f"{spec.name} has no model of its own to compress; build it fp32")
    if compression is not None and compression not in job.compressors:
        raise BuildError(f"{spec.name} has no {compression!r} variant"
                         + (f"; it has {', '.join(job.compressors)}" if job.compressors else ""))
    variant = compress.variant_name(precision, compression)
    if variant != "fp32" and spec.compression is not None and variant not in spec.compression.budget:
        raise BuildError(f"{spec.name} has no accuracy budget for {variant} (its spec has "
                         f"{', '.join(sorted(spec.compression.budget))}); nothing to judge it by")
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
            artefact, base, reference = fp32, fp32, job.reference
            student = None
            if compression is not None:
                student = _student(job, compression, work, progress)
                manifest["parity"]["student_vs_torch"] = student.parity
                base, reference = student.onnx, student.reference
                runtime["compression"] = compression
            if precision != "fp32" or student is not None:
                artefact, runner, manifest["compression"], variant_parity = _variant(
                    job, fp32, runner, precision, work, progress, student)
                manifest["parity"]["variant_vs_torch"] = variant_parity
            outcome = _engine(job, precision, base, artefact, work)
            progress(outcome.reason)
            runtime["tensorrt"] = outcome.as_dict()
            if outcome.plan is not None:
                manifest["parity"]["tensorrt"] = _engine_parity(job, precision, outcome.plan,
                                                                reference)
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
