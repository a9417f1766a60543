"""export → validate → publish for the ranker. The CLI calls this; it only parses arguments."""
from __future__ import annotations

import datetime as dt
import subprocess
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from build_scripts import golden
from build_scripts.export import export_onnx
from build_scripts.publish import Published, publish
from build_scripts.specs import RANKER, ModelSpec
from build_scripts.train_ranker import TrainConfig, TrainedRanker, encode, train_ranker
from build_scripts.triton_config import model_config
from build_scripts.validate import check_parity
from python_backend.faults import FAULT_KINDS, Fault
from python_backend.ranker_features import encode_requests, parse_request
from python_backend.runners import OrtRunner

ROOT = Path(__file__).resolve().parents[1]
ADAPTERS = ROOT / "model_repository"
Progress = Callable[[str], None]

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


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


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


def _golden_set(trained: TrainedRanker, runner: OrtRunner, count: int) -> list[dict]:
    reqs = golden.ranking_requests(trained.split.test, trained.tables.n_items, count)
    out = []
    for r in reqs:
        parsed = parse_request(trained.tables, np.array([r["user_id"]]), np.array(r["item_ids"]),
                               np.array([r["timestamp"]]), now=0)
        cat, dense = encode_requests(trained.tables, [parsed])
        scores = runner.run({"cat": cat, "dense": dense})["score"]
        out.append({"inputs": r, "expected": {"scores": [float(s) for s in scores]}})
    return out


def build_ranker(repository: Path, fault: str | None = None, cfg: TrainConfig = TrainConfig(),
                 progress: Progress = lambda _: None, spec: ModelSpec = RANKER,
                 trained: TrainedRanker | None = None) -> Published:
    """Train (or reuse `trained`), export, validate and publish one new ranker version."""
    if fault is not None and fault not in FAULT_PRESETS:
        raise BuildError(f"unknown fault {fault!r}; choose one of {sorted(FAULT_PRESETS)}")
    if trained is None:
        progress("training the DCN-v2 ranker on MovieLens-100k")
        trained = train_ranker(cfg, progress)
    m = trained.metrics
    progress(f"test AUC {m.auc:.4f} (popularity {m.baseline_auc:.4f}), "
             f"log-loss {m.log_loss:.4f} (popularity {m.baseline_log_loss:.4f})")
    if m.auc <= m.baseline_auc:
        raise BuildError(f"ranker AUC {m.auc:.4f} does not beat the popularity baseline "
                         f"{m.baseline_auc:.4f}; refusing to publish")
    with tempfile.TemporaryDirectory(prefix="sentinel-build-") as tmp:
        work = Path(tmp)
        cases = _parity_cases(trained, cfg.seed)
        progress("exporting to ONNX (dynamic row axis)")
        onnx_path = export_onnx(trained.model, spec.export, cases["real[0]"], work / "model.onnx")
        runner = OrtRunner(onnx_path)
        progress(f"validating ONNX Runtime against torch on {len(cases)} input sets")
        parity = check_parity(spec.export, _torch_predict(trained.model), runner.run, cases)
        trained.tables.save(work / "features.npz")
        manifest = {
            "source": {"spec": spec.name, "git_commit": _git_commit(), "train": asdict(cfg),
                       "data": "MovieLens-100k (recbole package), per-user time split 80/10/10"},
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "runtime": {"engine": "onnxruntime", "precision": "fp32"},
            "metrics": asdict(m),
            "parity": parity.as_dict(),
            "golden": _golden_set(trained, runner, spec.golden_requests),
            "fault": FAULT_PRESETS[fault] if fault else None,
        }
        if fault:
            Fault.from_manifest(manifest["fault"])  # fail the build, not the server, on a typo
        published = publish(Path(repository), model_config(spec.name, spec.serving),
                            {"model.onnx": onnx_path, "features.npz": work / "features.npz"},
                            manifest, adapter=ADAPTERS / spec.name / "model.py")
    progress(f"published {published.model} version {published.version} at {published.path}")
    return published
