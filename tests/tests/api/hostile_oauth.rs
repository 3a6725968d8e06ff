//! A tenant trying to rob the operator's OAuth app or another host's credentials: a connection
//! that names its own token endpoint never receives the operator's client secret (refused at
//! create and PATCH, and never sent at the callback or a refresh even for a row written before
//! that rule), stored credentials never follow a changed `base_url`, and an absurd token
//! lifetime from a vendor is clamped instead of taking the api down.

use actix_web::HttpResponse;
use reqwest::StatusCode;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use tributary_fakes::{RequestLog, Served};
use tributary_tests::{TestApp, each_backend_with};
use tributary_worker::crm::config::Credentials;

const OPERATOR_ID: &str = "operator-app-id";
const OPERATOR_SECRET: &str = "operator-secret-must-stay-home";

/// The operator's app for every vendor.
const OPERATOR_APPS: &[(&str, &str)] = &[
    ("TRIBUTARY_OAUTH_HUBSPOT_CLIENT_ID", OPERATOR_ID),
    ("TRIBUTARY_OAUTH_HUBSPOT_CLIENT_SECRET", OPERATOR_SECRET),
    ("TRIBUTARY_OAUTH_SALESFORCE_CLIENT_ID", OPERATOR_ID),
    ("TRIBUTARY_OAUTH_SALESFORCE_CLIENT_SECRET", OPERATOR_SECRET),
    ("TRIBUTARY_OAUTH_ZOHO_CLIENT_ID", OPERATOR_ID),
    ("TRIBUTARY_OAUTH_ZOHO_CLIENT_SECRET", OPERATOR_SECRET),
];

/// The tenant's own server: records every request and answers like a token endpoint (and an
/// API) would, so nothing on the old code path stops before sending.
fn recorder(expires_in: u64) -> (Served, RequestLog) {
    let log = RequestLog::default();
    let base = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let seen = base.clone();
    let served = Served::answering(log.clone(), move |_, _| {
        let base = seen.get().cloned().unwrap_or_default();
        HttpResponse::Ok().json(json!({
            "access_token": "tenant-issued-access-token",
            "refresh_token": "tenant-issued-refresh-token",
            "token_type": "bearer",
            "expires_in": expires_in,
            "instance_url": base,
            "api_domain": base,
            "results": [],
        }))
    });
    base.set(served.base_url.clone()).unwrap();
    (served, log)
}

/// Asserts the recorder never saw the operator's secret, in any body, path or header.
fn never_saw_operator_secret(log: &RequestLog) {
    for request in log.all() {
        assert!(
            !request.body.contains(OPERATOR_SECRET)
                && !request.path.contains(OPERATOR_SECRET)
                && !request
                    .authorization
                    .as_deref()
                    .unwrap_or("")
                    .contains(OPERATOR_SECRET),
            "the tenant's server received the operator's secret: {request:?}"
        );
    }
}

/// The setting each vendor names its token endpoint with, and the value pointing at `base`.
fn tenant_endpoints(base: &str) -> [(&'static str, &'static str, String); 3] {
    [
        ("hubspot", "token_url", format!("{base}/oauth/v1/token")),
        ("salesforce", "login_url", base.to_string()),
        ("zoho", "accounts_url", base.to_string()),
    ]
}

async fn connection_row(app: &TestApp, id: &str) -> entity::connections::Model {
    entity::connections::Entity::find_by_id(id.to_string())
        .one(&app.db)
        .await
        .unwrap()
        .unwrap()
}

/// Rewrites a connection's settings in the database, as an update before this rule could.
async fn force_settings(app: &TestApp, id: &str, settings: Value) {
    entity::connections::Entity::update_many()
        .set(entity::connections::ActiveModel {
            settings: Set(settings.to_string()),
            ..Default::default()
        })
        .filter(entity::connections::Column::Id.eq(id))
        .exec(&app.db)
        .await
        .unwrap();
}

