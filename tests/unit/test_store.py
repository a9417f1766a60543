import math
import os
import statistics
import threading
import time

import numpy as np
import polars as pl
import pytest

from monitor.types import SIGNAL_NAMES, Scrape, ScoreHistogram, VersionSample
from monitor.store import SeriesStore

BOUNDS = tuple(round(0.05 * i, 2) for i in range(1, 21)) + (math.inf,)


class Clock:
    def __init__(self, t=0.0):
        self.t = t

    def __call__(self):
        return self.t


def histogram(scores) -> ScoreHistogram:
    scores = np.asarray(scores, dtype=float)
    counts = tuple(float((scores <= b).sum()) for b in BOUNDS)
    return ScoreHistogram(BOUNDS, counts, float(scores.sum()), float(len(scores)))


def sample(model="ranker", version="1", n=0.0, **over) -> VersionSample:
    """Counters of a version that has served n requests of 256 rows, 4 ms each."""
    fields = dict(
        success=n,
        failures=(("BACKEND", 0.0), ("CANCELED", 0.0), ("OTHER", 0.0), ("REJECTED", 0.0)),
        inference_count=256 * n,
        exec_count=n / 2,
        pending=1.0,
        request_duration_us=4000 * n,
        queue_duration_us=500 * n,
        compute_input_duration_us=100 * n,
        compute_infer_duration_us=3000 * n,
        compute_output_duration_us=200 * n,
        score=None,
        nonfinite=0.0,
        requests=n,
        rows=256 * n,
        request_errors=(("fault", 0.0), ("invalid_input", 0.0), ("runtime", 0.0)),
    )
    fields.update(over)
    return VersionSample(model=model, version=version, **fields)


def ok(ts, *samples):
    return Scrape(ts=ts, phase="ok", samples=tuple(samples))


def store_with(*scrapes, **kw):
    clock = Clock(scrapes[-1].ts if scrapes else 0.0)
    store = SeriesStore(clock=clock, **kw)
    for s in scrapes:
        store.add(s)
    return store, clock


def test_derived_signals_between_two_scrapes():
    a = sample(n=100, score=histogram([0.5] * 10))
    b = sample(
        n=190,
        failures=(("BACKEND", 10.0), ("CANCELED", 0.0), ("OTHER", 0.0), ("REJECTED", 0.0)),
        request_errors=(("fault", 0.0), ("invalid_input", 0.0), ("runtime", 5.0)),
        nonfinite=3.0,
        rows=256 * 100 + 300.0,
        requests=200.0,
        pending=4.0,
        score=histogram([0.5] * 10 + [0.2, 0.4, 0.6, 0.8]),
    )
    store, _ = store_with(ok(10.0, a), ok(12.0, b))
    p = store.latest("ranker", "1")
    assert p.ts == 12.0 and not p.reset and p.interval_s == 2.0
    assert p.requests == 100  # Δsuccess 90 + Δfailures 10
    assert p.request_rate == 50.0
    # error responses are Triton successes: (10 failures + 5 error responses) / 100 requests
    assert p.error_rate == pytest.approx(0.15)
    assert p.error_rate_backend == pytest.approx(0.10)
    assert p.error_rate_runtime == pytest.approx(0.05)
    assert p.error_rate_rejected == 0.0
    assert p.latency_ms == pytest.approx(4.0)  # Δduration / Δsuccess, not / Δinference_count
    assert p.queue_ms == pytest.approx(0.5) and p.compute_infer_ms == pytest.approx(3.0)
    assert p.batch_size == pytest.approx(512.0)
    assert p.pending == 4.0
    assert p.score_mean == pytest.approx(0.5)
    assert p.nan_rate == pytest.approx(3 / 300)
    assert p.rows_per_request == pytest.approx(300 / 100)


def test_score_std_estimated_from_bucket_deltas():
    rng = np.random.default_rng(0)
    before = rng.uniform(0, 1, 1000)
    for sd in (0.05, 0.1, 0.2):
        new = np.clip(rng.normal(0.5, sd, 20_000), 0, 1)
        store, _ = store_with(
            ok(1.0, sample(n=1, score=histogram(before))),
            ok(2.0, sample(n=2, score=histogram(np.concatenate([before, new])))),
        )
        p = store.latest("ranker", "1")
        assert p.score_mean == pytest.approx(new.mean(), abs=1e-4)
        assert p.score_std == pytest.approx(new.std(), abs=0.01), sd


def test_constant_output_has_zero_std():
    store, _ = store_with(
        ok(1.0, sample(n=1, score=histogram([0.1, 0.9]))),
        ok(2.0, sample(n=2, score=histogram([0.1, 0.9] + [0.731] * 500))),
    )
    assert store.latest("ranker", "1").score_std == 0.0


def test_zero_traffic_is_missing_not_zero():
    store, _ = store_with(ok(1.0, sample(n=50)), ok(2.0, sample(n=50)))
    p = store.latest("ranker", "1")
    assert p.request_rate == 0.0 and p.requests == 0.0  # no traffic is a fact
    for name in ("error_rate", "latency_ms", "batch_size", "score_mean", "score_std", "nan_rate", "rows_per_request"):
        assert math.isnan(getattr(p, name)), name  # but no traffic has no error rate or latency
    assert p.pending == 1.0


