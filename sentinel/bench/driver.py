"""Closed-loop load: `concurrency` threads, each sending its next request as soon as the previous
answer arrived, for a warm-up and then a measured window."""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from sentinel.bench.results import ServeCell

# call(i) sends request i (an index into the pre-encoded set) and raises on any failure.
Call = Callable[[int], None]


@dataclass(frozen=True)
class Completion:
    end: float
    latency_s: float
    ok: bool


def _process_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def run_closed_loop(call: Call, n_payloads: int, concurrency: int, duration_s: float,
                    warmup_s: float = 1.0, on_edge: Callable[[str], None] | None = None
                    ) -> tuple[list[Completion], float, float]:
    """(completions inside the measured window, window seconds, client CPU seconds in the window).
    on_edge("start") runs just before the window opens and on_edge("end") just after it closes
    (outside the client's CPU reading): where a caller reads the server's counters."""
    start = time.perf_counter()
    t0, t1 = start + warmup_s, start + warmup_s + duration_s
    per_thread: list[list[Completion]] = [[] for _ in range(concurrency)]
    cpu_at: dict[str, float] = {}

    def worker(k: int) -> None:
        out = per_thread[k]
        i = k
        while True:
            begin = time.perf_counter()
            if begin >= t1:
                return
            try:
                call(i % n_payloads)
                ok = True
            except Exception:  # a failed request is data for the table, never the end of the run
                ok = False
            end = time.perf_counter()
            if end >= t0:
                out.append(Completion(end, end - begin, ok))
            i += concurrency

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(concurrency)]
    for t in threads:
        t.start()
    # Client CPU is read at the window's edges, from this thread, which only sleeps.
    time.sleep(max(0.0, t0 - time.perf_counter()))
    if on_edge:
        on_edge("start")
    cpu_at["start"] = _process_cpu_s()
    time.sleep(max(0.0, t1 - time.perf_counter()))
    cpu_at["end"] = _process_cpu_s()
    if on_edge:
        on_edge("end")
    for t in threads:
        t.join(timeout=60)
    done = [c for out in per_thread for c in out if c.end < t1]
    return done, duration_s, cpu_at["end"] - cpu_at["start"]


def measure(target: str, call: Call, n_payloads: int, candidates: int, concurrency: int,
            duration_s: float, warmup_s: float = 1.0,
            on_edge: Callable[[str], None] | None = None) -> ServeCell:
    done, seconds, cpu_s = run_closed_loop(call, n_payloads, concurrency, duration_s, warmup_s,
                                           on_edge)
    ok = np.array([c.latency_s for c in done if c.ok])
    n_ok = int(ok.size)
    p50, p99 = (np.percentile(ok, [50, 99]) * 1e3).tolist() if n_ok else (float("nan"),) * 2
    return ServeCell(target=target, candidates=candidates, concurrency=concurrency,
                     requests=n_ok, errors=len(done) - n_ok, seconds=seconds,
                     rps=n_ok / seconds, ips=n_ok * candidates / seconds, p50_ms=p50, p99_ms=p99,
                     client_cpu_us=cpu_s / n_ok * 1e6 if n_ok else float("nan"))
