"""What every Python-backend adapter in model_repository/ does the same way: read the config's
parameters, read each request's tensors once, answer each request on its own (a bad request gets
an error response, the others in the batch are still served), run the valid ones in one call, and
count what Triton cannot see. Takes pb_utils as an argument so it imports without Triton."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from python_backend.errors import InvalidRequest, UpstreamError
from python_backend.faults import InjectedFault
from python_backend.metrics import BackendMetrics
from python_backend.runners import RunnerOptions

# exception type -> the reason label of sentinel_request_errors_total and the message prefix
ERROR_REASONS = ((InvalidRequest, "invalid_input", "invalid request: "),
                 (InjectedFault, "fault", ""),
                 (UpstreamError, "upstream", "pipeline step failed: "))


def error_reason(exc: BaseException) -> tuple[str, str]:
    """(reason label, message) for an exception a request ended with; anything unexpected is a
    runtime error of the model."""
    for kind, reason, prefix in ERROR_REASONS:
        if isinstance(exc, kind):
            return reason, f"{prefix}{exc}"
    return "runtime", f"model run failed: {type(exc).__name__}: {exc}"


def version_setup(args: dict) -> tuple[Path, RunnerOptions, dict[str, str]]:
    config = json.loads(args["model_config"])
    params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
    version_dir = Path(args["model_repository"]) / args["model_version"]
    options = RunnerOptions(intra_op_threads=int(params.get("ORT_INTRA_OP_THREADS", "1")))
    return version_dir, options, params


def backend_metrics(pb_utils: Any, args: dict) -> BackendMetrics:
    """The version's custom metrics, labelled with the stub's instance. The model config parameter
    SENTINEL_RESOURCE_METRICS=off turns the stub's memory/CPU metrics off (the benchmark's "off"
    arm; they are on by default because they cost ~nothing, see docs/benchmarks.md)."""
    params = json.loads(args["model_config"]).get("parameters", {})
    setting = params.get("SENTINEL_RESOURCE_METRICS", {}).get("string_value", "on").lower()
    if setting not in ("on", "off"):
        raise ValueError(f"SENTINEL_RESOURCE_METRICS must be 'on' or 'off', got {setting!r}")
    kwargs = {"usage": None} if setting == "off" else {}
    return BackendMetrics(pb_utils, args["model_name"], args["model_version"],
                          instance=args.get("model_instance_name"), **kwargs)


def read_inputs(request) -> dict[str, np.ndarray]:
    # One inputs() call per request: pb_utils.get_input_tensor_by_name builds the whole tensor
    # list again for every name it looks up.
    return {t.name(): t.as_numpy() for t in request.inputs()}


def execute_batch(pb_utils: Any, metrics: BackendMetrics, requests: Sequence,
                  parse: Callable[[dict], Any], run: Callable[[list], list],
                  respond: Callable[[Any], tuple[list, np.ndarray | None]]) -> list:
    """parse(tensors) -> a typed request (raises one of ERROR_REASONS' types for a bad one);
    run(valid requests) -> one result each, or an exception instance for a request that failed
    on its own (its error response; the others are served); respond(result) -> (output tensors,
    scores to count)."""
    def error(exc: BaseException):
        reason, message = error_reason(exc)
        metrics.error(reason)
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(message))

    responses: list = [None] * len(requests)
    parsed, slots = [], []
    for i, request in enumerate(requests):
        metrics.request()
        try:
            parsed.append(parse(read_inputs(request)))
            slots.append(i)
        except (InvalidRequest, InjectedFault) as exc:
            responses[i] = error(exc)
    if parsed:
        try:
            results = run(parsed)
        except Exception as exc:  # a runtime failure must still answer every request
            results = None
            for i in slots:
                responses[i] = error(exc)
        for i, result in zip(slots, results or ()):
            if isinstance(result, BaseException):
                responses[i] = error(result)
                continue
            tensors, scores = respond(result)
            if scores is not None:
                metrics.scores(scores)
            responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
    metrics.maybe_flush()
    return responses


def each(serve: Callable[[Any], Any]) -> Callable[[list], list]:
    """A run() for models that serve one request at a time (a pipeline's BLS calls): one
    request's exception becomes its own error response instead of failing the batch."""
    def run(parsed: list) -> list:
        out = []
        for request in parsed:
            try:
                out.append(serve(request))
            except Exception as exc:  # noqa: BLE001 - answered per request by execute_batch
                out.append(exc)
        return out
    return run
