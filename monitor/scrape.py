"""The only code that reads a metrics endpoint: Triton's /metrics text into typed VersionSamples."""
from __future__ import annotations

import re
import time
from collections import defaultdict
from typing import Callable

import requests
import urllib3
from prometheus_client.parser import text_string_to_metric_families

from monitor.types import GpuSample, Scrape, ScoreHistogram, ServerResources, VersionSample

# Sample name (with any `_total` suffix removed) -> VersionSample field. prometheus_client's parser
# reports counters as `<name>_total` whether or not the text had the suffix, and pb_utils may or may
# not append it, so names are matched without it.
_SCALARS = {
    "nv_inference_request_success": "success",
    "nv_inference_count": "inference_count",
    "nv_inference_exec_count": "exec_count",
    "nv_inference_pending_request_count": "pending",
    "nv_inference_request_duration_us": "request_duration_us",
    "nv_inference_queue_duration_us": "queue_duration_us",
    "nv_inference_compute_input_duration_us": "compute_input_duration_us",
    "nv_inference_compute_infer_duration_us": "compute_infer_duration_us",
    "nv_inference_compute_output_duration_us": "compute_output_duration_us",
    "sentinel_output_nonfinite": "nonfinite",
    "sentinel_requests": "requests",
    "sentinel_output_rows": "rows",
    "sentinel_stub_resident_memory_bytes": "stub_memory_bytes",  # one series per stub: summed
    "sentinel_stub_cpu_seconds": "stub_cpu_seconds",
}
# Triton's server-wide gauges (no model label) -> ServerResources field; nv_gpu_* per gpu_uuid.
_SERVER = {
    "nv_cpu_utilization": "cpu_utilization",
    "nv_cpu_memory_used_bytes": "memory_used_bytes",
    "nv_cpu_memory_total_bytes": "memory_total_bytes",
}
_GPU = {
    "nv_gpu_utilization": "utilization",
    "nv_gpu_memory_used_bytes": "memory_used_bytes",
    "nv_gpu_memory_total_bytes": "memory_total_bytes",
}
_BY_REASON = {
    "nv_inference_request_failure": "failures",
    "sentinel_request_errors": "request_errors",
}
_SCORE = "sentinel_output_score"

# A metrics page of a few hundred models is a few MB; anything far larger is not Triton.
MAX_BODY_BYTES = 64 * 1024 * 1024


def read_bounded(resp, max_bytes: int, started: float, timeout_s: float,
                 error: type[Exception]) -> bytes:
    """The body of a streamed response, refusing one that is too large or that trickles in past
    the timeout (requests' timeout bounds each socket wait, not the whole transfer)."""
    chunks, size = [], 0
    # read1 returns whatever has arrived (iter_content would block until a chunk is full).
    while chunk := resp.raw.read1(65536, decode_content=True):
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            raise error(f"response larger than {max_bytes} bytes")
        if time.monotonic() - started > timeout_s:
            raise error(f"timeout after {timeout_s:g}s reading the body")
    return b"".join(chunks)


def _base_name(name: str) -> str:
    return name[: -len("_total")] if name.endswith("_total") else name


_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?[ \t]+(\S+)(?:[ \t]+-?\d+)?[ \t]*$")
_LABEL = re.compile(r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"([^"\\]*)"[ \t]*,?')
_WANTED_PREFIXES = ("nv_inference_", "sentinel_", "nv_cpu_", "nv_gpu_")


class _NeedsFullParser(Exception):
    """A line the fast path does not handle (escapes, odd spacing): use prometheus_client's parser."""


def _fast_samples(text: str):
    """(name, labels, value) of the per-version sample lines, without prometheus_client.

    Its parser reads label text one character at a time, ~85 % of a sidecar cycle on a 2,000-series
    page (docs/benchmarks.md). Triton's exposition is regular: one regex per line handles it, and
    anything unusual falls back to the full parser, which also owns the verdict on garbage."""
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        if not line.startswith(_WANTED_PREFIXES):
            if not line.strip() or _LINE.match(line):
                continue  # another well-formed metric (GPU, CPU, cache): not per version
            raise _NeedsFullParser(line)
        m = _LINE.match(line)
        if m is None:
            raise _NeedsFullParser(line)
        name, label_text, value = m.groups()
        labels = {}
        if label_text:
            pos = 0
            for lm in _LABEL.finditer(label_text):
                if lm.start() != pos:
                    raise _NeedsFullParser(line)
                labels[lm.group(1)] = lm.group(2)
                pos = lm.end()
            if pos != len(label_text.rstrip()):
                raise _NeedsFullParser(line)
        yield name, labels, float(value)


def _full_samples(text: str):
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            yield s.name, s.labels, float(s.value)


def parse_metrics(text: str, ts: float, source: str = "") -> Scrape:
    """Prometheus text -> Scrape. Pure; text that does not parse gives phase "error", not an exception."""
    try:
        return _parse(_fast_samples(text), ts, source)
    except (_NeedsFullParser, ValueError):
        pass
    try:
        return _parse(_full_samples(text), ts, source)
    except ValueError as exc:
        return Scrape(ts=ts, phase="error", error=f"unparseable metrics text: {exc}", source=source)


