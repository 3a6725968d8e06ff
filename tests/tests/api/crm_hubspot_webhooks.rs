//! HubSpot's app webhooks into flows, against the fake HubSpot's signed sender: a deal moved
//! to closed won runs the HubSpot-triggered flow once, with the stage it had before; a retried
//! batch is kept once; the app's own change is recorded and skipped; a bad signature or a
//! stale timestamp stores nothing.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tributary_fakes::hubspot::webhooks::{APP_ID, deal_property_change};
use tributary_fakes::hubspot::{FakeHubSpot, PRIVATE_APP_TOKEN, WebhookSender};
use tributary_tests::{TestApp, each_backend, wait_for};

const PORTAL: u64 = 62515;
const APP_SECRET: &str = "hubspot-app-client-secret-1";

fn local(app: &TestApp, url: &str) -> String {
    app.url(url.strip_prefix(&app.settings.public_url).unwrap_or(url))
}

async fn hubspot_events(app: &TestApp, token: &str) -> Vec<Value> {
    let reply = app.get("/v1/events?source=hubspot", token).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.body["data"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn hubspot_webhooks_run_deal_flows_once_verified_and_without_echoes() {
    each_backend(|app| async move {
        let fake = FakeHubSpot::start();
        let deal = fake.insert("deals", json!({"dealname": "Stark", "dealstage": "qualifiedtobuy"}));
        let deal_id: u64 = deal.parse().expect("numeric deal id");
        let p = app
            .pipeline_with(json!({
                "name": "HubSpot", "provider": "hubspot",
                "auth": {"type": "token", "token": PRIVATE_APP_TOKEN, "client_secret": APP_SECRET},
                "settings": {"base_url": fake.base_url, "app_id": APP_ID.to_string()}
            }))
            .await;
        let token = &p.tenant.token;
        let inbound = app.connection(&p).await["inbound_url"].as_str().unwrap().to_string();
        assert!(inbound.contains("/webhooks/hubspot/"), "{inbound}");
        let created = app
            .post("/v1/flows", token, json!({
                "name": "Won deals", "connection_id": p.connection_id,
                "trigger": {"source": "hubspot", "events": ["deal.propertyChange"],
                            "filter": "record.dealstage == 'closedwon' and previous.dealstage != 'closedwon'"},
                "steps": [{"id": "deal", "action": "update", "object": "deals",
                           "record_id": "{{ record.id }}",
                           "fields": {"description": "won; was {{ previous.dealstage }}"}}]
            }))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let sender = WebhookSender::new(&local(&app, &inbound), APP_SECRET)
            .signed_as(&inbound)
            .retries(0);
        let user = Some("userId:1234567");

        let before = deal_property_change(PORTAL, APP_ID, deal_id, "dealstage", "presentationscheduled", user);
        assert!(sender.send(&[before]).await, "{:?}", sender.attempts());
        let won = deal_property_change(PORTAL, APP_ID, deal_id, "dealstage", "closedwon", user);
        assert!(sender.send(std::slice::from_ref(&won)).await);
        // HubSpot sends some notifications more than once: kept once.
        assert!(sender.send(&[won]).await);
        let answer: Value = serde_json::from_str(sender.attempts().last().unwrap().answer.as_deref().unwrap()).unwrap();
        assert_eq!(answer["duplicates"], 1, "{answer}");

        let events = hubspot_events(&app, token).await;
        assert_eq!(events.len(), 2, "{events:?}");
        for event in &events {
            assert_eq!(event["source"], "hubspot");
            assert_eq!(event["type"], "deal.propertyChange");
            assert_eq!(event["connection_id"], p.connection_id.as_str());
        }
        let finished = wait_for(20, "both events finished", || async {
            let mut done = Vec::new();
            for event in hubspot_events(&app, token).await {
                let status = event["status"].as_str().unwrap_or_default().to_string();
                if !matches!(status.as_str(), "processed" | "ignored" | "failed") {
                    return None;
                }
                done.push(status);
            }
            done.sort();
            Some(done)
        })
        .await;
        assert_eq!(finished, ["ignored", "processed"]);
        let stored = fake.records("deals");
        assert_eq!(stored[0].properties["description"], "won; was presentationscheduled", "{stored:?}");

        // The app's own change (HubSpot names it by the app id) is recorded and skipped.
        let own = Some(APP_ID.to_string());
        let reopened = deal_property_change(PORTAL, APP_ID, deal_id, "dealstage", "presentationscheduled", own.as_deref());
        let rewon = deal_property_change(PORTAL, APP_ID, deal_id, "dealstage", "closedwon", own.as_deref());
        assert!(sender.send(&[reopened, rewon]).await);
        let all = hubspot_events(&app, token).await;
        assert_eq!(all.len(), 4);
        for event in &all[..2] {
            let done = app.finished_event(token, event["id"].as_str().unwrap()).await;
            assert_eq!(done["status"], "ignored", "{done}");
        }

        // Not HubSpot: a wrong secret, a stale timestamp. Nothing is stored.
        let stranger = WebhookSender::new(&local(&app, &inbound), "not-the-secret").signed_as(&inbound).retries(0);
        let item = deal_property_change(PORTAL, APP_ID, deal_id, "dealstage", "closedlost", user);
        assert!(!stranger.send(std::slice::from_ref(&item)).await);
        assert_eq!(stranger.attempts()[0].status, Some(401));
        let body = serde_json::to_vec(&json!([item])).unwrap();
        let stale_ts = (chrono::Utc::now().timestamp_millis() - 6 * 60 * 1000).to_string();
        let stale = sender
            .post_raw(&body, vec![
                ("X-HubSpot-Signature-v3".into(), sender.signature(&body, &stale_ts)),
                ("X-HubSpot-Request-Timestamp".into(), stale_ts),
            ])
            .await;
        assert_eq!(stale.status, Some(401), "{:?}", stale.answer);
        assert!(stale.answer.unwrap_or_default().contains("old"), "says why");
        assert_eq!(hubspot_events(&app, token).await.len(), 4);
    })
    .await;
}
