"""Shared helpers for the chart tests: render helm/tributary with Helm's own engine
(helm-python-sdk, imported as helm_python) and look at the objects it produced."""

from __future__ import annotations

import base64
import copy
import os
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

# TRIBUTARY_HELM_CHART points the tests at another copy of the chart (to check that they
# catch a broken one).
CHART = Path(os.environ.get("TRIBUTARY_HELM_CHART")
             or Path(__file__).resolve().parents[2] / "helm" / "tributary")
RELEASE = "tributary"
NAMESPACE = "payments"

# Distinctive secret values, so a leak into any non-Secret object is easy to spot.
DB_PASSWORD = "db-pw-Zq81xLm"
DB_URL = f"postgres://tributary:{DB_PASSWORD}@db.internal:5432/tributary"
REDIS_PASSWORD = "redis-pw-Hx42kQ"
REDIS_URL = f"redis://:{REDIS_PASSWORD}@redis.internal:6379/0"
KEY_1 = "k1:" + base64.b64encode(bytes(range(32))).decode()
KEY_0 = "k0:" + base64.b64encode(bytes(range(32, 64))).decode()
ENCRYPTION_KEYS = f"{KEY_1},{KEY_0}"
METRICS_TOKEN = "metrics-token-0123456789abcdef"
JWT_SECRET = "jwt-secret-" + "Vb7pRt2N" * 5
HUBSPOT_SECRET = "hubspot-client-secret-Yt6"
PUBLIC_URL = "https://hooks.example.com"

SECRET_VALUES = [DB_URL, DB_PASSWORD, REDIS_URL, REDIS_PASSWORD, KEY_1, KEY_0,
                 KEY_1.split(":", 1)[1], ENCRYPTION_KEYS, JWT_SECRET, HUBSPOT_SECRET,
                 METRICS_TOKEN]

# Environment variables that hold secrets: only ever from a secretKeyRef.
SECRET_ENV = {
    "DATABASE_URL",
    "TRIBUTARY_QUEUE_URL",
    "TRIBUTARY_ENCRYPTION_KEYS",
    "TRIBUTARY_JWT_SECRET",
    "TRIBUTARY_METRICS_TOKEN",
    "TRIBUTARY_OAUTH_HUBSPOT_CLIENT_SECRET",
    "TRIBUTARY_OAUTH_SALESFORCE_CLIENT_SECRET",
    "TRIBUTARY_OAUTH_ZOHO_CLIENT_SECRET",
}


