"""The canary's judgement (monitor.canary), the holder's steps (monitor.canary_watch) and the canary in
the desired state, on synthetic fleet counters. The real fleet is tests/integration/test_fleet.py."""
from __future__ import annotations

import json

import numpy as np
import pytest

from monitor.canary import CanaryPolicy, Counts, Tally, delta, judge
from monitor.canary_watch import CanaryWatch, FleetEvidence
from monitor.replicas import Replica, ReplicaRegistry
from monitor.types import Scrape, ScoreHistogram, VersionSample
from sentinel import desired_state as ds

BOUNDS = (0.25, 0.5, 0.75, float("inf"))


class Counter:
    """Cumulative Triton-like counters of one version on one source."""

    def __init__(self, model="ranker", version="1"):
        self.model, self.version = model, version
        self.success = self.failures = self.duration = 0.0
        self.buckets = np.zeros(len(BOUNDS))

    def serve(self, n: int, errors: int = 0, latency_us: float = 1000.0, scores=None):
        self.success += n - errors
        self.failures += errors
        self.duration += (n - errors) * latency_us
        if scores is not None:
            self.buckets += np.histogram(scores, bins=[-np.inf, *BOUNDS[:-1], np.inf])[0]

    def sample(self) -> VersionSample:
        cum = tuple(float(x) for x in np.cumsum(self.buckets))
        return VersionSample(self.model, self.version, success=self.success,
                             failures=(("OTHER", self.failures),),
                             request_duration_us=self.duration,
                             score=ScoreHistogram(BOUNDS, cum, 0.0, cum[-1]))


def scrape(ts: float, *counters: Counter) -> Scrape:
    return Scrape(ts=ts, phase="ok", samples=tuple(c.sample() for c in counters))


def run(policy: CanaryPolicy, seconds: int, canary_rate=20, fleet_rate=40, canary_err=0.0,
        fleet_err=0.0, canary_lat=1000.0, fleet_lat=1000.0, rng=None, canary_scores=None,
        until_verdict=True, load=None):
    """Feed one scrape per second; the verdicts at each completed bin."""
    rng = rng or np.random.default_rng(0)
    c, f = Counter(version="2"), Counter(version="1")
    tally = Tally("ranker", "2", "1", policy.look_every_s)
    verdicts = []
    for t in range(seconds + 1):
        k = load(t) if load else 1.0
        nc, nf = rng.poisson(canary_rate * k), rng.poisson(fleet_rate * k)
        scores_c = (canary_scores or (lambda n: rng.uniform(0, 1, n)))(nc)
        c.serve(nc, rng.binomial(nc, canary_err), canary_lat * k * rng.lognormal(0, 0.05), scores_c)
        f.serve(nf, rng.binomial(nf, fleet_err), fleet_lat * k * rng.lognormal(0, 0.05),
                rng.uniform(0, 1, nf))
        if tally.add({"prometheus": scrape(float(t), c, f)}, float(t)):
            v = judge(tally, policy, float(t))
            verdicts.append(v)
            if until_verdict and v.outcome in ("pass", "fail", "inconclusive"):
                break
    return verdicts


FAST = CanaryPolicy(duration_s=60, max_duration_s=120, min_requests=500)


def test_a_canary_failing_30_percent_of_requests_fails_at_the_first_look():
    verdicts = run(FAST, 120, canary_err=0.3)
    assert verdicts[0].outcome == "fail" and len(verdicts) == 1
    assert verdicts[0].checks[0].name == "errors" and verdicts[0].checks[0].failed
    assert "error rate" in verdicts[0].reason


def test_a_healthy_canary_passes_after_its_duration_with_enough_requests():
    verdicts = run(FAST, 120)
    assert verdicts[-1].outcome == "pass", verdicts[-1].reason
    assert verdicts[-1].paired_s >= 60 and verdicts[-1].canary.requests >= 500
    assert all(v.outcome == "running" for v in verdicts[:-1])


