"""Assembles the sidecar from its config: one poller thread, one HTTP server thread, one process.
The poller is created here exactly once, never per web worker.

HTTP is served by waitress (a production WSGI server, pure Python) inside this process: one socket,
an event loop thread and WEB_THREADS worker threads, all reading the one poller."""
from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import waitress
from prometheus_client import CollectorRegistry
from waitress import wasyncore

from monitor.act import RepositoryClient
from monitor.actuator import Actuator
from monitor.alert import Alerter
from monitor.poller import Poller, default_detector_configs
from monitor.prometheus_source import PrometheusSource
from monitor.probe import GoldenProber
from monitor.eventlog import EventLog
from monitor.feedback_store import FeedbackStore
from monitor.cgroup import MemoryLimit
from monitor.resource_watch import ResourceWatch
from monitor.canary_watch import CanaryWatch, FleetEvidence
from monitor.lease_config import make_lease
from monitor.replicas import ReplicaRegistry
from monitor.retrain import RetrainRunner, last_triggers
from monitor.scrape import Scraper
from monitor.store import SeriesStore
from monitor.web import create_app

log = logging.getLogger("sentinel.monitor")
WEB_THREADS = 8  # requests served at once; more wait in waitress's queue


def listen_socket(host: str, port: int) -> socket.socket:
    """One bound socket for host:port (port 0: any free port), the address family chosen as the
    development server did (IPv6 for an address with a colon), so "localhost" binds one address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def metrics_source(c) -> Scraper | PrometheusSource:
    """Triton's /metrics directly, or (fleet scale, issue 8) a Prometheus server that scrapes it."""
    if c.prometheus_url:
        return PrometheusSource(c.prometheus_url, c.prometheus_selector or "",
                                timeout=c.scrape_timeout_s)
    return Scraper(c.metrics_url, timeout=c.scrape_timeout_s)


def fleet_parts(c, lease) -> dict:
    """With a lease (a fleet): the replica registry and the holder's canary judge."""
    if lease.backend == "none" or c.repository is None:
        return {}
    if c.prometheus_url:
        source = PrometheusSource(c.prometheus_url, c.fleet_selector or "",
                                  timeout=c.scrape_timeout_s)
        evidence = FleetEvidence(prometheus=source.scrape, history=source.history)
    else:
        evidence = FleetEvidence()
    return {"replicas": ReplicaRegistry(Path(c.repository), lease.identity,
                                        c.replica_url or c.metrics_url,
                                        stale_after_s=max(15.0, 3 * c.lease_ttl_s)),
            "canary": CanaryWatch(evidence, c.canary)}


class SidecarStartError(Exception):
    """The sidecar could not listen on its address (the port is taken, the host is not this
    machine's); what it had opened is closed again."""

    def __init__(self, host: str, port: int, reason: str):
        super().__init__(f"cannot listen on {host}:{port}: {reason} (another process may hold "
                         f"the port: choose another with --port or SENTINEL_PORT)")
        self.host, self.port, self.reason = host, port, reason


