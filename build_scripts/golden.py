"""A golden set: real requests with the outputs the published artefact gives, for live probes."""
from __future__ import annotations

import numpy as np

from build_scripts.movielens import Ratings


def ranking_requests(test: Ratings, n_items: int, count: int, candidates: int = 16,
                     seed: int = 0) -> list[dict]:
    """`count` real test-period users, each with items they rated plus random catalogue items."""
    rng = np.random.default_rng(seed)
    users = rng.choice(np.unique(test.user), size=count, replace=False)
    out = []
    for u in users:
        mask = test.user == u
        rated = test.item[mask][: candidates // 2]
        others = rng.integers(1, n_items + 1, size=candidates - rated.size)
        ts = int(test.timestamp[mask].max())
        out.append({"user_id": int(u), "item_ids": [int(i) for i in np.r_[rated, others]],
                    "timestamp": ts})
    return out
