//! Dry-run replay: a draft or a stored version run on ~100 stored events and compared with what
//! the flow's deliveries sent, writing nothing anywhere. An id in `event_ids` the caller's inbox
//! does not have (another tenant's) answers 404 naming `event_ids`. Past 500 events a run is a
//! bulk job (`"background": true`) whose answer comes with its progress.

use std::collections::HashMap;

use entity::{TenantOwned, deliveries, delivery_attempts, events, sandbox_records};
use reqwest::StatusCode;
use sea_orm::{ColumnTrait, PaginatorTrait, QueryFilter, QueryOrder};
use serde_json::{Value, json};
use tributary_tests::{Pipeline, TestApp, charge_event, each_backend, wait_for};

const EVENTS: i64 = 100;

/// A contact per charge, `gold` from `threshold` cents on.
fn tiers(connection_id: &str, threshold: i64) -> Value {
    json!({"name": "Tiers", "connection_id": connection_id,
        "trigger": {"events": ["charge.succeeded"]},
        "steps": [{"id": "contact", "action": "upsert", "object": "contacts",
            "match": {"email": "{{ object.billing_details.email }}"},
            "fields": {"name": "{{ object.billing_details.name }}",
                       "tier": format!("{{{{ 'gold' if object.amount >= {threshold} else 'silver' }}}}")}}]})
}

/// Sends charges of 1.00 to 100.00 (by 1.00) at once, waits until all ran; event id → amount.
async fn charges(app: &TestApp, p: &Pipeline) -> HashMap<String, i64> {
    let now = chrono::Utc::now().timestamp();
    let mut sent = HashMap::new();
    for n in 1..=EVENTS {
        let event = charge_event(
            &format!("evt_dry{n}"),
            &format!("ch_dry{n}"),
            &format!("c{n}@dry.run"),
            &format!("Customer {n}"),
            n * 100,
            now,
        );
        let reply = app.send_event(p, &event).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        sent.insert(reply.str("/event_id"), n * 100);
    }
    let tenant = p.tenant.id.clone();
    wait_for(120, "every event processed", || {
        let tenant = tenant.clone();
        async move {
            let done = events::Entity::find_in_tenant(&tenant)
                .filter(events::Column::Status.eq("processed"))
                .count(&app.db)
                .await
                .unwrap();
            (done == EVENTS as u64).then_some(())
        }
    })
    .await;
    sent
}

/// Everything a write would change: the sandbox's records, deliveries, attempts, events.
async fn written(
    app: &TestApp,
    tenant: &str,
) -> (Vec<sandbox_records::Model>, u64, u64, Vec<String>) {
    let records = sandbox_records::Entity::find_in_tenant(tenant)
        .order_by_asc(sandbox_records::Column::Id)
        .all(&app.db)
        .await
        .unwrap();
    let deliveries = deliveries::Entity::find_in_tenant(tenant)
        .count(&app.db)
        .await
        .unwrap();
    let attempts = delivery_attempts::Entity::find_in_tenant(tenant)
        .count(&app.db)
        .await
        .unwrap();
    let events = events::Entity::find_in_tenant(tenant)
        .order_by_asc(events::Column::Id)
        .all(&app.db)
        .await
        .unwrap()
        .into_iter()
        .map(|e| format!("{} {} {}", e.id, e.status, e.runs))
        .collect();
    (records, deliveries, attempts, events)
}

async fn dry_run(app: &TestApp, token: &str, flow_id: &str, body: Value) -> tributary_tests::Reply {
    app.post(&format!("/v1/flows/{flow_id}/dry-run"), token, body)
        .await
}

