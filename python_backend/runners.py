"""The runner interface: one model artefact, numpy in, numpy out. Which engine runs is chosen here,
not in model.py: TensorRT (python_backend.trt_runner) when the version has a `model.plan` and this
host can run it, ONNX Runtime on CPU otherwise."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from python_backend import trt_runner
from python_backend.runner_types import Runner, RunnerError, RunnerOptions

__all__ = ["OrtRunner", "Runner", "RunnerError", "RunnerOptions", "select_runner"]


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
    return trt_runner.tensorrt_available()  # looked up at call time: tests replace it


def select_runner(version_dir: Path, options: RunnerOptions = RunnerOptions(),
                  gpu_available: Callable[[], bool] = _tensorrt_available) -> Runner:
    """Pick the engine for a published version directory: the TensorRT engine when there is one
    and TensorRT with a CUDA device works here, else the ONNX artefact on ONNX Runtime (a version
    built on a GPU host keeps its model.onnx, so the same version also serves on CPU)."""
    version_dir = Path(version_dir)
    plan, onnx_path = version_dir / PLAN, version_dir / ONNX
    if plan.is_file() and gpu_available():
        return trt_runner.TrtRunner(plan, options)
    if onnx_path.is_file():
        return OrtRunner(onnx_path, options)
    raise RunnerError(f"no runnable artefact in {version_dir} (expected {ONNX}"
                      + (f"; {PLAN} needs TensorRT and a CUDA GPU)" if plan.is_file() else ")"))
