"""Resource faults of a version, as pure functions of its series: memory that keeps growing (with
the projected time to the memory limit), CPU per request above the known-good version's at the same
load, and server-wide memory pressure. Arrays in, typed findings out; no I/O, no clock.

Memory: a leak is a trend, not a level: every version settles at its own size. The test is a
Theil-Sen slope (robust to the steps an allocator makes) over the version's recent window, with
Kendall's tau for significance, and three guards against growth that is not a leak: a minimum
growth over the window, growth in both halves of the window (a warm-up levels off, an allocator's
one-off step sits in one half), and a projected exhaustion within a horizon (a slow creep that
would take weeks is not worth a rollback).

CPU: per request, because CPU per second moves with the load. Dynamic batching makes CPU per request
itself depend on the load, so the known-good version's samples are only those taken at a request
rate close to the served version's ("at the same load"); with none, there is no verdict."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Sequence

import numpy as np
from scipy import stats

_MIB = 2**20


@dataclass(frozen=True)
class ResourceConfig:
    memory_window_s: float = 120.0  # the version's recent window the trend is fitted on
    memory_min_samples: int = 30
    memory_alpha: float = 1e-3  # Kendall's tau p-value below this = the growth is real
    min_growth_bytes: float = 32 * _MIB  # fitted growth over the window must reach this
    still_growing: float = 0.5  # each half's slope >= this x the whole window's
    horizon_s: float = 24 * 3600.0  # projected exhaustion later than this is not a rollback
    cpu_window_s: float = 60.0
    cpu_min_samples: int = 20
    cpu_alpha: float = 1e-3  # one-sided Mann-Whitney p-value
    # Measured served / known-good ratio (medians) at which a version is degraded. The goal is
    # "1.5x is degraded": at >= 20 samples the median's error is a few percent, so 1.4 catches a
    # true 1.5x every time and a true 1.2x never (tests/unit/test_resource.py).
    cpu_ratio: float = 1.4
    load_tolerance: float = 0.3  # known-good samples within +-30 % of the served request rate
    baseline_window_s: float = 1800.0  # how far back the known-good version's samples may be
    pressure_fraction: float = 0.9  # server memory used / limit at which the server is pressed
    pressure_samples: int = 10  # the median of this many recent scrapes is judged

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) \
                    or not math.isfinite(value) or value <= 0:
                raise ValueError(f"ResourceConfig.{f.name} must be a positive number, got {value!r}")
        for name in ("memory_alpha", "cpu_alpha", "still_growing", "pressure_fraction"):
            if getattr(self, name) >= 1:
                raise ValueError(f"ResourceConfig.{name} must be < 1, got {getattr(self, name)!r}")
        if self.cpu_ratio <= 1:
            raise ValueError(f"ResourceConfig.cpu_ratio must be > 1, got {self.cpu_ratio!r}")


@dataclass(frozen=True)
class MemoryGrowth:
    """The trend of one version's stub memory over its recent window, and where it leads."""

    model: str
    version: str
    at: float  # ts of the newest sample
    samples: int
    window_s: float
    memory_bytes: float  # newest value
    slope_bytes_per_s: float  # Theil-Sen over the window
    early_slope_bytes_per_s: float  # Theil-Sen over the window's first half
    late_slope_bytes_per_s: float  # ... and over its second half
    growth_bytes: float  # slope x window span
    p_value: float  # Kendall's tau, two-sided
    limit_bytes: float | None
    limit_source: str
    headroom_bytes: float | None  # limit - memory in use now
    seconds_to_limit: float | None  # headroom / slope; None when not growing or no limit known
    exhausted_at: float | None  # at + seconds_to_limit
    leaking: bool
    kind: str = "memory_growth"


@dataclass(frozen=True)
class CpuComparison:
    """CPU per request of the served version against the known-good version at the same load."""

    model: str
    version: str
    baseline_version: str
    cpu_ms_per_request: float  # medians
    baseline_cpu_ms_per_request: float
    ratio: float
    request_rate: float
    baseline_request_rate: float
    samples: int
    baseline_samples: int
    p_value: float  # one-sided Mann-Whitney: the served version's samples are larger
    degraded: bool
    kind: str = "cpu_per_request"


@dataclass(frozen=True)
class ServerPressure:
    """Server-wide memory in use against its limit (median of the recent scrapes)."""

    at: float
    memory_used_bytes: float
    limit_bytes: float
    limit_source: str
    fraction: float
    cpu_utilization: float | None
    pressed: bool
    kind: str = "server_pressure"


