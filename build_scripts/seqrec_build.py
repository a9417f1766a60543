"""The sequential recommender as a BuildJob for the generic pipeline: parity cases, offline metrics
of any artefact, calibration and benchmark inputs, and a golden set through the serving code."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from build_scripts.pipeline import BuildJob, Predict, PredictRunner, source
from build_scripts.specs import SEQREC, ModelSpec
from build_scripts.train_seqrec import (TrainedSeqrec, evaluate, torch_predict,
                                        training_windows)
from python_backend.seqrec_service import (ARTEFACT, SeqrecService, SeqrecTables,
                                           pad_histories)

GOLDEN_HISTORY = 30  # golden requests send a user's 30 most recent items: a realistic request size


def parity_cases(t: TrainedSeqrec, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    hist = t.sequences.history("test")
    L, n = t.config.max_len, t.sequences.n_items
    users = rng.choice(len(hist), size=32, replace=False)
    cases = {"real[0]": {"history": pad_histories([hist[u] for u in users], L)},
             "real[1]": {"history": pad_histories([hist[users[0]]], L)},
             "short[0]": {"history": pad_histories([hist[u][-3:] for u in users[:8]], L)}}
    lengths = rng.integers(1, L + 1, size=7)
    cases["random[0]"] = {"history": pad_histories(
        [rng.integers(1, n + 1, size=k) for k in lengths], L)}
    # all padding never reaches the model in service (empty histories get popularity), but the
    # graph must still answer finitely
    cases["padding[0]"] = {"history": np.zeros((2, L), np.int64)}
    return cases


def golden_requests(t: TrainedSeqrec, count: int, seed: int = 1) -> list[dict]:
    rng = np.random.default_rng(seed)
    hist = t.sequences.history("test")
    users = rng.choice(len(hist), size=count - 1, replace=False)
    reqs = [{"history": [int(i) for i in hist[u][-GOLDEN_HISTORY:]], "k": 10} for u in users]
    return reqs + [{"history": [], "k": 10}]  # a cold-start user: popularity, nothing to filter


def _golden(t: TrainedSeqrec, spec: ModelSpec):
    def golden(predict: Predict | None, files) -> list[dict]:
        service = SeqrecService(Path(files[ARTEFACT]).parent,
                                runner=PredictRunner.of(predict, spec.export))
        out = []
        for r in golden_requests(t, spec.golden_requests):
            req = service.parse(np.array([r["history"]], np.int64), np.array([[r["k"]]], np.int64))
            items, scores = service.recommend([req])[0]
            out.append({"inputs": r, "expected": {"item_ids": [int(i) for i in items],
                                                  "scores": [float(s) for s in scores]}})
        return out
    return golden


def seqrec_job(t: TrainedSeqrec, workdir: Path, spec: ModelSpec = SEQREC) -> BuildJob:
    L = t.config.max_len
    SeqrecTables(L, t.sequences.n_items, t.popularity).save(workdir / ARTEFACT)
    cases = parity_cases(t)
    windows, _ = training_windows(t.sequences.train, L)
    calibration = [{"history": windows[i:i + 32]} for i in range(0, 32 * 8, 32)]
    manifest = {
        "source": source(spec, train=asdict(t.config),
                         data="MovieLens-100k (recbole package), per-user leave-last-out in time: "
                              "last item test, second-to-last validation"),
        "metrics": asdict(t.metrics),
        "fault": None,
    }
    return BuildJob(spec=spec, manifest=manifest, model=t.model, reference=torch_predict(t.model),
                    cases=cases, evaluate=lambda predict: evaluate(predict, t.sequences, "test", L),
                    golden=_golden(t, spec), files={ARTEFACT: workdir / ARTEFACT},
                    calibration=calibration, bench_inputs=cases["real[1]"])
