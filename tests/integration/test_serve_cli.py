"""`sentinel serve`: Triton and the sidecar together from one command, stopped together."""
import signal
import subprocess
import sys
import time

import pytest
import requests

from sentinel.triton import free_port

pytestmark = pytest.mark.integration


def test_serve_runs_triton_and_the_sidecar_and_stops_both(repo_copy, tmp_path):
    ports = {k: str(free_port()) for k in ("http", "grpc", "metrics", "sidecar")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sentinel.cli", "serve", "--repository", str(repo_copy),
         "--http-port", ports["http"], "--grpc-port", ports["grpc"],
         "--metrics-port", ports["metrics"], "--port", ports["sidecar"], "--admin-key", "k",
         "--db", str(tmp_path / "ev.sqlite3"), "--log", str(tmp_path / "triton.log")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            out.append(line)
            if "Ctrl-C stops it" in line or not line:
                break
        assert "pages/API http://127.0.0.1:" + ports["sidecar"] in "".join(out), "".join(out)
        models = []
        deadline = time.monotonic() + 30
        # models are listed from the repository at once; what serves after the first cycle
        while time.monotonic() < deadline and not (models and models[0]["served_version"]):
            models = requests.get(f"http://127.0.0.1:{ports['sidecar']}/api/models", timeout=5).json()["models"]
            time.sleep(0.5)
        assert models and models[0]["model"] == "ranker" and models[0]["served_version"] == "1"
        page = requests.get(f"http://127.0.0.1:{ports['sidecar']}/models/ranker", timeout=5)
        assert page.status_code == 200 and "Serving <b>version 1</b>" in page.text
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    rest = proc.stdout.read()
    assert code == 0, rest
    assert "sidecar stopped." in rest and "Triton stopped." in rest
    leftovers = subprocess.run(["pgrep", "-f", f"tritonserver.*{repo_copy}"], capture_output=True,
                               text=True).stdout.split()
    assert not leftovers, f"tritonserver still running: {leftovers}"


_DEMO_WITH_A_REAL_TRITON = """
import sys, time
import sentinel.demo.run as run
from sentinel.triton import TritonOptions, TritonServer, free_port
from pathlib import Path

def demo_that_serves(scenario, keep=False, results=None):
    # The demo's shape: a real Triton started, a long watch, clean-up in `finally`.
    repo = Path(sys.argv[1])
    server = TritonServer(TritonOptions(repo, free_port(), free_port(), free_port())).start()
    try:
        print("serving", flush=True)
        time.sleep(600)
        return 0
    finally:
        server.stop()
        print("cleaned up", flush=True)

run.run_demo = demo_that_serves
from sentinel.cli import main
sys.exit(main(["demo", "--scenario", "clean"]))
"""


def test_a_demo_stopped_with_sigterm_stops_the_triton_it_started(repo_copy):
    """A CI timeout or `kill` sends SIGTERM: `sentinel demo` unwinds as on Ctrl-C, so its clean-up
    runs (before, Python's default SIGTERM left tritonserver running)."""
    proc = subprocess.Popen([sys.executable, "-c", _DEMO_WITH_A_REAL_TRITON, str(repo_copy)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "serving" not in line:
            line = proc.stdout.readline()
            if not line:
                break
        assert "serving" in line
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    rest = proc.stdout.read()
    assert code == 130 and "cleaned up" in rest and "interrupted" in rest, rest
    leftovers = subprocess.run(["pgrep", "-f", f"tritonserver.*{repo_copy}"], capture_output=True,
                               text=True).stdout.split()
    assert not leftovers, f"tritonserver still running: {leftovers}"
