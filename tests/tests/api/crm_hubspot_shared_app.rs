//! The operator's shared HubSpot app: HubSpot sends every portal's webhooks to one URL
//! (`/webhooks/hubspot`), and each event reaches only the connections installed through that
//! app in its portal — the portal HubSpot itself named for the connection's token, never one a
//! tenant typed. Other portals' events are skipped and named, a connection's own URL keeps its
//! own portal's events only, a wrong signature stores nothing, and a connection authorized
//! without the browser learns its portal at its first token refresh.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tributary_fakes::hubspot::webhooks::{APP_ID, contact_creation, deal_property_change};
use tributary_fakes::hubspot::{self, FakeHubSpot, PRIVATE_APP_TOKEN, WebhookSender};
use tributary_tests::{Tenant, TestApp, wait_for};

/// A tenant's HubSpot connection through the operator's app, installed in `portal`: the
/// browser goes to HubSpot, where the person picks that portal, and back to the callback.
async fn install(app: &TestApp, fake: &FakeHubSpot, tenant: &Tenant, portal: u64) -> Value {
    let created = app
        .post(
            "/v1/connections",
            &tenant.token,
            json!({"name": "HubSpot", "provider": "hubspot", "auth": {"type": "oauth"},
                   "settings": {"base_url": fake.base_url,
                                "authorize_url": format!("{}/oauth/authorize", fake.base_url),
                                "token_url": format!("{}/oauth/v1/token", fake.base_url)}}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    fake.install_into(portal);
    let landed = app
        .client
        .get(created.str("/authorize_url"))
        .send()
        .await
        .unwrap();
    let page = landed.text().await.unwrap();
    assert!(page.contains("is now active"), "{page}");
    let id = created.str("/id");
    let connection = app
        .get(&format!("/v1/connections/{id}"), &tenant.token)
        .await;
    assert_eq!(connection.body["status"], "active", "{}", connection.text);
    connection.body
}

async fn hubspot_events(app: &TestApp, tenant: &Tenant) -> Vec<Value> {
    let reply = app.get("/v1/events?source=hubspot", &tenant.token).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.body["data"].as_array().cloned().unwrap_or_default()
}

fn answer(sender: &WebhookSender) -> Value {
    let last = sender
        .attempts()
        .last()
        .cloned()
        .expect("a request was sent");
    serde_json::from_str(last.answer.as_deref().unwrap_or("null")).unwrap()
}

/// The fake HubSpot, and the app with the operator's HubSpot app pointed at it.
async fn start(backend: tributary_tests::Backend) -> (FakeHubSpot, TestApp) {
    let fake = FakeHubSpot::start();
    let token_url = format!("{}/oauth/v1/token", fake.base_url);
    let app = TestApp::spawn_with(
        backend,
        &[
            ("TRIBUTARY_PUBLIC_URL", "{base}"),
            ("TRIBUTARY_OAUTH_HUBSPOT_CLIENT_ID", hubspot::CLIENT_ID),
            (
                "TRIBUTARY_OAUTH_HUBSPOT_CLIENT_SECRET",
                hubspot::CLIENT_SECRET,
            ),
            ("TRIBUTARY_OAUTH_HUBSPOT_TOKEN_URL", &token_url),
        ],
    )
    .await;
    fake.register_redirect_uri(&format!("{}/v1/oauth/callback", app.base));
    (fake, app)
}

/// What HubSpot sends to the shared app's URL, signed with the app's secret.
fn shared_sender(app: &TestApp) -> WebhookSender {
    WebhookSender::new(
        &format!("{}/webhooks/hubspot", app.base),
        hubspot::CLIENT_SECRET,
    )
    .retries(0)
}

#[tokio::test]
async fn a_shared_hubspot_apps_webhooks_reach_only_the_connections_of_their_portal() {
    for backend in tributary_tests::backends() {
        let (fake, app) = start(backend).await;
        let cleanup = app.cleanup_handle();
        let deal = fake.insert(
            "deals",
            json!({"dealname": "Stark", "dealstage": "qualifiedtobuy"}),
        );
        let deal_id: u64 = deal.parse().unwrap();

        // Two tenants install the app, each in its own portal; HubSpot names the portal.
        let a = app.signup("Portal A").await;
        let b = app.signup("Portal B").await;
        let a_connection = install(&app, &fake, &a, 111).await;
        let b_connection = install(&app, &fake, &b, 222).await;
        assert_eq!(a_connection["vendor_account"], "111", "{a_connection}");
        assert_eq!(b_connection["vendor_account"], "222", "{b_connection}");
        // A third says it is portal 111, with a token of its own: a claim, not HubSpot's word.
        let c = app.signup("Claims A's portal").await;
        let claimed = app
            .post(
                "/v1/connections",
                &c.token,
                json!({
                "name": "HubSpot", "provider": "hubspot",
                "auth": {"type": "token", "token": PRIVATE_APP_TOKEN},
                "settings": {"base_url": fake.base_url, "portal_id": "111"}}),
            )
            .await;
        assert_eq!(claimed.status, StatusCode::CREATED, "{}", claimed.text);
        assert!(claimed.body["vendor_account"].is_null(), "{}", claimed.text);

        // Tenant A's flow runs on its portal's deal changes.
        let flow = app
            .post(
                "/v1/flows",
                &a.token,
                json!({
                "name": "Deal stage", "connection_id": a_connection["id"],
                "trigger": {"source": "hubspot", "events": ["deal.propertyChange"]},
                "steps": [{"id": "deal", "action": "update", "object": "deals",
                           "record_id": "{{ record.id }}",
                           "fields": {"description": "stage {{ record.dealstage }}"}}]}),
            )
            .await;
        assert_eq!(flow.status, StatusCode::CREATED, "{}", flow.text);

        // One request of HubSpot's, for three portals.
        let sender = shared_sender(&app);
        let user = Some("userId:1234567");
        let batch = [
            deal_property_change(111, APP_ID, deal_id, "dealstage", "closedwon", user),
            contact_creation(222, APP_ID, 7001),
            contact_creation(111, APP_ID, 7002),
            contact_creation(333, APP_ID, 7003),
        ];
        assert!(sender.send(&batch).await, "{:?}", sender.attempts());
        let said = answer(&sender);
        assert_eq!(said["received"], 3, "{said}");
        let skipped = said["skipped"].as_array().cloned().unwrap_or_default();
        assert_eq!(skipped.len(), 1, "{said}");
        assert!(
            skipped[0].as_str().unwrap().contains("portal 333"),
            "{said}"
        );

        let of_a = hubspot_events(&app, &a).await;
        let of_b = hubspot_events(&app, &b).await;
        assert_eq!(of_a.len(), 2, "{of_a:?}");
        assert_eq!(of_b.len(), 1, "{of_b:?}");
        assert!(
            of_a.iter()
                .all(|e| e["connection_id"] == a_connection["id"]),
            "{of_a:?}"
        );
        assert_eq!(of_b[0]["connection_id"], b_connection["id"]);
        assert_eq!(of_b[0]["type"], "contact.creation");
        assert!(
            hubspot_events(&app, &c).await.is_empty(),
            "a typed portal id receives nothing"
        );

        // A's flow wrote the change back to its portal's deal.
        wait_for(20, "tenant A's flow updated the deal", || async {
            let deals = fake.records("deals");
            (deals[0].properties.get("description") == Some(&json!("stage closedwon")))
                .then_some(())
        })
        .await;

        // HubSpot sends the request again: nothing new.
        assert!(sender.send(&batch).await);
        let again = answer(&sender);
        assert_eq!(
            (again["received"].as_u64(), again["duplicates"].as_u64()),
            (Some(0), Some(3)),
            "{again}"
        );

        // Not the operator's app: refused, nothing stored.
        let stranger = WebhookSender::new(
            &format!("{}/webhooks/hubspot", app.base),
            "not-the-app-secret",
        )
        .retries(0);
        assert!(!stranger.send(&[contact_creation(222, APP_ID, 7004)]).await);
        assert_eq!(stranger.attempts()[0].status, Some(401));
        assert_eq!(hubspot_events(&app, &b).await.len(), 1);

        cleanup.run().await;
    }
}

#[tokio::test]
async fn a_connections_own_url_keeps_its_portal_and_a_pasted_token_learns_its_portal() {
    for backend in tributary_tests::backends() {
        let (fake, app) = start(backend).await;
        let cleanup = app.cleanup_handle();
        let a = app.signup("Portal A").await;
        let a_connection = install(&app, &fake, &a, 111).await;
        // A connection's own URL keeps its portal's events only, even under the app's secret.
        let inbound = a_connection["inbound_url"].as_str().unwrap();
        let own_url = WebhookSender::new(inbound, hubspot::CLIENT_SECRET).retries(0);
        assert!(own_url.send(&[contact_creation(222, APP_ID, 7005)]).await);
        let said = answer(&own_url);
        assert_eq!(said["received"], 0, "{said}");
        assert!(
            said["skipped"][0].as_str().unwrap().contains("portal 222"),
            "{said}"
        );
        assert!(hubspot_events(&app, &a).await.is_empty());

        // A connection given the app's refresh token (no browser) learns its portal from
        // HubSpot at its first refresh, and from then on receives that portal's events.
        let sender = shared_sender(&app);
        let d = app.signup("Pasted token").await;
        fake.install_into(444);
        let pasted = app
            .post("/v1/connections", &d.token, json!({
                "name": "HubSpot", "provider": "hubspot",
                "auth": {"type": "refresh_token", "client_id": hubspot::CLIENT_ID,
                         "client_secret": hubspot::CLIENT_SECRET, "refresh_token": fake.issue_refresh_token()},
                "settings": {"base_url": fake.base_url, "token_url": format!("{}/oauth/v1/token", fake.base_url)}}))
            .await;
        assert_eq!(pasted.status, StatusCode::CREATED, "{}", pasted.text);
        assert!(pasted.body["vendor_account"].is_null(), "{}", pasted.text);
        let id = pasted.str("/id");
        assert!(sender.send(&[contact_creation(444, APP_ID, 7006)]).await);
        assert_eq!(answer(&sender)["received"], 0, "not known yet: skipped");
        let tested = app
            .post(&format!("/v1/connections/{id}/test"), &d.token, json!({}))
            .await;
        assert_eq!(tested.body["ok"], true, "{}", tested.text);
        let learned = app.get(&format!("/v1/connections/{id}"), &d.token).await;
        assert_eq!(learned.body["vendor_account"], "444", "{}", learned.text);
        assert!(sender.send(&[contact_creation(444, APP_ID, 7006)]).await);
        assert_eq!(answer(&sender)["received"], 1);
        assert_eq!(hubspot_events(&app, &d).await.len(), 1);
        cleanup.run().await;
    }
}

/// Without an operator HubSpot app the shared route finds nothing for a signed request (404);
/// a request without HubSpot's headers is refused as such (401) either way.
#[tokio::test]
async fn the_shared_route_needs_the_operators_app_and_hubspots_headers() {
    for backend in tributary_tests::backends() {
        let app = TestApp::spawn_with(backend, &[("TRIBUTARY_PUBLIC_URL", "{base}")]).await;
        let cleanup = app.cleanup_handle();
        let url = format!("{}/webhooks/hubspot", app.base);
        let signed = WebhookSender::new(&url, hubspot::CLIENT_SECRET).retries(0);
        assert!(!signed.send(&[contact_creation(111, APP_ID, 1)]).await);
        assert_eq!(signed.attempts()[0].status, Some(404));
        let bare = app.client.post(&url).json(&json!([])).send().await.unwrap();
        assert_eq!(bare.status(), StatusCode::UNAUTHORIZED);
        let problem: Value = bare.json().await.unwrap();
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("X-HubSpot-Signature-v3"),
            "{problem}"
        );
        cleanup.run().await;
    }
}
