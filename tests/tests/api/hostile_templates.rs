//! Hostile templates: a tenant's template can't take the process's memory, read the secret
//! generator's seed, or run previews without limit.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tributary_tests::{Pipeline, TestApp, charge_event, each_backend};

/// A thousand times a hundred megabytes (the charge's amount is 100): aborted the process
/// before templates were bounded. The count comes from the event, so it is not a constant the
/// flow's validation could see.
const BOMB: &str = "{% for i in range(1000) %}{{ \"x\" * (object.amount * 1000000) }}{% endfor %}";

/// Peak and current resident memory of this process (the app runs in it), in megabytes.
fn memory_mb() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

async fn flow_with(app: &TestApp, p: &Pipeline, fields: Value) -> String {
    let flow = json!({
        "name": "Hostile", "connection_id": p.connection_id,
        "trigger": {"events": ["charge.succeeded"]},
        "steps": [{"id": "contact", "action": "upsert", "object": "contacts",
                   "match": {"email": "{{ object.billing_details.email }}"},
                   "fields": fields}]
    });
    let created = app.post("/v1/flows", &p.tenant.token, flow).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    created.str("/id")
}

#[tokio::test]
async fn hostile_templates_a_bomb_in_preview_is_refused_naming_the_field() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;
        let id = flow_with(&app, &p, json!({"note": BOMB})).await;
        let event = charge_event("evt_b", "ch_b", "b@x.co", "B X", 100, 1_700_000_000);
        let preview = app.post(&format!("/v1/flows/{id}/preview"), token, json!({"event": event})).await;
        assert_eq!(preview.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", preview.text);
        assert!(preview.text.contains("fields.note"), "{}", preview.text);
        assert!(preview.text.contains("limit"), "{}", preview.text);

        // Nested repetition and a join of a huge list are refused the same way.
        for bomb in [
            "{{ (\"x\" * (object.amount * 1000)) * 1000 }}",
            "{{ ([\"x\" * 60000] * (object.amount * 100)) | join(\"\") }}",
            "{% set ns = namespace(s=\"xxxxxxxx\") %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
        ] {
            let id = flow_with(&app, &p, json!({"note": bomb})).await;
            let preview = app.post(&format!("/v1/flows/{id}/preview"), token, json!({"event": event})).await;
            assert_eq!(preview.status, StatusCode::UNPROCESSABLE_ENTITY, "{bomb}: {}", preview.text);
            assert!(preview.text.contains("fields.note"), "{bomb}: {}", preview.text);
        }

        // The same bomb written with constants is refused when the flow is saved.
        let flow = json!({
            "name": "Constant", "connection_id": p.connection_id,
            "trigger": {"events": ["charge.succeeded"]},
            "steps": [{"id": "contact", "action": "upsert", "object": "contacts",
                       "match": {"email": "{{ object.billing_details.email }}"},
                       "fields": {"note": "{% for i in range(1000) %}{{ \"x\" * 100000000 }}{% endfor %}"}}]
        });
        let refused = app.post("/v1/flows", token, flow).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.text);
        assert!(refused.text.contains("steps[0].fields.note"), "{}", refused.text);

        // The process is still up and answers.
        let fine = flow_with(&app, &p, json!({"note": "{{ object.id }}"})).await;
        let preview = app.post(&format!("/v1/flows/{fine}/preview"), token, json!({"event": event})).await;
        assert_eq!(preview.status, StatusCode::OK, "{}", preview.text);
        let (peak, now) = memory_mb();
        assert!(peak < 300 && now < 300, "peak {peak} MB, now {now} MB");
    })
    .await;
}

