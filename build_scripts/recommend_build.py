"""The recommend pipeline as a BuildJob: nothing to export; its version carries the catalogue the
filters need, offline metrics of the whole pipeline and a golden set, both computed in-process with
the same service code and the seqrec/ranker versions the repository serves now."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from build_scripts import movielens
from build_scripts.pipeline import BuildError, BuildJob, Progress, source
from build_scripts.publish import MANIFEST, versions
from build_scripts.specs import RECOMMEND, ModelSpec
from build_scripts.train_seqrec import K, leave_last_out
from python_backend.ranker_service import RankerService
from python_backend.recommend_service import CATALOGUE, Catalogue, RecommendService
from python_backend.seqrec_service import SeqrecService
from python_backend.topk import recall_ndcg_at

GOLDEN_HISTORY = 30


def latest_good(repository: Path, model: str) -> int:
    """The version the pipeline's golden set is computed against: the one the repository's desired
    state says serves (what Triton routes an unversioned call to), else the newest without an
    injected fault."""
    from sentinel.desired_state import DesiredStateError, DesiredStateStore
    try:
        desired = DesiredStateStore(repository).read(model)
    except DesiredStateError:
        desired = None
    if desired is not None and desired.version and desired.version.isdigit() and \
            (repository / model / desired.version).is_dir() and not json.loads(
                (repository / model / desired.version / MANIFEST).read_text()).get("fault"):
        return int(desired.version)
    good = [v for v in versions(repository / model)
            if not json.loads((repository / model / str(v) / MANIFEST).read_text()).get("fault")]
    if not good:
        raise BuildError(f"recommend calls {model!r}, which has no (fault-free) version in "
                         f"{repository}: run `sentinel build {model}` first")
    return good[-1]


def in_process(repository: Path, n_candidates: int) -> tuple[RecommendService, dict[str, int]]:
    """The pipeline with seqrec and ranker called in-process instead of through Triton."""
    deps = {m: latest_good(repository, m) for m in ("seqrec", "ranker")}
    seqrec = SeqrecService(repository / "seqrec" / str(deps["seqrec"]))
    ranker = RankerService(repository / "ranker" / str(deps["ranker"]))

    def candidates(history: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        req = seqrec.parse(history.reshape(1, -1), np.array([[n]], np.int64))
        return seqrec.recommend([req])[0]

    def rank(user: int, items: np.ndarray, ts: int | None) -> np.ndarray:
        req = ranker.parse(np.array([[user]], np.int64), items.reshape(1, -1),
                           None if ts is None else np.array([[ts]], np.int64))
        return ranker.score([req])[0]

    c = movielens.load_catalogue()
    catalogue = Catalogue(c.n_users, c.item_genres > 0, movielens.GENRES)
    return RecommendService(catalogue, candidates, rank, n_candidates), deps


def split_users() -> tuple[np.ndarray, tuple[np.ndarray, ...], np.ndarray, np.ndarray]:
    """Users, their histories before the test item, the test item and its timestamp."""
    ratings = movielens.load_ratings()
    seqs = leave_last_out(ratings, movielens.load_catalogue().n_items)
    last_ts = np.zeros(ratings.user.max() + 1, np.int64)
    np.maximum.at(last_ts, ratings.user, ratings.timestamp)
    return seqs.users, seqs.history("test"), seqs.test_target, last_ts[seqs.users]


def offline_metrics(service: RecommendService, sample: int = 300, seed: int = 0) -> dict[str, float]:
    """Next-item Recall@10 / NDCG@10 of the whole pipeline on (a sample of) the test users."""
    users, hist, targets, ts = split_users()
    pick = np.random.default_rng(seed).choice(len(users), size=min(sample, len(users)), replace=False)
    ranks = []
    for i in pick:
        req = service.parse(np.array([[users[i]]]), hist[i].reshape(1, -1), np.array([[K]]),
                            np.array([[ts[i]]]))
        hit = np.flatnonzero(service.recommend(req).items == targets[i])
        ranks.append(hit[0] if hit.size else K)
    recall, ndcg = recall_ndcg_at(np.array(ranks), K)
    return {"recall_at_10": recall, "ndcg_at_10": ndcg, "test_users": len(pick)}


def golden_requests(count: int, seed: int = 2) -> list[dict]:
    users, hist, _, ts = split_users()
    pick = np.random.default_rng(seed).choice(len(users), size=count, replace=False)
    return [{"user_id": int(users[i]), "history": [int(v) for v in hist[i][-GOLDEN_HISTORY:]],
             "k": 10, "timestamp": int(ts[i])} for i in pick]


def recommend_job(repository: Path, workdir: Path, progress: Progress = lambda _: None,
                  spec: ModelSpec = RECOMMEND) -> BuildJob:
    n_candidates = int(spec.serving.parameters["CANDIDATES"])
    service, deps = in_process(Path(repository), n_candidates)
    progress(f"pipeline over seqrec v{deps['seqrec']} and ranker v{deps['ranker']} "
             f"({n_candidates} candidates); scoring it offline")
    service.catalogue.save(workdir / CATALOGUE)
    metrics = offline_metrics(service)

    def golden(_predict, _files) -> list[dict]:
        out = []
        for r in golden_requests(spec.golden_requests):
            req = service.parse(np.array([[r["user_id"]]]), np.array([r["history"]]),
                                np.array([[r["k"]]]), np.array([[r["timestamp"]]]))
            rec = service.recommend(req)
            out.append({"inputs": r, "expected": {"item_ids": [int(i) for i in rec.items],
                                                  "scores": [float(s) for s in rec.scores],
                                                  "like": [float(s) for s in rec.like]}})
        return out

    manifest = {
        "source": source(spec, depends_on=deps, candidates=n_candidates,
                         data="MovieLens-100k; next-item test split of the sequential recommender"),
        "metrics": metrics,
        "fault": None,
    }
    return BuildJob(spec=spec, manifest=manifest, golden=golden,
                    files={CATALOGUE: workdir / CATALOGUE})
