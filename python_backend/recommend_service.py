"""The recommend pipeline as plain library code: candidates with P(next item) (the sequential
recommender, seen items already removed) → business filters that need no score (genre) → P(like)
(the ranker: P(rating >= 4)) → the floor on P(like) (min_score) → top-k by
P(next) × P(like), the chance that the user watches the item next *and* likes it. (Ordering by
P(like) alone keeps liked-but-unlikely items and measured 0.07 next-item Recall@10 against 0.17 for
the product; docs/models.md.) The two model calls are injected: in Triton they are BLS requests to
the served models, in tests and at build time they are the services in-process."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from python_backend.errors import InvalidRequest, UpstreamError
from python_backend.search_service import parse_text
from python_backend.seqrec_service import parse_history, parse_k
from python_backend.topk import top_k

# (history, n) → up to n candidate item ids and their P(next item), best first, none in the history
Candidates = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]
# (user, items, timestamp or None) → one score per item, P(rating >= 4)
Rank = Callable[[int, np.ndarray, int | None], np.ndarray]
CATALOGUE = "catalogue.npz"


@dataclass(frozen=True)
class Catalogue:
    n_users: int
    item_genres: np.ndarray   # bool [n_items + 1, n_genres]
    genres: tuple[str, ...]

    @property
    def n_items(self) -> int:
        return self.item_genres.shape[0] - 1

    def save(self, path: Path) -> None:
        np.savez(path, n_users=self.n_users, item_genres=self.item_genres,
                 genres=np.array(self.genres))

    @classmethod
    def load(cls, path: Path) -> "Catalogue":
        with np.load(path) as z:
            return cls(int(z["n_users"]), z["item_genres"].astype(bool),
                       tuple(str(g) for g in z["genres"]))


@dataclass(frozen=True)
class RecommendRequest:
    user: int
    history: np.ndarray
    k: int
    timestamp: int | None
    min_score: float
    genre: int | None  # column of Catalogue.item_genres


def parse_request(c: Catalogue, user_id, history, k, timestamp, min_score, genre) -> RecommendRequest:
    if user_id is None:
        raise InvalidRequest("input 'user_id' is required")
    flat = user_id.reshape(-1)
    if flat.size != 1 or flat.dtype.kind not in "iu":
        raise InvalidRequest("'user_id' must be one integer")
    user = int(flat[0])
    if not 1 <= user <= c.n_users:
        raise InvalidRequest(f"user_id {user} is out of range 1..{c.n_users}")
    ts = None
    if timestamp is not None:
        t = timestamp.reshape(-1)
        if t.size != 1 or t.dtype.kind not in "iu" or int(t[0]) < 0:
            raise InvalidRequest("'timestamp' must be one integer >= 0 (unix seconds)")
        ts = int(t[0])
    floor = 0.0
    if min_score is not None:
        m = min_score.reshape(-1)
        if m.size != 1 or not np.isfinite(m[0]) or not 0.0 <= float(m[0]) <= 1.0:
            raise InvalidRequest("'min_score' must be one number in [0, 1]")
        floor = float(m[0])
    column = None
    if genre is not None:
        name = parse_text(genre, "genre")
        lookup = {g.lower(): i for i, g in enumerate(c.genres)}
        if name.lower() not in lookup:
            raise InvalidRequest(f"unknown genre {name!r}; known: {', '.join(c.genres)}")
        column = lookup[name.lower()]
    return RecommendRequest(user, parse_history(history, c.n_items), parse_k(k), ts, floor, column)


@dataclass(frozen=True)
class Recommendation:
    items: np.ndarray   # int64 [n <= k], best first
    scores: np.ndarray  # float32: P(next) × P(like), the ranking score
    like: np.ndarray    # float32: P(like) from the ranker


def select(items: np.ndarray, p_next: np.ndarray, like: np.ndarray, k: int,
           min_like: float) -> Recommendation:
    """Pure: drop items whose P(like) is below the floor (or NaN), then the k best by
    P(next) × P(like), best first."""
    score = (p_next * like).astype(np.float32)
    keep = np.isfinite(score) & np.isfinite(like) & (like >= min_like)
    idx, best = top_k(np.where(keep, score, -np.inf).astype(np.float32), k)
    return Recommendation(items[idx], best, like[idx].astype(np.float32))


EMPTY = Recommendation(np.empty(0, np.int64), np.empty(0, np.float32), np.empty(0, np.float32))


class RecommendService:
    def __init__(self, catalogue: Catalogue, candidates: Candidates, rank: Rank,
                 n_candidates: int = 100):
        self.catalogue = catalogue
        self._candidates = candidates
        self._rank = rank
        self.n_candidates = n_candidates

    @classmethod
    def from_version(cls, version_dir: Path, candidates: Candidates, rank: Rank,
                     n_candidates: int = 100) -> "RecommendService":
        return cls(Catalogue.load(Path(version_dir) / CATALOGUE), candidates, rank, n_candidates)

    def parse(self, user_id, history, k=None, timestamp=None, min_score=None, genre=None
              ) -> RecommendRequest:
        return parse_request(self.catalogue, user_id, history, k, timestamp, min_score, genre)

    def recommend(self, req: RecommendRequest) -> Recommendation:
        """Fewer than k items when the filters leave fewer."""
        items, p_next = self._candidates(req.history, self.n_candidates)
        items = np.asarray(items, np.int64).reshape(-1)
        p_next = np.asarray(p_next, np.float32).reshape(-1)
        keep = np.ones(items.shape, bool)
        if req.genre is not None:
            keep &= self.catalogue.item_genres[items, req.genre]
        if req.history.size:  # the candidate model already excludes them; a filter is cheap
            keep &= ~np.isin(items, req.history)
        items, p_next = items[keep], p_next[keep]
        if items.size == 0:
            return EMPTY
        like = np.asarray(self._rank(req.user, items, req.timestamp), np.float32).reshape(-1)
        if like.shape != items.shape:
            raise UpstreamError(f"ranker returned {like.size} scores for {items.size} items")
        return select(items, p_next, like, req.k, req.min_score)
