"""The `sentinel demo` command: one scenario, start to finish, with a report."""
from __future__ import annotations

import datetime as dt
import shlex
import signal
import sys
import threading
import time
from pathlib import Path

from monitor.canary import CanaryPolicy
from monitor.types import Policy
from sentinel.demo.canary import FleetSession, run_canary
from sentinel.demo.report import (canary_summary_rows, canary_timeline_rows, summary_rows,
                                  terminal_table, timeline_rows, write_canary_report, write_report)
from sentinel.demo.scenarios import SCENARIOS, run_scenario
from sentinel.demo.session import DemoSession, remove_tree, wait_for

ROOT = Path(__file__).resolve().parents[2]


class _Live:
    """One self-rewriting status line on a terminal; a line every 10 s otherwise (logs, CI)."""

    def __init__(self, stream=sys.stdout):
        self.stream = stream
        self.tty = stream.isatty()
        self._last = 0.0

    def __call__(self, line: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K  " + line)
            self.stream.flush()
        elif time.monotonic() - self._last >= 10:
            self._last = time.monotonic()
            print(f"  {line}", file=self.stream, flush=True)

    def done(self) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()


def run_demo(scenario_name: str = "errors", keep: bool = False, results: Path | None = None,
             say=lambda m: print(m, flush=True)) -> int:
    scenario = SCENARIOS[scenario_name]
    started = time.monotonic()
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    out_dir = Path(results or ROOT / "results") / f"demo-{scenario.name}-{stamp}"
    live = _Live()
    say(f"▶ Sentinel demo — scenario '{scenario.name}': {scenario.story}")
    policy = {k.split(".", 1)[1]: v for k, v in scenario.settings if k.startswith("policy.")}
    fleet = scenario.canary > 0
    session = (FleetSession if fleet else DemoSession)(
        {"1": None, "2": scenario.fault}, workdir=out_dir / "work", say=lambda m: say(f"  {m}"),
        feedback=scenario.feedback, policy=policy)
    if scenario.expect == "retrain":  # the builder the sidecar runs: publishes the next version
        session.config["retrain_command"] = shlex.join(
            [sys.executable, "-m", "sentinel.cli", "build", "ranker", "--repository",
             str(session.repo)])
    for key, value in scenario.settings:
        say(f"  demo setting (not the shipped default): {key} = {value:g}; the default is "
            f"{_default(key):g}")
    try:
        say("① building ranker v1 (good) and v2 (the new deploy)")
        session.build()
        if fleet:
            say(f"② starting a local fleet ({session.replicas} tritonservers and their sidecars, "
                f"what `sentinel serve --replicas {session.replicas}` runs) and client traffic")
        else:
            say("② starting Triton, the sidecar and client traffic")
        session.start()
        say("③ serving v1 on every replica until the lease holder marks it known good" if fleet
            else "③ serving v1 while the sidecar learns its baseline and marks it known good")
        if wait_for(session.warm, 240, lambda: live(session.status_line())) is None:
            live.done()
            say("  v1 never became known good within 240 s; see the events in the report")
            return 1
        live.done()
        say(f"  {session.status_line()}")
        if scenario.expect == "retrain":
            say(f"④ moving the clients' traffic to the least-liked films while v1 serves, and "
                f"watching for the retrain (up to {scenario.limit_s:g}s)")
        elif fleet:
            sets = " ".join(f"--canary-set {k.split('.', 1)[1]}={v:g}" for k, v in scenario.settings
                            if k.startswith("canary."))
            say(f"④ deploying v2 to {scenario.canary} replica first through a sidecar (what "
                f"`sentinel deploy ranker 2 --canary {scenario.canary} {sets}` does) and "
                f"watching (up to {scenario.limit_s:g}s)")
        else:
            say(f"④ deploying v2 through the sidecar (what `sentinel deploy ranker 2` does) and "
                f"watching (up to {scenario.limit_s:g}s)")
        if fleet:
            result = run_canary(session, scenario, "2", live)
            timeline, summary = canary_timeline_rows(result), canary_summary_rows(result)
        else:
            result = run_scenario(session, scenario, "2", live)
            timeline, summary = timeline_rows(result), summary_rows(result)
        live.done()
        say("")
        say(terminal_table(timeline, ("t", "UTC", "event")))
        say("")
        say(terminal_table(summary, ("", "")))
        report = (write_canary_report if fleet else write_report)(result, session, out_dir)
        events = session.workdir / ("fleet/replica-*/events.sqlite3" if fleet else "events.sqlite3")
        say(f"\nreport: {report}\nevents: {events} (`sentinel events --db ...`)\n"
            f"took {time.monotonic() - started:.0f}s")
        if keep:
            pages = session.pages if fleet else session.sidecar.url
            say(f"\n--keep: everything stays up. Pages: {pages}   Ctrl-C stops it.")
            stop = threading.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
            while not stop.wait(0.5):
                pass
        return 0 if result.passed else 1
    finally:
        live.done()
        session.close()
        remove_tree(out_dir / "work" / "model_repository")  # build artefacts; the report stays
        say("stopped every Triton, sidecar, Prometheus and client started" if fleet
            else "stopped Triton, the sidecar and the clients")


def _default(key: str) -> float:
    """The shipped value of a scenario setting (policy.* or canary.*)."""
    section, name = key.split(".", 1)
    return getattr({"policy": Policy, "canary": CanaryPolicy}[section](), name)
