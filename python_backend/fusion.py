"""How a search version ranks: the three modes a request may ask for, and the fusion of lexical and
dense scores that `hybrid` serves. Pure numpy; the build tunes the parameters on tuning queries and
publishes them with the version (fusion.json), the backend and the offline evaluation both call
`rank_scores`, so what is measured is what is served.

Hybrid first decides what kind of query it has, from cheap features of the query and of both
methods' scores, then ranks with the blend that suits that kind:

- attribute ("comedy from 1995"): the query holds a year, some item contains most of its words and
  none matches it like a title → word coverage, dense similarity breaking ties among the items that
  hold the same words;
- title (a title, even mistyped or partial): the best lexical match is strong, or the title trigrams
  match where whole words do not (a typo), and dense is not confident → BM25 relative to the best
  match, plus a little coverage and dense;
- meaning (a description): anything else → dense similarity alone.

One blend for all kinds cannot work: the lexical score that finds a mistyped title is noise for a
description, and BM25 lets one rare word of a year + genre phrase outweigh the two that matter
(docs/models.md, search)."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

FUSION = "fusion.json"
MODES = ("hybrid", "dense", "lexical")
DEFAULT_MODE = "hybrid"
KINDS = ("title", "attribute", "meaning")
# a query that matches some item this well (relative to a perfect match) is a title, year or not
TITLE_LIKE = 0.6


class FusionFileError(ValueError):
    pass


class Lexical(Protocol):
    """lexical.LexicalScores (one query) or search_eval.LexicalMatrices (a [queries, items] set,
    which also has `rows(indices)`)."""
    words: np.ndarray
    trigrams: np.ndarray
    coverage: np.ndarray
    has_year: object  # bool, or bool [queries]

    def combined(self, trigram_weight: float) -> np.ndarray: ...


@dataclass(frozen=True)
class FusionParams:
    """trigram_weight: BM25 trigrams against words in lexical mode; everything else is hybrid's.
    title kind: (1 - title_dense_weight)·lexical/best lexical + title_coverage_weight·coverage +
    title_dense_weight·cosine, lexical weighing trigrams by hybrid_trigram_weight. attribute kind:
    coverage + attribute_dense_weight·cosine, for a query with a year whose best coverage is at
    least attribute_min_coverage. The title gate: best lexical + gate_typo_weight·(trigram share
    − word share of the best matches, when positive) − gate_dense_weight·best cosine ≥
    gate_threshold."""
    trigram_weight: float
    hybrid_trigram_weight: float
    title_dense_weight: float
    title_coverage_weight: float
    attribute_dense_weight: float
    attribute_min_coverage: float
    gate_threshold: float
    gate_typo_weight: float
    gate_dense_weight: float

    def __post_init__(self):
        for name in ("trigram_weight", "hybrid_trigram_weight", "title_coverage_weight",
                     "attribute_dense_weight", "gate_typo_weight", "gate_dense_weight"):
            if not getattr(self, name) >= 0.0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("title_dense_weight", "attribute_min_coverage"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")

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


@dataclass(frozen=True)
class QueryFeatures:
    """Per query ([queries]): what the gate looks at."""
    best_lexical: np.ndarray   # best BM25 (words + hybrid trigram weight) relative to a perfect match
    typo_signal: np.ndarray    # best trigram share − best word share, floored at 0
    best_coverage: np.ndarray  # the largest share of the query's words one item holds
    best_cosine: np.ndarray
    has_year: np.ndarray       # bool


def _best_share(field: np.ndarray, perfect: np.ndarray) -> np.ndarray:
    best = field.max(axis=-1)
    return np.divide(best, perfect, out=np.zeros_like(best, dtype=np.float64), where=perfect > 0)


def features(dense: np.ndarray, lexical: Lexical, hybrid_trigram_weight: float) -> QueryFeatures:
    dense = np.atleast_2d(dense)
    words, trigrams = np.atleast_2d(lexical.words), np.atleast_2d(lexical.trigrams)
    words_max = np.atleast_1d(np.asarray(lexical.words_max, np.float64))
    trigrams_max = np.atleast_1d(np.asarray(lexical.trigrams_max, np.float64))
    typo = np.maximum(_best_share(trigrams, trigrams_max) - _best_share(words, words_max), 0.0)
    return QueryFeatures(np.atleast_2d(lexical.combined(hybrid_trigram_weight)).max(axis=-1),
                         typo, np.atleast_2d(lexical.coverage).max(axis=-1), dense.max(axis=-1),
                         np.atleast_1d(np.asarray(lexical.has_year, bool)))


def route(f: QueryFeatures, params: FusionParams) -> np.ndarray:
    """Index into KINDS per query."""
    attribute = f.has_year & (f.best_coverage >= params.attribute_min_coverage) & \
        (f.best_lexical < TITLE_LIKE)
    gate = (f.best_lexical + params.gate_typo_weight * f.typo_signal
            - params.gate_dense_weight * f.best_cosine)
    title = gate >= params.gate_threshold
    return np.where(attribute, 1, np.where(title, 0, 2))


def kind_scores(kind: str, dense: np.ndarray, lexical: Lexical, params: FusionParams,
                combined: np.ndarray | None = None) -> np.ndarray:
    """What a query of `kind` is ranked by ([queries, items] or [items])."""
    if kind == "meaning":
        return dense.astype(np.float32, copy=False)
    if kind == "attribute":
        return (lexical.coverage + params.attribute_dense_weight * dense).astype(np.float32)
    if kind == "title":
        lex = lexical.combined(params.hybrid_trigram_weight) if combined is None else combined
        best = lex.max(axis=-1, keepdims=True)
        relative = np.divide(lex, best, out=np.zeros_like(lex, dtype=np.float32), where=best > 0)
        a = params.title_dense_weight
        return ((1.0 - a) * relative + params.title_coverage_weight * lexical.coverage
                + a * dense).astype(np.float32)
    raise ValueError(f"unknown query kind {kind!r}")


def fuse(dense: np.ndarray, lexical: Lexical, params: FusionParams) -> np.ndarray:
    combined = lexical.combined(params.hybrid_trigram_weight)
    kinds = route(features(dense, lexical, params.hybrid_trigram_weight), params)
    if dense.ndim == 1:
        return kind_scores(KINDS[int(kinds[0])], dense, lexical, params, combined)
    out = np.empty(dense.shape, np.float32)
    for k, kind in enumerate(KINDS):
        rows = np.flatnonzero(kinds == k)
        if rows.size:
            out[rows] = kind_scores(kind, dense[rows], lexical.rows(rows), params,
                                    combined[rows])
    return out


def rank_scores(mode: str, dense: np.ndarray, lexical: Lexical | None,
                params: FusionParams) -> np.ndarray:
    """The scores a mode ranks by ([n_items] or [queries, n_items]). Lexical mode returns only
    items that share a word or trigram with the query (the others are -inf), as a lexical engine
    would; an all-miss query then answers with no items."""
    if mode == "dense":
        return dense.astype(np.float32, copy=False)
    if mode == "lexical":
        lex = lexical.combined(params.trigram_weight)
        return np.where(lex > 0, lex, -np.inf).astype(np.float32)
    if mode == "hybrid":
        return fuse(dense, lexical, params)
    raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
