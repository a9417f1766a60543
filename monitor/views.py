"""What the pages show, computed from the poller's state, the store and the event log. Plain data
(dicts of numbers and strings) so templates stay free of logic and this stays testable."""
from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from monitor import quality as quality_mod
from monitor.charts import Line, Marker, line_chart, sparkline
from monitor.types import VersionState

CHARTS = (  # (title, unit, signals, scale)
    ("Request rate", "req/s", ("request_rate",), 1.0),
    ("Error rate", "% of requests", ("error_rate",), 100.0),
    ("Latency", "ms per request", ("latency_ms",), 1.0),
    ("Queue vs compute", "ms per request", ("queue_ms", "compute_infer_ms"), 1.0),
    ("Output scores", "mean and std", ("score_mean", "score_std"), 1.0),
    ("NaN/Inf outputs", "% of scores", ("nan_rate",), 100.0),
)
MARKER_KINDS = {"detection": "change", "activation": "activation", "load_failure": "load_failure"}
NO_VERSION = "no version published"
NOTHING_TO_WATCH = "nothing to watch until a version is published in the repository"
# Worst first: the fleet's phase is the worst phase among its models that have a version published.
PHASE_ORDER = ("error", "degraded", "inconclusive", "healthy")


def version_text(version, none: str = "") -> str:
    """The version as "v3"; `none` where there is no version (never "vNone")."""
    return none if version is None or version == "" else f"v{version}"


# Reasons already written to the event log by earlier code named a missing version "None".
_NONE_IN_REASON = (
    (re.compile(r"\(was None\)"), "(nothing served before)"),
    (re.compile(r", was None\)"), "; nothing served before)"),
    (re.compile(r"version None stays served"), "nothing serves"),
    (re.compile(r"\bversion None\b"), "no version"),
    (re.compile(r"\bvNone\b"), "no version"),
)


def reason_text(reason: str | None) -> str:
    """An event's or decision's reason as a person reads it: no Python "None" for a version."""
    text = reason or ""
    for pattern, replacement in _NONE_IN_REASON:
        text = pattern.sub(replacement, text)
    return text


def published(rt, on_disk: Iterable[str] = ()) -> list[str]:
    """Versions of the model that exist: published on disk or listed by Triton's index."""
    found = {s.version for s in rt.states if s.version.isdigit()} | {v for v in on_disk if v}
    return sorted(found, key=_vkey)


def model_record(rt, on_disk: Iterable[str] = ()) -> dict:
    """model_summary plus the model's status, one answer for the API and the pages: a model with
    no version published is not "inconclusive", it has nothing to judge yet (phase null, status
    "no version published", judged false) and stays out of the fleet's phase. The judge still
    decides for it every cycle; its "inconclusive" there means "no data", not "measured unclear"."""
    row = model_summary(rt)
    versions = published(rt, on_disk)
    judged = bool(versions) or rt.served is not None
    row.update(published=versions, judged=judged,
               status=(row["phase"] or "unknown") if judged else NO_VERSION)
    if not judged:
        row.update(phase=None, reason=NOTHING_TO_WATCH)
    return row


def model_view(rt, on_disk: Iterable[str] = ()) -> dict:
    """model_record plus the words and styles a page shows."""
    row = model_record(rt, on_disk)
    if row["judged"]:
        row.update(status_class=row["status"],
                   served_text=version_text(rt.served, "nothing serves"),
                   reason_text=reason_text(row["reason"]))
    else:
        row.update(status_class="none", served_text=NO_VERSION, reason_text=row["reason"])
    return row


def fleet_phase(rows: Sequence[dict]) -> dict:
    """The fleet's overall phase: the worst phase of the models that are judged (model_view).
    Models with no version published are named apart and change nothing."""
    judged = [r for r in rows if r["judged"]]
    counts = {p: sum(1 for r in judged if r["status"] == p) for p in PHASE_ORDER}
    counts["unknown"] = sum(1 for r in judged if r["status"] not in PHASE_ORDER)
    worst = next((p for p in PHASE_ORDER if counts[p]), None)
    if worst is None and counts["unknown"]:
        worst = "unknown"
    return {"phase": worst, "judged": len(judged),
            "counts": {p: n for p, n in counts.items() if n},
            "unpublished": [r["model"] for r in rows if not r["judged"]]}


def show(value) -> str:
    """A configuration value in a table cell: "—" for unset, short floats, YAML-style booleans."""
    if value is None:
        return "—"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {show(v)}" for k, v in value.items()) or "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.4g}" if value != int(value) or abs(value) >= 1e6 else f"{value:g}"
    return str(value)


def model_summary(rt) -> dict:
    d = rt.decision
    want = rt.desired
    return {
        "model": rt.name, "served_version": rt.served, "activated_at": rt.activated_at,
        "phase": d.phase if d else None, "reason": d.reason if d else None,
        "action": d.action if d else None,
        "known_good": (want.last_known_good.version if want is not None and want.last_known_good
                       else rt.known.known_good),
        "pinned": rt.pinned, "frozen": rt.is_frozen,
        "desired": None if want is None else {
            "version": want.version, "generation": want.generation,
            "converged": want.version == rt.served,
            "watching": want.watch.version if want.watch else None,
            "known_good_history": [k.version for k in want.known_good],
            "rejected": [{"version": r.version, "reason": r.reason[:300], "event_id": r.event_id}
                         for r in want.rejected],
            "rollback_target": want.rollback_target(rt.served),
            # what the rate limits count, on every replica and across restarts
            "rollbacks": [{"version": r.version, "target": r.target, "at": r.at, "by": r.by}
                          for r in want.rollbacks]},
        "desired_error": rt.desired_error,
        "acked": {"phase": rt.acked[0], "actor": rt.acked[2]} if rt.acked else None,
        "versions": [{"version": s.version, "state": s.state, "reason": s.reason}
                     for s in rt.states],
    }


