"""Online change-point detection for serving signals: arrays and floats in, change points out.

A sample is judged in stages, cheapest first, so that ~2,000 series can be updated per poll:

1. the minimum practical effect on the window means (running sums, O(1)),
2. the same effect on the window medians (a one-sample spike cannot move a median),
3. both held for ``persistence`` consecutive updates,
4. a two-window step test: OLS of the windows on a level step (optionally plus a linear trend)
   with a Newey-West long-run variance, so autocorrelated noise is not mistaken for a change.

Only stage 4 calls statsmodels, and only after stages 1-3 have passed.
"""

from __future__ import annotations

import itertools
import math
from array import array
from dataclasses import dataclass, field, fields, replace
from typing import Iterable, Mapping, NamedTuple

import numpy as np
import statsmodels.api as sm
from scipy.special import stdtr
from statsmodels.stats.sandwich_covariance import S_hac_simple

DIRECTIONS = ("up", "down", "both")
VARIANCES = ("pooled", "sandwich")
TRANSFORMS = ("none", "arcsine")
SPIKE_FILTERS = ("median", "trimmed")

# Running sums drift by a few ulps; an effect below this share of the level is float noise, so a
# constant series can never alarm even with min_effect_abs = min_effect_rel = 0.
_NUMERIC_TOL = 1e-10


@dataclass(frozen=True)
class DetectorConfig:
    """Window sizes are in samples (the sidecar samples every ~1 s); see SIGNAL_PRESETS.

    The operator's knob is `false_alarms_per_day` (per series, on clean traffic). The per-test
    level the step test uses (`effective_alpha`) is derived from it: from the simulated
    calibration of this exact configuration on clean traces of the `calibration` signal when
    monitor.calibration_table has one, else from the conservative bound "one test per sample".
    An explicit `alpha` overrides both.
    """

    # Samples before the first test. Windows grow with the history up to their configured size:
    # the test window is min(test_window, samples // 3), the baseline is the rest.
    warmup: int = 12
    baseline_window: int = 300
    test_window: int = 20
    false_alarms_per_day: float = 0.1
    alpha: float | None = None
    # Which clean-trace kind calibrates effective_alpha (a signal of sentinel.bench.detect_eval), or None.
    calibration: str | None = None
    min_effect_abs: float = 0.0
    min_effect_rel: float = 0.2
    direction: str = "both"
    # Consecutive updates the cheap stages must pass before the step test runs.
    persistence: int = 3
    # Adds a linear trend to the step regression, for series that ramp within one window.
    trend: bool = False
    # None = Newey-West rule of thumb floor(4 (n/100)^(2/9)) for n samples in both windows.
    hac_maxlags: int | None = None
    # After a step test that is not significant, wait this many samples before the next one
    # (None = test_window), so a noisy series that keeps passing the cheap stages cannot cost
    # one OLS fit per update.
    retest_after: int | None = None
    # "pooled" (Newey-West long-run variance) or "sandwich" (statsmodels HAC); see step_test.
    variance: str = "pooled"
    # "arcsine" for fractions in [0, 1] (error, NaN rates): the test runs on arcsin(sqrt(y)).
    # Effects (min_effect_*, ChangePoint) stay on the original scale.
    transform: str = "none"
    # Denominator floor of the relative effect when the baseline mean is ~0 (error, NaN rates).
    rel_floor: float = 1e-9
    # How a one-sample spike is kept from alarming: "median" (the window medians must move too)
    # or "trimmed" (the test-window mean without its most extreme sample must still show the
    # effect; for sparse events such as 1 % errors at 20 requests/s, whose medians stay at 0).
    spike_filter: str = "median"
    # Success objective of a rate signal (0.99 = 1 % error budget). When set, the minimum
    # absolute effect is at least budget_burn x (1 - objective): a version that burns the budget
    # that much faster than the baseline matters, however small the absolute change.
    objective: float | None = None
    budget_burn: float = 1.0
    # Derived in __post_init__ (not arguments; dataclasses.replace recomputes them).
    effective_alpha: float = field(init=False)
    effective_min_effect_abs: float = field(init=False)
    calibration_source: str = field(init=False)

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.init:
                _check_type(f.name, f.type, getattr(self, f.name))
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                _bad(name, getattr(self, name), f"must be one of {choices}")
        rules = (
            ("test_window", self.test_window >= 1, "must be >= 1"),
            ("baseline_window", self.baseline_window >= 2, "must be >= 2"),
            ("warmup", 6 <= self.warmup <= self.baseline_window
             + self.test_window, "must lie in [6, baseline_window + test_window]"),
            ("false_alarms_per_day", self.false_alarms_per_day > 0, "must be > 0"),
            ("alpha", self.alpha is None or 0.0 < self.alpha < 1.0, "must lie in (0, 1)"),
            ("min_effect_abs", self.min_effect_abs >= 0, "must be >= 0"),
            ("min_effect_rel", self.min_effect_rel >= 0, "must be >= 0"),
            ("persistence", self.persistence >= 1, "must be >= 1"),
            ("hac_maxlags", self.hac_maxlags is None or self.hac_maxlags >= 0,
             "must be >= 0 or None"),
            ("retest_after", self.retest_after is None or self.retest_after >= 1,
             "must be >= 1 or None"),
            ("rel_floor", self.rel_floor > 0, "must be > 0"),
            ("objective", self.objective is None or 0.0 < self.objective < 1.0,
             "must lie in (0, 1) or be None"),
            ("budget_burn", self.budget_burn > 0, "must be > 0"),
        )
        for name, ok, why in rules:
            if not ok:
                _bad(name, getattr(self, name), why)
        floor = 0.0 if self.objective is None else self.budget_burn * (1.0 - self.objective)
        object.__setattr__(self, "effective_min_effect_abs", max(self.min_effect_abs, floor))
        alpha, source = _resolve_alpha(self)
        object.__setattr__(self, "effective_alpha", alpha)
        object.__setattr__(self, "calibration_source", source)

    def calibration_key(self) -> str:
        """Every argument that changes which samples alarm, except the level itself."""
        skip = ("alpha", "false_alarms_per_day")
        return ";".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)
                        if f.init and f.name not in skip)


