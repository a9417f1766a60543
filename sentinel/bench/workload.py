"""The ranking workload: one MovieLens user and N candidate items per request, seeded, and the same
requests encoded for each client (gRPC protobuf, JSON, perf_analyzer input data)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# A fixed set the closed-loop clients cycle through: enough distinct users and items that nothing
# is served from a cache, small enough to pre-encode once.
DEFAULT_COUNT = 64


@dataclass(frozen=True)
class RankingRequest:
    user: int
    items: np.ndarray  # int64 [N], distinct


def ranking_requests(candidates: int, n_users: int, n_items: int, count: int = DEFAULT_COUNT,
                     seed: int = 0) -> list[RankingRequest]:
    if not 1 <= candidates <= n_items:
        raise ValueError(f"candidates must lie in 1..{n_items}, got {candidates}")
    rng = np.random.default_rng(seed)
    return [RankingRequest(int(rng.integers(1, n_users + 1)),
                           rng.choice(np.arange(1, n_items + 1), size=candidates, replace=False))
            for _ in range(count)]


def grpc_bodies(reqs: list[RankingRequest], model: str = "ranker") -> list[bytes]:
    """Serialised ModelInferRequest messages with raw tensor contents, as tritonclient sends them;
    built once so the load generator spends no CPU encoding (it shares the cores with the server)."""
    from tritonclient.grpc import service_pb2

    out = []
    for r in reqs:
        msg = service_pb2.ModelInferRequest(model_name=model)
        for name, arr in (("user_id", np.array([[r.user]], np.int64)),
                          ("item_ids", r.items.astype(np.int64).reshape(1, -1))):
            t = msg.inputs.add()
            t.name, t.datatype = name, "INT64"
            t.shape.extend(arr.shape)
            msg.raw_input_contents.append(arr.tobytes())
        out.append(msg.SerializeToString())
    return out


def http_bodies(reqs: list[RankingRequest], host: str, port: int, model: str = "ranker"
                ) -> list[bytes]:
    """Whole HTTP/1.1 requests to Triton's KServe v2 endpoint with the binary tensor extension (a
    JSON header, then the raw tensors; the answer's scores come back raw too): the form
    tritonclient.http sends with binary_data=True, built once per request."""
    out = []
    for r in reqs:
        tensors = (("user_id", np.array([[r.user]], np.int64)),
                   ("item_ids", r.items.astype(np.int64).reshape(1, -1)))
        header = json.dumps({
            "inputs": [{"name": name, "shape": list(arr.shape), "datatype": "INT64",
                        "parameters": {"binary_data_size": arr.nbytes}} for name, arr in tensors],
            "outputs": [{"name": "scores", "parameters": {"binary_data": True}}]}).encode()
        body = header + b"".join(arr.tobytes() for _, arr in tensors)
        out.append(f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: {host}:{port}\r\n"
                   f"Content-Type: application/octet-stream\r\n"
                   f"Inference-Header-Content-Length: {len(header)}\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return out


def json_bodies(reqs: list[RankingRequest]) -> list[bytes]:
    """What a hand-built JSON ranking endpoint receives."""
    return [json.dumps({"user_id": r.user, "item_ids": r.items.tolist()}).encode() for r in reqs]


def write_perf_analyzer_data(reqs: list[RankingRequest], path: Path) -> Path:
    """perf_analyzer --input-data: the same requests (shapes without the batch dimension)."""
    data = [{"user_id": {"content": [r.user], "shape": [1]},
             "item_ids": {"content": r.items.tolist(), "shape": [int(r.items.size)]}} for r in reqs]
    path.write_text(json.dumps({"data": data}))
    return path
