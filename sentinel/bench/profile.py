"""`sentinel bench profile`: where the server's CPU goes per ranking request. Target (b) of
`bench serve` (the ranker on a real tritonserver, the lean gRPC client) under a fixed closed-loop
load; over each measured window: CPU per request of tritonserver, of each Python-backend stub and
of the client (/proc), Triton's own per-stage counters (/metrics), and py-spy samples of the stubs
by category. Every cell runs `repeat` times, interleaved."""
from __future__ import annotations

import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from sentinel.bench import clients, proc_cpu, stacks
from sentinel.bench.driver import measure
from sentinel.bench.environment import describe_machine, finished
from sentinel.bench.report import _f, _median, _median_with_spread, _spread, machine_lines
from sentinel.bench.results import ProfileCell, ProfileReport, ServerStages
from sentinel.bench.serve import (BenchError, check_budget, _command_line, _serving_settings, _version_dir,
                                  _wait_model_ready, ranker_repository, ranker_server_options,
                                  sentinel_settings, triton_call)
from sentinel.bench.setups import DEFAULT_SETUPS, ServingSetup, effective, repository_for
from sentinel.bench.workload import ranking_requests

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ProfileOptions:
    duration_s: float = 5.0
    warmup_s: float = 1.0
    concurrency: tuple[int, ...] = (1, 8)
    candidates: tuple[int, ...] = (256, 1)
    repeat: int = 3
    repository: Path | None = None
    py_spy: bool = True
    reference: bool = True     # the in-process reference cell at 1 client, every run
    rate_hz: int = 100
    log_dir: Path | None = None
    # compared in one run, interleaved: where issue 17 started and what is shipped now
    setups: tuple[ServingSetup, ...] = DEFAULT_SETUPS

    def __post_init__(self):
        if self.duration_s <= 0 or self.warmup_s < 0:
            raise BenchError("duration must be > 0 and warm-up >= 0")
        if not self.concurrency or min(self.concurrency) < 1 or not self.candidates:
            raise BenchError("give at least one concurrency level (>= 1) and candidate count")
        if self.repeat < 1 or self.rate_hz < 1:
            raise BenchError("repeat and the sample rate must be >= 1")
        if not self.setups:
            raise BenchError("give at least one serving setup")

    def estimate_s(self) -> float:
        cells = (len(self.candidates) * (len(self.concurrency) * len(self.setups) + self.reference)
                 * self.repeat)
        return cells * (self.duration_s + self.warmup_s + 1.0) + 10 + 10 * len(self.setups)


# ---- pure parts -------------------------------------------------------------------------------

def stage_deltas(before, after) -> ServerStages:
    """Triton's counters of one (model, version) between two scrapes (monitor.types.VersionSample),
    per request served in between."""
    def delta(name: str) -> float:
        a, b = getattr(before, name), getattr(after, name)
        return (b - a) if a is not None and b is not None else float("nan")

    n = delta("success")
    per = (lambda name: delta(name) / n) if n and not math.isnan(n) else (lambda _: float("nan"))
    return ServerStages(requests=n, executions=delta("exec_count"),
                        request_us=per("request_duration_us"), queue_us=per("queue_duration_us"),
                        compute_input_us=per("compute_input_duration_us"),
                        compute_infer_us=per("compute_infer_duration_us"),
                        compute_output_us=per("compute_output_duration_us"))


def pooled_samples(cells: list[ProfileCell]) -> stacks.Shares:
    counts = {c: 0 for c in stacks.CATEGORIES}
    for cell in cells:
        for category, n in cell.samples:
            counts[category] = counts.get(category, 0) + n
    return stacks.Shares(tuple(counts.items()))


# ---- I/O shell --------------------------------------------------------------------------------

