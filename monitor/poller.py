"""One monitoring cycle: scrape → store → observe → judge → decide → desired state → reconcile.

The thin shell around the pure parts. Network and file I/O (scrape, repository index, probes,
desired-state writes, the event log) happen outside `lock`; under it only computation, so pages
and the API never wait on Triton. Loads run on the actuator's threads and alerts leave through a
bounded queue, so neither can hold a cycle. Each model's part of a cycle is isolated: one model's
exception becomes that model's error event and the others go on."""
from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Callable, Protocol

from prometheus_client import CollectorRegistry

from monitor.act import RepositoryApiError, RepositoryClient
from monitor.actuator import ActionRequest, ActionResult, Actuator
from monitor.alert_queue import AlertQueue
from monitor.detect import DetectorConfig, expected_false_alarms_per_day
from monitor.feedback_store import FeedbackStore
from monitor.fleet import LeaseKeeper
from monitor.judge import Judge, Judgement
from monitor.resource_watch import ResourceWatch
from monitor.canary_watch import CanaryWatch
from monitor.lease import Lease
from monitor.replicas import ReplicaRegistry
from monitor.retrain import RetrainRunner
from monitor.observe import apply_index
from monitor.outcomes import apply_result
from monitor.probe import GoldenProber
from monitor.reconcile import Observed, Step, plan, published_versions
from monitor.types import (ActionRecord, Alert, Decision, Event, KnownGoodState, Policy, Scrape,
                             VersionState)
from monitor.runtime import (PHASES, WATCHED_SIGNALS, ModelRuntime, MonitorMetrics,
                             default_detector_configs)
from monitor.scrape import Scraper
from monitor.store import SeriesStore
from sentinel import desired_state as ds

log = logging.getLogger("sentinel.monitor")

__all__ = ["Poller", "WATCHED_SIGNALS", "PHASES", "MonitorMetrics", "default_detector_configs"]


class EventSink(Protocol):
    def append(self, event: Event) -> int | Event: ...


class AlertSink(Protocol):
    def send(self, alert: Alert): ...


