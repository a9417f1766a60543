"""Reads the per-version counters from a Prometheus server instead of Triton's /metrics.

At fleet scale Prometheus already scrapes every Triton pod; a sidecar that queries it adds no second
scrape per pod and can see the traffic of many pods at once. The contract is monitor.scrape.Scraper's:
`scrape() -> Scrape`, never raising, a failure being a Scrape in phase "error".

Why instant vectors of the raw cumulative counters and not `rate()` over `query_range`: the store
already turns consecutive cumulative samples into deltas, detects counter resets (a Triton restart)
and derives ratios of deltas (error rate = Δfailures / Δrequests, latency = Δduration / Δsuccess,
score spread from histogram bucket deltas). Feeding it the same raw counters keeps one definition of
every signal for both sources, and the same detections. `rate()` would extrapolate each series over
its own window, hide resets from the store (decide uses them to ignore restarts), and make ratios of
independently extrapolated rates.

One query per cycle, evaluated atomically by Prometheus:

    {__name__=~"nv_inference_.+|sentinel_.+", model!="", SEL}          the counters
      or up{SEL}                                                       is each target scraped?
      or label_replace(timestamp(up{SEL}), "sentinel_scrape_ts", ...)  when was it last scraped?

The Scrape's timestamp is the target's last scrape time, not the query time: Prometheus scrapes on
its own schedule, and a delta must be divided by the time between the two scrapes that produced it.
When Prometheus has not scraped again since the last cycle the Scrape repeats the previous timestamp,
and the store ignores it instead of recording an interval without traffic.

Series that differ only in labels other than model/version/reason/le (instance, pod, job) are summed
by parse_metrics, exactly like series of one Triton: a selector that matches many pods gives
fleet-wide signals per (model, version). A pod joining or leaving then moves the sums once (a leaving
pod reads as a counter reset: that interval has no derived values)."""
from __future__ import annotations

import json
import math
import re
import time
from typing import Any, Callable, Mapping

import requests
import urllib3

from monitor.types import Scrape
from monitor.scrape import MAX_BODY_BYTES, parse_metrics, read_bounded

# Label added to the timestamp series so they cannot collide with the `up` series in `or`
# (set operators match label sets without the metric name).
TS_LABEL = "sentinel_scrape_ts"
METRIC_NAMES = "nv_inference_.+|sentinel_.+"

_MATCHER = r'[a-zA-Z_][a-zA-Z0-9_]*\s*(?:=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"'
_SELECTOR = re.compile(rf"^\s*(?:{_MATCHER}\s*(?:,\s*{_MATCHER}\s*)*,?)?\s*$")


class SelectorError(ValueError):
    """A label selector that is not a comma-separated list of PromQL label matchers."""


def check_selector(selector: str) -> str:
    """`pod="ranker-0"`, `namespace="ml",job=~"triton.*"` or empty; braces are not part of it."""
    if not _SELECTOR.match(selector):
        raise SelectorError(f"not a list of PromQL label matchers (name=\"value\", name=~\"regex\", "
                            f"...): {selector!r}")
    return selector.strip().rstrip(",").strip()


def build_query(selector: str = "") -> str:
    sel = check_selector(selector)
    data = f'{{__name__=~"{METRIC_NAMES}",model!=""{"," + sel if sel else ""}}}'
    up = f"up{{{sel}}}" if sel else "up"
    return f'{data} or {up} or label_replace(timestamp({up}), "{TS_LABEL}", "1", "", "")'


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _exposition_line(metric: Mapping[str, str], value: str) -> str:
    labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(metric.items()) if k != "__name__")
    return f"{metric['__name__']}{{{labels}}} {value}"


class _QueryError(Exception):
    """Prometheus answered, but not with a usable instant vector."""


def _vector(payload: Any) -> list[dict]:
    if not isinstance(payload, dict):
        raise _QueryError("response is not a JSON object")
    if payload.get("status") != "success":
        raise _QueryError(f"query failed: {payload.get('errorType', '?')}: {payload.get('error', '?')}")
    data = payload.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "vector":
        raise _QueryError(f"expected an instant vector, got {data!r:.200}")
    result = data.get("result")
    if not isinstance(result, list):
        raise _QueryError("response has no result list")
    return result


