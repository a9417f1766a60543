"""`sentinel bench serve`: the ranking workload against (a) the model in-process, (b) Sentinel on
Triton, (c) PyTriton and (d) gunicorn + Flask, one after the other in the same run, same client
machine, same requests; then perf_analyzer against (b) as a cross-check."""
from __future__ import annotations

import shlex
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from sentinel.bench import clients
from sentinel.bench.driver import measure
from sentinel.bench.environment import describe_machine, finished
from sentinel.bench.results import PerfAnalyzerCell, ServeCell, ServeReport
from sentinel.bench.setups import edited_copy
from sentinel.bench.workload import ranking_requests, write_perf_analyzer_data

TARGETS = ("in-process", "sentinel", "pytriton", "flask", "sentinel-off", "sentinel-grpc")
# sentinel-off is (b) with the stubs' memory/CPU metrics turned off (SENTINEL_RESOURCE_METRICS=off):
# `--targets sentinel,sentinel-off` measures what those metrics cost per request. sentinel-grpc is
# (b) driven through gRPC instead of HTTP (`--targets sentinel,sentinel-grpc`: what the client's
# protocol costs). Neither is a default: the run would pass the command's time bound.
DEFAULT_TARGETS = TARGETS[:4]
MAX_COMMAND_S = 600  # the bound for one bench command
Progress = Callable[[str], None]


class BenchError(RuntimeError):
    pass


@dataclass(frozen=True)
class ServeOptions:
    duration_s: float = 4.0
    warmup_s: float = 1.0
    concurrency: tuple[int, ...] = (1, 8, 32)
    candidates: tuple[int, ...] = (256, 1)
    targets: tuple[str, ...] = DEFAULT_TARGETS
    perf_analyzer: bool = True
    repository: Path | None = None   # holds a published ranker; None = build one for this run
    log_dir: Path | None = None
    # Each target's cell matrix runs this many times (interleaved: run 1 of every cell, then
    # run 2, ...), so the report gives the spread next to every median.
    repeat: int = 3

    def __post_init__(self):
        unknown = set(self.targets) - set(TARGETS)
        if unknown:
            raise BenchError(f"unknown targets {sorted(unknown)}; choose from {TARGETS}")
        if self.duration_s <= 0 or self.warmup_s < 0:
            raise BenchError("duration must be > 0 and warm-up >= 0")
        if not self.concurrency or min(self.concurrency) < 1:
            raise BenchError("concurrency levels must be >= 1")
        if self.repeat < 1:
            raise BenchError("repeat must be >= 1")

    def pa_window_ms(self) -> int:
        return int(max(1000, self.duration_s * 500))

    def estimate_s(self) -> float:
        cells = len(self.targets) * len(self.candidates) * len(self.concurrency) * self.repeat
        startup = 15 + 20 * len(self.targets)  # build, servers (PyTriton and its env dominate)
        pa = (len(self.concurrency) * (3 * self.pa_window_ms() / 1000 + 3)
              if self.perf_analyzer and "sentinel" in self.targets else 0)
        return cells * (self.duration_s + self.warmup_s + 0.5) + startup + pa


def _version_dir(repository: Path) -> Path:
    versions = [p for p in (Path(repository) / "ranker").iterdir() if p.name.isdigit()] \
        if (Path(repository) / "ranker").is_dir() else []
    if not versions:
        raise BenchError(f"no published ranker version in {repository}; run `sentinel build ranker`"
                         " or leave out --repository to build one for the run")
    return max(versions, key=lambda p: int(p.name))


def _serving_settings(version_dir: Path) -> dict[str, int]:
    from sentinel.triton_config import read_pbtxt
    config = read_pbtxt(version_dir.parent / "config.pbtxt")
    return {"instances": sum(g.count for g in config.instance_group) or 1,
            "max_batch_size": config.max_batch_size,
            "queue_delay_us": config.dynamic_batching.max_queue_delay_microseconds,
            "ort_threads": int(config.parameters["ORT_INTRA_OP_THREADS"].string_value or 1)
            if "ORT_INTRA_OP_THREADS" in config.parameters else 1}


