import collections
import dataclasses
import random

import pytest

from monitor.decide import decide, update_known_good
from monitor.records import (
    ActionRecord,
    DecisionInputs,
    Detection,
    FailureEvidence,
    KnownGoodState,
    Policy,
    ProbeResult,
    ScrapeOutcome,
    VersionState,
)

NOW = 1000.0
ACTIVATED = 900.0
READY_INDEX = (
    VersionState("1", "UNAVAILABLE", "unloaded"),
    VersionState("2", "READY"),
)
OK_SCRAPES = tuple(ScrapeOutcome(ts=NOW - i, ok=True) for i in range(5, 0, -1))
ERR = ScrapeOutcome(ts=NOW, ok=False, error="ConnectionError: refused")


def det(signal="error_rate", version="2", changed_at=950.0, detected_at=960.0, direction="up", model="ranker"):
    return Detection(
        model=model, version=version, signal=signal, changed_at=changed_at, detected_at=detected_at,
        direction=direction, baseline_mean=0.01, recent_mean=0.3, method="test",
    )


def probe(status, ts=990.0, version="2"):
    return ProbeResult(model="ranker", version=version, ts=ts, status=status, detail=status)


def dead(requests=40.0, failures=40.0):
    return FailureEvidence("ranker", "2", 30.0, requests, failures)


def make_inputs(**overrides) -> DecisionInputs:
    base = DecisionInputs(
        model="ranker",
        served_version="2",
        now=NOW,
        version_states=READY_INDEX,
        scrape_outcomes=OK_SCRAPES,
        last_sample_at=NOW - 1,
        activated_at=ACTIVATED,
        last_known_good="1",
        failure_evidence=FailureEvidence("ranker", "2", 30.0, 3000.0, 1.0),
        peers_observed=3,
    )
    return dataclasses.replace(base, **overrides)


