//! Seed 001 end to end against the fake HubSpot: signed Stripe charges in, one contact and one
//! closed-won deal per charge out, with HubSpot's auth, rate limits and property rules.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tributary_fakes::hubspot::{self, FakeHubSpot};
use tributary_tests::{Pipeline, TestApp, captured_logs, charge_event, each_backend, wait_for};
use tributary_worker::crm::{self, Connector};
use tributary_worker::settings::VendorUrls;

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The custom properties the seed's template writes, as a tenant would create them.
fn define_properties(fake: &FakeHubSpot) {
    fake.define_property("contacts", "stripe_customer_id", false);
    fake.define_property("contacts", "last_charge_amount", false);
    fake.define_property("contacts", "last_charge_receipt", false);
    fake.define_property("deals", "stripe_charge_id", true);
}

async fn private_app(app: &TestApp, fake: &FakeHubSpot) -> Pipeline {
    let p = app
        .pipeline_with(json!({
            "name": "HubSpot", "provider": "hubspot",
            "auth": {"type": "token", "token": hubspot::PRIVATE_APP_TOKEN},
            "settings": {"base_url": fake.base_url, "portal_id": "62515"}
        }))
        .await;
    app.flow_from_template(&p, "hubspot-contact-and-deal").await;
    p
}

async fn oauth(app: &TestApp, fake: &FakeHubSpot, refresh_token: &str) -> Pipeline {
    let p = app
        .pipeline_with(json!({
            "name": "HubSpot", "provider": "hubspot",
            "auth": {"type": "refresh_token", "client_id": hubspot::CLIENT_ID,
                     "client_secret": hubspot::CLIENT_SECRET, "refresh_token": refresh_token},
            "settings": {"base_url": fake.base_url,
                         "token_url": format!("{}/oauth/v1/token", fake.base_url)}
        }))
        .await;
    app.flow_from_template(&p, "hubspot-contact-and-deal").await;
    p
}

