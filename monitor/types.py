"""Typed records that cross module boundaries in the monitor (scrape -> store -> decide -> record)."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Union

from monitor.quality import QualityAssessment

# Triton's own failure reasons (2.51) and the custom error reasons model.py reports. Unknown reasons
# still count in the totals; only these get a per-reason signal column.
TRITON_FAILURE_REASONS = ("BACKEND", "REJECTED", "CANCELED", "OTHER")
SENTINEL_ERROR_REASONS = ("invalid_input", "runtime", "fault", "upstream")

ScrapePhase = Literal["ok", "error"]
Phase = Literal["healthy", "degraded", "inconclusive", "error"]
Action = Literal["none", "rollback", "reload", "alert"]
ProbeStatus = Literal["ok", "mismatch", "timeout", "error"]
Direction = Literal["up", "down"]


class FrozenDict(dict):
    """A read-only dict that still pickles, deep-copies and hashes (MappingProxyType does not)."""

    def _read_only(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(f"{type(self).__name__} is read-only")

    __setitem__ = __delitem__ = __ior__ = _read_only  # type: ignore[assignment]
    clear = pop = popitem = setdefault = update = _read_only  # type: ignore[assignment]

    def __reduce__(self) -> tuple:
        return (type(self), (dict(self),))

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))


# ---------------------------------------------------------------- scrape


@dataclass(frozen=True)
class ScoreHistogram:
    """Cumulative Prometheus histogram: upper bounds sorted ascending (+Inf last) and their counts."""

    bounds: tuple[float, ...]
    counts: tuple[float, ...]  # cumulative, same length as bounds
    sum: float
    count: float

    @property
    def buckets(self) -> tuple[tuple[float, float], ...]:
        return tuple(zip(self.bounds, self.counts))


@dataclass(frozen=True)
class VersionSample:
    """Raw cumulative values for one (model, version) at one scrape. None = not exported."""

    model: str
    version: str
    success: float | None = None
    failures: tuple[tuple[str, float], ...] = ()  # (reason, cumulative count)
    inference_count: float | None = None
    exec_count: float | None = None
    pending: float | None = None  # gauge
    request_duration_us: float | None = None
    queue_duration_us: float | None = None
    compute_input_duration_us: float | None = None
    compute_infer_duration_us: float | None = None
    compute_output_duration_us: float | None = None
    score: ScoreHistogram | None = None
    nonfinite: float | None = None
    requests: float | None = None  # sentinel_requests_total (requests seen by model.py)
    rows: float | None = None  # sentinel_output_rows_total
    request_errors: tuple[tuple[str, float], ...] = ()  # sentinel_request_errors_total by reason
    stub_memory_bytes: float | None = None  # resident memory of the version's stubs (gauge, summed)
    stub_cpu_seconds: float | None = None  # CPU seconds of the version's stubs (counter, summed)

    @property
    def key(self) -> tuple[str, str]:
        return (self.model, self.version)

    @property
    def failure_total(self) -> float | None:
        return sum(v for _, v in self.failures) if self.failures else None

    @property
    def request_error_total(self) -> float | None:
        return sum(v for _, v in self.request_errors) if self.request_errors else None


@dataclass(frozen=True)
class GpuSample:
    """Triton's per-GPU gauges (nv_gpu_*), labelled by gpu_uuid."""

    uuid: str
    utilization: float | None = None  # 0..1
    memory_used_bytes: float | None = None
    memory_total_bytes: float | None = None


@dataclass(frozen=True)
class ServerResources:
    """Triton's server-wide gauges at one scrape (nv_cpu_*, nv_gpu_*); None = not exported."""

    cpu_utilization: float | None = None  # 0..1 over all cores of the host
    memory_used_bytes: float | None = None  # the host's (or container's) used memory
    memory_total_bytes: float | None = None
    gpus: tuple[GpuSample, ...] = ()


@dataclass(frozen=True)
class Scrape:
    """One scrape of a metrics endpoint. A failed scrape is data (phase "error"), never an exception."""

    ts: float
    phase: ScrapePhase
    samples: tuple[VersionSample, ...] = ()
    error: str | None = None
    duration_s: float = 0.0
    source: str = ""
    server: ServerResources | None = None  # server-wide resources, when the source exports them

    @property
    def ok(self) -> bool:
        return self.phase == "ok"

    def sample(self, model: str, version: str) -> VersionSample | None:
        for s in self.samples:
            if s.model == model and s.version == version:
                return s
        return None

    def versions(self) -> list[tuple[str, str]]:
        return sorted(s.key for s in self.samples)


