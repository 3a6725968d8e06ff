//! Claims of the README that no other test proves: the webhook body limit on both sides of
//! 1 MiB, Stripe request pacing and `Stripe-Should-Retry` against the fake Stripe, and key
//! rotation over every kind of sealed value, and an email held by the mail server when its
//! worker died not being sent again.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use entity::{connections, deliveries, event_seeds, oauth_states};
use reqwest::StatusCode;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tributary_api::commands::rotate_keys;
use tributary_fakes::stripe::{FakeStripe, LIVE_SECRET_KEY, SECRET_KEY};
use tributary_tests::{
    Pipeline, TEST_KEYRING, TestApp, WorkerProcess, charge_event, each_backend, each_backend_with,
    stripe_signature, wait_for,
};
use tributary_worker::sealed;
use tributary_worker::secrets::{Keyring, SecretContext};

const MIB: usize = 1024 * 1024;

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A signed `charge.succeeded` body of exactly `size` bytes (padded in its metadata).
fn event_of_size(size: usize, secret: &str) -> (Vec<u8>, String) {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut event = charge_event(
        &format!("evt_{id}"),
        &format!("ch_{id}"),
        "big@example.com",
        "Big Body",
        100,
        now(),
    );
    event["data"]["object"]["metadata"]["padding"] = json!("");
    let bare = serde_json::to_vec(&event).unwrap().len();
    event["data"]["object"]["metadata"]["padding"] = json!("x".repeat(size - bare));
    let body = serde_json::to_vec(&event).unwrap();
    assert_eq!(body.len(), size);
    let signature = stripe_signature(&body, secret, now());
    (body, signature)
}

#[tokio::test]
async fn webhook_bodies_up_to_1_mib_are_accepted_and_one_byte_more_is_413() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        for size in [MIB - 1, MIB] {
            let (body, signature) = event_of_size(size, &p.secret);
            let reply = app.webhook(&p.webhook_path, &body, Some(&signature)).await;
            assert_eq!(reply.status, StatusCode::OK, "{size} bytes: {}", reply.text);
            let event = app
                .get(
                    &format!("/v1/events/{}", reply.str("/event_id")),
                    &p.tenant.token,
                )
                .await;
            assert_eq!(event.status, StatusCode::OK, "{}", event.text);
        }
        let (body, signature) = event_of_size(MIB + 1, &p.secret);
        let reply = app.webhook(&p.webhook_path, &body, Some(&signature)).await;
        reply.assert_problem(StatusCode::PAYLOAD_TOO_LARGE);
        let events = app.get("/v1/events?limit=100", &p.tenant.token).await;
        assert_eq!(
            events.body["data"].as_array().map(Vec::len),
            Some(2),
            "the refused body stored nothing: {}",
            events.text
        );
    })
    .await;
}

/// A tenant whose Stripe account holds `key`, pinned to the fake's API version.
async fn stripe_pipeline(app: &TestApp, key: &str) -> Pipeline {
    let p = app.pipeline(json!({})).await;
    app.use_stripe_key(&p, key).await;
    p
}

/// A flow that retrieves each of `customers` in turn.
async fn retrieve_flow(app: &TestApp, p: &Pipeline, customers: &[String]) {
    let steps: Vec<Value> = customers
        .iter()
        .enumerate()
        .map(|(i, id)| {
            json!({"id": format!("c{i}"), "action": "stripe.retrieve", "object": "customer",
                   "record_id": id})
        })
        .collect();
    let flow = json!({"name": "Retrieve", "connection_id": p.connection_id,
        "trigger": {"events": ["charge.succeeded"]}, "steps": steps});
    let created = app.post("/v1/flows", &p.tenant.token, flow).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
}

fn customers(fake: &FakeStripe, tag: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let id = format!("cus_{tag}_{i}");
            fake.put(
                json!({"id": id, "object": "customer", "email": format!("{i}@example.com"),
                            "metadata": {}, "created": 1_700_000_000, "livemode": false}),
            );
            id
        })
        .collect()
}

/// The fake's answers to retrievals of customers tagged `tag`: (when, status).
fn retrievals(fake: &FakeStripe, tag: &str) -> Vec<(chrono::DateTime<chrono::Utc>, u16)> {
    let prefix = format!("/v1/customers/cus_{tag}_");
    fake.requests()
        .all()
        .into_iter()
        .filter(|r| r.path.starts_with(&prefix))
        .map(|r| (r.at, r.status))
        .collect()
}

