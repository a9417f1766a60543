"""The fleet as one sidecar sees it, for `/api/fleet` and the Fleet page: replicas with what each
serves, the lease, and each canary with its two groups side by side. Reads only what the poller
already holds (no I/O)."""
from __future__ import annotations

import dataclasses


def fleet_view(poller) -> dict:
    with poller.lock:
        states = {m: rt.desired for m, rt in poller.models.items() if rt.desired is not None}
        members = list(poller.members)
    holder = poller.lease.may_decide()
    canaries = []
    if poller.canary is not None:
        for view in poller.canary.views(states, judged_here=holder):
            canaries.append({
                "model": view.model, "version": view.version, "against": view.against,
                "phase": view.phase, "replicas": list(view.replicas),
                "since": states[view.model].canary.since,
                "policy": dataclasses.asdict(poller.canary.policy_for(states[view.model])),
                "verdict": view.verdict.evidence() | {"reason": view.verdict.reason}
                if view.verdict is not None else None,
                "judged_here": view.judged_here})
    desired = {m: {"version": s.version, "generation": s.generation,
                   "canary": s.canary.version if s.canary else None,
                   "decision": _decision(s, members, m)} for m, s in states.items()}
    replicas = []
    for r in members:
        targets = {m: s.target_for(r.identity) for m, s in states.items()}
        replicas.append({"identity": r.identity, "url": r.url, "at": r.at, "holder": r.holder,
                         "serves": dict(r.serves), "targets": targets,
                         "converged": all(r.serves.get(m) == v for m, v in targets.items()
                                          if m in r.serves)})
    return {"identity": poller.lease.identity, "coordinated": poller.lease.coordinated,
            "lease": poller.lease.public(), "replicas": replicas, "desired": desired,
            "canaries": canaries}


def _decision(state, members, model: str) -> dict:
    """The newest desired-state write, with every replica's switch since it (its reconcile)."""
    last = state.rejected[-1] if state.rejected else None
    what = (f"rejected version {last.version}: {last.reason}"
            if last is not None and last.at >= state.updated_at - 1e-6 else None)
    under = []
    for r in members:
        switch = r.switches.get(model)
        if switch and float(switch.get("at", 0)) >= state.updated_at:
            under.append({"replica": r.identity, "kind": switch.get("kind"),
                          "version": switch.get("version"), "from": switch.get("from"),
                          "outcome": switch.get("outcome"),
                          "after_s": round(float(switch["at"]) - state.updated_at, 1)})
        else:
            under.append({"replica": r.identity, "kind": None,
                          "version": r.serves.get(model), "from": None, "outcome": "no switch",
                          "after_s": None})
    return {"generation": state.generation, "by": state.updated_by, "at": state.updated_at,
            "what": what, "reconciles": under}

