"""The chart lints clean, renders valid Kubernetes objects, and refuses bad values."""

from __future__ import annotations

import re
import shutil

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest

from conftest import (
    CHART,
    DB_URL,
    existing_secret_values,
    full_values,
    merge,
    minimal_values,
)

# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest whose
# schemas kubernetes-validate ships.
KUBE_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]

VALUE_SETS = {
    "minimal": minimal_values(),
    "full": full_values(),
    "existing-secrets": existing_secret_values(),
    "own-service-account": minimal_values({"serviceAccount": {"create": False,
                                                              "name": "tributary-runner"},
                                           "api": {"preStopSleepSeconds": 0}}),
}

# ServiceMonitor is a Prometheus Operator CRD, absent from Kubernetes' schemas: this is the
# part of monitoring.coreos.com/v1 the chart uses, from the operator's API reference.
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string"},
                           "labels": {"type": "object",
                                      "additionalProperties": {"type": "string"}}},
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchLabels": {"type": "object", "minProperties": 1,
                                                   "additionalProperties": {"type": "string"}}},
                    "required": ["matchLabels"],
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"any": {"type": "boolean"},
                                   "matchNames": {"type": "array",
                                                  "items": {"type": "string"}}},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["port"],
                        "properties": {
                            "port": {"type": "string", "minLength": 1},
                            "path": {"type": "string", "pattern": "^/"},
                            "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            "scrapeTimeout": {"type": "string",
                                              "pattern": "^[0-9]+(ms|s|m|h)$"},
                            # monitoring.coreos.com/v1 SafeAuthorization: a type and a
                            # SecretKeySelector for the credentials.
                            "authorization": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    "type": {"type": "string"},
                                    "credentials": {
                                        "type": "object",
                                        "additionalProperties": False,
                                        "required": ["key"],
                                        "properties": {
                                            "name": {"type": "string", "minLength": 1},
                                            "key": {"type": "string", "minLength": 1},
                                            "optional": {"type": "boolean"},
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}

# PrometheusRule, the same way: the part of monitoring.coreos.com/v1 the chart uses.
PROMETHEUS_DURATION = "^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
PROMETHEUS_RULE_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": SERVICE_MONITOR_SCHEMA["properties"]["metadata"],
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["groups"],
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name", "rules"],
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": {"type": "string", "pattern": PROMETHEUS_DURATION},
                            "rules": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["alert", "expr"],
                                    "properties": {
                                        "alert": {"type": "string",
                                                  "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                                        "expr": {"type": "string", "minLength": 1},
                                        "for": {"type": "string",
                                                "pattern": PROMETHEUS_DURATION},
                                        "keep_firing_for": {"type": "string",
                                                            "pattern": PROMETHEUS_DURATION},
                                        "labels": {"type": "object",
                                                   "additionalProperties": {"type": "string"}},
                                        "annotations": {"type": "object",
                                                        "additionalProperties": {
                                                            "type": "string"}},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}

CRD_SCHEMAS = {"ServiceMonitor": SERVICE_MONITOR_SCHEMA, "PrometheusRule": PROMETHEUS_RULE_SCHEMA}

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def lint_problems(values, **opts):
    report = helm.lint(str(CHART), values, **opts)
    return [m for m in report["messages"] if m["severity"] >= 2] + [
        {"error": e} for e in report["errors"]]


def test_lint_with_the_default_values():
    # helm lint ignores `fail` (lint mode); the defaults must still render and pass the schema.
    assert lint_problems(None, strict=True) == []


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_lint_strict(name):
    assert lint_problems(VALUE_SETS[name], strict=True, namespace="payments") == []


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_manifest_is_a_valid_kubernetes_object(render, name, kube_version):
    rendered = render(VALUE_SETS[name])
    assert rendered.objects
    for source, obj in zip(rendered.sources, rendered.objects):
        where = f"{source}: {obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in CRD_SCHEMAS:
            jsonschema.validate(obj, CRD_SCHEMAS[obj["kind"]])
            continue
        try:
            kubernetes_validate.validate(obj, kube_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{where} is not valid for Kubernetes {kube_version}: "
                        f"{'.'.join(map(str, e.path))}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            pytest.fail(f"{where}: {e.message}")


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_names_and_labels_fit_kubernetes_limits_with_a_long_release_name(render, name):
    release = "r" * 53  # Helm's own limit for a release name
    rendered = render(VALUE_SETS[name], name=release)
    for obj in rendered.objects:
        meta = obj["metadata"]
        assert len(meta["name"]) <= 63 and DNS_LABEL.match(meta["name"]), meta["name"]
        for key, value in (meta.get("labels") or {}).items():
            assert len(str(value)) <= 63, (obj["kind"], key, value)


def test_upgrade_renders_the_same_objects(render):
    install = render(full_values(), is_install=True)
    upgrade = render(full_values(), is_install=False, is_upgrade=True, revision=2)
    assert install.objects == upgrade.objects


# --- the schema refuses bad values ------------------------------------------------------

BAD_VALUES = {
    "unknown top-level key": {"replicaCount": 3},
    "unknown nested key": {"api": {"replica": 3}},
    "negative replicas": {"api": {"replicas": -1}},
    "replicas not a number": {"worker": {"replicas": "two"}},
    "signup neither open nor closed": {"config": {"signup": "invite"}},
    "log format": {"config": {"logFormat": "xml"}},
    "vendor urls": {"config": {"vendorUrls": "some"}},
    "trusted proxies not addresses": {"config": {"trustedProxies": "the ingress"}},
    "signup rate without a period": {"config": {"signupRate": "10"}},
    "mysql database": {"database": {"url": "mysql://u:p@db/t"}},
    "sqlite database": {"database": {"url": "sqlite:///tmp/tributary.db?mode=rwc"}},
    "queue not redis": {"queue": {"url": "amqp://mq"}},
    "encryption key not base64": {"secrets": {"encryptionKeys": "k1:not-base64"}},
    "encryption key 16 bytes": {"secrets": {"encryptionKeys": "k1:AAAAAAAAAAAAAAAAAAAAAA=="}},
    "encryption key without id": {"secrets": {"encryptionKeys": "A" * 43 + "="}},
    "short jwt secret": {"secrets": {"jwtSecret": "too-short"}},
    "public url not http": {"publicUrl": "ftp://hooks.example.com"},
    "shutdown grace not a duration": {"config": {"shutdownGrace": "soon"}},
    "shutdown grace in hours": {"config": {"shutdownGrace": "1h"}},
    "retry delay not a duration": {"config": {"retry": {"baseDelay": "later"}}},
    "zero concurrency": {"config": {"workerConcurrency": 0}},
    "alert period not a duration": {"config": {"alertPeriod": "hourly"}},
    "reconcile window not a duration": {"config": {"reconcileWindow": "a day"}},
    "stripe api url not http": {"config": {"stripeApiUrl": "api.stripe.com"}},
    "database url in the ConfigMap extras": {"config": {"extra": {"DATABASE_URL": DB_URL}}},
    "client secret in the ConfigMap extras": {
        "config": {"extra": {"TRIBUTARY_OAUTH_ZOHO_CLIENT_SECRET": "x"}}},
    "writable root filesystem": {"securityContext": {"readOnlyRootFilesystem": False}},
    "root pod": {"podSecurityContext": {"runAsNonRoot": False}},
    "privilege escalation": {"securityContext": {"allowPrivilegeEscalation": True}},
    "pull policy": {"image": {"pullPolicy": "Sometimes"}},
    "service port out of range": {"service": {"port": 70000}},
    "ingress path without slash": {"ingress": {"paths": [{"path": "v1", "pathType": "Prefix"}]}},
    "ingress host with scheme": {"ingress": {"hosts": ["https://hooks.example.com"]}},
    "hpa max not a number": {"api": {"autoscaling": {"maxReplicas": "ten"}}},
    "pdb percentage malformed": {"worker": {"podDisruptionBudget": {"maxUnavailable": "half"}}},
    "service monitor interval": {"metrics": {"serviceMonitor": {"interval": "often"}}},
    "dashboard switch not a boolean": {"metrics": {"grafanaDashboard": {"enabled": "yes"}}},
    "dashboard labels not strings": {"metrics": {"grafanaDashboard": {"labels": {
        "grafana_dashboard": 1}}}},
    "dashboard unknown key": {"metrics": {"grafanaDashboard": {"title": "Mine"}}},
    "dashboard namespace not a name": {"metrics": {"grafanaDashboard": {"namespace": "Grafana"}}},
    "rule switch not a boolean": {"metrics": {"prometheusRule": {"enabled": 1}}},
    "rule labels not strings": {"metrics": {"prometheusRule": {"labels": {"release": True}}}},
    "backlog threshold not a number": {"metrics": {"prometheusRule": {
        "backlogGrowing": {"minDepth": "many"}}}},
    "backlog threshold negative": {"metrics": {"prometheusRule": {
        "backlogGrowing": {"minDepth": -1}}}},
    "oldest age zero": {"metrics": {"prometheusRule": {"oldestEventAge": {"seconds": 0}}}},
    "latency threshold a duration": {"metrics": {"prometheusRule": {
        "deliveryLatency": {"p99Seconds": "30s"}}}},
    "alert for not a duration": {"metrics": {"prometheusRule": {"deadLetters": {"for": "15"}}}},
    "alert severity empty": {"metrics": {"prometheusRule": {"jobsPanicked": {"severity": ""}}}},
    "unknown alert": {"metrics": {"prometheusRule": {"diskFull": {"for": "5m"}}}},
    "queue depth switch not a boolean": {"worker": {"autoscaling": {"queueDepth": {
        "enabled": "true"}}}},
    "queue depth target not a number": {"worker": {"autoscaling": {"queueDepth": {
        "targetAverageValue": "lots"}}}},
    "queue depth target zero": {"worker": {"autoscaling": {"queueDepth": {
        "targetAverageValue": 0}}}},
    "queue depth on the api": {"api": {"autoscaling": {"queueDepth": {"enabled": True}}}},
    "image digest": {"image": {"digest": "latest"}},
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_schema_rejects(chart, render, case):
    values = minimal_values(BAD_VALUES[case])
    with pytest.raises(helm.HelmValuesError):
        chart.validate_schema(values)
    # …and so does the install path (render validates like helm install does).
    with pytest.raises(helm.HelmValuesError):
        render(values)
    assert lint_problems(values), "helm lint should report the bad value"


def test_the_schema_is_valid_draft_07_and_the_defaults_pass_it():
    """Checked by a second validator too (Python's jsonschema), not only Helm's."""
    import json

    import yaml

    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(
        yaml.safe_load((CHART / "values.yaml").read_text()))


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_lint_against_the_oldest_supported_kubernetes(name):
    # Chart.yaml's kubeVersion; helm install (not lint) enforces it.
    assert "kubeVersion: \">=1.30.0-0\"" in (CHART / "Chart.yaml").read_text()
    assert lint_problems(VALUE_SETS[name], strict=True, kube_version="v1.30.0") == []


def test_schema_accepts_the_documented_value_sets(chart):
    for values in VALUE_SETS.values():
        chart.validate_schema(values)
    chart.validate_schema(minimal_values({"config": {"shutdownGrace": "90s",
                                                     "retry": {"maxDelay": "1h 30m"}}}))


# --- the templates refuse what cannot work ----------------------------------------------

REFUSED = {
    "no database": ({"database": {"url": ""}}, "SQLite"),
    "no encryption keys": ({"secrets": {"encryptionKeys": ""}}, "encryptionKeys"),
    "no jwt secret": ({"secrets": {"jwtSecret": ""}}, "jwtSecret"),
    "no image": ({"image": {"repository": ""}}, "image.repository"),
    "no public url": ({"publicUrl": ""}, "publicUrl"),
    "ingress without hosts": ({"ingress": {"enabled": True}}, "ingress.hosts"),
    "oauth client id without its secret": (
        {"oauth": {"salesforce": {"clientId": "sf-id"}}}, "both or neither"),
    "oauth client secret without its id": (
        {"oauth": {"zoho": {"clientSecret": "zoho-secret"}}}, "both or neither"),
    "hpa min above max": (
        {"worker": {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}},
        "minReplicas"),
    "hpa without a metric": (
        {"worker": {"autoscaling": {"enabled": True, "targetCPUUtilizationPercentage": None}}},
        "worker.autoscaling needs a metric"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_templates_refuse(render, case):
    overrides, message = REFUSED[case]
    with pytest.raises(helm.HelmRenderError, match=re.escape(message)):
        render(minimal_values(overrides))


def test_refuses_sqlite_even_without_the_schema(tmp_path, render):
    """The schema rejects sqlite://; the template refuses it too, for installs that skip
    schema validation."""
    copy = tmp_path / "tributary"
    shutil.copytree(CHART, copy)
    (copy / "values.schema.json").unlink()
    with helm.Chart.load(copy) as unchecked:
        for url in ("sqlite:///tmp/tributary/tributary.db?mode=rwc", "SQLITE::memory:"):
            with pytest.raises(helm.HelmRenderError, match="SQLite"):
                unchecked.render(minimal_values({"database": {"url": url}}), name="tributary")
        with pytest.raises(helm.HelmRenderError, match="postgres://"):
            unchecked.render(minimal_values({"database": {"url": "mysql://db/t"}}),
                             name="tributary")


def test_the_defaults_alone_are_refused(render):
    """`helm install tributary ./helm/tributary` without values must not install SQLite."""
    with pytest.raises(helm.HelmRenderError):
        render({})
    with pytest.raises(helm.HelmRenderError, match="SQLite"):
        render(merge(minimal_values(), {"database": {"url": ""}}))
