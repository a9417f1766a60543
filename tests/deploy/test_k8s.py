"""The Kubernetes manifests, parsed (no cluster, no kubectl here): Triton and the sidecar in one pod
on one repository volume, secrets and config that exist, probes that do not lie about a dead stub,
ports that agree with each other, resources, and pinned images. Values are checked against what
uses them (the entrypoints, the Dockerfiles, the sidecar's config and app, the alerting rules),
not restated."""
from __future__ import annotations

import ipaddress
import re
from pathlib import PurePosixPath
from urllib.parse import urlsplit

import pytest
import yaml

from monitor.config import load_config
from sentinel.cli import build_parser
from tests.deploy.conftest import (DOCKER, K8S, dockerfile_for, duration_s, flag, image_env,
                                   image_exposes, image_files, image_is_pinned, image_user,
                                   load_yaml_docs, run_entrypoint, sidecar_answers, triton_ports,
                                   with_files)


@pytest.fixture(scope="module")
def kustomization() -> dict:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


@pytest.fixture(scope="module")
def objects(kustomization) -> dict[tuple[str, str], dict]:
    out = {}
    for resource in kustomization["resources"]:
        for doc in load_yaml_docs(K8S / resource):
            out[(doc["kind"], doc["metadata"]["name"])] = doc
    return out


@pytest.fixture(scope="module")
def pod(objects) -> dict:
    return objects[("Deployment", "sentinel-ranker")]["spec"]["template"]


@pytest.fixture(scope="module")
def config(objects, tmp_path_factory):
    """The sidecar's config as the ConfigMap ships it."""
    path = tmp_path_factory.mktemp("k8s-config") / "sentinel.toml"
    path.write_text(objects[("ConfigMap", "sentinel-policy")]["data"]["sentinel.toml"])
    return load_config(path, env={})


def _containers(pod) -> dict[str, dict]:
    return {c["name"]: c for c in pod["spec"]["containers"]}


def _ports(container) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container.get("ports", [])}


def _env(container) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def _mounts(container) -> dict[str, dict]:
    return {m["name"]: m for m in container.get("volumeMounts", [])}


def test_every_manifest_parses_and_lands_in_the_namespace_it_creates(kustomization, objects):
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "builder-job.yaml"}
    assert listed == on_disk
    namespace = kustomization["namespace"]
    assert ("Namespace", namespace) in objects
    # The builder Job is created on its own (kubectl create -f): it must name the namespace the
    # kustomization puts the repository's claim in, or it cannot mount it.
    job = load_yaml_docs(K8S / "builder-job.yaml")[0]
    assert job["kind"] == "Job" and job["metadata"]["namespace"] == namespace


def test_triton_and_the_sidecar_share_one_pod_and_the_repository_volume(objects, pod, config,
                                                                        tmp_path):
    containers = _containers(pod)
    assert set(containers) == {"triton", "sidecar"}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    claim = volumes["models"]["persistentVolumeClaim"]["claimName"]
    assert ("PersistentVolumeClaim", claim) in objects
    assert "ReadWriteMany" in objects[("PersistentVolumeClaim", claim)]["spec"]["accessModes"]
    for name, c in containers.items():
        for m in _mounts(c):
            assert m in volumes, f"{name} mounts undeclared volume {m}"
    # Triton serves the repository its entrypoint is given, read-only; the sidecar reads and
    # writes (the desired state) the one its config names: the same volume at those paths.
    triton = containers["triton"]
    env = {**image_env(dockerfile_for(triton["image"])), **_env(triton)}
    env = with_files(tmp_path, env, {env["TRITON_ADMIN_KEY_FILE"]: "k"})
    argv, _ = run_entrypoint(DOCKER / "triton" / "entrypoint.sh", "tritonserver", env, tmp_path)
    assert _mounts(triton)["models"]["mountPath"] == flag(argv, "model-repository")
    assert _mounts(triton)["models"].get("readOnly") is True
    sidecar = _mounts(containers["sidecar"])["models"]
    assert sidecar["mountPath"] == str(config.repository) and not sidecar.get("readOnly", False)
    # The builder Job publishes into the same claim, at the path its command writes to.
    job = load_yaml_docs(K8S / "builder-job.yaml")[0]["spec"]["template"]["spec"]
    (builder,) = job["containers"]
    job_volumes = {v["name"]: v for v in job["volumes"]}
    (mount,) = [m for m in builder["volumeMounts"]
                if job_volumes[m["name"]]["persistentVolumeClaim"]["claimName"] == claim]
    args = builder["args"]
    assert args[args.index("--repository") + 1] == mount["mountPath"]
    # It builds engines for the serving GPU: it asks for the same GPU resource and tolerates the
    # same node taints as the Triton pods.
    gpu = set(triton["resources"]["limits"]) - {"cpu", "memory"}
    assert gpu and gpu <= set(builder["resources"]["limits"])
    assert job["tolerations"] == pod["spec"]["tolerations"]


