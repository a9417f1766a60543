import pytest

from build_scripts.specs import RANKER
from build_scripts.serving_config import model_config
from sentinel.triton_config import to_pbtxt
from sentinel.repository import RepositoryError, scan


def _model(repo, name, versions):
    d = repo / name
    d.mkdir(parents=True)
    (d / "config.pbtxt").write_text(to_pbtxt(model_config(name, RANKER.serving)))
    for v in versions:
        (d / str(v)).mkdir()
        (d / str(v) / "model.py").write_text("")


def test_unbuilt_models_are_listed_without_versions(tmp_path):
    _model(tmp_path, "ranker", [1, 2])
    _model(tmp_path, "seqrec", [])
    entries = {m.name: m.versions for m in scan(tmp_path)}
    assert entries == {"ranker": (1, 2), "seqrec": ()}


def test_a_repository_with_nothing_built_is_refused(tmp_path):
    _model(tmp_path, "seqrec", [])
    with pytest.raises(RepositoryError, match="sentinel build ranker"):
        scan(tmp_path)


def test_a_version_without_its_adapter_is_named(tmp_path):
    _model(tmp_path, "ranker", [1])
    (tmp_path / "ranker" / "1" / "model.py").unlink()
    with pytest.raises(RepositoryError, match="without model.py"):
        scan(tmp_path)
