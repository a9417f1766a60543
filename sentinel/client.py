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
