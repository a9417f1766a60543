"""Who decides for the fleet: a lease with one holder at a time, behind one small interface.

Replicas share one model repository; every sidecar judges its own Triton and reconciles it to the
desired state, but only the sidecar holding the lease acts on decisions (writes the desired state).
The lease comes from an existing engine (etcd, a Kubernetes Lease, or a lock file on one host);
`monitor.lease_config.make_lease` picks one from the config, and `NoLease` (the default) keeps a single sidecar deciding
alone as before.

Safety rests on two things. (1) A holder believes it holds the lease only until its last confirmed
grant or renewal is `ttl` old, measured from when the request was *sent* (monotonic clock): the
engine cannot expire the lease earlier than that, so by the time another sidecar can take it, the
old holder has stopped acting. (2) Even so (a paused process, clocks running at different rates),
every decision is written with compare-and-swap on the desired state's generation
(`sentinel.desired_state`), so two holders can never write conflicting decisions."""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol

from sentinel.desired_state import atomic_write

BACKENDS = ("none", "file", "etcd", "kubernetes")
LEASE_FILE = ".sentinel-lease.json"


@dataclass(frozen=True)
class LeaseStatus:
    backend: str
    identity: str                 # this sidecar
    held: bool                    # this sidecar may act now
    holder: str | None = None     # who holds it, as far as the engine said (None: nobody / unknown)
    error: str | None = None      # the engine could not be asked; nobody new can take the lease
    ttl_s: float | None = None


class Lease(Protocol):
    backend: str
    identity: str
    ttl_s: float

    def acquire(self) -> LeaseStatus:
        """Take the lease when nobody holds it (or the holder's expired); renew it when held."""

    def renew(self) -> LeaseStatus:
        """Extend a lease this sidecar holds; not held afterwards when it was lost."""

    def release(self) -> None:
        """Give the lease up at once (a clean stop), so that another takes it without waiting."""

    def holder(self) -> LeaseStatus:
        """Who holds the lease now (one read, changes nothing)."""

    def held(self) -> bool:
        """No I/O: True while this sidecar's last confirmed renewal is younger than the TTL."""


class LeaseError(RuntimeError):
    """The lease engine could not be reached or answered with an error; the message says which."""


class _Validity:
    """The local half of a lease: held until `sent + ttl` of the last confirmed grant/renewal."""

    def __init__(self, monotonic: Callable[[], float]):
        self.monotonic = monotonic
        self.until = float("-inf")

    def confirm(self, sent_at: float, ttl_s: float) -> None:
        self.until = sent_at + ttl_s

    def drop(self) -> None:
        self.until = float("-inf")

    def held(self) -> bool:
        return self.monotonic() < self.until


class NoLease:
    """One sidecar, no coordination: it always decides (the behaviour before fleets)."""

    backend = "none"
    ttl_s = float("inf")

    def __init__(self, identity: str = "poller"):
        self.identity = identity

    def _status(self) -> LeaseStatus:
        return LeaseStatus(self.backend, self.identity, True, self.identity)

    def acquire(self) -> LeaseStatus:
        return self._status()

    renew = holder = acquire

    def release(self) -> None:
        pass

    def held(self) -> bool:
        return True


class FileLease:
    """A lease file on a shared file system for replicas on one host: `{holder, expires_at}`,
    read and replaced atomically under an flock of its directory. Expiry is wall-clock time, which
    every process on one host shares; a holder that dies stops renewing and is replaced once its
    `expires_at` has passed. (An flock held for the holder's lifetime alone would never expire a
    holder that hangs.)"""

    backend = "file"

    def __init__(self, path: Path, identity: str, ttl_s: float,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic):
        self.path, self.identity, self.ttl_s = Path(path), identity, float(ttl_s)
        self.clock = clock
        self._valid = _Validity(monotonic)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released by close, also when the process dies
            yield
        finally:
            os.close(fd)

    def _read(self) -> dict | None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            return None  # a torn or foreign file holds nobody; the next write replaces it
        return data if isinstance(data, dict) else None

    def _status(self, holder: str | None, error: str | None = None) -> LeaseStatus:
        return LeaseStatus(self.backend, self.identity, self.held(), holder, error, self.ttl_s)

    def acquire(self) -> LeaseStatus:
        sent = self._valid.monotonic()
        try:
            with self._locked():
                record, now = self._read(), self.clock()
                holder = record.get("holder") if record else None
                live = record is not None and float(record.get("expires_at", 0)) > now
                if live and holder != self.identity:
                    self._valid.drop()
                    return self._status(str(holder))
                transitions = int(record.get("transitions", 0)) if record else 0
                atomic_write(self.path, json.dumps({
                    "holder": self.identity, "expires_at": now + self.ttl_s, "renewed_at": now,
                    "ttl_s": self.ttl_s,
                    "transitions": transitions + (0 if holder == self.identity else 1)}))
        except OSError as exc:
            return self._status(None, f"lease file {self.path}: {exc}")
        self._valid.confirm(sent, self.ttl_s)
        return self._status(self.identity)

    def renew(self) -> LeaseStatus:
        if not self.held():
            return self.holder()
        return self.acquire()

    def release(self) -> None:
        self._valid.drop()
        with contextlib.suppress(OSError), self._locked():
            record = self._read()
            if record and record.get("holder") == self.identity:
                self.path.unlink()

    def holder(self) -> LeaseStatus:
        try:
            record = self._read()
        except OSError as exc:
            return self._status(None, f"lease file {self.path}: {exc}")
        live = record is not None and float(record.get("expires_at", 0)) > self.clock()
        return self._status(str(record["holder"]) if live else None)

    def held(self) -> bool:
        return self._valid.held()
