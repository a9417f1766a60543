"""Distillation of a sentence encoder (MeanPooledEncoder): a student is made from the teacher
(a subset of its layers, and/or pruned width) and trained to reproduce the teacher's normalised
embeddings of given texts (cosine loss). Seeded and single-process: the same texts, targets and
config give the same student."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

Tokenise = Callable[[Sequence[str]], Mapping[str, np.ndarray]]


class DistillError(ValueError):
    pass


@dataclass(frozen=True)
class DistillConfig:
    epochs: int = 4
    batch: int = 32
    lr: float = 1e-4
    seed: int = 0


@dataclass(frozen=True)
class FitReport:
    epochs: int
    steps: int
    loss_per_epoch: tuple[float, ...]   # mean 1 - cosine(student, teacher) over each epoch's batches


def select_layers(encoder: nn.Module, layers: Sequence[int]) -> nn.Module:
    """A copy of `encoder` with only `layers` of its transformer stack (in that order), each
    initialised with the teacher's weights of that layer."""
    stack = encoder.bert.encoder.layer
    if not layers or len(set(layers)) != len(layers) or not all(0 <= i < len(stack) for i in layers):
        raise DistillError(f"layers {list(layers)} are not distinct indices of a {len(stack)}-layer stack")
    student = copy.deepcopy(encoder)
    student.bert.encoder.layer = nn.ModuleList(student.bert.encoder.layer[i] for i in layers)
    student.bert.config.num_hidden_layers = len(layers)
    return student.eval()


def cosine_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean 1 - cosine; both sides are L2-normalised embeddings."""
    return (1.0 - (student * teacher).sum(dim=1)).mean()


def fit(student: nn.Module, texts: Sequence[str], targets: np.ndarray, tokenise: Tokenise,
        cfg: DistillConfig = DistillConfig(), progress: Callable[[str], None] = lambda _: None
        ) -> FitReport:
    """Train `student` in place towards `targets` (the teacher's embedding of each text). Dropout
    stays off: with a few epochs on a small catalogue it only slows the fit down."""
    if len(texts) != len(targets) or not len(texts):
        raise DistillError(f"{len(texts)} texts for {len(targets)} targets")
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    target = torch.from_numpy(np.asarray(targets, np.float32))
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=0.0)
    student.eval()
    losses, steps = [], 0
    for epoch in range(cfg.epochs):
        order = torch.randperm(len(texts), generator=gen).tolist()
        total, n = 0.0, 0
        for start in range(0, len(order), cfg.batch):
            idx = order[start:start + cfg.batch]
            enc = tokenise([texts[i] for i in idx])
            out = student(torch.from_numpy(enc["input_ids"]), torch.from_numpy(enc["attention_mask"]))
            loss = cosine_loss(out, target[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, n, steps = total + loss.item() * len(idx), n + len(idx), steps + 1
        losses.append(total / n)
        progress(f"distillation epoch {epoch + 1}/{cfg.epochs}: 1 - cosine to the teacher "
                 f"{losses[-1]:.4f}")
    student.eval()
    for p in student.parameters():
        p.requires_grad_(False)
    return FitReport(cfg.epochs, steps, tuple(losses))


def agreement(student: nn.Module, texts: Sequence[str], targets: np.ndarray, tokenise: Tokenise,
              batch: int = 64) -> float:
    """Mean cosine between the student's embeddings and the targets."""
    cos = []
    with torch.no_grad():
        for start in range(0, len(texts), batch):
            enc = tokenise(texts[start:start + batch])
            out = student(torch.from_numpy(enc["input_ids"]), torch.from_numpy(enc["attention_mask"]))
            cos.append((out.numpy() * targets[start:start + batch]).sum(1))
    return float(np.concatenate(cos).mean())
