"""A DCN-v2 ranker: embeddings of the categorical fields + genre multi-hot, a cross network and a
deep tower side by side, predicting P(rating >= 4)."""
from __future__ import annotations

import torch
from torch import nn


class CrossLayer(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, dim)

    def forward(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x0 * self.linear(x) + x  # DCN-v2: feature crosses of growing order, residual


class DCNRanker(nn.Module):
    def __init__(self, cardinalities: tuple[int, ...], n_dense: int, emb_dim: int = 8,
                 n_cross: int = 2, hidden: tuple[int, ...] = (64, 32), dropout: float = 0.1,
                 prior_column: int | None = None):
        super().__init__()
        # The network learns a residual over the logit of a prior rate in `dense[:, prior_column]`
        # (the item's smoothed positive rate): it starts at the popularity baseline and moves only
        # where the data supports it, which is what keeps it ahead of that baseline on new users.
        self.prior_column = prior_column
        self.embeddings = nn.ModuleList(nn.Embedding(c, emb_dim) for c in cardinalities)
        dim = emb_dim * len(cardinalities) + n_dense
        self.cross = nn.ModuleList(CrossLayer(dim) for _ in range(n_cross))
        layers: list[nn.Module] = []
        prev = dim
        for h in hidden:
            layers += [nn.Linear(prev, h), nn.ReLU(), nn.Dropout(dropout)]
            prev = h
        self.deep = nn.Sequential(*layers)
        self.head = nn.Linear(dim + prev, 1)
        if prior_column is not None:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def logits(self, cat: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        emb = [e(cat[:, i]) for i, e in enumerate(self.embeddings)]
        x0 = torch.cat(emb + [dense], dim=1)
        x = x0
        for layer in self.cross:
            x = layer(x0, x)
        out = self.head(torch.cat([x, self.deep(x0)], dim=1)).squeeze(1)
        if self.prior_column is not None:
            p = dense[:, self.prior_column].clamp(1e-4, 1 - 1e-4)
            out = out + torch.log(p) - torch.log1p(-p)
        return out

    def forward(self, cat: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(cat, dense))
