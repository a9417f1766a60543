"""The Kubernetes fleet manifests (docker/k8s), rendered as `kubectl apply -k` would and validated
against the Kubernetes API's own schemas (kubernetes-validate, strict: an unknown or misspelt field
fails), then against the code they configure: the Role allows exactly the requests
monitor/lease_kubernetes.py makes, on the Lease the ConfigMap names, for the account the pods run
as; the sidecar's SENTINEL_* variables are settings monitor/config.py reads; the selectors pick the
series Prometheus gives each pod. tests/deploy/test_k8s.py checks ports, probes, secrets, images."""
from __future__ import annotations

import copy
import json
import logging
import re
import shutil
import subprocess
from dataclasses import fields
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import requests
import yaml

from monitor.config import ENV_PREFIX, MonitorConfig, load_config
from monitor.lease_kubernetes import SERVICE_ACCOUNT, KubernetesLease

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "docker" / "k8s"
ENTRYPOINTS = {"triton": ROOT / "docker" / "triton" / "entrypoint.sh",
               "sidecar": ROOT / "docker" / "sidecar" / "entrypoint.sh"}
# The oldest Kubernetes minor the manifests are checked against, and the newest that
# kubernetes-validate (pinned in requirements.lock) bundles schemas for.
KUBERNETES_VERSIONS = ("1.30", "1.37")
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume",
                  "StorageClass", "CustomResourceDefinition"}
POD_IP = "10.42.0.7"

# The PodMonitor is a custom resource: no built-in schema. This is the part of the operator's CRD
# (monitoring.coreos.com/v1, podmonitors) that the manifest uses, with the CRD's types and patterns,
# closed against unknown fields as `kubectl apply`'s strict field validation is; a field this
# subset lacks fails here too, and gets added from the CRD.
_DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?"
                                          r"(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"}
_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
_RELABEL = {"type": "object", "additionalProperties": False, "properties": {
    "action": {"enum": ["replace", "keep", "drop", "labelmap", "labeldrop", "labelkeep"]},
    "regex": {"type": "string"}, "replacement": {"type": "string"},
    "separator": {"type": "string"}, "targetLabel": {"type": "string"},
    "sourceLabels": {"type": "array", "items": {"type": "string"}}}}
PODMONITOR = {"type": "object", "additionalProperties": False,
              "required": ["apiVersion", "kind", "metadata", "spec"], "properties": {
    "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "PodMonitor"},
    "metadata": {"type": "object", "additionalProperties": False, "required": ["name"],
                 "properties": {"name": {"type": "string"}, "namespace": {"type": "string"},
                                "labels": _STRINGS, "annotations": _STRINGS}},
    "spec": {"type": "object", "additionalProperties": False, "required": ["selector"],
             "properties": {
        "selector": {"type": "object", "additionalProperties": False,
                     "properties": {"matchLabels": _STRINGS}},
        "podMetricsEndpoints": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "properties": {
                "port": {"type": "string"}, "path": {"type": "string"},
                "interval": _DURATION, "scrapeTimeout": _DURATION,
                "relabelings": {"type": "array", "items": _RELABEL}}}}}}}}
CUSTOM_SCHEMAS = {("monitoring.coreos.com/v1", "PodMonitor"): PODMONITOR}


# ------------------------------------------------------------------ rendering

