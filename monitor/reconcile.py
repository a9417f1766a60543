"""Observed (Triton's repository index) against desired (the repository's desired state): what to do
to converge. Pure and level-triggered: the same inputs give the same step from any starting point,
so every cycle can ask again and a restart of anything loses nothing.

The one edge it looks at is an activation the sidecar did not make (someone loaded a version
through Triton's API): that is a deploy under watch, adopted into the desired state, never a reason
to forget it. A rejected version is never adopted; it is replaced at once.

In a fleet only the lease holder may write the desired state (`may_write`); a follower never
initialises or adopts: it waits for the holder's state, and converges its own Triton back to the
fleet's desired version when someone activated another one on it directly."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

from monitor.types import VersionState
from sentinel.desired_state import DesiredState

StepKind = Literal["none", "wait", "load", "adopt", "initialise", "alert"]


@dataclass(frozen=True)
class Observed:
    served: str | None                      # highest READY version, None when nothing serves
    states: tuple[VersionState, ...]
    published: tuple[str, ...]              # version directories on disk
    index_known: bool = True                # False: the index could not be fetched this cycle
    external_activation: bool = False       # served changed (or first seen) without our action
    action_in_flight: bool = False


@dataclass(frozen=True)
class Step:
    kind: StepKind
    version: str | None = None
    reason: str = ""


def plan(desired: DesiredState | None, observed: Observed, now: float, last_attempt_at: float,
         retry_s: float = 30.0, may_write: bool = True) -> Step:
    if not observed.index_known:
        return Step("wait", reason="Triton's repository index is unreachable; nothing to compare")
    if observed.action_in_flight:
        return Step("wait", reason="an action on this model is in flight")
    served = observed.served
    if (desired is None or desired.version is None) and not may_write:
        return Step("wait", reason="no desired state yet; the lease holder writes the first one")
    if desired is None or desired.version is None:
        if served is not None:
            return Step("initialise", served, f"no desired state yet: version {served} serves, "
                                              "adopted under watch")
        if observed.published:
            newest = max(observed.published, key=int)
            return Step("initialise", newest, f"no desired state and nothing serves: version "
                                              f"{newest} (the newest published) must serve")
        return Step("none", reason="no published version")
    want = desired.version
    if served == want:
        return Step("none", want, f"version {want} serves, as desired")
    if served is not None and observed.external_activation and not desired.is_rejected(served) \
            and desired.pinned is None and not desired.frozen and may_write:
        return Step("adopt", served, f"version {served} was activated outside the sidecar "
                                     f"(desired: {want}): a deploy under watch")
    if desired.frozen:
        return Step("none", want, f"frozen: version {served} serves, desired is {want}; not acting")
    if want not in observed.published:
        return Step("alert", want, f"desired version {want} is not in the repository "
                                   f"(published: {list(observed.published)})")
    state = next((s for s in observed.states if s.version == want), None)
    if state is not None and state.state == "LOADING":
        return Step("wait", want, f"version {want} is loading")
    if now - last_attempt_at < retry_s:
        return Step("wait", want, f"last attempt to load version {want} was "
                                  f"{now - last_attempt_at:.0f}s ago; retrying after {retry_s:g}s")
    what = f"version {served} serves" if served is not None else "nothing serves"
    if desired.is_rejected(served):
        what += " (rejected)"
    return Step("load", want, f"desired version {want}, but {what}")


def published_versions(names: Sequence[str]) -> tuple[str, ...]:
    return tuple(sorted((n for n in names if n.isdigit()), key=int))
