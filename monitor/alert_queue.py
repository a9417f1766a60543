"""Alerts leave the monitoring cycle through a bounded queue with its own sender thread, so a slow or
unreachable webhook (timeouts, retries with back-off) never holds a cycle. When the queue is full
the oldest waiting alert is dropped and counted: the newest says most about the present."""
from __future__ import annotations

import collections
import logging
import threading
from typing import Callable, Protocol

from monitor.types import Alert, AlertOutcome

log = logging.getLogger("sentinel.monitor")


class AlertSink(Protocol):
    def send(self, alert: Alert) -> AlertOutcome: ...


class AlertQueue:
    def __init__(self, sink: AlertSink, maxsize: int = 100,
                 on_drop: Callable[[Alert], None] = lambda alert: None):
        self.sink = sink
        self._queue: collections.deque[Alert] = collections.deque()
        self._maxsize = maxsize
        self._on_drop = on_drop
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0
        self.outcomes: collections.deque[AlertOutcome] = collections.deque(maxlen=100)
        self._thread = threading.Thread(target=self._run, name="sentinel-alerts", daemon=True)
        self._thread.start()

    def send(self, alert: Alert) -> None:
        """Never blocks on the network."""
        with self._cond:
            if len(self._queue) >= self._maxsize:
                dropped = self._queue.popleft()
                self.dropped += 1
                self._on_drop(dropped)
            self._queue.append(alert)
            self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._queue)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed and not self._queue:
                    return
                alert = self._queue.popleft()
            try:
                outcome = self.sink.send(alert)
            except Exception:  # the sender must outlive any one bad alert
                log.exception("alert %s could not be sent", alert.alertname)
                continue
            self.outcomes.append(outcome)
            if outcome.status == "failed":
                log.warning("alert %s failed: %s", alert.alertname, outcome.error)

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop after sending what is queued (at most timeout_s)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=timeout_s)
