"""perf_analyzer from the tritonclient==2.51.0 wheel (the PyPI perf-analyzer needs a newer glibc),
fetched once into .sentinel/bench/, run against the Sentinel target as a cross-check of the Python
load generator: a C++ client, and Triton's server-side time breakdown."""
from __future__ import annotations

import csv
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from sentinel.bench.results import PerfAnalyzerCell

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".sentinel" / "bench" / "perf_analyzer-2.51.0"
WHEEL = "tritonclient==2.51.0"
MEMBER = "tritonclient-2.51.0.data/data/bin/perf_analyzer"
# perf_analyzer links these by soname; the Triton wheel ships them under hashed names.
LIBS = {"libb64.so.0d": "libb64-", "libcudart.so.12": "libcudart-"}


class PerfAnalyzerError(RuntimeError):
    pass


def ensure_perf_analyzer(cache: Path = CACHE) -> tuple[Path, Path]:
    """(binary, lib dir), downloading the wheel once with pip."""
    binary, libdir = cache / "perf_analyzer", cache / "lib"
    if not binary.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                                "--disable-pip-version-check", "-d", tmp, WHEEL],
                               check=True, capture_output=True, text=True, timeout=300)
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
                raise PerfAnalyzerError(f"pip download {WHEEL} failed: "
                                        f"{getattr(exc, 'stderr', '')!s:.500}") from exc
            wheel = next(Path(tmp).glob("tritonclient-2.51.0-*.whl"))
            with zipfile.ZipFile(wheel) as z:
                partial = binary.with_suffix(".part")
                partial.write_bytes(z.read(MEMBER))
                partial.chmod(0o755)
                partial.replace(binary)
    libdir.mkdir(exist_ok=True)
    from sentinel.triton_install import locate
    shipped = Path(locate().library_path.split(os.pathsep)[0])  # nvidia_pytriton.libs
    for soname, prefix in LIBS.items():
        link = libdir / soname
        if link.is_symlink() or link.exists():
            continue
        matches = sorted(shipped.glob(f"{prefix}*"))
        if not matches:
            raise PerfAnalyzerError(f"no {prefix}* in {shipped}: is nvidia-pytriton installed?")
        link.symlink_to(matches[0])
    return binary, libdir


def run_perf_analyzer(grpc_url: str, data_file: Path, candidates: int, concurrency: int,
                      window_ms: int, model: str = "ranker", timeout_s: float = 120) -> PerfAnalyzerCell:
    binary, libdir = ensure_perf_analyzer()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "pa.csv"
        cmd = [str(binary), "-m", model, "-u", grpc_url, "-i", "grpc", "--input-data", str(data_file),
               "--concurrency-range", str(concurrency), "--measurement-interval", str(window_ms),
               # a shared 2-core machine rarely gives three windows within 10 %: accept 3 tries
               "--max-trials", "3", "-s", "50", "-f", str(out)]
        env = {**os.environ, "LD_LIBRARY_PATH": str(libdir)}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout_s)
        if not out.exists():
            raise PerfAnalyzerError(f"perf_analyzer exited {proc.returncode}: "
                                    f"{(proc.stdout + proc.stderr)[-1500:]}")
        rows = list(csv.DictReader(out.read_text().splitlines()))
    if not rows:
        raise PerfAnalyzerError("perf_analyzer wrote no measurement")
    row = rows[-1]
    rps = float(row["Inferences/Second"])
    compute = sum(float(row[k]) for k in ("Server Compute Input", "Server Compute Infer",
                                          "Server Compute Output"))
    return PerfAnalyzerCell(candidates=candidates, concurrency=concurrency, rps=rps,
                            ips=rps * candidates, p50_ms=float(row["p50 latency"]) / 1e3,
                            p99_ms=float(row["p99 latency"]) / 1e3,
                            queue_us=float(row["Server Queue"]), compute_us=compute)