# The per-test level never goes above this, whatever the target: a test at 1 % is no test.
MAX_ALPHA = 1e-2
SAMPLES_PER_DAY = 86_400  # at the sidecar's 1 s interval


def _resolve_alpha(config: DetectorConfig) -> tuple[float, str]:
    if config.alpha is not None:
        return config.alpha, "explicit alpha"
    from monitor.calibration_table import CURVES  # generated data, no I/O

    curve = CURVES.get(config.calibration_key()) if config.calibration else None
    if curve is not None:
        return alpha_for_rate(curve, config.false_alarms_per_day), (
            f"simulated: {curve['days']} clean {config.calibration} days, "
            f"tuning seeds {curve['seeds']}")
    # At most one step test per sample: a Bonferroni bound over a day of samples.
    return min(MAX_ALPHA, config.false_alarms_per_day / SAMPLES_PER_DAY), (
        "bound (no simulated calibration for this configuration): "
        "false_alarms_per_day / samples per day")


def alpha_for_rate(curve: Mapping, target: float) -> float:
    """The level whose simulated false alarms per day reach `target`, interpolated in
    log(alpha) between the curve's points (alphas ascending, rates non-decreasing)."""
    alphas = [a for a, _ in curve["points"]]
    rates = list(itertools.accumulate((r for _, r in curve["points"]), max))
    if target <= rates[0]:
        return alphas[0]
    for (a0, r0), (a1, r1) in zip(zip(alphas, rates), zip(alphas[1:], rates[1:])):
        if r0 <= target <= r1 and r1 > r0:
            share = (target - r0) / (r1 - r0)
            return math.exp(math.log(a0) + share * (math.log(a1) - math.log(a0)))
    return alphas[-1]  # the minimum effect bounds the rate below the target


_CHOICES = {"direction": DIRECTIONS, "variance": VARIANCES, "transform": TRANSFORMS,
            "spike_filter": SPIKE_FILTERS}