@dataclass(frozen=True)
class ScrapeOutcome:
    ts: float
    ok: bool
    error: str | None = None


# ---------------------------------------------------------------- store


@dataclass(frozen=True)
class SignalPoint:
    """Derived signals for one interval between two consecutive scrapes of a (model, version).

    NaN = missing (no traffic in the interval, metric not exported, or a reset interval)."""

    ts: float
    model: str
    version: str
    reset: bool  # counters went down (Triton restart / version reload): no derived values
    interval_s: float
    requests: float  # Δ(success + failure) in the interval
    failures: float  # Δ Triton failures (all reasons)
    request_rate: float  # requests / s
    error_rate: float  # (Δfailures + Δsentinel errors) / Δrequests
    error_rate_backend: float
    error_rate_rejected: float
    error_rate_canceled: float
    error_rate_other: float
    error_rate_invalid_input: float
    error_rate_runtime: float
    error_rate_fault: float
    error_rate_upstream: float
    latency_ms: float  # Δrequest_duration / Δsuccess (Triton times successful requests only)
    queue_ms: float
    compute_input_ms: float
    compute_infer_ms: float
    compute_output_ms: float
    batch_size: float  # Δinference_count / Δexec_count
    pending: float  # gauge at the end of the interval (kept on reset intervals: it is not a delta)
    score_mean: float
    score_std: float  # grouped estimate from bucket deltas with Sheppard's correction
    nan_rate: float  # Δnonfinite / Δrows
    rows_per_request: float  # Δrows / Δsentinel requests (empty results show as a drop)
    memory_bytes: float  # resident memory of the version's stubs at the end of the interval (gauge)
    cpu_ms_per_request: float  # Δstub CPU seconds / Δrequests, in ms
    cpu_cores: float  # Δstub CPU seconds / interval: cores the version's stubs kept busy


_POINT_META = ("ts", "model", "version", "reset")
SIGNAL_NAMES: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(SignalPoint) if f.name not in _POINT_META
)


@dataclass(frozen=True)
class FailureEvidence:
    """Requests and Triton failures of one version summed over a recent window (dead-stub evidence)."""

    model: str
    version: str
    window_s: float
    requests: float
    failures: float

    @property
    def failure_ratio(self) -> float:
        return self.failures / self.requests if self.requests > 0 else float("nan")


# ---------------------------------------------------------------- decide


@dataclass(frozen=True)
class Detection:
    """A change point found on one signal of one version, with times resolved by the poller."""

    model: str
    version: str
    signal: str
    changed_at: float  # time of the estimated change point (the series' ts at the change index)
    detected_at: float  # time the detector raised it
    direction: Direction
    baseline_mean: float = float("nan")
    recent_mean: float = float("nan")
    effect: float = float("nan")
    rel_effect: float = float("nan")
    p_value: float = float("nan")
    statistic: float = float("nan")
    method: str = ""
    index: int = -1


def detection_from_change_point(
    cp: Any, *, model: str, version: str, signal: str, changed_at: float, detected_at: float
) -> Detection:
    """Copy a detect.ChangePoint's fields into a Detection (duck-typed so decide never imports detect)."""
    return Detection(
        model=model,
        version=version,
        signal=signal,
        changed_at=changed_at,
        detected_at=detected_at,
        direction=cp.direction,
        baseline_mean=float(cp.baseline_mean),
        recent_mean=float(cp.recent_mean),
        effect=float(cp.effect),
        rel_effect=float(cp.rel_effect),
        p_value=float(cp.p_value),
        statistic=float(cp.statistic),
        method=str(cp.method),
        index=int(cp.index),
    )


@dataclass(frozen=True)
class VersionState:
    """One row of Triton's repository index for the model."""

    version: str
    state: str  # READY / UNAVAILABLE / UNLOADING / LOADING
    reason: str = ""


