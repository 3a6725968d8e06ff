//! The fakes hold the adapters to the vendors' own rules: HubSpot's interval and daily limits
//! (announced in its headers, no `Retry-After`), its one error shape per endpoint (400 with the
//! properties inside `message` for single writes, 207 multi-status for batch upsert) and its
//! scopes; Zoho's 429 without `Retry-After` and its cap on access tokens per refresh token; the
//! registered redirect URI at every vendor's authorize and token endpoints.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tributary_fakes::hubspot::{self, FakeHubSpot};
use tributary_fakes::salesforce::{self, FakeSalesforce};
use tributary_fakes::zoho::{self, FakeZoho};
use tributary_tests::{Pipeline, TestApp, charge_event, each_backend, wait_for};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn charge(n: &str) -> Value {
    charge_event(
        &format!("evt_{n}"),
        &format!("ch_{n}"),
        &format!("{n}@example.com"),
        "Pat Example",
        1200,
        now(),
    )
}

async fn hubspot_pipeline(app: &TestApp, fake: &FakeHubSpot) -> Pipeline {
    app.pipeline_with(json!({
        "name": "HubSpot", "provider": "hubspot",
        "auth": {"type": "token", "token": hubspot::PRIVATE_APP_TOKEN},
        "settings": {"base_url": fake.base_url}
    }))
    .await
}

/// The HubSpot recipe with every property it writes defined.
async fn hubspot_recipe(app: &TestApp, fake: &FakeHubSpot) -> Pipeline {
    fake.define_property("contacts", "stripe_customer_id", false);
    fake.define_property("contacts", "last_charge_amount", false);
    fake.define_property("contacts", "last_charge_receipt", false);
    fake.define_property("deals", "stripe_charge_id", true);
    let p = hubspot_pipeline(app, fake).await;
    app.flow_from_template(&p, "hubspot-contact-and-deal").await;
    p
}

