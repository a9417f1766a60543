"""The reconcile step is level-triggered: from any (observed, desired) pair the same step."""
from monitor.reconcile import Observed, plan
from monitor.types import VersionState
from sentinel import desired_state as ds

PUBLISHED = ("1", "2", "3")


def state(version="1", **kw):
    s = ds.mark_known_good(ds.initial("ranker", "1", 0.0, "build"), "1", 1.0, "poller")
    if version != "1":
        s = ds.deploy(s, version, 2.0, "alice")
    for bad in kw.get("rejected", ()):
        s = ds.reject(s, bad, None, "bad", 3.0, "poller")
    if kw.get("pinned"):
        s = ds.pin(s, kw["pinned"], 4.0, "op")
    if kw.get("frozen"):
        s = ds.freeze(s, True, 5.0, "op")
    return s


def observed(served, external=False, in_flight=False, states=None, index_known=True):
    states = states if states is not None else (
        (VersionState(served, "READY"),) if served else ())
    return Observed(served, tuple(states), PUBLISHED, index_known, external, in_flight)


def test_converged_is_nothing_to_do():
    assert plan(state("1"), observed("1"), 100.0, float("-inf")).kind == "none"


def test_nothing_serving_loads_the_desired_version():
    step = plan(state("1"), observed(None), 100.0, float("-inf"))
    assert (step.kind, step.version) == ("load", "1")
    assert "nothing serves" in step.reason


def test_a_rejected_version_serving_is_replaced_even_when_it_looks_external():
    s = ds.reject(state("2"), "2", "1", "errors", 9.0, "poller")
    step = plan(s, observed("2", external=True), 100.0, float("-inf"))
    assert (step.kind, step.version) == ("load", "1") and "rejected" in step.reason


def test_an_activation_outside_the_sidecar_is_adopted_under_watch():
    step = plan(state("1"), observed("3", external=True), 100.0, float("-inf"))
    assert (step.kind, step.version) == ("adopt", "3")
    # ... but not when an operator pinned the model: the pin wins and is restored
    step = plan(state("1", pinned="1"), observed("3", external=True), 100.0, float("-inf"))
    assert (step.kind, step.version) == ("load", "1")


def test_a_desired_change_made_elsewhere_is_converged_to():
    # same observation as before (not external): the desired state moved, e.g. another replica
    step = plan(state("2"), observed("1"), 100.0, float("-inf"))
    assert (step.kind, step.version) == ("load", "2")


def test_waits_while_in_flight_loading_unreachable_or_backing_off():
    assert plan(state("2"), observed("1", in_flight=True), 100.0, float("-inf")).kind == "wait"
    assert plan(state("2"), observed("1", index_known=False), 100.0, float("-inf")).kind == "wait"
    loading = (VersionState("1", "READY"), VersionState("2", "LOADING"))
    assert plan(state("2"), observed("1", states=loading), 100.0, float("-inf")).kind == "wait"
    assert plan(state("2"), observed("1"), 100.0, 90.0, retry_s=30).kind == "wait"
    assert plan(state("2"), observed("1"), 100.0, 60.0, retry_s=30).kind == "load"


def test_frozen_and_missing_versions_do_not_load():
    assert plan(state("2", frozen=True), observed("1"), 100.0, float("-inf")).kind == "none"
    s = ds.deploy(state("1"), "9", 5.0, "alice")
    step = plan(s, observed("1"), 100.0, float("-inf"))
    assert step.kind == "alert" and "not in the repository" in step.reason


def test_no_desired_state_adopts_what_serves_or_the_newest_published():
    step = plan(None, observed("2"), 1.0, float("-inf"))
    assert (step.kind, step.version) == ("initialise", "2")
    step = plan(None, observed(None), 1.0, float("-inf"))
    assert (step.kind, step.version) == ("initialise", "3")


def test_the_same_inputs_give_the_same_step_from_any_history():
    for desired in (state("1"), state("2"), ds.reject(state("2"), "2", "1", "x", 9.0, "p")):
        for served in (None, "1", "2", "3"):
            for external in (False, True):
                o = observed(served, external)
                assert plan(desired, o, 50.0, 0.0) == plan(desired, o, 50.0, 0.0)
                # converged is a fixed point: after the step's load, nothing more to do
                step = plan(desired, o, 50.0, float("-inf"))
                if step.kind == "load":
                    assert plan(desired, observed(step.version), 51.0, 50.0).kind == "none"
