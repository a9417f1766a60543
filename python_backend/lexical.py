"""Lexical retrieval with SQLite FTS5 (the standard library's sqlite3; no extra package): BM25 over
the words of an item's text, plus BM25 over its character trigrams so that a mistyped title still
shares most of its trigrams with the right item. The index is built once at build time into one
SQLite file that is published with the version. Loading reads FTS5's own tokens from it into one
term → item matrix per field holding each term's part of FTS5's bm25(), so a request adds a few
rows in numpy instead of running SQL (a few FTS5 queries cost a request ~1 ms; the rows ~0.1 ms),
with FTS5's scores to the last bit (`Fts5Scores`, the reference, is tested against it).

Scores are normalised per query by what a perfect match would score (the sum of the query terms'
IDF), so that a strong title match reads near 1 and a description that only shares a word or two
with some title reads low: min-max normalisation would make every query's best match 1, and the
fusion could no longer tell a confident lexical hit from noise.

Besides BM25, each item gets its word coverage: the share of the query's distinct words it contains.
BM25 lets one rare word outweigh two common ones ("comedy from 1995" ranks "From Dusk Till Dawn"
first), coverage counts them alike, which is what an attribute query (a year and a genre) needs."""
from __future__ import annotations

import math
import re
import sqlite3
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

LEXICAL_INDEX = "lexical.sqlite3"
# FTS5's bm25() defaults; the normaliser below assumes the same k1 and b.
K1, B = 1.2, 0.75
_TABLES = ("words", "trigrams")
_YEAR = re.compile(r"(18|19|20)[0-9][0-9]")


def normalise(text: str) -> str:
    """Lower case, accents removed, anything but letters and digits a single space."""
    folded = unicodedata.normalize("NFKD", text)
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch)).lower()
    return " ".join(re.findall(r"[a-z0-9]+", folded))


def words(text: str) -> list[str]:
    return sorted(set(normalise(text).split()))


def trigrams(text: str) -> list[str]:
    """Distinct character trigrams of the normalised text with a space at both ends, so word
    starts and ends are trigrams of their own (' to', 'toy', 'oy ', 'y s', ...)."""
    t = f" {normalise(text)} "
    return sorted({t[i:i + 3] for i in range(len(t) - 2)}) if len(t) > 3 else []


def build_index(path: Path, item_ids: np.ndarray, title_texts: Sequence[str],
                full_texts: Sequence[str]) -> Path:
    """One SQLite file: `words` (unicode61 tokens of the full text: title, year, genres) and
    `trigrams` (trigram tokenizer over the title), both keyed by item id."""
    path = Path(path)
    path.unlink(missing_ok=True)
    con = sqlite3.connect(path)
    try:
        con.execute("CREATE VIRTUAL TABLE words USING fts5(body, tokenize='unicode61')")
        con.execute("CREATE VIRTUAL TABLE trigrams USING fts5(body, tokenize='trigram')")
        ids = [int(i) for i in item_ids]
        con.executemany("INSERT INTO words(rowid, body) VALUES (?, ?)",
                        zip(ids, (normalise(t) for t in full_texts)))
        con.executemany("INSERT INTO trigrams(rowid, body) VALUES (?, ?)",
                        zip(ids, (f" {normalise(t)} " for t in title_texts)))
        for table in _TABLES:
            con.execute(f"INSERT INTO {table}({table}) VALUES ('optimize')")
        con.commit()
    finally:
        con.close()
    return path


@dataclass(frozen=True)
class LexicalScores:
    """Per-field BM25 of one query over the catalogue (0 where an item does not match) and what a
    perfect match would score in each field."""
    words: np.ndarray     # float32 [n_items]
    trigrams: np.ndarray  # float32 [n_items]
    words_max: float
    trigrams_max: float
    coverage: np.ndarray  # float32 [n_items]: share of the query's distinct words in the item
    has_year: bool        # the query holds a 4-digit year (1800-2099)

    def combined(self, trigram_weight: float) -> np.ndarray:
        """(words + w·trigrams) / (perfect words + w·perfect trigrams), in [0, ~1]."""
        den = self.words_max + trigram_weight * self.trigrams_max
        if den <= 0:
            return np.zeros_like(self.words)
        return ((self.words + trigram_weight * self.trigrams) / den).astype(np.float32)


