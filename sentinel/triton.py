"""Start and stop a real tritonserver: explicit model control, loopback only, the repository API
behind an admin key, and a clean stop (no orphan stubs, no leftover shared memory)."""
from __future__ import annotations

import glob
import os
import secrets
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import requests

from sentinel.process import http_ok, kill_group, start_group, stop_group, wait_until
from sentinel.repository import ModelEntry, scan
from sentinel.triton_install import TritonInstall, locate

SHM_DIR = Path("/dev/shm")


class TritonStartError(RuntimeError):
    pass


class PortInUse(TritonStartError):
    def __init__(self, name: str, port: int):
        super().__init__(f"{name} port {port} on 127.0.0.1 is already in use; pick another with "
                         f"--{name}-port")
        self.port = port


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check_port(name: str, port: int) -> None:
    with socket.socket() as s:
        # Like the server itself: a port left in TIME_WAIT by a stopped server is free to reuse.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            raise PortInUse(name, port) from exc


@dataclass(frozen=True)
class TritonOptions:
    repository: Path
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    admin_key: str | None = None
    models: tuple[str, ...] | None = None   # None = every model in the repository
    exit_timeout_s: int = 3                  # Triton's default 30 s can stall a stop (PLATFORM.md)
    log_path: Path | None = None
    extra_args: tuple[str, ...] = ()
    ready_timeout_s: float = 120.0

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"


@dataclass
class TritonServer:
    options: TritonOptions
    install: TritonInstall = field(default_factory=locate)
    sleep: Callable[[float], None] = time.sleep
    process: subprocess.Popen | None = None
    models: list[ModelEntry] = field(default_factory=list)

    def __post_init__(self):
        # Our own shm prefix lets stop() remove exactly this server's regions and no one else's.
        self.shm_prefix = f"sentinel_{os.getpid()}_{secrets.token_hex(3)}_"

    def command(self) -> list[str]:
        o = self.options
        cmd = [str(self.install.binary), f"--model-repository={Path(o.repository).resolve()}",
               f"--backend-directory={self.install.backend_dir}",
               "--model-control-mode=explicit", "--disable-auto-complete-config",
               "--exit-on-error=false", f"--exit-timeout-secs={o.exit_timeout_s}",
               "--http-address=127.0.0.1", "--grpc-address=127.0.0.1",
               "--metrics-address=127.0.0.1", f"--http-port={o.http_port}",
               f"--grpc-port={o.grpc_port}", f"--metrics-port={o.metrics_port}",
               "--allow-metrics=true", "--metrics-interval-ms=1000",
               f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}"]
        if o.admin_key:
            cmd += [f"--http-restricted-api=model-repository:admin-key={o.admin_key}",
                    f"--grpc-restricted-protocol=model-repository:admin-key={o.admin_key}"]
        names = o.models if o.models is not None else tuple(m.name for m in self.models
                                                             if m.versions)
        cmd += [f"--load-model={n}" for n in names]
        return cmd + list(o.extra_args)

    def start(self) -> "TritonServer":
        o = self.options
        self.models = scan(o.repository)
        known = {m.name: m for m in self.models}
        for name in o.models or ():
            if name not in known:
                raise TritonStartError(f"model {name!r} is not in {o.repository} (has {sorted(known)})")
            if not known[name].versions:
                raise TritonStartError(f"model {name!r} has no built versions in {o.repository}: "
                                       f"run `sentinel build {name}` first")
        for name, port in (("http", o.http_port), ("grpc", o.grpc_port), ("metrics", o.metrics_port)):
            _check_port(name, port)
        # A session of its own: stop() signals the whole group, stubs included.
        self.process = start_group(self.command(), o.log_path, self.install.env())
        try:
            wait_until(self.process, http_ok(f"{o.http_url}/v2/health/live"), o.ready_timeout_s,
                       "tritonserver", o.log_path, error=TritonStartError, sleep=self.sleep)
        except BaseException:
            self.stop()
            raise
        return self

    def headers(self) -> dict[str, str]:
        return {"admin-key": self.options.admin_key} if self.options.admin_key else {}

    def index(self) -> list[dict]:
        r = requests.post(f"{self.options.http_url}/v2/repository/index", headers=self.headers(),
                          json={}, timeout=5)
        r.raise_for_status()
        return r.json()

    def stop(self, timeout_s: float | None = None) -> None:
        stop_group(self.process, timeout_s=timeout_s or self.options.exit_timeout_s + 10)
        for path in glob.glob(str(SHM_DIR / f"{self.shm_prefix}*")):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def kill(self) -> None:
        """A crash: SIGKILL to the server and its stubs, no shutdown; then the launcher's own
        clean-up of its shared-memory regions (what a pod restart does to /dev/shm)."""
        kill_group(self.process)
        self.stop()

    def __enter__(self) -> "TritonServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
