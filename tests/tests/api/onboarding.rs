//! Seed 003's onboarding pipeline end to end: a signed checkout.session.completed becomes a
//! lead, exactly one onboarding email (through a fake SMTP server, which refuses the first
//! try) and exactly one signed provisioning call carrying the same generated password — also
//! when Stripe delivers the event three times; a wrong currency stops the flow at its assert.

use std::sync::{Arc, Mutex};

use actix_web::HttpResponse;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tributary_fakes::smtp::FakeSmtp;
use tributary_fakes::{RequestLog, Served};
use tributary_tests::{Pipeline, TestApp, backends, each_backend, wait_for};

const HMAC_SECRET: &str = "provisioning-shared-secret-0001";

fn checkout(id: &str, email: &str, currency: &str) -> Value {
    json!({
        "id": format!("evt_{id}"), "object": "event", "type": "checkout.session.completed",
        "created": chrono::Utc::now().timestamp(), "livemode": false, "api_version": "2024-06-20",
        "data": {"object": {
            "id": format!("cs_test_{id}"), "object": "checkout.session", "mode": "payment",
            "amount_total": 24950, "currency": currency, "payment_status": "paid",
            "status": "complete", "customer": "cus_onboard",
            "customer_details": {"email": email, "name": "Sarah Connor"},
            "metadata": {"serviceId": "seo-pro"}
        }}
    })
}

/// The provisioning endpoint: answers 201 with a workspace, keeps each call's body and whether
/// its signature verified.
struct Provisioning {
    served: Served,
    calls: Arc<Mutex<Vec<(Value, bool)>>>,
}

impl Provisioning {
    fn start() -> Provisioning {
        let calls: Arc<Mutex<Vec<(Value, bool)>>> = Arc::default();
        let store = calls.clone();
        let served = Served::answering(RequestLog::default(), move |req, body| {
            let mut mac = Hmac::<sha2::Sha256>::new_from_slice(HMAC_SECRET.as_bytes()).unwrap();
            mac.update(body);
            let expected = hex::encode(mac.finalize().into_bytes());
            let signed = req
                .headers()
                .get("x-signature")
                .and_then(|v| v.to_str().ok())
                == Some(expected.as_str());
            let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            store.lock().unwrap().push((parsed, signed));
            HttpResponse::Created()
                .json(json!({"id": "ws_42", "url": "https://portal.example.com/ws_42"}))
        });
        Provisioning { served, calls }
    }

    fn calls(&self) -> Vec<(Value, bool)> {
        self.calls.lock().unwrap().clone()
    }
}

/// The built-in onboarding recipe, pointed at this test's mail server and endpoint.
async fn onboarding_flow(
    app: &TestApp,
    p: &Pipeline,
    smtp: &FakeSmtp,
    provisioning: &Provisioning,
) -> String {
    let token = &p.tenant.token;
    let mail = app
        .post(
            "/v1/connections",
            token,
            json!({"name": "Mail", "provider": "smtp",
                   "auth": {"type": "basic", "username": "mailer", "password": "mail-password-1"},
                   "settings": {"host": smtp.host, "port": smtp.port, "tls": "none",
                                "from": "welcome@acme.example", "from_name": "Acme Onboarding"}}),
        )
        .await;
    assert_eq!(mail.status, StatusCode::CREATED, "{}", mail.text);
    let tested = app
        .post(
            &format!("/v1/connections/{}/test", mail.str("/id")),
            token,
            json!({}),
        )
        .await;
    assert_eq!(tested.body["ok"], true, "{}", tested.text);
    let endpoint = app
        .post(
            "/v1/connections",
            token,
            json!({"name": "Provisioning", "provider": "http",
                   "auth": {"type": "hmac", "secret": HMAC_SECRET, "header": "X-Signature"},
                   "settings": {"base_url": provisioning.served.base_url}}),
        )
        .await;
    assert_eq!(endpoint.status, StatusCode::CREATED, "{}", endpoint.text);

    let templates = app.get("/v1/flow-templates", token).await;
    let template = templates.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "onboarding-from-checkout")
        .expect("the onboarding recipe")
        .clone();
    let mut flow = template["flow"].clone();
    flow["connection_id"] = json!(p.connection_id);
    // As the recipe says: the smtp connection in steps[2], the endpoint in steps[3].
    let placeholder = app.post("/v1/flows", token, flow.clone()).await;
    assert_eq!(
        placeholder.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
        ["steps[2].connection_id"]
    );
    flow["steps"][2]["connection_id"] = json!(mail.str("/id"));
    let step = flow["steps"][3].as_object_mut().unwrap();
    step.remove("url");
    step.insert("connection_id".into(), json!(endpoint.str("/id")));
    step.insert("path".into(), json!("/workspaces"));
    let created = app.post("/v1/flows", token, flow).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    created.str("/id")
}

