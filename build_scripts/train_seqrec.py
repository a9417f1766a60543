"""Train the sequential recommender on MovieLens-100k histories and score it next to popularity.

Split (leave-one-out in time, the SASRec/BERT4Rec protocol): each user's ratings in time order;
the last item is the test target, the one before it the validation target, the rest trains. Test
histories include the validation item. Ranking is over the whole catalogue minus the items the user
has already rated, the same filter the served model applies."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np
import torch

from build_scripts import movielens
from build_scripts.seqrec_model import PAD, SASRec, SeqrecShape
from python_backend.seqrec_service import pad_histories
from python_backend.topk import recall_ndcg_at, target_ranks

Progress = Callable[[str], None]
Predict = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]
K = 10


@dataclass(frozen=True)
class SeqrecConfig:
    seed: int = 11
    epochs: int = 12  # ~45 s on 2 idle cores; validation NDCG@10 still creeps up past this
    batch_size: int = 256
    lr: float = 3e-3
    max_len: int = 50
    hidden: int = 64
    layers: int = 2
    heads: int = 2
    dropout: float = 0.2
    threads: int = 2
    # A fixed epoch count, not a wall-clock budget: the same seed must give the same model on a
    # busy machine as on an idle one.
    patience: int = 3            # epochs without a better validation NDCG@10 before stopping


@dataclass(frozen=True)
class Sequences:
    """Per-user item histories in time order; index i belongs to users[i]."""
    users: np.ndarray            # int64 [U]
    train: tuple[np.ndarray, ...]
    valid_target: np.ndarray     # int64 [U]
    test_target: np.ndarray      # int64 [U]
    n_items: int

    def history(self, part: str) -> tuple[np.ndarray, ...]:
        """What the model sees when predicting the `part` ("valid" or "test") target."""
        if part == "valid":
            return self.train
        return tuple(np.r_[t, v] for t, v in zip(self.train, self.valid_target))


@dataclass(frozen=True)
class SeqrecMetrics:
    recall_at_10: float
    ndcg_at_10: float
    baseline_recall_at_10: float
    baseline_ndcg_at_10: float
    valid_ndcg_at_10: float
    best_epoch: int
    epochs_run: int
    train_windows: int
    test_users: int
    train_seconds: float


@dataclass(frozen=True)
class TrainedSeqrec:
    model: SASRec
    sequences: Sequences
    popularity: np.ndarray       # float32 [n_items + 1], train + valid counts (cold-start fallback)
    metrics: SeqrecMetrics
    config: SeqrecConfig


def leave_last_out(r: movielens.Ratings, n_items: int) -> Sequences:
    order = np.lexsort((np.arange(len(r)), r.timestamp, r.user))  # by user, time, then file order
    users, items = r.user[order], r.item[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    seqs = np.split(items, starts[1:])
    keep = [i for i, s in enumerate(seqs) if s.size >= 3]
    return Sequences(users=users[starts][keep],
                     train=tuple(seqs[i][:-2] for i in keep),
                     valid_target=np.array([seqs[i][-2] for i in keep], np.int64),
                     test_target=np.array([seqs[i][-1] for i in keep], np.int64),
                     n_items=n_items)


def training_windows(train: tuple[np.ndarray, ...], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Each history cut from its end into windows of max_len + 1 items: inputs are the first
    max_len, targets the same shifted by one (next item at every position), left-padded."""
    inputs, targets = [], []
    for s in train:
        for end in range(s.size, 1, -max_len):
            w = s[max(0, end - max_len - 1):end]
            inputs.append(w[:-1])
            targets.append(w[1:])
    return pad_histories(inputs, max_len), pad_histories(targets, max_len)


def seen_matrix(histories: tuple[np.ndarray, ...], n_items: int) -> np.ndarray:
    seen = np.zeros((len(histories), n_items + 1), bool)
    for i, h in enumerate(histories):
        seen[i, h] = True
    seen[:, PAD] = True
    return seen


