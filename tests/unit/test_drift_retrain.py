"""Prediction drift before labels arrive, and the retrain trigger when quality falls with no version
to blame: the pure tests, the windows built from scrapes, the judge's checks and the runner."""
from __future__ import annotations

import os
import sys
import time

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from monitor import drift, feedback as fb
from monitor.decide import decide
from monitor.feedback_store import FeedbackStore
from monitor.judge import Judge
from monitor.retrain import RetrainRunner
from monitor.runtime import ModelRuntime, MonitorMetrics, default_detector_configs
from monitor.store import SeriesStore
from monitor.types import Policy, Scrape, ScoreHistogram, VersionSample
from sentinel.desired_state import DesiredState, KnownGood
from tests.unit.test_decide import make_inputs

BOUNDS = tuple(round(0.05 * i, 2) for i in range(1, 20)) + (float("inf"),)


def _counts(rng, n, loc=0.0):
    scores = 1 / (1 + np.exp(-(rng.normal(size=n) + loc)))
    return np.histogram(scores, bins=[0, *BOUNDS[:-1], 1.0])[0].astype(float)


def test_the_same_distribution_is_not_drift_and_a_moved_one_is():
    rng = np.random.default_rng(1)
    ref = _counts(rng, 50_000)
    same = drift.compare("m", "2", _counts(rng, 20_000), ref, "version 1", BOUNDS)
    moved = drift.compare("m", "2", _counts(rng, 20_000, loc=1.0), ref, "version 1", BOUNDS)
    assert not same.drifted and same.psi < 0.01
    assert moved.drifted and moved.psi > 0.2 and moved.p_value < 1e-6 and moved.mean > moved.reference_mean


def test_a_significant_but_small_shift_is_not_drift():
    rng = np.random.default_rng(2)
    ref = _counts(rng, 2_000_000)
    small = drift.compare("m", "2", _counts(rng, 2_000_000, loc=0.1), ref, "version 1", BOUNDS)
    assert small.p_value < 1e-6 and small.psi < 0.2 and not small.drifted


def test_nothing_is_said_on_too_few_scores():
    rng = np.random.default_rng(3)
    assert drift.compare("m", "2", _counts(rng, 400), _counts(rng, 50_000), "v1", BOUNDS) is None


def _scrape(ts, cum_by_version, model="m"):
    return Scrape(ts=ts, phase="ok", samples=tuple(
        VersionSample(model, v, score=ScoreHistogram(BOUNDS, tuple(np.cumsum(c)), 0.0, float(sum(c))))
        for v, c in cum_by_version.items()))


def test_score_windows_count_intervals_and_skip_a_counter_reset():
    w = drift.ScoreWindows(window_s=60)
    per_step = np.zeros(20)
    per_step[10] = 100
    totals = np.zeros(20)
    for k in range(5):
        totals = totals + per_step
        w.add(_scrape(1000.0 + 10 * k, {"1": totals}))
    assert w.counts("m", "1").sum() == 400  # 5 scrapes: the first is a level, 4 intervals
    w.add(_scrape(1050.0, {"1": per_step}))  # restarted: counts went down
    w.add(_scrape(1060.0, {"1": 2 * per_step}))
    assert w.counts("m", "1").sum() == 500
    assert w.counts("m", "1", since=1080.0) is None  # windows start at multiples of 60 s
    assert w.span("m", "1") == (960.0, 1080.0)