fn password_in(text: &str) -> String {
    let start = text.find("password: ").expect("a password line") + "password: ".len();
    text[start..].chars().take(20).collect()
}

/// Sends the checkout three times while the mail server refuses its first try; returns the
/// finished event.
async fn deliver_the_checkout_three_times(app: &TestApp, p: &Pipeline, smtp: &FakeSmtp) -> Value {
    smtp.fail_next(1);
    let event = checkout("onboard1", "Sarah@Example.com", "usd");
    let first = app.send_event(p, &event).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    for _ in 0..2 {
        let again = app.send_event(p, &event).await;
        assert_eq!(again.body["duplicate"], true, "{}", again.text);
    }
    let done = app
        .finished_event(&p.tenant.token, &first.str("/event_id"))
        .await;
    assert_eq!(done["status"], "processed", "{done}");
    done
}

/// Checks the one lead, the one email and the one signed provisioning call; returns the
/// generated password.
async fn check_the_lead_email_and_call(
    app: &TestApp,
    p: &Pipeline,
    smtp: &FakeSmtp,
    provisioning: &Provisioning,
) -> String {
    // The lead.
    let leads = app
        .records(&p.tenant.token, &p.connection_id, "leads")
        .await;
    assert_eq!(leads.len(), 1, "{leads:?}");
    let lead = &leads[0];
    assert_eq!(lead["fields"]["email"], "sarah@example.com");
    assert_eq!(lead["fields"]["name"], "Sarah Connor");
    assert_eq!(lead["fields"]["invoicedValue"].as_f64(), Some(249.5));
    assert_eq!(lead["fields"]["orderedService"], "seo-pro");

    // Exactly one email, to the client, with the portal credentials.
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1, "one email after a refused first try");
    let mail = &mails[0];
    assert_eq!(mail.to, ["Sarah@Example.com"]);
    assert_eq!(mail.from, "welcome@acme.example");
    assert!(
        mail.data
            .contains("Subject: Welcome aboard, Sarah: your client portal"),
        "{}",
        mail.data
    );
    assert!(mail.data.contains("Message-ID: <"), "{}", mail.data);
    assert!(
        mail.data.contains("login: sarah@example.com"),
        "{}",
        mail.data
    );
    let password = password_in(&mail.data);
    assert!(
        password.chars().all(|c| c.is_ascii_alphanumeric()),
        "{password}"
    );

    // Exactly one provisioning call, signed, with the same password and the lead's id.
    let calls = provisioning.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let (body, signed) = &calls[0];
    assert!(signed, "the HMAC signature verifies");
    assert_eq!(body["portal_password"], password.as_str());
    assert_eq!(body["lead_id"], lead["id"]);
    assert_eq!(body["service"], "seo-pro");
    password
}

