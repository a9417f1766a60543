"""The feedback API over real loopback HTTP: the curl in docs/monitor.md run verbatim with the real
curl, `sentinel feedback FILE.jsonl` as a user runs it, and the 413 for an oversized batch. No
Triton is needed: feedback only needs the published versions on disk."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from monitor.config import load_config
from monitor.sidecar import Sidecar
from sentinel.triton import free_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "feedback-http-token"


@pytest.fixture
def sidecar(tmp_path):
    for v in ("1", "2"):
        (tmp_path / "repo" / "ranker" / v).mkdir(parents=True)
    settings = {"triton_url": f"http://127.0.0.1:{free_port()}",
                "metrics_url": f"http://127.0.0.1:{free_port()}/metrics",
                "repository": str(tmp_path / "repo"), "port": 0,
                "db_path": str(tmp_path / "sidecar.sqlite3"), "token": TOKEN, "interval_s": 0.5}
    sc = Sidecar(load_config(None, env={}, overrides=settings)).start()
    yield sc
    sc.stop()


def _documented_curl() -> str:
    text = (ROOT / "docs" / "monitor.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    (block,) = [b for b in blocks if "/api/feedback" in b]
    return block.split("\nsentinel feedback")[0]  # the curl, up to the CLI line


def test_the_documented_curl_works_verbatim(sidecar):
    command = _documented_curl().replace("localhost:8080", f"127.0.0.1:{sidecar.port}")
    out = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=30,
                         env={**os.environ, "SENTINEL_TOKEN": TOKEN})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"accepted": 2, "rejected": []}
    shown = requests.get(f"{sidecar.url}/api/models/ranker/quality", timeout=5).json()
    (v1,) = shown["versions"]
    assert v1["labelled"] == 2 and v1["lists"] == 1 and v1["ndcg_at_k"] is None  # one list: no CI


def test_the_cli_replays_a_log_and_names_each_bad_line(sidecar, tmp_path):
    log = tmp_path / "outcomes.jsonl"
    good = {"model": "ranker", "version": "2", "score": 0.5, "label": 1}
    log.write_text("\n".join([json.dumps(good)] * 3 + ["{not json", json.dumps({**good, "version": "5"})]) + "\n")
    out = subprocess.run([sys.executable, "-m", "sentinel.cli", "feedback", str(log), "--sidecar",
                          sidecar.url, "--token", TOKEN, "--batch", "2"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 1  # something was refused: say so in the exit status
    assert "3 events accepted, 1 rejected, 1 lines not JSON" in out.stdout
    assert "outcomes.jsonl:4: not JSON" in out.stderr
    assert "rejected event 4: model 'ranker' has no version '5'" in out.stderr
    assert sidecar.feedback.stats("ranker", "2").n == 3


def test_the_cli_refuses_without_a_token(sidecar, tmp_path):
    log = tmp_path / "empty.jsonl"
    log.write_text("")
    env = {k: v for k, v in os.environ.items() if k != "SENTINEL_TOKEN"}
    out = subprocess.run([sys.executable, "-m", "sentinel.cli", "feedback", str(log), "--sidecar",
                          sidecar.url], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    assert out.returncode == 2 and "control token is needed" in out.stderr


def test_an_oversized_batch_is_refused_whole(sidecar):
    event = {"model": "ranker", "version": "1", "score": 0.5, "label": 0}
    r = requests.post(f"{sidecar.url}/api/feedback", json={"events": [event] * 10_001},
                      headers={"X-Sentinel-Token": TOKEN}, timeout=30)
    assert r.status_code == 413 and "at most 10000" in r.json()["error"]
    assert sidecar.feedback.stats("ranker", "1").n == 0
