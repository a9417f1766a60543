"""Assembles the sidecar from its config: one poller thread, one HTTP server thread, one process.
The poller is created here exactly once, never per web worker."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry
from werkzeug.serving import make_server

from monitor.act import RepositoryClient
from monitor.actuator import Actuator
from monitor.alert import Alerter
from monitor.poller import Poller, default_detector_configs
from monitor.prometheus_source import PrometheusSource
from monitor.probe import GoldenProber
from monitor.record import EventLog
from monitor.scrape import Scraper
from monitor.store import SeriesStore
from monitor.web import create_app

log = logging.getLogger("sentinel.monitor")
# One line per page load on the terminal of `sentinel monitor` is noise; errors still show.
logging.getLogger("werkzeug").setLevel(logging.WARNING)


def metrics_source(c) -> Scraper | PrometheusSource:
    """Triton's /metrics directly, or (fleet scale, issue 8) a Prometheus server that scrapes it."""
    if c.prometheus_url:
        return PrometheusSource(c.prometheus_url, c.prometheus_selector or "",
                                timeout=c.scrape_timeout_s)
    return Scraper(c.metrics_url, timeout=c.scrape_timeout_s)


@dataclass
class Sidecar:
    config: object  # monitor.config.MonitorConfig
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self):
        c = self.config
        self.events = EventLog(c.db_path)
        self.alerter = Alerter(c.webhook_url, dedupe_s=c.alert_dedupe_s, timeout_s=2.0,
                               max_retries=2)
        repo = RepositoryClient(c.triton_url, Path(c.repository), admin_key=c.admin_key,
                                timeout_s=c.load_timeout_s)
        # The actuator's threads verify their loads with a prober of their own (a requests
        # session is not shared between threads).
        actuator = Actuator(repo, GoldenProber(c.triton_url, Path(c.repository),
                                               timeout_s=c.probe_timeout_s))
        self.poller = Poller(
            scraper=metrics_source(c), repo=repo,
            prober=GoldenProber(c.triton_url, Path(c.repository), timeout_s=c.probe_timeout_s),
            events=self.events, alerter=self.alerter,
            store=SeriesStore(retention_s=c.retention_s, max_rows=c.max_rows,
                              max_bytes=c.store_max_bytes),
            policy=c.policy, detector_configs=default_detector_configs(dict(c.detectors)),
            probe_interval_s=c.probe_interval_s, interval_s=c.interval_s, registry=self.registry,
            actuator=actuator, objectives=dict(c.objectives))
        # What must serve comes from the repository (desired state), not from this sidecar's
        # event log: a fresh pod with an empty log converges to the same versions.
        self.app = create_app(self.poller, self.events, token=c.token,
                              config_public=c.public_dict(), repository=Path(c.repository))
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server = None

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    def start(self) -> "Sidecar":
        self._server = make_server(self.config.host, self.config.port, self.app, threaded=True)
        self.port = self._server.server_port
        web = threading.Thread(target=self._server.serve_forever, name="sentinel-web", daemon=True)
        poll = threading.Thread(target=self.poller.run, args=(self._stop,), name="sentinel-poller",
                                daemon=True)
        self._threads = [web, poll]
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
        for t in self._threads:
            t.join(timeout=10)
        self.poller.close()
        self.events.close()

    def __enter__(self) -> "Sidecar":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
