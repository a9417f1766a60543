"""One monitoring cycle: scrape → store → detect → decide → act → record → alert.

This is the thin shell around the pure parts (store, detect, decide); it owns the per-model state
that the decision needs (served version, activation time, last known good, actions, probes)."""
from __future__ import annotations

import collections
import copy
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from monitor.act import ActionOutcome, RepositoryApiError, RepositoryClient
from monitor.decide import decide, update_known_good
from monitor.detect import SIGNAL_PRESETS, DetectorConfig, OnlineDetector
from monitor.probe import GoldenProber
from monitor.records import (ActionRecord, Alert, Decision, DecisionInputs, Detection, Event,
                             KnownGoodState, Policy, ProbeResult, Scrape, VersionState,
                             detection_from_change_point)
from monitor.scrape import Scraper
from monitor.store import SeriesStore

log = logging.getLogger("sentinel.monitor")

WATCHED_SIGNALS = ("error_rate", "nan_rate", "latency_ms", "score_mean", "score_std")
PHASES = ("healthy", "degraded", "inconclusive", "error")


class EventSink(Protocol):
    def append(self, event: Event) -> Event: ...


class AlertSink(Protocol):
    def send(self, alert: Alert): ...


@dataclass
class ModelRuntime:
    """What the poller remembers about one model between cycles."""
    name: str
    detectors: dict[str, OnlineDetector]
    served: str | None = None
    activated_at: float | None = None
    known: KnownGoodState = field(default_factory=KnownGoodState)
    requested: str | None = None
    states: tuple[VersionState, ...] = ()
    actions: collections.deque = field(default_factory=lambda: collections.deque(maxlen=50))
    probes: collections.deque = field(default_factory=lambda: collections.deque(maxlen=20))
    detections: collections.deque = field(default_factory=lambda: collections.deque(maxlen=50))
    requested_at: float = 0.0
    load_failures_seen: set = field(default_factory=set)
    pinned: str | None = None
    frozen: bool = False
    operator_mark: str | None = None
    decision: Decision | None = None
    acked: tuple | None = None  # (phase, reason, actor) an operator acknowledged
    rolled_back_from: dict = field(default_factory=dict)  # version -> why it was rolled back
    last_probe_at: float = float("-inf")
    last_fed_ts: float = float("-inf")
    # detector sample index -> timestamp, to turn a change point's index into a time
    index_ts: collections.deque = field(default_factory=lambda: collections.deque(maxlen=4096))
    fed: int = 0
    # Detector state from just before the latest activation, kept so that a rollback to the
    # previous version resumes with its warm baseline instead of a blind warm-up period.
    snapshot: tuple | None = None


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