def find_py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def py_spy_problem(binary: str | None, pid: int) -> str | None:
    """Why py-spy cannot sample the stub (not installed, no ptrace permission), or None."""
    if binary is None:
        return "py-spy is not installed (pip install py-spy; it is in the test extra)"
    try:
        done = subprocess.run([binary, "dump", "--pid", str(pid)], capture_output=True, text=True,
                              timeout=20)
    except subprocess.TimeoutExpired:
        return "py-spy dump of a stub did not answer in 20 s"
    if done.returncode != 0:
        return f"py-spy cannot attach to the stub: {(done.stderr or done.stdout).strip()[-300:]}"
    return None


class _Sampler:
    """py-spy record on each stub for exactly the measured window (SIGINT ends it and it writes
    its raw file). Nonblocking: the stubs are never paused, so the profile does not slow them."""

    def __init__(self, binary: str, pids: list[int], rate_hz: int, out_dir: Path):
        self.binary, self.pids, self.rate_hz, self.out_dir = binary, pids, rate_hz, out_dir
        self.procs: list[tuple[subprocess.Popen, Path]] = []
        self.cpu_s = 0.0

    def start(self, tag: str) -> None:
        self._children_at = _children_cpu_s()
        for pid in self.pids:
            out = self.out_dir / f"{tag}-{pid}.txt"
            cmd = [self.binary, "record", "--pid", str(pid), "--format", "raw", "--nonblocking",
                   "--full-filenames", "--rate", str(self.rate_hz), "--output", str(out)]
            self.procs.append((subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                                stderr=subprocess.PIPE), out))

    def stop(self) -> str:
        for proc, _ in self.procs:
            proc.send_signal(signal.SIGINT)
        texts = []
        for proc, out in self.procs:
            try:
                _, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            if proc.returncode not in (0, -signal.SIGINT) or not out.exists():
                raise BenchError(f"py-spy failed ({proc.returncode}): {err.decode()[-300:]}")
            texts.append(out.read_text())
        self.procs = []
        self.cpu_s = _children_cpu_s() - self._children_at
        return "\n".join(texts)


def _children_cpu_s() -> float:
    t = os.times()
    return t.children_user + t.children_system


class _Window:
    """The on_edge hook of the driver: Triton's counters and /proc at both edges of the window,
    the sampler between them. Scrapes sit outside the /proc readings so their cost is not
    counted as the server's."""

    def __init__(self, metrics_url: str, server_pid: int, stub_pids: list[int], version: str,
                 sampler: _Sampler | None, tag: str):
        self.metrics_url, self.server_pid, self.stub_pids = metrics_url, server_pid, stub_pids
        self.version, self.sampler, self.tag = version, sampler, tag
        self.scrapes, self.procs, self.raw = {}, {}, ""

    def __call__(self, edge: str) -> None:
        pids = [self.server_pid, *self.stub_pids]
        if edge == "start":
            self.scrapes[edge] = self._scrape()
            self.procs[edge] = proc_cpu.snapshot(pids)
            if self.sampler:
                self.sampler.start(self.tag)
        else:
            self.procs[edge] = proc_cpu.snapshot(pids)
            self.scrapes[edge] = self._scrape()
            if self.sampler:
                self.raw = self.sampler.stop()

    def _scrape(self):
        import requests

        from monitor.scrape import parse_metrics
        text = requests.get(self.metrics_url, timeout=5).text
        sample = parse_metrics(text, time.time()).sample("ranker", self.version)
        if sample is None:
            raise BenchError(f"no ranker version {self.version} on {self.metrics_url}")
        return sample

    def cell(self, load, source) -> ProfileCell:
        a, b, tck = self.procs["start"], self.procs["end"], proc_cpu.clock_ticks()
        n = load.requests
        server = proc_cpu.per_request_us(proc_cpu.cpu_seconds(a, b, [self.server_pid], tck), n)
        stubs = tuple(proc_cpu.per_request_us(proc_cpu.cpu_seconds(a, b, [p], tck), n)
                      for p in self.stub_pids)
        kernel = [proc_cpu.per_request_us(proc_cpu.cpu_seconds(a, b, pids, tck, kernel_only=True), n)
                  for pids in ([self.server_pid], self.stub_pids)]
        samples = stacks.tally(stacks.parse_raw(self.raw), source).samples if self.sampler else ()
        return ProfileCell(load=load, tritonserver_cpu_us=server, stub_cpu_us=stubs,
                           stages=stage_deltas(self.scrapes["start"], self.scrapes["end"]),
                           tritonserver_kernel_us=kernel[0], stubs_kernel_us=kernel[1],
                           samples=samples,
                           profiler_cpu_us=proc_cpu.per_request_us(self.sampler.cpu_s, n)
                           if self.sampler else float("nan"))


