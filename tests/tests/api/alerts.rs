//! Alerts: notification channels receive a connection needing re-authorization or paused at
//! its vendor's daily limit, dead letters
//! over a threshold and a flow failing repeatedly, each at most once per period, signed when
//! the channel is a webhook; a failed send is retried; two processes checking at once send once.

use std::sync::{Arc, Mutex};

use actix_web::HttpResponse;
use reqwest::StatusCode;
use sea_orm::EntityTrait;
use serde_json::{Value, json};
use tributary_fakes::{RequestLog, Served};
use tributary_tests::{
    Backend, Pipeline, TEST_KEYRING, TestApp, charge_event, each_backend, each_backend_with,
    metric, stripe_signature, wait_for,
};

/// One notice a receiver took: its signature header and JSON body.
#[derive(Debug, Clone)]
struct Received {
    at: std::time::Instant,
    signature: Option<String>,
    body: Value,
    raw: Vec<u8>,
}

/// A local receiver for alerts. It answers with the statuses in `script` first, then 200.
struct Receiver {
    served: Served,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start(script: &[u16]) -> Receiver {
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let script = Arc::new(Mutex::new(script.to_vec()));
        let store = got.clone();
        let served = Served::answering(RequestLog::default(), move |req, body| {
            let status = {
                let mut script = script.lock().unwrap();
                if script.is_empty() {
                    200
                } else {
                    script.remove(0)
                }
            };
            if status == 200 {
                store.lock().unwrap().push(Received {
                    at: std::time::Instant::now(),
                    signature: req
                        .headers()
                        .get("tributary-signature")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string),
                    body: serde_json::from_slice(body).unwrap_or(Value::Null),
                    raw: body.to_vec(),
                });
            }
            HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap()).body(
                if status == 200 {
                    "ok"
                } else {
                    "receiver trouble"
                },
            )
        });
        Receiver { served, got }
    }

    fn url(&self) -> String {
        format!("{}/hooks/alerts", self.served.base_url)
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    async fn wait_for_count(&self, n: usize, what: &str) -> Vec<Received> {
        wait_for(20, what, || async {
            let got = self.received();
            (got.len() >= n).then_some(got)
        })
        .await
    }
}

fn contact_flow(connection_id: &str) -> Value {
    json!({
        "name": "Charges to contacts", "connection_id": connection_id,
        "trigger": {"events": ["charge.succeeded"]},
        "steps": [{"id": "contact", "action": "upsert", "object": "contacts",
                   "match": {"email": "{{ object.billing_details.email }}"}}]
    })
}

async fn failing_pipeline(app: &TestApp, kind: &str) -> Pipeline {
    let p = app
        .pipeline(json!({"simulate_failure": {"contacts": kind}}))
        .await;
    let flow = app
        .post("/v1/flows", &p.tenant.token, contact_flow(&p.connection_id))
        .await;
    assert_eq!(flow.status, StatusCode::CREATED, "{}", flow.text);
    p
}

/// A notifier of the test's own over the app's database: `check()` runs one check now and
/// says how many alerts it sent, so a test knows a check ran.
fn notifier(app: &TestApp) -> tributary_worker::alerts::Notifier {
    let keyring = Arc::new(tributary_worker::secrets::Keyring::parse(TEST_KEYRING).unwrap());
    tributary_worker::alerts::Notifier::new(
        app.db.clone(),
        keyring,
        std::time::Duration::from_secs(30),
        std::time::Duration::from_secs(3600),
        tributary_worker::settings::VendorUrls::Any,
    )
    .unwrap()
}

/// Sends charge `n` and waits until its event has finished.
async fn charge_done(app: &TestApp, p: &Pipeline, n: u32) {
    let event = charge_event(
        &format!("evt_alert_{n}"),
        &format!("ch_alert_{n}"),
        &format!("payer{n}@example.com"),
        "Pat Payer",
        1_000,
        1_700_000_000 + i64::from(n),
    );
    let done = app.deliver(p, &event).await;
    assert_eq!(done["deliveries"][0]["status"], "dead", "{done}");
}

async fn charge(app: &TestApp, p: &Pipeline, n: u32) {
    let event = charge_event(
        &format!("evt_alert_{n}"),
        &format!("ch_alert_{n}"),
        &format!("payer{n}@example.com"),
        "Pat Payer",
        1_000,
        1_700_000_000 + i64::from(n),
    );
    let sent = app.send_event(p, &event).await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.text);
}