def test_secrets_reach_triton_and_the_sidecar_as_the_same_key(kustomization, objects, pod, config,
                                                              tmp_path):
    (generator,) = kustomization["secretGenerator"]
    files = dict(f.split("=", 1) for f in generator["files"])
    for source in files.values():
        assert source.startswith("secrets/")
    assert "*" in (K8S / "secrets" / ".gitignore").read_text().split()  # never committed
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["sentinel-secrets"]["secret"]["secretName"] == generator["name"]
    containers = _containers(pod)
    # Every *_FILE variable names a key of the Secret where its container mounts it, and every
    # key is read by someone.
    used = set()
    for name, c in containers.items():
        secret_dir = _mounts(c).get("sentinel-secrets", {}).get("mountPath")
        for var, value in _env(c).items():
            if var.endswith("_FILE"):
                assert secret_dir and PurePosixPath(value).parent == PurePosixPath(secret_dir), var
                assert PurePosixPath(value).name in files, f"{name} {var}: no such key"
                used.add(PurePosixPath(value).name)
        for e in c.get("env", []):
            assert not any(w in e["name"] for w in ("KEY", "TOKEN", "PASSWORD")) \
                or e["name"].endswith("_FILE"), f"{e['name']}: secrets come as files"
    assert used == set(files)
    # Run both entrypoints on those files: Triton guards its repository API with the key the
    # sidecar's config ends up holding, and the sidecar gets its control token.
    content = {f"{_mounts(c)['sentinel-secrets']['mountPath']}/{key}": f"value of {key}"
               for c in containers.values() for key in files}
    triton, sidecar = containers["triton"], containers["sidecar"]
    triton_env = with_files(tmp_path, {**image_env(dockerfile_for(triton["image"])),
                                       **_env(triton)}, content)
    argv, _ = run_entrypoint(DOCKER / "triton" / "entrypoint.sh", "tritonserver", triton_env,
                             tmp_path)
    key = flag(argv, "http-restricted-api").split("admin-key=", 1)[1]
    parsed, with_secrets = _sidecar_with_secrets(objects, sidecar, tmp_path, content)
    assert parsed.command == "monitor" and parsed.config == _config_path(sidecar)
    assert with_secrets.admin_key == key == "value of admin-key"
    assert with_secrets.token == "value of sidecar-token"
    assert config.admin_key is None and config.token is None  # not in the ConfigMap


def _sidecar_with_secrets(objects, sidecar, tmp_path, content: dict[str, str]):
    """The sidecar's parsed command line and its config, as its entrypoint starts it on the
    manifest's environment and ConfigMap with these container files (path -> content) in place."""
    side_env = with_files(tmp_path, {k: v for k, v in _env(sidecar).items() if v is not None},
                          content)
    argv, seen = run_entrypoint(DOCKER / "sidecar" / "entrypoint.sh", "sentinel", side_env,
                                tmp_path, sidecar["args"])
    config_path = tmp_path / "sentinel.toml"
    config_path.write_text(objects[("ConfigMap", "sentinel-policy")]["data"]["sentinel.toml"])
    config = load_config(config_path, env={k: v for k, v in seen.items()
                                           if k.startswith("SENTINEL_")})
    return build_parser().parse_args(argv), config  # the container runs `sentinel monitor`


