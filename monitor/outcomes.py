"""A finished action (monitor.actuator) applied to the model's runtime: what serves now, which
detector baseline continues, what is recorded and alerted. Runs under the poller's lock."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from monitor.actuator import ActionResult
from monitor.detect import OnlineDetector
from monitor.types import Alert, Event
from monitor.runtime import ModelRuntime, MonitorMetrics


@dataclass
class Applied:
    events: list[Event] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    failed_deploy: bool = False  # the deployed version must be rejected (a desired-state write)


def apply_result(rt: ModelRuntime, result: ActionResult, metrics: MonitorMetrics,
                 new_detectors: Callable[[], dict[str, OnlineDetector]]) -> Applied:
    req, outcome, probe = result.request, result.outcome, result.probe
    out = Applied()
    rt.pending = None
    if probe is not None and outcome.ok:
        rt.probes.append(probe)
    if outcome.ok:
        if req.kind in ("rollback", "reload", "reconcile") and not req.as_deploy:
            # The bad period must not become the reference for what comes next: resume the
            # target's own baseline if we have it, else start fresh. A deploy keeps the
            # detectors, so the new version is judged against the old one.
            reset_detectors(rt, new_detectors, resume=req.version if req.kind != "reload" else None)
        if req.version != rt.served:
            if req.kind in ("deploy", "promote") or req.as_deploy:
                rt.snapshot_current()
            rt.served, rt.activated_at = req.version, result.finished_at
            rt.last_served = req.version
    status = "ok" if result.ok else "failed"
    rt.last_switch = {"kind": req.kind, "version": req.version, "from": req.from_version,
                      "at": result.finished_at, "outcome": status,
                      "seconds": round(outcome.seconds, 3)}
    metrics.actions.labels(req.model, req.kind, status).inc()
    metrics.last_action.labels(req.model).set(result.finished_at)
    detail = outcome.detail or (probe.detail if probe else "")
    out.events.append(Event(result.finished_at, req.model, req.version, "action", phase=req.phase,
                            action=req.kind, reason=req.reason, actor=req.actor, outcome=status,
                            evidence={"seconds": round(outcome.seconds, 3), "detail": detail,
                                      "probe": probe.status if probe else None,
                                      "from_version": req.from_version}))
    if req.kind in ("deploy", "promote") and outcome.ok:
        if rt.requested is not None and rt.requested != req.version:
            # A version that failed to load earlier was reported and alerted; a later deploy that
            # succeeded supersedes it, and its "failed to load" must not hold the new version's
            # judgement at "error" for the rest of the detection window.
            rt.requested = None
        out.events.append(Event(result.finished_at, req.model, req.version, "activation",
                                reason=f"version {req.version} now serves ({req.kind} by "
                                       f"{req.actor}, "
                                       + (f"was {req.from_version})" if req.from_version
                                          else "nothing served before)"),
                                evidence={"previous": req.from_version}))
    if req.kind in ("rollback", "reload", "reconcile"):
        out.alerts.append(Alert(
            alertname=f"Sentinel{req.kind.capitalize()}", model=req.model, version=req.version,
            severity="warning" if status == "ok" else "critical",
            summary=f"{req.model}: {req.kind} to version {req.version} {status}",
            description=req.reason))
    out.failed_deploy = req.kind == "deploy" and not outcome.ok
    return out


def reset_detectors(rt: ModelRuntime, new_detectors: Callable[[], dict[str, OnlineDetector]],
                    resume: str | None = None) -> None:
    rt.detections.clear()
    saved = rt.snapshots.pop(resume, None) if resume is not None else None
    if saved is not None:
        rt.detectors, index_ts, rt.fed = saved
        rt.index_ts.clear()
        rt.index_ts.extend(index_ts)
        return
    rt.detectors = new_detectors()
    rt.index_ts.clear()
    rt.fed = 0  # new detectors count their samples from 0 again