#[tokio::test]
async fn a_draft_dry_run_names_exactly_what_would_change_and_writes_nothing() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;
        let created = app.post("/v1/flows", token, tiers(&p.connection_id, 10_000)).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let flow_id = created.str("/id");
        let amounts = charges(&app, &p).await;
        let before = written(&app, &p.tenant.id).await;
        assert_eq!(before.0.len(), EVENTS as usize);

        // The draft makes 50.00 and up gold: 50.00 to 99.00 change, 100.00 was gold already.
        let draft = tiers(&p.connection_id, 5_000);
        let reply = dry_run(&app, token, &flow_id, json!({"flow": draft, "limit": 500})).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        let out = &reply.body;
        assert_eq!(out["events"], EVENTS, "{}", reply.text);
        assert_eq!((out["changed"].clone(), out["failing"].clone()), (json!(50), json!(0)));
        assert_eq!((out["version"].clone(), out["current_version"].clone()), (Value::Null, json!(1)));
        for result in out["results"].as_array().unwrap() {
            let amount = amounts[result["event_id"].as_str().unwrap()];
            assert!(result["stripe_event_id"].as_str().unwrap().starts_with("evt_dry"));
            assert_eq!(result["delivered"], true);
            assert_eq!(result["operations"][0]["fields"]["tier"], if amount >= 5_000 { "gold" } else { "silver" });
            let expected = if (5_000..10_000).contains(&amount) {
                json!([{"step": "contact", "field": "fields.tier", "change": "changed", "before": "silver", "after": "gold"}])
            } else {
                json!([])
            };
            assert_eq!(result["changes"], expected, "amount {amount}");
        }

        // The current version against its own deliveries: nothing changes; a stored version
        // by number is the same.
        for body in [json!({}), json!({"version": 1, "filter": {"type": "charge.succeeded"}})] {
            let same = dry_run(&app, token, &flow_id, body).await;
            assert_eq!(same.status, StatusCode::OK, "{}", same.text);
            assert_eq!((same.body["events"].clone(), same.body["changed"].clone()), (json!(100), json!(0)), "{}", same.text);
        }
        // Chosen events, in the order given; a filter narrows by time and status.
        let ids: Vec<&String> = amounts.keys().take(3).collect();
        let chosen = dry_run(&app, token, &flow_id, json!({"flow": tiers(&p.connection_id, 5_000), "event_ids": ids})).await;
        let got: Vec<&str> = chosen.body["results"].as_array().unwrap().iter().map(|r| r["event_id"].as_str().unwrap()).collect();
        assert_eq!(got, ids.iter().map(|s| s.as_str()).collect::<Vec<_>>(), "{}", chosen.text);
        let none = dry_run(&app, token, &flow_id, json!({"filter": {"status": "failed"}})).await;
        assert_eq!(none.body["events"], 0, "{}", none.text);

        // A flow that never ran on these events compares against nothing: all added.
        let fresh = app.post("/v1/flows", token, tiers(&p.connection_id, 10_000)).await.str("/id");
        let added = dry_run(&app, token, &fresh, json!({"limit": 5})).await;
        assert_eq!((added.body["events"].clone(), added.body["changed"].clone()), (json!(5), json!(5)), "{}", added.text);
        let first = &added.body["results"][0];
        assert_eq!(first["delivered"], false);
        assert!(first["changes"].as_array().unwrap().iter().all(|c| c["change"] == "added" && c["before"].is_null()));
        assert!(first["changes"].as_array().unwrap().iter().any(|c| c["field"] == "match.email"));

        assert_eq!(written(&app, &p.tenant.id).await, before, "a dry run writes nothing");
    })
    .await;
}

#[tokio::test]
async fn dry_run_refusals_failures_and_tenants() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;
        let flow_id = app
            .post("/v1/flows", token, tiers(&p.connection_id, 10_000))
            .await
            .str("/id");
        let now = chrono::Utc::now().timestamp();
        for n in 1..=10 {
            app.deliver(
                &p,
                &charge_event(
                    &format!("evt_f{n}"),
                    &format!("ch_f{n}"),
                    &format!("f{n}@dry.run"),
                    "F",
                    n * 1_000,
                    now,
                ),
            )
            .await;
        }
        let before = written(&app, &p.tenant.id).await;

        let both = dry_run(
            &app,
            token,
            &flow_id,
            json!({"version": 1, "flow": tiers(&p.connection_id, 1)}),
        )
        .await;
        let mut fields = both.assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
        fields.sort();
        assert_eq!(fields, ["flow", "version"]);
        let over = dry_run(&app, token, &flow_id, json!({"limit": 501})).await;
        assert_eq!(
            over.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
            ["limit"]
        );
        let unknown = dry_run(&app, token, &flow_id, json!({"version": 4})).await;
        assert_eq!(unknown.assert_problem(StatusCode::NOT_FOUND), ["version"]);

        // A template the engine refuses: the draft fails on every event.
        let mut broken = tiers(&p.connection_id, 1);
        broken["steps"][0]["fields"]["tier"] = json!("{{ object.amount | no_such_filter }}");
        let failed = dry_run(&app, token, &flow_id, json!({"flow": broken})).await;
        assert_eq!(failed.status, StatusCode::OK, "{}", failed.text);
        assert_eq!(
            (
                failed.body["events"].clone(),
                failed.body["failing"].clone()
            ),
            (json!(10), json!(10)),
            "{}",
            failed.text
        );
        assert_eq!(
            failed.body["errors"][0]["path"], "steps[0].fields.tier",
            "{}",
            failed.text
        );
        // One that fails only where its match renders empty: from 50.00 on.
        let mut partial = tiers(&p.connection_id, 10_000);
        partial["steps"][0]["match"]["email"] =
            json!("{{ object.billing_details.email if object.amount < 5000 else '' }}");
        let some = dry_run(&app, token, &flow_id, json!({"flow": partial})).await;
        assert_eq!(
            (some.body["failing"].clone(), some.body["changed"].clone()),
            (json!(6), json!(0)),
            "{}",
            some.text
        );
        let failing = some.body["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["failing"] == true)
            .unwrap();
        assert!(
            failing["errors"][0]["path"]
                .as_str()
                .unwrap()
                .starts_with("steps[0]"),
            "{failing}"
        );
        assert_eq!(failing["operations"], json!([]));

        // Another tenant's events and flows are not found.
        let q = app.pipeline(json!({})).await;
        let theirs = app
            .deliver(
                &q,
                &charge_event("evt_q", "ch_q", "q@dry.run", "Q", 100, now),
            )
            .await;
        let their_id = theirs["id"].as_str().unwrap();
        let crossed = dry_run(&app, token, &flow_id, json!({"event_ids": [their_id]})).await;
        assert_eq!(crossed.assert_problem(StatusCode::NOT_FOUND), ["event_ids"]);
        assert!(!crossed.text.contains("q@dry.run"));
        let their_flow = dry_run(&app, &q.tenant.token, &flow_id, json!({})).await;
        their_flow.assert_problem(StatusCode::NOT_FOUND);
        // Members may dry-run: it reads and writes nothing.
        let (_, member) = app.user_with_role(&p.tenant, "member").await;
        let read = dry_run(&app, &member, &flow_id, json!({"limit": 2})).await;
        assert_eq!(read.status, StatusCode::OK, "{}", read.text);

        assert_eq!(
            written(&app, &p.tenant.id).await,
            before,
            "a dry run writes nothing"
        );
    })
    .await;
}

