"""Deliberate misbehaviour for fault-injected versions (tests and the demo). A version carries its
fault in manifest.json, so the same model.py serves good and bad versions alike."""
from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

FAULT_KINDS = ("errors", "latency", "nan", "constant", "shift", "crash", "load_failure")


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

    @classmethod
    def from_manifest(cls, data: Mapping | None) -> "Fault | None":
        if not data:
            return None
        if data.get("kind") not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {data.get('kind')!r}; known: {FAULT_KINDS}")
        return cls(**data)


class FaultInjector:
    def __init__(self, fault: Fault | None, seed: int = 0,
                 sleep: Callable[[float], None] = time.sleep,
                 kill: Callable[[], None] = lambda: os.kill(os.getpid(), signal.SIGKILL)):
        self.fault = fault
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

    def after_execute(self, compute_s: float) -> None:
        f = self.fault
        if f and f.kind == "latency":
            self._sleep(f.latency_ms / 1000.0 + f.latency_factor * compute_s)

    def scores(self, scores: np.ndarray) -> np.ndarray:
        f = self.fault
        if f is None:
            return scores
        if f.kind == "nan" and self._rng.random() < f.fraction:
            return np.full_like(scores, np.nan)
        if f.kind == "constant":
            return np.full_like(scores, 0.5)
        if f.kind == "shift":
            logit = np.log(np.clip(scores, 1e-6, 1 - 1e-6) / np.clip(1 - scores, 1e-6, 1))
            return (1.0 / (1.0 + np.exp(-(logit + f.shift)))).astype(scores.dtype)
        return scores