class Poller:
    def __init__(self, scraper: Scraper, repo: RepositoryClient, prober: GoldenProber,
                 events: EventSink, alerter: AlertSink | None = None,
                 store: SeriesStore | None = None, policy: Policy = Policy(),
                 detector_configs: dict[str, DetectorConfig] | None = None,
                 probe_interval_s: float = 5.0, interval_s: float = 1.0,
                 registry: CollectorRegistry | None = None,
                 clock: Callable[[], float] = time.time,
                 desired: ds.DesiredStateStore | None = None,
                 actuator: Actuator | None = None,
                 objectives: dict[str, float] | None = None,
                 feedback: FeedbackStore | None = None,
                 retrain: RetrainRunner | None = None,
                 resources: ResourceWatch | None = None,
                 lease: Lease | None = None,
                 replicas: ReplicaRegistry | None = None,
                 canary: CanaryWatch | None = None):
        self.scraper, self.repo, self.prober = scraper, repo, prober
        self.events = events
        self.store = store or SeriesStore(clock=clock)
        self.policy = policy
        self.detector_configs = detector_configs or default_detector_configs()
        self.probe_interval_s = probe_interval_s
        self.interval_s = interval_s
        self.metrics = MonitorMetrics(registry or CollectorRegistry())
        self.clock = clock
        repository = getattr(repo, "repository", None)
        # Without a repository on disk (the cycle benchmark) the poller judges but keeps no
        # desired state; the sidecar always has one.
        self.desired_store = desired if desired is not None else (
            ds.DesiredStateStore(repository, clock) if repository is not None else None)
        self.actuator = actuator or Actuator(repo, prober, clock=clock)
        self.alerts = AlertQueue(alerter, on_drop=lambda a: self.metrics.alerts_dropped.inc()) \
            if alerter is not None else None
        self.feedback = feedback
        self.retrain = retrain or RetrainRunner(None, 6 * 3600.0, clock=clock)
        # Fleet: only the lease holder turns judgements into desired-state writes (monitor.fleet).
        self.lease = LeaseKeeper(lease, clock)
        self.actor = self.lease.identity if self.lease.coordinated else "poller"
        # Fleet membership (heartbeat files in the repository) and the holder's canary judge.
        self.replicas = replicas
        self.canary = canary
        self.members: list = []
        self.judge = Judge(self.store, policy, self.detector_configs, self.metrics, interval_s,
                           objectives=objectives, feedback=feedback, resources=resources)
        self.judgement_s = self.judge.judgement_s
        self.models: dict[str, ModelRuntime] = {}
        self.last_scrape: Scrape | None = None
        self.index_error: str | None = None
        self.started_at = clock()
        self._fresh: set[tuple[str, str]] = set()
        self._index_known = False
        self._outbox: list[Event] = []
        self.lock = threading.RLock()  # web threads read models/decisions; held for computation only
        for model in self.repository_models():
            self._refresh_desired(model)

    # ------------------------------------------------------------------ state

    def runtime(self, model: str) -> ModelRuntime:
        rt = self.models.get(model)
        if rt is None:
            rt = ModelRuntime(model, self.judge.new_detectors(model))
            self.models[model] = rt
        return rt

    def repository_models(self) -> list[str]:
        """Model directories of the repository that hold at least one version."""
        if self.desired_store is None or not self.desired_store.repository.is_dir():
            return []
        return sorted(p.name for p in self.desired_store.repository.iterdir()
                      if p.is_dir() and not p.name.startswith(".")
                      and any(c.is_dir() and c.name.isdigit() for c in p.iterdir()))

    def repository_versions(self, model: str) -> list[str]:
        """Versions published on disk, loaded or not (Triton's index lists only those it tried)."""
        if self.desired_store is None:
            return []
        model_dir = self.desired_store.repository / model
        if not model_dir.is_dir():
            return []
        return list(published_versions([p.name for p in model_dir.iterdir() if p.is_dir()]))

    def _refresh_desired(self, model: str) -> ds.DesiredState | None:
        """Re-read one model's desired state (file I/O: call without the lock)."""
        if self.desired_store is None:
            return None
        try:
            state, error = self.desired_store.read(model), None
        except ds.DesiredStateError as exc:
            state, error = None, str(exc)
        with self.lock:
            rt = self.runtime(model)
            if error is not None and error != rt.desired_error:
                self._emit(Event(self.clock(), model, None, "desired_error", reason=error))
            rt.desired_error = error
            if error is None:
                rt.desired = state
                last = state.last_known_good if state is not None else None
                rt.known = KnownGoodState(last.version if last else None, rt.known.candidate,
                                          rt.known.healthy_since)
            if rt.desired is not None:
                if rt.desired.version and rt.desired.version.isdigit():
                    self.metrics.desired.labels(model).set(int(rt.desired.version))
                self.metrics.generation.labels(model).set(rt.desired.generation)
            return rt.desired

    # ------------------------------------------------------------------ the cycle

    def cycle(self) -> list[Decision]:
        started = time.perf_counter()
        self._lease_step()
        scrape = self.scraper.scrape()
        self.store.add(scrape)
        self.judge.scores.add(scrape)  # the score histograms for prediction drift
        index_at = self.clock()
        entries, index_error = self._fetch_index()
        finished = self.actuator.drain()
        in_flight = self.actuator.in_flight()
        names = set(self.repository_models()) | {m for m, _ in entries or ()}
        for model in sorted(names | set(self.models)):
            self._refresh_desired(model)
        with self.lock:
            self.last_scrape = scrape
            if not scrape.ok:
                self.metrics.scrape_errors.inc()
            follow_up = [r for r in finished if self._apply_result(r)]
            self._apply_index(entries, index_error, index_at, finished, in_flight)
            now = self.clock()
            # Series with fresh data, counted once per cycle rather than once per model.
            self._fresh = {(m, v) for (m, v) in self.store.versions()
                           if (last := self.store.last_sample_at(m, v)) is not None
                           and now - last <= self.policy.stale_after_s}
            due = [(rt.name, rt.served) for rt in self.models.values()
                   if rt.served is not None and rt.pending is None
                   and now - rt.last_probe_at >= self.probe_interval_s]
            for model, _ in due:
                self.models[model].last_probe_at = now
        self._flush()
        for result in follow_up:
            self._guarded(result.request.model, "desired state", self._after_failed_deploy, result)
        probes = [self._guarded(m, "probe", self.prober.probe, m, v) for m, v in due]
        judgements: dict[str, Judgement] = {}
        with self.lock:
            for probe in probes:
                if probe is not None:
                    self._add_probe(probe)
            for rt in list(self.models.values()):
                judged = self._guarded(rt.name, "judgement", self._judge, rt)
                if judged is not None:
                    judgements[rt.name] = judged
        self._flush()
        for model, judged in judgements.items():
            self._guarded(model, "action", self._carry_out, model, judged)
        self._fleet_step()
        for model in list(self.models):
            self._guarded(model, "reconcile", self.reconcile, model)
        self._flush()
        self.metrics.false_alarms.set(expected_false_alarms_per_day(
            self.detector_configs.values(), len(self.models)))
        self.metrics.cycles.inc()
        self.metrics.cycle_seconds.observe(time.perf_counter() - started)
        return [j.decision for j in judgements.values()]

    def _fleet_step(self) -> None:
        """Announce this replica, and (holder only) judge and advance the fleet's canaries (file
        and network I/O: no lock held)."""
        if self.replicas is None:
            return
        with self.lock:
            serves = {m: rt.served for m, rt in self.models.items()}
            switches = {m: rt.last_switch for m, rt in self.models.items() if rt.last_switch}
            states = {m: rt.desired for m, rt in self.models.items() if rt.desired is not None}
        holder = self.lease.may_decide()
        try:
            self.replicas.beat(serves, holder, switches)
            self.members = self.replicas.members()
        except OSError as exc:
            log.warning("replica heartbeat failed: %s", exc)
        if self.canary is None:
            return
        if not holder:
            self.canary.step({}, self.members)  # forget tallies: a holder-to-be starts afresh
            return
        try:
            actions = self.canary.step(states, self.members)
        except Exception:  # noqa: BLE001 - a canary bug must not stop the cycle; recorded below
            log.exception("canary step failed")
            self._record(Event(self.clock(), "*", None, "error", phase="error",
                               reason="canary step failed (see the sidecar log)"))
            return
        for action in actions:
            self._guarded(action.model, "canary", self._canary_action, action)

    def _canary_action(self, action) -> None:
        now, model, version = self.clock(), action.model, action.version
        if action.kind == "reject":
            event = Event(now, model, version, "decision", phase="failing", action="rollback",
                          reason=action.reason, evidence=dict(action.evidence))
            event_id = self._record(self.lease.acted(event))
            if self._write(model, lambda s: ds.reject(s, version, None, action.reason, now,
                                                      self.actor, event_id)
                           if s is not None and s.canary is not None
                           and s.canary.version == version else None,
                           f"abort the canary of version {version}"):
                self._record(self.lease.acted(Event(now, model, version, "canary",
                                                    outcome="aborted", actor=self.actor,
                                                    reason=action.reason,
                                                    evidence=dict(action.evidence))))
                if self.alerts is not None:
                    self.alerts.send(Alert("SentinelCanaryFailed", model, version, "critical",
                                           summary=f"{model}: canary of version {version} "
                                                   "aborted", description=action.reason))
            return
        change = {
            "widen": lambda s: ds.widen_canary(s, action.replicas, now, self.actor),
            "finish": lambda s: ds.finish_canary(s, now, self.actor),
            "end": lambda s: ds.end_canary(s, now, self.actor),
        }[action.kind]
        outcome = {"widen": "promoting", "finish": "promoted", "end": "inconclusive"}[action.kind]
        if self._write(model, lambda s: change(s) if s is not None and s.canary is not None
                       and s.canary.version == version else None,
                       f"{action.kind} the canary of version {version}"):
            self._record(self.lease.acted(Event(now, model, version, "canary", outcome=outcome,
                                                actor=self.actor, reason=action.reason,
                                                evidence=dict(action.evidence))))

    def _lease_step(self) -> None:
        """Renew or try to take the fleet lease (I/O, no lock); record when it changes hands."""
        try:
            step = self.lease.step()
        except Exception:  # noqa: BLE001 - a lease bug must not stop reconciling; not held then
            log.exception("lease step failed")
            return
        self.metrics.lease_held.set(1 if step.status.held else 0)
        if step.status.error:
            self.metrics.lease_errors.inc()
        for event in step.events:
            self._record(event)
        for alert in step.alerts:
            if self.alerts is not None:
                self.alerts.send(alert)

    def _guarded(self, model: str, stage: str, fn, *args):
        """Run one model's stage; an exception is that model's error event, not the cycle's end."""
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - isolation is the point; it is recorded below
            log.exception("%s of model %s failed", stage, model)
            self.metrics.model_errors.labels(model).inc()
            self._record(Event(self.clock(), model, None, "error", phase="error",
                               reason=f"{stage} failed: {type(exc).__name__}: {exc}"[:2000]))
            return None

    def _fetch_index(self) -> tuple[list[tuple[str, VersionState]] | None, str | None]:
        try:
            return self.repo.index(), None
        except RepositoryApiError as exc:
            return None, str(exc)

    def _apply_index(self, entries, error: str | None, index_at: float,
                     finished: list[ActionResult], in_flight: dict[str, str]) -> None:
        now = self.clock()
        if error is not None:
            if self.index_error is None:
                self._emit(Event(now, "*", None, "index_error", reason=error))
            self.index_error = error
            self._index_known = False
            return  # keep the last known states; decide sees stale data as inconclusive
        self.index_error = None
        self._index_known = True
        for event in apply_index(self.runtime, list(self.models), entries, index_at, now,
                                 finished, in_flight):
            self._emit(event)

    def _apply_result(self, result: ActionResult) -> bool:
        """Under the lock. True when a desired-state follow-up is needed (a deploy that failed)."""
        applied = apply_result(self.runtime(result.request.model), result, self.metrics,
                               lambda: self.judge.new_detectors(result.request.model))
        for event in applied.events:
            self._emit(event)
        for alert in applied.alerts:
            if self.alerts is not None:
                self.alerts.send(alert)
        return applied.failed_deploy

    def _add_probe(self, probe) -> None:
        rt = self.models.get(probe.model)
        if rt is None or probe.version != rt.served:
            return  # it switched while the probe ran: the result describes the old version
        rt.probes.append(probe)
        if probe.status != "ok":
            self._emit(Event(probe.ts, probe.model, probe.version, "probe", reason=probe.detail,
                               outcome=probe.status))

    def _judge(self, rt: ModelRuntime) -> Judgement:
        now = self.clock()
        if rt.requested is not None and now - rt.requested_at > self.policy.detection_window_s:
            rt.requested = None  # reported and alerted; the event log keeps it
        for event in self.judge.feed(rt):
            self._emit(event)
        others = tuple(d for m, o in self.models.items() if m != rt.name for d in o.detections)
        peers = len(self._fresh - {(rt.name, rt.served)})
        judged = self.judge.judge(rt, now, others, peers, self.started_at)
        for event in judged.events:
            self._emit(event)
        return judged

    # ------------------------------------------------------------------ decisions → desired state

    def _carry_out(self, model: str, judged: Judgement) -> None:
        """What a judgement asks for, in order: record it, change the desired state, act."""
        decision = judged.decision
        now = self.clock()
        if not self.lease.may_decide():
            self._follow(model, judged)
            return
        with self.lock:
            rt = self.models[model]
            # A decision first judged while following (recorded "not acting") is recorded again
            # when this sidecar, now the holder, carries it out: one decision event per action.
            event = judged.decision_event or (
                dataclasses.replace(rt.deferred_event, ts=now)
                if rt.deferred_event is not None and decision.action == "rollback" else None)
            rt.deferred_event = None
        event_id = self._record(self.lease.acted(event)) if event is not None else None
        with self.lock:
            busy = self.models[model].pending is not None or self.actuator.busy(model)
            busy_frozen = self.models[model].is_frozen
            desired = self.models[model].desired
        canary_of = desired.canary.version if desired is not None and desired.canary else None
        if judged.promote is not None and judged.promote != canary_of \
                and not (self.policy.freeze or busy_frozen):
            version, baseline = judged.promote, judged.promote_baseline
            # The mark records what was observed of that version, so a write made meanwhile (an
            # operator's deploy right after it turned good) does not make it untrue: it is applied
            # to the newer state unless that state rejected the version.
            if self._write(model, lambda s: ds.mark_known_good(s, version, now, self.actor,
                                                             baseline)
                           if s is not None else None, f"mark version {version} known good",
                           still_true=lambda s: s is not None and version not in
                           {r.version for r in s.rejected}):
                self._record(Event(now, model, version, "known_good",
                                   reason=f"version {version} is now the last known good",
                                   evidence={"baseline": baseline}))
        if judged.retrain is not None:
            self._retrain(model, *judged.retrain)
        if decision.action in ("rollback", "reload") and busy:
            return  # the switch asked for earlier is still running; its result decides what next
        if decision.action == "rollback":
            bad, target = decision.served_version, decision.target_version
            if canary_of is not None and canary_of == bad:
                # A bad canary goes back to what the rest of the fleet serves, not further back
                # (the fleet's version may still be under watch, not yet known good).
                target = desired.version
            # Desired state first: if it cannot be written, nothing is loaded (a load the state
            # does not back would be undone by the next reconcile, or survive a restart wrongly).
            if not self._write(model, lambda s: ds.roll_back(s, bad, target, decision.reason,
                                                             now, self.actor, event_id)
                               if s is not None else None, f"reject version {bad}"):
                return
            self._submit(ActionRequest(model, target, "rollback", decision.reason,
                                       phase=decision.phase, from_version=bad, submitted_at=now))
        elif decision.action == "reload":
            self._submit(ActionRequest(model, decision.target_version, "reload", decision.reason,
                                       phase=decision.phase, from_version=decision.served_version,
                                       submitted_at=now))
        elif decision.action == "alert":
            rt = self.models[model]
            if not (rt.acked and rt.acked[0] == decision.phase):
                self._alert(model, decision)

    def _follow(self, model: str, judged: Judgement) -> None:
        """Not the lease holder: record the judgement as not carried out; repair only this
        replica's own Triton (a reload changes no desired state, and no other sidecar can do it)."""
        decision = judged.decision
        if judged.decision_event is not None and decision.action == "rollback":
            self._record(self.lease.deferred(judged.decision_event))
            with self.lock:
                self.models[model].deferred_event = judged.decision_event
        elif judged.decision_event is not None:  # no write needed: recorded as judged
            self._record(judged.decision_event)
        with self.lock:
            busy = self.models[model].pending is not None or self.actuator.busy(model)
        if decision.action == "reload" and not busy:
            self._submit(ActionRequest(model, decision.target_version, "reload", decision.reason,
                                       phase=decision.phase, from_version=decision.served_version,
                                       submitted_at=self.clock()))
        elif decision.action == "alert":
            rt = self.models[model]
            if not (rt.acked and rt.acked[0] == decision.phase):
                self._alert(model, decision)

    def _retrain(self, model: str, reason: str, evidence: dict) -> None:
        """Quality fell with no version to blame: record, alert, run the retrain command (each at
        most once per cooldown per model)."""
        outcome = self.retrain.trigger(model, reason)
        if not outcome.triggered:
            return
        with self.lock:
            served = self.models[model].served
        self._record(Event(self.clock(), model, served, "retrain", phase="degraded", action="alert",
                           reason=reason, evidence=evidence, outcome=outcome.detail))
        if self.alerts is not None:
            self.alerts.send(Alert("SentinelRetrainNeeded", model, served, "warning",
                                   summary=f"{model}: quality fell with no version to blame",
                                   description=f"{reason} ({outcome.detail})"))

    def _write(self, model: str, change, what: str,
               still_true: Callable[[ds.DesiredState | None], bool] | None = None) -> bool:
        """Apply a transition to the model's desired state (file I/O, no lock); False on failure,
        which is recorded and alerted: a decision that cannot be made durable is not carried out.
        `still_true(newer state)`: after a conflict, whether the change holds on the newer state
        as well (then it is applied to that one, once) instead of being judged again."""
        if self.desired_store is None:
            return True
        with self.lock:
            # The generation this decision was judged on: if anyone wrote since (an operator, or
            # another sidecar that also believed it held the lease), the write is refused and the
            # decision is judged again next cycle on the newer state (compare-and-swap).
            read = self.runtime(model).desired
        expected = read.generation if read is not None else 0
        try:
            state = self.desired_store.update(model, change, expected_generation=expected)
        except ds.StaleGeneration as exc:
            newer = self._refresh_desired(model)
            with self.lock:
                readable = self.runtime(model).desired_error is None
            if still_true is not None and readable and still_true(newer):
                written = self._write(model, change, what)
                if written:
                    self._refresh_desired(model)  # the known-good view follows the written state
                return written
            self._record(Event(self.clock(), model, None, "desired_conflict", outcome="not written",
                               actor=self.actor, reason=f"did not {what}: {exc.problem}; judged "
                                                        "again on the newer state"))
            return False
        except ds.DesiredStateError as exc:
            reason = f"could not {what}: {exc}"
            self._record(Event(self.clock(), model, None, "desired_error", phase="error",
                               reason=reason))
            if self.alerts is not None:
                self.alerts.send(Alert("SentinelDesiredStateError", model, None, "critical",
                                       summary=f"{model}: desired state not written",
                                       description=reason))
            return False
        with self.lock:
            self.runtime(model).desired = state
        return True

    def _submit(self, request: ActionRequest):
        with self.lock:
            rt = self.runtime(request.model)
            future = self.actuator.submit(request)
            if future is None:
                return None
            rt.pending = request.version
            if request.kind in ("rollback", "reload"):  # what the rate limits count
                rt.actions.append(ActionRecord(request.submitted_at or self.clock(), request.kind,
                                               request.model, request.version))
        return future

    # ------------------------------------------------------------------ action results

    def _after_failed_deploy(self, result: ActionResult) -> None:
        """A deployed version that Triton could not load is rejected; what serves stays desired."""
        req, now = result.request, self.clock()
        back = req.from_version
        self._write(req.model, lambda s: ds.reject(s, req.version, back, f"failed to load: "
                                                   f"{result.outcome.detail}", now, "poller")
                    if s is not None else None, f"reject version {req.version}")

    # ------------------------------------------------------------------ reconcile

    def reconcile(self, model: str) -> Step:
        """Compare what Triton serves with the desired state and converge (no lock held for I/O)."""
        with self.lock:
            rt = self.runtime(model)
            observed = Observed(served=rt.served, states=rt.states,
                                published=tuple(self.repository_versions(model)),
                                index_known=self._index_known, external_activation=rt.external,
                                action_in_flight=rt.pending is not None
                                or self.actuator.busy(model))
            # config.pbtxt carries the fleet's version, never a canary's; this replica converges
            # to its own target (a canary's version on the canary's replicas).
            fleet_desired, error = rt.desired, rt.desired_error
            desired = fleet_desired
            if fleet_desired is not None and fleet_desired.canary is not None:
                desired = dataclasses.replace(
                    fleet_desired, version=fleet_desired.target_for(self.lease.identity))
            # The retry delay is for a version that failed to load, not for the next decision: a
            # follower that loaded v2 a moment ago converges to the rollback at once.
            last_attempt = rt.last_reconcile_at if desired is not None and \
                rt.last_reconcile_version == desired.version else float("-inf")
            frozen = rt.is_frozen
        if error is not None:
            return Step("wait", reason=error)  # never act on a state file we could not read
        if self.desired_store is None:
            return Step("none")
        if self.policy.freeze or frozen:
            # Frozen: observe and judge, change nothing (an outside activation stays noted and is
            # adopted once thawed).
            return Step("wait", reason="frozen: not reconciling")
        now = self.clock()
        step = plan(desired, observed, now, last_attempt, self.policy.reconcile_retry_s,
                    may_write=self.lease.may_decide())
        with self.lock:
            if step.kind != "wait":
                rt.external = False
            rt.reconcile_reason = step.reason
        self.metrics.converged.labels(model).set(1 if desired is not None and observed.served ==
                                                 desired.version else 0)
        if step.kind == "initialise":
            version = step.version
            origin = "adopted" if observed.served else "reconcile"
            if self._write(model, lambda s: s if s is not None else
                           ds.initial(model, version, now, self.actor, origin=origin),
                           "write the first desired state"):
                self._record(Event(now, model, version, "desired", reason=step.reason))
            if observed.served is None:
                self._start_reconcile_load(model, version, step.reason, now)
        elif step.kind == "adopt":
            version = step.version
            if self._write(model, lambda s: ds.deploy(s, version, now, "triton-api", "external")
                           if s is not None else None, f"adopt version {version}"):
                self._record(Event(now, model, version, "deploy", actor="outside the sidecar",
                                   reason=step.reason))
        elif step.kind == "load":
            self._start_reconcile_load(model, step.version, step.reason, now)
        elif step.kind == "alert" and self.alerts is not None:
            self.alerts.send(Alert("SentinelReconcile", model, step.version, "critical",
                                   summary=f"{model}: cannot converge", description=step.reason))
        # Heal a config.pbtxt that lost its write, once per generation rather than every cycle
        # (it is a file read and a protobuf parse per model).
        if fleet_desired is not None and fleet_desired.version is not None and \
                rt.policy_checked != (fleet_desired.generation, fleet_desired.version):
            self.desired_store.apply_version_policy(model, fleet_desired.version)
            rt.policy_checked = (fleet_desired.generation, fleet_desired.version)
        return step

    def _start_reconcile_load(self, model: str, version: str, reason: str, now: float) -> None:
        with self.lock:
            rt = self.runtime(model)
            rt.last_reconcile_at, rt.last_reconcile_version = now, version
            served, desired = rt.served, rt.desired
        # In a fleet, replicas other than the one the operator deployed through reach a new
        # version by reconciling: they must judge its step from the old level as that replica
        # does, not start blind on fresh detectors (the holder may be one of them).
        as_deploy = served is not None and desired is not None and not \
            desired.is_known_good(version) and (
                (desired.watch is not None and desired.watch.version == version)
                or (desired.canary is not None and desired.canary.version == version))
        self._submit(ActionRequest(model, version, "reconcile", reason, from_version=served,
                                   submitted_at=now, as_deploy=as_deploy))

    # ------------------------------------------------------------------ operators

    def converge(self, request: ActionRequest) -> ActionResult | None:
        """An operator's action: submit and wait for it (no lock held while waiting). If another
        action on the model is running, wait for that one instead: the desired state already
        says where the model must go, and the reconcile step takes it there."""
        future = self._submit(request) or self.actuator.future_of(request.model)
        if future is None:
            with self.lock:
                self.runtime(request.model).pending = None
            return None
        result = future.result(timeout=self.load_timeout_s + 30)
        # Applied here rather than in the next cycle, so that when the API answers, the event log
        # and the pages already show the outcome.
        if self.actuator.take(result):
            with self.lock:
                follow_up = self._apply_result(result)
            self._flush()
            if follow_up:
                self._after_failed_deploy(result)
        return result

    def settle(self, model: str, timeout_s: float | None = None) -> bool:
        """Wait (no lock held) until no switch of `model` is running and its result was applied."""
        deadline = time.monotonic() + (timeout_s if timeout_s is not None
                                       else self.load_timeout_s + 3 * self.interval_s)
        future = self.actuator.future_of(model)
        if future is not None:
            try:
                future.result(timeout=max(0.0, deadline - time.monotonic()))
            except Exception:  # noqa: BLE001 - its outcome is recorded by the cycle, not here
                pass
        while time.monotonic() < deadline:
            with self.lock:
                rt = self.models.get(model)
                if rt is None or rt.pending is None:
                    return True
            time.sleep(0.05)
        return False

    @property
    def load_timeout_s(self) -> float:
        return float(getattr(self.repo, "timeout_s", 120.0))

    # ------------------------------------------------------------------ out

    def _alert(self, model: str, decision: Decision) -> None:
        if self.alerts is None:
            return
        self.alerts.send(Alert(
            alertname={"degraded": "SentinelDegraded", "inconclusive": "SentinelInconclusive",
                       "error": "SentinelError"}.get(decision.phase, "SentinelAlert"),
            model=model, version=decision.served_version,
            severity="critical" if decision.phase in ("degraded", "error") else "warning",
            summary=(f"{model} v{decision.served_version}: {decision.phase}"
                     if decision.served_version else f"{model} (nothing serves): {decision.phase}"),
            description=decision.reason))

    def _emit(self, event: Event) -> None:
        """Record later, outside the lock (the event log writes to disk)."""
        self._outbox.append(event)

    def _flush(self) -> None:
        with self.lock:
            out, self._outbox = self._outbox, []
        for event in out:
            self._record(event)

    def _record(self, event: Event) -> int | None:
        try:
            stored = self.events.append(event)
        except Exception:  # the event log must never stop the loop; say so loudly instead
            log.exception("could not record event %s", event.kind)
            return None
        return stored if isinstance(stored, int) else None

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

    def close(self) -> None:
        self.lease.release()  # a clean stop hands over at once instead of after the TTL
        if self.replicas is not None:
            self.replicas.leave()
        self.actuator.shutdown()
        if self.alerts is not None:
            self.alerts.close()

