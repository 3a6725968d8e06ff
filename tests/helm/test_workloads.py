"""The api and the worker as separate Deployments, the migrations hook, probes, security,
scaling and rollouts."""

from __future__ import annotations

import pytest

from conftest import (
    RELEASE,
    env_of,
    existing_secret_values,
    full_values,
    hook_events,
    hook_weight,
    is_hook,
    minimal_values,
    pod_specs,
    selects,
)


def effective_env(rendered, container):
    """What the process sees: the ConfigMap from envFrom, overridden by env."""
    env = {}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        env.update(rendered.get("ConfigMap", name)["data"])
    for entry in container.get("env", []):
        env[entry["name"]] = entry.get("value", entry.get("valueFrom"))
    return env


def port_number(container, port):
    if isinstance(port, int):
        return port
    numbers = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    assert numbers, f"container {container['name']} has no port named {port}"
    return numbers[0]


# --- api and worker are separate ----------------------------------------------------------

def test_api_and_worker_are_separate_deployments(render):
    rendered = render(minimal_values({"api": {"replicas": 3}, "worker": {"replicas": 5}}))
    deployments = {d["metadata"]["name"]: d for d in rendered.kind("Deployment")}
    assert set(deployments) == {f"{RELEASE}-api", f"{RELEASE}-worker"}

    api, worker = rendered.deployment("api"), rendered.deployment("worker")
    assert api["spec"]["replicas"] == 3
    assert worker["spec"]["replicas"] == 5

    # Neither selector picks the other's pods.
    api_pods = api["spec"]["template"]["metadata"]["labels"]
    worker_pods = worker["spec"]["template"]["metadata"]["labels"]
    assert selects(api["spec"]["selector"]["matchLabels"], api_pods)
    assert selects(worker["spec"]["selector"]["matchLabels"], worker_pods)
    assert not selects(api["spec"]["selector"]["matchLabels"], worker_pods)
    assert not selects(worker["spec"]["selector"]["matchLabels"], api_pods)


def test_api_serves_without_an_embedded_worker(render):
    rendered = render(minimal_values())
    api = rendered.container("api")
    assert api["command"] == ["/usr/local/bin/api"] and api.get("args") == ["serve"]
    env = effective_env(rendered, api)
    assert env["TRIBUTARY_EMBEDDED_WORKER"] == "false"
    assert env["TRIBUTARY_AUTO_MIGRATE"] == "false"
    assert env["TRIBUTARY_LISTEN"] == "0.0.0.0:8080"
    assert port_number(api, "http") == 8080


def test_worker_runs_the_worker_binary_and_listens_for_probes(render):
    rendered = render(minimal_values())
    worker = rendered.container("worker")
    assert worker["command"] == ["/usr/local/bin/worker"] and not worker.get("args")
    env = effective_env(rendered, worker)
    assert env["TRIBUTARY_AUTO_MIGRATE"] == "false"
    assert env["TRIBUTARY_WORKER_LISTEN"] == "0.0.0.0:9090"
    assert port_number(worker, "metrics") == 9090


def test_resources_are_set_per_component(render):
    rendered = render(minimal_values({
        "api": {"resources": {"requests": {"cpu": "250m"}}},
        "worker": {"resources": {"limits": {"memory": "1Gi"}}},
    }))
    assert rendered.container("api")["resources"]["requests"]["cpu"] == "250m"
    assert rendered.container("worker")["resources"]["limits"]["memory"] == "1Gi"
    assert rendered.container("worker")["resources"]["requests"]["cpu"] == "100m"


def test_both_read_the_same_settings_and_secrets(render):
    rendered = render(full_values())
    api, worker = rendered.container("api"), rendered.container("worker")
    assert api["envFrom"] == worker["envFrom"]
    secret_refs = lambda c: {n: e["valueFrom"] for n, e in env_of(c).items() if "valueFrom" in e}
    assert secret_refs(api) == secret_refs(worker)
    assert set(secret_refs(api)) >= {"DATABASE_URL", "TRIBUTARY_QUEUE_URL",
                                     "TRIBUTARY_ENCRYPTION_KEYS", "TRIBUTARY_JWT_SECRET",
                                     "TRIBUTARY_OAUTH_HUBSPOT_CLIENT_SECRET"}
    assert env_of(api)["TRIBUTARY_ALERT_PERIOD"]["value"] == "2h"


