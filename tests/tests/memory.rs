//! Template bombs against the process's memory, in a test binary of their own so that the
//! process's peak resident memory measures them and nothing else: a bomb in a preview or in a
//! live flow leaves the process up and under [`CEILING_MB`].

use reqwest::StatusCode;
use serde_json::json;
use tributary_tests::{charge_event, each_backend};

/// A thousand times a hundred megabytes (the charge's amount is 100): aborted the process
/// before templates were bounded. The count comes from the event, so it is not a constant the
/// flow's validation could see.
const BOMB: &str = "{% for i in range(1000) %}{{ \"x\" * (object.amount * 1000000) }}{% endfor %}";

/// The most this process may hold, both tests and their three backends' apps included. Without
/// the bounds each bomb emits 100 MB per loop turn into one output, so it passes this within
/// a few turns. The process itself, bounded, peaks at 273–305 MB in most runs and near 400 MB
/// in about one run in six (measured with `/usr/bin/time -v` on this binary); 300 MB, the
/// ceiling before, failed those runs.
const CEILING_MB: u64 = 512;

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

#[tokio::test]
async fn hostile_templates_a_bomb_in_preview_is_refused_naming_the_field() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;
        let id = app.contact_flow(&p, json!({"note": BOMB})).await;
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
            let id = app.contact_flow(&p, json!({"note": bomb})).await;
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
        let fine = app.contact_flow(&p, json!({"note": "{{ object.id }}"})).await;
        let preview = app.post(&format!("/v1/flows/{fine}/preview"), token, json!({"event": event})).await;
        assert_eq!(preview.status, StatusCode::OK, "{}", preview.text);
        let (peak, now) = memory_mb();
        assert!(
            peak < CEILING_MB && now < CEILING_MB,
            "peak {peak} MB, now {now} MB"
        );
    })
    .await;
}

#[tokio::test]
async fn hostile_templates_a_bomb_in_a_live_flow_fails_its_delivery_only() {
    each_backend(|app| async move {
        let attacker = app.pipeline(json!({})).await;
        app.contact_flow(&attacker, json!({"note": BOMB})).await;
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
        app.contact_flow(&other, json!({"name": "{{ object.billing_details.name }}"}))
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
        assert!(
            peak < CEILING_MB && now < CEILING_MB,
            "peak {peak} MB, now {now} MB"
        );
    })
    .await;
}
