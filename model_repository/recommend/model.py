"""Triton adapter for the recommend pipeline (BLS): one request → the seqrec model for candidates and
P(next) → the ranker for P(like) → filters and top-k (python_backend.recommend_service). The two
model calls are Triton BLS requests to whatever versions the server currently serves."""
import numpy as np
import triton_python_backend_utils as pb_utils

from python_backend.adapter import version_setup
from python_backend.metrics import BackendMetrics
from python_backend.ranker_features import InvalidRequest
from python_backend.recommend_service import RecommendService, UpstreamError


def _input(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def _call(model, inputs, outputs):
    """One BLS request; an error answer from the called model becomes UpstreamError."""
    request = pb_utils.InferenceRequest(
        model_name=model, requested_output_names=list(outputs),
        inputs=[pb_utils.Tensor(name, value) for name, value in inputs.items()])
    response = request.exec()
    if response.has_error():
        raise UpstreamError(f"{model}: {response.error().message()}")
    return [pb_utils.get_output_tensor_by_name(response, o).as_numpy().reshape(-1) for o in outputs]


class TritonPythonModel:
    def initialize(self, args):
        version_dir, _, params = version_setup(args)
        seqrec, ranker = params.get("SEQREC_MODEL", "seqrec"), params.get("RANKER_MODEL", "ranker")

        def candidates(history, n):
            items, p_next = _call(seqrec, {"history": history.astype(np.int64).reshape(1, -1),
                                           "k": np.array([[n]], np.int64)}, ("item_ids", "scores"))
            return items, p_next

        def rank(user, items, timestamp):
            inputs = {"user_id": np.array([[user]], np.int64),
                      "item_ids": items.astype(np.int64).reshape(1, -1)}
            if timestamp is not None:
                inputs["timestamp"] = np.array([[timestamp]], np.int64)
            return _call(ranker, inputs, ("scores",))[0]

        self.metrics = BackendMetrics(pb_utils, args["model_name"], args["model_version"])
        self.service = RecommendService.from_version(version_dir, candidates, rank,
                                                     int(params.get("CANDIDATES", "100")))

    def _error(self, reason, message):
        self.metrics.error(reason)
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(message))

    def execute(self, requests):
        responses = []
        for request in requests:
            self.metrics.request()
            try:
                req = self.service.parse(*(_input(request, n) for n in (
                    "user_id", "history", "k", "timestamp", "min_score", "genre")))
                rec = self.service.recommend(req)
            except InvalidRequest as exc:
                responses.append(self._error("invalid_input", f"invalid request: {exc}"))
                continue
            except UpstreamError as exc:
                responses.append(self._error("upstream", f"pipeline step failed: {exc}"))
                continue
            self.metrics.scores(rec.like)  # P(like) is on the 0..1 scale the histogram watches
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("item_ids", rec.items.astype(np.int64).reshape(1, -1)),
                pb_utils.Tensor("scores", rec.scores.astype(np.float32).reshape(1, -1)),
                pb_utils.Tensor("like", rec.like.astype(np.float32).reshape(1, -1))]))
        self.metrics.maybe_flush()
        return responses

    def finalize(self):
        self.metrics.flush()
