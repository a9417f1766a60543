"""Start and stop the peer servers as subprocesses on free loopback ports."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from sentinel.process import http_ok, start_group, stop_group, wait_until
from sentinel.triton import free_port


class PeerStartError(RuntimeError):
    pass


class _Peer:
    """A server in its own process group, ready when `ready_url` answers 200."""

    name = "peer"

    def __init__(self, log_path: Path | None = None, ready_timeout_s: float = 120.0):
        self.log_path = log_path
        self.ready_timeout_s = ready_timeout_s
        self.process: subprocess.Popen | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    @property
    def ready_url(self) -> str:
        raise NotImplementedError

    def start(self):
        self.process = start_group(self.command(), self.log_path, self.env())
        try:
            wait_until(self.process, http_ok(self.ready_url), self.ready_timeout_s, self.name,
                       self.log_path, step_s=0.2, error=PeerStartError)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, stop_signal: int = signal.SIGTERM, timeout_s: float = 20.0) -> None:
        # whatever it started (tritonserver, stubs, workers) is in its process group
        stop_group(self.process, stop_signal, timeout_s)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class FlaskPeer(_Peer):
    """gunicorn + Flask: one worker process per core, threads for keep-alive connections."""

    name = "gunicorn"

    def __init__(self, version_dir: Path, workers: int = 2, threads: int = 4, **kw):
        super().__init__(**kw)
        self.version_dir = Path(version_dir)
        self.workers, self.threads = workers, threads
        self.port = free_port()

    def command(self) -> list[str]:
        return [sys.executable, "-m", "gunicorn", "--workers", str(self.workers),
                "--worker-class", "gthread", "--threads", str(self.threads),
                "--bind", f"127.0.0.1:{self.port}", "--log-level", "warning",
                "sentinel.bench.peers.flask_app:create_app()"]

    def env(self) -> dict[str, str]:
        from sentinel.bench.peers.flask_app import VERSION_DIR_ENV
        return {**os.environ, VERSION_DIR_ENV: str(self.version_dir)}

    @property
    def ready_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"

    def describe(self) -> str:
        return (f"gunicorn {self.workers} workers × {self.threads} threads (gthread), Flask, "
                f"one ONNX Runtime session per worker (1 intra-op thread), JSON over HTTP/1.1")


class PyTritonPeer(_Peer):
    """PyTriton's own Triton, the same model configuration as Sentinel's."""

    name = "pytriton"

    def __init__(self, version_dir: Path, instances: int = 2, max_batch_size: int = 32,
                 queue_delay_us: int = 200, **kw):
        super().__init__(**kw)
        self.version_dir = Path(version_dir)
        self.instances, self.max_batch_size, self.queue_delay_us = (instances, max_batch_size,
                                                                    queue_delay_us)
        self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        self._python: Path | None = None

    def start(self):
        from sentinel.bench.peers.pytriton_env import ensure_pytriton_env
        self._python = ensure_pytriton_env()
        return super().start()

    def command(self) -> list[str]:
        return [str(self._python), "-m", "sentinel.bench.peers.pytriton_app",
                "--version-dir", str(self.version_dir), "--http-port", str(self.http_port),
                "--grpc-port", str(self.grpc_port), "--metrics-port", str(self.metrics_port),
                "--instances", str(self.instances), "--max-batch-size", str(self.max_batch_size),
                "--queue-delay-us", str(self.queue_delay_us)]

    def env(self) -> dict[str, str]:
        from sentinel.triton_install import locate
        # PyTriton looks for its libraries next to its package in *its* site-packages, which the
        # peer env does not have: the server's libraries and libpython come from Sentinel's install.
        install = locate()
        return {**os.environ, "LD_LIBRARY_PATH": install.library_path,
                "PATH": os.pathsep.join([str(self._python.parent), os.environ.get("PATH", "")])}

    @property
    def ready_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/v2/models/ranker/ready"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def stop(self, stop_signal: int = signal.SIGINT, timeout_s: float = 20.0) -> None:
        super().stop(stop_signal, timeout_s)  # PyTriton's serve() stops on SIGINT

    def describe(self) -> str:
        return (f"PyTriton 0.7.0 (Triton 2.51), {self.instances} callables (instances), "
                f"max_batch_size {self.max_batch_size}, dynamic batching "
                f"{self.queue_delay_us} µs, same RankerService (1 intra-op thread), HTTP/1.1 with binary "
                f"tensors")