fn deliveries(event: &Value) -> Vec<Value> {
    event["deliveries"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_charge_becomes_one_contact_and_one_associated_deal() {
    each_backend(|app| async move {
        let fake = FakeHubSpot::start();
        define_properties(&fake);
        let p = private_app(&app, &fake).await;

        let event = charge_event(
            "evt_h1",
            "ch_h1",
            "Tony@Stark.com",
            "Tony Stark",
            14900,
            now(),
        );
        let done = app.deliver(&p, &event).await;
        assert_eq!(done["status"], "processed", "{done}");

        let contacts = fake.records("contacts");
        assert_eq!(contacts.len(), 1, "{contacts:?}");
        let contact = &contacts[0].properties;
        assert_eq!(contact["email"], "tony@stark.com");
        assert_eq!(contact["firstname"], "Tony");
        assert_eq!(contact["lastname"], "Stark");
        assert_eq!(contact["company"], "Stark Industries");
        assert_eq!(
            contact["last_charge_amount"], "149",
            "amounts go as strings"
        );
        let deals = fake.records("deals");
        assert_eq!(deals.len(), 1, "{deals:?}");
        let deal = &deals[0].properties;
        assert_eq!(deal["stripe_charge_id"], "ch_h1");
        assert_eq!(deal["dealstage"], "closedwon");
        assert_eq!(deal["dealname"], "Stripe charge ch_h1");
        assert_eq!(deal["amount"], "149");
        assert_eq!(
            fake.associations(),
            vec![(
                "deals".to_string(),
                deals[0].id.clone(),
                "contacts".to_string(),
                contacts[0].id.clone()
            )]
        );
        let ids: Vec<String> = deliveries(&done)
            .iter()
            .map(|d| d["crm_record_id"].as_str().unwrap_or("").to_string())
            .collect();
        assert_eq!(ids, [contacts[0].id.clone(), deals[0].id.clone()]);
        // Each record opens in HubSpot's own app, in the account the connection names.
        let links: Vec<Value> = deliveries(&done)
            .iter()
            .map(|d| d["record_url"].clone())
            .collect();
        assert_eq!(
            links,
            [
                json!(format!(
                    "https://app.hubspot.com/contacts/62515/record/0-1/{}",
                    contacts[0].id
                )),
                json!(format!(
                    "https://app.hubspot.com/contacts/62515/record/0-3/{}",
                    deals[0].id
                )),
            ]
        );

        // A forced replay and a second event about the same charge write the same records.
        let replay = app
            .post(
                &format!("/v1/events/{}/replay", done["id"].as_str().unwrap()),
                &p.tenant.token,
                json!({"force": true}),
            )
            .await;
        assert_eq!(replay.status, StatusCode::ACCEPTED, "{}", replay.text);
        let again = charge_event(
            "evt_h2",
            "ch_h1",
            "tony@stark.com",
            "Tony Stark",
            14900,
            now() + 1,
        );
        let second = app.deliver(&p, &again).await;
        assert_eq!(second["status"], "processed", "{second}");
        wait_for(10, "the replay to finish", || async {
            let e = app
                .get(
                    &format!("/v1/events/{}", done["id"].as_str().unwrap()),
                    &p.tenant.token,
                )
                .await;
            (e.body["status"] == "processed" && e.body["runs"].as_i64() >= Some(2)).then_some(())
        })
        .await;
        assert_eq!(fake.records("contacts").len(), 1, "no duplicate contact");
        assert_eq!(fake.records("deals").len(), 1, "no duplicate deal");
        assert_eq!(fake.associations().len(), 1);
        fake.stop().await;
    })
    .await;
}

#[tokio::test]
async fn an_unknown_property_retries_with_the_fallback_fields_and_warns() {
    each_backend(|app| async move {
        let fake = FakeHubSpot::start();
        // The tenant created the deal key but not the contact properties.
        fake.define_property("deals", "stripe_charge_id", true);
        let p = private_app(&app, &fake).await;

        let done = app
            .deliver(
                &p,
                &charge_event(
                    "evt_u1",
                    "ch_u1",
                    "pepper@stark.com",
                    "Pepper Potts",
                    2500,
                    now(),
                ),
            )
            .await;
        assert_eq!(done["status"], "processed", "{done}");
        let contact = &deliveries(&done)[0];
        let warnings = contact["warnings"].to_string();
        // (The charge has no customer, so stripe_customer_id is left out, not refused.)
        for refused in ["last_charge_amount", "last_charge_receipt"] {
            assert!(warnings.contains(refused), "{warnings}");
        }
        let stored = &fake.records("contacts")[0].properties;
        assert_eq!(stored["email"], "pepper@stark.com");
        assert_eq!(stored["firstname"], "Pepper");
        assert!(
            stored.get("phone").is_none(),
            "only the fallback fields: {stored:?}"
        );
        assert_eq!(fake.records("deals").len(), 1);
    })
    .await;
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once_for_all_workers() {
    each_backend(|app| async move {
        let fake = FakeHubSpot::start();
        define_properties(&fake);
        let refresh_token = fake.issue_refresh_token();
        let p = oauth(&app, &fake, &refresh_token).await;

        let first = app
            .deliver(
                &p,
                &charge_event(
                    "evt_o1",
                    "ch_o1",
                    "a@example.com",
                    "Ann Example",
                    1000,
                    now(),
                ),
            )
            .await;
        assert_eq!(first["status"], "processed", "{first}");
        assert_eq!(fake.log.matching("POST", "/oauth/v1/token").len(), 1);

        // The token expires mid-run: every worker that meets the 401 waits for one refresh.
        fake.expire_access_tokens();
        let mut ids = Vec::new();
        for i in 0..6 {
            let event = charge_event(
                &format!("evt_o2_{i}"),
                &format!("ch_o2_{i}"),
                &format!("buyer{i}@example.com"),
                "Bea Buyer",
                1000 + i,
                now(),
            );
            let sent = app.send_event(&p, &event).await;
            ids.push(sent.str("/event_id"));
        }
        for id in &ids {
            let done = app.finished_event(&p.tenant.token, id).await;
            assert_eq!(done["status"], "processed", "{done}");
        }
        assert_eq!(
            fake.log.matching("POST", "/oauth/v1/token").len(),
            2,
            "one refresh at start, one after expiry"
        );
        assert_eq!(fake.records("contacts").len(), 7);
        let connection = app.connection(&p).await;
        assert_eq!(connection["status"], "active");
        assert!(
            connection["info"]["token_refreshed_at"].is_string(),
            "{connection}"
        );

        // No credential shows in the connection, or in any log line.
        let shown = connection.to_string();
        let logs = captured_logs();
        let tokens: Vec<String> = fake
            .log
            .all()
            .iter()
            .filter_map(|l| l.authorization.clone())
            .collect();
        for secret in tokens
            .iter()
            .map(String::as_str)
            .chain([refresh_token.as_str(), hubspot::CLIENT_SECRET])
        {
            let bare = secret.trim_start_matches("Bearer ");
            assert!(!shown.contains(bare), "connection shows a secret");
            assert!(!logs.contains(bare), "a log line holds a secret");
        }
    })
    .await;
}

#[tokio::test]
async fn a_refused_refresh_waits_for_reconnection_then_resumes() {
    each_backend(|app| async move {
        let fake = FakeHubSpot::start();
        define_properties(&fake);
        let p = oauth(&app, &fake, &fake.issue_refresh_token()).await;
        fake.revoke_refresh_tokens();

        let sent = app
            .send_event(
                &p,
                &charge_event(
                    "evt_r1",
                    "ch_r1",
                    "r@example.com",
                    "Rita Example",
                    500,
                    now(),
                ),
            )
            .await;
        let event_id = sent.str("/event_id");
        let waiting = wait_for(10, "the delivery to wait for re-authorization", || async {
            let e = app
                .get(&format!("/v1/events/{event_id}"), &p.tenant.token)
                .await;
            // The delivery waits first; the event settles as queued right after.
            (e.body["deliveries"][0]["status"] == "waiting" && e.body["status"] != "received")
                .then_some(e.body)
        })
        .await;
        assert_eq!(waiting["status"], "queued", "nothing is dropped: {waiting}");
        assert_eq!(waiting["deliveries"][0]["error"]["kind"], "auth");
        let connection = app.connection(&p).await;
        assert_eq!(connection["status"], "needs_reauth", "{connection}");
        assert!(
            connection["status_reason"]
                .as_str()
                .unwrap()
                .contains("refresh"),
            "{connection}"
        );
        assert!(fake.records("contacts").is_empty());

        // The tenant pastes a new refresh token: the connection is active and the event runs.
        let reconnect = app
            .patch(
                &format!("/v1/connections/{}", p.connection_id),
                &p.tenant.token,
                json!({"auth": {"type": "refresh_token", "client_id": hubspot::CLIENT_ID,
                                "client_secret": hubspot::CLIENT_SECRET,
                                "refresh_token": fake.issue_refresh_token()}}),
            )
            .await;
        assert_eq!(reconnect.status, StatusCode::OK, "{}", reconnect.text);
        assert_eq!(reconnect.body["status"], "active");
        let done = app.finished_event(&p.tenant.token, &event_id).await;
        assert_eq!(done["status"], "processed", "{done}");
        assert_eq!(fake.records("contacts").len(), 1);
        assert_eq!(fake.records("deals").len(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_429_storm_is_waited_out_as_hubspot_says() {
    each_backend(|app| async move {
        let fake = FakeHubSpot::start();
        define_properties(&fake);
        let p = private_app(&app, &fake).await;
        // More 429s than the retry budget (3 attempts in tests): rate limits do not use it up.
        fake.throttle(4, 1);

        let done = app
            .deliver(
                &p,
                &charge_event(
                    "evt_t1",
                    "ch_t1",
                    "t@example.com",
                    "Tom Example",
                    700,
                    now(),
                ),
            )
            .await;
        assert_eq!(done["status"], "processed", "{done}");
        assert_eq!(fake.records("contacts").len(), 1);

        let log = fake.log.all();
        let throttled: Vec<usize> = (0..log.len()).filter(|&i| log[i].status == 429).collect();
        assert_eq!(throttled.len(), 4, "{log:?}");
        for i in throttled {
            let next = log.get(i + 1).expect("a request after each 429");
            let waited = next.at - log[i].at;
            assert!(
                waited >= chrono::Duration::milliseconds(950),
                "request {} came {waited} after a 429 with Retry-After: 1",
                i + 1
            );
        }
        let contact = &deliveries(&done)[0];
        assert_eq!(contact["status"], "succeeded");
        assert!(contact["attempts"].as_i64().unwrap() >= 5, "{contact}");
        // The rate limits and their waits show in the metrics.
        let limited = tributary_tests::metric(
            &app,
            r#"tributary_crm_rate_limited_total{provider="hubspot"}"#,
        )
        .await
        .unwrap_or_default();
        assert!(limited >= 4.0, "{limited}");
        let answered = tributary_tests::metric(
            &app,
            r#"tributary_crm_requests_total{provider="hubspot",status="429"}"#,
        )
        .await
        .unwrap_or_default();
        assert!(answered >= 4.0, "{answered}");
    })
    .await;
}

#[tokio::test]
async fn the_connection_test_names_what_failed() {
    each_backend(|app| async move {
        let fake = FakeHubSpot::start();
        let p = private_app(&app, &fake).await;
        let path = format!("/v1/connections/{}/test", p.connection_id);
        let ok = app.post(&path, &p.tenant.token, json!({})).await;
        assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
        assert_eq!(ok.body["ok"], true, "{}", ok.text);

        let bad = app
            .pipeline_with(json!({
                "name": "HubSpot", "provider": "hubspot",
                "auth": {"type": "token", "token": "pat-na1-wrong"},
                "settings": {"base_url": fake.base_url}
            }))
            .await;
        let failed = app
            .post(
                &format!("/v1/connections/{}/test", bad.connection_id),
                &bad.tenant.token,
                json!({}),
            )
            .await;
        assert_eq!(failed.body["ok"], false, "{}", failed.text);
        assert_eq!(failed.body["error_kind"], "auth");
        assert_eq!(failed.body["vendor_status"], 401);
        assert!(
            failed.body["detail"]
                .as_str()
                .unwrap()
                .contains("INVALID_AUTHENTICATION"),
            "{}",
            failed.text
        );
        assert_eq!(app.connection(&bad).await["status"], "needs_reauth");
        assert!(!failed.text.contains("pat-na1-wrong"));
    })
    .await;
}

#[tokio::test]
async fn a_create_that_conflicts_updates_the_existing_contact() {
    each_backend(|app| async move {
        let fake = FakeHubSpot::start();
        let existing = fake.insert(
            "contacts",
            json!({"email": "dup@example.com", "firstname": "Old"}),
        );
        let p = app
            .pipeline_with(json!({
                "name": "HubSpot", "provider": "hubspot",
                "auth": {"type": "token", "token": hubspot::PRIVATE_APP_TOKEN},
                "settings": {"base_url": fake.base_url}
            }))
            .await;
        let flow = json!({
            "name": "Create contacts", "connection_id": p.connection_id,
            "trigger": {"events": ["charge.succeeded"]},
            "steps": [{"id": "contact", "action": "create", "object": "contacts",
                       "fields": {"email": "{{ object.billing_details.email }}",
                                  "firstname": "{{ object.billing_details.name | first_name }}"}}]
        });
        assert_eq!(
            app.post("/v1/flows", &p.tenant.token, flow).await.status,
            StatusCode::CREATED
        );
        let done = app
            .deliver(
                &p,
                &charge_event(
                    "evt_409",
                    "ch_409",
                    "dup@example.com",
                    "New Name",
                    100,
                    now(),
                ),
            )
            .await;
        assert_eq!(done["status"], "processed", "{done}");
        let d = &deliveries(&done)[0];
        assert_eq!(
            d["crm_record_id"],
            existing.as_str(),
            "HubSpot's 409 named the record"
        );
        assert!(d["warnings"].to_string().contains("already had"), "{d}");
        let contacts = fake.records("contacts");
        assert_eq!(contacts.len(), 1);
        assert_eq!(contacts[0].properties["firstname"], "New");
        assert_eq!(
            fake.log.matching("POST", "/crm/v3/objects/contacts").len(),
            1
        );
    })
    .await;
}

#[tokio::test]
async fn two_worker_processes_refresh_an_expired_token_once() {
    each_backend(|app| async move {
        let fake = FakeHubSpot::start();
        let p = oauth(&app, &fake, &fake.issue_refresh_token()).await;
        let connection = {
            use sea_orm::EntityTrait;
            entity::connections::Entity::find_by_id(p.connection_id.clone())
                .one(&app.db)
                .await
                .unwrap()
                .unwrap()
        };
        // Two connectors are two processes: each has its own in-process locks, so only the
        // lease on the connection row keeps them from refreshing twice.
        let keyring = std::sync::Arc::new(
            tributary_worker::secrets::Keyring::parse(tributary_tests::TEST_KEYRING).unwrap(),
        );
        let connectors: Vec<Connector> = (0..2)
            .map(|_| Connector::new(app.db.clone(), keyring.clone(), VendorUrls::Any))
            .collect();
        assert!(crm::check(&connectors[0], &connection).await.is_ok());
        let token_calls = || fake.log.matching("POST", "/oauth/v1/token").len();
        assert_eq!(token_calls(), 1);

        fake.expire_access_tokens();
        let calls = (0..10).map(|i| crm::check(&connectors[i % 2], &connection));
        for result in futures::future::join_all(calls).await {
            assert!(result.is_ok(), "{result:?}");
        }
        assert_eq!(token_calls(), 2, "one refresh for both processes");
        // The new access token is kept sealed, never in the clear.
        let stored = {
            use sea_orm::EntityTrait;
            entity::connections::Entity::find_by_id(p.connection_id.clone())
                .one(&app.db)
                .await
                .unwrap()
                .unwrap()
        };
        let session = stored.session.expect("a stored session");
        assert!(
            session.starts_with("k1:") && !session.contains("CN-fake-access"),
            "{session}"
        );
        assert!(
            stored.refresh_lease_until.is_none(),
            "the lease is released"
        );
        fake.stop().await;
    })
    .await;
}
