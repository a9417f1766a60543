"""Triton adapter for the ranker: tensors in, RankerService, tensors out. Logic lives in
python_backend/ so it is testable without a server; publishing copies this file into each version."""
import json
from pathlib import Path

import triton_python_backend_utils as pb_utils

from python_backend.faults import InjectedFault
from python_backend.metrics import BackendMetrics
from python_backend.ranker_features import InvalidRequest
from python_backend.ranker_service import RankerService
from python_backend.runners import RunnerOptions


def _inputs(request):
    # One inputs() call per request: pb_utils.get_input_tensor_by_name builds the whole tensor
    # list again for every name it looks up.
    return {t.name(): t.as_numpy() for t in request.inputs()}


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        version_dir = Path(args["model_repository"]) / args["model_version"]
        options = RunnerOptions(intra_op_threads=int(params.get("ORT_INTRA_OP_THREADS", "1")))
        self.metrics = BackendMetrics(pb_utils, args["model_name"], args["model_version"])
        self.service = RankerService(version_dir, options)

    def _error(self, reason, message):
        self.metrics.error(reason)
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(message))

    def execute(self, requests):
        responses = [None] * len(requests)
        parsed, slots = [], []
        for i, request in enumerate(requests):
            self.metrics.request()
            try:
                tensors = _inputs(request)
                req = self.service.parse(tensors.get("user_id"), tensors.get("item_ids"),
                                         tensors.get("timestamp"))
                self.service.admit(req)
            except InvalidRequest as exc:
                responses[i] = self._error("invalid_input", f"invalid request: {exc}")
                continue
            except InjectedFault as exc:
                responses[i] = self._error("fault", str(exc))
                continue
            parsed.append(req)
            slots.append(i)
        if parsed:
            try:
                flat, bounds = self.service.score_flat(parsed)
            except Exception as exc:  # a runtime failure must still answer every request
                for i in slots:
                    responses[i] = self._error("runtime", f"model run failed: {exc}")
                self.metrics.maybe_flush()
                return responses
            # One metrics pass over the whole batch; each response gets a view of its slice
            # (float32 already, so no copy until the backend writes it to shared memory).
            self.metrics.scores(flat)
            for k, i in enumerate(slots):
                out = pb_utils.Tensor("scores", flat[bounds[k]:bounds[k + 1]].reshape(1, -1))
                responses[i] = pb_utils.InferenceResponse(output_tensors=[out])
        self.metrics.maybe_flush()
        return responses

    def finalize(self):
        self.metrics.flush()
