"""Operator actions (deploy, rollback, promote, pin, unpin, mark good, ack) with their safety checks.
Shared by the JSON API and the page forms, so both refuse the same unsafe requests with the same
words. Every action that changes what serves records the intent in the desired state first, then
activates through the poller's actuator and waits for the outcome; none holds the poller's lock
while Triton works."""
from __future__ import annotations

from dataclasses import dataclass

from monitor.actuator import ActionRequest
from monitor.types import Event
from sentinel import desired_state as ds

ACTIONS = ("deploy", "rollback", "promote", "pin", "unpin", "mark_good", "ack")
_SWITCHES = ("deploy", "rollback", "promote")


class OperatorError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class OperatorResult:
    model: str
    action: str
    version: str | None
    detail: str
    seconds: float | None = None
    generation: int | None = None


def _runtime(poller, model: str):
    rt = poller.models.get(model)
    if rt is None:
        raise OperatorError(404, f"unknown model {model!r}; known: {sorted(poller.models)}")
    return rt


def _version(rt, published: list[str], version) -> str:
    if version is None or isinstance(version, bool) or not isinstance(version, (str, int)) \
            or not str(version).isdigit():
        raise OperatorError(400, "'version' must be a version number, e.g. \"2\"")
    version = str(int(version))
    if version not in published and version not in {s.version for s in rt.states}:
        raise OperatorError(404, f"version {version} of {rt.name} is not in the model repository "
                                 f"(published: {published})")
    return version


def _failed_golden(rt, version: str) -> bool:
    return any(p.version == version and p.status == "mismatch" for p in rt.probes)


def _check_switch(rt, action: str, target: str, force: bool) -> None:
    if target == rt.served:
        raise OperatorError(409, f"version {target} already serves {rt.name}")
    if rt.pinned is not None and rt.pinned != target:
        raise OperatorError(409, f"{rt.name} is pinned to version {rt.pinned}; unpin it first")
    if rt.pending is not None:
        raise OperatorError(409, f"a switch of {rt.name} to version {rt.pending} is in progress")
    if _failed_golden(rt, target):
        raise OperatorError(409, f"version {target} failed its golden-set probe; refusing to "
                                 "serve it")
    rejection = rt.desired.rejection(target) if rt.desired is not None else None
    if rejection is not None and not (action == "deploy" and force):
        raise OperatorError(409, f"version {target} was rolled back ({rejection.reason[:200]}); "
                                 "publish a fixed version instead (or deploy it with force)")
    state = next((s for s in rt.states if s.version == target), None)
    if state is not None and state.state == "UNAVAILABLE" and state.reason \
            and state.reason != "unloaded":
        raise OperatorError(409, f"version {target} failed to load: {state.reason[:200]}")


def perform(poller, events, model: str, action: str, version=None, actor: str = "operator",
            reason: str = "", force: bool = False) -> OperatorResult:
    """Validate and carry out one operator action; raises OperatorError (HTTP-style status)."""
    if action not in ACTIONS:
        raise OperatorError(400, f"unknown action {action!r}; one of {ACTIONS}")
    actor = (actor or "operator")[:80]
    reason = (reason or "")[:500]
    published = poller.repository_versions(model)
    if action in _SWITCHES:
        poller.settle(model)  # a switch that just finished is applied before this one is judged
    with poller.lock:
        rt = _runtime(poller, model)
        if poller.desired_store is not None and rt.desired is None and action != "ack":
            raise OperatorError(409, f"{model} has no desired state yet (the sidecar writes it on "
                                     "its first cycle); try again in a second")
        served = rt.served
        if action in _SWITCHES:
            default = rt.rollback_target if action == "rollback" else None
            if action == "rollback" and version is None and default is None:
                raise OperatorError(409, f"{model} has no other known-good version to roll back to")
            target = _version(rt, published, version if version is not None else default)
            _check_switch(rt, action, target, force)
            rt.pending = target  # the reconcile step must not race the operator's own switch
        elif action in ("pin", "mark_good"):
            target = _version(rt, published, version if version is not None else served)
            if action == "mark_good" and _failed_golden(rt, target):
                raise OperatorError(409, f"version {target} failed its golden-set probe")
        elif action == "unpin":
            target = None
        else:  # ack: about alerts of this sidecar, not about what serves
            target = served
            if rt.decision is None or rt.decision.phase == "healthy":
                raise OperatorError(409, f"{model} has nothing to acknowledge (healthy)")
            rt.acked = (rt.decision.phase, rt.decision.reason, actor)
            detail = f"{actor} acknowledged: {rt.decision.reason[:200]}"
        baseline = poller.judge.baseline_of(rt, poller.clock()) \
            if action in ("mark_good", "promote") and target == served else {}
    if action == "ack":
        events.append(Event(poller.clock(), model, target, "operator", action=action, actor=actor,
                            reason=detail + (f" ({reason})" if reason else "")))
        return OperatorResult(model, action, target, detail)
    why = reason or f"{action} by {actor}"
    now = poller.clock()
    try:
        state = _write_intent(poller, model, action, target, served, actor, why, now, baseline)
    except OperatorError:
        with poller.lock:
            if action in _SWITCHES:
                rt.pending = None
        raise
    if action not in _SWITCHES:
        detail = {"pin": f"{actor} pinned version {target}", "unpin": f"{actor} unpinned {model}",
                  "mark_good": f"{actor} marked version {target} as known good"}[action]
        events.append(Event(now, model, target, "operator", action=action, actor=actor,
                            reason=detail + (f" ({reason})" if reason else "")))
        return OperatorResult(model, action, target, detail,
                              generation=state.generation if state else None)
    events.append(Event(now, model, target, "operator", action=action, actor=actor,
                        reason=f"{actor}: {action} to version {target} (desired state generation "
                               f"{state.generation if state else '-'})" + (f" ({reason})" if reason else "")))
    result = poller.converge(ActionRequest(model, target, action, f"operator {actor}: {why}",
                                           actor=actor, from_version=served, submitted_at=now))
    if result is None:
        raise OperatorError(409, f"another switch of {model} is in progress; the desired state says "
                                 f"version {target}, which the sidecar will converge to")
    if not result.outcome.ok:
        # Triton keeps the previous version served when a load fails: refuse, do not 5xx.
        raise OperatorError(409, f"version {target} did not load, version {served} still "
                                 f"serves: {result.outcome.detail}")
    return OperatorResult(model, action, target, f"version {target} now serves {model}",
                          result.outcome.seconds, state.generation if state else None)


