"""Prometheus alerting rules and the Grafana dashboard: promtool accepts the rules and every
dashboard query, and every metric they name is one that Triton, the backend or the sidecar exports."""
from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml
from prometheus_client import CollectorRegistry

from monitor.poller import MonitorMetrics
from python_backend import metrics as backend
from tests.deploy.conftest import DOCKER, tool

RULES = DOCKER / "prometheus" / "rules.yml"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "sentinel.json"

# Triton 2.51's per-model metrics (PLATFORM.md), all labelled {model, version}.
TRITON = {
    "nv_inference_request_success", "nv_inference_request_failure", "nv_inference_count",
    "nv_inference_exec_count", "nv_inference_pending_request_count",
    *(f"nv_inference_{s}_duration_us" for s in
      ("request", "queue", "compute_input", "compute_infer", "compute_output")),
}
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "by", "without", "on", "ignoring", "group_left",
    "group_right", "and", "or", "unless", "bool", "offset", "le", "inf", "nan",
}
# Grafana's variables, replaced by something PromQL accepts before promtool sees a query.
GRAFANA_VARS = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "1m"}


def _sidecar_metrics() -> set[str]:
    names = set()
    for family in MonitorMetrics(CollectorRegistry()).registry.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count")}
        else:
            names.add(family.name)
    return names


KNOWN = {"up", *TRITON, *_sidecar_metrics(),
         *(f"{backend.SCORE}_{s}" for s in ("bucket", "sum", "count")),
         backend.NONFINITE, backend.ERRORS, backend.REQUESTS, backend.ROWS}


def metric_names(expr: str) -> set[str]:
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values
    e = re.sub(r"\{[^}]*\}", "", e)  # matchers
    e = re.sub(r"\[[^\]]*\]", "", e)  # ranges
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", e):
        if m.group(2) is None and m.group(1).lower() not in PROMQL_WORDS:
            names.add(m.group(1))
    return names


def test_metric_name_extraction():
    assert metric_names('sum by (version, le) (rate(sentinel_output_score_bucket{model=~"$m"}[5m]))'
                        ' / on (version) group_left sum(up{job="x"}) > 0.5') == \
        {"sentinel_output_score_bucket", "up"}


def _promtool_check_rules(path) -> None:
    promtool = tool("promtool", "scripts/install-system-deps.sh installs Debian's prometheus")
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerting_rules_pass_promtool():
    _promtool_check_rules(RULES)


def test_alerting_rules_use_known_metrics_severities_and_summaries():
    groups = yaml.safe_load(RULES.read_text())["groups"]
    assert groups
    for group in groups:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in ("info", "warning", "critical"), rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]
            unknown = metric_names(rule["expr"]) - KNOWN
            assert not unknown, f"{rule['alert']} uses unknown metrics {unknown}"


def _exported(update) -> list[tuple[str, dict]]:
    """(sample name, labels) the sidecar exports after `update(metrics)`."""
    metrics = MonitorMetrics(CollectorRegistry())
    update(metrics)
    return [(s.name, dict(s.labels)) for family in metrics.registry.collect()
            for s in family.samples if not s.name.endswith("_created")]


def _series(name: str, labels: dict, values: str) -> dict:
    body = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return {"series": f"{name}{{{body}}}", "values": values}