fn deliveries(event: &Value) -> Vec<Value> {
    event["deliveries"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn hubspot_interval_limit_is_waited_out_from_its_headers() {
    each_backend(|app| async move {
        let fake = FakeHubSpot::start();
        let p = hubspot_recipe(&app, &fake).await;
        // Two calls per 1.5 s; one charge takes three (contact, deal, association).
        fake.set_rate_limits(2, 1500, 1000);

        let done = app.deliver(&p, &charge("rl1")).await;
        assert_eq!(done["status"], "processed", "{done}");
        assert_eq!(fake.records("contacts").len(), 1);
        assert_eq!(fake.records("deals").len(), 1);
        assert_eq!(fake.associations().len(), 1);

        // The connection's rate budget learns 2 per 1.5 s from the first answer's headers and
        // waits out the spent window, so the third call comes a window after the first; a 429
        // (if the window was spent before the limit was learned) is waited out too.
        let log = fake.log.all();
        let accepted: Vec<_> = log.iter().filter(|l| l.status == 200).collect();
        for three in accepted.windows(3) {
            assert!(
                three[2].at - three[0].at >= chrono::Duration::milliseconds(1450),
                "three calls inside one 1.5 s window: {log:?}"
            );
        }
        let limited: Vec<usize> = (0..log.len()).filter(|&i| log[i].status == 429).collect();
        for i in limited {
            // HubSpot sends no Retry-After: the wait comes from
            // X-HubSpot-RateLimit-Interval-Milliseconds with Remaining at 0.
            let next = log.get(i + 1).expect("a request after each 429");
            let waited = next.at - log[i].at;
            assert!(
                waited >= chrono::Duration::milliseconds(1450),
                "request {} came {waited} after a 429 announcing a 1500 ms interval",
                i + 1
            );
        }
        fake.stop().await;
    })
    .await;
}

#[tokio::test]
async fn hubspot_daily_limit_pauses_the_connection() {
    each_backend(|app| async move {
        let fake = FakeHubSpot::start();
        let p = hubspot_recipe(&app, &fake).await;
        // One call left today: the contact is written, the deal hits the daily limit. The
        // connection's own daily cap is set far above, so it is HubSpot's refusal (its DAILY
        // policy) that pauses it here; the cap pausing first is tests/api/daily_caps.rs.
        let patched = app
            .patch(
                &format!("/v1/connections/{}", p.connection_id),
                &p.tenant.token,
                json!({"settings": {"base_url": fake.base_url, "daily_limit": 1_000_000}}),
            )
            .await;
        assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
        fake.set_rate_limits(100, 10_000, 1);

        let sent = app.send_event(&p, &charge("dl1")).await;
        assert_eq!(sent.status, StatusCode::OK, "{}", sent.text);
        let connection = wait_for(15, "the connection to pause", || async {
            let c = app.connection(&p).await;
            (c["status"] == "paused").then_some(c)
        })
        .await;
        let reason = connection["status_reason"].as_str().unwrap_or("");
        assert!(reason.contains("daily limit"), "{connection}");
        let until = chrono::DateTime::parse_from_rfc3339(
            connection["paused_until"].as_str().expect("paused_until"),
        )
        .unwrap();
        assert!(
            until > chrono::Utc::now() + chrono::Duration::minutes(50),
            "{connection}"
        );
        assert_eq!(fake.records("contacts").len(), 1);
        assert!(fake.records("deals").is_empty());
        let limited = fake.log.all().iter().filter(|l| l.status == 429).count();
        assert_eq!(limited, 1, "one refused call, then the connection waits");
        fake.stop().await;
    })
    .await;
}

#[tokio::test]
async fn hubspot_batch_upsert_multi_status_falls_back_to_the_fallback_fields() {
    each_backend(|app| async move {
        let fake = FakeHubSpot::start();
        // The contact properties the recipe writes are missing; the deal key exists.
        fake.define_property("deals", "stripe_charge_id", true);
        let p = hubspot_pipeline(&app, &fake).await;
        app.flow_from_template(&p, "hubspot-contact-and-deal").await;

        let done = app.deliver(&p, &charge("ms1")).await;
        assert_eq!(done["status"], "processed", "{done}");
        let upserts = fake
            .log
            .matching("POST", "/crm/v3/objects/contacts/batch/upsert");
        let statuses: Vec<u16> = upserts.iter().map(|l| l.status).collect();
        assert_eq!(statuses, [207, 200], "a multi-status, then the fallback");
        let warnings = deliveries(&done)[0]["warnings"].to_string();
        for refused in ["last_charge_amount", "last_charge_receipt"] {
            assert!(warnings.contains(refused), "{warnings}");
        }
        let stored = &fake.records("contacts")[0].properties;
        assert_eq!(stored["email"], "ms1@example.com");
        assert!(stored.get("last_charge_amount").is_none(), "{stored:?}");
        fake.stop().await;
    })
    .await;
}

#[tokio::test]
async fn hubspot_single_create_refusal_is_read_from_its_message() {
    each_backend(|app| async move {
        let fake = FakeHubSpot::start();
        let p = hubspot_pipeline(&app, &fake).await;
        let flow = json!({
            "name": "Create", "connection_id": p.connection_id,
            "trigger": {"events": ["charge.succeeded"]},
            "steps": [{"id": "contact", "action": "create", "object": "contacts",
                       "fields": {"email": "{{ object.billing_details.email }}",
                                  "favourite_colour": "teal"},
                       "fallback_fields": ["email"]}]
        });
        let created = app.post("/v1/flows", &p.tenant.token, flow).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);

        let done = app.deliver(&p, &charge("sc1")).await;
        assert_eq!(done["status"], "processed", "{done}");
        let creates = fake.log.matching("POST", "/crm/v3/objects/contacts");
        let statuses: Vec<u16> = creates.iter().map(|l| l.status).collect();
        assert_eq!(statuses, [400, 201]);
        let warnings = deliveries(&done)[0]["warnings"].to_string();
        assert!(warnings.contains("favourite_colour"), "{warnings}");
        assert_eq!(fake.records("contacts").len(), 1);
        fake.stop().await;
    })
    .await;
}

#[tokio::test]
async fn hubspot_missing_scope_names_the_scope_and_writes_nothing() {
    each_backend(|app| async move {
        let fake = FakeHubSpot::start();
        let p = hubspot_recipe(&app, &fake).await;
        // The app was installed with read access only.
        fake.grant_scopes(&["crm.objects.contacts.read", "crm.objects.deals.read"]);

        let done = app.deliver(&p, &charge("sc2")).await;
        assert_eq!(done["status"], "failed", "{done}");
        let contact = &deliveries(&done)[0];
        assert_eq!(contact["status"], "dead", "{contact}");
        assert_eq!(contact["error"]["kind"], "permanent", "{contact}");
        assert_eq!(contact["error"]["vendor_status"], 403, "{contact}");
        let message = contact["error"]["message"].as_str().unwrap_or("");
        assert!(
            message.contains("crm.objects.contacts.write"),
            "the missing scope is named: {message}"
        );
        assert!(fake.records("contacts").is_empty());
        // A permanent refusal is not retried.
        let tries = fake
            .log
            .matching("POST", "/crm/v3/objects/contacts/batch/upsert");
        assert_eq!(tries.len(), 1, "{tries:?}");
        assert_eq!(tries[0].status, 403);
        fake.stop().await;
    })
    .await;
}

async fn zoho_pipeline(app: &TestApp, fake: &FakeZoho) -> Pipeline {
    fake.define_field("Contacts", "Stripe_Transaction_ID", "text");
    fake.define_field("Contacts", "Total_Amount", "double");
    let p = app
        .pipeline_with(json!({
            "name": "Zoho CRM", "provider": "zoho",
            "auth": {"type": "refresh_token", "client_id": zoho::CLIENT_ID,
                     "client_secret": zoho::CLIENT_SECRET,
                     "refresh_token": fake.issue_refresh_token()},
            "settings": {"accounts_url": fake.accounts_url}
        }))
        .await;
    app.flow_from_template(&p, "zoho-contact-from-charge").await;
    p
}

#[tokio::test]
async fn zoho_429_without_retry_after_backs_off_on_the_adapters_schedule() {
    each_backend(|app| async move {
        let fake = FakeZoho::start();
        let p = zoho_pipeline(&app, &fake).await;
        // Today's API credits are spent.
        fake.set_api_credits(0);

        let sent = app.send_event(&p, &charge("zr1")).await;
        assert_eq!(sent.status, StatusCode::OK, "{}", sent.text);
        let event_id = sent.str("/event_id");
        let delivery = wait_for(15, "the delivery to be rate limited", || async {
            let e = app
                .get(&format!("/v1/events/{event_id}"), &p.tenant.token)
                .await;
            let d = e.body["deliveries"][0].clone();
            (d["status"] == "retrying" && d["error"]["kind"] == "rate_limited").then_some(d)
        })
        .await;
        assert_eq!(delivery["error"]["vendor_status"], 429, "{delivery}");
        // No Retry-After: the adapter's own minute, not the engine's seconds-long backoff.
        let at: chrono::DateTime<chrono::Utc> =
            serde_json::from_value(delivery["next_attempt_at"].clone()).expect("a retry time");
        assert!(
            at >= chrono::Utc::now() + chrono::Duration::seconds(50),
            "{delivery}"
        );
        let limited = fake.log.all().iter().filter(|l| l.status == 429).count();
        assert_eq!(limited, 1);
        assert!(fake.records("Contacts").is_empty());
        fake.stop().await;
    })
    .await;
}

#[tokio::test]
async fn zoho_access_tokens_are_reused_within_the_per_refresh_token_cap() {
    each_backend(|app| async move {
        let fake = FakeZoho::start();
        // One live access token per refresh token: a second mint while it lives is refused.
        fake.set_tokens_per_refresh_token(1);
        let p = zoho_pipeline(&app, &fake).await;
        for n in ["zc1", "zc2", "zc3"] {
            let done = app.deliver(&p, &charge(n)).await;
            assert_eq!(done["status"], "processed", "{done}");
        }
        assert_eq!(fake.records("Contacts").len(), 3);
        let minted = fake.log.matching("POST", "/oauth/v2/token");
        assert_eq!(minted.len(), 1, "one token for every call: {minted:?}");
        fake.stop().await;
    })
    .await;
}

#[tokio::test]
async fn zoho_refusing_to_mint_more_tokens_waits_without_reauthorization() {
    each_backend(|app| async move {
        let fake = FakeZoho::start();
        let p = zoho_pipeline(&app, &fake).await;
        // The refresh token has used up its live access tokens.
        fake.set_tokens_per_refresh_token(0);
        fake.expire_access_tokens();

        let sent = app.send_event(&p, &charge("zm1")).await;
        assert_eq!(sent.status, StatusCode::OK, "{}", sent.text);
        let event_id = sent.str("/event_id");
        // (A first attempt may also meet another worker's refresh in progress.)
        wait_for(15, "the delivery to wait as rate limited", || async {
            let e = app
                .get(&format!("/v1/events/{event_id}"), &p.tenant.token)
                .await;
            let d = e.body["deliveries"][0].clone();
            (d["status"] == "retrying" && d["error"]["kind"] == "rate_limited").then_some(d)
        })
        .await;
        let refused = fake
            .log
            .matching("POST", "/oauth/v2/token")
            .into_iter()
            .filter(|l| l.status == 400)
            .count();
        assert!(refused >= 1);
        let connection = app.connection(&p).await;
        assert_eq!(connection["status"], "active", "{connection}");
        fake.stop().await;
    })
    .await;
}

/// At a vendor's OAuth server: an authorization request for an unregistered redirect URI is
/// refused without a redirect, and a code redeemed with another redirect URI gets the vendor's
/// error. Returns the token endpoint's status and body.
async fn redirect_uri_checked(
    register: impl Fn(&str),
    authorize_url: &str,
    token_url: &str,
    client_id: &str,
    client_secret: &str,
) -> (u16, Value) {
    let registered = "https://app.example/v1/oauth/callback";
    let other = "https://elsewhere.example/v1/oauth/callback";
    register(registered);
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let ask = |redirect: &'static str| {
        let mut url = url::Url::parse(authorize_url).unwrap();
        url.query_pairs_mut()
            .append_pair("client_id", client_id)
            .append_pair("response_type", "code")
            .append_pair("redirect_uri", redirect)
            .append_pair("state", "s1");
        browser.get(url).send()
    };
    let refused = ask(other).await.unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert!(refused.headers().get("location").is_none());
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("redirect_uri_mismatch")
    );

    let granted = ask(registered).await.unwrap();
    assert_eq!(granted.status(), StatusCode::FOUND);
    let location = granted.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(registered), "{location}");
    let code = url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a code");
    let answer = browser
        .post(token_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", "authorization_code")
                .append_pair("code", &code)
                .append_pair("client_id", client_id)
                .append_pair("client_secret", client_secret)
                .append_pair("redirect_uri", other)
                .finish(),
        )
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap())
}

