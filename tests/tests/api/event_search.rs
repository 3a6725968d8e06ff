//! Finding an event (by Stripe event id, Stripe object id, customer email, flow or
//! connection), end to end through signed webhooks, on every backend; acting on many at once is
//! in `bulk_jobs.rs`.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tributary_tests::{Pipeline, TestApp, charge_event, each_backend};

pub(crate) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

pub(crate) fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// A charge of `customer` paid by `email`.
pub(crate) fn charge(event_id: &str, charge_id: &str, customer: &str, email: &str) -> Value {
    let mut event = charge_event(event_id, charge_id, email, "Ada Lovelace", 1200, now());
    event["data"]["object"]["customer"] = json!(customer);
    event
}

/// A `customer.updated` event: no flow takes it, so it has no deliveries.
fn customer_updated(event_id: &str, customer: &str, email: &str) -> Value {
    json!({
        "id": event_id, "object": "event", "api_version": "2024-06-20", "created": now(),
        "livemode": false, "pending_webhooks": 1, "type": "customer.updated",
        "request": {"id": null, "idempotency_key": null},
        "data": {"object": {"id": customer, "object": "customer", "email": email,
                            "name": "Ada Lovelace"}}
    })
}

/// Sends `event` and waits until it has finished; returns Tributary's id for it.
pub(crate) async fn deliver(app: &TestApp, p: &Pipeline, event: &Value) -> String {
    let sent = app.send_event(p, event).await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.text);
    let id = sent.str("/event_id");
    app.finished_event(&p.tenant.token, &id).await;
    id
}