def test_counter_reset_marks_the_interval_and_emits_no_values():
    store, clock = store_with(
        ok(1.0, sample(n=1000)), ok(2.0, sample(n=1100)), ok(3.0, sample(n=20)), ok(4.0, sample(n=70))
    )
    df = store.signals("ranker", "1")
    assert df["reset"].to_list() == [False, True, False]
    reset_row = df.row(1, named=True)
    assert reset_row["pending"] == 1.0  # a gauge, not a delta
    assert all(math.isnan(reset_row[n]) for n in SIGNAL_NAMES if n not in ("pending", "interval_s"))
    assert df["request_rate"].to_list()[2] == 50.0  # counted from the post-restart sample
    assert (df["request_rate"].fill_nan(0) >= 0).all()
    assert store.reset_times("ranker", "1") == (3.0,)


def test_first_sample_has_no_interval():
    store, _ = store_with(ok(1.0, sample(n=10)))
    assert store.versions() == [("ranker", "1")]
    assert store.latest("ranker", "1") is None
    assert store.signals("ranker", "1").height == 0
    assert store.last_sample_at("ranker", "1") == 1.0


def test_failed_scrapes_are_outcomes_and_the_next_interval_spans_the_gap():
    store, clock = store_with(ok(1.0, sample(n=0)))
    store.add(Scrape(ts=2.0, phase="error", error="timeout"))
    store.add(Scrape(ts=3.0, phase="error", error="HTTP 500"))
    store.add(ok(4.0, sample(n=300)))
    assert [o.ok for o in store.scrape_outcomes()] == [True, False, False, True]
    assert store.scrape_outcomes(limit=2)[0].error == "HTTP 500"
    p = store.latest("ranker", "1")
    assert p.interval_s == 3.0 and p.request_rate == 100.0


def test_without_custom_metrics_error_rate_uses_triton_failures():
    bare = dict(score=None, nonfinite=None, requests=None, rows=None, request_errors=())
    a = sample(n=100, **bare)
    b = sample(n=150, failures=(("BACKEND", 50.0),), **bare)
    store, _ = store_with(ok(1.0, a), ok(2.0, b))
    p = store.latest("ranker", "1")
    assert p.error_rate == pytest.approx(0.5) and p.error_rate_backend == pytest.approx(0.5)
    assert math.isnan(p.error_rate_runtime) and math.isnan(p.score_mean) and math.isnan(p.nan_rate)


def test_signals_frame_schema():
    store, _ = store_with(ok(1.0, sample(n=0)), ok(2.0, sample(n=10)), ok(3.0, sample(n=30)))
    df = store.signals("ranker", "1")
    assert df.columns == ["ts", "reset", *SIGNAL_NAMES]
    assert df.schema["ts"] == pl.Float64 and df.schema["reset"] == pl.Boolean
    assert all(df.schema[n] == pl.Float64 for n in SIGNAL_NAMES)
    assert df["ts"].to_list() == [2.0, 3.0]
    assert df["request_rate"].to_list() == [10.0, 20.0]
    assert store.signals("ranker", "1", since=3.0)["ts"].to_list() == [3.0]
    empty = store.signals("nope", "9")
    assert empty.height == 0 and empty.columns == df.columns


def test_several_versions_are_independent():
    store, _ = store_with(
        ok(1.0, sample("ranker", "1", n=0), sample("ranker", "2", n=0)),
        ok(2.0, sample("ranker", "1", n=10), sample("ranker", "2", n=99)),
    )
    assert store.versions() == [("ranker", "1"), ("ranker", "2")]
    assert store.latest("ranker", "1").request_rate == 10.0
    assert store.latest("ranker", "2").request_rate == 99.0


def test_bucket_layout_change_skips_one_score_interval():
    narrow = ScoreHistogram((0.5, math.inf), (5.0, 10.0), 5.0, 10.0)
    wide = histogram([0.3] * 20)
    wider = histogram([0.3] * 30)
    store, _ = store_with(
        ok(1.0, sample(n=1, score=narrow)), ok(2.0, sample(n=2, score=wide)), ok(3.0, sample(n=3, score=wider))
    )
    df = store.signals("ranker", "1")
    assert df["reset"].to_list() == [False, False]  # new bounds alone are not a restart
    assert math.isnan(df["score_mean"][0]) and math.isnan(df["score_std"][0])
    assert df["score_mean"][1] == pytest.approx(0.3)


def test_out_of_order_scrape_is_ignored():
    store, clock = store_with(ok(5.0, sample(n=0)), ok(6.0, sample(n=10)))
    store.add(ok(4.0, sample(n=5)))
    assert store.signals("ranker", "1")["ts"].to_list() == [6.0]
    store.add(ok(7.0, sample(n=20)))
    assert store.latest("ranker", "1").request_rate == 10.0


