"""Typed results of the benchmarks; the report renders them, the tests build them by hand."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Machine:
    """Where and when a benchmark ran, so a table is never read without its context."""
    date: str
    host: str
    cpu: str
    cores: int
    memory_gib: float
    os: str
    python: str
    packages: tuple[tuple[str, str], ...]
    load_before: tuple[float, float, float]   # os.getloadavg(): other work on the machine
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class ServeCell:
    """One target at one (candidates, concurrency) point of the closed-loop load."""
    target: str
    candidates: int
    concurrency: int
    requests: int          # completed within the measured window
    errors: int
    seconds: float
    rps: float             # requests/s
    ips: float             # inferences/s: scored candidates (rows) per second
    p50_ms: float
    p99_ms: float
    client_cpu_us: float   # CPU of the load-generating process per request (in-process: all work)
    run: int = 0           # which repetition of the whole cell matrix (0-based)


@dataclass(frozen=True)
class PerfAnalyzerCell:
    """perf_analyzer's view of the Sentinel target (C++ client, Triton's server-side breakdown)."""
    candidates: int
    concurrency: int
    rps: float
    ips: float
    p50_ms: float
    p99_ms: float
    queue_us: float
    compute_us: float      # server compute input + infer + output


@dataclass(frozen=True)
class ServeReport:
    machine: Machine
    command: str
    duration_s: float
    cells: tuple[ServeCell, ...]
    perf_analyzer: tuple[PerfAnalyzerCell, ...] = ()
    perf_analyzer_error: str | None = None
    settings: tuple[tuple[str, str], ...] = ()   # target -> how it was configured
    notes: tuple[str, ...] = ()

    def runs(self, target: str, candidates: int, concurrency: int) -> list[ServeCell]:
        """Every repetition of one point, in run order."""
        return sorted((c for c in self.cells if (c.target, c.candidates, c.concurrency)
                       == (target, candidates, concurrency)), key=lambda c: c.run)

    def cell(self, target: str, candidates: int, concurrency: int) -> ServeCell | None:
        """The repetition with the median inferences/s (the lower middle one of an even count)."""
        runs = sorted(self.runs(target, candidates, concurrency), key=lambda c: c.ips)
        return runs[(len(runs) - 1) // 2] if runs else None


@dataclass(frozen=True)
class CycleCost:
    """CPU milliseconds of one sidecar cycle and of its parts, over many cycles."""
    median_ms: float
    p99_ms: float
    max_ms: float
    parse_ms: float        # median of the scrape text -> Scrape parse
    store_ms: float        # median of SeriesStore.add
    rest_ms: float         # median of index, detectors, decision (cycle - parse - store)


@dataclass(frozen=True)
class MonitorReport:
    machine: Machine
    command: str
    models: int
    versions_per_model: int
    series: int            # sample lines per scrape that carry a (model, version)
    text_bytes: int
    cycles_measured: int
    cycle: CycleCost
    simulated_s: int       # scrapes fed to the store at 1 s spacing
    store_bytes: int       # SeriesStore.nbytes() at the end
    store_depth: int       # frames held at the end (bounded by retention)
    retention_s: float
    rss_growth_mib: float  # process RSS growth over the simulated span
    feed_seconds: float    # wall time the simulated span took


@dataclass(frozen=True)
class SwapReport:
    machine: Machine
    command: str
    swaps: int
    clients: int
    candidates: int
    swap_s: tuple[float, ...]
    requests_during: int
    failed_during: int
    failures: tuple[str, ...]          # first few error messages
    p50_ms_before: float
    p99_ms_before: float
    p50_ms_during: float
    p99_ms_during: float
    max_ms_during: float
    versions_served: tuple[str, ...]
    errors_total: int = 0              # failed requests over the whole run, warm-up included
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class ServerStages:
    """Triton's per-model counters over one window, per request served (wall µs, as Triton
    counts them: a batch's compute time counts for each request in it)."""
    requests: float        # Δ nv_inference_request_success
    executions: float      # Δ nv_inference_exec_count
    request_us: float
    queue_us: float
    compute_input_us: float
    compute_infer_us: float
    compute_output_us: float

    @property
    def per_execute(self) -> float:
        """Requests per model execution (what the dynamic batcher merged)."""
        return self.requests / self.executions if self.executions else float("nan")


@dataclass(frozen=True)
class ProfileCell:
    """One run of one (candidates, clients) point: CPU per request by process, Triton's stages,
    and the stubs' py-spy samples by category."""
    load: ServeCell                        # the client's view (requests, latency, client CPU)
    tritonserver_cpu_us: float             # the C++ server: gRPC, scheduler/batcher, its IPC side
    stub_cpu_us: tuple[float, ...]         # each triton_python_backend_stub process
    stages: ServerStages
    tritonserver_kernel_us: float = float("nan")  # of tritonserver_cpu_us, in kernel mode
    stubs_kernel_us: float = float("nan")         # of the stubs' CPU, in kernel mode
    samples: tuple[tuple[str, int], ...] = ()   # py-spy samples by category (stacks.CATEGORIES)
    profiler_cpu_us: float = float("nan")        # py-spy's own CPU per request (shares the cores)

    @property
    def stubs_cpu_us(self) -> float:
        return sum(self.stub_cpu_us)

    @property
    def server_cpu_us(self) -> float:
        return self.tritonserver_cpu_us + self.stubs_cpu_us


@dataclass(frozen=True)
class ProfileReport:
    machine: Machine
    command: str
    duration_s: float
    cells: tuple[ProfileCell, ...]
    settings: str = ""
    py_spy: str = ""             # how the stubs were sampled, or why they were not
    sample_rate_hz: int = 0
    notes: tuple[str, ...] = ()
    # The same RankerService called in this process at 1 client, interleaved with the cells:
    # its client CPU per request is the whole cost of a request without a server.
    reference: tuple[ServeCell, ...] = ()
    # (setup name, how it served) for each serving setup compared; a cell's load.target names its
    # setup
    setups: tuple[tuple[str, str], ...] = ()

    def runs(self, candidates: int, concurrency: int, setup: str | None = None
             ) -> list[ProfileCell]:
        return sorted((c for c in self.cells if (c.load.candidates, c.load.concurrency)
                       == (candidates, concurrency) and setup in (None, c.load.target)),
                      key=lambda c: c.load.run)
