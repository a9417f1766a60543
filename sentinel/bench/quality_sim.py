"""Seeded replays of the sidecar's online-quality decision: labelled feedback streams for a
known-good version and a newly deployed one, fed through the judge's path.

What is the sidecar's own code here: the per-window sums (`monitor.feedback.window_of` +
`monitor.quality.pointwise`, exactly what `monitor.feedback.sums` does for pointwise events), the
window selection of `Judge.assess_quality` (served side since the activation's window, reference
side its newest `quality_reference_s`), `monitor.quality.compare` with
`judge.quality_config(policy)`, `monitor.decide.decide` and `update_known_good` with the judge's
minimum judgement time. What is simulated: the events (scores, outcomes, serving times, label
delays) and every other signal, which is clean (no detections, probes pass, scrapes fresh), so
only feedback can move the decision.

Pure: seeded numpy only, no I/O, no clock.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from statistics import NormalDist
from typing import Sequence

import numpy as np

from monitor.decide import decide, update_known_good
from monitor.feedback import window_of
from monitor.judge import quality_config
from monitor.quality import QualityStats, compare, merged, pointwise
from monitor.types import (DecisionInputs, FailureEvidence, KnownGoodState, Policy, ScrapeOutcome,
                           VersionState)

# Disjoint, named seed sets: settings are chosen on TUNING_SEEDS only, the bench reports
# EVALUATION_SEEDS, the unit tests use TEST_SEEDS, which neither saw.
TUNING_SEEDS = range(0, 1000)
EVALUATION_SEEDS = range(10_000, 11_000)
TEST_SEEDS = range(20_000, 20_100)

DAY_S = 86_400.0
WINDOW_S = 300.0           # monitor.feedback_store.FeedbackStore's default window
EPOCH = 1_767_225_600.0    # 2026-01-01 00:00 UTC: serving times look like the sidecar's
MODEL, REFERENCE, SERVED = "ranker", "1", "2"
_EPISODE_TAG = {"detect": 1, "week": 2}


@dataclass(frozen=True)
class Stream:
    """Labelled feedback of one model. Rates are per second of serving time, averaged over a day.

    Scores: a latent x ~ N(0, 1) for a negative, N(d, 1) for a positive, AUC = Φ(d/√2); the score
    is sigmoid(logit(base rate) + offset + x − d·base rate), so every version's scores have the same
    spread and sit around the base rate: a worse version is plausible and self-consistent, only
    its ranking is worse. The daily cycle is a cosine peaking at `peak_hour` (UTC) for the label
    rate (× 1 ± rate_swing), the base rate (± base_swing), the score offset (± score_swing, in
    logits: the model sees the intent that raises the base rate) and the AUC (± auc_swing: the
    peak-hour population is easier to rank)."""

    label_rate: float = 10.0
    base_rate: float = 0.3
    auc: float = 0.75
    label_delay_s: float = 300.0   # mean of an exponential delay from serving to outcome
    rate_swing: float = 0.0
    base_swing: float = 0.0
    score_swing: float = 0.0
    auc_swing: float = 0.0
    peak_hour: float = 20.0

    def cycle(self, ts: float) -> float:
        return math.cos(2 * math.pi * (((ts - EPOCH) / DAY_S) - self.peak_hour / 24.0))

    def diurnal(self) -> "Stream":
        return replace(self, rate_swing=0.6, base_swing=0.05, score_swing=0.3, auc_swing=0.02)


@dataclass(frozen=True)
class Episode:
    """One deploy: version 2 replaces the known-good version 1 at `deploy_at`, and its AUC is the
    stream's minus `auc_drop`. Version 1 served the stream before it."""

    seed: int
    stream: Stream
    deploy_at: float
    auc_drop: float = 0.0
    horizon_s: float = 7200.0
    kind: str = "detect"          # "detect" or "week": with `index`, keeps the streams apart
    index: int = 0                # the deploy's number within its week


@dataclass(frozen=True)
class Judged:
    """A policy to replay. `keep_watching`: never promote (the comparison alone, to the horizon)."""

    name: str
    policy: Policy = field(default_factory=Policy)
    keep_watching: bool = False


@dataclass(frozen=True)
class Outcome:
    """How one deploy ended under one policy; times are seconds after the deploy."""

    judged: str
    rollback_s: float | None      # rolled back on a "worse" verdict
    known_good_s: float | None    # promoted to known good (the comparison stops there)
    served_labels: int            # labelled events of version 2 counted at the end
    verdict: str                  # the last quality verdict


