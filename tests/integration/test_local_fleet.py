"""`LocalFleet`, what `sentinel serve --replicas N` and the canary demos run: 2 real tritonservers on
one repository, their sidecars in this process with the file lease, a real Prometheus that they
read. One lease holder, both replicas in /api/fleet, nothing left running after stop. (Canaries on
a fleet: tests/integration/test_fleet.py.)"""
from __future__ import annotations

import os
import threading

import pytest
import requests

from sentinel.local_fleet import LocalFleet
from tests.sidecar_process import wait_for

pytestmark = pytest.mark.integration


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_local_fleet_serves_one_version_agrees_on_one_holder_and_leaves_nothing(repo_copy,
                                                                                  tmp_path):
    fleet = LocalFleet(repo_copy, 2, tmp_path / "fleet", admin_key="fleet-admin")
    groups: list[int] = []
    try:
        fleet.start()
        # Triton and its stubs, Prometheus: each leads a process group of its own
        groups = [r.triton.process.pid for r in fleet.replicas] + [fleet.prometheus.proc.pid]
        assert [r.ready_versions("ranker") for r in fleet.replicas] == [{"1"}, {"1"}]
        urls = [r.sidecar.url for r in fleet.replicas]

        def holders() -> set:
            return {requests.get(f"{u}/api/lease", timeout=5).json()["holder"] for u in urls}
        assert wait_for(lambda: len(holders()) == 1 and None not in holders(), 15) is not None, \
            holders()
        (holder,) = holders()
        assert holder in {"replica-0", "replica-1"}

        def fleet_view() -> dict:
            return requests.get(f"{urls[0]}/api/fleet", timeout=5).json()
        # every replica's heartbeat says what its Triton serves (read from Prometheus)
        assert wait_for(lambda: {r["identity"]: r["serves"].get("ranker")
                                 for r in fleet_view()["replicas"]}
                        == {"replica-0": "1", "replica-1": "1"}, 15) is not None, fleet_view()
        assert [r["identity"] for r in fleet_view()["replicas"] if r["holder"]] == [holder]
        up = fleet.prometheus.query('up{job="triton"}')
        assert sorted((s["metric"]["pod"], s["value"][1]) for s in up) == \
            [("replica-0", "1"), ("replica-1", "1")]
    finally:
        fleet.stop()
    # (stubs of a killed Triton are zombies until init reaps them: a moment)
    assert groups and wait_for(lambda: not [g for g in groups if _group_alive(g)], 10) is not None
    assert not [t.name for t in threading.enumerate() if t.name.startswith("sentinel-")]
    # a clean stop hands the lease back and leaves the fleet at once
    assert not list(repo_copy.glob(".sentinel-lease.json"))
    assert not list(repo_copy.glob(".sentinel-replica.*.json"))
