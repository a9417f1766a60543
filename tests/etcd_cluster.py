"""A real etcd cluster on loopback for the lease tests: N members (Debian's `etcd-server`, installed by
scripts/install-system-deps.sh), each its own process on free ports, that a test can kill and start
again like a failed node."""
from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests

from sentinel.triton import free_port


class EtcdCluster:
    def __init__(self, workdir: Path, members: int = 3):
        self.workdir = workdir
        self.names = [f"m{i}" for i in range(members)]
        self.client = {n: f"http://127.0.0.1:{free_port()}" for n in self.names}
        self.peer = {n: f"http://127.0.0.1:{free_port()}" for n in self.names}
        self.procs: dict[str, subprocess.Popen] = {}

    @property
    def endpoints(self) -> list[str]:
        return [self.client[n] for n in self.names]

    def _command(self, name: str) -> list[str]:
        return ["etcd", "--name", name, "--data-dir", str(self.workdir / name),
                "--listen-client-urls", self.client[name],
                "--advertise-client-urls", self.client[name],
                "--listen-peer-urls", self.peer[name],
                "--initial-advertise-peer-urls", self.peer[name],
                "--initial-cluster", ",".join(f"{n}={self.peer[n]}" for n in self.names),
                "--initial-cluster-state", "new", "--initial-cluster-token", "sentinel-test"]

    def start(self, *names: str, timeout_s: float = 30) -> "EtcdCluster":
        for name in names or self.names:
            log = open(self.workdir / f"{name}.log", "ab")
            self.procs[name] = subprocess.Popen(self._command(name), stdout=log,
                                                stderr=subprocess.STDOUT)
            log.close()
        deadline = time.monotonic() + timeout_s
        for name in names or self.names:
            while not self.healthy(name):
                assert self.procs[name].poll() is None, (self.workdir / f"{name}.log").read_text()[-2000:]
                assert time.monotonic() < deadline, f"etcd member {name} not healthy"
                time.sleep(0.1)
        return self

    def healthy(self, name: str) -> bool:
        try:
            return requests.get(f"{self.client[name]}/health", timeout=1).json().get("health") == "true"
        except (requests.RequestException, ValueError):
            return False

    def leader(self) -> str:
        """The name of the member that leads now."""
        for name in self.names:
            if name in self.procs and self.procs[name].poll() is None:
                try:
                    status = requests.post(f"{self.client[name]}/v3/maintenance/status", json={},
                                           timeout=1).json()
                except (requests.RequestException, ValueError):
                    continue
                if status.get("leader") == status.get("header", {}).get("member_id"):
                    return name
        raise AssertionError("no etcd member leads")

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()

    def stop(self) -> None:
        for name in list(self.procs):
            self.kill(name)


def etcd_cluster(workdir: Path, members: int = 3) -> EtcdCluster:
    if shutil.which("etcd") is None:
        pytest.fail("etcd is not installed: run scripts/install-system-deps.sh (Debian's etcd-server)")
    return EtcdCluster(workdir, members).start()