#[tokio::test]
async fn hostile_templates_a_bomb_in_a_live_flow_fails_its_delivery_only() {
    each_backend(|app| async move {
        let attacker = app.pipeline(json!({})).await;
        flow_with(&app, &attacker, json!({"note": BOMB})).await;
        let done = app
            .deliver(
                &attacker,
                &charge_event("evt_l", "ch_l", "l@x.co", "L X", 100, 1_700_000_000),
            )
            .await;
        assert_eq!(done["status"], "failed", "{done}");
        let delivery = &done["deliveries"][0];
        let message = delivery["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("fields.note") && message.contains("limit"),
            "{delivery}"
        );

        // Another tenant's event still goes through.
        let other = app.pipeline(json!({})).await;
        flow_with(
            &app,
            &other,
            json!({"name": "{{ object.billing_details.name }}"}),
        )
        .await;
        let done = app
            .deliver(
                &other,
                &charge_event("evt_o", "ch_o", "o@x.co", "O X", 100, 1_700_000_000),
            )
            .await;
        assert_eq!(done["status"], "processed", "{done}");
        let contacts = app
            .records(&other.tenant.token, &other.connection_id, "contacts")
            .await;
        assert_eq!(contacts.len(), 1);
        let (peak, now) = memory_mb();
        assert!(peak < 300 && now < 300, "peak {peak} MB, now {now} MB");
    })
    .await;
}

#[tokio::test]
async fn hostile_templates_debug_is_refused_and_the_seed_stays_hidden() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;
        let event = charge_event("evt_d", "ch_d", "d@x.co", "D X", 100, 1_700_000_000);
        let flow = json!({
            "name": "Dump", "connection_id": p.connection_id,
            "trigger": {"events": ["charge.succeeded"]},
            "steps": [{"id": "contact", "action": "upsert", "object": "contacts",
                       "match": {"email": "{{ object.billing_details.email }}"},
                       "fields": {"note": "{{ debug() }}"}}]
        });
        let refused = app.post("/v1/flows", token, flow.clone()).await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.text);
        assert!(refused.text.contains("steps[0].fields.note"), "{}", refused.text);
        assert!(refused.text.contains("debug() is not allowed"), "{}", refused.text);
        let checked = app.post("/v1/flows/validate", token, json!({"flow": flow})).await;
        assert_eq!(checked.body["valid"], false, "{}", checked.text);

        let id = flow_with(
            &app,
            &p,
            json!({"note": "{{ event }}{{ object }}{{ steps }}{{ settings }}", "password": "{{ password() }}"}),
        )
        .await;
        let preview = app.post(&format!("/v1/flows/{id}/preview"), token, json!({"event": event})).await;
        assert_eq!(preview.status, StatusCode::OK, "{}", preview.text);
        assert!(!preview.text.contains("__generator") && !preview.text.contains("seed"), "{}", preview.text);
        let refused = app.post(&format!("/v1/flows/{id}/preview"), token, json!({"event": event})).await;
        assert_eq!(refused.status, StatusCode::OK);
    })
    .await;
}

#[tokio::test]
async fn hostile_templates_previews_are_rate_limited_per_tenant() {
    each_backend(|app| async move {
        let attacker = app.pipeline(json!({})).await;
        let id = flow_with(&app, &attacker, json!({"note": "{{ object.id }}"})).await;
        let event = charge_event("evt_r", "ch_r", "r@x.co", "R X", 100, 1_700_000_000);
        let mut limited = None;
        for _ in 0..200 {
            let reply = app
                .post(
                    &format!("/v1/flows/{id}/preview"),
                    &attacker.tenant.token,
                    json!({"event": event}),
                )
                .await;
            if reply.status == StatusCode::TOO_MANY_REQUESTS {
                limited = Some(reply);
                break;
            }
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        }
        let limited = limited.expect("previews past 60 a minute are refused");
        let retry: u64 = limited.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(retry >= 1, "{retry}");

        let other = app.pipeline(json!({})).await;
        let id = flow_with(&app, &other, json!({"note": "{{ object.id }}"})).await;
        let reply = app
            .post(
                &format!("/v1/flows/{id}/preview"),
                &other.tenant.token,
                json!({"event": event}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    })
    .await;
}
