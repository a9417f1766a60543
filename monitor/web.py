"""The sidecar's HTTP face: a Flask app factory. Blueprints only read the poller's state, except
the control actions, which go through monitor.operator (and so through act).

Access: with a read token configured, every request except OPEN_ENDPOINTS needs the read token or
the control token, as the X-Sentinel-Token header, or once as ?token= (browsers), which sets an
HttpOnly cookie and redirects to the same address without it. POSTs need more on top (the control
token; the page form also a CSRF value)."""
from __future__ import annotations

import hashlib
import hmac
import math
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from flask import Flask, abort, current_app, jsonify, redirect, request

TOKEN_HEADER = "X-Sentinel-Token"
READ_COOKIE = "sentinel_read"
# Open without the read token: Prometheus scrapes /metrics (counters labelled by model and version)
# and container/Kubernetes health checks call /healthz, neither with our header; /healthz hides
# its scrape error from callers without the token (monitor.api.healthz).
OPEN_ENDPOINTS = frozenset({"api.metrics", "api.healthz"})


def create_app(poller, events, token: str | None = None, config_public: dict | None = None,
               repository: Path | None = None, test_config: dict | None = None,
               read_token: str | None = None) -> Flask:
    from monitor.api import api
    from monitor.pages import pages

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
    app.before_request(_require_read_access)
    app.register_blueprint(api)
    app.register_blueprint(pages)

    def _json_error(err):
        return jsonify(error=getattr(err, "description", str(err))), err.code

    for code in (400, 401, 403, 404, 405, 409, 413, 415):
        app.register_error_handler(code, _json_error)
    return app


# ---------------------------------------------------------------------- read access


def _equal(given: str, expected: str) -> bool:
    """Constant-time comparison of any text (hmac refuses non-ASCII str: compare bytes)."""
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode())


def _cookie_value(token: str) -> str:
    # A value derived from the token, not the token: the cookie works until the token changes.
    return hmac.new(token.encode(), b"sentinel read access", hashlib.sha256).hexdigest()


def _accepted_tokens() -> list[str]:
    return [t for t in (current_app.config.get("SENTINEL_READ_TOKEN"),
                        current_app.config.get("SENTINEL_TOKEN")) if t]


def has_read_access() -> bool:
    """True when no read token is configured, or this request carries the read or control token
    (header or cookie)."""
    if not current_app.config.get("SENTINEL_READ_TOKEN"):
        return True
    accepted = _accepted_tokens()
    header = request.headers.get(TOKEN_HEADER)
    if header and any(_equal(header, t) for t in accepted):
        return True
    cookie = request.cookies.get(READ_COOKIE)
    return bool(cookie) and any(_equal(cookie, _cookie_value(t)) for t in accepted)


def _require_read_access():
    if not current_app.config.get("SENTINEL_READ_TOKEN") or request.endpoint in OPEN_ENDPOINTS:
        return None
    given = request.args.get("token")
    if given is not None and request.method in ("GET", "HEAD"):
        match = next((t for t in _accepted_tokens() if _equal(given, t)), None)
        if match is None:
            abort(401, description="wrong token in ?token=")
        # Take the token out of the address bar (and of the links and history that follow).
        rest = [(k, v) for k, v in request.args.items(multi=True) if k != "token"]
        here = quote(request.script_root + request.path)
        response = redirect(here + ("?" + urlencode(rest) if rest else ""), code=303)
        response.set_cookie(READ_COOKIE, _cookie_value(match), httponly=True, samesite="Lax",
                            secure=request.is_secure, path="/")
        return response
    if not has_read_access():
        abort(401, description=f"this sidecar needs a read token: send the {TOKEN_HEADER} header "
                               "(read or control token), or open a page once with ?token=<token>")
    return None


def clean(value: Any) -> Any:
    """JSON has no NaN: missing values become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value
