"""The sidecar against a real tritonserver under steady gRPC load, through the demo's own engine
(sentinel.demo): every fault kind is acted on, and nothing is done on clean traffic, a clean
deploy, a restart. Scenarios run in file order on one server, each from version 1 serving."""
import threading
import time

import pytest
import requests

from build_scripts.ranker_build import FAULT_PRESETS
from sentinel.demo.scenarios import SCENARIOS, run_scenario
from sentinel.demo.session import TOKEN, DemoSession, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VERSIONS = {"1": None, "2": "errors", "3": "latency", "4": "nan", "5": "constant", "6": "crash",
            "7": "load_failure", "8": None, "9": "leak", "10": "slow_after"}
# Scenario → (version, seconds from activation to the action the issue asks for)
# latency: 16 s here; 45 s once in CI, where v1's own latency drifted 2.3 -> 3.7 ms on the shared
# host before v3 (5.99 ms) was deployed, so the step was +60 % over a noisy baseline, not x2.
CASES = {"errors": ("2", 10.0), "latency": ("3", 60.0), "nan": ("4", 15.0),
         "constant": ("5", 15.0), "dead_stub": ("6", 90.0), "load_failure": ("7", 10.0),
         "clean": ("8", None)}


@pytest.fixture(scope="module")
def session(tmp_path_factory, trained_ranker):
    # Scenarios follow each other within minutes: allow more actions than production would.
    s = DemoSession(VERSIONS, workdir=tmp_path_factory.mktemp("scenarios"), say=print,
                    policy={"cooldown_s": 5, "max_rollbacks_per_hour": 20,
                            "max_reloads_per_hour": 20})
    s.build(trained_ranker)
    s.start()
    yield s
    s.close()


def actions(s, since, kind=None):
    return [e for e in s.events(since, kind="action") if kind is None or e.action == kind]


def report(s, since, label):
    for e in reversed(s.events(since)):
        if e.kind != "decision" or e.action != "none":
            print(f"[{label}] +{e.ts - since:6.1f}s {e.kind:<11} v{e.version} {e.phase or ''} "
                  f"{e.action or ''} {e.outcome or ''} {e.reason[:140]}")


def test_clean_traffic_for_two_minutes_causes_no_action(session):
    start = time.time()
    time.sleep(125)
    report(session, start, "clean traffic")
    assert session.load.served(start) > 1000
    assert session.load.failures(start) == 0
    assert not actions(session, start)
    # Nothing about the version changed, so no signal of the version may move: scores, NaN,
    # errors, request rate, probes. Latency is the one signal the host itself moves: in CI, on a
    # shared 2-core machine, v1's latency once rose 2.3 -> 4.3 ms (p=9e-18) in these two minutes
    # with nothing deployed. That is a real change, and the sidecar may say so (an alert), but it
    # must not act on it: v1 stays served, known good and never rejected.
    moved = session.events(start, kind="detection")
    assert all(e.evidence.get("signal") == "latency_ms" for e in moved), moved
    decisions = [e for e in session.events(start, kind="decision") if e.action != "none"]
    assert all(e.action == "alert" for e in decisions), decisions
    if not moved:
        assert session.runtime.decision.phase == "healthy"
    desired = session.runtime.desired
    assert desired.version == "1" and not desired.is_rejected("1")
    assert session.served() == "1"
    assert session.warm(), "v1 must be known good with warm detectors after two clean minutes"


@pytest.mark.parametrize("name", list(CASES))
def test_scenario(session, name):
    version, limit_s = CASES[name]
    assert wait_for(session.warm, 150) is not None, "v1 not known good with warm detectors"
    result = run_scenario(session, SCENARIOS[name], version)
    report(session, result.activated_at, name)
    assert result.passed, f"{name}: expected {result.scenario.expect}, got {result.outcome}"
    # a clean version keeps serving (run_scenario then loads v1 again for the next scenario)
    assert result.final_version == (version if name == "clean" else "1")
    if result.outcome == "rollback":
        took = result.recovered_at - result.activated_at
        print(f"[{name}] rolled back {took:.1f}s after activation: {result.decision_reason}")
        assert took <= limit_s, f"{name}: rollback took {took:.1f}s > {limit_s}s"
        assert result.failed_after_recovery == 0, "client failures must stop after the rollback"
        rollback = next(e for e in result.events if e.kind == "action" and e.action == "rollback")
        assert rollback.outcome == "ok" and rollback.evidence["from_version"] == version
        decision = next(e for e in result.events if e.kind == "decision" and e.action == "rollback")
        assert decision.evidence["items"], "the event log must hold the evidence"
    if name == "dead_stub":
        assert any(a[1] == "reload" for a in result.actions), "a dead stub is reloaded first"
    if name == "load_failure":
        assert result.failed == 0 and not result.actions
    if name == "clean":
        assert not result.actions and result.failed == 0
        assert not [e for e in result.events if e.kind == "detection"]


