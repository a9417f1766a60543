"""Server-rendered pages: overview, model detail, events, configuration. They read state only;
the one form posts an operator action through monitor.operator after CSRF and token checks."""
from __future__ import annotations

import datetime as dt
import hmac
import secrets
import time

from flask import (Blueprint, abort, current_app, flash, get_flashed_messages, redirect,
                   render_template, request, session, url_for)

from monitor import resource_views, views
from monitor.detect import expected_false_alarms_per_day
from monitor.fleet_view import fleet_view
from monitor.operator import ACTIONS, OperatorError, perform, start_canary

pages = Blueprint("pages", __name__, template_folder="templates")
EVENT_KINDS = ("activation", "detection", "decision", "action", "probe", "load_failure",
               "known_good", "operator", "index_error")


def _state():
    ext = current_app.extensions["sentinel"]
    return ext["poller"], ext["events"]


def _resource_watch(poller):
    """The poller's resource watch; None for a poller without one (a read-only stand-in)."""
    judge = getattr(poller, "judge", None)
    return getattr(judge, "resources", None)


CSRF_MESSAGE = ("the form expired or did not come from this page (CSRF check); "
                "reload the page and try again")


def _csrf() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(24)
    return session["csrf"]


@pages.app_template_filter("clock")
def _clock(ts, zone: bool = True) -> str:
    if ts is None:
        return "—"
    return dt.datetime.fromtimestamp(float(ts), dt.timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S UTC" if zone else "%Y-%m-%d %H:%M:%S")


# Versions, reasons and settings as a person reads them (never "vNone" or "(was None)").
pages.add_app_template_filter(views.version_text, "v")
pages.add_app_template_filter(views.reason_text, "reason")
pages.add_app_template_filter(views.show, "show")


@pages.app_template_filter("ago")
def _ago(ts) -> str:
    if ts is None:
        return "—"
    s = max(0, int(time.time() - float(ts)))
    return f"{s}s ago" if s < 120 else f"{s // 60} min ago" if s < 7200 else f"{s // 3600} h ago"


def _common() -> dict:
    refresh = request.args.get("refresh", "5")
    return {"refresh": int(refresh) if refresh.isdigit() else 5,
            "actions_enabled": bool(current_app.config.get("SENTINEL_TOKEN")),
            "messages": get_flashed_messages(with_categories=True)}


@pages.get("/")
def overview():
    poller, events = _state()
    with poller.lock:
        names = list(poller.models)
    on_disk = {m: poller.repository_versions(m) for m in names}  # file I/O: outside the lock
    with poller.lock:
        rows = []
        for rt in poller.models.values():
            row = views.model_view(rt, on_disk.get(rt.name, ()))
            row.update(views.overview_spark(poller.store, rt.name, rt.served))
            rows.append(row)
        scrape = poller.last_scrape
        watch = _resource_watch(poller)
        server = resource_views.server_view(poller.store, watch, time.time()) if watch else None
    for row in rows:
        row["events"] = events.list(model=row["model"], limit=3)
    return render_template("overview.html", models=rows, fleet=views.fleet_phase(rows),
                           scrape=scrape, server=server, **_common())


@pages.get("/models/<model>")
def model(model: str):
    poller, events = _state()
    window = request.args.get("window", "900")
    if not window.isdigit() or not 60 <= int(window) <= 86_400:
        abort(400, description="window must be seconds in 60..86400")
    since = time.time() - int(window)
    with poller.lock:
        if model not in poller.models:
            abort(404, description=f"unknown model {model!r}")
    on_disk = poller.repository_versions(model)  # file I/O: outside the lock
    history = events.list(model=model, since=since, limit=2000)
    with poller.lock:
        rt = poller.models.get(model)
        if rt is None:
            abort(404, description=f"unknown model {model!r}")
        summary = views.model_view(rt, on_disk)
        charts = views.charts(poller.store, model, history, since=since)
        watch = _resource_watch(poller)
        findings = watch.last.get(model, ()) if watch is not None else ()
        charts += resource_views.resource_charts(poller.store, model, findings, since=since)
        resource_notes = resource_views.resource_notes(findings)
        versions = views.versions_table(current_app.config["SENTINEL_REPOSITORY"], rt, on_disk)
    quality = views.quality_table(poller.feedback, model, versions)  # its own lock, not the poller's
    with poller.lock:
        assessment = rt.quality
    timeline = [e for e in history if e.kind in ("activation", "detection", "action",
                                                 "load_failure", "operator", "known_good",
                                                 "quality", "retrain")][:30]
    return render_template("model.html", m=summary, charts=charts, versions=versions,
                           quality=quality, assessment=assessment, resource_notes=resource_notes,
                           timeline=timeline, csrf=_csrf(), actions=ACTIONS, window=int(window),
                           **_common())


@pages.post("/models/<model>/action")
def action(model: str):
    poller, events = _state()
    form = request.form
    # As bytes: compare_digest refuses non-ASCII str, and a form value may be anything.
    given, expected = form.get("csrf", ""), session.get("csrf", "")
    if not given or not hmac.compare_digest(given.encode("utf-8", "surrogatepass"),
                                            expected.encode()):
        abort(400, description=CSRF_MESSAGE)
    token = current_app.config.get("SENTINEL_TOKEN")
    if not token:
        abort(403, description="control actions are disabled: start the sidecar with a token")
    if not hmac.compare_digest(form.get("token", "").encode(), token.encode()):
        flash("wrong operator token: nothing was done", "error")
        return redirect(url_for("pages.model", model=model, refresh=0), code=303)
    canary = form.get("canary", "").strip()
    try:
        if canary:
            if form.get("action") != "deploy" or not canary.isdigit():
                raise OperatorError(400, "canary replicas: a whole number, with deploy only")
            result = start_canary(poller, events, model, form.get("version") or None,
                                  int(canary), actor=form.get("actor") or "operator (page)",
                                  reason=form.get("reason", ""))
        else:
            result = perform(poller, events, model, form.get("action", ""),
                             version=form.get("version") or None,
                             actor=form.get("actor") or "operator (page)",
                             reason=form.get("reason", ""))
        flash(result.detail, "ok")
    except OperatorError as exc:
        flash(f"refused: {exc.message}", "error")
    return redirect(url_for("pages.model", model=model), code=303)


@pages.get("/fleet")
def fleet():
    poller, events = _state()
    view = fleet_view(poller)
    recent = [e for e in events.list(limit=200)
              if e.kind in ("canary", "lease", "desired_conflict")
              or (e.kind == "decision" and e.action == "rollback")][:20]
    return render_template("fleet.html", fleet=view, recent=recent, **_common())


@pages.get("/events")
def event_list():
    poller, events = _state()
    model = request.args.get("model") or None
    kind = request.args.get("kind") or None
    minutes = request.args.get("minutes", "")
    since = None
    if minutes:
        if not minutes.isdigit():
            abort(400, description="minutes must be a whole number")
        since = time.time() - 60 * int(minutes)
    rows = events.list(model=model, kind=kind, since=since, limit=500)
    with poller.lock:
        models = sorted(poller.models)
    return render_template("events.html", events=rows, models=models, kinds=EVENT_KINDS,
                           f_model=model or "", f_kind=kind or "", f_minutes=minutes, **_common())


@pages.get("/config")
def config():
    poller, _ = _state()
    detectors = {name: {k: getattr(c, k) for k in c.__dataclass_fields__}
                 for name, c in poller.detector_configs.items()}
    with poller.lock:
        models = len(poller.models)
    # Expected false alarms of the watched fleet: series x stated rate (monitor.detect).
    fleet = expected_false_alarms_per_day(poller.detector_configs.values(), models)
    return render_template("config.html", config=current_app.config["SENTINEL_CONFIG"],
                           detectors=detectors, fleet_false_alarms=fleet, fleet_models=models,
                           **_common())
