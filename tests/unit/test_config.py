import dataclasses
import json
from pathlib import Path

import pytest

from monitor.config import ConfigError, MonitorConfig, load_config
from monitor.types import Policy


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_without_any_source():
    config = load_config(None, env={})
    assert config == MonitorConfig()
    assert config.port == 8080 and config.host == "127.0.0.1" and config.interval_s == 1.0
    assert config.policy == Policy() and config.webhook_url is None and dict(config.detectors) == {}


def test_layers_file_then_env_then_overrides(tmp_path):
    path = write(
        tmp_path, "sentinel.toml",
        """
        interval_s = 2
        port = 9000
        webhook_url = "http://alertmanager:9093/api/v2/alerts"
        repository = "/srv/models"

        [policy]
        cooldown_s = 45
        max_rollbacks_per_hour = 2

        [policy.bad_directions]
        request_rate = "down"
        score_std = "none"

        [detectors.latency_ms]
        min_rel_effect = 0.2
        window = 60

        [detectors.default]
        alpha = 0.001
        """,
    )
    env = {
        "SENTINEL_INTERVAL_S": "0.5",
        "SENTINEL_POLICY__COOLDOWN_S": "10",
        "SENTINEL_DETECTORS__LATENCY_MS__WINDOW": "120",
        "SENTINEL_FREEZE_UNRELATED": None,
        "PATH": "/usr/bin",  # not ours
    }
    env.pop("SENTINEL_FREEZE_UNRELATED")
    config = load_config(path, env=env, overrides={"port": 9100, "policy.freeze": True, "token": None})
    assert config.interval_s == 0.5  # env beats file
    assert config.port == 9100  # override beats file
    assert config.webhook_url == "http://alertmanager:9093/api/v2/alerts"
    assert config.repository == Path("/srv/models")
    assert config.policy.cooldown_s == 10.0 and config.policy.max_rollbacks_per_hour == 2
    assert config.policy.freeze is True
    assert config.policy.consecutive_error_limit == Policy().consecutive_error_limit  # untouched default
    assert config.policy.bad_directions["request_rate"] == "down"
    assert config.policy.bad_directions["score_std"] == "none"
    assert config.policy.bad_directions["latency_ms"] == "up"  # defaults kept, not replaced
    assert dict(config.detectors["latency_ms"]) == {"min_rel_effect": 0.2, "window": 120}
    assert dict(config.detectors["default"]) == {"alpha": 0.001}
    assert config.token is None  # an override of None means "flag not given"


def test_json_file_and_nested_overrides(tmp_path):
    path = write(tmp_path, "sentinel.json", json.dumps({"db_path": "/var/lib/sentinel/events.db", "policy": {"cooldown_s": 5}}))
    config = load_config(path, env={}, overrides={"policy": {"known_good_after_s": 120}})
    assert config.db_path == "/var/lib/sentinel/events.db"
    assert (config.policy.cooldown_s, config.policy.known_good_after_s) == (5.0, 120.0)


def test_env_strings_are_parsed_by_type():
    config = load_config(env={
        "SENTINEL_PORT": "8181",
        "SENTINEL_POLICY__FREEZE": "yes",
        "SENTINEL_WEBHOOK_URL": "",
        "SENTINEL_ADMIN_KEY": "s3cret",
        "SENTINEL_DETECTORS__ERROR_RATE__TWO_SIDED": "false",
    })
    assert config.port == 8181 and config.policy.freeze is True and config.webhook_url is None
    assert config.admin_key == "s3cret"
    assert config.detectors["error_rate"]["two_sided"] is False