/// The ids of the events `GET /v1/events?{query}` lists, sorted.
async fn found(app: &TestApp, token: &str, query: &str) -> Vec<String> {
    let reply = app
        .get(&format!("/v1/events?limit=100&{query}"), token)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{query}: {}", reply.text);
    let mut ids: Vec<String> = reply.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn sorted(ids: &[&String]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    ids.sort();
    ids
}

/// What the first tenant delivered: a contact flow, Ada's and Bob's charges and Ada's
/// customer update.
struct AdaAndBob {
    flow_id: String,
    evt_ada: String,
    ada_charge: String,
    bob_charge: String,
    ada_customer: String,
}

/// Sets up a contact flow and delivers Ada's charge, Bob's charge and Ada's customer update.
async fn deliver_ada_and_bob(app: &TestApp, p: &Pipeline) -> AdaAndBob {
    let flow_id = app
        .contact_flow(
            p,
            json!({"firstname": "{{ object.billing_details.name | first_name }}"}),
        )
        .await;
    let (evt_ada, evt_bob, evt_cus) = (unique("evt"), unique("evt"), unique("evt"));
    let ada_charge = deliver(
        app,
        p,
        &charge(&evt_ada, "ch_ada1", "cus_Ada9", "Ada@Example.com"),
    )
    .await;
    let bob_charge = deliver(
        app,
        p,
        &charge(&evt_bob, "ch_bob1", "cus_Bob7", "bob@example.com"),
    )
    .await;
    let ada_customer = deliver(
        app,
        p,
        &customer_updated(&evt_cus, "cus_Ada9", "ada@example.com"),
    )
    .await;
    AdaAndBob {
        flow_id,
        evt_ada,
        ada_charge,
        bob_charge,
        ada_customer,
    }
}

/// Checks the tenant finds its events by ids, email, flow and connection.
async fn check_searches_within_the_tenant(app: &TestApp, p: &Pipeline, ada: &AdaAndBob) {
    let token = &p.tenant.token;
    let AdaAndBob {
        flow_id,
        evt_ada,
        ada_charge,
        bob_charge,
        ada_customer,
    } = ada;
    // By Stripe event id, by the object's id, by an id the object points at.
    assert_eq!(
        found(app, token, &format!("search={evt_ada}")).await,
        vec![ada_charge.clone()]
    );
    assert_eq!(
        found(app, token, "search=ch_bob1").await,
        vec![bob_charge.clone()]
    );
    assert_eq!(
        found(app, token, "search=cus_Ada9").await,
        sorted(&[ada_charge, ada_customer])
    );
    // Ids keep their case: Stripe's ids are case-sensitive.
    assert!(found(app, token, "search=cus_ada9").await.is_empty());
    // By the customer's email, in any case, wherever the event carries it.
    assert_eq!(
        found(app, token, "search=ADA%40example.COM").await,
        sorted(&[ada_charge, ada_customer])
    );
    // By where the events went: only charges have deliveries.
    assert_eq!(
        found(app, token, &format!("flow_id={flow_id}")).await,
        sorted(&[ada_charge, bob_charge])
    );
    assert_eq!(
        found(app, token, &format!("connection_id={}", p.connection_id)).await,
        sorted(&[ada_charge, bob_charge])
    );
    assert_eq!(
        found(app, token, &format!("search=cus_Ada9&flow_id={flow_id}")).await,
        vec![ada_charge.clone()]
    );
    assert_eq!(
        found(app, token, "search=cus_Ada9&type=customer.updated").await,
        vec![ada_customer.clone()]
    );
    assert!(found(app, token, "search=ch_nobody").await.is_empty());
}

/// Delivers another tenant's charge of the same id and email; checks each tenant finds only
/// its own. Returns that tenant's event id.
async fn check_another_tenant_finds_only_its_own(
    app: &TestApp,
    token: &str,
    other: &Pipeline,
    ada: &AdaAndBob,
) -> String {
    let AdaAndBob {
        flow_id,
        evt_ada,
        ada_charge,
        ..
    } = ada;
    let theirs = deliver(
        app,
        other,
        &charge(&unique("evt"), "ch_ada1", "cus_Other", "ada@example.com"),
    )
    .await;
    let their_token = &other.tenant.token;
    assert_eq!(
        found(app, their_token, "search=ch_ada1").await,
        vec![theirs.clone()]
    );
    assert_eq!(
        found(app, their_token, "search=ada%40example.com").await,
        vec![theirs.clone()]
    );
    assert!(
        found(app, their_token, &format!("search={evt_ada}"))
            .await
            .is_empty()
    );
    assert!(found(app, their_token, "search=cus_Ada9").await.is_empty());
    assert!(
        found(app, their_token, &format!("flow_id={flow_id}"))
            .await
            .is_empty()
    );
    assert_eq!(
        found(app, token, "search=ch_ada1").await,
        vec![ada_charge.clone()]
    );
    theirs
}

/// Checks bad searches are refused naming the field, and the longest allowed one is taken.
async fn check_bad_searches_are_refused(app: &TestApp, token: &str) {
    for (query, field) in [
        ("search=ada%20lovelace".to_string(), "search"),
        ("search=".to_string(), "search"),
        (format!("search={}", "x".repeat(321)), "search"),
        (format!("flow_id={}", "f".repeat(65)), "flow_id"),
        ("connection_id=".to_string(), "connection_id"),
    ] {
        let reply = app.get(&format!("/v1/events?{query}"), token).await;
        assert_eq!(
            reply.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
            vec![field.to_string()],
            "{query}"
        );
    }
    assert_eq!(
        found(app, token, &format!("search={}", "x".repeat(320))).await,
        Vec::<String>::new()
    );
}

/// Erases Ada; checks her email and what pointed at her are forgotten in her tenant only.
async fn check_erasure_forgets_ada(
    app: &TestApp,
    token: &str,
    their_token: &str,
    ada: &AdaAndBob,
    theirs: String,
) {
    let erased = app
        .post("/v1/erasures", token, json!({"email": "ada@example.com"}))
        .await;
    assert_eq!(erased.status, StatusCode::OK, "{}", erased.text);
    assert!(
        found(app, token, "search=ada%40example.com")
            .await
            .is_empty()
    );
    assert_eq!(
        found(app, token, "search=ch_ada1").await,
        vec![ada.ada_charge.clone()]
    );
    assert_eq!(
        found(app, token, "search=cus_Ada9").await,
        vec![ada.ada_customer.clone()]
    );
    assert_eq!(
        found(app, their_token, "search=ada%40example.com").await,
        vec![theirs],
        "an erasure stays in its tenant"
    );
}

#[tokio::test]
async fn events_are_found_by_stripe_ids_customer_email_flow_and_connection() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;
        let ada = deliver_ada_and_bob(&app, &p).await;
        check_searches_within_the_tenant(&app, &p, &ada).await;

        // Another tenant, with a charge of the same id and the same email, finds only its own.
        let other = app.pipeline(json!({})).await;
        let theirs = check_another_tenant_finds_only_its_own(&app, token, &other, &ada).await;

        // Bad searches are refused naming the field; nothing is listed.
        check_bad_searches_are_refused(&app, token).await;

        // Erasing Ada forgets her email and what pointed at her; the events' own ids stay.
        check_erasure_forgets_ada(&app, token, &other.tenant.token, &ada, theirs).await;
    })
    .await;
}

