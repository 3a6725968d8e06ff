//! Tenant isolation and roles as a matrix over every route in the OpenAPI document: another
//! tenant's ids answer 404, a member's writes answer 403, no token answers 401. A route added
//! later is walked automatically, and the test fails until it knows that route's ids and body.

use reqwest::{Method, StatusCode};
use sea_orm::{ActiveValue::Set, EntityTrait};
use serde_json::{Value, json};
use tributary_tests::{
    PASSWORD, Reply, Tenant, TestApp, charge_event, each_backend, stripe_signature,
};

struct Operation {
    method: Method,
    path: String,
    id: String,
}

fn secured_operations() -> Vec<Operation> {
    let spec = serde_json::to_value(tributary_api::openapi::document()).unwrap();
    let mut operations = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            // Public operations declare `security: []`.
            if operation["security"]
                .as_array()
                .is_none_or(|requirements| requirements.is_empty())
            {
                continue;
            }
            operations.push(Operation {
                method: method.to_uppercase().parse().unwrap(),
                path: path.clone(),
                id: operation["operationId"].as_str().unwrap().to_string(),
            });
        }
    }
    assert!(operations.len() >= 15, "the spec lists the tenant routes");
    operations
}

/// The environment tenant A has and B has not.
const FIXTURE_ENVIRONMENT: &str = "fixture";

/// Tenant A's resources, one of each kind a path can name.
struct Fixture {
    tenant_id: String,
    user_id: String,
    api_key_id: String,
    account_id: String,
    secret_id: String,
    connection_id: String,
    flow_id: String,
    event_id: String,
    delivery_id: String,
    channel_id: String,
    backfill_id: String,
    bulk_job_id: String,
    incident_id: String,
    review_id: String,
}

impl Fixture {
    async fn create(app: &TestApp, owner: &Tenant) -> Fixture {
        // An environment of A's, which paths name by its name.
        let environment = app
            .post(
                "/v1/environments",
                &owner.token,
                json!({"name": FIXTURE_ENVIRONMENT}),
            )
            .await;
        assert_eq!(
            environment.status,
            StatusCode::CREATED,
            "{}",
            environment.text
        );
        let (user_id, _) = app.user_with_role(owner, "member").await;
        let (api_key_id, _) = app.api_key(owner, "member").await;
        // A test-mode key, so test-mode events reach it: production opts in.
        app.allow_mixed_modes(&owner.token, "production").await;
        let account = app
            .post("/v1/stripe-accounts", &owner.token, json!({"name": "A's", "secret_key": "sk_test_isolation123456", "webhook_secret": "whsec_isolation123456"}))
            .await;
        let connection_id = app
            .post(
                "/v1/connections",
                &owner.token,
                json!({"name": "A's sandbox", "provider": "sandbox"}),
            )
            .await
            .str("/id");
        let flow_id = app
            .post("/v1/flows", &owner.token, flow_body(&connection_id))
            .await
            .str("/id");
        let now = chrono::Utc::now().timestamp();
        let body = serde_json::to_vec(&charge_event(
            "evt_iso", "ch_iso", "iso@a.co", "Iso A", 100, now,
        ))
        .unwrap();
        let path = account
            .str("/webhook_url")
            .replace("https://hooks.example.test", "");
        let signature = stripe_signature(&body, "whsec_isolation123456", now);
        let event_id = app
            .webhook(&path, &body, Some(&signature))
            .await
            .str("/event_id");
        let event = app.finished_event(&owner.token, &event_id).await;
        let channel_id = app
            .post(
                "/v1/notification-channels",
                &owner.token,
                json!({"name": "A's alerts", "kind": "slack", "url": "https://alerts.example.com/hook"}),
            )
            .await
            .str("/id");
        let backfill_id = app
            .post(
                &format!("/v1/stripe-accounts/{}/backfills", account.str("/id")),
                &owner.token,
                json!({"since": now - 3600}),
            )
            .await
            .str("/id");
        let bulk_job_id = app
            .post("/v1/deliveries/retry", &owner.token, json!({}))
            .await
            .str("/job_id");
        // An incident of A's, as the anomaly detectors write them.
        let incident_id = format!("inc_{}", uuid::Uuid::new_v4().simple());
        let at = chrono::Utc::now();
        entity::incidents::Entity::insert(entity::incidents::ActiveModel {
            id: Set(incident_id.clone()),
            tenant_id: Set(owner.id.clone()),
            detector: Set("silence".into()),
            series: Set("events|stripe|acct_iso|charge.succeeded".into()),
            status: Set("open".into()),
            summary: Set("No charge.succeeded for 90 minutes".into()),
            evidence: Set("{}".into()),
            opened_at: Set(at),
            updated_at: Set(at),
            resolved_at: Set(None),
            acknowledged_at: Set(None),
            acknowledged_by: Set(None),
        })
        .exec(&app.db)
        .await
        .unwrap();
        let delivery_id = event["deliveries"][0]["id"]
            .as_str()
            .expect("a delivery")
            .to_string();
        let row = review_row(&owner.id, &delivery_id, &event_id, &flow_id, &connection_id);
        let review_id = insert_review(app, row).await;
        Fixture {
            review_id,
            incident_id,
            tenant_id: owner.id.clone(),
            bulk_job_id,
            backfill_id,
            channel_id,
            user_id,
            api_key_id,
            account_id: account.str("/id"),
            secret_id: account.str("/webhook_secrets/0/id"),
            connection_id,
            flow_id,
            event_id,
            delivery_id,
        }
    }

