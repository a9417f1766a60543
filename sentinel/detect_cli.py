"""`sentinel detect FILE` and `sentinel bench detect`: argument parsing and printing only."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from monitor.detect import SIGNAL_PRESETS, DetectorConfig, detect_series
_MISSING = {"", "nan", "na", "null", "none"}


class SeriesFileError(ValueError):
    """The input file is missing or has no usable numeric column."""


# ------------------------------------------------------------------------ detect


def configure_detect_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", type=Path,
                   help="CSV with one numeric column (optional header) or NAB timestamp,value")
    p.add_argument("--format", choices=("csv", "json"), default="json",
                   help="json: {\"change_points\": [...], ...}; csv: one index per line")
    p.add_argument("--signal", choices=sorted(SIGNAL_PRESETS), default=None,
                   help="online detector preset (default: generic DetectorConfig())")
    p.add_argument("--mode", choices=("online", "offline"), default="online",
                   help="online: what the sidecar does, each sample judged on the past only; "
                        "offline: retrospective segmentation of the whole series (ruptures PELT, "
                        "penalty from the series length)")
    p.add_argument("--column", default=None,
                   help="the column to read when the file has several numeric columns "
                        "(header name or 1-based number)")
    p.add_argument("--false-alarms-per-day", type=float, default=None,
                   help="online: the stated false-alarm rate the level is derived from")


def detect_main(args: argparse.Namespace) -> int:
    try:
        values = read_series_csv(Path(args.file), column=args.column)
    except SeriesFileError as exc:
        print(f"sentinel detect: {exc}", file=sys.stderr)
        return 2
    if args.mode == "offline":
        try:
            indices = segment_offline(values)
        except OfflineUnavailable as exc:
            print(f"sentinel detect: {exc}", file=sys.stderr)
            return 2
        out = {"mode": "offline", "samples": int(values.size), "change_points": indices,
               "method": OFFLINE_METHOD}
    else:
        config = SIGNAL_PRESETS[args.signal] if args.signal else DetectorConfig()
        if args.false_alarms_per_day is not None:
            try:
                config = dataclasses.replace(config, false_alarms_per_day=args.false_alarms_per_day)
            except ValueError as exc:
                print(f"sentinel detect: {exc}", file=sys.stderr)
                return 2
        indices = [cp.index for cp in detect_series(values, config)]
        out = {"mode": "online", "samples": int(values.size), "change_points": indices,
               "alpha": config.effective_alpha, "calibration": config.calibration_source}
        present = int(np.isfinite(values).sum())
        if present < config.warmup + config.persistence:
            print(f"sentinel detect: {present} usable samples; the online detector needs "
                  f"{config.warmup + config.persistence} before its first test (try --mode "
                  "offline)", file=sys.stderr)
    if args.format == "csv":
        sys.stdout.write("".join(f"{i}\n" for i in indices))
    else:
        print(json.dumps(out))
    return 0


class OfflineUnavailable(RuntimeError):
    """The offline mode's change-point library is not installed."""


# PELT with the l2 cost, through ruptures' C implementation (KernelCPD with a linear kernel is
# the same cost; ruptures.Pelt in pure Python took minutes on 10,000 points).
OFFLINE_METHOD = ("ruptures.KernelCPD(kernel='linear', min_size=2) (PELT, l2 cost), "
                  "penalty 2 log(n) sigma^2, sigma from the MAD of first differences")


def segment_offline(values: np.ndarray) -> list[int]:
    """First index of each new segment (ruptures' breakpoints without the series end). Missing
    values are dropped for the fit and the indices mapped back."""
    try:
        import ruptures
    except ImportError:
        raise OfflineUnavailable("--mode offline needs the ruptures package "
                                 "(pip install ruptures)") from None
    present = np.flatnonzero(np.isfinite(values))
    y = values[present]
    if y.size < 4:
        return []
    # sigma from first differences, robust to the steps themselves (MAD / 0.6745, / sqrt 2).
    sigma = float(np.median(np.abs(np.diff(y) - np.median(np.diff(y))))) / 0.6745 / math.sqrt(2)
    sigma = sigma if sigma > 0 else float(np.std(y)) or 1.0
    penalty = 2.0 * math.log(y.size) * sigma * sigma
    breaks = ruptures.KernelCPD(kernel="linear", min_size=2).fit(y).predict(pen=penalty)
    return [int(present[b]) for b in breaks[:-1]]


