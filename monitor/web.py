"""The sidecar's HTTP face: a Flask app factory. Blueprints only read the poller's state, except
the control actions, which go through monitor.operator (and so through act). Who may read is
monitor.access."""
from __future__ import annotations

import secrets
from pathlib import Path

from flask import Flask, jsonify

from monitor.access import require_read_access
from monitor.api import api
from monitor.feedback_api import feedback_api
from monitor.pages import pages


def create_app(poller, events, token: str | None = None, config_public: dict | None = None,
               repository: Path | None = None, test_config: dict | None = None,
               read_token: str | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SENTINEL_TOKEN=token, SENTINEL_READ_TOKEN=read_token, SENTINEL_CONFIG=config_public or {},
        SENTINEL_REPOSITORY=repository,
        # Sessions only carry the CSRF token of the page forms; a per-process key is enough.
        SECRET_KEY=secrets.token_hex(32), SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_HTTPONLY=True)
    if test_config:
        app.config.update(test_config)
    app.extensions["sentinel"] = {"poller": poller, "events": events}
    app.before_request(require_read_access)
    app.register_blueprint(api)
    app.register_blueprint(feedback_api)
    app.register_blueprint(pages)

    def _json_error(err):
        return jsonify(error=getattr(err, "description", str(err))), err.code

    for code in (400, 401, 403, 404, 405, 409, 413, 415):
        app.register_error_handler(code, _json_error)
    return app
