import json

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from sentinel.bench.workload import (grpc_bodies, http_bodies, json_bodies, ranking_requests,
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


def test_http_bodies_are_triton_binary_tensor_requests():
    reqs = ranking_requests(16, n_users=50, n_items=100, count=2)
    raw = http_bodies(reqs, "127.0.0.1", 8000)[1]
    head, _, body = raw.partition(b"\r\n\r\n")
    headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
    assert head.startswith(b"POST /v2/models/ranker/infer HTTP/1.1")
    assert int(headers[b"Content-Length"]) == len(body)
    json_len = int(headers[b"Inference-Header-Content-Length"])
    header = json.loads(body[:json_len])
    assert [(t["name"], t["shape"], t["parameters"]["binary_data_size"]) for t in header["inputs"]] \
        == [("user_id", [1, 1], 8), ("item_ids", [1, 16], 128)]
    assert header["outputs"] == [{"name": "scores", "parameters": {"binary_data": True}}]
    tail = body[json_len:]
    assert np.frombuffer(tail[:8], np.int64)[0] == reqs[1].user
    assert np.array_equal(np.frombuffer(tail[8:], np.int64), reqs[1].items)


def _answer_once(response: bytes) -> int:
    """A loopback server that answers one request with `response` bytes; returns its port."""
    import socket
    import threading
    server = socket.create_server(("127.0.0.1", 0))

    def serve():
        conn, _ = server.accept()
        with conn, server:
            conn.recv(65536)
            conn.sendall(response)
    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1]


@pytest.mark.parametrize("scores, ok", [(16, True), (15, False)])
def test_triton_http_client_checks_the_binary_answer(scores, ok):
    from sentinel.bench.clients import BadAnswer, triton_http
    reqs = ranking_requests(16, n_users=50, n_items=100, count=1)
    header = json.dumps({"outputs": [{"name": "scores", "datatype": "FP32", "shape": [1, scores],
                                      "parameters": {"binary_data_size": scores * 4}}]}).encode()
    body = header + np.zeros(scores, np.float32).tobytes()
    port = _answer_once(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                        b"Inference-Header-Content-Length: %d\r\nContent-Length: %d\r\n\r\n"
                        % (len(header), len(body)) + body)
    call = triton_http("127.0.0.1", port, reqs)
    if ok:
        call(0)
    else:
        with pytest.raises(BadAnswer, match="unexpected response"):
            call(0)
