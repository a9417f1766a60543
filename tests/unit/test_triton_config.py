from pathlib import Path

import pytest
from google.protobuf import json_format

from build_scripts.specs import RANKER, ServingSpec, TensorSpec
from build_scripts.serving_config import model_config
from sentinel.triton_config import ConfigFileError, read_pbtxt, to_json, to_pbtxt

ROOT = Path(__file__).resolve().parents[2]


def test_config_round_trips_through_pbtxt(tmp_path):
    config = model_config("ranker", RANKER.serving)
    path = tmp_path / "config.pbtxt"
    path.write_text(to_pbtxt(config))
    back = read_pbtxt(path)
    assert back == config
    assert back.max_batch_size == 32
    assert [i.name for i in back.input] == ["user_id", "item_ids", "timestamp"]
    assert back.input[2].optional and not back.input[0].optional
    assert list(back.output[0].dims) == [-1]
    # dynamic batching on, with no delay: proto3 writes the 0 as an empty block, which must
    # still read back as batching enabled
    assert back.HasField("dynamic_batching")
    assert back.dynamic_batching.max_queue_delay_microseconds == 0
    assert back.instance_group[0].count == 2
    assert back.parameters["ORT_INTRA_OP_THREADS"].string_value == "1"


def test_committed_config_is_what_the_generator_writes():
    committed = read_pbtxt(ROOT / "model_repository" / "ranker" / "config.pbtxt")
    assert committed == model_config("ranker", RANKER.serving)


def test_unknown_dtype_is_refused():
    spec = ServingSpec(inputs=(TensorSpec("x", "complex64", (1,)),), outputs=())
    with pytest.raises(ValueError, match="complex64"):
        model_config("m", spec)


def test_json_override_form_parses_back():
    config = model_config("ranker", RANKER.serving)
    data = to_json(config)
    data["version_policy"] = {"specific": {"versions": [1]}}
    from tritonclient.grpc import model_config_pb2 as mc
    back = json_format.ParseDict(data, mc.ModelConfig())
    assert list(back.version_policy.specific.versions) == [1]
    assert back.input[1].name == "item_ids"


def test_broken_pbtxt_names_the_file(tmp_path):
    path = tmp_path / "config.pbtxt"
    path.write_text('name: "x"\nmax_batch_size: "many"\n')
    with pytest.raises(ConfigFileError) as err:
        read_pbtxt(path)
    assert str(path) in str(err.value)
