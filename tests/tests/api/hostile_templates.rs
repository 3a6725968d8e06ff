//! Hostile templates: a tenant's template can't take the process's memory, read the secret
//! generator's seed, or run previews without limit.

use reqwest::StatusCode;
use serde_json::json;
use tributary_tests::{charge_event, each_backend};

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

        let id = app.contact_flow(&p,
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
        let id = app
            .contact_flow(&attacker, json!({"note": "{{ object.id }}"}))
            .await;
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
        let id = app
            .contact_flow(&other, json!({"note": "{{ object.id }}"}))
            .await;
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