def _kustomization() -> dict:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def build_in_python() -> list[dict]:
    """What `kustomize build docker/k8s` gives, for the features kustomization.yaml uses and no
    others (a new feature fails here instead of being ignored): its resources, in its namespace,
    with its labels on every object, the generated Secret (empty keys, no content hash in the
    name) and the image tags."""
    k = _kustomization()
    assert set(k) <= {"apiVersion", "kind", "namespace", "labels", "resources", "secretGenerator",
                      "images"}, "a kustomize feature this build does not implement"
    labels = {}
    for entry in k.get("labels", []):
        assert entry.get("includeSelectors") is False and not entry.get("includeTemplates"), entry
        labels.update(entry["pairs"])
    docs = [d for r in k["resources"] for d in yaml.safe_load_all((K8S / r).read_text()) if d]
    for gen in k.get("secretGenerator", []):
        assert set(gen) <= {"name", "type", "files"}, gen
        docs.append({"apiVersion": "v1", "kind": "Secret", "type": gen.get("type", "Opaque"),
                     "metadata": {"name": gen["name"]},
                     "data": {f.split("=", 1)[0]: "" for f in gen["files"]}})
    tags = {}
    for image in k.get("images", []):
        assert set(image) <= {"name", "newTag"}, image
        tags[image["name"]] = image["newTag"]
    for doc in docs:
        meta = doc["metadata"]
        if doc["kind"] not in CLUSTER_SCOPED:
            meta["namespace"] = k["namespace"]
        meta["labels"] = {**meta.get("labels", {}), **labels}
        for subject in doc.get("subjects", []):
            if subject["kind"] == "ServiceAccount":
                subject.setdefault("namespace", k["namespace"])
        for c in doc.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
            name = c["image"].rpartition(":")[0]
            if name in tags:
                c["image"] = f"{name}:{tags[name]}"
    return docs


def build_with_kubectl(tmp: Path) -> list[dict]:
    """`kubectl kustomize` on a copy of docker/k8s with empty secret files (the real ones are not
    in git), the Secret's content-hash suffix removed from its name and the references to it."""
    shutil.copytree(K8S, tmp / "k8s", ignore=shutil.ignore_patterns("secrets"))
    generators = _kustomization().get("secretGenerator", [])
    for gen in generators:
        for f in gen["files"]:
            path = tmp / "k8s" / f.split("=", 1)[1]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("")
    out = subprocess.run(["kubectl", "kustomize", str(tmp / "k8s")], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    text = json.dumps([d for d in yaml.safe_load_all(out.stdout) if d])
    for gen in generators:
        text = re.sub(rf'"{re.escape(gen["name"])}-[a-z0-9]{{10}}"', f'"{gen["name"]}"', text)
    return json.loads(text)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> list[dict]:
    if shutil.which("kubectl"):
        return build_with_kubectl(tmp_path_factory.mktemp("kustomize"))
    return build_in_python()


@pytest.fixture(scope="module")
def by_kind(rendered) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for doc in rendered:
        out.setdefault(doc["kind"], []).append(doc)
    return out


@pytest.fixture(scope="module")
def deployment(by_kind) -> dict:
    (deploy,) = by_kind["Deployment"]
    return deploy


@pytest.fixture(scope="module")
def pod_name(deployment) -> str:
    return f"{deployment['metadata']['name']}-7d9f8c6b5-x2x7q"  # as a ReplicaSet names its pods


def _containers(deployment) -> dict[str, dict]:
    return {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}


def test_the_python_build_is_what_kustomize_renders(rendered):
    """Without kubectl the tests run on the Python build; where kubectl is installed it must give
    the same objects."""
    if not shutil.which("kubectl"):
        pytest.skip("kubectl is not installed: the tests use the Python build, not checked "
                    "against kustomize's")
    key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731
    assert sorted(build_in_python(), key=key) == sorted(rendered, key=key)


# ------------------------------------------------------------------ schemas

@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_is_valid_for_the_kubernetes_api(rendered, version):
    errors = []
    for doc in rendered:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        custom = CUSTOM_SCHEMAS.get((doc["apiVersion"], doc["kind"]))
        if custom is not None:
            errors += [f"{where} at {list(e.path)}: {e.message}"
                       for e in jsonschema.Draft202012Validator(custom).iter_errors(doc)]
            continue
        try:  # a kind without a schema (SchemaNotFoundError) fails too
            assert kubernetes_validate.validate(doc, version, strict=True) == version
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{where} at {list(exc.path)}: {exc.message}")
    assert not errors, f"Kubernetes {version}:\n" + "\n".join(errors)


def test_the_podmonitor_subset_schema_rejects_a_misspelt_field(by_kind):
    (monitor,) = by_kind["PodMonitor"]
    broken = copy.deepcopy(monitor)
    broken["spec"]["podMetricsEndpoints"][0]["scrapeTimout"] = "1s"
    assert not jsonschema.Draft202012Validator(PODMONITOR).is_valid(broken)


# ------------------------------------------------------------------ the fleet and its lease

@pytest.fixture(scope="module")
def config(by_kind, deployment, pod_name, tmp_path_factory):
    """The sidecar's config as one pod's sidecar loads it: the ConfigMap's file plus the
    SENTINEL_* variables the kubelet sets."""
    (policy,) = [c for c in by_kind["ConfigMap"] if c["metadata"]["name"] == "sentinel-policy"]
    path = tmp_path_factory.mktemp("k8s-config") / "sentinel.toml"
    path.write_text(policy["data"]["sentinel.toml"])
    env, _ = pod_env(deployment, "sidecar", pod_name)
    return path, {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}


def _bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti)?", quantity)
    assert m, quantity
    return int(m[1]) * units.get(m[2], 1)


