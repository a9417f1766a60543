"""config.pbtxt from typed data: a ServingSpec → dict → protobuf ModelConfig (ParseDict rejects
unknown fields). Never string templates; reading and writing the file is sentinel.triton_config."""
from __future__ import annotations

from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2 as mc

from build_scripts.specs import ServingSpec, TensorSpec

_TRITON_DTYPES = {"int64": "TYPE_INT64", "int32": "TYPE_INT32", "float32": "TYPE_FP32",
                  "float16": "TYPE_FP16", "bool": "TYPE_BOOL", "object": "TYPE_STRING",
                  "bytes": "TYPE_STRING"}


def _tensor(t: TensorSpec) -> dict:
    if t.dtype not in _TRITON_DTYPES:
        raise ValueError(f"tensor {t.name!r}: dtype {t.dtype!r} has no Triton type")
    out = {"name": t.name, "data_type": _TRITON_DTYPES[t.dtype], "dims": [int(d) for d in t.shape]}
    if t.optional:
        out["optional"] = True
    return out


def config_dict(name: str, spec: ServingSpec, backend: str = "python") -> dict:
    cfg = {
        "name": name,
        "backend": backend,
        "max_batch_size": spec.max_batch_size,
        "input": [_tensor(t) for t in spec.inputs],
        "output": [_tensor(t) for t in spec.outputs],
        "instance_group": [{"kind": "KIND_CPU", "count": spec.instance_count}],
        "parameters": {k: {"string_value": v} for k, v in sorted(spec.parameters.items())},
    }
    if spec.max_batch_size > 0:
        cfg["dynamic_batching"] = {"max_queue_delay_microseconds": spec.max_queue_delay_us}
    return cfg


def model_config(name: str, spec: ServingSpec, backend: str = "python") -> mc.ModelConfig:
    return json_format.ParseDict(config_dict(name, spec, backend), mc.ModelConfig())