def test_too_little_traffic_ends_inconclusive_never_pass():
    verdicts = run(FAST, 200, canary_rate=2, fleet_rate=4)
    assert verdicts[-1].outcome == "inconclusive", verdicts[-1].reason
    assert "fewer than 500 requests" in verdicts[-1].reason
    assert not any(v.outcome == "pass" for v in verdicts)


def test_a_slower_canary_fails_on_latency_and_a_load_spike_on_both_groups_does_not():
    slow = run(FAST, 120, canary_lat=2000.0)
    assert slow[-1].outcome == "fail" and "latency" in slow[-1].reason
    # Load grows and slows every replica 7-fold over the minute: same minutes, so it cancels.
    slower_fleet = run(FAST, 120, load=lambda t: 1.0 + t / 10)
    assert slower_fleet[-1].outcome == "pass", slower_fleet[-1].reason


def test_a_moved_score_distribution_fails_unless_the_policy_only_reports_it():
    rng = np.random.default_rng(1)
    shifted = lambda n: rng.beta(5, 1, n)  # noqa: E731
    moved = run(FAST, 120, canary_scores=shifted, rng=rng)
    assert moved[-1].outcome == "fail" and "PSI" in moved[-1].reason
    rng = np.random.default_rng(1)
    lenient = CanaryPolicy(duration_s=60, max_duration_s=120, min_requests=500,
                           score_shift_fails=False)
    reported = run(lenient, 120, canary_scores=lambda n: rng.beta(5, 1, n), rng=rng)
    assert reported[-1].outcome == "pass"
    assert "shifted, reported only" in reported[-1].checks[2].detail


def user_scores(rng, requests: int, per_request: int = 64) -> np.ndarray:
    """Like the ranker's: one user per request, and all of a request's scores move with the user
    (a per-request offset), so the scores within a request are not independent draws."""
    offsets = rng.normal(0.5, 0.15, requests)
    return np.clip(offsets[:, None] + rng.normal(0, 0.05, (requests, per_request)), 0, 1).ravel()


def test_a_healthy_canary_with_few_requests_is_not_aborted_on_correlated_scores():
    """Same model on both sides, 64 sampled scores per request. Early on the canary has served 13
    requests: their 832 scores are 13 users, not 832 draws, and a test that counted them as
    draws read 13 users' offsets as a moved distribution (seen in test_fleet). Judged per request,
    it keeps running; with hundreds of requests it passes, and a really moved model still fails."""
    rng = np.random.default_rng(3)
    policy = CanaryPolicy(duration_s=10, max_duration_s=60, min_requests=200)
    aborted = 0
    for trial in range(50):
        c, f = Counter(version="2"), Counter(version="1")
        tally = Tally("ranker", "2", "1", policy.look_every_s)
        tally.add({"prometheus": scrape(0.0, c, f)}, 0.0)
        c.serve(13, scores=user_scores(rng, 13))
        f.serve(227, scores=user_scores(rng, 227))
        tally.add({"prometheus": scrape(5.0, c, f)}, 5.0)
        early = judge(tally, policy, 5.0)
        aborted += early.outcome == "fail"
    assert aborted == 0, f"{aborted} of 50 healthy canaries aborted on 13 requests"
    assert "fewer than 200 requests" in early.checks[2].detail

    def canary(shift: float) -> list:
        c, f = Counter(version="2"), Counter(version="1")
        tally = Tally("ranker", "2", "1", policy.look_every_s)
        tally.add({"prometheus": scrape(0.0, c, f)}, 0.0)
        verdicts = []
        for t in range(5, 61, 5):
            c.serve(60, scores=np.clip(user_scores(rng, 60) + shift, 0, 1))
            f.serve(120, scores=user_scores(rng, 120))
            tally.add({"prometheus": scrape(float(t), c, f)}, float(t))
            verdicts.append(judge(tally, policy, float(t)))
            if verdicts[-1].outcome != "running":
                break
        return verdicts

    healthy = canary(0.0)
    assert healthy[-1].outcome == "pass", healthy[-1].reason
    moved = canary(0.3)
    assert moved[-1].outcome == "fail" and "PSI" in moved[-1].reason, moved[-1].reason


