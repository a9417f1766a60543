"""Triton's ModelConfig as typed protobuf: read and write `config.pbtxt`, and the JSON form of a
load-time override. Shared by the build (which generates configs from specs, in
build_scripts/serving_config.py) and the sidecar (which pins versions), so neither imports the
other's code."""
from __future__ import annotations

from pathlib import Path

from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2 as mc


class ConfigFileError(ValueError):
    def __init__(self, path: Path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def to_pbtxt(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config)


def read_pbtxt(path: Path) -> mc.ModelConfig:
    try:
        return text_format.Parse(Path(path).read_text(), mc.ModelConfig())
    except text_format.ParseError as exc:
        raise ConfigFileError(Path(path), f"not a valid Triton ModelConfig: {exc}") from exc


def to_json(config: mc.ModelConfig) -> dict:
    """The JSON form Triton's repository API accepts as a load-time config override."""
    return json_format.MessageToDict(config, preserving_proto_field_name=True)
