"""Triton adapter for the recommend pipeline (BLS): one request → the seqrec model for candidates and
P(next) → the ranker for P(like) → filters and top-k (python_backend.recommend_service). The two
model calls are Triton BLS requests to whatever versions the server currently serves."""
import numpy as np
import triton_python_backend_utils as pb_utils

from python_backend.adapter import backend_metrics, each, execute_batch, version_setup
from python_backend.errors import UpstreamError
from python_backend.recommend_service import RecommendService

INPUTS = ("user_id", "history", "k", "timestamp", "min_score", "genre")


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

        self.metrics = backend_metrics(pb_utils, args)
        self.service = RecommendService.from_version(version_dir, candidates, rank,
                                                     int(params.get("CANDIDATES", "100")))

    def execute(self, requests):
        # One request at a time through the shared adapter: a failure of one request's pipeline
        # (its error, an upstream model's error, anything unexpected) answers that request only.
        return execute_batch(
            pb_utils, self.metrics, requests,
            parse=lambda tensors: self.service.parse(*(tensors.get(n) for n in INPUTS)),
            run=each(self.service.recommend),
            # P(like) is on the 0..1 scale the score histogram watches
            respond=lambda rec: ([
                pb_utils.Tensor("item_ids", rec.items.astype(np.int64).reshape(1, -1)),
                pb_utils.Tensor("scores", rec.scores.astype(np.float32).reshape(1, -1)),
                pb_utils.Tensor("like", rec.like.astype(np.float32).reshape(1, -1))], rec.like))

    def finalize(self):
        self.metrics.flush()
