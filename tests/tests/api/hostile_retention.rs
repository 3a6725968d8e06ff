//! A tenant that tries to grow without bound: more flows, steps and connections than an
//! operator allows, a webhook flood through one Stripe account, events kept forever; and a
//! customer who asks to be forgotten.

use entity::{audit_log, deliveries, events, record_links, sandbox_records};
use reqwest::StatusCode;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use tributary_tests::{Pipeline, TestApp, charge_event, each_backend_with, metric, wait_for};

fn flow(connection_id: &str, name: &str, steps: usize) -> Value {
    let steps: Vec<Value> = (0..steps)
        .map(|i| {
            json!({"id": format!("s{i}"), "action": "upsert", "object": "contacts",
                   "match": {"email": "{{ object.billing_details.email | lower }}"}})
        })
        .collect();
    json!({"name": name, "connection_id": connection_id,
           "trigger": {"events": ["charge.succeeded"]}, "steps": steps})
}

/// Contacts by email and deals by charge, as a tenant would map charges.
fn charge_flow(connection_id: &str) -> Value {
    json!({
        "name": "Charges", "connection_id": connection_id,
        "trigger": {"events": ["charge.succeeded"]},
        "steps": [
            {"id": "contact", "action": "upsert", "object": "contacts",
             "match": {"email": "{{ object.billing_details.email | lower }}"},
             "fields": {"name": "{{ object.billing_details.name }}"}},
            {"id": "deal", "action": "upsert", "object": "deals",
             "match": {"stripe_charge_id": "{{ object.id }}"},
             "fields": {"amount": "{{ object.amount }}", "contact_id": "{{ steps.contact.id }}"}}
        ]
    })
}

async fn audit_actions(app: &TestApp, token: &str, action: &str) -> Vec<Value> {
    let audit = app.get("/v1/audit-log?limit=100", token).await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.text);
    audit.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action)
        .cloned()
        .collect()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn flows_beyond_the_tenant_limit_are_refused_even_when_sent_at_once() {
    each_backend_with(&[("TRIBUTARY_MAX_FLOWS", "3")], |app| async move {
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;
        let replies = futures::future::join_all((0..8).map(|i| {
            app.post(
                "/v1/flows",
                token,
                flow(&p.connection_id, &format!("f{i}"), 1),
            )
        }))
        .await;
        let created = replies
            .iter()
            .filter(|r| r.status == StatusCode::CREATED)
            .count();
        assert_eq!(created, 3, "{replies:#?}");
        for refused in replies.iter().filter(|r| r.status != StatusCode::CREATED) {
            assert_eq!(refused.assert_problem(StatusCode::CONFLICT), ["flows"]);
            assert!(
                refused
                    .text
                    .contains("at most 3 flows per tenant (TRIBUTARY_MAX_FLOWS)"),
                "{}",
                refused.text
            );
        }
        let listed = app.get("/v1/flows?limit=100", token).await;
        assert_eq!(listed.body["data"].as_array().unwrap().len(), 3);
        let versions = entity::flow_versions::Entity::find()
            .filter(entity::flow_versions::Column::TenantId.eq(p.tenant.id.as_str()))
            .count(&app.db)
            .await
            .unwrap();
        assert_eq!(versions, 3, "no version of a refused flow was kept");
        assert_eq!(audit_actions(&app, token, "flow.create").await.len(), 3);

        // The limit is per tenant: another tenant still creates flows.
        let other = app.pipeline(json!({})).await;
        let theirs = app
            .post(
                "/v1/flows",
                &other.tenant.token,
                flow(&other.connection_id, "x", 1),
            )
            .await;
        assert_eq!(theirs.status, StatusCode::CREATED, "{}", theirs.text);
    })
    .await;
}

