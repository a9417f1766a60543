"""`sentinel detect FILE` and `sentinel bench detect`: argument parsing and printing only."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import statsmodels

from monitor.detect import SIGNAL_PRESETS, DetectorConfig, detect_series
from monitor.detect_eval import (
    CostProfile,
    DetectionSummary,
    NabError,
    SeriesScore,
    SyntheticResult,
    evaluate_nab,
    evaluate_synthetic,
    load_cost_profile,
    load_nab,
    summarize,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_BEGIN = "<!-- bench-detect:begin -->"
BENCH_END = "<!-- bench-detect:end -->"
_MISSING = {"", "nan", "na", "null", "none"}


class SeriesFileError(ValueError):
    """The input file is missing or has no usable numeric column."""


# ------------------------------------------------------------------------ detect


def configure_detect_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", type=Path,
                   help="CSV with one numeric column (optional header) or NAB timestamp,value")
    p.add_argument("--format", choices=("csv", "json"), default="json",
                   help="json: {\"change_points\": [...]}; csv: one index per line")
    p.add_argument("--signal", choices=sorted(SIGNAL_PRESETS), default=None,
                   help="detector preset (default: generic DetectorConfig())")


def detect_main(args: argparse.Namespace) -> int:
    try:
        values = read_series_csv(Path(args.file))
    except SeriesFileError as exc:
        print(f"sentinel detect: {exc}", file=sys.stderr)
        return 2
    config = SIGNAL_PRESETS[args.signal] if args.signal else DetectorConfig()
    indices = [cp.index for cp in detect_series(values, config)]
    if args.format == "csv":
        sys.stdout.write("".join(f"{i}\n" for i in indices))
    else:
        print(json.dumps({"change_points": indices}))
    return 0


def read_series_csv(path: Path) -> np.ndarray:
    if not path.exists():
        raise SeriesFileError(f"no such file: {path}")
    if not path.is_file():
        raise SeriesFileError(f"not a file: {path}")
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SeriesFileError(f"cannot read {path}: {exc}") from exc
    return parse_series_rows(rows, source=str(path))


def parse_series_rows(rows: Sequence[Sequence[str]], source: str = "input") -> np.ndarray:
    """The one numeric column (or the column headed 'value') as floats; missing cells are NaN."""
    if not rows:
        raise SeriesFileError(f"{source}: empty file")
    header = list(rows[0]) if _is_header(rows[0]) else None
    data = rows[1:] if header is not None else rows
    first_line = 2 if header is not None else 1
    column = _choose_column(header, data, source)
    values = np.full(len(data), math.nan)
    for k, row in enumerate(data):
        cell = row[column].strip() if column < len(row) else ""
        if cell.lower() in _MISSING:
            continue
        try:
            values[k] = float(cell)
        except ValueError:
            raise SeriesFileError(
                f"{source}, line {first_line + k}: {cell!r} is not a number"
            ) from None
    return values


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _is_header(row: Sequence[str]) -> bool:
    cells = [c.strip() for c in row]
    return any(c.lower() not in _MISSING for c in cells) and not any(_is_number(c) for c in cells)


def _choose_column(header: list[str] | None, data: Sequence[Sequence[str]], source: str) -> int:
    if header is not None:
        named = [k for k, name in enumerate(header) if name.strip().lower() == "value"]
        if named:
            return named[0]
    width = max((len(row) for row in data), default=0)
    if width == 1:
        return 0
    numeric = [k for k in range(width) if _column_is_numeric(data, k)]
    names = header or [f"column {k + 1}" for k in range(width)]
    if len(numeric) == 1:
        return numeric[0]
    if not numeric:
        raise SeriesFileError(f"{source}: no numeric column (columns: {', '.join(names)})")
    chosen = ", ".join(names[k] for k in numeric)
    raise SeriesFileError(f"{source}: {len(numeric)} numeric columns ({chosen}); expected one")


def _column_is_numeric(data: Sequence[Sequence[str]], k: int) -> bool:
    cells = [row[k].strip() for row in data if k < len(row)]
    present = [c for c in cells if c.lower() not in _MISSING]
    return bool(present) and all(_is_number(c) for c in present)


# ------------------------------------------------------------------- bench detect


def default_nab_dir(environ: Mapping[str, str] = os.environ) -> Path:
    configured = environ.get("SENTINEL_NAB_DIR")
    return Path(configured) if configured else REPO_ROOT.parent / "shared" / "data" / "nab"


def configure_bench_detect_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nab-dir", type=Path, default=default_nab_dir(),
                   help="NAB checkout with data/, labels/ (default: $SENTINEL_NAB_DIR or "
                        "../shared/data/nab next to the repository)")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "detector.md",
                   help="markdown file to write the results into")
    p.add_argument("--seeds", type=int, default=20, help="seeded traces per synthetic case")
    p.add_argument("--nab-series", action="append", default=None, metavar="GLOB",
                   help="only NAB series matching this glob on 'category/name.csv' (repeatable)")
    p.add_argument("--day-samples", type=int, default=86_400,
                   help="length of a clean trace (1 sample = 1 s; default one day)")


def bench_detect_main(args: argparse.Namespace) -> int:
    if args.seeds < 1 or args.day_samples < 1000:
        print("sentinel bench detect: --seeds must be >= 1 and --day-samples >= 1000",
              file=sys.stderr)
        return 2
    started = time.perf_counter()
    synthetic = evaluate_synthetic(range(args.seeds), day_samples=args.day_samples)
    nab_lines = _nab_section(Path(args.nab_dir), args.nab_series or ["*"])
    elapsed = time.perf_counter() - started
    report = "\n".join(
        _header(args, elapsed) + _synthetic_section(synthetic) + nab_lines + _presets_section()
    )
    print(report)
    _write_report(Path(args.out), report)
    print(f"\nwritten to {args.out}", file=sys.stderr)
    return 0


def _header(args: argparse.Namespace, elapsed: float) -> list[str]:
    command = f"sentinel bench detect --seeds {args.seeds} --day-samples {args.day_samples}"
    command += "".join(f" --nab-series '{g}'" for g in args.nab_series or [])
    return [
        "## Measured results",
        "",
        f"- command: `{command}` (monitor.detect_cli.bench_detect_main)",
        f"- date: {dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, numpy {np.__version__}, "
        f"statsmodels {statsmodels.__version__}",
        f"- wall time of the whole bench: {elapsed:.1f} s",
        "",
    ]


def _fmt(x: float, digits: int = 1) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _synthetic_section(results: Sequence[SyntheticResult]) -> list[str]:
    lines = [
        "### Synthetic traces (1 sample = 1 s)",
        "",
        "Fault traces: one hour, fault from a seeded onset in the second quarter; a hit is the "
        "first detection within 300 s of the onset; its false alarms are the other detections "
        "(before the onset, or again after re-baselining on the faulty level). Clean and steady "
        "traces: one simulated day each; every detection is a false alarm.",
        "",
        "| case | signal (preset) | what | seeds detected | median delay (s) | max delay (s) "
        "| false alarms | false alarms / day | µs / update |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        clean = r.case.startswith(("clean", "steady"))
        detected = "n/a" if clean else f"{r.detected}/{r.seeds}"
        lines.append(
            f"| {r.case} | {r.signal} | {r.description} | {detected} | {_fmt(r.median_delay, 0)} "
            f"| {_fmt(r.max_delay, 0)} | {r.false_alarms} | {_fmt(r.false_alarms_per_day, 2)} "
            f"| {_fmt(1e6 * r.seconds / r.samples, 2)} |"
        )
    # Ablation and broken-config rows run the OLS fit far more often than a preset would.
    timed = [r for r in results if "ablation" not in r.case and "broken" not in r.case]
    samples = sum(r.samples for r in timed)
    seconds = sum(r.seconds for r in timed)
    lines += ["", f"CPU: {1e6 * seconds / samples:.2f} µs per update on average over the "
              f"{samples:,} updates of the preset rows (one core; the OLS step test runs only "
              "after the cheap stages pass).", ""]
    return lines


NAB_CONFIGS: tuple[tuple[str, DetectorConfig], ...] = (
    ("DetectorConfig() (default)", DetectorConfig()),
    ("default + trend", dataclasses.replace(DetectorConfig(), trend=True)),
    ("default, min_effect_rel=0.1", dataclasses.replace(DetectorConfig(), min_effect_rel=0.1)),
)


def _nab_section(nab_dir: Path, patterns: Sequence[str]) -> list[str]:
    lines = ["### NAB (labelled real and artificial series)", ""]
    if not (nab_dir / "labels" / "combined_windows.json").is_file():
        return lines + [f"NAB not found at `{nab_dir}` (set --nab-dir or $SENTINEL_NAB_DIR); "
                        "NAB part skipped.", ""]
    try:
        series = load_nab(nab_dir, patterns)
        profile = load_cost_profile(nab_dir, "standard")
    except NabError as exc:
        return lines + [f"NAB at `{nab_dir}` unusable: {exc}; NAB part skipped.", ""]
    lines += [
        f"{len(series)} series from `{nab_dir}` (patterns: {', '.join(patterns)}). A detection "
        "(scored at `detected_at`) inside a labelled window hits it, the first one only; one "
        "outside every window is a false positive. NAB score: NAB's standard profile applied to "
        "binary detections (0 = detects nothing, 100 = perfect), see the notes above.",
        "",
        "| config | series | samples | windows | hits | FP | precision | recall | F1 "
        "| median delay (samples) | FP / 1000 samples | NAB standard |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    per_category: list[tuple[str, DetectionSummary]] = []
    for name, config in NAB_CONFIGS:
        summary, scores = evaluate_nab(series, config, profile)
        lines.append(_nab_row(name, summary))
        if config == DetectorConfig():
            per_category = _by_category(scores, profile)
    lines += ["", "Default config by NAB category:", "",
              "| category | series | samples | windows | hits | FP | precision | recall | F1 "
              "| median delay (samples) | FP / 1000 samples | NAB standard |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [_nab_row(category, summary) for category, summary in per_category]
    return lines + [""]


def _by_category(
    scores: Sequence[SeriesScore], profile: CostProfile
) -> list[tuple[str, DetectionSummary]]:
    categories = sorted({s.name.split("/")[0] for s in scores})
    return [
        (c, summarize([s for s in scores if s.name.split("/")[0] == c], profile))
        for c in categories
    ]


def _nab_row(name: str, s: DetectionSummary) -> str:
    return (
        f"| {name} | {s.series} | {s.samples:,} | {s.windows} | {s.hits} | {s.false_positives} "
        f"| {_fmt(s.precision, 2)} | {_fmt(s.recall, 2)} | {_fmt(s.f1, 2)} "
        f"| {_fmt(s.median_delay, 0)} | {_fmt(s.fp_per_1000, 2)} | {_fmt(s.nab_score, 1)} |"
    )


def _presets_section() -> list[str]:
    names = [f.name for f in dataclasses.fields(DetectorConfig)]
    lines = ["### Presets as measured", "", "| preset | " + " | ".join(names) + " |",
             "|---|" + "---|" * len(names)]
    for key, config in [("(default)", DetectorConfig()), *SIGNAL_PRESETS.items()]:
        lines.append(f"| {key} | " + " | ".join(str(getattr(config, n)) for n in names) + " |")
    return lines + [""]


def _write_report(out: Path, report: str) -> None:
    """Replace the marked block in an existing document, so hand-written prose survives."""
    block = f"{BENCH_BEGIN}\n{report}\n{BENCH_END}\n"
    text = out.read_text(encoding="utf-8") if out.is_file() else ""
    if BENCH_BEGIN in text and BENCH_END in text:
        head, rest = text.split(BENCH_BEGIN, 1)
        tail = rest.split(BENCH_END, 1)[1].lstrip("\n")
        text = head + block + tail
    else:
        text = (text.rstrip("\n") + "\n\n" if text else "# Detector\n\n") + block
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