# --- probes -------------------------------------------------------------------------------

@pytest.mark.parametrize("component,port", [("api", 8080), ("worker", 9090)])
def test_probes(render, component, port):
    container = render(minimal_values()).container(component)
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"),
                        ("startupProbe", "/healthz")):
        get = container[probe]["httpGet"]
        assert get["path"] == path, probe
        assert port_number(container, get["port"]) == port, probe


# --- the migrations hook ------------------------------------------------------------------

def test_migrations_run_as_a_pre_install_and_pre_upgrade_hook(render):
    rendered = render(minimal_values())
    job = rendered.job
    assert hook_events(job) == {"pre-install", "pre-upgrade"}
    policies = job["metadata"]["annotations"]["helm.sh/hook-delete-policy"].split(",")
    assert "before-hook-creation" in policies
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["/usr/local/bin/api"] and container["args"] == ["migrate"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    # Only the Job and its database Secret are hooks; the rest is ordinary release content.
    hooks = sorted(f"{o['kind']}/{o['metadata']['name']}" for o in rendered.objects if is_hook(o))
    assert hooks == [f"Job/{RELEASE}-migrations", f"Secret/{RELEASE}-migrations"]


def references(pod_spec):
    """(kind, name) of every object a pod spec needs to start."""
    refs = set()
    if pod_spec.get("serviceAccountName"):
        refs.add(("ServiceAccount", pod_spec["serviceAccountName"]))
    for container in pod_spec.get("initContainers", []) + pod_spec["containers"]:
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                refs.add(("ConfigMap", source["configMapRef"]["name"]))
            if "secretRef" in source:
                refs.add(("Secret", source["secretRef"]["name"]))
        for entry in container.get("env", []):
            value_from = entry.get("valueFrom", {})
            if "secretKeyRef" in value_from:
                refs.add(("Secret", value_from["secretKeyRef"]["name"]))
            if "configMapKeyRef" in value_from:
                refs.add(("ConfigMap", value_from["configMapKeyRef"]["name"]))
    for volume in pod_spec.get("volumes", []):
        if "secret" in volume:
            refs.add(("Secret", volume["secret"]["secretName"]))
        if "configMap" in volume:
            refs.add(("ConfigMap", volume["configMap"]["name"]))
    return refs


@pytest.mark.parametrize("values", [minimal_values(), full_values(), existing_secret_values()],
                         ids=["minimal", "full", "existing-secrets"])
def test_the_migrations_job_needs_nothing_that_does_not_exist_yet(render, values):
    """On a first install the pre-install hooks run before any release object exists: all
    the Job needs is either a hook created before it or something the operator made."""
    rendered = render(values)
    job = rendered.job
    for kind, name in references(job["spec"]["template"]["spec"]):
        obj = rendered.find(kind, name)
        if obj is None:
            assert name in {values.get("database", {}).get("existingSecret"),
                            values.get("migrations", {}).get("serviceAccountName")}, (
                f"the Job needs {kind}/{name}, which neither the chart nor the values provide")
            continue
        assert is_hook(obj), f"{kind}/{name} is not a hook: it does not exist at pre-install"
        assert {"pre-install", "pre-upgrade"} <= hook_events(obj)
        assert hook_weight(obj) < hook_weight(job), f"{kind}/{name} is created after the Job"


def test_the_hook_secret_is_removed_after_the_migrations_succeed(render):
    secret = render(minimal_values()).get("Secret", f"{RELEASE}-migrations")
    policies = set(secret["metadata"]["annotations"]["helm.sh/hook-delete-policy"].split(","))
    assert policies == {"before-hook-creation", "hook-succeeded"}
    assert set(secret["data"]) == {"DATABASE_URL"}


# --- security -----------------------------------------------------------------------------

@pytest.mark.parametrize("values", [minimal_values(), full_values()], ids=["minimal", "full"])
def test_every_pod_is_non_root_with_a_read_only_root_filesystem(render, values):
    specs = pod_specs(render(values))
    assert len(specs) == 3  # api, worker, migrations
    for where, spec in specs:
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] == 65532, where
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", where
        assert spec["automountServiceAccountToken"] is False, where
        tmp_volumes = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["runAsNonRoot"] is True, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert mounts.get("/tmp") in tmp_volumes, f"{where}: no emptyDir at /tmp"