#[tokio::test]
async fn a_flow_with_too_many_steps_is_refused_on_create_replace_and_validate() {
    each_backend_with(&[("TRIBUTARY_MAX_STEPS_PER_FLOW", "4")], |app| async move {
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;
        let message = "at most 4 steps per flow (TRIBUTARY_MAX_STEPS_PER_FLOW)";

        let refused = app
            .post("/v1/flows", token, flow(&p.connection_id, "big", 5))
            .await;
        assert_eq!(
            refused.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
            ["steps"]
        );
        assert!(refused.text.contains(message), "{}", refused.text);
        let listed = app.get("/v1/flows", token).await;
        assert_eq!(listed.body["data"], json!([]));

        let checked = app
            .post(
                "/v1/flows/validate",
                token,
                json!({"flow": flow(&p.connection_id, "big", 5)}),
            )
            .await;
        assert_eq!(checked.status, StatusCode::OK, "{}", checked.text);
        assert_eq!(checked.body["valid"], false);
        assert_eq!(checked.body["errors"][0]["path"], "steps");
        assert_eq!(checked.body["errors"][0]["message"], message);

        let created = app
            .post("/v1/flows", token, flow(&p.connection_id, "fits", 4))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let id = created.str("/id");
        let grown = app
            .call(
                reqwest::Method::PUT,
                &format!("/v1/flows/{id}"),
                Some(token),
                Some(flow(&p.connection_id, "fits", 5)),
            )
            .await;
        assert_eq!(
            grown.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
            ["steps"]
        );
        let stored = app.get(&format!("/v1/flows/{id}"), token).await;
        assert_eq!(stored.body["version"], 1);
        assert_eq!(stored.body["steps"].as_array().unwrap().len(), 4);
    })
    .await;
}

#[tokio::test]
async fn connections_beyond_the_tenant_limit_are_refused_even_when_sent_at_once() {
    each_backend_with(&[("TRIBUTARY_MAX_CONNECTIONS", "2")], |app| async move {
        let tenant = app.signup("Hoarder").await;
        let replies = futures::future::join_all((0..6).map(|i| {
            app.post(
                "/v1/connections",
                &tenant.token,
                json!({"name": format!("c{i}"), "provider": "sandbox"}),
            )
        }))
        .await;
        let created = replies
            .iter()
            .filter(|r| r.status == StatusCode::CREATED)
            .count();
        assert_eq!(created, 2, "{replies:#?}");
        for refused in replies.iter().filter(|r| r.status != StatusCode::CREATED) {
            assert_eq!(
                refused.assert_problem(StatusCode::CONFLICT),
                ["connections"]
            );
            assert!(
                refused
                    .text
                    .contains("at most 2 connections per tenant (TRIBUTARY_MAX_CONNECTIONS)"),
                "{}",
                refused.text
            );
        }
        let listed = app.get("/v1/connections?limit=100", &tenant.token).await;
        assert_eq!(listed.body["data"].as_array().unwrap().len(), 2);
        assert_eq!(
            audit_actions(&app, &tenant.token, "connection.create")
                .await
                .len(),
            2
        );
    })
    .await;
}

#[tokio::test]
async fn a_webhook_flood_is_answered_429_and_other_accounts_still_get_through() {
    each_backend_with(
        &[("TRIBUTARY_WEBHOOK_RATE", "5/minute")],
        |app| async move {
            let flood = app.pipeline(json!({})).await;
            let quiet = app.pipeline(json!({})).await;

            let mut answers = Vec::new();
            for i in 0..8 {
                let event = charge_event(
                    &format!("evt_flood_{i}"),
                    &format!("ch_flood_{i}"),
                    "f@example.com",
                    "F",
                    100,
                    now(),
                );
                answers.push(app.send_event(&flood, &event).await);
            }
            let accepted = answers
                .iter()
                .filter(|r| r.status == StatusCode::OK)
                .count();
            assert_eq!(accepted, 5, "{answers:#?}");
            for refused in answers.iter().filter(|r| r.status != StatusCode::OK) {
                refused.assert_problem(StatusCode::TOO_MANY_REQUESTS);
                let retry_after: u64 = refused
                    .headers
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .expect("a Retry-After in seconds");
                assert!((1..=60).contains(&retry_after), "{retry_after}");
            }
            // What was refused was not stored: Stripe will send it again.
            let stored = events::Entity::find()
                .filter(events::Column::TenantId.eq(flood.tenant.id.as_str()))
                .count(&app.db)
                .await
                .unwrap();
            assert_eq!(stored, 5);

            // Forged requests do not spend another account's rate, and its signed events pass.
            let forged =
                serde_json::to_vec(&charge_event("evt_forged", "ch_x", "x@x.io", "X", 1, now()))
                    .unwrap();
            for _ in 0..8 {
                let reply = app
                    .webhook(&quiet.webhook_path, &forged, Some("t=1,v1=00"))
                    .await;
                assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.text);
            }
            for i in 0..5 {
                let event = charge_event(
                    &format!("evt_quiet_{i}"),
                    "ch_q",
                    "q@example.com",
                    "Q",
                    100,
                    now(),
                );
                let reply = app.send_event(&quiet, &event).await;
                assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
            }
        },
    )
    .await;
}