@dataclass
class Sidecar:
    config: object  # monitor.config.MonitorConfig
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self):
        c = self.config
        self.events = EventLog(c.db_path)
        # Feedback sums live in the same database file (their own table and connection).
        self.feedback = FeedbackStore(c.db_path, window_s=c.feedback_window_s,
                                      retention_s=c.feedback_retention_s)
        self.alerter = Alerter(c.webhook_url, dedupe_s=c.alert_dedupe_s, timeout_s=2.0,
                               max_retries=2)
        repo = RepositoryClient(c.triton_url, Path(c.repository), admin_key=c.admin_key,
                                timeout_s=c.load_timeout_s)
        # The actuator's threads verify their loads with a prober of their own (a requests
        # session is not shared between threads).
        actuator = Actuator(repo, GoldenProber(c.triton_url, Path(c.repository),
                                               timeout_s=c.probe_timeout_s))
        store = SeriesStore(retention_s=c.retention_s, max_rows=c.max_rows,
                            max_bytes=c.store_max_bytes)
        resources = None
        if c.memory_limit_bytes is not None:
            stated = MemoryLimit(float(c.memory_limit_bytes), None, "memory_limit_bytes setting")
            resources = ResourceWatch(store, limits=lambda: stated)
        self.poller = Poller(
            scraper=metrics_source(c), repo=repo,
            prober=GoldenProber(c.triton_url, Path(c.repository), timeout_s=c.probe_timeout_s),
            events=self.events, alerter=self.alerter,
            store=store, resources=resources,
            policy=c.policy, detector_configs=default_detector_configs(dict(c.detectors)),
            probe_interval_s=c.probe_interval_s, interval_s=c.interval_s, registry=self.registry,
            actuator=actuator, objectives=dict(c.objectives), feedback=self.feedback,
            retrain=RetrainRunner(c.retrain_command, c.retrain_cooldown_s,
                                  log_dir=Path(c.db_path).parent if c.db_path != ":memory:" else None,
                                  last=last_triggers(self.events.list(
                                      kind="retrain", since=time.time() - c.retrain_cooldown_s,
                                      limit=10_000))),
            lease=(lease := make_lease(c)), **fleet_parts(c, lease))
        # What must serve comes from the repository (desired state), not from this sidecar's
        # event log: a fresh pod with an empty log converges to the same versions.
        self.app = create_app(self.poller, self.events, token=c.token,
                              config_public=c.public_dict(), repository=Path(c.repository),
                              read_token=c.read_token)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server = None

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    def start(self) -> "Sidecar":
        """Listen and start the web and poller threads. If a step fails, what this sidecar opened
        (event log, alert thread, socket, ...) is closed before the error goes up: a `with` block
        never calls __exit__ when __enter__ raises, and a caller that catches the error must not
        be left holding the database. A failed sidecar is not started again: build a new one."""
        host, port = self.config.host, self.config.port
        with contextlib.ExitStack() as on_failure:
            on_failure.callback(self.stop)
            try:
                sock = listen_socket(host, port)
            except OSError as exc:
                raise SidecarStartError(host, port, exc.strerror or str(exc)) from exc
            on_failure.callback(sock.close)  # a second close, once waitress holds it, is harmless
            self._server = waitress.create_server(self.app, sockets=[sock], threads=WEB_THREADS,
                                                  ident="sentinel")
            self.port = sock.getsockname()[1]  # an int, as before (waitress keeps a string)
            web = threading.Thread(target=self._server.run, name="sentinel-web", daemon=True)
            poll = threading.Thread(target=self.poller.run, args=(self._stop,),
                                    name="sentinel-poller", daemon=True)
            self._threads = [web, poll]
            for t in self._threads:
                t.start()
            on_failure.pop_all()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._close_server()
        for t in self._threads:
            t.join(timeout=10)
        self.poller.close()
        self.events.close()
        self.feedback.close()

    def _close_server(self) -> None:
        """Stop waitress. Its worker threads finish first (they wake the event loop through its
        trigger, a pipe, so it must stay open while they run); then the loop thread closes the
        listening socket and every connection and leaves the loop; then the trigger is closed."""
        server, self._server = self._server, None
        server.task_dispatcher.shutdown(timeout=5)  # finishes running requests, cancels queued ones
        trigger = server.trigger

        def close_all_but_the_trigger() -> None:  # runs in the loop thread
            for obj in list(server._map.values()):
                if obj is trigger:
                    obj.del_channel()  # out of the loop's map, its pipe still open
                elif obj is server:  # the listening socket; server.close() closes the trigger too
                    wasyncore.dispatcher.close(obj)
                else:
                    obj.close()

        web = self._threads[0] if self._threads else None
        if web is not None and web.is_alive():
            trigger.pull_trigger(close_all_but_the_trigger)
            web.join(timeout=10)
        if web is None or web.is_alive():  # not started, or stuck: close from here
            wasyncore.close_all(server._map, ignore_all=True)
        elif not server.task_dispatcher.threads:  # no worker can pull it any more
            trigger.close()
        else:
            # A request outlived the shutdown: its worker will pull the trigger when it ends, so
            # the pipe stays open (a closed one's number could by then belong to another file).
            log.warning("sidecar web: %d request(s) still running at stop",
                        len(server.task_dispatcher.threads))

    def __enter__(self) -> "Sidecar":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