fn state_of(authorize_url: &str) -> String {
    url::Url::parse(authorize_url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("the authorize URL carries a state")
}

async fn callback(app: &TestApp, query: &[(&str, &str)]) -> (StatusCode, String) {
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(query)
        .finish();
    let reply = app
        .client
        .get(app.url(&format!("/v1/oauth/callback?{query}")))
        .send()
        .await
        .expect("the api answers the callback");
    let status = reply.status();
    (status, reply.text().await.unwrap())
}

#[tokio::test]
async fn a_tenant_token_endpoint_with_the_operators_app_is_refused_at_create_and_patch() {
    each_backend_with(OPERATOR_APPS, |app| async move {
        let (server, log) = recorder(1800);
        let tenant = app.signup("Thief").await;
        for (provider, setting, url) in tenant_endpoints(&server.base_url) {
            // The operator's app pointed at the tenant's server: refused, naming the setting.
            let refused = app
                .post(
                    "/v1/connections",
                    &tenant.token,
                    json!({"name": "Steal", "provider": provider, "auth": {"type": "oauth"},
                           "settings": {setting: url}}),
                )
                .await;
            assert_eq!(
                refused.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
                [format!("settings.{setting}")],
                "{provider}"
            );
            assert!(refused.text.contains("bring your own app"), "{}", refused.text);

            // The tenant's own app may go to the tenant's own server.
            let own = app
                .post(
                    "/v1/connections",
                    &tenant.token,
                    json!({"name": "Own", "provider": provider,
                           "auth": {"type": "oauth", "client_id": "tenant-app", "client_secret": "tenant-secret"},
                           "settings": {setting: url}}),
                )
                .await;
            assert_eq!(own.status, StatusCode::CREATED, "{provider}: {}", own.text);

            // The operator's app at the vendor, then pointed elsewhere by a PATCH: refused.
            let official = app
                .post(
                    "/v1/connections",
                    &tenant.token,
                    json!({"name": "Official", "provider": provider, "auth": {"type": "oauth"}}),
                )
                .await;
            assert_eq!(official.status, StatusCode::CREATED, "{}", official.text);
            let id = official.str("/id");
            let patched = app
                .patch(
                    &format!("/v1/connections/{id}"),
                    &tenant.token,
                    json!({"settings": {setting: url}}),
                )
                .await;
            assert_eq!(
                patched.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
                [format!("settings.{setting}")],
                "{provider}"
            );
            let row = connection_row(&app, &id).await;
            assert!(!row.settings.contains(&server.base_url), "{}", row.settings);
        }
        never_saw_operator_secret(&log);
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_callback_for_a_row_pointed_at_the_tenant_never_sends_the_operators_secret() {
    each_backend_with(OPERATOR_APPS, |app| async move {
        let (server, log) = recorder(1800);
        let tenant = app.signup("Thief").await;
        for (provider, setting, url) in tenant_endpoints(&server.base_url) {
            let created = app
                .post(
                    "/v1/connections",
                    &tenant.token,
                    json!({"name": "Official", "provider": provider, "auth": {"type": "oauth"}}),
                )
                .await;
            assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
            let id = created.str("/id");
            let state = state_of(&created.str("/authorize_url"));
            // The row as an update before this rule could have left it.
            force_settings(&app, &id, json!({setting: url})).await;
            let mut query = vec![("code", "any-code"), ("state", state.as_str())];
            if provider == "zoho" {
                // Zoho's callback names the accounts server; the tenant names its own.
                query.push(("accounts-server", server.base_url.as_str()));
            }
            let (status, page) = callback(&app, &query).await;
            never_saw_operator_secret(&log);
            assert_eq!(status, StatusCode::BAD_REQUEST, "{provider}: {page}");
            let connection = app
                .get(&format!("/v1/connections/{id}"), &tenant.token)
                .await;
            assert_eq!(connection.body["status"], "pending_authorization");
        }
        assert!(
            log.all().is_empty(),
            "the tenant's server was called: {:?}",
            log.all()
        );
        never_saw_operator_secret(&log);
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_refresh_for_a_row_pointed_at_the_tenant_never_sends_the_operators_secret() {
    each_backend_with(OPERATOR_APPS, |app| async move {
        let (server, log) = recorder(1800);
        let tenant = app.signup("Thief").await;
        let keyring = tributary_worker::secrets::Keyring::parse(tributary_tests::TEST_KEYRING)
            .expect("the test keyring parses");
        for (provider, setting, url) in tenant_endpoints(&server.base_url) {
            // A connection holding the operator's app, as the callback stores it, whose
            // token endpoint was later moved to the tenant's server.
            let created = app
                .post(
                    "/v1/connections",
                    &tenant.token,
                    json!({"name": "Connected", "provider": provider,
                           "auth": {"type": "refresh_token", "client_id": "placeholder",
                                    "client_secret": "placeholder", "refresh_token": "placeholder"}}),
                )
                .await;
            assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
            let id = created.str("/id");
            let sealed = tributary_worker::crm::session::seal_credentials(
                &keyring,
                &tenant.id,
                &id,
                &Credentials::RefreshToken {
                    client_id: OPERATOR_ID.into(),
                    client_secret: OPERATOR_SECRET.into(),
                    refresh_token: "vendor-issued-refresh-token".into(),
                    access_token: None,
                    expires_at: None,
                },
            );
            entity::connections::Entity::update_many()
                .set(entity::connections::ActiveModel {
                    credentials: Set(Some(sealed)),
                    settings: Set(json!({setting: url}).to_string()),
                    session: Set(None),
                    ..Default::default()
                })
                .filter(entity::connections::Column::Id.eq(id.as_str()))
                .exec(&app.db)
                .await
                .unwrap();

            let test = app
                .post(
                    &format!("/v1/connections/{id}/test"),
                    &tenant.token,
                    json!({}),
                )
                .await;
            never_saw_operator_secret(&log);
            assert_eq!(test.status, StatusCode::OK, "{}", test.text);
            assert_eq!(test.body["ok"], false, "{provider}: {}", test.text);
            assert_eq!(test.body["error_kind"], "auth", "{}", test.text);
            let connection = app
                .get(&format!("/v1/connections/{id}"), &tenant.token)
                .await;
            assert_eq!(connection.body["status"], "needs_reauth", "{}", connection.text);
            assert!(
                !connection.text.contains(OPERATOR_SECRET),
                "{}",
                connection.text
            );
        }
        never_saw_operator_secret(&log);
        assert!(log.all().is_empty(), "{:?}", log.all());
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn patching_where_credentials_go_needs_them_entered_again() {
    each_backend_with(&[], |app| async move {
        let (first, first_log) = recorder(1800);
        let (second, second_log) = recorder(1800);
        let tenant = app.signup("Mover").await;
        let created = app
            .post(
                "/v1/connections",
                &tenant.token,
                json!({"name": "CRM", "provider": "http",
                       "auth": {"type": "token", "token": "token-for-the-first-host"},
                       "settings": {"base_url": first.base_url}}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let id = created.str("/id");
        let path = format!("/v1/connections/{id}");

        check_a_move_without_credentials_is_refused(
            &app,
            &tenant.token,
            &path,
            (&first, &first_log),
            (&second, &second_log),
        )
        .await;
        check_a_move_with_credentials_sends_only_them(
            &app,
            &tenant.token,
            &path,
            (&second, &second_log),
        )
        .await;
        check_every_vendor_setting_needs_them_too(&app, &tenant.token, &second).await;
        first.stop().await;
        second.stop().await;
    })
    .await;
}

/// Checks that a move without the credentials is refused and one that keeps the host is fine.
async fn check_a_move_without_credentials_is_refused(
    app: &TestApp,
    token: &str,
    path: &str,
    (first, first_log): (&Served, &RequestLog),
    (second, second_log): (&Served, &RequestLog),
) {
    // Moving the connection without its credentials: refused, nothing changes.
    let moved = app
        .patch(
            path,
            token,
            json!({"settings": {"base_url": second.base_url}}),
        )
        .await;
    assert_eq!(
        moved.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
        ["settings.base_url"]
    );
    assert!(moved.text.contains("re-entered"), "{}", moved.text);
    // Settings that keep the host are fine.
    let kept = app
        .patch(
            path,
            token,
            json!({"settings": {"base_url": first.base_url, "timeout_seconds": 20}}),
        )
        .await;
    assert_eq!(kept.status, StatusCode::OK, "{}", kept.text);
    let test = app.post(&format!("{path}/test"), token, json!({})).await;
    assert_eq!(test.body["ok"], true, "{}", test.text);
    assert!(
        first_log
            .all()
            .iter()
            .any(|r| r.authorization.as_deref() == Some("Bearer token-for-the-first-host"))
    );
    assert!(second_log.all().is_empty(), "{:?}", second_log.all());
}

/// Moves the connection with new credentials and checks that the new host gets only them.
async fn check_a_move_with_credentials_sends_only_them(
    app: &TestApp,
    token: &str,
    path: &str,
    (second, second_log): (&Served, &RequestLog),
) {
    // With the credentials in the same request: accepted, and the new host gets only them.
    let moved = app
        .patch(
            path,
            token,
            json!({"settings": {"base_url": second.base_url},
                   "auth": {"type": "token", "token": "token-for-the-second-host"}}),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.text);
    let test = app.post(&format!("{path}/test"), token, json!({})).await;
    assert_eq!(test.body["ok"], true, "{}", test.text);
    let seen = second_log.all();
    assert!(!seen.is_empty());
    for request in seen {
        assert_eq!(
            request.authorization.as_deref(),
            Some("Bearer token-for-the-second-host")
        );
    }
}

/// Checks that every vendor setting that says where credentials go follows the same rule.
async fn check_every_vendor_setting_needs_them_too(app: &TestApp, token: &str, second: &Served) {
    let cases = [
        (
            json!({"name": "H", "provider": "hubspot",
                   "auth": {"type": "refresh_token", "client_id": "c", "client_secret": "s", "refresh_token": "r"}}),
            json!({"token_url": format!("{}/oauth/v1/token", second.base_url)}),
            "settings.token_url",
        ),
        (
            json!({"name": "S", "provider": "salesforce",
                   "auth": {"type": "refresh_token", "client_id": "c", "client_secret": "s", "refresh_token": "r"}}),
            json!({"login_url": second.base_url}),
            "settings.login_url",
        ),
        (
            json!({"name": "Z", "provider": "zoho", "settings": {"data_center": "eu"},
                   "auth": {"type": "refresh_token", "client_id": "c", "client_secret": "s", "refresh_token": "r"}}),
            json!({"data_center": "us"}),
            "settings.data_center",
        ),
        (
            json!({"name": "Z2", "provider": "zoho",
                   "auth": {"type": "refresh_token", "client_id": "c", "client_secret": "s", "refresh_token": "r"}}),
            json!({"accounts_url": second.base_url}),
            "settings.accounts_url",
        ),
        (
            json!({"name": "M", "provider": "smtp",
                   "settings": {"host": "127.0.0.1", "port": 2525, "tls": "none", "from": "a@example.com"},
                   "auth": {"type": "basic", "username": "mailer", "password": "mail-password"}}),
            json!({"host": "127.0.0.2", "port": 2525, "tls": "none", "from": "a@example.com"}),
            "settings.host",
        ),
    ];
    for (connection, settings, field) in cases {
        let created = app.post("/v1/connections", token, connection).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let id = created.str("/id");
        let refused = app
            .patch(
                &format!("/v1/connections/{id}"),
                token,
                json!({"settings": settings}),
            )
            .await;
        assert_eq!(
            refused.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
            [field]
        );
    }
}

#[tokio::test]
async fn an_absurd_token_lifetime_is_clamped_not_fatal() {
    each_backend_with(&[], |app| async move {
        // 10^14 seconds: representable as a duration, far past the last representable date.
        let (server, log) = recorder(100_000_000_000_000);
        let tenant = app.signup("Forever").await;
        let created = app
            .post(
                "/v1/connections",
                &tenant.token,
                json!({"name": "HubSpot", "provider": "hubspot",
                       "auth": {"type": "oauth", "client_id": "tenant-app", "client_secret": "tenant-secret"},
                       "settings": {"token_url": format!("{}/oauth/v1/token", server.base_url)}}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let id = created.str("/id");
        let state = state_of(&created.str("/authorize_url"));
        let (status, page) = callback(&app, &[("code", "c"), ("state", &state)]).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(log.matching("POST", "/oauth/v1/token").len(), 1);
        let connection = app
            .get(&format!("/v1/connections/{id}"), &tenant.token)
            .await;
        assert_eq!(connection.body["status"], "active", "{}", connection.text);
        // The session's expiry is a year away at most.
        let row = connection_row(&app, &id).await;
        let keyring = tributary_worker::secrets::Keyring::parse(tributary_tests::TEST_KEYRING)
            .expect("the test keyring parses");
        let plain = keyring
            .open(
                row.session.as_deref().unwrap(),
                &tributary_worker::secrets::SecretContext {
                    tenant_id: &row.tenant_id,
                    purpose: tributary_worker::sealed::CONNECTION_SESSION,
                    row_id: &row.id,
                },
            )
            .unwrap();
        let session: Value =
            serde_json::from_str(tributary_worker::secrets::expose(&plain)).unwrap();
        let expires_at: chrono::DateTime<chrono::Utc> =
            serde_json::from_value(session["expires_at"].clone()).unwrap();
        let now = chrono::Utc::now();
        assert!(
            expires_at > now + chrono::Duration::days(364)
                && expires_at <= now + chrono::Duration::days(366),
            "{expires_at}"
        );
        // And the api is still up for everyone.
        let health = app.client.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(health.status(), StatusCode::OK);
        server.stop().await;
    })
    .await;
}
