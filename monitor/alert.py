"""Webhook alerts in Alertmanager's API v2 shape, de-duplicated, with bounded retries. Never raises."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Callable

import requests

from monitor.records import Alert, AlertOutcome

_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alert_payload(alert: Alert, now: float) -> list[dict]:
    """The JSON body for POST /api/v2/alerts: a list of postable alerts."""
    starts = alert.starts_at if alert.starts_at is not None else now
    if alert.ends_at is not None:
        # Alertmanager answers 400 to an alert that ends before it starts: a resolution stamped a
        # millisecond before it is sent must not start "now".
        starts = min(starts, alert.ends_at)
    item: dict = {
        "labels": alert.labels(),
        "annotations": {"summary": alert.summary, "description": alert.description},
        "startsAt": _rfc3339(starts),
        "generatorURL": alert.generator_url,
    }
    if alert.ends_at is not None:
        item["endsAt"] = _rfc3339(alert.ends_at)
    return [item]


class Alerter:
    """Posts alerts to `url` (the full endpoint, e.g. http://alertmanager:9093/api/v2/alerts).

    The same label set is sent at most once per `dedupe_s`; a resolution (ends_at set) is a different
    message from the firing alert and is not swallowed by it. Only delivered alerts count for
    de-duplication, so a failed send is tried again next time."""

    def __init__(
        self,
        url: str | None,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        dedupe_s: float = 300.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        timeout_s: float = 5.0,
    ) -> None:
        self.url = url
        self._session = session if session is not None else requests.Session()
        self._clock = clock
        self._dedupe_s = dedupe_s
        self._max_retries = max_retries
        self._backoff_s = backoff_s
        self._sleep = sleep
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._sent: dict[tuple, float] = {}

    def send(self, alert: Alert) -> AlertOutcome:
        if not self.url:
            return AlertOutcome(status="disabled")
        now = self._clock()
        key = (frozenset(alert.labels().items()), alert.ends_at is not None)
        with self._lock:
            self._forget_older_than(now - self._dedupe_s)
            if key in self._sent:
                return AlertOutcome(status="deduplicated")
        outcome = self._post(alert_payload(alert, now))
        if outcome.status == "sent":
            with self._lock:
                self._sent[key] = now
        return outcome

    def _post(self, payload: list[dict]) -> AlertOutcome:
        attempts, status, error = 0, None, None
        for attempt in range(self._max_retries + 1):
            if attempt:
                self._sleep(self._backoff_s * 2 ** (attempt - 1))
            attempts += 1
            try:
                resp = self._session.post(self.url, json=payload, timeout=self._timeout_s)
            except requests.RequestException as exc:
                status, error = None, f"{type(exc).__name__}: {exc}"
                continue
            status = resp.status_code
            if 200 <= status < 300:
                return AlertOutcome(status="sent", attempts=attempts, http_status=status)
            error = f"HTTP {status}: {resp.text[:200]}"
            if status not in _RETRY_STATUS:
                break  # a 4xx other than 429 will not get better by asking again
        return AlertOutcome(status="failed", attempts=attempts, http_status=status, error=error)

    def _forget_older_than(self, cutoff: float) -> None:
        for key in [k for k, ts in self._sent.items() if ts <= cutoff]:
            del self._sent[key]
