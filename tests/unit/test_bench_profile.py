"""The pure parts of `sentinel bench profile`: /proc/<pid>/stat lines to CPU per request, py-spy's
raw stacks to categories, Triton's counters to per-request stages, and the report's tables."""
import math

import pytest

from monitor.types import VersionSample
from sentinel.bench import stacks
from sentinel.bench.proc_cpu import (ProcStatError, cpu_seconds, parse_stat, per_request_us,
                                     stub_pids)
from sentinel.bench.profile import profile_markdown, stage_deltas
from sentinel.bench.results import Machine, ProfileCell, ProfileReport, ServeCell

# Real lines' shape (proc(5)); the stub's comm is cut to 15 characters.
SERVER_0 = ("4100 (tritonserver) S 4090 4100 4100 0 -1 4194560 2257 0 0 0 1200 300 0 0 20 0 "
            "40 0 98000 1000000 5000 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0")
SERVER_1 = SERVER_0.replace(" 1200 300 ", " 1500 420 ")
STUB_A0 = ("4111 (triton_python_b) S 4100 4100 4100 0 -1 4194304 8448 0 0 0 800 30 0 0 20 0 "
           "6 0 98100 1000000 5000 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 0 0 0")
STUB_A1 = STUB_A0.replace(" 800 30 ", " 1000 50 ")
STUB_B0 = STUB_A0.replace("4111 (", "4112 (")
STUB_B1 = STUB_B0.replace(" 800 30 ", " 900 40 ")
ODD = ("4200 (a (weird) name) R 1 4200 4200 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 99000 0 0 "
       "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0")


def snap(*lines):
    return {s.pid: s for s in map(parse_stat, lines)}


def test_parse_stat_reads_utime_stime_and_survives_parentheses_in_comm():
    s = parse_stat(SERVER_0)
    assert (s.pid, s.comm, s.ppid, s.utime, s.stime, s.ticks, s.starttime) == \
        (4100, "tritonserver", 4090, 1200, 300, 1500, 98000)
    odd = parse_stat(ODD)
    assert (odd.comm, odd.ppid, odd.ticks) == ("a (weird) name", 1, 10)
    with pytest.raises(ProcStatError):
        parse_stat("not a stat line")


def test_cpu_per_request_from_two_snapshots_split_by_process():
    before = snap(SERVER_0, STUB_A0, STUB_B0, ODD)
    after = snap(SERVER_1, STUB_A1, STUB_B1, ODD)
    stubs = stub_pids(after, 4100)
    assert stubs == [4111, 4112]
    # 100 ticks/s: the server used (1500 + 420 - 1200 - 300) = 420 ticks = 4.2 s
    assert cpu_seconds(before, after, [4100], 100) == pytest.approx(4.2)
    assert cpu_seconds(before, after, stubs, 100) == pytest.approx(2.2 + 1.1)
    assert cpu_seconds(before, after, stubs, 100, kernel_only=True) == pytest.approx(0.3)
    assert per_request_us(4.2, 1000) == pytest.approx(4200.0)
    assert math.isnan(per_request_us(1.0, 0))


def test_a_process_that_restarted_or_vanished_in_the_window_is_an_error():
    restarted = STUB_A1.replace(" 98100 ", " 99999 ")
    with pytest.raises(ProcStatError):
        cpu_seconds(snap(STUB_A0), snap(restarted), [4111], 100)
    with pytest.raises(ProcStatError):
        cpu_seconds(snap(STUB_A0), {}, [4111], 100)


MODEL = "/tmp/repo/ranker/2/model.py"
PB = "/work/python_backend/"
ORT_FILE = "/venv/site-packages/onnxruntime/capi/onnxruntime_inference_collection.py"
RAW = f"""\
execute ({MODEL}:28);execute_batch ({PB}adapter.py:83);_run ({MODEL}:23);score_flat ({PB}ranker_service.py:50);run ({PB}runners.py:35);run ({ORT_FILE}:406) 50
 30
execute ({MODEL}:28);execute_batch ({PB}adapter.py:96);maybe_flush ({PB}metrics.py:96);flush ({PB}metrics.py:116) 5
execute ({MODEL}:28);execute_batch ({PB}adapter.py:77);read_inputs ({PB}adapter.py:57);<dictcomp> ({PB}adapter.py:57) 4
execute ({MODEL}:28);execute_batch ({PB}adapter.py:92);<lambda> ({MODEL}:30) 3
execute ({MODEL}:28);execute_batch ({PB}adapter.py:78);_parse ({MODEL}:17);parse ({PB}ranker_service.py:32);parse_request ({PB}ranker_features.py:120);unique (/venv/numpy/lib/arraysetops.py:274) 2
execute ({MODEL}:28);execute_batch ({PB}adapter.py:83);_run ({MODEL}:23);score_flat ({PB}ranker_service.py:48);encode_requests ({PB}ranker_features.py:152) 3
execute ({MODEL}:28);execute_batch ({PB}adapter.py:83);_run ({MODEL}:25);<listcomp> ({MODEL}:25) 2
iscoroutine (/usr/lib/python3.11/asyncio/coroutines.py:39);__instancecheck__ (<frozen abc>:119) 1
"""
SOURCE = {(f"{PB}adapter.py", 57): "    return {t.name(): t.as_numpy() for t in request.inputs()}",
          (MODEL, 30): '            lambda scores: ([pb_utils.Tensor("scores", scores)], scores))',
          (MODEL, 25): "        return [flat[bounds[k]:bounds[k + 1]] for k in range(len(reqs))]"}


