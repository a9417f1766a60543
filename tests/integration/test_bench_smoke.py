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
