"""One decision for every replica: 3 real tritonservers on one repository, each with its sidecar as
its own process (`sentinel monitor`, killed with SIGKILL), the fleet lease on a real 3-member etcd
cluster on loopback, a real Prometheus scraping every replica each second (each sidecar reads its
own replica's series from it, the holder the fleet's), steady gRPC load on every replica. Nothing
here calls Triton's repository API; operators deploy through a sidecar's API, as a user would.

The steps run in file order on one repository: v1 good, v2, v3 and v5 fail 30 % of requests
("errors"), v4 and v6 good."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from sentinel.desired_state import DesiredStateStore
from sentinel.load import LoadGenerator
from sentinel.prometheus import PrometheusServer
from sentinel.triton import TritonOptions, TritonServer, free_port
from tests.etcd_cluster import EtcdCluster, etcd_cluster
from tests.sidecar_process import SidecarProcess, ready_versions, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ADMIN_KEY, TOKEN = "fleet-admin", "fleet-token"
VERSIONS = {"1": None, "2": "errors", "3": "errors", "4": None, "5": "errors", "6": None}
# Short enough for a test, as the policy of each canary deploy (the defaults are minutes).
CANARY = {"duration_s": 20, "min_requests": 200, "look_every_s": 2}
TTL = 5.0
ROLLBACK_WITHIN_S = 30.0


@dataclass
class Replica:
    name: str
    opts: TritonOptions
    triton: TritonServer
    sidecar: SidecarProcess
    load: LoadGenerator

    def ready_versions(self) -> set[str]:
        return ready_versions(self.triton)


class Fleet:
    def __init__(self, repo: Path, workdir: Path, etcd: EtcdCluster, prometheus: PrometheusServer):
        self.repo, self.workdir, self.etcd, self.prometheus = repo, workdir, etcd, prometheus
        self.desired = DesiredStateStore(repo)
        self.replicas: list[Replica] = []
        self.killed_member: str | None = None

    def add(self, name: str) -> Replica:
        """A replica: its own Triton (default flags) and sidecar (empty event log) on the shared
        repository; the sidecar is launched, not yet waited for."""
        workdir = self.workdir / name
        workdir.mkdir()
        opts = TritonOptions(self.repo, free_port(), free_port(), free_port(), admin_key=ADMIN_KEY,
                             log_path=workdir / "triton.log")
        settings = {"policy": {"known_good_after_s": 15}, "lease": "etcd",
                    "lease_endpoints": self.etcd.endpoints, "lease_ttl_s": TTL,
                    "lease_identity": name, "prometheus_url": self.prometheus.url,
                    "prometheus_selector": f'pod="{name}"', "fleet_selector": 'job="triton"'}
        replica = Replica(name, opts, TritonServer(opts),
                          SidecarProcess(workdir, opts, free_port(), ADMIN_KEY, TOKEN, settings),
                          LoadGenerator(opts.grpc_url, clients=1, rate_per_client=20.0))
        self.replicas.append(replica)
        self.prometheus.set_targets(self.targets())
        return replica

    def targets(self) -> dict[str, dict[str, str]]:
        return {r.opts.metrics_url.split("//")[1].split("/")[0]: {"pod": r.name}
                for r in self.replicas}

    def failed_requests(self, since: float) -> int:
        return sum(r.load.failures(since) for r in self.replicas)

    def live(self) -> list[Replica]:
        return [r for r in self.replicas if r.sidecar.proc is not None
                and r.sidecar.proc.poll() is None]

    def holders(self) -> list[str]:
        held = []
        for r in self.live():
            try:
                if r.sidecar.lease()["held"]:
                    held.append(r.name)
            except requests.RequestException:
                pass
        return held

    def holder(self) -> Replica:
        names = self.holders()
        assert len(names) == 1, f"lease holders: {names}"
        return next(r for r in self.replicas if r.name == names[0])

    def events(self, since: float, kind: str) -> list[tuple[str, dict]]:
        return [(r.name, e) for r in self.live() for e in r.sidecar.events(since, kind)]

    def rollback_decisions(self, since: float) -> tuple[list, list]:
        """(acted, not acted) rollback decision events of every live sidecar since `since`."""
        rollbacks = [(n, e) for n, e in self.events(since, "decision") if e["action"] == "rollback"]
        return ([(n, e) for n, e in rollbacks if e["outcome"] is None],
                [(n, e) for n, e in rollbacks if e["outcome"] == "not acting"])


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, trained_ranker):
    from build_scripts.ranker_build import build_ranker
    workdir = tmp_path_factory.mktemp("fleet")
    repo = workdir / "model_repository"
    for version, fault in VERSIONS.items():
        assert str(build_ranker(repo, fault=fault, trained=trained_ranker).version) == version
    etcd_dir = workdir / "etcd"
    etcd_dir.mkdir()
    prometheus = PrometheusServer(workdir / "prometheus")
    f = Fleet(repo, workdir, etcd_cluster(etcd_dir), prometheus)
    try:
        for i in range(3):
            f.add(f"replica-{i}").triton.start()
        prometheus.start(f.targets())
        for r in f.replicas:
            r.sidecar.launch()
        for r in f.replicas:
            r.sidecar.wait_ready()
            r.load.start()
        yield f
    finally:
        for r in f.replicas:
            r.load.stop()
            r.sidecar.kill()
        stops = [threading.Thread(target=r.triton.stop) for r in f.replicas]  # ~3 s each
        for t in stops:
            t.start()
        for t in stops:
            t.join()
        f.etcd.stop()
        prometheus.stop()


def test_one_lease_holder_and_it_alone_marks_v1_known_good(fleet):
    assert wait_for(lambda: len(fleet.holders()) == 1, 3 * TTL) is not None, fleet.holders()
    holder = fleet.holder()
    assert {r.sidecar.lease()["holder"] for r in fleet.replicas} == {holder.name}
    assert all(r.ready_versions() == {"1"} for r in fleet.replicas)
    took = wait_for(lambda: [k.version for k in fleet.desired.read("ranker").known_good] == ["1"],
                    90)
    assert took is not None, holder.sidecar.model()
    assert fleet.desired.read("ranker").known_good[-1].by == holder.name


def test_a_faulty_version_on_every_replica_is_rolled_back_everywhere_by_one_decision(fleet):
    holder = fleet.holder()
    via = next(r for r in fleet.replicas if r is not holder)  # an operator may use any sidecar
    start = time.time()
    r = via.sidecar.post("deploy", version="2", reason="new model for everyone")
    assert r.status_code == 200, r.text
    activated = time.monotonic()
    seen = {rep.name: set() for rep in fleet.replicas}

    def rolled_back_everywhere() -> bool:
        for rep in fleet.replicas:
            seen[rep.name] |= rep.ready_versions()
        state = fleet.desired.read("ranker")
        return state.is_rejected("2") and all(rep.ready_versions() == {"1"}
                                              for rep in fleet.replicas)
    took = wait_for(rolled_back_everywhere, 60)
    print(f"[fleet] v2 on all 3 replicas rolled back on all of them {took}s after its activation")
    assert took is not None, [rep.sidecar.model() for rep in fleet.replicas]
    assert all("2" in versions for versions in seen.values()), seen  # it reached every replica
    assert time.monotonic() - activated <= ROLLBACK_WITHIN_S
    time.sleep(2)  # the followers' reconcile actions are recorded the cycle after they finish
    acted, deferred = fleet.rollback_decisions(start)
    assert [n for n, _ in acted] == [holder.name], acted  # one decision, by the holder
    assert all(n != holder.name for n, _ in deferred)
    rejection = fleet.desired.read("ranker").rejection("2")
    assert rejection.by == holder.name and rejection.event_id == acted[0][1]["id"]
    reconciled = {n for n, e in fleet.events(start, "action")
                  if e["action"] == "reconcile" and e["version"] == "1" and e["outcome"] == "ok"}
    assert reconciled == {r.name for r in fleet.replicas} - {holder.name}


def test_killing_an_etcd_member_keeps_the_lease_with_its_holder(fleet):
    holder = fleet.holder()
    start = time.time()
    fleet.killed_member = fleet.etcd.leader()
    fleet.etcd.kill(fleet.killed_member)
    end = time.monotonic() + 2 * TTL
    while time.monotonic() < end:
        assert fleet.holders() == [holder.name]
        time.sleep(0.5)
    lost = [e for _, e in fleet.events(start, "lease") if e["outcome"] in ("lost", "unavailable")]
    assert not lost, lost


def test_killing_the_holder_hands_the_next_decision_to_another(fleet):
    # etcd still runs on 2 of its 3 members (the previous test killed one)
    old = fleet.holder()
    old.sidecar.kill()
    killed = time.monotonic()
    took = wait_for(lambda: len(fleet.holders()) == 1, 3 * TTL)
    assert took is not None
    new = fleet.holder()
    print(f"[fleet] {new.name} took the lease {took:.1f}s after {old.name}'s sidecar was killed "
          f"(ttl {TTL:g}s)")
    assert new is not old and took <= TTL + 3.0
    start = time.time()
    r = new.sidecar.post("deploy", version="3")
    assert r.status_code == 200, r.text
    activated = time.monotonic()
    alive = [rep for rep in fleet.replicas if rep is not old]
    took = wait_for(lambda: fleet.desired.read("ranker").is_rejected("3")
                    and all(rep.ready_versions() == {"1"} for rep in alive), 60)
    assert took is not None and time.monotonic() - activated <= ROLLBACK_WITHIN_S
    acted, _ = fleet.rollback_decisions(start)
    assert [n for n, _ in acted] == [new.name]
    assert fleet.desired.read("ranker").rejection("3").by == new.name
    assert time.monotonic() - killed < 60
    # The dead sidecar's Triton kept serving the desired version all along (nobody told it
    # otherwise); its sidecar comes back as a follower.
    assert old.ready_versions() == {"1"}
    old.sidecar.start()
    assert wait_for(lambda: old.sidecar.lease()["holder"] == new.name, 3 * TTL) is not None


def test_a_fresh_replica_serves_the_desired_version_and_follows_the_fleet(fleet):
    fresh = fleet.add("replica-3")
    fresh.triton.start()  # default flags: it loads what config.pbtxt pins, the desired version
    assert fresh.ready_versions() == {"1"}
    started = time.time()
    fresh.sidecar.start()  # an empty event log
    fresh.load.start()
    assert wait_for(lambda: fresh.sidecar.lease()["holder"] not in (None, "replica-3"), 3 * TTL)
    assert fresh.sidecar.model()["desired"]["version"] == "1"
    r = fleet.holder().sidecar.post("deploy", version="4")
    assert r.status_code == 200, r.text
    took = wait_for(lambda: fresh.ready_versions() == {"4"}, 15)
    print(f"[fleet] the fresh replica followed the deploy of v4 in {took}s")
    assert took is not None

    def actions():  # recorded the cycle after the load finished
        return [(e["action"], e["version"], e["outcome"])
                for e in fresh.sidecar.events(started, "action")]
    wait_for(actions, 5)
    assert actions() == [("reconcile", "4", "ok")], actions  # nothing to fix at its start
    assert all(rep.ready_versions() == {"4"} for rep in fleet.live())


def _canary_events(fleet, since: float) -> list[tuple[str, dict]]:
    return fleet.events(since, "canary")


def test_a_faulty_canary_is_aborted_and_never_reaches_the_other_replicas(fleet):
    # All 3 etcd members again (an earlier test killed one); one is killed mid-canary below.
    fleet.etcd.start(fleet.killed_member)
    holder = fleet.holder()
    start = time.time()
    r = holder.sidecar.post("deploy", version="5", canary=1, canary_policy=CANARY,
                            reason="try it on one replica")
    assert r.status_code == 200, r.text
    state = fleet.desired.read("ranker")
    (chosen,) = state.canary.replicas
    assert chosen != holder.name  # the holder keeps judging from the fleet group
    canary = next(rep for rep in fleet.replicas if rep.name == chosen)
    others = [rep for rep in fleet.live() if rep is not canary]
    seen = {rep.name: set() for rep in fleet.live()}

    def watch() -> set[str]:
        for rep in fleet.live():
            seen[rep.name] |= rep.ready_versions()
        return canary.ready_versions()
    assert wait_for(lambda: "5" in watch(), 30) is not None
    serving = time.monotonic()
    member = next(n for n in fleet.etcd.names if n != fleet.etcd.leader())
    fleet.etcd.kill(member)  # a follower member: the cluster keeps its quorum

    def aborted_everywhere() -> bool:
        watch()
        return fleet.desired.read("ranker").is_rejected("5") and \
            all(rep.ready_versions() == {"4"} for rep in fleet.live())
    took = wait_for(aborted_everywhere, 60)
    print(f"[fleet] canary v5 on {chosen} aborted {time.monotonic() - serving:.1f}s after it "
          f"served; every replica back on v4 {took}s after the etcd member was killed")
    assert took is not None, [rep.sidecar.model() for rep in fleet.live()]
    assert all("5" not in seen[rep.name] for rep in others), seen  # never reached the rest
    rejection = fleet.desired.read("ranker").rejection("5")
    assert rejection.reason.startswith("canary of version 5 failed") and "error rate" in \
        rejection.reason, rejection
    decider = rejection.by
    assert decider in {rep.name for rep in fleet.live()}
    aborted = [(n, e) for n, e in _canary_events(fleet, start) if e["outcome"] == "aborted"]
    assert [n for n, _ in aborted] == [decider], aborted
    assert aborted[0][1]["evidence"]["canary"]["outcome"] == "fail"
    (decision,) = [e for n, e in fleet.events(start, "decision")
                   if e["outcome"] is None and e["action"] == "rollback" and n == decider]
    assert decision["evidence"]["canary"]["checks"][0]["failed"], decision["evidence"]
    assert fleet.desired.read("ranker").canary is None
    fleet.etcd.start(member)


def test_a_good_canary_survives_its_holder_dying_and_is_promoted_to_every_replica(fleet):
    holder = fleet.holder()
    start = time.time()
    r = holder.sidecar.post("deploy", version="6", canary=1, canary_policy=CANARY)
    assert r.status_code == 200, r.text
    asked = time.monotonic()
    (chosen,) = fleet.desired.read("ranker").canary.replicas
    canary = next(rep for rep in fleet.replicas if rep.name == chosen)
    assert wait_for(lambda: canary.ready_versions() == {"6"}, 30) is not None
    holder.sidecar.kill()  # mid-canary: another sidecar takes the lease and finishes it
    assert wait_for(lambda: len(fleet.holders()) == 1, 3 * TTL) is not None
    new = fleet.holder()
    assert new is not holder

    def promoted() -> bool:
        return fleet.desired.read("ranker").version == "6" and \
            all(rep.ready_versions() == {"6"} for rep in fleet.live())
    took = wait_for(promoted, 120)
    print(f"[fleet] canary v6 promoted to every live replica {time.monotonic() - asked:.1f}s after "
          f"it was asked for (holder {holder.name} killed mid-canary, {new.name} finished it)")
    assert took is not None, fleet.desired.read("ranker")
    assert fleet.desired.read("ranker").canary is None
    outcomes = [(n, e["outcome"]) for n, e in _canary_events(fleet, start)]
    assert (new.name, "promoted") in outcomes and (new.name, "promoting") in outcomes, outcomes
    passed = next(e for n, e in _canary_events(fleet, start) if e["outcome"] == "promoting")
    assert passed["evidence"]["canary"]["canary"]["requests"] >= CANARY["min_requests"]
    # The new holder read what happened before it took over back from Prometheus (query_range).
    assert passed["evidence"]["bins_from_history"] > 0, passed["evidence"]
    # The dead sidecar's Triton kept v4 (nobody reconciled it); its sidecar, back, converges it.
    holder.sidecar.start()
    assert wait_for(lambda: holder.ready_versions() == {"6"}, 30) is not None
    lost = fleet.failed_requests(start)
    print(f"[fleet] requests failed on any replica from the canary's start to the end of its "
          f"promotion: {lost}")
    assert lost == 0


def test_without_the_lease_engine_nobody_decides_and_reconcile_goes_on(fleet):
    start = time.time()
    fleet.etcd.stop()
    assert wait_for(lambda: not fleet.holders(), TTL + 3) is not None
    assert all(r.sidecar.lease()["error"] for r in fleet.live())
    def unavailable():
        return {n for n, e in fleet.events(start, "lease") if e["outcome"] == "unavailable"}
    assert wait_for(lambda: unavailable() == {r.name for r in fleet.live()}, 10) is not None, \
        unavailable()
    # An operator's deploy still goes out: reconcile needs no lease.
    via = fleet.live()[0]
    r = via.sidecar.post("deploy", version="2", force=True, reason="bad idea, during an outage")
    assert r.status_code == 200, r.text
    assert wait_for(lambda: all(rep.ready_versions() == {"2"} for rep in fleet.live()), 10) \
        is not None
    # Every sidecar judges v2 bad, none may act on it.
    assert wait_for(lambda: len(fleet.rollback_decisions(start)[1]) == len(fleet.live()), 45) \
        is not None, [rep.sidecar.model() for rep in fleet.live()]
    acted, deferred = fleet.rollback_decisions(start)
    assert not acted and not fleet.desired.read("ranker").is_rejected("2")
    assert all("no lease (etcd unreachable" in e["reason"] for _, e in deferred)
    assert all(rep.ready_versions() == {"2"} for rep in fleet.live())
    # The engine is back: a holder again, and it carries out the standing decision.
    back = time.time()
    fleet.etcd.start()
    took = wait_for(lambda: fleet.desired.read("ranker").is_rejected("2") and all(
        rep.ready_versions() == {fleet.desired.read("ranker").version} for rep in fleet.live()), 30)
    print(f"[fleet] etcd back: v2 rolled back on every replica {took}s later")
    assert took is not None
    acted, _ = fleet.rollback_decisions(back)
    assert len(acted) == 1
