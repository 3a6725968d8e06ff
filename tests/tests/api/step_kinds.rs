//! The `log` step kind end to end: validated, previewed, recorded on its delivery and read by
//! the next step.

use reqwest::StatusCode;
use serde_json::json;
use tributary_tests::{charge_event, each_backend};

#[tokio::test]
async fn a_log_step_records_its_message_for_the_history_and_the_next_step() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;

        // What it needs, and what it refuses, named by field.
        let bad = app
            .post(
                "/v1/flows",
                token,
                json!({"name": "Log", "connection_id": p.connection_id,
                       "trigger": {"events": ["charge.succeeded"]},
                       "steps": [{"id": "note", "action": "log", "fields": {"a": "b"}}]}),
            )
            .await;
        let mut fields = bad.assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
        fields.sort();
        assert_eq!(fields, ["steps[0].fields", "steps[0].message"]);

        let flow = json!({
            "name": "Logged charges", "connection_id": p.connection_id,
            "trigger": {"events": ["charge.succeeded"]},
            "steps": [
                {"id": "note", "action": "log",
                 "message": "paid {{ object.amount | format_amount(object.currency) }} {{ object.currency | upper }}"},
                {"id": "contact", "action": "upsert", "object": "contacts",
                 "match": {"email": "{{ object.billing_details.email }}"},
                 "fields": {"last_payment": "{{ steps.note.response.message }}"}}
            ]
        });
        let created = app.post("/v1/flows", token, flow).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let flow_id = created.str("/id");
        let event = charge_event(
            "evt_log_1",
            "ch_log_1",
            "ada@example.com",
            "Ada Lovelace",
            4200,
            chrono::Utc::now().timestamp(),
        );

        let preview = app
            .post(
                &format!("/v1/flows/{flow_id}/preview"),
                token,
                json!({"event": event}),
            )
            .await;
        assert_eq!(preview.status, StatusCode::OK, "{}", preview.text);
        assert_eq!(
            preview.body["operations"][0]["fields"]["message"],
            "paid 42.00 USD"
        );

        let done = app.deliver(&p, &event).await;
        assert_eq!(done["status"], "processed", "{done}");
        let note = &done["deliveries"][0];
        assert_eq!(note["step"], "note");
        assert_eq!(note["action"], "log");
        assert_eq!(note["status"], "succeeded", "{note}");
        assert_eq!(note["operation"]["fields"]["message"], "paid 42.00 USD");

        let history = app
            .get(&format!("/v1/deliveries/{}", note["id"].as_str().unwrap()), token)
            .await;
        let excerpt = history.body["history"][0]["response_excerpt"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(excerpt.contains("paid 42.00 USD"), "{}", history.text);

        let contacts = app.records(token, &p.connection_id, "contacts").await;
        assert_eq!(contacts.len(), 1);
        assert_eq!(contacts[0]["fields"]["last_payment"], "paid 42.00 USD");
    })
    .await;
}
