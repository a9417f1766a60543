"""The TensorRT stage (named so it cannot shadow the `tensorrt` package): ONNX → serialized engine
(`model.plan`) with the TensorRT Python API, one optimisation profile from the spec's axis ranges,
FP16/INT8 builder flags and a persistent timing cache; plus the `tensorrt_plan` Triton config for GPU
deployments that serve the engine directly.

Where TensorRT or a CUDA GPU is missing (the project's CPU machines), the stage says so in one line
and the build publishes the ONNX artefact alone."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as mc

from build_scripts.specs import ExportSpec, ServingSpec, TensorSpec
from build_scripts.serving_config import config_dict

ROOT = Path(__file__).resolve().parents[1]
TIMING_CACHE = ROOT / ".sentinel" / "tensorrt-timing.cache"  # reused across builds on one GPU type
WORKSPACE_BYTES = 1 << 30

Shapes = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]


class EngineBuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class EngineOutcome:
    status: str                # "built" | "skipped"
    reason: str                # one line for the build log and the manifest
    precision: str
    plan: Path | None = None
    build_seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"status": self.status, "reason": self.reason, "precision": self.precision,
                "plan": self.plan.name if self.plan else None, "build_seconds": self.build_seconds}


def profile_shapes(spec: ExportSpec) -> dict[str, Shapes]:
    """(min, opt, max) shape per graph input, every dynamic axis from the spec's AxisRange."""
    return {t.name: (spec.shape_at(t, "min"), spec.shape_at(t, "opt"), spec.shape_at(t, "max"))
            for t in spec.inputs}


def unavailable_reason() -> str | None:
    """Why no engine can be built here, or None when TensorRT and a CUDA GPU are present."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return ("TensorRT is not installed (it needs a CUDA host: `pip install "
                "sentinel-triton[gpu]`, or NVIDIA's TensorRT/Triton image)")
    from python_backend.trt_runner import cuda_device_count
    if cuda_device_count() == 0:
        return "no CUDA GPU is visible (or cuda-python is missing)"
    return None


def build_engine(onnx_path: Path, spec: ExportSpec, precision: str, plan_path: Path,
                 timing_cache: Path = TIMING_CACHE) -> Path:
    """Parse, configure and build. For INT8, `onnx_path` must be a QDQ model (static symmetric
    quantisation): TensorRT's explicit quantisation takes its scales from the Q/DQ nodes."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)  # TF32 matmuls would miss FP32 parity tolerances
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # INT8 engines keep non-quantised layers in FP16
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile_shapes(spec).items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT built no engine from {onnx_path} (see its log above)")
    plan_path.write_bytes(bytes(serialized))
    timing_cache.parent.mkdir(parents=True, exist_ok=True)
    timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    return plan_path


def engine_stage(spec: ExportSpec, onnx_path: Path, precision: str, plan_path: Path,
                 probe: Callable[[], str | None] = unavailable_reason,
                 build: Callable[..., Path] = build_engine) -> EngineOutcome:
    reason = probe()
    if reason is not None:
        return EngineOutcome("skipped", f"TensorRT stage skipped: {reason}; publishing the "
                                        "ONNX Runtime artefact only", precision)
    start = time.perf_counter()
    plan = build(onnx_path, spec, precision, plan_path)
    seconds = round(time.perf_counter() - start, 2)
    return EngineOutcome("built", f"TensorRT {precision} engine built in {seconds}s", precision,
                         plan, seconds)


def tensorrt_plan_config(name: str, spec: ExportSpec, instance_count: int = 1,
                         max_queue_delay_us: int = 200) -> mc.ModelConfig:
    """Config for serving the engine with Triton's TensorRT backend. The graph's leading dynamic
    axis becomes Triton's batch dimension (max_batch_size = that axis's max); other dynamic axes
    are -1."""
    first = spec.inputs[0].shape[0]
    if not isinstance(first, str) or any(t.shape[0] != first for t in (*spec.inputs, *spec.outputs)):
        raise ValueError(f"{name}: every tensor must lead with the same dynamic batch axis")

    def strip(t: TensorSpec) -> TensorSpec:
        return TensorSpec(t.name, t.dtype, tuple(-1 if isinstance(d, str) else d
                                                 for d in t.shape[1:]))

    serving = ServingSpec(tuple(strip(t) for t in spec.inputs), tuple(strip(t) for t in spec.outputs),
                          max_batch_size=spec.axes[first].max, max_queue_delay_us=max_queue_delay_us,
                          instance_count=instance_count)
    cfg = config_dict(name, serving)
    del cfg["backend"]
    cfg["platform"] = "tensorrt_plan"
    cfg["default_model_filename"] = "model.plan"
    cfg["instance_group"] = [{"kind": "KIND_GPU", "count": instance_count}]
    return json_format.ParseDict(cfg, mc.ModelConfig())