    fn ids(&self) -> [&str; 13] {
        [
            &self.review_id,
            &self.incident_id,
            &self.bulk_job_id,
            &self.backfill_id,
            &self.channel_id,
            &self.user_id,
            &self.api_key_id,
            &self.account_id,
            &self.secret_id,
            &self.connection_id,
            &self.flow_id,
            &self.event_id,
            &self.delivery_id,
        ]
    }

    /// The path with this fixture's ids in place of its parameters.
    fn fill(&self, template: &str) -> String {
        let resource = template.split('/').nth(2).unwrap_or_default();
        let id = match resource {
            "users" => &self.user_id,
            "api-keys" => &self.api_key_id,
            "stripe-accounts" => &self.account_id,
            "connections" => &self.connection_id,
            "flows" => &self.flow_id,
            "events" => &self.event_id,
            "deliveries" => &self.delivery_id,
            "notification-channels" => &self.channel_id,
            "bulk-jobs" => &self.bulk_job_id,
            "incidents" => &self.incident_id,
            "reviews" => &self.review_id,
            other if template.contains("{id}") => {
                panic!("the isolation matrix does not know ids of /v1/{other}: add them")
            }
            _ => "",
        };
        template
            .replace("{id}", id)
            .replace("{sid}", &self.secret_id)
            .replace("{bid}", &self.backfill_id)
            .replace("{v}", "1")
            .replace("{name}", FIXTURE_ENVIRONMENT)
    }
}

