"""The search tokeniser (python_backend.tokeniser, `tokenizers` alone) against transformers'
AutoTokenizer, which the sentence-transformers reference pipeline uses: the same ids and masks on
every catalogue text and generated query, and on the edges (truncation, accents, other scripts)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from build_scripts import movielens
from build_scripts.search_model import catalogue_text, minilm_dir
from build_scripts.search_queries import query_sets
from python_backend.search_service import MAX_TOKENS, load_tokenizer, tokenise
from python_backend.tokeniser import Tokeniser


def test_the_tokeniser_matches_transformers_on_every_catalogue_text_and_query():
    from transformers import AutoTokenizer
    reference = AutoTokenizer.from_pretrained(str(minilm_dir()), local_files_only=True)
    ours = load_tokenizer(minilm_dir())
    assert isinstance(ours, Tokeniser)
    c = movielens.load_catalogue()
    cat = catalogue_text(c)
    texts = list(cat.texts) + [q for s in query_sets(c, cat.years).values() for q in s.texts]
    texts += ["word " * 400, "Amélie — café ☕ 東京", "  spaces  ", "I..", "l'été", "x"]
    assert len(texts) > 4000
    for start in range(0, len(texts), 64):
        batch = texts[start:start + 64]
        want = reference(batch, padding=True, truncation=True, max_length=MAX_TOKENS,
                         return_tensors="np")
        got = tokenise(ours, batch)
        for key in ("input_ids", "attention_mask"):
            assert got[key].dtype == np.int64
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"{key} at {start}")
    long = tokenise(ours, ["word " * 400])
    assert long["input_ids"].shape == (1, MAX_TOKENS)  # truncated, [SEP] kept last
    assert long["input_ids"][0, -1] == reference.sep_token_id
    assert ours.pad_token_id == reference.pad_token_id
    assert ours.cls_token_id == reference.cls_token_id and ours.vocab_size == reference.vocab_size
    # the limit is per call: a shorter one truncates, the default comes back after it
    assert tokenise(ours, ["word " * 400], max_tokens=16)["input_ids"].shape == (1, 16)
    assert tokenise(ours, ["word " * 400])["input_ids"].shape == (1, MAX_TOKENS)


def test_a_version_without_a_usable_tokenizer_file_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not a tokenizer file"):
        Tokeniser(tmp_path)  # a directory without tokenizer.json
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a tokenizer file"):
        Tokeniser(tmp_path / "tokenizer.json")
    raw = json.loads((minilm_dir() / "tokenizer.json").read_text())
    raw["model"]["vocab"].pop("[PAD]")
    raw["added_tokens"] = [t for t in raw["added_tokens"] if t["content"] != "[PAD]"]
    (tmp_path / "tokenizer.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=r"no \[PAD\] token"):
        Tokeniser(tmp_path)
