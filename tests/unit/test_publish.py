import json

import pytest

from build_scripts.publish import PublishError, publish, read_manifest, sha256, versions
from build_scripts.specs import RANKER
from build_scripts.serving_config import model_config
from sentinel.triton_config import read_pbtxt, to_pbtxt


@pytest.fixture
def artefact(tmp_path):
    p = tmp_path / "model.onnx"
    p.write_bytes(b"not really onnx")
    return p


def test_versions_are_numbered_and_manifests_written(tmp_path, artefact):
    repo = tmp_path / "repo"
    config = model_config("ranker", RANKER.serving)
    a = publish(repo, config, {"model.onnx": artefact}, {"metrics": {"auc": 0.7}})
    b = publish(repo, config, {"model.onnx": artefact}, {"metrics": {"auc": 0.8}})
    assert (a.version, b.version) == (1, 2)
    assert versions(repo / "ranker") == [1, 2]
    manifest = read_manifest(repo / "ranker" / "2")
    assert manifest["metrics"]["auc"] == 0.8
    assert manifest["artefacts"]["model.onnx"] == sha256(artefact)
    written = read_pbtxt(repo / "ranker" / "config.pbtxt")
    # the serving contract is the build's; the version policy is the desired state's (version 1)
    assert list(written.version_policy.specific.versions) == [1]
    written.ClearField("version_policy")
    assert written == config
    assert not [p for p in (repo / "ranker").iterdir() if p.name.startswith(".")]


def test_publishing_a_new_version_does_not_change_what_serves(tmp_path, artefact):
    from sentinel.desired_state import DesiredStateStore
    repo = tmp_path / "repo"
    config = model_config("ranker", RANKER.serving)
    publish(repo, config, {"model.onnx": artefact}, {})
    publish(repo, config, {"model.onnx": artefact}, {})
    state = DesiredStateStore(repo).read("ranker")
    assert state.version == "1" and state.generation == 1
    assert state.watch.version == "1" and state.watch.origin == "publish"
    assert list(read_pbtxt(repo / "ranker" / "config.pbtxt").version_policy.specific.versions) == [1]


def test_a_repository_from_before_desired_state_keeps_its_newest_version(tmp_path, artefact):
    from sentinel.desired_state import STATE_FILE, DesiredStateStore
    repo = tmp_path / "repo"
    config = model_config("ranker", RANKER.serving)
    publish(repo, config, {"model.onnx": artefact}, {})
    publish(repo, config, {"model.onnx": artefact}, {})
    # as a repository built by an older Sentinel: no state file, no version policy (newest serves)
    (repo / "ranker" / STATE_FILE).unlink()
    (repo / "ranker" / "config.pbtxt").write_text(to_pbtxt(config))
    publish(repo, config, {"model.onnx": artefact}, {})
    assert DesiredStateStore(repo).read("ranker").version == "2"


def test_a_different_serving_contract_is_refused(tmp_path, artefact):
    repo = tmp_path / "repo"
    publish(repo, model_config("ranker", RANKER.serving), {"model.onnx": artefact}, {})
    changed = model_config("ranker", RANKER.serving)
    changed.max_batch_size = 4
    with pytest.raises(PublishError, match="differs"):
        publish(repo, changed, {"model.onnx": artefact}, {})
    assert versions(repo / "ranker") == [1]


def test_a_failed_copy_leaves_no_version_behind(tmp_path, artefact):
    repo = tmp_path / "repo"
    with pytest.raises(FileNotFoundError):
        publish(repo, model_config("ranker", RANKER.serving),
                {"model.onnx": artefact, "missing.bin": tmp_path / "nope"}, {})
    assert versions(repo / "ranker") == []
    assert not any(p.name.startswith(".staging") for p in (repo / "ranker").iterdir())


def test_manifest_is_json_with_model_name(tmp_path, artefact):
    out = publish(tmp_path, model_config("ranker", RANKER.serving), {"model.onnx": artefact},
                  {"source": "x"})
    data = json.loads((out.path / "manifest.json").read_text())
    assert data["model"] == "ranker" and data["source"] == "x"
