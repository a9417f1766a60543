"""The pipeline's compressed variants (`--compress`) on a tiny random BERT encoder: a pruned model is
exported, checked against its own torch forward, judged against the FP32 original under its own
budget, and published (alone or + INT8) only within it, the published artefact being the one the
build's derived files were computed with."""
import dataclasses

import numpy as np
import pytest

from build_scripts import prune
from build_scripts.compress import Compressed
from build_scripts.pipeline import BuildError, BuildJob, VariantRejected, run_pipeline, torch_predict
from build_scripts.publish import versions
from build_scripts.specs import SEARCH, CompressionSpec, TensorSpec
from python_backend.runners import OrtRunner
from tests.unit.test_prune_distill import HIDDEN, batch, tiny_encoder

EXPORT = dataclasses.replace(SEARCH.export, outputs=(TensorSpec("embedding", "float32",
                                                                ("batch", HIDDEN)),))
HELD_OUT = batch(seed=11, n=32, t=12)


def tiny_job(budget: dict[str, float]) -> BuildJob:
    teacher = tiny_encoder()
    reference = torch_predict(teacher, EXPORT)
    truth = reference(HELD_OUT)["embedding"]
    spec = dataclasses.replace(SEARCH, export=EXPORT, compression=CompressionSpec(
        metric="agreement", budget=budget, per_channel=True))

    def evaluate(predict):  # how close an artefact's embeddings stay to the original's
        return {"agreement": float((predict(HELD_OUT)["embedding"] * truth).sum(1).mean())}

    def pruned(progress):
        scores = prune.importance(teacher, [batch(seed=12, n=32)])
        return Compressed(prune.prune(teacher, scores, prune.PruneConfig(heads=2, ffn=8)),
                          "pruned-2of4-heads-8of32-ffn", {"heads_kept": 2})

    def derived_files(predict, work):
        np.save(work / "items.npy", predict(HELD_OUT)["embedding"])
        return {"items.npy": work / "items.npy"}

    return BuildJob(spec=spec, manifest={"source": "tiny"}, model=teacher, reference=reference,
                    cases={"real[0]": batch(1), "random[0]": batch(4, n=3, t=5)},
                    evaluate=evaluate, derived_files=derived_files,
                    golden=lambda predict, files: [], bench_inputs=batch(5, n=1, t=8),
                    calibration=[batch(13, n=8)],
                    compressors={"pruned": pruned})


def test_a_pruned_variant_over_budget_is_refused_and_one_within_is_published(tmp_path):
    # pruning half the heads and 3/4 of the FFN loses some agreement: more than a zero budget
    with pytest.raises(VariantRejected, match="pruned\\+int8 variant .*not published") as err:
        run_pipeline(tiny_job({"pruned+int8": 0.0}), tmp_path, "int8", compression="pruned")
    report = err.value.report
    assert report.variant == "pruned+int8" and report.compression == "pruned" and not report.accepted
    assert report.delta < 0 and report.method == "pruned-2of4-heads-8of32-ffn + int8-dynamic-per-channel"
    assert versions(tmp_path / "search") == []

    p = run_pipeline(tiny_job({"pruned": 0.2}), tmp_path, "fp32", compression="pruned")
    comp = p.manifest["compression"]
    assert p.version == 1 and comp["variant"] == "pruned" and comp["accepted"]
    assert -0.2 <= comp["delta"] < 0 and comp["fp32"] == pytest.approx(1.0, abs=1e-5)
    assert comp["model"] == {"method": "pruned-2of4-heads-8of32-ffn", "heads_kept": 2}
    assert comp["size_bytes"] < comp["fp32_size_bytes"] and set(comp["latency"]) == {"fp32", "pruned"}
    assert p.manifest["runtime"]["compression"] == "pruned"
    assert p.manifest["parity"]["student_vs_torch"]["max_abs_diff"]["embedding"] < 1e-4
    # what is served is the pruned model, and the derived files were made with it
    served = OrtRunner(p.path / "model.onnx").run(HELD_OUT)["embedding"]
    np.testing.assert_allclose(np.load(p.path / "items.npy"), served, atol=1e-5)
    assert p.manifest["metrics"]["agreement"] == pytest.approx(comp["value"])
    from build_scripts.zoo import headline
    assert headline(p).startswith("search v1 [pruned]: ") and "pruned Δagreement -0." in headline(p)


def test_an_unknown_compression_is_refused_before_anything_is_built(tmp_path):
    with pytest.raises(BuildError, match="no 'distilled' variant; it has pruned"):
        run_pipeline(tiny_job({}), tmp_path, "fp32", compression="distilled")
    with pytest.raises(BuildError, match="no accuracy budget for pruned .*nothing to judge"):
        run_pipeline(tiny_job({"int8": 1.0}), tmp_path, "fp32", compression="pruned")
    assert versions(tmp_path / "search") == []


def test_the_compression_bench_has_rows_for_the_pruned_model_alone_and_with_int8(tmp_path):
    from sentinel.bench.compression import measure, render
    budget = {"fp16": 0.01, "int8": 0.05, "pruned": 0.2, "pruned+int8": 0.2}
    rows = measure(tiny_job(budget), tmp_path, rounds=1)
    by = {r.variant: r for r in rows}
    assert list(by) == ["fp32", "fp16", "int8", "int8 (static QDQ)", "pruned", "pruned + int8"]
    assert by["pruned"].report.variant == "pruned" and by["pruned"].report.budget == 0.2
    assert by["pruned + int8"].method == "pruned-2of4-heads-8of32-ffn + int8-dynamic-per-channel"
    assert by["pruned"].report.delta < 0 and by["pruned"].report.size_bytes < by["fp32"].report.size_bytes
    assert "| search | pruned + int8 | pruned-2of4-heads-8of32-ffn + int8" in render(rows, "")
