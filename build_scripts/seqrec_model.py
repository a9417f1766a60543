"""A SASRec-style next-item model from `transformers` blocks: item + position embeddings, a causal
BertEncoder, and the last position's state scored against the (tied) item embeddings."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import BertConfig
from transformers.models.bert.modeling_bert import BertEncoder

PAD = 0  # item id 0 is padding; MovieLens ids start at 1


@dataclass(frozen=True)
class SeqrecShape:
    n_items: int          # largest item id; the score vector has n_items + 1 entries (0 = padding)
    max_len: int = 50
    hidden: int = 64
    layers: int = 2
    heads: int = 2
    dropout: float = 0.2


class SASRec(nn.Module):
    """Input: item histories left-padded to `max_len` (most recent item last). Output: one score
    per catalogue item for the next item. Histories are left-padded so that the read-out is always
    the last position, a static slice that needs no gather by length in the exported graph."""

    def __init__(self, shape: SeqrecShape):
        super().__init__()
        self.shape = shape
        config = BertConfig(hidden_size=shape.hidden, num_hidden_layers=shape.layers,
                            num_attention_heads=shape.heads, intermediate_size=shape.hidden * 4,
                            hidden_dropout_prob=shape.dropout,
                            attention_probs_dropout_prob=shape.dropout,
                            max_position_embeddings=shape.max_len)
        # The eager attention path adds our additive mask as is and exports to plain ONNX ops.
        config._attn_implementation = "eager"
        self.items = nn.Embedding(shape.n_items + 1, shape.hidden, padding_idx=PAD)
        self.positions = nn.Embedding(shape.max_len, shape.hidden)
        self.norm = nn.LayerNorm(shape.hidden, eps=1e-12)
        self.dropout = nn.Dropout(shape.dropout)
        self.encoder = BertEncoder(config)
        nn.init.normal_(self.items.weight, std=0.02)
        nn.init.normal_(self.positions.weight, std=0.02)
        # Constant masks as buffers: exported as initialisers, not as ops (ONNX Runtime has no
        # boolean EyeLike kernel).
        idx = torch.arange(shape.max_len)
        self.register_buffer("causal", idx[None, :] <= idx[:, None], persistent=False)
        self.register_buffer("diagonal", idx[None, :] == idx[:, None], persistent=False)

    def hidden_states(self, history: torch.Tensor) -> torch.Tensor:
        """[B, L] item ids → [B, L, H]; position i attends to positions ≤ i that hold an item."""
        length = history.shape[1]
        keep = history != PAD
        x = self.items(history) * (self.shape.hidden ** 0.5) + self.positions.weight[:length]
        x = self.dropout(self.norm(x)) * keep.unsqueeze(-1).to(x.dtype)
        causal, diagonal = self.causal[:length, :length], self.diagonal[:length, :length]
        # [B, query, key]: earlier-or-same positions that hold an item. A padded query row would
        # have no allowed key; letting it see itself keeps softmax finite. Such rows are never
        # read (left padding puts them before the first item).
        allowed = causal.unsqueeze(0) & (keep.unsqueeze(1) | diagonal.unsqueeze(0))
        mask = torch.zeros(allowed.shape, dtype=x.dtype, device=history.device)
        mask = mask.masked_fill(~allowed, torch.finfo(x.dtype).min).unsqueeze(1)  # [B, 1, L, L]
        return self.encoder(x, attention_mask=mask).last_hidden_state

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return hidden @ self.items.weight.t()

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        """[B, L] int64 → [B, n_items + 1] float32 next-item scores (logits)."""
        return self.logits(self.hidden_states(history)[:, -1, :])