fn quick_alerts(period: &str) -> Vec<(&'static str, String)> {
    vec![
        ("TRIBUTARY_ALERT_INTERVAL", "200ms".to_string()),
        ("TRIBUTARY_ALERT_PERIOD", period.to_string()),
    ]
}

async fn spawn(backend: Backend, period: &str) -> TestApp {
    let vars = quick_alerts(period);
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    TestApp::spawn_with(backend, &vars).await
}

#[tokio::test]
async fn a_connection_needing_reauthorization_alerts_once_signed() {
    for backend in tributary_tests::backends() {
        let app = spawn(backend, "1h").await;
        let cleanup = app.cleanup_handle();
        let receiver = Receiver::start(&[]);
        let p = failing_pipeline(&app, "auth").await;
        let token = &p.tenant.token;
        let secret = "a-shared-signing-secret-0123";
        let channel = app
            .post(
                "/v1/notification-channels",
                token,
                json!({"name": "Ops hook", "kind": "webhook", "url": receiver.url(),
                       "secret": secret, "alerts": ["connection.needs_reauth"]}),
            )
            .await;
        assert_eq!(channel.status, StatusCode::CREATED, "{}", channel.text);
        assert!(
            channel.body.get("secret").is_none(),
            "a given secret is not echoed"
        );
        assert_eq!(channel.body["signed"], true);
        let channel_id = channel.str("/id");

        charge(&app, &p, 1).await;
        charge(&app, &p, 2).await;
        let got = receiver
            .wait_for_count(1, "the re-authorization alert")
            .await;
        let notice = &got[0];
        assert_eq!(
            notice.body["type"], "connection.needs_reauth",
            "{}",
            notice.body
        );
        assert_eq!(notice.body["tenant_id"], p.tenant.id.as_str());
        assert_eq!(
            notice.body["data"]["connection_id"],
            p.connection_id.as_str()
        );
        assert!(
            notice.body["summary"]
                .as_str()
                .unwrap()
                .contains("\"Sandbox\" (sandbox) needs re-authorization"),
            "{}",
            notice.body
        );
        // Signed as Stripe signs: HMAC-SHA256 over "{t}.{body}".
        let header = notice
            .signature
            .clone()
            .expect("a Tributary-Signature header");
        let t: i64 = header
            .split(',')
            .find_map(|part| part.strip_prefix("t="))
            .and_then(|t| t.parse().ok())
            .expect("t=");
        assert_eq!(header, stripe_signature(&notice.raw, secret, t));

        // Many checks later (every 200 ms), still one: once per period.
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        assert_eq!(receiver.received().len(), 1, "no alert storm");

        let alerts = app
            .get(
                &format!("/v1/notification-channels/{channel_id}/alerts"),
                token,
            )
            .await;
        assert_eq!(alerts.status, StatusCode::OK, "{}", alerts.text);
        let rows = alerts.body["data"].as_array().unwrap();
        assert_eq!(rows.len(), 1, "{}", alerts.text);
        assert_eq!(rows[0]["kind"], "connection.needs_reauth");
        assert_eq!(rows[0]["status"], "sent");
        assert_eq!(rows[0]["times_sent"], 1);
        assert_eq!(rows[0]["subject_id"], p.connection_id.as_str());
        let shown = app
            .get(&format!("/v1/notification-channels/{channel_id}"), token)
            .await;
        assert!(shown.body["last_sent_at"].is_string(), "{}", shown.text);
        assert!(
            metric(
                &app,
                r#"tributary_alerts_total{kind="connection.needs_reauth",outcome="sent"}"#
            )
            .await
            .is_some_and(|v| v >= 1.0)
        );
        receiver.served.stop().await;
        cleanup.run().await;
    }
}

