"""Resource faults: the pure memory-trend, CPU-per-request and pressure tests (measured on seeded
labelled traces), the decision rule that acts on them, and the shells (scrape, store, cgroup)."""
import dataclasses

import numpy as np
import pytest

from monitor.cgroup import NO_LIMIT, MemoryLimit, read_memory_limit
from monitor.decide import decide
from monitor.resource import (CpuComparison, MemoryGrowth, ResourceConfig, ServerPressure,
                              cpu_per_request, memory_growth, server_pressure)
from monitor.resource_watch import ResourceWatch
from monitor.scrape import parse_metrics
from monitor.store import SeriesStore
from monitor.types import DecisionInputs, ScrapeOutcome, VersionState

MIB, GIB = 2**20, 2**30
T = np.arange(120.0)  # one sample per second, the sidecar's cadence


def grow(ts, memory, limit=24 * GIB, used=None, **kw):
    return memory_growth(ts, memory, model="ranker", version="2", limit_bytes=limit,
                         used_bytes=used, limit_source="test", **kw)


# ------------------------------------------------------------------ labelled traces

def clean_traces(rng, n):
    """What a healthy stub's memory does: flat with allocator noise, a warm-up that levels off,
    a one-off step (an arena grows), and a slow creep that would take weeks."""
    base = 300 * MIB
    for i in range(n):
        kind = i % 4
        noise = rng.normal(0, 2 * MIB, len(T))
        if kind == 0:
            yield "flat", base + noise
        elif kind == 1:
            yield "warm-up", base + 150 * MIB * (1 - np.exp(-T / rng.uniform(5, 20))) + noise
        elif kind == 2:
            yield "step", base + np.where(T > rng.uniform(20, 100), 40 * MIB, 0) + noise
        else:
            yield "creep", base + 0.01 * MIB * T + noise  # ~0.6 MiB/min: weeks to 24 GiB


def leak_traces(rng, n):
    """Leaks of 0.5-8 MiB/s (the ranker's preset leaks ~6 MiB/s at 100 requests/s), with noise
    and the steps a leak makes when the allocator maps a new arena."""
    for _ in range(n):
        rate = rng.uniform(0.5, 8) * MIB
        steps = np.floor(T * rate / (4 * MIB)) * 4 * MIB
        yield rate, 300 * MIB + steps + rng.normal(0, 2 * MIB, len(T))


def test_trend_test_on_labelled_traces():
    """Measured, not eyeballed: 0 false alarms on 400 clean traces; every leak of >= 0.5 MiB/s
    found by the time it has grown the minimum growth (32 MiB) plus 10 s, and never before the
    30 samples the test needs."""
    rng = np.random.default_rng(14)
    false = [k for k, m in clean_traces(rng, 400) if grow(T, m).leaking]
    assert false == [], f"false alarms on clean traces: {false[:5]}"
    delays = []
    for rate, m in leak_traces(rng, 200):
        found = next((n for n in range(30, len(T) + 1) if grow(T[:n], m[:n]).leaking), None)
        assert found is not None, f"missed a leak of {rate / MIB:.1f} MiB/s"
        assert found <= max(30, 32 * MIB / rate + 10), (rate / MIB, found)
        delays.append(found)
    print(f"detection delay: median {np.median(delays):.0f}, max {max(delays)} samples")


def test_leak_projection_names_the_time_to_the_limit():
    m = 300 * MIB + 2 * MIB * T  # 2 MiB/s
    g = grow(T, m, limit=4 * GIB, used=1 * GIB)
    assert g.leaking and g.slope_bytes_per_s == pytest.approx(2 * MIB)
    assert g.headroom_bytes == 3 * GIB
    assert g.seconds_to_limit == pytest.approx(3 * GIB / (2 * MIB))  # 1536 s
    assert g.exhausted_at == pytest.approx(T[-1] + g.seconds_to_limit)
    # without a figure for memory in use, the version's own memory is what counts
    assert grow(T, m, limit=4 * GIB).headroom_bytes == 4 * GIB - m[-1]


def test_growth_that_would_take_longer_than_the_horizon_is_not_a_leak():
    m = 300 * MIB + 1 * MIB * T  # 1 MiB/s: 6.7 h to 24 GiB
    assert grow(T, m).leaking
    assert not grow(T, m, config=ResourceConfig(horizon_s=3600)).leaking


def test_growth_without_a_known_limit_is_a_leak_without_a_date():
    g = grow(T, 300 * MIB + 2 * MIB * T, limit=None)
    assert g.leaking and g.seconds_to_limit is None and g.exhausted_at is None


