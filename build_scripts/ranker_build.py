"""The ranker's BuildJob: DCN-v2 trained on MovieLens-100k, its parity cases, offline metrics (AUC,
log-loss) and golden set, and the faults a version can be built with on purpose."""
from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from build_scripts import golden
from build_scripts.metrics import auc, log_loss
from build_scripts.pipeline import BuildError, BuildJob, Predict, Progress, run_pipeline, source
from build_scripts.publish import Published
from build_scripts.specs import RANKER, ModelSpec
from build_scripts.train_ranker import TrainConfig, TrainedRanker, encode, train_ranker
from python_backend.faults import FAULT_KINDS, SELF_CONSISTENT, Fault, FaultInjector
from python_backend.ranker_features import encode_requests, parse_request

# What each --fault does, in the words the docs and `sentinel build --help` use.
FAULT_PRESETS: dict[str, dict] = {
    "errors": {"kind": "errors", "fraction": 0.3},
    "latency": {"kind": "latency", "latency_ms": 1.0, "latency_factor": 1.0},
    "nan": {"kind": "nan", "fraction": 1.0},
    "constant": {"kind": "constant"},
    "shift": {"kind": "shift", "shift": 1.5},
    "crash": {"kind": "crash", "after_requests": 50},
    "load_failure": {"kind": "load_failure"},
    # 64 KiB kept per request, bounded at 1.5 GiB: ~6 MiB/s at 100 requests/s, a projected
    # exhaustion in about an hour on a 24 GiB host, caught in about a minute.
    "leak": {"kind": "leak", "leak_kib": 64, "leak_max_mib": 1536},
    # 3 ms of busy CPU per request plus twice the compute: several times the known-good CPU.
    "cpu": {"kind": "cpu", "cpu_ms": 3.0, "cpu_factor": 2.0},
    # Healthy long enough to become known good (~90 s with the shipped policy), then 2 minutes
    # later about 3x slower: a late regression (a cache that stops fitting, a slow path after N).
    "slow_after": {"kind": "slow_after", "after_s": 215, "latency_ms": 4.0,
                   "latency_factor": 2.0},
    # A worse model that is healthy in every system metric (issue 13): see faults.SELF_CONSISTENT.
    "reversed": {"kind": "reversed"},
}
assert set(FAULT_PRESETS) == set(FAULT_KINDS)


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


def _golden_set(trained: TrainedRanker, predict: Predict, count: int,
                fault: Fault | None = None) -> list[dict]:
    """Expected scores per golden request. A self-consistent fault (a worse model, not a broken
    one) is applied here as it is when served, so the version answers its own probes."""
    reqs = golden.ranking_requests(trained.split.test, trained.tables.n_items, count)
    through = FaultInjector(fault) if fault is not None and fault.kind in SELF_CONSISTENT else None
    out = []
    for r in reqs:
        parsed = parse_request(trained.tables, np.array([r["user_id"]]), np.array(r["item_ids"]),
                               np.array([r["timestamp"]]), now=0)
        cat, dense = encode_requests(trained.tables, [parsed])
        scores = predict({"cat": cat, "dense": dense})["score"]
        if through is not None:
            scores = through.scores(np.asarray(scores, np.float32).reshape(-1))
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
                   golden=lambda predict, _files: _golden_set(
                       trained, predict, spec.golden_requests,
                       Fault.from_manifest(FAULT_PRESETS[fault]) if fault else None),
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
