"""The one entry point that adds a version to a Triton model repository, atomically."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from sentinel.triton_config import read_pbtxt, to_pbtxt
from sentinel.desired_state import DesiredStateStore

MANIFEST = "manifest.json"


class PublishError(RuntimeError):
    pass


@dataclass(frozen=True)
class Published:
    model: str
    version: int
    path: Path
    manifest: dict


def versions(model_dir: Path) -> list[int]:
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def publish(repository: Path, config: mc.ModelConfig, files: dict[str, Path], manifest: dict,
            adapter: Path | None = None) -> Published:
    """Write `<repository>/<model>/<N+1>/` with the artefacts, the adapter (model.py) and
    manifest.json (with artefact hashes), plus the model's config.pbtxt.

    The version is staged in a hidden directory next to its final place and renamed into it, so a
    Triton load never sees a half-written version; if another build took N+1 meanwhile, the rename
    fails and we retry with the next number rather than overwrite."""
    model_dir = Path(repository) / config.name
    model_dir.mkdir(parents=True, exist_ok=True)
    config_path = model_dir / "config.pbtxt"
    text = to_pbtxt(config)
    if config_path.exists() and _contract(read_pbtxt(config_path)) != _contract(config):
        raise PublishError(f"{config_path} differs from the config this build generates; "
                           "publishing would change the serving contract of existing versions")
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=model_dir))
    try:
        hashes = {}
        for name, src in {**files, **({"model.py": adapter} if adapter else {})}.items():
            shutil.copyfile(src, staging / name)
            hashes[name] = sha256(staging / name)
        manifest = {**manifest, "model": config.name, "artefacts": hashes}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        if not config_path.exists():
            tmp = model_dir / ".config.pbtxt.tmp"
            tmp.write_text(text)
            os.replace(tmp, config_path)
        for _ in range(100):
            before = versions(model_dir)
            version = (before or [0])[-1] + 1
            try:
                os.rename(staging, model_dir / str(version))
            except OSError:
                continue
            manifest = {**manifest, "version": version}
            # What serves is a decision of the desired state, never a side effect of publishing.
            DesiredStateStore(repository).initialise_on_publish(config.name, str(version), before)
            return Published(config.name, version, model_dir / str(version), manifest)
        raise PublishError(f"could not claim a new version number in {model_dir}")
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _contract(config: mc.ModelConfig) -> mc.ModelConfig:
    """The config without its version_policy, which the desired state owns (sentinel.desired_state)."""
    out = mc.ModelConfig()
    out.CopyFrom(config)
    out.ClearField("version_policy")
    return out


def read_manifest(version_dir: Path) -> dict:
    return json.loads((Path(version_dir) / MANIFEST).read_text())
