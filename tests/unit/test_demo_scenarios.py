"""The demo's scenario list, the CLI's choices and the build's fault presets say the same thing."""
import argparse

from build_scripts.ranker_build import FAULT_PRESETS
from sentinel.cli import build_parser
from sentinel.demo.scenarios import SCENARIOS


def _choices(command: str, option: str) -> list[str]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return next(a for a in sub.choices[command]._actions if option in a.option_strings).choices


def test_every_scenario_can_be_asked_for_and_every_choice_exists():
    assert sorted(_choices("demo", "--scenario")) == sorted(SCENARIOS)


def test_every_fault_preset_can_be_built_from_the_cli():
    assert sorted(_choices("build", "--fault")) == sorted(FAULT_PRESETS)


def test_scenarios_use_built_faults_and_feedback_where_only_outcomes_tell():
    assert all(s.fault is None or s.fault in FAULT_PRESETS for s in SCENARIOS.values())
    assert SCENARIOS["quality"].fault == "reversed" and SCENARIOS["quality"].feedback
    assert SCENARIOS["drift"].expect == "retrain" and SCENARIOS["drift"].feedback


def test_the_canary_scenarios_run_a_fleet_with_a_valid_short_canary_policy():
    from monitor.canary import CanaryPolicy
    from sentinel.demo.canary import canary_policy
    bad, good = SCENARIOS["canary-bad"], SCENARIOS["canary-good"]
    assert (bad.fault, bad.expect, bad.canary) == ("errors", "aborted", 1)
    assert (good.fault, good.expect, good.canary) == (None, "promoted", 1)
    for s in (bad, good):
        policy = CanaryPolicy().with_overrides(canary_policy(s))
        assert policy.duration_s < CanaryPolicy().duration_s  # said so in the demo's output
    assert all(s.canary == 0 for name, s in SCENARIOS.items() if not name.startswith("canary-"))
