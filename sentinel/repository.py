"""Checks a model repository before Triton sees it, so a broken file is named plainly."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sentinel.triton_config import ConfigFileError, read_pbtxt


class RepositoryError(ValueError):
    def __init__(self, path: Path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


@dataclass(frozen=True)
class ModelEntry:
    name: str
    versions: tuple[int, ...]


def scan(repository: Path) -> list[ModelEntry]:
    repository = Path(repository)
    if not repository.is_dir():
        raise RepositoryError(repository, "model repository does not exist or is not a directory")
    models = []
    for model_dir in sorted(p for p in repository.iterdir() if p.is_dir() and not p.name.startswith(".")):
        config_path = model_dir / "config.pbtxt"
        if not config_path.is_file():
            raise RepositoryError(config_path, "missing; every model directory needs a config.pbtxt")
        try:
            config = read_pbtxt(config_path)
        except ConfigFileError as exc:
            raise RepositoryError(config_path, exc.problem) from exc
        if config.name and config.name != model_dir.name:
            raise RepositoryError(config_path, f"name {config.name!r} does not match its directory "
                                               f"{model_dir.name!r}")
        versions = tuple(sorted(int(p.name) for p in model_dir.iterdir()
                                if p.is_dir() and p.name.isdigit()))
        if not versions:
            # A model whose versions were never built (git holds only its config and adapter)
            # is listed without versions; the launcher skips it unless it is asked for by name.
            models.append(ModelEntry(model_dir.name, ()))
            continue
        if config.backend == "python":
            for v in versions:
                if not (model_dir / str(v) / "model.py").is_file():
                    raise RepositoryError(model_dir / str(v), "python backend version without model.py")
        models.append(ModelEntry(model_dir.name, versions))
    if not any(m.versions for m in models):
        raise RepositoryError(repository, "contains no built model versions (build one: "
                                          "`sentinel build ranker`)")
    return models
