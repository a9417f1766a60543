"""Markdown for docs/benchmarks.md. Each command owns one section between markers and rewrites only
that one, so the three commands can run in any order and the prose around them stays."""
from __future__ import annotations

import math
import re
import statistics
from pathlib import Path

from sentinel.bench.results import Machine, MonitorReport, ServeReport, SwapReport

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DOC = ROOT / "docs" / "benchmarks.md"
TARGET_LABELS = {"in-process": "(a) in-process ONNX Runtime", "sentinel": "(b) Sentinel on Triton",
                 "pytriton": "(c) PyTriton", "flask": "(d) gunicorn + Flask",
                 "sentinel-off": "(b′) Sentinel on Triton, stub resource metrics off",
                 "sentinel-grpc": "(b″) Sentinel on Triton, gRPC client"}


def _f(x: float, digits: int = 0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:,.{digits}f}"


def machine_lines(m: Machine) -> list[str]:
    pkgs = ", ".join(f"{n} {v}" for n, v in m.packages)
    return [f"- date {m.date}; host `{m.host}`: {m.cpu}, {m.cores} cores, {m.memory_gib} GiB, "
            f"{m.os}, Python {m.python}",
            f"- load average before / after: {'/'.join(_f(x, 2) for x in m.load_before)} → "
            f"{'/'.join(_f(x, 2) for x in m.load_after)} (other work sharing the cores shows here)",
            f"- {pkgs}"]


def ratios(report: ServeReport, num: str, den: str, candidates: int,
           concurrency: int) -> list[float]:
    """num/den inferences/s of each repetition, paired by run number."""
    den_runs = {c.run: c for c in report.runs(den, candidates, concurrency)}
    return [a.ips / b.ips for a in report.runs(num, candidates, concurrency)
            if (b := den_runs.get(a.run)) is not None and b.ips]


def ratio(report: ServeReport, num: str, den: str, candidates: int, concurrency: int) -> float:
    """The median of the paired ratios (nan when the point is missing)."""
    values = ratios(report, num, den, candidates, concurrency)
    return statistics.median(values) if values else float("nan")


def p50_ratios(report: ServeReport, num: str, den: str, candidates: int,
               concurrency: int) -> list[float]:
    """num/den p50 latency of each repetition, paired by run number."""
    den_runs = {c.run: c for c in report.runs(den, candidates, concurrency)}
    return [a.p50_ms / b.p50_ms for a in report.runs(num, candidates, concurrency)
            if (b := den_runs.get(a.run)) is not None and b.p50_ms]


def _median_with_spread(values: list[float], digits: int = 2) -> str:
    spread = _spread(values, digits)
    return _f(_median(values), digits) + (f" [{spread}]" if spread != "–" else "")


def _spread(values: list[float], digits: int = 0) -> str:
    """'min–max' of the repetitions ('–' for a single run)."""
    finite = [v for v in values if v is not None and not math.isnan(v)]
    if len(finite) < 2:
        return "–"
    return f"{_f(min(finite), digits)}–{_f(max(finite), digits)}"


