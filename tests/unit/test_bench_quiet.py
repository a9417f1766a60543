"""Benchmarks refuse to write the docs from a busy machine (the timings would measure the
neighbours), unless forced or pointed at another file."""
import argparse

from sentinel.bench.commands import ROOT, add_quiet_options, refused
from sentinel.bench.environment import busy_reason, refuse_when_busy, writes_docs

DOCS = ROOT / "docs"


def test_busy_is_judged_per_core_or_by_an_explicit_limit():
    assert busy_reason(0.9, cores=2) is None
    assert "1.20" in busy_reason(1.2, cores=2) and "limit 1.00" in busy_reason(1.2, cores=2)
    assert busy_reason(1.2, cores=2, max_load=2.0) is None
    assert busy_reason(0.3, cores=2, max_load=0.2) is not None


def test_only_the_docs_are_protected(tmp_path):
    assert writes_docs(DOCS / "benchmarks.md", DOCS)
    assert not writes_docs(tmp_path / "benchmarks.md", DOCS)
    assert refuse_when_busy(tmp_path / "b.md", DOCS, force=False, load_1min=8.0, cores=2) is None
    why = refuse_when_busy(DOCS / "benchmarks.md", DOCS, force=False, load_1min=8.0, cores=2)
    assert why and "--force" in why and "8.00" in why
    assert refuse_when_busy(DOCS / "benchmarks.md", DOCS, force=True, load_1min=8.0, cores=2) is None
    assert refuse_when_busy(DOCS / "benchmarks.md", DOCS, force=False, load_1min=0.1, cores=2) is None


def test_the_command_refuses_before_running(capsys):
    p = argparse.ArgumentParser()
    add_quiet_options(p)
    # a limit no machine can be under: the real load average is above it
    args = p.parse_args(["--max-load", "-1"])
    assert refused(args, DOCS / "benchmarks.md")
    assert "not writing" in capsys.readouterr().err
    assert not refused(p.parse_args(["--max-load", "-1", "--force"]), DOCS / "benchmarks.md")
