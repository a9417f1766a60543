"""Measures monitor.detect on labelled data: NAB series and seeded synthetic serving traces.

Reading NAB files is the only I/O here; scoring and trace generation are pure functions.
"""

from __future__ import annotations

import csv
import fnmatch
import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.signal import lfilter

from monitor.anomaly import AnomalyConfig, detect_anomalies
from monitor.detect import SIGNAL_PRESETS, ChangePoint, DetectorConfig, detect_series

# --------------------------------------------------------------------------- NAB


class NabError(RuntimeError):
    """The NAB directory is missing a file or a file cannot be parsed."""


@dataclass(frozen=True)
class NabSeries:
    name: str  # "category/file.csv", the key used by NAB's label files
    values: np.ndarray
    windows: tuple[tuple[int, int], ...]  # inclusive sample-index ranges of labelled anomalies


@dataclass(frozen=True)
class CostProfile:
    tp_weight: float = 1.0
    fp_weight: float = 0.11
    fn_weight: float = 1.0


STANDARD_PROFILE = CostProfile()


@dataclass(frozen=True)
class SeriesScore:
    name: str
    samples: int
    windows: int
    hits: int  # windows with at least one detection inside
    false_positives: int  # detections outside every window
    delays: tuple[int, ...]  # samples from window start to its first detection
    nab_windows: int  # windows NAB scores (not wholly inside the probationary period)
    nab_raw: float


@dataclass(frozen=True)
class DetectionSummary:
    series: int
    samples: int
    windows: int
    hits: int
    false_positives: int
    precision: float
    recall: float
    f1: float
    median_delay: float
    fp_per_1000: float
    nab_score: float  # NAB-normalised: 0 = detects nothing, 100 = perfect


# NAB split by file, fixed: within each category (files sorted by name) every other file, from
# the first, is for tuning; the rest are for evaluation. Nothing is tuned on the evaluation half.
NAB_TUNING_FILES = (
    "artificialNoAnomaly/art_daily_no_noise.csv",
    "artificialNoAnomaly/art_daily_small_noise.csv",
    "artificialNoAnomaly/art_noisy.csv",
    "artificialWithAnomaly/art_daily_flatmiddle.csv",
    "artificialWithAnomaly/art_daily_jumpsup.csv",
    "artificialWithAnomaly/art_increase_spike_density.csv",
    "realAWSCloudwatch/ec2_cpu_utilization_24ae8d.csv",
    "realAWSCloudwatch/ec2_cpu_utilization_5f5533.csv",
    "realAWSCloudwatch/ec2_cpu_utilization_825cc2.csv",
    "realAWSCloudwatch/ec2_cpu_utilization_c6585a.csv",
    "realAWSCloudwatch/ec2_disk_write_bytes_1ef3de.csv",
    "realAWSCloudwatch/ec2_network_in_257a54.csv",
    "realAWSCloudwatch/elb_request_count_8c0756.csv",
    "realAWSCloudwatch/iio_us-east-1_i-a2eb1cd9_NetworkIn.csv",
    "realAWSCloudwatch/rds_cpu_utilization_e47b3b.csv",
    "realAdExchange/exchange-2_cpc_results.csv",
    "realAdExchange/exchange-3_cpc_results.csv",
    "realAdExchange/exchange-4_cpc_results.csv",
    "realKnownCause/ambient_temperature_system_failure.csv",
    "realKnownCause/ec2_request_latency_system_failure.csv",
    "realKnownCause/nyc_taxi.csv",
    "realKnownCause/rogue_agent_key_updown.csv",
    "realTraffic/TravelTime_387.csv",
    "realTraffic/occupancy_6005.csv",
    "realTraffic/speed_6005.csv",
    "realTraffic/speed_t4013.csv",
    "realTweets/Twitter_volume_AAPL.csv",
    "realTweets/Twitter_volume_CRM.csv",
    "realTweets/Twitter_volume_FB.csv",
    "realTweets/Twitter_volume_IBM.csv",
    "realTweets/Twitter_volume_PFE.csv",
)


NAB_HALVES = ("tuning", "evaluation", "all")