def pod_env(deployment, container: str, pod_name: str) -> tuple[dict[str, str], set[str]]:
    """A container's environment as the kubelet sets it in a running pod (downward API values,
    $(NAME) expanded from variables defined before), and the references that did not expand."""
    containers = _containers(deployment)
    field = {"metadata.name": pod_name, "metadata.namespace": deployment["metadata"]["namespace"],
             "status.podIP": POD_IP}
    env, unresolved = {}, set()
    for e in containers[container].get("env", []):
        if "value" in e:
            def expand(m):
                if m[1] in env:
                    return env[m[1]]
                unresolved.add(m[1])
                return m[0]
            env[e["name"]] = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", expand, e["value"])
        elif "fieldRef" in e["valueFrom"]:
            env[e["name"]] = field[e["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            ref = e["valueFrom"]["resourceFieldRef"]
            kind, resource = ref["resource"].split(".")
            limits = containers[ref["containerName"]]["resources"][kind]
            env[e["name"]] = str(_bytes(limits[resource]))
    return env, unresolved


def test_a_fleet_of_replicas_on_one_read_write_many_repository(by_kind, deployment, config):
    """Every replica mounts the one claim; several pods on several nodes can only share it
    read-write as ReadWriteMany. The sidecars hold the Kubernetes Lease."""
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    claims = {c["metadata"]["name"]: c for c in by_kind["PersistentVolumeClaim"]}
    loaded = load_config(*config)
    for name, c in _containers(deployment).items():
        (mount,) = [m for m in c["volumeMounts"] if "persistentVolumeClaim" in volumes[m["name"]]]
        claim = volumes[mount["name"]]["persistentVolumeClaim"]["claimName"]
        assert claims[claim]["spec"]["accessModes"] == ["ReadWriteMany"], name
        if name == "sidecar":
            assert mount["mountPath"] == str(loaded.repository)
    assert loaded.lease == "kubernetes"


def test_only_the_sidecar_gets_the_service_account_token_and_it_is_what_the_lease_reads(
        deployment, config, tmp_path):
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    mounts = {n: {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
              for n, c in _containers(deployment).items()}
    assert str(SERVICE_ACCOUNT) not in mounts["triton"]
    volume = {v["name"]: v for v in pod["volumes"]}[mounts["sidecar"][str(SERVICE_ACCOUNT)]]
    # Lay the projected volume out as the kubelet would, and let the lease read it.
    namespace = deployment["metadata"]["namespace"]
    for source in volume["projected"]["sources"]:
        if "serviceAccountToken" in source:
            (tmp_path / source["serviceAccountToken"]["path"]).write_text("a-token\n")
        for kind in ("configMap", "downwardAPI"):
            for item in source.get(kind, {}).get("items", []):
                value = namespace if "fieldRef" in item else f"{kind} {item['key']}"
                (tmp_path / item["path"]).write_text(value)
    loaded = load_config(*config)
    lease = KubernetesLease.in_cluster(loaded.lease_key, "pod-a", loaded.lease_ttl_s,
                                       api_url="https://kubernetes.test",
                                       namespace=loaded.lease_namespace, service_account=tmp_path)
    assert lease.namespace == namespace
    assert lease.session.headers["Authorization"] == "Bearer a-token"
    assert Path(lease.session.verify).read_text() == "configMap ca.crt"


class FakeLeaseAPI:
    """The API server's Lease endpoints in memory, as lease_kubernetes.py uses them (404 for a
    missing Lease, 409 for a stale resourceVersion). Each request is recorded as RBAC sees it:
    (verb, API group, resource, namespace, name; None for a create, which names no object at
    authorization time), and each body written."""

    def __init__(self, api_url: str):
        self.api_url, self.leases, self.version = api_url, {}, 0
        self.requests: list[tuple] = []
        self.written: list[dict] = []

    def _respond(self, method: str, url: str, body: dict | None = None, **_) -> "_Response":
        path = url[len(self.api_url):]
        m = re.fullmatch(r"/apis/([^/]+)/v1/namespaces/([^/]+)/([^/]+)(?:/([^/]+))?", path)
        assert m, url
        group, namespace, resource, name = m.groups()
        verb = {"GET": "get" if name else "list", "POST": "create", "PUT": "update",
                "PATCH": "patch", "DELETE": "delete" if name else "deletecollection"}[method]
        self.requests.append((verb, group, resource, namespace, name))
        key = (namespace, name or (body or {}).get("metadata", {}).get("name"))
        current = self.leases.get(key)
        if method == "GET":
            return _Response(404, {}) if current is None else _Response(200, current)
        self.written.append(copy.deepcopy(body))
        if (current is None) != (method == "POST") or (
                current and current["metadata"]["resourceVersion"]
                != body["metadata"].get("resourceVersion")):
            return _Response(409, {})
        self.version += 1
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.leases[key] = stored
        return _Response(200 if current else 201, stored)

    def get(self, url, **kw):
        return self._respond("GET", url, **kw)

    def post(self, url, json=None, **kw):
        return self._respond("POST", url, json, **kw)

    def put(self, url, json=None, **kw):
        return self._respond("PUT", url, json, **kw)


class _Response:
    def __init__(self, status_code: int, body: dict):
        self.status_code, self._body = status_code, body

    def json(self) -> dict:
        return self._body

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise requests.HTTPError(str(self.status_code))


@pytest.fixture(scope="module")
def lease_traffic(deployment, config) -> FakeLeaseAPI:
    """Two sidecars through a lease's life: create, renew, a refused candidate, a takeover after
    the lease duration, a release and a read."""
    loaded = load_config(*config)
    api = FakeLeaseAPI("https://kubernetes.test")
    now = [0.0]
    namespace = loaded.lease_namespace or deployment["metadata"]["namespace"]
    a, b = (KubernetesLease(api.api_url, namespace, loaded.lease_key, who, loaded.lease_ttl_s,
                            session=api, monotonic=lambda: now[0]) for who in ("pod-a", "pod-b"))
    assert a.acquire().held and a.renew().held
    assert b.acquire().holder == "pod-a"
    now[0] += loaded.lease_ttl_s + 1
    assert b.acquire().held
    b.release()
    assert a.holder().holder is None
    return api


def _allows(rules: list[dict], verb: str, group: str, resource: str, name: str | None) -> bool:
    """RBAC: some rule names the verb, group and resource, and either names no objects or names
    this one (a create has no name when it is authorized, so only rules without names allow it)."""
    return any(verb in r["verbs"] and group in r["apiGroups"] and resource in r["resources"]
               and (not r.get("resourceNames") or name in r["resourceNames"]) for r in rules)


def test_the_role_allows_exactly_what_the_kubernetes_lease_does(by_kind, config, lease_traffic):
    (role,) = by_kind["Role"]
    loaded = load_config(*config)
    used = {verb for verb, *_ in lease_traffic.requests}
    for verb, group, resource, namespace, name in lease_traffic.requests:
        assert namespace == role["metadata"]["namespace"]
        assert _allows(role["rules"], verb, group, resource, name), (verb, resource, name)
    # Nothing more: no other verb, object kind or Lease name.
    assert {v for r in role["rules"] for v in r["verbs"]} == used
    assert {(g, res) for r in role["rules"] for g in r["apiGroups"] for res in r["resources"]} \
        == {(group, resource) for _, group, resource, *_ in lease_traffic.requests}
    assert all(r.get("resourceNames", [loaded.lease_key]) == [loaded.lease_key]
               for r in role["rules"])
    assert not _allows(role["rules"], "update", "coordination.k8s.io", "leases", "another-lease")


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_lease_the_sidecar_writes_is_a_valid_lease(lease_traffic, version):
    assert lease_traffic.written
    for body in lease_traffic.written:
        assert kubernetes_validate.validate(body, version, strict=True) == version


def test_the_role_is_bound_to_the_account_the_pods_run_as(by_kind, deployment):
    (account,) = by_kind["ServiceAccount"]
    (role,) = by_kind["Role"]
    (binding,) = by_kind["RoleBinding"]
    namespace = deployment["metadata"]["namespace"]
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] \
        == account["metadata"]["name"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert {"kind": "ServiceAccount", "name": account["metadata"]["name"],
            "namespace": namespace} in binding["subjects"]
    assert account["metadata"]["namespace"] == role["metadata"]["namespace"] \
        == binding["metadata"]["namespace"] == namespace


# ------------------------------------------------------------------ the sidecar's environment

@pytest.mark.parametrize("container", ["triton", "sidecar"])
def test_every_variable_is_read_by_someone(deployment, pod_name, container):
    env, unresolved = pod_env(deployment, container, pod_name)
    assert not unresolved, f"$(NAME) of variables not defined before: {unresolved}"
    script = ENTRYPOINTS[container].read_text()
    referenced = {n for e in _containers(deployment)[container].get("env", [])
                  for n in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", e.get("value", ""))}
    for name in env:
        assert name.startswith(ENV_PREFIX) or "${" + name in script or name in referenced, name


def test_sentinel_variables_are_settings_config_reads(config, caplog):
    """Each SENTINEL_* variable, as the kubelet sets it, is a setting monitor/config.py loads
    (it ignores, with a warning, names that are not) and arrives with the pod's value."""
    path, env = config
    settings = {f.name for f in fields(MonitorConfig)}
    with caplog.at_level(logging.WARNING, logger="sentinel.monitor"):
        loaded = load_config(path, env=env)
    assert "ignoring environment variables" not in caplog.text
    for name, value in env.items():
        setting = name[len(ENV_PREFIX):].lower()
        assert setting in settings and str(getattr(loaded, setting)) == value, name
    assert {"lease_identity", "prometheus_selector", "fleet_selector", "replica_url"} \
        <= {name[len(ENV_PREFIX):].lower() for name in env}


def _matches(selector: str, labels: dict[str, str]) -> bool:
    """PromQL label matchers (name="v", name=~"re", !=, !~) against one series' labels."""
    matchers = re.findall(r'\s*([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*,?', selector)
    assert "".join(f'{n}{op}"{v}"' for n, op, v in matchers) == re.sub(r'\s|,', "", selector)
    ok = {"=": lambda v, x: x == v, "!=": lambda v, x: x != v,
          "=~": lambda v, x: re.fullmatch(v, x) is not None,
          "!~": lambda v, x: re.fullmatch(v, x) is None}
    return all(ok[op](v, labels.get(n, "")) for n, op, v in matchers)


def test_selectors_pick_this_pod_and_the_fleet_from_what_prometheus_scrapes(
        by_kind, deployment, pod_name, config):
    (monitor,) = by_kind["PodMonitor"]
    namespace = deployment["metadata"]["namespace"]
    jobs = {e["port"]: e["relabelings"][0]["replacement"]
            for e in monitor["spec"]["podMetricsEndpoints"]}
    # The operator labels each target with its pod and namespace; the relabeling sets the job.
    series = lambda pod, port="metrics": {"job": jobs[port], "namespace": namespace,  # noqa: E731
                                          "pod": pod}
    other = f"{deployment['metadata']['name']}-7d9f8c6b5-abcde"
    _, env = config
    own, fleet = env["SENTINEL_PROMETHEUS_SELECTOR"], env["SENTINEL_FLEET_SELECTOR"]
    assert _matches(own, series(pod_name)) and not _matches(own, series(other))
    assert not _matches(own, series(pod_name, "sidecar"))
    assert _matches(fleet, series(pod_name)) and _matches(fleet, series(other))
    assert not _matches(fleet, series(pod_name, "sidecar"))
    assert not _matches(fleet, series("sentinel-build-x7k2p"))  # the builder Job's pods
    # Other sidecars reach this pod's Triton metrics where the PodMonitor scrapes them.
    ports = {p["name"]: p["containerPort"] for p in _containers(deployment)["triton"]["ports"]}
    path = {e["port"]: e.get("path", "/metrics") for e in monitor["spec"]["podMetricsEndpoints"]}
    assert env["SENTINEL_REPLICA_URL"] == f"http://{POD_IP}:{ports['metrics']}{path['metrics']}"


# ------------------------------------------------------------------ Prometheus without the operator

def _sanitize(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def _relabel(rules: list[dict], labels: dict[str, str]) -> dict[str, str] | None:
    """Prometheus's keep and replace relabeling (the only actions the file uses)."""
    for rule in rules:
        action = rule.get("action", "replace")
        assert action in ("keep", "replace"), action
        value = rule.get("separator", ";").join(labels.get(s, "") for s in rule["source_labels"])
        m = re.fullmatch(rule.get("regex", "(.*)"), value)
        if action == "keep" and not m:
            return None
        if action == "replace" and m:
            labels[rule["target_label"]] = m.expand(
                re.sub(r"\$\{?(\d+)\}?", r"\\g<\1>", rule.get("replacement", "$1")))
    return labels


def test_plain_prometheus_scrapes_both_ports_of_every_pod(by_kind, deployment, pod_name):
    """prometheus-scrape.yml's rules, run on the targets pod discovery gives for one pod: one
    target per job, on the port the PodMonitor scrapes for that job, at the same interval, with
    the pod and namespace labels the sidecars' selectors match."""
    namespace = deployment["metadata"]["namespace"]
    scrape = yaml.safe_load((K8S / "prometheus-scrape.yml").read_text())["scrape_configs"]
    (monitor,) = by_kind["PodMonitor"]
    endpoints = {e["relabelings"][0]["replacement"]: e
                 for e in monitor["spec"]["podMetricsEndpoints"]}
    template = deployment["spec"]["template"]["metadata"]
    meta = {"__meta_kubernetes_namespace": namespace, "__meta_kubernetes_pod_name": pod_name}
    meta |= {f"__meta_kubernetes_pod_label_{_sanitize(k)}": v
             for k, v in template["labels"].items()}
    meta |= {f"__meta_kubernetes_pod_annotation_{_sanitize(k)}": v
             for k, v in template["annotations"].items()}
    assert {j["job_name"] for j in scrape} == set(endpoints)  # the jobs the alert rules use
    for job in scrape:
        (sd,) = job["kubernetes_sd_configs"]
        assert sd["role"] == "pod" and sd["namespaces"]["names"] == [namespace]
        targets = []  # pod discovery: one target per declared container port
        for name, c in _containers(deployment).items():
            for p in c.get("ports", []):
                labels = _relabel(job["relabel_configs"], {
                    **meta, "__meta_kubernetes_pod_container_name": name,
                    "__meta_kubernetes_pod_container_port_name": p["name"],
                    "__address__": f"{POD_IP}:{p['containerPort']}"})
                if labels is not None:
                    targets.append((p["name"], labels))
        endpoint = endpoints[job["job_name"]]
        ((port, labels),) = targets
        assert port == endpoint["port"]
        assert labels["namespace"] == namespace and labels["pod"] == pod_name
        for ours, theirs in (("scrape_interval", "interval"), ("scrape_timeout", "scrapeTimeout")):
            assert job.get(ours) == endpoint.get(theirs), (job["job_name"], ours)


def test_the_plain_prometheus_jobs_pass_promtool(tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: `make setup` installs it (scripts/install-system-deps.sh)"
    # Debian's promtool is built without Kubernetes discovery: check the rest on a static target.
    config = yaml.safe_load((K8S / "prometheus-scrape.yml").read_text())
    for job in config["scrape_configs"]:
        job.pop("kubernetes_sd_configs")
        job["static_configs"] = [{"targets": [f"{POD_IP}:8002"]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    out = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
