"""The simulation core of `sentinel bench quality`: its windowing is the sidecar's, a gross ranking
drop is rolled back in bounded time, clean feedback is never "worse", the seed sets are disjoint."""
from __future__ import annotations

import numpy as np

from monitor.feedback import FeedbackEvent, sums
from monitor.feedback_store import FeedbackStore
from monitor.types import Policy
from sentinel.bench.quality import (CleanCell, DetectionCell, QualityOptions, choose,
                                    poisson_upper95, quality_markdown, run_quality)
from sentinel.bench.quality_sim import (EPOCH, EVALUATION_SEEDS, TEST_SEEDS, TUNING_SEEDS,
                                        FeedbackWindows, Judged, Stream, _serve,
                                        detection_episode, replay, week_episodes)

SEEDS = list(TEST_SEEDS)[:3]


def test_the_seed_sets_are_disjoint():
    tuning, evaluation, test = set(TUNING_SEEDS), set(EVALUATION_SEEDS), set(TEST_SEEDS)
    assert not tuning & evaluation and not tuning & test and not evaluation & test


def test_windows_sum_as_the_sidecars_feedback_store():
    rng = np.random.default_rng(0)
    stream = Stream(label_rate=2.0).diurnal()
    t0 = EPOCH + 3600.0 + 17.0
    batch = _serve(rng, stream, "1", t0, t0 + 1500.0, 0.0)
    # Two feedback calls: what arrived by t0 + 900 s, then the rest.
    cut = int(np.searchsorted(batch.arrival, t0 + 900.0, side="right"))
    mine = FeedbackWindows()
    store = FeedbackStore(":memory:", clock=lambda: t0 + 5000.0)
    for part in (slice(0, cut), slice(cut, None)):
        mine.add("1", batch.ts[part], batch.scores[part], batch.labels[part])
        events = [FeedbackEvent("ranker", "1", float(s), float(y), float(t)) for s, y, t in
                  zip(batch.scores[part], batch.labels[part], batch.ts[part])]
        store.add(sums(events, store.window_s))
    assert mine.latest_window("1") == store.latest_window("ranker", "1")
    for since in (None, t0, t0 + 600.0):
        a, b = mine.stats("1", since=since), store.stats("ranker", "1", since=since)
        assert a.n == b.n > 0
        assert np.array_equal(a.pos, b.pos) and np.array_equal(a.neg, b.neg)


def test_a_drop_of_a_quarter_at_100_labels_per_second_is_rolled_back_within_3_minutes():
    for seed in SEEDS:
        out, = replay(detection_episode(seed, 100.0, 0.25, horizon_s=900.0), [Judged("defaults")])
        assert out.rollback_s is not None and out.rollback_s <= 180.0, (seed, out)
        assert out.known_good_s is None


def test_clean_feedback_is_never_worse_even_when_watched_for_half_an_hour():
    judged = [Judged("watch", Policy(), keep_watching=True)]
    for seed in SEEDS:
        out, = replay(detection_episode(seed, 100.0, 0.0, horizon_s=1800.0), judged)
        assert out.rollback_s is None and out.verdict == "ok", (seed, out)


def test_a_clean_deploy_on_diurnal_traffic_becomes_known_good_without_a_rollback():
    for episode in week_episodes(SEEDS[0], 10.0)[:3]:
        out, = replay(episode, [Judged("defaults")])
        assert out.rollback_s is None and out.known_good_s is not None, (episode.deploy_at, out)


def _cells(name, caught05, false_per_week, known_good_s=300.0):
    det = [DetectionCell(name, "tuning", r, d, 10, caught05 if d == 0.05 else 10, 0, 0, 1, 1, 1)
           for r in (10.0, 100.0) for d in (0.05, 0.1, 0.25)]
    clean = [CleanCell(name, "tuning", r, 10, 70, int(false_per_week * 10), false_per_week, 1.0,
                       known_good_s, known_good_s, 0) for r in (10.0, 100.0)]
    return det + clean


def test_the_selection_rule_takes_the_most_catches_among_settings_without_false_rollbacks():
    loose = Judged("loose", Policy(quality_auc_margin=0.01))
    strict = Judged("strict", Policy(quality_min_labels=3000))
    slow = Judged("slow", Policy(quality_min_labels=30_000))
    cells = _cells("loose", 10, 0.2) + _cells("strict", 8, 0.0) + _cells("slow", 10, 0.0, 7200.0)
    assert choose(cells, [loose, strict, slow]).name == "strict"
    # Equal catches: the one nearest the defaults (fewer labels needed).
    fewer = Judged("fewer", Policy(quality_min_labels=2000))
    assert choose(cells + _cells("fewer", 8, 0.0), [strict, fewer]).name == "fewer"
    assert abs(poisson_upper95(0) - 2.996) < 0.01


def test_the_report_renders_from_a_tiny_run():
    report = run_quality(QualityOptions(seeds=1, weeks=1, tune=False, jobs=1, check_step=0,
                                        horizon_s=900.0))
    text = quality_markdown(report)
    assert "| 100 | 0.25 | defaults | 1/1 (100%)" in text
    assert "false rollbacks" in text and "EVALUATION_SEEDS" in text