def nab_half(series: Sequence["NabSeries"], half: str) -> list["NabSeries"]:
    if half not in NAB_HALVES:
        raise ValueError(f"NAB half {half!r}: expected one of {NAB_HALVES}")
    if half == "all":
        return list(series)
    tuning = set(NAB_TUNING_FILES)
    return [s for s in series if (s.name in tuning) == (half == "tuning")]


def load_nab(nab_dir: Path, patterns: Sequence[str] = ("*",)) -> list[NabSeries]:
    """Series named in labels/combined_windows.json whose name matches any glob pattern."""
    labels_path = Path(nab_dir) / "labels" / "combined_windows.json"
    if not labels_path.is_file():
        raise NabError(f"NAB labels not found: {labels_path}")
    labels = _read_json(labels_path)
    chosen = sorted(n for n in labels if any(fnmatch.fnmatch(n, p) for p in patterns))
    return [_load_one(Path(nab_dir) / "data" / name, name, labels[name]) for name in chosen]


def _load_one(path: Path, name: str, raw_windows: list[list[str]]) -> NabSeries:
    if not path.is_file():
        raise NabError(f"NAB series not found: {path}")
    with path.open(newline="") as handle:
        rows = [row for row in csv.reader(handle) if row]
    try:
        stamps = np.array([r[0] for r in rows[1:]], dtype="datetime64[s]")
        values = np.array([float(r[1]) if r[1].strip() else math.nan for r in rows[1:]])
    except (ValueError, IndexError) as exc:
        raise NabError(f"{path}: not a timestamp,value CSV ({exc})") from exc
    try:
        bounds = [(np.datetime64(lo, "s"), np.datetime64(hi, "s")) for lo, hi in raw_windows]
    except (ValueError, TypeError) as exc:
        raise NabError(f"labels for {name}: not [start, end] timestamps ({exc})") from exc
    windows = []
    for start, end in bounds:
        lo = int(np.searchsorted(stamps, start, side="left"))
        hi = int(np.searchsorted(stamps, end, side="right")) - 1
        if lo <= hi:
            windows.append((lo, hi))
    return NabSeries(name=name, values=values, windows=tuple(windows))


def load_cost_profile(nab_dir: Path, name: str = "standard") -> CostProfile:
    path = Path(nab_dir) / "config" / "profiles.json"
    if not path.is_file():
        return STANDARD_PROFILE
    try:
        matrix = _read_json(path)[name]["CostMatrix"]
        return CostProfile(matrix["tpWeight"], matrix["fpWeight"], matrix["fnWeight"])
    except (KeyError, TypeError) as exc:
        raise NabError(f"{path}: no cost matrix for profile {name!r} ({exc})") from exc


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise NabError(f"cannot read {path}: {exc}") from exc


def _scaled_sigmoid(position: float) -> float:
    # NAB's reward curve: ~+1 at a window's left edge, 0 at its right edge, -> -1 far past it.
    if position >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def score_detections(
    detections: Sequence[int],
    windows: Sequence[tuple[int, int]],
    samples: int,
    *,
    name: str = "",
    profile: CostProfile = STANDARD_PROFILE,
    probation: float = 0.15,
) -> SeriesScore:
    """Window hits, false positives and delays, plus NAB's raw score for binary detections.

    Simplified metrics: a detection inside a window hits it (only the first counts, later ones
    in the same window are neither hit nor FP); a detection outside every window is a FP.
    NAB score: as NAB's sweeper with detections as anomaly scores of 1.0 — detections in the
    probationary period (the first min(15 %, 750) samples) are ignored, a window's reward is the
    scaled sigmoid of its first detection's position, a FP costs fp_weight scaled by its distance
    past the previous window, a missed window costs fn_weight.
    """
    windows = sorted(windows)
    probation_len = min(math.floor(probation * samples), probation * 5000)
    first_hit: dict[int, int] = {}  # window -> first detection inside it
    first_scored: dict[int, int] = {}  # the same, ignoring the probationary period (NAB)
    false_positives = 0
    nab_raw = 0.0
    for d in sorted(detections):
        inside = next((k for k, (lo, hi) in enumerate(windows) if lo <= d <= hi), None)
        scored = d >= probation_len
        if inside is not None:
            first_hit.setdefault(inside, d)
            if scored:
                first_scored.setdefault(inside, d)
            continue
        false_positives += 1
        if scored:
            nab_raw += profile.fp_weight * _scaled_sigmoid(_position_past(d, windows))
    max_tp = _scaled_sigmoid(-1.0)
    nab_windows = 0
    for k, (lo, hi) in enumerate(windows):
        if hi < probation_len:
            continue
        nab_windows += 1
        d = first_scored.get(k)
        if d is None:
            nab_raw -= profile.fn_weight
        else:
            position = -(hi - d + 1) / (hi - lo + 1)
            nab_raw += profile.tp_weight * _scaled_sigmoid(position) / max_tp
    return SeriesScore(
        name=name,
        samples=samples,
        windows=len(windows),
        hits=len(first_hit),
        false_positives=false_positives,
        delays=tuple(first_hit[k] - windows[k][0] for k in sorted(first_hit)),
        nab_windows=nab_windows,
        nab_raw=nab_raw,
    )


