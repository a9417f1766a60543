"""The fleet lease without an engine server: the lock-file lease (real files, a real second process
killed with SIGKILL), the Kubernetes Lease's record logic, the config, and the poller's rules: only
the holder writes decisions, and two sidecars that both believe they hold the lease cannot write
conflicting decisions (compare-and-swap on the desired state's generation)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from monitor.act import ActionOutcome
from monitor.config import ConfigError, load_config
from monitor.fleet import LeaseKeeper
from monitor.judge import Judgement
from monitor.lease import FileLease, LeaseStatus, NoLease
from monitor.lease_config import make_lease
from monitor.lease_kubernetes import Observation, micro_time, observe, take_body
from monitor.poller import Poller
from monitor.reconcile import Observed, plan
from monitor.types import Decision, Event, ProbeResult, Scrape, VersionState
from sentinel import desired_state as ds

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


# ------------------------------------------------------------------ lock-file lease


def test_file_lease_one_holder_expiry_and_takeover(tmp_path):
    wall, mono = Clock(), Clock()
    a = FileLease(tmp_path / "lease.json", "a", 10, clock=wall, monotonic=mono)
    b = FileLease(tmp_path / "lease.json", "b", 10, clock=wall, monotonic=mono)
    assert a.acquire().held
    status = b.acquire()
    assert not status.held and status.holder == "a"
    wall.t += 6
    mono.t += 6
    assert a.acquire().held  # renewed: expires 10 s from now
    wall.t += 6
    mono.t += 6
    assert not b.acquire().held, "renewed 6 s ago with a 10 s TTL: still a's"
    wall.t += 5  # a stopped renewing 11 s ago
    mono.t += 5
    assert not a.held(), "a must stop acting once its last renewal is a TTL old"
    assert b.acquire().held and b.holder().holder == "b"
    assert not a.acquire().held


def test_file_lease_release_hands_over_at_once(tmp_path):
    a = FileLease(tmp_path / "lease.json", "a", 10)
    b = FileLease(tmp_path / "lease.json", "b", 10)
    assert a.acquire().held and not b.acquire().held
    a.release()
    assert not a.held() and b.acquire().held


def test_file_lease_of_a_killed_process_is_taken_after_its_ttl(tmp_path):
    path = tmp_path / "lease.json"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from monitor.lease import FileLease
        lease = FileLease({str(path)!r}, "child", 2.0)
        while True:
            lease.acquire()
            print("held" if lease.held() else "not", flush=True)
            time.sleep(0.2)
    """)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        me = FileLease(path, "me", 2.0)
        assert me.acquire().holder == "child"
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        killed = time.monotonic()
        while not me.acquire().held:
            assert time.monotonic() - killed < 4.0
            time.sleep(0.1)
        assert time.monotonic() - killed > 1.0  # not before the dead holder's lease expired
    finally:
        holder.kill()
        holder.wait()


def test_a_torn_lease_file_holds_nobody(tmp_path):
    (tmp_path / "lease.json").write_text("{not json")
    assert FileLease(tmp_path / "lease.json", "a", 10).acquire().held


def test_an_unwritable_lease_file_is_an_error_not_a_holder(tmp_path):
    lease = FileLease(tmp_path / "missing-dir" / "lease.json", "a", 10)
    status = lease.acquire()
    assert not status.held and "lease file" in status.error


# ------------------------------------------------------------------ Kubernetes Lease records


def test_kubernetes_lease_body_follows_the_coordination_api():
    created = take_body("sentinel-leader", "serving", "pod-a", 15, 0.5, None)
    assert created["apiVersion"] == "coordination.k8s.io/v1" and created["kind"] == "Lease"
    assert created["spec"] == {"holderIdentity": "pod-a", "leaseDurationSeconds": 15,
                               "renewTime": "1970-01-01T00:00:00.500000Z",
                               "acquireTime": "1970-01-01T00:00:00.500000Z",
                               "leaseTransitions": 0}
    assert "resourceVersion" not in created["metadata"]
    current = {"metadata": {"name": "sentinel-leader", "resourceVersion": "42"},
               "spec": {**created["spec"], "leaseTransitions": 3}}
    renewed = take_body("sentinel-leader", "serving", "pod-a", 15, 20.0, current)
    assert renewed["metadata"]["resourceVersion"] == "42"  # optimistic concurrency
    assert renewed["spec"]["acquireTime"] == created["spec"]["acquireTime"]
    assert renewed["spec"]["leaseTransitions"] == 3
    taken = take_body("sentinel-leader", "serving", "pod-b", 15, 30.0, current)
    assert taken["spec"]["holderIdentity"] == "pod-b" and taken["spec"]["leaseTransitions"] == 4
    assert taken["spec"]["acquireTime"] == micro_time(30.0)