@dataclass(frozen=True)
class Bm25Field:
    """One FTS5 table as a term → item matrix (CSR layout: `indptr`, `indices`, `parts`) of each
    term's part of FTS5's bm25(): idf · tf·(k1 + 1) / (tf + k1·(1 − b + b·|D| / avgdl)). BM25 is a
    sum over the query's terms, so a query's score is a sum of rows: no SQL per request."""
    rows: dict[str, int]   # term → row
    idf: np.ndarray        # float64 [terms]
    indptr: np.ndarray     # int64 [terms + 1]
    indices: np.ndarray    # int64 [nnz]: item positions, ascending within a row
    parts: np.ndarray      # float64 [nnz]
    unseen_idf: float      # IDF of a term that no item holds (it counts in the perfect match)

    def perfect(self, terms: Sequence[str]) -> float:
        """What an item holding every term once would score: the sum of the terms' IDF."""
        idf = self.idf
        return float(sum(idf[self.rows[t]] if t in self.rows else self.unseen_idf for t in terms))

    def row(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        r = self.rows.get(term)
        if r is None:
            return _NO_ITEMS, _NO_PARTS
        lo, hi = self.indptr[r], self.indptr[r + 1]
        return self.indices[lo:hi], self.parts[lo:hi]

    def sum_rows(self, terms: Sequence[str], n_items: int) -> np.ndarray:
        """float64 [n_items]: the terms' rows added in the order given, as FTS5 adds its phrases
        (bincount adds its weights in input order), so the sums are FTS5's to the last bit."""
        picked = [self.row(t) for t in terms]
        if not picked:
            return np.zeros(n_items)
        return np.bincount(np.concatenate([i for i, _ in picked]),
                           np.concatenate([p for _, p in picked]), minlength=n_items)


_NO_ITEMS, _NO_PARTS = np.empty(0, np.int64), np.empty(0, np.float64)


def read_field(con: sqlite3.Connection, table: str, position: dict[int, int]) -> Bm25Field:
    """The matrix of an FTS5 table from its own tokens (fts5vocab 'instance': one row per token),
    with FTS5's row count, document lengths, IDF and constants."""
    n = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    con.execute(f"CREATE VIRTUAL TABLE temp.{table}_instances USING fts5vocab(main, {table}, "
                "'instance')")
    try:
        terms, docs = [], []
        for term, doc in con.execute(f"SELECT term, doc FROM temp.{table}_instances"):
            terms.append(term)
            docs.append(position[doc])
    finally:
        con.execute(f"DROP TABLE temp.{table}_instances")
    vocab, term_idx = np.unique(np.asarray(terms, dtype=object), return_inverse=True)
    doc_idx = np.asarray(docs, np.int64)
    length = np.bincount(doc_idx, minlength=len(position)).astype(np.float64)  # tokens per item
    avgdl = float(length.sum()) / float(max(n, 1))
    # (term, item) pairs with their term frequency, sorted by term then item: the CSR layout
    pair, tf = np.unique(term_idx.astype(np.int64) * len(position) + doc_idx, return_counts=True)
    term_of, item_of = np.divmod(pair, len(position))
    df = np.bincount(term_of, minlength=len(vocab))
    idf = np.array([_idf(int(d), n) for d in df], np.float64)  # math.log, as FTS5's C log()
    tf = tf.astype(np.float64)
    # the operations and their order of FTS5's fts5Bm25Function, so each part is bit-identical
    parts = idf[term_of] * ((tf * (K1 + 1.0)) / (tf + K1 * ((1 - B) + B * length[item_of] / avgdl)))
    indptr = np.zeros(len(vocab) + 1, np.int64)
    np.cumsum(np.bincount(term_of, minlength=len(vocab)), out=indptr[1:])
    return Bm25Field({str(t): r for r, t in enumerate(vocab)}, idf, indptr, item_of, parts,
                     _idf(0, n))


class LexicalIndex:
    """The published index, read once into two term → item matrices (one per field); scoring a
    query adds rows in numpy. SQLite is only read here, at load."""

    def __init__(self, path: Path, item_ids: np.ndarray):
        self.item_ids = np.asarray(item_ids, np.int64)
        position = {int(i): p for p, i in enumerate(self.item_ids)}
        con = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
        try:
            for table in _TABLES:
                held = [r for r, in con.execute(f"SELECT rowid FROM {table}")]
                if len(held) != len(self.item_ids):
                    raise ValueError(f"{path}: the lexical index holds {len(held)} items, the "
                                     f"catalogue {len(self.item_ids)}")
                foreign = sorted(set(held) - position.keys())
                if foreign:
                    raise ValueError(f"{path}: the lexical index holds items that are not in the "
                                     f"catalogue: {foreign[:5]}")
            self.words, self.trigrams = (read_field(con, t, position) for t in _TABLES)
        finally:
            con.close()

    def scores(self, query: str) -> LexicalScores:
        n = len(self.item_ids)
        terms = words(query)
        # words one at a time, in float32, as they were added up when each was an FTS5 query of
        # its own: the published quality numbers were measured that way; it also gives coverage
        w = np.zeros(n, np.float32)
        coverage = np.zeros(n, np.float32)
        w_max = 0.0
        for term in terms:
            items, parts = self.words.row(term)
            w[items] += parts.astype(np.float32)
            coverage[items] += 1.0
            w_max += self.words.perfect([term])
        if terms:
            coverage /= len(terms)
        grams = trigrams(query)
        t = self.trigrams.sum_rows(grams, n).astype(np.float32)
        return LexicalScores(w, t, w_max, self.trigrams.perfect(grams), coverage, has_year(query))


class Fts5Scores:
    """The same scores from FTS5's bm25() over SQL (one query per word, one OR query of the
    trigrams): how serving scored before the matrices; kept as the reference they are tested
    against."""

    def __init__(self, path: Path, item_ids: np.ndarray):
        self.con = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
        self.item_ids = np.asarray(item_ids, np.int64)
        self._position = {int(i): p for p, i in enumerate(self.item_ids)}
        n = self.con.execute("SELECT count(*) FROM words").fetchone()[0]
        self._idf = {t: self._doc_frequencies(t, n) for t in _TABLES}
        self._unseen_idf = _idf(0, n)

    def _doc_frequencies(self, table: str, n: int) -> dict[str, float]:
        self.con.execute(f"CREATE VIRTUAL TABLE temp.{table}_vocab USING fts5vocab(main, "
                         f"{table}, 'row')")
        return {term: _idf(df, n) for term, df in
                self.con.execute(f"SELECT term, doc FROM temp.{table}_vocab")}

    def field(self, table: str, terms: list[str]) -> tuple[np.ndarray, float]:
        out = np.zeros(len(self.item_ids), np.float32)
        if not terms:
            return out, 0.0
        idf = self._idf[table]
        best = float(sum(idf.get(t, self._unseen_idf) for t in terms))
        query = " OR ".join(f'"{t}"' for t in terms)  # terms are [a-z0-9 ]: nothing to escape
        for rowid, score in self.con.execute(
                f"SELECT rowid, bm25({table}) FROM {table} WHERE {table} MATCH ?", (query,)):
            out[self._position[rowid]] = -score  # FTS5's bm25() is negated: lower is better
        return out, best

    def scores(self, query: str) -> LexicalScores:
        terms = words(query)
        w = np.zeros(len(self.item_ids), np.float32)
        coverage = np.zeros(len(self.item_ids), np.float32)
        w_max = 0.0
        for term in terms:
            part, best = self.field("words", [term])
            w += part
            w_max += best
            coverage += part > 0
        if terms:
            coverage /= len(terms)
        t, t_max = self.field("trigrams", trigrams(query))
        return LexicalScores(w, t, w_max, t_max, coverage, has_year(query))

    def close(self) -> None:
        self.con.close()


def has_year(text: str) -> bool:
    return any(_YEAR.fullmatch(w) for w in normalise(text).split())


def _idf(df: int, n: int) -> float:
    # FTS5's IDF, including its floor for terms in more than half of the rows
    return max(math.log((n - df + 0.5) / (df + 0.5)), 1e-6)
