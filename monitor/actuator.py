"""Runs loads off the poller's thread: a load waits for Triton (up to the load timeout), and a
model whose load hangs must not hold the cycle of every other model. One action per model at a
time; the poller collects finished ones at the start of its next cycle, operators may wait on theirs.

An action = load the version pinned by a config override (monitor.act), then verify it with the
golden set; the model is never unloaded here."""
from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

from monitor.act import ActionOutcome, RepositoryClient
from monitor.probe import GoldenProber
from monitor.types import ProbeResult


@dataclass(frozen=True)
class ActionRequest:
    model: str
    version: str
    kind: str                   # rollback | reload | deploy | promote | reconcile
    reason: str
    actor: str = "poller"
    phase: str | None = None
    from_version: str | None = None
    submitted_at: float = 0.0
    # A reconcile that carries out a deploy decided elsewhere (another replica's sidecar or an
    # operator; the version is under watch): judged like a deploy, against the level before it.
    as_deploy: bool = False


@dataclass(frozen=True)
class ActionResult:
    request: ActionRequest
    outcome: ActionOutcome
    probe: ProbeResult | None
    finished_at: float

    @property
    def ok(self) -> bool:
        return self.outcome.ok and self.probe is not None and self.probe.status == "ok"


class Actuator:
    def __init__(self, repo: RepositoryClient, prober: GoldenProber, workers: int = 4,
                 clock: Callable[[], float] = time.time):
        self.repo, self.prober, self.clock = repo, prober, clock
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sentinel-act")
        self._lock = threading.Lock()  # guards the two collections below; never held for I/O
        self._in_flight: dict[str, Future] = {}
        self._finished: list[ActionResult] = []

    def busy(self, model: str) -> bool:
        with self._lock:
            return model in self._in_flight

    def in_flight(self) -> dict[str, str]:
        """model -> version of the actions still running."""
        with self._lock:
            return {m: f.request.version for m, f in self._in_flight.items()}  # type: ignore[attr-defined]

    def future_of(self, model: str) -> Future | None:
        with self._lock:
            return self._in_flight.get(model)

    def submit(self, request: ActionRequest) -> Future | None:
        """Start the action; None when one is already running for the model."""
        with self._lock:
            if request.model in self._in_flight:
                return None
            future = self._pool.submit(self._run, request)
            future.request = request  # type: ignore[attr-defined]
            self._in_flight[request.model] = future
        return future

    def _run(self, request: ActionRequest) -> ActionResult:
        try:
            outcome = self.repo.load(request.model, request.version, reload=request.kind == "reload")
            probe = self.prober.probe(request.model, request.version) if outcome.ok else None
        except Exception as exc:  # a broken config/manifest of one model: an outcome, not a crash
            outcome = ActionOutcome(False, request.model, request.version, request.kind, 0.0,
                                    f"{type(exc).__name__}: {exc}")
            probe = None
        result = ActionResult(request, outcome, probe, self.clock())
        with self._lock:
            self._in_flight.pop(request.model, None)
            self._finished.append(result)
        return result

    def take(self, result: ActionResult) -> bool:
        """Claim one finished result for the caller to apply (False: the poller already has it)."""
        with self._lock:
            if result in self._finished:
                self._finished.remove(result)
                return True
            return False

    def drain(self) -> list[ActionResult]:
        """Finished actions since the last call, oldest first."""
        with self._lock:
            out, self._finished = self._finished, []
        return out

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
