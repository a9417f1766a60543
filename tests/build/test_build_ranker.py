"""The real build: train (once per session), export, validate, publish."""
import json

import numpy as np
import pytest
import torch

from build_scripts.pipeline import BuildError
from build_scripts.ranker_build import build_ranker
from python_backend.ranker_service import RankerService
from sentinel.cli import main


def test_ranker_beats_popularity(trained_ranker):
    m = trained_ranker.metrics
    assert m.auc > m.baseline_auc + 0.02
    assert m.log_loss < m.baseline_log_loss
    assert m.train_seconds < 120


def test_published_versions_carry_full_manifests(ranker_repo):
    for v in (1, 2):
        manifest = json.loads((ranker_repo / "ranker" / str(v) / "manifest.json").read_text())
        assert set(manifest["artefacts"]) == {"model.onnx", "features.npz", "model.py"}
        assert manifest["parity"]["max_abs_diff"]["score"] < 1e-5
        assert len(manifest["golden"]) >= 32
        assert manifest["metrics"]["auc"] > manifest["metrics"]["baseline_auc"]
        assert manifest["source"]["train"]["seed"] == 7
        assert manifest["fault"] is None


def test_service_reproduces_golden_set_and_torch(ranker_repo, trained_ranker):
    """The served code path (parse → encode → ONNX Runtime) equals torch and the golden set."""
    version_dir = ranker_repo / "ranker" / "1"
    service = RankerService(version_dir)
    golden = json.loads((version_dir / "manifest.json").read_text())["golden"]
    reqs = [service.parse(np.array([[g["inputs"]["user_id"]]]), np.array([g["inputs"]["item_ids"]]),
                          np.array([[g["inputs"]["timestamp"]]])) for g in golden]
    scores = service.score(reqs)
    for g, s in zip(golden, scores):
        np.testing.assert_allclose(s, g["expected"]["scores"], rtol=1e-5, atol=1e-6)
    from python_backend.ranker_features import encode_requests
    cat, dense = encode_requests(service.tables, reqs)
    with torch.no_grad():
        ref = trained_ranker.model(torch.from_numpy(cat), torch.from_numpy(dense)).numpy()
    np.testing.assert_allclose(np.concatenate(scores), ref, rtol=1e-4, atol=1e-5)


def test_fault_is_recorded_and_unknown_fault_refused(tmp_path, trained_ranker):
    p = build_ranker(tmp_path, fault="errors", trained=trained_ranker)
    assert p.manifest["fault"] == {"kind": "errors", "fraction": 0.3}
    with pytest.raises(BuildError, match="unknown fault"):
        build_ranker(tmp_path, fault="gremlins", trained=trained_ranker)


def test_cli_build_twice_publishes_versions_1_and_2(tmp_path, capsys):
    assert main(["build", "ranker", "--repository", str(tmp_path)]) == 0
    assert main(["build", "ranker", "--repository", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ranker v1: AUC" in out and "ranker v2: AUC" in out and "epoch" in out
    assert sorted(p.name for p in (tmp_path / "ranker").iterdir()) == ["1", "2", "config.pbtxt",
                                                                 "sentinel.json"]
    assert "v1 serves" in out and "sentinel deploy ranker 2" in out
