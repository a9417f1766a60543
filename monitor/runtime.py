"""What the poller keeps per model between cycles, and the sidecar's own metrics.

Everything here is a cache of evidence (detectors, probes, recent actions). Which version must serve
is not: that is the desired state in the repository (sentinel.desired_state), re-read every cycle."""
from __future__ import annotations

import collections
import copy
from dataclasses import dataclass, field, replace

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from monitor.detect import SIGNAL_PRESETS, DetectorConfig, OnlineDetector
from monitor.quality import QualityAssessment
from monitor.types import ActionRecord, Decision, Event, KnownGoodState, VersionState
from sentinel.desired_state import DesiredState

# Detector presets the sidecar runs on each model's served stream. error_budget reads the
# error_rate signal too (monitor.detect.PRESET_SIGNAL): the slow channel for 1-5 % error rates.
WATCHED_SIGNALS = ("error_rate", "error_budget", "nan_rate", "latency_ms", "score_mean",
                   "score_std")
PHASES = ("healthy", "degraded", "inconclusive", "error")


@dataclass
class ModelRuntime:
    name: str
    detectors: dict[str, OnlineDetector]
    served: str | None = None
    activated_at: float | None = None
    known: KnownGoodState = field(default_factory=KnownGoodState)
    desired: DesiredState | None = None
    desired_error: str | None = None  # the state file could not be read (named in events/pages)
    requested: str | None = None
    requested_at: float = 0.0
    states: tuple[VersionState, ...] = ()
    observed_once: bool = False  # the index has been applied at least once since the start
    actions: collections.deque = field(default_factory=lambda: collections.deque(maxlen=50))
    probes: collections.deque = field(default_factory=lambda: collections.deque(maxlen=20))
    detections: collections.deque = field(default_factory=lambda: collections.deque(maxlen=50))
    load_failures_seen: set = field(default_factory=set)
    frozen: bool = False  # in-memory freeze of this sidecar only (the desired state's is shared)
    decision: Decision | None = None
    acked: tuple | None = None  # (phase, reason, actor) an operator acknowledged
    last_probe_at: float = float("-inf")
    last_fed_ts: float = float("-inf")
    last_reconcile_at: float = float("-inf")
    last_reconcile_version: str | None = None
    # The last version switch Triton carried out here (kind, version, from, at, outcome, seconds):
    # announced in the replica heartbeat, so the Fleet page can show every replica's reconcile
    # under the decision that caused it.
    last_switch: dict | None = None
    deferred_event: Event | None = None  # a decision judged while following, not carried out
    index_ts: collections.deque = field(default_factory=lambda: collections.deque(maxlen=4096))
    fed: int = 0
    # Detector state of each version from just before it stopped serving, so that a rollback to it
    # resumes with its warm baseline instead of a blind warm-up period.
    snapshots: dict = field(default_factory=dict)
    baseline_reported: set = field(default_factory=set)  # (version, signal) already raised
    pending: str | None = None  # target of an action in flight (the actuator's worker)
    external: bool = False  # served version changed (or was first seen) without our action
    last_served: str | None = None  # what served before the index last showed nothing READY
    reconcile_reason: str = ""
    policy_checked: tuple | None = None  # (generation, version) whose config.pbtxt was verified
    quality: QualityAssessment | None = None  # last online-quality assessment (monitor.quality)
    retrain_found: tuple | None = None  # the judge's last retrain check, (reason, evidence) or None
    retrain_checked_at: float = float("-inf")
    retrain_checked_for: str | None = None

    @property
    def pinned(self) -> str | None:
        return self.desired.pinned if self.desired is not None else None

    @property
    def is_frozen(self) -> bool:
        return self.frozen or (self.desired is not None and self.desired.frozen)

    @property
    def rollback_target(self) -> str | None:
        return self.desired.rollback_target(self.served) if self.desired is not None else None

    @property
    def under_watch(self) -> bool:
        d = self.desired
        return d is not None and d.watch is not None and d.watch.version == self.served

    def rejected(self, version: str | None) -> bool:
        return self.desired is not None and self.desired.is_rejected(version)

    @property
    def counted_actions(self) -> tuple[ActionRecord, ...]:
        """What the rate limits and the cooldown count: the rollbacks in the desired state (every
        replica's, and this sidecar's from before a restart) with this sidecar's own actions in
        memory (reloads restart a stub on this replica only; and all of them when no repository
        holds a desired state). A rollback this sidecar took is in both, with the same time."""
        durable = () if self.desired is None else tuple(
            ActionRecord(r.at, "rollback", self.name, r.target or "") for r in self.desired.rollbacks)
        return tuple(sorted(set(durable) | set(self.actions), key=lambda a: a.ts))

    def snapshot_current(self) -> None:
        if self.served is not None:
            self.snapshots[self.served] = (copy.deepcopy(self.detectors), list(self.index_ts),
                                           self.fed)
            for old in list(self.snapshots)[:-3]:  # a few versions back is enough
                del self.snapshots[old]


