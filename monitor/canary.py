"""Judging a canary: the replicas serving the new version against the replicas that still serve the
fleet's version, over the same minutes. Pure: counts in, a verdict out.

Why two groups at the same time and not before/after on one series: traffic mix, load and the hour
of the day move both groups alike, so they cancel out of a same-time comparison; a before/after
comparison reads them as the version's doing.

Evidence comes in bins of `look_every_s` seconds. Each bin holds, per group, the requests, failures,
successes, the summed request duration and the score-histogram counts that arrived in it (deltas of
Triton's cumulative counters, summed over the group's replicas). Three checks, each one-sided:

- **errors**: canary error rate − fleet error rate > `error_margin`, by the Agresti–Caffo interval for
  a difference of two proportions (one success and one failure added to each group, which keeps it
  sane at zero failures);
- **latency**: per bin, log(canary mean latency / fleet mean latency); the bins are paired, so a load
  spike that slows both groups cancels; a one-sided t-test that the mean log ratio exceeds
  log(1 + `latency_margin`);
- **scores**: the two score histograms differ (chi-square test of homogeneity) with a population
  stability index ≥ `min_psi` (monitor.drift.compare), each request counted once (`per_request`:
  the scores of one request are not independent draws), from 200 requests per group on.

**False alarms.** A canary is looked at once per completed bin, and a healthy canary must not be
aborted by noise at any look: the family-wise false-abort rate `false_alarm_rate` is split evenly
(Bonferroni) over the three checks and the most looks a canary can have
(`max_duration_s / look_every_s`). That is conservative, and a real fault is still far past it.

**Pass** needs paired evidence over `duration_s`, at least `min_requests` in each group, no failing
check and the error rate shown to be within `error_margin` at 95 %. A canary that reaches
`max_duration_s` without that is inconclusive: never promoted by default."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal, Mapping

import numpy as np
from scipy import stats as sstats

from monitor.drift import DriftConfig, compare, per_request as drift_per_request
from monitor.types import Scrape, VersionSample

Outcome = Literal["waiting", "running", "pass", "fail", "inconclusive"]
CHECKS = ("errors", "latency", "scores")


@dataclass(frozen=True)
class CanaryPolicy:
    duration_s: float = 120.0          # paired evidence before a pass
    max_duration_s: float = 900.0      # no verdict by then: inconclusive
    min_requests: int = 500            # in each group, before a pass
    false_alarm_rate: float = 0.001    # chance that a healthy canary is aborted, per canary
    look_every_s: float = 5.0          # bin width: one look per completed bin
    error_margin: float = 0.01         # canary error rate allowed above the fleet's
    latency_margin: float = 0.25       # canary mean latency allowed above the fleet's (+25 %)
    score_shift_fails: bool = True     # a moved score distribution aborts (False: reported only)
    min_psi: float = 0.2
    min_bin_requests: int = 5          # a bin's latency ratio needs this many successes per group
    load_timeout_s: float = 180.0      # the canary replicas must serve it by then
    step: int = 0                      # replicas added per promotion step; 0: the canary's size

    def with_overrides(self, overrides: Mapping[str, Any]) -> "CanaryPolicy":
        """The policy with a deploy's own settings (unknown names are refused)."""
        known = {f.name: f.type for f in fields(self)}
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise ValueError(f"unknown canary setting(s) {unknown}; known: {sorted(known)}")
        values = {}
        for name, value in overrides.items():
            current = getattr(self, name)
            if isinstance(current, bool):
                if not isinstance(value, bool):
                    raise ValueError(f"canary setting {name} must be true or false")
                values[name] = value
            else:
                try:
                    values[name] = type(current)(value)
                except (TypeError, ValueError):
                    raise ValueError(f"canary setting {name} must be a number") from None
                if isinstance(value, bool) or not math.isfinite(values[name]) or values[name] < 0:
                    raise ValueError(f"canary setting {name} must be a number ≥ 0")
        policy = replace(self, **values)
        if policy.look_every_s <= 0 or policy.duration_s <= 0 \
                or policy.max_duration_s < policy.duration_s:
            raise ValueError("canary needs look_every_s > 0 and 0 < duration_s ≤ max_duration_s")
        if not 0 < policy.false_alarm_rate < 1:
            raise ValueError("canary false_alarm_rate must be in (0, 1)")
        return policy

    @property
    def alpha_per_look(self) -> float:
        looks = max(1, math.ceil(self.max_duration_s / self.look_every_s))
        return self.false_alarm_rate / (len(CHECKS) * looks)


