"""The request senders, one per kind of target. Each returns call(i) for the driver; all of them
send pre-encoded bodies and check that the answer holds one score per candidate."""
from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Callable

import numpy as np

from sentinel.bench.driver import Call
from sentinel.bench.workload import RankingRequest, grpc_bodies, http_bodies, json_bodies

INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"


class BadAnswer(RuntimeError):
    pass


def in_process(version_dir: Path, reqs: list[RankingRequest]) -> Call:
    """The limit: the same validation, encoding and ONNX Runtime run as the served model.py, called
    directly (one session, one intra-op thread as served; concurrency = threads sharing it)."""
    from python_backend.ranker_service import RankerService

    service = RankerService(version_dir)
    tensors = [(np.array([[r.user]], np.int64), r.items.reshape(1, -1)) for r in reqs]

    def call(i: int) -> None:
        user, items = tensors[i]
        scores = service.score([service.parse(user, items, None)])[0]
        if scores.size != items.size:
            raise BadAnswer(f"{scores.size} scores for {items.size} candidates")
    return call


def triton_grpc(url: str, reqs: list[RankingRequest], model: str = "ranker") -> Call:
    """Raw gRPC ModelInfer with pre-serialised requests: tritonclient's wire format without its
    per-call Python work, so the client costs as little as a Python client can."""
    import grpc
    from tritonclient.grpc import service_pb2

    bodies = grpc_bodies(reqs, model)
    sizes = [int(r.items.size) * 4 for r in reqs]
    channel = grpc.insecure_channel(url, options=[("grpc.max_receive_message_length", 64 << 20)])
    infer = channel.unary_unary(INFER_METHOD)  # bytes in, bytes out

    def call(i: int) -> None:
        resp = service_pb2.ModelInferResponse.FromString(infer(bodies[i], timeout=30))
        if len(resp.raw_output_contents) != 1 or len(resp.raw_output_contents[0]) != sizes[i]:
            raise BadAnswer(f"unexpected response for request {i}")
    return call


def triton_http(host: str, port: int, reqs: list[RankingRequest], model: str = "ranker") -> Call:
    """Triton's HTTP endpoint with the binary tensor extension, pre-built requests over a
    keep-alive socket per client thread: the same lean client as the Flask peer's, so both servers
    are measured with what their protocol costs at the least (grpcio's Python client costs ~3x
    the CPU per request, all of it taken from the cores the server needs)."""
    heads = http_bodies(reqs, host, port, model)
    sizes = [int(r.items.size) * 4 for r in reqs]

    def check(i: int, headers: dict[bytes, bytes], body: bytes) -> None:
        # the body is a JSON header of Inference-Header-Content-Length bytes, then the raw scores
        json_len = int(headers.get(b"inference-header-content-length", b"-1"))
        if json_len < 0 or len(body) - json_len != sizes[i]:
            raise BadAnswer(f"unexpected response for request {i}: {body[:200]!r}")
    return _keep_alive(host, port, heads, check)


def http_json(host: str, port: int, reqs: list[RankingRequest], path: str = "/rank") -> Call:
    """POST pre-built HTTP/1.1 requests over a keep-alive socket per client thread and read the
    answer by Content-Length: the HTTP counterpart of the pre-serialised gRPC client (http.client
    alone costs ~150 µs of Python per request, which would be taken from the server's cores)."""
    bodies = json_bodies(reqs)
    heads = [f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
             f"Content-Length: {len(b)}\r\n\r\n".encode() + b for b in bodies]
    sizes = [int(r.items.size) for r in reqs]

    def check(i: int, headers: dict[bytes, bytes], body: bytes) -> None:
        if len(json.loads(body)["scores"]) != sizes[i]:
            raise BadAnswer(f"unexpected response for request {i}")
    return _keep_alive(host, port, heads, check)


def _keep_alive(host: str, port: int, heads: list[bytes],
                check: Callable[[int, dict[bytes, bytes], bytes], None]) -> Call:
    """call(i) sends heads[i] on this thread's keep-alive connection (opened on first use, dropped
    after a failure) and hands a 200 answer's headers (lower-case names) and body to check."""
    local = threading.local()

    def call(i: int) -> None:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = _HttpConnection(host, port)
        try:
            status, headers, body = conn.exchange(heads[i])
        except (OSError, BadAnswer):
            conn.close()
            local.conn = None
            raise
        if status != 200:
            raise BadAnswer(f"HTTP {status}: {body[:200]!r}")
        check(i, headers, body)
    return call


class _HttpConnection:
    def __init__(self, host: str, port: int, timeout_s: float = 30.0):
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def exchange(self, request: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
        self.sock.sendall(request)
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip()
                   for k, _, v in (ln.partition(b":") for ln in lines[1:])}
        if b"content-length" not in headers:
            raise BadAnswer("response without Content-Length")
        length = int(headers[b"content-length"])
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, headers, body

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise BadAnswer("connection closed by the server")
        self.buf += chunk

    def close(self) -> None:
        self.sock.close()
