"""Search as plain library code: a query string (and a mode) in; the query's 384-d L2-normalised
MiniLM embedding and the top-k catalogue items out, ranked by cosine similarity (`dense`), by BM25
over words and character trigrams (`lexical`) or by their tuned fusion (`hybrid`, the default).
Tokenisation happens here, with the tokenizer files published in the version directory, so build and
serving tokenise with the same files and code; the lexical index and the fusion parameters come
from the version directory too."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from python_backend.fusion import DEFAULT_MODE, FUSION, MODES, FusionParams, rank_scores
from python_backend.lexical import LEXICAL_INDEX, LexicalIndex, LexicalScores
from python_backend.errors import InvalidRequest
from python_backend.runners import Runner, RunnerOptions, select_runner
from python_backend.seqrec_service import parse_k
from python_backend.tokeniser import Tokeniser
from python_backend.topk import top_k

# sentence-transformers' all-MiniLM-L6-v2 truncates at 256 tokens (its sentence_bert_config.json);
# the same limit keeps served embeddings equal to the reference pipeline's.
MAX_TOKENS = 256
MAX_QUERY_BYTES = 2048
# Serving reads tokenizer.json alone (tokeniser.py): the package's other tokenizer files are not
# published.
TOKENIZER_FILES = ("tokenizer.json",)
ITEMS = "items.npz"  # item ids + their embeddings, computed by the build with the published encoder


@dataclass(frozen=True)
class SearchRequest:
    query: str
    k: int
    mode: str = DEFAULT_MODE


def load_tokenizer(directory: Path) -> Tokeniser:
    return Tokeniser(Path(directory))


def tokenise(tokenizer: Tokeniser, texts: Sequence[str],
             max_tokens: int = MAX_TOKENS) -> dict[str, np.ndarray]:
    """The encoder's ONNX inputs for a batch of texts, padded to the longest."""
    return tokenizer(texts, max_tokens)


def encode(runner_run, tokenizer, texts: Sequence[str], batch: int = 64) -> np.ndarray:
    """[n, dim] embeddings for many texts in batches (sorted by length, so padding stays short)."""
    order = np.argsort([len(t) for t in texts], kind="stable")
    out: list[np.ndarray] = [None] * len(texts)  # type: ignore[list-item]
    for start in range(0, len(texts), batch):
        idx = order[start:start + batch]
        emb = runner_run(tokenise(tokenizer, [texts[i] for i in idx]))["embedding"]
        for i, e in zip(idx, emb):
            out[i] = e
    return np.stack(out).astype(np.float32)


def parse_text(tensor: np.ndarray | None, name: str = "query") -> str:
    """One non-empty UTF-8 string from a BYTES tensor of one element."""
    if tensor is None:
        raise InvalidRequest(f"input '{name}' is required (one UTF-8 string)")
    flat = tensor.reshape(-1)
    if flat.size != 1:
        raise InvalidRequest(f"'{name}' must hold exactly one string, got {flat.size}")
    raw = flat[0]
    if isinstance(raw, str):
        raw = raw.encode()
    if not isinstance(raw, (bytes, np.bytes_)):
        raise InvalidRequest(f"'{name}' must be a string (BYTES), got {type(raw).__name__}")
    if len(raw) > MAX_QUERY_BYTES:
        raise InvalidRequest(f"'{name}' has {len(raw)} bytes; the limit is {MAX_QUERY_BYTES}")
    try:
        text = bytes(raw).decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"'{name}' is not valid UTF-8: {exc.reason} at byte {exc.start}") from exc
    if not text:
        raise InvalidRequest(f"'{name}' is empty")
    return text


def parse_mode(tensor: np.ndarray | None) -> str:
    if tensor is None:
        return DEFAULT_MODE
    mode = parse_text(tensor, "mode").lower()
    if mode not in MODES:
        raise InvalidRequest(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    return mode


@dataclass(frozen=True)
class SearchResult:
    embedding: np.ndarray  # float32 [dim]
    items: np.ndarray      # int64 [<= k]
    scores: np.ndarray     # float32 [<= k]: cosine (dense), lexical, or fused (hybrid)


class SearchService:
    def __init__(self, version_dir: Path, options: RunnerOptions = RunnerOptions(),
                 runner: Runner | None = None, tokenizer=None):
        version_dir = Path(version_dir)
        self.tokenizer = tokenizer or load_tokenizer(version_dir)
        self.runner = runner or select_runner(version_dir, options)
        with np.load(version_dir / ITEMS) as z:
            self.item_ids = z["item_ids"].astype(np.int64)
            self.item_embeddings = np.ascontiguousarray(z["embeddings"], dtype=np.float32)
        self.lexical = LexicalIndex(version_dir / LEXICAL_INDEX, self.item_ids)
        self.fusion = FusionParams.load(version_dir / FUSION)

    def parse(self, query: np.ndarray | None, k: np.ndarray | None,
              mode: np.ndarray | None = None) -> SearchRequest:
        return SearchRequest(parse_text(query, "query"), parse_k(k), parse_mode(mode))

    def embed(self, queries: Sequence[str]) -> np.ndarray:
        return self.runner.run(tokenise(self.tokenizer, queries))["embedding"]

    def lexical_scores(self, query: str) -> LexicalScores:
        return self.lexical.scores(query)

    def search(self, reqs: list[SearchRequest]) -> list[SearchResult]:
        """All queries of a dynamic batch in one encoder run; every mode returns the embedding."""
        emb = self.embed([r.query for r in reqs])
        sims = emb @ self.item_embeddings.T
        out = []
        for e, s, r in zip(emb, sims, reqs):
            lexical = self.lexical_scores(r.query) if r.mode != "dense" else None
            ranked = rank_scores(r.mode, s, lexical, self.fusion)
            idx, scores = top_k(ranked, r.k)
            out.append(SearchResult(e.astype(np.float32), self.item_ids[idx], scores))
        return out
