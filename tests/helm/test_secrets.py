"""Secrets live only in Secrets: never in a ConfigMap, a pod spec or NOTES; existing Secrets
replace the chart's own."""

from __future__ import annotations

import base64

import pytest
import yaml

from conftest import (
    DB_URL,
    ENCRYPTION_KEYS,
    HUBSPOT_SECRET,
    JWT_SECRET,
    METRICS_TOKEN,
    REDIS_URL,
    RELEASE,
    SECRET_ENV,
    SECRET_VALUES,
    env_of,
    existing_secret_values,
    full_values,
    minimal_values,
    pod_specs,
)


@pytest.mark.parametrize("values", [minimal_values(), full_values()], ids=["minimal", "full"])
def test_no_secret_outside_a_secret(render, values):
    rendered = render(values)
    for obj in rendered.objects:
        if obj["kind"] == "Secret":
            continue
        text = yaml.safe_dump(obj)
        for secret in SECRET_VALUES:
            assert secret not in text, f"{obj['kind']}/{obj['metadata']['name']} holds a secret"
            assert base64.b64encode(secret.encode()).decode() not in text
    for secret in SECRET_VALUES:
        assert secret not in rendered.notes, "NOTES.txt shows a secret"


@pytest.mark.parametrize("values", [minimal_values(), full_values(), existing_secret_values()],
                         ids=["minimal", "full", "existing-secrets"])
def test_configmaps_hold_no_secret_settings(render, values):
    rendered = render(values)
    configmaps = rendered.kind("ConfigMap")
    assert configmaps
    for configmap in configmaps:
        keys = set(configmap.get("data", {}))
        assert not keys & SECRET_ENV, keys & SECRET_ENV
        assert not any("SECRET" in k or "PASSWORD" in k for k in keys), keys


@pytest.mark.parametrize("values", [minimal_values(), full_values(), existing_secret_values()],
                         ids=["minimal", "full", "existing-secrets"])
def test_secret_environment_only_from_secret_refs(render, values):
    for where, spec in pod_specs(render(values)):
        for container in spec["containers"]:
            for name, entry in env_of(container).items():
                if name in SECRET_ENV:
                    assert "value" not in entry, f"{where}: {name} is a literal"
                    assert "secretKeyRef" in entry["valueFrom"], f"{where}: {name}"


def decoded(secret):
    return {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}


def test_the_chart_secret_holds_the_inline_secrets(render):
    rendered = render(full_values())
    secret = rendered.get("Secret", RELEASE)
    assert "helm.sh/hook" not in (secret["metadata"].get("annotations") or {})
    assert "stringData" not in secret
    assert decoded(secret) == {
        "DATABASE_URL": DB_URL,
        "TRIBUTARY_QUEUE_URL": REDIS_URL,
        "TRIBUTARY_ENCRYPTION_KEYS": ENCRYPTION_KEYS,
        "TRIBUTARY_JWT_SECRET": JWT_SECRET,
        "TRIBUTARY_OAUTH_HUBSPOT_CLIENT_SECRET": HUBSPOT_SECRET,
        "TRIBUTARY_METRICS_TOKEN": METRICS_TOKEN,
    }
    env = env_of(rendered.container("api"))
    for name in decoded(secret):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": RELEASE, "key": name}
    # The client id is not a secret: it is in the ConfigMap.
    data = rendered.get("ConfigMap", RELEASE)["data"]
    assert data["TRIBUTARY_OAUTH_HUBSPOT_CLIENT_ID"] == "hubspot-client-id"
    assert "TRIBUTARY_OAUTH_ZOHO_CLIENT_ID" not in data


def test_no_queue_url_means_the_queue_stays_in_the_database(render):
    rendered = render(minimal_values())
    assert "TRIBUTARY_QUEUE_URL" not in env_of(rendered.container("api"))
    assert "TRIBUTARY_QUEUE_URL" not in decoded(rendered.get("Secret", RELEASE))


def test_existing_secrets_replace_the_chart_secret(render):
    rendered = render(existing_secret_values())
    assert rendered.kind("Secret") == [], "nothing secret is inline: the chart creates no Secret"
    for component in ("api", "worker"):
        env = env_of(rendered.container(component))
        ref = lambda name: env[name]["valueFrom"]["secretKeyRef"]
        assert ref("DATABASE_URL") == {"name": "tributary-db", "key": "url"}
        assert ref("TRIBUTARY_QUEUE_URL") == {"name": "tributary-redis", "key": "redis-url"}
        assert ref("TRIBUTARY_ENCRYPTION_KEYS") == {"name": "tributary-keys",
                                                    "key": "TRIBUTARY_ENCRYPTION_KEYS"}
        assert ref("TRIBUTARY_JWT_SECRET") == {"name": "tributary-keys",
                                               "key": "TRIBUTARY_JWT_SECRET"}
        # OAuth client secrets are read when the operator's Secret has them.
        for vendor in ("HUBSPOT", "SALESFORCE", "ZOHO"):
            assert ref(f"TRIBUTARY_OAUTH_{vendor}_CLIENT_SECRET") == {
                "name": "tributary-keys", "key": f"TRIBUTARY_OAUTH_{vendor}_CLIENT_SECRET",
                "optional": True}
    job_env = env_of(rendered.job["spec"]["template"]["spec"]["containers"][0])
    assert job_env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "tributary-db",
                                                                    "key": "url"}


def test_existing_keyring_secret_with_an_inline_database_url(render):
    rendered = render(minimal_values({"secrets": {"existingSecret": "tributary-keys",
                                                  "encryptionKeys": "", "jwtSecret": ""}}))
    assert decoded(rendered.get("Secret", RELEASE)) == {"DATABASE_URL": DB_URL}
    env = env_of(rendered.container("api"))
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == RELEASE
    assert env["TRIBUTARY_JWT_SECRET"]["valueFrom"]["secretKeyRef"]["name"] == "tributary-keys"


def test_existing_secret_wins_over_inline_keys(render):
    rendered = render(minimal_values({"secrets": {"existingSecret": "tributary-keys"}}))
    data = decoded(rendered.get("Secret", RELEASE))
    assert "TRIBUTARY_ENCRYPTION_KEYS" not in data and "TRIBUTARY_JWT_SECRET" not in data