def test_healthy_canaries_are_aborted_no_more_often_than_the_stated_false_alarm_rate():
    """400 healthy canaries with 1 % errors on both groups and noisy latency, every look taken,
    with no margins (the checks are pure significance tests): the stated family-wise rate is 5 %,
    so more than 10 % aborted would be a broken split over looks and checks."""
    policy = CanaryPolicy(duration_s=60, max_duration_s=120, min_requests=300,
                          false_alarm_rate=0.05, error_margin=0.0, latency_margin=0.0, min_psi=0.0)
    rng = np.random.default_rng(7)
    aborted = sum(run(policy, 60, canary_err=0.01, fleet_err=0.01, rng=rng)[-1].outcome == "fail"
                  for _ in range(400))
    print(f"[canary] healthy canaries aborted: {aborted} of 400 (stated rate 5 %)")
    assert aborted <= 40, aborted


def test_a_counter_reset_is_not_read_as_traffic():
    a = VersionSample("m", "1", success=100.0, request_duration_us=1e5)
    b = VersionSample("m", "1", success=5.0, request_duration_us=5e3)  # reloaded
    assert delta(a, b) is None
    assert delta(b, a) == Counts(95.0, 0.0, 95.0, 95000.0)


def test_error_responses_of_the_adapter_count_as_failures():
    """model.py answers a failed request with an error response: a Triton "success" that the
    adapter counts in sentinel_request_errors_total (a faulty version's usual way to fail)."""
    a = VersionSample("m", "2", success=100.0, request_errors=(("fault", 10.0),),
                      request_duration_us=1e5)
    b = VersionSample("m", "2", success=200.0, request_errors=(("fault", 40.0),),
                      failures=(("BACKEND", 2.0),), request_duration_us=2e5)
    assert delta(a, b) == Counts(102.0, 32.0, 100.0, 1e5)


def test_policy_overrides_are_checked():
    assert CanaryPolicy().with_overrides({"duration_s": 30}).duration_s == 30.0
    for bad in ({"nope": 1}, {"duration_s": -1}, {"score_shift_fails": "yes"},
                {"duration_s": 1000, "max_duration_s": 10}, {"false_alarm_rate": 0}):
        with pytest.raises(ValueError):
            CanaryPolicy().with_overrides(bad)


# ------------------------------------------------------------ desired state


def test_a_canary_in_the_desired_state_targets_its_replicas_and_survives_a_round_trip(tmp_path):
    s = ds.initial("ranker", "1", 0.0, "t")
    s = ds.start_canary(s, "2", ("a",), 1.0, "op", "try", {"duration_s": 30})
    assert s.target_for("a") == "2" and s.target_for("b") == "1" and s.version == "1"
    back = ds.from_dict(json.loads(json.dumps(ds.to_dict(s))), tmp_path)
    assert back == s
    widened = ds.widen_canary(back, ("b",), 2.0, "h")
    assert widened.canary.replicas == ("a", "b") and widened.canary.phase == "promoting"
    done = ds.finish_canary(widened, 3.0, "h")
    assert done.version == "2" and done.canary is None and done.watch.origin == "canary"
    rejected = ds.reject(back, "2", None, "canary failed", 4.0, "h")
    assert rejected.canary is None and rejected.version == "1" and rejected.is_rejected("2")
    assert ds.end_canary(back, 5.0, "h").canary is None
    assert ds.deploy(back, "3", 6.0, "op").canary is None  # a fleet-wide deploy replaces it
    bad = ds.to_dict(s)
    bad["canary"]["replicas"] = "a"
    with pytest.raises(ds.DesiredStateError):
        ds.from_dict(bad, tmp_path)


# ------------------------------------------------------------ the holder's steps


