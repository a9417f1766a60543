"""`sentinel monitor` as its own process, so that a test can kill it like a crashed pod (SIGKILL)
and start it again on the same database and repository."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from sentinel.triton import TritonOptions

ROOT = Path(__file__).resolve().parents[1]


class SidecarProcess:
    def __init__(self, workdir: Path, opts: TritonOptions, port: int, admin_key: str, token: str,
                 settings: dict | None = None):
        self.workdir, self.port, self.token = workdir, port, token
        self.db = workdir / "events.sqlite3"
        self.config = workdir / "sentinel.json"
        self.config.write_text(json.dumps({
            **(settings or {}), "triton_url": opts.http_url, "metrics_url": opts.metrics_url,
            "admin_key": admin_key, "repository": str(opts.repository), "port": port,
            "db_path": str(self.db), "token": token}))
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{port}"

    def launch(self) -> "SidecarProcess":
        """Start the process without waiting (several sidecars start at once)."""
        log = open(self.workdir / "sidecar.log", "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SENTINEL_")}
        self.proc = subprocess.Popen([sys.executable, "-m", "sentinel.cli", "monitor", "--config",
                                      str(self.config)], stdout=log, stderr=subprocess.STDOUT,
                                     env=env, cwd=ROOT)
        log.close()
        return self

    def wait_ready(self, timeout_s: float = 60) -> "SidecarProcess":
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.workdir / "sidecar.log").read_text()[-3000:]
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise AssertionError(f"sidecar not up in {timeout_s:g} s")

    def start(self) -> "SidecarProcess":
        return self.launch().wait_ready()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def model(self, model: str = "ranker") -> dict:
        return requests.get(f"{self.url}/api/models/{model}", timeout=5).json()

    def lease(self) -> dict:
        return requests.get(f"{self.url}/api/lease", timeout=5).json()

    def post(self, action: str, model: str = "ranker", **body) -> requests.Response:
        return requests.post(f"{self.url}/api/models/{model}/{action}", json=body,
                             headers={"X-Sentinel-Token": self.token}, timeout=200)

    def events(self, since: float, kind: str | None = None) -> list[dict]:
        params = {"since": since, "limit": 2000, **({"kind": kind} if kind else {})}
        return requests.get(f"{self.url}/api/events", params=params, timeout=5).json()["events"]


def wait_for(predicate, timeout_s: float, step: float = 0.25) -> float | None:
    """Seconds until `predicate()` was true (an unreachable sidecar counts as not yet), or None."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        try:
            if predicate():
                return time.monotonic() - start
        except requests.RequestException:
            pass
        time.sleep(step)
    return None


def ready_versions(triton) -> set[str]:
    """Versions a running TritonServer lists READY; none while it is down or refusing."""
    try:
        return {e["version"] for e in triton.index() if e.get("state") == "READY"}
    except requests.RequestException:
        return set()
