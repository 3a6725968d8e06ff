"""Schemathesis hooks for tests/schemathesis/run.sh (loaded through SCHEMATHESIS_HOOKS).

1. The run authenticates with one owner API key. Generated requests find its id in
   `GET /v1/api-keys` and would revoke it, leaving every later request a 401 that tests
   nothing: a `DELETE /v1/api-keys/{id}` aimed at the run's own key is sent to an id that does
   not exist instead (a 404, still checked against the spec). Every other key stays fair game.

2. Some refusals depend on what no JSON Schema can state: the tenant's other resources (a flow's
   `connection_id` must name one of its connections), the server's configuration (URL policy,
   OAuth apps), the clock (a backfill reaches 30 days back) or a small language (a flow's
   templates and expressions). A schema-valid request refused for such a reason alone is not a
   gap in the spec. `STATEFUL` lists each, per operation, with the reason; a "schema-valid request
   rejected" failure is dropped only when the answer is that status and every field its
   problem names is listed for the operation. Anything else a 422 names is a gap to fix in the
   spec or the validation, not to list here.

3. An environment is addressed by its name, which generated requests repeat ("vo4"), and a
   repeated `Idempotency-Key` with the same body replays the first answer, as designed (a 201
   for an environment deleted since), so a stateful sequence create → delete → create → delete
   would find nothing on its second delete. A real client makes one key per intended create:
   `POST /v1/environments` is sent with a fresh key.
"""

import os
import re
import uuid

import schemathesis

OWN_KEY_ID = os.environ["SCHEMATHESIS_OWN_KEY_ID"]

# Flow documents (POST /v1/flows, PUT /v1/flows/{id}): the connection must be one of the tenant's,
# trigger types come from Stripe's catalogue (exact or patterns), `filter`, `when` and `check`
# are expressions, step fields are templates, steps refer to each other by id and their actions
# and objects depend on the connection's CRM.
FLOW_DOCUMENT = r"connection_id|trigger(\..+)?|steps(\[\d+\].*)?|refetch"

STATEFUL = {
    # operation: [(status, field regex or None for any), ...], each with why no schema can say it.
    "POST /v1/flows": [(422, FLOW_DOCUMENT)],
    # ... and `If-Match` must name the flow's current version, which changes as flows are replaced.
    "PUT /v1/flows/{id}": [(422, FLOW_DOCUMENT), (412, None)],
    # Which auth types and settings a provider takes, and where its URLs may point
    # (TRIBUTARY_VENDOR_URLS), are per provider and per installation (AuthInput's description).
    "POST /v1/connections": [(422, r"auth(\..+)?|settings(\..*)?")],
    "PATCH /v1/connections/{id}": [(422, r"auth(\..+)?|settings(\..*)?"), (412, None)],
    # The connection's provider has no OAuth flow, or no OAuth app is configured on this server
    # and none is in the connection.
    "POST /v1/connections/{id}/reauthorize": [(422, r"provider|auth(\..+)?")],
    # Only sandbox connections hold records.
    "GET /v1/connections/{id}/records": [(422, r"id")],
    # The account has no secret key to register the endpoint with.
    "POST /v1/stripe-accounts/{id}/register-webhook": [(422, r"secret_key")],
    # `since` must lie within the last 30 days: relative to the clock.
    "POST /v1/stripe-accounts/{id}/backfills": [(422, r"since|secret_key")],
    # The URL must be allowed by TRIBUTARY_VENDOR_URLS and resolve; `secret` is refused with
    # kind `slack` (a rule across two fields, stated in `secret`'s description).
    "POST /v1/notification-channels": [(422, r"url|secret")],
    "PATCH /v1/notification-channels/{id}": [(422, r"url|secret"), (412, None)],
    # `livemode` must agree with the mode `secret_key`'s prefix names (a rule across two fields,
    # stated in `livemode`'s description).
    "POST /v1/stripe-accounts": [(422, r"livemode")],
    # `If-Match` must name the resource's current ETag, which changes with every change to it;
    # `livemode` as for POST.
    "PATCH /v1/stripe-accounts/{id}": [(412, None), (422, r"livemode")],
    "PATCH /v1/users/{id}": [(412, None)],
    # A pasted event must be a Stripe event; `event_id` and `latest` must name inbox events.
    "POST /v1/flows/{id}/preview": [(422, r"event(\..+)?|event_id|latest|body")],
    # Dry-run: `version` and `flow`, and `event_ids` and `filter`, are alternatives, and
    # `limit` goes past 500 only with `background` (rules across two fields, stated in their
    # descriptions); a draft's templates must run within the template-run time limit (`flow`).
    "POST /v1/flows/{id}/dry-run": [(422, r"version|flow|event_ids|filter|limit")],
    # A review decision: `record_id` must name one of that item's candidates, and goes with
    # `pick` and `merge` only (a rule across two fields, stated in its description); `merge`
    # needs a CRM that merges the item's object (stated in `can_merge`).
    "POST /v1/reviews/{id}/decision": [(422, r"record_id|decision")],
    # Rollback: `If-Match` must name the flow's current version, as for PUT /v1/flows/{id}.
    "POST /v1/flows/{id}/rollback": [(412, None)],
    # The callback's `state` is single-use and minted by the server, so no generated one is
    # live; every refused callback is a 400 page (the connections Contract).
    "GET /v1/oauth/callback": [(400, None)],
    # Bulk filters: `flow_id` and `connection_id` must name the tenant's own; `created_lt` must
    # come after `created_gte` (a rule across two fields, stated in their descriptions).
    "POST /v1/deliveries/retry": [(422, r"flow_id|connection_id|created_lt|created_gte")],
    "POST /v1/events/replay": [(422, r"flow_id|connection_id|created_lt|created_gte")],
}


