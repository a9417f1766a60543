import numpy as np

from python_backend.metrics import MAX_OBSERVED_PER_FLUSH, BackendMetrics


class FakeMetric:
    def __init__(self, labels, buckets=None):
        self.labels, self.buckets, self.value, self.observed = labels, buckets, 0, []

    def increment(self, n):
        self.value += n

    def observe(self, v):
        self.observed.append(v)

    def set(self, v):
        self.value = v


class FakeFamily:
    HISTOGRAM, COUNTER, GAUGE = "h", "c", "g"
    made: dict = {}

    def __init__(self, name, description, kind):
        self.name, self.metrics = name, []
        FakeFamily.made[name] = self

    def Metric(self, labels, buckets=None):
        m = FakeMetric(labels, buckets)
        self.metrics.append(m)
        return m


class FakePbUtils:
    MetricFamily = FakeFamily


def test_counts_are_batched_until_the_interval_passes():
    now = [0.0]
    m = BackendMetrics(FakePbUtils, "ranker", "3", clock=lambda: now[0], flush_interval_s=0.1)
    for _ in range(5):
        m.request()
    m.scores(np.array([0.1, np.nan, 0.9, np.inf], np.float32))
    m.error("invalid_input")
    m.maybe_flush()
    assert FakeFamily.made["sentinel_requests_total"].metrics[0].value == 0
    now[0] = 0.2
    m.maybe_flush()
    fam = FakeFamily.made
    assert fam["sentinel_requests_total"].metrics[0].value == 5
    assert fam["sentinel_output_rows_total"].metrics[0].value == 4
    assert fam["sentinel_output_nonfinite_total"].metrics[0].value == 2
    err = fam["sentinel_request_errors_total"].metrics[0]
    assert err.value == 1 and err.labels == {"model": "ranker", "version": "3", "reason": "invalid_input"}
    assert sorted(fam["sentinel_output_score"].metrics[0].observed) == [
        np.float32(0.1).item(), np.float32(0.9).item()]
    assert m.pending() == {"requests": 0, "rows": 0, "nonfinite": 0, "errors": {}}


def test_histogram_sample_is_bounded_and_unbiased():
    m = BackendMetrics(None, "ranker", "1")
    rng = np.random.default_rng(0)
    for _ in range(100):
        m.scores(rng.random(256).astype(np.float32))
    s = m.sample()
    assert len(s) <= MAX_OBSERVED_PER_FLUSH
    assert abs(float(s.mean()) - 0.5) < 0.1


def test_stub_memory_and_cpu_are_flushed_per_instance():
    from python_backend.resources import ProcessUsage
    usage = [ProcessUsage(300 * 2**20, 2.5)]
    now = [0.0]
    m = BackendMetrics(FakePbUtils, "ranker", "3", clock=lambda: now[0], flush_interval_s=0.1,
                       instance="ranker_0_1", usage=lambda: usage[0])
    mem = FakeFamily.made["sentinel_stub_resident_memory_bytes"].metrics[-1]
    cpu = FakeFamily.made["sentinel_stub_cpu_seconds_total"].metrics[-1]
    assert mem.labels == {"model": "ranker", "version": "3", "instance": "ranker_0_1"}
    m.request()
    now[0] = 0.2
    m.maybe_flush()
    assert mem.value == 300 * 2**20 and cpu.value == 2.5
    usage[0] = ProcessUsage(310 * 2**20, 2.75)
    now[0] = 0.4
    m.maybe_flush()
    # the counter carries the process total: increments are the CPU used since the last flush
    assert mem.value == 310 * 2**20 and cpu.value == 2.75


def test_resource_metrics_can_be_turned_off():
    made_before = {k: len(v.metrics) for k, v in FakeFamily.made.items()}
    BackendMetrics(FakePbUtils, "ranker", "3", usage=None).flush()
    stub = FakeFamily.made.get("sentinel_stub_resident_memory_bytes")
    assert stub is None or len(stub.metrics) == made_before.get(stub.name, 0)


def test_process_usage_reads_statm_and_process_time(tmp_path):
    import os
    from python_backend.resources import read_process_usage
    statm = tmp_path / "statm"
    statm.write_text("1000 250 30 1 0 200 0\n")
    u = read_process_usage(statm, cpu=lambda: 2.0)
    assert u.rss_bytes == 250 * os.sysconf("SC_PAGE_SIZE") and u.cpu_seconds == 2.0
    real = read_process_usage()
    assert real.rss_bytes > 10 * 2**20 and real.cpu_seconds > 0
