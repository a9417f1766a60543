import argparse
import threading

import pytest

from sentinel.bench.driver import measure
from sentinel.bench.serve import MAX_COMMAND_S, BenchError, ServeOptions
from sentinel.cli import build_parser


def test_measure_counts_answers_and_failures_of_every_thread():
    seen, lock = [], threading.Lock()

    def call(i):
        with lock:
            seen.append(i)
        if i == 3:
            raise RuntimeError("refused")

    cell = measure("fake", call, n_payloads=4, candidates=10, concurrency=2, duration_s=0.2,
                   warmup_s=0.05)
    assert cell.requests > 0 and cell.errors > 0
    assert cell.ips == cell.rps * 10
    assert cell.p50_ms <= cell.p99_ms
    assert set(seen) == {0, 1, 2, 3}  # threads interleave over the whole payload set


def test_serve_options_are_checked_and_bounded():
    with pytest.raises(BenchError, match="unknown targets"):
        ServeOptions(targets=("triton-ish",))
    with pytest.raises(BenchError, match="concurrency"):
        ServeOptions(concurrency=(0,))
    assert ServeOptions().estimate_s() <= MAX_COMMAND_S
    assert ServeOptions(duration_s=60).estimate_s() > MAX_COMMAND_S


def test_cli_has_the_bench_commands():
    parser = build_parser()
    args = parser.parse_args(["bench", "serve", "--duration", "2", "--concurrency", "1,8",
                              "--targets", "sentinel,flask"])
    assert args.duration == 2 and args.concurrency == (1, 8) and callable(args.func)
    assert parser.parse_args(["bench", "monitor", "--day-seconds", "60"]).day_seconds == 60
    assert parser.parse_args(["bench", "swap", "--swaps", "4"]).swaps == 4
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "serve", "--concurrency", "a,b"])
    assert isinstance(args, argparse.Namespace)
