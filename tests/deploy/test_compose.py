"""The compose stack, parsed (no compose plugin or engine here): services, loopback ports, volumes,
secrets as files, health checks, and configs that point at each other consistently. Values are
checked against what uses them (the entrypoints, the Dockerfiles, the sidecar's config and app,
the other services' ports), not restated."""
from __future__ import annotations

import re
import subprocess
from pathlib import PurePosixPath
from urllib.parse import urlsplit

import pytest
import yaml

from monitor.config import load_config
from sentinel.cli import build_parser
from tests.deploy.conftest import (DOCKER, dockerfile_for, duration_s, flag, healthcheck_command,
                                   image_env, image_exposes, image_files, image_is_pinned,
                                   run_entrypoint, sidecar_answers, tool, triton_ports, url_in,
                                   with_files)

COMPOSE = DOCKER / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def sidecar_config(compose):
    svc = compose["services"]["sidecar"]
    (cfg,) = svc["configs"]
    return load_config(DOCKER / compose["configs"][cfg["source"]]["file"], env={})


def _long_running(compose) -> list[str]:
    return [n for n, s in compose["services"].items() if not s.get("profiles")]


def _mounts(service: dict) -> dict[str, tuple[str, str]]:
    """target -> (source, mode)"""
    out = {}
    for v in service.get("volumes", []):
        source, target, *mode = v.split(":")
        out[target] = (source, mode[0] if mode else "rw")
    return out


def _published(service: dict) -> dict[int, int]:
    """container port -> host port"""
    return {int(p.split(":")[-1]): int(p.split(":")[-2]) for p in service.get("ports", [])}


def _container_ports(service: dict) -> set[int]:
    return set(_published(service)) | {int(p) for p in service.get("expose", [])}


