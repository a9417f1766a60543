"""Which version of each model must serve: durable desired state in the model repository.

Per model, `<repository>/<model>/sentinel.json` holds the version that must serve, the rejected
versions (with reason and event id), the ordered known-good history (each entry with the baseline
the next version is judged against), the rollbacks carried out (what every sidecar's rate limit
and cooldown count), the version under watch, operator pin/freeze and a generation number. The
same decision is carried into `config.pbtxt` as `version_policy { specific }`, so a plain
`tritonserver` started on the repository serves the desired version without the sidecar.

This module is the only writer of both. Writes are atomic (temp file + fsync + rename), serialised
between processes by a lock on the model directory, and checked against the generation the
writer read (compare-and-swap), so two writers can never silently overwrite each other's decision.
The record and its transitions are pure; `DesiredStateStore` is the thin file shell."""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from sentinel.triton_config import ConfigFileError, read_pbtxt, to_pbtxt

STATE_FILE = "sentinel.json"
SCHEMA = 1
HISTORY_LIMIT = 50  # known-good and rejected entries kept per model (oldest dropped first)
# Rollbacks kept per model: the rate limit looks back one hour, and no limit worth setting lets
# more than this many through in an hour.
ROLLBACK_LIMIT = 50


class DesiredStateError(RuntimeError):
    """The state file cannot be read or written; the message names the file and the problem."""

    def __init__(self, path: Path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class StaleGeneration(DesiredStateError):
    """Compare-and-swap refused: someone else wrote a newer generation since it was read."""


@dataclass(frozen=True)
class KnownGood:
    version: str
    at: float
    by: str = "poller"
    # Signal summaries of this version while it served healthy (monitor.baseline.Baseline as a
    # dict): what a later version is judged against, also after a sidecar restart.
    baseline: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rejection:
    version: str
    at: float
    reason: str
    event_id: int | None = None
    by: str = "poller"


@dataclass(frozen=True)
class Rollback:
    """A rollback carried out through this state, by a sidecar's decision or an operator. Kept
    apart from `rejected`: redeploying a rejected version takes it off that list, and a version
    deployed and rolled back again and again is what the rate limit is for. Here, and not in one
    sidecar's memory, every replica and a restarted sidecar count the same rollbacks."""
    version: str          # rolled back from
    target: str | None    # what serves instead
    at: float
    by: str = "poller"


@dataclass(frozen=True)
class Watch:
    """A version that serves but was never known good: judged until it is, across restarts."""
    version: str
    since: float
    origin: str = "deploy"  # deploy | external | publish | adopted
    by: str = "poller"


@dataclass(frozen=True)
class Canary:
    """A version tried on part of the fleet, judged against the replicas that still serve
    `DesiredState.version` over the same minutes (monitor.canary). `replicas` are the sidecar
    identities whose Triton serves it; promotion adds replicas in steps until every one does."""
    version: str
    replicas: tuple[str, ...]
    size: int                      # replicas it started on
    since: float                   # when it was asked for
    phase: str = "running"         # running | promoting
    by: str = "operator"
    reason: str = ""
    policy: Mapping[str, Any] = field(default_factory=dict)  # overrides of the canary policy


@dataclass(frozen=True)
class DesiredState:
    model: str
    version: str | None
    generation: int = 0
    known_good: tuple[KnownGood, ...] = ()  # oldest first
    rejected: tuple[Rejection, ...] = ()
    watch: Watch | None = None
    pinned: str | None = None
    frozen: bool = False
    updated_at: float = 0.0
    updated_by: str = ""
    canary: Canary | None = None
    rollbacks: tuple[Rollback, ...] = ()  # oldest first, the last ROLLBACK_LIMIT

    # ------------------------------------------------------------ questions

    def target_for(self, replica: str) -> str | None:
        """The version `replica` must serve: the canary's on its replicas, else the fleet's."""
        if self.canary is not None and replica in self.canary.replicas:
            return self.canary.version
        return self.version

    def is_rejected(self, version: str | None) -> bool:
        return version is not None and any(r.version == version for r in self.rejected)

    def rejection(self, version: str) -> Rejection | None:
        return next((r for r in reversed(self.rejected) if r.version == version), None)

    def is_known_good(self, version: str | None) -> bool:
        return version is not None and any(k.version == version for k in self.known_good)

    @property
    def last_known_good(self) -> KnownGood | None:
        return next((k for k in reversed(self.known_good) if not self.is_rejected(k.version)), None)

    def rollback_target(self, away_from: str | None) -> str | None:
        """The newest version that was known good and has not been rejected since."""
        for k in reversed(self.known_good):
            if k.version != away_from and not self.is_rejected(k.version):
                return k.version
        return None

    def baseline_for(self, version: str | None) -> Mapping[str, Any]:
        """The baseline a version is judged against: the newest known good other than itself."""
        for k in reversed(self.known_good):
            if k.version != version and not self.is_rejected(k.version) and k.baseline:
                return k.baseline
        return {}


# ------------------------------------------------------------ pure transitions


def _next(state: DesiredState, now: float, by: str, **changes) -> DesiredState:
    return dataclasses.replace(state, generation=state.generation + 1, updated_at=now,
                               updated_by=by, **changes)


def initial(model: str, version: str | None, now: float, by: str,
            origin: str = "publish") -> DesiredState:
    watch = Watch(version, now, origin, by) if version is not None else None
    return DesiredState(model, version, generation=1, watch=watch, updated_at=now, updated_by=by)


def deploy(state: DesiredState, version: str, now: float, by: str,
           origin: str = "deploy") -> DesiredState:
    """Serve `version`, under watch until it is known good (a rejected one is taken off the list:
    deploying it again is an explicit operator decision)."""
    rejected = tuple(r for r in state.rejected if r.version != version)
    watch = None if state.is_known_good(version) and not state.is_rejected(version) \
        else Watch(version, now, origin, by)
    # A deploy to the whole fleet replaces any canary in progress.
    return _next(state, now, by, version=version, watch=watch, rejected=rejected, canary=None)


def reject(state: DesiredState, version: str, target: str | None, reason: str, now: float,
           by: str, event_id: int | None = None) -> DesiredState:
    """`version` must not serve again; `target` serves instead (None keeps the current one)."""
    entry = Rejection(version, now, reason[:1000], event_id, by)
    rejected = (tuple(r for r in state.rejected if r.version != version) + (entry,))[-HISTORY_LIMIT:]
    serve = target if target is not None else state.version
    watch = state.watch if state.watch is not None and state.watch.version == serve else None
    canary = state.canary if state.canary is not None and state.canary.version != version else None
    return _next(state, now, by, version=serve, rejected=rejected, watch=watch, canary=canary)


def roll_back(state: DesiredState, version: str, target: str | None, reason: str, now: float,
              by: str, event_id: int | None = None) -> DesiredState:
    """`reject`, and the rollback recorded for the rate limits (a failed load or an aborted canary
    is a rejection that no rate limit counts)."""
    rolled = reject(state, version, target, reason, now, by, event_id)
    entry = Rollback(version, rolled.version, now, by)  # what reject made serve instead
    return dataclasses.replace(rolled, rollbacks=(state.rollbacks + (entry,))[-ROLLBACK_LIMIT:])


def mark_known_good(state: DesiredState, version: str, now: float, by: str,
                    baseline: Mapping[str, Any] | None = None) -> DesiredState:
    entry = KnownGood(version, now, by, dict(baseline or {}))
    history = (tuple(k for k in state.known_good if k.version != version) + (entry,))[-HISTORY_LIMIT:]
    rejected = tuple(r for r in state.rejected if r.version != version)
    watch = None if state.watch is not None and state.watch.version == version else state.watch
    return _next(state, now, by, known_good=history, rejected=rejected, watch=watch)


def start_canary(state: DesiredState, version: str, replicas: tuple[str, ...], now: float, by: str,
                 reason: str = "", policy: Mapping[str, Any] | None = None) -> DesiredState:
    """Serve `version` on `replicas` only; the others keep `state.version`."""
    if not replicas:
        raise ValueError("a canary needs at least one replica")
    rejected = tuple(r for r in state.rejected if r.version != version)
    canary = Canary(version, tuple(replicas), len(replicas), now, "running", by, reason[:500],
                    dict(policy or {}))
    return _next(state, now, by, canary=canary, rejected=rejected)


def widen_canary(state: DesiredState, replicas: tuple[str, ...], now: float, by: str) -> DesiredState:
    """A promotion step: the canary passed and now serves on `replicas` as well."""
    assert state.canary is not None
    members = state.canary.replicas + tuple(r for r in replicas if r not in state.canary.replicas)
    canary = dataclasses.replace(state.canary, replicas=members, phase="promoting")
    return _next(state, now, by, canary=canary)


def finish_canary(state: DesiredState, now: float, by: str) -> DesiredState:
    """Promotion done: the canary's version is the fleet's, under watch until it is known good."""
    assert state.canary is not None
    version = state.canary.version
    watch = None if state.is_known_good(version) else Watch(version, now, "canary", by)
    return _next(state, now, by, version=version, watch=watch, canary=None)


def end_canary(state: DesiredState, now: float, by: str) -> DesiredState:
    """Abort without rejecting (too little evidence): every replica back to `state.version`."""
    return _next(state, now, by, canary=None)


def pin(state: DesiredState, version: str | None, now: float, by: str) -> DesiredState:
    return _next(state, now, by, pinned=version)


def freeze(state: DesiredState, frozen: bool, now: float, by: str) -> DesiredState:
    return _next(state, now, by, frozen=frozen)


# ------------------------------------------------------------ (de)serialisation


def to_dict(state: DesiredState) -> dict:
    out = dataclasses.asdict(state)
    out["schema"] = SCHEMA
    return out


def from_dict(data: Mapping[str, Any], path: Path) -> DesiredState:
    if not isinstance(data, Mapping):
        raise DesiredStateError(path, "not a JSON object")
    if int(data.get("schema", 0)) > SCHEMA:
        raise DesiredStateError(path, f"schema {data.get('schema')} is newer than this code ({SCHEMA})")
    try:
        watch = data.get("watch")
        version = data.get("version")
        return DesiredState(
            model=str(data["model"]),
            version=None if version is None else str(version),
            generation=int(data.get("generation", 0)),
            known_good=tuple(KnownGood(str(k["version"]), float(k["at"]), str(k.get("by", "")),
                                       dict(k.get("baseline") or {}))
                             for k in data.get("known_good", ())),
            rejected=tuple(Rejection(str(r["version"]), float(r["at"]), str(r.get("reason", "")),
                                     None if r.get("event_id") is None else int(r["event_id"]),
                                     str(r.get("by", "")))
                           for r in data.get("rejected", ())),
            watch=None if not watch else Watch(str(watch["version"]), float(watch["since"]),
                                               str(watch.get("origin", "deploy")),
                                               str(watch.get("by", ""))),
            pinned=None if data.get("pinned") is None else str(data["pinned"]),
            frozen=bool(data.get("frozen", False)),
            updated_at=float(data.get("updated_at", 0.0)),
            updated_by=str(data.get("updated_by", "")),
            canary=_canary(data.get("canary")),
            rollbacks=tuple(Rollback(str(r["version"]),
                                     None if r.get("target") is None else str(r["target"]),
                                     float(r["at"]), str(r.get("by", "")))
                            for r in data.get("rollbacks", ())),  # absent in older files
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DesiredStateError(path, f"malformed desired state: {exc!r}") from exc


def _canary(data: Any) -> Canary | None:
    if not data:
        return None
    replicas = data["replicas"]
    if not isinstance(replicas, list) or not all(isinstance(r, str) for r in replicas):
        raise TypeError("canary replicas must be a list of sidecar identities")
    return Canary(str(data["version"]), tuple(replicas), int(data.get("size", len(replicas))),
                  float(data["since"]), str(data.get("phase", "running")), str(data.get("by", "")),
                  str(data.get("reason", "")), dict(data.get("policy") or {}))


# ------------------------------------------------------------ the file shell


def atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a crash
    finally:
        os.close(dir_fd)


class DesiredStateStore:
    """Reads and writes desired state in one model repository."""

    def __init__(self, repository: Path, clock: Callable[[], float] = time.time):
        self.repository = Path(repository)
        self.clock = clock

    def path(self, model: str) -> Path:
        return self.repository / model / STATE_FILE

    def read(self, model: str) -> DesiredState | None:
        """The model's desired state, or None when none was ever written."""
        path = self.path(model)
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DesiredStateError(path, f"cannot read: {exc}") from exc
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise DesiredStateError(path, f"not valid JSON: {exc}") from exc
        return from_dict(data, path)

    @contextlib.contextmanager
    def _locked(self, model: str) -> Iterator[None]:
        model_dir = self.repository / model
        if not model_dir.is_dir():
            raise DesiredStateError(model_dir, "no such model directory in the repository")
        # flock on the directory itself: no lock file to leave behind, released if the holder dies.
        fd = os.open(model_dir, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def update(self, model: str, change: Callable[[DesiredState | None], DesiredState | None],
               expected_generation: int | None = None) -> DesiredState | None:
        """Read, apply `change`, write, all under the model's lock file. With `expected_generation`
        the write is refused (StaleGeneration) when the stored generation differs. `change` returning
        the state it was given (or None) writes nothing."""
        with self._locked(model):
            current = self.read(model)
            have = current.generation if current is not None else 0
            if expected_generation is not None and have != expected_generation:
                raise StaleGeneration(self.path(model), f"generation is {have}, expected "
                                                        f"{expected_generation}: decided elsewhere")
            new = change(current)
            if new is None or new == current:
                return current
            if new.generation <= have:
                raise DesiredStateError(self.path(model), "a new desired state needs a higher "
                                                          "generation than the stored one")
            atomic_write(self.path(model), json.dumps(to_dict(new), indent=2, sort_keys=True))
            self.apply_version_policy(model, new.version)
            return new

    def apply_version_policy(self, model: str, version: str | None) -> bool:
        """Make config.pbtxt name exactly `version` (what Triton loads at start); True if written."""
        config_path = self.repository / model / "config.pbtxt"
        try:
            config = read_pbtxt(config_path)
        except (OSError, ConfigFileError) as exc:
            raise DesiredStateError(config_path, f"cannot carry the desired version: {exc}") from exc
        wanted = [int(version)] if version is not None and str(version).isdigit() else []
        if not wanted:
            return False
        if config.HasField("version_policy") and config.version_policy.HasField("specific") \
                and list(config.version_policy.specific.versions) == wanted:
            return False
        config.version_policy.Clear()
        config.version_policy.specific.versions.extend(wanted)
        atomic_write(config_path, to_pbtxt(config))
        return True

    def policy_version(self, model: str) -> str | None:
        """The single version config.pbtxt pins, if it pins one."""
        config = read_pbtxt(self.repository / model / "config.pbtxt")
        if config.HasField("version_policy") and config.version_policy.HasField("specific") \
                and len(config.version_policy.specific.versions) == 1:
            return str(config.version_policy.specific.versions[0])
        return None

    def initialise_on_publish(self, model: str, published: str, before: list[int],
                              by: str = "build") -> DesiredState:
        """Publishing must not change what serves: a repository's first version becomes the desired
        one; later publications leave the desired version alone (deploy them with `sentinel deploy`).
        A repository built before desired state existed keeps what Triton served: the version its
        config pins, else its newest older version."""
        now = self.clock()
        pinned = self.policy_version(model) if before else None

        def change(current: DesiredState | None) -> DesiredState | None:
            if current is not None:
                return current
            serving = pinned or (str(max(before)) if before else published)
            return initial(model, serving, now, by, origin="publish")

        state = self.update(model, change)
        assert state is not None
        if state.version is not None:
            self.apply_version_policy(model, state.version)
        return state