def test_images(render):
    rendered = render(minimal_values())
    assert {c["image"] for _, s in pod_specs(rendered) for c in s["containers"]} == {
        "registry.example.com/tributary:0.1.0"}
    rendered = render(full_values())
    assert {c["image"] for _, s in pod_specs(rendered) for c in s["containers"]} == {
        "registry.example.com/tributary@sha256:" + "ab" * 32}
    for _, spec in pod_specs(rendered):
        assert spec["imagePullSecrets"] == [{"name": "registry-credentials"}]


def test_service_account(render):
    rendered = render(minimal_values())
    account = rendered.get("ServiceAccount", RELEASE)
    assert account["automountServiceAccountToken"] is False
    for component in ("api", "worker"):
        spec = rendered.deployment(component)["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] == RELEASE
    rendered = render(minimal_values({"serviceAccount": {"create": False, "name": "runner"}}))
    assert rendered.kind("ServiceAccount") == []
    assert rendered.deployment("api")["spec"]["template"]["spec"]["serviceAccountName"] == "runner"


# --- shutdown -----------------------------------------------------------------------------

@pytest.mark.parametrize("grace,seconds", [("30s", 30), ("45s", 45), ("2m", 120)])
def test_termination_grace_exceeds_the_shutdown_grace(render, grace, seconds):
    rendered = render(minimal_values({"config": {"shutdownGrace": grace}}))
    assert rendered.get("ConfigMap", RELEASE)["data"]["TRIBUTARY_SHUTDOWN_GRACE"] == grace
    api = rendered.deployment("api")["spec"]["template"]["spec"]
    worker = rendered.deployment("worker")["spec"]["template"]["spec"]
    pause = api["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pause == 5
    assert api["terminationGracePeriodSeconds"] == seconds + pause + 15
    assert worker["terminationGracePeriodSeconds"] == seconds + 15
    assert "lifecycle" not in worker["containers"][0]


def test_no_pre_stop_pause_when_disabled(render):
    rendered = render(minimal_values({"api": {"preStopSleepSeconds": 0}}))
    api = rendered.deployment("api")["spec"]["template"]["spec"]
    assert "lifecycle" not in api["containers"][0]
    assert api["terminationGracePeriodSeconds"] == 45


# --- rollouts -----------------------------------------------------------------------------

def checksums(rendered):
    return {c: rendered.deployment(c)["spec"]["template"]["metadata"]["annotations"]
            for c in ("api", "worker")}


def test_pods_roll_when_the_settings_or_the_secret_change(render):
    base = checksums(render(minimal_values()))
    assert base["api"]["checksum/config"] == base["worker"]["checksum/config"]
    assert base["api"]["checksum/secret"] == base["worker"]["checksum/secret"]

    settings = checksums(render(minimal_values({"config": {"workerConcurrency": 16}})))
    secret = checksums(render(minimal_values({"secrets": {"jwtSecret": "another-" + "x" * 40}})))
    for component in ("api", "worker"):
        assert settings[component]["checksum/config"] != base[component]["checksum/config"]
        assert settings[component]["checksum/secret"] == base[component]["checksum/secret"]
        assert secret[component]["checksum/secret"] != base[component]["checksum/secret"]
        assert secret[component]["checksum/config"] == base[component]["checksum/config"]


# --- scaling and disruption ---------------------------------------------------------------

def test_no_autoscaler_by_default(render):
    rendered = render(minimal_values())
    assert rendered.kind("HorizontalPodAutoscaler") == []
    assert rendered.deployment("api")["spec"]["replicas"] == 2


def test_an_autoscaler_for_each_component(render):
    rendered = render(full_values())
    hpas = {h["metadata"]["name"]: h for h in rendered.kind("HorizontalPodAutoscaler")}
    assert set(hpas) == {f"{RELEASE}-api", f"{RELEASE}-worker"}
    for component in ("api", "worker"):
        hpa = hpas[f"{RELEASE}-{component}"]["spec"]
        assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                         "name": f"{RELEASE}-{component}"}
        # The HPA owns the replica count: an upgrade must not reset it.
        assert "replicas" not in rendered.deployment(component)["spec"]
    assert (hpas[f"{RELEASE}-api"]["spec"]["minReplicas"],
            hpas[f"{RELEASE}-api"]["spec"]["maxReplicas"]) == (3, 12)
    def metric_names(hpa):
        return {m["resource"]["name"] if m["type"] == "Resource" else m["external"]["metric"]["name"]
                for m in hpa["spec"]["metrics"]}

    assert metric_names(hpas[f"{RELEASE}-api"]) == {"cpu", "memory"}
    # The full values scale the workers on their backlog too (test_observability.py).
    assert metric_names(hpas[f"{RELEASE}-worker"]) == {"tributary_queue_depth", "cpu"}


def test_only_one_component_autoscaled(render):
    rendered = render(minimal_values({"worker": {"autoscaling": {"enabled": True}}}))
    assert [h["metadata"]["name"] for h in rendered.kind("HorizontalPodAutoscaler")] == [
        f"{RELEASE}-worker"]
    assert rendered.deployment("api")["spec"]["replicas"] == 2


def test_disruption_budgets(render):
    rendered = render(full_values())
    for component in ("api", "worker"):
        pdb = rendered.get("PodDisruptionBudget", f"{RELEASE}-{component}")["spec"]
        own = rendered.deployment(component)["spec"]["template"]["metadata"]["labels"]
        other = rendered.deployment("worker" if component == "api" else "api")
        assert selects(pdb["selector"]["matchLabels"], own)
        assert not selects(pdb["selector"]["matchLabels"],
                           other["spec"]["template"]["metadata"]["labels"])
    assert rendered.get("PodDisruptionBudget", f"{RELEASE}-api")["spec"] == {
        "minAvailable": "50%",
        "selector": rendered.get("PodDisruptionBudget", f"{RELEASE}-api")["spec"]["selector"]}
    assert "minAvailable" not in rendered.get("PodDisruptionBudget", f"{RELEASE}-worker")["spec"]
    assert render(minimal_values({"api": {"podDisruptionBudget": {"enabled": False}}})).find(
        "PodDisruptionBudget", f"{RELEASE}-api") is None


def test_trusted_proxies_and_the_signup_rate_reach_the_config(render):
    data = render(minimal_values()).get("ConfigMap", RELEASE)["data"]
    assert data["TRIBUTARY_SIGNUP_RATE"] == "10/hour"
    assert "TRIBUTARY_TRUSTED_PROXIES" not in data
    rendered = render(minimal_values({"config": {"trustedProxies": "10.42.0.0/16, fd00::/8",
                                                 "signupRate": "3/minute"}}))
    data = rendered.get("ConfigMap", RELEASE)["data"]
    assert data["TRIBUTARY_TRUSTED_PROXIES"] == "10.42.0.0/16, fd00::/8"
    assert data["TRIBUTARY_SIGNUP_RATE"] == "3/minute"


def test_alert_and_reconciliation_settings_reach_both_deployments(render):
    rendered = render(minimal_values({"config": {"alertPeriod": "2h", "reconcileInterval": "30m"}}))
    [configmap] = rendered.kind("ConfigMap")
    data = configmap["data"]
    assert data["TRIBUTARY_ALERT_PERIOD"] == "2h"
    assert data["TRIBUTARY_ALERT_INTERVAL"] == "30s"
    assert data["TRIBUTARY_RECONCILE_INTERVAL"] == "30m"
    assert data["TRIBUTARY_RECONCILE_WINDOW"] == "24h"
    assert data["TRIBUTARY_STRIPE_API_URL"] == "https://api.stripe.com"
    for deployment in rendered.kind("Deployment"):
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        refs = [e["configMapRef"]["name"] for e in container.get("envFrom", []) if "configMapRef" in e]
        assert configmap["metadata"]["name"] in refs, deployment["metadata"]["name"]
