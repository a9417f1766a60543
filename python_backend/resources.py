"""What one stub process costs: its resident memory and the CPU seconds it has used. Triton's own
metrics are per server (nv_cpu_*); only the stub can say which version holds the memory.

Read at metric-flush time (every FLUSH_INTERVAL_S), never per request: one read of
/proc/self/statm and one process_time() call, a few microseconds (docs/benchmarks.md)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class ProcessUsage:
    rss_bytes: int
    cpu_seconds: float  # user + system since the process started


def read_process_usage(statm: Path = Path("/proc/self/statm"),
                       cpu: Callable[[], float] = time.process_time) -> ProcessUsage:
    """RSS from statm's second field (resident pages); CPU (user + system, all threads) from
    process_time, which has nanosecond resolution (os.times counts 10 ms clock ticks: at ~0.1 core
    that is +-15 % per one-second sample)."""
    fields = statm.read_text().split()
    return ProcessUsage(rss_bytes=int(fields[1]) * _PAGE, cpu_seconds=cpu())