@dataclass(frozen=True)
class Counts:
    """What one group did in one bin (or in total)."""
    requests: float = 0.0
    failures: float = 0.0
    success: float = 0.0
    duration_us: float = 0.0
    scores: tuple[float, ...] = ()   # per-bucket counts (not cumulative)
    bounds: tuple[float, ...] = ()

    def __add__(self, other: "Counts") -> "Counts":
        if not self.scores:
            scores, bounds = other.scores, other.bounds
        elif not other.scores or self.bounds != other.bounds:
            scores, bounds = self.scores, self.bounds
        else:
            scores = tuple(a + b for a, b in zip(self.scores, other.scores))
            bounds = self.bounds
        return Counts(self.requests + other.requests, self.failures + other.failures,
                      self.success + other.success, self.duration_us + other.duration_us,
                      scores, bounds)

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else math.nan

    @property
    def mean_latency_us(self) -> float:
        return self.duration_us / self.success if self.success else math.nan


def delta(prev: VersionSample, cur: VersionSample) -> Counts | None:
    """The counts between two cumulative samples of one version on one source; None on a counter
    reset (a reload, a replica leaving the group): that interval says nothing."""
    s0, s1 = prev.success or 0.0, cur.success or 0.0
    f0, f1 = prev.failure_total or 0.0, cur.failure_total or 0.0
    # Error responses from model.py are Triton "successes" counted by the adapter
    # (sentinel_request_errors_total): failures, but inside the request count already.
    e0, e1 = prev.request_error_total or 0.0, cur.request_error_total or 0.0
    d0, d1 = prev.request_duration_us or 0.0, cur.request_duration_us or 0.0
    if s1 < s0 or f1 < f0 or e1 < e0 or d1 < d0:
        return None
    scores, bounds = (), ()
    if prev.score is not None and cur.score is not None and prev.score.bounds == cur.score.bounds:
        c0, c1 = np.diff(prev.score.counts, prepend=0.0), np.diff(cur.score.counts, prepend=0.0)
        d = c1 - c0
        if (d >= 0).all():
            scores, bounds = tuple(float(x) for x in d), cur.score.bounds
    requests = s1 - s0 + f1 - f0
    return Counts(requests, min(requests, f1 - f0 + e1 - e0), s1 - s0, d1 - d0, scores, bounds)


@dataclass(frozen=True)
class Bin:
    start: float
    end: float
    canary: Counts
    fleet: Counts

    @property
    def paired(self) -> bool:
        return self.canary.requests > 0 and self.fleet.requests > 0


