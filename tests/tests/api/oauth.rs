//! The OAuth browser flow against the fake vendors: a real HTTP client follows the authorize
//! URL to the vendor, which consents and redirects to Tributary's callback, which exchanges
//! the code and activates the connection; then events sync. Every bad callback leaves a clear
//! page and no active connection.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tributary_fakes::hubspot::{self, FakeHubSpot};
use tributary_fakes::salesforce::{self, FakeSalesforce};
use tributary_fakes::zoho::{self, FakeZoho};
use tributary_tests::{Backend, Pipeline, TestApp, charge_event};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn app_with(backend: Backend, vars: &[(&str, &str)]) -> TestApp {
    let mut all = vec![("TRIBUTARY_PUBLIC_URL", "{base}")];
    all.extend_from_slice(vars);
    TestApp::spawn_with(backend, &all).await
}

fn query_of(url: &str) -> std::collections::HashMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn hubspot_oauth(app: &TestApp, fake: &FakeHubSpot, secret: &str) -> (Pipeline, Value) {
    let tenant = app.signup("OAuth").await;
    let created = app
        .post(
            "/v1/connections",
            &tenant.token,
            json!({"name": "HubSpot", "provider": "hubspot",
                   "auth": {"type": "oauth", "client_id": hubspot::CLIENT_ID, "client_secret": secret},
                   "settings": {"base_url": fake.base_url,
                                "authorize_url": format!("{}/oauth/authorize", fake.base_url),
                                "token_url": format!("{}/oauth/v1/token", fake.base_url)}}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let account = app
        .post(
            "/v1/stripe-accounts",
            &tenant.token,
            json!({"name": "Stripe", "webhook_secret": "whsec_oauth_test"}),
        )
        .await;
    let path = account.str("/webhook_url")[app.settings.public_url.len()..].to_string();
    let pipeline = Pipeline {
        connection_id: created.str("/id"),
        account_id: account.str("/id"),
        webhook_path: path,
        secret: "whsec_oauth_test".into(),
        tenant,
    };
    (pipeline, created.body)
}

#[tokio::test]
async fn hubspot_connects_in_the_browser_then_syncs() {
    for backend in tributary_tests::backends() {
        let app = app_with(backend, &[]).await;
        let fake = FakeHubSpot::start();
        fake.register_redirect_uri(&format!("{}/v1/oauth/callback", app.base));
        fake.define_property("deals", "stripe_charge_id", true);
        let (p, created) = hubspot_oauth(&app, &fake, hubspot::CLIENT_SECRET).await;
        assert_eq!(created["status"], "pending_authorization");
        let authorize_url = created["authorize_url"].as_str().unwrap().to_string();
        let params = query_of(&authorize_url);
        assert!(authorize_url.starts_with(&format!("{}/oauth/authorize?", fake.base_url)));
        assert_eq!(params["client_id"], hubspot::CLIENT_ID);
        assert_eq!(
            params["redirect_uri"],
            format!("{}/v1/oauth/callback", app.base)
        );
        assert!(
            params["scope"].contains("crm.objects.contacts.write"),
            "{params:?}"
        );
        assert!(params["state"].len() >= 32);
        // Until the dance is done, nothing syncs.
        assert_eq!(app.connection(&p).await["status"], "pending_authorization");

        // The browser: to HubSpot, which consents and redirects to the callback.
        let landed = app.client.get(&authorize_url).send().await.unwrap();
        let callback_url = landed.url().to_string();
        assert_eq!(landed.status(), StatusCode::OK);
        let page = landed.text().await.unwrap();
        assert!(page.contains("HubSpot (hubspot) is now active"), "{page}");
        let connection = app.connection(&p).await;
        assert_eq!(connection["status"], "active", "{connection}");
        assert_eq!(connection["auth"]["type"], "oauth");
        assert!(connection.get("authorize_url").is_none());

        app.flow_from_template(&p, "hubspot-contact-and-deal").await;
        let done = app
            .deliver(
                &p,
                &charge_event("evt_oa1", "ch_oa1", "o@example.com", "Oli Auth", 900, now()),
            )
            .await;
        assert_eq!(done["status"], "processed", "{done}");
        assert_eq!(fake.records("contacts").len(), 1);

        // The same callback again: refused, and the connection is untouched.
        let replay = app.client.get(&callback_url).send().await.unwrap();
        let replayed_status = replay.status();
        assert_eq!(replayed_status, StatusCode::BAD_REQUEST);
        let text = replay.text().await.unwrap();
        assert!(text.contains("already used"), "{text}");
        assert_eq!(app.connection(&p).await["status"], "active");

        // An hour past expiry, the sweeper forgets the state.
        {
            use sea_orm::{ActiveValue::Set, EntityTrait, PaginatorTrait};
            entity::oauth_states::Entity::update_many()
                .set(entity::oauth_states::ActiveModel {
                    expires_at: Set(chrono::Utc::now() - chrono::Duration::hours(2)),
                    ..Default::default()
                })
                .exec(&app.db)
                .await
                .unwrap();
            tributary_tests::wait_for(10, "old OAuth states to go", || async {
                let left = entity::oauth_states::Entity::find()
                    .count(&app.db)
                    .await
                    .unwrap();
                (left == 0).then_some(())
            })
            .await;
        }
        app.cleanup_handle().run().await;
    }
}

#[tokio::test]
async fn salesforce_connects_with_pkce_through_the_operators_app() {
    for backend in tributary_tests::backends() {
        let fake = FakeSalesforce::start();
        let app = app_with(
            backend,
            &[
                (
                    "TRIBUTARY_OAUTH_SALESFORCE_CLIENT_ID",
                    salesforce::CLIENT_ID,
                ),
                (
                    "TRIBUTARY_OAUTH_SALESFORCE_CLIENT_SECRET",
                    salesforce::CLIENT_SECRET,
                ),
                ("TRIBUTARY_OAUTH_SALESFORCE_LOGIN_URL", &fake.login_url),
                ("TRIBUTARY_OAUTH_SUCCESS_URL", "{base}/healthz"),
            ],
        )
        .await;
        fake.register_redirect_uri(&format!("{}/v1/oauth/callback", app.base));
        fake.set_stages(&[("Prospecting", false, false), ("Closed Won", true, true)]);
        let tenant = app.signup("OAuth").await;
        let created = app
            .post(
                "/v1/connections",
                &tenant.token,
                json!({"name": "Salesforce", "provider": "salesforce", "auth": {"type": "oauth"},
                       "settings": {"login_url": fake.login_url}}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let authorize_url = created.str("/authorize_url");
        let params = query_of(&authorize_url);
        assert!(
            authorize_url.starts_with(&format!("{}/services/oauth2/authorize?", fake.login_url))
        );
        assert_eq!(params["code_challenge_method"], "S256");
        assert_eq!(params["scope"], "api refresh_token offline_access");

        let landed = app.client.get(&authorize_url).send().await.unwrap();
        assert_eq!(landed.status(), StatusCode::OK);
        assert_eq!(
            landed.url().path(),
            "/healthz",
            "redirected to the success URL"
        );
        let id = created.str("/id");
        assert_eq!(query_of(landed.url().as_str())["connection_id"], id);
        let connection = app
            .get(&format!("/v1/connections/{id}"), &tenant.token)
            .await;
        assert_eq!(connection.body["status"], "active");

        // The session came from the code exchange: the test call goes to the instance at once.
        let test = app
            .post(
                &format!("/v1/connections/{id}/test"),
                &tenant.token,
                json!({}),
            )
            .await;
        assert_eq!(test.body["ok"], true, "{}", test.text);
        let grants: Vec<_> = fake.log.matching("POST", "/services/oauth2/token");
        assert_eq!(grants.len(), 1);
        assert!(grants[0].body.contains("grant_type=authorization_code"));
        assert!(grants[0].body.contains("code_verifier="));
        app.cleanup_handle().run().await;
    }
}

#[tokio::test]
async fn zoho_connects_for_offline_access_at_its_data_centre() {
    for backend in tributary_tests::backends() {
        let app = app_with(backend, &[]).await;
        let fake = FakeZoho::start();
        fake.register_redirect_uri(&format!("{}/v1/oauth/callback", app.base));
        fake.define_field("Contacts", "Stripe_Transaction_ID", "text");
        fake.define_field("Contacts", "Total_Amount", "double");
        let tenant = app.signup("OAuth").await;
        let created = app
            .post(
                "/v1/connections",
                &tenant.token,
                json!({"name": "Zoho", "provider": "zoho",
                       "auth": {"type": "oauth", "client_id": zoho::CLIENT_ID, "client_secret": zoho::CLIENT_SECRET},
                       "settings": {"accounts_url": fake.accounts_url}}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let authorize_url = created.str("/authorize_url");
        let params = query_of(&authorize_url);
        assert!(authorize_url.starts_with(&format!("{}/oauth/v2/auth?", fake.accounts_url)));
        assert_eq!(params["access_type"], "offline");
        assert_eq!(params["code_challenge_method"], "S256");
        assert!(params["scope"].contains("ZohoCRM.modules.ALL"));
        let landed = app.client.get(&authorize_url).send().await.unwrap();
        assert_eq!(
            landed.status(),
            StatusCode::OK,
            "{}",
            landed.text().await.unwrap()
        );
        let id = created.str("/id");
        let test = app
            .post(
                &format!("/v1/connections/{id}/test"),
                &tenant.token,
                json!({}),
            )
            .await;
        assert_eq!(test.body["ok"], true, "{}", test.text);
        assert_eq!(
            fake.log.matching("GET", "/crm/v8/users").len(),
            1,
            "calls go to api_domain"
        );
        app.cleanup_handle().run().await;
    }
}

#[tokio::test]
async fn bad_callbacks_leave_no_active_connection() {
    for backend in tributary_tests::backends() {
        let app = app_with(backend, &[]).await;
        let fake = FakeHubSpot::start();
        fake.register_redirect_uri(&format!("{}/v1/oauth/callback", app.base));
        let (p, created) = hubspot_oauth(&app, &fake, hubspot::CLIENT_SECRET).await;
        let token = p.tenant.token.clone();

        // The user refuses consent.
        fake.deny_next_authorization();
        let denied = app
            .client
            .get(created["authorize_url"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(denied.status(), StatusCode::BAD_REQUEST);
        let text = denied.text().await.unwrap();
        assert!(text.contains("access_denied"), "{text}");
        let connection = app.connection(&p).await;
        assert_eq!(connection["status"], "pending_authorization");
        assert!(
            connection["status_reason"]
                .as_str()
                .unwrap()
                .contains("refused"),
            "{connection}"
        );

        // Unknown and missing states.
        for path in [
            "/v1/oauth/callback?code=abc&state=made-up",
            "/v1/oauth/callback?code=abc",
        ] {
            let reply = app.client.get(app.url(path)).send().await.unwrap();
            assert_eq!(reply.status(), StatusCode::BAD_REQUEST, "{path}");
            let page = reply.text().await.unwrap();
            assert!(page.contains("state"), "{page}");
        }

        // An expired link.
        let again = app
            .post(
                &format!("/v1/connections/{}/reauthorize", p.connection_id),
                &token,
                json!({}),
            )
            .await;
        assert_eq!(again.status, StatusCode::OK, "{}", again.text);
        {
            use sea_orm::{ActiveValue::Set, EntityTrait};
            entity::oauth_states::Entity::update_many()
                .set(entity::oauth_states::ActiveModel {
                    expires_at: Set(chrono::Utc::now() - chrono::Duration::minutes(1)),
                    ..Default::default()
                })
                .exec(&app.db)
                .await
                .unwrap();
        }
        let expired = app
            .client
            .get(again.str("/authorize_url"))
            .send()
            .await
            .unwrap();
        assert_eq!(expired.status(), StatusCode::BAD_REQUEST);
        assert!(expired.text().await.unwrap().contains("expired"));
        assert_eq!(app.connection(&p).await["status"], "pending_authorization");

        // A code exchange the vendor refuses (the app's secret is wrong).
        let (wrong, created) = hubspot_oauth(&app, &fake, "not-the-secret").await;
        let failed = app
            .client
            .get(created["authorize_url"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(failed.status(), StatusCode::BAD_REQUEST);
        assert!(failed.text().await.unwrap().contains("code exchange"));
        assert_eq!(
            app.connection(&wrong).await["status"],
            "pending_authorization"
        );

        // No platform app and none brought: refused up front, naming the field.
        let none = app
            .post(
                "/v1/connections",
                &token,
                json!({"name": "Z", "provider": "zoho", "auth": {"type": "oauth"}}),
            )
            .await;
        assert_eq!(
            none.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
            ["auth.client_id"]
        );
        app.cleanup_handle().run().await;
    }
}

#[tokio::test]
async fn reauthorizing_resumes_waiting_deliveries_and_delete_revokes() {
    for backend in tributary_tests::backends() {
        let app = app_with(backend, &[]).await;
        let fake = FakeHubSpot::start();
        fake.register_redirect_uri(&format!("{}/v1/oauth/callback", app.base));
        fake.define_property("deals", "stripe_charge_id", true);
        let (p, created) = hubspot_oauth(&app, &fake, hubspot::CLIENT_SECRET).await;
        let landed = app
            .client
            .get(created["authorize_url"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(landed.status(), StatusCode::OK);
        app.flow_from_template(&p, "hubspot-contact-and-deal").await;

        // The vendor forgets the grant: deliveries wait for re-authorization.
        fake.revoke_refresh_tokens();
        fake.expire_access_tokens();
        let sent = app
            .send_event(
                &p,
                &charge_event("evt_ra", "ch_ra", "r@example.com", "Ray Auth", 900, now()),
            )
            .await;
        let event_id = sent.str("/event_id");
        tributary_tests::wait_for(10, "needs_reauth", || async {
            (app.connection(&p).await["status"] == "needs_reauth").then_some(())
        })
        .await;

        let again = app
            .post(
                &format!("/v1/connections/{}/reauthorize", p.connection_id),
                &p.tenant.token,
                json!({}),
            )
            .await;
        assert_eq!(again.status, StatusCode::OK, "{}", again.text);
        assert_eq!(
            again.body["status"], "needs_reauth",
            "active only once the dance is done"
        );
        let landed = app
            .client
            .get(again.str("/authorize_url"))
            .send()
            .await
            .unwrap();
        assert_eq!(landed.status(), StatusCode::OK);
        let done = app.finished_event(&p.tenant.token, &event_id).await;
        assert_eq!(done["status"], "processed", "{done}");
        assert_eq!(fake.records("contacts").len(), 1);

        // Deleting revokes the refresh token at HubSpot.
        let deleted = app
            .delete(
                &format!("/v1/connections/{}", p.connection_id),
                &p.tenant.token,
            )
            .await;
        assert_eq!(deleted.status, StatusCode::NO_CONTENT);
        assert_eq!(fake.revoked_tokens().len(), 1);
        let audit = app.get("/v1/audit-log?limit=100", &p.tenant.token).await;
        let actions: Vec<&str> = audit.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["action"].as_str())
            .collect();
        for action in [
            "connection.authorize",
            "connection.reauthorize",
            "connection.revoke",
        ] {
            assert!(actions.contains(&action), "{action} in {actions:?}");
        }
        app.cleanup_handle().run().await;
    }
}
