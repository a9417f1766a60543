"""The alert channel: short anomalies (spikes, bursts, dips) that only alert, never roll back.

The change-point channel (monitor.detect) waits for a change to persist and re-baselines after
it; this one scores every sample against an exponentially weighted, outlier-clipped estimate
of the series' recent level and spread, in O(1) per update:

    z = (x - level) / spread

and raises an Anomaly when |z| passes `threshold`, then stays quiet for `refractory` samples
(one alert per burst). Outliers update the estimates only clipped at `clip` spreads, so a burst
does not teach the detector that bursts are normal. Pure: floats in, Anomaly records out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Iterable

import numpy as np


@dataclass(frozen=True)
class AnomalyConfig:
    # Defaults chosen on the tuning half of NAB only (docs/detector.md): a grid over threshold,
    # span, refractory and clip; the NAB score was flat (~47) around these values.
    warmup: int = 50  # samples of history before the first alert
    span: int = 1000  # of the exponential weighting of level and spread
    threshold: float = 6.0
    clip: float = 4.0
    refractory: int = 100
    direction: str = "both"
    # Relative floor of the spread (share of |level|): a flat series must not alert on float noise.
    min_spread_rel: float = 1e-3

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "int" and (not isinstance(value, int) or isinstance(value, bool)):
                raise ValueError(f"AnomalyConfig.{f.name}={value!r}: must be int")
        rules = (
            ("warmup", self.warmup >= 2, "must be >= 2"),
            ("span", self.span >= 2, "must be >= 2"),
            ("threshold", self.threshold > 0, "must be > 0"),
            ("clip", self.clip > 0, "must be > 0"),
            ("refractory", self.refractory >= 0, "must be >= 0"),
            ("direction", self.direction in ("up", "down", "both"),
             "must be one of ('up', 'down', 'both')"),
            ("min_spread_rel", self.min_spread_rel >= 0, "must be >= 0"),
        )
        for name, ok, why in rules:
            if not ok:
                raise ValueError(f"AnomalyConfig.{name}={getattr(self, name)!r}: {why}")


@dataclass(frozen=True)
class Anomaly:
    index: int
    value: float
    level: float
    spread: float
    score: float  # z, signed


class AnomalyDetector:
    def __init__(self, config: AnomalyConfig = AnomalyConfig()) -> None:
        self.config = config
        self._weight = 2.0 / (config.span + 1.0)
        self._t = 0
        self._n = 0
        self._level = 0.0
        self._var = 0.0
        self._quiet_until = 0

    def update(self, value: float | None) -> Anomaly | None:
        t = self._t
        self._t = t + 1
        if value is None or not math.isfinite(value := float(value)):
            return None
        cfg = self.config
        if self._n == 0:
            self._level, self._var, self._n = value, 0.0, 1
            return None
        spread = max(math.sqrt(self._var), cfg.min_spread_rel * abs(self._level), 1e-12)
        z = (value - self._level) / spread
        found = None
        if self._n >= cfg.warmup and t >= self._quiet_until and abs(z) >= cfg.threshold:
            if cfg.direction == "both" or (cfg.direction == "up") == (z > 0):
                found = Anomaly(t, value, self._level, spread, z)
                self._quiet_until = t + 1 + cfg.refractory
        # Early on, plain running moments; then the clipped exponential update.
        w = max(self._weight, 1.0 / (self._n + 1))
        step = value - self._level
        if self._n >= cfg.warmup:
            step = max(-cfg.clip * spread, min(cfg.clip * spread, step))
        self._level += w * step
        self._var = (1.0 - w) * (self._var + w * step * step)
        self._n += 1
        return found


def detect_anomalies(values: Iterable[float], config: AnomalyConfig = AnomalyConfig()) -> list[Anomaly]:
    detector = AnomalyDetector(config)
    out = []
    for value in np.asarray(values, dtype=float).ravel().tolist():
        found = detector.update(value)
        if found is not None:
            out.append(found)
    return out