def test_score_windows_count_each_request_once_however_many_of_its_scores_were_sampled():
    """64 sampled scores per request, one user's offset shared by all of them: as scores, 20
    requests of the same model look like 1,280 draws and a moved distribution; as requests they
    are 20, too few to say anything, and a really moved model is still found once there are
    enough."""
    rng = np.random.default_rng(4)

    def users(n, loc=0.0):
        offsets = rng.normal(loc, 1.0, n)
        scores = 1 / (1 + np.exp(-(offsets[:, None] + rng.normal(0, 0.1, (n, 64)))))
        return np.histogram(scores.ravel(), bins=[0, *BOUNDS[:-1], 1.0])[0].astype(float)

    def windows(per_scrape, loc_new=0.0, scrapes=10):
        w = drift.ScoreWindows(window_s=60)
        cum = {"1": np.zeros(20), "2": np.zeros(20)}
        done = {"1": 0.0, "2": 0.0}
        for k in range(scrapes + 1):
            if k:
                for v, n in per_scrape.items():
                    cum[v] = cum[v] + users(n, loc_new if v == "2" else 0.0)
                    done[v] += n
            w.add(Scrape(ts=1000.0 + k, phase="ok", samples=tuple(
                VersionSample("m", v, success=done[v], score=ScoreHistogram(
                    BOUNDS, tuple(np.cumsum(c)), 0.0, float(c.sum()))) for v, c in cum.items())))
        return w

    few = windows({"1": 200, "2": 2}, scrapes=10)
    assert few.counts("m", "2").sum() == pytest.approx(20)  # 1,280 sampled scores, 20 requests
    per_score = drift.compare("m", "2", few.counts("m", "2") * 64, few.counts("m", "1") * 64,
                              "v1", BOUNDS)
    per_request = drift.compare("m", "2", few.counts("m", "2"), few.counts("m", "1"), "v1", BOUNDS,
                                drift.DriftConfig(min_samples=10))
    assert per_score.p_value < 1e-6 and not per_request.drifted  # counted per score it looked moved
    assert drift.compare("m", "2", few.counts("m", "2"), few.counts("m", "1"), "v1", BOUNDS) is None
    moved = windows({"1": 200, "2": 100}, loc_new=1.5)
    found = drift.compare("m", "2", moved.counts("m", "2"), moved.counts("m", "1"), "v1", BOUNDS)
    assert found is not None and found.drifted and found.samples == 1000


# ------------------------------------------------------------------ decisions


def _finding(drifted=True):
    return drift.DriftFinding("ranker", "2", "version 1", 1e-20 if drifted else 0.5,
                              0.8 if drifted else 0.01, 9000, 40000, drifted, 0.6, 0.4)


def test_drift_is_a_warning_that_keeps_the_version_from_known_good():
    d = decide(make_inputs(drift=_finding()))
    assert (d.phase, d.action) == ("inconclusive", "alert") and "PSI 0.80" in d.reason
    assert decide(make_inputs(drift=_finding(drifted=False))).phase == "healthy"


def test_drift_with_quality_evidence_that_it_ranks_as_well_is_settled():
    from tests.unit.test_feedback import _assessment
    assert decide(make_inputs(drift=_finding(), quality=_assessment("ok"))).phase == "healthy"
    worse = decide(make_inputs(drift=_finding(), quality=_assessment("worse")))
    assert worse.action == "rollback" and "also: prediction drift" in worse.reason


def test_drift_rolls_back_on_its_own_only_when_configured_to():
    d = decide(make_inputs(drift=_finding()), Policy(drift_rollback=True))
    assert (d.action, d.target_version) == ("rollback", "1")


# ------------------------------------------------------------------ the judge's checks


NOW = 1_700_000_000.0


def _judge(feedback):
    return Judge(SeriesStore(clock=lambda: NOW), Policy(), default_detector_configs(),
                 MonitorMetrics(CollectorRegistry()), 1.0, feedback=feedback)


def _known_good_runtime(version="1"):
    rt = ModelRuntime("ranker", {})
    rt.served, rt.activated_at = version, NOW - 86400
    rt.desired = DesiredState("ranker", version, known_good=(KnownGood(version, NOW - 80000),))
    return rt


def _feed(store, version, n, ts, strength, seed):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.3
    s = 1 / (1 + np.exp(-(rng.normal(size=n) + strength * y)))
    store.add(fb.sums([fb.FeedbackEvent("ranker", version, float(a), float(b), ts)
                       for a, b in zip(s, y)], store.window_s))


