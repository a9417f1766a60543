import argparse
import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pytest

from monitor.detect import DetectorConfig
from sentinel.bench.detect import BENCH_BEGIN, BENCH_END, default_nab_dir
from sentinel.detect_cli import (
    SeriesFileError,
    bench_detect_main,
    configure_bench_detect_parser,
    configure_detect_parser,
    detect_main,
    parse_series_rows,
)
from sentinel.bench.detect_eval import (
    NAB_TUNING_FILES,
    NabError,
    NabSeries,
    nab_half,
    evaluate_nab,
    load_cost_profile,
    load_nab,
    score_detections,
    summarize,
)

SHARED_NAB = Path(__file__).resolve().parents[3] / "shared" / "data" / "nab"

# ------------------------------------------------------------------ tiny NAB

TINY_CONFIG = DetectorConfig(
    warmup=30, baseline_window=100, test_window=5, persistence=2, min_effect_rel=0.2
)
START = dt.datetime(2014, 1, 1)


def stamp(i: int) -> str:
    return (START + dt.timedelta(minutes=5 * i)).strftime("%Y-%m-%d %H:%M:%S")


def write_series(root: Path, name: str, values) -> None:
    path = root / "data" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["timestamp,value"] + [f"{stamp(i)},{v}" for i, v in enumerate(values)]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def tiny_nab(tmp_path: Path) -> Path:
    # a: flat 10 -> flat 20 at 150, labelled window [140, 199]: hit.
    # b: flat 5 -> flat 8 at 100 (unlabelled: a FP), window [200, 250] stays flat: a miss.
    write_series(tmp_path, "cat/a.csv", [10.0] * 150 + [20.0] * 150)
    write_series(tmp_path, "cat/b.csv", [5.0] * 100 + [8.0] * 200)
    labels = {
        "cat/a.csv": [[stamp(140) + ".000000", stamp(199) + ".000000"]],
        "cat/b.csv": [[stamp(200) + ".000000", stamp(250) + ".000000"]],
    }
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "combined_windows.json").write_text(json.dumps(labels))
    return tmp_path


def test_load_nab_maps_label_timestamps_to_indices(tiny_nab):
    series = load_nab(tiny_nab)
    assert [s.name for s in series] == ["cat/a.csv", "cat/b.csv"]
    assert series[0].windows == ((140, 199),)
    assert series[1].windows == ((200, 250),)
    assert series[0].values.size == 300
    assert [s.name for s in load_nab(tiny_nab, ["*/b.csv"])] == ["cat/b.csv"]


def test_nab_scoring_on_tiny_dataset_matches_hand_computation(tiny_nab):
    summary, scores = evaluate_nab(load_nab(tiny_nab), TINY_CONFIG)
    # The median of the 5-sample test window reaches the new level at step + 2; with
    # persistence 2 the alarm is raised at step + 3: a at 153, b at 103.
    assert [s.delays for s in scores] == [(13,), ()]
    assert [s.false_positives for s in scores] == [0, 1]
    assert summary.windows == 2 and summary.hits == 1 and summary.false_positives == 1
    assert summary.precision == 0.5
    assert summary.recall == 0.5
    assert summary.f1 == 0.5
    assert summary.median_delay == 13
    assert summary.fp_per_1000 == pytest.approx(1000 / 600)
    # NAB standard profile, probation = 45 samples:
    # a: window width 60, detection 153 -> position -(199 - 153 + 1) / 60 = -47/60,
    #    reward (2 / (1 + e^(5 * -47/60)) - 1) / (2 / (1 + e^-5) - 1) = 0.97401;
    # b: FP before any window costs 0.11; the missed window costs 1.
    # raw = 0.97401 - 1.11; null = -2, perfect = +2 -> 100 * (raw + 2) / 4 = 46.60.
    assert summary.nab_score == pytest.approx(46.60, abs=0.01)


def test_score_detections_counts_first_hit_only_and_nab_costs():
    result = score_detections([5, 12, 15, 30, 55, 80], [(10, 19), (50, 59)], 100)
    assert result.hits == 2
    assert result.false_positives == 3  # 5, 30, 80; 15 is a second hit of window 0
    assert result.delays == (2, 5)
    # Probation is 15 samples, so NAB drops 5 and 12 and scores window 0 by 15:
    #   windows: 2 * (2 / (1 + e^-2.5) - 1) / (2 / (1 + e^-5) - 1) = 2 * 0.85979
    #   30: 11/9 past window 0 -> 0.11 * (2 / (1 + e^(5 * 11/9)) - 1) = -0.10951
    #   80: 21/9 past window 1 -> 0.11 * (2 / (1 + e^(5 * 21/9)) - 1) = -0.11000
    assert result.nab_raw == pytest.approx(2 * 0.85979 - 0.10951 - 0.11000, abs=1e-4)


def test_summary_of_nothing_detected():
    summary = summarize([score_detections([], [(10, 20)], 100)])
    assert summary.recall == 0.0 and math.isnan(summary.precision)
    assert summary.nab_score == 0.0  # NAB's null detector


