"""The demo's scenarios: activate a version and watch what the sidecar does about it."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from sentinel.demo.session import DemoSession, wait_for


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: str | None
    expect: str        # "rollback" | "load_failure" | "none"
    limit_s: float     # how long to wait for the expected outcome (or to watch, for "none")
    story: str


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("errors", "errors", "rollback", 30,
             "v2 fails 30 % of requests (an unhandled input in its new code path)"),
    Scenario("latency", "latency", "rollback", 60,
             "v2 is twice as slow (a feature lookup moved into the request path)"),
    Scenario("nan", "nan", "rollback", 30, "v2 returns NaN scores (a bad normalisation constant)"),
    Scenario("constant", "constant", "rollback", 30,
             "v2 returns the same score for every item (a feature-encoding bug)"),
    Scenario("dead_stub", "crash", "rollback", 120,
             "v2's Python stub dies after 50 requests; health endpoints stay 200"),
    Scenario("load_failure", "load_failure", "load_failure", 30,
             "v2 raises in initialize(): it never becomes ready"),
    Scenario("clean", None, "none", 60, "v2 is a healthy retrain: nothing should happen"),
    Scenario("leak", "leak", "rollback", 90,
             "v2 keeps 64 KiB alive per request (a cache without eviction): rolled back long "
             "before its stub runs out of memory, with the projected exhaustion time"),
    Scenario("cpu", "cpu", "rollback", 90,
             "v2 burns several times the CPU per request of v1 (a feature recomputed per candidate)"),
    # Known good after ~90 s (judgement + known_good_after_s), slow from 215 s: ~2 minutes later.
    Scenario("slow_after", "slow_after", "rollback", 330,
             "v2 is healthy and becomes known good, then ~2 minutes later turns ~3x slower (a "
             "cache that stops fitting): a late regression, rolled back to v1"),
)}


@dataclass
class ScenarioResult:
    scenario: Scenario
    version: str
    activated_at: float
    outcome: str                      # what happened: rollback | load_failure | none | ...
    passed: bool
    detection: dict | None = None     # signal, effect, p-value, at
    decision_reason: str = ""
    actions: list = field(default_factory=list)   # (ts, action, version, outcome)
    recovered_at: float | None = None
    served_ok: int = 0
    failed: int = 0
    failed_after_recovery: int = 0
    final_version: str | None = None
    events: list = field(default_factory=list)
    end: float = 0.0


def run_scenario(session: DemoSession, scenario: Scenario, version: str,
                 live=lambda line: None) -> ScenarioResult:
    """Deploy `version` (the scenario's build) through the sidecar and watch."""
    good = next(iter(session.versions))
    activated = time.time()
    deployed, detail = session.deploy(version, reason=scenario.story)
    tick = lambda: live(session.status_line())  # noqa: E731

    def acted() -> bool:
        return any(e.action == "rollback" for e in session.events(activated, kind="action"))

    if scenario.expect == "rollback":
        wait_for(acted, scenario.limit_s, tick)
    elif scenario.expect == "load_failure":
        wait_for(lambda: session.events(activated, kind="load_failure"), scenario.limit_s, tick)
    else:
        wait_for(lambda: False, scenario.limit_s, tick)
    time.sleep(3)  # let the last requests of the old state land in the counts
    end = time.time()
    events = list(reversed(session.events(activated)))
    # what the sidecar did on its own (the deploy itself is the scenario's, not a reaction)
    actions = [(e.ts, e.action, e.version, e.outcome) for e in events
               if e.kind == "action" and e.action not in ("deploy", "promote")]
    rollback = next((a for a in actions if a[1] == "rollback"), None)
    detection = next((e for e in events if e.kind == "detection"), None)
    decisive = next((e for e in events if e.kind == "decision" and e.action in ("rollback", "reload")),
                    None)
    if rollback:
        happened = "rollback"
    elif any(e.kind == "load_failure" for e in events):
        happened = "load_failure"
    elif actions:
        happened = actions[0][1]
    else:
        happened = "none"
    recovered = rollback[0] if rollback else None
    load = session.load
    result = ScenarioResult(
        scenario=scenario, version=version, activated_at=activated, outcome=happened,
        # a load that Triton refuses is the point of the load_failure scenario
        passed=happened == scenario.expect and session.served() == good
        and (deployed or scenario.expect == "load_failure"),
        detection=None if detection is None else {
            "signal": detection.evidence.get("signal"), "at": detection.ts,
            "baseline": detection.evidence.get("baseline_mean"),
            "recent": detection.evidence.get("recent_mean"),
            "p_value": detection.evidence.get("p_value")},
        decision_reason=decisive.reason if decisive else "",
        actions=actions, recovered_at=recovered,
        served_ok=load.served(activated, end), failed=load.failures(activated, end),
        failed_after_recovery=load.failures(recovered, end) if recovered else 0,
        final_version=session.served(), events=events, end=end)
    if scenario.expect == "none" and session.served() == version:
        # a clean version that stayed served is the expected end state; go back for the next run
        result.passed = happened == "none"
        session.deploy(good, reason="back to the first version for the next scenario")
    return result