def _run_cells(target: str, make_call, opts: ServeOptions, n_users: int, n_items: int,
               progress: Progress) -> list[ServeCell]:
    cells = []
    calls = {}
    for run in range(opts.repeat):
        for candidates in opts.candidates:
            if candidates not in calls:
                reqs = ranking_requests(candidates, n_users, n_items)
                calls[candidates] = (make_call(reqs), len(reqs))
            call, n_payloads = calls[candidates]
            for c in opts.concurrency:
                cell = replace(measure(target, call, n_payloads, candidates, c, opts.duration_s,
                                       opts.warmup_s), run=run)
                progress(f"{target:<10} run {run + 1}/{opts.repeat} {candidates:>4} candidates × "
                         f"{c:>2} clients: {cell.rps:8.0f} req/s {cell.ips:10.0f} inf/s  "
                         f"p50 {cell.p50_ms:6.2f} ms  p99 {cell.p99_ms:6.2f} ms  "
                         f"errors {cell.errors}")
                cells.append(cell)
    return cells


def _perf_analyzer_cells(grpc_url: str, opts: ServeOptions, n_users: int, n_items: int,
                         work: Path, progress: Progress) -> list[PerfAnalyzerCell]:
    from sentinel.bench.perf_analyzer import run_perf_analyzer
    out = []
    candidates = max(opts.candidates)
    data = write_perf_analyzer_data(ranking_requests(candidates, n_users, n_items),
                                    work / f"pa-{candidates}.json")
    for c in opts.concurrency:
        cell = run_perf_analyzer(grpc_url, data, candidates, c, opts.pa_window_ms())
        progress(f"perf_analyzer {candidates} candidates × {c:>2}: {cell.rps:8.0f} req/s "
                 f"p50 {cell.p50_ms:6.2f} ms p99 {cell.p99_ms:6.2f} ms")
        out.append(cell)
    return out


def check_budget(estimate_s: float, hint: str) -> None:
    """Refuse a bench run that would take longer than one command may."""
    if estimate_s > MAX_COMMAND_S:
        raise BenchError(f"this run would take ~{estimate_s:.0f}s, over the {MAX_COMMAND_S}s "
                         f"bound: {hint}")


