"""Feedback sums per (model, version, window of serving time), in memory and in SQLite.

A call's sums are written to SQLite (one transaction, upserting each touched window) before they
count in memory and before the API answers, so a restart loses no accepted event. Readers (the
poller, the pages) take a copy of the windows they need under a lock held only for memory work;
writes are serialised by a second lock that readers never wait on.

Memory is bounded by time, not traffic: windows older than `retention_s` are dropped, and each is a
fixed-size record (monitor.quality.QualityStats, about 3 KiB at most)."""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable, Mapping

from monitor.feedback import WindowKey
from monitor.quality import QualityStats, merged

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback_windows (
    model    TEXT NOT NULL,
    version  TEXT NOT NULL,
    start    REAL NOT NULL,
    stats    TEXT NOT NULL,
    PRIMARY KEY (model, version, start)
);
"""


class FeedbackStoreError(Exception):
    """The feedback database cannot be opened or written."""


class FeedbackStore:
    def __init__(self, path: str | Path = ":memory:", window_s: float = 300.0,
                 retention_s: float = 7 * 86400.0, clock: Callable[[], float] = time.time,
                 timeout_s: float = 5.0) -> None:
        self.path, self.window_s, self.retention_s, self.clock = str(path), window_s, retention_s, clock
        # (model, version) -> window start -> sums: reads touch one version's windows only.
        self._windows: dict[tuple[str, str], dict[float, QualityStats]] = {}
        self._lock = threading.Lock()        # memory only
        self._write_lock = threading.Lock()  # one writer at a time; readers never take it
        try:
            self._conn = sqlite3.connect(self.path, timeout=timeout_s, check_same_thread=False)
            if self.path != ":memory:":
                self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.executescript(_SCHEMA)
            rows = self._conn.execute("SELECT model, version, start, stats FROM feedback_windows "
                                      "WHERE start >= ?", (clock() - retention_s,)).fetchall()
        except sqlite3.DatabaseError as exc:
            raise FeedbackStoreError(f"cannot open feedback store {self.path}: {exc}") from exc
        for model, version, start, stats in rows:
            self._windows.setdefault((model, version), {})[float(start)] = \
                QualityStats.from_dict(json.loads(stats))

    def add(self, sums: Mapping[WindowKey, QualityStats]) -> None:
        """Persist then count one call's sums; raises FeedbackStoreError with nothing counted."""
        if not sums:
            return
        with self._write_lock:
            with self._lock:
                # New records, never the stored ones changed in place: readers hold references.
                updated = {(m, v, st): (self._get(m, v, st) or QualityStats()).copy().add(x)
                           for (m, v, st), x in sums.items()}
            try:
                with self._conn:
                    self._conn.executemany(
                        "INSERT OR REPLACE INTO feedback_windows (model, version, start, stats) "
                        "VALUES (?, ?, ?, ?)",
                        [(m, v, s, json.dumps(st.to_dict())) for (m, v, s), st in updated.items()])
                    self._conn.execute("DELETE FROM feedback_windows WHERE start < ?",
                                       (self.clock() - self.retention_s,))
            except sqlite3.Error as exc:
                raise FeedbackStoreError(f"cannot store feedback in {self.path}: {exc}") from exc
            cutoff = self.clock() - self.retention_s
            with self._lock:
                for (m, v, st), x in updated.items():
                    self._windows.setdefault((m, v), {})[st] = x
                for key, windows in list(self._windows.items()):
                    for st in [st for st in windows if st < cutoff]:
                        del windows[st]
                    if not windows:
                        del self._windows[key]

    def _get(self, model: str, version: str, start: float) -> QualityStats | None:
        return self._windows.get((model, version), {}).get(start)

    def stats(self, model: str, version: str, since: float | None = None,
              until: float | None = None) -> QualityStats:
        """Sums of the version's windows that start in [since, until)."""
        lo = -float("inf") if since is None else since
        hi = float("inf") if until is None else until
        with self._lock:  # references: a stored record is replaced, never changed (add)
            picked = [s for start, s in self._windows.get((model, version), {}).items()
                      if lo <= start < hi]
        return merged(picked)

    def windows(self, model: str, version: str) -> list[tuple[float, QualityStats]]:
        """The version's windows, oldest first; the records are shared: read them, do not add."""
        with self._lock:
            out = list(self._windows.get((model, version), {}).items())
        return sorted(out, key=lambda w: w[0])

    def versions(self, model: str | None = None) -> list[tuple[str, str]]:
        with self._lock:
            keys = {(m, v) for (m, v) in self._windows if model is None or m == model}
        return sorted(keys, key=lambda k: (k[0], int(k[1]) if k[1].isdigit() else -1))

    def latest_window(self, model: str, version: str) -> float | None:
        with self._lock:
            return max(self._windows.get((model, version), {}), default=None)

    def nbytes(self) -> int:
        with self._lock:
            return sum(s.pos.nbytes + s.neg.nbytes + 128 for w in self._windows.values()
                       for s in w.values())

    def close(self) -> None:
        with self._write_lock:
            self._conn.close()

