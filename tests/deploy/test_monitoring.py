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


def test_alerting_rules_cover_triton_and_the_sidecar_with_known_metrics():
    groups = {g["name"]: g["rules"] for g in yaml.safe_load(RULES.read_text())["groups"]}
    assert set(groups) == {"triton", "sentinel-sidecar"}
    names = set()
    for rules in groups.values():
        for rule in rules:
            assert rule["labels"]["severity"] in ("info", "warning", "critical"), rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]
            unknown = metric_names(rule["expr"]) - KNOWN
            assert not unknown, f"{rule['alert']} uses unknown metrics {unknown}"
            names.add(rule["alert"])
    assert {"TritonDown", "TritonModelFailures", "SentinelSidecarDown", "SentinelModelDegraded",
            "SentinelActionFailed", "SentinelMonitorStalled"} <= names


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
