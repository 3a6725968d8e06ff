"""The optional Grafana dashboard, the alerts (PrometheusRule) and the worker autoscaling on the
backlog: off by default, and when on, their PromQL parses and names only metrics that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

import helm_python as helm
import jsonschema
import kubernetes_validate
import promql_parser
import pytest

from conftest import (
    CHART,
    NAMESPACE,
    RELEASE,
    full_values,
    merge,
    minimal_values,
)

METRICS_RS = Path(__file__).resolve().parents[2] / "worker" / "src" / "metrics.rs"

# What the binaries export (worker/src/metrics.rs registers them under the prefix "tributary";
# counters are exposed with _total, histograms as _bucket, _sum and _count), by kind.
COUNTERS = {"webhooks", "deliveries", "crm_requests", "crm_rate_limited", "token_refreshes",
            "alerts", "incidents", "stripe_api_errors", "reconciled_events", "jobs", "pruned"}
GAUGES = {"queue_depth", "queue_oldest_age_seconds", "connection_daily_cap_used_ratio",
          "connection_paused_seconds", "ingest_pending"}
HISTOGRAMS = {"ingest_duration_seconds", "crm_request_duration_seconds",
              "crm_rate_limit_wait_seconds", "event_to_crm_seconds", "crm_budget_wait_seconds",
              "crm_batch_records"}
# Names the chart may use before metrics.rs registers them (none now).
NOT_YET_REGISTERED: set[str] = set()
# The kubelet's cAdvisor metrics, for the pods' CPU and memory.
CADVISOR = {"container_cpu_usage_seconds_total", "container_memory_working_set_bytes"}

KNOWN = (
    {f"tributary_{n}_total" for n in COUNTERS}
    | {f"tributary_{n}" for n in GAUGES}
    | {f"tributary_{n}_{s}" for n in HISTOGRAMS for s in ("bucket", "sum", "count")}
    | CADVISOR
)

# Grafana's variables, replaced the way Grafana does before the query is sent.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$namespace": NAMESPACE, "$release": RELEASE}

ALERTS = {"TributaryBacklogGrowing", "TributaryOldestEventOld", "TributaryDeliveryLatencyHigh",
          "TributaryDeadLetters", "TributaryWebhooksShed", "TributaryJobsPanicked"}


def observability_values(*overrides):
    return minimal_values({
        "metrics": {"grafanaDashboard": {"enabled": True}, "prometheusRule": {"enabled": True}},
        "worker": {"autoscaling": {"enabled": True, "queueDepth": {"enabled": True}}},
    }, *overrides)


def parse(expr: str):
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return promql_parser.parse(expr)


def selectors(expr: str) -> list[tuple[str, dict[str, tuple[str, str]]]]:
    """Every vector selector of an expression: (metric name, {label: (op, value)})."""
    found = []

    def visit(node, *_):
        if isinstance(node, promql_parser.VectorSelector):
            found.append((node.name, {m.name: (str(m.op).split(".")[-1], m.value)
                                      for m in node.matchers.matchers}))

    promql_parser.walk(parse(expr), pre_visit=visit)
    return found


def metric_names(expr: str) -> set[str]:
    return {name for name, _ in selectors(expr)}


def aggregations_over(expr: str, prefix: str) -> list[str]:
    """The aggregation operators applied directly or indirectly to metrics named prefix*."""
    ops = []

    def visit(node, *_):
        if isinstance(node, promql_parser.AggregateExpr):
            if any(n.startswith(prefix) for n in _names_in(node.expr)):
                ops.append(str(node.op))

    promql_parser.walk(parse(expr), pre_visit=visit)
    return ops


def _names_in(node) -> set[str]:
    names = set()
    promql_parser.walk(node, pre_visit=lambda n, *_: names.add(n.name) if isinstance(
        n, promql_parser.VectorSelector) else None)
    return names


def test_the_helpers_find_metric_names():
    expr = ('histogram_quantile(0.99, sum by (le, provider) (rate(a_bucket{x="y"}[5m]))) > 3 '
            'and max(b) > 0 or sum(c unless c offset 15m)')
    assert metric_names(expr) == {"a_bucket", "b", "c"}
    assert aggregations_over(expr, "b") == ["max"]
    assert aggregations_over(expr, "a_") == ["sum"]
    with pytest.raises(ValueError):
        parse("sum(rate(a[5m])")


def test_the_known_metrics_are_the_ones_the_worker_registers():
    """So that renaming a metric in metrics.rs fails the expression tests below."""
    source = METRICS_RS.read_text()
    assert 'Registry::with_prefix("tributary")' in source
    struct = re.search(r"pub struct Metrics \{(.*?)\n\}", source, re.S).group(1)
    field_types = dict(re.findall(r"^\s+(\w+): ([^\n]+),$", struct, re.M))
    registered = {}
    for name, field in re.findall(
            r'registry\.register\(\s*"(\w+)",\s*"(?:[^"\\]|\\.)*",\s*m\.(\w+)\.clone\(\)',
            source):
        kind = field_types[field]
        registered[name] = ("histogram" if "Histogram" in kind else
                            "counter" if "Counter" in kind else
                            "gauge" if "Gauge" in kind else kind)
    assert len(registered) == source.count("registry.register(")
    expected = ({n: "counter" for n in COUNTERS} | {n: "gauge" for n in GAUGES}
                | {n: "histogram" for n in HISTOGRAMS})
    for pending in NOT_YET_REGISTERED - set(registered):
        del expected[pending]
    assert registered == expected


# --- off by default -------------------------------------------------------------------------

def test_none_of_them_by_default(render):
    rendered = render(minimal_values({"worker": {"autoscaling": {"enabled": True}}}))
    assert rendered.kind("PrometheusRule") == []
    assert rendered.find("ConfigMap", f"{RELEASE}-dashboard") is None
    [hpa] = rendered.kind("HorizontalPodAutoscaler")
    assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Resource"]


# --- the dashboard --------------------------------------------------------------------------

def dashboard_of(rendered):
    configmap = rendered.get("ConfigMap", f"{RELEASE}-dashboard")
    assert list(configmap["data"]) == ["tributary.json"]
    return configmap, json.loads(configmap["data"]["tributary.json"])


def panels_of(dashboard):
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # inside collapsed rows


def graph_panels(dashboard):
    return [p for p in panels_of(dashboard) if p["type"] != "row"]


def dashboard_exprs(dashboard):
    return [t["expr"] for p in graph_panels(dashboard) for t in p["targets"]]


def test_the_dashboard_configmap_for_the_grafana_sidecar(render):
    configmap, dashboard = dashboard_of(render(observability_values()))
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["namespace"] == NAMESPACE
    assert not configmap["metadata"].get("annotations")
    assert dashboard["uid"] == "tributary"
    assert dashboard["title"] == "Tributary"
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 30
    # The chart's file, unchanged.
    assert dashboard == json.loads((CHART / "dashboards" / "tributary.json").read_text())


def test_the_dashboard_labels_annotations_folder_and_namespace(render):
    rendered = render(observability_values({"metrics": {"grafanaDashboard": {
        "labels": {"grafana_dashboard": "tributary", "team": "payments"},
        "annotations": {"example.com/owner": "payments"},
        "folder": "Payments", "namespace": "monitoring"}}}))
    configmap, _ = dashboard_of(rendered)
    meta = configmap["metadata"]
    assert meta["namespace"] == "monitoring"
    assert meta["labels"]["grafana_dashboard"] == "tributary"
    assert meta["labels"]["team"] == "payments"
    assert meta["labels"]["app.kubernetes.io/instance"] == RELEASE
    assert meta["annotations"] == {"example.com/owner": "payments",
                                   "k8s-sidecar-target-directory": "Payments"}
    configmap, _ = dashboard_of(render(observability_values({"metrics": {"grafanaDashboard": {
        "folder": "Payments", "folderAnnotation": "grafana_folder"}}})))
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "Payments"}


def test_the_dashboard_is_the_same_from_every_release(render):
    _, one = dashboard_of(render(observability_values()))
    other = render(observability_values(), name="payments-eu", namespace="eu")
    [configmap] = [c for c in other.kind("ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]
    assert json.loads(configmap["data"]["tributary.json"]) == one


def test_the_dashboard_asks_for_a_prometheus_data_source(render):
    _, dashboard = dashboard_of(render(observability_values()))
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in graph_panels(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", panel["datasource"]) == panel["datasource"]
    # The namespace and release variables query a metric that exists.
    for name in ("namespace", "release"):
        query = variables[name]["query"]
        query = query["query"] if isinstance(query, dict) else query
        inner = re.fullmatch(r"label_values\((.+),\s*\w+\)", query).group(1)
        assert metric_names(inner) <= KNOWN, (name, query)


def test_every_panel_queries_known_metrics(render):
    _, dashboard = dashboard_of(render(observability_values()))
    panels = graph_panels(dashboard)
    assert len(panels) >= 12
    ids = [p["id"] for p in panels_of(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["title"]
        exprs = [t.get("expr", "").strip() for t in panel["targets"]]
        assert exprs and all(exprs), panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for expr in exprs:
            unknown = metric_names(expr) - KNOWN
            assert not unknown, f"{panel['title']}: {sorted(unknown)} in {expr}"
            assert metric_names(expr), expr


def test_the_dashboard_covers_throughput(render):
    _, dashboard = dashboard_of(render(observability_values()))
    exprs = dashboard_exprs(dashboard)
    used = set().union(*(metric_names(e) for e in exprs))
    assert {
        "tributary_webhooks_total", "tributary_ingest_duration_seconds_bucket",
        "tributary_deliveries_total", "tributary_event_to_crm_seconds_bucket",
        "tributary_queue_depth", "tributary_queue_oldest_age_seconds",
        "tributary_crm_request_duration_seconds_bucket", "tributary_crm_requests_total",
        "tributary_crm_rate_limited_total", "tributary_jobs_total",
        "container_cpu_usage_seconds_total", "container_memory_working_set_bytes",
    } <= used
    matchers = [(name, labels) for e in exprs for name, labels in selectors(e)]
    assert ("tributary_deliveries_total", ("Equal", "dead")) in {
        (n, labels.get("status")) for n, labels in matchers}
    assert ("tributary_webhooks_total", ("Equal", "shed")) in {
        (n, labels.get("outcome")) for n, labels in matchers}
    # p50 and p99 of both latencies; event → CRM by provider.
    for metric in ("tributary_ingest_duration_seconds_bucket",
                   "tributary_event_to_crm_seconds_bucket"):
        quantiles = {re.match(r"histogram_quantile\(([0-9.]+),", e).group(1)
                     for e in exprs if metric in e}
        assert {"0.5", "0.99"} <= quantiles, metric
    assert all("provider" in e for e in exprs if "tributary_event_to_crm_seconds" in e)


def test_the_queue_gauges_are_never_summed(render):
    """Read from the database on each scrape: every pod reports the same value."""
    rendered = render(observability_values())
    _, dashboard = dashboard_of(rendered)
    rules = rendered.get("PrometheusRule", RELEASE)["spec"]["groups"][0]["rules"]
    exprs = dashboard_exprs(dashboard) + [r["expr"] for r in rules]
    queue_exprs = [e for e in exprs if "tributary_queue_" in e]
    assert len(queue_exprs) >= 4
    for expr in queue_exprs:
        ops = aggregations_over(expr, "tributary_queue_")
        assert ops and set(ops) == {"max"}, expr


def test_the_resource_panels_select_the_release_pods(render):
    rendered = render(observability_values())
    _, dashboard = dashboard_of(rendered)
    pod_patterns = {labels["pod"] for e in dashboard_exprs(dashboard)
                    for name, labels in selectors(e) if name in CADVISOR}
    assert len(pod_patterns) == 1
    [(op, pattern)] = pod_patterns
    assert op == "Re"
    pods = re.compile(pattern)  # Prometheus anchors its regular expressions
    for component in ("api", "worker"):
        deployment = rendered.deployment(component)["metadata"]["name"]
        assert pods.fullmatch(f"{deployment}-5d8f7c9b4-x2k9p"), component
    assert not pods.fullmatch(f"{RELEASE}-migrations-x2k9p")
    assert not pods.fullmatch(f"{RELEASE}-staging-api-5d8f7c9b4-x2k9p")


# --- the alerts -----------------------------------------------------------------------------

def rules_of(rendered):
    [rule] = rendered.kind("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def test_the_prometheus_rule(render):
    rendered = render(observability_values({"metrics": {"prometheusRule": {
        "labels": {"release": "prometheus"}}}}))
    [rule] = rendered.kind("PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    groups = rule["spec"]["groups"]
    assert groups and all(g["name"] and g["rules"] for g in groups)
    rules = rules_of(rendered)
    assert {r["alert"] for r in rules} == ALERTS
    assert len(rules) == len(ALERTS)
    for r in rules:
        assert r["expr"].strip() and r["for"], r["alert"]
        assert r["labels"]["severity"] == "warning", r["alert"]
        assert len(r["annotations"]["summary"]) > 20, r["alert"]
        assert "helm/README.md" in r["annotations"]["description"], r["alert"]
    by_name = {r["alert"]: r for r in rules}
    assert by_name["TributaryDeadLetters"]["for"] == "15m"
    assert by_name["TributaryOldestEventOld"]["for"] == "5m"
    assert by_name["TributaryDeliveryLatencyHigh"]["for"] == "10m"


def test_alert_expressions_name_known_metrics_of_this_release_only(render):
    for r in rules_of(render(observability_values())):
        found = selectors(r["expr"])
        assert found, r["alert"]
        for name, labels in found:
            assert name in KNOWN, f"{r['alert']}: {name}"
            # Scoped to this release's scrape jobs: two releases alert apart.
            assert labels.get("namespace") == ("Equal", NAMESPACE), (r["alert"], labels)
            op, job = labels["job"]
            assert op == "Re" and re.fullmatch(job, RELEASE)
            assert re.fullmatch(job, f"{RELEASE}-worker-metrics")
            assert not re.fullmatch(job, f"{RELEASE}-staging")


def test_what_each_alert_watches(render):
    by_name = {r["alert"]: r["expr"] for r in rules_of(render(observability_values()))}
    assert "deriv(" in by_name["TributaryBacklogGrowing"]
    assert metric_names(by_name["TributaryBacklogGrowing"]) == {"tributary_queue_depth"}
    assert metric_names(by_name["TributaryOldestEventOld"]) == {
        "tributary_queue_oldest_age_seconds"}
    assert "histogram_quantile(0.99" in by_name["TributaryDeliveryLatencyHigh"]
    assert metric_names(by_name["TributaryDeliveryLatencyHigh"]) == {
        "tributary_event_to_crm_seconds_bucket"}
    dead = selectors(by_name["TributaryDeadLetters"])
    assert dead and all(n == "tributary_deliveries_total" and l["status"] == ("Equal", "dead")
                        for n, l in dead)
    shed = selectors(by_name["TributaryWebhooksShed"])
    assert shed and all(n == "tributary_webhooks_total" and l["outcome"] == ("Equal", "shed")
                        for n, l in shed)
    panicked = selectors(by_name["TributaryJobsPanicked"])
    assert panicked and all(n == "tributary_jobs_total" and l["outcome"] == ("Equal", "panicked")
                            for n, l in panicked)


def test_thresholds_from_the_values_reach_the_expressions(render):
    rules = rules_of(render(observability_values({"metrics": {"prometheusRule": {
        "backlogGrowing": {"minDepth": 2500, "for": "20m"},
        "oldestEventAge": {"seconds": 900, "severity": "critical"},
        "deliveryLatency": {"p99Seconds": 12.5},
        "deadLetters": {"for": "1h"},
    }}})))
    by_name = {r["alert"]: r for r in rules}

    def compared_to(expr):
        return [float(x) for x in re.findall(r">\s*([0-9.]+)", expr)]

    assert 2500 in compared_to(by_name["TributaryBacklogGrowing"]["expr"])
    assert by_name["TributaryBacklogGrowing"]["for"] == "20m"
    assert compared_to(by_name["TributaryOldestEventOld"]["expr"]) == [900]
    assert by_name["TributaryOldestEventOld"]["labels"]["severity"] == "critical"
    assert compared_to(by_name["TributaryDeliveryLatencyHigh"]["expr"]) == [12.5]
    assert by_name["TributaryDeadLetters"]["for"] == "1h"
    defaults = {r["alert"]: r for r in rules_of(render(observability_values()))}
    assert 1000 in compared_to(defaults["TributaryBacklogGrowing"]["expr"])
    assert compared_to(defaults["TributaryOldestEventOld"]["expr"]) == [300]
    assert compared_to(defaults["TributaryDeliveryLatencyHigh"]["expr"]) == [30]


def test_large_thresholds_stay_plain_numbers(render):
    rules = rules_of(render(observability_values({"metrics": {"prometheusRule": {
        "backlogGrowing": {"minDepth": 2000000}, "oldestEventAge": {"seconds": 86400}}}})))
    by_name = {r["alert"]: r["expr"] for r in rules}
    assert "> 2000000" in by_name["TributaryBacklogGrowing"]
    assert "> 86400" in by_name["TributaryOldestEventOld"]
    hpa = worker_hpa(render(observability_values({"worker": {"autoscaling": {
        "queueDepth": {"targetAverageValue": 2000000}}}})))
    assert hpa["metrics"][0]["external"]["target"]["averageValue"] == "2000000"


def test_an_alert_set_to_null_is_left_out(render):
    rules = rules_of(render(observability_values({"metrics": {"prometheusRule": {
        "webhooksShed": None, "jobsPanicked": None}}})))
    assert {r["alert"] for r in rules} == ALERTS - {"TributaryWebhooksShed",
                                                    "TributaryJobsPanicked"}


def test_the_rule_follows_the_release(render):
    rules = rules_of(render(observability_values(), name="payments-eu", namespace="eu"))
    for r in rules:
        for _, labels in selectors(r["expr"]):
            assert labels["namespace"] == ("Equal", "eu")
            assert re.fullmatch(labels["job"][1], "payments-eu-tributary-worker-metrics")


# --- the worker autoscaling on the backlog --------------------------------------------------

def worker_hpa(rendered):
    return rendered.get("HorizontalPodAutoscaler", f"{RELEASE}-worker")["spec"]


@pytest.mark.parametrize("kube_version", ["1.30.0", kubernetes_validate.latest_version()])
def test_the_worker_scales_on_its_backlog(render, kube_version):
    rendered = render(observability_values({"worker": {"autoscaling": {
        "queueDepth": {"targetAverageValue": 250}}}}))
    hpa = rendered.get("HorizontalPodAutoscaler", f"{RELEASE}-worker")
    assert hpa["apiVersion"] == "autoscaling/v2"
    kubernetes_validate.validate(hpa, kube_version, strict=True)
    external, cpu = hpa["spec"]["metrics"]
    assert external == {
        "type": "External",
        "external": {
            "metric": {"name": "tributary_queue_depth",
                       "selector": {"matchLabels": {"job": f"{RELEASE}-worker-metrics"}}},
            "target": {"type": "AverageValue", "averageValue": "250"},
        },
    }
    # CPU stays as a second metric.
    assert cpu["type"] == "Resource" and cpu["resource"]["name"] == "cpu"
    # The selected job is the one the worker ServiceMonitor's Service gives.
    assert rendered.find("Service", f"{RELEASE}-worker-metrics") is not None


def test_the_backlog_alone(render, chart):
    values = observability_values({"worker": {"autoscaling": {
        "targetCPUUtilizationPercentage": None}}})
    chart.validate_schema(values)
    metrics = worker_hpa(render(values))["metrics"]
    assert [m["type"] for m in metrics] == ["External"]
    with_memory = worker_hpa(render(merge(values, {"worker": {"autoscaling": {
        "targetMemoryUtilizationPercentage": 80}}})))["metrics"]
    assert [(m["type"], m.get("resource", {}).get("name")) for m in with_memory] == [
        ("External", None), ("Resource", "memory")]


def test_the_api_never_scales_on_the_backlog(render):
    rendered = render(observability_values({"api": {"autoscaling": {"enabled": True}}}))
    api = rendered.get("HorizontalPodAutoscaler", f"{RELEASE}-api")["spec"]
    assert {m["type"] for m in api["metrics"]} == {"Resource"}


def test_the_queue_depth_target_as_a_quantity(render):
    hpa = worker_hpa(render(observability_values({"worker": {"autoscaling": {
        "queueDepth": {"targetAverageValue": "1k"}}}})))
    assert hpa["metrics"][0]["external"]["target"]["averageValue"] == "1k"


# --- the whole set, validated like every other manifest -------------------------------------

def test_full_values_switch_everything_on(render):
    rendered = render(full_values())
    assert len(rendered.kind("PrometheusRule")) == 1
    assert rendered.find("ConfigMap", f"{RELEASE}-dashboard") is not None
    assert worker_hpa(rendered)["metrics"][0]["type"] == "External"


def test_lint_with_everything_on():
    report = helm.lint(str(CHART), observability_values(), strict=True, namespace=NAMESPACE)
    assert [m for m in report["messages"] if m["severity"] >= 2] == []
    assert report["errors"] == []


def test_the_defaults_of_the_new_values(chart):
    import yaml

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    dashboard = values["metrics"]["grafanaDashboard"]
    assert dashboard["enabled"] is False
    assert dashboard["labels"] == {"grafana_dashboard": "1"}
    assert values["metrics"]["prometheusRule"]["enabled"] is False
    assert values["worker"]["autoscaling"]["queueDepth"] == {"enabled": False,
                                                             "targetAverageValue": 500}
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator(schema).validate(values)
