"""Structured pruning of a BERT encoder (HF `BertModel` inside a MeanPooledEncoder): whole attention
heads and FFN intermediate units are removed, so the result is a smaller dense model whose ONNX
export has narrower MatMuls (not a masked copy of the original). Which ones go is decided by their
measured contribution on real texts: the mean norm of what each head / unit adds to the residual
stream over real tokens (an activation-based score; weight magnitude alone ignores how often a
unit fires)."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np
import torch
from torch import nn
from transformers.pytorch_utils import prune_linear_layer


class PruneError(ValueError):
    pass


@dataclass(frozen=True)
class PruneConfig:
    """How much of every layer stays: `heads` attention heads and `ffn` intermediate units, the
    same in every layer."""
    heads: int
    ffn: int


@dataclass(frozen=True)
class Importance:
    heads: np.ndarray  # float [layers, heads]
    ffn: np.ndarray    # float [layers, intermediate]


def _layers(encoder: nn.Module) -> nn.ModuleList:
    return encoder.bert.encoder.layer


def importance(encoder: nn.Module, batches: Iterable[Mapping[str, np.ndarray]]) -> Importance:
    """Per head: mean over real tokens of ‖context_h · W_o[:, h]ᵀ‖ (the head's share of the
    attention output); per FFN unit: mean |activation| · ‖W_out[:, j]‖."""
    layers = _layers(encoder)
    n_heads = layers[0].attention.self.num_attention_heads
    head_sum = torch.zeros(len(layers), n_heads, dtype=torch.float64)
    ffn_sum = torch.zeros(len(layers), layers[0].intermediate.dense.out_features, dtype=torch.float64)
    tokens = 0
    mask: list[torch.Tensor] = []  # the current batch's real-token mask, read by the hooks

    def head_hook(i):
        out_w = layers[i].attention.output.dense.weight  # [hidden, heads * d]

        def hook(module, args, output):
            ctx = output[0] if isinstance(output, tuple) else output  # [B, T, heads * d]
            d = module.attention_head_size
            per_head = ctx.reshape(*ctx.shape[:2], -1, d)              # [B, T, H, d]
            w = out_w.reshape(out_w.shape[0], -1, d)                    # [hidden, H, d]
            contrib = torch.einsum("bthd,ohd->btho", per_head, w).norm(dim=-1)  # [B, T, H]
            head_sum[i] += (contrib * mask[0][..., None]).sum(dim=(0, 1)).double()
        return hook

    def ffn_hook(i):
        col_norm = layers[i].output.dense.weight.norm(dim=0)  # [intermediate]

        def hook(module, args, output):  # output: GELU activations [B, T, intermediate]
            ffn_sum[i] += ((output.abs() * col_norm) * mask[0][..., None]).sum(dim=(0, 1)).double()
        return hook

    handles = []
    for i, layer in enumerate(layers):
        handles.append(layer.attention.self.register_forward_hook(head_hook(i)))
        handles.append(layer.intermediate.register_forward_hook(ffn_hook(i)))
    try:
        with torch.no_grad():
            for b in batches:
                m = torch.from_numpy(b["attention_mask"]).float()
                mask[:] = [m]
                encoder(torch.from_numpy(b["input_ids"]), torch.from_numpy(b["attention_mask"]))
                tokens += int(m.sum())
    finally:
        for h in handles:
            h.remove()
    if tokens == 0:
        raise PruneError("importance needs at least one real token")
    return Importance((head_sum / tokens).numpy(), (ffn_sum / tokens).numpy())


def keep_top(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, in their original order (ties: the lower index stays)."""
    if not 0 < k <= scores.shape[-1]:
        raise PruneError(f"cannot keep {k} of {scores.shape[-1]}")
    order = np.argsort(-scores, kind="stable")[:k]
    return np.sort(order)


def prune_layer_heads(layer: nn.Module, keep: np.ndarray) -> None:
    sa = layer.attention.self
    d = sa.attention_head_size
    idx = torch.from_numpy(np.concatenate([np.arange(h * d, (h + 1) * d) for h in keep])).long()
    sa.query, sa.key, sa.value = (prune_linear_layer(x, idx) for x in (sa.query, sa.key, sa.value))
    layer.attention.output.dense = prune_linear_layer(layer.attention.output.dense, idx, dim=1)
    sa.num_attention_heads = len(keep)  # the forward reshapes by head size, these are bookkeeping
    sa.all_head_size = len(keep) * d


def prune_layer_ffn(layer: nn.Module, keep: np.ndarray) -> None:
    idx = torch.from_numpy(np.asarray(keep)).long()
    layer.intermediate.dense = prune_linear_layer(layer.intermediate.dense, idx)
    layer.output.dense = prune_linear_layer(layer.output.dense, idx, dim=1)


def prune(encoder: nn.Module, scores: Importance, cfg: PruneConfig) -> nn.Module:
    """A pruned copy of `encoder` (the original is left as it is)."""
    student = copy.deepcopy(encoder)
    layers = _layers(student)
    if scores.heads.shape[0] != len(layers) or scores.ffn.shape[0] != len(layers):
        raise PruneError(f"importance is for {scores.heads.shape[0]} layers, the model has {len(layers)}")
    for i, layer in enumerate(layers):
        prune_layer_heads(layer, keep_top(scores.heads[i], cfg.heads))
        prune_layer_ffn(layer, keep_top(scores.ffn[i], cfg.ffn))
    # config.num_attention_heads stays: it fixes the head size (hidden / heads) the modules keep
    student.bert.config.intermediate_size = cfg.ffn
    return student.eval()


def parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
