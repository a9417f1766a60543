"""Reduced-precision variants of an ONNX artefact (ONNX Runtime on CPU) and the evidence a variant
needs before it is published: its accuracy next to FP32's and both latencies, measured side by side
in one process on the same inputs."""
from __future__ import annotations

import logging
import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Mapping, Sequence

import numpy as np
import onnx

if TYPE_CHECKING:
    import torch

from build_scripts.specs import CompressionSpec

PRECISIONS = ("fp32", "fp16", "int8")
COMPRESSIONS = ("pruned", "distilled")  # smaller models made from the FP32 model (search only)
Run = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]


class CompressionError(RuntimeError):
    pass


@dataclass(frozen=True)
class Compressed:
    """A smaller torch model made from the original (pruned, distilled), what it is, and how it
    was made (recorded in the manifest)."""
    model: torch.nn.Module
    method: str
    details: dict


def variant_name(precision: str, compression: str | None = None) -> str:
    """The key of a variant's budget and latency: "int8", "distilled", "distilled+int8"."""
    if compression is None:
        return precision
    return compression if precision == "fp32" else f"{compression}+{precision}"


def method(precision: str, spec: CompressionSpec) -> str:
    int8 = f"int8-{spec.int8_method}" + ("-per-channel" if spec.per_channel else "")
    return {"fp32": "none", "fp16": "fp16-weights", "int8": int8}[precision]


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over a list of input dicts."""

    def __init__(self, batches: Sequence[Mapping[str, np.ndarray]]):
        self._batches = list(batches)
        self._it: Iterator = iter(self._batches)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):
        self._it = iter(self._batches)


def make_variant(src: Path, dst: Path, precision: str, spec: CompressionSpec,
                 calibration: Sequence[Mapping[str, np.ndarray]] = ()) -> Path:
    """Write the `precision` variant of the FP32 model at `src` to `dst`. Graph inputs and outputs
    keep their FP32/INT64 types, so runners and backends do not change with the precision."""
    if precision not in PRECISIONS:
        raise CompressionError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    if precision == "fp32":
        dst.write_bytes(Path(src).read_bytes())
        return dst
    if precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16
        model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
        onnx.save(model, str(dst))
        return dst
    with _quiet_root_logger():
        _quantize(src, dst, spec, calibration)
    return dst


@contextmanager
def _quiet_root_logger():
    # quantize_* log a "consider pre-processing" hint on the root logger on every call
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _quantize(src: Path, dst: Path, spec: CompressionSpec,
              calibration: Sequence[Mapping[str, np.ndarray]]) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    if spec.int8_method == "dynamic":
        quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=spec.per_channel,
                         op_types_to_quantize=list(spec.int8_ops))
    elif spec.int8_method == "static":
        if not calibration:
            raise CompressionError("static INT8 needs calibration inputs")
        # Symmetric INT8 QDQ is also the form TensorRT's explicit quantisation reads.
        quantize_static(src, dst, _Calibration(calibration), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        per_channel=spec.per_channel, op_types_to_quantize=list(spec.int8_ops),
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True})
    else:
        raise CompressionError(f"unknown int8 method {spec.int8_method!r}")


@dataclass(frozen=True)
class Latency:
    median_ms: float
    p90_ms: float
    runs: int


def side_by_side(runs: Mapping[str, Run], inputs: Mapping[str, np.ndarray], rounds: int = 7,
                 per_round: int = 30, clock: Callable[[], float] = time.perf_counter
                 ) -> dict[str, Latency]:
    """Latency of each runner on the same inputs, interleaved round by round (the order rotates),
    so background load on a shared machine falls on all of them alike."""
    names = list(runs)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for n in names:  # warm-up: first runs pay for allocations and lazy initialisation
        runs[n](inputs)
    for r in range(rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            for _ in range(per_round):
                start = clock()
                runs[n](inputs)
                samples[n].append((clock() - start) * 1000.0)
    return {n: Latency(float(np.median(s)), float(np.percentile(s, 90)), len(s))
            for n, s in samples.items()}


@dataclass(frozen=True)
class VariantReport:
    precision: str
    method: str
    metric: str
    fp32: float          # the metric on the FP32 artefact
    value: float         # the metric on this variant
    delta: float         # value - fp32 (negative = accuracy lost)
    budget: float        # the largest loss the spec accepts
    accepted: bool
    fp32_ms: float       # median latency of one request-sized run, measured side by side
    ms: float
    speedup: float       # fp32_ms / ms (> 1 = faster)
    size_bytes: int
    fp32_size_bytes: int
    variant: str = ""                 # the budget's key: "int8", "distilled", "distilled+int8"
    compression: str | None = None    # "pruned" / "distilled": a smaller model, not only precision
    watched: dict = field(default_factory=dict)  # spec.watch metric → {fp32, value, delta}

    def as_dict(self) -> dict:
        return asdict(self)


def judge(precision: str, spec: CompressionSpec, fp32_metrics: Mapping[str, float],
          metrics: Mapping[str, float], latency: Mapping[str, Latency], size_bytes: int,
          fp32_size_bytes: int, compression: str | None = None, structure: str | None = None
          ) -> VariantReport:
    """Pure: does the variant stay within its accuracy budget? A NaN metric never does. A
    compressed variant (`compression`, made as `structure`) is judged against the FP32 original
    under its own budget key (compress.variant_name), with `precision` applied on top of it."""
    if spec.metric not in metrics or spec.metric not in fp32_metrics:
        raise CompressionError(f"metric {spec.metric!r} missing from the evaluation "
                               f"(has {sorted(metrics)})")
    name = variant_name(precision, compression)
    budget = spec.budget.get(name)
    if budget is None:
        raise CompressionError(f"no accuracy budget for {name} (spec has {sorted(spec.budget)})")
    base, value = float(fp32_metrics[spec.metric]), float(metrics[spec.metric])
    delta = value - base
    accepted = math.isfinite(delta) and -delta <= budget + 1e-12
    fp32_ms, ms = latency["fp32"].median_ms, latency[name].median_ms
    how = method(precision, spec)
    if compression is not None:
        how = (structure or compression) + ("" if precision == "fp32" else f" + {how}")
    watched = {k: {"fp32": float(fp32_metrics[k]), "value": float(metrics[k]),
                   "delta": float(metrics[k]) - float(fp32_metrics[k])}
               for k in spec.watch if k in metrics and k in fp32_metrics}
    return VariantReport(precision, how, spec.metric, base, value, delta, budget, accepted,
                         fp32_ms, ms, fp32_ms / ms if ms > 0 else float("nan"), size_bytes,
                         fp32_size_bytes, name, compression, watched)