/// Checks the event's deliveries say what happened and hold no generated password.
fn check_the_deliveries_keep_no_password(done: &Value, password: &str) {
    let deliveries = done["deliveries"].as_array().unwrap();
    let by_step = |step: &str| {
        deliveries
            .iter()
            .find(|d| d["step"] == step)
            .unwrap()
            .clone()
    };
    assert_eq!(by_step("verify")["status"], "succeeded");
    let welcome = by_step("welcome");
    assert_eq!(welcome["action"], "email");
    assert_eq!(welcome["status"], "succeeded");
    assert_eq!(welcome["attempts"], 2, "the refused try and the sent one");
    assert!(welcome["crm_record_id"].as_str().unwrap().starts_with('<'));
    let workspace = by_step("workspace");
    assert_eq!(workspace["status"], "succeeded");
    assert_eq!(workspace["crm_record_id"], "ws_42");
    let text = serde_json::to_string(done).unwrap();
    assert!(
        !text.contains(password),
        "the generated password is never kept"
    );
    assert!(text.contains("[generated secret]"));
}

/// Forces a replay and checks it calls the endpoint again with the same password but does
/// not mail the client again.
async fn check_a_forced_replay_mails_no_one_again(
    app: &TestApp,
    token: &str,
    done: &Value,
    smtp: &FakeSmtp,
    provisioning: &Provisioning,
) {
    let replay = app
        .post(
            &format!("/v1/events/{}/replay", done["id"].as_str().unwrap()),
            token,
            json!({"force": true}),
        )
        .await;
    assert_eq!(replay.status, StatusCode::ACCEPTED);
    wait_for(20, "the replay to finish", || async {
        let e = app
            .get(
                &format!("/v1/events/{}", done["id"].as_str().unwrap()),
                token,
            )
            .await;
        let welcome = e.body["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["step"] == "welcome")
            .cloned()?;
        welcome["warnings"]
            .as_array()
            .is_some_and(|w| !w.is_empty())
            .then_some(())
    })
    .await;
    assert_eq!(smtp.messages().len(), 1, "no second email");
    // The call is made again, as asked, with the same generated password (and the
    // recipe's Idempotency-Key, the event's id, for the endpoint to tell).
    let calls = wait_for(20, "the replayed provisioning call", || async {
        let calls = provisioning.calls();
        (calls.len() >= 2).then_some(calls)
    })
    .await;
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].0, calls[0].0);
}

/// Checks the flow's preview shows the email and the call without doing either.
async fn check_the_preview_does_nothing(
    app: &TestApp,
    token: &str,
    flow_id: &str,
    smtp: &FakeSmtp,
    provisioning: &Provisioning,
) {
    let preview = app
        .post(
            &format!("/v1/flows/{flow_id}/preview"),
            token,
            json!({"event": checkout("preview", "p@example.com", "eur")}),
        )
        .await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.text);
    let ops = preview.body["operations"].as_array().unwrap();
    let email = ops.iter().find(|o| o["action"] == "email").unwrap();
    assert_eq!(email["fields"]["to"], "p@example.com");
    assert!(
        email["fields"]["text"]
            .as_str()
            .unwrap()
            .contains("[generated password]")
    );
    let call = ops.iter().find(|o| o["action"] == "http").unwrap();
    assert_eq!(call["path"], "/workspaces");
    assert_eq!(call["fields"]["portal_password"], "[generated password]");
    assert_eq!(smtp.messages().len(), 1);
    assert_eq!(provisioning.calls().len(), 2);
}

#[tokio::test]
async fn a_checkout_becomes_a_lead_one_email_and_one_signed_provisioning_call() {
    for backend in backends() {
        let app = TestApp::spawn(backend).await;
        let cleanup = app.cleanup_handle();
        let smtp = FakeSmtp::start().await;
        smtp.require_login("mailer", "mail-password-1");
        let provisioning = Provisioning::start();
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;
        let flow_id = onboarding_flow(&app, &p, &smtp, &provisioning).await;

        // The mail server refuses the first try; Stripe delivers the event three times.
        let done = deliver_the_checkout_three_times(&app, &p, &smtp).await;

        // The lead, exactly one email and exactly one signed provisioning call.
        let password = check_the_lead_email_and_call(&app, &p, &smtp, &provisioning).await;

        // The deliveries say what happened; the password is in none of them.
        check_the_deliveries_keep_no_password(&done, &password);

        // A forced replay re-runs the steps, but the client is not mailed again.
        check_a_forced_replay_mails_no_one_again(&app, token, &done, &smtp, &provisioning).await;

        // The preview shows the email and the call without doing either.
        check_the_preview_does_nothing(&app, token, &flow_id, &smtp, &provisioning).await;

        provisioning.served.stop().await;
        cleanup.run().await;
    }
}

