"""The real zoo builds (once per session, tests/zoo_fixtures.py): seqrec, MiniLM search, the
recommend pipeline, INT8/FP16 variants, and the compression benchmark."""
import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch

from build_scripts.pipeline import BuildError, VariantRejected
from build_scripts.ranker_build import build_ranker
from build_scripts.publish import versions
from build_scripts.specs import RANKER
from python_backend.ranker_service import RankerService
from python_backend.search_service import SearchService, tokenise
from python_backend.seqrec_service import SeqrecService
from sentinel.cli import main
from tests.zoo_fixtures import trained_seqrec, zoo_repo  # noqa: F401  (session fixtures)


def manifest(repo, model, version=1):
    return json.loads((repo / model / str(version) / "manifest.json").read_text())


def test_seqrec_beats_popularity(trained_seqrec):
    m = trained_seqrec.metrics
    assert m.recall_at_10 > m.baseline_recall_at_10 + 0.02
    assert m.ndcg_at_10 > m.baseline_ndcg_at_10 + 0.01
    assert m.test_users == 943


def test_seqrec_version_serves_its_golden_set_without_seen_items(zoo_repo, trained_seqrec):
    man = manifest(zoo_repo, "seqrec")
    assert set(man["artefacts"]) == {"model.onnx", "seqrec.npz", "model.py"}
    assert man["parity"]["max_abs_diff"]["scores"] < 1e-4
    assert man["metrics"]["ndcg_at_10"] > man["metrics"]["baseline_ndcg_at_10"]
    assert man["runtime"]["tensorrt"]["status"] in ("skipped", "built")
    service = SeqrecService(zoo_repo / "seqrec" / "1")
    reqs = [service.parse(np.array([g["inputs"]["history"]], np.int64), np.array([[g["inputs"]["k"]]]))
            for g in man["golden"]]
    for g, (items, scores) in zip(man["golden"], service.recommend(reqs)):
        assert items.tolist() == g["expected"]["item_ids"]
        np.testing.assert_allclose(scores, g["expected"]["scores"], rtol=1e-5, atol=1e-7)
        assert not set(items.tolist()) & set(g["inputs"]["history"])
    warm = [r for r in reqs if r.history.size][:4]
    from python_backend.seqrec_service import pad_histories
    with torch.no_grad():
        logits = trained_seqrec.model(torch.from_numpy(pad_histories([r.history for r in warm], 50)))
    np.testing.assert_allclose(service.runner.run({"history": pad_histories(
        [r.history for r in warm], 50)})["scores"], logits.numpy(), atol=1e-4)


def test_search_matches_the_sentence_transformers_pipeline(zoo_repo):
    """Served path (tokeniser files of the version + ONNX) vs an independent torch pipeline:
    AutoModel + mean pooling + L2 norm, straight from the package directory."""
    from transformers import AutoModel, AutoTokenizer

    from build_scripts.search_model import minilm_dir
    man = manifest(zoo_repo, "search")
    assert man["parity"]["max_cosine_distance"] <= 1e-4
    assert {"model.onnx", "items.npz", "tokenizer.json", "lexical.sqlite3",
            "fusion.json"} <= set(man["artefacts"])
    service = SearchService(zoo_repo / "search" / "1")
    texts = ["space adventure with robots", "Toy Story (1995)", "a" * 3 + " very long " * 200]
    tok = AutoTokenizer.from_pretrained(str(minilm_dir()))
    model = AutoModel.from_pretrained(str(minilm_dir())).eval()
    enc = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        h = model(**enc).last_hidden_state
    m = enc["attention_mask"].unsqueeze(-1).float()
    ref = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=1).numpy()
    got = service.embed(texts)
    assert (1 - (ref * got).sum(1)).max() <= 1e-4
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5) and got.shape == (3, 384)
    for g in man["golden"][:4]:
        r = service.search([service.parse(np.array([[g["inputs"]["query"].encode()]], object), None)])[0]
        assert r.items.tolist() == g["expected"]["item_ids"]
        np.testing.assert_allclose(r.embedding, g["expected"]["embedding"], atol=1e-5)
    assert tokenise(service.tokenizer, ["x"])["input_ids"].dtype == np.int64