# `?wait=` holds a test event's answer until its flows finish, up to 30 s; with no CRM reachable
# they never do. A valid wait above 2 s is sent as 2 s, so a run of many cases stays short; the
# values outside 0 to 30 are sent as generated.
MAX_TEST_EVENT_WAIT = 2


@schemathesis.hook
def before_call(context, case, kwargs):
    if (
        case.method.upper() == "DELETE"
        and case.path == "/v1/api-keys/{id}"
        and (case.path_parameters or {}).get("id") == OWN_KEY_ID
    ):
        case.path_parameters = {**case.path_parameters, "id": str(uuid.uuid4())}
    if case.method.upper() == "POST" and case.path == "/v1/environments":
        headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "idempotency-key"}
        case.headers = {**headers, "Idempotency-Key": str(uuid.uuid4())}
    wait = (case.query or {}).get("wait")
    if isinstance(wait, str) and wait.isascii() and wait.isdigit():
        wait = int(wait)
    if (
        case.path == "/v1/stripe-accounts/{id}/test-events"
        and isinstance(wait, int)
        and not isinstance(wait, bool)
        and MAX_TEST_EVENT_WAIT < wait <= 30
    ):
        case.query = {**case.query, "wait": MAX_TEST_EVENT_WAIT}


def _problem_fields(response):
    try:
        body = response.json()
    except Exception:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("errors"), list):
        return None
    fields = [e.get("field") for e in body["errors"] if isinstance(e, dict)]
    return fields if fields and all(isinstance(f, str) for f in fields) else None


# schemathesis 4.32's coverage phase takes a key of a request example for a required one (the
# connection examples' `settings.base_url`; ConnectionSettings requires nothing) and calls its
# absence invalid. Dropped by that exact description only.
INVENTED_REQUIRED = {
    "POST /v1/connections": "settings -> Missing required property",
}


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """False drops the failure: a refusal for a reason listed in STATEFUL."""
    label = f"{case.method.upper()} {case.path}"
    if getattr(failure, "code", None) == "ST201":
        invented = INVENTED_REQUIRED.get(label)
        return not (invented and invented in str(getattr(failure, "message", "")))
    if getattr(failure, "code", None) != "ST202":
        return True
    for status, fields in STATEFUL.get(label, []):
        if response.status_code != status:
            continue
        if fields is None:
            return False
        named = _problem_fields(response)
        if named is not None and all(re.fullmatch(fields, f, re.DOTALL) for f in named):
            return False
    return True