def _parse(samples, ts: float, source: str) -> Scrape:
    scalars: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    reasons: dict[tuple[str, str], dict[str, dict[str, float]]] = defaultdict(
        lambda: {"failures": defaultdict(float), "request_errors": defaultdict(float)}
    )
    buckets: dict[tuple[str, str], dict[float, float]] = defaultdict(lambda: defaultdict(float))
    hist_sum: dict[tuple[str, str], float] = defaultdict(float)
    hist_count: dict[tuple[str, str], float] = defaultdict(float)
    server: dict[str, float] = {}
    gpus: dict[str, dict[str, float]] = defaultdict(dict)
    for sample_name, labels, value in samples:
        model, version = labels.get("model"), labels.get("version")
        if model is None or version is None:
            if sample_name in _SERVER:
                server[_SERVER[sample_name]] = value
            elif sample_name in _GPU:
                gpus[labels.get("gpu_uuid", "")][_GPU[sample_name]] = value
            continue  # other server-wide metrics (cache, pinned memory) are not watched
        key = (model, version)
        name = _base_name(sample_name)
        # Series that differ only in extra labels (e.g. an instance label on a custom
        # metric) are summed: that is correct for counters, histograms and the pending gauge.
        if name in _SCALARS:
            fld = _SCALARS[name]
            scalars[key][fld] = scalars[key].get(fld, 0.0) + value
        elif name in _BY_REASON:
            reason = labels.get("reason", "OTHER" if name.startswith("nv_") else "unknown")
            reasons[key][_BY_REASON[name]][reason] += value
        elif name == _SCORE + "_bucket":
            buckets[key][float(labels.get("le", "+Inf"))] += value
        elif name == _SCORE + "_sum":
            hist_sum[key] += value
        elif name == _SCORE + "_count":
            hist_count[key] += value

    keys = set(scalars) | set(reasons) | set(buckets) | set(hist_count)
    samples = []
    for key in sorted(keys):
        score = None
        if key in hist_count or key in buckets:
            pairs = sorted(buckets[key].items()) if key in buckets else []
            score = ScoreHistogram(
                bounds=tuple(b for b, _ in pairs),
                counts=tuple(c for _, c in pairs),
                sum=hist_sum.get(key, float("nan")),
                count=hist_count.get(key, float("nan")),
            )
        by_reason = reasons.get(key, {"failures": {}, "request_errors": {}})
        samples.append(
            VersionSample(
                model=key[0],
                version=key[1],
                failures=tuple(sorted(by_reason["failures"].items())),
                request_errors=tuple(sorted(by_reason["request_errors"].items())),
                score=score,
                **scalars.get(key, {}),
            )
        )
    resources = None
    if server or gpus:
        resources = ServerResources(
            **server, gpus=tuple(GpuSample(uuid, **g) for uuid, g in sorted(gpus.items())))
    return Scrape(ts=ts, phase="ok", samples=tuple(samples), source=source, server=resources)


class Scraper:
    """Reads one metrics URL. `scrape()` never raises: every failure is a Scrape in phase "error"."""

    def __init__(
        self,
        url: str,
        session: requests.Session | None = None,
        timeout: float = 2.0,
        clock: Callable[[], float] = time.time,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.url = url
        self._session = session if session is not None else requests.Session()
        self._timeout = timeout
        self._clock = clock
        self._max_body_bytes = max_body_bytes

    def scrape(self) -> Scrape:
        started = time.monotonic()
        try:
            body = self._fetch(started)
        except _FetchError as exc:
            return self._failed(str(exc), started)
        except (requests.Timeout, urllib3.exceptions.TimeoutError) as exc:
            return self._failed(f"timeout after {self._timeout:g}s: {exc}", started)
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            # urllib3's and socket errors surface directly while the body is read from `raw`.
            return self._failed(f"{type(exc).__name__}: {exc}", started)
        ts = self._clock()
        text = body.decode("utf-8", errors="replace")
        scrape = parse_metrics(text, ts, source=self.url)
        return Scrape(
            ts=scrape.ts,
            phase=scrape.phase,
            samples=scrape.samples,
            error=scrape.error,
            duration_s=time.monotonic() - started,
            source=self.url,
            server=scrape.server,
        )

    def _fetch(self, started: float) -> bytes:
        # requests' timeout bounds each socket wait, not the whole transfer: a server that trickles
        # bytes could hold the poller forever, so the total time is enforced here as well.
        with self._session.get(self.url, timeout=self._timeout, stream=True) as resp:
            if resp.status_code != 200:
                raise _FetchError(f"HTTP {resp.status_code} from {self.url}")
            return read_bounded(resp, self._max_body_bytes, started, self._timeout, _FetchError)

    def _failed(self, error: str, started: float) -> Scrape:
        return Scrape(
            ts=self._clock(),
            phase="error",
            error=error,
            duration_s=time.monotonic() - started,
            source=self.url,
        )


class _FetchError(Exception):
    """An HTTP exchange that completed but did not give a usable metrics body."""