#[tokio::test]
async fn an_unexpected_currency_stops_the_flow_at_its_assert() {
    each_backend(|app| async move {
        let smtp = FakeSmtp::start().await;
        let provisioning = Provisioning::start();
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;
        let flow_id = onboarding_flow(&app, &p, &smtp, &provisioning).await;

        let done = app
            .deliver(&p, &checkout("yen", "kenji@example.com", "jpy"))
            .await;
        assert_eq!(done["status"], "processed", "{done}");
        let deliveries = done["deliveries"].as_array().unwrap();
        assert_eq!(deliveries.len(), 1, "the later steps never ran: {done}");
        assert_eq!(deliveries[0]["step"], "verify");
        assert_eq!(deliveries[0]["status"], "skipped");
        assert_eq!(
            deliveries[0]["reason"],
            "assertion: not onboarded: payment paid in JPY"
        );
        assert!(
            app.records(token, &p.connection_id, "leads")
                .await
                .is_empty()
        );
        assert!(smtp.messages().is_empty());
        assert!(provisioning.calls().is_empty());

        // The preview stops there too.
        let preview = app
            .post(
                &format!("/v1/flows/{flow_id}/preview"),
                token,
                json!({"event": checkout("yen2", "kenji@example.com", "jpy")}),
            )
            .await;
        let ops = preview.body["operations"].as_array().unwrap();
        assert_eq!(ops.len(), 1, "{}", preview.text);
        assert_eq!(ops[0]["fields"]["passed"], false);
    })
    .await;
}

#[tokio::test]
async fn smtp_connections_name_what_is_wrong() {
    each_backend(|app| async move {
        let owner = app.signup("Mail").await;
        let reply = app
            .post(
                "/v1/connections",
                &owner.token,
                json!({"name": "Mail", "provider": "smtp",
                       "settings": {"host": "smtp.example.com:25", "port": 70000, "tls": "ssl", "from": "nobody"}}),
            )
            .await;
        let mut fields = reply.assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
        fields.sort();
        assert_eq!(
            fields,
            [
                "settings.from",
                "settings.host",
                "settings.port",
                "settings.tls"
            ]
        );
        let missing = app
            .post(
                "/v1/connections",
                &owner.token,
                json!({"name": "Mail", "provider": "smtp", "settings": {}}),
            )
            .await;
        let mut fields = missing.assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
        fields.sort();
        assert_eq!(fields, ["settings.from", "settings.host"]);

        // A wrong password is reported by the connection test.
        let smtp = FakeSmtp::start().await;
        smtp.require_login("mailer", "right");
        let created = app
            .post(
                "/v1/connections",
                &owner.token,
                json!({"name": "Mail", "provider": "smtp",
                       "auth": {"type": "basic", "username": "mailer", "password": "wrong"},
                       "settings": {"host": smtp.host, "port": smtp.port, "tls": "none", "from": "a@acme.example"}}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        assert!(
            !created.text.contains("wrong"),
            "the password is never shown"
        );
        let tested = app
            .post(
                &format!("/v1/connections/{}/test", created.str("/id")),
                &owner.token,
                json!({}),
            )
            .await;
        assert_eq!(tested.body["ok"], false, "{}", tested.text);
        assert_eq!(tested.body["error_kind"], "auth");
        assert_eq!(smtp.refused_logins(), 1);
    })
    .await;
}
