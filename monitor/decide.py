"""The rollback decision: a pure function of what was observed, the version state and the policy.

Every rule looks at one kind of evidence and may return a verdict. The most consequential verdict
wins (rollback/reload, then alert, then no action; rule order breaks ties) and the others are named
in its reason. The gate then applies the operator's and the policy's limits to the chosen action.
"Could not measure" (scrape errors, missing data) is never treated as "measured bad".
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Callable, Sequence

from monitor.resource import describe as describe_resource
from monitor.types import (
    Action,
    ActionRecord,
    Decision,
    DecisionInputs,
    Detection,
    Evidence,
    FailureEvidence,
    KnownGoodState,
    Phase,
    Policy,
    ProbeResult,
    VersionState,
)

__all__ = ["Policy", "decide", "update_known_good"]

_HOUR_S = 3600.0
# Triton's answer once a python-backend stub has died ("Stub process 'm_0_0' is not healthy."):
# a probe that gets it needs no failure statistics to know the stub is dead.
_DEAD_STUB_MARKERS = ("Stub process", "is not healthy")
_ACTION_RANK = {"rollback": 2, "reload": 2, "alert": 1, "none": 0}
# Signals that move with the inputs as much as with the version.
_SCORE_SIGNALS = ("score_mean", "score_std")


@dataclass(frozen=True)
class _Verdict:
    phase: Phase
    action: Action
    reason: str
    target: str | None = None
    evidence: tuple[Evidence, ...] = ()


def decide(inputs: DecisionInputs, policy: Policy = Policy()) -> Decision:
    if inputs.served_version is None:
        verdict = _Verdict("inconclusive", "none", f"{inputs.model}: no served version known yet")
    else:
        verdicts = [v for rule in _RULES if (v := rule(inputs, policy)) is not None]
        verdict = _choose(verdicts) if verdicts else _healthy(inputs)
        verdict = _gate(verdict, inputs, policy)
        if verdict.action == "rollback":
            verdict = replace(verdict, reason=f"{verdict.reason}; rolling back to version {verdict.target}")
    return Decision(
        model=inputs.model,
        served_version=inputs.served_version,
        ts=inputs.now,
        phase=verdict.phase,
        action=verdict.action,
        reason=verdict.reason,
        target_version=verdict.target if verdict.action in ("rollback", "reload") else None,
        evidence=verdict.evidence,
    )


def _choose(verdicts: Sequence[_Verdict]) -> _Verdict:
    best = max(verdicts, key=lambda v: _ACTION_RANK[v.action])  # max keeps the first of equals
    also = [v.reason for v in verdicts if v is not best and v.action != "none"]
    if not also:
        return best
    return replace(best, reason=best.reason + "; also: " + "; ".join(also))


# ------------------------------------------------------------------ rules (served version is set)


def _served_state(inputs: DecisionInputs, policy: Policy) -> _Verdict | None:
    if not inputs.version_states:
        return None  # index not fetched: nothing to say
    served = inputs.served_version
    state = _state_of(inputs.version_states, served)
    if state is None:
        return _Verdict(
            "error", "alert", f"served version {served} is not in Triton's repository index"
        )
    if state.state == "READY":
        return None
    if state.state in ("LOADING", "UNLOADING"):
        return _Verdict(
            "inconclusive", "none", f"served version {served} is {state.state}: a switch is in progress",
            evidence=(state,),
        )
    return _Verdict(
        "error",
        "alert",
        f"served version {served} is {state.state}" + (f": {state.reason}" if state.reason else ""),
        evidence=(state,),
    )


def _dead_stub(inputs: DecisionInputs, policy: Policy) -> _Verdict | None:
    served = inputs.served_version
    reload = _last_action(inputs, "reload", served)
    since_reload = inputs.now - reload.ts if reload is not None else math.inf
    # Failure counts come from the metrics: stale ones (scrapes failing) must not act, and neither
    # may a window or a probe that began before our last reload: they describe the old stub.
    fe = inputs.failure_evidence if _data_fresh(inputs, policy) else None
    if fe is not None and (fe.model, fe.version) != (inputs.model, served):
        fe = None
    if fe is not None and since_reload < fe.window_s:
        if _failing(fe, policy):
            return _Verdict(
                "inconclusive", "none",
                f"version {served} was reloaded {since_reload:.0f}s ago; waiting for a full "
                f"{fe.window_s:g}s of data from the new stub",
            )
        fe = None
    why, evidence = _stub_trouble(fe, _probes_since_reload(inputs, policy), policy)
    if not why:
        return None
    if reload is not None and since_reload <= policy.reload_escalate_s:
        # A fresh stub did not help: the version itself is broken, which is a rollback matter.
        return _Verdict(
            "degraded",
            "rollback",
            f"served version {served} {why}, still after a reload {since_reload:.0f}s ago",
            target=inputs.last_known_good,
            evidence=evidence,
        )
    return _Verdict(
        "degraded",
        "reload",
        f"served version {served} {why}: its stub looks dead or hung; reloading the same version",
        target=served,
        evidence=evidence,
    )


def _stub_trouble(
    fe: FailureEvidence | None, probes: Sequence[ProbeResult], policy: Policy
) -> tuple[str, tuple[Evidence, ...]]:
    """Why the served version's stub looks dead or hung, with the evidence; "" if it does not."""
    if fe is not None and fe.requests >= policy.dead_stub_min_requests:
        if fe.failure_ratio >= policy.dead_stub_failure_ratio:
            failed = f"{fe.failures:.0f} of {fe.requests:.0f} requests"
            return f"fails {failed} in the last {fe.window_s:g}s while READY", (fe,)
    last = probes[-1] if probes else None
    if last is not None and last.status == "error" and all(m in last.detail for m in _DEAD_STUB_MARKERS):
        return f"answers the golden probe with {last.detail!r}", (last,)
    timeouts = _trailing_timeouts(probes)
    if not timeouts:
        return "", ()
    if fe is not None and _failing(fe, policy):
        failed = f"{fe.failures:.0f} of {fe.requests:.0f} requests failed"
        return f"timed out on {len(timeouts)} golden probe(s) with {failed}", (*timeouts, fe)
    if len(timeouts) >= policy.probe_timeout_limit:
        return f"timed out on {len(timeouts)} golden probes in a row", tuple(timeouts)
    return "", ()