async fn backdate_event(app: &TestApp, id: &str, days: i64) {
    events::Entity::update_many()
        .set(events::ActiveModel {
            received_at: Set(chrono::Utc::now() - chrono::Duration::days(days)),
            ..Default::default()
        })
        .filter(events::Column::Id.eq(id))
        .exec(&app.db)
        .await
        .unwrap();
}

async fn deliveries_of(app: &TestApp, event_id: &str) -> u64 {
    deliveries::Entity::find()
        .filter(deliveries::Column::EventId.eq(event_id))
        .count(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn finished_events_past_retention_are_pruned_while_new_and_open_ones_stay() {
    let vars = [
        ("TRIBUTARY_RETENTION", "30days"),
        ("TRIBUTARY_AUDIT_RETENTION", "60days"),
        ("TRIBUTARY_RETENTION_INTERVAL", "200ms"),
    ];
    each_backend_with(&vars, |app| async move {
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;
        let created = app
            .post("/v1/flows", token, charge_flow(&p.connection_id))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let ids = deliver_old_open_and_new(&app, &p).await;
        let (old, open, new) = (&ids[0], &ids[1], &ids[2]);
        let old_deliveries = deliveries_of(&app, old).await;
        assert!(old_deliveries > 0);
        let links = record_links_of(&app, &p.tenant.id).await;
        let events_series = r#"tributary_pruned_total{kind="events"}"#;
        let deliveries_series = r#"tributary_pruned_total{kind="deliveries"}"#;
        let events_before = metric(&app, events_series).await.unwrap_or(0.0);
        let deliveries_before = metric(&app, deliveries_series).await.unwrap_or(0.0);

        let entries = age_events_and_audit_entries(&app, &p, old, open).await;
        check_old_event_pruned_and_others_kept(&app, &p, [old, open, new], links).await;
        check_old_audit_entry_pruned(&app, &entries).await;

        let (events_pruned, deliveries_pruned) = wait_for(20, "the pruning metrics", || async {
            let events = metric(&app, events_series).await.unwrap_or(0.0) - events_before;
            let deliveries =
                metric(&app, deliveries_series).await.unwrap_or(0.0) - deliveries_before;
            (events >= 1.0 && deliveries >= old_deliveries as f64).then_some((events, deliveries))
        })
        .await;
        assert!(events_pruned >= 1.0 && deliveries_pruned >= old_deliveries as f64);
    })
    .await;
}

/// Delivers the charges that become the old, the open and the new event; returns their ids.
async fn deliver_old_open_and_new(app: &TestApp, p: &Pipeline) -> Vec<String> {
    let mut ids = Vec::new();
    for name in ["old", "open", "new"] {
        let event = charge_event(
            &format!("evt_{name}"),
            &format!("ch_{name}"),
            &format!("{name}@example.com"),
            "Ret Ention",
            100,
            now(),
        );
        let done = app.deliver(p, &event).await;
        assert_eq!(done["status"], "processed", "{done}");
        ids.push(done["id"].as_str().unwrap().to_string());
    }
    ids
}

/// Counts the record links the tenant holds.
async fn record_links_of(app: &TestApp, tenant_id: &str) -> u64 {
    record_links::Entity::find()
        .filter(record_links::Column::TenantId.eq(tenant_id))
        .count(&app.db)
        .await
        .unwrap()
}

/// Ages the old and open events (the open one still waiting) and two audit entries.
async fn age_events_and_audit_entries(
    app: &TestApp,
    p: &Pipeline,
    old: &str,
    open: &str,
) -> Vec<audit_log::Model> {
    // Two events of 40 days ago; one still has a delivery waiting on its connection (made
    // to wait before it is backdated: the loop runs every 200 ms and would take it first).
    deliveries::Entity::update_many()
        .set(deliveries::ActiveModel {
            status: Set("waiting".into()),
            ..Default::default()
        })
        .filter(deliveries::Column::EventId.eq(open))
        .exec(&app.db)
        .await
        .unwrap();
    backdate_event(app, old, 40).await;
    backdate_event(app, open, 40).await;
    // Audit entries of 70 and 40 days ago.
    let entries = audit_log::Entity::find()
        .filter(audit_log::Column::TenantId.eq(p.tenant.id.as_str()))
        .all(&app.db)
        .await
        .unwrap();
    assert!(entries.len() >= 2);
    for (entry, days) in entries.iter().zip([70, 40]) {
        audit_log::Entity::update_many()
            .set(audit_log::ActiveModel {
                created_at: Set(chrono::Utc::now() - chrono::Duration::days(days)),
                ..Default::default()
            })
            .filter(audit_log::Column::Id.eq(entry.id.as_str()))
            .exec(&app.db)
            .await
            .unwrap();
    }
    entries
}

/// Waits for the old event to be pruned with its deliveries and checks what is kept.
async fn check_old_event_pruned_and_others_kept(
    app: &TestApp,
    p: &Pipeline,
    [old, open, new]: [&str; 3],
    links: u64,
) {
    let token = &p.tenant.token;
    wait_for(20, "the old event to be pruned", || async {
        let gone = events::Entity::find_by_id(old)
            .one(&app.db)
            .await
            .unwrap()
            .is_none();
        gone.then_some(())
    })
    .await;
    assert_eq!(
        deliveries_of(app, old).await,
        0,
        "its deliveries went with it"
    );
    let reply = app.get(&format!("/v1/events/{old}"), token).await;
    reply.assert_problem(StatusCode::NOT_FOUND);
    for kept in [open, new] {
        let reply = app.get(&format!("/v1/events/{kept}"), token).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert!(deliveries_of(app, kept).await > 0);
    }
    let links_after = record_links_of(app, &p.tenant.id).await;
    assert_eq!(links_after, links, "record links are kept");
}

/// Waits for the 70-day audit entry to be pruned and checks that the newer ones stay.
async fn check_old_audit_entry_pruned(app: &TestApp, entries: &[audit_log::Model]) {
    wait_for(20, "the 70-day audit entry to be pruned", || async {
        let gone = audit_log::Entity::find_by_id(entries[0].id.clone())
            .one(&app.db)
            .await
            .unwrap()
            .is_none();
        gone.then_some(())
    })
    .await;
    for entry in &entries[1..] {
        assert!(
            audit_log::Entity::find_by_id(entry.id.clone())
                .one(&app.db)
                .await
                .unwrap()
                .is_some(),
            "newer audit entries stay"
        );
    }
}

/// Every text the database holds for a tenant's events, deliveries and sandbox records, for
/// searching what is left.
async fn stored_text(app: &TestApp, tenant_id: &str) -> String {
    let mut text = String::new();
    for e in events::Entity::find()
        .filter(events::Column::TenantId.eq(tenant_id))
        .all(&app.db)
        .await
        .unwrap()
    {
        text.push_str(&format!("{e:?}\n"));
    }
    for d in deliveries::Entity::find()
        .filter(deliveries::Column::TenantId.eq(tenant_id))
        .all(&app.db)
        .await
        .unwrap()
    {
        text.push_str(&format!("{d:?}\n"));
    }
    for r in sandbox_records::Entity::find()
        .filter(sandbox_records::Column::TenantId.eq(tenant_id))
        .all(&app.db)
        .await
        .unwrap()
    {
        text.push_str(&format!("{r:?}\n"));
    }
    text.to_lowercase()
}

async fn with_charge_flow(app: &TestApp) -> Pipeline {
    let p = app.pipeline(json!({})).await;
    let created = app
        .post("/v1/flows", &p.tenant.token, charge_flow(&p.connection_id))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    p
}

#[tokio::test]
async fn an_erasure_redacts_one_persons_data_in_one_tenant_only() {
    tributary_tests::each_backend(|app| async move {
        let email = "Gone.Person@Example.com";
        let lower = email.to_lowercase();
        let a = with_charge_flow(&app).await;
        let b = with_charge_flow(&app).await;
        let token = &a.tenant.token;

        let gone_event = charge_event("evt_gone", "ch_gone", email, "Gone Person", 4200, now());
        let gone = app.deliver(&a, &gone_event).await;
        let stays = app
            .deliver(
                &a,
                &charge_event(
                    "evt_stays",
                    "ch_stays",
                    "stays@example.com",
                    "Stays",
                    100,
                    now(),
                ),
            )
            .await;
        let theirs = app
            .deliver(
                &b,
                &charge_event("evt_gone", "ch_gone", email, "Gone Person", 4200, now()),
            )
            .await;
        assert!(stored_text(&app, &a.tenant.id).await.contains(&lower));
        let gone_id = gone["id"].as_str().unwrap();
        let touched_deliveries = gone["deliveries"].as_array().unwrap().len() as u64;
        let touched_records = sandbox_records::Entity::find()
            .filter(sandbox_records::Column::TenantId.eq(a.tenant.id.as_str()))
            .all(&app.db)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| format!("{r:?}").to_lowercase().contains(&lower))
            .count() as u64;
        assert!(touched_deliveries > 0 && touched_records > 0);

        check_erasure_refusals(&app, &a, email).await;

        let erased = app
            .post("/v1/erasures", token, json!({"email": email}))
            .await;
        assert_eq!(erased.status, StatusCode::OK, "{}", erased.text);
        assert_eq!(erased.body["events"], 1);
        assert_eq!(erased.body["deliveries"], touched_deliveries);
        assert_eq!(erased.body["sandbox_records"], touched_records);
        let hash = erased.str("/email_hash");
        assert!(!erased.text.to_lowercase().contains(&lower));

        check_nothing_left_of_the_address(&app, &a, email, gone_id, &stays).await;
        check_erased_event_is_not_stored_or_run_again(&app, &a, email, &gone_event, gone_id).await;
        check_other_tenant_keeps_its_data(&app, &b, email, &theirs).await;

        // The audit log records the erasure by its hash, never the address.
        let logged = audit_actions(&app, token, "erasure.create").await;
        assert_eq!(logged.len(), 1, "{logged:?}");
        assert_eq!(logged[0]["resource_id"], hash.as_str());
        let audit = app.get("/v1/audit-log?limit=100", token).await;
        assert!(!audit.text.to_lowercase().contains(&lower));
    })
    .await;
}

/// Checks that a member may not erase, that a bad address names the field, and nothing changed.
async fn check_erasure_refusals(app: &TestApp, a: &Pipeline, email: &str) {
    let token = &a.tenant.token;
    let lower = email.to_lowercase();
    let (_, member) = app.user_with_role(&a.tenant, "member").await;
    app.post("/v1/erasures", &member, json!({"email": email}))
        .await
        .assert_problem(StatusCode::FORBIDDEN);
    for bad in [json!({"email": "not-an-address"}), json!({})] {
        let reply = app.post("/v1/erasures", token, bad).await;
        assert_eq!(
            reply.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
            ["email"]
        );
    }
    assert!(stored_text(app, &a.tenant.id).await.contains(&lower));
}

/// Checks that nothing of the address is left in the tenant and its other customer is untouched.
async fn check_nothing_left_of_the_address(
    app: &TestApp,
    a: &Pipeline,
    email: &str,
    gone_id: &str,
    stays: &Value,
) {
    let token = &a.tenant.token;
    let lower = email.to_lowercase();
    // Nothing of the address is left in the tenant, through the API or in the database.
    assert!(!stored_text(app, &a.tenant.id).await.contains(&lower));
    let event = app.get(&format!("/v1/events/{gone_id}"), token).await;
    assert_eq!(event.status, StatusCode::OK);
    assert!(
        !event.text.to_lowercase().contains(&lower),
        "{}",
        event.text
    );
    assert!(event.body["redacted_at"].is_string(), "{}", event.text);
    assert_eq!(event.body["stripe_event_id"], "evt_gone");
    let contacts = app.records(token, &a.connection_id, "contacts").await;
    assert!(!json!(contacts).to_string().to_lowercase().contains(&lower));
    // The other customer of the same tenant is untouched.
    let kept = app
        .get(
            &format!("/v1/events/{}", stays["id"].as_str().unwrap()),
            token,
        )
        .await;
    assert!(kept.text.contains("stays@example.com"));
    assert!(kept.body["redacted_at"].is_null());
}

/// Checks that Stripe sending the erased event again stores nothing, and that it cannot replay.
async fn check_erased_event_is_not_stored_or_run_again(
    app: &TestApp,
    a: &Pipeline,
    email: &str,
    gone_event: &Value,
    gone_id: &str,
) {
    let token = &a.tenant.token;
    let lower = email.to_lowercase();
    // Stripe sending the event again is a duplicate: the address is not stored again.
    let again = app.send_event(a, gone_event).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.body["duplicate"], true);
    assert!(!stored_text(app, &a.tenant.id).await.contains(&lower));
    // And an erased event cannot run again.
    app.post(&format!("/v1/events/{gone_id}/replay"), token, json!({}))
        .await
        .assert_problem(StatusCode::CONFLICT);
}

/// Checks that another tenant's data about the same address is theirs, and stays.
async fn check_other_tenant_keeps_its_data(
    app: &TestApp,
    b: &Pipeline,
    email: &str,
    theirs: &Value,
) {
    let lower = email.to_lowercase();
    let theirs_now = app
        .get(
            &format!("/v1/events/{}", theirs["id"].as_str().unwrap()),
            &b.tenant.token,
        )
        .await;
    assert!(theirs_now.text.to_lowercase().contains(&lower));
    let their_contacts = app
        .records(&b.tenant.token, &b.connection_id, "contacts")
        .await;
    assert!(
        json!(their_contacts)
            .to_string()
            .to_lowercase()
            .contains(&lower)
    );
}