def test_search_version_carries_its_measured_methods_and_publish_verdict(zoo_repo):
    from python_backend.fusion import FusionParams
    man = manifest(zoo_repo, "search")
    m = man["metrics"]
    for qs in ("typo_title", "partial_title", "year_genre", "genre_description"):
        for method in ("jaccard", "bm25", "dense", "hybrid"):
            assert 0 <= m[f"{qs}/{method}/ndcg_at_10"] <= 1
    # the measured state of this version (docs/models.md): hybrid within noise of BM25 on typed
    # titles, far above every baseline on year + genre phrases; the default build enforced the rule
    assert m["typo_title/hybrid/ndcg_at_10"] > m["typo_title/dense/ndcg_at_10"] + 0.2
    assert m["typo_title/hybrid/ndcg_at_10"] > m["typo_title/bm25/ndcg_at_10"] - 0.01
    assert m["year_genre/hybrid/ndcg_at_10"] > m["year_genre/jaccard/ndcg_at_10"] + 0.05
    assert m["publish_rule_passed"] == 1.0
    fusion = json.loads((zoo_repo / "search" / "1" / "fusion.json").read_text())
    rule = fusion["tuning"]["publish_rule"]
    assert rule["passed"] is True and rule["enforced"] is True and rule["failures"] == []
    assert rule["mean_over_sets"]["hybrid"] > max(rule["mean_over_sets"][b]
                                                  for b in ("jaccard", "bm25", "dense"))
    kinds = fusion["tuning"]["tuning_queries_by_kind"]
    assert kinds["year_genre"]["attribute"] > 0.9 * sum(kinds["year_genre"].values())
    FusionParams.load(zoo_repo / "search" / "1" / "fusion.json")
    modes = {g["inputs"].get("mode", "hybrid") for g in man["golden"]}
    assert modes == {"hybrid", "dense", "lexical"}


def test_search_refuses_to_publish_when_the_rule_fails(monkeypatch, tmp_path):
    """The refusal path without a second full build: encoding is stubbed and the evaluation fails
    the rule; derived_files raises BelowBaseline and writes neither items nor fusion."""
    from build_scripts import search_build
    from build_scripts.search_eval import Evaluation
    from python_backend.fusion import FusionParams
    params = FusionParams(0.25, 4, 0.05, 0.25, 0.1, 0.34, 0.06, 0.5, 1.0)
    monkeypatch.setattr(search_build, "encode",
                        lambda predict, tokenizer, texts: np.zeros((len(texts), 384), np.float32))
    monkeypatch.setattr(search_build, "evaluate", lambda scores, ids: Evaluation(params, {}, (), ()))
    monkeypatch.setattr(Evaluation, "failures", lambda self: ["typo_title: hybrid is below bm25"])
    job = search_build.search_job(tmp_path)
    with pytest.raises(search_build.BelowBaseline, match="fails the publish rule.*below bm25"):
        job.derived_files(job.reference, tmp_path)
    assert not (tmp_path / "fusion.json").exists() and not (tmp_path / "items.npz").exists()


def test_recommend_records_its_dependencies_and_reproduces_its_golden_set(zoo_repo):
    from build_scripts.recommend_build import in_process
    man = manifest(zoo_repo, "recommend")
    assert man["source"]["depends_on"] == {"seqrec": 1, "ranker": 1}
    assert set(man["artefacts"]) == {"catalogue.npz", "model.py"}
    service, _ = in_process(zoo_repo, 100)
    for g in man["golden"][:4]:
        i = g["inputs"]
        req = service.parse(np.array([[i["user_id"]]]), np.array([i["history"]]), np.array([[i["k"]]]),
                            np.array([[i["timestamp"]]]))
        rec = service.recommend(req)
        assert rec.items.tolist() == g["expected"]["item_ids"]
        np.testing.assert_allclose(rec.like, g["expected"]["like"], rtol=1e-5)
        assert len(rec.items) == 10 and np.all(np.diff(rec.scores) <= 0)


