"""Lexical retrieval with SQLite FTS5 (the standard library's sqlite3; no extra package): BM25 over
the words of an item's text, plus BM25 over its character trigrams so that a mistyped title still
shares most of its trigrams with the right item. The index is built once at build time into one
SQLite file that is published with the version; serving copies it into memory.

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


class LexicalIndex:
    """The published index, read into an in-memory database (one per model instance)."""

    def __init__(self, path: Path, item_ids: np.ndarray):
        disk = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True)
        # check_same_thread=False: Triton may call execute() from another thread than
        # initialize(); one instance never runs two batches at once.
        self.con = sqlite3.connect(":memory:", check_same_thread=False)
        try:
            disk.backup(self.con)
        finally:
            disk.close()
        self.item_ids = np.asarray(item_ids, np.int64)
        self._position = {int(i): p for p, i in enumerate(self.item_ids)}
        n = self.con.execute("SELECT count(*) FROM words").fetchone()[0]
        if n != len(self.item_ids):
            raise ValueError(f"{path}: the lexical index holds {n} items, the catalogue "
                             f"{len(self.item_ids)}")
        self._idf = {t: self._doc_frequencies(t, n) for t in _TABLES}
        self._unseen_idf = _idf(0, n)

    def _doc_frequencies(self, table: str, n: int) -> dict[str, float]:
        self.con.execute(f"CREATE VIRTUAL TABLE temp.{table}_vocab USING fts5vocab(main, "
                         f"{table}, 'row')")
        return {term: _idf(df, n) for term, df in
                self.con.execute(f"SELECT term, doc FROM temp.{table}_vocab")}

    def _field(self, table: str, terms: list[str]) -> tuple[np.ndarray, float]:
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
        # one FTS5 query per word: BM25 is a sum over terms, so the parts add up to the OR query's
        # score (checked in the tests) and also say which items hold which word
        terms = words(query)
        w = np.zeros(len(self.item_ids), np.float32)
        coverage = np.zeros(len(self.item_ids), np.float32)
        w_max = 0.0
        for term in terms:
            part, best = self._field("words", [term])
            w += part
            w_max += best
            coverage += part > 0
        if terms:
            coverage /= len(terms)
        t, t_max = self._field("trigrams", trigrams(query))
        return LexicalScores(w, t, w_max, t_max, coverage, has_year(query))

    def close(self) -> None:
        self.con.close()


def has_year(text: str) -> bool:
    return any(_YEAR.fullmatch(w) for w in normalise(text).split())


def _idf(df: int, n: int) -> float:
    # FTS5's IDF, including its floor for terms in more than half of the rows
    return max(math.log((n - df + 0.5) / (df + 0.5)), 1e-6)
