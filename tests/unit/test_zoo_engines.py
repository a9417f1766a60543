"""What can be checked of the TensorRT stage, runner selection, compression gating and the zoo's
generated configs without a GPU; the real engine build runs only where TensorRT and a GPU exist."""
from pathlib import Path

import numpy as np
import pytest

from build_scripts import compress, trt_stage
from build_scripts.specs import RANKER, SEARCH, SEQREC, SPECS, AxisRange, CompressionSpec
from build_scripts.serving_config import model_config
from sentinel.triton_config import read_pbtxt
from python_backend import runners, trt_runner
from sentinel.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def test_every_dynamic_axis_has_a_range_and_profiles_follow_the_spec():
    for spec in SPECS.values():
        if spec.export is None:
            continue
        for t in (*spec.export.inputs, *spec.export.outputs):
            assert set(t.dynamic_axes().values()) <= set(spec.export.axes), (spec.name, t.name)
    assert trt_stage.profile_shapes(SEARCH.export) == {
        "input_ids": ((1, 1), (1, 16), (32, 256)), "attention_mask": ((1, 1), (1, 16), (32, 256))}
    assert trt_stage.profile_shapes(SEQREC.export) == {"history": ((1, 50), (1, 50), (32, 50))}
    assert trt_stage.profile_shapes(RANKER.export)["dense"] == ((1, 21), (256, 21), (32_000, 21))
    with pytest.raises(ValueError):
        AxisRange(4, 2, 8)


def test_tensorrt_plan_config_is_generated_from_the_export_spec():
    cfg = trt_stage.tensorrt_plan_config("search_trt", SEARCH.export)
    assert cfg.platform == "tensorrt_plan" and not cfg.backend
    assert cfg.max_batch_size == 32 and cfg.default_model_filename == "model.plan"
    assert [(i.name, list(i.dims)) for i in cfg.input] == [("input_ids", [-1]), ("attention_mask", [-1])]
    assert list(cfg.output[0].dims) == [384]
    assert cfg.instance_group[0].kind == cfg.instance_group[0].KIND_GPU
    assert list(trt_stage.tensorrt_plan_config("seqrec", SEQREC.export).input[0].dims) == [50]


def test_the_stage_says_plainly_that_it_skipped_and_builds_when_it_can(tmp_path):
    skipped = trt_stage.engine_stage(SEQREC.export, tmp_path / "m.onnx", "fp16", tmp_path / "p",
                                     probe=lambda: "no CUDA GPU is visible")
    assert skipped.status == "skipped" and skipped.plan is None
    assert skipped.reason.startswith("TensorRT stage skipped: no CUDA GPU") and "\n" not in skipped.reason
    calls = []

    def fake_build(onnx_path, spec, precision, plan_path):
        calls.append((onnx_path.name, precision))
        plan_path.write_bytes(b"engine")
        return plan_path

    built = trt_stage.engine_stage(SEQREC.export, tmp_path / "m.onnx", "int8", tmp_path / "model.plan",
                                   probe=lambda: None, build=fake_build)
    assert built.status == "built" and built.plan.read_bytes() == b"engine"
    assert calls == [("m.onnx", "int8")] and built.as_dict()["plan"] == "model.plan"


def test_this_host_has_no_tensorrt_and_says_why():
    if trt_runner.tensorrt_available():
        pytest.skip("TensorRT and a GPU are present here")
    reason = trt_stage.unavailable_reason()
    assert reason and ("TensorRT is not installed" in reason or "no CUDA GPU" in reason)


class FakeTrt:
    name = "tensorrt"

    def __init__(self, plan, options):
        self.plan = plan


def test_runner_selection_prefers_a_plan_only_where_tensorrt_runs(tmp_path, monkeypatch):
    (tmp_path / "model.plan").write_bytes(b"not an engine")
    (tmp_path / "model.onnx").write_bytes(b"")
    monkeypatch.setattr(trt_runner, "TrtRunner", FakeTrt)
    monkeypatch.setattr(runners, "OrtRunner", lambda path, options: ("ort", path.name))
    chosen = runners.select_runner(tmp_path, gpu_available=lambda: True)
    assert isinstance(chosen, FakeTrt) and chosen.plan.name == "model.plan"
    assert runners.select_runner(tmp_path, gpu_available=lambda: False) == ("ort", "model.onnx")
    (tmp_path / "model.onnx").unlink()
    with pytest.raises(runners.RunnerError, match="needs TensorRT and a CUDA GPU"):
        runners.select_runner(tmp_path, gpu_available=lambda: False)


def test_default_selection_on_this_host_is_onnx_runtime(tmp_path, monkeypatch):
    monkeypatch.setattr(trt_runner, "cuda_device_count", lambda: 0)
    (tmp_path / "model.plan").write_bytes(b"x")
    (tmp_path / "model.onnx").write_bytes(b"")
    monkeypatch.setattr(runners, "OrtRunner", lambda path, options: "ort")
    assert runners.select_runner(tmp_path) == "ort"


def _lat(ms):
    return compress.Latency(ms, ms, 1)


