"""The machine and package versions a benchmark ran with."""
from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import socket
from dataclasses import replace
from pathlib import Path

from sentinel.bench.results import Machine

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


# A 1-minute load average above this (per core) before a run means other work shares the cores:
# the timings would measure the neighbours. 0.5 per core leaves room for a shell and an editor.
MAX_LOAD_PER_CORE = 0.5


def busy_reason(load_1min: float, cores: int, max_load: float | None = None) -> str | None:
    """Why the machine is too busy to benchmark on, or None when it is quiet enough."""
    limit = max_load if max_load is not None else MAX_LOAD_PER_CORE * max(cores, 1)
    if load_1min <= limit:
        return None
    return (f"the 1-minute load average is {load_1min:.2f} (limit {limit:.2f} on {cores} cores): "
            f"other work shares the cores and would be measured too")


def writes_docs(output: os.PathLike | str, docs_dir: Path) -> bool:
    """True when `output` lies in the project's docs/ (a scratch file may be written anytime)."""
    try:
        Path(output).resolve().relative_to(docs_dir.resolve())
    except ValueError:
        return False
    return True


def refuse_when_busy(output: os.PathLike | str, docs_dir: Path, force: bool,
                     max_load: float | None = None, load_1min: float | None = None,
                     cores: int | None = None) -> str | None:
    """The message to refuse with before a run that would write the docs on a busy machine."""
    if force or not writes_docs(output, docs_dir):
        return None
    load = os.getloadavg()[0] if load_1min is None else load_1min
    why = busy_reason(load, cores if cores is not None else (os.cpu_count() or 1), max_load)
    if why is None:
        return None
    return (f"not writing {output}: {why}. Wait for a quiet machine, pass --output FILE to "
            f"write elsewhere, or --force to write the docs anyway")