def test_missing_labels_is_a_clear_error(tmp_path):
    with pytest.raises(NabError, match="labels not found"):
        load_nab(tmp_path)


def test_cost_profile_defaults_without_config(tmp_path):
    assert load_cost_profile(tmp_path).fp_weight == 0.11


# ------------------------------------------------------------------ sentinel detect


def run_detect(capsys, *argv):
    parser = argparse.ArgumentParser()
    configure_detect_parser(parser)
    code = detect_main(parser.parse_args([str(a) for a in argv]))
    out, err = capsys.readouterr()
    return code, out, err


def step_lines(n_before=300, n_after=100):
    rng = np.random.default_rng(0)
    values = np.r_[rng.normal(100, 2, n_before), rng.normal(200, 2, n_after)]
    return [f"{v:.3f}" for v in values]


def test_detect_main_prints_json_for_headerless_column(tmp_path, capsys):
    lines = step_lines()
    lines[50] = ""  # missing cells are skipped
    lines[60] = "nan"
    path = tmp_path / "series.csv"
    path.write_text("\n".join(lines) + "\n")
    code, out, _ = run_detect(capsys, path)
    assert code == 0
    assert json.loads(out)["change_points"] == [300]


def test_detect_main_csv_format_and_header_and_signal(tmp_path, capsys):
    path = tmp_path / "series.csv"
    path.write_text("latency\n" + "\n".join(step_lines()) + "\n")
    code, out, _ = run_detect(capsys, path, "--format", "csv", "--signal", "latency_ms")
    assert code == 0
    assert out == "300\n"


def test_detect_main_reads_nab_format(tmp_path, capsys):
    rows = [f"{stamp(i)},{v}" for i, v in enumerate(step_lines())]
    path = tmp_path / "nab.csv"
    path.write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    code, out, _ = run_detect(capsys, path)
    assert (code, json.loads(out)["change_points"]) == (0, [300])


def test_detect_main_missing_file_exits_2(tmp_path, capsys):
    code, out, err = run_detect(capsys, tmp_path / "nope.csv")
    assert code == 2 and out == ""
    assert "no such file" in err and "nope.csv" in err


