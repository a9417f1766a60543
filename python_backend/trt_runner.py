"""A TensorRT engine (`model.plan`) behind the Runner protocol: numpy in, numpy out, device buffers
and a CUDA stream managed here. Needs the `tensorrt` and `cuda-python` packages and a CUDA GPU
(`pip install sentinel-triton[gpu]`, or NVIDIA's TensorRT/Triton images); select_runner only picks
it when tensorrt_available() says so, and ONNX Runtime serves otherwise."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Mapping

import numpy as np

from python_backend.runner_types import RunnerError, RunnerOptions


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        from cuda import cudart  # older cuda-python layout
    return cudart


def _check(result, what: str):
    """cuda-python returns (error, *values); turn a failure into a RunnerError."""
    err, *values = result if isinstance(result, tuple) else (result,)
    cudart = _cudart()
    if err != cudart.cudaError_t.cudaSuccess:
        raise RunnerError(f"CUDA {what} failed: {err}")
    return values[0] if len(values) == 1 else values


def cuda_device_count() -> int:
    try:
        cudart = _cudart()
    except ImportError:
        return 0
    err, count = cudart.cudaGetDeviceCount()
    return int(count) if err == cudart.cudaError_t.cudaSuccess else 0


def tensorrt_available() -> bool:
    """True only where an engine can actually run: TensorRT importable and a CUDA device visible."""
    return importlib.util.find_spec("tensorrt") is not None and cuda_device_count() > 0


class TrtRunner:
    name = "tensorrt"

    def __init__(self, plan: Path, options: RunnerOptions = RunnerOptions()):
        import tensorrt as trt

        self._trt = trt
        self._cudart = _cudart()
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = self._runtime.deserialize_cuda_engine(Path(plan).read_bytes())
        if self._engine is None:
            raise RunnerError(f"cannot deserialise TensorRT engine {plan} (built for another "
                              "GPU or TensorRT version?)")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        is_input = {n: self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.input_names = tuple(n for n in names if is_input[n])
        self.output_names = tuple(n for n in names if not is_input[n])
        self._dtypes = {n: np.dtype(trt.nptype(self._engine.get_tensor_dtype(n))) for n in names}
        self._stream = _check(self._cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)

    def _device(self, name: str, nbytes: int) -> int:
        """A device buffer of at least nbytes for this tensor, reused across calls."""
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                _check(self._cudart.cudaFree(ptr), "cudaFree")
            ptr = _check(self._cudart.cudaMalloc(max(nbytes, 1)), "cudaMalloc")
            self._buffers[name] = (ptr, nbytes)
        return ptr

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        cudart, ctx = self._cudart, self._context
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        keep = []  # host arrays must outlive the async copies
        for n in self.input_names:
            arr = np.ascontiguousarray(inputs[n], dtype=self._dtypes[n])
            keep.append(arr)
            if not ctx.set_input_shape(n, arr.shape):
                raise RunnerError(f"input {n!r} shape {arr.shape} is outside the engine's profile")
            ptr = self._device(n, arr.nbytes)
            _check(cudart.cudaMemcpyAsync(ptr, arr.ctypes.data, arr.nbytes, h2d, self._stream),
                   "copy to device")
            ctx.set_tensor_address(n, ptr)
        outs = {}
        for n in self.output_names:
            out = np.empty(tuple(ctx.get_tensor_shape(n)), self._dtypes[n])
            ctx.set_tensor_address(n, self._device(n, out.nbytes))
            outs[n] = out
        if not ctx.execute_async_v3(self._stream):
            raise RunnerError("TensorRT execution failed")
        for n, out in outs.items():
            _check(cudart.cudaMemcpyAsync(out.ctypes.data, self._buffers[n][0], out.nbytes, d2h,
                                          self._stream), "copy to host")
        _check(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        return outs

    def close(self) -> None:
        for ptr, _ in self._buffers.values():
            self._cudart.cudaFree(ptr)
        self._buffers.clear()
        self._cudart.cudaStreamDestroy(self._stream)