def detection_episode(seed: int, label_rate: float, auc_drop: float, horizon_s: float = 7200.0,
                      stream: Stream = Stream()) -> Episode:
    """A deploy at a seeded time of a flat day (the window phase varies, the traffic does not)."""
    rng = np.random.default_rng([seed, _EPISODE_TAG["detect"]])
    deploy = EPOCH + DAY_S + float(rng.uniform(0, DAY_S))
    return Episode(seed, replace(stream, label_rate=label_rate), deploy, auc_drop, horizon_s)


def week_episodes(seed: int, label_rate: float, deploys: int = 7, horizon_s: float = 6 * 3600.0,
                  stream: Stream = Stream()) -> list[Episode]:
    """One simulated week on the diurnal stream: one clean deploy a day at a uniformly drawn time
    of day. Each is replayed on its own, with the previous version as known good over the hours
    before it (true when deploys are at least `quality_reference_s` apart and promotions come
    within hours, as they do here)."""
    rng = np.random.default_rng([seed, _EPISODE_TAG["week"]])
    times = EPOCH + DAY_S * (1 + np.arange(deploys)) + rng.uniform(0, DAY_S, deploys)
    diurnal = replace(stream, label_rate=label_rate).diurnal()
    return [Episode(seed, diurnal, float(t), 0.0, horizon_s, "week", k)
            for k, t in enumerate(times)]


def judgement_s(interval_s: float = 1.0) -> float:
    """Judge.judgement_s for the default detectors: the shortest time before a version may count
    as healthy at all."""
    from monitor.runtime import default_detector_configs
    return interval_s * max(c.test_window + c.persistence + 5
                            for name, c in default_detector_configs().items()
                            if name != "error_budget")


# ------------------------------------------------------------------ feedback