def test_the_read_token_is_an_optional_secret_that_leaves_probes_and_scrapes_open(
        kustomization, objects, pod, tmp_path):
    """A read token reaches the sidecar from the generated Secret, as the control token does, and
    an empty file leaves reading open. With one, reads need it, while the kubelet's probes and the
    PodMonitor's scrape of the sidecar still get in without it."""
    (generator,) = kustomization["secretGenerator"]
    sidecar = _containers(pod)["sidecar"]
    secret_dir = _mounts(sidecar)["sentinel-secrets"]["mountPath"]
    keys = [f.split("=", 1)[0] for f in generator["files"]]
    content = {f"{secret_dir}/{key}": f"value of {key}" for key in keys}
    _, config = _sidecar_with_secrets(objects, sidecar, tmp_path, content)
    read = config.read_token
    assert read is not None and read not in (config.token, config.admin_key)
    (path,) = [p for p, value in content.items() if value == read]  # the key it came from
    port = _ports(sidecar)
    monitor = objects[("PodMonitor", "sentinel-ranker")]["spec"]
    open_paths = [sidecar[probe]["httpGet"]["path"] for probe in ("readinessProbe", "livenessProbe")]
    open_paths += [e.get("path", "/metrics") for e in monitor["podMetricsEndpoints"]
                   if e["port"] in port]  # the operator's default path
    assert len(open_paths) == 3
    for open_path in open_paths:
        assert sidecar_answers(open_path, read) == 200, open_path
    assert sidecar_answers("/api/openapi.json", read) == 401
    assert sidecar_answers("/api/openapi.json", read, send=read) == 200
    _, unset = _sidecar_with_secrets(objects, sidecar, tmp_path, {**content, path: ""})
    assert unset.read_token is None and unset.token == config.token
    assert sidecar_answers("/api/openapi.json", unset.read_token) == 200


def _config_path(sidecar) -> str:
    args = sidecar["args"]
    return args[args.index("--config") + 1]


def test_the_sidecar_reads_the_configmap_it_mounts(objects, pod):
    sidecar = _containers(pod)["sidecar"]
    path = PurePosixPath(_config_path(sidecar))
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    (mount,) = [m for m in sidecar["volumeMounts"] if path.parent == PurePosixPath(m["mountPath"])]
    config_map = volumes[mount["name"]]["configMap"]["name"]
    assert path.name in objects[("ConfigMap", config_map)]["data"]


def test_policy_config_is_valid_and_talks_to_triton_over_loopback(pod, config, triton_argv):
    triton = _ports(_containers(pod)["triton"])
    assert triton == triton_ports(triton_argv)  # the ports tritonserver is started with
    for url, port in ((config.triton_url, triton["http"]), (config.metrics_url, triton["metrics"])):
        parts = urlsplit(url)
        assert parts.hostname == "127.0.0.1" and parts.port == port, url
    sidecar = _containers(pod)["sidecar"]
    assert config.port == _ports(sidecar)["sidecar"]
    assert config.port in image_exposes(dockerfile_for(sidecar["image"]))
    # Prometheus scrapes the sidecar from outside the pod: it must not listen on loopback only.
    assert not ipaddress.ip_address(config.host).is_loopback
    # The root filesystem is read-only: the event log must be on a writable volume.
    db = PurePosixPath(config.db_path)
    assert any(db.is_relative_to(m["mountPath"]) and not m.get("readOnly", False)
               for m in sidecar["volumeMounts"]), config.db_path
    assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True


