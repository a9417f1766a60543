"""Each bench command end to end with tiny durations: the commands work, every target answers
without errors, and the doc section is written. Numbers here mean nothing (benchmarks are not
tests)."""
import pytest

from sentinel.cli import main

pytestmark = pytest.mark.integration


def test_bench_serve_runs_every_target_and_perf_analyzer(ranker_repo, tmp_path, capsys):
    doc = tmp_path / "benchmarks.md"
    assert main(["bench", "serve", "--repository", str(ranker_repo), "--duration", "0.4",
                 "--warmup", "0.2", "--concurrency", "2", "--candidates", "16", "--repeat", "2",
                 "--output", str(doc), "--json", str(tmp_path / "serve.json")]) == 0
    text = doc.read_text()
    for label in ("(a) in-process", "(b) Sentinel on Triton", "(c) PyTriton",
                  "(d) gunicorn + Flask"):
        rows = [line for line in text.splitlines() if line.startswith(f"| {label}")]
        assert len(rows) == 1, label
        cells = rows[0].split("|")
        assert int(cells[10]) == 0, f"{label} had failed requests: {rows[0]}"
        assert float(cells[4].replace(",", "")) > 0, rows[0]
        low, high = (float(x.replace(",", "")) for x in cells[5].strip().split("–"))
        assert 0 < low <= float(cells[4].replace(",", "")) <= high, rows[0]  # two runs' range
    assert "perf_analyzer (tritonclient 2.51.0" in text, text
    assert "| 16 | 2 |" in text
    assert "Headline:" in capsys.readouterr().out


def test_bench_monitor_writes_its_section(tmp_path):
    doc = tmp_path / "benchmarks.md"
    assert main(["bench", "monitor", "--models", "3", "--cycles", "3", "--warmup-cycles", "2",
                 "--day-seconds", "120", "--output", str(doc)]) == 0
    text = doc.read_text()
    assert "3 models × 2 versions, 240 per-version sample lines" in text
    assert "| whole cycle |" in text and "Memory after 120 scrapes" in text


def test_bench_swap_fails_no_request(ranker_repo, tmp_path):
    doc = tmp_path / "benchmarks.md"
    assert main(["bench", "swap", "--repository", str(ranker_repo), "--swaps", "2",
                 "--clients", "2", "--candidates", "8", "--settle", "0.5",
                 "--output", str(doc)]) == 0
    row = next(line for line in doc.read_text().splitlines() if line.startswith("| 2 |"))
    assert row.split("|")[4].strip() == "0", row


def test_bench_profile_splits_cpu_per_request_by_process(ranker_repo, tmp_path):
    doc = tmp_path / "benchmarks.md"
    # two setups, one per client protocol, side by side (the default compares three)
    assert main(["bench", "profile", "--repository", str(ranker_repo), "--duration", "1",
                 "--warmup", "0.3", "--concurrency", "1", "--candidates", "16", "--repeat", "1",
                 "--setups", "g:protocol=grpc|h:protocol=http,queue_delay_us=0",
                 "--output", str(doc), "--json", str(tmp_path / "profile.json")]) == 0
    lines = doc.read_text().splitlines()
    heads = [line for line in lines if line.startswith("| candidates |")]
    assert len(heads) == 4, heads  # CPU by process, h against g, Triton's stages, py-spy shares
    for head, want in zip(heads, (("setup", "tritonserver µs/req", "stubs µs/req", "client µs/req"),
                                  ("setup", "server CPU / req", "requests/s", "p50"),
                                  ("setup", "queue µs", "compute input µs", "compute infer µs",
                                   "compute output µs"),
                                  ("setup", "ONNX Runtime %", "metrics %", "pb_utils %",
                                   "stub C++ %", "parse %", "encode %", "batch + respond %",
                                   "other %"))):
        assert all(w in head for w in want), head
    assert "- setup `h`: " in doc.read_text() and "0 µs" in doc.read_text()
    for setup in ("g", "h"):
        cpu, stages, shares = (next(line for line in lines[lines.index(h) + 2:]
                                    if line.startswith(f"| 16 | 1 | {setup} |")).split("|")
                               for h in (heads[0], heads[2], heads[3]))
        # tritonserver, stubs, server, client CPU per request; errors
        assert all(float(cpu[i].replace(",", "")) > 0 for i in (6, 9, 12, 14)), cpu
        assert cpu[15].strip() == "0", cpu
        assert all(float(stages[i].replace(",", "")) > 0 for i in (5, 6, 8)), stages
        assert int(shares[4].replace(",", "")) > 0, shares  # py-spy took samples
    ratio = next(line for line in lines[lines.index(heads[1]) + 2:]
                 if line.startswith("| 16 | 1 | h |")).split("|")
    assert float(ratio[4].split()[0]) > 0, ratio
    reference = next(line for line in lines if line.startswith("Reference:"))
    assert float(reference.split("16 candidates ")[1].split()[0].replace(",", "")) > 0