/// The most requests in any one second.
fn densest_second(times: &[chrono::DateTime<chrono::Utc>]) -> usize {
    let mut times = times.to_vec();
    times.sort();
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|t| **t - times[i] < chrono::Duration::seconds(1))
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// Sends one charge event per pipeline at once and waits for all of them.
async fn deliver_all(app: &TestApp, pipelines: &[&Pipeline], events_each: usize) {
    let mut sent = Vec::new();
    for p in pipelines {
        // In the account's mode (a live key's account refuses test events).
        let account = app
            .get(
                &format!("/v1/stripe-accounts/{}", p.account_id),
                &p.tenant.token,
            )
            .await;
        let livemode = account.body["livemode"].as_bool().unwrap_or(false);
        for _ in 0..events_each {
            let id = uuid::Uuid::new_v4().simple().to_string();
            let mut event = charge_event(
                &format!("evt_{id}"),
                &format!("ch_{id}"),
                "pace@example.com",
                "Pace",
                100,
                now(),
            );
            event["livemode"] = json!(livemode);
            let reply = app.send_event(p, &event).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
            sent.push((p.tenant.token.clone(), reply.str("/event_id")));
        }
    }
    for (token, id) in sent {
        let done = app.finished_event(&token, &id).await;
        assert_eq!(done["status"], "processed", "{done}");
    }
}

#[tokio::test]
async fn stripe_calls_are_paced_per_account_at_20_a_second_for_test_keys_and_80_for_live() {
    let fake = FakeStripe::start();
    let second_test_key = "sk_test_51TributaryPacingSecondKey000000000";
    fake.add_secret_key(second_test_key);
    // Enough of one tenant's events at once to outrun 80 a second without the pacing.
    let vars = [
        ("TRIBUTARY_STRIPE_API_URL", fake.base_url.as_str()),
        ("TRIBUTARY_WORKER_CONCURRENCY", "8"),
        ("TRIBUTARY_TENANT_MAX_IN_FLIGHT", "8"),
    ];
    each_backend_with(&vars, |app| {
        let fake = &fake;
        async move {
            // Stripe's own limits, on: 25 a second per test key, 100 per live key.
            fake.rate_limit(25);
            let tag = uuid::Uuid::new_v4().simple().to_string();
            let (a, b) = (format!("{tag}a"), format!("{tag}b"));
            let first = stripe_pipeline(&app, SECRET_KEY).await;
            let second = stripe_pipeline(&app, second_test_key).await;
            retrieve_flow(&app, &first, &customers(fake, &a, 30)).await;
            retrieve_flow(&app, &second, &customers(fake, &b, 30)).await;
            deliver_all(&app, &[&first, &second], 1).await;
            let (a, b) = (retrievals(fake, &a), retrievals(fake, &b));
            assert_eq!((a.len(), b.len()), (30, 30), "no retrieval was retried");
            assert!(
                a.iter().chain(&b).all(|(_, status)| *status == 200),
                "Stripe's limiter never answered 429"
            );
            let times = |list: &[(chrono::DateTime<chrono::Utc>, u16)]| {
                list.iter().map(|(at, _)| *at).collect::<Vec<_>>()
            };
            // 20 a second; the bound leaves room for 50 ms of jitter in the fake's clock.
            for (name, list) in [("first", &a), ("second", &b)] {
                let densest = densest_second(&times(list));
                assert!(
                    densest <= 22,
                    "{name} account: {densest} requests in a second"
                );
            }
            // Each account has its own budget: together they go faster than one.
            let both: Vec<_> = times(&a).into_iter().chain(times(&b)).collect();
            let densest = densest_second(&both);
            assert!(densest > 25, "two accounts together: {densest} in a second");

            fake.rate_limit(100);
            let live = stripe_pipeline(&app, LIVE_SECRET_KEY).await;
            let tag = format!("{tag}live");
            retrieve_flow(&app, &live, &customers(fake, &tag, 16)).await;
            deliver_all(&app, &[&live], 8).await;
            let live = retrievals(fake, &tag);
            assert_eq!(live.len(), 128);
            assert!(live.iter().all(|(_, status)| *status == 200));
            let densest = densest_second(&times(&live));
            assert!(densest <= 85, "live key: {densest} requests in a second");
            fake.rate_limit(0);
        }
    })
    .await;
    fake.stop().await;
}

