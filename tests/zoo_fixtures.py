"""Session fixtures for the model-zoo tests: the sequential recommender is trained once and a
repository with ranker, seqrec, search and recommend is built once per test session, however many
test modules import these fixtures (each import registers the fixture again; the cache below makes
the second registration reuse the first one's result)."""
from __future__ import annotations

from pathlib import Path

import pytest

from build_scripts.train_seqrec import SeqrecConfig

# Fewer epochs than the default (12): ~4x less training time, still well above popularity.
TEST_SEQREC = SeqrecConfig(epochs=4)
_CACHE: dict[str, object] = {}


@pytest.fixture(scope="session")
def trained_seqrec():
    if "seqrec" not in _CACHE:
        from build_scripts.train_seqrec import train_seqrec
        _CACHE["seqrec"] = train_seqrec(TEST_SEQREC)
    return _CACHE["seqrec"]


@pytest.fixture(scope="session")
def zoo_repo(tmp_path_factory, trained_ranker, trained_seqrec) -> Path:
    """ranker v1, seqrec v1, search v1 and recommend v1 (fp32): read-only for tests."""
    if "repo" not in _CACHE:
        from build_scripts.ranker_build import build_ranker
        from build_scripts.zoo import build_recommend, build_search, build_seqrec
        repo = tmp_path_factory.mktemp("zoo")
        build_ranker(repo, trained=trained_ranker)
        build_seqrec(repo, trained=trained_seqrec)
        build_search(repo)  # the default build: the publish rule is enforced and must pass
        build_recommend(repo)
        _CACHE["repo"] = repo
    return _CACHE["repo"]
