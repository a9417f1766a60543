"""The runner interface: one model artefact, numpy in, numpy out. Which engine runs is chosen here,
not in model.py: TensorRT (python_backend.trt_runner) when the version has a `model.plan` and this
host can run it, ONNX Runtime on CPU otherwise."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Protocol

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


PLAN = "model.plan"
ONNX = "model.onnx"


def _tensorrt_available() -> bool:
    from python_backend.trt_runner import tensorrt_available
    return tensorrt_available()


def select_runner(version_dir: Path, options: RunnerOptions = RunnerOptions(),
                  gpu_available: Callable[[], bool] = _tensorrt_available) -> Runner:
    """Pick the engine for a published version directory: the TensorRT engine when there is one
    and TensorRT with a CUDA device works here, else the ONNX artefact on ONNX Runtime (a version
    built on a GPU host keeps its model.onnx, so the same version also serves on CPU)."""
    version_dir = Path(version_dir)
    plan, onnx_path = version_dir / PLAN, version_dir / ONNX
    if plan.is_file() and gpu_available():
        from python_backend.trt_runner import TrtRunner
        return TrtRunner(plan, options)
    if onnx_path.is_file():
        return OrtRunner(onnx_path, options)
    raise RunnerError(f"no runnable artefact in {version_dir} (expected {ONNX}"
                      + (f"; {PLAN} needs TensorRT and a CUDA GPU)" if plan.is_file() else ")"))
