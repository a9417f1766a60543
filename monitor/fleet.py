"""The poller's side of the fleet lease: renew it once per cycle, say when it changes hands or the
engine cannot be reached, and answer "may this sidecar decide now?" without I/O.

Every sidecar judges its own Triton (its pages and alerts stay complete) and reconciles it to the
desired state in the shared repository; only the holder turns a judgement into a desired-state
write (rollback, known good, adopting an outside activation, retrain). A follower records its
judgement with the outcome "not acting" and the reason, so its event log says who decided."""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable

from monitor.lease import Lease, LeaseStatus, NoLease
from monitor.types import Alert, Event


@dataclass(frozen=True)
class LeaseStep:
    status: LeaseStatus
    events: tuple[Event, ...] = ()
    alerts: tuple[Alert, ...] = ()


# An etcd leader election makes every member fail a request or two for a second or so; the
# holder keeps its lease through it (its last renewal is still valid). Only errors that last this
# many cycles in a row are reported as the engine being unreachable.
UNAVAILABLE_AFTER = 3


class LeaseKeeper:
    def __init__(self, lease: Lease | None = None, clock: Callable[[], float] = time.time,
                 unavailable_after: int = UNAVAILABLE_AFTER):
        self.lease = lease if lease is not None else NoLease()
        self.clock = clock
        self.unavailable_after = unavailable_after
        self.status: LeaseStatus | None = None
        self.checked_at: float | None = None
        self._errors_in_a_row = 0
        self._reported_unavailable = False

    @property
    def coordinated(self) -> bool:
        """False for a lone sidecar (no lease engine): everything behaves as before fleets."""
        return self.lease.backend != "none"

    @property
    def identity(self) -> str:
        return self.lease.identity

    def step(self) -> LeaseStep:
        """Acquire or renew (network I/O: call without the poller's lock)."""
        before, status = self.status, self.lease.acquire()
        self.status, self.checked_at = status, self.clock()
        if not self.coordinated:
            return LeaseStep(status)
        self._errors_in_a_row = self._errors_in_a_row + 1 if status.error else 0
        was = self._reported_unavailable
        self._reported_unavailable = self._errors_in_a_row >= self.unavailable_after or \
            (was and status.error is not None)
        return LeaseStep(status, *_transitions(before, status, self.checked_at, was,
                                               self._reported_unavailable))

    def may_decide(self) -> bool:
        return self.lease.held()

    def why_not(self) -> str:
        s = self.status
        if s is not None and s.error:
            return f"not acting: no lease ({s.error})"
        holder = s.holder if s is not None else None
        return f"not acting: the {self.lease.backend} lease is held by " \
               f"{holder or 'nobody yet'}; this sidecar reconciles to the desired state only"

    def deferred(self, event: Event) -> Event:
        """A follower's record of a decision it does not carry out."""
        return replace(event, outcome="not acting", reason=f"{self.why_not()}: {event.reason}",
                       evidence={**event.evidence, "lease": self.public()})

    def acted(self, event: Event) -> Event:
        if not self.coordinated:
            return event
        return replace(event, evidence={**event.evidence, "lease": self.public()})

    def public(self) -> dict:
        s = self.status
        return {"backend": self.lease.backend, "identity": self.identity,
                "held": self.lease.held(), "holder": s.holder if s else None,
                "error": s.error if s else None, "ttl_s": s.ttl_s if s else None,
                "checked_at": self.checked_at}

    def release(self) -> None:
        self.lease.release()


def _transitions(before: LeaseStatus | None, now: LeaseStatus, ts: float, was_unavailable: bool,
                 unavailable: bool) -> tuple[tuple[Event, ...], tuple[Alert, ...]]:
    events, alerts = [], []
    was_held = before is not None and before.held
    if now.held and not was_held:
        events.append(Event(ts, "*", None, "lease", outcome="acquired", actor=now.identity,
                            reason=f"{now.identity} holds the {now.backend} lease and decides "
                                   "for the fleet" + (f" (ttl {now.ttl_s:g}s)" if now.ttl_s else "")))
    elif was_held and not now.held:
        events.append(Event(ts, "*", None, "lease", outcome="lost", actor=now.identity,
                            reason=f"{now.identity} lost the {now.backend} lease"
                                   + (f": {now.error}" if now.error else
                                      f" (holder now: {now.holder or 'nobody'})")
                                   + "; it stops deciding and only reconciles"))
    elif not now.held and now.holder and (before is None or before.holder != now.holder):
        events.append(Event(ts, "*", None, "lease", outcome="follower", actor=now.identity,
                            reason=f"{now.holder} holds the {now.backend} lease; {now.identity} "
                                   "judges and reconciles only"))
    if unavailable and not was_unavailable:
        events.append(Event(ts, "*", None, "lease", outcome="unavailable", actor=now.identity,
                            reason=f"cannot reach the lease engine: {now.error}; no decision is "
                                   "carried out without the lease, reconcile goes on"))
        alerts.append(Alert("SentinelLeaseUnavailable", "*", None, "critical",
                            summary="fleet lease engine unreachable: nobody decides",
                            description=now.error))
    elif was_unavailable and not unavailable:
        events.append(Event(ts, "*", None, "lease", outcome="available", actor=now.identity,
                            reason=f"the {now.backend} lease engine answers again"))
        alerts.append(Alert("SentinelLeaseUnavailable", "*", None, "critical",
                            summary="fleet lease engine reachable again", ends_at=ts))
    return tuple(events), tuple(alerts)
