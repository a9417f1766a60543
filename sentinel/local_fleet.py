"""A fleet on one host: N real tritonservers on one model repository, each with its own sidecar (in
this process), the file lease on the repository, and a real Prometheus scraping every replica each
second, which the sidecars read (each its own replica's series, the lease holder the fleet's).
What `sentinel serve --replicas N` and the canary demos run.

Every port is a free loopback port; each replica's Triton log and event log live in
`<workdir>/replica-<i>/`, Prometheus' in `<workdir>/prometheus/`. stop() stops everything start()
started, also after a failed start."""
from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import requests

from monitor.config import MonitorConfig, load_config
from monitor.sidecar import Sidecar
from sentinel.prometheus import PrometheusMissing, PrometheusServer
from sentinel.triton import TritonOptions, TritonServer, free_port

# The sidecar's config from the settings a replica needs (its Triton, ports, lease, Prometheus);
# a caller adds its own (a config file, flags) underneath.
Configure = Callable[[Mapping[str, Any]], MonitorConfig]


def plain_config(settings: Mapping[str, Any]) -> MonitorConfig:
    return load_config(None, env={}, overrides=settings)


@dataclass
class LocalReplica:
    name: str
    workdir: Path
    triton: TritonServer
    config: MonitorConfig
    sidecar: Sidecar | None = None

    @property
    def options(self) -> TritonOptions:
        return self.triton.options

    def ready_versions(self, model: str) -> set[str]:
        """Versions of `model` its Triton lists READY; none while it is down or refusing."""
        try:
            return {e["version"] for e in self.triton.index()
                    if e.get("name") == model and e.get("state") == "READY"}
        except requests.RequestException:
            return set()


class LocalFleet:
    def __init__(self, repository: Path, size: int, workdir: Path, admin_key: str | None = None,
                 configure: Configure = plain_config):
        """Chooses the ports and checks every sidecar's config (monitor.config.ConfigError);
        starts nothing."""
        if size < 2:
            raise ValueError(f"a local fleet needs at least 2 replicas, got {size} "
                             "(one replica: `sentinel serve`)")
        self.repository, self.workdir = Path(repository), Path(workdir)
        self.prometheus = PrometheusServer(self.workdir / "prometheus")
        self.replicas: list[LocalReplica] = []
        for i in range(size):
            name = f"replica-{i}"
            workdir = self.workdir / name
            opts = TritonOptions(self.repository, free_port(), free_port(), free_port(),
                                 admin_key=admin_key, log_path=workdir / "triton.log")
            config = configure({
                "triton_url": opts.http_url, "metrics_url": opts.metrics_url,
                "admin_key": admin_key, "repository": str(self.repository), "port": 0,
                "db_path": str(workdir / "events.sqlite3"), "lease": "file",
                "lease_identity": name, "prometheus_url": self.prometheus.url,
                "prometheus_selector": f'pod="{name}"',
                "fleet_selector": f'job="{self.prometheus.job}"'})
            self.replicas.append(LocalReplica(name, workdir, TritonServer(opts), config))

    def targets(self) -> dict[str, dict[str, str]]:
        """Prometheus' scrape targets: every replica's Triton metrics, labelled with its name."""
        return {f"127.0.0.1:{r.options.metrics_port}": {"pod": r.name} for r in self.replicas}

    def start(self) -> "LocalFleet":
        if shutil.which("prometheus") is None:  # before any Triton starts
            raise PrometheusMissing("a local fleet needs Prometheus, and `prometheus` is not "
                                    "installed: run `make setup` (scripts/install-system-deps.sh "
                                    "installs the Debian package)")
        for r in self.replicas:
            r.workdir.mkdir(parents=True, exist_ok=True)
        try:
            # Prometheus lists a target that is not up yet too, so it starts alongside the servers.
            _parallel([lambda: self.prometheus.start(self.targets())]
                      + [r.triton.start for r in self.replicas])
            for r in self.replicas:
                r.sidecar = Sidecar(r.config).start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Sidecars first (the holder hands the lease back, each leaves the fleet), then the
        servers; safe to call again and after a failed start."""
        sidecars = [r.sidecar for r in self.replicas if r.sidecar is not None]
        for r in self.replicas:
            r.sidecar = None
        _parallel([s.stop for s in sidecars])
        _parallel([r.triton.stop for r in self.replicas] + [self.prometheus.stop])

    def __enter__(self) -> "LocalFleet":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _parallel(calls: list[Callable[[], object]]) -> None:
    """Run the calls at once (a Triton takes seconds to start or stop); the first error is raised
    once every call has returned. A Ctrl-C while they run still waits for them, so that a server
    that was starting is known, and stopped, by the caller's clean-up."""
    if not calls:
        return
    pool = ThreadPoolExecutor(max_workers=len(calls))
    futures = [pool.submit(call) for call in calls]
    try:
        wait(futures)
    finally:
        pool.shutdown(wait=True)
    for f in futures:
        f.result()
