"""Prediction drift: has a version's score distribution moved away from another's (or its own
earlier one)? Before labels arrive this is the only quality signal there is.

The backend's score histogram (python_backend/metrics.py, a strided sample of every request's
scores) is scraped as cumulative bucket counts; `ScoreWindows` turns consecutive scrapes into
per-window bucket counts per (model, version), bounded by time, weighted so that a request counts
once: the scores of one request belong to one user or query and move together, so they are not
independent draws (a test that counted each score found "drift" between 13 users of one model:
monitor/canary.py, per_request). `compare` is a chi-square test of
homogeneity on two count vectors with an effect size, the population stability index (PSI): with
hundreds of thousands of sampled scores any difference is "significant", so a drift needs both a
tiny p-value and a PSI past a practical threshold (0.2 is the usual "significant shift")."""
from __future__ import annotations

import collections
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sstats

from monitor.types import DriftFinding, Scrape

__all__ = ["DriftConfig", "DriftFinding", "ScoreWindows", "compare", "from_record", "per_request",
           "to_record"]

Key = tuple[str, str]


@dataclass(frozen=True)
class DriftConfig:
    min_samples: int = 500      # effective samples (a request's scores count once) on each side
    max_p_value: float = 1e-6
    min_psi: float = 0.2


def compare(model: str, version: str, counts: np.ndarray, reference: np.ndarray, against: str,
            bounds: tuple[float, ...] = (), config: DriftConfig = DriftConfig()) -> DriftFinding | None:
    """None while either side has fewer than `min_samples`."""
    counts, reference = np.asarray(counts, float), np.asarray(reference, float)
    n, m = counts.sum(), reference.sum()
    if n < config.min_samples or m < config.min_samples or counts.size != reference.size:
        return None
    used = (counts + reference) > 0
    table = np.vstack([counts[used], reference[used]])
    if table.shape[1] < 2:
        p = 1.0
    else:
        p = float(sstats.chi2_contingency(table, correction=False)[1])
    # PSI with a half-count floor per bucket, so an empty bucket does not make it infinite.
    a = (counts + 0.5) / (n + 0.5 * counts.size)
    b = (reference + 0.5) / (m + 0.5 * reference.size)
    psi = float(((a - b) * np.log(a / b)).sum())
    mids = _midpoints(bounds, counts.size)
    return DriftFinding(model, version, against, p, psi, int(n), int(m),
                        drifted=p <= config.max_p_value and psi >= config.min_psi,
                        mean=float((mids * counts).sum() / n), reference_mean=float((mids * reference).sum() / m))


def per_request(counts: np.ndarray, requests: float) -> np.ndarray:
    """Sampled score counts weighted so that each request counts once: scaled down to `requests`
    when more scores than requests were sampled, left as they are otherwise (sampling is capped
    per flush under load, and then each sampled score is already from a different request).

    The scores of one request belong to one user or query and move together (a user the model
    likes gets high scores for all 256 candidates), so the chi-square test's samples are
    independent across requests, not across the scores within one. Scaling keeps the histogram's
    shape (PSI and the mean are unchanged) and gives the test the evidence there really is, at
    most: conservative when a request's scores are in fact independent."""
    counts = np.asarray(counts, float)
    sampled = float(counts.sum())
    return counts * (requests / sampled) if requests < sampled else counts


def to_record(bounds: tuple[float, ...], counts: np.ndarray) -> dict:
    """A histogram as JSON can hold it (in a known-good baseline): the finite upper bounds (the
    last bucket's is +Inf, which JSON has no number for) and the per-request counts."""
    return {"upper_bounds": [float(b) for b in bounds if math.isfinite(b)],
            "counts": [round(float(c), 3) for c in counts]}


