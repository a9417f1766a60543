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


def test_cycle_and_day_measurements_run_on_a_small_fleet():
    opts = MonitorOptions(models=2, versions=2, cycles=3, warmup_cycles=2, day_seconds=50)
    cost, lines, size = measure_cycle(opts)
    assert lines == 2 * 2 * 40 and size > 0
    assert cost.median_ms >= 0 and cost.max_ms >= cost.median_ms
    store, _, _ = simulate_day(opts)
    assert store.depth == 50 and sorted(store.versions())[0] == ("model_000", "1")
