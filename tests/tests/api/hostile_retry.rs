//! A retry or replay asked for while a worker is calling the vendor for the same delivery is
//! refused with 409 and `Retry-After`, so the CRM never receives the write twice.

use reqwest::StatusCode;
use serde_json::json;
use tributary_fakes::held::HeldCrm;
use tributary_tests::{charge_event, each_backend, wait_for};

#[tokio::test]
async fn a_retry_or_replay_during_a_live_call_is_refused_and_the_crm_is_called_once() {
    each_backend(|app| async move {
        let crm = HeldCrm::start(201);
        let p = app
            .pipeline_with(json!({"name": "Held CRM", "provider": "http",
                "auth": {"type": "token", "token": "t"},
                "settings": {"base_url": crm.base_url(), "timeout_seconds": 60}}))
            .await;
        let token = &p.tenant.token;
        let flow = json!({
            "name": "Create", "connection_id": p.connection_id,
            "trigger": {"events": ["charge.succeeded"]},
            "steps": [{"id": "record", "action": "create", "object": "records",
                       "fields": {"charge": "{{ object.id }}"}}]
        });
        assert_eq!(
            app.post("/v1/flows", token, flow).await.status,
            StatusCode::CREATED
        );
        let event = charge_event(
            "evt_held",
            "ch_held",
            "h@x.co",
            "H",
            100,
            chrono::Utc::now().timestamp(),
        );
        let event_id = app.send_event(&p, &event).await.str("/event_id");

        // The worker is inside the vendor call now.
        wait_for(20, "the CRM call", || {
            let calls = crm.calls();
            async move { (calls == 1).then_some(()) }
        })
        .await;
        let deliveries = app
            .get(&format!("/v1/deliveries?event_id={event_id}"), token)
            .await;
        let delivery = deliveries.body["data"][0].clone();
        assert_eq!(delivery["status"], "retrying", "{delivery}");
        let id = delivery["id"].as_str().unwrap().to_string();

        let retry = app
            .post(&format!("/v1/deliveries/{id}/retry"), token, json!({}))
            .await;
        retry.assert_problem(StatusCode::CONFLICT);
        let wait: u64 = retry.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(wait >= 1, "{wait}");
        assert!(
            retry.body["detail"].as_str().unwrap().contains("right now"),
            "{}",
            retry.text
        );

        let replay = app
            .post(
                &format!("/v1/events/{event_id}/replay"),
                token,
                json!({"force": true}),
            )
            .await;
        replay.assert_problem(StatusCode::CONFLICT);
        assert!(replay.headers.contains_key("retry-after"));

        crm.release();
        let done = app.finished_event(token, &event_id).await;
        assert_eq!(done["deliveries"][0]["status"], "succeeded", "{done}");
        assert_eq!(done["deliveries"][0]["attempts"], 1, "{done}");
        assert_eq!(crm.calls(), 1, "the CRM received the write once");

        // Once the call has finished, a replay is accepted again (and skips what succeeded).
        let again = app
            .post(&format!("/v1/events/{event_id}/replay"), token, json!({}))
            .await;
        assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.text);
        app.finished_event(token, &event_id).await;
        assert_eq!(crm.calls(), 1);
    })
    .await;
}