def run_profile(opts: ProfileOptions, progress: Progress = lambda _: None,
                command: str | None = None) -> ProfileReport:
    check_budget(opts.estimate_s(), "lower --duration or --repeat, or give fewer --setups")
    from python_backend.ranker_features import FeatureTables
    from sentinel.triton import TritonServer

    machine = describe_machine()
    progress(f"load average before: {'/'.join(f'{x:.2f}' for x in machine.load_before)}")
    cells: list[ProfileCell] = []
    reference = []
    with tempfile.TemporaryDirectory(prefix="sentinel-profile-") as tmp, ExitStack() as servers:
        work = Path(tmp)
        log_dir = Path(opts.log_dir) if opts.log_dir else work
        log_dir.mkdir(parents=True, exist_ok=True)
        repository = ranker_repository(opts.repository, work, progress)
        version_dir = _version_dir(repository)
        published = _serving_settings(version_dir)
        tables = FeatureTables.load(version_dir / "features.npz")
        requests = {c: ranking_requests(c, tables.n_users, tables.n_items) for c in opts.candidates}
        # Every setup's server runs for the whole profile, so the runs interleave across setups
        # (background load falls on all alike); an idle server's CPU is outside every window.
        served = []
        for setup in opts.setups:
            options = replace(ranker_server_options(repository_for(setup, repository, work),
                                                    log_dir),
                              log_path=log_dir / f"triton-{setup.name}.log")
            server = servers.enter_context(TritonServer(options))
            _wait_model_ready(options.http_url)
            served.append(_Served(setup, options, server, requests, opts, work, progress))
        py_spy = served[0].py_spy
        source = stacks.file_lines()
        in_process = {c: clients.in_process(version_dir, requests[c]) for c in opts.candidates} \
            if opts.reference else {}
        for run in range(opts.repeat):
            for cand in opts.candidates:
                if opts.reference:
                    ref = replace(measure("in-process", in_process[cand], 64, cand, 1,
                                          opts.duration_s, opts.warmup_s), run=run)
                    progress(f"run {run + 1}/{opts.repeat} {cand:>4} candidates in-process, "
                             f"1 client: {ref.client_cpu_us:6.0f} CPU µs/req")
                    reference.append(ref)
                for conc in opts.concurrency:
                    for s in served:
                        window = _Window(s.options.metrics_url, s.server_pid, s.stubs, s.version,
                                         s.sampler, f"{s.setup.name}-r{run}-{cand}-{conc}")
                        load = replace(measure(s.setup.name, s.calls[cand], 64, cand, conc,
                                               opts.duration_s, opts.warmup_s, window), run=run)
                        cell = window.cell(load, source)
                        progress(f"run {run + 1}/{opts.repeat} {s.setup.name:>8} {cand:>4} "
                                 f"candidates × {conc:>2} clients: {load.rps:7.0f} req/s, CPU "
                                 f"µs/req tritonserver {cell.tritonserver_cpu_us:6.0f} stubs "
                                 f"{cell.stubs_cpu_us:6.0f} client {load.client_cpu_us:6.0f}, "
                                 f"errors {load.errors}")
                        cells.append(cell)
    machine = finished(machine)
    progress(f"load average after: {'/'.join(f'{x:.2f}' for x in machine.load_after)}")
    described = tuple((s.name, sentinel_settings(effective(s, published), s.protocol))
                      for s in opts.setups)
    return ProfileReport(machine=machine, command=command or _command_line(),
                         duration_s=opts.duration_s, cells=tuple(cells),
                         settings="; ".join(f"{n}: {d}" for n, d in described),
                         setups=described, py_spy=py_spy,
                         sample_rate_hz=opts.rate_hz if served[0].sampler else 0,
                         reference=tuple(reference))


