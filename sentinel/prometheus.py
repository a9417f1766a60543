"""A Prometheus server (Debian's `prometheus` binary) on a loopback port, scraping a changing set of
targets: what a local fleet (`sentinel serve --replicas N`) and the fleet tests use as the fleet-wide
evidence the lease holder judges canaries on.

Targets live in a file_sd file that Prometheus watches, so a replica joining or leaving is a file
write, not a restart."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Mapping

import requests

from sentinel.desired_state import atomic_write
from sentinel.process import start_group, stop_group, wait_until
from sentinel.triton import free_port


class PrometheusMissing(RuntimeError):
    pass


class PrometheusServer:
    def __init__(self, workdir: Path, port: int | None = None, scrape_interval_s: float = 1.0,
                 job: str = "triton"):
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.interval, self.job = scrape_interval_s, job
        self.log = self.workdir / "prometheus.log"
        self.targets_file = self.workdir / "targets.json"
        self.proc: subprocess.Popen | None = None

    def set_targets(self, targets: Mapping[str, Mapping[str, str]]) -> None:
        """host:port -> labels (e.g. {"pod": "replica-0"}); Prometheus picks the file up itself."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        atomic_write(self.targets_file, json.dumps(
            [{"targets": [addr], "labels": dict(labels)} for addr, labels in targets.items()]))

    def start(self, targets: Mapping[str, Mapping[str, str]], timeout_s: float = 30) -> "PrometheusServer":
        binary = shutil.which("prometheus")
        if binary is None:
            raise PrometheusMissing("`prometheus` is not installed: run `make setup` "
                                    "(scripts/install-system-deps.sh installs the Debian package)")
        self.set_targets(targets)
        config = self.workdir / "prometheus.yml"
        config.write_text(
            f"global:\n  scrape_interval: {self.interval:g}s\n  scrape_timeout: {self.interval:g}s\n"
            f"scrape_configs:\n  - job_name: {self.job}\n    file_sd_configs:\n"
            f"      - files: [{json.dumps(str(self.targets_file))}]\n        refresh_interval: 1s\n")
        self.proc = start_group([binary, f"--config.file={config}",
                                 f"--storage.tsdb.path={self.workdir / 'data'}",
                                 f"--web.listen-address=127.0.0.1:{self.port}"], self.log)
        try:
            # Ready once every target was scraped: targets reach the scrape loop only with the
            # discovery manager's first update, ~5 s after start.
            wait_until(self.proc, lambda: len(self.query("up")) >= len(targets), timeout_s,
                       "prometheus (scraping every target)", self.log, step_s=0.2)
        except BaseException:
            self.stop()
            raise
        return self

    def query(self, promql: str) -> list[dict]:
        r = requests.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5)
        r.raise_for_status()
        return r.json()["data"]["result"]

    def stop(self) -> None:
        stop_group(self.proc, timeout_s=10)
        self.proc = None
