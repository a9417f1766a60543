"""The shared adapter logic with a stand-in for pb_utils (Triton itself is in the integration tests)."""
import numpy as np

from python_backend.adapter import each, execute_batch
from python_backend.errors import InvalidRequest, UpstreamError
from python_backend.faults import InjectedFault
from python_backend.metrics import BackendMetrics


class FakeTensor:
    def __init__(self, name, value):
        self._name, self._value = name, value

    def name(self):
        return self._name

    def as_numpy(self):
        return self._value


class FakeRequest:
    def __init__(self, **tensors):
        self._tensors = [FakeTensor(k, v) for k, v in tensors.items()]

    def inputs(self):
        return self._tensors


class FakePb:
    Tensor = FakeTensor

    class TritonError:
        def __init__(self, message):
            self.message = message

    class InferenceResponse:
        def __init__(self, output_tensors=None, error=None):
            self.output_tensors, self.error = output_tensors, error


def parse(t):
    x = t["x"]
    if x.size == 0:
        raise InvalidRequest("'x' is empty")
    if x[0] < 0:
        raise InjectedFault("fault 'errors'")
    return x


def test_each_request_is_answered_on_its_own():
    metrics = BackendMetrics(None, "m", "1")
    reqs = [FakeRequest(x=np.array([0.2, 0.4])), FakeRequest(x=np.array([])),
            FakeRequest(x=np.array([-1.0])), FakeRequest(x=np.array([0.9]))]
    runs = []

    def run(batch):
        runs.append(len(batch))
        return [b * 1 for b in batch]

    out = execute_batch(FakePb, metrics, reqs, parse, run,
                        lambda r: ([FakeTensor("y", r)], r))
    assert runs == [2], "the valid requests run together, once"
    assert out[0].output_tensors[0].as_numpy().tolist() == [0.2, 0.4]
    assert out[1].error.message == "invalid request: 'x' is empty"
    assert out[2].error.message == "fault 'errors'"
    assert out[3].output_tensors[0].as_numpy().tolist() == [0.9]
    assert metrics.pending()["errors"] == {"invalid_input": 1, "fault": 1}
    assert metrics.pending()["requests"] == 4 and metrics.pending()["rows"] == 3


def test_a_failed_run_answers_every_valid_request_with_an_error():
    metrics = BackendMetrics(None, "m", "1")

    def run(batch):
        raise RuntimeError("onnxruntime exploded")

    out = execute_batch(FakePb, metrics, [FakeRequest(x=np.array([0.1]))] * 3, parse, run,
                        lambda r: ([], r))
    assert [o.error.message for o in out] == ["model run failed: RuntimeError: onnxruntime exploded"] * 3
    assert metrics.pending()["errors"] == {"runtime": 3}


def test_one_request_at_a_time_fails_only_the_request_that_failed():
    # The recommend pipeline's shape: each request calls other models (BLS); an upstream error or
    # an unexpected exception in one request must not answer the rest of the batch with errors.
    metrics = BackendMetrics(None, "m", "1")

    def serve(x):
        if x[0] == 0.5:
            raise UpstreamError("ranker: stub is not healthy")
        if x[0] == 0.7:
            raise KeyError("genre")
        return x * 2

    reqs = [FakeRequest(x=np.array([v])) for v in (0.1, 0.5, 0.7, 0.9)]
    out = execute_batch(FakePb, metrics, reqs, parse, each(serve), lambda r: ([FakeTensor("y", r)], r))
    assert out[0].output_tensors[0].as_numpy().tolist() == [0.2]
    assert out[1].error.message == "pipeline step failed: ranker: stub is not healthy"
    assert out[2].error.message == "model run failed: KeyError: 'genre'"
    assert out[3].output_tensors[0].as_numpy().tolist() == [1.8]
    assert metrics.pending()["errors"] == {"upstream": 1, "runtime": 1}
