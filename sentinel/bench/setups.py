"""Serving setups a benchmark compares in one run: the client's protocol and the ranker's
batching settings (queue delay, instances) applied to a copy of a published repository. Parsing
and describing are pure; `repository_for` writes the copy."""
from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

PROTOCOLS = ("http", "grpc")


class SetupError(ValueError):
    pass


@dataclass(frozen=True)
class ServingSetup:
    name: str
    protocol: str = "http"             # the bench client: Triton's HTTP binary tensors or gRPC
    queue_delay_us: int | None = None  # None: as the published config.pbtxt says
    instances: int | None = None

    def __post_init__(self):
        if not self.name or any(c in self.name for c in ":,|"):
            raise SetupError(f"a setup needs a name without ':', ',' or '|', got {self.name!r}")
        if self.protocol not in PROTOCOLS:
            raise SetupError(f"protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if self.queue_delay_us is not None and self.queue_delay_us < 0:
            raise SetupError("queue_delay_us must be >= 0")
        if self.instances is not None and self.instances < 1:
            raise SetupError("instances must be >= 1")

    @property
    def edits_config(self) -> bool:
        return self.queue_delay_us is not None or self.instances is not None


# Where issue 17 started (its profile and `bench serve` runs of 2026-12-03): the gRPC client and
# the ranker's batching settings of that time; then one change at a time: the HTTP client on the
# same settings, and what `sentinel build ranker` publishes now with the HTTP client.
BEFORE = ServingSetup("before", protocol="grpc", queue_delay_us=200, instances=2)
HTTP_ONLY = ServingSetup("http", protocol="http", queue_delay_us=200, instances=2)
SHIPPED = ServingSetup("shipped", protocol="http")
DEFAULT_SETUPS = (BEFORE, HTTP_ONLY, SHIPPED)


def parse_setup(text: str) -> ServingSetup:
    """NAME[:key=value,...] with keys protocol, queue_delay_us, instances."""
    name, _, rest = text.strip().partition(":")
    setup = ServingSetup(name.strip())
    for item in filter(None, (x.strip() for x in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise SetupError(f"expected key=value in setup {text!r}, got {item!r}")
        key, value = key.strip(), value.strip()
        try:
            if key == "protocol":
                setup = replace(setup, protocol=value)
            elif key in ("queue_delay_us", "instances"):
                setup = replace(setup, **{key: int(value)})
            else:
                raise SetupError(f"unknown setting {key!r} in setup {text!r} (protocol, "
                                 f"queue_delay_us, instances)")
        except ValueError as exc:
            raise SetupError(f"bad value in setup {text!r}: {exc}") from None
    return setup


def parse_setups(text: str) -> tuple[ServingSetup, ...]:
    """Setups separated by '|'; names must differ."""
    setups = tuple(parse_setup(t) for t in text.split("|") if t.strip())
    if not setups:
        raise SetupError("give at least one setup")
    names = [s.name for s in setups]
    if len(set(names)) != len(names):
        raise SetupError(f"setup names must differ, got {names}")
    return setups


def effective(setup: ServingSetup, published: dict[str, int]) -> dict[str, int]:
    """The batching settings this setup serves with: the published ones with its edits."""
    out = dict(published)
    if setup.instances is not None:
        out["instances"] = setup.instances
    if setup.queue_delay_us is not None:
        out["queue_delay_us"] = setup.queue_delay_us
    return out


def repository_for(setup: ServingSetup, repository: Path, work: Path) -> Path:
    """The repository to serve this setup from: the published one, or a copy of its ranker whose
    config.pbtxt carries the setup's batching settings."""
    if not setup.edits_config:
        return Path(repository)

    def edit(config) -> None:
        if setup.queue_delay_us is not None:
            config.dynamic_batching.max_queue_delay_microseconds = setup.queue_delay_us
        if setup.instances is not None:
            for group in config.instance_group:
                group.count = setup.instances
    return edited_copy(repository, Path(work) / f"repo-{setup.name}", edit)


def edited_copy(repository: Path, dst: Path, edit: Callable[[Any], None],
                model: str = "ranker") -> Path:
    """A repository at `dst` holding a copy of one model of `repository` (its versions too),
    whose config.pbtxt `edit` changed in place (a ModelConfig message); the published one is
    never touched."""
    from sentinel.triton_config import read_pbtxt, to_pbtxt
    shutil.copytree(Path(repository) / model, Path(dst) / model)
    path = Path(dst) / model / "config.pbtxt"
    config = read_pbtxt(path)
    edit(config)
    path.write_text(to_pbtxt(config))
    return Path(dst)
