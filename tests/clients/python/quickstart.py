"""The README quick start through the Python client generated from openapi/openapi.json.

Usage: quickstart.py BASE_URL, with the generated `tributary_client` package importable.
Every step asserts its answer and prints one line; any failure exits non-zero.
"""

import sys
import time
import uuid

from tributary_client import AuthenticatedClient, Client
from tributary_client.api.api_keys import api_keys_create
from tributary_client.api.auth import signup_create
from tributary_client.api.connections import connections_create, connections_records
from tributary_client.api.deliveries import deliveries_list
from tributary_client.api.events import events_list
from tributary_client.api.flows import flow_templates_list, flows_create
from tributary_client.api.stripe_accounts import stripe_accounts_create, stripe_accounts_test_event
from tributary_client.models import (
    ApiKeyIn,
    ConnectionIn,
    ConnectionStatus,
    DeliveryStatus,
    FlowSpec,
    Provider,
    Role,
    SignupIn,
    StripeAccountIn,
    TestEventIn,
    TestEventType,
)


def step(name, response, status):
    """The parsed body of `response`, after checking its HTTP status."""
    if response.status_code != status:
        sys.exit(f"FAIL {name}: HTTP {int(response.status_code)}, expected {status}: {response.content!r}")
    print(f"ok   {name}")
    return response.parsed


def main(base_url: str) -> None:
    public = Client(base_url=base_url, raise_on_unexpected_status=True)
    email = f"py-{uuid.uuid4().hex[:12]}@example.com"
    signup = step("signup", signup_create.sync_detailed(client=public, body=SignupIn(
        tenant_name="Acme (Python client)", email=email, password="correct horse battery")), 201)
    api = AuthenticatedClient(base_url=base_url, token=signup.access_token, raise_on_unexpected_status=True)

    account = step("create Stripe account", stripe_accounts_create.sync_detailed(client=api, body=StripeAccountIn(
        name="Acme test", webhook_secret="whsec_" + uuid.uuid4().hex)), 201)
    assert account.webhook_url.startswith(base_url), account.webhook_url

    connection = step("create sandbox connection", connections_create.sync_detailed(client=api, body=ConnectionIn(
        name="Sandbox", provider=Provider.SANDBOX)), 201)
    assert connection.status == ConnectionStatus.ACTIVE, connection.status

    templates = step("list flow templates", flow_templates_list.sync_detailed(client=api), 200)
    template = next((t for t in templates.data if t.id == "sandbox-lead-from-checkout"), None)
    assert template is not None, [t.id for t in templates.data]
    flow = step("create flow from template", flows_create.sync_detailed(client=api, body=FlowSpec.from_dict(
        {**template.flow.to_dict(), "connection_id": connection.id})), 201)
    assert flow.version == 1 and flow.connection_id == connection.id

    sent = step("send test event", stripe_accounts_test_event.sync_detailed(account.id, client=api, body=TestEventIn(
        type_=TestEventType.CHECKOUT_SESSION_COMPLETED)), 202)

    deadline = time.monotonic() + 30
    while True:
        records = connections_records.sync_detailed(connection.id, client=api, object_="leads").parsed
        if records.data:
            break
        if time.monotonic() > deadline:
            sys.exit("FAIL wait for sandbox record: no lead after 30 s")
        time.sleep(0.2)
    lead = records.data[0]
    assert lead.object_ == "leads" and lead.fields["email"], lead.to_dict()
    print(f"ok   sandbox record: lead {lead.fields['email']}")

    key = step("create API key", api_keys_create.sync_detailed(client=api, body=ApiKeyIn(
        name="Python client", role=Role.MEMBER)), 201)
    machine = AuthenticatedClient(base_url=base_url, token=key.key, raise_on_unexpected_status=True)
    events = step("list events (API key)", events_list.sync_detailed(client=machine), 200)
    assert sent.event_id in [e.id for e in events.data], [e.id for e in events.data]
    deliveries = step("list deliveries (API key)", deliveries_list.sync_detailed(client=machine, event_id=sent.event_id), 200)
    assert deliveries.data and all(d.status == DeliveryStatus.SUCCEEDED for d in deliveries.data), \
        [d.to_dict() for d in deliveries.data]
    print(f"quickstart (python): event {sent.event_id} → {len(deliveries.data)} delivery, lead in the sandbox")


if __name__ == "__main__":
    main(sys.argv[1])
