"""The runner interface: one model artefact, numpy in, numpy out. Which engine runs is chosen here,
not in model.py. Only ONNX Runtime (CPU) exists so far; a TensorRT runner slots in behind the same
protocol (it needs a `.plan` and a GPU)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
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


class OrtRunner:
    name = "onnxruntime"

    def __init__(self, path: Path, options: RunnerOptions = RunnerOptions()):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = options.intra_op_threads
        so.inter_op_num_threads = options.inter_op_threads
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises several unrelated types for a bad file
            raise RunnerError(f"cannot load ONNX model {path}: {exc}") from exc
        self.input_names = tuple(i.name for i in self._session.get_inputs())
        self.output_names = tuple(o.name for o in self._session.get_outputs())

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        outs = self._session.run(list(self.output_names), dict(inputs))
        return dict(zip(self.output_names, outs))


def select_runner(version_dir: Path, options: RunnerOptions = RunnerOptions()) -> Runner:
    """Pick the engine for a published version directory."""
    onnx_path = version_dir / "model.onnx"
    if onnx_path.is_file():
        return OrtRunner(onnx_path, options)
    raise RunnerError(f"no runnable artefact in {version_dir} (expected model.onnx)")
