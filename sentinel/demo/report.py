"""The demo's timeline, as a terminal table and as a markdown report with SVG charts."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from monitor import views
from sentinel.demo.scenarios import ScenarioResult
from sentinel.demo.screenshot import screenshot


def _t(ts: float | None, origin: float) -> str:
    return "—" if ts is None else f"+{ts - origin:5.1f}s"


def _clock(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%H:%M:%S")


def timeline_rows(r: ScenarioResult) -> list[tuple[str, str, str]]:
    o = r.activated_at
    first = f"traffic moved ({r.scenario.story})" if r.scenario.expect == "retrain" \
        else f"v{r.version} activated ({r.scenario.story})"
    rows = [(_t(o, o), _clock(o), first)]
    for e in r.events:
        if e.kind == "detection":
            ev = e.evidence
            rows.append((_t(e.ts, o), _clock(e.ts),
                         f"change detected on {ev.get('signal')}: {ev.get('baseline_mean'):.4g} → "
                         f"{ev.get('recent_mean'):.4g} (effect {ev.get('effect'):+.4g}, "
                         f"p={ev.get('p_value'):.2g})"))
        elif e.kind == "probe":
            rows.append((_t(e.ts, o), _clock(e.ts), f"golden probe of v{e.version}: {e.outcome} — "
                                                     f"{e.reason[:90]}"))
        elif e.kind == "decision" and e.action != "none":
            rows.append((_t(e.ts, o), _clock(e.ts), f"decision: {e.phase} → {e.action} — "
                                                     f"{e.reason[:160]}"))
        elif e.kind == "action" and e.action == "deploy":
            rows.append((_t(e.ts, o), _clock(e.ts),
                         f"v{e.version} deployed through the sidecar in "
                         f"{e.evidence.get('seconds', 0):.2f}s (desired state first; golden probe "
                         f"{e.evidence.get('probe')}); under watch"))
        elif e.kind == "action":
            rows.append((_t(e.ts, o), _clock(e.ts),
                         f"{e.action} to v{e.version}: {e.outcome} in "
                         f"{e.evidence.get('seconds', 0):.2f}s (golden probe "
                         f"{e.evidence.get('probe')})"))
        elif e.kind in ("load_failure", "quality", "retrain"):
            what = {"quality": "online quality: ", "retrain": "retrain: "}.get(e.kind, "")
            rows.append((_t(e.ts, o), _clock(e.ts), what + e.reason[:180]
                         + (f" ({e.outcome})" if e.kind == "retrain" and e.outcome else "")))
    return rows


def summary_rows(r: ScenarioResult) -> list[tuple[str, str]]:
    o = r.activated_at
    det = r.detection
    rows = [
        ("scenario", f"{r.scenario.name}: {r.scenario.story}"),
        ("expected", r.scenario.expect), ("outcome", r.outcome),
        ("result", "PASS" if r.passed else "FAIL"),
        ("traffic moved at" if r.scenario.expect == "retrain" else "v2 activated at", _clock(o)),
        ("change detected", "—" if det is None else
         f"{_t(det['at'], o)} on {det['signal']} (p={det['p_value']:.2g})"),
        ("actions", ", ".join(f"{a[1]}→v{a[2]} {a[3]} {_t(a[0], o)}" for a in r.actions) or "none"),
        ("retrained version deployed" if r.scenario.expect == "retrain" else "time to recovery",
         "—" if r.recovered_at is None else f"{r.recovered_at - o:.1f}s"
         + (f" (v{r.version}, built by the retrain command)" if r.scenario.expect == "retrain" else "")),
        ("client requests", f"{r.served_ok} served, {r.failed} failed "
                            f"({r.failed_after_recovery} after recovery)"),
        ("now serving", f"v{r.final_version}"),
    ]
    for period, version, auc, n in r.quality:
        rows.append((f"outcomes {period}", f"v{version}: online AUC {auc:.3f} over {n} outcomes"
                     if n else f"v{version}: no outcomes yet"))
    return rows


def terminal_table(rows: list[tuple], headers: tuple) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    widths[-1] = min(widths[-1], 110)
    line = "  ".join("─" * w for w in widths)
    out = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths)), line]
    for row in rows:
        out.append("  ".join(str(x)[:w].ljust(w) for x, w in zip(row, widths)))
    return "\n".join(out)


def write_report(r: ScenarioResult, session, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    since = r.activated_at - 90
    charts = views.charts(session.sidecar.poller.store, "ranker", r.events, since=since)
    names = ("request_rate", "error_rate", "latency", "queue_compute", "scores", "nan")
    for name, svg in zip(names, charts):
        (out_dir / f"{name}.svg").write_text(svg)
    lines = [f"# Sentinel demo: {r.scenario.name}", "",
             f"{r.scenario.story}. Result: **{'PASS' if r.passed else 'FAIL'}** "
             f"(expected {r.scenario.expect}, got {r.outcome}).", "",
             "| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in summary_rows(r)], "",
             "## Timeline", "", "| t | UTC | event |", "|---|---|---|",
             *[f"| {a} | {b} | {c.replace('|', '/')} |" for a, b, c in timeline_rows(r)], "",
             "## Charts", ""]
    lines += [f"![{n}]({n}.svg)" for n in names]
    shot = screenshot(f"{session.sidecar.url}/models/ranker?window=600&refresh=0",
                      out_dir / "model-page.png")
    lines += ["", "## The sidecar's model page", "",
              "![model page](model-page.png)" if shot else
              "(no screenshot: Chromium or Playwright is not installed; `make setup` installs both)"]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------- canary scenarios (a local fleet)

def canary_timeline_rows(r) -> list[tuple[str, str, str]]:
    """r: sentinel.demo.canary.CanaryResult; every sidecar's events, and what the Tritons listed."""
    o = r.asked_at
    rows = [(o, f"v{r.version} asked for with --canary {r.scenario.canary} through "
                f"{r.pages.rsplit('/', 1)[0]}: {r.detail}")]
    if r.serving_at is not None:
        rows.append((r.serving_at, f"v{r.version} READY on the canary {', '.join(r.canary_replicas)} "
                                   f"(its Triton's repository index)"))
    if r.converged_at is not None:
        rows.append((r.converged_at, f"every replica's Triton serves v{r.converged_to}"))
    judged_alone = set()
    for replica, e in r.events:
        if e.kind == "canary" and e.outcome != "started":
            rows.append((e.ts, f"{replica} (lease holder): canary {e.outcome} — {e.reason}"))
        elif e.kind == "decision" and e.action == "rollback" and e.outcome is None:
            rows.append((e.ts, f"{replica} (lease holder): decision {e.phase} → rollback — "
                               f"{e.reason}"))
        elif e.kind == "decision" and e.action == "rollback" and replica not in judged_alone:
            judged_alone.add(replica)  # its own Triton's series; the first such judgement only
            rows.append((e.ts, f"{replica}: its own judgement of its Triton, {e.phase} → rollback, "
                               f"{e.outcome} (the lease holder decides)"))
        elif e.kind == "action" and e.action == "reconcile":
            rows.append((e.ts, f"{replica}: reconciled its Triton to v{e.version}: {e.outcome} in "
                               f"{e.evidence.get('seconds', 0):.2f}s (golden probe "
                               f"{e.evidence.get('probe')})"))
    return [(_t(ts, o), _clock(ts), text) for ts, text in sorted(rows, key=lambda x: x[0])]


