"""Custom metrics the monitor needs and Triton cannot see: the score distribution, NaN/Inf outputs
and requests answered with an error response (Triton counts those as successes)."""
from __future__ import annotations

from typing import Any

import numpy as np

SCORE_BUCKETS = [round(0.05 * i, 2) for i in range(1, 21)]
# Observing every score costs a Python call each; a strided sample of each response keeps the
# distribution statistics unbiased at a bounded cost per request.
MAX_OBSERVED_PER_REQUEST = 32

SCORE = "sentinel_output_score"
NONFINITE = "sentinel_output_nonfinite_total"
ERRORS = "sentinel_request_errors_total"
REQUESTS = "sentinel_requests_total"
ROWS = "sentinel_output_rows_total"


class BackendMetrics:
    """Wraps pb_utils.MetricFamily; `pb_utils=None` gives a no-op (unit tests, no server)."""

    def __init__(self, pb_utils: Any | None, model: str, version: str):
        self._labels = {"model": model, "version": version}
        self._enabled = pb_utils is not None
        if not self._enabled:
            return
        mf = pb_utils.MetricFamily
        self._families = [
            mf(name=SCORE, description="Sampled output scores", kind=mf.HISTOGRAM),
            mf(name=NONFINITE, description="NaN or Inf output values", kind=mf.COUNTER),
            mf(name=ERRORS, description="Requests answered with an error, by reason",
               kind=mf.COUNTER),
            mf(name=REQUESTS, description="Requests handled by model.py", kind=mf.COUNTER),
            mf(name=ROWS, description="Output scores returned", kind=mf.COUNTER),
        ]
        score, nonfinite, errors, requests, rows = self._families
        self._score = score.Metric(labels=self._labels, buckets=SCORE_BUCKETS)
        self._nonfinite = nonfinite.Metric(labels=self._labels)
        self._errors_family = errors
        self._errors: dict[str, Any] = {}
        self._requests = requests.Metric(labels=self._labels)
        self._rows = rows.Metric(labels=self._labels)

    def request(self) -> None:
        if self._enabled:
            self._requests.increment(1)

    def error(self, reason: str) -> None:
        if not self._enabled:
            return
        metric = self._errors.get(reason)
        if metric is None:
            metric = self._errors_family.Metric(labels={**self._labels, "reason": reason})
            self._errors[reason] = metric
        metric.increment(1)

    def scores(self, scores: np.ndarray) -> None:
        if not self._enabled or scores.size == 0:
            return
        finite = np.isfinite(scores)
        bad = int(scores.size - np.count_nonzero(finite))
        if bad:
            self._nonfinite.increment(bad)
        self._rows.increment(int(scores.size))
        sample = scores[finite]
        step = max(1, sample.size // MAX_OBSERVED_PER_REQUEST)
        for value in sample[::step][:MAX_OBSERVED_PER_REQUEST].tolist():
            self._score.observe(value)
