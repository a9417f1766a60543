"""Who may read the sidecar's pages and API. With a read token configured, every request except
OPEN_ENDPOINTS needs the read token or the control token, as the X-Sentinel-Token header, or once
as ?token= (browsers), which sets an HttpOnly cookie and redirects to the same address without it.
POSTs need more on top (the control token; the page form also a CSRF value)."""
from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote, urlencode

from flask import abort, current_app, redirect, request

TOKEN_HEADER = "X-Sentinel-Token"
READ_COOKIE = "sentinel_read"
# Open without the read token: Prometheus scrapes /metrics (counters labelled by model and version)
# and container/Kubernetes health checks call /healthz, neither with our header; /healthz hides
# its scrape error from callers without the token (monitor.api.healthz).
OPEN_ENDPOINTS = frozenset({"api.metrics", "api.healthz"})


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


def require_read_access():
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