def test_too_few_samples_and_constant_memory():
    assert grow(T[:29], 300 * MIB + 2 * MIB * T[:29]) is None
    flat = grow(T, np.full(len(T), 300.0 * MIB))
    assert not flat.leaking and flat.slope_bytes_per_s == 0 and flat.seconds_to_limit is None
    assert grow([], []) is None
    assert grow(T, np.full(len(T), np.nan)) is None


def test_bad_config_is_refused_with_its_name():
    with pytest.raises(ValueError, match="cpu_ratio"):
        ResourceConfig(cpu_ratio=0.9)
    with pytest.raises(ValueError, match="memory_alpha"):
        ResourceConfig(memory_alpha=2)
    with pytest.raises(ValueError, match="horizon_s"):
        ResourceConfig(horizon_s=-1)


def cpu(ratio, base_rate=100.0, rate=100.0, seed=0, n=60):
    rng = np.random.default_rng(seed)
    base = rng.normal(1.0, 0.1, n)
    served = rng.normal(ratio, 0.1 * ratio, n)
    return cpu_per_request(served, np.full(n, rate), base, np.full(n, base_rate),
                           model="ranker", version="2", baseline_version="1")


def test_cpu_per_request_against_known_good_at_the_same_load():
    assert cpu(1.5).degraded and cpu(3.0).ratio == pytest.approx(3.0, rel=0.1)
    assert not cpu(1.2).degraded and not cpu(1.0).degraded
    # the known-good version was only seen at another load: no verdict rather than a wrong one
    assert cpu(3.0, base_rate=200.0, rate=100.0) is None
    assert cpu(3.0, base_rate=120.0, rate=100.0).degraded
    assert cpu(3.0, n=10) is None


def test_cpu_level_test_on_labelled_draws():
    """Seeded draws (60 samples a side, 10 % noise): 1.5x and more is found every time, 1.0-1.2x
    never."""
    assert all(cpu(r, seed=s).degraded for r in (1.5, 2.0, 3.0) for s in range(50))
    assert not any(cpu(r, seed=s).degraded for r in (1.0, 1.1, 1.2) for s in range(50))


def test_server_pressure_is_the_median_of_recent_scrapes():
    ts = np.arange(10.0)
    used = np.full(10, 20.0 * GIB)
    p = server_pressure(ts, used, limit_bytes=21 * GIB, limit_source="host")
    assert p.pressed and p.fraction == pytest.approx(20 / 21)
    spike = np.full(10, 5.0 * GIB)
    spike[-1] = 20.5 * GIB
    assert not server_pressure(ts, spike, limit_bytes=21 * GIB, limit_source="host").pressed
    assert server_pressure(ts, used, limit_bytes=None, limit_source="") is None
    assert server_pressure(ts[:3], used[:3], limit_bytes=21 * GIB, limit_source="h") is None


# ------------------------------------------------------------------ the decision rule

NOW = 1000.0


def inputs(*resources, **kw):
    base = DecisionInputs(
        model="ranker", served_version="2", now=NOW, version_states=(VersionState("2", "READY"),),
        scrape_outcomes=(ScrapeOutcome(NOW - 1, True),), last_sample_at=NOW - 1,
        activated_at=NOW - 600, last_known_good="1", peers_observed=0, resources=resources)
    return dataclasses.replace(base, **kw)


LEAK = grow(T, 300 * MIB + 2 * MIB * T, limit=4 * GIB, used=1 * GIB)
FLAT = grow(T, np.full(len(T), 300.0 * MIB))
HUNGRY = cpu(3.0)
PRESSED = ServerPressure(NOW, 20 * GIB, 21 * GIB, "host", 20 / 21, 0.5, True)


def test_a_leaking_version_is_rolled_back_with_the_projection_in_the_reason():
    d = decide(inputs(LEAK))
    assert (d.phase, d.action, d.target_version) == ("degraded", "rollback", "1")
    assert "grows 120.0 MiB/min" in d.reason and "reached in 26 min" in d.reason
    assert d.evidence == (LEAK,)


def test_a_cpu_hungry_version_is_rolled_back():
    d = decide(inputs(HUNGRY, FLAT))
    assert (d.phase, d.action) == ("degraded", "rollback")
    assert "CPU per request" in d.reason and "x3" in d.reason and d.evidence == (HUNGRY,)


def test_findings_that_clear_or_belong_elsewhere_are_not_acted_on():
    assert decide(inputs(FLAT, cpu(1.1))).phase == "healthy"
    other = dataclasses.replace(LEAK, version="1")
    assert decide(inputs(other)).phase == "healthy"


def test_server_pressure_no_version_explains_is_an_alert():
    d = decide(inputs(FLAT, PRESSED))
    assert (d.phase, d.action) == ("degraded", "alert") and "not attributable" in d.reason
    # ... and a leaking version under the same pressure is the explanation: rolled back
    d = decide(inputs(LEAK, PRESSED))
    assert d.action == "rollback" and d.evidence == (LEAK,)


