//! Plans and daily caps: a connection's `edition` gives its documented limits, and when the
//! account's daily usage (as the vendor reports it with every answer) reaches the connection's
//! cap — the allocation less `daily_reserve_percent` — the connection pauses before the vendor
//! refuses anyone, sending nothing more until it is resumed or the pause ends.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tributary_fakes::hubspot::{self, FakeHubSpot};
use tributary_fakes::salesforce::{self, FakeSalesforce};
use tributary_tests::{Pipeline, TestApp, charge_event, each_backend, metric, wait_for};

async fn rate_limit(app: &TestApp, p: &Pipeline) -> Value {
    let got = app
        .get(
            &format!("/v1/connections/{}/rate-limit", p.connection_id),
            &p.tenant.token,
        )
        .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text);
    got.body
}

fn charge(i: usize) -> Value {
    charge_event(
        &format!("evt_cap_{i}"),
        &format!("ch_cap_{i}"),
        &format!("cap{i}@example.com"),
        "Cap Payer",
        100,
        chrono::Utc::now().timestamp(),
    )
}

#[tokio::test]
async fn a_hubspot_portal_pauses_at_its_daily_cap_before_hubspot_refuses() {
    each_backend(|app| async move {
        let fake = FakeHubSpot::start();
        // The portal has 6 requests a day; Tributary keeps half for the portal's other apps.
        fake.set_rate_limits(100, 10_000, 6);
        let settings = json!({"base_url": fake.base_url, "edition": "professional",
                              "daily_reserve_percent": 50});
        let p = app
            .pipeline_with(json!({
                "name": "HubSpot", "provider": "hubspot",
                "auth": {"type": "token", "token": hubspot::PRIVATE_APP_TOKEN},
                "settings": settings
            }))
            .await;
        let flow = json!({
            "name": "Contacts", "connection_id": p.connection_id,
            "trigger": {"events": ["charge.succeeded"]},
            "steps": [{"id": "contact", "action": "create", "object": "contacts",
                       "fields": {"email": "{{ object.billing_details.email }}"}}]
        });
        let created = app.post("/v1/flows", &p.tenant.token, flow).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);

        // Before any answer, the plan's documented limits.
        let before = rate_limit(&app, &p).await;
        assert_eq!(
            (
                &before["requests"],
                &before["per_seconds"],
                &before["source"]
            ),
            (&json!(190), &json!(10.0), &json!("edition")),
            "{before}"
        );
        assert_eq!(
            before["daily"],
            json!({"allocation": 650_000, "source": "edition", "used": null,
                   "reserve_percent": 50, "stop_at": 325_000})
        );

        // Three charges take the portal to 3 of its 6: the cap. Each was delivered.
        for i in 0..3 {
            let done = app.deliver(&p, &charge(i)).await;
            assert_eq!(done["status"], "processed", "{done}");
        }
        let connection = app.connection(&p).await;
        assert_eq!(connection["status"], "paused", "{connection}");
        let reason = connection["status_reason"].as_str().unwrap();
        assert!(
            reason.contains("daily cap reached: HubSpot reports 3 API requests used of 6")
                && reason.contains("daily_reserve_percent"),
            "{reason}"
        );
        let until =
            chrono::DateTime::parse_from_rfc3339(connection["paused_until"].as_str().unwrap())
                .unwrap();
        assert!(until > chrono::Utc::now() + chrono::Duration::minutes(50));
        let capped = rate_limit(&app, &p).await;
        assert_eq!(
            capped["daily"],
            json!({"allocation": 6, "source": "reported", "used": 3,
                   "reserve_percent": 50, "stop_at": 3})
        );

        // The per-connection gauges name it: at its cap, and paused for about an hour.
        let labels = format!(
            "{{tenant=\"{}\",provider=\"hubspot\",connection=\"{}\"}}",
            p.tenant.id, p.connection_id
        );
        let usage = format!("tributary_connection_daily_cap_used_ratio{labels}");
        let paused = format!("tributary_connection_paused_seconds{labels}");
        assert_eq!(metric(&app, &usage).await, Some(1.0));
        assert!(metric(&app, &paused).await > Some(3000.0));

        // A fourth charge waits, and HubSpot hears nothing of it: no 429 was ever needed.
        let sent = app.send_event(&p, &charge(3)).await;
        let id = sent.str("/event_id");
        let held = wait_for(10, "the fourth charge to be held", || async {
            let e = app.get(&format!("/v1/events/{id}"), &p.tenant.token).await;
            let d = &e.body["deliveries"][0];
            (e.body["runs"].as_i64() >= Some(1) && d["reason"] == "connection paused")
                .then(|| e.body.clone())
        })
        .await;
        assert_eq!(held["status"], "queued", "{held}");
        assert_eq!(fake.log.all().len(), 3);
        assert!(fake.log.all().iter().all(|l| l.status != 429));

        // The tenant gives Tributary the whole allocation and resumes: the charge goes.
        let mut settings = settings;
        settings["daily_reserve_percent"] = json!(0);
        let patched = app
            .patch(
                &format!("/v1/connections/{}", p.connection_id),
                &p.tenant.token,
                json!({"settings": settings, "status": "active"}),
            )
            .await;
        assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
        let done = app.finished_event(&p.tenant.token, &id).await;
        assert_eq!(done["status"], "processed", "{done}");
        assert_eq!(fake.records("contacts").len(), 4);
        assert_eq!(app.connection(&p).await["status"], "active");
        // 4 of 6 now that the whole allocation is the cap; no longer paused.
        let ratio = metric(&app, &usage).await.unwrap();
        assert!((ratio - 4.0 / 6.0).abs() < 1e-9, "{ratio}");
        assert_eq!(metric(&app, &paused).await, None);
    })
    .await;
}