class FeedbackWindows:
    """FeedbackStore's windowing in memory, without SQLite: sums per (version, window start) by
    serving time, `stats(version, since, until)` over window starts in [since, until),
    `latest_window(version)`. tests/unit/test_bench_quality.py checks it against the real store."""

    def __init__(self, window_s: float = WINDOW_S):
        self.window_s = window_s
        self._windows: dict[tuple[str, float], QualityStats] = {}

    def add(self, version: str, ts: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> None:
        """One feedback call's events of a version: summed per window, as monitor.feedback.sums."""
        starts = np.floor(ts / self.window_s) * self.window_s
        for start in np.unique(starts):
            pick = starts == start
            key = (version, float(start))
            stats = pointwise(scores[pick], labels[pick])
            if key in self._windows:
                self._windows[key].add(stats)
            else:
                self._windows[key] = stats

    def stats(self, version: str, since: float | None = None,
              until: float | None = None) -> QualityStats:
        lo = -math.inf if since is None else since
        hi = math.inf if until is None else until
        return merged(s for (v, start), s in self._windows.items()
                      if v == version and lo <= start < hi)

    def latest_window(self, version: str) -> float | None:
        return max((start for (v, start) in self._windows if v == version), default=None)


@dataclass
class _Batch:
    """Labelled events served in one window, in the order their outcomes arrive."""

    version: str
    arrival: np.ndarray
    ts: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    posted: int = 0


def _serve(rng: np.random.Generator, stream: Stream, version: str, start: float, end: float,
           auc_drop: float, settled: float = -math.inf) -> _Batch:
    """The labelled events served in [start, end) (one window or part of one): the stream's rates
    at the span's middle. Outcomes that arrived by `settled` are first posted together at or after
    it, so only the later ones need sorting (most of a reference's hours)."""
    c = stream.cycle((start + end) / 2)
    rate = stream.label_rate * max(1 + stream.rate_swing * c, 0.0)
    n = int(rng.poisson(rate * (end - start)))
    base = stream.base_rate + stream.base_swing * c
    auc = min(max(stream.auc + stream.auc_swing * c - auc_drop, 0.5), 0.999)
    d = math.sqrt(2) * NormalDist().inv_cdf(auc)
    ts = rng.uniform(start, end, n)
    labels = (rng.random(n) < base).astype(np.float64)
    x = rng.standard_normal(n) + d * labels
    logit = math.log(base / (1 - base)) + stream.score_swing * c - d * base
    scores = 1.0 / (1.0 + np.exp(-(logit + x)))
    arrival = ts + rng.exponential(stream.label_delay_s, n)
    late = np.flatnonzero(arrival > settled)
    order = np.concatenate([np.flatnonzero(arrival <= settled),
                            late[np.argsort(arrival[late], kind="stable")]])
    arrival = np.maximum(arrival[order], settled)
    return _Batch(version, arrival, ts[order], scores[order], labels[order])


def _post_until(store: FeedbackWindows, batches: list[_Batch], now: float) -> tuple[set[str], list]:
    """Post every outcome that arrived by `now`; returns the versions that got any, and the
    batches still waiting for outcomes."""
    touched, waiting = set(), []
    for b in batches:
        j = int(np.searchsorted(b.arrival, now, side="right"))
        if j > b.posted:
            store.add(b.version, b.ts[b.posted:j], b.scores[b.posted:j], b.labels[b.posted:j])
            b.posted = j
            touched.add(b.version)
        if b.posted < b.arrival.size:
            waiting.append(b)
    return touched, waiting


# ------------------------------------------------------------------ the judge's path


def _inputs(now: float, deploy_at: float, quality) -> DecisionInputs:
    """Every signal but feedback clean: the served version READY, scrapes fresh, no failures."""
    return DecisionInputs(
        model=MODEL, served_version=SERVED, now=now,
        version_states=(VersionState(REFERENCE, "UNAVAILABLE", "unloaded"),
                        VersionState(SERVED, "READY")),
        scrape_outcomes=(ScrapeOutcome(now - 1, True), ScrapeOutcome(now, True)),
        last_sample_at=now, activated_at=deploy_at, last_known_good=REFERENCE,
        failure_evidence=FailureEvidence(MODEL, SERVED, 10.0, 1000.0, 0.0),
        peers_observed=1, quality=quality)


def replay(episode: Episode, judged: Sequence[Judged], step_s: float = 10.0,
           min_judgement_s: float | None = None) -> list[Outcome]:
    """Replay one deploy under each policy in `judged` (the same events for all), one decision
    every `step_s` of simulated time (the sidecar decides every second; feedback arrives in
    batches, so a coarser step only rounds the times up to it)."""
    rng = np.random.default_rng([episode.seed, _EPISODE_TAG[episode.kind], episode.index,
                                 round(episode.auc_drop * 1e4)])
    stream, t0 = episode.stream, episode.deploy_at
    min_judgement_s = judgement_s() if min_judgement_s is None else min_judgement_s
    reference_s = max(j.policy.quality_reference_s for j in judged)
    store = FeedbackWindows()

    # Version 1 served the hours before the deploy; what arrived by then is in the store.
    first = window_of(t0, WINDOW_S) - reference_s - WINDOW_S
    waiting = []
    for start in np.arange(first, t0, WINDOW_S):
        waiting.append(_serve(rng, stream, REFERENCE, float(start), min(start + WINDOW_S, t0), 0.0,
                              settled=t0))
    _, waiting = _post_until(store, waiting, t0)

    configs = [quality_config(j.policy) for j in judged]
    states = [KnownGoodState(known_good=REFERENCE, candidate=REFERENCE) for _ in judged]
    ends: list[Outcome | None] = [None] * len(judged)
    verdicts = ["none"] * len(judged)
    next_window = t0
    served = reference = None
    now = t0
    while now < t0 + episode.horizon_s and any(e is None for e in ends):
        now += step_s
        while next_window <= now:  # version 2's windows, served as the clock passes them
            end = window_of(next_window, WINDOW_S) + WINDOW_S
            waiting.append(_serve(rng, stream, SERVED, next_window, end, episode.auc_drop))
            next_window = end
        touched, waiting = _post_until(store, waiting, now)
        if served is None or SERVED in touched:
            served = store.stats(SERVED, since=t0 - WINDOW_S)
        if reference is None or REFERENCE in touched:
            latest = store.latest_window(REFERENCE)
            reference = {s: store.stats(REFERENCE, since=latest - s)
                         for s in {j.policy.quality_reference_s for j in judged}}
        for i, j in enumerate(judged):
            if ends[i] is not None:
                continue
            q = compare(MODEL, SERVED, served, REFERENCE,
                        reference[j.policy.quality_reference_s], configs[i])
            verdicts[i] = q.verdict
            decision = decide(_inputs(now, t0, q), j.policy)
            if decision.action == "rollback":
                ends[i] = Outcome(j.name, now - t0, None, int(served.n), q.verdict)
                continue
            if j.keep_watching:
                continue
            phase = decision.phase
            if phase == "healthy" and now - t0 < min_judgement_s:
                phase = "inconclusive"
            states[i] = update_known_good(states[i], SERVED, phase, now, j.policy)
            if states[i].known_good == SERVED:
                ends[i] = Outcome(j.name, None, now - t0, int(served.n), q.verdict)
    n = int(served.n) if served is not None else 0
    return [e or Outcome(j.name, None, None, n, verdicts[i]) for i, (j, e) in
            enumerate(zip(judged, ends))]
