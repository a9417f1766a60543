"""The search encoder's tokeniser, from the `tokenizer.json` a version publishes, with the
`tokenizers` library alone.

Why not transformers' AutoTokenizer: its fast tokenizer is this same library reading this same
file, but transformers is not in the Triton image's stub (docker/requirements/triton-stub.txt; it
pulls in a large tree for one call), so the search model could not load there. The file's own
truncation (128) and fixed padding are replaced by the encoder's limit and padding to the longest
text of a batch, which is what AutoTokenizer(padding=True, truncation=True, max_length=...) gives;
tests/unit/test_tokeniser.py checks the two agree on every catalogue text and query."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

TOKENIZER_JSON = "tokenizer.json"


class Tokeniser:
    def __init__(self, path: Path):
        from tokenizers import Tokenizer  # a Rust extension: imported where tokenisation happens
        path = Path(path)
        if path.is_dir():
            path = path / TOKENIZER_JSON
        try:
            self._tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # the library raises a plain Exception for a bad file
            raise ValueError(f"{path}: not a tokenizer file: {exc}") from exc
        self._max_tokens: int | None = None
        self.pad_token_id = self._special("[PAD]")
        self.cls_token_id = self._special("[CLS]")
        self.vocab_size = self._tok.get_vocab_size(with_added_tokens=True)
        self._tok.enable_padding(pad_id=self.pad_token_id, pad_token="[PAD]")

    def _special(self, token: str) -> int:
        found = self._tok.token_to_id(token)
        if found is None:
            raise ValueError(f"the tokenizer has no {token} token: not a BERT WordPiece tokenizer")
        return found

    def __call__(self, texts: Sequence[str], max_tokens: int) -> dict[str, np.ndarray]:
        """input_ids and attention_mask, int64 [len(texts), longest], truncated at max_tokens."""
        if max_tokens != self._max_tokens:
            self._tok.enable_truncation(max_length=max_tokens)
            self._max_tokens = max_tokens
        encoded = self._tok.encode_batch(list(texts))
        return {"input_ids": np.array([e.ids for e in encoded], np.int64).reshape(len(encoded), -1),
                "attention_mask": np.array([e.attention_mask for e in encoded],
                                           np.int64).reshape(len(encoded), -1)}
