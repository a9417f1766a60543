"""Servers as child processes: start one in its own process group, wait until it answers, stop
it and everything it started. The one implementation behind tritonserver (sentinel.triton), the
benchmark peers (sentinel.bench.peers.launch) and the daemons the tests start (Prometheus,
Alertmanager)."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

import requests


class ProcessError(RuntimeError):
    """A server exited or never became ready; the message carries the tail of its log."""


def start_group(command: Sequence[str], log_path: Path | None = None,
                env: Mapping[str, str] | None = None) -> subprocess.Popen:
    """Start `command` as the leader of a new session, so that stop_group reaches its children
    (Triton's stubs, gunicorn's workers) too; output appended to `log_path` (or discarded)."""
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    try:
        return subprocess.Popen(list(command), stdout=log, stderr=subprocess.STDOUT,
                                env=dict(env) if env is not None else None,
                                start_new_session=True)
    finally:
        if log_path:
            log.close()


def log_tail(log_path: Path | None, lines: int = 30) -> str:
    if not log_path or not Path(log_path).exists():
        return "(no log file kept)"
    return "\n".join(Path(log_path).read_text(errors="replace").splitlines()[-lines:])


def wait_until(proc: subprocess.Popen, ready: Callable[[], bool], timeout_s: float, name: str,
               log_path: Path | None = None, step_s: float = 0.1,
               error: type[Exception] = ProcessError,
               sleep: Callable[[float], None] = time.sleep) -> None:
    """Poll ready() (a refused or failed HTTP request counts as not ready) until it holds; raise
    `error` with the log's tail when the process exits first or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise error(f"{name} exited with code {proc.returncode}:\n{log_tail(log_path)}")
        try:
            if ready():
                return
        except requests.RequestException:
            pass
        sleep(step_s)
    raise error(f"{name} not ready after {timeout_s:g}s:\n{log_tail(log_path)}")


def http_ok(url: str, timeout_s: float = 1.0) -> Callable[[], bool]:
    """A ready() for wait_until: `url` answers 200."""
    return lambda: requests.get(url, timeout=timeout_s).status_code == 200


def stop_group(proc: subprocess.Popen | None, stop_signal: int = signal.SIGTERM,
               timeout_s: float = 20.0) -> None:
    """Ask the process to stop, wait up to `timeout_s`, then SIGKILL whatever is left of its
    process group (children that outlived it included)."""
    if proc is None:
        return
    if proc.poll() is None:
        proc.send_signal(stop_signal)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        if proc.poll() is None:  # not a group leader (started without start_group)
            proc.kill()
    proc.wait()


def kill_group(proc: subprocess.Popen | None) -> None:
    """A crash: SIGKILL to the process and its group at once, no shutdown."""
    stop_group(proc, signal.SIGKILL, timeout_s=0)