#[tokio::test]
async fn stripe_should_retry_decides_whether_a_call_is_retried() {
    let fake = FakeStripe::start();
    each_backend_with(
        &[("TRIBUTARY_STRIPE_API_URL", fake.base_url.as_str())],
        |app| {
            let fake = &fake;
            async move {
                let tag = uuid::Uuid::new_v4().simple().to_string();
                let p = stripe_pipeline(&app, SECRET_KEY).await;
                let ids = customers(fake, &tag, 1);
                retrieve_flow(&app, &p, &ids).await;

                // A 409 is not retried by default; `Stripe-Should-Retry: true` makes the call
                // try again at once, so the step succeeds on its first attempt.
                fake.fail_next_with(1, 409, Some(true));
                deliver_all(&app, &[&p], 1).await;
                let statuses: Vec<u16> = retrievals(fake, &tag).iter().map(|r| r.1).collect();
                assert_eq!(statuses, [409, 200]);
                let first = last_delivery(&app, &p).await;
                assert_eq!(
                    (first["status"].as_str(), first["attempts"].as_i64()),
                    (Some("succeeded"), Some(1)),
                    "{first}"
                );

                // A 503 is retried by default; `Stripe-Should-Retry: false` ends the call, and
                // the step is retried as a delivery's next attempt instead.
                fake.fail_next_with(1, 503, Some(false));
                deliver_all(&app, &[&p], 1).await;
                let statuses: Vec<u16> = retrievals(fake, &tag).iter().map(|r| r.1).collect();
                assert_eq!(statuses, [409, 200, 503, 200]);
                let second = last_delivery(&app, &p).await;
                assert_eq!(
                    (second["status"].as_str(), second["attempts"].as_i64()),
                    (Some("succeeded"), Some(2)),
                    "{second}"
                );
            }
        },
    )
    .await;
    fake.stop().await;
}

/// The retrieval delivery of the tenant's newest event.
async fn last_delivery(app: &TestApp, p: &Pipeline) -> Value {
    let events = app.get("/v1/events?limit=1", &p.tenant.token).await;
    let id = events.body["data"][0]["id"].as_str().unwrap().to_string();
    let event = app.finished_event(&p.tenant.token, &id).await;
    event["deliveries"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["step"] == "c0"))
        .cloned()
        .unwrap_or_else(|| panic!("no retrieval in {event}"))
}

const K2: &str = "k2:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk=";

/// Rotation covers more than Stripe keys: a CRM session, a PKCE verifier of an authorization
/// in progress and the seed of an event's generated secrets, sealed under k1, open under k2
/// alone after `rotate-keys`.
#[tokio::test]
async fn rotate_keys_reseals_sessions_pkce_verifiers_and_event_seeds() {
    each_backend(|app| async move {
        let k1 = Keyring::parse(TEST_KEYRING).unwrap();
        let only_k2 = Keyring::parse(K2).unwrap();
        let both = Keyring::parse(&format!("{K2},{TEST_KEYRING}")).unwrap();

        let (p, event_id) = seal_an_event_seed(&app).await;
        let tenant = p.tenant.id.clone();
        let zoho_id = start_a_zoho_authorization(&app, &p).await;

        // A session, sealed as the app seals it, on that connection.
        let session_plain =
            r#"{"access_token":"1000.rotation-access-token","expires_at":4102444800}"#;
        let session_ctx = SecretContext {
            tenant_id: &tenant,
            purpose: sealed::CONNECTION_SESSION,
            row_id: &zoho_id,
        };
        connections::Entity::update_many()
            .col_expr(
                connections::Column::Session,
                Expr::value(k1.seal(session_plain, &session_ctx)),
            )
            .filter(connections::Column::Id.eq(zoho_id.as_str()))
            .exec(&app.db)
            .await
            .unwrap();

        let before = sealed_values(&app, &zoho_id, &event_id).await;
        let plain = check_sealed_under_k1_alone(&before, &tenant, &k1, &only_k2);
        assert_eq!(plain[0], session_plain);

        let report = rotate_keys(&app.db, &both).await.unwrap();
        assert_eq!(report.current, 0);
        assert!(report.resealed >= 3, "{report:?}");

        // k1 is gone: each opens with k2 alone, to what it was, and names k2.
        let after = sealed_values(&app, &zoho_id, &event_id).await;
        for ((value, purpose, row_id), plain) in after.iter().zip(&plain) {
            assert_eq!(Keyring::key_id_of(value), Some("k2"), "{purpose}");
            let ctx = SecretContext {
                tenant_id: &tenant,
                purpose,
                row_id,
            };
            let opened = only_k2.open(value, &ctx).unwrap();
            assert_eq!(opened.expose_secret(), plain.as_str(), "{purpose}");
        }
    })
    .await;
}