#[tokio::test]
async fn a_connection_paused_at_its_daily_limit_alerts_once() {
    for backend in tributary_tests::backends() {
        let app = spawn(backend, "1h").await;
        let cleanup = app.cleanup_handle();
        let receiver = Receiver::start(&[]);
        let fake = tributary_fakes::hubspot::FakeHubSpot::start();
        // HubSpot has one request left today.
        fake.set_rate_limits(100, 10_000, 1);
        let p = app
            .pipeline_with(json!({
                "name": "HubSpot", "provider": "hubspot",
                "auth": {"type": "token", "token": tributary_fakes::hubspot::PRIVATE_APP_TOKEN},
                "settings": {"base_url": fake.base_url}
            }))
            .await;
        let token = &p.tenant.token;
        let flow = app
            .post("/v1/flows", token, contact_flow(&p.connection_id))
            .await;
        assert_eq!(flow.status, StatusCode::CREATED, "{}", flow.text);
        let channel = app
            .post(
                "/v1/notification-channels",
                token,
                json!({"name": "Ops hook", "kind": "webhook", "url": receiver.url(),
                       "alerts": ["connection.paused"]}),
            )
            .await;
        assert_eq!(channel.status, StatusCode::CREATED, "{}", channel.text);

        // The first charge takes the day's last request; the second waits for the pause.
        let first = charge_event(
            "evt_paused_1",
            "ch_paused_1",
            "first@example.com",
            "Pat Payer",
            1_000,
            1_700_000_000,
        );
        let done = app.deliver(&p, &first).await;
        assert_eq!(done["status"], "processed", "{done}");
        charge(&app, &p, 2).await;
        wait_for(20, "the connection to pause", || async {
            let c = app.connection(&p).await;
            (c["status"] == "paused").then_some(())
        })
        .await;
        let got = receiver.wait_for_count(1, "the pause alert").await;
        let notice = &got[0];
        assert_eq!(notice.body["type"], "connection.paused", "{}", notice.body);
        assert_eq!(
            notice.body["data"]["connection_id"],
            p.connection_id.as_str()
        );
        let until = notice.body["data"]["paused_until"]
            .as_str()
            .expect("paused_until");
        let until = chrono::DateTime::parse_from_rfc3339(until).unwrap();
        assert!(
            until > chrono::Utc::now() + chrono::Duration::minutes(50),
            "{}",
            notice.body
        );
        let summary = notice.body["summary"].as_str().unwrap();
        // The answer that took the day's last request reported the portal at its whole
        // allocation: the connection paused at its daily cap, before HubSpot refused anything.
        assert!(
            summary.contains("\"HubSpot\" (hubspot) is paused until")
                && summary.contains("daily cap reached: HubSpot reports 1 API requests used of 1"),
            "{summary}"
        );
        assert!(fake.log.all().iter().all(|l| l.status != 429));
        tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
        assert_eq!(receiver.received().len(), 1, "one alert per period");
        receiver.served.stop().await;
        fake.stop().await;
        cleanup.run().await;
    }
}

#[tokio::test]
async fn dead_letters_and_a_failing_flow_reach_slack_once_each() {
    for backend in tributary_tests::backends() {
        let app = spawn(backend, "1h").await;
        let cleanup = app.cleanup_handle();
        let receiver = Receiver::start(&[]);
        let p = failing_pipeline(&app, "invalid").await;
        let token = &p.tenant.token;
        let channel = app
            .post(
                "/v1/notification-channels",
                token,
                json!({"name": "#billing", "kind": "slack", "url": receiver.url(),
                       "alerts": ["deliveries.dead_letters", "flow.failing"],
                       "dead_letter_threshold": 3, "flow_failure_threshold": 3}),
            )
            .await;
        assert_eq!(channel.status, StatusCode::CREATED, "{}", channel.text);
        assert_eq!(channel.body["signed"], false);
        assert!(channel.body.get("secret").is_none());

        charge_done(&app, &p, 1).await;
        charge_done(&app, &p, 2).await;
        // A check runs with both dead letters in, and says nothing.
        assert_eq!(notifier(&app).check().await.unwrap(), 0);
        assert!(
            receiver.received().is_empty(),
            "two dead letters are under the threshold of 3"
        );
        charge(&app, &p, 3).await;
        let got = receiver.wait_for_count(2, "the two alerts").await;
        let texts: Vec<String> = got
            .iter()
            .map(|r| {
                assert!(r.signature.is_none(), "Slack messages are not signed");
                assert_eq!(
                    r.body.as_object().unwrap().keys().collect::<Vec<_>>(),
                    ["text"],
                    "a Slack incoming-webhook message"
                );
                r.body["text"].as_str().unwrap().to_string()
            })
            .collect();
        assert!(
            texts
                .iter()
                .any(|t| t.contains("3 deliveries are in the dead-letter queue (threshold 3)")),
            "{texts:?}"
        );
        assert!(
            texts.iter().any(|t| t.contains(
                "Flow \"Charges to contacts\" failed its last 3 deliveries (threshold 3)"
            ) && t.contains("invalid")),
            "{texts:?}"
        );

        // More failures keep both conditions true, but each was said this period.
        charge_done(&app, &p, 4).await;
        charge_done(&app, &p, 5).await;
        // A check runs with all five in, and sends nothing new.
        assert_eq!(notifier(&app).check().await.unwrap(), 0);
        assert_eq!(receiver.received().len(), 2, "no alert storm");
        // The console's Alerts page shows what the channel was sent.
        let shown = console_page(&app, &p.tenant.email, "/console/alerts").await;
        assert!(shown.contains("Alerts sent to #billing"), "{shown}");
        assert!(shown.contains("deliveries.dead_letters · sent"), "{shown}");
        assert!(shown.contains("flow.failing · sent"), "{shown}");
        receiver.served.stop().await;
        cleanup.run().await;
    }
}