def rank_metrics(scores: np.ndarray, histories: tuple[np.ndarray, ...],
                 targets: np.ndarray, n_items: int) -> dict[str, float]:
    """Recall@10 / NDCG@10 over the catalogue minus each user's seen items."""
    scores = np.where(seen_matrix(histories, n_items), -np.inf, scores.astype(np.float32))
    recall, ndcg = recall_ndcg_at(target_ranks(scores, targets), K)
    return {"recall_at_10": recall, "ndcg_at_10": ndcg}


def evaluate(predict: Predict, seqs: Sequences, part: str, max_len: int,
             chunk: int = 256) -> dict[str, float]:
    """Offline quality of any artefact (torch, ONNX Runtime FP32/FP16/INT8) on one split part."""
    hist = seqs.history(part)
    padded = pad_histories(hist, max_len)
    scores = np.concatenate([predict({"history": padded[i:i + chunk]})["scores"]
                             for i in range(0, len(padded), chunk)])
    target = seqs.valid_target if part == "valid" else seqs.test_target
    return rank_metrics(scores, hist, target, seqs.n_items)


def popularity(seqs: Sequences, part: str) -> np.ndarray:
    """Item counts over everything a model could have seen before the `part` targets."""
    hist = seqs.history(part)
    counts = np.bincount(np.concatenate(hist), minlength=seqs.n_items + 1).astype(np.float32)
    counts[PAD] = 0
    return counts


def torch_predict(model: SASRec) -> Predict:
    def predict(inputs):
        model.eval()
        with torch.no_grad():
            return {"scores": model(torch.from_numpy(np.ascontiguousarray(inputs["history"]))).numpy()}
    return predict


def train_seqrec(cfg: SeqrecConfig = SeqrecConfig(),
                 progress: Progress = lambda _: None) -> TrainedSeqrec:
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    catalogue = movielens.load_catalogue()
    seqs = leave_last_out(movielens.load_ratings(), catalogue.n_items)
    x, y = (torch.from_numpy(a) for a in training_windows(seqs.train, cfg.max_len))
    model = SASRec(SeqrecShape(catalogue.n_items, cfg.max_len, cfg.hidden, cfg.layers, cfg.heads,
                               cfg.dropout))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=PAD)
    best, best_state, best_epoch, epoch = -1.0, None, 0, 0
    start = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = torch.from_numpy(rng.permutation(len(x)))
        total = 0.0
        for b in range(0, len(order), cfg.batch_size):
            idx = order[b:b + cfg.batch_size]
            logits = model.logits(model.hidden_states(x[idx]))  # every position predicts its next
            loss = loss_fn(logits.reshape(-1, logits.shape[-1]), y[idx].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        valid = evaluate(torch_predict(model), seqs, "valid", cfg.max_len)["ndcg_at_10"]
        elapsed = time.perf_counter() - start
        progress(f"epoch {epoch}: train loss {total / len(x):.3f}, valid NDCG@10 {valid:.4f} "
                 f"({elapsed:.1f}s)")
        if valid > best:
            best, best_epoch = valid, epoch
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        if epoch - best_epoch >= cfg.patience:
            break
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    test = evaluate(torch_predict(model), seqs, "test", cfg.max_len)
    pop = popularity(seqs, "test")
    base = rank_metrics(np.broadcast_to(pop, (len(seqs.users), pop.size)), seqs.history("test"),
                        seqs.test_target, seqs.n_items)
    metrics = SeqrecMetrics(
        recall_at_10=test["recall_at_10"], ndcg_at_10=test["ndcg_at_10"],
        baseline_recall_at_10=base["recall_at_10"], baseline_ndcg_at_10=base["ndcg_at_10"],
        valid_ndcg_at_10=best, best_epoch=best_epoch, epochs_run=epoch, train_windows=len(x),
        test_users=len(seqs.users), train_seconds=round(time.perf_counter() - start, 2))
    return TrainedSeqrec(model, seqs, pop, metrics, cfg)