class FakeFleet:
    def __init__(self):
        self.c, self.f = Counter(version="2"), Counter(version="1")
        self.t = 0.0

    def scrape(self) -> Scrape:
        return scrape(self.t, self.c, self.f)


def members(serves: dict[str, str]) -> list[Replica]:
    return [Replica(name, "", 0.0, {"ranker": v}) for name, v in sorted(serves.items())]


def watch_with(fleet: FakeFleet, policy=FAST) -> CanaryWatch:
    return CanaryWatch(FleetEvidence(prometheus=fleet.scrape), policy, clock=lambda: fleet.t)


def test_the_holder_rejects_a_failing_canary_and_promotes_a_passing_one_in_steps():
    fleet = FakeFleet()
    state = ds.start_canary(ds.initial("ranker", "1", 0.0, "t"), "2", ("a",), 0.0, "op")
    w = watch_with(fleet)
    fleet_now = members({"a": "2", "b": "1", "c": "1"})
    actions = []
    for t in range(130):
        fleet.t = float(t)
        fleet.c.serve(20)
        fleet.f.serve(40)
        actions = w.step({"ranker": state}, fleet_now)
        if actions:
            break
    assert [a.kind for a in actions] == ["widen"] and actions[0].replicas == ("b",)
    state = ds.widen_canary(state, ("b",), fleet.t, "h")
    assert w.step({"ranker": state}, fleet_now) == []  # b does not serve it yet
    fleet_now = members({"a": "2", "b": "2", "c": "1"})
    assert [(a.kind, a.replicas) for a in w.step({"ranker": state}, fleet_now)] == \
        [("widen", ("c",))]
    state = ds.widen_canary(state, ("c",), fleet.t, "h")
    fleet_now = members({"a": "2", "b": "2", "c": "2"})
    assert [a.kind for a in w.step({"ranker": state}, fleet_now)] == ["finish"]

    bad = FakeFleet()
    w = watch_with(bad)
    state = ds.start_canary(ds.initial("ranker", "1", 0.0, "t"), "2", ("a",), 0.0, "op")
    for t in range(30):
        bad.t = float(t)
        bad.c.serve(20, errors=6)
        bad.f.serve(40)
        actions = w.step({"ranker": state}, members({"a": "2", "b": "1"}))
        if actions:
            break
    assert [a.kind for a in actions] == ["reject"] and "error rate" in actions[0].reason
    assert actions[0].evidence["canary"]["canary"]["failures"] > 0


def test_a_canary_whose_replicas_never_serve_it_is_rejected_after_the_load_timeout():
    fleet = FakeFleet()
    policy = CanaryPolicy(load_timeout_s=10)
    w = watch_with(fleet, policy)
    state = ds.start_canary(ds.initial("ranker", "1", 0.0, "t"), "2", ("a",), 0.0, "op")
    fleet.t = 5.0
    assert w.step({"ranker": state}, members({"a": "1", "b": "1"})) == []
    fleet.t = 11.0
    (action,) = w.step({"ranker": state}, members({"a": "1", "b": "1"}))
    assert action.kind == "reject" and "not serving on ['a']" in action.reason
    fleet.t = 12.0  # its only replica is gone: nothing to judge, not the version's fault
    (action,) = w.step({"ranker": state}, members({"b": "1"}))
    assert action.kind == "end"


def test_replica_heartbeats_are_read_back_and_go_stale(tmp_path):
    now = [100.0]
    a = ReplicaRegistry(tmp_path, "pod/a", "http://a/metrics", clock=lambda: now[0],
                        stale_after_s=15)
    b = ReplicaRegistry(tmp_path, "b", "http://b/metrics", clock=lambda: now[0], stale_after_s=15)
    a.beat({"ranker": "1"}, holder=True)
    b.beat({"ranker": "2"}, holder=False)
    (tmp_path / ".sentinel-replica.junk.json").write_text("{not json")
    got = a.members()
    assert [(r.identity, r.serves["ranker"], r.holder) for r in got] == \
        [("b", "2", False), ("pod/a", "1", True)]
    now[0] = 110.0
    b.beat({"ranker": "2"}, holder=False)
    now[0] = 120.0
    assert [r.identity for r in a.members()] == ["b"]
    b.leave()
    assert a.members() == []