def _write_intent(poller, model: str, action: str, target: str | None, served: str | None,
                  actor: str, why: str, now: float, baseline: dict):
    def change(s):
        if s is None:
            return None
        if action == "deploy":
            return ds.deploy(s, target, now, actor)
        if action == "rollback":
            if served is None:
                return ds.deploy(s, target, now, actor)
            return ds.roll_back(s, served, target, f"operator {actor}: {why}", now, actor)
        if action == "promote":
            return ds.mark_known_good(ds.deploy(s, target, now, actor), target, now, actor, baseline)
        if action == "pin":
            return ds.pin(s, target, now, actor)
        if action == "unpin":
            return ds.pin(s, None, now, actor)
        return ds.mark_known_good(s, target, now, actor, baseline)  # mark_good

    store = poller.desired_store
    if store is None:
        return None
    try:
        state = store.update(model, change)
    except ds.DesiredStateError as exc:
        raise OperatorError(409, f"the desired state could not be written: {exc}") from exc
    with poller.lock:
        poller.runtime(model).desired = state
    return state


def start_canary(poller, events, model: str, version, size, actor: str = "operator",
                 reason: str = "", policy: dict | None = None) -> OperatorResult:
    """Serve `version` on `size` live replicas, judged against the rest (monitor.canary) by the
    lease holder, which promotes it in steps or sends every replica back. Refused without a fleet,
    with fewer than size + 1 live replicas (nothing left to compare with), or while another canary
    of the model runs."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise OperatorError(400, "'canary' must be a number of replicas ≥ 1")
    if poller.canary is None or poller.replicas is None:
        raise OperatorError(409, "a canary needs a fleet: this sidecar runs without a lease "
                                 "(set lease = file | etcd | kubernetes on every replica)")
    try:
        poller.canary.policy.with_overrides(policy or {})  # refused here, not mid-canary
        overrides = dict(policy or {})
    except ValueError as exc:
        raise OperatorError(400, str(exc)) from None
    actor, reason = (actor or "operator")[:80], (reason or "")[:500]
    published = poller.repository_versions(model)
    members = poller.replicas.members()
    with poller.lock:
        rt = _runtime(poller, model)
        if rt.desired is None or rt.desired.version is None:
            raise OperatorError(409, f"{model} has no desired state yet; try again in a second")
        target = _version(rt, published, version)
        desired = rt.desired
        if desired.canary is not None:
            raise OperatorError(409, f"a canary of version {desired.canary.version} of {model} "
                                     f"is running on {list(desired.canary.replicas)}")
        if target == desired.version:
            raise OperatorError(409, f"version {target} already serves the fleet")
        if _failed_golden(rt, target):
            raise OperatorError(409, f"version {target} failed its golden-set probe")
        rejection = desired.rejection(target)
    if rejection is not None:
        raise OperatorError(409, f"version {target} was rolled back ({rejection.reason[:200]}); "
                                 "publish a fixed version instead")
    # The replicas that serve the fleet's version now; the holder's own last, so that with a
    # choice the replica that judges keeps a foot in the fleet group.
    live = [r for r in members if r.serves.get(model) == desired.version]
    if len(live) < size + 1:
        raise OperatorError(409, f"a canary on {size} replica(s) needs at least {size + 1} live "
                                 f"replicas serving version {desired.version}; live: "
                                 f"{[r.identity for r in members]}")
    chosen = tuple(r.identity for r in sorted(live, key=lambda r: (r.holder, r.identity))[:size])
    now = poller.clock()
    try:
        # Compare-and-swap on the generation these checks read: a decision written meanwhile
        # refuses the canary instead of starting it on a state nobody looked at.
        state = poller.desired_store.update(
            model, lambda s: ds.start_canary(s, target, chosen, now, actor, reason, overrides),
            expected_generation=desired.generation)
    except ds.StaleGeneration as exc:
        raise OperatorError(409, f"the desired state changed meanwhile ({exc.problem}); look "
                                 "again and retry") from None
    except ds.DesiredStateError as exc:
        raise OperatorError(409, f"the desired state could not be written: {exc}") from exc
    with poller.lock:
        poller.runtime(model).desired = state
    detail = (f"canary of version {target} started on {list(chosen)}; version {desired.version} "
              f"keeps serving the other {len(live) - size} replica(s)")
    events.append(Event(now, model, target, "canary", outcome="started", actor=actor,
                        reason=detail + (f" ({reason})" if reason else ""),
                        evidence={"replicas": list(chosen), "against": desired.version,
                                  "policy": dict(overrides)}))
    return OperatorResult(model, "canary", target, detail, generation=state.generation)