def _probe_mismatch(inputs: DecisionInputs, policy: Policy) -> _Verdict | None:
    probes = _recent_probes(inputs, policy, inputs.served_version)
    if not probes:
        return None
    latest = probes[-1]
    failing = _trailing_answered_failures(probes)
    if len(failing) >= policy.probe_failure_limit:
        # Triton answered the golden requests with errors: evidence about the version itself,
        # whether or not its metrics count the failures (an error response counts as a success).
        return _Verdict(
            "degraded",
            "rollback",
            f"golden-set probes of served version {inputs.served_version} failed "
            f"{len(failing)} times in a row: {latest.detail[:200]}",
            target=inputs.last_known_good,
            evidence=tuple(failing),
        )
    if latest.status != "mismatch":
        return None  # a later ok probe supersedes an earlier mismatch
    return _Verdict(
        "degraded",
        "rollback",
        f"golden-set probe of served version {inputs.served_version} does not match the expected "
        f"outputs" + (f": {latest.detail}" if latest.detail else ""),
        target=inputs.last_known_good,
        evidence=(latest,),
    )


def _load_failure(inputs: DecisionInputs, policy: Policy) -> _Verdict | None:
    requested = inputs.requested_version
    if requested is None or requested == inputs.served_version:
        return None
    state = _state_of(inputs.version_states, requested)
    if state is None or state.state != "UNAVAILABLE":
        return None
    # Never unload anything here: the version that serves now keeps serving.
    return _Verdict(
        "error",
        "alert",
        f"version {requested} failed to load" + (f" ({state.reason})" if state.reason else "")
        + f"; version {inputs.served_version} stays served",
        evidence=(state,),
    )