@pytest.fixture
def private_repo(tmp_path, zoo_repo):
    dst = tmp_path / "repo"
    shutil.copytree(zoo_repo, dst)
    return dst


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_ranker_variant_is_published_with_delta_and_speedup(private_repo, trained_ranker, precision):
    p = build_ranker(private_repo, trained=trained_ranker, precision=precision)
    comp = p.manifest["compression"]
    assert p.version == 2 and p.manifest["runtime"]["precision"] == precision
    assert comp["precision"] == precision and comp["metric"] == "auc"
    assert -comp["delta"] <= comp["budget"] and comp["speedup"] > 0 and comp["fp32_ms"] > 0
    assert comp["fp32_metrics"]["auc"] == pytest.approx(p.manifest["metrics"]["auc"] - comp["delta"])
    service = RankerService(p.path)  # the served artefact reproduces the variant's golden set
    g = p.manifest["golden"][0]["inputs"]
    scores = service.score([service.parse(np.array([[g["user_id"]]]), np.array([g["item_ids"]]),
                                          np.array([[g["timestamp"]]]))])[0]
    np.testing.assert_allclose(scores, p.manifest["golden"][0]["expected"]["scores"], rtol=1e-5)


def test_a_variant_over_budget_is_not_published(private_repo, trained_ranker):
    comp = dataclasses.replace(RANKER.compression, budget={"int8": -1.0})  # must *gain* 1.0 AUC
    with pytest.raises(VariantRejected, match="not published") as err:
        build_ranker(private_repo, trained=trained_ranker, precision="int8",
                     spec=dataclasses.replace(RANKER, compression=comp))
    assert err.value.report.precision == "int8" and not err.value.report.accepted
    assert versions(private_repo / "ranker") == [1]


def test_seqrec_and_search_int8_variants(private_repo, trained_seqrec):
    from build_scripts.zoo import build_search, build_seqrec
    s = build_seqrec(private_repo, "int8", trained=trained_seqrec)
    assert s.manifest["compression"]["method"] == "int8-dynamic-per-channel" and s.version == 2
    q = build_search(private_repo, "int8", enforce_publish_rule=False)
    comp = q.manifest["compression"]
    assert q.version == 2 and -comp["delta"] <= comp["budget"]
    assert comp["size_bytes"] < comp["fp32_size_bytes"] / 2
    service = SearchService(q.path)
    r = service.search([service.parse(np.array([[b"toy story"]], object), None)])[0]
    assert r.items.tolist() == q.manifest["golden"][0]["expected"]["item_ids"]


def test_cli_builds_the_pipeline_and_refuses_what_it_cannot_build(private_repo, capsys):
    assert main(["build", "recommend", "--repository", str(private_repo)]) == 0
    assert "recommend v2 [fp32]: recall_at_10" in capsys.readouterr().out
    assert main(["build", "movies", "--repository", str(private_repo)]) == 2
    assert main(["build", "search", "--fault", "nan", "--repository", str(private_repo)]) == 1
    assert main(["build", "recommend", "--precision", "int8", "--repository", str(private_repo)]) == 1
    assert main(["build", "ranker", "--compress", "pruned", "--repository", str(private_repo)]) == 1
    err = capsys.readouterr().err
    assert "--compress (pruned, distilled) is only implemented for search" in err
    assert "buildable: ranker, seqrec, search, recommend" in err and "only implemented for the ranker" in err
    assert "no model of its own" in err
    with pytest.raises(BuildError, match="build seqrec"):
        from build_scripts.zoo import build_recommend
        build_recommend(private_repo.parent / "empty")


def test_compression_bench_writes_the_table(tmp_path, trained_ranker):
    from sentinel.bench.compression import run_bench
    from build_scripts.ranker_build import ranker_job
    out = tmp_path / "compression.md"
    rows = run_bench(["ranker"], out, quick=True,
                     make_job=lambda model, work, quick, progress: ranker_job(trained_ranker, work))
    assert [r.variant for r in rows] == ["fp32", "fp16", "int8", "int8 (static QDQ)"]
    text = out.read_text()
    assert "| ranker | int8 | int8-dynamic | auc |" in text and "speed-up" in text
    assert rows[0].report.delta == 0.0 and rows[0].report.speedup == pytest.approx(1.0)
