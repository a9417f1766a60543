"""Top-k over score vectors with items excluded (already seen, padding). Pure numpy, shared by the
build's offline metrics and the served models, so both rank the same way."""
from __future__ import annotations

import numpy as np


def masked(scores: np.ndarray, exclude: np.ndarray | list[int]) -> np.ndarray:
    """A float32 copy of a 1-d score vector with the excluded positions set to -inf."""
    out = np.array(scores, dtype=np.float32, copy=True)
    idx = np.asarray(exclude, dtype=np.int64)
    if idx.size:
        out[idx[(idx >= 0) & (idx < out.size)]] = -np.inf
    return out


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the k best finite scores, best first; ties keep the lower index first
    (stable), so a golden set replays exactly."""
    k = max(0, min(int(k), int(np.isfinite(scores).sum())))
    if k == 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    part = np.argpartition(-scores, k - 1)[:k] if k < scores.size else np.arange(scores.size)
    order = part[np.lexsort((part, -scores[part]))]
    return order.astype(np.int64), scores[order].astype(np.float32)


def target_ranks(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """0-based rank of each row's target among that row's finite scores ([n, items], [n])."""
    rows = np.arange(scores.shape[0])
    t = scores[rows, targets][:, None]
    return (scores > t).sum(axis=1)


def recall_ndcg_at(ranks: np.ndarray, k: int = 10) -> tuple[float, float]:
    """Recall@k and NDCG@k with one relevant item per row (leave-one-out next-item evaluation)."""
    hit = ranks < k
    ndcg = np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0)
    return float(hit.mean()), float(ndcg.mean())
