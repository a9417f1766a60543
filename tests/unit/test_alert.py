import dataclasses
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import monitor.alert
from monitor.alert import Alerter, alert_payload
from monitor.types import Alert


class Receiver:
    """A loopback Alertmanager stand-in that records bodies (and when they came) and answers from a
    script of statuses: a number, or (number, {header: value})."""

    def __init__(self, statuses=()):
        self.bodies: list = []
        self.times: list[float] = []
        self.statuses = list(statuses)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.times.append(time.monotonic())
                receiver.bodies.append(json.loads(body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                status, headers = status if isinstance(status, tuple) else (status, {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/api/v2/alerts"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.times, self.times[1:])]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


class Clock:
    def __init__(self, t=1_700_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


ALERT = Alert(
    alertname="SentinelRollbackBlocked", model="ranker", version="2", severity="critical",
    summary="ranker v2 degraded", description="error_rate went up; no known good version",
    extra_labels={"phase": "degraded"}, generator_url="http://sentinel:8080/models/ranker",
)


def test_posts_alertmanager_v2_shape(receiver):
    alerter = Alerter(receiver.url, clock=Clock())
    outcome = alerter.send(ALERT)
    assert (outcome.status, outcome.attempts, outcome.http_status) == ("sent", 1, 200)
    [[body]] = receiver.bodies
    assert body["labels"] == {
        "alertname": "SentinelRollbackBlocked", "model": "ranker", "version": "2", "severity": "critical",
        "phase": "degraded",
    }
    assert body["annotations"] == {"summary": "ranker v2 degraded", "description": ALERT.description}
    assert body["startsAt"] == "2023-11-14T22:13:20.000Z"
    assert "endsAt" not in body
    assert body["generatorURL"] == "http://sentinel:8080/models/ranker"
    assert len(receiver.bodies) == 1


def test_same_labels_are_sent_once_per_window(receiver):
    clock = Clock()
    alerter = Alerter(receiver.url, clock=clock, dedupe_s=300)
    assert alerter.send(ALERT).status == "sent"
    clock.t += 100
    assert alerter.send(ALERT).status == "deduplicated"
    other = Alert(alertname="SentinelRollbackBlocked", model="ranker", version="3")
    assert alerter.send(other).status == "sent"  # other labels, other alert
    resolved = dataclasses.replace(ALERT, ends_at=clock.t)
    assert alerter.send(resolved).status == "sent"  # a resolution is not a duplicate of the firing
    clock.t += 201
    assert alerter.send(ALERT).status == "sent"
    assert len(receiver.bodies) == 4
    assert receiver.bodies[2][0]["endsAt"] == "2023-11-14T22:15:00.000Z"


def test_retries_5xx_with_backoff_then_succeeds():
    receiver = Receiver(statuses=[500, 503, 200])
    try:
        outcome = Alerter(receiver.url, clock=Clock(), backoff_s=0.2).send(ALERT)
        assert (outcome.status, outcome.attempts, outcome.http_status) == ("sent", 3, 200)
        assert len(receiver.bodies) == 3 and receiver.bodies[0] == receiver.bodies[2]
        # urllib3's backoff: the first retry at once, the second after backoff_s * 2.
        assert receiver.gaps()[1] >= 0.4 - 0.01, receiver.gaps()
    finally:
        receiver.close()


def test_429_is_retried_after_the_retry_after_header():
    receiver = Receiver(statuses=[(429, {"Retry-After": "1"}), 200])
    try:
        outcome = Alerter(receiver.url, clock=Clock(), backoff_s=0.0).send(ALERT)
        assert (outcome.status, outcome.attempts) == ("sent", 2)
        assert receiver.gaps()[0] >= 1.0 - 0.01, receiver.gaps()
    finally:
        receiver.close()


def test_a_long_retry_after_cannot_hold_the_sender(monkeypatch):
    monkeypatch.setattr(monitor.alert, "MAX_WAIT_S", 1)
    receiver = Receiver(statuses=[(503, {"Retry-After": "3600"}), 200])
    try:
        start = time.monotonic()
        outcome = Alerter(receiver.url, clock=Clock()).send(ALERT)
        assert (outcome.status, outcome.attempts) == ("sent", 2)
        assert 0.99 <= time.monotonic() - start < 30
    finally:
        receiver.close()


def test_retries_are_bounded_and_failure_is_not_remembered():
    receiver = Receiver(statuses=[503] * 4 + [200])
    try:
        alerter = Alerter(receiver.url, clock=Clock(), max_retries=3, backoff_s=0.01)
        outcome = alerter.send(ALERT)
        assert (outcome.status, outcome.attempts, outcome.http_status) == ("failed", 4, 503)
        assert len(receiver.bodies) == 4
        assert alerter.send(ALERT).status == "sent"  # the failure did not count as delivered
        assert len(receiver.bodies) == 5
    finally:
        receiver.close()


def test_client_errors_are_not_retried():
    receiver = Receiver(statuses=[400, 200])
    try:
        outcome = Alerter(receiver.url, clock=Clock(), backoff_s=0.0).send(ALERT)
        assert (outcome.status, outcome.attempts, outcome.http_status) == ("failed", 1, 400)
        assert len(receiver.bodies) == 1
    finally:
        receiver.close()


def test_connection_refused_is_an_outcome_not_an_exception():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    outcome = Alerter(f"http://127.0.0.1:{port}/api/v2/alerts", max_retries=2,
                      backoff_s=0.2).send(ALERT)
    assert outcome.status == "failed" and outcome.attempts == 3 and "ConnectionError" in outcome.error
    assert outcome.http_status is None
    assert time.monotonic() - start >= 0.4 - 0.01  # the backoff was waited, not skipped


def test_no_url_means_disabled():
    assert Alerter(None).send(ALERT).status == "disabled"


def test_payload_of_a_resolved_alert_without_version():
    alert = Alert(alertname="SentinelScrapeFailing", model="ranker", version=None, starts_at=0.0, ends_at=60.0)
    [item] = alert_payload(alert, now=100.0)
    assert "version" not in item["labels"]
    assert (item["startsAt"], item["endsAt"]) == ("1970-01-01T00:00:00.000Z", "1970-01-01T00:01:00.000Z")


def test_a_resolution_never_starts_after_it_ends():
    # the resolution is stamped, then sent a little later: Alertmanager refuses endsAt < startsAt
    (item,) = alert_payload(Alert("SentinelRollback", "ranker", "1", ends_at=100.0), now=100.002)
    assert item["startsAt"] <= item["endsAt"]
