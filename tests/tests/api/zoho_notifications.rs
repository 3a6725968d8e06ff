//! Zoho CRM's Notifications API end to end: `POST /v1/connections/{id}/poll` enables the
//! channel to the connection's `inbound_url`, Zoho's callbacks (sent by the fake Zoho when a
//! user edits a deal) are verified by the channel's token, stored once, re-read from Zoho, and
//! run the Zoho-triggered flow with the stage the deal had before.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tributary_fakes::zoho::{self, FakeZoho};
use tributary_tests::{TestApp, each_backend, each_backend_with};

fn local(app: &TestApp, url: &str) -> String {
    app.url(url.strip_prefix(&app.settings.public_url).unwrap_or(url))
}

/// Sends what the fake Zoho tried to send to the public URL to where the test app listens;
/// the answer's JSON.
async fn forward(app: &TestApp, inbound: &str, body: &Value) -> (StatusCode, Value) {
    let reply = reqwest::Client::new()
        .post(local(app, inbound))
        .json(body)
        .send()
        .await
        .expect("sent");
    let status = reply.status();
    (status, reply.json().await.unwrap_or(Value::Null))
}

async fn zoho_events(app: &TestApp, token: &str) -> Vec<Value> {
    let reply = app.get("/v1/events?source=zoho", token).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.body["data"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn zoho_notifications_run_deal_flows_on_the_record_zoho_has_now() {
    each_backend(|app| async move {
        let fake = FakeZoho::start();
        fake.define_field("Deals", "Description", "textarea");
        let deal = fake.insert("Deals", json!({"Deal_Name": "Stark", "Stage": "Qualification"}));
        let p = app
            .pipeline_with(json!({
                "name": "Zoho", "provider": "zoho",
                "auth": {"type": "refresh_token", "client_id": zoho::CLIENT_ID,
                         "client_secret": zoho::CLIENT_SECRET,
                         "refresh_token": fake.issue_refresh_token()},
                "settings": {"accounts_url": fake.accounts_url, "api_version": "v8",
                             "watch": ["Deals"], "notifications": true}
            }))
            .await;
        let token = &p.tenant.token;
        let inbound = app.connection(&p).await["inbound_url"].as_str().unwrap().to_string();
        let created = app
            .post("/v1/flows", token, json!({
                "name": "Won deals", "connection_id": p.connection_id,
                "trigger": {"source": "zoho", "events": ["Deals.updated"],
                            "filter": "record.Stage == 'Closed Won' and previous.Stage != 'Closed Won'"},
                "steps": [{"id": "deal", "action": "update", "object": "Deals",
                           "record_id": "{{ record.id }}",
                           "fields": {"Description": "won, was {{ previous.Stage }}"}}]
            }))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);

        // The channel, to the connection's inbound URL, for six days.
        let polled = app.post(&format!("/v1/connections/{}/poll", p.connection_id), token, json!({})).await;
        assert_eq!(polled.status, StatusCode::OK, "{}", polled.text);
        assert_eq!(polled.body["channels"], 1, "{}", polled.text);
        let channels = fake.channels();
        assert_eq!(channels.len(), 1, "{channels:?}");
        assert_eq!(channels[0]["notify_url"], inbound.as_str());
        let watches = app.get(&format!("/v1/connections/{}/watches", p.connection_id), token).await;
        let channel = &watches.body[0];
        assert_eq!(channel["object"], "_channel", "{}", watches.text);
        assert!(channel["channel_expires_at"].is_string(), "{}", watches.text);

        // A user moves the deal on; Zoho calls back; the record is read from Zoho.
        assert!(fake.touch("Deals", &deal, json!({"Stage": "Negotiation"})));
        let sent = fake.wait_for_callbacks(1, 10).await;
        let (status, out) = forward(&app, &inbound, &sent[0].body).await;
        assert_eq!(status, StatusCode::OK, "{out}");
        assert_eq!(out["received"], 1, "{out}");
        let first = app.finished_event(token, out["event_ids"][0].as_str().unwrap()).await;
        assert_eq!(first["status"], "ignored", "not won yet: {first}");

        assert!(fake.touch("Deals", &deal, json!({"Stage": "Closed Won"})));
        let sent = fake.wait_for_callbacks(2, 10).await;
        let (status, out) = forward(&app, &inbound, &sent[1].body).await;
        assert_eq!(status, StatusCode::OK, "{out}");
        let won = app.finished_event(token, out["event_ids"][0].as_str().unwrap()).await;
        assert_eq!(won["status"], "processed", "{won}");
        let records = fake.records("Deals");
        let record = records
            .iter()
            .find(|r| r.get("id").and_then(Value::as_str) == Some(deal.as_str()))
            .unwrap_or_else(|| panic!("deal {deal} in {records:?}"));
        assert_eq!(record.get("Description"), Some(&json!("won, was Negotiation")), "{record:?}");

        // Sent again: kept once. A wrong token: refused, nothing stored.
        let (_, again) = forward(&app, &inbound, &sent[1].body).await;
        assert_eq!(again["duplicates"], 1, "{again}");
        let mut forged = sent[1].body.clone();
        forged["token"] = json!("guessed");
        forged["server_time"] = json!(1);
        let (status, _) = forward(&app, &inbound, &forged).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let listed = zoho_events(&app, token).await;
        assert_eq!(listed.len(), 2, "{listed:?}");
        assert!(listed.iter().all(|e| e["source"] == "zoho" && e["type"] == "Deals.updated"), "{listed:?}");
    })
    .await;
}

#[tokio::test]
async fn two_polls_at_once_enable_one_zoho_channel() {
    // Only the tenant's polls run: no background watcher joins them.
    each_backend_with(&[("TRIBUTARY_CRM_WATCHER", "false")], |app| async move {
        let fake = FakeZoho::start();
        let p = app
            .pipeline_with(json!({
                "name": "Zoho", "provider": "zoho",
                "auth": {"type": "refresh_token", "client_id": zoho::CLIENT_ID,
                         "client_secret": zoho::CLIENT_SECRET,
                         "refresh_token": fake.issue_refresh_token()},
                "settings": {"accounts_url": fake.accounts_url, "api_version": "v8",
                             "watch": ["Deals"], "notifications": true}
            }))
            .await;
        let token = &p.tenant.token;
        let path = format!("/v1/connections/{}/poll", p.connection_id);
        let (a, b) = tokio::join!(
            app.post(&path, token, json!({})),
            app.post(&path, token, json!({}))
        );
        for reply in [&a, &b] {
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
            assert_eq!(reply.body["channels"], 1, "{}", reply.text);
        }
        let channels = fake.channels();
        assert_eq!(
            channels.len(),
            1,
            "one channel, not one per poll: {channels:?}"
        );
        let watches = app
            .get(
                &format!("/v1/connections/{}/watches", p.connection_id),
                token,
            )
            .await;
        assert_eq!(
            watches.body[0]["channel_id"], channels[0]["channel_id"],
            "{}",
            watches.text
        );
    })
    .await;
}
