"""Golden-set probes: replay a version's own golden requests (from its manifest) against the live
server and compare. Health endpoints stay 200 with a dead stub or garbage outputs; this does not."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import requests

from monitor.types import ProbeResult


def golden_set(repository: Path, model: str, version: str) -> list[dict]:
    manifest = json.loads((Path(repository) / model / str(version) / "manifest.json").read_text())
    return manifest.get("golden", [])


def _datatype(data: list) -> str:
    """KServe type of a golden input from its JSON values: text, real numbers or integers."""
    if any(isinstance(v, str) for v in data):
        return "BYTES"
    if any(isinstance(v, float) for v in data):
        return "FP32"
    return "INT64"


def _body(inputs: dict) -> dict:
    tensors = []
    for name, value in inputs.items():
        data = value if isinstance(value, list) else [value]
        tensors.append({"name": name, "datatype": _datatype(data), "shape": [1, len(data)],
                        "data": data})
    return {"inputs": tensors}


def mismatch(got: np.ndarray, want: np.ndarray) -> str:
    """What differs between a served output and its golden one, for the probe's reason: the
    largest difference over the finite outputs, and how many are not finite (a NaN version's
    outputs are all NaN, which has no largest difference)."""
    if got.shape != want.shape:
        return f"shape {got.shape}, expected {want.shape}"
    finite = np.isfinite(got)
    bad = int(got.size - finite.sum())
    parts = []
    if finite.any():
        parts.append(f"max |Δ| {float(np.abs(got[finite] - want[finite]).max()):.3g}")
    if bad:
        parts.append(f"{bad} of {got.size} not finite")
    return ", ".join(parts) + f" (shape {got.shape})"


class GoldenProber:
    def __init__(self, http_url: str, repository: Path, session: requests.Session | None = None,
                 timeout_s: float = 2.0, per_probe: int = 4, rtol: float = 1e-4, atol: float = 1e-5,
                 clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic):
        self.url = http_url.rstrip("/")
        self.repository = Path(repository)
        self._session = session or requests.Session()
        self._timeout = timeout_s
        self._per_probe = per_probe
        self._rtol, self._atol = rtol, atol
        self._clock = clock
        self._monotonic = monotonic
        self._cursor: dict[tuple[str, str], int] = {}

    def probe(self, model: str, version: str) -> ProbeResult:
        """Send `per_probe` golden requests (rotating through the set) to exactly this version."""
        now = self._clock()
        try:
            cases = golden_set(self.repository, model, version)
        except (OSError, ValueError, AttributeError, TypeError) as exc:
            return ProbeResult(model, version, now, "error", f"no golden set: {exc}")
        if not cases:
            return ProbeResult(model, version, now, "error", "manifest has no golden set")
        start = self._cursor.get((model, version), 0)
        self._cursor[(model, version)] = start + self._per_probe
        # The whole probe, not each request, is bounded by the timeout: a hung version must not hold
        # the monitoring cycle for per_probe × timeout.
        deadline = self._monotonic() + self._timeout
        for k in range(self._per_probe):
            case = cases[(start + k) % len(cases)]
            left = deadline - self._monotonic()
            if left <= 0:
                return ProbeResult(model, version, now, "timeout",
                                   f"{k} of {self._per_probe} golden requests in {self._timeout}s")
            try:
                body = _body(case["inputs"])
            except (KeyError, TypeError, AttributeError) as exc:
                return ProbeResult(model, version, now, "error", f"malformed golden case: {exc!r}")
            try:
                r = self._session.post(f"{self.url}/v2/models/{model}/versions/{version}/infer",
                                       json=body, timeout=left)
            except requests.Timeout:
                return ProbeResult(model, version, now, "timeout", f"no answer in {self._timeout}s")
            except requests.RequestException as exc:
                return ProbeResult(model, version, now, "error", f"request failed: {exc}")
            if r.status_code != 200:
                return ProbeResult(model, version, now, "error",
                                   f"HTTP {r.status_code}: {r.text[:200]}", r.status_code)
            try:
                outputs = {o["name"]: o["data"] for o in r.json()["outputs"]}
            except (ValueError, KeyError) as exc:
                # NaN arrives as bare NaN in JSON, which requests' parser accepts; other garbage not
                return ProbeResult(model, version, now, "mismatch", f"unreadable response: {exc}")
            for name, expected in (case.get("expected") or {}).items():
                got = np.asarray(outputs.get(name, []), dtype=np.float64)
                want = np.asarray(expected, dtype=np.float64)
                if got.shape != want.shape or not np.allclose(got, want, rtol=self._rtol,
                                                              atol=self._atol):
                    return ProbeResult(model, version, now, "mismatch",
                                       f"golden case {(start + k) % len(cases)} output {name!r}: "
                                       + mismatch(got, want))
        return ProbeResult(model, version, now, "ok", f"{self._per_probe} golden requests matched")
