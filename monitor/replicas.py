"""Who is in the fleet: each sidecar's heartbeat file in the shared model repository.

A canary needs to know which replicas exist (to pick K of them and to promote to the rest), the
holder needs every replica's Triton metrics URL when no Prometheus is configured, and the fleet
page shows which replica serves what. Every sidecar writes its own file once per cycle,
`<repository>/.sentinel-replica.<identity>.json` (a plain file at the repository's top level:
Triton's repository index lists directories only), with what its Triton serves; a replica whose
file is older than `stale_after_s` is no longer counted (it died or lost the volume).

Each replica writes only its own file, atomically, so there is nothing to lock; readers take the
files as they are."""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from sentinel.desired_state import atomic_write

PREFIX = ".sentinel-replica."
_SAFE = re.compile(r"[^A-Za-z0-9_.@-]")


@dataclass(frozen=True)
class Replica:
    identity: str
    url: str                                 # its Triton's /metrics, for the holder's evidence
    at: float                                # last heartbeat
    serves: Mapping[str, str | None] = field(default_factory=dict)  # model -> READY version
    holder: bool = False
    switches: Mapping[str, Mapping] = field(default_factory=dict)  # model -> its last switch


def file_name(identity: str) -> str:
    return f"{PREFIX}{_SAFE.sub('_', identity)}.json"


class ReplicaRegistry:
    def __init__(self, repository: Path, identity: str, url: str,
                 clock: Callable[[], float] = time.time, stale_after_s: float = 15.0):
        self.repository = Path(repository)
        self.identity, self.url = identity, url
        self.clock = clock
        self.stale_after_s = stale_after_s
        self._last: tuple | None = None
        self._last_at = float("-inf")

    @property
    def path(self) -> Path:
        return self.repository / file_name(self.identity)

    def beat(self, serves: Mapping[str, str | None], holder: bool,
             switches: Mapping[str, Mapping] | None = None) -> None:
        """Write this replica's heartbeat (file I/O: call without the poller's lock). Skipped when
        nothing changed and the last write is younger than a third of the staleness limit."""
        now = self.clock()
        switches = dict(switches or {})
        content = (json.dumps(dict(serves), sort_keys=True), holder,
                   json.dumps(switches, sort_keys=True))
        if content == self._last and now - self._last_at < self.stale_after_s / 3:
            return
        atomic_write(self.path, json.dumps({"identity": self.identity, "url": self.url, "at": now,
                                            "serves": dict(serves), "holder": holder,
                                            "switches": switches}))
        self._last, self._last_at = content, now

    def members(self) -> list[Replica]:
        """Every replica with a fresh heartbeat, this one included, sorted by identity."""
        now, out = self.clock(), []
        for path in sorted(self.repository.glob(f"{PREFIX}*.json")):
            try:
                data = json.loads(path.read_text())
                replica = Replica(str(data["identity"]), str(data.get("url", "")),
                                  float(data["at"]), dict(data.get("serves") or {}),
                                  bool(data.get("holder", False)),
                                  dict(data.get("switches") or {}))
            except (OSError, ValueError, KeyError, TypeError):
                continue  # being replaced, or not ours: the next cycle reads it again
            if now - replica.at <= self.stale_after_s:
                out.append(replica)
        return sorted(out, key=lambda r: r.identity)

    def leave(self) -> None:
        """A clean stop: the replica leaves the fleet at once rather than after going stale."""
        try:
            self.path.unlink()
        except OSError:
            pass
