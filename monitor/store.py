"""Per-(model, version) series of derived signals between consecutive scrapes, with bounded memory.

Layout: a ring of "frames", one per ok scrape, each holding every series' signals for the interval
that ended at that scrape (numpy, float32). Writing a scrape is a handful of vectorised operations
whatever the number of series; a polars DataFrame is built only when a series is read. Only the
latest cumulative sample of each series is kept: it is all the next delta needs.

Memory is bounded three ways: frames older than `retention_s` are dropped, at most `max_rows` frames
are kept, and the ring shrinks its depth so that the frame arrays stay under `max_bytes` however
many series appear (many series therefore means less history, never more memory).
"""
from __future__ import annotations

import collections
import math
import threading
import time
from typing import Callable

import numpy as np
import polars as pl

from monitor.types import (
    SENTINEL_ERROR_REASONS,
    SIGNAL_NAMES,
    TRITON_FAILURE_REASONS,
    FailureEvidence,
    Scrape,
    ScrapeOutcome,
    ServerResources,
    SignalPoint,
    VersionSample,
)

Key = tuple[str, str]

# Raw cumulative columns kept per series (the latest sample only).
_RAW = (
    "success",
    "failure_total",
    *(f"failure_{r}" for r in TRITON_FAILURE_REASONS),
    "inference_count",
    "exec_count",
    "pending",
    "request_us",
    "queue_us",
    "compute_input_us",
    "compute_infer_us",
    "compute_output_us",
    "score_sum",
    "score_count",
    "nonfinite",
    "requests",
    "rows",
    "errors_total",
    *(f"error_{r}" for r in SENTINEL_ERROR_REASONS),
    "stub_memory",
    "stub_cpu",
)
_R = {name: i for i, name in enumerate(_RAW)}
# A decrease in any of these means the counters restarted. Not the pending gauge, and not the score
# sum (a sum of observations may legitimately go down when scores can be negative).
_COUNTER_COLS = np.array([i for n, i in _R.items()
                          if n not in ("pending", "score_sum", "stub_memory")])
_S = {name: j for j, name in enumerate(SIGNAL_NAMES)}
_N_SIGNALS = len(SIGNAL_NAMES)
_CELL_BYTES = _N_SIGNALS * 4 + 2  # float32 signals + present + reset flags

_MIN_ROWS = 2
_INITIAL_ROWS = 64
_INITIAL_SLOTS = 16


def _raw_row(s: VersionSample) -> list[float | None]:
    # Hot path (once per series per scrape): plain attribute reads, no properties.
    failures = dict(s.failures)
    errors = dict(s.request_errors)
    fail_default = 0.0 if failures else None
    err_default = 0.0 if errors else None
    score = s.score
    return [
        s.success,
        sum(failures.values()) if failures else None,
        *[failures.get(r, fail_default) for r in TRITON_FAILURE_REASONS],
        s.inference_count,
        s.exec_count,
        s.pending,
        s.request_duration_us,
        s.queue_duration_us,
        s.compute_input_duration_us,
        s.compute_infer_duration_us,
        s.compute_output_duration_us,
        score.sum if score is not None else None,
        score.count if score is not None else None,
        s.nonfinite,
        s.requests,
        s.rows,
        sum(errors.values()) if errors else None,
        *[errors.get(r, err_default) for r in SENTINEL_ERROR_REASONS],
        s.stub_memory_bytes,
        s.stub_cpu_seconds,
    ]


