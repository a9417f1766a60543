"""A small client for the ranker over Triton's HTTP or gRPC API (tritonclient)."""
from __future__ import annotations

from typing import Sequence

import numpy as np


class RankerClient:
    def __init__(self, url: str, protocol: str = "grpc", model: str = "ranker",
                 timeout_s: float = 10.0):
        if protocol == "grpc":
            import tritonclient.grpc as tc
        elif protocol == "http":
            import tritonclient.http as tc
        else:
            raise ValueError(f"protocol must be 'grpc' or 'http', got {protocol!r}")
        self._tc = tc
        self.protocol = protocol
        self.model = model
        self._timeout = timeout_s
        self.client = (tc.InferenceServerClient(url) if protocol == "grpc"
                       else tc.InferenceServerClient(url, connection_timeout=timeout_s,
                                                     network_timeout=timeout_s))

    def inputs(self, user: int, items: Sequence[int], timestamp: int | None = None) -> list:
        tensors = {"user_id": np.array([[user]], np.int64),
                   "item_ids": np.asarray(items, np.int64).reshape(1, -1)}
        if timestamp is not None:
            tensors["timestamp"] = np.array([[timestamp]], np.int64)
        out = []
        for name, arr in tensors.items():
            t = self._tc.InferInput(name, list(arr.shape), "INT64")
            t.set_data_from_numpy(arr)
            out.append(t)
        return out

    def rank(self, user: int, items: Sequence[int], timestamp: int | None = None,
             version: str = "") -> np.ndarray:
        """Scores for the candidates, in request order. Raises tritonclient's
        InferenceServerException with the server's message on a refused request."""
        kwargs = {"client_timeout": self._timeout} if self.protocol == "grpc" else {}
        result = self.client.infer(self.model, self.inputs(user, items, timestamp),
                                   model_version=version, **kwargs)
        return result.as_numpy("scores").reshape(-1)

    def close(self) -> None:
        self.client.close()


class FeedbackError(RuntimeError):
    """The sidecar refused a feedback call as a whole (HTTP status and its message)."""

    def __init__(self, status: int, message: str, accepted_before: int = 0, first_unsent: int = 0):
        super().__init__(f"HTTP {status}: {message} ({accepted_before} events accepted before it; "
                         f"events from index {first_unsent} on were not kept)")
        self.status, self.message = status, message
        self.accepted_before, self.first_unsent = accepted_before, first_unsent


class FeedbackClient:
    """Sends outcomes of served predictions to the sidecar's POST /api/feedback, in calls of at
    most `batch` events. Each call's bad events come back with their reasons; the good ones of the
    call are kept by the sidecar whatever the others."""

    MAX_BATCH = 10_000

    def __init__(self, sidecar_url: str, token: str, timeout_s: float = 30.0,
                 batch: int = MAX_BATCH, session=None):
        import requests
        if not 1 <= batch <= self.MAX_BATCH:
            raise ValueError(f"batch must be in 1..{self.MAX_BATCH}, got {batch}")
        self.url = sidecar_url.rstrip("/") + "/api/feedback"
        self._headers = {"X-Sentinel-Token": token}
        self._timeout, self._batch = timeout_s, batch
        self._session = session or requests.Session()

    def send(self, events: Sequence[dict]) -> tuple[int, list[dict]]:
        """(accepted, rejected) over all calls; a rejected entry's index is into `events`."""
        accepted, rejected = 0, []
        for start in range(0, len(events), self._batch):
            chunk = list(events[start:start + self._batch])
            r = self._session.post(self.url, json={"events": chunk}, headers=self._headers,
                                   timeout=self._timeout)
            body = r.json() if r.headers.get("Content-Type", "").startswith("application/json") \
                else {"error": r.text[:500]}
            if r.status_code != 200:
                raise FeedbackError(r.status_code, body.get("error", ""), accepted, start)
            accepted += body["accepted"]
            rejected += [{**x, "index": x["index"] + start} for x in body["rejected"]]
        return accepted, rejected

    def close(self) -> None:
        self._session.close()