@dataclass
class Tally:
    """Bins of one canary, fed with the fleet's scrapes (one Scrape per source: a Prometheus query
    or one replica's /metrics). The only state here; the verdict is computed from it."""
    model: str
    version: str        # the canary's
    against: str        # the fleet's
    look_every_s: float
    bins: list[Bin] = field(default_factory=list)
    _previous: dict[str, Scrape] = field(default_factory=dict)
    _open: Bin | None = None

    def add(self, scrapes: Mapping[str, Scrape], now: float) -> bool:
        """Feed one cycle's scrapes; True when a bin was completed (a new look is due)."""
        canary, fleet = Counts(), Counts()
        for source, scrape in scrapes.items():
            if not scrape.ok:
                continue
            prev = self._previous.get(source)
            self._previous[source] = scrape
            if prev is None or scrape.ts <= prev.ts:
                continue
            before = {s.key: s for s in prev.samples}
            for sample in scrape.samples:
                if sample.model != self.model or sample.version not in (self.version, self.against):
                    continue
                old = before.get(sample.key)
                d = delta(old, sample) if old is not None else None
                if d is None:
                    continue
                if sample.version == self.version:
                    canary = canary + d
                else:
                    fleet = fleet + d
        if self._open is None:
            # A bin begins where the last one ended: the deltas added now arrived since then.
            start = self.bins[-1].end if self.bins else now
            self._open = Bin(start, now, Counts(), Counts())
        self._open = Bin(self._open.start, now, self._open.canary + canary, self._open.fleet + fleet)
        if now - self._open.start >= self.look_every_s:
            self.bins.append(self._open)
            self._open = None
            return True
        return False

    def totals(self) -> tuple[Counts, Counts]:
        canary, fleet = Counts(), Counts()
        for b in self.bins:
            if b.paired:
                canary, fleet = canary + b.canary, fleet + b.fleet
        return canary, fleet

    @property
    def paired_s(self) -> float:
        return sum(b.end - b.start for b in self.bins if b.paired)


@dataclass(frozen=True)
class Check:
    name: str
    failed: bool
    statistic: float | None
    p_value: float | None
    detail: str


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reason: str
    checks: tuple[Check, ...] = ()
    canary: Counts = Counts()
    fleet: Counts = Counts()
    paired_s: float = 0.0
    looks: int = 0

    def evidence(self) -> dict:
        def group(c: Counts) -> dict:
            return {"requests": int(c.requests), "failures": int(c.failures),
                    "error_rate": _round(c.error_rate), "mean_latency_us": _round(c.mean_latency_us)}
        return {"outcome": self.outcome, "paired_s": round(self.paired_s, 1), "looks": self.looks,
                "canary": group(self.canary), "fleet": group(self.fleet),
                "checks": [{"name": c.name, "failed": c.failed, "statistic": _round(c.statistic),
                            "p_value": _round(c.p_value, 8), "detail": c.detail}
                           for c in self.checks]}


def _round(x: float | None, digits: int = 6) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def error_check(canary: Counts, fleet: Counts, margin: float, alpha: float) -> tuple[Check, float]:
    """(the check, the upper 95 % bound of the error-rate difference)."""
    pc = (canary.failures + 1) / (canary.requests + 2)
    pf = (fleet.failures + 1) / (fleet.requests + 2)
    se = math.sqrt(pc * (1 - pc) / (canary.requests + 2) + pf * (1 - pf) / (fleet.requests + 2))
    z = (pc - pf - margin) / se
    p = float(sstats.norm.sf(z))
    upper = pc - pf + float(sstats.norm.ppf(0.95)) * se
    detail = (f"error rate {canary.error_rate:.2%} on the canary vs {fleet.error_rate:.2%} on the "
              f"fleet ({int(canary.failures)}/{int(canary.requests)} vs "
              f"{int(fleet.failures)}/{int(fleet.requests)}); allowed +{margin:.2%}")
    return Check("errors", p < alpha, z, p, detail), upper


def latency_check(bins: list[Bin], margin: float, alpha: float, min_bin: int) -> Check:
    ratios = np.array([math.log(b.canary.mean_latency_us / b.fleet.mean_latency_us) for b in bins
                       if b.canary.success >= min_bin and b.fleet.success >= min_bin
                       and b.canary.duration_us > 0 and b.fleet.duration_us > 0])
    if ratios.size < 3:
        return Check("latency", False, None, None, f"{ratios.size} paired bins: too few to compare")
    mean, sd = float(ratios.mean()), float(ratios.std(ddof=1))
    bound = math.log1p(margin)
    if sd == 0.0:
        t, p = (math.inf, 0.0) if mean > bound else (-math.inf, 1.0)
    else:
        t = (mean - bound) / (sd / math.sqrt(ratios.size))
        p = float(sstats.t.sf(t, df=ratios.size - 1))
    detail = (f"canary mean latency {math.exp(mean):.2f}× the fleet's over {ratios.size} paired "
              f"bins; allowed {1 + margin:.2f}×")
    return Check("latency", p < alpha, t, p, detail)


