"""A candidate against the persisted known-good baseline (no detectors, no history needed)."""
import numpy as np

from monitor.baseline import BaselineConfig, compare, summarise


def columns(n, rng, error=0.0, latency=5.0, score_std=0.2, nan=0.0):
    return {"error_rate": np.clip(rng.normal(error, 0.01 if error else 0.0, n), 0, 1),
            "latency_ms": rng.normal(latency, latency * 0.1, n),
            "nan_rate": np.full(n, nan), "score_mean": rng.normal(0.5, 0.01, n),
            "score_std": rng.normal(score_std, 0.01, n)}


def test_a_version_failing_30_percent_is_worse_than_a_clean_baseline():
    rng = np.random.default_rng(101)
    base = summarise(columns(120, rng), np.full(120, 100.0))
    findings = compare(base, columns(10, rng, error=0.3), np.full(10, 100.0))
    assert [f.signal for f in findings] == ["error_rate"]
    assert findings[0].recent_mean > 0.25 and findings[0].p_value < 1e-6


def test_latency_nan_and_constant_scores_are_each_found():
    rng = np.random.default_rng(102)
    base = summarise(columns(120, rng), np.full(120, 100.0))
    assert {f.signal for f in compare(base, columns(25, rng, latency=11.0), np.full(25, 100.0))} \
        == {"latency_ms"}
    assert compare(base, columns(15, rng, latency=11.0), np.full(15, 100.0)) == []  # too few yet
    assert "nan_rate" in {f.signal for f in compare(base, columns(15, rng, nan=0.5),
                                                    np.full(15, 100.0))}
    constant = compare(base, columns(15, rng, score_std=0.0), np.full(15, 100.0))
    assert [(f.signal, f.direction) for f in constant] == [("score_std", "down")]


def test_a_clean_candidate_and_a_too_short_one_are_not_findings():
    rng = np.random.default_rng(103)
    base = summarise(columns(120, rng), np.full(120, 100.0))
    for _ in range(50):
        assert compare(base, columns(30, rng), np.full(30, 100.0)) == []
    short = BaselineConfig().min_samples - 1
    assert compare(base, columns(short, rng, error=0.5), np.full(short, 100.0)) == []


def test_small_practical_effects_are_not_findings_even_when_significant():
    rng = np.random.default_rng(104)
    base = summarise(columns(300, rng, latency=5.0), np.full(300, 1000.0))
    assert compare(base, columns(300, rng, latency=6.0), np.full(300, 1000.0)) == []  # 1.2x


def test_reset_and_idle_intervals_are_left_out():
    rng = np.random.default_rng(105)
    cols = columns(40, rng)
    cols["error_rate"][:5] = 1.0  # restart intervals: not data
    reset = np.zeros(40, bool)
    reset[:5] = True
    base = summarise(cols, np.full(40, 100.0), reset)
    assert base["failures"] == 0.0 and base["signals"]["error_rate"]["n"] == 35


def test_a_few_slow_seconds_do_not_make_a_slower_version():
    rng = np.random.default_rng(106)
    base = summarise(columns(120, rng), np.full(120, 100.0))
    cols = columns(25, rng)
    cols["latency_ms"][:6] = 20.0  # a burst on the machine: the mean doubles, the median does not
    assert compare(base, cols, np.full(25, 100.0)) == []
