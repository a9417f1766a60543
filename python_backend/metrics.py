"""Custom metrics the monitor needs and Triton cannot see: the score distribution, NaN/Inf outputs
and requests answered with an error response (Triton counts those as successes)."""
from __future__ import annotations

import os
import time
from typing import Any, Callable

import numpy as np

from python_backend.resources import ProcessUsage, read_process_usage

SCORE_BUCKETS = [round(0.05 * i, 2) for i in range(1, 21)]
# Every pb_utils metric call is a round trip from the stub to the server (~40 µs measured), which
# at one call per score would cost more than the model run. So counts are accumulated locally and
# flushed at most every FLUSH_INTERVAL_S, and the histogram gets a strided sample of the scores
# seen since the last flush (unbiased for the mean and spread the monitor derives from it).
# The flush runs inside execute() and blocks it: under load on 2 cores a round trip took ~180 µs
# and flushing every 100 ms held the instance 12 % of the time (py-spy, `sentinel bench serve`).
# Every 250 ms still gives the 1 s sidecar scrape fresh counts and ~256 sampled scores per second
# per instance.
FLUSH_INTERVAL_S = 0.25
MAX_OBSERVED_PER_FLUSH = 64

SCORE = "sentinel_output_score"
NONFINITE = "sentinel_output_nonfinite_total"
ERRORS = "sentinel_request_errors_total"
REQUESTS = "sentinel_requests_total"
ROWS = "sentinel_output_rows_total"
# Per stub (an instance label: each model instance is its own process, and two stubs writing one
# gauge would overwrite each other; the sidecar sums the instances of a version).
STUB_MEMORY = "sentinel_stub_resident_memory_bytes"
STUB_CPU = "sentinel_stub_cpu_seconds_total"


class BackendMetrics:
    """Wraps pb_utils.MetricFamily; `pb_utils=None` gives a no-op (unit tests, no server)."""

    def __init__(self, pb_utils: Any | None, model: str, version: str,
                 clock: Callable[[], float] = time.monotonic,
                 flush_interval_s: float = FLUSH_INTERVAL_S, instance: str | None = None,
                 usage: Callable[[], ProcessUsage] | None = read_process_usage):
        self._labels = {"model": model, "version": version}
        # usage=None turns the resource metrics off (the benchmark's "off" arm).
        self._usage = usage
        self._cpu_reported = 0.0
        self._enabled = pb_utils is not None
        self._clock = clock
        self._interval = flush_interval_s
        self._last_flush = clock()
        self._requests = self._rows = self._nonfinite = 0
        self._errors: dict[str, int] = {}
        self._samples: list[np.ndarray] = []
        if not self._enabled:
            return
        mf = pb_utils.MetricFamily
        score = mf(name=SCORE, description="Sampled output scores", kind=mf.HISTOGRAM)
        nonfinite = mf(name=NONFINITE, description="NaN or Inf output values", kind=mf.COUNTER)
        self._errors_family = mf(name=ERRORS, description="Requests answered with an error, by reason",
                                 kind=mf.COUNTER)
        requests = mf(name=REQUESTS, description="Requests handled by model.py", kind=mf.COUNTER)
        rows = mf(name=ROWS, description="Output scores returned", kind=mf.COUNTER)
        self._families = [score, nonfinite, self._errors_family, requests, rows]
        self._m_score = score.Metric(labels=self._labels, buckets=SCORE_BUCKETS)
        self._m_nonfinite = nonfinite.Metric(labels=self._labels)
        self._m_requests = requests.Metric(labels=self._labels)
        self._m_rows = rows.Metric(labels=self._labels)
        self._m_errors: dict[str, Any] = {}
        if usage is not None:
            stub = {**self._labels, "instance": instance or f"pid{os.getpid()}"}
            memory = mf(name=STUB_MEMORY, description="Resident memory of the stub process",
                        kind=mf.GAUGE)
            cpu = mf(name=STUB_CPU, description="CPU seconds (user + system) of the stub process",
                     kind=mf.COUNTER)
            self._families += [memory, cpu]
            self._m_memory = memory.Metric(labels=stub)
            self._m_cpu = cpu.Metric(labels=stub)

    def request(self) -> None:
        self._requests += 1

    def error(self, reason: str) -> None:
        self._errors[reason] = self._errors.get(reason, 0) + 1

    def scores(self, scores: np.ndarray) -> None:
        if scores.size == 0:
            return
        finite = np.isfinite(scores)
        self._nonfinite += int(scores.size - np.count_nonzero(finite))
        self._rows += int(scores.size)
        self._samples.append(scores[finite])

    def maybe_flush(self) -> None:
        """Call at the end of each execute(); pushes accumulated counts when the interval passed."""
        if self._clock() - self._last_flush >= self._interval:
            self.flush()

    def flush(self) -> None:
        self._last_flush = self._clock()
        if not self._enabled:
            self._reset()
            return
        if self._requests:
            self._m_requests.increment(self._requests)
        if self._rows:
            self._m_rows.increment(self._rows)
        if self._nonfinite:
            self._m_nonfinite.increment(self._nonfinite)
        for reason, n in self._errors.items():
            metric = self._m_errors.get(reason)
            if metric is None:
                metric = self._errors_family.Metric(labels={**self._labels, "reason": reason})
                self._m_errors[reason] = metric
            metric.increment(n)
        for value in self.sample().tolist():
            self._m_score.observe(value)
        if self._usage is not None:
            self._flush_usage()
        self._reset()

    def _flush_usage(self) -> None:
        try:
            usage = self._usage()
        except OSError:
            return  # no /proc (not Linux): the version simply has no resource signals
        self._m_memory.set(usage.rss_bytes)
        # pb_utils counters only increment: report the CPU used since the last flush.
        if usage.cpu_seconds > self._cpu_reported:
            self._m_cpu.increment(usage.cpu_seconds - self._cpu_reported)
            self._cpu_reported = usage.cpu_seconds

    def sample(self) -> np.ndarray:
        """A strided sample of the scores accumulated since the last flush."""
        if not self._samples:
            return np.empty(0, np.float32)
        values = np.concatenate(self._samples)
        step = max(1, -(-values.size // MAX_OBSERVED_PER_FLUSH))
        return values[::step]

    def pending(self) -> dict:
        return {"requests": self._requests, "rows": self._rows, "nonfinite": self._nonfinite,
                "errors": dict(self._errors)}

    def _reset(self) -> None:
        self._requests = self._rows = self._nonfinite = 0
        self._errors = {}
        self._samples = []