def test_probes_do_not_lie_about_a_dead_stub(pod):
    containers = _containers(pod)
    triton = containers["triton"]
    installed = image_files(dockerfile_for(triton["image"]))
    for probe in ("startupProbe", "readinessProbe"):
        command = triton[probe]["exec"]["command"]
        # a real inference: the golden probe the Triton image installs
        assert command[0] == "python3" and command[1] in installed, probe
        assert command[1].endswith("golden-probe"), probe
    # /v2/health/ready is 200 with a dead stub: it must not gate traffic.
    assert "httpGet" not in triton["readinessProbe"]
    assert triton["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    sidecar = containers["sidecar"]
    for probe in ("readinessProbe", "livenessProbe"):
        path = sidecar[probe]["httpGet"]["path"]
        assert sidecar_answers(path) == 200, f"sidecar {probe}: GET {path}"
    for name, c in containers.items():
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            port = c.get(probe, {}).get("httpGet", {}).get("port")
            assert port is None or port in _ports(c), f"{name} {probe} uses unknown port {port}"


def test_resources_gpu_images_and_users(pod):
    containers = _containers(pod)
    for name, c in containers.items():
        assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"], name
        assert c["resources"]["limits"]["memory"], name
        assert image_is_pinned(c["image"]), c["image"]
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        # the user the image was built for (it owns the image's files), never root
        assert str(c["securityContext"]["runAsUser"]) == image_user(dockerfile_for(c["image"]))
        assert c["securityContext"]["runAsUser"] != 0
    gpu = containers["triton"]["resources"]
    assert gpu["limits"]["nvidia.com/gpu"] == gpu["requests"]["nvidia.com/gpu"] >= 1
    assert "nvidia.com/gpu" not in containers["sidecar"]["resources"].get("limits", {})
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    shm = [m["name"] for m in containers["triton"]["volumeMounts"] if m["mountPath"] == "/dev/shm"]
    assert shm and volumes[shm[0]]["emptyDir"]["medium"] == "Memory"


def test_services_and_scraping_use_ports_that_exist(objects, pod, kustomization, config):
    labels = pod["metadata"]["labels"]
    deployment = objects[("Deployment", "sentinel-ranker")]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ports = {n: p for c in _containers(pod).values() for n, p in _ports(c).items()}
    services = [o for (kind, _), o in objects.items() if kind == "Service"]
    assert services
    for svc in services:
        assert svc["spec"]["selector"].items() <= labels.items()
        assert svc["spec"]["type"] == "ClusterIP"
        for port in svc["spec"]["ports"]:
            # inside the cluster a client uses the number the container listens on
            assert port["targetPort"] in ports and port["port"] == ports[port["targetPort"]], \
                f"{svc['metadata']['name']}: {port}"
    # Clients get inference only; metrics are scraped from the pod, not exposed as a Service.
    exposed = {p["targetPort"] for s in services for p in s["spec"]["ports"]}
    assert "metrics" not in exposed and {"http", "sidecar"} <= exposed
    monitor = objects[("PodMonitor", "sentinel-ranker")]["spec"]
    assert monitor["selector"]["matchLabels"].items() <= labels.items()
    endpoints = {e["port"]: e for e in monitor["podMetricsEndpoints"]}
    assert set(endpoints) == {"metrics", "sidecar"} <= set(ports)
    # The job label each endpoint gets is the one the alerting rules select on.
    rules = (DOCKER / "prometheus" / "rules.yml").read_text()
    jobs = {port: e["relabelings"][0]["replacement"] for port, e in endpoints.items()}
    assert set(re.findall(r'job="([^"]+)"', rules)) == set(jobs.values())
    # A sidecar reading Prometheus gets one Triton sample per scrape: scrape at its cycle.
    assert duration_s(endpoints["metrics"]["interval"]) == config.interval_s
    annotations = pod["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]
    images = {c["image"].rpartition(":")[0]: c["image"].rpartition(":")[2]
              for c in _containers(pod).values()}
    for image in kustomization["images"]:
        assert images.get(image["name"]) == image["newTag"], image  # kustomize finds and keeps it