def merge(base: dict[str, Any], *overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge dictionaries (later wins), the way -f files stack."""
    out = copy.deepcopy(base)
    for override in overrides:
        for key, value in override.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
    return out


def minimal_values(*overrides: dict[str, Any]) -> dict[str, Any]:
    """The least an operator must give: image, Postgres, keys, public URL."""
    base = {
        "image": {"repository": "registry.example.com/tributary", "tag": "0.1.0"},
        "publicUrl": PUBLIC_URL,
        "database": {"url": DB_URL},
        "secrets": {"encryptionKeys": ENCRYPTION_KEYS, "jwtSecret": JWT_SECRET},
    }
    return merge(base, *overrides)


def full_values(*overrides: dict[str, Any]) -> dict[str, Any]:
    """Every optional part switched on."""
    return minimal_values(
        {
            "image": {"digest": "sha256:" + "ab" * 32},
            "imagePullSecrets": [{"name": "registry-credentials"}],
            "queue": {"url": REDIS_URL, "namespace": "tributary-prod"},
            "oauth": {
                "successUrl": "https://app.example.com/connected",
                "hubspot": {"clientId": "hubspot-client-id", "clientSecret": HUBSPOT_SECRET},
            },
            "config": {"signup": "closed", "extra": {"TRIBUTARY_ALERT_INTERVAL": "1m"},
                       "shutdownGrace": "2m"},
            "serviceAccount": {"annotations": {"example.com/role": "tributary"}},
            "api": {
                "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 12,
                                "targetMemoryUtilizationPercentage": 80},
                "podDisruptionBudget": {"minAvailable": "50%"},
                "nodeSelector": {"kubernetes.io/os": "linux"},
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "tributary",
                                 "effect": "NoSchedule"}],
                "topologySpreadConstraints": [{
                    "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "api"}},
                }],
                "priorityClassName": "high",
                "extraEnv": [{"name": "TRIBUTARY_ALERT_PERIOD", "value": "2h"}],
                "podAnnotations": {"example.com/team": "payments"},
            },
            "worker": {
                "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 20,
                                "queueDepth": {"enabled": True}},
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{
                        "key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}]}}},
            },
            "migrations": {"serviceAccountName": "db-migrator",
                           "podAnnotations": {"sidecar.istio.io/inject": "false"}},
            "service": {"annotations": {"example.com/lb": "internal"}},
            "ingress": {
                "enabled": True, "className": "nginx",
                "annotations": {"cert-manager.io/cluster-issuer": "letsencrypt"},
                "hosts": ["hooks.example.com"],
                "tls": [{"secretName": "hooks-tls", "hosts": ["hooks.example.com"]}],
            },
            "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
                        "grafanaDashboard": {"enabled": True, "folder": "Payments"},
                        "prometheusRule": {"enabled": True,
                                           "labels": {"release": "prometheus"}}},
            "secrets": {"metricsToken": METRICS_TOKEN},
        },
        *overrides,
    )


def existing_secret_values(*overrides: dict[str, Any]) -> dict[str, Any]:
    """Every secret from Secrets the operator manages; nothing secret in the values."""
    return merge(
        {
            "image": {"repository": "registry.example.com/tributary"},
            "publicUrl": PUBLIC_URL,
            "database": {"existingSecret": "tributary-db", "existingSecretKey": "url"},
            "queue": {"existingSecret": "tributary-redis", "existingSecretKey": "redis-url"},
            "secrets": {"existingSecret": "tributary-keys"},
            "oauth": {"zoho": {"clientId": "zoho-client-id"}},
        },
        *overrides,
    )


class Rendered:
    """The manifests of one render: parsed objects, and NOTES.txt apart."""

    def __init__(self, manifests: dict[str, str]):
        self.raw = manifests
        self.notes = ""
        self.objects: list[dict[str, Any]] = []
        self.sources: list[str] = []
        for path, text in sorted(manifests.items()):
            if path.endswith("NOTES.txt"):
                self.notes = text
                continue
            for doc in yaml.safe_load_all(text):
                if doc:
                    self.objects.append(doc)
                    self.sources.append(path)

    def kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.kind(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}: " + ", ".join(
            f"{o['kind']}/{o['metadata']['name']}" for o in self.objects)
        return found[0]

    def find(self, kind: str, name: str) -> dict[str, Any] | None:
        found = [o for o in self.kind(kind) if o["metadata"]["name"] == name]
        return found[0] if found else None

    def deployment(self, component: str) -> dict[str, Any]:
        return self.get("Deployment", f"{RELEASE}-{component}")

    def container(self, component: str) -> dict[str, Any]:
        containers = self.deployment(component)["spec"]["template"]["spec"]["containers"]
        assert len(containers) == 1
        return containers[0]

    @property
    def job(self) -> dict[str, Any]:
        return self.get("Job", f"{RELEASE}-migrations")


@pytest.fixture(scope="session")
def chart():
    with helm.Chart.load(CHART) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def render(chart):
    def _render(values: dict[str, Any], **opts: Any) -> Rendered:
        opts.setdefault("name", RELEASE)
        opts.setdefault("namespace", NAMESPACE)
        opts.setdefault("is_install", True)
        return Rendered(chart.render(values, **opts))

    return _render


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A container's env entries by name."""
    return {e["name"]: e for e in container.get("env", [])}


def is_hook(obj: dict[str, Any]) -> bool:
    return "helm.sh/hook" in (obj["metadata"].get("annotations") or {})


def hook_events(obj: dict[str, Any]) -> set[str]:
    raw = (obj["metadata"].get("annotations") or {}).get("helm.sh/hook", "")
    return {e.strip() for e in raw.split(",") if e.strip()}


def hook_weight(obj: dict[str, Any]) -> int:
    return int((obj["metadata"].get("annotations") or {}).get("helm.sh/hook-weight", "0"))


def pod_specs(rendered: Rendered) -> list[tuple[str, dict[str, Any]]]:
    """(kind/name, pod spec) of every workload."""
    out = []
    for obj in rendered.objects:
        if obj["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
            out.append((f"{obj['kind']}/{obj['metadata']['name']}",
                        obj["spec"]["template"]["spec"]))
    return out


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())
