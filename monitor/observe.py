"""What Triton's repository index says about each model, applied to the poller's runtimes: which
version serves, activations the sidecar did not make, versions that failed to load. Runs under the
poller's lock (computation only); events come back to be recorded outside it."""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

from monitor.actuator import ActionResult
from monitor.types import Event, VersionState
from monitor.runtime import ModelRuntime


def apply_index(runtime: Callable[[str], ModelRuntime], models: Iterable[str],
                entries: Sequence[tuple[str, VersionState]], index_at: float, now: float,
                finished: Sequence[ActionResult], in_flight: dict[str, str]) -> list[Event]:
    events: list[Event] = []
    by_model: dict[str, list[VersionState]] = {}
    for model, state in entries:
        by_model.setdefault(model, []).append(state)
    for model in sorted(set(by_model) | set(models)):
        rt = runtime(model)
        rt.states = tuple(sorted(by_model.get(model, ()),
                                 key=lambda s: int(s.version) if s.version.isdigit() else -1))
        ours = model in in_flight or rt.pending is not None or any(
            r.request.model == model and r.finished_at >= index_at for r in finished)
        if ours:
            continue  # our own action is switching it; its result says what serves
        ready = [s.version for s in rt.states if s.state == "READY" and s.version.isdigit()]
        served = max(ready, key=int) if ready else None
        first = not rt.observed_once
        rt.observed_once = True
        if served is None:
            rt.served = None  # nothing serves: the reconcile step loads the desired version
        elif served != rt.served:
            previous = rt.served or rt.last_served
            rt.snapshot_current()
            rt.served = served
            if rt.requested is not None and rt.requested != served:
                rt.requested = None  # superseded by this activation (see monitor.outcomes)
            if served != previous or first:
                # Not by us: someone loaded it through Triton's API, or this sidecar just
                # started. The reconcile step decides whether that is a deploy under watch.
                rt.external = True
                rt.activated_at = rt.desired.watch.since if first and rt.under_watch else now
                events.append(Event(now, model, served, "activation",
                                    reason=(f"version {served} serves (first seen by this sidecar)"
                                            if first or previous is None
                                            else f"version {served} now serves (was {previous})"),
                                    evidence={"previous": previous, "first_seen": first}))
            # else: the same version is back after a Triton restart; nothing was activated
        if rt.served is not None:
            rt.last_served = rt.served
        events.extend(note_load_failure(rt, now))
    return events


def note_load_failure(rt: ModelRuntime, now: float) -> list[Event]:
    newest = max((s for s in rt.states if s.version.isdigit()), key=lambda s: int(s.version),
                 default=None)
    # "unloaded" is how Triton lists a version it let go of normally (e.g. after a switch)
    if newest is None or newest.state != "UNAVAILABLE" or newest.version == rt.served \
            or not newest.reason or newest.reason == "unloaded" \
            or (newest.version, newest.reason) in rt.load_failures_seen:
        return []
    rt.load_failures_seen.add((newest.version, newest.reason))
    rt.requested, rt.requested_at = newest.version, now
    return [Event(now, rt.name, newest.version, "load_failure",
                  reason=f"version {newest.version} failed to load; " + (
                      f"version {rt.served} stays served" if rt.served else "nothing serves"),
                  evidence={"reason": newest.reason[-2000:]})]