def _group(g: dict | None) -> str:
    if not g:
        return "—"
    rate = "—" if g.get("error_rate") is None else f"{g['error_rate']:.2%}"
    latency = "—" if g.get("mean_latency_us") is None else f"{g['mean_latency_us'] / 1000:.2f} ms"
    return f"{g['requests']} requests, {g['failures']} failed ({rate}), mean latency {latency}"


def canary_summary_rows(r) -> list[tuple[str, str]]:
    o, v = r.asked_at, r.verdict
    others = [n for n in r.seen if n not in r.canary_replicas]
    checks = ", ".join(f"{c['name']} p={c['p_value']:.2g}{' FAILED' if c['failed'] else ''}"
                       for c in v.get("checks", []) if c.get("p_value") is not None)
    reached = sorted(n for n, seen in r.seen.items() if r.version in seen)
    return [
        ("scenario", f"{r.scenario.name}: {r.scenario.story}"),
        ("expected", r.scenario.expect), ("outcome", r.outcome),
        ("result", "PASS" if r.passed else "FAIL"),
        (f"v{r.version} asked for at", _clock(o)),
        ("canary", f"v{r.version} on {', '.join(r.canary_replicas) or '—'}, judged against "
                   f"{', '.join(others)} on v{r.good}"),
        ("canary serving", _t(r.serving_at, o).strip()),
        ("verdict", "—" if r.verdict_at is None else
         f"{_t(r.verdict_at, o).strip()} by {r.decided_by} (lease holder): {v.get('outcome')} after "
         f"{v.get('paired_s')} s of paired evidence, {v.get('looks')} looks"),
        ("canary group", _group(v.get("canary"))),
        ("fleet group", _group(v.get("fleet"))),
        ("checks", checks or "—"),
        (r.outcome if r.outcome != "none" else "ended", _t(r.ended_at, o).strip()),
        ("every replica on one version", _t(r.converged_at, o).strip()),
        (f"v{r.version} READY on", ", ".join(reached) or "no replica"),
        ("client requests", f"{r.served_ok} served, {sum(r.failed.values())} failed ("
                            + ", ".join(f"{n} {k}" for n, k in r.failed.items()) + ")"),
        ("now serving", ", ".join(f"{n} v{'+v'.join(sorted(vs)) or '-'}" for n, vs in r.final.items())),
        ("fleet page", f"{r.pages} (while the fleet runs: --keep)"),
    ]


def write_canary_report(r, session, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"# Sentinel demo: {r.scenario.name}", "",
             f"{r.scenario.story}. Result: **{'PASS' if r.passed else 'FAIL'}** "
             f"(expected {r.scenario.expect}, got {r.outcome}).", "",
             "| | |", "|---|---|",
             *[f"| {k} | {str(v).replace('|', '/')} |" for k, v in canary_summary_rows(r)], "",
             "## Timeline (every sidecar's events)", "", "| t | UTC | event |", "|---|---|---|",
             *[f"| {a} | {b} | {c.replace('|', '/')} |" for a, b, c in canary_timeline_rows(r)]]
    shot = screenshot(f"{r.pages}?refresh=0", out_dir / "fleet-page.png")
    lines += ["", "## The fleet page", "", "![fleet page](fleet-page.png)" if shot else
              "(no screenshot: Chromium or Playwright is not installed; `make setup` installs both)"]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