def test_kubernetes_lease_expires_by_the_candidates_own_clock():
    record = {"metadata": {"resourceVersion": "7"},
              "spec": {"holderIdentity": "pod-a", "leaseDurationSeconds": 15}}
    first = observe(record, None, now=100.0)
    assert not first.expired(114.0) and first.expired(115.0)
    again = observe(record, first, now=110.0)  # unchanged: the clock keeps running from 100
    assert again.observed_at == 100.0
    renewed = observe({**record, "metadata": {"resourceVersion": "8"}}, again, now=112.0)
    assert renewed.observed_at == 112.0 and not renewed.expired(120.0)
    assert Observation(None, "9", 15, 100.0).expired(100.0)  # released: nobody holds it


# ------------------------------------------------------------------ config


def test_config_lease_settings_from_the_environment():
    c = load_config(env={"SENTINEL_LEASE": "etcd", "SENTINEL_LEASE_TTL_S": "6",
                         "SENTINEL_LEASE_ENDPOINTS": "http://127.0.0.1:2379, http://127.0.0.1:2479"})
    assert c.lease == "etcd" and c.lease_ttl_s == 6.0
    assert c.lease_endpoints == ("http://127.0.0.1:2379", "http://127.0.0.1:2479")
    assert load_config(env={}).lease == "none"
    assert isinstance(make_lease(load_config(env={})), NoLease)


