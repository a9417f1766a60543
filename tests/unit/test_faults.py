import numpy as np
import pytest

from python_backend.faults import Fault, FaultInjector, InjectedFault


def test_no_fault_is_a_no_op():
    inj = FaultInjector(None)
    inj.on_initialize()
    inj.before_request()
    s = np.array([0.2, 0.7], np.float32)
    assert inj.scores(s) is s


def test_error_fraction_is_close_to_configured():
    inj = FaultInjector(Fault("errors", fraction=0.3), seed=1)
    failed = 0
    for _ in range(2000):
        try:
            inj.before_request()
        except InjectedFault:
            failed += 1
    assert 0.25 < failed / 2000 < 0.35


def test_load_failure_raises_in_initialize():
    with pytest.raises(InjectedFault, match="load"):
        FaultInjector(Fault("load_failure")).on_initialize()


def test_crash_kills_after_n_requests():
    killed = []
    inj = FaultInjector(Fault("crash", after_requests=3), kill=lambda: killed.append(True))
    for _ in range(3):
        inj.before_request()
    assert not killed
    inj.before_request()
    assert killed


def test_latency_sleeps_fixed_plus_proportional():
    slept = []
    FaultInjector(Fault("latency", latency_ms=5, latency_factor=1.0),
                  sleep=slept.append).after_execute(0.01)
    assert slept == [pytest.approx(0.015)]


def test_score_faults():
    s = np.array([0.1, 0.5, 0.9], np.float32)
    assert np.isnan(FaultInjector(Fault("nan")).scores(s)).all()
    assert (FaultInjector(Fault("constant")).scores(s) == 0.5).all()
    shifted = FaultInjector(Fault("shift", shift=1.5)).scores(s)
    assert (shifted > s).all() and shifted.dtype == s.dtype


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown fault"):
        Fault.from_manifest({"kind": "gremlins"})


def test_leak_keeps_memory_per_request_up_to_its_bound():
    inj = FaultInjector(Fault("leak", leak_kib=64, leak_max_mib=1))
    for _ in range(10):
        inj.before_request()
    assert inj.leaked_bytes == 10 * 64 * 1024
    for _ in range(100):
        inj.before_request()
    assert inj.leaked_bytes == 1024 * 1024  # 16 chunks of 64 KiB, then it stops


def test_leak_without_a_bound_is_refused():
    with pytest.raises(ValueError, match="leak_max_mib"):
        Fault.from_manifest({"kind": "leak", "leak_kib": 64})


def test_cpu_fault_burns_cpu_not_sleep():
    cpu = [0.0]

    def cpu_clock():
        cpu[0] += 0.001  # each look at the clock costs 1 ms of CPU
        return cpu[0]

    slept = []
    inj = FaultInjector(Fault("cpu", cpu_ms=5, cpu_factor=2.0), sleep=slept.append,
                        cpu_clock=cpu_clock)
    inj.before_request()
    assert cpu[0] >= 0.005
    before = cpu[0]
    inj.after_execute(0.01)
    assert cpu[0] - before >= 0.02 and not slept


def test_slow_after_is_healthy_until_its_time_then_slow():
    now = [0.0]
    slept = []
    inj = FaultInjector(Fault("slow_after", after_s=120, latency_ms=2, latency_factor=2.0),
                        sleep=slept.append, clock=lambda: now[0])
    now[0] = 119.0
    inj.after_execute(0.01)
    assert slept == []
    now[0] = 121.0
    inj.after_execute(0.01)
    assert slept == [pytest.approx(0.022)]


def test_reversed_hands_out_the_same_scores_in_reverse_order():
    s = np.array([0.2, 0.9, 0.5, 0.7], np.float32)
    out = FaultInjector(Fault("reversed")).scores(s.copy())
    assert sorted(out) == sorted(s)                      # the same distribution
    assert np.argmax(out) == np.argmin(s) and np.argmin(out) == np.argmax(s)
    assert list(np.argsort(out)) == list(np.argsort(s)[::-1])
