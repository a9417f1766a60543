"""The demo's scenarios: activate a version and watch what the sidecar does about it."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from sentinel.demo.session import DemoSession, wait_for


@dataclass(frozen=True)
class Scenario:
    name: str
    fault: str | None
    expect: str        # "rollback" | "load_failure" | "none" | "retrain" | "aborted" | "promoted"
    limit_s: float     # how long to wait for the expected outcome (or to watch, for "none")
    story: str
    feedback: bool = False    # replay real outcomes of served lists as feedback
    # Settings that differ from the shipped ones, printed with the result (policy.* by name;
    # canary.* go with the deploy as its canary policy).
    settings: tuple[tuple[str, float], ...] = ()
    # > 0: a local fleet of 3 replicas, v2 deployed as a canary on this many (sentinel.demo.canary)
    canary: int = 0


# A canary judged over 20 s instead of 2 minutes, for a demo (the fleet tests use the same).
_DEMO_CANARY = (("canary.duration_s", 20.0), ("canary.min_requests", 200.0),
                ("canary.look_every_s", 2.0))

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
    Scenario("quality", "reversed", "rollback", 240,
             "v2 is a worse model that looks healthy: the same scores handed out in reverse order "
             "within each list (a label-join bug in training); its golden set matches it, its "
             "latency and score distribution are v1's. Only the users' outcomes tell",
             feedback=True),
    Scenario("drift", None, "retrain", 240,
             "the traffic moves to the catalogue's least-liked films while v1 serves: no version "
             "to blame, so the sidecar asks for a retrain and runs the builder; the new version "
             "is deployed under watch", feedback=True,
             settings=(("policy.retrain_recent_s", 60.0),)),
    Scenario("leak", "leak", "rollback", 90,
             "v2 keeps 64 KiB alive per request (a cache without eviction): rolled back long "
             "before its stub runs out of memory, with the projected exhaustion time"),
    Scenario("cpu", "cpu", "rollback", 90,
             "v2 burns several times the CPU per request of v1 (a feature recomputed per candidate)"),
    # Known good after ~90 s (judgement + known_good_after_s), slow from 215 s: ~2 minutes later.
    Scenario("slow_after", "slow_after", "rollback", 330,
             "v2 is healthy and becomes known good, then ~2 minutes later turns ~3x slower (a "
             "cache that stops fitting): a late regression, rolled back to v1"),
    Scenario("canary-bad", "errors", "aborted", 90,
             "3 replicas; v2 fails 30 % of requests and goes to 1 replica first as a canary, "
             "judged against the 2 still on v1 over the same seconds: aborted, the other 2 "
             "never serve it", settings=_DEMO_CANARY, canary=1),
    Scenario("canary-good", None, "promoted", 150,
             "3 replicas; v2 is a healthy retrain and goes to 1 replica first as a canary, "
             "judged against the 2 still on v1 over the same seconds: promoted to the others in "
             "steps, no request lost", settings=_DEMO_CANARY, canary=1),
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
    # (period, version, online AUC, outcomes): the clients' outcomes of the lists served, per period
    quality: list = field(default_factory=list)


def run_scenario(session: DemoSession, scenario: Scenario, version: str,
                 live=lambda line: None) -> ScenarioResult:
    """Deploy `version` (the scenario's build) through the sidecar and watch."""
    if scenario.expect == "retrain":
        return run_retrain(session, scenario, live)
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
    if scenario.feedback and acted():
        wait_for(lambda: False, 30, tick)  # outcomes of the restored version's lists come in
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
        final_version=session.served(), events=events, end=end,
        quality=_quality_periods(session, good, version, activated, recovered, end))
    if scenario.expect == "none" and session.served() == version:
        # a clean version that stayed served is the expected end state; go back for the next run
        result.passed = happened == "none"
        session.deploy(good, reason="back to the first version for the next scenario")
    return result


def _quality_periods(session: DemoSession, good: str, version: str, activated: float,
                     recovered: float | None, end: float) -> list:
    """The clients' own outcomes, per period: before the deploy, while the new version served,
    after the rollback."""
    if session.replayer is None:
        return []
    from sentinel.feedback_replay import online_auc
    log = list(session.replayer.served_log)
    periods = [("before the deploy", good, 0.0, activated), ("after the deploy", version, activated,
                                                             recovered or end)]
    if recovered is not None:
        periods.append(("after the rollback", good, recovered, end))
    return [(name, v, *online_auc(log, v, a, b)) for name, v, a, b in periods]


def least_liked_items(trained, share: float = 0.2):
    """The catalogue's items with the lowest positive rate in training: traffic of these alone
    moves the ranker's scores down (its inputs drift)."""
    from build_scripts.train_ranker import popularity_baseline
    rate = popularity_baseline(trained.split.train, trained.tables.n_items)[1:]
    order = np.argsort(rate, kind="stable")
    return order[: max(1, int(order.size * share))] + 1


def run_retrain(session: DemoSession, scenario: Scenario, live=lambda line: None) -> ScenarioResult:
    """Move the traffic's inputs while the known-good version serves, wait for the sidecar's
    `retrain` event and the builder it starts, then deploy the new version under watch."""
    good = next(iter(session.versions))
    tick = lambda: live(session.status_line())  # noqa: E731
    before = set(session.published())
    moved = time.time()
    session.load.item_pool = least_liked_items(session.trained)
    wait_for(lambda: session.events(moved, kind="retrain"), scenario.limit_s, tick)
    retrain = next(iter(session.events(moved, kind="retrain")), None)
    new = None
    if retrain is not None and "started" in (retrain.outcome or ""):
        wait_for(lambda: set(session.published()) - before, scenario.limit_s, tick)
        new = max(set(session.published()) - before, key=int, default=None)
    deployed_at = None
    if new is not None:
        deployed_at = time.time()
        session.deploy(new, reason="retrained after the inputs drifted")
        wait_for(lambda: False, 45, tick)  # watched like any other deploy
    time.sleep(3)
    end = time.time()
    events = list(reversed(session.events(moved)))
    actions = [(e.ts, e.action, e.version, e.outcome) for e in events
               if e.kind == "action" and e.action not in ("deploy", "promote")]
    happened = "retrain" if retrain is not None else "none"
    load = session.load
    return ScenarioResult(
        scenario=scenario, version=new or good, activated_at=moved, outcome=happened,
        passed=retrain is not None and new is not None and session.served() == new
        and not any(a[1] == "rollback" for a in actions),
        decision_reason=retrain.reason if retrain else "", actions=actions,
        recovered_at=deployed_at, served_ok=load.served(moved, end),
        failed=load.failures(moved, end), final_version=session.served(), events=events, end=end)
