"""Feedback endpoints: outcomes of served predictions in (POST /api/feedback, the control token),
online quality per version out (GET /api/models/<model>/quality). Documented in monitor/openapi.py
and docs/monitor.md, "Online quality"."""
from __future__ import annotations

import dataclasses

from flask import Blueprint, abort, current_app, jsonify, request

from monitor import feedback as fb
from monitor.api import check_token, clean, poller
from monitor.feedback_store import FeedbackStoreError
from monitor.quality import auc, merged, summarise

feedback_api = Blueprint("feedback_api", __name__)

# 10,000 events of a few hundred bytes each; more is refused before it is parsed.
MAX_BODY_BYTES = 8 * 1024 * 1024


def store():
    s = poller().feedback
    if s is None:
        abort(404, description="this sidecar keeps no feedback")
    return s


@feedback_api.post("/api/feedback")
def post_feedback():
    check_token(request.headers.get("X-Sentinel-Token"))
    feedback = store()
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        abort(413, description=f"body of {request.content_length} bytes; at most {MAX_BODY_BYTES}: "
                               f"send at most {fb.MAX_EVENTS} events per call")
    body = request.get_json(silent=True)
    p = poller()
    versions: dict[str, set[str]] = {}

    def known(model: str, version: str) -> str | None:
        if model not in versions:  # one directory listing per model per call
            versions[model] = set(p.repository_versions(model))
        if not versions[model]:
            return f"unknown model {model!r}: no version of it is published in the repository"
        if version not in versions[model]:
            return f"model {model!r} has no version {version!r} (published: " \
                   f"{', '.join(sorted(versions[model], key=int))})"
        return None

    try:
        batch = fb.parse_batch(body, p.clock(), known, feedback.retention_s)
    except fb.FeedbackError as exc:
        return jsonify(error=str(exc)), exc.status
    try:
        feedback.add(fb.sums(batch.events, feedback.window_s))
    except FeedbackStoreError as exc:
        # Nothing of this call was counted: the client may send it again as it is.
        return jsonify(error=f"feedback not stored: {exc}"), 503
    return jsonify(accepted=len(batch.events), rejected=[dataclasses.asdict(r) for r in batch.rejected])


@feedback_api.get("/api/models/<model>/quality")
def quality(model: str):
    p = poller()
    with p.lock:
        rt = p.models.get(model)
        if rt is None:
            abort(404, description=f"unknown model {model!r}")
        assessment = rt.quality
    feedback = store()
    out = []
    for m, version in feedback.versions(model):
        windows = feedback.windows(m, version)
        total = summarise(merged(s for _, s in windows))
        series = None
        if request.args.get("series") in ("1", "true"):
            series = [{"start": start, "labelled": int(s.n), "auc": auc(s)[0]} for start, s in windows]
        out.append({"version": version, "windows": len(windows),
                    "first_window": windows[0][0], "last_window": windows[-1][0],
                    **dataclasses.asdict(total), **({"series": series} if series is not None else {})})
    return jsonify(model=model, window_s=feedback.window_s, versions=clean(out),
                   assessment=clean(dataclasses.asdict(assessment)) if assessment else None)

