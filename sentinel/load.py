"""A steady ranking load over gRPC: MovieLens users × candidate items, from several client threads.
Records every request's time, outcome and served version, so tests and the demo can say exactly
how many requests failed and when."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

from sentinel.client import RankerClient


@dataclass(frozen=True)
class RequestRecord:
    ts: float
    ok: bool
    latency_s: float
    version: str | None
    error: str | None = None


@dataclass
class LoadGenerator:
    grpc_url: str
    clients: int = 4
    rate_per_client: float = 20.0   # requests per second per client thread; 0 = as fast as possible
    candidates: int = 64
    n_users: int = 943
    n_items: int = 1682
    seed: int = 0
    # Candidates are drawn from this pool when set (else every item): a scenario moves it to shift
    # the traffic's inputs while it runs (the demo's `drift`).
    item_pool: np.ndarray | None = None
    records: list[RequestRecord] = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def _worker(self, k: int) -> None:
        rng = np.random.default_rng(self.seed + k)
        client = RankerClient(self.grpc_url, "grpc", timeout_s=10)
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                user = int(rng.integers(1, self.n_users + 1))
                pool = self.item_pool
                items = rng.integers(1, self.n_items + 1, size=self.candidates) if pool is None \
                    else rng.choice(pool, size=self.candidates)
                start = time.perf_counter()
                ts = time.time()
                try:
                    result = client.client.infer("ranker", client.inputs(user, items),
                                                 client_timeout=10)
                    params = result.get_response().model_version
                    rec = RequestRecord(ts, True, time.perf_counter() - start, params or None)
                except Exception as exc:  # every failure is data for the report
                    rec = RequestRecord(ts, False, time.perf_counter() - start, None, str(exc)[:200])
                with self._lock:
                    self.records.append(rec)
                # Read every time: a test or scenario may ramp the load while it runs.
                period = 1.0 / self.rate_per_client if self.rate_per_client else 0.0
                if period:
                    next_at += period
                    self._stop.wait(max(0.0, next_at - time.monotonic()))
        finally:
            client.close()

    def start(self) -> "LoadGenerator":
        self._threads = [threading.Thread(target=self._worker, args=(k,), daemon=True,
                                          name=f"load-{k}") for k in range(self.clients)]
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=15)

    def snapshot(self) -> list[RequestRecord]:
        with self._lock:
            return list(self.records)

    def failures(self, since: float = 0.0, until: float = float("inf")) -> int:
        return sum(1 for r in self.snapshot() if not r.ok and since <= r.ts < until)

    def served(self, since: float = 0.0, until: float = float("inf")) -> int:
        return sum(1 for r in self.snapshot() if r.ok and since <= r.ts < until)

    def __enter__(self) -> "LoadGenerator":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