def _check_type(name: str, annotation: str, value: object) -> None:
    # Annotations are strings here (from __future__ import annotations).
    if annotation == "bool":
        ok = isinstance(value, bool)
    elif annotation == "float | None":
        ok = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)
                               and math.isfinite(value))
    elif annotation == "str | None":
        ok = value is None or isinstance(value, str)
    elif annotation in ("int", "int | None"):
        ok = (value is None and annotation == "int | None") or (
            isinstance(value, int) and not isinstance(value, bool))
    elif annotation == "float":
        ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
              and math.isfinite(value))
    else:
        ok = isinstance(value, str)
    if not ok:
        _bad(name, value, f"must be {annotation}")


def _bad(name: str, value: object, why: str) -> None:
    raise ValueError(f"DetectorConfig.{name}={value!r}: {why}")


@dataclass(frozen=True)
class ChangePoint:
    index: int
    detected_at: int
    direction: str
    baseline_mean: float
    recent_mean: float
    effect: float
    rel_effect: float
    p_value: float
    statistic: float
    method: str


class StepTest(NamedTuple):
    statistic: float  # t statistic of the step coefficient
    p_value: float
    effect: float  # step coefficient: level shift of the recent window (beyond the trend)
    method: str


def newey_west_lags(n: int) -> int:
    return int(4 * (n / 100.0) ** (2.0 / 9.0))


def step_test(
    baseline: np.ndarray,
    recent: np.ndarray,
    *,
    direction: str = "both",
    trend: bool = False,
    maxlags: int | None = None,
    variance: str = "pooled",
    transform: str = "none",
) -> StepTest:
    """OLS y ~ 1 [+ t] + step; the p-value is one-sided for up/down.

    variance="pooled": one Newey-West long-run variance of all residuals (autocorrelation-
    robust, and under "no change" the noise is the same on both sides of the split).
    variance="sandwich": statsmodels' HAC sandwich (cov_type="HAC"), which estimates the recent
    segment's variance from its own few residuals; measured to alarm far more often when that
    segment is short (see docs/detector.md), so it is kept for comparison only.
    """
    method = "ols-step-nw" if variance == "pooled" else "ols-step-hac"
    method += "+trend" if trend else ""
    y = np.concatenate([np.asarray(baseline, float), np.asarray(recent, float)])
    if transform == "arcsine":
        # Variance-stabilising for fractions: error/NaN rates from few requests are skewed
        # binomials whose spread grows with the rate; arcsin(sqrt(p)) makes it ~constant.
        y = np.arcsin(np.sqrt(np.clip(y, 0.0, 1.0)))
    n = y.size
    if y.max() == y.min():
        return StepTest(0.0, 1.0, 0.0, method)
    step = np.zeros(n)
    step[len(baseline):] = 1.0
    columns = [np.ones(n)]
    if trend:
        columns.append(np.linspace(-1.0, 1.0, n))  # scaled so X stays well conditioned
    columns.append(step)
    lags = newey_west_lags(n) if maxlags is None else maxlags
    model = sm.OLS(y, np.column_stack(columns))
    # A flat baseline (error rate 0) gives ~0 variances that may round below zero: not an error.
    with np.errstate(invalid="ignore", divide="ignore"):
        if variance == "pooled":
            fit = model.fit()
            long_run = float(S_hac_simple(fit.resid, nlags=lags)[0, 0]) / fit.df_resid
            se = math.sqrt(max(long_run, 0.0) * fit.normalized_cov_params[-1, -1])
        else:
            fit = model.fit(cov_type="HAC", cov_kwds={"maxlags": lags}, use_t=True)
            se = float(fit.bse[-1])
    coef = float(fit.params[-1])
    if math.isnan(se):
        return StepTest(0.0, 1.0, coef, method)
    if not se > _NUMERIC_TOL * max(1.0, abs(coef)):
        # Residuals are all ~0: two flat levels. Any real difference is certain.
        if abs(coef) <= _NUMERIC_TOL * max(1.0, float(np.abs(y).max())):
            return StepTest(0.0, 1.0, 0.0, method)
        against = (direction == "up" and coef < 0) or (direction == "down" and coef > 0)
        return StepTest(math.copysign(math.inf, coef), 1.0 if against else 0.0, coef, method)
    statistic = coef / se
    df = float(fit.df_resid)
    # scipy.special.stdtr is the Student t CDF; a frozen scipy.stats.t costs ~250 µs per call.
    if direction == "up":
        p_value = float(stdtr(df, -statistic))
    elif direction == "down":
        p_value = float(stdtr(df, statistic))
    else:
        p_value = float(2.0 * stdtr(df, -abs(statistic)))
    return StepTest(statistic, p_value, coef, method)