class _Served:
    """One setup's running server: its pids, the version it serves, its clients and sampler."""

    def __init__(self, setup, options, server, requests, opts: ProfileOptions, work: Path,
                 progress: Progress):
        self.setup, self.options = setup, options
        self.server_pid = server.process.pid
        versions = [m["version"] for m in server.index()
                    if m.get("name") == "ranker" and m.get("state") == "READY"]
        if len(versions) != 1:
            raise BenchError(f"expected one READY ranker version, the index says {versions}")
        self.version = versions[0]
        self.stubs = proc_cpu.stub_pids(proc_cpu.snapshot(), self.server_pid)
        if not self.stubs:
            raise BenchError(f"no {proc_cpu.STUB_COMM} process under tritonserver "
                             f"{self.server_pid}")
        self.sampler, self.py_spy = None, "not asked for (--no-py-spy)"
        if opts.py_spy:
            binary = find_py_spy()
            why = py_spy_problem(binary, self.stubs[0])
            if why:
                self.py_spy = f"skipped: {why}"
                progress(f"py-spy {self.py_spy}")
            else:
                self.sampler = _Sampler(binary, self.stubs, opts.rate_hz, work)
                self.py_spy = (f"py-spy {_py_spy_version(binary)} record --nonblocking --rate "
                               f"{opts.rate_hz} on each stub for the measured window")
        self.calls = {c: triton_call(options, setup.protocol, reqs) for c, reqs in requests.items()}


def _py_spy_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.split()
    return out[-1] if out else "?"


# ---- report -----------------------------------------------------------------------------------

SHARE_LABELS = {stacks.ORT: "ONNX Runtime", stacks.METRICS: "metrics", stacks.PB_UTILS: "pb_utils",
                stacks.STUB_NATIVE: "stub C++", stacks.PARSE: "parse", stacks.ENCODE: "encode",
                stacks.RESPOND: "batch + respond", stacks.OTHER: "other"}


def _pct(part: float, whole: float) -> float:
    return 100 * part / whole if whole else float("nan")


def _med(values: list[float], digits: int = 0) -> str:
    return _f(_median(values), digits)


def _points(r: ProfileReport) -> list[tuple[int, int, str]]:
    """(candidates, clients, setup) in the order they ran, setups side by side per point."""
    return list(dict.fromkeys((c.load.candidates, c.load.concurrency, c.load.target)
                              for c in r.cells))


def paired_ratios(r: ProfileReport, cand: int, conc: int, num: str, den: str,
                  value: Callable[[ProfileCell], float]) -> list[float]:
    """value(setup num) / value(setup den) of each run, paired by run number."""
    den_runs = {c.load.run: c for c in r.runs(cand, conc, den)}
    return [value(a) / value(b) for a in r.runs(cand, conc, num)
            if (b := den_runs.get(a.load.run)) is not None and value(b)]