#[tokio::test]
async fn every_oauth_server_checks_the_registered_redirect_uri() {
    let fake = FakeHubSpot::start();
    let (status, body) = redirect_uri_checked(
        |uri| fake.register_redirect_uri(uri),
        &format!("{}/oauth/authorize", fake.base_url),
        &format!("{}/oauth/v1/token", fake.base_url),
        hubspot::CLIENT_ID,
        hubspot::CLIENT_SECRET,
    )
    .await;
    assert_eq!(
        (status, body["status"].clone()),
        (400, json!("BAD_REDIRECT_URI"))
    );

    let fake = FakeSalesforce::start();
    let (status, body) = redirect_uri_checked(
        |uri| fake.register_redirect_uri(uri),
        &format!("{}/services/oauth2/authorize", fake.login_url),
        &format!("{}/services/oauth2/token", fake.login_url),
        salesforce::CLIENT_ID,
        salesforce::CLIENT_SECRET,
    )
    .await;
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("redirect_uri_mismatch"))
    );

    let fake = FakeZoho::start();
    let (status, body) = redirect_uri_checked(
        |uri| fake.register_redirect_uri(uri),
        &format!("{}/oauth/v2/auth", fake.accounts_url),
        &format!("{}/oauth/v2/token", fake.accounts_url),
        zoho::CLIENT_ID,
        zoho::CLIENT_SECRET,
    )
    .await;
    // Zoho refuses with HTTP 200 and an `error` field.
    assert_eq!(
        (status, body["error"].clone()),
        (200, json!("invalid_redirect_uri"))
    );
}

