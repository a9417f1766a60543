"""Triton adapter for the ranker: tensors in, RankerService, tensors out. Logic lives in
python_backend/ so it is testable without a server; publishing copies this file into each version."""
import triton_python_backend_utils as pb_utils

from python_backend.adapter import backend_metrics, execute_batch, version_setup
from python_backend.ranker_service import RankerService


class TritonPythonModel:
    def initialize(self, args):
        version_dir, options, _ = version_setup(args)
        # Keep the metric families referenced for the model's lifetime (pb_utils deletes them).
        self.metrics = backend_metrics(pb_utils, args)
        self.service = RankerService(version_dir, options)

    def _parse(self, tensors):
        req = self.service.parse(tensors.get("user_id"), tensors.get("item_ids"),
                                 tensors.get("timestamp"))
        self.service.admit(req)  # a fault-injected version fails some requests here
        return req

    def _run(self, reqs):
        flat, bounds = self.service.score_flat(reqs)
        # views of one float32 array: no copy until the backend writes them to shared memory
        return [flat[bounds[k]:bounds[k + 1]] for k in range(len(reqs))]

    def execute(self, requests):
        return execute_batch(
            pb_utils, self.metrics, requests, self._parse, self._run,
            lambda scores: ([pb_utils.Tensor("scores", scores.reshape(1, -1))], scores))

    def finalize(self):
        self.metrics.flush()