def source(path, line):
    return SOURCE.get((path, line), "")


def test_parse_raw_reads_frames_root_first_and_the_empty_stack():
    parsed = stacks.parse_raw(RAW)
    assert len(parsed) == 9
    frames, n = parsed[0]
    assert n == 50 and frames[0] == stacks.Frame("execute", MODEL, 28)
    assert frames[-1].file == ORT_FILE and frames[-1].line == 406
    assert parsed[1] == ((), 30)
    assert parsed[-1][0][-1] == stacks.Frame("__instancecheck__", "<frozen abc>", 119)


def test_every_sample_lands_in_its_category():
    got = [stacks.categorise(frames, source) for frames, _ in stacks.parse_raw(RAW)]
    assert got == [stacks.ORT, stacks.STUB_NATIVE, stacks.METRICS, stacks.PB_UTILS,
                   stacks.PB_UTILS, stacks.PARSE, stacks.ENCODE, stacks.RESPOND, stacks.OTHER]


def test_tally_gives_shares_over_all_samples():
    shares = stacks.tally(stacks.parse_raw(RAW), source)
    assert shares.total == 100
    assert shares.share(stacks.ORT) == 0.5 and shares.share(stacks.STUB_NATIVE) == 0.3
    assert shares.share(stacks.PB_UTILS) == pytest.approx(0.07)
    assert [c for c, _ in shares.samples] == list(stacks.CATEGORIES)
    assert math.isnan(stacks.tally([]).share(stacks.ORT))


def test_stage_deltas_are_per_request_served_in_the_window():
    a = VersionSample("ranker", "1", success=100, exec_count=50, request_duration_us=10_000,
                      queue_duration_us=2_000, compute_input_duration_us=500,
                      compute_infer_duration_us=6_000, compute_output_duration_us=1_000)
    b = VersionSample("ranker", "1", success=300, exec_count=130, request_duration_us=210_000,
                      queue_duration_us=42_000, compute_input_duration_us=10_500,
                      compute_infer_duration_us=126_000, compute_output_duration_us=21_000)
    s = stage_deltas(a, b)
    assert (s.requests, s.executions, s.per_execute) == (200, 80, 2.5)
    assert (s.request_us, s.queue_us, s.compute_input_us, s.compute_infer_us,
            s.compute_output_us) == (1000, 200, 50, 600, 100)
    assert math.isnan(stage_deltas(a, a).queue_us)  # nothing served: no per-request figure


def test_profile_markdown_has_every_column_with_medians_and_ranges():
    machine = Machine(date="2026-01-01T00:00:00+00:00", host="h", cpu="cpu", cores=2,
                      memory_gib=8.0, os="Debian", python="3.11.7", packages=(),
                      load_before=(0.1, 0.2, 0.3), load_after=(0.4, 0.5, 0.6))
    stages = stage_deltas(VersionSample("ranker", "1", success=0, exec_count=0),
                          VersionSample("ranker", "1", success=10, exec_count=5))
    cells = tuple(ProfileCell(
        load=ServeCell("sentinel", 256, 1, requests=1000, errors=0, seconds=1.0, rps=1000.0,
                       ips=256_000.0, p50_ms=1.0, p99_ms=2.0, client_cpu_us=250.0, run=run),
        tritonserver_cpu_us=300.0 + run, stub_cpu_us=(200.0, 100.0 + run), stages=stages,
        tritonserver_kernel_us=150.0, stubs_kernel_us=30.0,
        samples=((stacks.ORT, 30), (stacks.STUB_NATIVE, 10)), profiler_cpu_us=20.0)
        for run in range(3))
    md = profile_markdown(ProfileReport(machine=machine, command="sentinel bench profile",
                                        duration_s=1.0, cells=cells, settings="2 instances",
                                        py_spy="py-spy 0.4.2", sample_rate_hz=100,
                                        reference=tuple(ServeCell(
                                            "in-process", 256, 1, requests=500, errors=0,
                                            seconds=1.0, rps=500.0, ips=128_000.0, p50_ms=2.0,
                                            p99_ms=3.0, client_cpu_us=190.0 + 10 * run, run=run)
                                            for run in range(3))))
    row = next(line for line in md.splitlines() if line.startswith("| 256 | 1 | 1,000 |"))
    assert row.split("|")[5:12] == [" 301 ", " 300–302 ", " 50 ", " 301 ", " 300–302 ", " 10 ",
                                    " 602 "]
    share_row = next(line for line in md.splitlines() if line.startswith("| 256 | 1 | 120 |"))
    assert " 75.0 | " in share_row and share_row.endswith("| 20 |")
    assert "0.40/0.50/0.60" in md and "| 2.00 |" in md
    assert "256 candidates 200 CPU µs/req (190–210)." in md
