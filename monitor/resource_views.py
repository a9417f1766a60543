"""What the pages show about resources: per-version stub memory (with the projection of a growing
version towards the memory limit) and CPU per request on the model page, the server's own CPU,
memory and GPUs on the overview. Plain data and SVG from the store and the latest findings."""
from __future__ import annotations

import math

from monitor.charts import Line, line_chart, sparkline
from monitor.resource import MemoryGrowth, describe, duration_text

_MIB, _GIB = 2**20, 2**30


def _vkey(v: str):
    return (0, int(v)) if v.isdigit() else (1, v)


def _values(frame, column: str, scale: float) -> list[float | None]:
    return [None if x is None or not math.isfinite(x) else x * scale for x in frame[column].to_list()]


def resource_charts(store, model: str, findings=(), since: float | None = None,
                    markers=()) -> list[str]:
    """Memory (MiB) and CPU per request (ms) of each version's stubs. A served version whose
    memory grows gets a dashed-on projection: its fitted slope drawn on for a quarter of the
    window, and the time to the memory limit in the chart's title."""
    versions = sorted((v for m, v in store.versions() if m == model), key=_vkey)
    frames = {v: store.signals(model, v, since=since) for v in versions}
    frames = {v: f for v, f in frames.items()
              if f.height and any(math.isfinite(x) for x in f["memory_bytes"].to_list())}
    if not frames:
        return []
    memory = [Line(f"v{v}", f["ts"].to_list(), _values(f, "memory_bytes", 1 / _MIB))
              for v, f in frames.items()]
    title = "Stub memory"
    growth = next((g for g in findings if isinstance(g, MemoryGrowth) and g.slope_bytes_per_s > 0
                   and g.version in frames), None)
    if growth is not None:
        ts = [t for f in frames.values() for t in f["ts"].to_list()]
        ahead = max(60.0, (max(ts) - min(ts)) / 4)
        memory.append(Line(f"v{growth.version} projected", [growth.at, growth.at + ahead],
                           [growth.memory_bytes / _MIB,
                            (growth.memory_bytes + growth.slope_bytes_per_s * ahead) / _MIB]))
        if growth.seconds_to_limit is not None:
            title = (f"Stub memory — v{growth.version} reaches the limit "
                     f"({growth.limit_bytes / _GIB:.1f} GiB) in {duration_text(growth.seconds_to_limit)}")
    cpu = [Line(f"v{v}", f["ts"].to_list(), _values(f, "cpu_ms_per_request", 1.0))
           for v, f in frames.items()]
    return [line_chart(memory, title=title, unit="MiB, all instances", markers=markers),
            line_chart(cpu, title="Stub CPU per request", unit="ms", markers=markers)]


def resource_notes(findings=()) -> list[str]:
    """The findings' one-line descriptions, for the model page."""
    return [describe(f) for f in findings]


def server_view(store, watch, now: float) -> dict | None:
    """The server's CPU, memory against its limit and GPUs, from Triton's nv_cpu_* / nv_gpu_*
    gauges and the cgroup; None before a scrape carried them."""
    series = store.server_resources(since=now - 300.0)
    if not series:
        return None
    latest = series[-1][1]
    limit = watch.memory_limit(now)
    used = limit.used_bytes if limit.used_bytes is not None else latest.memory_used_bytes
    return {
        "cpu": None if latest.cpu_utilization is None else f"{latest.cpu_utilization:.0%}",
        "memory": (f"{used / _GIB:.1f} GiB of {limit.limit_bytes / _GIB:.1f} GiB "
                   f"({used / limit.limit_bytes:.0%})"
                   if used is not None and limit.limit_bytes else "—"),
        "limit_source": limit.source,
        "cpu_spark": sparkline([r.cpu_utilization for _, r in series[-120:]]),
        "memory_spark": sparkline([r.memory_used_bytes for _, r in series[-120:]],
                                  colour="#9333ea"),
        "gpus": [{"uuid": g.uuid,
                  "utilization": None if g.utilization is None else f"{g.utilization:.0%}",
                  "memory": (f"{g.memory_used_bytes / _GIB:.1f} of "
                             f"{g.memory_total_bytes / _GIB:.1f} GiB")
                  if g.memory_used_bytes is not None and g.memory_total_bytes else "—"}
                 for g in latest.gpus],
    }
