"""What survives which restart: a real tritonserver, the real sidecar as its own process
(`sentinel monitor`, killed with SIGKILL and started again), steady gRPC load. Nothing here calls
Triton's repository API on the sidecar's behalf: the only direct load is (b)'s, an operator
activating a version while the sidecar is down.

The steps run in file order on one repository: v1 good, v2 fails 30 %, v3 good, v4 fails 30 %."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from monitor.act import RepositoryClient
from sentinel.desired_state import DesiredStateStore
from sentinel.load import LoadGenerator
from sentinel.triton import TritonOptions, TritonServer, free_port
from tests.sidecar_process import SidecarProcess, ready_versions, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ADMIN_KEY, TOKEN = "restart-admin", "restart-token"
VERSIONS = {"1": None, "2": "errors", "3": None, "4": "errors"}
# Shipped defaults (1 s cycles, probes every 5 s, 30 s cooldown) except known_good_after_s (60 s),
# shortened so that the sequence fits the test budget, and 2 rollbacks an hour (3), so that the
# two of (a) and (b) reach the limit (f) checks.
SETTINGS = {"policy": {"known_good_after_s": 15, "max_rollbacks_per_hour": 2}}


class Stack:
    def __init__(self, repo: Path, workdir: Path):
        self.repo, self.workdir = repo, workdir
        self.opts = TritonOptions(repo, free_port(), free_port(), free_port(), admin_key=ADMIN_KEY,
                                  log_path=workdir / "triton.log")  # default: every built model
        self.triton = TritonServer(self.opts)
        self.sidecar = SidecarProcess(workdir, self.opts, free_port(), ADMIN_KEY, TOKEN, SETTINGS)
        self.load = LoadGenerator(self.opts.grpc_url, clients=2, rate_per_client=25.0)
        self.desired = DesiredStateStore(repo)

    def ready_versions(self) -> set[str]:
        return ready_versions(self.triton)


def known_good(stack: Stack) -> list[str]:
    return [k.version for k in stack.desired.read("ranker").known_good]


@pytest.fixture(scope="module")
def stack(tmp_path_factory, trained_ranker):
    from build_scripts.ranker_build import build_ranker
    workdir = tmp_path_factory.mktemp("restarts")
    repo = workdir / "model_repository"
    for version, fault in VERSIONS.items():
        assert str(build_ranker(repo, fault=fault, trained=trained_ranker).version) == version
    s = Stack(repo, workdir)
    s.triton.start()
    s.sidecar.start()
    s.load.start()
    yield s
    s.load.stop()
    s.sidecar.kill()
    s.triton.stop()


def test_published_repository_serves_its_first_version_and_it_becomes_known_good(stack):
    # Triton was started with its default flags on a repository holding v1..v4: the desired
    # state written at publish time pins v1 (publishing never changes what serves).
    assert stack.ready_versions() == {"1"}
    took = wait_for(lambda: known_good(stack) == ["1"], 120)
    assert took is not None, stack.sidecar.model()
    baseline = stack.desired.read("ranker").known_good[-1].baseline
    assert baseline["requests"] > 100 and baseline["signals"]["error_rate"]["n"] >= 10
    # Its score histogram, per request: what drift compares v3 with after the restart in (c),
    # with enough requests (drift_min_samples, 500) for a verdict; v3 (v1's weights) must not
    # read as drifted from it, or it never becomes known good.
    print(f"[v1] known good with {sum(baseline['scores']['counts']):.0f} requests in its kept "
          f"score histogram")
    assert sum(baseline["scores"]["counts"]) >= 500
    assert len(baseline["scores"]["counts"]) == len(baseline["scores"]["upper_bounds"]) + 1


def test_a_rollback_survives_a_triton_crash(stack):
    # (a) rollback, then Triton killed (SIGKILL) and started again with its default flags
    start = time.time()
    r = stack.sidecar.post("deploy", version="2", reason="new model")
    assert r.status_code == 200, r.text
    assert wait_for(lambda: stack.ready_versions() == {"1"} and stack.desired.read("ranker").
                    is_rejected("2"), 60) is not None
    rejection = stack.desired.read("ranker").rejection("2")
    assert ("error_rate" in rejection.reason or "golden-set probes" in rejection.reason)
    assert rejection.event_id is not None
    def rolled():
        return [e for e in stack.sidecar.events(start, "action") if e["action"] == "rollback"]
    assert wait_for(rolled, 5) is not None and rolled()[0]["outcome"] == "ok", rolled()
    killed = time.time()
    stack.triton.kill()
    stack.triton.start()
    up = time.time()
    seen: set[str] = set()

    def settled():
        seen.update(stack.ready_versions())
        return stack.load.served(up) > 0
    assert wait_for(settled, 60) is not None
    settle = min(r.ts for r in stack.load.snapshot() if r.ok and r.ts >= up)
    for _ in range(60):  # 15 s of watching the index
        seen.update(stack.ready_versions())
        time.sleep(0.25)
    print(f"[a] Triton down {up - killed:.1f}s; first request served {settle - up:.2f}s after it "
          f"was live; versions READY since: {sorted(seen)}; failures after that: "
          f"{stack.load.failures(settle)}")
    assert "2" not in seen and seen == {"1"}
    assert stack.load.failures(settle) == 0
    assert {r.version for r in stack.load.snapshot() if r.ok and r.ts >= settle} == {"1"}


def test_a_version_activated_while_the_sidecar_is_down_is_rolled_back(stack):
    # (b) the sidecar crashes; an operator loads v4 straight through Triton meanwhile
    stack.sidecar.kill()
    outcome = RepositoryClient(stack.opts.http_url, stack.repo, admin_key=ADMIN_KEY).load("ranker", "4")
    assert outcome.ok, outcome.detail
    time.sleep(5)
    assert stack.load.failures(time.time() - 5) > 0  # v4 fails requests while nobody watches
    restarted = time.time()
    stack.sidecar.start()
    took = wait_for(lambda: stack.ready_versions() == {"1"}
                    and stack.desired.read("ranker").is_rejected("4"), 90)
    events = stack.sidecar.events(restarted)
    for e in reversed(events):
        if e["kind"] in ("activation", "deploy", "detection", "action", "probe"):
            print(f"[b] +{e['ts'] - restarted:5.1f}s {e['kind']:<10} v{e['version']} {e['reason'][:120]}")
    assert took is not None, "v4 was not rolled back after the sidecar restart"
    print(f"[b] rolled back {took:.1f}s after the sidecar restart")
    state = stack.desired.read("ranker")
    assert "4" not in [k.version for k in state.known_good]
    assert any(e["kind"] == "deploy" and e["version"] == "4" for e in events), \
        "the outside activation is adopted as a deploy under watch"


def test_a_good_candidate_still_becomes_known_good_across_a_sidecar_restart(stack):
    # (c) v3 deployed, the sidecar killed while v3 is under watch, started again
    r = stack.sidecar.post("deploy", version="3")
    assert r.status_code == 200, r.text
    assert stack.desired.read("ranker").watch.version == "3"
    time.sleep(5)
    stack.sidecar.kill()
    assert stack.desired.read("ranker").watch.version == "3"  # the watch is in the repository
    stack.sidecar.start()
    took = wait_for(lambda: known_good(stack)[-1:] == ["3"], 150)
    assert took is not None, stack.sidecar.model()
    print(f"[c] v3 known good {took:.1f}s after the sidecar restart")
    assert stack.ready_versions() == {"3"}


def test_a_fresh_event_log_restores_everything_from_the_repository(stack):
    # (e) a new pod: the sidecar's event log is gone, the repository is all there is
    stack.sidecar.kill()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{stack.sidecar.db}{suffix}").unlink(missing_ok=True)
    stack.sidecar.start()
    m = stack.sidecar.model()
    assert m["desired"]["version"] == "3" and m["known_good"] == "3"
    assert m["desired"]["known_good_history"] == ["1", "3"]
    assert {r["version"] for r in m["desired"]["rejected"]} == {"2", "4"}
    assert m["desired"]["rollback_target"] == "1"
    time.sleep(5)
    assert stack.ready_versions() == {"3"}
    assert not [e for e in stack.sidecar.events(time.time() - 6, "action")]


def test_triton_and_sidecar_restarted_together_converge_in_the_first_cycles(stack):
    # (d) both restarted; Triton this time without loading anything (explicit mode, no
    # --load-model): only the sidecar's reconcile step can make the desired version serve
    stack.sidecar.kill()
    stack.triton.kill()
    bare = TritonServer(dataclasses.replace(stack.opts, models=()))
    bare.start()
    stack.triton = bare
    assert stack.ready_versions() == set()
    start, started_at = time.monotonic(), time.time()
    stack.sidecar.start()
    took = wait_for(lambda: stack.ready_versions() == {"3"}, 30)
    assert took is not None
    print(f"[d] v3 served {time.monotonic() - start:.1f}s after the sidecar process started")
    assert time.monotonic() - start < 15
    time.sleep(2)  # the action is recorded in the cycle after it finished
    actions = stack.sidecar.events(started_at, "action")
    assert [(a["action"], a["version"], a["outcome"]) for a in actions] == [("reconcile", "3", "ok")]



def test_the_rollback_limit_counts_rollbacks_from_before_the_restarts(stack):
    # (f) v2 and v4 were rolled back in (a) and (b), and the sidecar has been killed and started
    # three times since: its memory holds no rollback. Someone force-deploys v2 once more; the
    # limit (2 an hour) is reached, so the sidecar alerts and leaves v2 serving for a person.
    start = time.time()
    assert [r["version"] for r in stack.sidecar.model()["desired"]["rollbacks"]] == ["2", "4"]
    r = stack.sidecar.post("deploy", version="2", reason="redeploy", force=True)
    assert r.status_code == 200, r.text

    def limited():
        m = stack.sidecar.model()
        return m["action"] == "alert" and "rollback limit reached (2 in the last hour, max 2)" \
            in (m["reason"] or "")
    took = wait_for(limited, 60)
    assert took is not None, stack.sidecar.model()
    print(f"[f] v2 failing and the rollback limit reached {took:.1f}s after the deploy")
    time.sleep(5)
    assert not [e for e in stack.sidecar.events(start, "action") if e["action"] == "rollback"]
    assert stack.desired.read("ranker").version == "2" and stack.ready_versions() == {"2"}