/// Events stored before the upgrade that added search are found too: the migration reads
/// every stored payload and writes its keys.
#[tokio::test]
async fn the_upgrade_indexes_events_already_stored() {
    use entity::{event_keys, events, tenants};
    use migration::{Migrator, MigratorTrait};
    use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
    use tributary_worker::{db, new_id, now as at};

    for backend in tributary_tests::backends() {
        if backend == tributary_tests::Backend::PostgresRedis {
            continue; // the same database as Postgres
        }
        let dir = tempfile::tempdir().unwrap();
        let database = tributary_tests::TestDatabase::create(backend, dir.path()).await;
        let conn = db::connect(&database.url).await.unwrap();
        let before = Migrator::migrations()
            .iter()
            .position(|m| m.name() == "m20261206_000012_event_search")
            .expect("the search migration is registered");
        Migrator::up(&conn, Some(before as u32)).await.unwrap();

        let tenant_id = new_id();
        tenants::Entity::insert(tenants::ActiveModel {
            id: Set(tenant_id.clone()),
            name: Set("Upgraded".into()),
            created_at: Set(at()),
            updated_at: Set(at()),
            // Columns later migrations add.
            ..Default::default()
        })
        .exec(&conn)
        .await
        .unwrap();
        let mut stored = Vec::new();
        for (n, payload) in [
            charge("evt_Old1", "ch_Old1", "cus_Old", "Old@Example.com").to_string(),
            "not json".to_string(),
        ]
        .into_iter()
        .enumerate()
        {
            let id = new_id();
            events::Entity::insert(events::ActiveModel {
                id: Set(id.clone()),
                tenant_id: Set(tenant_id.clone()),
                stripe_account_id: Set("acct".into()),
                stripe_event_id: Set(format!("evt_old{n}")),
                event_type: Set("charge.succeeded".into()),
                stripe_object_id: Set(None),
                livemode: Set(false),
                api_version: Set(None),
                event_created: Set(1),
                payload: Set(payload),
                status: Set("processed".into()),
                runs: Set(1),
                next_run_at: Set(None),
                last_error: Set(None),
                received_at: Set(at()),
                queued_at: Set(None),
                processed_at: Set(None),
                updated_at: Set(at()),
                redacted_at: Set(None),
                // Not columns yet at the schema this test starts from.
                source: sea_orm::ActiveValue::NotSet,
                priority: sea_orm::ActiveValue::NotSet,
            })
            .exec(&conn)
            .await
            .unwrap();
            stored.push(id);
        }

        Migrator::up(&conn, None).await.unwrap();
        let mut keys: Vec<(String, String)> = event_keys::Entity::find()
            .filter(event_keys::Column::TenantId.eq(tenant_id.as_str()))
            .all(&conn)
            .await
            .unwrap()
            .into_iter()
            .map(|k| {
                assert_eq!(
                    k.event_id, stored[0],
                    "{backend:?}: only the JSON one has keys"
                );
                (k.kind, k.value)
            })
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                ("email", "old@example.com"),
                ("event", "evt_Old1"),
                ("object", "ch_Old1"),
                ("related", "cus_Old"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
            "{backend:?}"
        );
        conn.close().await.ok();
        database.drop_now().await;
    }
}
