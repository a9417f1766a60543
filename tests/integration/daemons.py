"""Waiting for and stopping the Debian daemons (Prometheus, Alertmanager) the tests start by hand."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Callable

import requests


def wait_ready(proc: subprocess.Popen, log: Path, name: str, ready: Callable[[], bool],
               timeout_s: float, what: str = "not ready", step_s: float = 0.1) -> None:
    """Until ready() holds; fails with the daemon's log if it exits or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{name} exited:\n{log.read_text()[-2000:]}"
        try:
            if ready():
                return
        except requests.RequestException:
            pass
        time.sleep(step_s)
    raise AssertionError(f"{name} {what}:\n{log.read_text()[-2000:]}")


def terminate(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
