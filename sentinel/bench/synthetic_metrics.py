"""A synthetic Triton /metrics page for many models and versions, in the exact families and labels
Triton 2.51 and model.py emit (9 nv_inference_* series, 4 failure reasons, 4 sentinel_* counters,
a 21-bucket score histogram with sum and count: 40 sample lines per version). Counters advance with
the step, so consecutive pages give the store real deltas."""
from __future__ import annotations

from python_backend.metrics import SCORE_BUCKETS

FAILURE_REASONS = ("BACKEND", "REJECTED", "CANCELED", "OTHER")
_DURATIONS = ("request", "queue", "compute_input", "compute_infer", "compute_output")
_US_PER_REQUEST = {"request": 1500, "queue": 300, "compute_input": 20, "compute_infer": 1000,
                   "compute_output": 100}
_LE = [*(f"{b:g}" for b in SCORE_BUCKETS), "+Inf"]
# Cumulative share of scores at each bucket bound: a fixed, smooth score distribution.
_CDF = [min(1.0, (i + 1) / len(SCORE_BUCKETS)) ** 1.3 for i in range(len(SCORE_BUCKETS))] + [1.0]


def metrics_text(models: int, versions: int, step: int, rate: float = 50.0) -> str:
    """The page at `step` seconds of steady traffic (`rate` requests/s per version)."""
    lines = ["# TYPE nv_inference_request_success counter"]
    for m in range(models):
        for v in range(1, versions + 1):
            lab = f'model="model_{m:03d}",version="{v}"'
            n = int(step * rate * (1 + 0.01 * ((m + v) % 7))) + m  # distinct but steady per series
            rows = n * 64
            lines += [f"nv_inference_request_success{{{lab}}} {n}",
                      *(f'nv_inference_request_failure{{{lab},reason="{r}"}} {n // 5000 if r == "BACKEND" else 0}'
                        for r in FAILURE_REASONS),
                      f"nv_inference_count{{{lab}}} {n}",
                      f"nv_inference_exec_count{{{lab}}} {n // 2}",
                      f"nv_inference_pending_request_count{{{lab}}} {step % 3}",
                      *(f"nv_inference_{d}_duration_us{{{lab}}} {n * _US_PER_REQUEST[d]}"
                        for d in _DURATIONS),
                      f"sentinel_requests_total{{{lab}}} {n}",
                      f"sentinel_output_rows_total{{{lab}}} {rows}",
                      f"sentinel_output_nonfinite_total{{{lab}}} 0",
                      f'sentinel_request_errors_total{{{lab},reason="invalid_input"}} {n // 1000}']
            observed = n * 8  # the strided sample model.py observes
            lines += [f'sentinel_output_score_bucket{{{lab},le="{le}"}} {int(observed * c)}'
                      for le, c in zip(_LE, _CDF)]
            lines += [f"sentinel_output_score_sum{{{lab}}} {observed * 0.52:.3f}",
                      f"sentinel_output_score_count{{{lab}}} {observed}"]
    # Server-wide lines Triton also prints; the parser must skip them.
    lines += ["nv_cpu_utilization 0.5", "nv_cpu_memory_total_bytes 1e10",
              "nv_cpu_memory_used_bytes 5e9"]
    return "\n".join(lines) + "\n"