@dataclass(frozen=True)
class ProbeResult:
    model: str
    version: str
    ts: float
    status: ProbeStatus
    detail: str = ""
    http_status: int | None = None  # set when Triton answered with an HTTP error

    @property
    def answered_failure(self) -> bool:
        """The version itself failed the request (HTTP 5xx): not a timeout, not an unreachable
        server, not a 404 of a version that was just unloaded."""
        return self.http_status is not None and self.http_status >= 500


@dataclass(frozen=True)
class ActionRecord:
    """An action the monitor already took (for cooldown and rate limits)."""

    ts: float
    kind: Literal["rollback", "reload"]
    model: str
    version: str  # the version loaded by the action


@dataclass(frozen=True)
class DriftFinding:
    """A version's sampled scores against another's (monitor.drift); evidence in decisions
    and retrain events."""

    model: str
    version: str
    against: str                # "version 1" or "its own first hours"
    p_value: float
    psi: float
    samples: int
    reference_samples: int
    drifted: bool
    mean: float = math.nan           # bucket-midpoint means, for the reason text
    reference_mean: float = math.nan


Evidence = Union[Detection, ProbeResult, FailureEvidence, VersionState, ScrapeOutcome,
                 QualityAssessment, DriftFinding]


_DEFAULT_BAD_DIRECTIONS = {
    "error_rate": "up",
    "error_rate_backend": "up",
    "error_rate_rejected": "up",
    "error_rate_canceled": "up",
    "error_rate_other": "up",
    "error_rate_invalid_input": "up",
    "error_rate_runtime": "up",
    "error_rate_fault": "up",
    "error_rate_upstream": "up",
    "latency_ms": "up",
    "queue_ms": "up",
    "compute_input_ms": "up",
    "compute_infer_ms": "up",
    "compute_output_ms": "up",
    "pending": "up",
    "nan_rate": "up",
    "score_mean": "both",
    "score_std": "both",
    "rows_per_request": "down",
}


@dataclass(frozen=True)
class Policy:
    """Limits of automatic action. Times in seconds."""

    cooldown_s: float = 30.0
    max_rollbacks_per_hour: int = 3
    max_reloads_per_hour: int = 3
    consecutive_error_limit: int = 3
    known_good_after_s: float = 60.0
    attribution_slack_s: float = 5.0
    # A change this long after its version's activation is no longer the activation's doing by
    # default: it is a late regression, rolled back only when other watched series stayed fine
    # (else the host, the traffic or a neighbour may have moved it, and it is an alert).
    attribution_window_s: float = 900.0
    detection_window_s: float = 300.0  # detections older than this are history, not evidence
    concurrency_window_s: float = 60.0  # changes elsewhere this close in time = infrastructure-wide
    stale_after_s: float = 15.0  # no sample of the served version for this long = missing data
    dead_stub_failure_ratio: float = 0.95
    dead_stub_min_requests: int = 5
    probe_timeout_limit: int = 2  # consecutive golden-probe timeouts that mean a hung stub
    # One probe timeout means a dead stub when this share of recent requests failed as well
    # (with at least dead_stub_min_requests failures); a stray failure is not enough.
    probe_timeout_failure_ratio: float = 0.2
    probe_failure_limit: int = 2  # golden probes answered with HTTP 5xx in a row: the version fails
    max_known_good_error_rate: float = 0.05  # a version failing more never becomes known good
    reconcile_retry_s: float = 30.0  # a load towards the desired state that failed is retried after
    reload_escalate_s: float = 300.0  # still dead this long after a reload: the version itself is bad
    freeze: bool = False  # global kill switch: decide, but never act
    # Online quality from feedback (monitor.quality; docs/monitor.md, "Online quality"): how many
    # labelled events each side needs, the practical margins and the one-sided confidence of a
    # "worse", and how much of the reference version's newest serving time it is judged against.
    quality_min_labels: int = 1000
    quality_min_positives: int = 50
    quality_auc_margin: float = 0.02
    quality_ndcg_margin: float = 0.02
    quality_min_lists: int = 200
    quality_confidence: float = 0.999
    quality_promote_confidence: float = 0.95  # "within the margin" before it may be known good
    quality_reference_s: float = 6 * 3600.0
    # Prediction drift (monitor.drift): a version's sampled scores against the reference's. A drift
    # needs p ≤ drift_max_p_value and PSI ≥ drift_min_psi; it is a warning (alert, and the version
    # is not vouched for as known good) unless drift_rollback, or quality evidence, says more.
    drift_min_samples: int = 500  # effective samples a side: a request's scores count once
    drift_max_p_value: float = 1e-6
    drift_min_psi: float = 0.2
    drift_rollback: bool = False
    # The known-good version's last retrain_recent_s against its earlier serving time: quality
    # that dropped or scores that moved with no new version to blame is a `retrain` event.
    retrain_recent_s: float = 1800.0
    # Which direction of change is bad per signal: "up", "down" or "both". Signals not listed (request
    # rate, batch size) move with traffic, not with the version, and are never evidence against it.
    bad_directions: Mapping[str, str] = field(
        default_factory=lambda: FrozenDict(_DEFAULT_BAD_DIRECTIONS)
    )


