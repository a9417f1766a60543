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
