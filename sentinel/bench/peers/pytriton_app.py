"""The PyTriton peer: the same RankerService bound to PyTriton's Triton, one callable per instance.
Run by sentinel.bench.peers.launch inside the PyTriton venv; prints "ready" once serving."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

from python_backend.ranker_service import RankerService


def make_infer(service: RankerService):
    # Requests arrive as a list (no @batch: candidate counts differ between requests), like the
    # list model.py gets; one ONNX Runtime run serves them all.
    def infer(requests):
        parsed = [service.parse(r["user_id"], r["item_ids"],
                                r["timestamp"] if "timestamp" in r else None) for r in requests]
        return [{"scores": s.reshape(1, -1)} for s in service.score(parsed)]
    return infer


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--version-dir", required=True)
    p.add_argument("--http-port", type=int, required=True)
    p.add_argument("--grpc-port", type=int, required=True)
    p.add_argument("--metrics-port", type=int, required=True)
    p.add_argument("--instances", type=int, default=2)
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--queue-delay-us", type=int, default=200)
    args = p.parse_args()
    funcs = [make_infer(RankerService(Path(args.version_dir))) for _ in range(args.instances)]
    config = TritonConfig(http_address="127.0.0.1", http_port=args.http_port,
                          grpc_address="127.0.0.1", grpc_port=args.grpc_port,
                          metrics_address="127.0.0.1", metrics_port=args.metrics_port,
                          exit_timeout_secs=3)
    with Triton(config=config) as triton:
        triton.bind(model_name="ranker", infer_func=funcs,
                    inputs=[Tensor(name="user_id", dtype=np.int64, shape=(1,)),
                            Tensor(name="item_ids", dtype=np.int64, shape=(-1,)),
                            Tensor(name="timestamp", dtype=np.int64, shape=(1,), optional=True)],
                    outputs=[Tensor(name="scores", dtype=np.float32, shape=(-1,))],
                    config=ModelConfig(max_batch_size=args.max_batch_size,
                                       batcher=DynamicBatcher(
                                           max_queue_delay_microseconds=args.queue_delay_us)),
                    strict=False)
        print("ready", flush=True)
        triton.serve()


if __name__ == "__main__":
    main()
