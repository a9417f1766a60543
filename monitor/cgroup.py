"""The container's memory limit, read from its cgroup: the limit a leaking stub runs into before
the host's total. cgroup v2 (memory.max / memory.current) first, v1 (memory.limit_in_bytes /
memory.usage_in_bytes) as the fallback. Only file reads under an injected root, so tests use a
fake tree.

The sidecar sees its own cgroup: on one host (or with Triton in the same container) that is
Triton's; as a separate container in a pod it is not, and the limit falls back to the host's
total memory (monitor.resource_watch), unless the operator states it."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# cgroup v1 reports "no limit" as a huge page-rounded number (9223372036854771712).
_V1_UNLIMITED = 2**60


@dataclass(frozen=True)
class MemoryLimit:
    limit_bytes: float | None  # None = no limit found (not in a cgroup, or "max")
    used_bytes: float | None
    source: str  # where the numbers came from, for the evidence


NO_LIMIT = MemoryLimit(None, None, "no cgroup memory limit")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _own_paths(proc_cgroup: Path) -> tuple[str, str]:
    """(v2 path, v1 memory path) of this process from /proc/self/cgroup ("" when absent)."""
    v2 = v1 = ""
    for line in (_read(proc_cgroup) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, controllers, path = parts
        if hid == "0" and controllers == "":
            v2 = path
        elif "memory" in controllers.split(","):
            v1 = path
    return v2.strip("/"), v1.strip("/")


def read_memory_limit(root: Path = Path("/sys/fs/cgroup"),
                      proc_cgroup: Path = Path("/proc/self/cgroup")) -> MemoryLimit:
    """The nearest memory limit of this process's cgroup; NO_LIMIT when there is none."""
    v2, v1 = _own_paths(proc_cgroup)
    # Inside a container the namespace root is the container's own cgroup, so the root directory
    # is tried after the path /proc names (which may not exist in the container's view).
    for d in dict.fromkeys([root / v2, root]):
        raw = _read(d / "memory.max")
        if raw is None:
            continue
        if raw == "max":
            break  # v2 and unlimited here
        used = _read(d / "memory.current")
        return MemoryLimit(float(raw), float(used) if used else None, f"cgroup v2 {d / 'memory.max'}")
    for d in dict.fromkeys([root / "memory" / v1, root / "memory"]):
        raw = _read(d / "memory.limit_in_bytes")
        if raw is None or not raw.isdigit():
            continue
        if int(raw) >= _V1_UNLIMITED:
            break
        used = _read(d / "memory.usage_in_bytes")
        return MemoryLimit(float(raw), float(used) if used else None,
                           f"cgroup v1 {d / 'memory.limit_in_bytes'}")
    return NO_LIMIT
