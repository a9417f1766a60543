import json

import pytest

from build_scripts.publish import PublishError, publish, read_manifest, sha256, versions
from build_scripts.specs import RANKER
from build_scripts.triton_config import model_config, read_pbtxt


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
    assert read_pbtxt(repo / "ranker" / "config.pbtxt") == config
    assert not [p for p in (repo / "ranker").iterdir() if p.name.startswith(".")]


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