def test_judge_accepts_within_budget_and_refuses_beyond_it_or_nan():
    spec = CompressionSpec(metric="auc", budget={"int8": 0.01})
    lat = {"fp32": _lat(2.0), "int8": _lat(1.0)}
    ok = compress.judge("int8", spec, {"auc": 0.80}, {"auc": 0.795}, lat, 10, 40)
    assert ok.accepted and ok.delta == pytest.approx(-0.005) and ok.speedup == 2.0
    assert compress.judge("int8", spec, {"auc": 0.80}, {"auc": 0.85}, lat, 10, 40).accepted
    assert not compress.judge("int8", spec, {"auc": 0.80}, {"auc": 0.78}, lat, 10, 40).accepted
    assert not compress.judge("int8", spec, {"auc": 0.80}, {"auc": float("nan")}, lat, 10, 40).accepted
    with pytest.raises(compress.CompressionError, match="no accuracy budget"):
        compress.judge("fp16", spec, {"auc": 0.8}, {"auc": 0.8}, {**lat, "fp16": _lat(1)}, 1, 1)


def test_a_compressed_variant_is_judged_under_its_own_budget_and_records_watched_deltas():
    spec = CompressionSpec(metric="hyb", budget={"int8": 0.02, "distilled+int8": 0.01},
                           watch=("dense", "missing"))
    lat = {"fp32": _lat(4.0), "distilled+int8": _lat(0.5)}
    base = {"hyb": 0.98, "dense": 0.62}
    r = compress.judge("int8", spec, base, {"hyb": 0.975, "dense": 0.58}, lat, 10, 90,
                       compression="distilled", structure="distilled-3of6-layers")
    assert r.accepted and r.variant == "distilled+int8" and r.budget == 0.01 and r.speedup == 8.0
    assert r.method == "distilled-3of6-layers + int8-dynamic" and r.compression == "distilled"
    assert r.watched == {"dense": {"fp32": 0.62, "value": 0.58, "delta": pytest.approx(-0.04)}}
    # the int8 budget (0.02) does not apply to the distilled student
    assert not compress.judge("int8", spec, base, {"hyb": 0.965, "dense": 0.62}, lat, 10, 90,
                              compression="distilled").accepted
    with pytest.raises(compress.CompressionError, match="no accuracy budget for pruned"):
        compress.judge("fp32", spec, base, base, {**lat, "pruned": _lat(1)}, 1, 1, compression="pruned")


def test_side_by_side_interleaves_and_counts_runs():
    order = []
    runs = {name: (lambda n: lambda _inputs: order.append(n))(name) for name in ("a", "b")}
    lat = compress.side_by_side(runs, {}, rounds=2, per_round=3)
    assert lat["a"].runs == lat["b"].runs == 6
    assert order[2:] == ["a"] * 3 + ["b"] * 3 + ["b"] * 3 + ["a"] * 3  # after one warm-up each


def test_committed_zoo_configs_are_what_the_generator_writes():
    for name in ("seqrec", "search", "recommend"):
        committed = read_pbtxt(ROOT / "model_repository" / name / "config.pbtxt")
        assert committed == model_config(name, SPECS[name].serving), name
        assert (ROOT / "model_repository" / name / "model.py").is_file()


def test_cli_knows_the_zoo_precisions_and_the_compression_bench():
    args = build_parser().parse_args(["build", "seqrec", "--precision", "int8"])
    assert (args.model, args.precision) == ("seqrec", "int8")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["build", "ranker", "--precision", "int4"])
    bench = build_parser().parse_args(["bench", "compression", "--model", "ranker", "--quick"])
    assert bench.model == ["ranker"] and bench.quick
    args = build_parser().parse_args(["build", "search", "--compress", "distilled", "--precision", "int8"])
    assert (args.compress, args.precision) == ("distilled", "int8")
    assert build_parser().parse_args(["build", "search"]).compress is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["build", "search", "--compress", "sparse"])


@pytest.mark.gpu
@pytest.mark.skipif(not trt_runner.tensorrt_available(), reason="needs TensorRT and a CUDA GPU")
def test_real_engine_matches_onnx_runtime(tmp_path):
    import torch

    from build_scripts.export import export_onnx
    from build_scripts.specs import ExportSpec, TensorSpec, Tolerance
    spec = ExportSpec(inputs=(TensorSpec("x", "float32", ("batch", 16)),),
                      outputs=(TensorSpec("y", "float32", ("batch", 4)),),
                      tolerance={"y": Tolerance(1e-3, 1e-3)}, axes={"batch": AxisRange(1, 8, 64)})
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    x = np.random.default_rng(0).random((8, 16), dtype=np.float32)
    onnx_path = export_onnx(model, spec, {"x": x}, tmp_path / "m.onnx")
    for precision, atol in (("fp32", 1e-4), ("fp16", 2e-2)):
        plan = trt_stage.build_engine(onnx_path, spec, precision, tmp_path / f"{precision}.plan",
                                      timing_cache=tmp_path / "timing.cache")
        runner = trt_runner.TrtRunner(plan)
        for n in (1, 8, 64):
            xs = np.random.default_rng(n).random((n, 16), dtype=np.float32)
            want = runners.OrtRunner(onnx_path).run({"x": xs})["y"]
            np.testing.assert_allclose(runner.run({"x": xs})["y"], want, atol=atol)
        runner.close()
    assert (tmp_path / "timing.cache").stat().st_size > 0