def test_no_rollback_target_or_stale_data_means_no_rollback():
    assert decide(inputs(LEAK, last_known_good=None)).action == "alert"
    stale = decide(inputs(LEAK, last_sample_at=NOW - 60))
    assert stale.action == "none" and stale.phase == "inconclusive"


def test_a_leak_long_after_activation_is_still_the_version_s():
    # per-version evidence: no attribution window applies (the stub is the version's own)
    d = decide(inputs(LEAK, activated_at=NOW - 86400))
    assert d.action == "rollback"


# ------------------------------------------------------------------ shells

METRICS = """# HELP sentinel_stub_resident_memory_bytes Resident memory of the stub process
# TYPE sentinel_stub_resident_memory_bytes gauge
sentinel_stub_resident_memory_bytes{model="ranker",version="2",instance="ranker_0_0"} 300000000
sentinel_stub_resident_memory_bytes{model="ranker",version="2",instance="ranker_0_1"} 200000000
# TYPE sentinel_stub_cpu_seconds_total counter
sentinel_stub_cpu_seconds_total{model="ranker",version="2",instance="ranker_0_0"} 10
sentinel_stub_cpu_seconds_total{model="ranker",version="2",instance="ranker_0_1"} 5
nv_inference_request_success{model="ranker",version="2"} REQ
nv_cpu_utilization 0.5
nv_cpu_memory_total_bytes 25275990016
nv_cpu_memory_used_bytes 1221316608
nv_gpu_utilization{gpu_uuid="GPU-1"} 0.25
nv_gpu_memory_total_bytes{gpu_uuid="GPU-1"} 80000000000
nv_gpu_memory_used_bytes{gpu_uuid="GPU-1"} 1000000000
"""


def test_scrape_sums_the_stubs_of_a_version_and_reads_server_gauges():
    s = parse_metrics(METRICS.replace("REQ", "100"), ts=1.0)
    v = s.sample("ranker", "2")
    assert v.stub_memory_bytes == 500e6 and v.stub_cpu_seconds == 15
    assert s.server.cpu_utilization == 0.5 and s.server.memory_total_bytes == 25275990016
    gpu = s.server.gpus[0]
    assert (gpu.uuid, gpu.utilization, gpu.memory_used_bytes) == ("GPU-1", 0.25, 1e9)
    # the same through prometheus_client's parser (a line the fast path hands over)
    slow = parse_metrics(METRICS.replace("REQ", "100") + 'odd_metric{a="x\\"y"} 1\n', ts=1.0)
    assert slow.sample("ranker", "2").stub_memory_bytes == 500e6 and slow.server == s.server


def test_store_derives_memory_and_cpu_per_request():
    store = SeriesStore(clock=lambda: 10.0)
    store.add(parse_metrics(METRICS.replace("REQ", "100"), ts=1.0))
    text = METRICS.replace("REQ", "300").replace("} 10\n", "} 10.4\n").replace(
        "300000000", "310000000")
    store.add(parse_metrics(text, ts=3.0))
    p = store.latest("ranker", "2")
    assert p.memory_bytes == pytest.approx(510e6, rel=1e-6)
    assert p.cpu_ms_per_request == pytest.approx(0.4 / 200 * 1000, rel=1e-5)
    assert p.cpu_cores == pytest.approx(0.2, rel=1e-5)
    assert [r.cpu_utilization for _, r in store.server_resources()] == [0.5, 0.5]


def fake_cgroup(tmp_path, files: dict, own="0::/\n"):
    for rel, text in files.items():
        f = tmp_path / "cg" / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "self_cgroup").write_text(own)
    return lambda: read_memory_limit(tmp_path / "cg", tmp_path / "self_cgroup")


def test_cgroup_v2_then_v1_then_none(tmp_path):
    v2 = fake_cgroup(tmp_path / "a", {"pod/memory.max": "2147483648\n",
                                      "pod/memory.current": "1073741824\n"}, "0::/pod\n")()
    assert (v2.limit_bytes, v2.used_bytes) == (2 * GIB, 1 * GIB) and "v2" in v2.source
    assert fake_cgroup(tmp_path / "b", {"memory.max": "max\n"})() == NO_LIMIT
    v1 = fake_cgroup(tmp_path / "c", {"memory/memory.limit_in_bytes": "1073741824",
                                      "memory/memory.usage_in_bytes": "5"},
                     "4:memory:/gone\n")()
    assert (v1.limit_bytes, v1.used_bytes) == (1 * GIB, 5) and "v1" in v1.source
    assert fake_cgroup(tmp_path / "d", {"memory/memory.limit_in_bytes": "9223372036854771712"})() \
        == NO_LIMIT
    assert fake_cgroup(tmp_path / "e", {})() == NO_LIMIT