def profile_markdown(r: ProfileReport) -> str:
    repeats = max((c.load.run for c in r.cells), default=0) + 1
    points = _points(r)
    lines = ["### Server CPU per request: where it goes", "",
             f"Command: `{r.command}` ({r.duration_s:g} s measured per cell after a warm-up; "
             f"every cell {repeats} time(s), interleaved over the setups: medians, with the range "
             f"of the runs)", ""]
    lines += machine_lines(r.machine)
    lines += [f"- setup `{name}`: {how}" for name, how in r.setups] or [f"- served: {r.settings}"]
    lines += [f"- stubs sampled: {r.py_spy}", "",
              "CPU per request from `/proc/<pid>/stat` (utime + stime) over the measured window, "
              "divided by the requests the client completed in it:", "",
              "| candidates | clients | setup | requests/s | p50 ms | tritonserver µs/req | "
              "min–max | kernel % | stubs µs/req | min–max | kernel % | server µs/req | min–max | "
              "client µs/req | errors |",
              "|---:|---:|---|---:|---:|---:|---|---:|---:|---|---:|---:|---|---:|---:|"]
    for cand, conc, setup in points:
        runs = r.runs(cand, conc, setup)
        ts, st, sv = ([c.tritonserver_cpu_us for c in runs], [c.stubs_cpu_us for c in runs],
                      [c.server_cpu_us for c in runs])
        ts_k = [_pct(c.tritonserver_kernel_us, c.tritonserver_cpu_us) for c in runs]
        st_k = [_pct(c.stubs_kernel_us, c.stubs_cpu_us) for c in runs]
        lines.append(f"| {cand} | {conc} | {setup} | {_med([c.load.rps for c in runs])} | "
                     f"{_med([c.load.p50_ms for c in runs], 2)} | {_med(ts)} | {_spread(ts)} | "
                     f"{_med(ts_k)} | {_med(st)} | {_spread(st)} | {_med(st_k)} | "
                     f"{_med(sv)} | {_spread(sv)} | "
                     f"{_med([c.load.client_cpu_us for c in runs])} | "
                     f"{sum(c.load.errors for c in runs)} |")
    names = [n for n, _ in r.setups] or list(dict.fromkeys(p[2] for p in points))
    if len(names) >= 2:
        base = names[0]
        lines += ["", f"Each setup against `{base}`, run by run (paired by run number): median "
                  "[min–max] of the ratios; below 1 = less CPU or latency, above 1 = more "
                  "throughput:", "",
                  "| candidates | clients | setup | server CPU / req | tritonserver CPU / req | "
                  "stubs CPU / req | client CPU / req | requests/s | p50 |",
                  "|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
        for cand, conc in dict.fromkeys((p[0], p[1]) for p in points):
            for name in names[1:]:
                cols = [paired_ratios(r, cand, conc, name, base, f) for f in (
                    lambda c: c.server_cpu_us, lambda c: c.tritonserver_cpu_us,
                    lambda c: c.stubs_cpu_us, lambda c: c.load.client_cpu_us,
                    lambda c: c.load.rps, lambda c: c.load.p50_ms)]
                if cols[0]:
                    lines.append(f"| {cand} | {conc} | {name} | "
                                 + " | ".join(_median_with_spread(v) for v in cols) + " |")
    if r.reference:
        lines += ["", "Reference: the same `RankerService` (validation, encoding, ONNX Runtime, 1 "
                  "intra-op thread) called in this process, 1 client, interleaved with the cells: "
                  + "; ".join(f"{cand} candidates {_med([c.client_cpu_us for c in runs])} CPU "
                              f"µs/req ({_spread([c.client_cpu_us for c in runs])}), p50 "
                              f"{_med([c.p50_ms for c in runs], 2)} ms"
                              for cand in dict.fromkeys(c.candidates for c in r.reference)
                              if (runs := [c for c in r.reference if c.candidates == cand]))
                  + "."]
    lines += ["", "Triton's own counters over the same windows (wall µs per request, medians; a "
              "batch's compute time counts for each request in it):", "",
              "| candidates | clients | setup | requests / execute | request µs | queue µs | "
              "compute input µs | compute infer µs | compute output µs |",
              "|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for cand, conc, setup in points:
        s = [c.stages for c in r.runs(cand, conc, setup)]
        lines.append(f"| {cand} | {conc} | {setup} | {_med([x.per_execute for x in s], 2)} | "
                     f"{_med([x.request_us for x in s])} | {_med([x.queue_us for x in s])} | "
                     f"{_med([x.compute_input_us for x in s])} | "
                     f"{_med([x.compute_infer_us for x in s])} | "
                     f"{_med([x.compute_output_us for x in s])} |")
    if r.sample_rate_hz:
        lines += ["", "Inside the stubs: py-spy samples of active threads, all runs of a cell "
                  "pooled, % by category (stacks.py: ONNX Runtime or metrics anywhere on the stack; "
                  "else the innermost frame: a line calling pb_utils, or the adapter's parse / "
                  "encode / batch + respond; stub C++ = an active thread with no Python frame). "
                  "Sampled s / stub CPU s is how much of the stubs' CPU the samples cover:", "",
                  "| candidates | clients | setup | samples | sampled s / stub CPU s | "
                  + " | ".join(SHARE_LABELS[c] + " %" for c in stacks.CATEGORIES)
                  + " | py-spy CPU µs/req |",
                  "|---:|---:|---|---:|---:|" + "---:|" * len(stacks.CATEGORIES) + "---:|"]
        for cand, conc, setup in points:
            runs = r.runs(cand, conc, setup)
            pooled = pooled_samples(runs)
            stub_s = sum(c.stubs_cpu_us * c.load.requests for c in runs) / 1e6
            cover = pooled.total / r.sample_rate_hz / stub_s if stub_s else float("nan")
            lines.append(f"| {cand} | {conc} | {setup} | {pooled.total:,} | {_f(cover, 2)} | "
                         + " | ".join(_f(100 * pooled.share(c), 1) for c in stacks.CATEGORIES)
                         + f" | {_med([c.profiler_cpu_us for c in runs])} |")
    lines += [f"- {n}" for n in r.notes]
    return "\n".join(lines)


def add_arguments(p) -> None:
    from sentinel.bench.commands import _ints
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per cell and run")
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each cell")
    p.add_argument("--repeat", type=int, default=3,
                   help="runs of every cell (interleaved); the report gives medians and ranges")
    p.add_argument("--concurrency", type=_ints, default=(1, 8), help="e.g. 1,8")
    p.add_argument("--candidates", type=_ints, default=(256, 1), help="e.g. 256,1")
    p.add_argument("--rate", type=int, default=100, help="py-spy samples per second per stub")
    p.add_argument("--no-py-spy", action="store_true", help="CPU and Triton's counters only")
    p.add_argument("--no-reference", action="store_true",
                   help="leave out the in-process reference cell (1 client, every run)")
    p.add_argument("--repository", default=None,
                   help="use the newest ranker in this repository instead of building one")
    p.add_argument("--log-dir", default=None, help="keep tritonserver's log here")
    p.add_argument("--setups", type=_setups, default=DEFAULT_SETUPS,
                   help="serving setups compared in one run, '|'-separated, each NAME[:key=value,"
                        "...] with protocol (http|grpc), queue_delay_us, instances; the first is "
                        "the baseline of the ratios (default: 'before:protocol=grpc,"
                        "queue_delay_us=200,instances=2|http:protocol=http,queue_delay_us=200,"
                        "instances=2|shipped:protocol=http': where issue 17 started, the HTTP "
                        "client alone, and what `sentinel build ranker` publishes now)")


def _setups(text: str) -> tuple[ServingSetup, ...]:
    import argparse

    from sentinel.bench.setups import SetupError, parse_setups
    try:
        return parse_setups(text)
    except SetupError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def options_from(args) -> ProfileOptions:
    return ProfileOptions(setups=args.setups, duration_s=args.duration, warmup_s=args.warmup, repeat=args.repeat,
                          concurrency=args.concurrency, candidates=args.candidates,
                          rate_hz=args.rate, py_spy=not args.no_py_spy,
                          reference=not args.no_reference,
                          repository=Path(args.repository) if args.repository else None,
                          log_dir=Path(args.log_dir) if args.log_dir else None)

