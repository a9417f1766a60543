"""What every engine runner is: the interface, its options and its one error type. Its own module
so that the engines (runners.OrtRunner, trt_runner.TrtRunner) and the choice between them
(runners.select_runner) import it without importing each other."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol

import numpy as np


class RunnerError(RuntimeError):
    """The artefact cannot be loaded or run."""


class Runner(Protocol):
    name: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...


@dataclass(frozen=True)
class RunnerOptions:
    # One intra-op thread per instance measured best on 2 cores (PLATFORM.md): parallelism comes
    # from Triton instances and dynamic batching, not from threads fighting inside one run.
    intra_op_threads: int = 1
    inter_op_threads: int = 1