def test_watch_takes_the_lower_limit_and_reads_the_cgroup_rarely(tmp_path):
    reads = []

    def limits():
        reads.append(1)
        return MemoryLimit(2 * GIB, 1 * GIB, "cgroup v2 test")

    clock = [0.0]
    store = SeriesStore(clock=lambda: 200.0)
    for i in range(100):
        mem = int(300e6 + 4e6 * i)  # ~3.8 MiB/s
        text = METRICS.replace("REQ", str(100 * i)).replace("300000000", str(mem))
        store.add(parse_metrics(text, ts=100.0 + i))
    watch = ResourceWatch(store, limits=limits, clock=lambda: clock[0])
    found = watch.findings("ranker", "2", None, now=200.0)
    growth = next(f for f in found if isinstance(f, MemoryGrowth))
    assert growth.leaking and growth.limit_source == "cgroup v2 test"
    assert growth.headroom_bytes == 1 * GIB
    watch.findings("ranker", "2", None, now=200.0)
    assert len(reads) == 1  # cached
    clock[0] = 11.0
    watch.findings("ranker", "2", None, now=200.0)
    assert len(reads) == 2
    host = ResourceWatch(store, limits=lambda: NO_LIMIT).memory_limit(200.0)
    assert host.limit_bytes == 25275990016 and "host" in host.source
    assert watch.last["ranker"] == found
    assert not any(isinstance(f, CpuComparison) for f in found)  # no known-good to compare with


def test_pages_show_memory_with_its_projection_and_the_server(tmp_path):
    from monitor.resource_views import resource_charts, resource_notes, server_view
    store = SeriesStore(clock=lambda: 200.0)
    for i in range(100):
        text = METRICS.replace("REQ", str(100 * i)).replace("300000000", str(int(300e6 + 4e6 * i)))
        store.add(parse_metrics(text, ts=100.0 + i))
    watch = ResourceWatch(store, limits=lambda: NO_LIMIT)
    found = watch.findings("ranker", "2", None, now=200.0)
    memory, cpu_chart = resource_charts(store, "ranker", found)
    assert "v2 projected" in memory and "reaches the limit (23.5 GiB)" in memory
    assert "Stub CPU per request" in cpu_chart
    assert any("grows" in n for n in resource_notes(found))
    server = server_view(store, watch, now=200.0)
    assert server["cpu"] == "50%" and server["memory"].startswith("1.1 GiB of 23.5 GiB")
    assert server["gpus"][0]["utilization"] == "25%"
    assert resource_charts(SeriesStore(), "ranker") == []
    assert server_view(SeriesStore(), watch, now=200.0) is None


def test_bench_copy_turns_the_resource_metrics_off(tmp_path):
    from sentinel.bench.serve import _without_resource_metrics
    from sentinel.triton_config import read_pbtxt
    src = tmp_path / "src" / "ranker"
    src.mkdir(parents=True)
    (src / "config.pbtxt").write_text('name: "ranker"\nbackend: "python"\n')
    out = _without_resource_metrics(tmp_path / "src", tmp_path / "off")
    config = read_pbtxt(out / "ranker" / "config.pbtxt")
    assert config.parameters["SENTINEL_RESOURCE_METRICS"].string_value == "off"
    assert "SENTINEL_RESOURCE_METRICS" not in (src / "config.pbtxt").read_text()


def test_adapter_reads_the_switch_and_refuses_a_bad_value():
    import json
    from python_backend.adapter import backend_metrics

    def args(value=None):
        params = {} if value is None else {"SENTINEL_RESOURCE_METRICS": {"string_value": value}}
        return {"model_config": json.dumps({"parameters": params}), "model_name": "ranker",
                "model_version": "1", "model_instance_name": "ranker_0_0"}

    assert backend_metrics(None, args())._usage is not None
    assert backend_metrics(None, args("off"))._usage is None
    with pytest.raises(ValueError, match="SENTINEL_RESOURCE_METRICS"):
        backend_metrics(None, args("maybe"))


def test_a_stated_memory_limit_is_the_one_projections_run_into(tmp_path):
    """A sidecar in its own container reads its own cgroup, not Triton's: memory_limit_bytes says
    Triton's limit, and the projection uses it."""
    from monitor.config import load_config
    from monitor.sidecar import Sidecar
    config = load_config(None, env={"SENTINEL_MEMORY_LIMIT_BYTES": str(4 * 2**30)}, overrides={
        "repository": str(tmp_path), "db_path": str(tmp_path / "ev.sqlite3"), "port": 0})
    sc = Sidecar(config)
    try:
        limit = sc.poller.judge.resources.memory_limit(0.0)
        assert limit.limit_bytes == 4 * 2**30 and limit.source == "memory_limit_bytes setting"
    finally:
        sc.stop()
