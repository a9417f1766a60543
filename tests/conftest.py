"""Shared fixtures: the ranker is trained once per test session and published into temporary
repositories; Triton servers start on free loopback ports only in the tests that ask for one."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sentinel.triton import TritonOptions, TritonServer, free_port

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def trained_ranker():
    from build_scripts.train_ranker import train_ranker
    return train_ranker()


@pytest.fixture(scope="session")
def ranker_repo(tmp_path_factory, trained_ranker) -> Path:
    """A repository with ranker v1 (good) and v2 (good, same weights): read-only for tests."""
    from build_scripts.ranker_build import build_ranker
    repo = tmp_path_factory.mktemp("repo")
    build_ranker(repo, trained=trained_ranker)
    build_ranker(repo, trained=trained_ranker)
    return repo


@pytest.fixture
def repo_copy(tmp_path, ranker_repo) -> Path:
    """A private copy a test may add versions to."""
    dst = tmp_path / "repo"
    shutil.copytree(ranker_repo, dst)
    return dst


def triton_options(repo: Path, log_dir: Path, **kw) -> TritonOptions:
    return TritonOptions(repository=repo, http_port=free_port(), grpc_port=free_port(),
                         metrics_port=free_port(), log_path=log_dir / "triton.log", **kw)


@pytest.fixture
def start_triton(tmp_path):
    """Factory: start a real tritonserver; every server started is stopped after the test."""
    servers: list[TritonServer] = []

    def start(repo: Path, **kw) -> TritonServer:
        server = TritonServer(triton_options(repo, tmp_path, **kw))
        servers.append(server)
        return server.start()

    yield start
    for s in servers:
        s.stop()