def _bucket_geometry(bounds: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Midpoints and width²/12 of each bucket; the +Inf bucket sits at the last finite bound."""
    b = np.asarray(bounds, dtype=float)
    finite = b[np.isfinite(b)]
    if len(finite) == 0:
        return np.zeros(len(b)), np.zeros(len(b))
    if finite[0] > 0:
        first_lower = 0.0  # scores are non-negative probabilities in this project
    elif len(finite) > 1:
        first_lower = finite[0] - (finite[1] - finite[0])
    else:
        first_lower = finite[0]
    lower = np.concatenate([[first_lower], b[:-1]])
    upper = np.where(np.isfinite(b), b, finite[-1])
    lower = np.minimum(np.where(np.isfinite(lower), lower, finite[-1]), upper)
    return (lower + upper) / 2.0, (upper - lower) ** 2 / 12.0


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num/den where den > 0, else NaN: an interval without traffic has no rate, not a zero rate."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


class SeriesStore:
    def __init__(
        self,
        retention_s: float = 3600.0,
        max_rows: int = 3600,
        max_bytes: int = 256 * 1024 * 1024,
        clock: Callable[[], float] = time.time,
        outcomes_kept: int = 100,
    ) -> None:
        if retention_s <= 0 or max_rows < _MIN_ROWS or max_bytes <= 0:
            raise ValueError("retention_s and max_bytes must be > 0 and max_rows >= 2")
        self.retention_s = float(retention_s)
        self.max_rows = int(max_rows)
        self.max_bytes = int(max_bytes)
        self._clock = clock
        self._lock = threading.Lock()
        self._outcomes: collections.deque[ScrapeOutcome] = collections.deque(maxlen=outcomes_kept)
        # Server-wide gauges: one small record per scrape (not per series), pruned by retention too.
        self._server: collections.deque[tuple[float, ServerResources]] = collections.deque(
            maxlen=self.max_rows)

        self._slot_of: dict[Key, int] = {}
        self._key_of: list[Key | None] = [None] * _INITIAL_SLOTS
        self._free: list[int] = list(range(_INITIAL_SLOTS - 1, -1, -1))
        self._bounds: list[tuple[float, ...] | None] = [None] * _INITIAL_SLOTS
        self._k = 1  # histogram columns (grows to the widest layout seen)
        self._alloc_slot_state(_INITIAL_SLOTS)

        self._rows = min(_INITIAL_ROWS, self._row_limit(_INITIAL_SLOTS))
        self._alloc_frames(self._rows, _INITIAL_SLOTS)
        self._head = 0  # next frame position
        self._count = 0  # frames held, oldest at (head - count) % rows

    # ------------------------------------------------------------ writing

    def add(self, scrape: Scrape) -> None:
        with self._lock:
            self._outcomes.append(ScrapeOutcome(ts=scrape.ts, ok=scrape.ok, error=scrape.error))
            now = self._clock()
            self._prune(now)
            if not scrape.ok:
                return  # the next ok scrape computes its deltas over the longer interval
            if self._count and scrape.ts <= self._frame_ts[(self._head - 1) % self._rows]:
                return  # out of order (clock stepped back): frames must stay in time order
            if scrape.server is not None:
                self._server.append((scrape.ts, scrape.server))
            if scrape.samples:
                self._add_samples(scrape)
            else:
                self._write_frame(scrape.ts, np.empty(0, int), np.empty((0, _N_SIGNALS)), np.empty(0, bool))

    def _add_samples(self, scrape: Scrape) -> None:
        samples = scrape.samples
        slots = np.empty(len(samples), dtype=np.intp)
        rows, cums = [], []
        for i, s in enumerate(samples):
            slot = self._slot_of.get(s.key)
            if slot is None:
                slot = self._register(s.key)
            slots[i] = slot
            rows.append(_raw_row(s))
            cums.append(self._bucket_counts(slot, s))
        raw = np.array(rows, dtype=float)
        # Padding repeats the last cumulative count so the padded buckets hold nothing; it is done
        # after the loop because a wider layout may have appeared in the middle of it.
        k = self._k
        if any(len(c) != k for c in cums):
            cums = [c + [c[-1]] * (k - len(c)) for c in cums]
        cum = np.array(cums, dtype=float)

        dt = scrape.ts - self._last_ts[slots]
        in_order = ~self._has_last[slots] | (dt > 0)
        has_prev = self._has_last[slots] & (dt > 0)
        w = np.nonzero(has_prev)[0]
        d = raw[w] - self._last_raw[slots[w]]
        dc = cum[w] - self._last_cum[slots[w]]
        reset = (d[:, _COUNTER_COLS] < 0).any(axis=1) | (dc < 0).any(axis=1)
        sig = self._derive(d, dc, raw[w], dt[w], slots[w])
        sig[reset] = np.nan
        sig[reset, _S["pending"]] = raw[w][reset, _R["pending"]]
        sig[reset, _S["memory_bytes"]] = raw[w][reset, _R["stub_memory"]]  # a gauge too
        sig[reset, _S["interval_s"]] = dt[w][reset]
        self._write_frame(scrape.ts, slots[w], sig, reset)

        u = slots[in_order]
        self._last_raw[u] = raw[in_order]
        self._last_cum[u] = cum[in_order]
        self._last_ts[u] = scrape.ts
        self._has_last[u] = True

    def _derive(
        self, d: np.ndarray, dc: np.ndarray, raw: np.ndarray, dt: np.ndarray, slots: np.ndarray
    ) -> np.ndarray:
        out = np.full((len(d), _N_SIGNALS), np.nan)
        col = lambda name: d[:, _R[name]]  # noqa: E731
        failures = np.nan_to_num(col("failure_total"))  # an unexported counter adds nothing
        total = col("success") + failures
        out[:, _S["interval_s"]] = dt
        out[:, _S["requests"]] = total
        out[:, _S["failures"]] = failures
        out[:, _S["request_rate"]] = total / dt
        # Error responses from model.py are Triton "successes", so they are inside the denominator
        # already; metric updates are not atomic across families, hence the clip at 1.
        errors = failures + np.nan_to_num(col("errors_total"))
        out[:, _S["error_rate"]] = np.minimum(_ratio(errors, total), 1.0)
        for r in TRITON_FAILURE_REASONS:
            out[:, _S[f"error_rate_{r.lower()}"]] = _ratio(col(f"failure_{r}"), total)
        for r in SENTINEL_ERROR_REASONS:
            out[:, _S[f"error_rate_{r}"]] = _ratio(col(f"error_{r}"), total)
        # Triton adds to the duration counters for successful requests only, once per request
        # (not per batch row), so the mean is over Δsuccess.
        success = col("success")
        for us, ms in (
            ("request_us", "latency_ms"),
            ("queue_us", "queue_ms"),
            ("compute_input_us", "compute_input_ms"),
            ("compute_infer_us", "compute_infer_ms"),
            ("compute_output_us", "compute_output_ms"),
        ):
            out[:, _S[ms]] = _ratio(col(us), success) / 1000.0
        out[:, _S["batch_size"]] = _ratio(col("inference_count"), col("exec_count"))
        out[:, _S["pending"]] = raw[:, _R["pending"]]
        out[:, _S["score_mean"]] = _ratio(col("score_sum"), col("score_count"))
        out[:, _S["score_std"]] = self._grouped_std(dc, slots)
        out[:, _S["nan_rate"]] = np.minimum(_ratio(col("nonfinite"), col("rows")), 1.0)
        out[:, _S["rows_per_request"]] = _ratio(col("rows"), col("requests"))
        out[:, _S["memory_bytes"]] = raw[:, _R["stub_memory"]]
        out[:, _S["cpu_ms_per_request"]] = _ratio(col("stub_cpu"), total) * 1000.0
        out[:, _S["cpu_cores"]] = col("stub_cpu") / dt
        return out

    def _grouped_std(self, dc: np.ndarray, slots: np.ndarray) -> np.ndarray:
        # Bucket counts of the interval, each at its bucket's midpoint; grouping inflates the
        # variance by about width²/12 (Sheppard), which is taken off. A constant output lands in one
        # bucket and gives 0, which is what makes "the model returns a constant" visible.
        counts = np.diff(dc, axis=1, prepend=0.0)
        mid, w2 = self._mid[slots], self._w2[slots]
        n = counts.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            mean = (counts * mid).sum(axis=1) / n
            var = ((counts * (mid - mean[:, None]) ** 2).sum(axis=1) - (counts * w2).sum(axis=1)) / n
        return np.where(n > 0, np.sqrt(np.maximum(var, 0.0)), np.nan)

    def _bucket_counts(self, slot: int, s: VersionSample) -> list[float]:
        score = s.score
        if score is None or not score.bounds:
            if self._bounds[slot] is not None:
                self._set_layout(slot, None)
            return [math.nan]
        if score.bounds != self._bounds[slot]:
            self._set_layout(slot, score.bounds)
        return list(score.counts)

    def _set_layout(self, slot: int, bounds: tuple[float, ...] | None) -> None:
        # New bucket bounds (the version was reloaded with another config): no score delta this time.
        if bounds is not None and len(bounds) > self._k:
            self._widen_buckets(len(bounds))
        self._bounds[slot] = bounds
        self._mid[slot] = 0.0
        self._w2[slot] = 0.0
        if bounds is not None:
            mid, w2 = _bucket_geometry(bounds)
            self._mid[slot, : len(bounds)] = mid
            self._w2[slot, : len(bounds)] = w2
        self._last_cum[slot] = np.nan
        self._last_raw[slot, _R["score_sum"]] = np.nan
        self._last_raw[slot, _R["score_count"]] = np.nan

    def _write_frame(self, ts: float, slots: np.ndarray, sig: np.ndarray, reset: np.ndarray) -> None:
        if self._count == self._rows and self._rows < self._row_limit(len(self._key_of)):
            self._resize(min(self._rows * 2, self._row_limit(len(self._key_of))), len(self._key_of))
        pos = self._head
        self._frame_ts[pos] = ts
        self._values[pos] = np.nan
        self._present[pos] = False
        self._reset[pos] = False
        self._values[pos, slots] = sig
        self._present[pos, slots] = True
        self._reset[pos, slots] = reset
        self._head = (pos + 1) % self._rows
        self._count = min(self._count + 1, self._rows)

    def _prune(self, now: float) -> None:
        cutoff = now - self.retention_s
        while self._server and self._server[0][0] < cutoff:
            self._server.popleft()
        while self._count and self._frame_ts[(self._head - self._count) % self._rows] < cutoff:
            self._count -= 1
        # A series whose latest sample is older than the retention has no frame left: free its slot
        # so that versions which come and go do not grow the store.
        stale = np.nonzero(self._has_last & (self._last_ts < cutoff))[0]
        for slot in stale:
            self._release(int(slot))

    # ------------------------------------------------------------ slots and arrays

    def _register(self, key: Key) -> int:
        if not self._free:
            old = len(self._key_of)
            new = old * 2
            self._key_of.extend([None] * (new - old))
            self._bounds.extend([None] * (new - old))
            self._free = list(range(new - 1, old - 1, -1))
            self._resize(min(self._rows, self._row_limit(new)), new)
        slot = self._free.pop()
        self._slot_of[key] = slot
        self._key_of[slot] = key
        return slot

    def _release(self, slot: int) -> None:
        key = self._key_of[slot]
        if key is not None:
            del self._slot_of[key]
        self._key_of[slot] = None
        self._bounds[slot] = None
        self._has_last[slot] = False
        self._last_ts[slot] = -np.inf
        self._last_raw[slot] = np.nan
        self._last_cum[slot] = np.nan
        self._mid[slot] = 0.0
        self._w2[slot] = 0.0
        self._free.append(slot)

    def _row_limit(self, n_slots: int) -> int:
        return max(_MIN_ROWS, min(self.max_rows, self.max_bytes // (n_slots * _CELL_BYTES)))

    def _alloc_slot_state(self, n: int) -> None:
        self._last_raw = np.full((n, len(_RAW)), np.nan)
        self._last_ts = np.full(n, -np.inf)
        self._has_last = np.zeros(n, dtype=bool)
        self._last_cum = np.full((n, self._k), np.nan)
        self._mid = np.zeros((n, self._k))
        self._w2 = np.zeros((n, self._k))

    def _alloc_frames(self, rows: int, n: int) -> None:
        self._frame_ts = np.zeros(rows)
        self._values = np.full((rows, n, _N_SIGNALS), np.nan, dtype=np.float32)
        self._present = np.zeros((rows, n), dtype=bool)
        self._reset = np.zeros((rows, n), dtype=bool)

    def _resize(self, rows: int, n: int) -> None:
        order = self._order()[-rows:]
        old_n = self._values.shape[1]
        frame_ts, values = self._frame_ts[order], self._values[order]
        present, reset = self._present[order], self._reset[order]
        self._alloc_frames(rows, n)
        k = len(order)
        self._frame_ts[:k] = frame_ts
        self._values[:k, :old_n] = values
        self._present[:k, :old_n] = present
        self._reset[:k, :old_n] = reset
        self._count, self._head, self._rows = k, k % rows, rows
        if n > old_n:
            state = (self._last_raw, self._last_ts, self._has_last, self._last_cum, self._mid, self._w2)
            self._alloc_slot_state(n)
            for new, old in zip(
                (self._last_raw, self._last_ts, self._has_last, self._last_cum, self._mid, self._w2),
                state,
            ):
                new[:old_n] = old

    def _widen_buckets(self, k: int) -> None:
        old = self._k
        self._k = k
        grow = lambda a, fill: np.concatenate(  # noqa: E731
            [a, np.full((a.shape[0], k - old), fill)], axis=1
        )
        # Existing layouts are padded with their last cumulative count, as in _add_samples.
        last = self._last_cum[:, -1:]
        self._last_cum = np.concatenate([self._last_cum, np.repeat(last, k - old, axis=1)], axis=1)
        self._mid = grow(self._mid, 0.0)
        self._w2 = grow(self._w2, 0.0)

    def _order(self) -> np.ndarray:
        """Frame positions, oldest first."""
        return (self._head - self._count + np.arange(self._count)) % self._rows

    # ------------------------------------------------------------ reading

    def _positions(self, slot: int, since: float | None, after: float | None = None) -> np.ndarray:
        """Frames holding the slot, oldest first: ts >= since (inclusive) or ts > after (strict)."""
        order = self._order()
        ts = self._frame_ts[order]
        keep = self._present[order, slot] & (ts >= self._clock() - self.retention_s)
        if since is not None:
            keep &= ts >= since
        if after is not None:
            keep &= ts > after
        return order[keep]

    def signals(self, model: str, version: str, since: float | None = None) -> pl.DataFrame:
        """Columns: ts, reset, then one Float64 column per signal (SIGNAL_NAMES), oldest first."""
        with self._lock:
            slot = self._slot_of.get((model, version))
            pos = self._positions(slot, since) if slot is not None else np.empty(0, int)
            ts = self._frame_ts[pos].copy()
            reset = self._reset[pos, slot].copy() if slot is not None else np.empty(0, bool)
            vals = self._values[pos, slot].astype(np.float64) if slot is not None else None
        columns: dict[str, pl.Series] = {
            "ts": pl.Series("ts", ts, dtype=pl.Float64),
            "reset": pl.Series("reset", reset, dtype=pl.Boolean),
        }
        for j, name in enumerate(SIGNAL_NAMES):
            data = vals[:, j] if vals is not None else np.empty(0)
            # NaN means missing here; polars keeps it as NaN (not null) so float maths stays simple.
            columns[name] = pl.Series(name, data, dtype=pl.Float64)
        return pl.DataFrame(columns)

    def latest(self, model: str, version: str) -> SignalPoint | None:
        with self._lock:
            slot = self._slot_of.get((model, version))
            if slot is None:
                return None
            pos = self._positions(slot, None)
            if len(pos) == 0:
                return None
            p = pos[-1]
            values = self._values[p, slot].astype(np.float64)
            ts, reset = float(self._frame_ts[p]), bool(self._reset[p, slot])
        return SignalPoint(
            ts=ts,
            model=model,
            version=version,
            reset=reset,
            **{name: float(values[j]) for j, name in enumerate(SIGNAL_NAMES)},
        )

    def versions(self) -> list[Key]:
        with self._lock:
            return sorted(self._slot_of)

    def last_sample_at(self, model: str, version: str) -> float | None:
        with self._lock:
            slot = self._slot_of.get((model, version))
            return float(self._last_ts[slot]) if slot is not None and self._has_last[slot] else None

    def reset_times(self, model: str, version: str, since: float | None = None) -> tuple[float, ...]:
        with self._lock:
            slot = self._slot_of.get((model, version))
            if slot is None:
                return ()
            pos = self._positions(slot, since)
            return tuple(float(t) for t in self._frame_ts[pos[self._reset[pos, slot]]])

    def failure_evidence(self, model: str, version: str, window_s: float) -> FailureEvidence:
        """Requests and Triton failures summed over the last window_s (reset intervals excluded)."""
        with self._lock:
            slot = self._slot_of.get((model, version))
            requests = failures = 0.0
            if slot is not None:
                pos = self._positions(slot, None, after=self._clock() - window_s)
                pos = pos[~self._reset[pos, slot]]
                requests = float(np.nansum(self._values[pos, slot, _S["requests"]]))
                failures = float(np.nansum(self._values[pos, slot, _S["failures"]]))
        return FailureEvidence(model, version, window_s, requests, failures)

    def server_resources(self, since: float | None = None) -> list[tuple[float, ServerResources]]:
        """(ts, server-wide gauges) of the scrapes that carried them, oldest first."""
        with self._lock:
            return [(ts, r) for ts, r in self._server if since is None or ts >= since]

    def scrape_outcomes(self, limit: int | None = None) -> tuple[ScrapeOutcome, ...]:
        """Most recent scrape outcomes, oldest first."""
        with self._lock:
            items = list(self._outcomes)
        return tuple(items[-limit:] if limit else items)

    def nbytes(self) -> int:
        with self._lock:
            arrays = (
                self._frame_ts, self._values, self._present, self._reset, self._last_raw,
                self._last_ts, self._has_last, self._last_cum, self._mid, self._w2,
            )
            return int(sum(a.nbytes for a in arrays))

    @property
    def depth(self) -> int:
        """Frames currently held (history length in scrapes)."""
        with self._lock:
            return self._count
