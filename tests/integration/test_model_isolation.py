"""One model's broken files do not stop another model's rollback: a real tritonserver serving two
models, the real sidecar, steady load on one of them."""
import json
import shutil
import time

import pytest
import requests

from sentinel.triton_config import read_pbtxt, to_pbtxt
from monitor.sidecar import Sidecar
from sentinel.desired_state import STATE_FILE
from sentinel.load import LoadGenerator
from sentinel.demo.session import ADMIN_KEY, BACK_TO_BACK_POLICY, TOKEN, sidecar_config

pytestmark = pytest.mark.integration


def test_a_broken_manifest_and_state_file_on_one_model_do_not_stop_a_rollback_on_another(
        repo_copy, trained_ranker, start_triton, tmp_path):
    from build_scripts.ranker_build import build_ranker
    bad = str(build_ranker(repo_copy, fault="errors", trained=trained_ranker).version)
    other = repo_copy / "ranker_b"
    shutil.copytree(repo_copy / "ranker" / "1", other / "1")
    config = read_pbtxt(repo_copy / "ranker" / "config.pbtxt")
    config.name = "ranker_b"
    (other / "config.pbtxt").write_text(to_pbtxt(config))
    manifest = json.loads((other / "1" / "manifest.json").read_text())
    manifest["golden"] = "not a list of cases"  # Triton loads it; the sidecar cannot probe it
    (other / "1" / "manifest.json").write_text(json.dumps(manifest))
    (other / STATE_FILE).write_text("{ half-written")

    server = start_triton(repo_copy, admin_key=ADMIN_KEY)  # default flags: both models load
    ready = {(e["name"], e["version"]) for e in server.index() if e.get("state") == "READY"}
    assert ready == {("ranker", "1"), ("ranker_b", "1")}
    config = sidecar_config(
        server.options, policy=BACK_TO_BACK_POLICY, db=tmp_path / "ev.sqlite3",
        **{"policy.known_good_after_s": 5})
    with Sidecar(config) as sidecar, \
            LoadGenerator(server.options.grpc_url, clients=2, rate_per_client=25):
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            rt = sidecar.poller.models.get("ranker")
            if rt is not None and rt.known.known_good == "1":
                break
            time.sleep(0.5)
        start = time.time()
        r = requests.post(f"{sidecar.url}/api/models/ranker/deploy", json={"version": bad},
                          headers={"X-Sentinel-Token": TOKEN}, timeout=120)
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sidecar.poller.models["ranker"].served != "1":
            time.sleep(0.5)
        time.sleep(2)
        events = sidecar.events.list(since=start - 60, limit=1000)
        for e in reversed(events):
            if e.kind not in ("decision",):
                print(f"+{e.ts - start:5.1f}s {e.model:<9} {e.kind:<13} v{e.version} {e.reason[:100]}")
        assert sidecar.poller.models["ranker"].served == "1"
        assert [(e.action, e.outcome) for e in events
                if e.kind == "action" and e.model == "ranker" and e.action == "rollback"] \
            == [("rollback", "ok")]
        # the broken model is reported as what it is and left serving; nothing was done to it
        b = sidecar.poller.models["ranker_b"]
        assert b.served == "1" and b.desired_error and "sentinel.json" in b.desired_error
        kinds = {e.kind for e in events if e.model == "ranker_b"}
        assert "desired_error" in kinds and "probe" in kinds
        assert not [e for e in events if e.model == "ranker_b" and e.kind == "action"]
        assert (other / STATE_FILE).read_text() == "{ half-written"  # never overwritten
        page = requests.get(f"{sidecar.url}/models/ranker_b?refresh=0", timeout=5)
        assert page.status_code == 200 and "Desired state unreadable" in page.text
