"""The pure parts of `sentinel bench profile`: /proc/<pid>/stat lines to CPU per request, py-spy's
raw stacks to categories, Triton's counters to per-request stages, and the report's tables."""
import math

import pytest

from monitor.types import VersionSample
from sentinel.bench import stacks
from sentinel.bench.proc_cpu import (ProcStatError, cpu_seconds, parse_stat, per_request_us,
                                     stub_pids)
from sentinel.bench.profile import paired_ratios, profile_markdown, stage_deltas
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
    row = next(line for line in md.splitlines() if line.startswith("| 256 | 1 | sentinel | 1,000 |"))
    assert row.split("|")[6:13] == [" 301 ", " 300–302 ", " 50 ", " 301 ", " 300–302 ", " 10 ",
                                    " 602 "]
    share_row = next(line for line in md.splitlines()
                     if line.startswith("| 256 | 1 | sentinel | 120 |"))
    assert " 75.0 | " in share_row and share_row.endswith("| 20 |")
    assert "0.40/0.50/0.60" in md and "| 2.00 |" in md
    assert "256 candidates 200 CPU µs/req (190–210), p50 2.00 ms." in md
    assert "against `" not in md  # one setup: no ratio table


def _cell(setup: str, run: int, server_us: float, rps: float, p50_ms: float) -> ProfileCell:
    stages = stage_deltas(VersionSample("ranker", "1", success=0, exec_count=0),
                          VersionSample("ranker", "1", success=10, exec_count=5))
    return ProfileCell(load=ServeCell(setup, 256, 8, requests=1000, errors=0, seconds=1.0,
                                      rps=rps, ips=rps * 256, p50_ms=p50_ms, p99_ms=2 * p50_ms,
                                      client_cpu_us=100.0, run=run),
                       tritonserver_cpu_us=server_us / 2, stub_cpu_us=(server_us / 2,),
                       stages=stages)


def test_setups_side_by_side_with_run_by_run_ratios_against_the_first():
    machine = Machine(date="2026-01-01T00:00:00+00:00", host="h", cpu="cpu", cores=2,
                      memory_gib=8.0, os="Debian", python="3.11.7", packages=(),
                      load_before=(0.1, 0.2, 0.3), load_after=(0.4, 0.5, 0.6))
    # run 1 is slower for both setups (a busy neighbour): pairing by run keeps the ratio at 0.5
    cells = tuple(c for run, k in ((0, 1.0), (1, 2.0), (2, 1.0))
                  for c in (_cell("before", run, 800.0 * k, 1000.0 / k, 3.0 * k),
                            _cell("shipped", run, 400.0 * k, 1500.0 / k, 2.4 * k)))
    report = ProfileReport(machine=machine, command="sentinel bench profile", duration_s=1.0,
                           cells=cells, setups=(("before", "gRPC, 200 µs"),
                                                ("shipped", "HTTP, 0 µs")))
    assert paired_ratios(report, 256, 8, "shipped", "before", lambda c: c.server_cpu_us) == \
        [0.5, 0.5, 0.5]
    md = profile_markdown(report)
    assert "- setup `before`: gRPC, 200 µs" in md and "- setup `shipped`: HTTP, 0 µs" in md
    ratio_row = next(line for line in md.splitlines()
                     if line.startswith("| 256 | 8 | shipped | 0.50"))
    # server CPU, tritonserver, stubs, client, requests/s, p50
    assert ratio_row.split("|")[4:10] == [" 0.50 [0.50–0.50] ", " 0.50 [0.50–0.50] ",
                                          " 0.50 [0.50–0.50] ", " 1.00 [1.00–1.00] ",
                                          " 1.50 [1.50–1.50] ", " 0.80 [0.80–0.80] "]
    assert not any(line.startswith("| 256 | 8 | before | 1.00") for line in md.splitlines())


def test_setups_parse_and_refuse_what_they_cannot_serve(tmp_path):
    from sentinel.bench.setups import (BEFORE, SetupError, effective, parse_setup, parse_setups,
                                       repository_for)
    from sentinel.triton_config import read_pbtxt
    assert parse_setup("before:protocol=grpc,queue_delay_us=200,instances=2") == BEFORE
    assert [s.name for s in parse_setups("a|b:protocol=grpc")] == ["a", "b"]
    for bad, why in (("a:protocol=udp", "protocol"), ("a:delay=1", "unknown setting"),
                     ("a:instances=0", "instances"), ("a:instances=two", "bad value"),
                     ("a|a", "must differ"), ("a:queue_delay_us", "key=value"), ("", "at least")):
        with pytest.raises(SetupError, match=why):
            parse_setups(bad)
    assert effective(BEFORE, {"instances": 1, "queue_delay_us": 0, "max_batch_size": 32}) == \
        {"instances": 2, "queue_delay_us": 200, "max_batch_size": 32}
    # a setup that edits the batching settings serves a copy; the published config is untouched
    from build_scripts.serving_config import model_config
    from build_scripts.specs import RANKER
    from sentinel.triton_config import to_pbtxt
    (tmp_path / "repo" / "ranker" / "1").mkdir(parents=True)
    (tmp_path / "repo" / "ranker" / "config.pbtxt").write_text(
        to_pbtxt(model_config("ranker", RANKER.serving)))
    copy = repository_for(BEFORE, tmp_path / "repo", tmp_path / "work")
    edited = read_pbtxt(copy / "ranker" / "config.pbtxt")
    assert edited.dynamic_batching.max_queue_delay_microseconds == 200
    assert read_pbtxt(tmp_path / "repo" / "ranker" / "config.pbtxt") == \
        model_config("ranker", RANKER.serving)
    assert (copy / "ranker" / "1").is_dir()
    assert repository_for(parse_setup("plain"), tmp_path / "repo", tmp_path / "w2") == \
        tmp_path / "repo"