/// Follows a bulk job until it is done or failed.
async fn finished_job(app: &TestApp, token: &str, job_id: &str) -> Value {
    wait_for(60, "the dry-run job finished", || async move {
        let job = app.get(&format!("/v1/bulk-jobs/{job_id}"), token).await;
        assert_eq!(job.status, StatusCode::OK, "{}", job.text);
        (job.body["status"] == "done" || job.body["status"] == "failed").then_some(job.body)
    })
    .await
}

#[tokio::test]
async fn a_large_dry_run_is_a_bulk_job_with_progress_and_the_same_answer() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;
        let flow_id = app
            .post("/v1/flows", token, tiers(&p.connection_id, 10_000))
            .await
            .str("/id");
        let amounts = charges(&app, &p).await;
        let before = written(&app, &p.tenant.id).await;
        let draft = tiers(&p.connection_id, 5_000);

        // Past 500 events an answered run says how to ask for a background one.
        let over = dry_run(
            &app,
            token,
            &flow_id,
            json!({"flow": draft, "limit": 2_000}),
        )
        .await;
        assert_eq!(
            over.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
            ["limit"]
        );
        assert!(
            over.text.contains("\\\"background\\\": true"),
            "{}",
            over.text
        );
        // Only admins start one.
        let (_, member) = app.user_with_role(&p.tenant, "member").await;
        let body = json!({"flow": draft, "limit": 2_000, "background": true});
        dry_run(&app, &member, &flow_id, body.clone())
            .await
            .assert_problem(StatusCode::FORBIDDEN);

        let accepted = dry_run(&app, token, &flow_id, body).await;
        assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.text);
        assert_eq!(
            accepted.body["count"], EVENTS,
            "every stored charge: {}",
            accepted.text
        );
        let job = finished_job(&app, token, &accepted.str("/job_id")).await;
        assert_eq!(job["status"], "done", "{job}");
        assert_eq!(
            (
                job["kind"].clone(),
                job["total"].clone(),
                job["done"].clone(),
                job["failed"].clone()
            ),
            (json!("dry_run"), json!(EVENTS), json!(EVENTS), json!(0)),
            "{job}"
        );
        // The same answer as an answered run, listing only the events that change.
        let out = &job["dry_run"];
        assert_eq!(
            (
                out["events"].clone(),
                out["changed"].clone(),
                out["failing"].clone()
            ),
            (json!(EVENTS), json!(50), json!(0)),
            "{out}"
        );
        assert_eq!(
            (out["version"].clone(), out["current_version"].clone()),
            (Value::Null, json!(1))
        );
        let results = out["results"].as_array().unwrap();
        assert_eq!(results.len(), 50, "{out}");
        for result in results {
            let amount = amounts[result["event_id"].as_str().unwrap()];
            assert!(
                (5_000..10_000).contains(&amount),
                "only changed events are listed: {amount}"
            );
            assert_eq!(
                result["changes"],
                json!([{"step": "contact", "field": "fields.tier",
                "change": "changed", "before": "silver", "after": "gold"}])
            );
        }
        let ids: Vec<&str> = results
            .iter()
            .map(|r| r["event_id"].as_str().unwrap())
            .collect();
        let mut newest_first = ids.clone();
        newest_first.sort_by(|a, b| b.cmp(a));
        assert_eq!(ids, newest_first);
        assert_eq!(
            written(&app, &p.tenant.id).await,
            before,
            "a dry run writes nothing"
        );
    })
    .await;
}
