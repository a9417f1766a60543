import dataclasses
import math
import statistics

import pytest

from monitor.scrape import parse_metrics
from monitor.store import SeriesStore
from sentinel.bench.monitor import MonitorOptions, measure_cycle, simulate_day
from sentinel.bench.synthetic_metrics import metrics_text


def test_synthetic_page_parses_into_every_version_with_a_histogram():
    scrape = parse_metrics(metrics_text(models=3, versions=2, step=10), ts=10.0)
    assert scrape.ok and len(scrape.samples) == 6
    s = scrape.sample("model_001", "2")
    assert s.success > 0 and s.requests == s.success and len(s.failures) == 4
    assert s.score is not None and len(s.score.bounds) == 21 and s.score.counts[-1] == s.score.count


def test_counters_advance_so_the_store_derives_traffic():
    store = SeriesStore(clock=lambda: 20.0)
    for step in (10, 11, 12):
        store.add(parse_metrics(metrics_text(models=2, versions=1, step=step), ts=float(step)))
    point = store.latest("model_000", "1")
    assert point is not None and point.request_rate > 0 and 0 < point.score_mean < 1


def test_cycle_cost_is_the_median_of_the_measured_cycles_and_of_their_parts(monkeypatch):
    """measure_cycle on a CPU clock that only moves where the test says: cycle k costs k + 1 ms
    of its own, every parse 0.5 ms, every store add 0.25 ms. The report must be those numbers
    over the measured cycles only (not the warm-up), with the poller cycled warm-up + measured
    times."""
    import types

    import sentinel.bench.monitor as bench
    from monitor.poller import Poller

    cpu = [0.0]
    calls = []
    real_cycle, real_parse, real_add = Poller.cycle, bench.parse_metrics, SeriesStore.add

    def cycle(self):
        calls.append(None)
        cpu[0] += len(calls) * 1e-3
        return real_cycle(self)

    def parse(*a, **kw):
        cpu[0] += 0.5e-3
        return real_parse(*a, **kw)

    def add(self, scrape):
        cpu[0] += 0.25e-3
        return real_add(self, scrape)

    monkeypatch.setattr(Poller, "cycle", cycle)
    monkeypatch.setattr(bench, "parse_metrics", parse)
    monkeypatch.setattr(SeriesStore, "add", add)
    monkeypatch.setattr(bench, "time", types.SimpleNamespace(process_time=lambda: cpu[0]))
    opts = MonitorOptions(models=2, versions=2, cycles=5, warmup_cycles=3)
    cost, lines, size = measure_cycle(opts)
    assert len(calls) == opts.warmup_cycles + opts.cycles
    own = [k + 1.0 for k in range(opts.warmup_cycles, opts.warmup_cycles + opts.cycles)]  # ms
    assert cost.median_ms == pytest.approx(statistics.median(own) + 0.75)
    assert cost.max_ms == cost.p99_ms == pytest.approx(max(own) + 0.75)
    assert cost.parse_ms == pytest.approx(0.5) and cost.store_ms == pytest.approx(0.25)
    assert cost.rest_ms == pytest.approx(statistics.median(own))
    assert lines == 2 * 2 * 40 and size == len(metrics_text(2, 2, 1).encode())


def test_cycle_and_day_measurements_run_on_a_small_fleet():
    opts = MonitorOptions(models=2, versions=2, cycles=3, warmup_cycles=2, day_seconds=50)
    cost, lines, size = measure_cycle(opts)
    assert lines == 2 * 2 * 40 and size > 0
    # Real CPU time: every part costs something, parts are inside the cycle, order holds.
    parts = dataclasses.asdict(cost)
    assert all(math.isfinite(v) and v > 0 for v in parts.values()), parts
    assert cost.parse_ms <= cost.median_ms and cost.store_ms <= cost.median_ms, parts
    assert cost.median_ms <= cost.p99_ms <= cost.max_ms, parts
    store, _, _ = simulate_day(opts)
    assert store.depth == 50 and sorted(store.versions())[0] == ("model_000", "1")