/// An open review item of tenant `tenant_id`'s, as the worker writes one for a held delivery:
/// contacts matching one email twice (candidates 101 and 102); a caller changes what it needs.
pub(crate) fn review_row(
    tenant_id: &str,
    delivery_id: &str,
    event_id: &str,
    flow_id: &str,
    connection_id: &str,
) -> entity::reviews::ActiveModel {
    let at = chrono::Utc::now();
    entity::reviews::ActiveModel {
        id: Set(format!("rev_{}", uuid::Uuid::new_v4().simple())),
        tenant_id: Set(tenant_id.to_string()),
        delivery_id: Set(delivery_id.to_string()),
        event_id: Set(event_id.to_string()),
        flow_id: Set(flow_id.to_string()),
        step: Set("contact".into()),
        connection_id: Set(connection_id.to_string()),
        object: Set("contacts".into()),
        status: Set("open".into()),
        reason: Set("several".into()),
        summary: Set("2 contacts records match email m@a.co".into()),
        incoming: Set(r#"{"match":{"email":"m@a.co"},"fields":{}}"#.into()),
        candidates: Set(r#"[{"id":"101","email":"m@a.co"},{"id":"102","email":"m@a.co"}]"#.into()),
        decision: Set(None),
        record_id: Set(None),
        decided_by: Set(None),
        decided_at: Set(None),
        created_at: Set(at),
        alert_at: Set(at),
    }
}

/// Stores a review row; returns its id.
pub(crate) async fn insert_review(app: &TestApp, row: entity::reviews::ActiveModel) -> String {
    let id = row.id.clone().unwrap();
    entity::reviews::Entity::insert(row)
        .exec(&app.db)
        .await
        .unwrap();
    id
}

fn flow_body(connection_id: &str) -> Value {
    json!({"name": "matrix", "connection_id": connection_id, "trigger": {"events": ["charge.succeeded"]},
           "steps": [{"id": "contact", "action": "upsert", "object": "contacts",
                      "match": {"email": "{{ object.billing_details.email }}"}}]})
}

/// Operations a member may call although they are not GETs: they read and write nothing.
const READ_ONLY_POSTS: &[&str] = &["flows.validate", "flows.preview", "flows.dry_run"];

/// A valid body for each writing operation, so only authorization can refuse it.
fn body_for(operation_id: &str, fixture: &Fixture) -> Option<Value> {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    match operation_id {
        "connections.create" => Some(json!({"name": "matrix", "provider": "sandbox"})),
        "connections.update" => Some(json!({"name": "hijacked"})),
        "flows.create" | "flows.replace" => Some(flow_body(&fixture.connection_id)),
        "flows.validate" => Some(json!({"flow": flow_body(&fixture.connection_id)})),
        "flows.preview" => Some(
            json!({"event": charge_event("evt_m", "ch_m", "m@a.co", "M A", 100, 1_700_000_000)}),
        ),
        "flows.rollback" => Some(json!({"version": 1})),
        "flows.dry_run" => Some(json!({"limit": 5})),
        "flows.version_get" | "flows.diff" => None,
        "events.replay" => Some(json!({})),
        "deliveries.retry_many" | "events.replay_many" => Some(json!({})),
        "erasures.create" => Some(json!({"email": "m@a.co"})),
        "stripe_accounts.test_event" => Some(json!({"type": "charge.succeeded"})),
        "connections.test" | "connections.reauthorize" | "deliveries.retry" => None,
        "connections.poll" | "connections.watches" | "connections.fields" => None,
        "connections.rate_limit" | "incidents.acknowledge" => None,
        "notification_channels.create" => Some(
            json!({"name": "matrix", "kind": "slack", "url": "https://alerts.example.com/matrix"}),
        ),
        "notification_channels.update" => Some(json!({"name": "hijacked"})),
        "reviews.decide" => Some(json!({"decision": "pick", "record_id": "101"})),
        "anomaly_sensitivity.replace" => Some(json!({"spike": "off"})),
        "notification_channels.test" | "notification_channels.alerts" => None,
        "stripe_accounts.register_webhook" => None,
        "environments.create" => Some(json!({"name": format!("m{}", &unique[..8])})),
        "environments.update" => Some(json!({"mixed_modes": true})),
        "flows.promote" => Some(json!({"to": "production"})),
        "logout.create" | "me.tenants" => None,
        // A person switches to one of their own tenants: tenant A, where the fixture's are.
        "auth.switch" => Some(json!({"tenant_id": fixture.tenant_id})),
        "backfills.create" => Some(json!({"since": chrono::Utc::now().timestamp() - 3600})),
        "users.create" => Some(
            json!({"email": format!("m-{unique}@example.com"), "password": PASSWORD, "role": "member"}),
        ),
        "users.update" => Some(json!({"role": "member"})),
        "api_keys.create" => Some(json!({"name": "matrix", "role": "member"})),
        "stripe_accounts.create" => Some(json!({"name": "matrix"})),
        "stripe_accounts.update" => Some(json!({"name": "hijacked"})),
        "webhook_secrets.create" => Some(json!({"secret": "whsec_hijackhijackhijack"})),
        id if id.ends_with(".delete")
            || id.ends_with(".get")
            || id.ends_with(".list")
            || id.ends_with(".versions")
            || id.ends_with(".records") =>
        {
            None
        }
        other => panic!("the isolation matrix has no body for {other}: add one"),
    }
}

/// The query a read needs to be valid, so only authorization can refuse it.
fn query_for(operation_id: &str) -> &'static str {
    match operation_id {
        "connections.fields" => "?object=contacts",
        _ => "",
    }
}

async fn call(
    app: &TestApp,
    op: &Operation,
    fixture: &Fixture,
    path: &str,
    token: Option<&str>,
) -> Reply {
    let path = format!("{path}{}", query_for(&op.id));
    app.call(op.method.clone(), &path, token, body_for(&op.id, fixture))
        .await
}

#[tokio::test]
async fn another_tenants_ids_answer_404_on_every_route() {
    each_backend(|app| async move {
        let a = app.signup("Tenant A").await;
        let b = app.signup("Tenant B").await;
        let fixture = Fixture::create(&app, &a).await;
        let (_, b_key) = app.api_key(&b, "owner").await;

        let mut walked = 0;
        for op in secured_operations() {
            let path = fixture.fill(&op.path);
            if path == op.path {
                // No id in the path: B's view must simply not contain A's things.
                if op.method == Method::GET {
                    let reply = call(&app, &op, &fixture, &path, Some(b.token.as_str())).await;
                    for id in fixture.ids() {
                        assert!(
                            !reply.text.contains(id),
                            "{} {} shows tenant A's {id}",
                            op.method,
                            op.path
                        );
                    }
                }
                continue;
            }
            for token in [&b.token, &b_key] {
                let reply = call(&app, &op, &fixture, &path, Some(token.as_str())).await;
                assert_eq!(
                    reply.status,
                    StatusCode::NOT_FOUND,
                    "{} {}: {}",
                    op.method,
                    path,
                    reply.text
                );
                reply.assert_problem(StatusCode::NOT_FOUND);
            }
            walked += 1;
        }
        assert!(walked >= 20, "walked {walked} id routes");

        // Nothing of A's changed.
        let user = app
            .get(&format!("/v1/users/{}", fixture.user_id), &a.token)
            .await;
        assert_eq!(user.body["role"], "member");
        let account = app
            .get(
                &format!("/v1/stripe-accounts/{}", fixture.account_id),
                &a.token,
            )
            .await;
        assert_eq!(account.body["name"], "A's");
        assert_eq!(account.body["webhook_secrets"].as_array().unwrap().len(), 1);
        let keys = app.get("/v1/api-keys", &a.token).await;
        assert!(keys.text.contains(&fixture.api_key_id));
    })
    .await;
}

#[tokio::test]
async fn members_read_but_never_write_and_strangers_get_401() {
    each_backend(|app| async move {
        let a = app.signup("Roles A").await;
        let fixture = Fixture::create(&app, &a).await;
        let (_, member_jwt) = app.user_with_role(&a, "member").await;
        let (_, member_key) = app.api_key(&a, "member").await;
        let (_, admin_jwt) = app.user_with_role(&a, "admin").await;

        for op in secured_operations() {
            let path = fixture.fill(&op.path);
            // Anyone may end their own session (tests in hostile_auth); it would end this one.
            let own_session = op.id == "logout.create";
            for token in [&member_jwt, &member_key]
                .into_iter()
                .filter(|_| !own_session)
            {
                let reply = call(&app, &op, &fixture, &path, Some(token.as_str())).await;
                let reads = op.method == Method::GET || READ_ONLY_POSTS.contains(&op.id.as_str());
                // Any person may switch between their own tenants (tests in memberships); an
                // API key belongs to one tenant and has no session to switch.
                let switches = op.id == "auth.switch" && token == &member_jwt;
                let expected = if switches {
                    StatusCode::OK
                } else if !reads || op.id == "audit_log.list" {
                    StatusCode::FORBIDDEN
                } else {
                    StatusCode::OK
                };
                assert_eq!(
                    reply.status, expected,
                    "member {} {}: {}",
                    op.method, path, reply.text
                );
                if expected == StatusCode::FORBIDDEN {
                    reply.assert_problem(StatusCode::FORBIDDEN);
                }
            }
            let anonymous = call(&app, &op, &fixture, &path, None).await;
            anonymous.assert_problem(StatusCode::UNAUTHORIZED);
        }

        // Admins read the audit log; members' refused attempts left no trace in it.
        let audit = app.get("/v1/audit-log?limit=100", &admin_jwt).await;
        assert_eq!(audit.status, StatusCode::OK);
        assert!(!audit.text.contains("hijacked"));
        let account = app
            .get(
                &format!("/v1/stripe-accounts/{}", fixture.account_id),
                &a.token,
            )
            .await;
        assert_eq!(account.body["name"], "A's");
    })
    .await;
}
