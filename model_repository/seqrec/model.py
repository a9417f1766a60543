"""Triton adapter for the sequential recommender: tensors in, SeqrecService, tensors out. Logic lives
in python_backend/ so it is testable without a server; publishing copies this file into each version."""
import numpy as np
import triton_python_backend_utils as pb_utils

from python_backend.adapter import backend_metrics, execute_batch, version_setup
from python_backend.seqrec_service import SeqrecService


def _respond(result):
    items, scores = result
    return [pb_utils.Tensor("item_ids", items.astype(np.int64).reshape(1, -1)),
            pb_utils.Tensor("scores", scores.astype(np.float32).reshape(1, -1))], scores


class TritonPythonModel:
    def initialize(self, args):
        version_dir, options, _ = version_setup(args)
        self.metrics = backend_metrics(pb_utils, args)
        self.service = SeqrecService(version_dir, options)

    def execute(self, requests):
        return execute_batch(
            pb_utils, self.metrics, requests,
            lambda t: self.service.parse(t.get("history"), t.get("k")),
            self.service.recommend, _respond)

    def finalize(self):
        self.metrics.flush()
