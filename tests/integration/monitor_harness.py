"""A real tritonserver + the real sidecar + steady gRPC load, shared by the monitor scenarios."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from monitor.act import RepositoryClient
from monitor.config import load_config
from monitor.sidecar import Sidecar
from sentinel.load import LoadGenerator
from sentinel.triton import TritonOptions, TritonServer, free_port

ADMIN_KEY = "itest-admin"
TOKEN = "itest-token"

# What each published version is, in the shared scenario repository.
VERSIONS = {"1": None, "2": "errors", "3": "latency", "4": "nan", "5": "constant",
            "6": "load_failure", "7": None}


def build_repository(repo: Path, trained) -> Path:
    from build_scripts.pipeline import build_ranker
    for version, fault in VERSIONS.items():
        published = build_ranker(repo, fault=fault, trained=trained)
        assert str(published.version) == version
    return repo


def sidecar_config(opts: TritonOptions, db: Path, **extra):
    overrides = {
        "triton_url": opts.http_url, "metrics_url": opts.metrics_url, "admin_key": ADMIN_KEY,
        "repository": str(opts.repository), "port": 0, "db_path": str(db), "token": TOKEN,
        "interval_s": 1.0, "probe_interval_s": 2.0,
        # Scenarios follow each other within minutes: allow more actions than production would.
        "policy.cooldown_s": 5, "policy.max_rollbacks_per_hour": 20,
        "policy.max_reloads_per_hour": 20,
    }
    overrides.update(extra)
    return load_config(None, env={}, overrides=overrides)


@dataclass
class Harness:
    triton: TritonServer
    sidecar: Sidecar
    load: LoadGenerator
    repo_client: RepositoryClient

    @property
    def poller(self):
        return self.sidecar.poller

    def rt(self, model: str = "ranker"):
        return self.poller.models[model]

    def served(self) -> str | None:
        rt = self.poller.models.get("ranker")
        return rt.served if rt else None

    def events(self, since: float, kind: str | None = None):
        return [e for e in self.sidecar.events.list(model=None, kind=kind, since=since, limit=1000)]

    def wait(self, predicate, timeout: float, step: float = 0.5) -> float | None:
        """Seconds until predicate() held, or None on timeout."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if predicate():
                return time.monotonic() - start
            time.sleep(step)
        return None

    def wait_warm(self, timeout: float = 150) -> None:
        """Until every detector has its warm-up samples (after a start or a rollback)."""
        def warm():
            rt = self.poller.models.get("ranker")
            return rt is not None and rt.served == "1" and rt.known.known_good == "1" and all(
                d.samples_seen >= d.config.warmup + 2 for d in rt.detectors.values())
        assert self.wait(warm, timeout) is not None, "detectors never warmed up"

    def stub_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-f", f"triton_python_backend_stub.*{self.triton.shm_prefix}"],
                             capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def kill_stubs(self) -> list[int]:
        pids = self.stub_pids()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        return pids


def start_harness(repo: Path, workdir: Path, clients: int = 4, rate: float = 25.0) -> Harness:
    # Default flags: Triton serves the desired version (v1) by itself.
    opts = TritonOptions(repo, free_port(), free_port(), free_port(), admin_key=ADMIN_KEY,
                         log_path=workdir / "triton.log")
    triton = TritonServer(opts).start()
    repo_client = RepositoryClient(opts.http_url, repo, admin_key=ADMIN_KEY)
    sidecar = Sidecar(sidecar_config(opts, workdir / "events.sqlite3")).start()
    load = LoadGenerator(opts.grpc_url, clients=clients, rate_per_client=rate).start()
    return Harness(triton, sidecar, load, repo_client)
