"""The ranker as plain library code: a published version directory in, scores out. model.py only
converts Triton tensors to numpy and back around this class."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from python_backend.faults import Fault, FaultInjector
from python_backend.ranker_features import (FeatureTables, InvalidRequest, RankRequest,
                                            encode_requests, parse_request)
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
        cat, dense = encode_requests(self.tables, reqs)
        start = time.perf_counter()
        scores = self.runner.run({"cat": cat, "dense": dense})["score"].reshape(-1)
        self.faults.after_execute(time.perf_counter() - start)
        bounds = np.cumsum([r.items.size for r in reqs])[:-1]
        return [self.faults.scores(s) for s in np.split(scores, bounds)]


__all__ = ["RankerService", "InvalidRequest"]
