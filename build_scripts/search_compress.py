"""The smaller MiniLM encoders search can publish instead of the 6-layer teacher: structured
pruning (heads and FFN width, then a short recovery fit to the teacher) and a distilled student
with fewer layers. Both are trained on the catalogue texts and the *tuning* queries only (never
an evaluation query), against the teacher's normalised embeddings; each is judged by the build
like any variant (compress.judge, against the FP32 teacher)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch

from build_scripts import distill, prune
from build_scripts.compress import Compressed
from build_scripts.pipeline import Progress, torch_predict
from build_scripts.search_queries import QuerySet
from build_scripts.specs import SEARCH
from python_backend.search_service import encode, tokenise

# Choices measured on this catalogue (docs/models.md, "Pruning and distillation").
PRUNED = prune.PruneConfig(heads=6, ffn=768)
PRUNED_FIT = distill.DistillConfig(epochs=3, lr=5e-4)
DISTILLED_LAYERS = (0, 2, 5)  # the last layer kept: (0, 2, 4) stayed at cosine 0.88 to the teacher
DISTILLED_FIT = distill.DistillConfig(epochs=4, lr=5e-4)


@dataclass(frozen=True)
class Corpus:
    """What the students learn from: catalogue texts and tuning queries, with the teacher's
    embedding of each."""
    texts: tuple[str, ...]
    targets: np.ndarray


def training_texts(catalogue: Sequence[str], sets: Mapping[str, QuerySet]) -> tuple[str, ...]:
    """The catalogue texts and every set's tuning queries, de-duplicated in order."""
    tuning = [t for q in sets.values() for t, tune in zip(q.texts, q.tuning) if tune]
    return tuple(dict.fromkeys([*catalogue, *tuning]))


def corpus(teacher: torch.nn.Module, tokenizer, texts: Sequence[str]) -> Corpus:
    texts = tuple(texts)
    return Corpus(texts, encode(torch_predict(teacher, SEARCH.export), tokenizer, list(texts)))


def pruned(teacher: torch.nn.Module, tokenizer, data: Corpus, cfg: prune.PruneConfig = PRUNED,
           fit: distill.DistillConfig = PRUNED_FIT, progress: Progress = lambda _: None
           ) -> Compressed:
    tok = lambda texts: tokenise(tokenizer, texts)  # noqa: E731
    batches = [tok(list(data.texts[i:i + 64])) for i in range(0, len(data.texts), 64)]
    progress(f"scoring heads and FFN units on {len(data.texts)} catalogue texts and tuning queries")
    scores = prune.importance(teacher, batches)
    student = prune.prune(teacher, scores, cfg)
    before = distill.agreement(student, data.texts, data.targets, tok)
    report = distill.fit(student, data.texts, data.targets, tok, fit, progress)
    after = distill.agreement(student, data.texts, data.targets, tok)
    heads = teacher.bert.config.num_attention_heads
    ffn = teacher.bert.encoder.layer[0].intermediate.dense.out_features
    return Compressed(student, f"pruned-{cfg.heads}of{heads}-heads-{cfg.ffn}of{ffn}-ffn", {
        "heads_kept": cfg.heads, "ffn_kept": cfg.ffn, "score": "mean contribution norm on real tokens",
        "parameters": prune.parameters(student), "teacher_parameters": prune.parameters(teacher),
        "recovery_fit": {**report.__dict__, **fit.__dict__},
        "cosine_to_teacher": {"before_fit": before, "after_fit": after}})


def distilled(teacher: torch.nn.Module, tokenizer, data: Corpus,
              layers: Sequence[int] = DISTILLED_LAYERS, fit: distill.DistillConfig = DISTILLED_FIT,
              progress: Progress = lambda _: None) -> Compressed:
    tok = lambda texts: tokenise(tokenizer, texts)  # noqa: E731
    student = distill.select_layers(teacher, layers)
    before = distill.agreement(student, data.texts, data.targets, tok)
    report = distill.fit(student, data.texts, data.targets, tok, fit, progress)
    after = distill.agreement(student, data.texts, data.targets, tok)
    n = len(teacher.bert.encoder.layer)
    return Compressed(student, f"distilled-{len(layers)}of{n}-layers", {
        "layers": list(layers), "parameters": prune.parameters(student),
        "teacher_parameters": prune.parameters(teacher),
        "fit": {**report.__dict__, **fit.__dict__},
        "cosine_to_teacher": {"before_fit": before, "after_fit": after}})
