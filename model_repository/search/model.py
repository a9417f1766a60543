"""Triton adapter for search: query strings (BYTES) and an optional mode (hybrid, dense, lexical) in;
the query embedding and the top-k catalogue items out. Tokenisation, encoding, the lexical index,
fusion and top-k live in python_backend.search_service."""
import numpy as np
import triton_python_backend_utils as pb_utils

from python_backend.adapter import backend_metrics, execute_batch, version_setup
from python_backend.search_service import SearchService


def _respond(r):
    return [pb_utils.Tensor("embedding", r.embedding.astype(np.float32).reshape(1, -1)),
            pb_utils.Tensor("item_ids", r.items.astype(np.int64).reshape(1, -1)),
            pb_utils.Tensor("scores", r.scores.astype(np.float32).reshape(1, -1))], r.scores


class TritonPythonModel:
    def initialize(self, args):
        version_dir, options, _ = version_setup(args)
        self.metrics = backend_metrics(pb_utils, args)
        self.service = SearchService(version_dir, options)

    def execute(self, requests):
        return execute_batch(
            pb_utils, self.metrics, requests,
            lambda t: self.service.parse(t.get("query"), t.get("k"), t.get("mode")),
            self.service.search, _respond)

    def finalize(self):
        self.metrics.flush()
