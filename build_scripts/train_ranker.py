"""Train the ranker on the time split of MovieLens-100k and score it against a popularity baseline."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from build_scripts import movielens
from build_scripts.metrics import auc, log_loss
from build_scripts.ranker_model import DCNRanker
from python_backend.ranker_features import N_DENSE, N_GENRES, FeatureTables, encode_rows

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 7
    epochs: int = 6
    batch_size: int = 512
    lr: float = 3e-3
    weight_decay: float = 1e-5
    emb_dim: int = 8
    threads: int = 2
    id_dropout: float = 0.2


@dataclass(frozen=True)
class RankerMetrics:
    auc: float
    log_loss: float
    baseline_auc: float
    baseline_log_loss: float
    valid_auc: float
    best_epoch: int
    train_rows: int
    test_rows: int
    train_seconds: float


@dataclass(frozen=True)
class TrainedRanker:
    model: DCNRanker
    tables: FeatureTables
    metrics: RankerMetrics
    split: movielens.Split


def tables_from_catalogue(c: movielens.Catalogue, train: movielens.Ratings) -> FeatureTables:
    """Feature tables; item statistics come from the training period only (no leakage)."""
    rate = popularity_baseline(train, c.n_items)
    log_count = np.log1p(np.bincount(train.item, minlength=c.n_items + 1)) / 6.0
    stats = np.stack([rate, log_count], axis=1).astype(np.float32)
    return FeatureTables(c.user_age, c.user_gender, c.user_occupation, c.item_year,
                         c.item_genres, stats, _seen_index(train.user, c.n_users),
                         _seen_index(train.item, c.n_items))


def _leave_one_out_rate(train: movielens.Ratings, n_items: int, prior: float = 20.0) -> np.ndarray:
    """Training rows see their item's rate without their own label, as future rows will;
    otherwise the feature leaks the label and the model over-trusts it."""
    y = (train.rating >= 4).astype(np.float64)
    pos = np.bincount(train.item, weights=y, minlength=n_items + 1)[train.item] - y
    cnt = np.bincount(train.item, minlength=n_items + 1)[train.item] - 1
    return ((pos + prior * y.mean()) / (cnt + prior)).astype(np.float32)


def _seen_index(ids: np.ndarray, n: int, min_count: int = 3) -> np.ndarray:
    """Embedding row per id: its own id if it has enough training rows, else 0 (unknown)."""
    counts = np.bincount(ids, minlength=n + 1)
    return np.where(counts >= min_count, np.arange(n + 1), 0).astype(np.int64)


def encode(t: FeatureTables, r: movielens.Ratings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cat, dense = encode_rows(t, r.user, r.item, r.timestamp)
    return cat, dense, (r.rating >= 4).astype(np.float32)


def popularity_baseline(train: movielens.Ratings, n_items: int, prior: float = 20.0) -> np.ndarray:
    """Per-item smoothed positive rate: what a ranker must beat to be worth serving."""
    pos = np.bincount(train.item, weights=(train.rating >= 4), minlength=n_items + 1)
    cnt = np.bincount(train.item, minlength=n_items + 1)
    base = float((train.rating >= 4).mean())
    return (pos + prior * base) / (cnt + prior)


def _predict(model: DCNRanker, cat: np.ndarray, dense: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(cat), torch.from_numpy(dense)).numpy()


def train_ranker(cfg: TrainConfig = TrainConfig(), progress: Progress = lambda _: None) -> TrainedRanker:
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    split = movielens.per_user_time_split(movielens.load_ratings())
    tables = tables_from_catalogue(movielens.load_catalogue(), split.train)
    xtr, dtr, ytr = encode(tables, split.train)
    dtr[:, N_GENRES] = _leave_one_out_rate(split.train, tables.n_items)
    xva, dva, yva = encode(tables, split.valid)
    xte, dte, yte = encode(tables, split.test)
    model = DCNRanker(tables.cardinalities(), N_DENSE, emb_dim=cfg.emb_dim,
                      prior_column=N_GENRES)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    best_auc, best_state, best_epoch = -1.0, None, 0
    start = time.perf_counter()
    xtr_t, dtr_t, ytr_t = torch.from_numpy(xtr), torch.from_numpy(dtr), torch.from_numpy(ytr)
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = torch.from_numpy(rng.permutation(len(ytr)))
        total = 0.0
        for b in range(0, len(order), cfg.batch_size):
            idx = order[b:b + cfg.batch_size]
            cat = xtr_t[idx].clone()
            # id dropout teaches row 0, the cold-start embedding that unseen ids use when served
            drop = torch.rand(len(idx), 2) < cfg.id_dropout
            cat[:, :2] = cat[:, :2].masked_fill(drop, 0)
            opt.zero_grad()
            loss = loss_fn(model.logits(cat, dtr_t[idx]), ytr_t[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        v_auc = auc(yva, _predict(model, xva, dva))
        progress(f"epoch {epoch}/{cfg.epochs}: train loss {total / len(ytr):.4f}, "
                 f"valid AUC {v_auc:.4f} ({time.perf_counter() - start:.1f}s)")
        if v_auc > best_auc:
            best_auc, best_epoch = v_auc, epoch
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    p_test = _predict(model, xte, dte)
    base = popularity_baseline(split.train, tables.n_items)[split.test.item]
    metrics = RankerMetrics(
        auc=auc(yte, p_test), log_loss=log_loss(yte, p_test),
        baseline_auc=auc(yte, base), baseline_log_loss=log_loss(yte, base),
        valid_auc=best_auc, best_epoch=best_epoch, train_rows=len(ytr), test_rows=len(yte),
        train_seconds=round(time.perf_counter() - start, 2))
    return TrainedRanker(model, tables, metrics, split)
