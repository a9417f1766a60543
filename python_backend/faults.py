"""Deliberate misbehaviour for fault-injected versions (tests and the demo). A version carries its
fault in manifest.json, so the same model.py serves good and bad versions alike."""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

FAULT_KINDS = ("errors", "latency", "nan", "constant", "shift", "crash", "load_failure", "leak",
               "cpu", "slow_after", "reversed")
# Faults that make a worse model rather than a broken one: the version's golden set is computed
# through the fault (build_scripts/ranker_build.py), so its probes pass and only feedback tells.
SELF_CONSISTENT = ("reversed",)


class InjectedFault(RuntimeError):
    """Raised by a fault-injected version; counted as a backend failure by Triton."""


@dataclass(frozen=True)
class Fault:
    kind: str
    fraction: float = 1.0       # errors/nan: share of requests affected
    latency_ms: float = 0.0     # latency: added per execute
    latency_factor: float = 0.0  # latency: added as a multiple of the real compute time
    shift: float = 0.0          # shift: added to scores in logit space
    after_requests: int = 0     # crash: the stub dies after this many requests
    leak_kib: float = 0.0       # leak: kept alive per request...
    leak_max_mib: float = 0.0   # ...up to this much in all (a test must never eat the machine)
    cpu_factor: float = 0.0     # cpu: busy CPU per execute, as a multiple of the real compute time
    cpu_ms: float = 0.0         # cpu: plus this many ms of busy CPU per request
    after_s: float = 0.0        # slow_after: healthy for this long after initialize, then slow

    @classmethod
    def from_manifest(cls, data: Mapping | None) -> "Fault | None":
        if not data:
            return None
        if data.get("kind") not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {data.get('kind')!r}; known: {FAULT_KINDS}")
        fault = cls(**data)
        if fault.kind == "leak" and not (fault.leak_kib > 0 and fault.leak_max_mib > 0):
            raise ValueError("fault 'leak' needs leak_kib > 0 and a bound leak_max_mib > 0")
        return fault


class FaultInjector:
    def __init__(self, fault: Fault | None, seed: int = 0,
                 sleep: Callable[[float], None] = time.sleep,
                 kill: Callable[[], None] = lambda: os.kill(os.getpid(), signal.SIGKILL),
                 clock: Callable[[], float] = time.monotonic,
                 cpu_clock: Callable[[], float] = time.thread_time):
        self.fault = fault
        self._clock = clock
        self._cpu_clock = cpu_clock
        self._started = clock()
        self._leaked: list[bytes] = []
        self._leaked_bytes = 0
        self._rng = np.random.default_rng(seed)
        self._sleep = sleep
        self._kill = kill
        self._seen = 0

    def on_initialize(self) -> None:
        if self.fault and self.fault.kind == "load_failure":
            raise InjectedFault("fault 'load_failure': this version refuses to load")

    def before_request(self) -> None:
        """Called once per request; raises for requests chosen to fail."""
        f = self.fault
        if f is None:
            return
        self._seen += 1
        if f.kind == "crash" and self._seen > f.after_requests:
            self._kill()
        if f.kind == "errors" and self._rng.random() < f.fraction:
            raise InjectedFault("fault 'errors': this version fails a share of requests")
        if f.kind == "leak" and self._leaked_bytes < f.leak_max_mib * 2**20:
            # Filled, not zeroed: a zeroed buffer may stay unmapped and never show in the RSS.
            chunk = b"\xa5" * int(f.leak_kib * 1024)
            self._leaked.append(chunk)
            self._leaked_bytes += len(chunk)
        if f.kind == "cpu" and f.cpu_ms:
            self._burn(f.cpu_ms / 1000.0)

    def after_execute(self, compute_s: float) -> None:
        f = self.fault
        if f and f.kind == "latency":
            self._sleep(f.latency_ms / 1000.0 + f.latency_factor * compute_s)
        elif f and f.kind == "slow_after" and self._clock() - self._started >= f.after_s:
            self._sleep(f.latency_ms / 1000.0 + f.latency_factor * compute_s)
        elif f and f.kind == "cpu" and f.cpu_factor:
            self._burn(f.cpu_factor * compute_s)

    @property
    def leaked_bytes(self) -> int:
        return self._leaked_bytes

    def _burn(self, seconds: float) -> None:
        """Busy CPU (not a sleep): the stub's CPU seconds per request go up, as with a slow path
        that computes more."""
        end = self._cpu_clock() + seconds
        x = 0
        while self._cpu_clock() < end:
            x += 1

    def scores(self, scores: np.ndarray) -> np.ndarray:
        f = self.fault
        if f is None:
            return scores
        if f.kind == "nan" and self._rng.random() < f.fraction:
            return np.full_like(scores, np.nan)
        if f.kind == "reversed":
            # The same scores, handed out in reverse order within the request: the best item gets
            # the lowest. Distribution, latency and probes unchanged; the ranking is upside down.
            order = np.argsort(scores, kind="stable")
            out = np.empty_like(scores)
            out[order] = scores[order][::-1]
            return out
        if f.kind == "constant":
            return np.full_like(scores, 0.5)
        if f.kind == "shift":
            logit = np.log(np.clip(scores, 1e-6, 1 - 1e-6) / np.clip(1 - scores, 1e-6, 1))
            return (1.0 / (1.0 + np.exp(-(logit + f.shift)))).astype(scores.dtype)
        return scores
