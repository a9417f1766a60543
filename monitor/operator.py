"""Operator actions (rollback, promote, pin, unpin, mark good, ack) with their safety checks. Shared
by the JSON API and the page forms, so both refuse the same unsafe requests with the same words."""
from __future__ import annotations

from dataclasses import dataclass

from monitor.records import Event

ACTIONS = ("rollback", "promote", "pin", "unpin", "mark_good", "ack")


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


def perform(poller, events, model: str, action: str, version=None, actor: str = "operator",
            reason: str = "") -> OperatorResult:
    """Validate and carry out one operator action; raises OperatorError (HTTP-style status)."""
    if action not in ACTIONS:
        raise OperatorError(400, f"unknown action {action!r}; one of {ACTIONS}")
    actor = (actor or "operator")[:80]
    reason = (reason or "")[:500]
    with poller.lock:
        rt = _runtime(poller, model)
        published = poller.repository_versions(model)
        if action in ("rollback", "promote"):
            default = rt.known.known_good if action == "rollback" else None
            target = _version(rt, published, version if version is not None else default)
            if target == rt.served:
                raise OperatorError(409, f"version {target} already serves {model}")
            if rt.pinned is not None and rt.pinned != target:
                raise OperatorError(409, f"{model} is pinned to version {rt.pinned}; unpin it first")
            if _failed_golden(rt, target):
                raise OperatorError(409, f"version {target} failed its golden-set probe; refusing to "
                                         "serve it")
            if target in rt.rolled_back_from:
                raise OperatorError(409, f"version {target} was rolled back "
                                         f"({rt.rolled_back_from[target][:200]}); publish a fixed "
                                         "version instead")
            state = next((s for s in rt.states if s.version == target), None)
            if state is not None and state.state == "UNAVAILABLE" and state.reason \
                    and state.reason != "unloaded":
                raise OperatorError(409, f"version {target} failed to load: {state.reason[:200]}")
            outcome = poller.operator_load(model, target, actor, reason or f"{action} by {actor}",
                                           kind=action)
            if not outcome.ok:
                # Triton keeps the previous version served when a load fails: refuse, do not 5xx.
                raise OperatorError(409, f"version {target} did not load, version {rt.served} "
                                         f"still serves: {outcome.detail}")
            return OperatorResult(model, action, target, f"version {target} now serves {model}",
                                  outcome.seconds)
        if action == "pin":
            target = _version(rt, published, version if version is not None else rt.served)
            rt.pinned = target
            detail = f"{actor} pinned version {target}"
        elif action == "unpin":
            target, rt.pinned = None, None
            detail = f"{actor} unpinned {model}"
        elif action == "mark_good":
            target = _version(rt, published, version if version is not None else rt.served)
            if _failed_golden(rt, target):
                raise OperatorError(409, f"version {target} failed its golden-set probe")
            rt.operator_mark = target
            rt.known = type(rt.known)(known_good=target, candidate=rt.known.candidate,
                                      healthy_since=rt.known.healthy_since)
            detail = f"{actor} marked version {target} as known good"
        else:  # ack
            target = rt.served
            if rt.decision is None or rt.decision.phase == "healthy":
                raise OperatorError(409, f"{model} has nothing to acknowledge (healthy)")
            rt.acked = (rt.decision.phase, rt.decision.reason, actor)
            detail = f"{actor} acknowledged: {rt.decision.reason[:200]}"
    events.append(Event(poller.clock(), model, target, "operator", action=action, actor=actor,
                        reason=detail + (f" ({reason})" if reason else "")))
    return OperatorResult(model, action, target, detail)