def _median(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else float("nan")


def serve_markdown(r: ServeReport) -> str:
    repeats = max((c.run for c in r.cells), default=0) + 1
    lines = ["### Serving: ranking requests, closed loop", "", f"Command: `{r.command}` "
             f"({r.duration_s:g} s measured per cell after a warm-up; every cell {repeats} "
             f"time(s), interleaved: medians, with the range of the runs)", ""]
    lines += machine_lines(r.machine) + [""]
    lines += ["| target | candidates | clients | inferences/s | min–max | requests/s | p50 ms | "
              "p50 min–max | p99 ms | errors | client CPU µs/req |",
              "|---|---:|---:|---:|---|---:|---:|---|---:|---:|---:|"]
    points = list(dict.fromkeys((c.target, c.candidates, c.concurrency) for c in r.cells))
    for target, cand, conc in points:
        runs = r.runs(target, cand, conc)
        lines.append(
            f"| {TARGET_LABELS.get(target, target)} | {cand} | {conc} | "
            f"{_f(_median([c.ips for c in runs]))} | {_spread([c.ips for c in runs])} | "
            f"{_f(_median([c.rps for c in runs]))} | {_f(_median([c.p50_ms for c in runs]), 2)} | "
            f"{_spread([c.p50_ms for c in runs], 2)} | {_f(_median([c.p99_ms for c in runs]), 2)} | "
            f"{sum(c.errors for c in runs)} | {_f(_median([c.client_cpu_us for c in runs]))} |")
    lines += ["", "Ratios, each run's (b) over the same run's peer: median [min–max]. Goals at "
              "256 candidates (issue 17): (b)/(a) ≥ 0.5 and (b)/(d) ≥ 1.5 at 8 clients, (b)'s p50 "
              "≤ 3 × (a)'s at 1 client; (b)/(c) ≥ 1.0 (issue 7).", "",
              "| candidates | clients | (b)/(a) inferences/s | (b)/(c) inferences/s | "
              "(b)/(d) inferences/s | (b)/(a) p50 |",
              "|---:|---:|---:|---:|---:|---:|"]
    for cand, conc in sorted({(c.candidates, c.concurrency) for c in r.cells},
                             key=lambda k: (-k[0], k[1])):
        cols = [_median_with_spread(ratios(r, "sentinel", d, cand, conc))
                for d in ("in-process", "pytriton", "flask")]
        cols.append(_median_with_spread(p50_ratios(r, "sentinel", "in-process", cand, conc)))
        lines.append(f"| {cand} | {conc} | " + " | ".join(cols) + " |")
    if r.perf_analyzer:
        lines += ["", "perf_analyzer (tritonclient 2.51.0, C++ gRPC client) against (b), same "
                  "requests:", "", "| candidates | clients | inferences/s | requests/s | p50 ms | "
                  "p99 ms | server queue µs | server compute µs |", "|---:|---:|---:|---:|---:|"
                  "---:|---:|---:|"]
        for p in r.perf_analyzer:
            lines.append(f"| {p.candidates} | {p.concurrency} | {_f(p.ips)} | {_f(p.rps)} | "
                         f"{_f(p.p50_ms, 2)} | {_f(p.p99_ms, 2)} | {_f(p.queue_us)} | "
                         f"{_f(p.compute_us)} |")
    if r.perf_analyzer_error:
        lines += ["", f"perf_analyzer did not run: {r.perf_analyzer_error}"]
    if r.settings:
        lines += ["", "How each target was set up:", ""]
        lines += [f"- {TARGET_LABELS.get(t, t)}: {s}" for t, s in r.settings]
    lines += [f"- {n}" for n in r.notes]
    return "\n".join(lines)


def headline_markdown(r: ServeReport, candidates: int = 256) -> str:
    """The README's table: inferences/s per target and concurrency at `candidates`, with the
    command, the machine's load and the goal ratios of the same run."""
    concs = sorted({c.concurrency for c in r.cells if c.candidates == candidates})
    repeats = max((c.run for c in r.cells), default=0) + 1
    m = r.machine
    lines = [f"Generated by `{r.command}` on {m.date[:10]} ({m.cores} cores, load average "
             f"{m.load_before[0]:.2f} before the run; client and servers share the cores): ranking "
             f"requests of one user × {candidates} candidates, medians of {repeats} interleaved "
             f"runs, inferences/s (ranges and the 1-candidate case in docs/benchmarks.md):", "",
             f"| {candidates} candidates / request, inferences/s | "
             + " | ".join(f"{c} client{'s' if c != 1 else ''}" for c in concs) + " |",
             "|---|" + "---:|" * len(concs)]
    for t in ("in-process", "sentinel", "pytriton", "flask"):
        row = [r.cell(t, candidates, c) for c in concs]
        if any(x is not None for x in row):
            lines.append(f"| {TARGET_LABELS[t]} | "
                         + " | ".join(_f(_median([c.ips for c in r.runs(t, candidates, conc)]))
                                      if x else "–" for x, conc in zip(row, concs)) + " |")
    goals = []
    for label, den, conc in (("(b)/(a) at 8 clients (goal ≥ 0.5)", "in-process", 8),
                             ("(b)/(d) at 8 clients (goal ≥ 1.5)", "flask", 8),
                             ("(b)/(c) at 8 clients (goal ≥ 1.0)", "pytriton", 8)):
        if r.runs("sentinel", candidates, conc) and r.runs(den, candidates, conc):
            goals.append(f"{label} {_median_with_spread(ratios(r, 'sentinel', den, candidates, conc))}")
    if r.runs("sentinel", candidates, 1) and r.runs("in-process", candidates, 1):
        goals.append("(b)'s p50 / (a)'s at 1 client (goal ≤ 3) "
                     + _median_with_spread(p50_ratios(r, "sentinel", "in-process", candidates, 1)))
    if goals:
        lines += ["", "Ratios of the same run, median [min–max]: " + "; ".join(goals) + "."]
    return "\n".join(lines)


def monitor_markdown(r: MonitorReport) -> str:
    c = r.cycle
    lines = ["### Sidecar: one monitoring cycle and a day of retention", "",
             f"Command: `{r.command}`", ""] + machine_lines(r.machine) + [""]
    lines += [f"Synthetic Triton `/metrics`: {r.models} models × {r.versions_per_model} versions, "
              f"{r.series:,} per-version sample lines ({r.text_bytes / 1024:,.0f} KiB), counters "
              f"advancing every scrape; one cycle = parse + SeriesStore.add + repository index + "
              f"detectors + decision for every model (golden probes, which are HTTP I/O to Triton, "
              f"are stubbed). CPU time (process_time) over {r.cycles_measured} cycles after the "
              f"detectors' warm-up:", "",
              "| | median ms | p99 ms | max ms |", "|---|---:|---:|---:|",
              f"| whole cycle | {_f(c.median_ms, 1)} | {_f(c.p99_ms, 1)} | {_f(c.max_ms, 1)} |",
              f"| parse (monitor.scrape.parse_metrics → Scrape) | {_f(c.parse_ms, 1)} | | |",
              f"| SeriesStore.add | {_f(c.store_ms, 1)} | | |",
              f"| index + detectors + decision | {_f(c.rest_ms, 1)} | | |", "",
              f"Memory after {r.simulated_s:,} scrapes at 1 s spacing "
              f"({r.simulated_s / 86400:.2f} simulated days), SeriesStore with default retention "
              f"({r.retention_s:g} s): store arrays {r.store_bytes / 2**20:,.1f} MiB, depth "
              f"{r.store_depth:,} frames; process RSS grew {r.rss_growth_mib:,.1f} MiB "
              f"(fed in {r.feed_seconds:.0f} s)."]
    return "\n".join(lines)


def swap_markdown(r: SwapReport) -> str:
    lines = ["### Version swaps under load", "", f"Command: `{r.command}`", ""]
    lines += machine_lines(r.machine) + [""]
    med = statistics.median(r.swap_s) if r.swap_s else float("nan")
    lines += [f"{r.swaps} swaps between versions 1 and 2 (RepositoryClient.load, a config override "
              f"that pins the version) while {r.clients} gRPC clients send {r.candidates}-candidate "
              f"requests back to back:", "",
              "| swaps | swap s (median / max) | requests during swaps | failed | p50 ms before → "
              "during | p99 ms before → during | max ms during | versions answering |",
              "|---:|---|---:|---:|---|---|---:|---|",
              f"| {r.swaps} | {_f(med, 2)} / {_f(max(r.swap_s, default=float('nan')), 2)} | "
              f"{r.requests_during:,} | {r.failed_during} | {_f(r.p50_ms_before, 2)} → "
              f"{_f(r.p50_ms_during, 2)} | {_f(r.p99_ms_before, 2)} → {_f(r.p99_ms_during, 2)} | "
              f"{_f(r.max_ms_during, 1)} | {', '.join(r.versions_served)} |"]
    if r.failures:
        lines += ["", "First failures:", ""] + [f"- `{f}`" for f in r.failures]
    lines += [f"- {n}" for n in r.notes]
    return "\n".join(lines)


_SKELETON = """# Benchmarks

Written by `sentinel bench serve`, `sentinel bench monitor` and `sentinel bench swap`: each command
replaces its own section below with the numbers of its latest run. Measured numbers only; the
notes around the tables are by hand.

<!-- bench:serve:start -->
<!-- bench:serve:end -->

<!-- bench:monitor:start -->
<!-- bench:monitor:end -->

<!-- bench:swap:start -->
<!-- bench:swap:end -->
"""


def write_section(name: str, body: str, path: Path = DEFAULT_DOC) -> Path:
    """Replace the text between this section's markers (creating the file or markers if needed)."""
    path = Path(path)
    text = path.read_text() if path.exists() else _SKELETON
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