CASES = [
    # id, overrides, policy overrides, phase, action, target, reason fragment
    ("healthy", {}, {}, "healthy", "none", None, "no attributable"),
    ("triton restarted: resets, no detections", {"reset_times": (950.0, 951.0)}, {}, "healthy", "none", None, "reset"),
    ("error rate up after activation", {"detections": (det(),)}, {}, "degraded", "rollback", "1", "after version 2"),
    ("latency up after activation", {"detections": (det("latency_ms"),)}, {}, "degraded", "rollback", "1", "latency_ms"),
    ("score mean shift either way", {"detections": (det("score_mean", direction="down"),)}, {}, "degraded", "rollback", "1", "score_mean"),
    ("nan rate up", {"detections": (det("nan_rate"),)}, {}, "degraded", "rollback", "1", "nan_rate"),
    ("traffic change is not evidence", {"detections": (det("request_rate", direction="down"),)}, {}, "healthy", "none", None, ""),
    ("latency improvement is not evidence", {"detections": (det("latency_ms", direction="down"),)}, {}, "healthy", "none", None, ""),
    ("change began before activation", {"detections": (det(changed_at=850.0),)}, {}, "degraded", "alert", None, "before version 2 was activated"),
    ("change within attribution slack", {"detections": (det(changed_at=897.0),)}, {}, "degraded", "rollback", "1", ""),
    (
        "late change, other series fine: late regression",
        {"activated_at": -1000.0, "detections": (det(),)},
        {}, "degraded", "rollback", "1", "a late regression",
    ),
    (
        "late change, nothing else watched: alert only",
        {"activated_at": -1000.0, "peers_observed": 0, "detections": (det(),)},
        {}, "degraded", "alert", None, "32 min after version 2",
    ),
    (
        "change within the attribution window without peers still rolls back",
        {"peers_observed": 0, "detections": (det(),)},
        {}, "degraded", "rollback", "1", "after version 2",
    ),
    (
        "all models degrade together",
        {"detections": (det(),), "other_model_detections": (det(model="encoder", version="1", changed_at=955.0),)},
        {}, "degraded", "alert", None, "infrastructure-wide",
    ),
    (
        "other version of the model degrades together",
        {"detections": (det(), det(version="1", changed_at=940.0))},
        {}, "degraded", "alert", None, "infrastructure-wide",
    ),
    (
        "unrelated change elsewhere long before",
        {"detections": (det(),), "other_model_detections": (det(model="encoder", version="1", changed_at=700.0, detected_at=750.0),)},
        {}, "degraded", "rollback", "1", "",
    ),
    ("detection too old", {"detections": (det(detected_at=NOW - 400.0),)}, {}, "healthy", "none", None, ""),
    (
        "detection from an earlier serving period",
        {"detections": (det(changed_at=500.0, detected_at=520.0),)},
        {}, "healthy", "none", None, "",
    ),
    (
        "no activation time, only this version bad",
        {"activated_at": None, "detections": (det(),)},
        {}, "degraded", "rollback", "1", "only this version",
    ),
    (
        "no activation time, nothing to compare",
        {"activated_at": None, "peers_observed": 0, "detections": (det(),)},
        {}, "degraded", "alert", None, "nothing to compare",
    ),
    ("dead stub: all requests fail while READY", {"failure_evidence": dead()}, {}, "degraded", "reload", "2", "reloading the same version"),
    ("dead stub without known good still reloads", {"failure_evidence": dead(), "last_known_good": None}, {}, "degraded", "reload", "2", ""),
    (
        "dead stub right after our reload: wait for fresh data",
        {"failure_evidence": dead(), "actions": (ActionRecord(990.0, "reload", "ranker", "2"),)},
        {}, "inconclusive", "none", None, "waiting for a full 30s",
    ),
    (
        "probe timeouts right after our reload: cooldown",
        {"probes": (probe("timeout", 993.0), probe("timeout", 996.0)), "actions": (ActionRecord(990.0, "reload", "ranker", "2"),)},
        {}, "degraded", "none", None, "cooldown",
    ),
    (
        "still dead after a reload: the version is bad",
        {"failure_evidence": dead(), "actions": (ActionRecord(940.0, "reload", "ranker", "2"),)},
        {}, "degraded", "rollback", "1", "still after a reload",
    ),
    (
        "failure window still covering our reload: wait",
        {"failure_evidence": dead(), "actions": (ActionRecord(975.0, "reload", "ranker", "2"),)},
        {}, "inconclusive", "none", None, "reloaded 25s ago",
    ),
    (
        "probe before our reload is no evidence",
        {"probes": (probe("timeout", 960.0), probe("timeout", 965.0)),
         "actions": (ActionRecord(970.0, "reload", "ranker", "2"),)},
        {}, "healthy", "none", None, "",
    ),
    (
        "dead-stub probe after our reload: escalate",
        {"probes": (ProbeResult("ranker", "2", 990.0, "error", "Stub process 'ranker_0_0' is not healthy."),),
         "actions": (ActionRecord(960.0, "reload", "ranker", "2"),)},
        {}, "degraded", "rollback", "1", "still after a reload",
    ),
    (
        "reload limit per hour",
        {"failure_evidence": dead(), "actions": tuple(ActionRecord(t, "reload", "ranker", "2") for t in (100.0, 400.0, 500.0))},
        {"max_reloads_per_hour": 3}, "degraded", "alert", None, "reload limit",
    ),
    (
        "stale failure counts do not reload",
        {"failure_evidence": dead(), "scrape_outcomes": OK_SCRAPES + (ERR,)},
        {}, "inconclusive", "none", None, "scrape failed",
    ),
    (
        "probe timeouts alone still reload while scrapes fail",
        {"probes": (probe("timeout", 980.0), probe("timeout", 990.0)), "scrape_outcomes": OK_SCRAPES + (ERR,)},
        {}, "degraded", "reload", "2", "golden probe",
    ),
    (
        "probe answered by a dead stub",
        {"probes": (ProbeResult("ranker", "2", 990.0, "error", "HTTP 500: Stub process 'ranker_0_0' is not healthy."),)},
        {}, "degraded", "reload", "2", "not healthy",
    ),
    ("other probe errors are not stub evidence", {"probes": (probe("error"),)}, {}, "healthy", "none", None, ""),
    ("too little traffic to call a stub dead", {"failure_evidence": dead(3.0, 3.0)}, {}, "healthy", "none", None, ""),
    (
        "probe timeout with failures",
        {"probes": (probe("timeout"),), "failure_evidence": dead(100.0, 30.0)},
        {}, "degraded", "reload", "2", "timed out",
    ),
    ("repeated probe timeouts: hung stub", {"probes": (probe("timeout", 980.0), probe("timeout", 990.0))}, {}, "degraded", "reload", "2", ""),
    ("one probe timeout alone", {"probes": (probe("ok", 980.0), probe("timeout", 990.0))}, {}, "inconclusive", "none", None, "watching"),
    ("golden probe mismatch", {"probes": (probe("mismatch"),)}, {}, "degraded", "rollback", "1", "golden-set probe"),
    ("mismatch superseded by a good probe", {"probes": (probe("mismatch", 980.0), probe("ok", 990.0))}, {}, "healthy", "none", None, ""),
    ("mismatch on another version", {"probes": (probe("mismatch", version="1"),)}, {}, "healthy", "none", None, ""),
    (
        "requested version fails to load",
        {"requested_version": "3", "version_states": READY_INDEX + (VersionState("3", "UNAVAILABLE", "initialize raised"),)},
        {}, "error", "alert", None, "version 2 stays served",
    ),
    (
        "load failure does not hide an attributable degradation",
        {"requested_version": "3", "detections": (det(),), "version_states": READY_INDEX + (VersionState("3", "UNAVAILABLE", "boom"),)},
        {}, "degraded", "rollback", "1", "also: version 3 failed to load",
    ),
    ("single scrape error", {"scrape_outcomes": OK_SCRAPES + (ERR,)}, {}, "inconclusive", "none", None, "scrape failed"),
    (
        "single scrape error never rolls back",
        {"scrape_outcomes": OK_SCRAPES + (ERR,), "detections": (det(),)},
        {}, "inconclusive", "none", None, "",
    ),
    (
        "repeated scrape errors alert",
        {"scrape_outcomes": OK_SCRAPES + (ERR,) * 3, "detections": (det(),)},
        {}, "inconclusive", "alert", None, "3 consecutive",
    ),
    ("errors then recovery", {"scrape_outcomes": (ERR, ERR) + OK_SCRAPES}, {}, "healthy", "none", None, ""),
    ("no data yet", {"last_sample_at": None}, {}, "inconclusive", "none", None, "no metrics"),
    ("stale data never rolls back", {"last_sample_at": NOW - 60, "detections": (det(),)}, {}, "inconclusive", "none", None, "for 60s"),
    ("no last known good", {"last_known_good": None, "detections": (det(),)}, {}, "degraded", "alert", None, "no other last known good"),
    ("known good is the served one", {"last_known_good": "2", "detections": (det(),)}, {}, "degraded", "alert", None, "no other last known good"),
    ("operator pin", {"pinned_version": "2", "detections": (det(),)}, {}, "degraded", "alert", None, "pinned"),
    ("operator freeze", {"frozen": True, "detections": (det(),)}, {}, "degraded", "none", None, "frozen"),
    ("policy freeze also silences alerts", {"scrape_outcomes": (ERR,) * 4}, {"freeze": True}, "inconclusive", "none", None, "frozen"),
    (
        "cooldown after a rollback",
        {"detections": (det(),), "actions": (ActionRecord(985.0, "rollback", "ranker", "2"),)},
        {}, "degraded", "none", None, "cooldown",
    ),
    (
        "rollback limit per hour",
        {"detections": (det(),), "actions": tuple(ActionRecord(t, "rollback", "ranker", "2") for t in (500.0, 700.0, 800.0))},
        {}, "degraded", "alert", None, "rollback limit",
    ),
    (
        "rollbacks older than an hour do not count",
        {"detections": (det(),), "actions": tuple(ActionRecord(t, "rollback", "ranker", "2") for t in (-3000.0, -2800.0, -2700.0))},
        {}, "degraded", "rollback", "1", "",
    ),
    (
        "another model's actions do not cool this one down",
        {"detections": (det(),), "actions": (ActionRecord(995.0, "rollback", "encoder", "1"),)},
        {}, "degraded", "rollback", "1", "",
    ),
    ("served version unavailable", {"version_states": (VersionState("2", "UNAVAILABLE", "stub gone"),)}, {}, "error", "alert", None, "stub gone"),
    ("served version switching", {"version_states": (VersionState("2", "UNLOADING"),)}, {}, "inconclusive", "none", None, "switch"),
    ("served version not in index", {"version_states": (VersionState("1", "READY"),)}, {}, "error", "alert", None, "not in Triton"),
    ("no served version", {"served_version": None}, {}, "inconclusive", "none", None, "no served version"),
]


