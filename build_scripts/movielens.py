"""MovieLens-100k, read from the installed `recbole` package (never a copy in git)."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

GENRES = (
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War",
    "Western", "unknown",
)
AGE_BUCKETS = (18, 25, 35, 45, 50, 56)  # the MovieLens-1M age groups, applied to ml-100k's raw ages
YEAR_BUCKETS = (1950, 1970, 1980, 1990, 1995, 1997)


class DataMissingError(RuntimeError):
    """The MovieLens files are not installed where we expect them."""


@dataclass(frozen=True)
class Ratings:
    user: np.ndarray       # int64, 1-based MovieLens ids
    item: np.ndarray       # int64, 1-based
    rating: np.ndarray     # float32
    timestamp: np.ndarray  # int64 unix seconds

    def __len__(self) -> int:
        return len(self.user)

    def take(self, idx: np.ndarray) -> "Ratings":
        return Ratings(self.user[idx], self.item[idx], self.rating[idx], self.timestamp[idx])


@dataclass(frozen=True)
class Catalogue:
    """Dense per-id feature tables; row 0 is the 'unknown id' row."""
    n_users: int                 # largest user id (table size is n_users + 1)
    n_items: int
    user_age: np.ndarray         # int64 bucket index, 0 = unknown
    user_gender: np.ndarray      # int64 0 unknown, 1 M, 2 F
    user_occupation: np.ndarray  # int64 0 unknown, 1.. occupations
    item_year: np.ndarray        # int64 bucket index, 0 = unknown
    item_genres: np.ndarray      # float32 [n_items + 1, len(GENRES)] multi-hot
    item_title: tuple[str, ...]  # index = item id, "" for 0
    occupations: tuple[str, ...]


@dataclass(frozen=True)
class Split:
    train: Ratings
    valid: Ratings
    test: Ratings
    valid_start: int  # timestamps at which the later parts begin
    test_start: int


def dataset_dir() -> Path:
    spec = importlib.util.find_spec("recbole")
    if spec is None or spec.origin is None:
        raise DataMissingError(
            "MovieLens-100k comes from the 'recbole' package: run `make setup` "
            "(or `pip install --no-deps recbole==1.2.1`)"
        )
    path = Path(spec.origin).parent / "dataset_example" / "ml-100k"
    if not (path / "ml-100k.inter").is_file():
        raise DataMissingError(f"{path}/ml-100k.inter not found in the installed recbole package")
    return path


def _rows(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", errors="replace") as fh:
        next(fh)  # recbole's typed header, e.g. "user_id:token"
        return [line.rstrip("\n").split("\t") for line in fh if line.strip()]


@lru_cache(maxsize=2)
def load_ratings(root: Path | None = None) -> Ratings:
    rows = _rows((root or dataset_dir()) / "ml-100k.inter")
    arr = np.array(rows, dtype=np.float64)
    order = np.argsort(arr[:, 3], kind="stable")  # time order makes every later split honest
    arr = arr[order]
    return Ratings(arr[:, 0].astype(np.int64), arr[:, 1].astype(np.int64),
                   arr[:, 2].astype(np.float32), arr[:, 3].astype(np.int64))


def _bucket(value: int, edges: tuple[int, ...]) -> int:
    return 1 + int(np.searchsorted(np.asarray(edges), value, side="right"))


@lru_cache(maxsize=2)
def load_catalogue(root: Path | None = None) -> Catalogue:
    root = root or dataset_dir()
    users = _rows(root / "ml-100k.user")
    items = _rows(root / "ml-100k.item")
    n_users = max(int(u[0]) for u in users)
    n_items = max(int(i[0]) for i in items)
    occupations = tuple(sorted({u[3] for u in users}))
    age = np.zeros(n_users + 1, np.int64)
    gender = np.zeros(n_users + 1, np.int64)
    occ = np.zeros(n_users + 1, np.int64)
    for uid, a, g, o, *_ in users:
        u = int(uid)
        age[u] = _bucket(int(a), AGE_BUCKETS)
        gender[u] = 1 if g == "M" else 2
        occ[u] = 1 + occupations.index(o)
    year = np.zeros(n_items + 1, np.int64)
    genres = np.zeros((n_items + 1, len(GENRES)), np.float32)
    titles = [""] * (n_items + 1)
    for row in items:
        i = int(row[0])
        titles[i] = row[1]
        if len(row) > 2 and row[2].strip().isdigit():
            year[i] = _bucket(int(row[2]), YEAR_BUCKETS)
        for g in (row[3].split(" ") if len(row) > 3 else ()):
            # recbole joins genres with spaces, which splits "Film-Noir"/"Sci-Fi" safely but not
            # "Children's" — all three are single tokens, so a plain lookup is enough.
            if g in GENRES:
                genres[i, GENRES.index(g)] = 1.0
    return Catalogue(n_users, n_items, age, gender, occ, year, genres, tuple(titles), occupations)


def time_split(r: Ratings, valid_frac: float = 0.1, test_frac: float = 0.1) -> Split:
    """Split by time: train on the past, validate and test on the future (no leakage)."""
    n = len(r)
    a = int(n * (1 - valid_frac - test_frac))
    b = int(n * (1 - test_frac))
    idx = np.arange(n)
    return Split(r.take(idx[:a]), r.take(idx[a:b]), r.take(idx[b:]),
                 int(r.timestamp[a]), int(r.timestamp[b]))


def per_user_time_split(r: Ratings, valid_frac: float = 0.1, test_frac: float = 0.1) -> Split:
    """Each user's own history split by time: their oldest ratings train, their newest test.

    A single global cutoff puts mostly brand-new users into the test period of ml-100k (users join
    over time), which measures cold start rather than ranking; this split keeps time order per user
    (no rating is predicted from its own future) while every test user has a history."""
    order = np.lexsort((r.timestamp, r.user))  # by user, then time
    users = r.user[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    sizes = np.diff(np.r_[starts, len(users)])
    pos = np.arange(len(users)) - np.repeat(starts, sizes)  # rank within the user's history
    n = np.repeat(sizes, sizes)
    test = pos >= np.ceil(n * (1 - test_frac))
    valid = ~test & (pos >= np.ceil(n * (1 - test_frac - valid_frac)))
    train = ~test & ~valid

    def part(mask: np.ndarray) -> Ratings:
        idx = np.sort(order[mask])  # back to global time order
        return r.take(idx)

    tr, va, te = part(train), part(valid), part(test)
    return Split(tr, va, te, int(va.timestamp.min()), int(te.timestamp.min()))
