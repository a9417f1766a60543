"""JSON API (documented in monitor/openapi.py). Errors are JSON with a message and a 4xx."""
from __future__ import annotations

import hmac
import math
from typing import Any

from flask import Blueprint, abort, current_app, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from monitor import views
from monitor.access import has_read_access
from monitor.openapi import openapi_document
from monitor.fleet_view import fleet_view
from monitor.operator import OperatorError, perform, start_canary
from monitor.types import Event
from sentinel import desired_state

api = Blueprint("api", __name__)


def poller():
    return current_app.extensions["sentinel"]["poller"]


def event_log():
    return current_app.extensions["sentinel"]["events"]


@api.get("/healthz")
def healthz():
    """Open to health checks even with a read token (monitor.access.OPEN_ENDPOINTS); the scrape error
    names hosts and ports, so callers without the token only learn that there is one."""
    scrape = poller().last_scrape
    if scrape is None:
        return jsonify(ok=True, last_scrape=None)
    error = scrape.error
    if error and not has_read_access():
        error = "(hidden: send the read token to see it)"
    return jsonify(ok=True, last_scrape={"ts": scrape.ts, "phase": scrape.phase, "error": error})


@api.get("/metrics")
def metrics():
    return generate_latest(poller().metrics.registry), 200, {"Content-Type": CONTENT_TYPE_LATEST}


@api.get("/api/lease")
def lease():
    """The fleet lease as this sidecar last saw it (no I/O: renewed by the poller each cycle)."""
    return jsonify(clean(poller().lease.public()))


@api.get("/api/fleet")
def fleet():
    """Which replica serves what, who holds the lease, and every running canary with its two
    groups (no I/O: the poller refreshes the members each cycle; the verdicts only on the holder)."""
    return jsonify(clean(fleet_view(poller())))


@api.get("/api/openapi.json")
def openapi():
    return jsonify(openapi_document())


@api.get("/api/models")
def models():
    p = poller()
    with p.lock:
        names = list(p.models)
    on_disk = {m: p.repository_versions(m) for m in names}  # file I/O: outside the lock
    with p.lock:  # views.model_record: the same status as the pages
        return jsonify(models=clean([views.model_record(rt, on_disk.get(rt.name, ()))
                                     for rt in p.models.values()]))


def _runtime(model: str):
    rt = poller().models.get(model)
    if rt is None:
        abort(404, description=f"unknown model {model!r}")
    return rt


@api.get("/api/models/<model>")
def model(model: str):
    p = poller()
    with p.lock:
        _runtime(model)  # an unknown name is a 404 before any path is built from it
    on_disk = p.repository_versions(model)  # file I/O: outside the lock
    with p.lock:
        return jsonify(clean(views.model_record(_runtime(model), on_disk)))


@api.get("/api/models/<model>/versions")
def versions(model: str):
    p = poller()
    with p.lock:
        rt = _runtime(model)
        rows = views.versions_table(current_app.config["SENTINEL_REPOSITORY"], rt,
                                   poller().repository_versions(model))
    return jsonify(model=model, versions=clean(rows))


def float_arg(name: str) -> float | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        abort(400, description=f"query parameter {name!r} must be a number, got {raw!r}")
    if not math.isfinite(value):
        abort(400, description=f"query parameter {name!r} must be finite")
    return value


@api.get("/api/models/<model>/series")
def series(model: str):
    p = poller()
    version = request.args.get("version")
    since = float_arg("since")
    with p.lock:
        _runtime(model)
        known = [v for (m, v) in p.store.versions() if m == model]
    if version is not None and version not in known:
        abort(404, description=f"no series for {model} version {version!r}; have {known}")
    out = {v: clean(p.store.signals(model, v, since=since).to_dict(as_series=False))
           for v in ([version] if version else known)}
    return jsonify(model=model, series=out)


def limit_arg() -> int:
    raw = request.args.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 10_000:
        abort(400, description="limit must be an integer in 1..10000")
    return int(raw)


@api.get("/api/events")
def events():
    rows = event_log().list(model=request.args.get("model") or None,
                            kind=request.args.get("kind") or None, since=float_arg("since"),
                            until=float_arg("until"), limit=limit_arg())
    return jsonify(events=[clean(event_dict(e)) for e in rows])


def event_dict(e: Event) -> dict:
    return {"id": e.id, "ts": e.ts, "model": e.model, "version": e.version, "kind": e.kind,
            "phase": e.phase, "action": e.action, "reason": e.reason, "evidence": dict(e.evidence),
            "actor": e.actor, "outcome": e.outcome}


# ---------------------------------------------------------------------- control (token)


def check_token(given: str | None) -> None:
    token = current_app.config.get("SENTINEL_TOKEN")
    if not token:
        abort(403, description="control actions are disabled: start the sidecar with a token "
                               "(--token or SENTINEL_TOKEN)")
    if not given or not hmac.compare_digest(given.encode(), token.encode()):
        abort(401, description="missing or wrong token (X-Sentinel-Token header)")


def _body() -> dict:
    if not request.data:
        return {}
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        abort(400, description="body must be a JSON object")
    return data


@api.post("/api/models/<model>/<any(deploy, rollback, promote, pin, unpin, ack, mark_good):action>")
def control(model: str, action: str):
    check_token(request.headers.get("X-Sentinel-Token"))
    body = _body()
    version = body.get("version")
    reason = body.get("reason", "")
    if not isinstance(reason, str):
        abort(400, description="'reason' must be a string")
    force = body.get("force", False)
    if not isinstance(force, bool):
        abort(400, description="'force' must be true or false")
    actor = request.headers.get("X-Sentinel-Actor", "api")
    canary = body.get("canary")
    try:
        if canary is not None:
            if action != "deploy":
                abort(400, description="'canary' goes with deploy only")
            if force:
                abort(400, description="a canary cannot be forced: deploy a rejected version "
                                       "to the whole fleet with force instead")
            policy = body.get("canary_policy") or {}
            if not isinstance(policy, dict):
                abort(400, description="'canary_policy' must be an object of canary settings")
            result = start_canary(poller(), event_log(), model, version, canary, actor=actor,
                                  reason=reason, policy=policy)
        else:
            result = perform(poller(), event_log(), model, action, version=version, actor=actor,
                             reason=reason, force=force)
    except OperatorError as exc:
        return jsonify(error=exc.message), exc.status
    return jsonify(ok=True, model=result.model, action=result.action, version=result.version,
                   detail=result.detail, seconds=result.seconds, generation=result.generation)


@api.get("/api/models/<model>/desired")
def desired(model: str):
    p = poller()
    with p.lock:
        rt = _runtime(model)
        state, error = rt.desired, rt.desired_error
    if state is None:
        return jsonify(model=model, desired=None, error=error)
    return jsonify(model=model, desired=clean(desired_state.to_dict(state)), error=error)


def clean(value: Any) -> Any:
    """JSON has no NaN: missing values become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value
