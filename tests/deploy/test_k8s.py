"""The Kubernetes manifests, parsed (no cluster, no kubectl here): Triton and the sidecar in one pod
on one repository volume, secrets and config that exist, probes that do not lie about a dead stub,
ports that agree with each other, resources, and pinned images."""
from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import yaml

from monitor.config import load_config
from tests.deploy.conftest import K8S, image_is_pinned, load_yaml_docs


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


def _containers(pod) -> dict[str, dict]:
    return {c["name"]: c for c in pod["spec"]["containers"]}


def _ports(container) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container.get("ports", [])}


def _env(container) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def test_every_manifest_parses_and_the_kustomization_lists_them(kustomization, objects):
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "builder-job.yaml"}
    assert listed == on_disk
    assert {kind for kind, _ in objects} == {"Namespace", "PersistentVolumeClaim", "ConfigMap",
                                              "Deployment", "Service", "PodMonitor"}
    assert load_yaml_docs(K8S / "builder-job.yaml")[0]["kind"] == "Job"


def test_triton_and_the_sidecar_share_one_pod_and_the_repository_volume(objects, pod):
    containers = _containers(pod)
    assert set(containers) == {"triton", "sidecar"}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    claim = volumes["models"]["persistentVolumeClaim"]["claimName"]
    assert ("PersistentVolumeClaim", claim) in objects
    assert "ReadWriteMany" in objects[("PersistentVolumeClaim", claim)]["spec"]["accessModes"]
    for name, c in containers.items():
        mounts = {m["name"]: m for m in c["volumeMounts"]}
        assert mounts["models"]["mountPath"] == "/models", name
        # Triton only reads the repository; the sidecar writes the desired state into it
        assert mounts["models"].get("readOnly", False) == (name == "triton"), name
        for m in mounts:
            assert m in volumes, f"{name} mounts undeclared volume {m}"
    job = load_yaml_docs(K8S / "builder-job.yaml")[0]["spec"]["template"]["spec"]
    assert job["volumes"][0]["persistentVolumeClaim"]["claimName"] == claim
    assert job["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_secret_and_config_references_resolve(kustomization, objects, pod):
    (generator,) = kustomization["secretGenerator"]
    keys = {f.split("=", 1)[0] for f in generator["files"]}
    assert keys == {"admin-key", "sidecar-token"}
    for f in generator["files"]:
        assert f.split("=", 1)[1].startswith("secrets/")
    assert "*" in (K8S / "secrets" / ".gitignore").read_text().split()  # never committed
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["sentinel-secrets"]["secret"]["secretName"] == generator["name"]
    containers = _containers(pod)
    mount = {c: {m["name"]: m["mountPath"] for m in containers[c]["volumeMounts"]}
             for c in containers}
    secret_dir = mount["triton"]["sentinel-secrets"]
    assert _env(containers["triton"])["TRITON_ADMIN_KEY_FILE"] == f"{secret_dir}/admin-key"
    side = _env(containers["sidecar"])
    assert side["ADMIN_KEY_FILE"] == f"{mount['sidecar']['sentinel-secrets']}/admin-key"
    assert side["TOKEN_FILE"] == f"{mount['sidecar']['sentinel-secrets']}/sidecar-token"
    for c in containers.values():
        for e in c.get("env", []):
            assert not any(w in e["name"] for w in ("KEY", "TOKEN", "PASSWORD")) \
                or e["name"].endswith("_FILE"), f"{e['name']}: secrets come as files"
    policy = volumes["policy"]["configMap"]["name"]
    assert ("ConfigMap", policy) in objects
    assert mount["sidecar"]["policy"] == "/etc/sentinel"
    assert containers["sidecar"]["args"] == ["--config", "/etc/sentinel/sentinel.toml"]


def test_policy_config_is_valid_and_talks_to_triton_over_loopback(objects, pod, tmp_path):
    toml = objects[("ConfigMap", "sentinel-policy")]["data"]["sentinel.toml"]
    (tmp_path / "sentinel.toml").write_text(toml)
    config = load_config(tmp_path / "sentinel.toml", env={})
    triton = _ports(_containers(pod)["triton"])
    for url, port in ((config.triton_url, triton["http"]), (config.metrics_url, triton["metrics"])):
        parts = urlsplit(url)
        assert parts.hostname == "127.0.0.1" and parts.port == port, url
    assert config.port == _ports(_containers(pod)["sidecar"])["sidecar"]
    assert config.host == "0.0.0.0"  # Prometheus scrapes the sidecar from outside the pod
    assert str(config.repository) == "/models"
    assert config.db_path.startswith("/var/lib/sentinel/")
    assert config.admin_key is None and config.token is None


def test_probes_do_not_lie_about_a_dead_stub(pod):
    containers = _containers(pod)
    triton = containers["triton"]
    for probe in ("startupProbe", "readinessProbe"):
        command = triton[probe]["exec"]["command"]
        assert "/opt/sentinel/bin/golden-probe" in command, probe  # a real inference
    # /v2/health/ready is 200 with a dead stub: it must not gate traffic.
    assert "httpGet" not in triton["readinessProbe"]
    assert triton["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    sidecar = containers["sidecar"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert sidecar[probe]["httpGet"]["path"] == "/healthz"
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
        assert c["securityContext"]["runAsUser"] != 0
    gpu = containers["triton"]["resources"]
    assert gpu["limits"]["nvidia.com/gpu"] == gpu["requests"]["nvidia.com/gpu"] == 1
    assert "nvidia.com/gpu" not in containers["sidecar"]["resources"].get("limits", {})
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    assert any(m["mountPath"] == "/dev/shm" for m in containers["triton"]["volumeMounts"])


def test_services_and_scraping_use_ports_that_exist(objects, pod, kustomization):
    labels = pod["metadata"]["labels"]
    deployment = objects[("Deployment", "sentinel-ranker")]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    names = {n for c in _containers(pod).values() for n in _ports(c)}
    services = [o for (kind, _), o in objects.items() if kind == "Service"]
    assert {s["metadata"]["name"] for s in services} == {"ranker", "sentinel-sidecar"}
    for svc in services:
        assert svc["spec"]["selector"].items() <= labels.items()
        assert svc["spec"]["type"] == "ClusterIP"
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in names, f"{svc['metadata']['name']}: {port}"
    # Clients get inference only; metrics are scraped from the pod, not exposed as a Service.
    assert {p["port"] for s in services for p in s["spec"]["ports"]} == {8000, 8001, 8080}
    monitor = objects[("PodMonitor", "sentinel-ranker")]["spec"]
    assert monitor["selector"]["matchLabels"].items() <= labels.items()
    endpoints = {e["port"]: e for e in monitor["podMetricsEndpoints"]}
    assert set(endpoints) == {"metrics", "sidecar"} <= names
    jobs = {e["port"]: e["relabelings"][0]["replacement"] for e in endpoints.values()}
    assert jobs == {"metrics": "triton", "sidecar": "sentinel-sidecar"}  # the rules' job names
    annotations = pod["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == _ports(_containers(pod)["triton"])["metrics"]
    for image in kustomization["images"]:
        assert image["newTag"] != "latest" and any(ch.isdigit() for ch in image["newTag"])
