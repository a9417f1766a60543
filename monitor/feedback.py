"""Feedback events in: validation, one event at a time, and their sums per (model, version, window).

An event is one served prediction and its outcome:
`{"model", "version", "score", "label", "ts"?, "request_id"?, "item"?, "list_id"?, "rank"?}`.
A bad event is rejected with its index and the reason; the others are kept. Events of one call that
share (model, version, list_id) form one ranked list (send a list's events in one call). Pure: the
caller says which versions exist and what time it is."""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from monitor.quality import QualityStats, pointwise, ranked_list

MAX_EVENTS = 10_000
MAX_LABEL = 100.0       # graded relevance; clicks and purchases are 0/1
FUTURE_SLACK_S = 300.0  # clocks of the clients and the sidecar disagree by this much at most
_FIELDS = {"model", "version", "score", "label", "ts", "request_id", "item", "list_id", "rank"}
_ID_FIELDS = ("request_id", "item", "list_id")


class FeedbackError(ValueError):
    """The call as a whole is unusable (not a batch of events, too many events); nothing is kept.
    `status` is the HTTP status the API answers with."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class FeedbackEvent:
    model: str
    version: str
    score: float
    label: float
    ts: float           # when the prediction was served (defaults to arrival)
    list_id: str | None = None
    rank: int | None = None


@dataclass(frozen=True)
class Rejection:
    index: int
    reason: str


@dataclass(frozen=True)
class ParsedBatch:
    events: tuple[FeedbackEvent, ...]
    rejected: tuple[Rejection, ...]


def parse_batch(body: Any, now: float, known: Callable[[str, str], str | None],
                retention_s: float) -> ParsedBatch:
    """`known(model, version)` returns None for a version that exists, else why it does not."""
    if not isinstance(body, Mapping) or not isinstance(body.get("events"), list):
        raise FeedbackError('body must be a JSON object {"events": [...]}')
    raw = body["events"]
    if len(raw) > MAX_EVENTS:
        raise FeedbackError(f"{len(raw)} events in one call; at most {MAX_EVENTS}: split the batch",
                            status=413)
    events, rejected = [], []
    checked: dict[tuple[str, str], str | None] = {}
    for i, item in enumerate(raw):
        try:
            event = _event(item, now, retention_s)
        except ValueError as exc:
            rejected.append(Rejection(i, str(exc)))
            continue
        key = (event.model, event.version)
        if key not in checked:
            checked[key] = known(*key)
        if checked[key] is not None:
            rejected.append(Rejection(i, checked[key]))
            continue
        events.append(event)
    return ParsedBatch(tuple(events), tuple(rejected))


def _event(item: Any, now: float, retention_s: float) -> FeedbackEvent:
    if not isinstance(item, Mapping):
        raise ValueError("an event must be a JSON object")
    unknown = sorted(set(item) - _FIELDS)
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; known: {sorted(_FIELDS)}")
    for name in ("model", "version"):
        if not isinstance(item.get(name), str) or not item[name]:
            raise ValueError(f"'{name}' must be a non-empty string")
    if not item["version"].isdigit():
        raise ValueError(f"'version' must be a version number such as \"2\", got {item['version']!r}")
    score = _number(item, "score")
    label = _number(item, "label")
    if not 0 <= label <= MAX_LABEL:
        raise ValueError(f"'label' must be in [0, {MAX_LABEL:g}] (1/0 for an outcome, or a graded "
                         f"relevance), got {label}")
    ts = _number(item, "ts") if item.get("ts") is not None else now
    if ts > now + FUTURE_SLACK_S:
        raise ValueError(f"'ts' {ts:.0f} is in the future (now {now:.0f})")
    if ts < now - retention_s:
        raise ValueError(f"'ts' {ts:.0f} is older than the feedback retention "
                         f"({retention_s:g} s): its window is gone")
    for name in _ID_FIELDS:
        value = item.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int))):
            raise ValueError(f"'{name}' must be a string or an integer")
    rank = item.get("rank")
    if rank is not None and (not isinstance(rank, int) or isinstance(rank, bool) or rank < 1):
        raise ValueError("'rank' must be an integer ≥ 1 (1 = shown first)")
    list_id = item.get("list_id")
    return FeedbackEvent(item["model"], item["version"], score, label, ts,
                         None if list_id is None else str(list_id), rank)


def _number(item: Mapping, name: str) -> float:
    value = item.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"'{name}' must be a number")
    if not math.isfinite(value):
        raise ValueError(f"'{name}' must be finite")
    return float(value)


def window_of(ts: float, window_s: float) -> float:
    return math.floor(ts / window_s) * window_s


WindowKey = tuple[str, str, float]  # (model, version, window start)


def sums(events: Sequence[FeedbackEvent], window_s: float) -> dict[WindowKey, QualityStats]:
    """The events' sums per window of serving time. A list belongs to the window of its first
    event (its events were served together)."""
    out: dict[WindowKey, QualityStats] = {}
    groups: dict[WindowKey, list[FeedbackEvent]] = defaultdict(list)
    lists: dict[tuple[str, str, str], list[FeedbackEvent]] = defaultdict(list)
    for e in events:
        groups[(e.model, e.version, window_of(e.ts, window_s))].append(e)
        if e.list_id is not None:
            lists[(e.model, e.version, e.list_id)].append(e)
    for key, group in groups.items():
        out[key] = pointwise(np.array([e.score for e in group]), np.array([e.label for e in group]))
    for (model, version, _), members in lists.items():
        key = (model, version, window_of(members[0].ts, window_s))
        out[key].add(ranked_list([e.score for e in members], [e.label for e in members],
                                 [e.rank for e in members]))
    return out
