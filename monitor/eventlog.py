"""Persisted event log (SQLite): every observation that led to an action, every action and outcome."""
from __future__ import annotations

import dataclasses
import json
import math
import numbers
import sqlite3
import threading
from pathlib import Path
from typing import Any, Mapping

from monitor.types import Decision, Event

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    ts       REAL NOT NULL,
    model    TEXT NOT NULL,
    version  TEXT,
    kind     TEXT NOT NULL,
    phase    TEXT,
    action   TEXT,
    reason   TEXT NOT NULL,
    evidence TEXT NOT NULL,
    actor    TEXT NOT NULL,
    outcome  TEXT
);
CREATE INDEX IF NOT EXISTS events_model_ts ON events (model, ts);
CREATE INDEX IF NOT EXISTS events_kind_ts ON events (kind, ts);
"""
_COLUMNS = "id, ts, model, version, kind, phase, action, reason, evidence, actor, outcome"


class EventLogError(Exception):
    """The log cannot be opened (newer schema, not a database) or an event cannot be stored."""


class EventLog:
    """Append-only log. One connection guarded by a lock: the poller thread writes while web threads
    read, and ":memory:" only exists inside a single connection."""

    def __init__(self, path: str | Path = ":memory:", timeout_s: float = 5.0) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(self.path, timeout=timeout_s, check_same_thread=False)
            if self.path != ":memory:":
                # WAL lets web workers in other processes read while the poller writes.
                self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.executescript(_SCHEMA)
            self._check_schema()
        except sqlite3.DatabaseError as exc:
            raise EventLogError(f"cannot open event log {self.path}: {exc}") from exc

    def _check_schema(self) -> None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if row is None:
            with self._conn:
                self._conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
        elif int(row[0]) > SCHEMA_VERSION:
            raise EventLogError(
                f"event log {self.path} has schema version {row[0]}, newer than this code ({SCHEMA_VERSION})"
            )

    @property
    def schema_version(self) -> int:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0])

    def append(self, event: Event) -> int:
        """Store an event; returns its id."""
        try:
            evidence = json.dumps(_jsonable(event.evidence), allow_nan=False, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise EventLogError(f"evidence of a {event.kind} event is not JSON-serialisable: {exc}") from exc
        values = (
            event.ts, event.model, event.version, event.kind, event.phase, event.action,
            event.reason, evidence, event.actor, event.outcome,
        )
        with self._lock, self._conn:
            cur = self._conn.execute(
                "INSERT INTO events (ts, model, version, kind, phase, action, reason, evidence, actor, outcome)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )
            return int(cur.lastrowid)

    def list(
        self,
        model: str | None = None,
        kind: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100,
    ) -> list[Event]:
        """Newest first. `since` is inclusive, `until` exclusive."""
        where, params = [], []
        for clause, value in (("model = ?", model), ("kind = ?", kind), ("ts >= ?", since), ("ts < ?", until)):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = f"SELECT {_COLUMNS} FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY ts DESC, id DESC LIMIT ?"
        params.append(max(0, int(limit)))
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        return [_event(row) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def event_from_decision(decision: Decision, actor: str = "poller", outcome: str | None = None) -> Event:
    """The event that records a decision, with its evidence as plain JSON-able data."""
    return Event(
        ts=decision.ts,
        model=decision.model,
        version=decision.served_version,
        kind="decision",
        phase=decision.phase,
        action=decision.action,
        reason=decision.reason,
        evidence={
            "target_version": decision.target_version,
            "items": [{"type": type(e).__name__, **dataclasses.asdict(e)} for e in decision.evidence],
        },
        actor=actor,
        outcome=outcome,
    )


def _jsonable(value: Any) -> Any:
    # Detector fields are often NaN (no p-value for a method); JSON has no NaN, so they become null.
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, numbers.Integral):  # numpy integers
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else None
    return value  # anything else is refused by json.dumps with a message naming its type


def _event(row: tuple) -> Event:
    id_, ts, model, version, kind, phase, action, reason, evidence, actor, outcome = row
    return Event(
        ts=ts, model=model, version=version, kind=kind, phase=phase, action=action, reason=reason,
        evidence=json.loads(evidence), actor=actor, outcome=outcome, id=id_,
    )