def _arg(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def _triton_env(compose, tmp_path, files: dict[str, str]) -> dict[str, str]:
    svc = compose["services"]["triton"]
    return with_files(tmp_path, {**image_env(dockerfile_for(svc["image"])), **svc["environment"]},
                      files)


def test_only_the_builder_is_opt_in_and_the_rest_restart(compose):
    services = compose["services"]
    # `up` must not publish a new version: the builder runs only when asked for (--profile).
    assert {n for n, s in services.items() if s.get("profiles")} == {"builder"}
    assert "restart" not in services["builder"]
    for name in _long_running(compose):
        assert services[name]["restart"] in ("always", "unless-stopped"), name


def test_images_are_pinned_and_project_images_are_built_from_the_repository(compose):
    for name, svc in compose["services"].items():
        assert image_is_pinned(svc["image"]), f"{name}: {svc['image']}"
        if "build" in svc:
            assert svc["build"]["context"] == ".."
            dockerfile = (DOCKER / ".." / svc["build"]["dockerfile"]).resolve()
            assert dockerfile == dockerfile_for(svc["image"]).resolve() and dockerfile.is_file()


def test_published_ports_bind_loopback_and_metrics_stay_internal(compose, triton_argv,
                                                                 sidecar_config):
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    ports = triton_ports(triton_argv)
    triton = compose["services"]["triton"]
    assert set(_published(triton)) == {ports["http"], ports["grpc"]}
    assert ports["metrics"] in _container_ports(triton)
    exposed = image_exposes(dockerfile_for(triton["image"]))
    assert set(_published(triton)) | {ports["metrics"]} == exposed
    sidecar = compose["services"]["sidecar"]
    assert set(_published(sidecar)) == {sidecar_config.port} \
        == image_exposes(dockerfile_for(sidecar["image"]))


def test_every_long_running_service_has_a_health_check_that_checks_it(compose, sidecar_config):
    services = compose["services"]
    for name in _long_running(compose):
        check = services[name]["healthcheck"]
        assert check["test"][0] == "CMD" and check["interval"] and check["retries"] >= 1
        if "build" in services[name]:  # the image's own HEALTHCHECK says the same
            assert check["test"][1:] == healthcheck_command(dockerfile_for(services[name]["image"]))
        elif "://" in " ".join(check["test"]):
            assert urlsplit(url_in(check["test"])).port in _container_ports(services[name]), name
    # Triton's is a real inference (the golden probe its image installs), not /v2/health/ready
    # (200 with a dead stub).
    triton = services["triton"]["healthcheck"]["test"]
    installed = image_files(dockerfile_for(services["triton"]["image"]))
    assert triton[1] == "python3" and triton[2] in installed
    assert triton[2].endswith("golden-probe")
    # The sidecar's asks its own port for a path the app answers.
    url = urlsplit(url_in(services["sidecar"]["healthcheck"]["test"]))
    assert url.port == sidecar_config.port and sidecar_answers(url.path) == 200


def test_secrets_are_files_never_environment_literals(compose):
    secrets = compose["secrets"]
    ignored = (DOCKER / "secrets" / ".gitignore").read_text().split()
    assert "*" in ignored  # the secret files next to compose.yaml are never committed
    for name, secret in secrets.items():
        assert secret["file"].startswith("./secrets/"), name
    used = set()
    for name, s in compose["services"].items():
        used |= set(s.get("secrets", []))
        for key, value in (s.get("environment") or {}).items():
            if key.endswith("_FILE"):
                # compose mounts a service's secret <name> at /run/secrets/<name>
                path = PurePosixPath(str(value))
                assert path.parent == PurePosixPath("/run/secrets") \
                    and path.name in s.get("secrets", []), f"{name}: {key}={value}"
            if re.search(r"KEY|TOKEN|PASSWORD|SECRET", key):
                assert key.endswith("_FILE"), f"{name}: {key} must come from a secret file"
    assert used == set(secrets)  # every secret is used, every used one is declared


def test_triton_and_the_sidecar_get_the_same_admin_key_and_the_sidecar_its_token(compose,
                                                                                   tmp_path):
    """Both entrypoints, run on the compose environment with the secret files in place: Triton
    guards its repository API with the key the sidecar's config ends up holding."""
    services = compose["services"]
    files = {f"/run/secrets/{name}": f"value of {name}" for name in compose["secrets"]}
    argv, _ = run_entrypoint(DOCKER / "triton" / "entrypoint.sh", "tritonserver",
                             _triton_env(compose, tmp_path, files), tmp_path)
    key = flag(argv, "http-restricted-api").split("admin-key=", 1)[1]
    parsed, config = _sidecar_with_secrets(compose, tmp_path, files)
    assert parsed.command == "monitor"
    (cfg,) = services["sidecar"]["configs"]
    assert parsed.config == cfg["target"]  # the file compose puts there
    assert config.admin_key == key and key.startswith("value of ")
    assert config.token is not None and config.token.startswith("value of ") \
        and config.token != key


def _sidecar_with_secrets(compose, tmp_path, files: dict[str, str]):
    """The sidecar's parsed command line and its config, as its entrypoint starts it on the compose
    environment with these container files (path -> content) in place."""
    sidecar = compose["services"]["sidecar"]
    argv, seen = run_entrypoint(DOCKER / "sidecar" / "entrypoint.sh", "sentinel",
                                with_files(tmp_path, sidecar["environment"], files), tmp_path,
                                sidecar["command"])
    (cfg,) = sidecar["configs"]
    config = load_config(DOCKER / compose["configs"][cfg["source"]]["file"],
                         env={k: v for k, v in seen.items() if k.startswith("SENTINEL_")})
    return build_parser().parse_args(argv), config


def test_the_read_token_is_an_optional_secret_that_leaves_checks_and_scrapes_open(compose,
                                                                                  tmp_path):
    """A read token reaches the sidecar from a secret file, as the control token does, and an empty
    file leaves reading open. With one, reads need it, while compose's health check and
    Prometheus's scrape of the sidecar still get in without it."""
    secrets = {f"/run/secrets/{name}": f"value of {name}" for name in compose["secrets"]}
    _, config = _sidecar_with_secrets(compose, tmp_path, secrets)
    read = config.read_token
    assert read is not None and read not in (config.token, config.admin_key)
    (path,) = [p for p, value in secrets.items() if value == read]  # the file it came from
    sidecar = compose["services"]["sidecar"]
    assert PurePosixPath(path).name in sidecar["secrets"]
    prometheus = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    (scrape,) = [j for j in prometheus["scrape_configs"] for sc in j["static_configs"]
                 for t in sc["targets"] if t.split(":")[0] == "sidecar"]
    for open_path in (url_in(sidecar["healthcheck"]["test"]),
                      scrape.get("metrics_path", "/metrics")):  # Prometheus's default path
        assert sidecar_answers(open_path, read) == 200, open_path
    assert sidecar_answers("/api/openapi.json", read) == 401
    assert sidecar_answers("/api/openapi.json", read, send=read) == 200
    _, unset = _sidecar_with_secrets(compose, tmp_path, {**secrets, path: ""})
    assert unset.read_token is None and unset.token == config.token
    assert sidecar_answers("/api/openapi.json", unset.read_token) == 200


def test_volumes_share_the_repository_read_only_for_serving(compose, sidecar_config, tmp_path):
    svc = compose["services"]
    argv, _ = run_entrypoint(DOCKER / "triton" / "entrypoint.sh", "tritonserver",
                             _triton_env(compose, tmp_path, {"/run/secrets/admin_key": "k"}),
                             tmp_path)
    source, mode = _mounts(svc["triton"])[flag(argv, "model-repository")]
    assert mode == "ro"  # Triton only reads the repository
    # the sidecar writes the desired state into it, the builder publishes versions into it
    assert _mounts(svc["sidecar"])[str(sidecar_config.repository)] == (source, "rw")
    builder_repository = _arg(svc["builder"]["command"], "--repository")
    assert _mounts(svc["builder"])[builder_repository] == (source, "rw")
    # The event log outlives the container: its directory is a named volume.
    db_dir = str(PurePosixPath(sidecar_config.db_path).parent)
    assert _mounts(svc["sidecar"])[db_dir][0] in compose["volumes"]
    named = set(compose["volumes"])
    for name, s in svc.items():
        for target, (source, _) in _mounts(s).items():
            if source.startswith("./"):
                assert (DOCKER / source).exists(), f"{name}: bind source {source} missing"
            else:
                assert source in named, f"{name}: volume {source} is not declared"


def test_sidecar_config_is_valid_and_points_at_the_services(compose, sidecar_config, triton_argv):
    svc = compose["services"]
    config = sidecar_config
    ports = triton_ports(triton_argv)
    for url, port, path in ((config.triton_url, ports["http"], ""),
                            (config.metrics_url, ports["metrics"], "/metrics")):
        parts = urlsplit(url)
        assert (parts.hostname, parts.port, parts.path) == ("triton", port, path), url
    webhook = urlsplit(config.webhook_url)
    assert webhook.hostname in svc and webhook.port in _container_ports(svc[webhook.hostname])
    assert config.admin_key is None and config.token is None  # secrets never in the file
    # The sidecar repairs an unhealthy Triton: it must not wait for Triton to be healthy.
    assert svc["sidecar"]["depends_on"]["triton"]["condition"] == "service_started"


def test_prometheus_config_scrapes_the_services_and_passes_promtool(compose, tmp_path,
                                                                    triton_argv, sidecar_config):
    config = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    services = compose["services"]
    targets = {t: name for name, j in jobs.items() for sc in j["static_configs"]
               for t in sc["targets"]}
    assert targets == {f"triton:{triton_ports(triton_argv)['metrics']}": "triton",
                       f"sidecar:{sidecar_config.port}": "sentinel-sidecar"}
    # The rules select on these job names.
    rules = (DOCKER / "prometheus" / "rules.yml").read_text()
    assert set(re.findall(r'job="([^"]+)"', rules)) == set(jobs)
    # A sidecar reading Prometheus gets one Triton sample per scrape: scrape at its cycle.
    assert duration_s(jobs["triton"]["scrape_interval"]) == sidecar_config.interval_s
    for target in config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]:
        host, port = target.split(":")
        assert host in services and int(port) in _container_ports(services[host]), target
    mounts = _mounts(services["prometheus"])
    for rule_file in config["rule_files"]:
        assert (DOCKER / mounts[rule_file][0]).is_file(), rule_file
    # promtool checks rule files too: point the in-container path at the repository's copy.
    config["rule_files"] = [str(DOCKER / mounts[r][0]) for r in config["rule_files"]]
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
    services = compose["services"]
    mounts = _mounts(services["grafana"])
    # What the stack mounts at Grafana's provisioning path (its default, GF_PATHS_PROVISIONING).
    local, mode = mounts["/etc/grafana/provisioning"]
    provisioning = DOCKER / local
    assert mode == "ro"
    (ds_file,) = (provisioning / "datasources").glob("*.yml")
    (source,) = yaml.safe_load(ds_file.read_text())["datasources"]
    url = urlsplit(source["url"])
    assert url.hostname in services and url.port in _container_ports(services[url.hostname])
    (prov_file,) = (provisioning / "dashboards").glob("*.yml")
    (provider,) = yaml.safe_load(prov_file.read_text())["providers"]
    local, mode = mounts[provider["options"]["path"]]
    dashboards = sorted((DOCKER / local).glob("*.json"))
    assert mode == "ro" and dashboards, local
    # the dashboards' data source variable offers the provisioned data source's type
    for path in dashboards:
        variables = yaml.safe_load(path.read_text())["templating"]["list"]
        (datasource,) = [v for v in variables if v["type"] == "datasource"]
        assert datasource["query"] == source["type"], path.name