#[tokio::test]
async fn a_salesforce_org_pauses_where_its_reported_usage_meets_the_reserve() {
    each_backend(|app| async move {
        let fake = FakeSalesforce::start();
        fake.define_field("Account", "Stripe_Customer_ID__c", true);
        // 899 of the org's 1,000 daily requests are used; 10% is kept for its other apps.
        fake.set_api_usage(899, 1_000);
        let p = app
            .pipeline_with(json!({
                "name": "Salesforce", "provider": "salesforce",
                "auth": {"type": "jwt_bearer", "client_id": salesforce::CLIENT_ID,
                         "username": salesforce::USERNAME,
                         "private_key": salesforce::TEST_PRIVATE_KEY_PEM},
                "settings": {"login_url": fake.login_url, "api_version": "60.0",
                             "edition": "enterprise", "licenses": 15,
                             "daily_reserve_percent": 10}
            }))
            .await;
        let before = rate_limit(&app, &p).await;
        assert_eq!(before["source"], "none", "{before}");
        assert_eq!(before["daily"]["allocation"], 115_000, "{before}");
        let flow = json!({
            "name": "Customers to accounts", "connection_id": p.connection_id,
            "trigger": {"events": ["customer.created"]},
            "steps": [{"id": "account", "action": "upsert", "object": "Account",
                       "match": {"Stripe_Customer_ID__c": "{{ object.id }}"},
                       "fields": {"Name": "{{ object.name }}"}}]
        });
        let created = app.post("/v1/flows", &p.tenant.token, flow).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let event = json!({"id": "evt_sfcap", "object": "event", "api_version": "2024-06-20",
            "created": chrono::Utc::now().timestamp(), "livemode": false,
            "pending_webhooks": 1, "request": {"id": null, "idempotency_key": null},
            "type": "customer.created",
            "data": {"object": {"id": "cus_cap", "object": "customer", "name": "Capped"}}});
        let done = app.deliver(&p, &event).await;
        assert_eq!(done["status"], "processed", "{done}");

        let connection = app.connection(&p).await;
        assert_eq!(connection["status"], "paused", "{connection}");
        let reason = connection["status_reason"].as_str().unwrap();
        assert!(
            reason.contains("Salesforce reports") && reason.contains("Tributary stops at 900"),
            "{reason}"
        );
        let daily = &rate_limit(&app, &p).await["daily"];
        assert_eq!(
            (&daily["allocation"], &daily["source"], &daily["stop_at"]),
            (&json!(1_000), &json!("reported"), &json!(900)),
            "{daily}"
        );
        assert!(daily["used"].as_u64() >= Some(900), "{daily}");
    })
    .await;
}

#[tokio::test]
async fn plan_settings_are_checked_by_name_and_range() {
    each_backend(|app| async move {
        let tenant = app.signup("Plans").await;
        let made = app
            .post(
                "/v1/connections",
                &tenant.token,
                json!({"name": "Zoho", "provider": "zoho",
                       "auth": {"type": "refresh_token", "client_id": "c", "client_secret": "s",
                                "refresh_token": "r"},
                       "settings": {"edition": "platinum", "licenses": -1,
                                    "daily_limit": 0, "daily_reserve_percent": 95}}),
            )
            .await;
        let fields = made.assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
        for field in [
            "edition",
            "licenses",
            "daily_limit",
            "daily_reserve_percent",
        ] {
            assert!(fields.contains(&format!("settings.{field}")), "{fields:?}");
        }
        for message in [
            "must be one of free, standard, professional, enterprise, ultimate",
            "must be a whole number from 0 to 90",
        ] {
            assert!(made.text.contains(message), "{message}: {}", made.text);
        }
        // The http provider has no plans.
        let http = app
            .post(
                "/v1/connections",
                &tenant.token,
                json!({"name": "Own CRM", "provider": "http", "auth": {"type": "none"},
                       "settings": {"base_url": "https://crm.example.com", "edition": "free"}}),
            )
            .await;
        let fields = http.assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(fields, ["settings.edition"]);
        let listed = app.get("/v1/connections", &tenant.token).await;
        assert_eq!(listed.body["data"], json!([]), "nothing half-made");
    })
    .await;
}
