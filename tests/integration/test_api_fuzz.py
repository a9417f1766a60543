"""schemathesis against the sidecar's OpenAPI document, with a real Triton behind it: every response
to generated requests (valid and invalid) must be what the document says it is: no 5xx, a status
code the operation documents, the documented content type, and a body valid against the documented
schema for that status (monitor/openapi.py lists every field the API always writes as required)."""
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monitor.act import RepositoryClient
from monitor.sidecar import Sidecar
from sentinel.demo.session import ADMIN_KEY, BACK_TO_BACK_POLICY, TOKEN, sidecar_config

pytestmark = pytest.mark.integration

CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance")


def test_every_response_conforms_to_the_openapi_document(repo_copy, start_triton, tmp_path):
    server = start_triton(repo_copy, admin_key=ADMIN_KEY, models=())
    assert RepositoryClient(server.options.http_url, repo_copy, admin_key=ADMIN_KEY).load(
        "ranker", "1").ok
    config = sidecar_config(
        server.options, policy=BACK_TO_BACK_POLICY, db=tmp_path / "ev.sqlite3")
    with Sidecar(config) as sidecar:
        deadline = time.monotonic() + 15
        while "ranker" not in sidecar.poller.models and time.monotonic() < deadline:
            time.sleep(0.2)
        cli = Path(sys.executable).parent / "schemathesis"
        run = subprocess.run(
            [str(cli), "run", f"{sidecar.url}/api/openapi.json", "--checks", ",".join(CHECKS),
             "--max-examples", "15", "--seed", "7", "-H", f"X-Sentinel-Token: {TOKEN}",
             "--request-timeout", "60", "--no-color"],
            capture_output=True, text=True, timeout=420, cwd=tmp_path)
    print(run.stdout[-3000:])
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    counts = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    assert counts and int(counts[1]) == int(counts[2]) > 200, run.stdout[-3000:]
