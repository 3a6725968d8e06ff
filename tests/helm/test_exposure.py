"""Services, the optional Ingress, the optional ServiceMonitors and NOTES.txt."""

from __future__ import annotations

import pytest

from conftest import (
    PUBLIC_URL,
    RELEASE,
    full_values,
    minimal_values,
    selects,
)


def pod_labels(rendered, component):
    return rendered.deployment(component)["spec"]["template"]["metadata"]["labels"]


def container_ports(rendered, component):
    return {p["name"]: p["containerPort"] for p in rendered.container(component)["ports"]}


def test_the_api_service_selects_only_api_pods(render):
    rendered = render(minimal_values())
    service = rendered.get("Service", RELEASE)["spec"]
    assert selects(service["selector"], pod_labels(rendered, "api"))
    assert not selects(service["selector"], pod_labels(rendered, "worker"))
    assert service["ports"] == [{"name": "http", "port": 80, "targetPort": "http",
                                 "protocol": "TCP"}]
    assert container_ports(rendered, "api")["http"] == 8080


def test_the_worker_metrics_service_selects_only_worker_pods(render):
    rendered = render(minimal_values())
    service = rendered.get("Service", f"{RELEASE}-worker-metrics")["spec"]
    assert selects(service["selector"], pod_labels(rendered, "worker"))
    assert not selects(service["selector"], pod_labels(rendered, "api"))
    assert [p["targetPort"] for p in service["ports"]] == ["metrics"]
    assert container_ports(rendered, "worker")["metrics"] == 9090


# --- Ingress ------------------------------------------------------------------------------

def test_no_ingress_by_default(render):
    rendered = render(minimal_values())
    assert rendered.kind("Ingress") == []
    assert "port-forward" in rendered.notes


def test_ingress_when_enabled(render):
    rendered = render(full_values())
    ingress = rendered.get("Ingress", RELEASE)["spec"]
    assert ingress["ingressClassName"] == "nginx"
    assert ingress["tls"] == [{"secretName": "hooks-tls", "hosts": ["hooks.example.com"]}]
    (rule,) = ingress["rules"]
    assert rule["host"] == "hooks.example.com"
    paths = {p["path"]: p for p in rule["http"]["paths"]}
    assert set(paths) == {"/v1", "/webhooks", "/docs", "/openapi.json"}
    for path in paths.values():
        assert path["backend"]["service"] == {"name": RELEASE, "port": {"number": 80}}


def test_ingress_keeps_metrics_and_probes_inside_the_cluster(render):
    ingress = render(full_values()).get("Ingress", RELEASE)["spec"]
    for rule in ingress["rules"]:
        for path in rule["http"]["paths"]:
            for internal in ("/metrics", "/healthz", "/readyz"):
                assert not internal.startswith(path["path"].rstrip("/") + "/") and \
                    internal != path["path"] and path["path"] != "/", (path, internal)


@pytest.mark.parametrize("tls,scheme", [([{"secretName": "t", "hosts": ["t.example.com"]}],
                                         "https"), ([], "http")])
def test_public_url_from_the_ingress_host(render, tls, scheme):
    rendered = render(minimal_values({"publicUrl": "", "ingress": {
        "enabled": True, "hosts": ["t.example.com", "u.example.com"], "tls": tls}}))
    data = rendered.get("ConfigMap", RELEASE)["data"]
    assert data["TRIBUTARY_PUBLIC_URL"] == f"{scheme}://t.example.com"
    assert f"{scheme}://t.example.com/webhooks/stripe/{{token}}" in rendered.notes
    assert len(rendered.get("Ingress", RELEASE)["spec"]["rules"]) == 2


def test_public_url_trailing_slash_is_dropped(render):
    rendered = render(minimal_values({"publicUrl": PUBLIC_URL + "/"}))
    assert rendered.get("ConfigMap", RELEASE)["data"]["TRIBUTARY_PUBLIC_URL"] == PUBLIC_URL


# --- ServiceMonitor -----------------------------------------------------------------------

def test_no_service_monitor_by_default(render):
    assert render(minimal_values()).kind("ServiceMonitor") == []


def test_a_service_monitor_for_the_api_and_the_worker(render):
    rendered = render(full_values())
    monitors = {m["metadata"]["name"]: m for m in rendered.kind("ServiceMonitor")}
    assert set(monitors) == {f"{RELEASE}-api", f"{RELEASE}-worker"}
    targets = {"api": (rendered.get("Service", RELEASE), 8080),
               "worker": (rendered.get("Service", f"{RELEASE}-worker-metrics"), 9090)}
    for component, (service, container_port) in targets.items():
        monitor = monitors[f"{RELEASE}-{component}"]
        assert monitor["metadata"]["labels"]["release"] == "prometheus"
        spec = monitor["spec"]
        assert spec["namespaceSelector"] == {"matchNames": ["payments"]}
        # It selects exactly this component's Service…
        matched = [s["metadata"]["name"] for s in rendered.kind("Service")
                   if selects(spec["selector"]["matchLabels"], s["metadata"]["labels"])]
        assert matched == [service["metadata"]["name"]]
        # …on a port that reaches the process's /metrics.
        (endpoint,) = spec["endpoints"]
        assert endpoint["path"] == "/metrics"
        (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
        assert container_ports(rendered, component)[port["targetPort"]] == container_port


def test_the_api_monitor_sends_the_metrics_token_from_the_secret(render):
    rendered = render(full_values())
    (endpoint,) = rendered.get("ServiceMonitor", f"{RELEASE}-api")["spec"]["endpoints"]
    assert endpoint["authorization"] == {
        "type": "Bearer", "credentials": {"name": RELEASE, "key": "TRIBUTARY_METRICS_TOKEN"}}
    env = {e["name"]: e for e in rendered.container("api")["env"]}
    assert env["TRIBUTARY_METRICS_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == \
        "TRIBUTARY_METRICS_TOKEN"
    (worker_endpoint,) = rendered.get("ServiceMonitor", f"{RELEASE}-worker")["spec"]["endpoints"]
    assert "authorization" not in worker_endpoint


def test_without_a_metrics_token_only_the_workers_are_scraped(render):
    values = full_values()
    values["secrets"].pop("metricsToken")
    monitors = {m["metadata"]["name"] for m in render(values).kind("ServiceMonitor")}
    assert monitors == {f"{RELEASE}-worker"}


# --- NOTES.txt ----------------------------------------------------------------------------

def test_notes_tell_the_webhook_url_pattern_and_the_first_tenant(render):
    notes = render(minimal_values()).notes
    assert f"{PUBLIC_URL}/webhooks/stripe/{{token}}" in notes
    assert "webhook_url" in notes and "/v1/stripe-accounts" in notes
    assert f"curl -X POST {PUBLIC_URL}/v1/signup" in notes
    assert '"tenant_name":"Acme"' in notes
    assert "config.signup=closed" in notes
    assert f"{PUBLIC_URL}/v1/oauth/callback" in notes


def test_notes_when_signup_is_closed(render):
    notes = render(minimal_values({"config": {"signup": "closed"}})).notes
    assert "Sign-up is closed" in notes
    assert "curl -X POST" not in notes
    assert f"{PUBLIC_URL}/webhooks/stripe/{{token}}" in notes


def test_notes_mention_restarts_for_operator_secrets(render):
    from conftest import existing_secret_values

    notes = render(existing_secret_values()).notes
    assert f"rollout restart deployment/{RELEASE}-api deployment/{RELEASE}-worker" in notes
