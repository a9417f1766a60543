"""Webhook alerts in Alertmanager's API v2 shape, de-duplicated, with bounded retries. Never raises."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Callable

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError
from urllib3.util.retry import Retry

from monitor.types import Alert, AlertOutcome

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})  # a 4xx other than 429 will not get better
MAX_WAIT_S = 10  # one wait, backoff or Retry-After: the sender thread must get on with the queue


def retry_policy(max_retries: int, backoff_s: float) -> Retry:
    """The library's retry policy for alert POSTs (see Alerter)."""
    return Retry(total=max_retries, backoff_factor=backoff_s, backoff_max=MAX_WAIT_S,
                 retry_after_max=MAX_WAIT_S, status_forcelist=RETRY_STATUS,
                 allowed_methods=frozenset({"POST"}), raise_on_status=False,
                 respect_retry_after_header=True)


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
    de-duplication, so a failed send is tried again next time.

    Retries are urllib3's `Retry` on the session's adapter (retry_policy): at most `max_retries`
    more attempts after connection errors, timeouts and 429/5xx answers, waiting
    backoff_s * 2**(n-1) before the n-th retry (the first one at once, at most 10 s, and at most
    10 s for a Retry-After header); other 4xx answers are final. Posting again is safe: Alertmanager
    merges alerts with the same labels."""

    def __init__(
        self,
        url: str | None,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        dedupe_s: float = 300.0,
        max_retries: int = 3,
        backoff_s: float = 0.25,
        timeout_s: float = 5.0,
    ) -> None:
        self.url = url
        self.retry = retry_policy(max_retries, backoff_s)
        self._session = session if session is not None else requests.Session()
        adapter = HTTPAdapter(max_retries=self.retry)
        for prefix in ("http://", "https://"):
            self._session.mount(prefix, adapter)
        self._clock = clock
        self._dedupe_s = dedupe_s
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
        try:
            resp = self._session.post(self.url, json=payload, timeout=self._timeout_s)
        except requests.RequestException as exc:
            # Every retry spends one of `total`, so running out means total + 1 attempts.
            exhausted = bool(exc.args) and isinstance(exc.args[0], MaxRetryError)
            return AlertOutcome(status="failed", attempts=self.retry.total + 1 if exhausted else 1,
                                error=f"{type(exc).__name__}: {exc}")
        retries = getattr(resp.raw, "retries", None)
        attempts = 1 + (len(retries.history) if retries is not None else 0)
        if 200 <= resp.status_code < 300:
            return AlertOutcome(status="sent", attempts=attempts, http_status=resp.status_code)
        return AlertOutcome(status="failed", attempts=attempts, http_status=resp.status_code,
                            error=f"HTTP {resp.status_code}: {resp.text[:200]}")

    def _forget_older_than(self, cutoff: float) -> None:
        for key in [k for k, ts in self._sent.items() if ts <= cutoff]:
            del self._sent[key]
