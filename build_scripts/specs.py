"""Declarative specs: what a model's ONNX graph looks like, how closely it must match torch, and how
Triton serves it. The generic pipeline consumes these; nothing model-specific lives in it."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# A dim is an int (fixed) or a str (a named dynamic axis, e.g. "batch").
Dim = int | str


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str            # numpy dtype name: "int64", "float32", "object" (BYTES)
    shape: tuple[Dim, ...]
    optional: bool = False

    def dynamic_axes(self) -> dict[int, str]:
        return {i: d for i, d in enumerate(self.shape) if isinstance(d, str)}


@dataclass(frozen=True)
class Tolerance:
    atol: float = 1e-5
    rtol: float = 1e-4


@dataclass(frozen=True)
class ExportSpec:
    """The ONNX artefact: graph inputs/outputs in torch forward() order, opset, parity tolerance."""
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    opset: int = 17
    tolerance: dict[str, Tolerance] = field(default_factory=dict)  # per output name

    def tolerance_for(self, output: str) -> Tolerance:
        return self.tolerance.get(output, Tolerance())


@dataclass(frozen=True)
class ServingSpec:
    """The Triton model: request tensors (without the batch dim), batching and instances."""
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int = 32
    max_queue_delay_us: int = 200
    instance_count: int = 2
    parameters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    export: ExportSpec
    serving: ServingSpec
    golden_requests: int = 32


RANKER = ModelSpec(
    name="ranker",
    export=ExportSpec(
        inputs=(TensorSpec("cat", "int64", ("rows", 8)), TensorSpec("dense", "float32", ("rows", 21))),
        outputs=(TensorSpec("score", "float32", ("rows",)),),
        tolerance={"score": Tolerance(atol=1e-5, rtol=1e-4)},
    ),
    serving=ServingSpec(
        inputs=(TensorSpec("user_id", "int64", (1,)),
                TensorSpec("item_ids", "int64", (-1,)),
                TensorSpec("timestamp", "int64", (1,), optional=True)),
        outputs=(TensorSpec("scores", "float32", (-1,)),),
        parameters={"ORT_INTRA_OP_THREADS": "1"},
    ),
)


def numpy_dtype(spec: TensorSpec) -> np.dtype:
    return np.dtype(spec.dtype)
