"""Calibrates a detector's level to a stated false-alarm rate by simulating clean traces.

The detector is run once over each clean trace with every step test recorded and none accepted;
the alarms a level `alpha` would have raised are then counted from the record (an alarm at
sample t re-baselines the detector, so tests before t + warmup + persistence cannot alarm). This
gives the whole curve alpha -> false alarms per day from one pass, for every target at once.
The curve is cached per configuration (DetectorConfig.calibration_key) in
monitor/calibration_table.py, which `sentinel bench detect --calibrate` regenerates; only the
tuning seeds of sentinel.bench.detect_eval are ever simulated here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from monitor.detect import (MAX_ALPHA, PRESET_SIGNAL, SAMPLES_PER_DAY, SIGNAL_PRESETS,
                            DetectorConfig, OnlineDetector, with_objective)

# Levels at which the curve is tabulated: 4 per decade down to 1e-300. Rate signals with a
# ~0 baseline give astronomically small p-values to noise the Gaussian test does not model
# (a few sparse errors); the simulation, not the nominal level, says what they cost.
ALPHA_GRID: tuple[float, ...] = tuple(10.0 ** (-k / 4.0) for k in range(1200, 7, -1))


class _Recorder(OnlineDetector):
    def __init__(self, config: DetectorConfig) -> None:
        super().__init__(config)
        self.times: list[int] = []
        self.p_values: list[float] = []

    def _significant(self, t: int, p_value: float) -> bool:
        if p_value <= MAX_ALPHA:
            self.times.append(t)
            self.p_values.append(p_value)
        return False


def record_tests(values: np.ndarray, config: DetectorConfig) -> tuple[np.ndarray, np.ndarray]:
    """(sample index, p-value) of every step test with p <= MAX_ALPHA, none accepted."""
    recorder = _Recorder(config)
    for value in np.asarray(values, dtype=float).ravel().tolist():
        recorder.update(value)
    return np.asarray(recorder.times, np.int64), np.asarray(recorder.p_values, float)


def count_alarms(times: np.ndarray, p_values: np.ndarray, alpha: float, dead: int) -> int:
    """Alarms at level alpha, each followed by `dead` samples in which the fresh detector
    cannot test."""
    alarms, free_at = 0, -1
    for t in times[p_values <= alpha].tolist():
        if t >= free_at:
            alarms += 1
            free_at = t + dead
    return alarms


@dataclass(frozen=True)
class Curve:
    key: str
    signal: str
    days: float
    seeds: str  # e.g. "0-199"
    points: tuple[tuple[float, float], ...]  # (alpha, false alarms per day), alpha ascending

    def as_table_entry(self) -> dict:
        return {"signal": self.signal, "days": self.days, "seeds": self.seeds,
                "points": self.points}


def simulate_curve(
    config: DetectorConfig,
    traces: Iterable[np.ndarray],
    *,
    signal: str,
    seeds: str,
    grid: Sequence[float] = ALPHA_GRID,
) -> Curve:
    traces = list(traces)
    records = [record_tests(values, config) for values in traces]
    samples = 0
    for values in traces:
        samples += np.asarray(values).size
    dead = config.warmup + config.persistence - 1
    days = samples / SAMPLES_PER_DAY
    everything = np.sort(np.concatenate([p for _, p in records])) if records else np.zeros(0)
    points, last_seen, last_rate = [], -1, 0.0
    for alpha in grid:
        # The count only changes where a recorded p-value is passed: reuse it in between.
        seen = int(np.searchsorted(everything, alpha, side="right"))
        if seen != last_seen:
            last_rate = sum(count_alarms(t, p, alpha, dead) for t, p in records) / days
            last_seen = seen
        points.append((alpha, last_rate))
    points = tuple(points)
    # Keep only where the rate changes (plus both ends), so the table stays small.
    kept = [points[0]] + [b for a, b in zip(points, points[1:]) if b[1] != a[1]]
    if kept[-1] != points[-1]:
        kept.append(points[-1])
    kept = thin_points(_with_left_edges(points, kept))
    return Curve(config.calibration_key(), signal, round(days, 3), seeds, tuple(kept))


def thin_points(points: Sequence[tuple[float, float]], rel: float = 0.05):
    """Drop points whose rate is within `rel` of the last kept one (both ends stay), so a curve
    holds tens of points, not hundreds; interpolation error stays within `rel`."""
    out = [points[0]]
    for k, (a, r) in enumerate(points[1:-1], start=1):
        last = out[-1][1]
        nxt = points[k + 1][1]
        if abs(r - last) > rel * max(last, 1e-12) or (r == last and nxt != r):
            out.append((a, r))
    if len(points) > 1:
        out.append(points[-1])
    return out


def _with_left_edges(points, kept):
    # For interpolation each step needs the last alpha before it too.
    out, index = [], {a: k for k, (a, _) in enumerate(points)}
    for a, r in kept:
        k = index[a]
        if k > 0 and (not out or out[-1][0] != points[k - 1][0]):
            out.append(points[k - 1])
        out.append((a, r))
    deduped = []
    for point in out:
        if not deduped or deduped[-1][0] != point[0]:
            deduped.append(point)
    return deduped


# Per-model objectives other than the presets' 99 % that ship calibrated (MonitorConfig.objectives).
CALIBRATED_OBJECTIVES = (0.995, 0.999)


def calibration_configs(
    presets: Mapping[str, DetectorConfig] = SIGNAL_PRESETS,
    objectives: Sequence[float] = CALIBRATED_OBJECTIVES,
) -> dict[str, DetectorConfig]:
    """The presets, plus each error preset at each objective in `objectives`."""
    configs = dict(presets)
    for objective in objectives:
        for name, config in with_objective(presets, objective).items():
            if config.objective is not None and config != presets[name]:
                configs[f"{name}@{objective:g}"] = config
    return configs


def calibrate_presets(
    make_clean_trace,
    seeds: Sequence[int],
    *,
    samples: int = SAMPLES_PER_DAY,
    presets: Mapping[str, DetectorConfig] | None = None,
) -> dict[str, Curve]:
    """One curve per preset from `make_clean_trace(signal, seed, samples)` over `seeds`."""
    presets = calibration_configs() if presets is None else presets
    label = f"{seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])
    curves = {}
    for name, config in presets.items():
        signal = config.calibration or PRESET_SIGNAL[name.split("@")[0]]
        traces = [make_clean_trace(signal, seed, samples) for seed in seeds]
        curves[name] = simulate_curve(config, traces, signal=signal, seeds=label)
    return curves


def write_table(path: Path, curves: Mapping[str, Curve]) -> None:
    lines = ['"""Generated by `sentinel bench detect --calibrate` (sentinel.bench.calibrate): do not edit.',
             "",
             "Per configuration (DetectorConfig.calibration_key): the clean signal simulated, the",
             'simulated days, the tuning seeds, and (alpha, false alarms per day) points."""',
             "", "CURVES: dict = {"]
    for name, c in sorted(curves.items()):
        points = ", ".join(f"({a:.3g}, {r:.4g})" for a, r in c.points)
        lines += [f"    # preset {name}", f"    {c.key!r}: {{",
                  f"        'signal': {c.signal!r}, 'days': {c.days!r}, 'seeds': {c.seeds!r},",
                  f"        'points': ({points},),", "    },"]
    lines.append("}")
    text = "\n".join(lines) + "\n"
    path.write_text(text, encoding="utf-8")


def rate_interval(events: int, days: float, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood) Poisson interval for a rate per day."""
    from scipy.stats import chi2

    tail = (1.0 - confidence) / 2.0
    low = 0.0 if events == 0 else chi2.ppf(tail, 2 * events) / 2.0
    high = chi2.ppf(1.0 - tail, 2 * events + 2) / 2.0
    return low / days, high / days


def mean_time_between(events: int, days: float) -> float:
    """Days between false alarms (inf when none was seen)."""
    return math.inf if events == 0 else days / events