class Poller:
    def __init__(self, scraper: Scraper, repo: RepositoryClient, prober: GoldenProber,
                 events: EventSink, alerter: AlertSink | None = None,
                 store: SeriesStore | None = None, policy: Policy = Policy(),
                 detector_configs: dict[str, DetectorConfig] | None = None,
                 probe_interval_s: float = 5.0, interval_s: float = 1.0,
                 registry: CollectorRegistry | None = None,
                 clock: Callable[[], float] = time.time):
        self.scraper, self.repo, self.prober = scraper, repo, prober
        self.events, self.alerter = events, alerter
        self.store = store or SeriesStore(clock=clock)
        self.policy = policy
        self.detector_configs = detector_configs or default_detector_configs()
        self.probe_interval_s = probe_interval_s
        self.interval_s = interval_s
        self.metrics = MonitorMetrics(registry or CollectorRegistry())
        self.clock = clock
        self.models: dict[str, ModelRuntime] = {}
        self.last_scrape: Scrape | None = None
        self.index_error: str | None = None
        self._fresh: set[tuple[str, str]] = set()
        self.lock = threading.RLock()  # web threads read models/decisions while a cycle runs
        self.judgement_s = interval_s * max(
            c.test_window + c.persistence + 5 for c in self.detector_configs.values())

    # ------------------------------------------------------------------ state

    def runtime(self, model: str) -> ModelRuntime:
        rt = self.models.get(model)
        if rt is None:
            rt = ModelRuntime(model, self._new_detectors())
            self.models[model] = rt
        return rt

    def _new_detectors(self) -> dict[str, OnlineDetector]:
        return {s: OnlineDetector(c) for s, c in self.detector_configs.items()}

    def restore(self, known_good: dict[str, str], pinned: dict[str, str],
                frozen: set[str]) -> None:
        """State that must survive a sidecar restart, read back from the event log."""
        with self.lock:
            for model, version in known_good.items():
                self.runtime(model).known = KnownGoodState(known_good=version)
            for model, version in pinned.items():
                self.runtime(model).pinned = version
            for model in frozen:
                self.runtime(model).frozen = True

    # ------------------------------------------------------------------ the cycle

    def cycle(self) -> list[Decision]:
        started = time.perf_counter()
        scrape = self.scraper.scrape()
        self.store.add(scrape)
        with self.lock:
            self.last_scrape = scrape
            if not scrape.ok:
                self.metrics.scrape_errors.inc()
            self._refresh_index()
            now = self.clock()
            # Series with fresh data, counted once per cycle rather than once per model.
            self._fresh = {(m, v) for (m, v) in self.store.versions()
                           if (last := self.store.last_sample_at(m, v)) is not None
                           and now - last <= self.policy.stale_after_s}
            decisions = [self._model_cycle(rt) for rt in list(self.models.values())]
        self.metrics.cycles.inc()
        self.metrics.cycle_seconds.observe(time.perf_counter() - started)
        return decisions

    def _refresh_index(self) -> None:
        now = self.clock()
        try:
            entries = self.repo.index()
        except RepositoryApiError as exc:
            if self.index_error is None:
                self._record(Event(now, "*", None, "index_error", reason=str(exc)))
            self.index_error = str(exc)
            return  # keep the last known states; decide sees stale data as inconclusive
        self.index_error = None
        by_model: dict[str, list[VersionState]] = collections.defaultdict(list)
        for model, state in entries:
            by_model[model].append(state)
        for model, states in by_model.items():
            rt = self.runtime(model)
            rt.states = tuple(sorted(states, key=lambda s: int(s.version) if s.version.isdigit() else -1))
            ready = [s.version for s in rt.states if s.state == "READY"]
            served = max(ready, key=int) if ready else rt.served
            if served != rt.served:
                previous = rt.served
                if previous is not None:
                    rt.snapshot = (previous, copy.deepcopy(rt.detectors), list(rt.index_ts), rt.fed)
                rt.served, rt.activated_at = served, now
                self._record(Event(now, model, served, "activation",
                                   reason=f"version {served} now serves (was {previous})",
                                   evidence={"previous": previous}))
            newest = max((s for s in rt.states if s.version.isdigit()), key=lambda s: int(s.version),
                         default=None)
            # "unloaded" is how Triton lists a version it let go of normally (e.g. after a switch)
            if newest is not None and newest.state == "UNAVAILABLE" and newest.version != rt.served \
                    and newest.reason and newest.reason != "unloaded" \
                    and (newest.version, newest.reason) not in rt.load_failures_seen:
                rt.load_failures_seen.add((newest.version, newest.reason))
                rt.requested, rt.requested_at = newest.version, now
                self._record(Event(now, model, newest.version, "load_failure",
                                   reason=f"version {newest.version} failed to load; "
                                          f"version {rt.served} stays served",
                                   evidence={"reason": newest.reason[-2000:]}))

    def _feed_detectors(self, rt: ModelRuntime) -> None:
        """Feed the served version's newest interval to the model's detectors. Detectors follow
        the model's served stream, so a new version's step away from the old one's level is a
        change point at its activation."""
        if rt.served is None:
            return
        point = self.store.latest(rt.name, rt.served)
        if point is None or point.ts <= rt.last_fed_ts:
            return
        rt.last_fed_ts = point.ts
        rt.index_ts.append((rt.fed, point.ts))
        rt.fed += 1
        for signal, det in rt.detectors.items():
            value = float("nan") if point.reset else getattr(point, signal)
            cp = det.update(value)
            if cp is None:
                continue
            d = detection_from_change_point(cp, model=rt.name, version=rt.served, signal=signal,
                                            changed_at=self._ts_of(rt, cp.index),
                                            detected_at=point.ts)
            rt.detections.append(d)
            self.metrics.detections.labels(rt.name, signal).inc()
            self._record(Event(point.ts, rt.name, rt.served, "detection",
                               reason=f"{signal} changed {cp.direction} from {cp.baseline_mean:.4g} "
                                      f"to {cp.recent_mean:.4g} (p={cp.p_value:.2g})",
                               evidence=_detection_dict(d)))

    def _reset_detectors(self, rt: ModelRuntime, resume: str | None = None) -> None:
        rt.detections.clear()
        if resume is not None and rt.snapshot is not None and rt.snapshot[0] == resume:
            _, detectors, index_ts, fed = rt.snapshot
            rt.detectors, rt.fed = detectors, fed
            rt.index_ts.clear()
            rt.index_ts.extend(index_ts)
            rt.snapshot = None
            return
        rt.detectors = self._new_detectors()
        rt.index_ts.clear()
        rt.fed = 0  # new detectors count their samples from 0 again

    def _ts_of(self, rt: ModelRuntime, index: int) -> float:
        for i, ts in reversed(rt.index_ts):
            if i <= index:
                return ts
        return rt.index_ts[0][1] if rt.index_ts else self.clock()

    def _maybe_probe(self, rt: ModelRuntime, now: float) -> None:
        if rt.served is None or now - rt.last_probe_at < self.probe_interval_s:
            return
        rt.last_probe_at = now
        result = self.prober.probe(rt.name, rt.served)
        rt.probes.append(result)
        if result.status != "ok":
            self._record(Event(now, rt.name, rt.served, "probe", reason=result.detail,
                               outcome=result.status))

    def _model_cycle(self, rt: ModelRuntime) -> Decision:
        now = self.clock()
        if rt.requested is not None and now - rt.requested_at > self.policy.detection_window_s:
            rt.requested = None  # reported and alerted; the event log keeps it
        self._feed_detectors(rt)
        self._maybe_probe(rt, now)
        others = tuple(d for m, o in self.models.items() if m != rt.name for d in o.detections)
        peers = len(self._fresh - {(rt.name, rt.served)})
        inputs = DecisionInputs(
            model=rt.name, served_version=rt.served, now=now, version_states=rt.states,
            detections=tuple(rt.detections), other_model_detections=others,
            scrape_outcomes=self.store.scrape_outcomes(limit=20),
            last_sample_at=self.store.last_sample_at(rt.name, rt.served) if rt.served else None,
            activated_at=rt.activated_at, last_known_good=rt.known.known_good,
            requested_version=rt.requested, actions=tuple(rt.actions), pinned_version=rt.pinned,
            frozen=rt.frozen, probes=tuple(rt.probes),
            failure_evidence=(self.store.failure_evidence(rt.name, rt.served, 10.0)
                              if rt.served else None),
            reset_times=(self.store.reset_times(rt.name, rt.served, since=now - 300)
                         if rt.served else ()),
            peers_observed=peers)
        decision = decide(inputs, self.policy)
        previous = rt.decision
        rt.decision = decision
        before = rt.known.known_good
        # A version cannot count as healthy before the detectors could have seen a change in it:
        # until a full test window has passed since its activation its health is unknown.
        judging = rt.activated_at is not None and now - rt.activated_at < self.judgement_s
        phase = "inconclusive" if judging and decision.phase == "healthy" else decision.phase
        rt.known = update_known_good(rt.known, rt.served, phase, now, self.policy,
                                     operator_mark=rt.operator_mark)
        rt.operator_mark = None
        if rt.known.known_good != before:
            self._record(Event(now, rt.name, rt.known.known_good, "known_good",
                               reason=f"version {rt.known.known_good} is now the last known good"))
        for p in PHASES:
            self.metrics.phase.labels(rt.name, p).set(1 if p == decision.phase else 0)
        if rt.served and rt.served.isdigit():
            self.metrics.served.labels(rt.name).set(int(rt.served))
        # One event per change of (phase, action, target), not one per cycle of a lasting state.
        if previous is None or (previous.phase, previous.action, previous.target_version) != \
                (decision.phase, decision.action, decision.target_version):
            self._record(Event(now, rt.name, rt.served, "decision", phase=decision.phase,
                               action=decision.action, reason=decision.reason,
                               evidence=_evidence_dict(decision)))
        if decision.phase == "healthy":
            rt.acked = None
        if decision.action in ("rollback", "reload"):
            self._act(rt, decision)
        elif decision.action == "alert" and not (rt.acked and rt.acked[0] == decision.phase):
            self._alert(rt, decision)
        return decision

    # ------------------------------------------------------------------ actions

    def _act(self, rt: ModelRuntime, decision: Decision, actor: str = "poller") -> ActionOutcome:
        target = decision.target_version
        reload = decision.action == "reload"
        outcome = self.repo.load(rt.name, target, reload=reload)
        now = self.clock()
        if decision.action in ("rollback", "reload"):  # what the rate limits count
            rt.actions.append(ActionRecord(now, decision.action, rt.name, target))
        probe = None
        if outcome.ok:
            probe = self.prober.probe(rt.name, target)
            rt.probes.append(probe)
            if decision.action in ("rollback", "reload"):
                # The bad period must not become the reference for what comes next: resume the
                # target's own pre-activation baseline if we have it, else start fresh. A promote
                # keeps the detectors, so the promoted version is judged against the old one.
                self._reset_detectors(rt, resume=target if decision.action == "rollback" else None)
            if decision.action == "rollback" and decision.served_version not in (None, target):
                rt.rolled_back_from[decision.served_version] = decision.reason
            if target != rt.served:
                rt.served, rt.activated_at = target, now
        status = "ok" if outcome.ok and probe is not None and probe.status == "ok" else "failed"
        self.metrics.actions.labels(rt.name, decision.action, status).inc()
        self.metrics.last_action.labels(rt.name).set(now)
        detail = outcome.detail or (probe.detail if probe else "")
        self._record(Event(now, rt.name, target, "action", phase=decision.phase,
                           action=decision.action, reason=decision.reason, actor=actor,
                           outcome=status,
                           evidence={"seconds": round(outcome.seconds, 3), "detail": detail,
                                     "probe": probe.status if probe else None,
                                     "from_version": decision.served_version}))
        if self.alerter is not None:
            self.alerter.send(Alert(
                alertname=f"Sentinel{decision.action.capitalize()}", model=rt.name, version=target,
                severity="warning" if status == "ok" else "critical",
                summary=f"{rt.name}: {decision.action} to version {target} {status}",
                description=decision.reason))
        return outcome

    def _alert(self, rt: ModelRuntime, decision: Decision) -> None:
        if self.alerter is None:
            return
        self.alerter.send(Alert(
            alertname={"degraded": "SentinelDegraded", "inconclusive": "SentinelInconclusive",
                       "error": "SentinelError"}.get(decision.phase, "SentinelAlert"),
            model=rt.name, version=decision.served_version,
            severity="critical" if decision.phase in ("degraded", "error") else "warning",
            summary=f"{rt.name} v{decision.served_version}: {decision.phase}",
            description=decision.reason))

    def _record(self, event: Event) -> None:
        try:
            self.events.append(event)
        except Exception:  # the event log must never stop the loop; say so loudly instead
            log.exception("could not record event %s", event.kind)

    def repository_versions(self, model: str) -> list[str]:
        """Versions published on disk, loaded or not (Triton's index lists only those it tried)."""
        model_dir = self.repo.repository / model
        if not model_dir.is_dir():
            return []
        return sorted((p.name for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()),
                      key=int)

    # ------------------------------------------------------------------ operator actions

    def operator_load(self, model: str, version: str, actor: str, why: str,
                      kind: str = "rollback") -> ActionOutcome:
        """Rollback/promote asked for by an operator (already authorised by the web layer)."""
        with self.lock:
            rt = self.runtime(model)
            phase = rt.decision.phase if rt.decision else "healthy"
            decision = Decision(model, rt.served, self.clock(), phase, kind,
                                f"operator {actor}: {why}", target_version=version)
            return self._act(rt, decision, actor=actor)

    # ------------------------------------------------------------------ loop

    def run(self, stop: threading.Event) -> None:
        """Run cycles every interval until `stop` is set; a failing cycle is logged, never fatal."""
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.cycle()
            except Exception:
                log.exception("monitor cycle failed")
            stop.wait(max(0.0, self.interval_s - (time.monotonic() - started)))


def _detection_dict(d: Detection) -> dict:
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in d.__dict__.items()}


def _evidence_dict(decision: Decision) -> dict:
    items = []
    for e in decision.evidence:
        kind = type(e).__name__
        body = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in e.__dict__.items()}
        items.append({"type": kind, **body})
    return {"target_version": decision.target_version, "items": items}
