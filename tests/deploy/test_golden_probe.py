"""The Triton container's readiness probe (docker/triton/golden_probe.py): one golden inference of the
served version. On canned answers, then against a real tritonserver whose stub is killed: health
stays up, the probe must not."""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from sentinel.triton import TritonOptions, TritonServer, free_port
from tests.deploy.conftest import DOCKER

SCRIPT = DOCKER / "triton" / "golden_probe.py"
_spec = importlib.util.spec_from_file_location("golden_probe", SCRIPT)
golden_probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden_probe)

CASE = {"inputs": {"user_id": 7, "item_ids": [2, 4]}, "expected": {"scores": [1.0, 2.0]}}


def _repository(root: Path, versions=("1",)) -> Path:
    for v in versions:
        (root / "echo" / v).mkdir(parents=True)
        (root / "echo" / v / "manifest.json").write_text(json.dumps({"golden": [CASE]}))
    return root


class _Triton(BaseHTTPRequestHandler):
    """Canned answers: `versions`, and per version the scores (None = a dead stub's 500)."""
    versions: list[str] = ["1"]
    scores: dict[str, list | None] = {"1": [1.0, 2.0]}

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.versions:
            self._send(200, {"name": "echo", "versions": self.versions})
        else:
            self._send(404, {"error": "Request for unknown model: 'echo' is not found"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert {t["name"]: t["shape"] for t in body["inputs"]} == {"user_id": [1, 1],
                                                                   "item_ids": [1, 2]}
        version = self.path.split("/versions/")[1].split("/")[0]
        scores = self.scores[version]
        if scores is None:
            self._send(500, {"error": "Stub process 'echo_0_0' is not healthy."})
        else:
            self._send(200, {"outputs": [{"name": "scores", "data": scores}]})

    def log_message(self, *a):
        pass


@pytest.fixture
def fake_triton():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Triton)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", _Triton
    server.shutdown()
    server.server_close()
    _Triton.versions, _Triton.scores = ["1"], {"1": [1.0, 2.0]}


def _run(url, repo, *extra) -> tuple[int, str]:
    out = subprocess.run([sys.executable, str(SCRIPT), "--url", url, "--repository", str(repo),
                          "--model", "echo", "--timeout", "2", *extra],
                         capture_output=True, text=True, timeout=20)
    return out.returncode, out.stdout + out.stderr


def test_probe_asks_the_highest_loaded_version_and_checks_its_answer(fake_triton, tmp_path):
    url, triton = fake_triton
    repo = _repository(tmp_path, ("1", "2"))
    triton.versions, triton.scores = ["1", "2"], {"1": None, "2": [1.0, 2.0]}
    assert _run(url, repo) == (0, "ok: echo v2 answered a golden request\n")
    triton.versions = ["1"]
    code, out = _run(url, repo)
    assert code == 1 and "Stub process 'echo_0_0' is not healthy" in out


def test_serving_check_accepts_wrong_answers_the_golden_check_refuses(fake_triton, tmp_path):
    url, triton = fake_triton
    repo = _repository(tmp_path)
    triton.scores = {"1": [1.0, 2.5]}
    assert _run(url, repo)[0] == 0  # answers: the pod can serve; the version is the sidecar's call
    code, out = _run(url, repo, "--check", "golden")
    assert code == 1 and "expected 2" in out
    triton.scores = {"1": [1.0]}
    code, out = _run(url, repo)
    assert code == 1 and "has 1 values, expected 2" in out


def test_no_model_no_manifest_or_no_server_fail_with_the_reason(fake_triton, tmp_path):
    url, triton = fake_triton
    triton.versions = []
    assert "not found" in _run(url, _repository(tmp_path / "a"))[1]
    triton.versions = ["3"]
    assert "cannot read the golden set" in _run(url, _repository(tmp_path / "b"))[1]
    code, out = _run(f"http://127.0.0.1:{free_port()}", tmp_path / "b")
    assert code == 1 and "refused" in out.lower()


def test_golden_cases_rotate_with_time(tmp_path):
    version = tmp_path / "echo" / "1"
    version.mkdir(parents=True)
    (version / "manifest.json").write_text(json.dumps({"golden": [{"n": i} for i in range(3)]}))
    picked = [golden_probe.golden_case(tmp_path, "echo", "1", now)["n"] for now in range(6)]
    assert picked == [0, 1, 2, 0, 1, 2]


# ---------------------------------------------------------------------- a real tritonserver

ECHO_CONFIG = """name: "echo"
backend: "python"
max_batch_size: 8
input { name: "user_id" data_type: TYPE_INT64 dims: [1] }
input { name: "item_ids" data_type: TYPE_INT64 dims: [-1] }
output { name: "scores" data_type: TYPE_FP32 dims: [-1] }
instance_group { count: 1 kind: KIND_CPU }
"""
ECHO_MODEL = '''import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for request in requests:
            items = pb_utils.get_input_tensor_by_name(request, "item_ids").as_numpy()
            scores = pb_utils.Tensor("scores", (items * 0.5).astype(np.float32))
            out.append(pb_utils.InferenceResponse(output_tensors=[scores]))
        return out
'''


@pytest.mark.integration
def test_probe_fails_when_the_stub_dies_although_triton_stays_healthy(tmp_path):
    repo = _repository(tmp_path / "repo")
    (repo / "echo" / "config.pbtxt").write_text(ECHO_CONFIG)
    (repo / "echo" / "1" / "model.py").write_text(ECHO_MODEL)
    server = TritonServer(TritonOptions(repo, free_port(), free_port(), free_port(),
                                        models=("echo",), log_path=tmp_path / "triton.log"))
    server.start()
    try:
        url = server.options.http_url
        deadline = time.monotonic() + 30
        while _run(url, repo, "--check", "golden")[0] != 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _run(url, repo, "--check", "golden") == (0, "ok: echo v1 answered a golden request\n")
        stubs = subprocess.run(["pgrep", "-f", f"triton_python_backend_stub.*{server.shm_prefix}"],
                               capture_output=True, text=True).stdout.split()
        assert stubs
        for pid in stubs:
            os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.5)
        assert requests.get(f"{url}/v2/health/live", timeout=2).status_code == 200
        assert requests.get(f"{url}/v2/models/echo", timeout=2).json()["versions"] == ["1"]
        code, out = _run(url, repo)
        assert code == 1 and "is not healthy" in out, out
    finally:
        server.stop()
