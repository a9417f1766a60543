"""The etcd lease against a real 3-member etcd cluster on loopback: one holder at a time, takeover
after the holder stops renewing, a killed member (the leader) changes nothing, a cluster that
cannot be reached leaves nobody holding it. No Triton here (tests/integration/test_fleet.py runs
the whole fleet)."""
from __future__ import annotations

import threading
import time

import pytest

from monitor.lease_etcd import EtcdLease
from sentinel.triton import free_port
from tests.etcd_cluster import etcd_cluster

pytestmark = [pytest.mark.integration]
TTL = 3.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = etcd_cluster(tmp_path_factory.mktemp("etcd"))
    yield c
    c.stop()


def candidates(cluster, key: str, n: int = 3) -> list[EtcdLease]:
    return [EtcdLease(cluster.endpoints, key, f"sidecar-{i}", TTL) for i in range(n)]


def renew_all(leases, seconds: float, every: float = 0.5) -> list[set[str]]:
    """Each candidate acquires/renews every `every` s, as the poller does each cycle; returns who
    believed it held the lease at each round."""
    rounds, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        for lease in leases:
            lease.acquire()
        rounds.append({lease.identity for lease in leases if lease.held()})
        time.sleep(every)
    return rounds


def test_one_holder_and_everyone_agrees_who(cluster):
    leases = candidates(cluster, "one-holder")
    rounds = renew_all(leases, 2.0)
    assert all(len(r) == 1 for r in rounds), rounds
    assert len(set.union(*rounds)) == 1, "the lease changed hands while its holder renewed it"
    holder = next(iter(rounds[0]))
    assert {lease.holder().holder for lease in leases} == {holder}


def test_candidates_racing_for_a_free_lease_one_wins(cluster):
    # Everyone reads "absent" and asks at once: only etcd's transaction (put if the key was never
    # created) keeps this to one winner.
    leases = [EtcdLease(cluster.endpoints, "race", f"sidecar-{i}", TTL) for i in range(8)]
    barrier = threading.Barrier(len(leases))

    def race(lease):
        barrier.wait()
        lease.acquire()
    threads = [threading.Thread(target=race, args=(lease,)) for lease in leases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [lease.identity for lease in leases if lease.held()]
    assert len(winners) == 1, winners
    assert {lease.holder().holder for lease in leases} == set(winners)


def test_another_takes_over_within_the_ttl_when_the_holder_stops(cluster):
    leases = candidates(cluster, "takeover")
    renew_all(leases, 1.0)
    holder = next(lease for lease in leases if lease.held())
    others = [lease for lease in leases if lease is not holder]
    stopped = time.monotonic()  # the holder dies: no more renewals, no release
    while not any(lease.held() for lease in others):
        assert time.monotonic() - stopped < TTL + 2.0, "nobody took the lease after the TTL"
        for lease in others:
            lease.acquire()
        time.sleep(0.2)
    took = time.monotonic() - stopped
    assert not holder.held(), "the dead holder must not believe it still holds the lease"
    print(f"takeover {took:.1f}s after the holder's last renewal (ttl {TTL:g}s)")
    assert took >= TTL - 0.5  # etcd kept it for the dead holder until the TTL ran out


def test_a_released_lease_is_taken_at_once(cluster):
    leases = candidates(cluster, "release")
    renew_all(leases, 0.6)
    holder = next(lease for lease in leases if lease.held())
    holder.release()
    start = time.monotonic()
    renew_all([lease for lease in leases if lease is not holder], 0.3, every=0.1)
    assert any(lease.held() for lease in leases if lease is not holder)
    assert time.monotonic() - start < 1.0


def test_killing_the_etcd_leader_keeps_the_lease_with_its_holder(tmp_path):
    cluster = etcd_cluster(tmp_path)
    try:
        leases = candidates(cluster, "member-dies")
        renew_all(leases, 1.0)
        holder = next(lease for lease in leases if lease.held())
        cluster.kill(cluster.leader())
        rounds = renew_all(leases, 3 * TTL)
        assert all(r == {holder.identity} for r in rounds[-int(2 * TTL):]), rounds
        assert holder.acquire().error is None
    finally:
        cluster.stop()


def test_an_unreachable_cluster_leaves_nobody_holding(tmp_path):
    cluster = etcd_cluster(tmp_path)
    try:
        leases = candidates(cluster, "unreachable")
        renew_all(leases, 1.0)
        holder = next(lease for lease in leases if lease.held())
        cluster.stop()
        started = time.monotonic()
        status = holder.acquire()
        assert status.error and "etcd unreachable" in status.error
        assert time.monotonic() - started < 2.0, "a dead cluster must not stall a cycle"
        # The holder keeps acting only as long as its last renewal allows, then nobody acts.
        time.sleep(TTL)
        assert not any(lease.acquire().held for lease in leases)
        assert not any(lease.held() for lease in leases)
        cluster.start()
        rounds = renew_all(leases, TTL + 2.0)
        assert len(rounds[-1]) == 1, rounds
    finally:
        cluster.stop()


def test_no_endpoint_answers(tmp_path):
    lease = EtcdLease([f"http://127.0.0.1:{free_port()}"], "nobody", "sidecar-x", TTL)
    status = lease.acquire()
    assert not status.held and "etcd unreachable" in status.error and "ConnectionError" in status.error
    assert lease.holder().error