def _position_past(d: int, windows: Sequence[tuple[int, int]]) -> float:
    previous = [(lo, hi) for lo, hi in windows if hi < d]
    if not previous:
        return 3.0  # before any window: full FP cost
    lo, hi = previous[-1]
    return abs(d - hi) / max(hi - lo, 1)


def summarize(
    scores: Sequence[SeriesScore], profile: CostProfile = STANDARD_PROFILE
) -> DetectionSummary:
    hits = sum(s.hits for s in scores)
    windows = sum(s.windows for s in scores)
    fps = sum(s.false_positives for s in scores)
    samples = sum(s.samples for s in scores)
    precision = hits / (hits + fps) if hits + fps else math.nan
    recall = hits / windows if windows else math.nan
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    delays = [d for s in scores for d in s.delays]
    nab_windows = sum(s.nab_windows for s in scores)
    null = -profile.fn_weight * nab_windows
    perfect = profile.tp_weight * nab_windows
    raw = sum(s.nab_raw for s in scores)
    return DetectionSummary(
        series=len(scores),
        samples=samples,
        windows=windows,
        hits=hits,
        false_positives=fps,
        precision=precision,
        recall=recall,
        f1=f1 if not math.isnan(f1) else 0.0,
        median_delay=float(np.median(delays)) if delays else math.nan,
        fp_per_1000=1000.0 * fps / samples if samples else math.nan,
        nab_score=100.0 * (raw - null) / (perfect - null) if perfect > null else math.nan,
    )


def evaluate_nab(
    series: Sequence[NabSeries],
    config: DetectorConfig = DetectorConfig(),
    profile: CostProfile = STANDARD_PROFILE,
) -> tuple[DetectionSummary, list[SeriesScore]]:
    """Alarms are scored at `detected_at`: that is when an online detector would raise them."""
    return _score_nab(series, lambda v: [cp.detected_at for cp in detect_series(v, config)],
                      profile)


def evaluate_nab_alerts(
    series: Sequence[NabSeries],
    config: AnomalyConfig = AnomalyConfig(),
    profile: CostProfile = STANDARD_PROFILE,
) -> tuple[DetectionSummary, list[SeriesScore]]:
    """The alert channel (monitor.anomaly) scored like evaluate_nab, at each alert's sample."""
    return _score_nab(series, lambda v: [a.index for a in detect_anomalies(v, config)], profile)


def _score_nab(series: Sequence[NabSeries], alarms, profile: CostProfile):
    scores = [score_detections(alarms(s.values), s.windows, s.values.size, name=s.name,
                               profile=profile) for s in series]
    return summarize(scores, profile), scores


# ------------------------------------------------------------------ synthetic traces

DAY_SECONDS = 86_400

# Named, disjoint seed sets of the trace generator. The presets' shapes were chosen and their
# levels calibrated on TUNING_SEEDS only; the bench reports EVALUATION_SEEDS; unit tests use
# TEST_SEEDS, which neither saw.
TUNING_SEEDS = range(0, 200)
EVALUATION_SEEDS = range(10_000, 10_200)
TEST_SEEDS = range(20_000, 20_100)


