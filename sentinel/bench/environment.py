"""The machine and package versions a benchmark ran with."""
from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import socket
from dataclasses import replace

from sentinel.bench.records import Machine

PACKAGES = ("onnxruntime", "numpy", "tritonclient", "nvidia-pytriton", "flask", "gunicorn",
            "grpcio", "polars", "prometheus_client")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        return float("nan")


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            fields = dict(line.rstrip().split("=", 1) for line in f if "=" in line)
        return fields.get("PRETTY_NAME", "").strip('"') or platform.platform()
    except OSError:
        return platform.platform()


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def describe_machine(packages: tuple[str, ...] = PACKAGES) -> Machine:
    return Machine(
        date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        host=socket.gethostname(), cpu=_cpu_model(), cores=os.cpu_count() or 0,
        memory_gib=round(_memory_gib(), 1), os=_os_name(),
        python=platform.python_version(),
        packages=tuple((p, _version(p)) for p in packages),
        load_before=tuple(round(x, 2) for x in os.getloadavg()))


def finished(machine: Machine) -> Machine:
    """The same record with the load average at the end (other work that shared the cores)."""
    return replace(machine, load_after=tuple(round(x, 2) for x in os.getloadavg()))