def _scrape_health(inputs: DecisionInputs, policy: Policy) -> _Verdict | None:
    errors = []
    for outcome in reversed(inputs.scrape_outcomes):
        if outcome.ok:
            break
        errors.append(outcome)
    if not errors:
        return None
    last = errors[0]
    if len(errors) >= policy.consecutive_error_limit:
        return _Verdict(
            "inconclusive",
            "alert",
            f"{len(errors)} consecutive metrics scrapes failed (last: {last.error}); cannot judge "
            f"version {inputs.served_version}",
            evidence=tuple(reversed(errors)),
        )
    return _Verdict(
        "inconclusive", "none", f"metrics scrape failed ({last.error}); waiting for data", evidence=(last,)
    )


def _missing_data(inputs: DecisionInputs, policy: Policy) -> _Verdict | None:
    last = inputs.last_sample_at
    if last is not None and inputs.now - last <= policy.stale_after_s:
        return None
    since = "ever" if last is None else f"for {inputs.now - last:.0f}s"
    return _Verdict(
        "inconclusive", "none", f"no metrics for served version {inputs.served_version} {since}"
    )


def _detections(inputs: DecisionInputs, policy: Policy) -> _Verdict | None:
    if not _data_fresh(inputs, policy):
        return None  # old detections must not act while the present cannot be seen
    served = inputs.served_version
    recent = [d for d in inputs.detections if d.model == inputs.model and _is_bad_recent(d, inputs, policy)]
    served_bad = [
        d for d in recent
        if d.version == served
        # Detections raised before this activation belong to an earlier period of serving.
        and (inputs.activated_at is None or d.detected_at >= inputs.activated_at - policy.attribution_slack_s)
    ]
    if not served_bad:
        return None
    if inputs.inputs_drifted:
        explained = [d for d in served_bad if d.signal in _SCORE_SIGNALS]
        served_bad = [d for d in served_bad if d.signal not in _SCORE_SIGNALS]
        if not served_bad:
            return _Verdict(
                "degraded",
                "alert",
                f"{_describe(explained)}, while the known-good version's own scores moved against "
                f"its earlier hours: the inputs drifted, not attributable to version {served} "
                f"(a retrain is asked for)",
                evidence=tuple(explained),
            )
    elsewhere = [d for d in recent if d.version != served] + [
        d for d in inputs.other_model_detections if _is_bad_recent(d, inputs, policy)
    ]
    concurrent = [
        o for o in elsewhere
        if any(abs(o.changed_at - d.changed_at) <= policy.concurrency_window_s for d in served_bad)
    ]
    what = _describe(served_bad)
    if concurrent:
        return _Verdict(
            "degraded",
            "alert",
            f"{what}, but also {_describe(concurrent)} at the same time: infrastructure-wide, "
            f"not attributable to version {served}",
            evidence=tuple(served_bad) + tuple(concurrent),
        )
    if inputs.activated_at is None:
        if inputs.peers_observed > 0:
            return _Verdict(
                "degraded",
                "rollback",
                f"{what}; only this version changed while {inputs.peers_observed} other series are fine",
                target=inputs.last_known_good,
                evidence=tuple(served_bad),
            )
        return _Verdict(
            "degraded", "alert", f"{what}; activation time unknown and nothing to compare with",
            evidence=tuple(served_bad),
        )
    after = [d for d in served_bad if d.changed_at >= inputs.activated_at - policy.attribution_slack_s]
    soon = [d for d in after if d.changed_at - inputs.activated_at <= policy.attribution_window_s]
    if soon:
        return _Verdict(
            "degraded",
            "rollback",
            f"{_describe(soon)}, after version {served} was activated at {_clock(inputs.activated_at)}",
            target=inputs.last_known_good,
            evidence=tuple(soon),
        )
    if after:
        late = f"{_describe(after)}, {_minutes(after[0].changed_at - inputs.activated_at)} after " \
               f"version {served} was activated at {_clock(inputs.activated_at)}"
        restarts = [t for t in inputs.reset_times for d in after
                    if abs(d.changed_at - t) <= policy.concurrency_window_s]
        if restarts:
            # A server restart (counters reset) moves a model's signals for a while (cold
            # sessions, a refilled cache): that is the restart's doing, not a late regression.
            return _Verdict(
                "degraded",
                "alert",
                f"{late}, with the server restarted at {_clock(restarts[0])} (counters reset): "
                f"not attributable",
                evidence=tuple(after),
            )
        if inputs.peers_observed > 0:
            return _Verdict(
                "degraded",
                "rollback",
                f"{late}: a late regression; only this version changed while "
                f"{inputs.peers_observed} other series are fine",
                target=inputs.last_known_good,
                evidence=tuple(after),
            )
        return _Verdict(
            "degraded",
            "alert",
            f"{late}, with no other watched series to tell it from a change of the host or the "
            f"traffic: not attributable",
            evidence=tuple(after),
        )
    return _Verdict(
        "degraded",
        "alert",
        f"{what}, but the change began before version {served} was activated at "
        f"{_clock(inputs.activated_at)}: not attributable",
        evidence=tuple(served_bad),
    )


