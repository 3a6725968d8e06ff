//! The CRM watcher survives its tenants: one tenant's org that is down or over its daily limit
//! does not stop the others' polls, and it is left alone for its poll interval instead of
//! being asked again every round.

use std::collections::HashMap;
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::json;
use tributary_fakes::salesforce::{self, FakeSalesforce};
use tributary_tests::{Pipeline, TestApp, each_backend_with};

/// The test's rounds and polls are the only ones: no background watcher runs.
const NO_WATCHER: &[(&str, &str)] = &[("TRIBUTARY_CRM_WATCHER", "false")];
use tributary_worker::crm::Connector;
use tributary_worker::inbound::watcher::watch_once;
use tributary_worker::queue::Queue;

async fn watching(app: &TestApp, fake: &FakeSalesforce) -> Pipeline {
    let p = app
        .pipeline_with(json!({
            "name": "Salesforce", "provider": "salesforce",
            "auth": {"type": "jwt_bearer", "client_id": salesforce::CLIENT_ID,
                     "username": salesforce::USERNAME,
                     "private_key": salesforce::TEST_PRIVATE_KEY_PEM},
            "settings": {"login_url": fake.login_url, "api_version": "60.0",
                         "watch": ["Opportunity"], "poll_seconds": 600}
        }))
        .await;
    let connection = app.connection(&p).await;
    assert_eq!(connection["status"], "active", "{connection}");
    p
}

#[tokio::test]
async fn a_tenant_whose_org_fails_does_not_stop_the_others_polls() {
    each_backend_with(NO_WATCHER, |app| async move {
        let healthy = FakeSalesforce::start();
        let broken = FakeSalesforce::start();
        let good = watching(&app, &healthy).await;
        let bad = watching(&app, &broken).await;
        broken.exhaust_daily_limit(true);
        healthy.insert(
            "Opportunity",
            json!({"Name": "Fine", "StageName": "Prospecting", "CloseDate": "2030-01-01"}),
        );
        broken.insert(
            "Opportunity",
            json!({"Name": "Never seen", "StageName": "Prospecting", "CloseDate": "2030-01-01"}),
        );

        let keyring = tributary_worker::secrets::Keyring::parse(tributary_tests::TEST_KEYRING)
            .expect("the test keyring parses");
        let connector = Connector::new(app.db.clone(), Arc::new(keyring), app.settings.vendor_urls);
        let queue = Queue::connect(&app.settings, &app.db).await.unwrap();
        let mut resting = HashMap::new();
        let report = watch_once(
            &app.db,
            &queue,
            &connector,
            &app.settings.public_url,
            &mut resting,
        )
        .await
        .expect("a round");
        assert!(
            report.events >= 1,
            "the healthy org's change is stored: {report:?}"
        );
        assert!(
            resting.contains_key(&bad.connection_id),
            "the failing org rests: {resting:?}"
        );
        assert!(!resting.contains_key(&good.connection_id));

        // Its error is visible to its tenant; the other tenant's watch is fine.
        let watches = app
            .get(
                &format!("/v1/connections/{}/watches", bad.connection_id),
                &bad.tenant.token,
            )
            .await;
        assert_eq!(watches.status, StatusCode::OK, "{}", watches.text);
        let error = watches.body[0]["last_error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            error.contains("REQUEST_LIMIT_EXCEEDED") || error.contains("limit"),
            "{}",
            watches.text
        );
        let fine = app
            .get(
                &format!("/v1/connections/{}/watches", good.connection_id),
                &good.tenant.token,
            )
            .await;
        assert!(fine.body[0]["last_error"].is_null(), "{}", fine.text);
        // Another tenant cannot read it.
        let foreign = app
            .get(
                &format!("/v1/connections/{}/watches", bad.connection_id),
                &good.tenant.token,
            )
            .await;
        assert_eq!(foreign.status, StatusCode::NOT_FOUND);

        // The next round leaves the resting org alone: no call reaches it.
        let calls = broken.api_calls();
        watch_once(
            &app.db,
            &queue,
            &connector,
            &app.settings.public_url,
            &mut resting,
        )
        .await
        .expect("a round");
        assert_eq!(
            broken.api_calls(),
            calls,
            "a resting org is not asked again"
        );
    })
    .await;
}

#[tokio::test]
async fn one_poll_reads_a_bounded_number_of_pages_and_the_next_goes_on() {
    each_backend_with(NO_WATCHER, |app| async move {
        let fake = FakeSalesforce::start();
        let p = watching(&app, &fake).await;
        fake.set_page_size(1);
        let pages = tributary_worker::inbound::salesforce::MAX_PAGES;
        for n in 0..pages + 3 {
            fake.insert(
                "Opportunity",
                json!({"Name": format!("Deal {n}"), "StageName": "Prospecting", "CloseDate": "2030-01-01"}),
            );
        }
        assert_eq!(poll(&app, &p).await, pages as u64, "one poll stops after its pages");
        assert_eq!(poll(&app, &p).await, 3, "the next one goes on from the cursor");
        assert_eq!(poll(&app, &p).await, 0);
    })
    .await;
}

async fn poll(app: &TestApp, p: &Pipeline) -> u64 {
    let path = format!("/v1/connections/{}/poll", p.connection_id);
    let reply = app.post(&path, &p.tenant.token, json!({})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.body["events"].as_u64().unwrap()
}
