"""A finished action applied to the model's runtime (monitor.outcomes)."""
from prometheus_client import CollectorRegistry

from monitor.act import ActionOutcome
from monitor.actuator import ActionRequest, ActionResult
from monitor.decide import decide
from monitor.outcomes import apply_result
from monitor.runtime import ModelRuntime, MonitorMetrics
from monitor.types import DecisionInputs, ProbeResult, ScrapeOutcome, VersionState


def _deployed(rt, version, at):
    request = ActionRequest("ranker", version, "deploy", "a new version", actor="alice",
                            from_version=rt.served)
    result = ActionResult(request, ActionOutcome(True, "ranker", version, "load", 0.2),
                          ProbeResult("ranker", version, at, "ok"), at)
    return apply_result(rt, result, MonitorMetrics(CollectorRegistry()), dict)


def test_a_successful_deploy_supersedes_an_earlier_failed_load():
    """v7 failed to load (reported, alerted); v10 is deployed and serves. v7's failure must not
    keep v10's decisions at "error" (which would keep it from ever becoming known good)."""
    rt = ModelRuntime("ranker", {})
    rt.served, rt.requested, rt.requested_at = "1", "7", 100.0
    _deployed(rt, "10", 160.0)
    assert rt.served == "10" and rt.requested is None
    states = (VersionState("7", "UNAVAILABLE", "InjectedFault"), VersionState("10", "READY"))
    d = decide(DecisionInputs("ranker", "10", 170.0, version_states=states,
                              requested_version=rt.requested, last_sample_at=169.0,
                              scrape_outcomes=(ScrapeOutcome(169.0, True),)))
    assert d.phase == "healthy"


def test_a_deploy_of_the_failed_version_itself_keeps_the_record():
    rt = ModelRuntime("ranker", {})
    rt.served, rt.requested, rt.requested_at = "1", "7", 100.0
    _deployed(rt, "7", 160.0)
    assert rt.requested == "7"  # it serves now: decide ignores a request equal to the served one