def scrape_from_vector(result: list[dict], source: str = "") -> Scrape:
    """An instant-vector result of build_query() -> Scrape. Pure: no clock, no I/O; a Scrape in phase
    "error" has ts NaN (the caller stamps it with its clock)."""
    lines: list[str] = []
    up: dict[tuple, float] = {}
    scraped_at: dict[tuple, float] = {}
    try:
        for item in result:
            metric, (_, value) = dict(item["metric"]), item["value"]
            target = tuple(sorted((k, v) for k, v in metric.items()
                                  if k not in ("__name__", TS_LABEL)))
            if TS_LABEL in metric:
                scraped_at[target] = float(value)
            elif metric.get("__name__") == "up":
                up[target] = float(value)
            elif "__name__" in metric:
                lines.append(_exposition_line(metric, str(value)))
    except (KeyError, TypeError, ValueError) as exc:
        return Scrape(ts=math.nan, phase="error", error=f"malformed vector item: {exc!r}",
                      source=source)
    if not up:
        return Scrape(ts=math.nan, phase="error", source=source,
                      error="no scrape target matches the selector in Prometheus (no `up` series)")
    live = [t for t, v in up.items() if v == 1.0]
    if not live:
        down = ", ".join(",".join(f"{k}={v}" for k, v in t) for t in sorted(up))[:300]
        return Scrape(ts=math.nan, phase="error", source=source,
                      error=f"Prometheus cannot scrape the target(s): up == 0 for {down}")
    ts = max((scraped_at[t] for t in live if t in scraped_at), default=math.nan)
    if not math.isfinite(ts):
        return Scrape(ts=math.nan, phase="error", source=source, error="no scrape timestamp for the target")
    # Rendering the vector as exposition text lets parse_metrics, the one mapping from metric names
    # to VersionSample fields, read both sources the same way.
    return parse_metrics("\n".join(lines) + "\n", ts, source=source)


class PrometheusSource:
    """Reads the counters of the targets matching `selector` from Prometheus at `url` (its base URL,
    e.g. http://prometheus:9090). `scrape()` never raises."""

    def __init__(
        self,
        url: str,
        selector: str = "",
        session: requests.Session | None = None,
        timeout: float = 2.0,
        clock: Callable[[], float] = time.time,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.url = url.rstrip("/")
        self.query = build_query(selector)
        self.source = f"{self.url} {{{check_selector(selector)}}}"
        self._session = session if session is not None else requests.Session()
        self._timeout = timeout
        self._clock = clock
        self._max_body_bytes = max_body_bytes

    def scrape(self) -> Scrape:
        started = time.monotonic()
        try:
            result = _vector(self._fetch(started))
        except _QueryError as exc:
            return self._failed(str(exc), started)
        except (requests.Timeout, urllib3.exceptions.TimeoutError) as exc:
            return self._failed(f"timeout after {self._timeout:g}s: {exc}", started)
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            return self._failed(f"{type(exc).__name__}: {exc}", started)
        scrape = scrape_from_vector(result, source=self.source)
        return Scrape(
            # A failed scrape carries no Prometheus timestamp: the poller's clock stamps the failure.
            ts=scrape.ts if math.isfinite(scrape.ts) else self._clock(),
            phase=scrape.phase,
            samples=scrape.samples,
            error=scrape.error,
            duration_s=time.monotonic() - started,
            source=self.source,
        )

    def history(self, start: float, end: float, step_s: float) -> list[Scrape]:
        """The same query over [start, end] every `step_s` (Prometheus' query_range): what the
        counters were at each step, oldest first; [] when it cannot be had (never raises). A new
        lease holder tallies a running canary from its start this way instead of afresh."""
        if end <= start or step_s <= 0:
            return []
        started = time.monotonic()
        form = {"query": self.query, "start": f"{start:.3f}", "end": f"{end:.3f}",
                "step": f"{step_s:g}", "timeout": f"{self._timeout:g}s"}
        try:
            with self._session.post(f"{self.url}/api/v1/query_range", data=form,
                                    timeout=self._timeout, stream=True) as resp:
                if resp.status_code != 200:
                    return []
                payload = json.loads(read_bounded(resp, self._max_body_bytes, started,
                                                  self._timeout, _QueryError))
            data = payload["data"]
            if payload.get("status") != "success" or data.get("resultType") != "matrix":
                return []
            at: dict[float, list[dict]] = {}
            for series in data["result"]:
                for t, v in series["values"]:
                    at.setdefault(float(t), []).append({"metric": series["metric"],
                                                        "value": [t, v]})
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, ValueError,
                KeyError, TypeError, AttributeError, _QueryError):
            return []
        out = [scrape_from_vector(at[t], source=self.source) for t in sorted(at)]
        return [x for x in out if x.ok]

    def _fetch(self, started: float) -> Any:
        # POST form: the query is long, and Prometheus accepts both. Its own `timeout` stops the
        # evaluation server-side as well.
        form = {"query": self.query, "timeout": f"{self._timeout:g}s"}
        with self._session.post(f"{self.url}/api/v1/query", data=form, timeout=self._timeout,
                                stream=True) as resp:
            # 400/422/503 carry a JSON error body worth reporting; anything else is not Prometheus.
            if resp.status_code not in (200, 400, 422, 503):
                raise _QueryError(f"HTTP {resp.status_code} from {self.url}/api/v1/query")
            body = read_bounded(resp, self._max_body_bytes, started, self._timeout, _QueryError)
        try:
            return json.loads(body)
        except ValueError as exc:
            raise _QueryError(f"HTTP {resp.status_code}, body is not JSON: {exc}") from exc

    def _failed(self, error: str, started: float) -> Scrape:
        return Scrape(ts=self._clock(), phase="error", error=error,
                      duration_s=time.monotonic() - started, source=self.source)