@pytest.mark.parametrize(
    "overrides,policy_overrides,phase,action,target,fragment",
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_decision_table(overrides, policy_overrides, phase, action, target, fragment):
    policy = dataclasses.replace(Policy(), **policy_overrides)
    decision = decide(make_inputs(**overrides), policy)
    assert (decision.phase, decision.action, decision.target_version) == (phase, action, target), decision.reason
    assert fragment in decision.reason
    assert decision.model == "ranker" and decision.ts == NOW


def test_rollback_carries_the_detections_it_used():
    d = det("latency_ms")
    decision = decide(make_inputs(detections=(d, det("request_rate"))))
    assert decision.action == "rollback"
    assert decision.evidence == (d,)


def test_decide_is_pure():
    inputs = make_inputs(detections=(det(),), probes=(probe("ok"),))
    assert decide(inputs) == decide(inputs)


def test_known_good_after_a_healthy_stretch():
    policy = Policy(known_good_after_s=60.0)
    state = KnownGoodState(known_good="1")
    state = update_known_good(state, "2", "healthy", 0.0, policy)
    assert state == KnownGoodState(known_good="1", candidate="2", healthy_since=0.0)
    state = update_known_good(state, "2", "healthy", 59.0, policy)
    assert state.known_good == "1"
    state = update_known_good(state, "2", "inconclusive", 61.0, policy)
    assert state.known_good == "1" and state.healthy_since == 0.0  # promotion needs a healthy decision
    state = update_known_good(state, "2", "healthy", 62.0, policy)
    assert state.known_good == "2"


def test_known_good_clock_resets_on_degradation_and_on_switch():
    policy = Policy(known_good_after_s=60.0)
    state = update_known_good(KnownGoodState("1"), "2", "healthy", 0.0, policy)
    state = update_known_good(state, "2", "degraded", 30.0, policy)
    state = update_known_good(state, "2", "healthy", 70.0, policy)
    assert state.known_good == "1" and state.healthy_since == 70.0
    state = update_known_good(state, "3", "healthy", 100.0, policy)
    assert state.candidate == "3" and state.healthy_since == 100.0


def test_operator_mark_wins_at_once():
    state = update_known_good(KnownGoodState("1"), "2", "degraded", 5.0, Policy(), operator_mark="2")
    assert state.known_good == "2"


def test_simulated_clean_day_has_no_rollbacks():
    """86,400 one-second decisions over a day without degradation: occasional scrape errors,
    benign detections (traffic follows the day, latency improves), a Triton restart at noon."""
    rng = random.Random(7)
    policy = Policy()
    outcomes: collections.deque = collections.deque(maxlen=10)
    kg = KnownGoodState(known_good="1")
    actions: list[str] = []
    phases: collections.Counter = collections.Counter()
    last_sample = None
    benign = []
    for t in range(86_400):
        now = float(t)
        ok = rng.random() > 0.002
        outcomes.append(ScrapeOutcome(now, ok, None if ok else "timeout"))
        if ok:
            last_sample = now
        if t % 3600 == 1800:
            benign = [det("request_rate", changed_at=now - 30, detected_at=now, direction=rng.choice(["up", "down"])),
                      det("latency_ms", changed_at=now - 30, detected_at=now, direction="down")]
        inputs = DecisionInputs(
            model="ranker", served_version="2", now=now, version_states=READY_INDEX,
            scrape_outcomes=tuple(outcomes), last_sample_at=last_sample, activated_at=0.0,
            last_known_good=kg.known_good, detections=tuple(benign),
            failure_evidence=FailureEvidence("ranker", "2", 30.0, 3000.0, float(rng.randint(0, 3))),
            reset_times=(43_200.0,) if t >= 43_200 else (), peers_observed=2,
        )
        decision = decide(inputs, policy)
        phases[decision.phase] += 1
        if decision.action != "none":
            actions.append(decision.action)
        kg = update_known_good(kg, "2", decision.phase, now, policy)
    print(f"clean day: phases={dict(phases)} actions={collections.Counter(actions)}")
    assert "rollback" not in actions and "reload" not in actions
    assert phases["healthy"] > 86_000
    assert kg.known_good == "2"


def answered(code, ts, detail=None):
    return ProbeResult(model="ranker", version="2", ts=ts, status="error",
                       detail=detail or f"HTTP {code}: fault", http_status=code)


def test_golden_probes_answered_with_errors_are_evidence_for_a_rollback():
    one = make_inputs(probes=(answered(500, 980.0),))
    assert decide(one).action == "none"  # one failed probe is not enough
    two = decide(make_inputs(probes=(answered(500, 980.0), answered(500, 990.0))))
    assert (two.phase, two.action, two.target_version) == ("degraded", "rollback", "1")
    assert "failed 2 times in a row" in two.reason
    # an ok probe in between breaks the run; a 404 (a version just unloaded) is not the version's
    broken = (answered(500, 970.0), probe("ok", ts=980.0), answered(500, 990.0))
    assert decide(make_inputs(probes=broken)).action == "none"
    gone = (answered(404, 980.0), answered(404, 990.0))
    assert decide(make_inputs(probes=gone)).action == "none"


def test_a_dead_stub_answer_is_a_reload_not_a_rollback():
    stub = "HTTP 500: Stub process 'ranker_0_0' is not healthy."
    d = decide(make_inputs(probes=(answered(500, 980.0, stub), answered(500, 990.0, stub))))
    assert (d.action, d.target_version) == ("reload", "2")