/// Runs a flow that generates a password, so its event gets a sealed seed; returns the event id.
async fn seal_an_event_seed(app: &TestApp) -> (Pipeline, String) {
    // An event seed: a flow that generates a password seals one for the event.
    let p = app.pipeline(json!({})).await;
    let flow = json!({"name": "Portal", "connection_id": p.connection_id,
        "trigger": {"events": ["charge.succeeded"]},
        "steps": [{"id": "contact", "action": "upsert", "object": "contacts",
                   "match": {"email": "{{ object.billing_details.email }}"},
                   "fields": {"portal_password": "{{ password('portal') }}"}}]});
    let created = app.post("/v1/flows", &p.tenant.token, flow).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = uuid::Uuid::new_v4().simple().to_string();
    let event = charge_event(
        &format!("evt_{id}"),
        &format!("ch_{id}"),
        "seed@example.com",
        "Seed",
        100,
        now(),
    );
    let done = app.deliver(&p, &event).await;
    assert_eq!(done["status"], "processed", "{done}");
    let event_id = done["id"].as_str().unwrap().to_string();
    (p, event_id)
}

/// Creates a Zoho connection waiting for its authorization, which holds a sealed PKCE verifier.
async fn start_a_zoho_authorization(app: &TestApp, p: &Pipeline) -> String {
    let zoho = app
        .post(
            "/v1/connections",
            &p.tenant.token,
            json!({"name": "Zoho", "provider": "zoho",
                   "auth": {"type": "oauth", "client_id": "1000.ROTATION", "client_secret": "rotation-client-secret"},
                   "settings": {"accounts_url": "https://accounts.zoho.example"}}),
        )
        .await;
    assert_eq!(zoho.status, StatusCode::CREATED, "{}", zoho.text);
    zoho.str("/id")
}

/// Reads the session, PKCE verifier and event seed as stored, each with its purpose and row.
async fn sealed_values(
    app: &TestApp,
    zoho_id: &str,
    event_id: &str,
) -> [(String, &'static str, String); 3] {
    let session = connections::Entity::find_by_id(zoho_id)
        .one(&app.db)
        .await
        .unwrap()
        .unwrap()
        .session
        .expect("a session");
    let state = oauth_states::Entity::find()
        .filter(oauth_states::Column::ConnectionId.eq(zoho_id))
        .one(&app.db)
        .await
        .unwrap()
        .expect("an authorization in progress");
    let seed = event_seeds::Entity::find_by_id(event_id)
        .one(&app.db)
        .await
        .unwrap()
        .expect("the event's seed");
    [
        (session, sealed::CONNECTION_SESSION, zoho_id.to_string()),
        (
            state.verifier.expect("a PKCE verifier"),
            sealed::OAUTH_VERIFIER,
            state.id,
        ),
        (seed.seed, sealed::EVENT_SEED, event_id.to_string()),
    ]
}

/// Checks that each value is sealed under k1 and will not open with k2 alone; returns them open.
fn check_sealed_under_k1_alone(
    before: &[(String, &str, String)],
    tenant: &str,
    k1: &Keyring,
    only_k2: &Keyring,
) -> Vec<String> {
    let mut plain = Vec::new();
    for (value, purpose, row_id) in before {
        let ctx = SecretContext {
            tenant_id: tenant,
            purpose,
            row_id,
        };
        assert_eq!(Keyring::key_id_of(value), Some("k1"), "{purpose}");
        let error = only_k2.open(value, &ctx).unwrap_err();
        assert!(error.to_string().contains("k1"), "{purpose}: {error}");
        plain.push(k1.open(value, &ctx).unwrap().expose_secret().to_string());
    }
    plain
}

/// A mail server that keeps the first message it is given without ever answering it (as a
/// server does while a sender's process dies), and accepts any later one at once. Counts the
/// transactions begun (`MAIL FROM`) and the messages it was handed.
struct HoldingSmtp {
    port: u16,
    transactions: Arc<AtomicUsize>,
    messages: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl HoldingSmtp {
    async fn start() -> HoldingSmtp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (transactions, messages) =
            (Arc::<AtomicUsize>::default(), Arc::<AtomicUsize>::default());
        let (t, m) = (transactions.clone(), messages.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (t, m) = (t.clone(), m.clone());
                tokio::spawn(async move {
                    let _ = hold_session(stream, t, m).await;
                });
            }
        });
        HoldingSmtp {
            port,
            transactions,
            messages,
            task,
        }
    }
}