def _quality(inputs: DecisionInputs, policy: Policy) -> _Verdict | None:
    """Online quality from feedback. A version the system metrics call healthy can still rank
    worse; with a reference that has enough labels, a version without enough of its own is not
    healthy yet (so it cannot become known good on system metrics alone)."""
    q = inputs.quality
    if q is None or q.version != inputs.served_version or q.verdict in ("no_reference", "ok"):
        return None
    if q.verdict == "insufficient":
        return _Verdict("inconclusive", "none", f"online quality not known yet: {q.reason}",
                        evidence=(q,))
    return _Verdict(
        "degraded",
        "rollback",
        f"version {q.version} ranks worse than version {q.reference_version} on feedback: {q.reason}",
        target=inputs.last_known_good,
        evidence=(q,),
    )


def _resources(inputs: DecisionInputs, policy: Policy) -> _Verdict | None:
    """A served version whose own stubs leak, or that needs more CPU per request than the
    known-good version at the same load, is degraded: the measurement is per version (its own
    processes), so it is attributable however long after its activation it shows. Server-wide
    memory pressure that the served version's memory does not explain is an alert."""
    if not _data_fresh(inputs, policy):
        return None
    served = inputs.served_version
    mine = [f for f in inputs.resources if getattr(f, "version", served) == served]
    bad = [f for f in mine if (f.kind == "memory_growth" and f.leaking)
           or (f.kind == "cpu_per_request" and f.degraded)]
    if bad:
        return _Verdict("degraded", "rollback", "; ".join(describe_resource(f) for f in bad),
                        target=inputs.last_known_good, evidence=tuple(bad))
    pressed = [f for f in mine if f.kind == "server_pressure" and f.pressed]
    if pressed:
        return _Verdict("degraded", "alert",
                        f"{describe_resource(pressed[0])}, and the memory of version {served} "
                        f"does not grow: server-wide pressure, not attributable to version {served}",
                        evidence=tuple(pressed))
    return None


def _prediction_drift(inputs: DecisionInputs, policy: Policy) -> _Verdict | None:
    """Before labels arrive: the served version's scores moved far from the reference's. A warning
    that keeps the version from being vouched for on system metrics alone; quality evidence that
    it ranks as well settles it, and `drift_rollback` makes it a rollback on its own."""
    d = inputs.drift
    served = inputs.served_version
    if d is None or not d.drifted or d.version != served:
        return None
    q = inputs.quality
    if q is not None and q.version == served and q.verdict == "ok":
        return None
    what = (f"prediction drift: the scores of version {served} (mean {d.mean:.3g}) against "
            f"{d.against} (mean {d.reference_mean:.3g}): PSI {d.psi:.2f}, p={d.p_value:.2g} over "
            f"{d.samples} and {d.reference_samples} sampled scores")
    if policy.drift_rollback:
        return _Verdict("degraded", "rollback", what, target=inputs.last_known_good, evidence=(d,))
    return _Verdict("inconclusive", "alert",
                    f"{what}; a warning: feedback (online quality) or an operator decides",
                    evidence=(d,))


