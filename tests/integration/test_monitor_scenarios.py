"""The sidecar against a real tritonserver under steady gRPC load: each fault is detected and acted
on, and nothing is done on clean traffic, a restart or missing metrics. Scenarios run in order on
one server (file order), each starting from version 1 serving with warm detectors."""
import time

import pytest
import requests

from tests.integration.monitor_harness import TOKEN, build_repository, start_harness

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def harness(tmp_path_factory, trained_ranker):
    work = tmp_path_factory.mktemp("monitor")
    repo = build_repository(work / "repo", trained_ranker)
    h = start_harness(repo, work)
    yield h
    h.load.stop()
    h.sidecar.stop()
    h.triton.stop()


def actions(h, since, kind=None):
    return [e for e in h.events(since, kind="action") if kind is None or e.action == kind]


def report(h, since, label):
    """Print what happened (visible with -s, and in the failure output)."""
    for e in reversed(h.events(since)):
        print(f"[{label}] +{e.ts - since:6.1f}s {e.kind:<11} v{e.version} {e.phase or ''} "
              f"{e.action or ''} {e.outcome or ''} {e.reason[:140]}")


def test_clean_traffic_for_two_minutes_causes_no_action(harness):
    start = time.time()
    time.sleep(125)
    report(harness, start, "clean")
    assert harness.load.served(start) > 1000
    assert harness.load.failures(start) == 0
    assert not actions(harness, start)
    assert not harness.events(start, kind="detection")
    assert harness.rt().decision.phase == "healthy"
    assert harness.rt().known.known_good == "1"


def test_killed_stub_is_reloaded_and_serves_again(harness):
    start = time.time()
    killed = harness.kill_stubs()
    assert killed
    took = harness.wait(lambda: actions(harness, start, "reload"), timeout=30)
    report(harness, start, "dead stub")
    assert took is not None, "no reload after the stub died"
    act = actions(harness, start, "reload")[0]
    assert act.version == "1" and act.outcome == "ok"
    assert not actions(harness, start, "rollback")
    time.sleep(2)
    after = time.time()
    time.sleep(3)
    assert harness.load.failures(after) == 0 and harness.load.served(after) > 50
    assert harness.served() == "1"


@pytest.mark.parametrize("version,fault,limit_s", [
    ("2", "errors", 10.0), ("3", "latency", 30.0), ("4", "nan", 15.0), ("5", "constant", 15.0)])
def test_bad_version_is_rolled_back(harness, version, fault, limit_s):
    harness.wait_warm()
    assert harness.rt().known.known_good == "1"
    outcome = harness.repo_client.load("ranker", version)
    assert outcome.ok, outcome.detail
    activated = time.time()
    took = harness.wait(lambda: actions(harness, activated, "rollback"), timeout=limit_s + 30)
    report(harness, activated, fault)
    assert took is not None, f"{fault}: no rollback"
    rollback = actions(harness, activated, "rollback")[0]
    elapsed = rollback.ts - activated
    print(f"[{fault}] rolled back {elapsed:.1f}s after activation; reason: {rollback.reason}")
    assert elapsed <= limit_s, f"{fault}: rollback took {elapsed:.1f}s > {limit_s}s"
    assert rollback.version == "1" and rollback.outcome == "ok"
    assert rollback.evidence["from_version"] == version
    decisions = [e for e in harness.events(activated, kind="decision") if e.action == "rollback"]
    assert decisions and decisions[0].evidence["items"], "the event log must hold the evidence"
    time.sleep(2)
    settled = time.time()
    time.sleep(3)
    assert harness.served() == "1"
    assert harness.load.failures(settled) == 0, "client failures must stop after the rollback"


def test_version_that_fails_to_load_leaves_the_previous_one_served(harness):
    start = time.time()
    outcome = harness.repo_client.load("ranker", "6")
    assert not outcome.ok and "refuses to load" in outcome.detail
    took = harness.wait(lambda: harness.events(start, kind="load_failure"), timeout=10)
    report(harness, start, "load failure")
    assert took is not None
    assert harness.served() == "1"
    time.sleep(2)
    assert harness.load.failures(start) == 0
    assert not actions(harness, start)


def test_triton_restart_causes_no_detection_and_no_rollback(harness):
    start = time.time()
    harness.triton.stop()
    harness.triton.start()
    assert harness.repo_client.load("ranker", "1").ok
    time.sleep(40)
    report(harness, start, "restart")
    assert not actions(harness, start)
    assert not harness.events(start, kind="detection")
    assert harness.served() == "1"


def test_control_endpoint_needs_the_token(harness):
    url = f"{harness.sidecar.url}/api/models/ranker/rollback"
    assert requests.post(url, json={"version": "1"}, timeout=5).status_code == 401
    r = requests.post(url, json={"version": "99"}, headers={"X-Sentinel-Token": TOKEN}, timeout=5)
    assert r.status_code == 404 and "not in Triton" in r.json()["error"]
    metrics = requests.get(f"{harness.sidecar.url}/metrics", timeout=5).text
    assert "sentinel_monitor_cycles_total" in metrics
    assert "# TYPE sentinel_monitor_actions_total counter" in metrics
    assert 'sentinel_monitor_phase{model="ranker",phase="healthy"}' in metrics
