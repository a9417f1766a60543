"""Generic torch → ONNX export driven by an ExportSpec."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from build_scripts.specs import ExportSpec


class ExportError(RuntimeError):
    pass


def export_onnx(model: torch.nn.Module, spec: ExportSpec, sample: dict[str, np.ndarray],
                path: Path) -> Path:
    """Export with every spec'd dynamic axis; the result is checked by onnx.checker and its graph
    inputs/outputs are compared with the spec, so a renamed tensor fails here, not in Triton."""
    model.eval()
    args = tuple(torch.from_numpy(np.ascontiguousarray(sample[t.name])) for t in spec.inputs)
    dynamic_axes = {t.name: t.dynamic_axes() for t in (*spec.inputs, *spec.outputs) if t.dynamic_axes()}
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of dynamo, but it is ~20x faster for
        # these graphs and its output is validated against torch below just the same.
        warnings.simplefilter("ignore", DeprecationWarning)
        # Tracing warns about Python-level branches (transformers' mask helpers); what tracing
        # could get wrong shows up in the parity check against torch on other shapes instead.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # advanced indexing in those helpers uses non-negative indices only
        warnings.filterwarnings("ignore", message="Exporting aten::index operator")
        torch.onnx.export(model, args, str(path), input_names=[t.name for t in spec.inputs],
                          output_names=[t.name for t in spec.outputs], dynamic_axes=dynamic_axes,
                          opset_version=spec.opset, dynamo=False)
    graph = onnx.load(str(path))
    try:
        onnx.checker.check_model(graph)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"exported graph {path} is invalid: {exc}") from exc
    got_in = [i.name for i in graph.graph.input]
    got_out = [o.name for o in graph.graph.output]
    want_in = [t.name for t in spec.inputs]
    want_out = [t.name for t in spec.outputs]
    if got_in != want_in or got_out != want_out:
        raise ExportError(f"graph tensors {got_in}->{got_out} differ from spec {want_in}->{want_out}")
    return path