def _probe_timeout(inputs: DecisionInputs, policy: Policy) -> _Verdict | None:
    timeouts = _trailing_timeouts(_probes_since_reload(inputs, policy))
    if not timeouts:
        return None
    return _Verdict(
        "inconclusive",
        "none",
        f"golden probe of version {inputs.served_version} timed out {len(timeouts)} time(s) without "
        "failed requests; watching",
        evidence=tuple(timeouts),
    )


_RULES: tuple[Callable[[DecisionInputs, Policy], _Verdict | None], ...] = (
    _served_state,
    _dead_stub,
    _probe_mismatch,
    _load_failure,
    _scrape_health,
    _missing_data,
    _detections,
    _quality,
    _resources,
    _prediction_drift,
    _probe_timeout,
)


def _healthy(inputs: DecisionInputs) -> _Verdict:
    reason = f"served version {inputs.served_version}: no attributable degradation"
    if inputs.reset_times:
        reason += (
            f" ({len(inputs.reset_times)} counter reset(s), last at {inputs.reset_times[-1]:.0f}: "
            "Triton restart or reload; those intervals were skipped)"
        )
    return _Verdict("healthy", "none", reason)


# ------------------------------------------------------------------ the gate


def _gate(verdict: _Verdict, inputs: DecisionInputs, policy: Policy) -> _Verdict:
    if verdict.action == "none":
        return verdict
    if policy.freeze or inputs.frozen:
        return replace(verdict, action="none", reason=verdict.reason + f"; frozen: no {verdict.action}")
    if verdict.action not in ("rollback", "reload"):
        return verdict
    served = inputs.served_version
    if verdict.action == "rollback":
        if inputs.pinned_version is not None and inputs.pinned_version == served:
            return _as_alert(verdict, f"version {served} is pinned by an operator: no automatic rollback")
        target = inputs.last_known_good
        if target is None or target == served:
            return _as_alert(verdict, "no other last known good version to roll back to")
    count = sum(
        1 for a in inputs.actions
        if a.model == inputs.model and a.kind == verdict.action and inputs.now - a.ts < _HOUR_S
    )
    limit = policy.max_rollbacks_per_hour if verdict.action == "rollback" else policy.max_reloads_per_hour
    if count >= limit:
        return _as_alert(verdict, f"{verdict.action} limit reached ({count} in the last hour, max {limit})")
    last = max((a.ts for a in inputs.actions if a.model == inputs.model), default=None)
    if last is not None and inputs.now - last < policy.cooldown_s:
        return replace(
            verdict,
            action="none",
            reason=verdict.reason + f"; cooldown: last action {inputs.now - last:.0f}s ago "
            f"(< {policy.cooldown_s:g}s), waiting",
        )
    return verdict


def _as_alert(verdict: _Verdict, why: str) -> _Verdict:
    return replace(verdict, action="alert", target=None, reason=f"{verdict.reason}; {why}")


# ------------------------------------------------------------------ known good


def update_known_good(
    state: KnownGoodState,
    served_version: str | None,
    phase: Phase,
    now: float,
    policy: Policy = Policy(),
    operator_mark: str | None = None,
) -> KnownGoodState:
    """A served version becomes "last known good" after `known_good_after_s` of healthy decisions
    in a row, or at once when an operator marks it. Degraded or error resets the clock;
    inconclusive neither advances nor resets it, but promotion needs a healthy decision."""
    known = operator_mark if operator_mark is not None else state.known_good
    if served_version != state.candidate:
        since = now if phase == "healthy" else None
        return KnownGoodState(known_good=known, candidate=served_version, healthy_since=since)
    since = state.healthy_since
    if phase in ("degraded", "error"):
        since = None
    elif phase == "healthy":
        since = now if since is None else since
        if served_version is not None and now - since >= policy.known_good_after_s:
            known = served_version if operator_mark is None else known
    return KnownGoodState(known_good=known, candidate=served_version, healthy_since=since)


