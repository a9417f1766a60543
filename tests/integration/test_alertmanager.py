"""The sidecar's alerts against a real Alertmanager (Debian's package, started here on loopback with
clustering off): what the Alerter posts is accepted, listed by Alertmanager's own API, routed to a
receiver, resolved, and refused with a clear outcome when it is invalid."""
from __future__ import annotations

import contextlib
import json
import shutil
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

import pytest
import requests

from monitor.act import RepositoryClient
from monitor.alert import Alerter
from monitor.types import Alert
from monitor.sidecar import Sidecar
from sentinel.triton import free_port
from sentinel.process import http_ok, start_group, stop_group, wait_until
from sentinel.demo.session import ADMIN_KEY, BACK_TO_BACK_POLICY, sidecar_config

pytestmark = pytest.mark.integration


@dataclass
class AlertmanagerServer:
    url: str
    log: Path

    @property
    def alerts_url(self) -> str:
        return f"{self.url}/api/v2/alerts"

    def alerts(self, **filters: str) -> list[dict]:
        r = requests.get(self.alerts_url, params=filters, timeout=5)
        r.raise_for_status()
        return r.json()


@contextlib.contextmanager
def running_alertmanager(workdir: Path, receiver_url: str) -> Iterator[AlertmanagerServer]:
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        pytest.fail("Alertmanager is not installed: run `make setup` (scripts/install-system-deps.sh "
                    "installs the Debian package prometheus-alertmanager)", pytrace=False)
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "alertmanager.yml"
    # group_wait 0s: the first notification of a group goes out at once, not after the default 30 s.
    config.write_text(json.dumps({
        "route": {"receiver": "sidecar-test", "group_by": ["alertname", "model"],
                  "group_wait": "0s", "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "sidecar-test",
                       "webhook_configs": [{"url": receiver_url, "send_resolved": True}]}],
    }))
    port = free_port()
    log = workdir / "alertmanager.log"
    proc = start_group([binary, f"--config.file={config}", f"--storage.path={workdir / 'data'}",
                        f"--web.listen-address=127.0.0.1:{port}",
                        "--cluster.listen-address="], log)  # no gossip port, no peers
    server = AlertmanagerServer(f"http://127.0.0.1:{port}", log)
    try:
        wait_until(proc, http_ok(f"{server.url}/-/ready"), 20, "alertmanager", log,
                   error=AssertionError)
        yield server
    finally:
        stop_group(proc, timeout_s=10)


@pytest.fixture
def notifications():
    """A webhook receiver on loopback: what Alertmanager notifies ends up in the list."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/notify", received
    server.shutdown()
    server.server_close()


@pytest.fixture
def alertmanager(tmp_path, notifications):
    url, _ = notifications
    with running_alertmanager(tmp_path / "am", url) as am:
        yield am


def _wait(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (value := predicate()):
            return value
        time.sleep(0.1)
    return None


def test_a_posted_alert_is_listed_routed_deduplicated_and_resolved(alertmanager, notifications):
    _, received = notifications
    alerter = Alerter(alertmanager.alerts_url, timeout_s=2.0)
    alert = Alert("SentinelRollback", "ranker", "1", severity="critical",
                  summary="ranker: rollback to version 1 ok", description="error_rate went up",
                  extra_labels={"pod": "ranker-0"}, generator_url="http://sidecar:8080/")
    assert alerter.send(alert).status == "sent"
    assert alerter.send(alert).status == "deduplicated"

    listed = _wait(lambda: alertmanager.alerts(filter='alertname="SentinelRollback"'))
    assert listed and len(listed) == 1
    (got,) = listed
    assert got["labels"] == {"alertname": "SentinelRollback", "model": "ranker", "version": "1",
                             "severity": "critical", "pod": "ranker-0"}
    assert got["annotations"] == {"summary": "ranker: rollback to version 1 ok",
                                  "description": "error_rate went up"}
    assert got["status"]["state"] == "active" and got["generatorURL"] == "http://sidecar:8080/"

    firing = _wait(lambda: [a for n in received if n["status"] == "firing" for a in n["alerts"]])
    assert firing and firing[0]["labels"]["alertname"] == "SentinelRollback", received

    resolved = Alert(**{**alert.__dict__, "ends_at": time.time()})
    assert alerter.send(resolved).status == "sent"  # a resolution is not swallowed by the dedupe
    assert _wait(lambda: not alertmanager.alerts(filter='alertname="SentinelRollback"') or None)
    assert _wait(lambda: [n for n in received if n["status"] == "resolved"], timeout=15), received


def test_an_alert_alertmanager_refuses_fails_once_without_retries(alertmanager):
    alerter = Alerter(alertmanager.alerts_url, max_retries=3)
    outcome = alerter.send(Alert("SentinelDegraded", "ranker", "2",
                                 extra_labels={"not-a-label-name": "x"}))
    assert outcome.status == "failed" and outcome.http_status == 400
    assert outcome.attempts == 1
    assert "label" in outcome.error
    assert alertmanager.alerts() == []


def test_sidecar_that_cannot_read_metrics_alerts_alertmanager(alertmanager, repo_copy, start_triton,
                                                              tmp_path):
    server = start_triton(repo_copy, admin_key=ADMIN_KEY, models=())
    assert RepositoryClient(server.options.http_url, repo_copy, admin_key=ADMIN_KEY).load(
        "ranker", "1").ok
    config = sidecar_config(
        server.options, policy=BACK_TO_BACK_POLICY, db=tmp_path / "ev.sqlite3",
        webhook_url=alertmanager.alerts_url,
        metrics_url=f"http://127.0.0.1:{free_port()}/metrics")
    with Sidecar(config) as sidecar:
        listed = _wait(lambda: alertmanager.alerts(filter='alertname="SentinelInconclusive"'), 30)
        assert sidecar.poller.models["ranker"].decision.phase == "inconclusive"
    assert listed, "the sidecar's alert must reach Alertmanager"
    (got,) = listed
    assert got["labels"]["model"] == "ranker" and got["labels"]["version"] == "1"
    assert "metrics scrape" in got["annotations"]["description"]