class MonitorMetrics:
    """The sidecar's own /metrics, on a registry of its own (never the global one)."""

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self.cycles = Counter("sentinel_monitor_cycles", "Monitoring cycles run", registry=registry)
        self.cycle_seconds = Histogram("sentinel_monitor_cycle_seconds", "Wall time of one cycle",
                                       buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
                                       registry=registry)
        self.scrape_errors = Counter("sentinel_monitor_scrape_errors", "Failed metrics scrapes",
                                     registry=registry)
        self.detections = Counter("sentinel_monitor_detections", "Change points detected",
                                  ["model", "signal"], registry=registry)
        self.phase = Gauge("sentinel_monitor_phase", "1 for the current phase of each model",
                           ["model", "phase"], registry=registry)
        self.actions = Counter("sentinel_monitor_actions", "Actions taken", ["model", "action",
                                                                              "outcome"],
                               registry=registry)
        self.last_action = Gauge("sentinel_monitor_last_action_timestamp_seconds",
                                 "Unix time of the last action", ["model"], registry=registry)
        self.served = Gauge("sentinel_monitor_served_version", "Version currently served",
                            ["model"], registry=registry)
        self.desired = Gauge("sentinel_monitor_desired_version",
                             "Version the desired state says must serve", ["model"],
                             registry=registry)
        self.generation = Gauge("sentinel_monitor_desired_generation",
                                "Generation of the model's desired state", ["model"],
                                registry=registry)
        self.converged = Gauge("sentinel_monitor_converged",
                               "1 when the served version is the desired one", ["model"],
                               registry=registry)
        self.model_errors = Counter("sentinel_monitor_model_cycle_errors",
                                    "Model cycles that raised (recorded as events)", ["model"],
                                    registry=registry)
        self.false_alarms = Gauge("sentinel_monitor_expected_false_alarms_per_day",
                                  "Expected false alarms per day over the watched fleet "
                                  "(series x each preset's stated rate)", registry=registry)
        self.lease_held = Gauge("sentinel_monitor_lease_held",
                                "1 while this sidecar holds the fleet lease (decides)",
                                registry=registry)
        self.lease_errors = Counter("sentinel_monitor_lease_errors",
                                    "Cycles whose lease renewal could not reach the engine",
                                    registry=registry)
        self.alerts_dropped = Counter("sentinel_monitor_alerts_dropped",
                                      "Alerts dropped because the send queue was full",
                                      registry=registry)


def default_detector_configs(overrides: dict[str, dict] | None = None) -> dict[str, DetectorConfig]:
    """The presets, with config overrides: "default" applies to every watched signal first."""
    from monitor.config import ConfigError
    overrides = dict(overrides or {})
    configs = {s: SIGNAL_PRESETS[s] for s in WATCHED_SIGNALS}
    for signal in ["default"] + [k for k in overrides if k != "default"]:
        if signal not in overrides:
            continue
        if signal != "default" and signal not in configs:
            raise ConfigError(f"detectors.{signal}: the sidecar watches only {WATCHED_SIGNALS}")
        for name in ([signal] if signal != "default" else list(configs)):
            try:
                configs[name] = replace(configs[name], **dict(overrides[signal]))
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"detectors.{signal}: {exc}") from exc
    return configs