def _finite(ts: Sequence[float], values: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(ts, dtype=float)
    v = np.asarray(values, dtype=float)
    keep = np.isfinite(t) & np.isfinite(v)
    return t[keep], v[keep]


def _slope(t: np.ndarray, m: np.ndarray) -> float:
    return float(stats.theilslopes(m, t).slope) if len(t) > 1 and np.ptp(m) > 0 else 0.0


def memory_growth(ts: Sequence[float], memory: Sequence[float], *, model: str, version: str,
                  limit_bytes: float | None, used_bytes: float | None = None,
                  limit_source: str = "", config: ResourceConfig = ResourceConfig()
                  ) -> MemoryGrowth | None:
    """The memory trend of a version over the last `memory_window_s` of its samples; None with
    fewer than `memory_min_samples`. `used_bytes` is what counts against the limit now (the
    container's or host's used memory); without it the version's own memory is used, which makes
    the projection optimistic."""
    t, m = _finite(ts, memory)
    if len(t) == 0:
        return None
    keep = t >= t[-1] - config.memory_window_s
    t, m = t[keep], m[keep]
    if len(t) < config.memory_min_samples:
        return None
    half = len(t) // 2
    slope, early, late = (_slope(t, m), _slope(t[:half], m[:half]), _slope(t[half:], m[half:]))
    if slope == 0:
        p = 1.0
    else:
        p = float(stats.kendalltau(t, m).pvalue)
        p = 1.0 if math.isnan(p) else p
    span = float(t[-1] - t[0])
    growth = slope * span
    headroom = seconds = exhausted = None
    if limit_bytes is not None:
        in_use = used_bytes if used_bytes is not None else float(m[-1])
        headroom = max(0.0, limit_bytes - in_use)
        if slope > 0:
            seconds = headroom / slope
            exhausted = float(t[-1]) + seconds
    growing = (slope > 0 and p < config.memory_alpha and growth >= config.min_growth_bytes
               and min(early, late) >= config.still_growing * slope)
    # No limit known at all: a growth that passes every test is still a leak, only without a date.
    leaking = growing and (seconds is None or seconds <= config.horizon_s)
    return MemoryGrowth(model=model, version=version, at=float(t[-1]), samples=len(t),
                        window_s=span, memory_bytes=float(m[-1]), slope_bytes_per_s=slope,
                        early_slope_bytes_per_s=early, late_slope_bytes_per_s=late, growth_bytes=growth, p_value=p,
                        limit_bytes=limit_bytes, limit_source=limit_source,
                        headroom_bytes=headroom, seconds_to_limit=seconds,
                        exhausted_at=exhausted, leaking=leaking)


def cpu_per_request(cpu_ms: Sequence[float], rate: Sequence[float],
                    baseline_cpu_ms: Sequence[float], baseline_rate: Sequence[float], *,
                    model: str, version: str, baseline_version: str,
                    config: ResourceConfig = ResourceConfig()) -> CpuComparison | None:
    """The served version's recent CPU per request (samples already limited to its window)
    against the known-good version's samples taken at a request rate within `load_tolerance` of
    the served median rate. None when either side has fewer than `cpu_min_samples`."""
    cpu, r = _finite(cpu_ms, rate)
    if len(cpu) < config.cpu_min_samples:
        return None
    served_rate = float(np.median(r))
    base_cpu, base_r = _finite(baseline_cpu_ms, baseline_rate)
    same_load = np.abs(base_r - served_rate) <= config.load_tolerance * served_rate
    base_cpu, base_r = base_cpu[same_load], base_r[same_load]
    if len(base_cpu) < config.cpu_min_samples:
        return None
    med, base_med = float(np.median(cpu)), float(np.median(base_cpu))
    ratio = med / base_med if base_med > 0 else math.inf
    p = float(stats.mannwhitneyu(cpu, base_cpu, alternative="greater").pvalue)
    return CpuComparison(model=model, version=version, baseline_version=baseline_version,
                         cpu_ms_per_request=med, baseline_cpu_ms_per_request=base_med,
                         ratio=ratio, request_rate=served_rate,
                         baseline_request_rate=float(np.median(base_r)), samples=len(cpu),
                         baseline_samples=len(base_cpu), p_value=p,
                         degraded=ratio >= config.cpu_ratio and p < config.cpu_alpha)


def server_pressure(ts: Sequence[float], used: Sequence[float], *, limit_bytes: float | None,
                    limit_source: str, cpu_utilization: float | None = None,
                    config: ResourceConfig = ResourceConfig()) -> ServerPressure | None:
    """Server-wide memory in use against the limit; the median of the last `pressure_samples`
    scrapes, so one busy moment is not pressure. None without a limit or enough samples."""
    t, u = _finite(ts, used)
    if limit_bytes is None or limit_bytes <= 0 or len(u) < config.pressure_samples:
        return None
    level = float(np.median(u[-config.pressure_samples:]))
    fraction = level / limit_bytes
    return ServerPressure(at=float(t[-1]), memory_used_bytes=level, limit_bytes=limit_bytes,
                          limit_source=limit_source, fraction=fraction,
                          cpu_utilization=cpu_utilization,
                          pressed=fraction >= config.pressure_fraction)


def describe(finding) -> str:
    """One line a person reads in a decision's reason."""
    if isinstance(finding, MemoryGrowth):
        rate = finding.slope_bytes_per_s * 60 / _MIB
        text = (f"memory of {finding.model} v{finding.version} grows {rate:.1f} MiB/min "
                f"(+{finding.growth_bytes / _MIB:.0f} MiB in {finding.window_s:.0f}s, "
                f"p={finding.p_value:.1g}, now {finding.memory_bytes / _MIB:.0f} MiB)")
        if finding.seconds_to_limit is not None:
            text += (f"; at this rate the memory limit ({finding.limit_bytes / 2**30:.1f} GiB, "
                     f"{finding.limit_source}) is reached in {duration_text(finding.seconds_to_limit)}")
        else:
            text += "; no memory limit known to project to"
        return text
    if isinstance(finding, CpuComparison):
        return (f"CPU per request of {finding.model} v{finding.version} is "
                f"{finding.cpu_ms_per_request:.3g} ms against {finding.baseline_cpu_ms_per_request:.3g} ms "
                f"for known-good v{finding.baseline_version} at the same load "
                f"({finding.request_rate:.0f} vs {finding.baseline_request_rate:.0f} requests/s): "
                f"x{finding.ratio:.2f} (p={finding.p_value:.1g})")
    if isinstance(finding, ServerPressure):
        return (f"server memory in use {finding.memory_used_bytes / 2**30:.1f} GiB of "
                f"{finding.limit_bytes / 2**30:.1f} GiB ({finding.fraction:.0%}, {finding.limit_source})")
    return repr(finding)


def duration_text(seconds: float) -> str:
    """A projection's time as the reasons and the pages write it (45 s, 12 min, 3.5 h)."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
