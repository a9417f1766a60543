"""A sidecar's state without Triton, for rendering the pages: a poller-shaped object with a store
of synthetic scrapes, decisions, desired states and an event log. Used by tests/unit/test_pages.py;
`python -m tests.unit.page_fleet [PORT]` serves it for looking at the pages in a browser.

The fleet:
- ranker: v1 served and known good; v2 was deployed 6 min ago, raised errors, was rolled back;
  v3 is published but never loaded.
- recommender: v1 was deployed from nothing (its activation says "was None" in the log), healthy;
  5 min ago v2 failed to load, v1's latency rose, it was reloaded: four markers in 20 s.
- empty: a model directory with no version in it: nothing published, nothing to judge.
- broken: v1 published and failed to load; nothing serves.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from monitor import feedback as fb
from monitor.config import MonitorConfig
from monitor.feedback_store import FeedbackStore
from monitor.eventlog import EventLog
from monitor.fleet import LeaseKeeper
from monitor.lease import NoLease
from monitor.types import (Decision, Event, FrozenDict, KnownGoodState, Scrape, ScoreHistogram,
                             VersionSample, VersionState)
from monitor.runtime import ModelRuntime, default_detector_configs
from monitor.store import SeriesStore
from monitor.web import create_app
from sentinel.desired_state import DesiredState, KnownGood, Rejection

TOKEN = "page-fleet-token"
STEP_S = 2.0
HISTORY_S = 900.0
BOUNDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, float("inf"))
_CDF = (0.05, 0.15, 0.3, 0.5, 0.68, 0.8, 0.9, 0.96, 0.99, 1.0)  # of the ranker's scores


def _sample(model: str, version: str, n: float, failed: float, us: float) -> VersionSample:
    """Cumulative counters: n requests, `failed` of them failed, `us` microseconds in all."""
    return VersionSample(
        model=model, version=version, success=n - failed,
        failures=(("BACKEND", failed), ("CANCELED", 0.0), ("OTHER", 0.0), ("REJECTED", 0.0)),
        inference_count=256 * n, exec_count=n, pending=1.0,
        request_duration_us=us, queue_duration_us=0.15 * us,
        compute_input_duration_us=0.05 * us, compute_infer_duration_us=0.7 * us,
        compute_output_duration_us=0.05 * us, nonfinite=0.0, requests=n, rows=256 * n,
        score=ScoreHistogram(BOUNDS, tuple(256 * n * q for q in _CDF), 256 * n * 0.42, 256 * n),
        request_errors=(("fault", 0.0), ("invalid_input", 0.0), ("runtime", 0.0)))


def build_fleet(now: float | None = None):
    """(poller-shaped state, event log, timestamps of the ranker's story)."""
    now = time.time() if now is None else now
    start = now - HISTORY_S
    t = {"deploy_v2": now - 420.0, "change": now - 400.0, "rollback": now - 330.0}
    store = SeriesStore(clock=lambda: now, retention_s=3600.0)
    counters: dict[tuple[str, str], list[float]] = {}
    ts = start
    k = 0
    while ts <= now:
        samples = []
        live = [("ranker", "1", 40.0, 0.0, 4.0), ("recommender", "1", 12.0, 0.0, 9.0)]
        if t["deploy_v2"] <= ts < t["rollback"]:
            live.append(("ranker", "2", 35.0, 0.3, 5.5))
        for model, version, rate, err, ms in live:
            c = counters.setdefault((model, version), [0.0, 0.0, 0.0])
            wobble = 1.0 + 0.05 * ((k * 7919) % 13 - 6) / 6
            n = rate * STEP_S * wobble
            c[0] += n
            c[1] += n * err
            c[2] += n * 1000 * ms * (2 - wobble)
            samples.append(_sample(model, version, *c))
        store.add(Scrape(ts=ts, phase="ok", samples=tuple(samples)))
        ts += STEP_S
        k += 1

    events = EventLog(":memory:")
    for e in (
        Event(start, "ranker", "1", "activation", reason="version 1 serves (first seen by this sidecar)",
              evidence={"previous": None, "first_seen": True}),
        Event(start + 5, "recommender", "1", "activation",
              reason="version 1 now serves (deploy by alice, was None)",
              evidence={"previous": None}),
        Event(start + 6, "empty", None, "index_error", reason="model empty has no version directory"),
        Event(start + 8, "broken", "1", "load_failure",
              reason="version 1 failed to load; version None stays served",
              evidence={"reason": "failed to load 'broken' version 1: Internal: onnx runtime error"}),
        Event(t["deploy_v2"], "ranker", "2", "activation",
              reason="version 2 now serves (deploy by ci, was 1)", evidence={"previous": "1"}),
        Event(t["change"] + 10, "ranker", "2", "detection", phase="degraded",
              reason="error_rate rose from 0.0% to 30.0%",
              evidence={"signal": "error_rate", "direction": "up", "changed_at": t["change"]}),
        Event(t["change"] + 11, "ranker", "2", "detection", phase="degraded",
              reason="error_budget rose", evidence={"signal": "error_rate", "direction": "up",
                                                    "changed_at": t["change"] + 4}),
        Event(t["change"] + 12, "ranker", "2", "detection", phase="degraded",
              reason="latency rose", evidence={"signal": "latency_ms", "direction": "up",
                                               "changed_at": t["change"] + 6}),
        Event(t["rollback"], "ranker", "1", "action", phase="degraded", action="rollback",
              outcome="ok", reason="error_rate of version 2 rose; rolling back to version 1",
              evidence={"from_version": "2", "seconds": 1.2}),
        Event(now - 20, "ranker", "1", "known_good", reason="version 1 stays known good"),
        # the recommender's markers crowd into a few seconds
        Event(now - 300, "recommender", "2", "load_failure",
              reason="version 2 failed to load; version 1 stays served",
              evidence={"reason": "failed to load 'recommender' version 2: missing model.onnx"}),
        Event(now - 290, "recommender", "1", "detection", phase="degraded",
              reason="latency_ms rose from 9 to 14 ms",
              evidence={"signal": "latency_ms", "direction": "up", "changed_at": now - 296}),
        Event(now - 288, "recommender", "1", "action", phase="degraded", action="reload",
              outcome="ok", reason="version 1 looks stuck; reloading it",
              evidence={"from_version": "1", "seconds": 2.0}),
        Event(now - 280, "recommender", "1", "detection", phase="healthy",
              reason="score_std fell", evidence={"signal": "score_std", "direction": "down",
                                                 "changed_at": now - 286}),
    ):
        events.append(e)

    models = {}
    ranker = ModelRuntime("ranker", {}, served="1", activated_at=t["rollback"],
                          states=(VersionState("1", "READY"),
                                  VersionState("2", "UNAVAILABLE", "unloaded")))
    ranker.desired = DesiredState(
        "ranker", "1", generation=4, known_good=(KnownGood("1", start),),
        rejected=(Rejection("2", t["rollback"], "error_rate rose from 0.0% to 30.0%"),))
    ranker.known = KnownGoodState(known_good="1")
    ranker.decision = Decision("ranker", "1", now, "healthy", "none", "all watched signals normal")
    models["ranker"] = ranker

    rec = ModelRuntime("recommender", {}, served="1", activated_at=start + 5,
                       states=(VersionState("1", "READY"),))
    rec.desired = DesiredState("recommender", "1", generation=1)
    rec.decision = Decision("recommender", "1", now, "healthy", "none", "all watched signals normal")
    models["recommender"] = rec

    empty = ModelRuntime("empty", {})
    empty.desired = DesiredState("empty", None, generation=0)
    empty.decision = Decision("empty", None, now, "inconclusive", "none",
                              "empty: no served version known yet")
    models["empty"] = empty

    broken = ModelRuntime("broken", {}, states=(VersionState(
        "1", "UNAVAILABLE", "failed to load 'broken' version 1: Internal: onnx runtime error"),))
    broken.decision = Decision("broken", None, now, "inconclusive", "none",
                               "broken: no served version known yet")
    models["broken"] = broken

    published = {"ranker": ["1", "2", "3"], "recommender": ["1"], "empty": [], "broken": ["1"]}
    # Feedback: v1 ranks as its test AUC says; v2 (rolled back) got a few hundred outcomes.
    feedback = FeedbackStore(":memory:", clock=lambda: now)
    rng = np.random.default_rng(0)
    for version, n, strength in (("1", 3000, 1.2), ("2", 400, -1.2)):
        y = rng.random(n) < 0.3
        scores = 1 / (1 + np.exp(-(rng.normal(size=n) + strength * y)))
        feedback.add(fb.sums([fb.FeedbackEvent("ranker", version, float(p), float(l), now - 200)
                              for p, l in zip(scores, y)], feedback.window_s))
    poller = SimpleNamespace(
        lock=threading.RLock(), models=models, store=store, feedback=feedback,
        last_scrape=Scrape(ts=now - 1, phase="ok"),
        detector_configs=default_detector_configs(),
        repository_versions=lambda model: list(published.get(model, [])),
        lease=LeaseKeeper(NoLease("sidecar-0")), members=[], canary=None)
    return poller, events, t


def build_app(now: float | None = None, token: str | None = TOKEN):
    poller, events, story = build_fleet(now)
    config = MonitorConfig(token=token, repository=Path("/models"),
                           objectives=FrozenDict({"ranker": 0.999}))
    app = create_app(poller, events, token=token, config_public=config.public_dict())
    return app, poller, events, story


if __name__ == "__main__":  # pragma: no cover - a way to look at the pages
    import sys
    app, *_ = build_app()
    app.run(port=int(sys.argv[1]) if len(sys.argv) > 1 else 8765)
