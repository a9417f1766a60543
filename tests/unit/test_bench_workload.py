import json

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from sentinel.bench.workload import (grpc_bodies, json_bodies, ranking_requests,
                                     write_perf_analyzer_data)


def test_requests_are_seeded_distinct_and_in_range():
    a = ranking_requests(256, n_users=943, n_items=1682, count=8, seed=3)
    b = ranking_requests(256, n_users=943, n_items=1682, count=8, seed=3)
    assert [r.user for r in a] == [r.user for r in b]
    for r in a:
        assert 1 <= r.user <= 943 and r.items.size == 256
        assert len(set(r.items.tolist())) == 256 and r.items.min() >= 1 and r.items.max() <= 1682


def test_too_many_candidates_is_refused():
    with pytest.raises(ValueError, match="1..5"):
        ranking_requests(6, n_users=3, n_items=5)


def test_grpc_bodies_decode_to_the_triton_request():
    reqs = ranking_requests(4, n_users=10, n_items=20, count=2)
    msg = service_pb2.ModelInferRequest.FromString(grpc_bodies(reqs, "ranker")[1])
    assert msg.model_name == "ranker"
    assert [(t.name, t.datatype, list(t.shape)) for t in msg.inputs] == [
        ("user_id", "INT64", [1, 1]), ("item_ids", "INT64", [1, 4])]
    assert np.frombuffer(msg.raw_input_contents[1], np.int64).tolist() == reqs[1].items.tolist()
    assert np.frombuffer(msg.raw_input_contents[0], np.int64).tolist() == [reqs[1].user]


def test_json_and_perf_analyzer_data_carry_the_same_requests(tmp_path):
    reqs = ranking_requests(3, n_users=10, n_items=20, count=2)
    body = json.loads(json_bodies(reqs)[0])
    assert body == {"user_id": reqs[0].user, "item_ids": reqs[0].items.tolist()}
    data = json.loads(write_perf_analyzer_data(reqs, tmp_path / "d.json").read_text())["data"]
    assert data[1]["item_ids"] == {"content": reqs[1].items.tolist(), "shape": [3]}
    assert data[1]["user_id"] == {"content": [reqs[1].user], "shape": [1]}
