"""Shared helpers for the deployment tests: paths, YAML loading, and the tools they call (hadolint
from the venv, promtool and amtool from Debian's packages), which must fail loudly when missing."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
K8S = DOCKER / "k8s"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))


def load_yaml_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def tool(name: str, how: str) -> str:
    """The path of a tool the tests need; a missing tool fails the test (CI must have it)."""
    beside_python = Path(sys.executable).parent / name
    path = str(beside_python) if beside_python.exists() else shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not installed: run `make setup` ({how})", pytrace=False)
    return path


def image_is_pinned(image: str) -> bool:
    """name:tag with a tag that names a release (digits), or name@sha256:...; never latest."""
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag != "latest" and any(c.isdigit() for c in tag)
