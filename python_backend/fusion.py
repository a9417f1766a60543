"""How a search version ranks: the three modes a request may ask for, and the fusion of lexical and
dense scores that `hybrid` serves. Pure numpy; the build tunes the parameters on tuning queries and
publishes them with the version (fusion.json), the backend and the offline evaluation both call
`rank_scores`, so what is measured is what is served."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

FUSION = "fusion.json"
MODES = ("hybrid", "dense", "lexical")
DEFAULT_MODE = "hybrid"


class FusionFileError(ValueError):
    pass


@dataclass(frozen=True)
class FusionParams:
    """lexical = (BM25 words + trigram_weight·BM25 trigrams) / a perfect match (lexical.py); the
    hybrid's lexical part weighs trigrams by hybrid_trigram_weight (each tuned for its own mode).
    hybrid = (1 - w)·cosine + w·lexical / max lexical, with the query's lexical weight
    w = max_lexical_weight·sigmoid((max lexical - gate_threshold) / gate_scale): a query that
    matches some item almost as well as a perfect match (a title, even mistyped) is ranked mostly
    by its lexical match, one that shares a word or two with a few titles (a description) mostly
    by meaning. One fixed weight cannot do both (docs/models.md, search)."""
    trigram_weight: float
    hybrid_trigram_weight: float
    gate_threshold: float
    gate_scale: float
    max_lexical_weight: float

    def __post_init__(self):
        if min(self.trigram_weight, self.hybrid_trigram_weight) < 0.0:
            raise ValueError(f"trigram weights must be >= 0, got {self.trigram_weight}, "
                             f"{self.hybrid_trigram_weight}")
        if not self.gate_scale > 0.0:
            raise ValueError(f"gate_scale must be > 0, got {self.gate_scale}")
        if not 0.0 <= self.max_lexical_weight <= 1.0:
            raise ValueError(f"max_lexical_weight must be in [0, 1], got {self.max_lexical_weight}")

    def save(self, path: Path, **provenance) -> Path:
        Path(path).write_text(json.dumps({**asdict(self), "tuning": provenance}, indent=1,
                                         sort_keys=True, default=str))
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> "FusionParams":
        try:
            raw = json.loads(Path(path).read_text())
            return cls(**{f: float(raw[f]) for f in cls.__dataclass_fields__})
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise FusionFileError(f"{path}: not a fusion parameter file: {exc}") from exc


def lexical_weight(best_lexical: np.ndarray, params: FusionParams) -> np.ndarray:
    z = (np.asarray(best_lexical, np.float64) - params.gate_threshold) / params.gate_scale
    return params.max_lexical_weight / (1.0 + np.exp(-np.clip(z, -50, 50)))


def fuse(dense: np.ndarray, lexical: np.ndarray, params: FusionParams) -> np.ndarray:
    best = lexical.max(axis=-1, keepdims=True)
    relative = np.divide(lexical, best, out=np.zeros_like(lexical, dtype=np.float32),
                         where=best > 0)
    w = lexical_weight(best, params)
    return ((1.0 - w) * dense + w * relative).astype(np.float32)


def trigram_weight_of(mode: str, params: FusionParams) -> float:
    return params.hybrid_trigram_weight if mode == "hybrid" else params.trigram_weight


def rank_scores(mode: str, dense: np.ndarray, lexical: np.ndarray | None,
                params: FusionParams) -> np.ndarray:
    """The scores a mode ranks by ([n_items] or [queries, n_items]); `lexical` is the lexical
    score with the mode's trigram weight (`trigram_weight_of`). Lexical mode returns only
    items that share a word or trigram with the query (the others are -inf), as a lexical engine
    would; an all-miss query then answers with no items."""
    if mode == "dense":
        return dense.astype(np.float32, copy=False)
    if mode == "lexical":
        return np.where(lexical > 0, lexical, -np.inf).astype(np.float32)
    if mode == "hybrid":
        return fuse(dense, lexical, params)
    raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