def estimate_change_position(y: np.ndarray, lo: int = 1, hi: int | None = None) -> int:
    """Least-squares single split: first position of the new segment, searched in [lo, hi]."""
    y = np.asarray(y, float)
    n = y.size
    hi = n - 1 if hi is None else hi
    lo, hi = max(lo, 1), min(hi, n - 1)
    if n < 2 or lo > hi:
        return max(min(lo, n - 1), 0)
    partial = np.cumsum(y - y.mean())[lo - 1 : hi]
    k = np.arange(lo, hi + 1)
    return int(np.argmax(partial**2 * n / (k * (n - k)))) + lo


class OnlineDetector:
    """One series. Indices count every update (missing values included), never reset.

    After it returns a ChangePoint the detector re-baselines itself (like reset()), so a step
    that persists yields one change point instead of an alarm on every later update. Until the
    ring is full, both windows grow with the history (see DetectorConfig.warmup).
    """

    def __init__(self, config: DetectorConfig = DetectorConfig()) -> None:
        self.config = config
        self._cap = config.baseline_window + config.test_window
        self._values = array("d", bytes(8 * self._cap))
        self._sample_idx = array("q", bytes(8 * self._cap))
        self._retest_after = config.retest_after or config.test_window
        self._t = 0
        self.reset()

    @property
    def samples_seen(self) -> int:
        return self._t

    def reset(self) -> None:
        self._count = 0
        self._head = 0
        self._sum = 0.0  # every sample in the ring
        self._test_sum = 0.0  # the newest test_window samples
        self._streak = 0
        self._hold = 0
        self._pushes_since_resum = 0

    def update(self, value: float | None) -> ChangePoint | None:
        t = self._t
        self._t = t + 1
        if value is None:
            return None
        v = float(value)
        if not math.isfinite(v):
            return None
        self._push(t, v)
        if self._count < self.config.warmup:
            return None
        return self._check(t)

    def _push(self, t: int, v: float) -> None:
        cap = self._cap
        pos = self._head
        if self._count == cap:
            self._sum -= self._values[pos]  # the oldest baseline sample leaves
        else:
            self._count += 1
        self._values[pos] = v
        self._sample_idx[pos] = t
        self._head = pos + 1 if pos + 1 < cap else 0
        self._sum += v
        self._test_sum += v
        n_t = self.config.test_window
        if self._count > n_t:
            self._test_sum -= self._values[pos - n_t]  # negative index wraps the ring, as wanted
        self._pushes_since_resum += 1
        if self._pushes_since_resum >= cap:
            self._resum()

    def _resum(self) -> None:
        # Exact sums once per buffer length keep float drift bounded over days of updates.
        ordered = self._ordered()
        self._sum = math.fsum(ordered)
        self._test_sum = math.fsum(ordered[-self.config.test_window:])
        self._pushes_since_resum = 0

    def _test_len(self) -> int:
        return min(self.config.test_window, self._count // 3)

    def _ordered(self, buffer: array | None = None) -> np.ndarray:
        """The ring (values, or sample indices when given) in chronological order."""
        ring = self._values if buffer is None else buffer
        data = np.frombuffer(ring, dtype=np.float64 if ring.typecode == "d" else np.int64)
        if self._count < self._cap:
            return data[: self._count].copy()
        return np.concatenate([data[self._head:], data[: self._head]])

    def _check(self, t: int) -> ChangePoint | None:
        cfg = self.config
        if self._hold:
            self._hold -= 1
        screened = self._screen()
        if screened is None:
            self._streak = 0
            return None
        self._streak += 1
        if self._streak < cfg.persistence or self._hold:
            return None
        point = self._confirm(t, *screened)
        if point is None:
            self._hold = self._retest_after
        else:
            self.reset()
        return point

    def _screen(self) -> tuple[str, np.ndarray] | None:
        """Stages 1-2: (direction, ordered buffer) when the means show the effect and the spike
        filter (medians, or the trimmed test-window mean) agrees."""
        n_t = self._test_len()
        n_b = self._count - n_t
        if n_t == self.config.test_window:
            test_sum = self._test_sum
        else:  # still growing: the newest n_t samples, summed directly (n_t < test_window)
            end = self._head if self._head >= n_t else self._head + self._cap
            test_sum = math.fsum(self._values[(end - n_t + k) % self._cap] for k in range(n_t))
        base_mean = (self._sum - test_sum) / n_b
        direction = self._effect_direction(base_mean, test_sum / n_t)
        if direction is None:
            return None
        ordered = self._ordered()
        if self.config.spike_filter == "median":
            robust = float(np.median(ordered[:n_b])), float(np.median(ordered[n_b:]))
        else:
            recent = ordered[n_b:]
            extreme = recent.max() if direction == "up" else recent.min()
            robust = base_mean, (test_sum - float(extreme)) / max(n_t - 1, 1)
        if self._effect_direction(*robust) != direction:
            return None
        return direction, ordered

    def _confirm(self, t: int, direction: str, ordered: np.ndarray) -> ChangePoint | None:
        """Stage 4. Tests at the estimated split, not at the window boundary: with the change
        part-way through the test window a fixed-boundary step leaves structured residuals
        that the long-run variance reads as autocorrelation. The split is searched over
        `candidates` positions, so the p-value is Bonferroni-adjusted by that count."""
        cfg = self.config
        n_t = self._test_len()
        n_b = self._count - n_t
        lo = max(1, n_b - n_t)
        if cfg.spike_filter == "median":
            hi = self._count - (n_t + 1) // 2  # the median moved: >= half is new
        else:
            hi = self._count - min(n_t, max(2, cfg.persistence))
        hi = max(hi, lo)
        position = estimate_change_position(ordered, lo, hi)
        candidates = hi - lo + 1
        test = step_test(
            ordered[:position],
            ordered[position:],
            direction=direction,
            trend=cfg.trend,
            maxlags=cfg.hac_maxlags,
            variance=cfg.variance,
            transform=cfg.transform,
        )
        p_value = min(1.0, test.p_value * candidates)
        base_mean = float(ordered[:position].mean())
        recent_mean = float(ordered[position:].mean())
        effect = recent_mean - base_mean
        # With a trend the step beyond it must still matter (checked on the original scale).
        tested_effect = test.effect if cfg.trend and cfg.transform == "none" else effect
        if self._effect_direction(base_mean, base_mean + tested_effect) != direction:
            return None
        if not self._significant(t, p_value):
            return None
        return ChangePoint(
            index=int(self._ordered(self._sample_idx)[position]),
            detected_at=t,
            direction=direction,
            baseline_mean=base_mean,
            recent_mean=recent_mean,
            effect=effect,
            rel_effect=effect / max(abs(base_mean), cfg.rel_floor),
            p_value=p_value,
            statistic=test.statistic,
            method=test.method,
        )

    def _significant(self, t: int, p_value: float) -> bool:
        # The one comparison with the level; sentinel.bench.calibrate records p-values here instead.
        return p_value <= self.config.effective_alpha

    def _effect_direction(self, base: float, recent: float) -> str | None:
        """'up'/'down' when recent differs from base by at least the minimum effect, else None."""
        cfg = self.config
        effect = recent - base
        size = abs(effect)
        if size <= _NUMERIC_TOL * (abs(base) + abs(recent)) or size == 0.0:
            return None
        direction = "up" if effect > 0 else "down"
        if cfg.direction != "both" and cfg.direction != direction:
            return None
        if size < cfg.effective_min_effect_abs:
            return None
        if size / max(abs(base), cfg.rel_floor) < cfg.min_effect_rel:
            return None
        return direction


def detect_series(
    values: Iterable[float], config: DetectorConfig = DetectorConfig()
) -> list[ChangePoint]:
    """Runs OnlineDetector over the values in order, exactly as online."""
    detector = OnlineDetector(config)
    found = []
    for value in np.asarray(values, dtype=float).ravel().tolist():
        point = detector.update(value)
        if point is not None:
            found.append(point)
    return found


# Shapes (windows, minimum effects) chosen on the tuning seeds of sentinel.bench.detect_eval at 1 sample
# per second; the level of each is calibrated to false_alarms_per_day on clean traces of its own
# signal (sentinel.bench.calibrate, tuning seeds only; see docs/detector.md). Windows are in samples:
# at another scrape interval scale them to keep the same durations.
SIGNAL_PRESETS: dict[str, DetectorConfig] = {
    # Fast channel for large error jumps; the error budget sets the minimum effect (1 x budget).
    "error_rate": DetectorConfig(
        warmup=20, baseline_window=300, test_window=5, calibration="error_rate",
        min_effect_rel=0.5, direction="up", persistence=2, transform="arcsine",
        objective=0.99, budget_burn=1.0,
    ),
    # Slow channel over the same signal: small sustained error rates (1-5 %) against the budget.
    # Sparse errors leave the per-second medians at 0, so the spike filter is the trimmed mean.
    "error_budget": DetectorConfig(
        warmup=30, baseline_window=600, test_window=60, calibration="error_rate",
        min_effect_rel=0.5, direction="up", persistence=5, transform="arcsine",
        spike_filter="trimmed", retest_after=10, objective=0.99, budget_burn=0.5,
    ),
    "nan_rate": DetectorConfig(
        warmup=20, baseline_window=300, test_window=5, calibration="nan_rate",
        min_effect_abs=0.05, min_effect_rel=0.5, direction="up", persistence=2,
        transform="arcsine",
    ),
    "latency_ms": DetectorConfig(
        warmup=30, baseline_window=300, test_window=20, calibration="latency_ms",
        min_effect_abs=1.0, min_effect_rel=0.35, direction="up", persistence=3,
        # Retest after 5 samples, not a whole test window: a step first tested while only half
        # of the window is past it is often not yet significant, and waiting 20 s more doubled
        # the time to rollback in the live scenario tests.
        retest_after=5,
    ),
    "score_mean": DetectorConfig(
        warmup=30, baseline_window=300, test_window=15, calibration="score_mean",
        min_effect_abs=0.08, min_effect_rel=0.1, direction="both", persistence=3,
    ),
    # Constant outputs keep the mean but collapse the spread: watch the per-interval score std.
    "score_std": DetectorConfig(
        warmup=30, baseline_window=300, test_window=15, calibration="score_std",
        min_effect_abs=0.02, min_effect_rel=0.5, direction="down", persistence=3,
    ),
    "request_rate": DetectorConfig(
        warmup=30, baseline_window=300, test_window=30, calibration="request_rate",
        min_effect_abs=1.0, min_effect_rel=0.5, direction="both", persistence=5, trend=True,
    ),
}

# Which signal's values each preset reads (the error budget watches error_rate too).
PRESET_SIGNAL = {name: ("error_rate" if name == "error_budget" else name) for name in SIGNAL_PRESETS}


def expected_false_alarms_per_day(configs: Iterable[DetectorConfig], models: int) -> float:
    """Expected false alarms per day across the watched fleet: series x stated rate."""
    return models * sum(c.false_alarms_per_day for c in configs)


def with_objective(
    configs: Mapping[str, DetectorConfig], objective: float | None
) -> dict[str, DetectorConfig]:
    """The configs with this success objective on every preset that judges against one (the
    error-rate presets), e.g. a model's own objective from MonitorConfig.objectives."""
    if objective is None:
        return dict(configs)
    return {name: replace(c, objective=objective) if c.objective is not None else c
            for name, c in configs.items()}