def read_series_csv(path: Path, column: str | None = None) -> np.ndarray:
    if not path.exists():
        raise SeriesFileError(f"no such file: {path}")
    if not path.is_file():
        raise SeriesFileError(f"not a file: {path}")
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SeriesFileError(f"cannot read {path}: {exc}") from exc
    return parse_series_rows(rows, source=str(path), column=column)


def parse_series_rows(
    rows: Sequence[Sequence[str]], source: str = "input", column: str | None = None
) -> np.ndarray:
    """The one numeric column (or the column headed 'value') as floats; missing cells are NaN."""
    if not rows:
        raise SeriesFileError(f"{source}: empty file")
    header = list(rows[0]) if _is_header(rows[0]) else None
    data = rows[1:] if header is not None else rows
    first_line = 2 if header is not None else 1
    column = _choose_column(header, data, source, column)
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


_TIME_COLUMNS = {"timestamp", "time", "ts", "date", "datetime", "index", "t"}


def _choose_column(
    header: list[str] | None, data: Sequence[Sequence[str]], source: str, wanted: str | None = None
) -> int:
    width = max((len(row) for row in data), default=0)
    names = list(header) if header else [f"column {k + 1}" for k in range(width)]
    if wanted is not None:
        return _wanted_column(wanted, names, data, source)
    if header is not None:
        named = [k for k, name in enumerate(header) if name.strip().lower() == "value"]
        if named:
            return named[0]
    if width == 1:
        return 0
    numeric = [k for k in range(width) if _column_is_numeric(data, k)]
    if header is not None:  # a numeric time axis (epoch seconds) is not a series
        numeric = [k for k in numeric if header[k].strip().lower() not in _TIME_COLUMNS] or numeric
    if len(numeric) == 1:
        return numeric[0]
    if not numeric:
        raise SeriesFileError(f"{source}: no numeric column (columns: {', '.join(names)})")
    chosen = ", ".join(names[k] for k in numeric)
    raise SeriesFileError(
        f"{source}: {len(numeric)} numeric columns ({chosen}); the detector is univariate and "
        "does not detect jointly: choose one with --column NAME (or its 1-based number), or run "
        "once per column")


def _wanted_column(wanted: str, names: list[str], data: Sequence[Sequence[str]], source: str) -> int:
    lowered = [n.strip().lower() for n in names]
    if wanted.strip().lower() in lowered:
        k = lowered.index(wanted.strip().lower())
    elif wanted.isdigit() and 1 <= int(wanted) <= len(names):
        k = int(wanted) - 1
    else:
        raise SeriesFileError(f"{source}: no column {wanted!r} (columns: {', '.join(names)})")
    if not _column_is_numeric(data, k):
        raise SeriesFileError(f"{source}: column {names[k]!r} is not numeric")
    return k


def _column_is_numeric(data: Sequence[Sequence[str]], k: int) -> bool:
    cells = [row[k].strip() for row in data if k < len(row)]
    present = [c for c in cells if c.lower() not in _MISSING]
    return bool(present) and all(_is_number(c) for c in present)


# ------------------------------------------------------------------- bench detect
# The bench lives with the other benchmarks (sentinel.bench.detect); `sentinel bench detect`
# reaches it through these two names.


def configure_bench_detect_parser(p: argparse.ArgumentParser) -> None:
    from sentinel.bench.detect import configure_parser

    configure_parser(p)


def bench_detect_main(args: argparse.Namespace) -> int:
    from sentinel.bench.detect import main

    return main(args)
