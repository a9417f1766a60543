"""The sidecar's HTTP face: a Flask app factory over the poller's state. It only reads state,
except the token-protected control endpoints, which go through the poller (and so through act)."""
from __future__ import annotations

import hmac
import math
from typing import Any

from flask import Blueprint, Flask, abort, current_app, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from monitor.records import Event

api = Blueprint("api", __name__)


def create_app(poller, events, token: str | None = None, config_public: dict | None = None,
               test_config: dict | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(SENTINEL_TOKEN=token, SENTINEL_CONFIG=config_public or {})
    if test_config:
        app.config.update(test_config)
    app.extensions["sentinel"] = {"poller": poller, "events": events}
    app.register_blueprint(api)

    @app.errorhandler(400)
    @app.errorhandler(401)
    @app.errorhandler(403)
    @app.errorhandler(404)
    @app.errorhandler(405)
    @app.errorhandler(409)
    def _json_error(err):
        return jsonify(error=getattr(err, "description", str(err))), err.code

    return app


def _poller():
    return current_app.extensions["sentinel"]["poller"]


def _events():
    return current_app.extensions["sentinel"]["events"]


def _clean(value: Any) -> Any:
    """JSON has no NaN: missing values become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


@api.get("/healthz")
def healthz():
    p = _poller()
    scrape = p.last_scrape
    return jsonify(ok=True, last_scrape=None if scrape is None else
                   {"ts": scrape.ts, "phase": scrape.phase, "error": scrape.error})


@api.get("/metrics")
def metrics():
    return generate_latest(_poller().metrics.registry), 200, {"Content-Type": CONTENT_TYPE_LATEST}


def model_summary(rt) -> dict:
    d = rt.decision
    return {
        "model": rt.name, "served_version": rt.served, "activated_at": rt.activated_at,
        "phase": d.phase if d else None, "reason": d.reason if d else None,
        "action": d.action if d else None, "known_good": rt.known.known_good,
        "pinned": rt.pinned, "frozen": rt.frozen,
        "versions": [{"version": s.version, "state": s.state, "reason": s.reason} for s in rt.states],
    }


@api.get("/api/models")
def models():
    p = _poller()
    with p.lock:
        return jsonify(models=[model_summary(rt) for rt in p.models.values()])


@api.get("/api/models/<model>")
def model(model: str):
    p = _poller()
    with p.lock:
        rt = p.models.get(model)
        if rt is None:
            abort(404, description=f"unknown model {model!r}")
        return jsonify(model_summary(rt))


@api.get("/api/models/<model>/series")
def series(model: str):
    p = _poller()
    version = request.args.get("version")
    since = _float_arg("since")
    with p.lock:
        if model not in p.models:
            abort(404, description=f"unknown model {model!r}")
        versions = [v for (m, v) in p.store.versions() if m == model]
    if version is not None and version not in versions:
        abort(404, description=f"no series for {model} version {version!r}; have {versions}")
    out = {}
    for v in ([version] if version else versions):
        frame = p.store.signals(model, v, since=since)
        out[v] = _clean(frame.to_dict(as_series=False))
    return jsonify(model=model, series=out)


def _float_arg(name: str) -> float | None:
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


@api.get("/api/events")
def events():
    limit_raw = request.args.get("limit", "100")
    if not limit_raw.isdigit() or not 1 <= int(limit_raw) <= 10_000:
        abort(400, description="limit must be an integer in 1..10000")
    rows = _events().list(model=request.args.get("model"), kind=request.args.get("kind"),
                          since=_float_arg("since"), until=_float_arg("until"), limit=int(limit_raw))
    return jsonify(events=[_clean(_event_dict(e)) for e in rows])


def _event_dict(e: Event) -> dict:
    return {"id": e.id, "ts": e.ts, "model": e.model, "version": e.version, "kind": e.kind,
            "phase": e.phase, "action": e.action, "reason": e.reason, "evidence": dict(e.evidence),
            "actor": e.actor, "outcome": e.outcome}


# ---------------------------------------------------------------------- control (token)


def _authorise() -> str:
    token = current_app.config.get("SENTINEL_TOKEN")
    if not token:
        abort(403, description="control actions are disabled: start the sidecar with a token "
                               "(--token or SENTINEL_TOKEN)")
    given = request.headers.get("X-Sentinel-Token", "")
    if not hmac.compare_digest(given.encode(), token.encode()):
        abort(401, description="missing or wrong X-Sentinel-Token header")
    return request.headers.get("X-Sentinel-Actor", "operator")


def _body() -> dict:
    data = request.get_json(silent=True)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        abort(400, description="body must be a JSON object")
    return data


def _known_version(rt, version: Any) -> str:
    if not isinstance(version, (str, int)) or isinstance(version, bool) or not str(version).isdigit():
        abort(400, description="'version' must be a version number")
    version = str(version)
    if version not in {s.version for s in rt.states}:
        abort(404, description=f"version {version} of {rt.name} is not in Triton's repository")
    return version


@api.post("/api/models/<model>/rollback")
def rollback(model: str):
    actor = _authorise()
    body = _body()
    p = _poller()
    rt = p.models.get(model)
    if rt is None:
        abort(404, description=f"unknown model {model!r}")
    version = _known_version(rt, body.get("version", rt.known.known_good))
    if rt.pinned is not None and rt.pinned != version:
        abort(409, description=f"{model} is pinned to version {rt.pinned}; unpin it first")
    why = str(body.get("reason", "manual rollback"))[:500]
    outcome = p.operator_load(model, version, actor, why)
    if not outcome.ok:
        return jsonify(error=f"load of version {version} failed: {outcome.detail}"), 502
    return jsonify(ok=True, model=model, version=version, seconds=outcome.seconds)


@api.post("/api/models/<model>/pin")
def pin(model: str):
    actor = _authorise()
    p = _poller()
    rt = p.models.get(model)
    if rt is None:
        abort(404, description=f"unknown model {model!r}")
    version = _known_version(rt, _body().get("version", rt.served))
    with p.lock:
        rt.pinned = version
    _events().append(Event(p.clock(), model, version, "operator", action="pin", actor=actor,
                           reason=f"{actor} pinned version {version}"))
    return jsonify(ok=True, model=model, pinned=version)


@api.post("/api/models/<model>/unpin")
def unpin(model: str):
    actor = _authorise()
    p = _poller()
    rt = p.models.get(model)
    if rt is None:
        abort(404, description=f"unknown model {model!r}")
    with p.lock:
        rt.pinned = None
    _events().append(Event(p.clock(), model, None, "operator", action="unpin", actor=actor,
                           reason=f"{actor} unpinned {model}"))
    return jsonify(ok=True, model=model, pinned=None)