# Requests (not sampled scores) in each group before the score distributions are compared.
MIN_SCORE_REQUESTS = 200


def per_request(group: Counts) -> np.ndarray:
    """The group's score histogram with each successful request counted once (drift.per_request).
    Counted per score, 13 canary requests of 64 sampled scores each looked like 832 independent
    draws, and a healthy canary was aborted on p = 0.0 (a full-suite run of test_fleet)."""
    return drift_per_request(group.scores, group.success)


def score_check(canary: Counts, fleet: Counts, model: str, version: str, against: str,
                min_psi: float, alpha: float, fails: bool) -> Check:
    if not canary.scores or not fleet.scores or canary.bounds != fleet.bounds:
        return Check("scores", False, None, None, "no score histograms on both sides")
    found = compare(model, version, per_request(canary), per_request(fleet), against,
                    canary.bounds, DriftConfig(min_samples=MIN_SCORE_REQUESTS, max_p_value=alpha,
                                               min_psi=min_psi))
    if found is None:
        return Check("scores", False, None, None,
                     f"fewer than {MIN_SCORE_REQUESTS} requests with sampled scores in a group")
    detail = (f"score distribution PSI {found.psi:.3f} (mean {found.mean:.3f} vs "
              f"{found.reference_mean:.3f})" + ("" if fails or not found.drifted
                                                 else "; shifted, reported only"))
    return Check("scores", found.drifted and fails, found.psi, found.p_value, detail)


def judge(tally: Tally, policy: CanaryPolicy, age_s: float) -> Verdict:
    """The verdict on everything tallied so far; `age_s`: since the canary was asked for."""
    alpha = policy.alpha_per_look
    canary, fleet = tally.totals()
    paired = [b for b in tally.bins if b.paired]
    looks = len(paired)
    if not paired:
        if age_s > policy.max_duration_s:
            return Verdict("inconclusive", f"no paired traffic in {age_s:.0f}s: nothing to judge")
        return Verdict("waiting", "no bin with traffic on both groups yet")
    errors, upper = error_check(canary, fleet, policy.error_margin, alpha)
    checks = (errors, latency_check(paired, policy.latency_margin, alpha, policy.min_bin_requests),
              score_check(canary, fleet, tally.model, tally.version, tally.against,
                          policy.min_psi, alpha, policy.score_shift_fails))
    common = dict(checks=checks, canary=canary, fleet=fleet, paired_s=tally.paired_s, looks=looks)
    failed = [c for c in checks if c.failed]
    if failed:
        return Verdict("fail", "; ".join(c.detail for c in failed)
                       + f" (false-abort rate {policy.false_alarm_rate:g} per canary)", **common)
    enough = min(canary.requests, fleet.requests) >= policy.min_requests
    if tally.paired_s >= policy.duration_s and enough and upper <= policy.error_margin:
        return Verdict("pass", f"{tally.paired_s:.0f}s of paired traffic ({int(canary.requests)} "
                               f"canary, {int(fleet.requests)} fleet requests): no check failed, "
                               f"error rate within +{policy.error_margin:.2%} at 95 %", **common)
    if age_s > policy.max_duration_s:
        missing = [] if enough else [f"fewer than {policy.min_requests} requests in a group "
                                     f"({int(canary.requests)} canary, {int(fleet.requests)} fleet)"]
        if tally.paired_s < policy.duration_s:
            missing.append(f"{tally.paired_s:.0f}s of paired traffic of {policy.duration_s:g}s")
        if upper > policy.error_margin:
            missing.append(f"error rate not shown within +{policy.error_margin:.2%}")
        return Verdict("inconclusive", f"after {age_s:.0f}s: " + "; ".join(missing), **common)
    return Verdict("running", f"{tally.paired_s:.0f}s of {policy.duration_s:g}s paired, "
                              f"{int(canary.requests)} canary / {int(fleet.requests)} fleet requests",
                   **common)