def test_leaking_version_is_rolled_back_long_before_exhaustion(session):
    """Issue 14: v9 keeps 64 KiB per request. It is rolled back while its stubs still serve
    (no reload, no failed request), with the projected exhaustion time in the evidence."""
    assert wait_for(session.warm, 150) is not None, "v1 not known good with warm detectors"
    result = run_scenario(session, SCENARIOS["leak"], "9")
    report(session, result.activated_at, "leak")
    assert result.passed, f"leak: expected a rollback, got {result.outcome}"
    took = result.recovered_at - result.activated_at
    print(f"[leak] rolled back {took:.1f}s after activation: {result.decision_reason}")
    assert took <= 90 and result.final_version == "1"
    assert not [a for a in result.actions if a[1] == "reload"], "the stub must not have died"
    assert result.failed == 0, "no request may fail: the stub was never killed"
    decision = next(e for e in result.events if e.kind == "decision" and e.action == "rollback")
    growth = next(i for i in decision.evidence["items"] if i["type"] == "MemoryGrowth")
    assert growth["leaking"] and growth["version"] == "9"
    assert growth["seconds_to_limit"] > 0 and growth["exhausted_at"] > result.recovered_at
    assert growth["memory_bytes"] < 0.5 * growth["limit_bytes"]
    assert "reached in" in decision.reason


def test_late_slowdown_is_rolled_back_and_rising_load_is_not(session):
    """Issue 14: v10 serves cleanly while the load rises by 60 %, becomes known good, and turns
    ~3x slower about 2 minutes later: the rising load is left alone, the slowdown is rolled back
    to the previous known-good version (v1)."""
    assert wait_for(session.warm, 150) is not None, "v1 not known good with warm detectors"
    load = session.load
    base_rate = load.rate_per_client
    after_s = FAULT_PRESETS["slow_after"]["after_s"]
    stop = threading.Event()

    def ramp():  # 100 -> 160 requests/s over the first 90 s of v10, then held
        for step in range(1, 16):
            if stop.wait(6.0):
                return
            load.rate_per_client = base_rate * (1 + 0.6 * step / 15)

    ramper = threading.Thread(target=ramp, daemon=True)
    start = time.time()
    ok, detail = session.deploy("10", reason=SCENARIOS["slow_after"].story)
    assert ok, detail
    ramper.start()
    try:
        known = wait_for(lambda: session.events(start, kind="known_good"), 150)
        assert known is not None, "v10 never became known good"
        kg_at = session.events(start, kind="known_good")[0].ts
        slow_at = start + after_s
        print(f"[slow_after] known good {kg_at - start:.0f}s after the deploy; slow from "
              f"{after_s:.0f}s, {slow_at - kg_at:.0f}s after becoming known good")
        assert slow_at - kg_at >= 110, "the slowdown must come ~2 minutes after known good"
        rolled = wait_for(lambda: actions(session, start, "rollback"), after_s + 90 - (time.time() - start))
    finally:
        stop.set()
        ramper.join()
        load.rate_per_client = base_rate
    report(session, start, "slow_after")
    assert rolled is not None, "the late slowdown was not rolled back"
    rollback = actions(session, start, "rollback")[0]
    took = rollback.ts - slow_at
    print(f"[slow_after] rolled back {took:.1f}s after the slowdown: {rollback.reason[:200]}")
    assert rollback.ts >= slow_at, "nothing may be done while v10 is clean under rising load"
    assert rollback.version == "1" and rollback.outcome == "ok"
    assert took <= 60
    assert session.served() == "1"
    assert load.served(start, slow_at) > 100 * 200, "the load must have risen and been served"


def test_killed_stub_is_reloaded_and_serves_again(session):
    start = time.time()
    assert session.kill_stubs()
    took = wait_for(lambda: actions(session, start, "reload"), 30)
    report(session, start, "killed stub")
    assert took is not None, "no reload after the stub died"
    act = actions(session, start, "reload")[0]
    assert act.version == "1" and act.outcome == "ok"
    assert not actions(session, start, "rollback")
    time.sleep(2)
    after = time.time()
    time.sleep(3)
    assert session.load.failures(after) == 0 and session.load.served(after) > 50
    assert session.served() == "1"


def test_triton_restart_causes_no_detection_and_no_rollback(session):
    # Nobody loads anything after the restart: the repository's desired state (version 1, after
    # every faulty version above was rejected) is what Triton loads at start.
    assert wait_for(session.warm, 150) is not None
    start = time.time()
    session.triton.stop()
    session.triton.start()
    up = time.time()
    ready = {e["version"] for e in session.triton.index() if e.get("state") == "READY"}
    assert ready == {"1"}, ready
    time.sleep(40)
    report(session, start, "restart")
    assert not [a for a in actions(session, start) if a.action in ("rollback", "reload")]
    assert not session.events(start, kind="detection")
    assert session.served() == "1"
    first_ok = min(r.ts for r in session.load.snapshot() if r.ok and r.ts >= up)
    assert session.load.failures(first_ok) == 0


def test_control_endpoint_needs_the_token_and_metrics_are_served(session):
    url = f"{session.sidecar.url}/api/models/ranker/rollback"
    assert requests.post(url, json={"version": "1"}, timeout=5).status_code == 401
    r = requests.post(url, json={"version": "99"}, headers={"X-Sentinel-Token": TOKEN}, timeout=5)
    assert r.status_code == 404 and "not in the model repository" in r.json()["error"]
    r = requests.post(url, json={"version": "2"}, headers={"X-Sentinel-Token": TOKEN}, timeout=5)
    assert r.status_code == 409 and "was rolled back" in r.json()["error"]
    metrics = requests.get(f"{session.sidecar.url}/metrics", timeout=5).text
    assert 'sentinel_monitor_actions_total{action="rollback",model="ranker",outcome="ok"}' in metrics
    assert 'sentinel_monitor_phase{model="ranker",phase="healthy"}' in metrics