@dataclass(frozen=True)
class DecisionInputs:
    model: str
    served_version: str | None
    now: float
    version_states: tuple[VersionState, ...] = ()  # empty = index not known
    detections: tuple[Detection, ...] = ()  # this model, any version
    other_model_detections: tuple[Detection, ...] = ()  # for infrastructure-wide trouble
    scrape_outcomes: tuple[ScrapeOutcome, ...] = ()  # oldest first
    last_sample_at: float | None = None  # last scrape that carried the served version
    activated_at: float | None = None  # when the served version started serving
    last_known_good: str | None = None
    requested_version: str | None = None  # a version a load was asked for (may have failed)
    actions: tuple[ActionRecord, ...] = ()
    pinned_version: str | None = None  # operator pin: no automatic rollback away from it
    frozen: bool = False  # operator freeze for this model: no actions at all
    probes: tuple[ProbeResult, ...] = ()
    failure_evidence: FailureEvidence | None = None  # served version, recent window
    reset_times: tuple[float, ...] = ()  # counter resets seen on the served version
    # Other (model, version) series with fresh data: with no activation time, "only this version is
    # bad while others are fine" needs others to be observed at all.
    peers_observed: int = 0
    # Online quality from feedback against the last known-good version, while the served version
    # is not yet known good (monitor.quality); None when no feedback is judged for this model.
    quality: QualityAssessment | None = None
    drift: DriftFinding | None = None  # the served version's scores against the reference's
    # The served known-good version's own scores moved against its earlier hours (the retrain
    # check): a change of its score signals is then the inputs', not the version's.
    inputs_drifted: bool = False
    # Resource findings of this model (monitor.resource: MemoryGrowth, CpuComparison,
    # ServerPressure), computed by monitor.resource_watch from the store each cycle.
    resources: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Decision:
    model: str
    served_version: str | None
    ts: float
    phase: Phase
    action: Action
    reason: str
    target_version: str | None = None
    evidence: tuple[Evidence, ...] = ()


@dataclass(frozen=True)
class KnownGoodState:
    """Threaded through update_known_good by the poller, one per model."""

    known_good: str | None = None
    candidate: str | None = None  # served version being watched
    healthy_since: float | None = None


# ---------------------------------------------------------------- record / alert


@dataclass(frozen=True)
class Event:
    ts: float
    model: str
    version: str | None
    kind: str  # "decision", "action", "alert", "operator", ...
    phase: str | None = None
    action: str | None = None
    reason: str = ""
    evidence: Mapping[str, Any] = field(default_factory=dict)
    actor: str = "poller"
    outcome: str | None = None
    id: int | None = None


@dataclass(frozen=True)
class Alert:
    alertname: str
    model: str
    version: str | None
    severity: str = "warning"
    summary: str = ""
    description: str = ""
    extra_labels: Mapping[str, str] = field(default_factory=dict)
    starts_at: float | None = None  # None = now
    ends_at: float | None = None  # set = resolved
    generator_url: str = ""

    def labels(self) -> dict[str, str]:
        labels = {str(k): str(v) for k, v in self.extra_labels.items()}
        labels.update(alertname=self.alertname, model=self.model, severity=self.severity)
        if self.version is not None:
            labels["version"] = self.version
        return labels


@dataclass(frozen=True)
class AlertOutcome:
    status: Literal["sent", "deduplicated", "disabled", "failed"]
    attempts: int = 0
    http_status: int | None = None
    error: str | None = None