#[tokio::test]
async fn a_connection_whose_callback_is_not_registered_stays_pending() {
    each_backend(|app| async move {
        let fake = FakeHubSpot::start();
        // The operator registered another callback URL with HubSpot.
        fake.register_redirect_uri("https://old-host.example/v1/oauth/callback");
        let tenant = app.signup("OAuth").await;
        let created = app
            .post(
                "/v1/connections",
                &tenant.token,
                json!({"name": "HubSpot", "provider": "hubspot",
                       "auth": {"type": "oauth", "client_id": hubspot::CLIENT_ID,
                                "client_secret": hubspot::CLIENT_SECRET},
                       "settings": {"base_url": fake.base_url,
                                    "authorize_url": format!("{}/oauth/authorize", fake.base_url),
                                    "token_url": format!("{}/oauth/v1/token", fake.base_url)}}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let landed = app
            .client
            .get(created.str("/authorize_url"))
            .send()
            .await
            .unwrap();
        assert_eq!(landed.status(), StatusCode::BAD_REQUEST);
        assert!(
            landed
                .text()
                .await
                .unwrap()
                .contains("redirect_uri_mismatch")
        );
        let connection = app
            .get(
                &format!("/v1/connections/{}", created.str("/id")),
                &tenant.token,
            )
            .await;
        assert_eq!(connection.body["status"], "pending_authorization");
        assert!(fake.log.matching("POST", "/oauth/v1/token").is_empty());
        fake.stop().await;
    })
    .await;
}
