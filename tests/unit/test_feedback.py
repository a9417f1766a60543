"""Feedback in, online quality out: validation, the sufficient statistics and their statistics,
persistence across a restart, the API, and the decision rule."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from monitor import feedback as fb
from monitor import quality as q
from monitor.act import RepositoryClient
from monitor.decide import decide, update_known_good
from monitor.eventlog import EventLog
from monitor.feedback_store import FeedbackStore
from monitor.poller import Poller
from monitor.probe import GoldenProber
from monitor.scrape import Scraper
from monitor.types import KnownGoodState, Policy
from monitor.web import create_app
from tests.unit.test_decide import make_inputs

NOW = 1_700_000_000.0
TOKEN = "feedback-token"


def _events(rng, n, strength=1.0, reverse=False, version="2", ts=NOW - 60):
    """n labelled events whose score separates the outcomes by `strength` (logit units)."""
    y = rng.random(n) < 0.3
    logit = rng.normal(size=n) + strength * (y if not reverse else ~y)
    s = 1 / (1 + np.exp(-logit))
    return [{"model": "ranker", "version": version, "score": float(a), "label": int(b), "ts": ts}
            for a, b in zip(s, y)]


def _stats(events):
    return q.pointwise(np.array([e["score"] for e in events]), np.array([e["label"] for e in events]))


def _exact_auc(scores, labels):
    """Mann-Whitney on the binned scores (ties half a win)."""
    b = q.bin_of(scores)
    pos, neg = b[labels > 0], b[labels == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (pos.size * neg.size)


# ------------------------------------------------------------------ the statistics


def test_auc_from_histograms_is_the_mann_whitney_auc_of_the_binned_scores():
    rng = np.random.default_rng(1)
    ev = _events(rng, 800)
    scores = np.array([e["score"] for e in ev])
    labels = np.array([e["label"] for e in ev], float)
    a, var = q.auc(q.pointwise(scores, labels))
    assert a == pytest.approx(_exact_auc(scores, labels), abs=1e-12)
    assert 0 < var < 0.01


def test_delong_variance_matches_the_spread_of_repeated_samples():
    rng = np.random.default_rng(2)
    aucs, variances = [], []
    for _ in range(200):
        a, v = q.auc(_stats(_events(rng, 2000)))
        aucs.append(a)
        variances.append(v)
    assert np.std(aucs) == pytest.approx(math.sqrt(np.mean(variances)), rel=0.15)


def test_sums_merge_by_addition_whatever_the_split():
    rng = np.random.default_rng(3)
    ev = _events(rng, 1000)
    whole = _stats(ev)
    parts = q.merged([_stats(ev[:137]), _stats(ev[137:600]), _stats(ev[600:])])
    assert q.auc(parts) == pytest.approx(q.auc(whole))
    assert q.log_loss(parts)[0] == pytest.approx(q.log_loss(whole)[0])
    assert q.QualityStats.from_dict(parts.to_dict()).to_dict() == parts.to_dict()


def test_list_metrics_follow_the_ranks_given_or_the_scores():
    best_first = q.ranked_list([0.9, 0.5, 0.1], [1, 0, 0])
    worst_first = q.ranked_list([0.9, 0.5, 0.1], [1, 0, 0], ranks=[3, 2, 1])
    assert best_first.sum_ndcg == pytest.approx(1.0)
    assert worst_first.sum_ndcg == pytest.approx(0.5)  # relevant item at rank 3: 1/log2(4)
    assert best_first.sum_recall == 1.0 and best_first.sum_ctr == pytest.approx(1 / 3)
    none_relevant = q.ranked_list([0.3, 0.2], [0, 0])
    assert none_relevant.lists == 1 and none_relevant.lists_relevant == 0


def test_compare_says_nothing_without_a_reference_and_waits_for_labels():
    rng = np.random.default_rng(4)
    good = _stats(_events(rng, 3000))
    assert q.compare("m", "2", good, None, None).verdict == "no_reference"
    few = _stats(_events(rng, 300))
    assert q.compare("m", "2", good, "1", few).verdict == "no_reference"
    out = q.compare("m", "2", few, "1", good)
    assert out.verdict == "insufficient" and "300 labelled events" in out.reason


def test_compare_finds_a_reversed_ranker_and_passes_an_equal_one():
    rng = np.random.default_rng(5)
    reference = _stats(_events(rng, 3000))
    worse = q.compare("m", "2", _stats(_events(rng, 1500, reverse=True)), "1", reference)
    assert worse.verdict == "worse"
    c = worse.comparisons[0]
    assert c.metric == "auc" and c.difference < -0.3 and c.bound < -c.margin
    same = q.compare("m", "2", _stats(_events(rng, 8000)), "1", reference)
    assert same.verdict == "ok" and same.comparisons[0].lower > -0.02


def test_ok_needs_the_drop_shown_within_the_margin_not_just_no_evidence_of_worse():
    rng = np.random.default_rng(11)
    reference = _stats(_events(rng, 20_000))
    early = q.compare("m", "2", _stats(_events(rng, 1200)), "1", reference)
    assert early.verdict == "insufficient" and "not yet shown to be within" in early.reason
    # A drop of ~0.05: not "worse" on few labels, but never "ok" however many come in.
    for n in (1200, 3000, 30_000):
        out = q.compare("m", "2", _stats(_events(rng, n, strength=0.78)), "1", reference)
        assert out.verdict != "ok", (n, out.comparisons[0])
    assert out.verdict == "worse"


def test_a_drop_inside_the_margin_is_not_acted_on():
    rng = np.random.default_rng(6)
    reference = _stats(_events(rng, 200_000, strength=1.0))
    slightly = _stats(_events(rng, 200_000, strength=0.95))  # AUC ~0.01 lower, measured precisely
    out = q.compare("m", "2", slightly, "1", reference)
    assert out.comparisons[0].difference < -0.005
    assert out.verdict == "ok"


# ------------------------------------------------------------------ events in


def _known(model, version):
    return None if (model, version) in {("ranker", "1"), ("ranker", "2")} else f"no {model} v{version}"


def test_bad_events_are_rejected_one_by_one_with_reasons_and_the_good_kept():
    good = {"model": "ranker", "version": "2", "score": 0.4, "label": 1}
    body = {"events": [
        good,
        {**good, "label": "yes"},
        {**good, "score": float("nan")},
        {**good, "version": "9"},
        {**good, "colour": "red"},
        {**good, "ts": NOW + 3600},
        {**good, "ts": NOW - 30 * 86400},
        {**good, "rank": 0},
        {**good, "label": -1},
        "not an object",
        {**good, "list_id": "a", "rank": 2, "ts": NOW - 5},
    ]}
    batch = fb.parse_batch(body, NOW, _known, retention_s=7 * 86400)
    assert len(batch.events) == 2
    reasons = {r.index: r.reason for r in batch.rejected}
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert "'label' must be a number" in reasons[1]
    assert "finite" in reasons[2]
    assert "no ranker v9" in reasons[3]
    assert "colour" in reasons[4]
    assert "future" in reasons[5]
    assert "retention" in reasons[6]
    assert "rank" in reasons[7]
    assert "[0, 100]" in reasons[8]
    assert batch.events[0].ts == NOW  # no ts: the time it arrived


@pytest.mark.parametrize("body", [None, [], {"events": {}}, {"event": []}])
def test_a_body_that_is_not_a_batch_is_refused_whole(body):
    with pytest.raises(fb.FeedbackError, match="events"):
        fb.parse_batch(body, NOW, _known, 86400)


def test_more_than_the_limit_is_refused_whole_with_413():
    with pytest.raises(fb.FeedbackError) as err:
        fb.parse_batch({"events": [{}] * (fb.MAX_EVENTS + 1)}, NOW, _known, 86400)
    assert err.value.status == 413


def test_events_are_summed_per_window_of_serving_time_and_lists_kept_together():
    events = [fb.FeedbackEvent("ranker", "2", 0.9, 1, NOW - 10, "L", 1),
              fb.FeedbackEvent("ranker", "2", 0.2, 0, NOW - 9, "L", 2),
              fb.FeedbackEvent("ranker", "2", 0.7, 0, NOW - 400, None, None)]
    out = fb.sums(events, 300.0)
    assert sorted(k[2] for k in out) == [fb.window_of(NOW - 400, 300), fb.window_of(NOW - 10, 300)]
    latest = out[("ranker", "2", fb.window_of(NOW - 10, 300))]
    assert latest.n == 2 and latest.lists == 1 and latest.sum_ndcg == pytest.approx(1.0)


# ------------------------------------------------------------------ the store


def test_the_store_keeps_every_accepted_event_across_a_restart(tmp_path):
    path = tmp_path / "sidecar.sqlite3"
    rng = np.random.default_rng(7)
    events = fb.parse_batch({"events": _events(rng, 500)}, NOW, _known, 86400).events
    store = FeedbackStore(path, clock=lambda: NOW)
    store.add(fb.sums(events, store.window_s))
    before = store.stats("ranker", "2")
    store.close()  # as a killed process would leave it: every add was committed
    again = FeedbackStore(path, clock=lambda: NOW)
    after = again.stats("ranker", "2")
    assert after.n == 500 and after.to_dict() == before.to_dict()


def test_old_windows_leave_memory_and_disk(tmp_path):
    path = tmp_path / "sidecar.sqlite3"
    now = [NOW]
    store = FeedbackStore(path, retention_s=3600, clock=lambda: now[0])
    old = fb.FeedbackEvent("ranker", "1", 0.5, 1, NOW - 100, None, None)
    store.add(fb.sums([old], store.window_s))
    now[0] = NOW + 7200
    store.add(fb.sums([dataclasses.replace(old, ts=now[0])], store.window_s))
    assert store.stats("ranker", "1").n == 1
    assert FeedbackStore(path, retention_s=3600, clock=lambda: now[0]).stats("ranker", "1").n == 1


def test_a_store_that_cannot_write_counts_nothing(tmp_path):
    store = FeedbackStore(tmp_path / "s.sqlite3", clock=lambda: NOW)
    store._conn.execute("DROP TABLE feedback_windows")  # the database lost its table under us
    with pytest.raises(Exception, match="cannot store feedback"):
        store.add(fb.sums([fb.FeedbackEvent("ranker", "1", 0.5, 1, NOW, None, None)], 300.0))
    assert store.stats("ranker", "1").n == 0


# ------------------------------------------------------------------ the API


@pytest.fixture
def app(tmp_path):
    repo = tmp_path / "models"
    for v in ("1", "2"):
        (repo / "ranker" / v).mkdir(parents=True)
    feedback = FeedbackStore(tmp_path / "db.sqlite3", clock=lambda: NOW)
    poller = Poller(Scraper("http://127.0.0.1:9/metrics"), RepositoryClient("http://127.0.0.1:9", repo),
                    GoldenProber("http://127.0.0.1:9", repo), EventLog(":memory:"),
                    clock=lambda: NOW, feedback=feedback)
    return create_app(poller, poller.events, token=TOKEN).test_client()


def test_feedback_needs_the_control_token(app):
    r = app.post("/api/feedback", json={"events": []})
    assert r.status_code == 401
    r = app.post("/api/feedback", json={"events": []}, headers={"X-Sentinel-Token": "wrong"})
    assert r.status_code == 401


def test_feedback_is_counted_and_shown_per_version(app):
    rng = np.random.default_rng(8)
    body = {"events": _events(rng, 400) + [{"model": "ranker", "version": "7", "score": 0.1,
                                            "label": 0}]}
    r = app.post("/api/feedback", json=body, headers={"X-Sentinel-Token": TOKEN})
    assert r.status_code == 200, r.json
    assert r.json["accepted"] == 400
    assert r.json["rejected"] == [{"index": 400, "reason": "model 'ranker' has no version '7' "
                                                           "(published: 1, 2)"}]
    shown = app.get("/api/models/ranker/quality").json
    (v2,) = shown["versions"]
    assert v2["version"] == "2" and v2["labelled"] == 400 and 0.6 < v2["auc"] < 0.9


def test_a_malformed_batch_is_a_400_and_keeps_nothing(app):
    r = app.post("/api/feedback", data="not json", content_type="application/json",
                 headers={"X-Sentinel-Token": TOKEN})
    assert r.status_code == 400 and "events" in r.json["error"]
    assert app.get("/api/models/ranker/quality").json["versions"] == []


# ------------------------------------------------------------------ the decision


def _assessment(verdict, version="2"):
    rng = np.random.default_rng(9)
    reference = _stats(_events(rng, 3000))
    served = {"worse": _stats(_events(rng, 2000, reverse=True)),
              "ok": _stats(_events(rng, 8000)),
              "insufficient": _stats(_events(rng, 100))}[verdict]
    out = q.compare("ranker", version, served, "1", reference)
    assert out.verdict == verdict
    return out


def test_a_version_that_ranks_worse_is_rolled_back_to_the_last_known_good():
    d = decide(make_inputs(quality=_assessment("worse")))
    assert (d.phase, d.action, d.target_version) == ("degraded", "rollback", "1")
    assert "ranks worse" in d.reason and "auc" in d.reason
    assert d.evidence and d.evidence[0].verdict == "worse"


def test_too_few_labels_is_inconclusive_and_never_becomes_known_good():
    d = decide(make_inputs(quality=_assessment("insufficient")))
    assert (d.phase, d.action) == ("inconclusive", "none")
    state = KnownGoodState("1", "2", None)
    for t in range(0, 600, 5):
        state = update_known_good(state, "2", d.phase, 1000.0 + t, Policy())
    assert state.known_good == "1"


def test_equal_quality_leaves_the_decision_to_the_other_signals():
    assert decide(make_inputs(quality=_assessment("ok"))).phase == "healthy"


def test_a_pinned_version_that_ranks_worse_is_an_alert_not_a_rollback():
    d = decide(make_inputs(quality=_assessment("worse"), pinned_version="2"))
    assert d.action == "alert" and "pinned" in d.reason


def test_an_assessment_of_another_version_is_not_evidence():
    d = decide(make_inputs(quality=_assessment("worse", version="3")))
    assert d.phase == "healthy"


def test_the_quality_series_is_per_window_of_serving_time_on_request(app):
    rng = np.random.default_rng(10)
    early = _events(rng, 300, ts=NOW - 900)
    late = _events(rng, 200, ts=NOW - 100)
    r = app.post("/api/feedback", json={"events": early + late}, headers={"X-Sentinel-Token": TOKEN})
    assert r.json["accepted"] == 500
    (v2,) = app.get("/api/models/ranker/quality?series=1").json["versions"]
    assert [w["labelled"] for w in v2["series"]] == [300, 200]
    assert v2["series"][0]["start"] == fb.window_of(NOW - 900, 300.0)
    assert "series" not in app.get("/api/models/ranker/quality").json["versions"][0]


def test_promotion_waits_on_the_auc_not_on_the_noisier_list_metric():
    rng = np.random.default_rng(12)
    reference, served = _stats(_events(rng, 40_000)), _stats(_events(rng, 40_000))
    for stats, seed in ((reference, 1), (served, 2)):  # a few noisy lists on each side
        r = np.random.default_rng(seed)
        for _ in range(250):
            stats.add(q.ranked_list(r.random(5), (r.random(5) < 0.3).astype(float)))
    out = q.compare("m", "2", served, "1", reference)
    ndcg = next(c for c in out.comparisons if c.metric.startswith("ndcg"))
    assert not ndcg.within and out.verdict == "ok"