@dataclass(frozen=True)
class Fault:
    name: str
    signal: str  # which derived signal (and preset) sees it
    description: str
    size: float  # error/NaN probability, latency factor, or score shift


FAULTS: tuple[Fault, ...] = (
    Fault("error_rate_jump", "error_rate", "error rate 0.2 % -> 30 %", 0.3),
    Fault("latency_jump", "latency_ms", "mean latency x2 (+100 %)", 2.0),
    # Smaller faults than the brief's, to show where sensitivity ends.
    Fault("latency_jump", "latency_ms", "mean latency x1.5 (+50 %)", 1.5),
    Fault("error_rate_jump", "error_rate", "error rate 0.2 % -> 10 %", 0.1),
    # At the preset's min_effect_abs (0.05): borderline by design.
    Fault("error_rate_jump", "error_rate", "error rate 0.2 % -> 5 %", 0.05),
    Fault("score_shift", "score_mean", "mean output score +0.15", 0.15),
    Fault("constant_scores", "score_std", "outputs constant: per-second score std -> 0", 0.0),
    # The same fault through the mean: it stays put, so this row shows why score_std exists.
    Fault("constant_scores", "score_mean", "outputs constant at the old mean", 0.0),
    Fault("nan_rate_jump", "nan_rate", "NaN outputs 0 -> 50 %", 0.5),
)

CLEAN_SIGNALS = ("error_rate", "latency_ms", "score_mean", "score_std", "nan_rate", "request_rate")


def _ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    """Stationary AR(1) with marginal standard deviation sd."""
    shocks = rng.standard_normal(n) * sd * math.sqrt(1.0 - phi * phi)
    shocks[0] = rng.standard_normal() * sd
    return lfilter([1.0], [1.0, -phi], shocks)