def from_record(record) -> tuple[tuple[float, ...], np.ndarray] | None:
    """(bounds, counts) of `to_record`'s dict; None for anything else (an older baseline has no
    histogram; a malformed one is not evidence)."""
    try:
        bounds = tuple(float(b) for b in record["upper_bounds"]) + (math.inf,)
        counts = np.asarray([float(c) for c in record["counts"]], float)
    except (KeyError, TypeError, ValueError):
        return None
    if counts.size != len(bounds) or not np.isfinite(counts).all() or (counts < 0).any():
        return None
    return bounds, counts


def _midpoints(bounds: tuple[float, ...], k: int) -> np.ndarray:
    if len(bounds) != k:
        return np.arange(k, dtype=float)
    finite = [b for b in bounds if math.isfinite(b)]
    lower = [0.0 if not finite else min(0.0, finite[0])] + finite
    return np.array([(lo + hi) / 2 if math.isfinite(hi) else lo
                     for lo, hi in zip(lower, bounds)], float)


class ScoreWindows:
    """Per-window bucket counts of each (model, version)'s sampled scores, from scrapes.

    Only the newest cumulative histogram of each series is kept besides the windows; a drop in any
    bucket (a restart or a reload: counters reset) starts the series again from the new counts.
    Each window also holds the requests that finished in it (Triton's success counter), and
    `counts` scales the bucket counts it sums down to that many (never up): per request, not per
    sampled score. The histogram is flushed a little after the counter moves, so the two are
    matched over the windows summed, not window by window."""

    # One-minute windows: fine enough to split "the last few minutes" from "before", and still
    # only 20 floats a minute per version.
    def __init__(self, window_s: float = 60.0, retention_s: float = 86400.0):
        self.window_s, self.retention_s = window_s, retention_s
        self._last: dict[Key, np.ndarray] = {}
        self._last_requests: dict[Key, float | None] = {}
        self.bounds: dict[Key, tuple[float, ...]] = {}
        # window start -> [bucket counts, requests (the sampled count where unknown)]
        self._windows: dict[Key, collections.OrderedDict] = {}

    def add(self, scrape: Scrape) -> None:
        if not scrape.ok:
            return
        start = math.floor(scrape.ts / self.window_s) * self.window_s
        for s in scrape.samples:
            if s.score is None:
                continue
            key = (s.model, s.version)
            cum = np.asarray(s.score.counts, float)
            last = self._last.get(key)
            last_requests = self._last_requests.get(key)
            self._last_requests[key] = s.success
            if last is None or last.size != cum.size or self.bounds.get(key) != s.score.bounds:
                self.bounds[key] = s.score.bounds
                self._last[key] = cum
                continue  # the first sample is a level, not an interval
            delta = cum - last
            self._last[key] = cum
            if (delta < 0).any():
                continue  # counters restarted: this interval's counts are unknown
            bucket_delta = np.diff(delta, prepend=0.0)
            sampled = float(bucket_delta.sum())
            if sampled <= 0:
                continue
            requests = sampled
            if s.success is not None and last_requests is not None and s.success >= last_requests:
                requests = s.success - last_requests
            windows = self._windows.setdefault(key, collections.OrderedDict())
            if start in windows:
                windows[start][0] = windows[start][0] + bucket_delta
                windows[start][1] += requests
            else:
                windows[start] = [bucket_delta, requests]
        cutoff = scrape.ts - self.retention_s
        for windows in self._windows.values():
            while windows and next(iter(windows)) < cutoff:
                windows.popitem(last=False)

    def counts(self, model: str, version: str, since: float | None = None,
               until: float | None = None) -> np.ndarray | None:
        windows = self._windows.get((model, version))
        if not windows:
            return None
        lo = -math.inf if since is None else since
        hi = math.inf if until is None else until
        picked = [w for start, w in windows.items() if lo <= start < hi]
        if not picked:
            return None
        return per_request(np.sum([w[0] for w in picked], axis=0), sum(w[1] for w in picked))

    def span(self, model: str, version: str) -> tuple[float, float] | None:
        windows = self._windows.get((model, version))
        if not windows:
            return None
        starts = list(windows)
        return starts[0], starts[-1] + self.window_s
