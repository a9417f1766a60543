"""The sequential recommender as plain library code: a user's item history in, the top-k next items
out, with the items already in the history filtered out. model.py only converts tensors."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from python_backend.errors import InvalidRequest
from python_backend.runners import Runner, RunnerOptions, select_runner
from python_backend.topk import masked, top_k

DEFAULT_K = 10
MAX_K = 200
MAX_HISTORY = 10_000
ARTEFACT = "seqrec.npz"  # max_len, n_items and the popularity fallback, next to model.onnx


@dataclass(frozen=True)
class SeqrecRequest:
    history: np.ndarray  # int64 [L], oldest first; may be empty (cold start)
    k: int


@dataclass(frozen=True)
class SeqrecTables:
    max_len: int
    n_items: int
    popularity: np.ndarray  # float32 [n_items + 1]

    def save(self, path: Path) -> None:
        np.savez(path, max_len=self.max_len, n_items=self.n_items, popularity=self.popularity)

    @classmethod
    def load(cls, path: Path) -> "SeqrecTables":
        with np.load(path) as z:
            return cls(int(z["max_len"]), int(z["n_items"]), z["popularity"].astype(np.float32))


def pad_histories(histories: Sequence[np.ndarray], max_len: int) -> np.ndarray:
    """[n, max_len] int64: each history's most recent max_len items, right-aligned, 0-padded left."""
    out = np.zeros((len(histories), max_len), np.int64)
    for i, h in enumerate(histories):
        tail = np.asarray(h, np.int64)[-max_len:]
        if tail.size:
            out[i, max_len - tail.size:] = tail
    return out


def parse_k(k: np.ndarray | None, default: int = DEFAULT_K, limit: int = MAX_K) -> int:
    if k is None:
        return default
    flat = k.reshape(-1)
    if flat.size != 1 or flat.dtype.kind not in "iu":
        raise InvalidRequest("'k' must be one integer")
    value = int(flat[0])
    if not 1 <= value <= limit:
        raise InvalidRequest(f"'k' must be in 1..{limit}, got {value}")
    return value


def parse_history(history: np.ndarray | None, n_items: int, name: str = "history") -> np.ndarray:
    if history is None:
        raise InvalidRequest(f"input '{name}' is required (the user's item ids, oldest first)")
    if history.dtype.kind not in "iu":
        raise InvalidRequest(f"'{name}' must be an integer tensor, got {history.dtype}")
    items = history.reshape(-1).astype(np.int64, copy=False)
    if items.size > MAX_HISTORY:
        raise InvalidRequest(f"'{name}' has {items.size} items; the limit is {MAX_HISTORY}")
    if items.size and (int(items.min()) < 1 or int(items.max()) > n_items):
        bad = items[(items < 1) | (items > n_items)][:5].tolist()
        raise InvalidRequest(f"{name} item ids out of range 1..{n_items}: {bad}")
    return items


def softmax_rows(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


class SeqrecService:
    def __init__(self, version_dir: Path, options: RunnerOptions = RunnerOptions(),
                 runner: Runner | None = None):
        version_dir = Path(version_dir)
        self.tables = SeqrecTables.load(version_dir / ARTEFACT)
        self.runner = runner or select_runner(version_dir, options)
        pop = self.tables.popularity.astype(np.float64)
        self._popularity = (pop / max(pop.sum(), 1.0)).astype(np.float32)

    def parse(self, history: np.ndarray | None, k: np.ndarray | None) -> SeqrecRequest:
        return SeqrecRequest(parse_history(history, self.tables.n_items), parse_k(k))

    def recommend(self, reqs: list[SeqrecRequest]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(item ids, scores) per request, best first. Scores are P(next item) under the model
        (softmax over the catalogue); an empty history gets the popularity distribution."""
        warm = [i for i, r in enumerate(reqs) if r.history.size]
        probs: dict[int, np.ndarray] = {}
        if warm:
            padded = pad_histories([reqs[i].history for i in warm], self.tables.max_len)
            logits = self.runner.run({"history": padded})["scores"]
            probs = dict(zip(warm, softmax_rows(logits)))
        out = []
        for i, r in enumerate(reqs):
            scores = probs.get(i, self._popularity)
            exclude = np.r_[0, r.history]  # padding id and every item already seen
            out.append(top_k(masked(scores, exclude), r.k))
        return out