def markers(events) -> list[Marker]:
    out = []
    for e in events:
        if e.kind == "detection":
            ev = dict(e.evidence)
            arrow = "↑" if ev.get("direction") == "up" else "↓"
            which = f" ({version_text(e.version)})" if e.version else ""
            out.append(Marker(float(ev.get("changed_at", e.ts)),
                              f"change: {ev.get('signal', '?')} {arrow}{which}", "change"))
        elif e.kind == "activation" and e.version:
            out.append(Marker(e.ts, f"{version_text(e.version)} activated", "activation"))
        elif e.kind == "action" and e.action in ("rollback", "reload", "promote"):
            kind = "rollback" if e.action != "reload" else "reload"
            target = f" → {version_text(e.version)}" if e.version else ""
            outcome = f" ({e.outcome})" if e.outcome else ""
            out.append(Marker(e.ts, f"{e.action}{target}{outcome}", kind))
        elif e.kind == "load_failure":
            out.append(Marker(e.ts, f"{version_text(e.version, 'a version')} failed to load",
                              "load_failure"))
    return out


def charts(store, model: str, events, since: float | None = None) -> list[str]:
    """The model page's charts; none at all (not six empty frames) when the window holds no
    metrics of the model."""
    versions = sorted((v for m, v in store.versions() if m == model), key=_vkey)
    frames = {v: store.signals(model, v, since=since) for v in versions}
    if not any(f.height for f in frames.values()):
        return []
    marks = [m for m in markers(events) if since is None or m.ts >= since]
    out = []
    for title, unit, signals, scale in CHARTS:
        lines = []
        for v, frame in frames.items():
            if frame.height == 0:
                continue
            ts = frame["ts"].to_list()
            for sig in signals:
                vals = [None if x is None or not math.isfinite(x) else x * scale
                        for x in frame[sig].to_list()]
                label = f"v{v}" if len(signals) == 1 else f"v{v} {sig.split('_')[0]}"
                if sig == "score_std":
                    label = f"v{v} std"
                lines.append(Line(label, ts, vals))
        out.append(line_chart(lines, title=title, unit=unit, markers=marks))
    return out


def overview_spark(store, model: str, served: str | None) -> dict:
    if served is None:
        return {"traffic": "", "errors": ""}
    frame = store.signals(model, served)
    tail = frame.tail(120)
    return {"traffic": sparkline(tail["request_rate"].to_list()) if tail.height else "",
            "errors": sparkline(tail["error_rate"].to_list(), colour="#dc2626") if tail.height else ""}


def versions_table(repository: Path | None, rt, published: list[str] = ()) -> list[dict]:
    states = {s.version: s for s in rt.states}
    for v in published:  # published on disk but never loaded: Triton's index does not list them
        states.setdefault(v, VersionState(v, "NOT LOADED"))
    rows = []
    for v in sorted(states, key=_vkey, reverse=True):
        manifest = _manifest(repository, rt.name, v)
        metrics = manifest.get("metrics", {}) or {}
        parity = (manifest.get("parity", {}) or {}).get("max_abs_diff", {})
        probe = next((p for p in reversed(rt.probes) if p.version == v), None)
        rows.append({
            "version": v, "state": states[v].state,
            "reason": "" if states[v].reason in ("", "unloaded") else states[v].reason[:300],
            "created": manifest.get("created", ""),
            "metrics": {k: metrics[k] for k in ("auc", "baseline_auc", "log_loss") if k in metrics},
            "parity": max(parity.values()) if parity else None,
            "fault": (manifest.get("fault") or {}).get("kind"),
            "served": v == rt.served, "known_good": v == rt.known.known_good,
            "desired": rt.desired is not None and v == rt.desired.version,
            "rejected": rt.desired is not None and rt.desired.is_rejected(v),
            "pinned": v == rt.pinned, "probe": probe.status if probe else None,
        })
    return rows


def quality_table(feedback, model: str, versions: Sequence[dict]) -> list[dict]:
    """Online quality per version (feedback sums over everything kept) beside the offline test AUC
    of its manifest. `versions` are versions_table rows; `feedback` a FeedbackStore or None."""
    if feedback is None:
        return []
    offline = {row["version"]: row["metrics"] for row in versions}
    rows = []
    for _, version in reversed(feedback.versions(model)):
        windows = feedback.windows(model, version)
        s = quality_mod.summarise(quality_mod.merged(w for _, w in windows))
        test = offline.get(version, {})
        rows.append({**dataclasses.asdict(s), "version": version, "offline_auc": test.get("auc"),
                     "offline_log_loss": test.get("log_loss"),
                     "since": windows[0][0], "until": windows[-1][0] + feedback.window_s})
    return rows


def _manifest(repository: Path | None, model: str, version: str) -> dict:
    if repository is None:
        return {}
    try:
        return json.loads((Path(repository) / model / version / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}


def _vkey(v: str):
    return (0, int(v)) if v.isdigit() else (1, v)