# ------------------------------------------------------------------ helpers


def _state_of(states: Sequence[VersionState], version: str | None) -> VersionState | None:
    return next((s for s in states if s.version == version), None)


def _recent_probes(inputs: DecisionInputs, policy: Policy, version: str | None) -> list[ProbeResult]:
    probes = [
        p for p in inputs.probes
        if p.model == inputs.model and p.version == version and inputs.now - p.ts <= policy.detection_window_s
        and (inputs.activated_at is None or p.ts >= inputs.activated_at - policy.attribution_slack_s)
    ]
    return sorted(probes, key=lambda p: p.ts)


def _failing(fe: FailureEvidence, policy: Policy) -> bool:
    """Enough failures to back a probe timeout (a stray failure is not enough)."""
    return fe.failures >= policy.dead_stub_min_requests and fe.failure_ratio >= policy.probe_timeout_failure_ratio


def _probes_since_reload(inputs: DecisionInputs, policy: Policy) -> list[ProbeResult]:
    """Probes of the served version that describe its current stub (none from before our reload)."""
    reload = _last_action(inputs, "reload", inputs.served_version)
    probes = _recent_probes(inputs, policy, inputs.served_version)
    return [p for p in probes if reload is None or p.ts >= reload.ts]


def _trailing_answered_failures(probes: Sequence[ProbeResult]) -> list[ProbeResult]:
    """The newest run of probes the version answered with HTTP 5xx (a dead stub is _dead_stub's)."""
    out: list[ProbeResult] = []
    for p in reversed(probes):
        if not p.answered_failure or all(m in p.detail for m in _DEAD_STUB_MARKERS):
            break
        out.append(p)
    return out[::-1]


def _trailing_timeouts(probes: Sequence[ProbeResult]) -> list[ProbeResult]:
    out: list[ProbeResult] = []
    for p in reversed(probes):
        if p.status != "timeout":
            break
        out.append(p)
    return out[::-1]


def _last_action(inputs: DecisionInputs, kind: str, version: str | None) -> ActionRecord | None:
    matches = [a for a in inputs.actions if a.model == inputs.model and a.kind == kind and a.version == version]
    return max(matches, key=lambda a: a.ts, default=None)


def _is_bad_recent(d: Detection, inputs: DecisionInputs, policy: Policy) -> bool:
    if inputs.now - d.detected_at > policy.detection_window_s:
        return False
    bad = policy.bad_directions.get(d.signal)
    return bad == "both" or bad == d.direction


def _data_fresh(inputs: DecisionInputs, policy: Policy) -> bool:
    last_ok = not inputs.scrape_outcomes or inputs.scrape_outcomes[-1].ok
    return (
        last_ok
        and inputs.last_sample_at is not None
        and inputs.now - inputs.last_sample_at <= policy.stale_after_s
    )


def _minutes(seconds: float) -> str:
    return f"{seconds / 60.0:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _clock(ts: float) -> str:
    """Reasons are read by people: UTC clock time, not epoch seconds."""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%H:%M:%S UTC")


def _describe(detections: Sequence[Detection]) -> str:
    parts = []
    for d in detections[:4]:
        change = d.direction if math.isnan(d.baseline_mean) else f"{d.baseline_mean:.4g} -> {d.recent_mean:.4g}"
        parts.append(f"{d.signal} of {d.model} v{d.version} went {d.direction} ({change})")
    more = f" and {len(detections) - 4} more" if len(detections) > 4 else ""
    return ", ".join(parts) + more