@pytest.mark.parametrize(
    "text, message",
    [
        ("name,host\na,b\nc,d\n", "no numeric column"),
        ("", "empty file"),
        ("1.0\n2.0\nabc\n", "line 3: 'abc' is not a number"),
        ("a,b\n1,2\n3,4\n", "2 numeric columns"),
    ],
)
def test_detect_main_unusable_file_exits_2(tmp_path, capsys, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    code, out, err = run_detect(capsys, path)
    assert code == 2 and out == ""
    assert message in err


def test_parse_series_rows_missing_tokens_and_ragged_rows():
    rows = [["timestamp", "value"], ["t0", "1.5"], ["t1", ""], ["t2", "NaN"], ["t3"], ["t4", "2"]]
    values = parse_series_rows(rows)
    np.testing.assert_array_equal(np.isnan(values), [False, True, True, True, False])
    assert values[0] == 1.5 and values[4] == 2.0
    with pytest.raises(SeriesFileError):
        parse_series_rows([])


# ------------------------------------------------------------------ sentinel bench detect


def bench_args(*argv):
    parser = argparse.ArgumentParser()
    configure_bench_detect_parser(parser)
    return parser.parse_args([str(a) for a in argv])


def test_bench_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv("SENTINEL_NAB_DIR", raising=False)
    assert default_nab_dir({}) == Path(__file__).resolve().parents[3] / "shared" / "data" / "nab"
    assert default_nab_dir({"SENTINEL_NAB_DIR": str(tmp_path)}) == tmp_path
    args = bench_args()
    assert args.out.name == "detector.md" and args.out.parent.name == "docs"
    assert args.seeds >= 1


def test_bench_without_nab_still_runs_synthetic_part(tmp_path, capsys):
    out = tmp_path / "detector.md"
    stale = f"{BENCH_BEGIN}\nSTALE RESULTS\n{BENCH_END}"
    out.write_text(f"# Detector\n\nprose\n\n{stale}\n\nmore prose\n")
    args = bench_args("--nab-dir", tmp_path / "absent", "--out", out, "--seeds", 1,
                      "--day-samples", 3600, "--clean-days", 1)
    assert bench_detect_main(args) == 0
    printed = capsys.readouterr().out
    assert "NAB not found" in printed
    assert "| error_rate_jump | error_rate |" in printed
    text = out.read_text()
    assert text.startswith("# Detector\n\nprose\n") and text.rstrip().endswith("more prose")
    assert "STALE RESULTS" not in text and "#### Synthetic fault traces" in text
    tuning, evaluation = text.split("### Evaluation results")
    assert "tuning seeds 0" in tuning and "evaluation seeds 10000" in evaluation
    assert "| +2% | 100 |" in evaluation and "within 20 %" in evaluation


@pytest.mark.skipif(not SHARED_NAB.is_dir(), reason=f"NAB data not present at {SHARED_NAB}")
def test_bench_on_a_few_nab_files(tmp_path, capsys):
    out = tmp_path / "detector.md"
    args = bench_args("--nab-dir", SHARED_NAB, "--out", out, "--seeds", 1, "--day-samples", 3600,
                      "--clean-days", 1,
                      "--nab-series", "realKnownCause/ec2_request_latency_system_failure.csv",
                      "--nab-series", "realAWSCloudwatch/ec2_cpu_utilization_53ea38.csv")
    assert bench_detect_main(args) == 0
    tuning, evaluation = out.read_text().split("### Evaluation results")
    for half in (tuning, evaluation):
        assert "1 series from" in half
        row = next(line for line in half.splitlines() if line.startswith("| alert (Anomaly"))
        assert row.split("|")[2].strip() == "1"


def test_nab_halves_are_disjoint_and_cover_every_file():
    names = ["a/1.csv", "a/2.csv", NAB_TUNING_FILES[0]]
    series = [NabSeries(n, np.zeros(3), ()) for n in names]
    tuning, evaluation = nab_half(series, "tuning"), nab_half(series, "evaluation")
    assert [s.name for s in tuning] == [NAB_TUNING_FILES[0]]
    assert [s.name for s in evaluation] == ["a/1.csv", "a/2.csv"]
    with pytest.raises(ValueError):
        nab_half(series, "both")


@pytest.mark.skipif(not SHARED_NAB.is_dir(), reason=f"NAB data not present at {SHARED_NAB}")
def test_nab_split_is_half_of_each_category():
    names = sorted(load_json_names(SHARED_NAB))
    assert set(NAB_TUNING_FILES) <= set(names)
    for category in {n.split("/")[0] for n in names}:
        in_category = [n for n in names if n.startswith(category + "/")]
        tuned = [n for n in in_category if n in NAB_TUNING_FILES]
        assert len(tuned) == (len(in_category) + 1) // 2


def load_json_names(root):
    return json.loads((root / "labels" / "combined_windows.json").read_text())


# ------------------------------------------------------------------ short, long, wide series


def test_detect_a_30_point_series_online_and_offline(tmp_path, capsys):
    path = tmp_path / "short.csv"
    path.write_text("\n".join(["10"] * 15 + ["30"] * 15) + "\n")
    code, out, err = run_detect(capsys, path)
    assert code == 0 and json.loads(out)["change_points"] == [15]
    pytest.importorskip("ruptures")
    code, out, _ = run_detect(capsys, path, "--mode", "offline")
    assert code == 0 and json.loads(out)["change_points"] == [15]


def test_detect_a_10000_point_series_offline_finds_each_step(tmp_path, capsys):
    pytest.importorskip("ruptures")
    rng = np.random.default_rng(20_001)
    values = np.concatenate([rng.normal(m, 1.0, 2500) for m in (0, 5, 0, 5)])
    path = tmp_path / "long.csv"
    path.write_text("\n".join(f"{v:.4f}" for v in values) + "\n")
    code, out, _ = run_detect(capsys, path, "--mode", "offline")
    found = json.loads(out)["change_points"]
    assert code == 0 and len(found) == 3
    assert all(abs(f - e) <= 5 for f, e in zip(found, (2500, 5000, 7500)))


def test_offline_mode_without_ruptures_says_what_is_missing(tmp_path, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ruptures(name, *args, **kwargs):
        if name == "ruptures":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ruptures)
    path = tmp_path / "s.csv"
    path.write_text("1\n2\n3\n4\n")
    code, out, err = run_detect(capsys, path, "--mode", "offline")
    assert code == 2 and out == "" and "ruptures" in err


def test_two_numeric_columns_are_refused_unless_one_is_chosen(tmp_path, capsys):
    path = tmp_path / "two.csv"
    rows = [f"{100 + (i >= 300) * 100 + (i % 3)},{i % 7}" for i in range(400)]
    path.write_text("latency,errors\n" + "\n".join(rows) + "\n")
    code, out, err = run_detect(capsys, path)
    assert code == 2 and "--column" in err and "does not detect jointly" in err
    code, out, _ = run_detect(capsys, path, "--column", "latency")
    assert code == 0 and json.loads(out)["change_points"] == [300]
    code, _, err = run_detect(capsys, path, "--column", "nope")
    assert code == 2 and "no column 'nope'" in err


def test_a_numeric_timestamp_column_is_not_a_series(tmp_path, capsys):
    path = tmp_path / "epoch.csv"
    rows = [f"{1700000000 + i},{10 + 10 * (i >= 200)}" for i in range(300)]
    path.write_text("timestamp,latency\n" + "\n".join(rows) + "\n")
    code, out, _ = run_detect(capsys, path)
    assert code == 0 and json.loads(out)["change_points"] == [200]