def test_a_holder_that_takes_over_mid_canary_tallies_its_history_from_prometheus():
    """The first holder saw 60 s of a healthy canary and died; the next one reads those 60 s
    back (query_range) and passes it at once instead of waiting another duration_s."""
    fleet, past = FakeFleet(), []
    for t in range(62):
        fleet.t = float(t)
        fleet.c.serve(20)
        fleet.f.serve(40)
        past.append(fleet.scrape())
    asked = []

    def history(start, end, step):
        asked.append((start, end, step))
        return [s for s in past if start <= s.ts <= end]
    fleet.t = 62.0
    fleet.c.serve(20)
    fleet.f.serve(40)
    w = CanaryWatch(FleetEvidence(prometheus=fleet.scrape, history=history), FAST,
                    clock=lambda: fleet.t)
    state = ds.start_canary(ds.initial("ranker", "1", 0.0, "t"), "2", ("a",), 0.0, "op")
    (action,) = w.step({"ranker": state}, members({"a": "2", "b": "1"}))
    assert asked == [(0.0, 61.0, 1.0)]
    assert action.kind == "widen" and action.evidence["bins_from_history"] >= 11
    # Without history (no Prometheus) the same takeover starts afresh: nothing to decide yet.
    w = watch_with(fleet)
    assert w.step({"ranker": state}, members({"a": "2", "b": "1"})) == []



def test_an_operator_canary_is_written_on_the_state_it_checked_and_refused_when_it_cannot_run(
        tmp_path):
    import threading
    from types import SimpleNamespace
    from monitor.operator import OperatorError, start_canary
    from monitor.runtime import ModelRuntime
    (tmp_path / "ranker" / "1").mkdir(parents=True)
    (tmp_path / "ranker" / "2").mkdir()
    (tmp_path / "ranker" / "config.pbtxt").write_text('name: "ranker"\nbackend: "python"\n')
    store = ds.DesiredStateStore(tmp_path, clock=lambda: 10.0)
    state = store.update("ranker", lambda s: ds.initial("ranker", "1", 0.0, "t"))
    rt = ModelRuntime("ranker", {})
    rt.desired = state
    registry = ReplicaRegistry(tmp_path, "a", "", clock=lambda: 10.0)
    for name, holder in (("a", True), ("b", False)):
        ReplicaRegistry(tmp_path, name, "", clock=lambda: 10.0).beat({"ranker": "1"}, holder)
    events = []
    poller = SimpleNamespace(lock=threading.RLock(), models={"ranker": rt}, desired_store=store,
                             canary=watch_with(FakeFleet()), replicas=registry,
                             clock=lambda: 10.0, runtime=lambda m: rt,
                             repository_versions=lambda m: ["1", "2"])
    with pytest.raises(OperatorError, match="at least 3 live"):
        start_canary(poller, events, "ranker", "2", 2)
    with pytest.raises(OperatorError, match="unknown canary setting"):
        start_canary(poller, events, "ranker", "2", 1, policy={"nope": 1})
    store.update("ranker", lambda s: ds.pin(s, None, 5.0, "someone else"))  # decided meanwhile
    with pytest.raises(OperatorError, match="changed meanwhile"):
        start_canary(poller, events, "ranker", "2", 1)
    assert store.read("ranker").canary is None
    rt.desired = store.read("ranker")
    result = start_canary(poller, events, "ranker", "2", 1, policy={"duration_s": 30})
    written = store.read("ranker")
    assert written.canary.replicas == ("b",)  # the holder keeps judging from the fleet group
    assert written.canary.policy == {"duration_s": 30} and written.version == "1"
    assert result.generation == written.generation and events[-1].outcome == "started"
    with pytest.raises(OperatorError, match="is running on"):
        start_canary(poller, events, "ranker", "2", 1)
