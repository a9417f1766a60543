"""The compose stack, parsed (no compose plugin or engine here): services, loopback ports, volumes,
secrets as files, health checks, and configs that point at each other consistently."""
from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from monitor.config import load_config
from tests.deploy.conftest import DOCKER, image_is_pinned, tool

COMPOSE = DOCKER / "compose.yaml"
LONG_RUNNING = ("triton", "sidecar", "prometheus", "alertmanager", "grafana")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _mounts(service: dict) -> dict[str, tuple[str, str]]:
    """target -> (source, mode)"""
    out = {}
    for v in service.get("volumes", []):
        source, target, *mode = v.split(":")
        out[target] = (source, mode[0] if mode else "rw")
    return out


def test_services_and_the_one_shot_builder(compose):
    services = compose["services"]
    assert set(services) == {*LONG_RUNNING, "builder"}
    assert services["builder"]["profiles"] == ["build"]  # `up` must not publish a new version
    for name in LONG_RUNNING:
        assert "profiles" not in services[name]
        assert services[name]["restart"] == "unless-stopped"


def test_images_are_pinned_and_project_images_are_built_from_the_repository(compose):
    for name, svc in compose["services"].items():
        assert image_is_pinned(svc["image"]), f"{name}: {svc['image']}"
        if "build" in svc:
            assert svc["build"]["context"] == ".."
            assert (DOCKER / ".." / svc["build"]["dockerfile"]).resolve().is_file()


def test_published_ports_bind_loopback_and_metrics_stay_internal(compose):
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    triton_ports = [p.split(":")[-1] for p in compose["services"]["triton"]["ports"]]
    assert triton_ports == ["8000", "8001"] and "8002" in compose["services"]["triton"]["expose"]


def test_every_long_running_service_has_a_health_check(compose):
    for name in LONG_RUNNING:
        check = compose["services"][name]["healthcheck"]
        assert check["test"][0] == "CMD" and check["interval"] and check["retries"] >= 1
    # Triton's is a real inference, not /v2/health/ready (200 with a dead stub).
    assert "golden-probe" in " ".join(compose["services"]["triton"]["healthcheck"]["test"])


def test_secrets_are_files_never_environment_literals(compose):
    secrets = compose["secrets"]
    assert set(secrets) == {"admin_key", "sidecar_token", "grafana_admin_password"}
    ignored = (DOCKER / "secrets" / ".gitignore").read_text().split()
    assert "*" in ignored  # the secret files next to compose.yaml are never committed
    for name, secret in secrets.items():
        assert secret["file"].startswith("./secrets/"), name
    svc = compose["services"]
    assert svc["triton"]["secrets"] == ["admin_key"]
    assert set(svc["sidecar"]["secrets"]) == {"admin_key", "sidecar_token"}
    assert svc["triton"]["environment"]["TRITON_ADMIN_KEY_FILE"] == "/run/secrets/admin_key"
    assert svc["sidecar"]["environment"] == {"ADMIN_KEY_FILE": "/run/secrets/admin_key",
                                             "TOKEN_FILE": "/run/secrets/sidecar_token"}
    for name, s in svc.items():
        for key, value in (s.get("environment") or {}).items():
            if re.search(r"KEY|TOKEN|PASSWORD|SECRET", key):
                assert key.endswith("_FILE") and str(value).startswith("/run/secrets/"), \
                    f"{name}: {key} must come from a secret file"


def test_volumes_share_the_repository_read_only_for_serving(compose):
    svc = compose["services"]
    assert _mounts(svc["triton"])["/models"] == ("models", "ro")
    # the sidecar writes the desired state into the repository; Triton only reads it
    assert _mounts(svc["sidecar"])["/models"] == ("models", "rw")
    assert _mounts(svc["builder"])["/models"] == ("models", "rw")
    assert _mounts(svc["sidecar"])["/var/lib/sentinel"][0] == "sentinel-events"
    named = set(compose["volumes"])
    for name, s in svc.items():
        for target, (source, _) in _mounts(s).items():
            if source.startswith("./"):
                assert (DOCKER / source).exists(), f"{name}: bind source {source} missing"
            else:
                assert source in named, f"{name}: volume {source} is not declared"


def test_sidecar_config_is_valid_and_points_at_the_services(compose):
    svc = compose["services"]["sidecar"]
    (cfg,) = svc["configs"]
    path = DOCKER / compose["configs"][cfg["source"]]["file"]
    assert cfg["target"] == "/etc/sentinel/sentinel.toml" and svc["command"][-1] == cfg["target"]
    config = load_config(path, env={})
    assert config.triton_url == "http://triton:8000"
    assert config.metrics_url == "http://triton:8002/metrics"
    assert config.webhook_url == "http://alertmanager:9093/api/v2/alerts"
    assert str(config.repository) == "/models" and config.port == 8080
    assert config.db_path.startswith("/var/lib/sentinel/")
    assert config.admin_key is None and config.token is None  # secrets never in the file
    # The sidecar repairs an unhealthy Triton: it must not wait for Triton to be healthy.
    assert svc["depends_on"]["triton"]["condition"] == "service_started"


def test_prometheus_config_scrapes_the_services_and_passes_promtool(compose, tmp_path):
    config = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert jobs["triton"]["static_configs"][0]["targets"] == ["triton:8002"]
    assert jobs["triton"]["scrape_interval"] == "1s"
    assert jobs["sentinel-sidecar"]["static_configs"][0]["targets"] == ["sidecar:8080"]
    am = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert am == ["alertmanager:9093"]
    mounts = _mounts(compose["services"]["prometheus"])
    assert config["rule_files"] == ["/etc/prometheus/rules.yml"]
    assert mounts["/etc/prometheus/rules.yml"][0] == "./prometheus/rules.yml"
    # promtool checks rule files too: point the in-container path at the repository's copy.
    config["rule_files"] = [str(DOCKER / "prometheus" / "rules.yml")]
    local = tmp_path / "prometheus.yml"
    local.write_text(yaml.safe_dump(config))
    promtool = tool("promtool", "scripts/install-system-deps.sh installs Debian's prometheus")
    result = subprocess.run([promtool, "check", "config", str(local)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_example_config_passes_amtool():
    amtool = tool("amtool", "scripts/install-system-deps.sh installs Debian's "
                            "prometheus-alertmanager")
    result = subprocess.run([amtool, "check-config", str(DOCKER / "alertmanager" / "alertmanager.yml")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard(compose):
    ds = yaml.safe_load((DOCKER / "grafana/provisioning/datasources/prometheus.yml").read_text())
    (source,) = ds["datasources"]
    assert source["url"] == "http://prometheus:9090" and source["uid"] == "prometheus"
    prov = yaml.safe_load((DOCKER / "grafana/provisioning/dashboards/sentinel.yml").read_text())
    path = prov["providers"][0]["options"]["path"]
    assert _mounts(compose["services"]["grafana"])[path] == ("./grafana/dashboards", "ro")
    assert (DOCKER / "grafana" / "dashboards" / "sentinel.json").is_file()
