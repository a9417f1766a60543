"""`sentinel bench monitor`: the sidecar's CPU per cycle and the store's memory over a day.

The cycle is the real Poller.cycle() (scrape parse → SeriesStore.add → repository index → detectors
→ decision, per model) fed synthetic pages; only I/O is replaced: the page comes from memory, the
index lists every version READY, golden probes answer "ok" at once, events go to a list."""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable

from monitor.types import ProbeResult, Scrape, VersionState
from monitor.scrape import parse_metrics
from monitor.store import SeriesStore
from sentinel.bench.environment import describe_machine, finished
from sentinel.bench.results import CycleCost, MonitorReport
from sentinel.bench.synthetic_metrics import metrics_text

Progress = Callable[[str], None]
# The memory run reuses this many distinct pages (10 min of advancing counters); once per wrap the
# counters go back, which the store takes as a restart: a reset interval, no extra memory.
_POOL = 600


@dataclass(frozen=True)
class MonitorOptions:
    models: int = 50
    versions: int = 2
    cycles: int = 60
    warmup_cycles: int = 70
    day_seconds: int = 86_400


class _Clock:
    def __init__(self, start: float = 1_700_000_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now


class _PageScraper:
    """Parses the page of the current step; records the parse's CPU time."""

    def __init__(self, pages: list[str], clock: _Clock):
        self.pages, self.clock, self.step, self.parse_s = pages, clock, 0, []

    def scrape(self) -> Scrape:
        text = self.pages[self.step % len(self.pages)]
        self.step += 1
        t0 = time.process_time()
        scrape = parse_metrics(text, self.clock(), source="synthetic")
        self.parse_s.append(time.process_time() - t0)
        return scrape


class _TimedStore(SeriesStore):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.add_s: list[float] = []

    def add(self, scrape: Scrape) -> None:
        t0 = time.process_time()
        super().add(scrape)
        self.add_s.append(time.process_time() - t0)


class _AllReady:
    def __init__(self, models: int, versions: int):
        self.entries = [(f"model_{m:03d}", VersionState(str(v), "READY"))
                        for m in range(models) for v in range(1, versions + 1)]

    def index(self):
        return self.entries


class _OkProber:
    def __init__(self, clock: _Clock):
        self.clock = clock

    def probe(self, model: str, version: str) -> ProbeResult:
        return ProbeResult(model, version, self.clock(), "ok")


class _Events(list):
    def append(self, event):
        super().append(event)
        return event


def _median_ms(xs: list[float]) -> float:
    return statistics.median(xs) * 1e3 if xs else float("nan")


def measure_cycle(opts: MonitorOptions, progress: Progress = lambda _: None) -> tuple[CycleCost, int, int]:
    """(cost, sample lines per page, page bytes)."""
    from monitor.poller import Poller

    total = opts.warmup_cycles + opts.cycles
    pages = [metrics_text(opts.models, opts.versions, step) for step in range(1, total + 1)]
    clock = _Clock()
    scraper = _PageScraper(pages, clock)
    store = _TimedStore(clock=clock)
    poller = Poller(scraper=scraper, repo=_AllReady(opts.models, opts.versions),
                    prober=_OkProber(clock), events=_Events(), store=store, clock=clock)
    cycle_s = []
    for k in range(total):
        clock.now += 1.0
        t0 = time.process_time()
        poller.cycle()
        cycle_s.append(time.process_time() - t0)
        if k == opts.warmup_cycles - 1:
            progress(f"warm-up: {opts.warmup_cycles} cycles done")
    measured = slice(opts.warmup_cycles, total)
    cyc, parse, add = cycle_s[measured], scraper.parse_s[measured], store.add_s[measured]
    rest = [c - p - a for c, p, a in zip(cyc, parse, add)]
    ordered = sorted(cyc)
    cost = CycleCost(median_ms=_median_ms(cyc),
                     p99_ms=ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e3,
                     max_ms=ordered[-1] * 1e3, parse_ms=_median_ms(parse),
                     store_ms=_median_ms(add), rest_ms=_median_ms(rest))
    lines = sum(1 for line in pages[0].splitlines() if "version=" in line)
    return cost, lines, len(pages[0].encode())


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def simulate_day(opts: MonitorOptions, progress: Progress = lambda _: None) -> tuple[SeriesStore, float, float]:
    """(store, RSS growth MiB, wall seconds) after opts.day_seconds scrapes at 1 s spacing."""
    clock = _Clock()
    pool = [parse_metrics(metrics_text(opts.models, opts.versions, step), 0.0).samples
            for step in range(1, min(_POOL, opts.day_seconds) + 1)]
    store = SeriesStore(clock=clock)  # the sidecar's defaults
    rss0, t0 = _rss_mib(), time.monotonic()
    for k in range(opts.day_seconds):
        clock.now += 1.0
        store.add(Scrape(ts=clock.now, phase="ok", samples=pool[k % len(pool)]))
        if k and k % 21_600 == 0:
            progress(f"simulated {k / 3600:.0f} h: store {store.nbytes() / 2**20:.1f} MiB, "
                     f"depth {store.depth}")
    return store, _rss_mib() - rss0, time.monotonic() - t0


def run_monitor(opts: MonitorOptions, progress: Progress = lambda _: None,
                command: str | None = None) -> MonitorReport:
    from sentinel.bench.serve import _command_line
    machine = describe_machine()
    cost, lines, size = measure_cycle(opts, progress)
    progress(f"cycle CPU median {cost.median_ms:.1f} ms (parse {cost.parse_ms:.1f}, store "
             f"{cost.store_ms:.1f}, rest {cost.rest_ms:.1f}), p99 {cost.p99_ms:.1f} ms")
    store, rss_growth, wall = simulate_day(opts, progress)
    return MonitorReport(machine=finished(machine), command=command or _command_line(),
                         models=opts.models, versions_per_model=opts.versions, series=lines,
                         text_bytes=size, cycles_measured=opts.cycles, cycle=cost,
                         simulated_s=opts.day_seconds, store_bytes=store.nbytes(),
                         store_depth=store.depth, retention_s=store.retention_s,
                         rss_growth_mib=rss_growth, feed_seconds=wall)