def make_trace(
    signal: str,
    seed: int,
    samples: int = DAY_SECONDS,
    *,
    fault: Fault | None = None,
    onset: int | None = None,
    base_rps: float = 40.0,
    base_error: float = 0.002,
) -> np.ndarray:
    """One derived signal at 1 sample/s: daily load cycle (random phase), +10 %/day trend,
    AR(1) load and level noise, per-second sampling noise from ~base_rps requests, rare
    one-second bursts (error bursts, GC pauses), NaN where a second had no requests.
    With `fault`, the fault holds from `onset` on."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples)
    phase = rng.uniform(0.0, 2.0 * math.pi)
    cycle = np.sin(2.0 * math.pi * t / DAY_SECONDS + phase)
    trend = 1.0 + 0.1 * t / DAY_SECONDS
    load = base_rps * (1.0 + 0.5 * cycle) * trend * np.exp(_ar1(rng, samples, 0.95, 0.1))
    requests = rng.poisson(load).astype(float)
    served = np.maximum(requests, 1.0)
    onset = samples // 2 if onset is None else onset
    faulty = np.zeros(samples, bool)
    kind = fault.name if fault is not None else ""
    if fault is not None:
        faulty[onset:] = True
    burst = rng.random(samples) < 1.0 / 3600.0  # ~24 one-second bursts per day

    if signal == "request_rate":
        return requests
    if signal in ("error_rate", "nan_rate"):
        base_p = base_error if signal == "error_rate" else 0.0
        p = np.where(burst, 0.5, base_p)
        if kind in ("error_rate_jump", "nan_rate_jump"):
            p = np.where(faulty, fault.size, p)
        values = rng.binomial(requests.astype(np.int64), p) / served
    elif signal == "latency_ms":
        level = 20.0 * (1.0 + 0.3 * (load / base_rps - 1.0)) * trend
        level = level * np.exp(_ar1(rng, samples, 0.8, 0.08))
        level = np.where(burst, 4.0 * level, level)
        if kind == "latency_jump":
            level = np.where(faulty, fault.size * level, level)
        values = level * (1.0 + 0.6 * rng.standard_normal(samples) / np.sqrt(served))
    elif signal == "score_mean":
        level = 0.35 + 0.03 * cycle + _ar1(rng, samples, 0.9, 0.01)
        if kind == "score_shift":
            level = np.where(faulty, level + fault.size, level)
        values = level + 0.2 * rng.standard_normal(samples) / np.sqrt(served)
        if kind == "constant_scores":
            values = np.where(faulty, level[onset], values)
    elif signal == "score_std":
        level = 0.2 * (1.0 + _ar1(rng, samples, 0.9, 0.03))
        values = level * (1.0 + rng.standard_normal(samples) / np.sqrt(2.0 * served))
        if kind == "constant_scores":
            values = np.where(faulty, fault.size, values)
    else:
        raise ValueError(f"unknown signal {signal!r}; expected one of {CLEAN_SIGNALS}")
    return np.where(requests > 0, values, math.nan)


@dataclass(frozen=True)
class SyntheticResult:
    case: str  # fault name, or "clean"
    signal: str
    description: str
    seeds: int
    detected: int  # fault traces: seeds with a detection in [onset, onset + max_delay]
    median_delay: float  # samples (= seconds at 1 sample/s)
    max_delay: float
    false_alarms: int  # detections other than that first hit
    false_alarms_per_day: float
    samples: int
    seconds: float  # CPU wall time spent in detect_series

    @property
    def detection_rate(self) -> float:
        return self.detected / self.seeds if self.seeds else math.nan


def _timed_detect(values: np.ndarray, config: DetectorConfig) -> tuple[list[ChangePoint], float]:
    started = time.perf_counter()
    points = detect_series(values, config)
    return points, time.perf_counter() - started


def evaluate_fault(
    fault: Fault,
    seeds: Sequence[int],
    config: DetectorConfig | None = None,
    *,
    samples: int = 3600,
    max_delay: int = 300,
) -> SyntheticResult:
    """One-hour traces with the fault starting at a seeded time in the second quarter."""
    config = config or SIGNAL_PRESETS[fault.signal]
    delays, false_alarms, spent = [], 0, 0.0
    for seed in seeds:
        onset = int(np.random.default_rng([seed, 1]).integers(samples // 4, samples // 2))
        values = make_trace(fault.signal, seed, samples, fault=fault, onset=onset)
        points, seconds = _timed_detect(values, config)
        spent += seconds
        hits = [cp.detected_at for cp in points if onset <= cp.detected_at <= onset + max_delay]
        if hits:
            delays.append(hits[0] - onset)
        false_alarms += len(points) - (1 if hits else 0)
    return SyntheticResult(
        case=fault.name,
        signal=fault.signal,
        description=fault.description,
        seeds=len(seeds),
        detected=len(delays),
        median_delay=float(np.median(delays)) if delays else math.nan,
        max_delay=float(max(delays)) if delays else math.nan,
        false_alarms=false_alarms,
        false_alarms_per_day=false_alarms * DAY_SECONDS / (samples * len(seeds)),
        samples=samples * len(seeds),
        seconds=spent,
    )


@dataclass(frozen=True)
class CleanCase:
    label: str
    signal: str
    description: str
    config: DetectorConfig | None = None  # None = SIGNAL_PRESETS[signal]
    fault: Fault | None = None  # held from sample 0: a steady degraded level


def evaluate_clean(
    case: CleanCase, seeds: Sequence[int], *, samples: int = DAY_SECONDS
) -> SyntheticResult:
    """Every detection is a false alarm, reported per simulated day."""
    config = case.config or SIGNAL_PRESETS[case.signal]
    false_alarms, spent = 0, 0.0
    for seed in seeds:
        points, seconds = _timed_detect(
            make_trace(case.signal, seed, samples, fault=case.fault, onset=0), config
        )
        false_alarms += len(points)
        spent += seconds
    return SyntheticResult(
        case=case.label,
        signal=case.signal,
        description=case.description,
        seeds=len(seeds),
        detected=0,
        median_delay=math.nan,
        max_delay=math.nan,
        false_alarms=false_alarms,
        false_alarms_per_day=false_alarms * DAY_SECONDS / (samples * len(seeds)),
        samples=samples * len(seeds),
        seconds=spent,
    )


_STEADY_ERRORS = Fault("error_rate_jump", "error_rate", "steady 5 % error rate", 0.05)
_ERROR_PRESET = SIGNAL_PRESETS["error_rate"]

CLEAN_CASES: tuple[CleanCase, ...] = tuple(
    CleanCase("clean", s, "daily cycle + trend + AR(1) + 1-s bursts, no fault")
    for s in CLEAN_SIGNALS
) + (
    # The state after an alarm nobody rolled back: a high, noisy (binomial) error rate.
    CleanCase("steady", "error_rate", "steady 5 % error rate", None, _STEADY_ERRORS),
    # Ablations: why the rate presets test on the arcsine scale with a pooled variance.
    CleanCase("steady, ablation", "error_rate", "as above, transform='none'",
              replace(_ERROR_PRESET, transform="none"), _STEADY_ERRORS),
    CleanCase("steady, ablation", "error_rate",
              "as above, transform='none', variance='sandwich' (statsmodels HAC)",
              replace(_ERROR_PRESET, transform="none", variance="sandwich"), _STEADY_ERRORS),
    # What the false-alarm test guards against: no minimum effect, alpha = 0.5.
    CleanCase("clean, broken config", "latency_ms", "min_effect 0, alpha 0.5",
              replace(SIGNAL_PRESETS["latency_ms"], alpha=0.5, min_effect_abs=0.0,
                      min_effect_rel=0.0)),
)


def evaluate_synthetic(
    seeds: Sequence[int], *, day_samples: int = DAY_SECONDS
) -> list[SyntheticResult]:
    results = [evaluate_fault(fault, seeds) for fault in FAULTS]
    return results + [evaluate_clean(case, seeds, samples=day_samples) for case in CLEAN_CASES]


# ------------------------------------------------------------------ error budgets

BUDGET_DELTAS = (0.01, 0.02, 0.05)  # added error probability over the clean ~0.2 % baseline
BUDGET_RATES = (20.0, 100.0, 400.0)  # requests per second
BUDGET_PRESETS = ("error_rate", "error_budget")  # both read error_rate; decide sees either


@dataclass(frozen=True)
class BudgetResult:
    delta: float
    rps: float
    seeds: int
    detected: int
    median_delay: float
    max_delay: float
    clean_days: float
    clean_false_alarms: int

    @property
    def false_alarms_per_day(self) -> float:
        return self.clean_false_alarms / self.clean_days if self.clean_days else math.nan


def _first_alarms(values: np.ndarray, presets: Sequence[str]) -> list[int]:
    found = []
    for name in presets:
        found += [cp.detected_at for cp in detect_series(values, SIGNAL_PRESETS[name])]
    return sorted(found)


def evaluate_budget(
    seeds: Sequence[int],
    *,
    clean_seeds: Sequence[int] | None = None,
    samples: int = 3600,
    clean_samples: int = DAY_SECONDS,
    max_delay: int = 600,
    presets: Sequence[str] = BUDGET_PRESETS,
) -> list[BudgetResult]:
    """+1/2/5 % errors at 20/100/400 requests/s: delay to the first alarm of either error preset,
    misses (no alarm within max_delay), and false alarms per day on clean traffic at that rate."""
    clean_seeds = seeds if clean_seeds is None else clean_seeds
    results = []
    for rps in BUDGET_RATES:
        clean_alarms = sum(
            len(_first_alarms(make_trace("error_rate", seed, clean_samples, base_rps=rps), presets))
            for seed in clean_seeds)
        clean_days = len(clean_seeds) * clean_samples / DAY_SECONDS
        for delta in BUDGET_DELTAS:
            fault = Fault("error_rate_jump", "error_rate", f"+{delta:.0%} errors", 0.002 + delta)
            delays = []
            for seed in seeds:
                onset = int(np.random.default_rng([seed, 1]).integers(samples // 4, samples // 2))
                values = make_trace("error_rate", seed, samples, fault=fault, onset=onset,
                                    base_rps=rps)
                hits = [t for t in _first_alarms(values, presets) if onset <= t <= onset + max_delay]
                if hits:
                    delays.append(hits[0] - onset)
            results.append(BudgetResult(
                delta=delta, rps=rps, seeds=len(seeds), detected=len(delays),
                median_delay=float(np.median(delays)) if delays else math.nan,
                max_delay=float(max(delays)) if delays else math.nan,
                clean_days=clean_days, clean_false_alarms=clean_alarms))
    return results
