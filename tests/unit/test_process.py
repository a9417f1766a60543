"""The one start/wait/stop implementation, on real child processes."""
import os
import signal
import sys
import time

import pytest

from sentinel.process import ProcessError, kill_group, start_group, stop_group, wait_until


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def test_a_server_that_exits_is_an_error_with_its_log(tmp_path):
    log = tmp_path / "server.log"
    proc = start_group([sys.executable, "-c", "print('bad flag --foo'); raise SystemExit(3)"], log)
    with pytest.raises(ProcessError, match=r"(?s)demo exited with code 3:.*bad flag --foo"):
        wait_until(proc, lambda: False, 10, "demo", log)


def test_a_server_that_never_answers_times_out_and_stop_takes_its_children(tmp_path):
    log = tmp_path / "server.log"
    # a parent that starts a child and ignores SIGTERM, like a server whose workers outlive it
    code = ("import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            "print(c.pid, flush=True); time.sleep(60)")
    proc = start_group([sys.executable, "-c", code], log)
    with pytest.raises(ProcessError, match="slow not ready after 0.5s"):
        wait_until(proc, lambda: False, 0.5, "slow", log)
    deadline = time.monotonic() + 10
    while not log.read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(log.read_text().split()[0])
    assert _alive(child)
    stop_group(proc, signal.SIGTERM, timeout_s=0.5)
    assert proc.poll() is not None
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the child outlived stop_group"


def test_ready_ends_the_wait_and_a_plain_child_is_stopped_too():
    proc = start_group([sys.executable, "-c", "import time; time.sleep(60)"])
    calls = []
    wait_until(proc, lambda: calls.append(1) or len(calls) >= 3, 10, "x", step_s=0.01)
    assert len(calls) == 3
    kill_group(proc)
    assert proc.returncode == -signal.SIGKILL
    stop_group(None)  # nothing started: nothing to do
