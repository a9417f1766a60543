"""The ranker as plain library code: a published version directory in, scores out. model.py only
converts Triton tensors to numpy and back around this class."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from python_backend.errors import InvalidRequest
from python_backend.faults import Fault, FaultInjector
from python_backend.ranker_features import (FeatureTables, RankRequest, encode_requests,
                                            parse_request)
from python_backend.runners import Runner, RunnerOptions, select_runner


class RankerService:
    def __init__(self, version_dir: Path, options: RunnerOptions = RunnerOptions(),
                 clock: Callable[[], float] = time.time, runner: Runner | None = None,
                 injector: FaultInjector | None = None):
        version_dir = Path(version_dir)
        manifest = json.loads((version_dir / "manifest.json").read_text())
        self.faults = injector or FaultInjector(Fault.from_manifest(manifest.get("fault")))
        self.faults.on_initialize()
        self.tables = FeatureTables.load(version_dir / "features.npz")
        self.runner = runner or select_runner(version_dir, options)
        self._clock = clock

    def parse(self, user_id: np.ndarray | None, item_ids: np.ndarray | None,
              timestamp: np.ndarray | None) -> RankRequest:
        return parse_request(self.tables, user_id, item_ids, timestamp, int(self._clock()))

    def admit(self, req: RankRequest) -> None:
        """Per-request fault hook; raises InjectedFault for requests a faulty version fails."""
        self.faults.before_request()

    def score(self, reqs: list[RankRequest]) -> list[np.ndarray]:
        """Scores for several requests from a single model run, split back per request."""
        flat, bounds = self.score_flat(reqs)
        return [flat[a:b] for a, b in zip(bounds, bounds[1:])]

    def score_flat(self, reqs: list[RankRequest]) -> tuple[np.ndarray, list[int]]:
        """All requests' scores in one float32 array and the offsets that split it per request
        (request i is flat[bounds[i]:bounds[i + 1]]): the serving path slices views out of it
        and counts metrics over the whole batch at once."""
        cat, dense = encode_requests(self.tables, reqs)
        start = time.perf_counter()
        flat = self.runner.run({"cat": cat, "dense": dense})["score"]
        flat = flat.reshape(-1).astype(np.float32, copy=False)  # the served dtype (FP32)
        self.faults.after_execute(time.perf_counter() - start)
        bounds = [0]
        for r in reqs:
            bounds.append(bounds[-1] + r.items.size)
        if self.faults.fault is not None:  # faults act per request (e.g. NaN for a share of them)
            for a, b in zip(bounds, bounds[1:]):
                flat[a:b] = self.faults.scores(flat[a:b])
        return flat, bounds


__all__ = ["RankerService", "InvalidRequest"]
