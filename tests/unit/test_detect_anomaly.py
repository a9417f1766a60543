import math

import numpy as np
import pytest

from monitor.anomaly import AnomalyConfig, AnomalyDetector, detect_anomalies
from sentinel.bench.detect_eval import TEST_SEEDS, make_trace


@pytest.mark.parametrize("level", [0.0, 1.0, -3.0, 1e9])
def test_constant_series_never_alerts(level):
    assert detect_anomalies(np.full(3000, level)) == []


def test_a_spike_alerts_once_and_the_refractory_period_holds():
    rng = np.random.default_rng(1)
    values = rng.normal(100, 2, 3000)
    values[1000] = 160
    values[1050] = 160  # inside the refractory period of the first
    values[2000] = 40
    found = detect_anomalies(values)
    assert [a.index for a in found] == [1000, 2000]
    assert found[0].score > 6 and found[1].score < -6


def test_direction_and_missing_values():
    rng = np.random.default_rng(2)
    values = rng.normal(10, 1, 2000)
    values[1500] = -20
    values[::9] = np.nan
    assert detect_anomalies(values, AnomalyConfig(direction="up")) == []
    detector = AnomalyDetector()
    assert all(detector.update(v) is None for v in (None, math.nan, math.inf))


def test_a_burst_does_not_teach_the_detector_that_bursts_are_normal():
    rng = np.random.default_rng(3)
    values = rng.normal(50, 1, 4000)
    values[1000:1050] = 80  # a long burst: unclipped, it would inflate the spread ~10x
    values[1100] = 65
    assert [a.index for a in detect_anomalies(values, AnomalyConfig(refractory=0))][-1] == 1100


def test_clean_serving_trace_alerts_rarely():
    values = make_trace("latency_ms", TEST_SEEDS[20], 86_400)
    # ~24 real one-second latency bursts (4x) a day are anomalies; noise must not add many.
    assert len(detect_anomalies(values)) <= 40


@pytest.mark.parametrize("field, value", [("threshold", 0.0), ("span", 1), ("direction", "x"),
                                          ("refractory", -1), ("warmup", 2.5)])
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=rf"AnomalyConfig\.{field}="):
        AnomalyConfig(**{field: value})