/// A console page as `email` sees it, signed in with the tests' password.
async fn console_page(app: &TestApp, email: &str, path: &str) -> String {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("email", email), ("password", tributary_tests::PASSWORD)])
        .finish();
    let login = client
        .post(app.url("/console/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    let jar: Vec<String> = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_string))
        .collect();
    let page = client
        .get(app.url(path))
        .header("cookie", jar.join("; "))
        .send()
        .await
        .unwrap();
    page.text().await.unwrap()
}

#[tokio::test]
async fn a_failed_send_is_retried_and_the_period_repeats_the_alert() {
    for backend in tributary_tests::backends() {
        let app = spawn(backend, "3s").await;
        let receiver = Receiver::start(&[500]);
        let p = failing_pipeline(&app, "auth").await;
        let token = &p.tenant.token;
        let channel = app
            .post(
                "/v1/notification-channels",
                token,
                json!({"name": "Flaky", "kind": "webhook", "url": receiver.url()}),
            )
            .await;
        assert_eq!(channel.status, StatusCode::CREATED, "{}", channel.text);
        let generated = channel.str("/secret");
        assert!(generated.starts_with("tcs_"), "{generated}");
        let channel_id = channel.str("/id");
        charge(&app, &p, 1).await;

        let first = receiver
            .wait_for_count(1, "the alert after a failed send")
            .await;
        let header = first[0].signature.clone().unwrap();
        let t: i64 = header[2..header.find(',').unwrap()].parse().unwrap();
        assert_eq!(
            header,
            stripe_signature(&first[0].raw, &generated, t),
            "signed with the generated secret"
        );
        let alerts = app
            .get(
                &format!("/v1/notification-channels/{channel_id}/alerts"),
                token,
            )
            .await;
        assert_eq!(alerts.body["data"][0]["status"], "sent", "{}", alerts.text);

        // The condition still holds; once the period is over it is said again, not before.
        let both = receiver
            .wait_for_count(2, "the alert of the next period")
            .await;
        let gap = both[1].at - both[0].at;
        assert!(
            gap >= std::time::Duration::from_millis(2900),
            "repeated after {gap:?}, within the 3 s period"
        );
        assert_ne!(
            both[0].body["id"], both[1].body["id"],
            "each send has its own id"
        );
        app.cleanup_handle().run().await;
    }
}

#[tokio::test]
async fn two_processes_checking_at_once_send_one_alert() {
    each_backend_with(&[("TRIBUTARY_ALERT_INTERVAL", "1h")], |app| async move {
        let receiver = Receiver::start(&[]);
        let p = failing_pipeline(&app, "auth").await;
        let created = app
            .post(
                "/v1/notification-channels",
                &p.tenant.token,
                json!({"name": "Ops", "kind": "slack", "url": receiver.url()}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        charge(&app, &p, 1).await;
        wait_for(20, "the connection to need re-authorization", || async {
            let c = app
                .get(
                    &format!("/v1/connections/{}", p.connection_id),
                    &p.tenant.token,
                )
                .await;
            (c.body["status"] == "needs_reauth").then_some(())
        })
        .await;
        // Four notifiers stand in for four processes, each checking twice at the same time
        // (the app's own checks every 30 s by default, too).
        let notifiers: Vec<_> = (0..4).map(|_| notifier(&app)).collect();
        let checks = notifiers
            .iter()
            .flat_map(|n| [n.check(), n.check()])
            .collect::<Vec<_>>();
        let sent: usize = futures::future::join_all(checks)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .sum();
        // Every check has returned, each send awaited: one alert in all, and one check of the
        // eight claims it (the app's own checks wait 1 h).
        let got = receiver.received();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(sent, 1, "{sent} sends claimed");
        receiver.served.stop().await;
    })
    .await;
}

#[tokio::test]
async fn channels_refuse_bad_fields_hide_their_secrets_and_test_themselves() {
    each_backend(|app| async move {
        let owner = app.signup("Channels").await;
        let token = &owner.token;
        refuse_bad_channel_fields(&app, token).await;

        // A member reads but cannot create.
        let (_, member) = app.user_with_role(&owner, "member").await;
        let refused = app
            .post(
                "/v1/notification-channels",
                &member,
                json!({"name": "x", "kind": "slack", "url": "https://example.com/h"}),
            )
            .await;
        refused.assert_problem(StatusCode::FORBIDDEN);

        let id = create_sealed_channel_and_test_it(&app, token).await;
        patch_hide_and_delete_channel(&app, token, &id).await;
    })
    .await;
}

/// Checks that each bad field of a new channel is named and that nothing is half-written.
async fn refuse_bad_channel_fields(app: &TestApp, token: &str) {
    for (body, field) in [
        (
            json!({"name": "x", "kind": "sms", "url": "https://example.com/h"}),
            "kind",
        ),
        (
            json!({"name": "x", "kind": "slack", "url": "ftp://example.com/h"}),
            "url",
        ),
        (
            json!({"name": "x", "kind": "slack", "url": "https://example.com/h", "secret": "0123456789abcdef"}),
            "secret",
        ),
        (
            json!({"name": "x", "kind": "webhook", "url": "https://example.com/h", "secret": "short"}),
            "secret",
        ),
        (
            json!({"name": "x", "kind": "slack", "url": "https://example.com/h", "alerts": ["flow.failing", "bogus"]}),
            "alerts[1]",
        ),
        (
            json!({"name": "x", "kind": "slack", "url": "https://example.com/h", "alerts": []}),
            "alerts",
        ),
        (
            json!({"name": "x", "kind": "slack", "url": "https://example.com/h", "dead_letter_threshold": 0}),
            "dead_letter_threshold",
        ),
        (
            json!({"name": " ", "kind": "slack", "url": "https://example.com/h"}),
            "name",
        ),
        (
            json!({"name": "x", "kind": "slack", "url": "https://example.com/h", "colour": "red"}),
            "colour",
        ),
    ] {
        let reply = app.post("/v1/notification-channels", token, body).await;
        let fields = reply.assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            fields.contains(&field.to_string()),
            "{field}: {}",
            reply.text
        );
    }
    let listed = app.get("/v1/notification-channels", token).await;
    assert_eq!(listed.body["data"], json!([]), "nothing half-written");
}

/// Creates a channel whose URL is sealed and never shown, and checks what its test sends report.
async fn create_sealed_channel_and_test_it(app: &TestApp, token: &str) -> String {
    let receiver = Receiver::start(&[404]);
    let slack_url = format!("{}?token=very-secret-path", receiver.url());
    let created = app
        .post(
            "/v1/notification-channels",
            token,
            json!({"name": "Ops", "kind": "slack", "url": slack_url}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["url_hint"], "http://127.0.0.1/…");
    assert!(!created.text.contains("very-secret-path"));
    let id = created.str("/id");
    let stored = entity::notification_channels::Entity::find_by_id(id.clone())
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    assert!(stored.url.starts_with("k1:") && !stored.url.contains("very-secret-path"));

    let test_path = format!("/v1/notification-channels/{id}/test");
    let failed = app.post(&test_path, token, json!({})).await;
    assert_eq!(failed.status, StatusCode::OK, "{}", failed.text);
    assert_eq!(failed.body["ok"], false);
    assert_eq!(failed.body["status"], 404);
    let passed = app.post(&test_path, token, json!({})).await;
    assert_eq!(passed.body["ok"], true, "{}", passed.text);
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    assert!(
        got[0].body["text"]
            .as_str()
            .unwrap()
            .contains("A test of the notification channel \"Ops\"")
    );
    receiver.served.stop().await;
    let unreachable = app.post(&test_path, token, json!({})).await;
    assert_eq!(unreachable.body["ok"], false);
    assert_eq!(
        unreachable.body["detail"],
        "the receiver could not be reached"
    );
    id
}

/// Patches the channel, checks that another tenant cannot see it, then deletes it.
async fn patch_hide_and_delete_channel(app: &TestApp, token: &str, id: &str) {
    let patched = app
        .patch(
            &format!("/v1/notification-channels/{id}"),
            token,
            json!({"enabled": false, "flow_failure_threshold": 2}),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert_eq!(patched.body["enabled"], false);
    assert_eq!(patched.body["flow_failure_threshold"], 2);
    let other = app.signup("Other").await;
    app.get(&format!("/v1/notification-channels/{id}"), &other.token)
        .await
        .assert_problem(StatusCode::NOT_FOUND);
    let removed = app
        .delete(&format!("/v1/notification-channels/{id}"), token)
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    app.get(&format!("/v1/notification-channels/{id}"), token)
        .await
        .assert_problem(StatusCode::NOT_FOUND);
}
