"""Real outcomes for the ranker's served lists: MovieLens users of the test period ranked through
Triton, and their real ratings (≥ 4 = a positive outcome) sent to the sidecar as feedback after a
delay, the way a click log catches up with serving. The demo's `quality` scenario and the quality
integration tests use it; nothing here judges anything."""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from sentinel.client import FeedbackClient, FeedbackError, RankerClient


@dataclass(frozen=True)
class LabelledList:
    user: int
    items: np.ndarray      # items the user rated in the test period
    labels: np.ndarray     # 1 where the rating was ≥ 4
    timestamp: int


def labelled_lists(test, max_items: int = 16, min_items: int = 2) -> list[LabelledList]:
    """One list per test-period user: the items they rated then, with the real outcome of each.
    `test` is a build_scripts.movielens.Ratings (the ranker's held-out period)."""
    out = []
    order = np.argsort(test.user, kind="stable")
    users, starts = np.unique(test.user[order], return_index=True)
    ends = np.r_[starts[1:], order.size]
    for u, a, b in zip(users, starts, ends):
        idx = order[a:b][:max_items]
        if idx.size < min_items:
            continue
        out.append(LabelledList(int(u), test.item[idx].astype(np.int64),
                                (test.rating[idx] >= 4).astype(np.int64),
                                int(test.timestamp[idx].max())))
    return out


def feedback_events(model: str, version: str, scores: np.ndarray, lst: LabelledList,
                    served_at: float, list_id: str) -> list[dict]:
    """The feedback events of one served list: shown in descending score order (rank 1 first)."""
    rank = np.empty(scores.size, np.int64)
    rank[np.argsort(-scores, kind="stable")] = np.arange(1, scores.size + 1)
    return [{"model": model, "version": version, "score": float(s), "label": int(y),
             "ts": served_at, "list_id": list_id, "rank": int(r), "item": int(i)}
            for s, y, r, i in zip(scores, lst.labels, rank, lst.items)]


@dataclass
class FeedbackReplayer:
    """Ranks `lists` through Triton at `lists_per_s` and posts their outcomes `delay_s` later."""

    grpc_url: str
    feedback: FeedbackClient
    lists: Sequence[LabelledList]
    lists_per_s: float = 10.0
    delay_s: float = 5.0
    model: str = "ranker"
    seed: int = 0
    clock: Callable[[], float] = time.time

    def __post_init__(self):
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.lists_served = 0
        self.events_sent = 0
        self.rejected: list[dict] = []
        self.errors: list[str] = []
        self.by_version: collections.Counter = collections.Counter()
        # (served_at, version, scores, labels) of recent lists: the client's own view of quality
        # per period, for the demo's report (bounded).
        self.served_log: collections.deque = collections.deque(maxlen=100_000)

    def start(self) -> "FeedbackReplayer":
        self._thread = threading.Thread(target=self._run, name="feedback-replay", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        rng = np.random.default_rng(self.seed)
        client = RankerClient(self.grpc_url, "grpc", model=self.model, timeout_s=10)
        pending: collections.deque = collections.deque()  # (due, events)
        period = 1.0 / self.lists_per_s
        next_at = time.monotonic()
        n = 0
        try:
            while not self._stop.is_set():
                lst = self.lists[int(rng.integers(len(self.lists)))]
                served_at = self.clock()
                try:
                    result = client.client.infer(self.model, client.inputs(lst.user, lst.items),
                                                 client_timeout=10)
                    version = result.get_response().model_version
                    scores = result.as_numpy("scores").reshape(-1)
                    n += 1
                    pending.append((served_at + self.delay_s, feedback_events(
                        self.model, version, scores, lst, served_at, f"{self.seed}-{n}")))
                    with self._lock:
                        self.lists_served += 1
                        self.by_version[version] += 1
                        self.served_log.append((served_at, version, scores, lst.labels))
                except Exception as exc:  # a failed request has no outcome to report
                    with self._lock:
                        self.errors.append(str(exc)[:200])
                self._flush(pending, self.clock())
                next_at += period
                self._stop.wait(max(0.0, next_at - time.monotonic()))
        finally:
            client.close()

    def _flush(self, pending: collections.deque, now: float) -> None:
        due = []
        while pending and pending[0][0] <= now:
            due.extend(pending.popleft()[1])
        if not due:
            return
        try:
            accepted, rejected = self.feedback.send(due)
        except (FeedbackError, OSError) as exc:
            with self._lock:
                self.errors.append(f"feedback: {exc}"[:300])
            return
        with self._lock:
            self.events_sent += accepted
            self.rejected += rejected

    def snapshot(self) -> dict:
        with self._lock:
            return {"lists_served": self.lists_served, "events_sent": self.events_sent,
                    "rejected": len(self.rejected), "errors": len(self.errors),
                    "by_version": dict(self.by_version)}


def online_auc(log, version: str, since: float = 0.0, until: float = float("inf")) -> tuple[float, int]:
    """AUC (and the number of outcomes) of the lists `version` served in [since, until), from a
    replayer's served_log, with the sidecar's own statistic (monitor.quality)."""
    from monitor.quality import auc, pointwise
    rows = [(s, y) for ts, v, s, y in log if v == version and since <= ts < until]
    if not rows:
        return float("nan"), 0
    scores = np.concatenate([s for s, _ in rows])
    labels = np.concatenate([y for _, y in rows]).astype(float)
    return auc(pointwise(scores, labels))[0], int(scores.size)
