//! Connections: what each provider accepts, the field every refusal names, credentials that
//! never come back, and the vendor-URL guard.

use reqwest::StatusCode;
use sea_orm::EntityTrait;
use serde_json::{Value, json};
use tributary_tests::{TestApp, each_backend, each_backend_with};

async fn refused(app: &TestApp, token: &str, body: Value) -> Vec<String> {
    let reply = app.post("/v1/connections", token, body).await;
    reply.assert_problem(StatusCode::UNPROCESSABLE_ENTITY)
}

#[tokio::test]
async fn every_refusal_names_its_field_and_stores_nothing() {
    each_backend(|app| async move {
        let t = app.signup("Conn").await;
        let token = &t.token;
        let cases = [
            (json!({"name": "H", "provider": "hubspot"}), "auth"),
            (
                json!({"name": "H", "provider": "hubspot", "auth": {"token": "x"}}),
                "auth.type",
            ),
            (
                json!({"name": "Z", "provider": "zoho", "auth": {"type": "token", "token": "x"}}),
                "auth.type",
            ),
            (
                json!({"name": "S", "provider": "salesforce",
                       "auth": {"type": "jwt_bearer", "client_id": "c", "username": "u", "private_key": "not a key"}}),
                "auth.private_key",
            ),
            (
                json!({"name": "S", "provider": "salesforce",
                       "auth": {"type": "refresh_token", "client_id": "c", "client_secret": "s"}}),
                "auth.refresh_token",
            ),
            (
                json!({"name": "H", "provider": "hubspot", "auth": {"type": "token", "token": "x"},
                       "settings": {"base_url": "https://api.hubapi.com", "baseurl": "typo"}}),
                "settings.baseurl",
            ),
            (
                json!({"name": "S", "provider": "salesforce",
                       "auth": {"type": "refresh_token", "client_id": "c", "client_secret": "s", "refresh_token": "r"},
                       "settings": {"api_version": "v60"}}),
                "settings.api_version",
            ),
            (
                json!({"name": "Z", "provider": "zoho",
                       "auth": {"type": "refresh_token", "client_id": "c", "client_secret": "s", "refresh_token": "r"},
                       "settings": {"data_center": "mars"}}),
                "settings.data_center",
            ),
            (
                json!({"name": "W", "provider": "http", "auth": {"type": "none"}}),
                "settings.base_url",
            ),
            (
                json!({"name": "W", "provider": "http", "settings": {"base_url": "https://crm.example.com"},
                       "auth": {"type": "hmac", "secret": "s"}}),
                "auth.header",
            ),
            (
                json!({"name": "H", "provider": "hubspot", "auth": {"type": "oauth", "client_id": "c"}}),
                "auth.client_secret",
            ),
        ];
        for (body, field) in cases {
            let fields = refused(&app, token, body.clone()).await;
            assert!(fields.contains(&field.to_string()), "{body} → {fields:?}");
        }
        let list = app.get("/v1/connections", token).await;
        assert_eq!(list.body["data"], json!([]), "nothing was stored");
    })
    .await;
}

#[tokio::test]
async fn credentials_are_sealed_and_never_returned() {
    each_backend(|app| async move {
        let t = app.signup("Conn").await;
        let created = app
            .post(
                "/v1/connections",
                &t.token,
                json!({"name": "Zoho", "provider": "zoho",
                       "auth": {"type": "refresh_token", "client_id": "1000.CLIENT",
                                "client_secret": "very-secret-value", "refresh_token": "1000.refresh-secret"},
                       "settings": {"data_center": "eu"}}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        assert_eq!(created.body["auth"], json!({"type": "refresh_token"}));
        assert_eq!(created.body["status"], "active");
        assert_eq!(created.body["info"], json!({}));
        let id = created.str("/id");
        let shown = app
            .get(&format!("/v1/connections/{id}"), &t.token)
            .await
            .text;
        for secret in ["very-secret-value", "1000.refresh-secret", "1000.CLIENT"] {
            assert!(!shown.contains(secret) && !created.text.contains(secret));
        }
        // At rest, the credentials are sealed.
        let stored = entity::connections::Entity::find_by_id(id.clone())
            .one(&app.db)
            .await
            .unwrap()
            .unwrap();
        let sealed = stored.credentials.unwrap();
        assert!(
            sealed.starts_with("k1:") && !sealed.contains("secret"),
            "{sealed}"
        );

        // A patch of the wrong kind of credentials names the field and changes nothing.
        let wrong = app
            .patch(
                &format!("/v1/connections/{id}"),
                &t.token,
                json!({"auth": {"type": "jwt_bearer", "client_id": "c", "username": "u", "private_key": "k"}}),
            )
            .await;
        assert_eq!(
            wrong.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
            ["auth.type"]
        );
    })
    .await;
}

#[tokio::test]
async fn official_vendor_urls_refuse_other_hosts() {
    each_backend_with(&[("TRIBUTARY_VENDOR_URLS", "official")], |app| async move {
        let t = app.signup("Conn").await;
        let fields = refused(
            &app,
            &t.token,
            json!({"name": "H", "provider": "hubspot", "auth": {"type": "token", "token": "pat"},
                   "settings": {"base_url": "http://127.0.0.1:9"}}),
        )
        .await;
        assert_eq!(fields, ["settings.base_url"]);
        let fields = refused(
            &app,
            &t.token,
            json!({"name": "W", "provider": "http", "settings": {"base_url": "https://10.1.2.3/api"}}),
        )
        .await;
        assert_eq!(fields, ["settings.base_url"]);
        let ok = app
            .post(
                "/v1/connections",
                &t.token,
                json!({"name": "S", "provider": "salesforce",
                       "auth": {"type": "refresh_token", "client_id": "c", "client_secret": "s", "refresh_token": "r"},
                       "settings": {"login_url": "https://test.salesforce.com"}}),
            )
            .await;
        assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);
    })
    .await;
}
