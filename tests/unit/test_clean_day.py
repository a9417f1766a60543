"""A simulated day of clean traffic through the real detectors and the real decision: no rollback.
The same day with a bad version activated at noon must produce one, so this test can fail."""
import numpy as np
import pytest

from monitor.decide import decide
from monitor.detect import PRESET_SIGNAL, OnlineDetector
from monitor.detect_eval import FAULTS, make_trace
from monitor.poller import WATCHED_SIGNALS, default_detector_configs
from monitor.records import (ActionRecord, DecisionInputs, Policy, ScrapeOutcome, VersionState,
                             detection_from_change_point)

DAY = 86_400


def simulate(seed: int, fault=None, onset: int = DAY // 2, samples: int = DAY):
    signals = {PRESET_SIGNAL[p] for p in WATCHED_SIGNALS}  # error_budget reads error_rate
    traces = {s: make_trace(s, seed, samples, fault=fault if fault and fault.signal == s else None,
                            onset=onset) for s in signals}
    detectors = {s: OnlineDetector(c) for s, c in default_detector_configs().items()}
    policy = Policy()
    served, activated = "1", 0.0
    actions: list[ActionRecord] = []
    detections = []
    rollbacks = []
    states = (VersionState("1", "READY"), VersionState("2", "READY"))
    for t in range(samples):
        now = float(t)
        if fault is not None and t == onset:
            served, activated = "2", now
        for preset, det in detectors.items():
            s = PRESET_SIGNAL[preset]
            cp = det.update(traces[s][t])
            if cp is not None:
                detections.append(detection_from_change_point(
                    cp, model="ranker", version=served, signal=s, changed_at=float(cp.index),
                    detected_at=now))
        detections = [d for d in detections if now - d.detected_at <= policy.detection_window_s]
        if not detections:
            continue  # with no evidence the decision is healthy; skip the call to keep this fast
        decision = decide(DecisionInputs(
            model="ranker", served_version=served, now=now, version_states=states,
            detections=tuple(detections), scrape_outcomes=(ScrapeOutcome(now, True),),
            last_sample_at=now, activated_at=activated, last_known_good="1",
            actions=tuple(actions)), policy)
        if decision.action == "rollback":
            rollbacks.append((t, decision))
            actions.append(ActionRecord(now, "rollback", "ranker", "1"))
            served, activated = "1", now
            detectors = {s: OnlineDetector(c) for s, c in default_detector_configs().items()}
            detections = []
    return rollbacks


@pytest.mark.parametrize("seed", [1, 2])
def test_a_clean_day_causes_no_rollback(seed):
    assert simulate(seed) == []


@pytest.mark.parametrize("fault", [f for f in FAULTS if f.description in (
    "error rate 0.2 % -> 30 %", "mean latency x2 (+100 %)")], ids=lambda f: f.signal)
def test_the_same_day_with_a_bad_version_at_noon_rolls_back_once(fault):
    rollbacks = simulate(1, fault=fault, onset=6 * 3600, samples=7 * 3600)
    assert len(rollbacks) == 1
    t, decision = rollbacks[0]
    assert 0 <= t - 6 * 3600 <= 30
    assert decision.target_version == "1"