def test_the_known_good_versions_quality_falling_asks_for_a_retrain():
    store = FeedbackStore(":memory:", clock=lambda: NOW)
    _feed(store, "1", 4000, NOW - 7200, 1.5, seed=1)  # its earlier hours
    judge = _judge(store)
    rt = _known_good_runtime()
    assert judge.retrain_check(rt, NOW) is None  # nothing recent yet
    _feed(store, "1", 3000, NOW - 600, 1.5, seed=2)
    assert judge.retrain_check(rt, NOW) is None  # as good as before
    _feed(store, "1", 6000, NOW - 300, -0.5, seed=3)  # the world changed under it
    reason, evidence = judge.retrain_check(rt, NOW)
    assert "online quality of version 1 fell" in reason and "retrain" in reason
    assert evidence["quality"]["verdict"] == "worse"


def test_a_version_under_watch_is_judged_against_its_reference_not_retrained():
    store = FeedbackStore(":memory:", clock=lambda: NOW)
    judge = _judge(store)
    rt = _known_good_runtime()
    rt.served, rt.activated_at = "2", NOW - 900
    _feed(store, "2", 3000, NOW - 300, -0.5, seed=4)
    assert judge.retrain_check(rt, NOW) is None


def test_the_known_good_versions_scores_moving_asks_for_a_retrain():
    judge = _judge(None)
    rt = _known_good_runtime()
    rng = np.random.default_rng(5)
    totals = np.zeros(20)
    t = NOW - 3 * 3600
    while t < NOW:
        totals = totals + _counts(rng, 400, loc=0.0 if t < NOW - 1200 else 1.5)
        judge.scores.add(_scrape(t, {"1": totals}, model="ranker"))
        t += 30
    reason, evidence = judge.retrain_check(rt, NOW)
    assert "scores of version 1 moved" in reason and evidence["drift"]["drifted"]


def _serve(judge, version, start, end, loc, seed, model="ranker"):
    rng, totals, t = np.random.default_rng(seed), np.zeros(20), start
    while t < end:
        totals = totals + _counts(rng, 400, loc=loc)
        scrape = _scrape(t, {version: totals}, model=model)
        judge.store.add(scrape)  # as the poller does: the series and the score windows
        judge.scores.add(scrape)
        t += 30


def test_a_restarted_sidecar_compares_a_candidate_with_the_histogram_kept_at_known_good():
    """Drift needs the reference version's scores. A sidecar started after v1 stopped serving
    never saw them: v1's known-good record keeps its histogram, in JSON (no +Inf), and a moved v2
    is still found; an unmoved one is not."""
    import json

    from sentinel import desired_state as ds
    before = _judge(None)  # the sidecar that saw v1 serve and promoted it
    _serve(before, "1", NOW - 5400, NOW - 1800, 0.0, seed=6)
    rt = ModelRuntime("ranker", {})
    rt.served = "1"
    baseline = before.baseline_of(rt, NOW - 1800)
    kept = drift.from_record(json.loads(json.dumps(baseline["scores"], allow_nan=False)))
    assert kept is not None and kept[0] == BOUNDS and kept[1].sum() >= 500
    state = ds.mark_known_good(ds.initial("ranker", "1", NOW - 7200, "build"), "1", NOW - 1800,
                               "poller", baseline)
    for loc, drifted in ((1.5, True), (0.0, False)):
        after = _judge(None)  # restarted: no v1 scores in memory
        rt = ModelRuntime("ranker", {})
        rt.served, rt.activated_at = "2", NOW - 900
        rt.desired = ds.deploy(state, "2", NOW - 900, "ci")
        _serve(after, "2", NOW - 900, NOW, loc, seed=7)
        found = after.assess_drift(rt)
        assert found is not None and found.drifted is drifted, found
        assert found.against == "version 1 (histogram kept when it became known good)"
    # a known-good record from before histograms were kept, or with other buckets: no verdict
    old = ds.mark_known_good(ds.initial("ranker", "1", 0.0, "build"), "1", 1.0, "poller",
                             {k: v for k, v in baseline.items() if k != "scores"})
    rt.desired = ds.deploy(old, "2", NOW - 900, "ci")
    assert after.assess_drift(rt) is None
    other = dict(baseline, scores=dict(baseline["scores"], upper_bounds=[0.5]))
    rt.desired = ds.deploy(ds.mark_known_good(old, "1", 2.0, "poller", other), "2", NOW - 900, "ci")
    assert after.assess_drift(rt) is None


