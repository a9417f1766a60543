"""py-spy's raw output (collapsed stacks, root first, one `frames count` per line) into shares of
the stub's samples by what the code is doing. Pure: the source lines a frame points at come in
through `source`, so tests give them as literals."""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Iterable, NamedTuple, Sequence

ORT = "ONNX Runtime"
METRICS = "metrics (python_backend/metrics.py)"
PB_UTILS = "pb_utils / IPC"
STUB_NATIVE = "stub C++ (no Python frame)"
PARSE = "adapter: parse + validate"
ENCODE = "adapter: encode features"
RESPOND = "adapter: batch + respond"
OTHER = "other"
CATEGORIES = (ORT, METRICS, PB_UTILS, STUB_NATIVE, PARSE, ENCODE, RESPOND, OTHER)

# The adapter's files (model.py sits in the published version directory) and which of their
# functions are parsing / encoding; every other function of theirs batches, runs and responds.
ADAPTER_FILES = ("/model.py", "python_backend/adapter.py", "python_backend/ranker_service.py",
                 "python_backend/ranker_features.py", "python_backend/runners.py",
                 "python_backend/faults.py")
METRICS_FILES = ("python_backend/metrics.py", "python_backend/resources.py")
PARSE_FUNCTIONS = frozenset({"read_inputs", "_parse", "parse", "parse_request", "admit",
                             "before_request"})
ENCODE_FUNCTIONS = frozenset({"encode_requests", "encode_rows", "time_context", "user_cat",
                              "item_cat", "item_dense"})
# pb_utils is a pybind11 module compiled into the stub: py-spy shows no frame of its own, so a
# sample inside it has as innermost frame the adapter's line that calls it.
PB_UTILS_CALL = re.compile(r"pb_utils\.|\.as_numpy\(|\.inputs\(\)|\.requested_output_names\(")
PB_UTILS_FILES = ("triton_python_backend_utils", "c_python_backend_utils")

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


class Frame(NamedTuple):
    function: str
    file: str
    line: int = 0


@dataclass(frozen=True)
class Shares:
    """Samples by category, summed over the stubs and the runs of one cell."""
    samples: tuple[tuple[str, int], ...]

    @property
    def total(self) -> int:
        return sum(n for _, n in self.samples)

    def share(self, category: str) -> float:
        total = self.total
        return dict(self.samples).get(category, 0) / total if total else float("nan")


def parse_raw(text: str) -> list[tuple[tuple[Frame, ...], int]]:
    """(stack root→leaf, count) per line of `py-spy record --format raw`; an active thread with
    no Python frame is the empty stack (a line holding only its count)."""
    out = []
    for line in text.splitlines():
        if not line.strip():
            continue
        stack_text, _, count = line.rstrip().rpartition(" ")
        frames = []
        for part in stack_text.split(";") if stack_text.strip() else ():
            m = _FRAME.match(part.strip())
            frames.append(Frame(m["function"], m["file"], int(m["line"] or 0)) if m
                          else Frame(part.strip(), ""))
        out.append((tuple(frames), int(count)))
    return out


def _is(frame: Frame, suffixes: Sequence[str]) -> bool:
    return frame.file.endswith(tuple(suffixes))


def categorise(stack: Sequence[Frame], source: Callable[[str, int], str] = lambda f, n: "") -> str:
    """The category of one sample. ONNX Runtime and metrics anywhere on the stack win (their
    helpers, numpy or pb_utils calls, are their cost); otherwise the innermost frame decides:
    a line calling pb_utils, or the adapter function it lies in."""
    if not stack:
        return STUB_NATIVE
    if any("onnxruntime" in f.file for f in stack):
        return ORT
    if any(_is(f, METRICS_FILES) for f in stack):
        return METRICS
    for frame in reversed(stack):  # leaf first
        if any(name in frame.file for name in PB_UTILS_FILES):
            return PB_UTILS
        if _is(frame, ADAPTER_FILES):
            if frame is stack[-1] and PB_UTILS_CALL.search(source(frame.file, frame.line)):
                return PB_UTILS
            if frame.function in PARSE_FUNCTIONS:
                return PARSE
            if frame.function in ENCODE_FUNCTIONS:
                return ENCODE
            # a comprehension or lambda inside the adapter: look at the function around it
            if frame.function.startswith("<") and frame.function != "<lambda>":
                continue
            return RESPOND
    return OTHER


def tally(stacks: Iterable[tuple[Sequence[Frame], int]],
          source: Callable[[str, int], str] = lambda f, n: "") -> Shares:
    counts: Counter[str] = Counter()
    for stack, n in stacks:
        counts[categorise(stack, source)] += n
    return Shares(tuple((c, counts[c]) for c in CATEGORIES))


def file_lines(cache: dict | None = None) -> Callable[[str, int], str]:
    """source(file, line) over files on disk (the I/O edge; tests pass their own)."""
    cache = {} if cache is None else cache

    def source(path: str, line: int) -> str:
        if path not in cache:
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    cache[path] = f.read().splitlines()
            except OSError:
                cache[path] = []
        lines = cache[path]
        return lines[line - 1] if 0 < line <= len(lines) else ""
    return source
