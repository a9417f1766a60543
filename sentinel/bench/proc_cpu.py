"""CPU seconds per process from /proc/<pid>/stat: parse a line, take two snapshots, and divide the
difference by the requests served in between. Pure except `snapshot`, which only reads /proc."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

PROC = Path("/proc")
STUB_COMM = "triton_python_b"  # comm is cut to 15 characters: triton_python_backend_stub


class ProcStatError(ValueError):
    pass


@dataclass(frozen=True)
class ProcStat:
    pid: int
    comm: str
    ppid: int
    utime: int        # user-mode CPU of the whole process (all its threads), in clock ticks
    stime: int        # kernel-mode CPU (syscalls: sockets, futexes, semaphores, page faults)
    starttime: int    # tells a reused pid from the process it replaced

    @property
    def ticks(self) -> int:
        return self.utime + self.stime


def parse_stat(line: str) -> ProcStat:
    """One /proc/<pid>/stat line. comm is in parentheses and may itself hold spaces and ')', so
    the fields after it are counted from the last ')'."""
    head, sep, tail = line.rpartition(")")
    pid_text, _, comm = head.partition(" (")
    fields = tail.split()
    if not sep or len(fields) < 20 or not pid_text.strip().isdigit():
        raise ProcStatError(f"not a /proc/<pid>/stat line: {line[:80]!r}")
    # fields[0] is field 3 (state): utime is field 14, stime 15, starttime 22 (proc(5))
    return ProcStat(pid=int(pid_text), comm=comm, ppid=int(fields[1]),
                    utime=int(fields[11]), stime=int(fields[12]), starttime=int(fields[19]))


def cpu_seconds(before: Mapping[int, ProcStat], after: Mapping[int, ProcStat], pids: Iterable[int],
                clk_tck: int, kernel_only: bool = False) -> float:
    """CPU seconds (or only kernel-mode seconds) the processes `pids` used between two snapshots;
    a process missing from either snapshot, or restarted under the same pid, raises (its CPU
    would be lost silently)."""
    total = 0
    for pid in pids:
        a, b = before.get(pid), after.get(pid)
        if a is None or b is None or a.starttime != b.starttime:
            raise ProcStatError(f"process {pid} did not live through the whole window")
        total += (b.stime - a.stime) if kernel_only else (b.ticks - a.ticks)
    return total / clk_tck


def stub_pids(stats: Mapping[int, ProcStat], server_pid: int) -> list[int]:
    """The Python backend's stub processes: children of tritonserver named like the stub."""
    return sorted(p.pid for p in stats.values() if p.ppid == server_pid and p.comm == STUB_COMM)


def per_request_us(seconds: float, requests: int) -> float:
    return seconds / requests * 1e6 if requests else float("nan")


def snapshot(pids: Iterable[int] | None = None, proc: Path = PROC) -> dict[int, ProcStat]:
    """pid -> ProcStat for `pids` (default: every process); one that exits meanwhile is left out."""
    if pids is None:
        pids = (int(p) for p in os.listdir(proc) if p.isdigit())
    out = {}
    for pid in pids:
        try:
            out[pid] = parse_stat((proc / str(pid) / "stat").read_text())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


def clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")
