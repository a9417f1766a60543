"""`sentinel bench swap`: version swaps under a closed-loop gRPC load, the way the sidecar swaps
(monitor.act.RepositoryClient.load: a config override that pins the version)."""
from __future__ import annotations

import secrets
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from sentinel.bench.environment import describe_machine, finished
from sentinel.bench.results import SwapReport

Progress = Callable[[str], None]


class SwapError(RuntimeError):
    pass


@dataclass(frozen=True)
class SwapOptions:
    swaps: int = 20
    clients: int = 8
    candidates: int = 256
    settle_s: float = 2.0
    repository: Path | None = None  # must hold ranker versions 1 and 2; None = build them


def _percentiles(latencies: list[float]) -> tuple[float, float, float]:
    if not latencies:
        return (float("nan"),) * 3
    p50, p99 = np.percentile(latencies, [50, 99]) * 1e3
    return float(p50), float(p99), max(latencies) * 1e3


def run_swap(opts: SwapOptions, progress: Progress = lambda _: None,
             command: str | None = None) -> SwapReport:
    from monitor.act import RepositoryClient
    from sentinel.bench.serve import _command_line
    from sentinel.load import LoadGenerator
    from sentinel.triton import TritonOptions, TritonServer, free_port

    machine = describe_machine()
    key = secrets.token_hex(8)
    with tempfile.TemporaryDirectory(prefix="sentinel-bench-swap-") as tmp:
        repo = opts.repository
        if repo is None:
            from build_scripts.ranker_build import build_ranker
            from build_scripts.train_ranker import train_ranker
            progress("building ranker versions 1 and 2 (one training, two publishes)")
            repo = Path(tmp) / "repo"
            trained = train_ranker()
            build_ranker(repo, trained=trained)
            build_ranker(repo, trained=trained)
        options = TritonOptions(repository=repo, http_port=free_port(), grpc_port=free_port(),
                                metrics_port=free_port(), admin_key=key, models=(),
                                log_path=Path(tmp) / "triton.log")
        with TritonServer(options):
            client = RepositoryClient(options.http_url, repo, admin_key=key)
            first = client.load("ranker", "1")
            if not first.ok:
                raise SwapError(f"could not load version 1: {first.detail}")
            with LoadGenerator(options.grpc_url, clients=opts.clients, rate_per_client=0,
                               candidates=opts.candidates) as load:
                time.sleep(opts.settle_s)
                start = time.time()
                swap_s = []
                for i in range(opts.swaps):
                    outcome = client.load("ranker", "2" if i % 2 == 0 else "1")
                    if not outcome.ok:
                        raise SwapError(f"swap {i + 1} failed: {outcome.detail}")
                    swap_s.append(outcome.seconds)
                end = time.time()
                progress(f"{opts.swaps} swaps in {end - start:.1f}s (median "
                         f"{statistics.median(swap_s):.2f}s)")
                time.sleep(opts.settle_s)
            records = load.snapshot()
    before = [r for r in records if r.ts < start]
    during = [r for r in records if start <= r.ts < end]
    failed = [r for r in during if not r.ok]
    b50, b99, _ = _percentiles([r.latency_s for r in before if r.ok])
    d50, d99, dmax = _percentiles([r.latency_s for r in during if r.ok])
    return SwapReport(
        machine=finished(machine), command=command or _command_line(), swaps=opts.swaps,
        clients=opts.clients, candidates=opts.candidates, swap_s=tuple(swap_s),
        requests_during=len(during), failed_during=len(failed),
        failures=tuple(dict.fromkeys(r.error or "" for r in failed))[:5],
        p50_ms_before=b50, p99_ms_before=b99, p50_ms_during=d50, p99_ms_during=d99,
        max_ms_during=dmax,
        versions_served=tuple(sorted({r.version for r in during if r.ok and r.version})),
        errors_total=sum(1 for r in records if not r.ok))
