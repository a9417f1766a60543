import collections
import copy
import dataclasses
import random

import pytest

from monitor.decide import decide, update_known_good
from monitor.types import (
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
        "late change right after a server restart: alert only",
        {"activated_at": -1000.0, "reset_times": (940.0,), "detections": (det(),)},
        {}, "degraded", "alert", None, "server restarted",
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


def _table():
    return [(c[0], make_inputs(**c[1]), dataclasses.replace(Policy(), **c[2])) for c in CASES]


def test_decide_keeps_no_state_between_calls_and_changes_nothing_it_is_given():
    """decide is a function of its arguments: each case of the table, decided again in another
    order after all the others (their rollbacks, reloads and alerts), gets the decision it got
    first; and deciding leaves the inputs and the policy as they were."""
    table = _table()
    before = copy.deepcopy(table)
    first = {name: decide(inputs, policy) for name, inputs, policy in table}
    assert len(first) == len(table)
    order = random.Random(11).sample(table, len(table))
    for name, inputs, policy in order + order[::-1]:
        assert decide(inputs, policy) == first[name], name
    assert table == before


def _shuffled(inputs: DecisionInputs, rng: random.Random) -> DecisionInputs:
    """The same evidence in another order (scrape outcomes and resets keep theirs: oldest first)."""
    def shuffle(items):
        return tuple(rng.sample(items, len(items)))
    return dataclasses.replace(
        inputs, detections=shuffle(inputs.detections), probes=shuffle(inputs.probes),
        other_model_detections=shuffle(inputs.other_model_detections),
        actions=shuffle(inputs.actions), version_states=shuffle(inputs.version_states))


@pytest.mark.parametrize("name,inputs,policy", _table(), ids=[c[0] for c in CASES])
def test_the_order_evidence_arrives_in_does_not_change_the_decision(name, inputs, policy):
    expected = decide(inputs, policy)
    rng = random.Random(name)
    for _ in range(4):
        got = decide(_shuffled(inputs, rng), policy)
        assert (got.phase, got.action, got.target_version) == \
            (expected.phase, expected.action, expected.target_version), got.reason
        assert sorted(map(id, got.evidence)) == sorted(map(id, expected.evidence))


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


DAY = 86_400


def _runs(labels) -> list[tuple[int, int, tuple]]:
    """[(first second, last second, label)] for each run of equal labels."""
    out: list[tuple[int, int, tuple]] = []
    for t, label in enumerate(labels):
        if out and out[-1][2] == label:
            out[-1] = (out[-1][0], t, label)
        else:
            out.append((t, t, label))
    return out


def test_a_clean_day_with_a_restart_and_unattributable_alarms_never_rolls_back():
    """86,400 one-second decisions of a day on which version 2 (activated at 0) stays good while
    things that look bad happen around it: a change that began before the activation, errors up on
    another model at the same moment, errors on a version that does not serve, a night with 3 of 3
    requests failing, golden probes answered 404 and one probe timeout, isolated scrape errors, and
    a real Triton restart at noon (scrapes refused, the version LOADING and unserved, counters
    reset, every model slower for a while after). Version 1 is a rollback target all day, so a
    wrong rollback is not turned into an alert. Every second must get the (phase, action) the
    rules give: no rollback or reload, alerts for what is not attributable, the rest healthy or
    inconclusive."""
    rng = random.Random(7)
    policy = Policy()
    window = int(policy.detection_window_s)
    expected = [("healthy", "none")] * DAY

    def expect(first: int, last: int, phase: str, action: str) -> None:
        expected[first:last + 1] = [(phase, action)] * (last + 1 - first)

    ours: dict[int, list[Detection]] = collections.defaultdict(list)  # second -> new detections
    others: dict[int, list[Detection]] = collections.defaultdict(list)
    # 00:01: latency rose 2 min before version 2 was activated: not its doing, an alert.
    ours[60].append(det("latency_ms", changed_at=-120.0, detected_at=60.0))
    expect(60, 60 + window, "degraded", "alert")
    # Every hour at :30, harmless detections: traffic follows the day, latency improves.
    for hour in range(24):
        t = hour * 3600 + 1800
        ours[t] += [det("request_rate", changed_at=t - 30.0, detected_at=float(t),
                        direction=rng.choice(["up", "down"])),
                    det("latency_ms", changed_at=t - 30.0, detected_at=float(t), direction="down")]
    # 02:00: errors up on version 2 and on another model together: infrastructure, an alert.
    ours[7200].append(det(changed_at=7170.0, detected_at=7200.0))
    others[7200].append(det(model="encoder", version="1", changed_at=7175.0, detected_at=7200.0))
    expect(7200, 7200 + window, "degraded", "alert")
    # 04:00: errors up on another model alone, and on version 1, which does not serve: nothing.
    others[14400].append(det(model="encoder", version="1", changed_at=14370.0, detected_at=14400.0))
    ours[14400].append(det(version="1", changed_at=14370.0, detected_at=14400.0))
    # 03:00-03:10: a quiet night, 3 of 3 requests failed: too little traffic to call a stub dead.
    quiet = range(10800, 11400)
    # 06:00: golden probes answered 404 twice (not the version's failure), then one timeout,
    # which is watched until the next probe answers.
    odd_probes = {21600: answered(404, 21600.0), 21605: answered(404, 21605.0),
                  21700: probe("timeout", 21700.0)}
    expect(21700, 21704, "inconclusive", "none")
    # 12:00: Triton restarts. 20 s refused (3 failed scrapes in a row alert), 10 s with the version
    # LOADING (nothing serves), then version 2 READY again with counters reset; caches are cold,
    # so latency rises on every model at once (detected 60 s later): infrastructure, an alert.
    down, loading, up = 43_200, 43_220, 43_230
    expect(down, down + policy.consecutive_error_limit - 2, "inconclusive", "none")
    expect(down + policy.consecutive_error_limit - 1, loading - 1, "inconclusive", "alert")
    expect(loading, up - 1, "inconclusive", "none")
    ours[up + 60].append(det("latency_ms", changed_at=up + 10.0, detected_at=up + 60.0))
    others[up + 60].append(det("latency_ms", model="encoder", version="1", changed_at=up + 15.0,
                               detected_at=up + 60.0))
    expect(up + 60, up + 60 + window, "degraded", "alert")
    # Isolated scrape errors (never two in a row) away from the restart: one inconclusive second.
    failed_scrapes = set()
    for t in range(1, DAY):
        if rng.random() < 0.002 and t - 1 not in failed_scrapes and not down - 30 <= t <= up + 30:
            failed_scrapes.add(t)
            expected[t] = ("inconclusive", "none")

    outcomes: collections.deque = collections.deque(maxlen=20)
    detections: collections.deque = collections.deque()
    other_detections: collections.deque = collections.deque()
    probes: collections.deque = collections.deque(maxlen=20)
    kg = KnownGoodState(known_good="1")
    got, reasons = [], []
    last_sample = None
    for t in range(DAY):
        now = float(t)
        restarting = down <= t < up
        scrape_ok = t not in failed_scrapes and not down <= t < loading
        outcomes.append(ScrapeOutcome(now, scrape_ok, None if scrape_ok else
                                      ("ConnectionError: refused" if restarting else "timeout")))
        served = None if loading <= t < up else "2"
        if scrape_ok and served is not None:
            last_sample = now
        for new, held in ((ours, detections), (others, other_detections)):
            held.extend(new.get(t, ()))
            while held and now - held[0].detected_at > 2 * window:
                held.popleft()  # decide must itself ignore the ones older than one window
        if served is not None and t % 5 == 0:
            probes.append(odd_probes.get(t) or (
                ProbeResult("ranker", "2", now, "error", "request failed: connection refused")
                if restarting else probe("ok", now)))
        if t in quiet:
            failures = FailureEvidence("ranker", "2", 10.0, 3.0, 3.0)
        elif down <= t < up + 10:
            failures = FailureEvidence("ranker", "2", 10.0, 0.0, 0.0)  # Triton counted nothing
        else:
            failures = FailureEvidence("ranker", "2", 10.0, 50.0, float(rng.randint(0, 2)))
        decision = decide(DecisionInputs(
            model="ranker", served_version=served, now=now,
            version_states=(VersionState("1", "UNAVAILABLE", "unloaded"),
                            VersionState("2", "LOADING" if served is None else "READY")),
            detections=tuple(detections), other_model_detections=tuple(other_detections),
            scrape_outcomes=tuple(outcomes), last_sample_at=last_sample, activated_at=0.0,
            last_known_good="1", probes=tuple(probes), failure_evidence=failures,
            reset_times=(float(up),) if up <= t <= up + window else (), peers_observed=2,
        ), policy)
        got.append((decision.phase, decision.action))
        reasons.append(decision.reason)
        kg = update_known_good(kg, served, decision.phase, now, policy)
    wrong = [(t, expected[t], got[t], reasons[t]) for t in range(DAY) if got[t] != expected[t]]
    assert not wrong, f"{len(wrong)} seconds decided otherwise, first: {wrong[:3]}"
    print("clean day:", [r for r in _runs(got) if r[2] != ("healthy", "none") and r[1] > r[0]])
    assert 100 < len(failed_scrapes) < 300  # the noise was there
    assert kg.known_good == "2"  # and version 2 became known good on it


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


def test_rate_limits_count_the_rollbacks_in_the_desired_state_once():
    """A restarted sidecar, or another replica holding the lease now, has no rollbacks in memory:
    the desired state's still count. One this sidecar took is in both, and counts once."""
    from monitor.runtime import ModelRuntime
    from sentinel import desired_state as ds
    state = ds.mark_known_good(ds.initial("ranker", "1", 0.0, "build"), "1", 1.0, "poller")
    for at in (500.0, 700.0):
        state = ds.roll_back(ds.deploy(state, "2", at - 1, "ci"), "2", "1", "errors", at, "a")
    state = ds.deploy(state, "2", 900.0, "ci")
    rt = ModelRuntime("ranker", detectors={}, desired=state)
    assert [(a.kind, a.version, a.ts) for a in rt.counted_actions] == [
        ("rollback", "1", 500.0), ("rollback", "1", 700.0)]
    rt.actions.append(ActionRecord(700.0, "rollback", "ranker", "1"))  # this sidecar's, also there
    rt.actions.append(ActionRecord(950.0, "reload", "ranker", "2"))    # memory only
    assert len(rt.counted_actions) == 3
    two = decide(make_inputs(detections=(det(),), actions=rt.counted_actions[:2]),
                 Policy(max_rollbacks_per_hour=3))
    assert two.action == "rollback", two.reason
    rt.actions.clear()
    state = ds.roll_back(state, "2", "1", "errors", 800.0, "b")  # a third, by another replica
    rt.desired = ds.deploy(state, "2", 900.0, "ci")
    three = decide(make_inputs(detections=(det(),), actions=rt.counted_actions),
                   Policy(max_rollbacks_per_hour=3))
    assert three.action == "alert" and "rollback limit reached (3 in the last hour" in three.reason