def run_serve(opts: ServeOptions, progress: Progress = lambda _: None,
              command: str | None = None) -> ServeReport:
    check_budget(opts.estimate_s(), "lower --duration or the concurrency levels")
    from python_backend.ranker_features import FeatureTables
    from sentinel.bench.peers.launch import FlaskPeer, PyTritonPeer
    from sentinel.triton import TritonServer

    machine = describe_machine()
    with tempfile.TemporaryDirectory(prefix="sentinel-bench-") as tmp:
        work = Path(tmp)
        log_dir = Path(opts.log_dir) if opts.log_dir else work
        log_dir.mkdir(parents=True, exist_ok=True)
        repository = ranker_repository(opts.repository, work, progress)
        version_dir = _version_dir(repository)
        tables = FeatureTables.load(version_dir / "features.npz")
        n_users, n_items = tables.n_users, tables.n_items
        served = _serving_settings(version_dir)
        cells: list[ServeCell] = []
        pa: list[PerfAnalyzerCell] = []
        pa_error = None
        settings: dict[str, str] = {}
        for target in opts.targets:
            if target == "in-process":
                settings[target] = ("RankerService called from the client threads: validation, "
                                    "encoding, one ONNX Runtime session (1 intra-op thread)")
                cells += _run_cells(target, lambda r: clients.in_process(version_dir, r), opts,
                                    n_users, n_items, progress)
            elif target in ("sentinel", "sentinel-off", "sentinel-grpc"):
                served_repo = repository if target != "sentinel-off" else \
                    _without_resource_metrics(repository, work / "repo-off")
                options = ranker_server_options(served_repo, log_dir)
                protocol = "grpc" if target == "sentinel-grpc" else "http"
                settings[target] = (sentinel_settings(served, protocol)
                                    + (", stub memory/CPU metrics off" if target == "sentinel-off"
                                       else ""))
                with TritonServer(options):
                    _wait_model_ready(options.http_url)
                    cells += _run_cells(target, lambda r: triton_call(options, protocol, r),
                                        opts, n_users, n_items, progress)
                    if opts.perf_analyzer and target == "sentinel":
                        from sentinel.bench.perf_analyzer import PerfAnalyzerError
                        try:
                            pa = _perf_analyzer_cells(options.grpc_url, opts, n_users, n_items,
                                                      work, progress)
                        except PerfAnalyzerError as exc:
                            pa_error = str(exc)
                            progress(f"perf_analyzer failed: {exc}")
            elif target == "pytriton":
                peer = PyTritonPeer(version_dir, instances=served["instances"],
                                    max_batch_size=served["max_batch_size"],
                                    queue_delay_us=served["queue_delay_us"],
                                    log_path=log_dir / "pytriton.log")
                settings[target] = peer.describe()
                progress("starting PyTriton (creates its env on first use)")
                with peer:
                    cells += _run_cells(target, lambda r: clients.triton_http(
                        "127.0.0.1", peer.http_port, r), opts, n_users, n_items, progress)
            elif target == "flask":
                peer = FlaskPeer(version_dir, log_path=log_dir / "gunicorn.log")
                settings[target] = peer.describe()
                with peer:
                    cells += _run_cells(target,
                                        lambda r: clients.http_json("127.0.0.1", peer.port, r),
                                        opts, n_users, n_items, progress)
    return ServeReport(machine=finished(machine), command=command or _command_line(),
                       duration_s=opts.duration_s, cells=tuple(cells), perf_analyzer=tuple(pa),
                       perf_analyzer_error=pa_error, settings=tuple(settings.items()))


def ranker_repository(repository: Path | None, work: Path, progress: Progress) -> Path:
    """The repository to serve: the given one, or a ranker built into `work` for this run."""
    if repository is not None:
        return Path(repository)
    from build_scripts.ranker_build import build_ranker
    progress("building the ranker (train, export, validate, publish) for this run")
    build_ranker(work / "repo")
    return work / "repo"


def ranker_server_options(repository: Path, log_dir: Path):
    """Target (b): a real tritonserver serving only the ranker, on free ports."""
    from sentinel.triton import TritonOptions, free_port
    return TritonOptions(repository=repository, http_port=free_port(), grpc_port=free_port(),
                         metrics_port=free_port(), models=("ranker",),
                         log_path=log_dir / "triton.log")


def sentinel_settings(served: dict[str, int], protocol: str = "http") -> str:
    client = ("HTTP/1.1 with binary tensors" if protocol == "http"
              else "gRPC, pre-serialised ModelInferRequest")
    return (f"Triton 2.51 python backend, model.py of this tree, {served['instances']} instances, "
            f"max_batch_size {served['max_batch_size']}, dynamic batching "
            f"{served['queue_delay_us']} µs, ORT intra-op threads {served['ort_threads']}, "
            f"{client}")


def triton_call(options, protocol: str, reqs):
    """The bench client for a tritonserver started with `options`, in `protocol`."""
    if protocol == "grpc":
        return clients.triton_grpc(options.grpc_url, reqs)
    return clients.triton_http("127.0.0.1", options.http_port, reqs)


def _without_resource_metrics(repository: Path, dst: Path) -> Path:
    """A copy of the ranker's repository whose config turns the stubs' resource metrics off."""
    def metrics_off(config) -> None:
        config.parameters["SENTINEL_RESOURCE_METRICS"].string_value = "off"
    return edited_copy(repository, dst, metrics_off)


def _wait_model_ready(http_url: str, timeout_s: float = 60.0) -> None:
    import time

    import requests
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{http_url}/v2/models/ranker/ready", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise BenchError(f"ranker not ready on {http_url} after {timeout_s:g}s")


def _command_line() -> str:
    return "sentinel " + " ".join(shlex.quote(a) for a in sys.argv[1:])
