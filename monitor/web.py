"""The sidecar's HTTP face: a Flask app factory. Blueprints only read the poller's state, except
the control actions, which go through monitor.operator (and so through act)."""
from __future__ import annotations

import math
import secrets
from pathlib import Path
from typing import Any

from flask import Flask, jsonify


def create_app(poller, events, token: str | None = None, config_public: dict | None = None,
               repository: Path | None = None, test_config: dict | None = None) -> Flask:
    from monitor.api import api
    from monitor.pages import pages

    app = Flask(__name__)
    app.config.update(
        SENTINEL_TOKEN=token, SENTINEL_CONFIG=config_public or {},
        SENTINEL_REPOSITORY=repository,
        # Sessions only carry the CSRF token of the page forms; a per-process key is enough.
        SECRET_KEY=secrets.token_hex(32), SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_HTTPONLY=True)
    if test_config:
        app.config.update(test_config)
    app.extensions["sentinel"] = {"poller": poller, "events": events}
    app.register_blueprint(api)
    app.register_blueprint(pages)

    def _json_error(err):
        return jsonify(error=getattr(err, "description", str(err))), err.code

    for code in (400, 401, 403, 404, 405, 409, 413, 415):
        app.register_error_handler(code, _json_error)
    return app


def clean(value: Any) -> Any:
    """JSON has no NaN: missing values become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value
