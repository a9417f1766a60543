"""Edges of the sidecar that need a real server but no fault scenario: missing metrics, version
swaps under load, a sidecar restart, the CLI."""
import json
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from monitor.act import RepositoryClient
from monitor.sidecar import Sidecar
from sentinel.cli import main
from sentinel.load import LoadGenerator
from sentinel.triton import free_port
from sentinel.demo.session import ADMIN_KEY, BACK_TO_BACK_POLICY, TOKEN, sidecar_config

pytestmark = pytest.mark.integration


@pytest.fixture
def alert_receiver():
    bodies = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/api/v2/alerts", bodies
    server.shutdown()


@pytest.fixture
def served_v1(repo_copy, start_triton):
    server = start_triton(repo_copy, admin_key=ADMIN_KEY, models=())
    client = RepositoryClient(server.options.http_url, repo_copy, admin_key=ADMIN_KEY)
    assert client.load("ranker", "1").ok
    return server, client


def test_unreachable_metrics_is_inconclusive_with_an_alert_and_no_rollback(served_v1, tmp_path,
                                                                           alert_receiver):
    server, _ = served_v1
    url, bodies = alert_receiver
    config = sidecar_config(
        server.options, policy=BACK_TO_BACK_POLICY, db=tmp_path / "ev.sqlite3", webhook_url=url,
        metrics_url=f"http://127.0.0.1:{free_port()}/metrics")
    with Sidecar(config) as sidecar:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not bodies:
            time.sleep(0.5)
        rt = sidecar.poller.models["ranker"]
        assert rt.decision.phase == "inconclusive"
        assert "consecutive metrics scrapes failed" in rt.decision.reason
        assert not sidecar.events.list(kind="action")
    assert bodies, "an alert must be posted"
    labels = bodies[0][0]["labels"]
    assert labels["alertname"] == "SentinelInconclusive" and labels["model"] == "ranker"
    assert len(bodies) == 1, "the same alert must be de-duplicated"


def test_twenty_swaps_under_eight_clients_fail_no_request(served_v1):
    server, client = served_v1
    with LoadGenerator(server.options.grpc_url, clients=8, rate_per_client=0, candidates=64) as load:
        time.sleep(1)
        start = time.time()
        swap_s = []
        for i in range(20):
            outcome = client.load("ranker", "2" if i % 2 == 0 else "1")
            assert outcome.ok, outcome.detail
            swap_s.append(outcome.seconds)
        end = time.time()
        time.sleep(1)
    during = [r for r in load.snapshot() if start <= r.ts < end]
    before = [r for r in load.snapshot() if r.ts < start]
    failed = sum(1 for r in during if not r.ok)
    lat = sorted(r.latency_s for r in during if r.ok)
    print(f"20 swaps in {end - start:.1f}s (median swap {statistics.median(swap_s):.2f}s); "
          f"{len(during)} requests during swaps, {failed} failed; p50 {lat[len(lat) // 2] * 1e3:.1f} ms"
          f", p99 {lat[int(len(lat) * 0.99)] * 1e3:.1f} ms; before: p50 "
          f"{sorted(r.latency_s for r in before)[len(before) // 2] * 1e3:.1f} ms")
    assert len(during) > 200
    assert failed == 0
    assert {r.version for r in during if r.ok} == {"1", "2"}


def test_sidecar_restart_keeps_events_known_good_and_pins(served_v1, tmp_path, capsys):
    server, _ = served_v1
    db = tmp_path / "ev.sqlite3"
    config = sidecar_config(
        server.options, policy=BACK_TO_BACK_POLICY, db=db, **{"policy.known_good_after_s": 1})
    with Sidecar(config) as first:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            rt = first.poller.models.get("ranker")
            if rt is not None and rt.known.known_good == "1":
                break
            time.sleep(0.5)
        import requests
        r = requests.post(f"{first.url}/api/models/ranker/pin", json={"version": "1"},
                          headers={"X-Sentinel-Token": TOKEN, "X-Sentinel-Actor": "alice"},
                          timeout=5)
        assert r.status_code == 200, r.text
    with Sidecar(config) as second:
        rt = second.poller.models["ranker"]
        assert rt.known.known_good == "1"
        assert rt.pinned == "1"
    assert main(["events", "--db", str(db), "--kind", "operator"]) == 0
    out = capsys.readouterr().out
    assert "alice pinned version 1" in out
