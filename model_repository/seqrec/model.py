"""Triton adapter for the sequential recommender: tensors in, SeqrecService, tensors out. Logic lives
in python_backend/ so it is testable without a server; publishing copies this file into each version."""
import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from python_backend.metrics import BackendMetrics
from python_backend.ranker_features import InvalidRequest
from python_backend.runners import RunnerOptions
from python_backend.seqrec_service import SeqrecService


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
        self.service = SeqrecService(version_dir, options)

    def _error(self, reason, message):
        self.metrics.error(reason)
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(message))

    def execute(self, requests):
        responses = [None] * len(requests)
        parsed, slots = [], []
        for i, request in enumerate(requests):
            self.metrics.request()
            try:
                parsed.append(self.service.parse(_input(request, "history"), _input(request, "k")))
                slots.append(i)
            except InvalidRequest as exc:
                responses[i] = self._error("invalid_input", f"invalid request: {exc}")
        if parsed:
            try:
                results = self.service.recommend(parsed)
            except Exception as exc:  # a runtime failure must still answer every request
                for i in slots:
                    responses[i] = self._error("runtime", f"model run failed: {exc}")
                self.metrics.maybe_flush()
                return responses
            for i, (items, scores) in zip(slots, results):
                self.metrics.scores(scores)
                responses[i] = pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor("item_ids", items.astype(np.int64).reshape(1, -1)),
                    pb_utils.Tensor("scores", scores.astype(np.float32).reshape(1, -1))])
        self.metrics.maybe_flush()
        return responses

    def finalize(self):
        self.metrics.flush()
