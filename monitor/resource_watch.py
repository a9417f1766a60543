"""The shell around monitor.resource: pick each model's series out of the store, find the memory
limit (cgroup, else Triton's view of the host), and hand typed findings to the decision. Reads the
store and a few cgroup files; the cgroup is read at most every `limit_every_s`, since the judge
runs under the poller's lock."""
from __future__ import annotations

import time
from typing import Callable

from monitor.cgroup import MemoryLimit, read_memory_limit
from monitor.resource import (CpuComparison, MemoryGrowth, ResourceConfig, ServerPressure,
                              cpu_per_request, memory_growth, server_pressure)
from monitor.store import SeriesStore

Finding = MemoryGrowth | CpuComparison | ServerPressure


class ResourceWatch:
    def __init__(self, store: SeriesStore, config: ResourceConfig = ResourceConfig(),
                 limits: Callable[[], MemoryLimit] = read_memory_limit,
                 limit_every_s: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.store, self.config = store, config
        self._limits, self._every, self._clock = limits, limit_every_s, clock
        self._cached: tuple[float, MemoryLimit] | None = None
        self.last: dict[str, tuple[Finding, ...]] = {}  # per model, for the pages

    def cgroup(self) -> MemoryLimit:
        now = self._clock()
        if self._cached is None or now - self._cached[0] >= self._every:
            self._cached = (now, self._limits())
        return self._cached[1]

    def memory_limit(self, now: float) -> MemoryLimit:
        """The limit memory runs into first: the cgroup's when it is lower than the host's total
        (Triton's nv_cpu_memory_total_bytes), each with its own measure of memory in use."""
        cg = self.cgroup()
        host = self._latest_server(now)
        options = []
        if cg.limit_bytes is not None:
            options.append(cg)
        if host is not None and host.memory_total_bytes:
            options.append(MemoryLimit(host.memory_total_bytes, host.memory_used_bytes,
                                       "host total (nv_cpu_memory_total_bytes)"))
        return min(options, key=lambda m: m.limit_bytes) if options else cg

    def findings(self, model: str, served: str | None, baseline_version: str | None,
                 now: float) -> tuple[Finding, ...]:
        if served is None:
            return ()
        c = self.config
        out: list[Finding] = []
        frame = self.store.signals(model, served, since=now - max(c.memory_window_s, c.cpu_window_s))
        limit = self.memory_limit(now)
        growth = memory_growth(frame["ts"].to_numpy(), frame["memory_bytes"].to_numpy(),
                               model=model, version=served, limit_bytes=limit.limit_bytes,
                               used_bytes=limit.used_bytes, limit_source=limit.source, config=c)
        if growth is not None:
            out.append(growth)
        if baseline_version is not None and baseline_version != served:
            recent = frame.filter(frame["ts"] >= now - c.cpu_window_s)
            base = self.store.signals(model, baseline_version, since=now - c.baseline_window_s)
            cpu = cpu_per_request(recent["cpu_ms_per_request"].to_numpy(),
                                  recent["request_rate"].to_numpy(),
                                  base["cpu_ms_per_request"].to_numpy(),
                                  base["request_rate"].to_numpy(), model=model, version=served,
                                  baseline_version=baseline_version, config=c)
            if cpu is not None:
                out.append(cpu)
        pressure = self.pressure(now, limit)
        if pressure is not None:
            out.append(pressure)
        self.last[model] = tuple(out)
        return tuple(out)

    def pressure(self, now: float, limit: MemoryLimit | None = None) -> ServerPressure | None:
        limit = limit or self.memory_limit(now)
        series = self.store.server_resources(since=now - 120.0)
        if limit.source.startswith("cgroup"):
            # The cgroup's usage is one reading, not a series: judge it as it is now.
            used = [limit.used_bytes] * self.config.pressure_samples \
                if limit.used_bytes is not None else []
            ts = [now] * len(used)
        else:
            ts = [t for t, r in series if r.memory_used_bytes is not None]
            used = [r.memory_used_bytes for _, r in series if r.memory_used_bytes is not None]
        cpu = series[-1][1].cpu_utilization if series else None
        return server_pressure(ts, used, limit_bytes=limit.limit_bytes, limit_source=limit.source,
                               cpu_utilization=cpu, config=self.config)

    def _latest_server(self, now: float):
        series = self.store.server_resources(since=now - 60.0)
        return series[-1][1] if series else None