def test_retention_drops_old_rows_and_forgets_vanished_versions():
    clock = Clock()
    store = SeriesStore(retention_s=10.0, clock=clock)
    for t in range(30):
        clock.t = float(t)
        samples = [sample("ranker", "1", n=10.0 * t)]
        if t < 5:
            samples.append(sample("ranker", "2", n=float(t)))  # unloaded after 5 s
        store.add(ok(float(t), *samples))
    ts = store.signals("ranker", "1")["ts"].to_list()
    assert min(ts) >= 19.0 and max(ts) == 29.0
    assert store.versions() == [("ranker", "1")]
    assert store.latest("ranker", "2") is None


def test_failure_evidence_sums_recent_requests_and_failures():
    clock = Clock()
    store = SeriesStore(clock=clock)
    for t in range(10):
        clock.t = float(t)
        failed = 0.0 if t < 5 else 10.0 * (t - 4)  # every request fails from t=5 on
        store.add(ok(float(t), sample(n=10.0 * t - failed, failures=(("BACKEND", failed),))))
    ev = store.failure_evidence("ranker", "1", window_s=4.0)
    assert (ev.requests, ev.failures) == (40.0, 40.0)
    assert ev.failure_ratio == 1.0
    assert store.failure_evidence("nope", "1", 4.0).requests == 0.0


def test_max_rows_bounds_the_depth():
    clock = Clock()
    store = SeriesStore(max_rows=50, clock=clock)
    for t in range(200):
        clock.t = float(t)
        store.add(ok(float(t), sample(n=float(t))))
    assert store.depth == 50
    df = store.signals("ranker", "1")
    assert df.height == 50 and df["ts"][-1] == 199.0 and df["ts"][0] == 150.0


def test_many_series_trade_depth_for_memory():
    clock = Clock()
    store = SeriesStore(max_bytes=2 * 1024 * 1024, clock=clock)
    for t in range(3):
        clock.t = float(t)
        store.add(ok(float(t), *(sample(f"m{i}", "1", n=float(t)) for i in range(1500))))
    assert store.nbytes() < 2 * 1024 * 1024 + 1_500_000  # frames under max_bytes + per-series state
    assert store.latest("m1499", "1").request_rate == 1.0


def _fleet_scrape(t: float, n_series: int) -> Scrape:
    hist = ScoreHistogram(BOUNDS, tuple(t * (j + 1) for j in range(21)), t * 10.0, t * 21.0)
    fail = (("BACKEND", 0.0),)
    return Scrape(
        ts=t,
        phase="ok",
        samples=tuple(
            VersionSample(f"m{i // 2}", str(i % 2 + 1), t * 10, fail, t * 10, t * 5, 0.0, t * 4000, t * 100,
                          t * 10, t * 3000, t * 10, hist, 0.0, t * 10, t * 10, ())
            for i in range(n_series)
        ),
    )


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_memory_stays_bounded_for_2000_series():
    """A day at 1 s for 2,000 series is 172.8 M series-samples, too slow for a unit test; memory
    depends on capacity, not elapsed time, so the run goes three retention windows past the point
    where the ring is full and checks that nothing grows after the first window."""
    n_series, retention = 2000, 30
    clock = Clock()
    store = SeriesStore(retention_s=retention, clock=clock)
    rss, nbytes = [], []
    for t in range(1, 3 * retention + 1):
        clock.t = float(t)
        store.add(_fleet_scrape(float(t), n_series))
        if t % retention == 0:
            rss.append(_rss_bytes())
            nbytes.append(store.nbytes())
    print(
        f"2000 series, {retention} s retention at 1 s: store arrays {[n / 2**20 for n in nbytes]} MiB, "
        f"process RSS {[round(r / 2**20) for r in rss]} MiB, depth {store.depth}"
    )
    assert store.depth <= retention + 1
    assert nbytes[2] == nbytes[1]  # the ring is full after the first window and never regrows
    assert rss[2] - rss[1] < 32 * 2**20
    assert nbytes[2] < 64 * 2**20
    # With the defaults (1 h, 256 MiB) the same fleet keeps ~22 min of 1 s history in <= 256 MiB.


def test_add_is_fast_for_100_series():
    clock = Clock()
    store = SeriesStore(clock=clock)
    scrapes = [_fleet_scrape(float(t), 100) for t in range(1, 61)]
    times = []
    for s in scrapes:
        clock.t = s.ts
        started = time.perf_counter()
        store.add(s)
        times.append(time.perf_counter() - started)
    median_ms = statistics.median(times) * 1000
    print(f"add() for 100 series: median {median_ms:.2f} ms")
    assert median_ms < 10.0


def test_reads_while_writing_from_another_thread():
    clock = Clock()
    store = SeriesStore(clock=clock)
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                store.signals("m0", "1")
                store.latest("m1", "2")
                store.versions()
            except Exception as exc:  # collected and re-raised in the test thread
                errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    for t in range(1, 200):
        clock.t = float(t)
        store.add(_fleet_scrape(float(t), 40 if t < 100 else 80))  # growth reallocates arrays
    stop.set()
    thread.join()
    assert not errors
    assert store.signals("m39", "2").height == 99
