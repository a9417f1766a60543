"""`sentinel serve --replicas N` and `LocalFleet` before anything starts: argument checks, and
what each replica's sidecar is configured with."""
from __future__ import annotations

import pytest

from sentinel import local_fleet
from sentinel.cli import build_parser, main
from sentinel.local_fleet import LocalFleet
from sentinel.prometheus import PrometheusMissing


@pytest.mark.parametrize("n", ["0", "-1", "two"])
def test_serve_refuses_a_replica_count_below_one(n, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["serve", "--replicas", n])
    assert exc.value.code == 2 and "--replicas" in capsys.readouterr().err


def test_one_replica_is_the_default_and_keeps_the_fixed_ports():
    args = build_parser().parse_args(["serve"])
    assert args.replicas == 1 and args.http_port is None  # cmd_serve: 8000, 8001, 8002


@pytest.mark.parametrize("flag", [["--http-port", "9000"], ["--port", "9090"], ["--db", "x.db"],
                                  ["--log", "t.log"]])
def test_serve_with_replicas_refuses_flags_of_one_replica(flag, tmp_path, capsys):
    assert main(["serve", "--replicas", "2", "--repository", str(tmp_path), *flag]) == 2
    assert flag[0] in capsys.readouterr().err


def test_a_fleet_has_at_least_two_replicas(tmp_path):
    with pytest.raises(ValueError, match="at least 2"):
        LocalFleet(tmp_path, 1, tmp_path / "fleet")


def test_each_replica_has_its_identity_ports_event_log_and_series(tmp_path):
    fleet = LocalFleet(tmp_path / "repo", 3, tmp_path / "fleet", admin_key="k")
    configs = [r.config for r in fleet.replicas]
    assert [c.lease_identity for c in configs] == ["replica-0", "replica-1", "replica-2"]
    assert {c.lease for c in configs} == {"file"} and {c.admin_key for c in configs} == {"k"}
    assert {c.prometheus_url for c in configs} == {fleet.prometheus.url}
    assert [c.prometheus_selector for c in configs] == [f'pod="replica-{i}"' for i in range(3)]
    assert {c.fleet_selector for c in configs} == {'job="triton"'}
    assert len({c.db_path for c in configs}) == 3 and {c.port for c in configs} == {0}
    ports = [p for r in fleet.replicas for p in (r.options.http_port, r.options.grpc_port,
                                                  r.options.metrics_port)]
    assert len(set(ports)) == 9
    assert [c.triton_url for c in configs] == [r.options.http_url for r in fleet.replicas]
    assert fleet.targets() == {f"127.0.0.1:{r.options.metrics_port}": {"pod": r.name}
                               for r in fleet.replicas}


def test_without_prometheus_nothing_starts_and_the_error_names_make_setup(tmp_path, monkeypatch):
    monkeypatch.setattr(local_fleet.shutil, "which", lambda name: None)
    fleet = LocalFleet(tmp_path / "repo", 2, tmp_path / "fleet")
    started = []
    for r in fleet.replicas:
        monkeypatch.setattr(r.triton, "start", lambda r=r: started.append(r.name))
    with pytest.raises(PrometheusMissing, match="make setup"):
        fleet.start()
    assert started == [] and all(r.sidecar is None for r in fleet.replicas)