impl Drop for HoldingSmtp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hold_session(
    stream: tokio::net::TcpStream,
    transactions: Arc<AtomicUsize>,
    messages: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let (read, mut write) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(read);
    write.write_all(b"220 hold.test ESMTP\r\n").await?;
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let upper = line.trim_end().to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-hold.test\r\n250 8BITMIME\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            transactions.fetch_add(1, Ordering::SeqCst);
            b"250 2.1.0 OK\r\n"
        } else if upper == "DATA" {
            write.write_all(b"354 go ahead\r\n").await?;
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" {
                    break;
                }
            }
            if messages.fetch_add(1, Ordering::SeqCst) == 0 {
                // Held: no answer, until the sender goes away.
                let mut rest = Vec::new();
                lines.read_to_end(&mut rest).await?;
                return Ok(());
            }
            b"250 2.0.0 queued\r\n"
        } else if upper == "QUIT" {
            write.write_all(b"221 2.0.0 bye\r\n").await?;
            return Ok(());
        } else {
            b"250 2.0.0 OK\r\n"
        };
        write.write_all(reply).await?;
    }
}

/// README, Onboarding actions: should the process die while the mail server holds the message,
/// it is not sent again, and the delivery says it may have arrived.
#[tokio::test]
async fn an_email_held_by_the_server_when_the_worker_died_is_not_sent_again() {
    each_backend_with(
        &[
            // The api takes webhooks and sweeps; the workers below run the flows.
            ("TRIBUTARY_EMBEDDED_WORKER", "false"),
            ("TRIBUTARY_SWEEP_GRACE", "1s"),
            ("TRIBUTARY_SWEEP_INTERVAL", "200ms"),
        ],
        |app| async move {
            let smtp = HoldingSmtp::start().await;
            let p = app.pipeline(json!({})).await;
            let token = &p.tenant.token;
            let mail = app
                .post(
                    "/v1/connections",
                    token,
                    json!({"name": "Mail", "provider": "smtp",
                           "settings": {"host": "127.0.0.1", "port": smtp.port, "tls": "none",
                                        "from": "welcome@acme.example"}}),
                )
                .await;
            assert_eq!(mail.status, StatusCode::CREATED, "{}", mail.text);
            let flow = json!({"name": "Welcome", "connection_id": p.connection_id,
                "trigger": {"events": ["charge.succeeded"]},
                "steps": [{"id": "welcome", "action": "email", "connection_id": mail.str("/id"),
                           "fields": {"to": "{{ object.billing_details.email }}",
                                      "subject": "Welcome", "text": "Your portal is ready."}}]});
            let created = app.post("/v1/flows", token, flow).await;
            assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);

            let first = WorkerProcess::start(app.settings.clone());
            let id = uuid::Uuid::new_v4().simple().to_string();
            let event = charge_event(
                &format!("evt_{id}"),
                &format!("ch_{id}"),
                "client@example.com",
                "Client",
                100,
                now(),
            );
            let sent = app.send_event(&p, &event).await;
            assert_eq!(sent.status, StatusCode::OK, "{}", sent.text);
            let event_id = sent.str("/event_id");
            wait_for(20, "the mail server to hold the message", || async {
                (smtp.messages.load(Ordering::SeqCst) == 1).then_some(())
            })
            .await;
            first.kill();

            // The dead worker's claim on the step lasts a minute or more; let it run out.
            deliveries::Entity::update_many()
                .col_expr(
                    deliveries::Column::NextAttemptAt,
                    Expr::value(chrono::Utc::now() - chrono::Duration::seconds(1)),
                )
                .filter(deliveries::Column::EventId.eq(event_id.as_str()))
                .exec(&app.db)
                .await
                .unwrap();
            let second = WorkerProcess::start(app.settings.clone());
            let done = app.finished_event(token, &event_id).await;
            second.kill();

            let delivery = &done["deliveries"][0];
            assert_eq!(delivery["status"], "succeeded", "{done}");
            assert!(
                delivery["warnings"][0]
                    .as_str()
                    .is_some_and(|w| w.contains("may have arrived")),
                "{delivery}"
            );
            assert_eq!(
                (
                    smtp.transactions.load(Ordering::SeqCst),
                    smtp.messages.load(Ordering::SeqCst)
                ),
                (1, 1),
                "the mail server was given the message once"
            );
        },
    )
    .await;
}
