"""Against a real tritonserver on free loopback ports."""
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import requests
from tritonclient.utils import InferenceServerException

from sentinel.triton_config import read_pbtxt, to_json
from sentinel.client import RankerClient
from sentinel.repository import RepositoryError
from sentinel.triton import PortInUse, TritonOptions, TritonServer, TritonStartError, free_port
from sentinel.triton_install import TritonNotInstalled

pytestmark = pytest.mark.integration
KEY = "test-admin-key"


@pytest.fixture(scope="module")
def server(ranker_repo, tmp_path_factory):
    from tests.conftest import triton_options
    s = TritonServer(triton_options(ranker_repo, tmp_path_factory.mktemp("log"), admin_key=KEY))
    s.start()
    yield s
    s.stop()


def golden(repo, version=2):
    return json.loads((repo / "ranker" / str(version) / "manifest.json").read_text())["golden"]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_served_scores_equal_the_golden_set(server, ranker_repo, protocol):
    url = server.options.http_url.removeprefix("http://") if protocol == "http" else server.options.grpc_url
    client = RankerClient(url, protocol)
    for g in golden(ranker_repo):
        i = g["inputs"]
        got = client.rank(i["user_id"], i["item_ids"], i["timestamp"])
        np.testing.assert_allclose(got, g["expected"]["scores"], rtol=1e-5, atol=1e-6)
    client.close()


def infer(server, inputs):
    return requests.post(f"{server.options.http_url}/v2/models/ranker/infer",
                         json={"inputs": inputs}, timeout=10)


def t(name, shape, data, dtype="INT64"):
    return {"name": name, "datatype": dtype, "shape": shape, "data": data}


@pytest.mark.parametrize("inputs,message", [
    ([t("user_id", [1, 1], [1]), t("item_ids", [1, 0], [])], "empty"),
    ([t("user_id", [1, 1], [5000]), t("item_ids", [1, 2], [1, 2])], "user_id 5000 is out of range"),
    ([t("user_id", [1, 1], [1]), t("item_ids", [1, 2], [1, 99999])], "item_ids out of range"),
    ([t("user_id", [1, 1], [1]), t("item_ids", [1, 1001], list(range(1, 1002)))], "limit is 1000"),
    ([t("user_id", [1, 1], [1.0], "FP32"), t("item_ids", [1, 1], [1])], "data-type"),
    ([t("user_id", [1, 2], [1, 2]), t("item_ids", [1, 1], [1])], "shape"),
    ([t("item_ids", [1, 1], [1])], "user_id"),
])
def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(server, inputs, message):
    r = infer(server, inputs)
    assert r.status_code == 400 or r.status_code == 500
    assert message.lower() in r.json()["error"].lower()
    ok = infer(server, [t("user_id", [1, 1], [1]), t("item_ids", [1, 3], [1, 2, 3])])
    assert ok.status_code == 200 and len(ok.json()["outputs"][0]["data"]) == 3


def test_repository_api_needs_the_admin_key(server, ranker_repo):
    base = server.options.http_url
    config = to_json(read_pbtxt(ranker_repo / "ranker" / "config.pbtxt"))
    config["version_policy"] = {"specific": {"versions": [1]}}
    body = {"parameters": {"config": json.dumps(config)}}
    refused = requests.post(f"{base}/v2/repository/models/ranker/load", json=body, timeout=30)
    assert refused.status_code == 403
    assert requests.post(f"{base}/v2/repository/index", json={}, timeout=5).status_code == 403
    loaded = requests.post(f"{base}/v2/repository/models/ranker/load", json=body,
                           headers={"admin-key": KEY}, timeout=60)
    assert loaded.status_code == 200, loaded.text
    ready = {(e["version"], e["state"]) for e in server.index() if e["state"] == "READY"}
    assert ready == {("1", "READY")}
    r = infer(server, [t("user_id", [1, 1], [1]), t("item_ids", [1, 2], [1, 2])])
    assert r.json()["model_version"] == "1"
    # inference stays open without the key
    assert r.status_code == 200


def test_port_in_use_is_named(ranker_repo, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        opts = TritonOptions(ranker_repo, http_port=free_port(), grpc_port=busy,
                             metrics_port=free_port())
        with pytest.raises(PortInUse, match=f"grpc port {busy}"):
            TritonServer(opts).start()


def test_missing_and_invalid_repositories_are_named(tmp_path):
    with pytest.raises(RepositoryError, match="does not exist"):
        TritonServer(TritonOptions(tmp_path / "nope")).start()
    bad = tmp_path / "repo" / "ranker"
    (bad / "1").mkdir(parents=True)
    (bad / "1" / "model.py").write_text("")
    (bad / "config.pbtxt").write_text("max_batch_size: lots\n")
    with pytest.raises(RepositoryError) as err:
        TritonServer(TritonOptions(tmp_path / "repo")).start()
    assert str(bad / "config.pbtxt") in str(err.value)
    (bad / "config.pbtxt").write_text('name: "other"\n')
    with pytest.raises(RepositoryError, match="does not match"):
        TritonServer(TritonOptions(tmp_path / "repo")).start()


def test_missing_binary_says_how_to_install(monkeypatch):
    import importlib.util
    from sentinel import triton_install
    real = importlib.util.find_spec
    monkeypatch.setattr(triton_install.importlib.util, "find_spec",
                        lambda name: None if name == "pytriton" else real(name))
    with pytest.raises(TritonNotInstalled, match="make setup"):
        triton_install.locate()


def test_a_version_that_fails_to_load_is_reported(repo_copy, trained_ranker, start_triton):
    from build_scripts.ranker_build import build_ranker
    from sentinel import desired_state as ds
    build_ranker(repo_copy, fault="load_failure", trained=trained_ranker)  # v3
    # the repository's desired state names v3, so Triton tries it at start
    ds.DesiredStateStore(repo_copy).update("ranker", lambda st: ds.deploy(st, "3", 0.0, "test"))
    server = start_triton(repo_copy, admin_key=KEY)
    states = {e["version"]: e for e in server.index()}
    assert states["3"]["state"] == "UNAVAILABLE" and "refuses to load" in states["3"]["reason"]


def _stub_pids() -> set[int]:
    out = subprocess.run(["pgrep", "-f", "triton_python_backend_stub"], capture_output=True, text=True)
    return {int(p) for p in out.stdout.split()}


def test_cli_stops_cleanly_on_sigterm(ranker_repo, tmp_path):
    before_stubs = _stub_pids()
    ports = [str(free_port()) for _ in range(3)]
    proc = subprocess.Popen([sys.executable, "-m", "sentinel.cli", "triton", "--repository",
                             str(ranker_repo), "--http-port", ports[0], "--grpc-port", ports[1],
                             "--metrics-port", ports[2], "--admin-key", KEY],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "Ctrl-C stops it" in line or not line:
            break
    # the desired version (v1, written when it was published), not the newest
    assert "ranker v1: READY" in "".join(lines), "".join(lines)
    ours = _stub_pids() - before_stubs
    assert ours, "the served model should run in a stub process"
    shm_before = set(glob.glob(f"/dev/shm/sentinel_{proc.pid}_*"))
    assert shm_before
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert "Triton stopped." in proc.stdout.read()
    assert not (ours & _stub_pids()), "stub processes outlived the server"
    leftover = {p for p in shm_before if os.path.exists(p)}
    assert not leftover, f"shared memory left behind: {leftover}"