@pytest.mark.parametrize("env, message", [
    ({"SENTINEL_LEASE": "zookeeper"}, "expected one of none, file, etcd, kubernetes"),
    ({"SENTINEL_LEASE": "etcd"}, "lease_endpoints: lease = etcd needs"),
    ({"SENTINEL_LEASE": "file"}, "lease_file: lease = file needs"),
    ({"SENTINEL_LEASE": "etcd", "SENTINEL_LEASE_ENDPOINTS": "127.0.0.1:2379"}, "http://"),
    ({"SENTINEL_LEASE": "file", "SENTINEL_REPOSITORY": "/r", "SENTINEL_LEASE_TTL_S": "2",
      "SENTINEL_INTERVAL_S": "1"}, "lease_ttl_s: must be at least 3 x interval_s"),
    ({"SENTINEL_LEASE_TTL_S": "0.5"}, "must be >= 2"),
])
def test_config_lease_bad_input_names_the_setting(env, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(env=env)


def test_make_lease_file_defaults_to_the_repository(tmp_path):
    lease = make_lease(load_config(env={"SENTINEL_LEASE": "file",
                                        "SENTINEL_REPOSITORY": str(tmp_path),
                                        "SENTINEL_LEASE_IDENTITY": "replica-0"}))
    assert isinstance(lease, FileLease) and lease.path == tmp_path / ".sentinel-lease.json"
    assert lease.identity == "replica-0"


# ------------------------------------------------------------------ the keeper's events


class _Lease:
    backend, identity, ttl_s = "etcd", "me", 5.0

    def __init__(self):
        self.next = LeaseStatus("etcd", "me", False, "other")
        self.is_held = False

    def acquire(self):
        self.is_held = self.next.held
        return self.next

    def held(self):
        return self.is_held

    def release(self):
        pass


def test_lease_keeper_says_when_the_lease_changes_hands_and_when_the_engine_is_gone():
    lease = _Lease()
    keeper = LeaseKeeper(lease, clock=lambda: 1.0)
    assert [e.outcome for e in keeper.step().events] == ["follower"]
    assert keeper.step().events == ()  # nothing changed, nothing said
    lease.next = LeaseStatus("etcd", "me", True, "me")
    assert [e.outcome for e in keeper.step().events] == ["acquired"]
    lease.next = LeaseStatus("etcd", "me", False, None, "etcd unreachable (x: ConnectionError)")
    step = keeper.step()
    assert [e.outcome for e in step.events] == ["lost"]
    assert "etcd unreachable" in step.events[0].reason
    assert keeper.step().alerts == ()  # an election blip is not an outage
    step = keeper.step()  # the third failing cycle in a row
    assert [e.outcome for e in step.events] == ["unavailable"]
    assert [a.alertname for a in step.alerts] == ["SentinelLeaseUnavailable"]
    assert keeper.step().events == ()
    assert "no lease (etcd unreachable" in keeper.why_not()
    lease.next = LeaseStatus("etcd", "me", False, "other")
    step = keeper.step()
    assert [e.outcome for e in step.events] == ["follower", "available"]
    assert step.alerts[0].ends_at == 1.0  # resolved


def test_lease_keeper_reports_no_outage_for_errors_that_do_not_last():
    lease = _Lease()
    lease.next = LeaseStatus("etcd", "me", True, "me")
    keeper = LeaseKeeper(lease, clock=lambda: 1.0)
    keeper.step()
    for _ in range(2):  # held through an election: renewals fail twice, the lease stays valid
        lease.next = LeaseStatus("etcd", "me", True, None, "etcd unreachable (no leader)")
        assert keeper.step().events == ()
    lease.next = LeaseStatus("etcd", "me", True, "me")
    step = keeper.step()
    assert step.events == () and step.alerts == ()


# ------------------------------------------------------------------ reconcile as a follower


def test_a_follower_never_writes_the_first_state_nor_adopts():
    assert plan(None, Observed("1", (VersionState("1", "READY"),), ("1",)), 10.0,
                float("-inf"), may_write=False).kind == "wait"
    s = ds.mark_known_good(ds.initial("ranker", "1", 0.0, "build"), "1", 1.0, "holder")
    outside = Observed("2", (VersionState("2", "READY"),), ("1", "2"), external_activation=True)
    assert plan(s, outside, 10.0, float("-inf")).kind == "adopt"
    step = plan(s, outside, 10.0, float("-inf"), may_write=False)
    assert (step.kind, step.version) == ("load", "1")  # back to what the fleet decided


# ------------------------------------------------------------------ the poller's rules


class _Scraper:
    def scrape(self):
        return Scrape(ts=time.time(), phase="ok")


class _Repo:
    timeout_s = 5.0

    def __init__(self, served="2"):
        self.served, self.loads = served, []

    def index(self):
        return [("ranker", VersionState(self.served, "READY"))]

    def load(self, model, version, *, reload=False):
        self.loads.append(version)
        self.served = version
        return ActionOutcome(True, model, version, "load", 0.01)


class _Prober:
    def probe(self, model, version):
        return ProbeResult(model, version, time.time(), "ok")


class _Events(list):
    def append(self, event):
        super().append(event)
        return len(self)


@pytest.fixture
def repository(tmp_path):
    """ranker with v1 known good and v2 deployed under watch (generation 3)."""
    for v in ("1", "2"):
        (tmp_path / "ranker" / v).mkdir(parents=True)
    (tmp_path / "ranker" / "config.pbtxt").write_text('name: "ranker"\nbackend: "python"\n')
    store = ds.DesiredStateStore(tmp_path)
    store.update("ranker", lambda s: ds.deploy(ds.mark_known_good(
        ds.initial("ranker", "1", 0.0, "build"), "1", 1.0, "poller"), "2", 2.0, "op"))
    assert store.read("ranker").generation == 3
    return tmp_path


def poller(repository, lease, repo=None) -> Poller:
    return Poller(scraper=_Scraper(), repo=repo or _Repo(), prober=_Prober(), events=_Events(),
                  desired=ds.DesiredStateStore(repository), lease=lease, probe_interval_s=60)


def rollback_of_2(ts: float = 10.0) -> Judgement:
    decision = Decision("ranker", "2", ts, "degraded", "rollback", "error_rate rose after v2",
                        target_version="1")
    return Judgement(decision, decision_event=Event(ts, "ranker", "2", "decision",
                                                    phase="degraded", action="rollback",
                                                    reason=decision.reason))


def promote_2(ts: float = 10.0) -> Judgement:
    decision = Decision("ranker", "2", ts, "healthy", "none", "healthy for 60 s")
    return Judgement(decision, promote="2", promote_baseline={"requests": 100})


class _Held(NoLease):
    """A sidecar that believes it holds an engine's lease (it may have lost it mid-write)."""
    backend = "etcd"


class _NotHeld(_Held):
    def held(self):
        return False

    def acquire(self):
        return LeaseStatus("etcd", self.identity, False, "replica-0")


def test_a_follower_records_the_decision_but_writes_nothing(repository):
    repo = _Repo()
    p = poller(repository, _NotHeld("replica-1"), repo)
    p.cycle()
    p._carry_out("ranker", rollback_of_2())
    p._carry_out("ranker", promote_2())
    state = ds.DesiredStateStore(repository).read("ranker")
    assert state.generation == 3 and not state.is_rejected("2") and not state.is_known_good("2")
    decisions = [e for e in p.events if e.kind == "decision" and e.action == "rollback"]
    assert len(decisions) == 1 and decisions[0].outcome == "not acting"
    assert "held by replica-0" in decisions[0].reason
    assert p.actuator.in_flight() == {} and repo.loads == []
    p.close()


def test_the_holder_writes_the_decision_under_its_own_name(repository):
    p = poller(repository, _Held("replica-0"))
    p.cycle()
    p._carry_out("ranker", rollback_of_2())
    state = ds.DesiredStateStore(repository).read("ranker")
    assert state.version == "1" and state.rejection("2").by == "replica-0"
    decision = next(e for e in p.events if e.kind == "decision" and e.action == "rollback")
    assert decision.outcome is None and decision.evidence["lease"]["identity"] == "replica-0"
    assert state.rejection("2").event_id is not None
    p.close()


def test_two_holders_cannot_write_conflicting_decisions(repository):
    # Both judged generation 3 (v2 under watch). a's lease lapsed mid-cycle and b took it: a
    # decides "v2 is bad", b "v2 is known good". Without compare-and-swap the second write would
    # apply on top of the first and un-reject v2 while v1 serves.
    a, b = poller(repository, _Held("a")), poller(repository, _Held("b"))
    a.cycle()
    b.cycle()
    assert a.models["ranker"].desired.generation == b.models["ranker"].desired.generation == 3
    a._carry_out("ranker", rollback_of_2())
    b._carry_out("ranker", promote_2())
    state = ds.DesiredStateStore(repository).read("ranker")
    assert state.generation == 4 and state.version == "1"
    assert state.is_rejected("2") and not state.is_known_good("2")
    conflicts = [e for e in b.events if e.kind == "desired_conflict"]
    assert len(conflicts) == 1 and "generation is 4, expected 3" in conflicts[0].reason
    assert b.models["ranker"].desired.generation == 4  # b re-read: it judges the newer state next
    a.close()
    b.close()


def test_a_known_good_mark_lands_on_a_deploy_written_meanwhile(repository):
    # v2 served healthy long enough; in the same moment an operator deploys v3 (generation 4).
    # That v2 was healthy is still true, so the mark goes onto the newer state instead of being
    # dropped: v2 no longer serves and would never be judged again, leaving v3 nothing to roll
    # back to (a full test run lost its rollback this way).
    p = poller(repository, _Held("replica-0"))
    p.cycle()
    ds.DesiredStateStore(repository).update("ranker", lambda s: ds.deploy(s, "3", 11.0, "op"))
    p._carry_out("ranker", promote_2())
    state = ds.DesiredStateStore(repository).read("ranker")
    assert state.generation == 5 and state.version == "3" and state.is_known_good("2")
    assert state.last_known_good.version == "2"
    assert not [e for e in p.events if e.kind == "desired_conflict"]
    assert [e.version for e in p.events if e.kind == "known_good"] == ["2"]
    assert p.models["ranker"].known.known_good == "2"  # the rollback target the poller uses
    p.close()


def test_a_decision_deferred_while_following_is_recorded_once_more_when_acted_on(repository):
    lease = _NotHeld("replica-1")
    p = poller(repository, lease)
    p.cycle()
    p._carry_out("ranker", rollback_of_2())
    lease.held = lambda: True  # it took the lease; the decision stands (no new decision event)
    same = rollback_of_2(11.0)
    p._carry_out("ranker", Judgement(same.decision))
    decisions = [e for e in p.events if e.kind == "decision" and e.action == "rollback"]
    assert [d.outcome for d in decisions] == ["not acting", None]
    acted_id = p.events.index(decisions[1]) + 1  # _Events numbers events from 1
    assert ds.DesiredStateStore(repository).read("ranker").rejection("2").event_id == acted_id
    p.close()


def test_no_lease_configured_behaves_as_one_sidecar(repository):
    p = poller(repository, None)
    p.cycle()
    assert p.actor == "poller" and not [e for e in p.events if e.kind == "lease"]
    p._carry_out("ranker", rollback_of_2())
    assert ds.DesiredStateStore(repository).read("ranker").rejection("2").by == "poller"
    p.close()


def test_removing_the_lease_file_directory_while_holding(tmp_path):
    # A lease engine that fails after the lease was held: the holder keeps acting only until its
    # last renewal is a TTL old (covered with a real etcd in tests/integration/test_lease_etcd.py).
    wall, mono = Clock(), Clock()
    lease = FileLease(tmp_path / "d" / "lease.json", "a", 5, clock=wall, monotonic=mono)
    (tmp_path / "d").mkdir()
    assert lease.acquire().held
    os.rename(tmp_path / "d", tmp_path / "gone")
    mono.t += 3
    status = lease.acquire()
    assert status.error and status.held  # 3 s into a 5 s lease
    mono.t += 3
    assert not lease.acquire().held


# ------------------------------------------------------------------ judging a fleet's deploy


def _result(kind: str, as_deploy: bool):
    from monitor.actuator import ActionRequest, ActionResult
    request = ActionRequest("ranker", "2", kind, "r", from_version="1", as_deploy=as_deploy)
    return ActionResult(request, ActionOutcome(True, "ranker", "2", "load", 0.1),
                        ProbeResult("ranker", "2", 1.0, "ok"), 1.0)


@pytest.mark.parametrize("as_deploy, kept", [(True, True), (False, False)])
def test_a_reconcile_to_a_version_under_watch_is_judged_like_a_deploy(as_deploy, kept):
    # A replica that reaches v2 by reconciling (the deploy went through another replica) keeps
    # its detectors, so v2's step from v1's level is a change point here too; a reconcile back to
    # a known-good version starts afresh, so the bad period is never its reference.
    from prometheus_client import CollectorRegistry

    from monitor.outcomes import apply_result
    from monitor.runtime import ModelRuntime, MonitorMetrics
    old = {"error_rate": object()}
    rt = ModelRuntime("ranker", old, served="1")
    apply_result(rt, _result("reconcile", as_deploy), MonitorMetrics(CollectorRegistry()),
                 lambda: {"error_rate": object()})
    assert (rt.detectors is old) == kept and rt.served == "2"
    assert ("1" in rt.snapshots) == kept


def test_the_poller_marks_a_reconcile_to_a_watched_version_as_a_deploy(repository):
    repo = _Repo(served="1")
    p = poller(repository, _NotHeld("replica-1"), repo)
    for _ in range(50):  # desired v2 (under watch), v1 serves: the reconcile loads v2
        p.cycle()
        actions = [e for e in p.events if e.kind == "action"]  # its result, applied
        if actions:
            break
        time.sleep(0.05)
    assert repo.loads == ["2"] and actions[0].action == "reconcile"
    assert "1" in p.models["ranker"].snapshots  # v1's detector state kept aside, as a deploy does
    p.close()