def test_the_alerts_fire_on_what_they_watch(tmp_path):
    """promtool runs the rules on series labelled the way the compose Prometheus scrapes them
    (its job names and target labels) with the sidecar's own exported names and labels: Triton
    and a sidecar go down, a model stays degraded, the poller stops cycling, an action fails, a
    version fails half its requests. Each alert fires for the pod or model it concerns and no
    other (annotations are left out: they are text, not behaviour)."""
    scrape = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    target = {}  # service name -> the labels Prometheus gives what it scrapes there
    for job in scrape["scrape_configs"]:
        for sc in job["static_configs"]:
            for t in sc["targets"]:
                target[t.split(":")[0]] = {"job": job["job_name"], "instance": t,
                                           **sc.get("labels", {})}
    triton, sidecar = target["triton"], target["sidecar"]
    other_pod = {**triton, "pod": "triton-1", "instance": "triton-1:8002"}
    minute = "x4"  # 15 s steps
    series = [
        _series("up", triton, f"1{minute} 0x40"), _series("up", other_pod, "1x44"),
        _series("up", sidecar, f"1{minute} 0x40"),
        _series("nv_inference_request_success", {**triton, "model": "ranker", "version": "2"},
                "0+10x44"),
        _series("nv_inference_request_failure", {**triton, "model": "ranker", "version": "2",
                                                 "reason": "BACKEND"}, "0+10x44"),
    ]
    for name, labels in _exported(lambda m: m.cycles.inc()):
        series.append(_series(name, {**sidecar, **labels}, "0+1x8 8x36"))  # stops after 2 min
    for name, labels in _exported(lambda m: m.phase.labels("ranker", "degraded").set(1)):
        series.append(_series(name, {**sidecar, **labels}, "1x44"))
    for name, labels in _exported(lambda m: m.actions.labels("ranker", "rollback", "failed").inc()):
        series.append(_series(name, {**sidecar, **labels}, "0x4 1x40"))
    pod = triton["pod"]
    expected = {
        "TritonDown": [{k: triton[k] for k in ("job", "instance", "pod")}],
        "SentinelSidecarDown": [{k: sidecar[k] for k in ("job", "instance", "pod")}],
        "SentinelModelDegraded": [{"model": "ranker", "pod": pod}],
        "SentinelMonitorStalled": [{k: sidecar[k] for k in ("job", "instance", "pod")}],
        "SentinelActionFailed": [{"model": "ranker", "pod": pod, "action": "rollback"}],
        "TritonModelFailures": [{"model": "ranker", "version": "2"}],
    }
    rules = yaml.safe_load(RULES.read_text())
    severity = {}
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
            severity[rule["alert"]] = rule["labels"]["severity"]
    rules_path = tmp_path / "rules.yml"
    rules_path.write_text(yaml.safe_dump(rules))
    tests = {"rule_files": [str(rules_path)], "evaluation_interval": "15s", "tests": [{
        "interval": "15s", "input_series": series,
        "alert_rule_test": [
            {"eval_time": "8m", "alertname": name,
             "exp_alerts": [{"exp_labels": {**labels, "severity": severity[name]}}
                            for labels in alerts]}
            for name, alerts in expected.items()]}]}
    path = tmp_path / "alerts-test.yml"
    path.write_text(yaml.safe_dump(tests))
    promtool = tool("promtool", "scripts/install-system-deps.sh installs Debian's prometheus")
    result = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def _targets(dashboard):
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel, target


def test_dashboard_structure(dashboard):
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "model", "version", "pod"} <= variables
    for panel in dashboard["panels"]:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] != "row":
            assert panel["targets"], f"panel {panel['title']!r} has no query"
            assert panel["datasource"]["uid"] == "${datasource}"
    for panel, target in _targets(dashboard):
        assert target["refId"] and target["expr"].strip(), panel["title"]


def test_dashboard_shows_what_the_issue_asks_for(dashboard):
    used = set()
    for _, target in _targets(dashboard):
        used |= metric_names(target["expr"])
    assert {"nv_inference_request_success", "nv_inference_request_failure",
            "sentinel_request_errors_total", "nv_inference_queue_duration_us",
            "nv_inference_compute_infer_duration_us", "sentinel_output_score_bucket",
            "sentinel_monitor_phase", "sentinel_monitor_actions_total"} <= used
    unknown = used - KNOWN
    assert not unknown, f"dashboard queries unknown metrics {unknown}"


def test_every_dashboard_query_parses_as_promql(dashboard, tmp_path):
    """promtool parses each query as a recording rule (Grafana variables substituted first)."""
    exprs = [t["expr"] for _, t in _targets(dashboard)]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"]
              if v["type"] == "query" and not v["query"]["query"].startswith("label_values(")]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"]]
    rules = []
    for i, expr in enumerate(exprs):
        for var, value in GRAFANA_VARS.items():
            expr = expr.replace(var, value)
        expr = re.sub(r"\$\{?(\w+)\}?", ".*", expr)  # $model, ${pod}: regex matchers
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    _promtool_check_rules(path)