@pytest.mark.parametrize(
    "env,overrides,fragments",
    [
        ({"SENTINEL_PORT__X": "1"}, {}, ["SENTINEL_PORT__X", "port.x: unknown setting"]),
        ({"SENTINEL_INTERVAL_S": "fast"}, {}, ["SENTINEL_INTERVAL_S", "interval_s", "expected a number"]),
        ({"SENTINEL_INTERVAL_S": "0"}, {}, ["interval_s", "must be > 0"]),
        ({"SENTINEL_PORT": "70000"}, {}, ["port", "<= 65535"]),
        ({"SENTINEL_PORT": "80.5"}, {}, ["port", "integer"]),
        ({"SENTINEL_POLICY__COOLDOWN_S": "-1"}, {}, ["SENTINEL_POLICY__COOLDOWN_S", "policy.cooldown_s", ">= 0"]),
        ({"SENTINEL_POLICY__CONSECUTIVE_ERROR_LIMIT": "0"}, {}, ["policy.consecutive_error_limit", ">= 1"]),
        ({"SENTINEL_POLICY__DEAD_STUB_FAILURE_RATIO": "1.5"}, {}, ["dead_stub_failure_ratio", "<= 1"]),
        ({"SENTINEL_POLICY__FREEZE": "maybe"}, {}, ["policy.freeze", "true or false"]),
        ({"SENTINEL_POLICY__COOLDOWN": "3"}, {}, ["policy.cooldown", "unknown setting"]),
        ({"SENTINEL_METRICS_URL": "triton:8002/metrics"}, {}, ["metrics_url", "http://"]),
        ({"SENTINEL_DETECTORS__LATENCY__WINDOW": "3"}, {}, ["detectors.latency.window", "unknown signal 'latency'"]),
        ({"SENTINEL_DETECTORS__LATENCY_MS__WINDOW": "wide"}, {}, ["detectors.latency_ms.window", "number"]),
        ({}, {"interval_s": True}, ["override: interval_s", "expected a number"]),
        ({}, {"nab_dir": "/data/nab"}, ["override: nab_dir", "unknown setting"]),
        ({}, {"policy.cooldown": 3}, ["override: policy.cooldown", "unknown setting"]),
        ({}, {"policy.bad_directions.latency_ms": "sideways"}, ["bad_directions.latency_ms", "up, down, both, none"]),
        ({}, {"policy": 3}, ["policy", "table"]),
    ],
)
def test_bad_settings_name_the_key_and_why(env, overrides, fragments):
    with pytest.raises(ConfigError) as info:
        load_config(env=env, overrides=overrides)
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize(
    "name,text,fragment",
    [
        ("bad.toml", "port = 'eighty'", "port: expected an integer"),
        ("bad.toml", "unknown_key = 1", "unknown_key: unknown setting"),
        ("bad.toml", "[policy]\nmax_rollbacks_per_hour = 1.5", "policy.max_rollbacks_per_hour: expected an integer"),
        ("bad.toml", "[detectors.latency_ms]\nmethod = 'cusum'", "detectors.latency_ms.method: expected a number"),
        ("bad.toml", "port = [", "cannot parse"),
        ("bad.json", "[1, 2]", "top level must be an object"),
        ("bad.yaml", "port: 1", "must end in .toml or .json"),
    ],
)
def test_bad_files_name_the_file_and_key(tmp_path, name, text, fragment):
    path = write(tmp_path, name, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert fragment in str(info.value) and str(path) in str(info.value)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml", env={})


def test_environment_variables_of_other_tools_are_ignored_with_one_warning(caplog):
    # The benchmarks read SENTINEL_NAB_DIR; the sidecar must start in the same shell.
    env = {"SENTINEL_NAB_DIR": "/data/nab", "SENTINEL_INTERVAL": "1", "SENTINEL_PORT": "9000",
           "PATH": "/usr/bin"}
    with caplog.at_level("WARNING", logger="sentinel.monitor"):
        config = load_config(env=env)
    assert config.port == 9000 and config.interval_s == MonitorConfig().interval_s
    [record] = [r for r in caplog.records if r.name == "sentinel.monitor"]
    assert record.levelname == "WARNING"
    assert "SENTINEL_INTERVAL, SENTINEL_NAB_DIR" in record.getMessage()
    assert "SENTINEL_PORT" not in record.getMessage() and "PATH" not in record.getMessage()
    caplog.clear()
    with caplog.at_level("WARNING", logger="sentinel.monitor"):
        load_config(env={"SENTINEL_PORT": "9000"})
    assert not caplog.records  # nothing to say, nothing said


def test_unknown_keys_in_a_file_still_stop_start_up_next_to_ignored_env(tmp_path):
    path = write(tmp_path, "sentinel.toml", "nab_dir = '/data/nab'")
    with pytest.raises(ConfigError, match=r"nab_dir: unknown setting"):
        load_config(path, env={"SENTINEL_NAB_DIR": "/data/nab"})


def test_secrets_never_shown():
    config = load_config(env={"SENTINEL_ADMIN_KEY": "adm1n-k3y", "SENTINEL_TOKEN": "t0k3n",
                              "SENTINEL_READ_TOKEN": "r3ad-t0k3n"})
    assert config.admin_key == "adm1n-k3y" and config.token == "t0k3n"
    assert config.read_token == "r3ad-t0k3n"
    text = repr(config) + str(config) + json.dumps(config.public_dict())
    assert "adm1n-k3y" not in text and "t0k3n" not in text and "r3ad" not in text
    assert config.public_dict()["admin_key"] == "<set>"
    assert config.public_dict()["read_token"] == "<set>"
    assert load_config(env={}).public_dict()["token"] is None
    assert load_config(env={}).public_dict()["read_token"] is None


def test_public_dict_is_plain_json():
    config = load_config(env={"SENTINEL_DETECTORS__LATENCY_MS__WINDOW": "60"}, overrides={"repository": "/srv/m"})
    data = json.loads(json.dumps(config.public_dict()))
    assert data["repository"] == "/srv/m"
    assert data["policy"]["cooldown_s"] == 30.0 and data["policy"]["bad_directions"]["latency_ms"] == "up"
    assert data["detectors"] == {"latency_ms": {"window": 60}}


def test_every_field_can_be_set():
    """A field added to MonitorConfig or Policy without a validation rule would be unreachable."""
    defaults = MonitorConfig()
    samples = {"prometheus_selector": 'namespace="ml"',  # optional settings with their own syntax
               "fleet_selector": 'job="triton"', "memory_limit_bytes": 8 * 2**30}
    for f in dataclasses.fields(MonitorConfig):
        if f.name in ("policy", "detectors"):
            continue
        if f.name == "canary":
            for c in dataclasses.fields(defaults.canary):
                value = getattr(defaults.canary, c.name)
                assert getattr(load_config(env={}, overrides={f"canary.{c.name}": value}).canary,
                               c.name) == value
            continue
        value = getattr(defaults, f.name)
        if value is None:
            value = samples.get(f.name, "http://example.test/x" if f.name.endswith("url") else "x")
        load_config(env={}, overrides={f.name: str(value) if f.name == "repository" else value})
    for f in dataclasses.fields(Policy):
        if f.name != "bad_directions":
            load_config(env={}, overrides={f"policy.{f.name}": getattr(Policy(), f.name)})


def test_config_is_immutable():
    config = load_config(env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.port = 1
    with pytest.raises(TypeError):
        config.policy.bad_directions["latency_ms"] = "down"
