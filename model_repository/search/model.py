"""Triton adapter for semantic search: query strings (BYTES) in; the query embedding and the top-k
catalogue items out. Tokenisation, encoding and top-k live in python_backend.search_service."""
import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from python_backend.metrics import BackendMetrics
from python_backend.ranker_features import InvalidRequest
from python_backend.runners import RunnerOptions
from python_backend.search_service import SearchService


def _input(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        version_dir = Path(args["model_repository"]) / args["model_version"]
        options = RunnerOptions(intra_op_threads=int(params.get("ORT_INTRA_OP_THREADS", "1")))
        self.metrics = BackendMetrics(pb_utils, args["model_name"], args["model_version"])
        self.service = SearchService(version_dir, options)

    def _error(self, reason, message):
        self.metrics.error(reason)
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(message))

    def execute(self, requests):
        responses = [None] * len(requests)
        parsed, slots = [], []
        for i, request in enumerate(requests):
            self.metrics.request()
            try:
                parsed.append(self.service.parse(_input(request, "query"), _input(request, "k")))
                slots.append(i)
            except InvalidRequest as exc:
                responses[i] = self._error("invalid_input", f"invalid request: {exc}")
        if parsed:
            try:
                results = self.service.search(parsed)
            except Exception as exc:  # a runtime failure must still answer every request
                for i in slots:
                    responses[i] = self._error("runtime", f"model run failed: {exc}")
                self.metrics.maybe_flush()
                return responses
            for i, r in zip(slots, results):
                self.metrics.scores(r.scores)
                responses[i] = pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor("embedding", r.embedding.astype(np.float32).reshape(1, -1)),
                    pb_utils.Tensor("item_ids", r.items.astype(np.int64).reshape(1, -1)),
                    pb_utils.Tensor("scores", r.scores.astype(np.float32).reshape(1, -1))])
        self.metrics.maybe_flush()
        return responses

    def finalize(self):
        self.metrics.flush()