# ------------------------------------------------------------------ the runner


def test_the_retrain_command_runs_once_per_cooldown_with_the_model_in_its_environment(tmp_path):
    out = tmp_path / "ran"
    now = [1000.0]
    runner = RetrainRunner(f"{sys.executable} -c \"import os; open('{out}', 'a').write("
                           f"os.environ['SENTINEL_RETRAIN_MODEL'] + '\\n')\"", cooldown_s=600,
                           log_dir=tmp_path, clock=lambda: now[0])
    first = runner.trigger("ranker", "quality fell")
    assert first.triggered and "pid" in first.detail
    assert not runner.trigger("ranker", "again").triggered
    now[0] += 601
    assert runner.trigger("ranker", "later").triggered
    for _ in range(100):
        if out.exists() and out.read_text().count("\n") == 2:
            break
        time.sleep(0.05)
    assert out.read_text() == "ranker\nranker\n"


def test_a_command_that_cannot_start_is_reported_not_raised(tmp_path):
    runner = RetrainRunner(str(tmp_path / "no-such-builder"), cooldown_s=0)
    outcome = runner.trigger("ranker", "why")
    assert outcome.triggered and "cannot start" in outcome.detail


def test_without_a_command_it_records_and_alerts_only():
    outcome = RetrainRunner(None, cooldown_s=0).trigger("ranker", "why")
    assert outcome.triggered and "no retrain_command" in outcome.detail
    assert os.environ.get("SENTINEL_RETRAIN_MODEL") is None


def test_a_score_change_of_a_known_good_version_whose_inputs_drifted_is_not_its_fault():
    from tests.unit.test_decide import det
    change = det(signal="score_mean", direction="down")
    assert decide(make_inputs(detections=(change,))).action == "rollback"
    d = decide(make_inputs(detections=(change,), inputs_drifted=True))
    assert (d.phase, d.action) == ("degraded", "alert") and "inputs drifted" in d.reason
    errors = det(signal="error_rate")
    assert decide(make_inputs(detections=(change, errors), inputs_drifted=True)).action == "rollback"


def test_a_restarted_sidecar_keeps_the_retrain_cooldown_from_its_event_log(tmp_path):
    """The builder job is expensive: a sidecar killed and started again within the cooldown must
    not start it once more. The cooldown is read back from the event log's `retrain` events."""
    from monitor.config import load_config
    from monitor.sidecar import Sidecar
    from monitor.types import Event
    settings = {"repository": str(tmp_path), "db_path": str(tmp_path / "ev.sqlite3"), "port": 0}
    first = Sidecar(load_config(None, env={}, overrides=settings))
    try:
        assert first.poller.retrain.trigger("ranker", "quality fell").triggered
        # what Poller._retrain records for a trigger
        first.events.append(Event(time.time(), "ranker", "1", "retrain", phase="degraded",
                                  action="alert", reason="quality fell"))
        first.events.append(Event(time.time() - 7 * 3600, "seqrec", "1", "retrain",
                                  reason="long ago"))
    finally:
        first.stop()
    again = Sidecar(load_config(None, env={}, overrides=settings))  # the restarted process
    try:
        outcome = again.poller.retrain.trigger("ranker", "quality fell")
        assert not outcome.triggered and "cooldown: last trigger" in outcome.detail
        assert again.poller.retrain.trigger("seqrec", "fell").triggered  # past its 6 h cooldown
    finally:
        again.stop()
