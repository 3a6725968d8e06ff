use reqwest::StatusCode;
use serde_json::json;
use tributary_tests::each_backend;

pub const SECRET_KEY: &str = "sk_live_51HxTributaryTestKey9876";
pub const SIGNING_SECRET: &str = "whsec_TributaryTestSigningSecret4242";

#[tokio::test]
async fn accounts_carry_a_webhook_url_and_only_last4() {
    each_backend(|app| async move {
        let tenant = app.signup("Stripe").await;
        let created = app
            .post("/v1/stripe-accounts", &tenant.token, json!({"name": "Live", "secret_key": SECRET_KEY, "webhook_secret": SIGNING_SECRET, "api_version": "2024-06-20"}))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let url = created.str("/webhook_url");
        let token = url.strip_prefix("https://hooks.example.test/webhooks/stripe/").expect("public URL + path");
        assert!(token.len() * 6 >= 128, "at least 128 bits: {token}");
        assert!(token.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(created.body["secret_key_last4"], "9876");
        assert_eq!(created.body["webhook_secrets"][0]["last4"], "4242");
        assert_eq!(created.body["tolerance_seconds"], 300);
        assert_eq!(created.body["api_version"], "2024-06-20");
        assert!(!created.text.contains(SECRET_KEY) && !created.text.contains(SIGNING_SECRET));

        let other = app.post("/v1/stripe-accounts", &tenant.token, json!({"name": "Test"})).await;
        assert_ne!(other.str("/webhook_url"), url, "each account has its own token");
        assert!(other.body["secret_key_last4"].is_null());

        let id = created.str("/id");
        let fetched = app.get(&format!("/v1/stripe-accounts/{id}"), &tenant.token).await;
        assert_eq!(fetched.body["webhook_url"], url.as_str());

        let listed = app.get("/v1/stripe-accounts?limit=1", &tenant.token).await;
        assert_eq!(listed.body["data"].as_array().unwrap().len(), 1);
        assert_eq!(listed.body["has_more"], true);
        assert_eq!(listed.body["data"][0]["name"], "Test", "newest first");
    })
    .await;
}

#[tokio::test]
async fn keys_that_are_not_stripes_are_refused_by_field() {
    each_backend(|app| async move {
        let tenant = app.signup("Shapes").await;
        let reply = app
            .post("/v1/stripe-accounts", &tenant.token, json!({"name": "x", "secret_key": "pk_test_1234567890", "webhook_secret": "secret", "api_version": "latest", "tolerance_seconds": 0}))
            .await;
        let mut fields = reply.assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
        fields.sort();
        assert_eq!(fields, vec!["api_version", "secret_key", "tolerance_seconds", "webhook_secret"]);
        assert!(!reply.text.contains("pk_test_1234567890"), "errors never echo a secret");
        let created = app.post("/v1/stripe-accounts", &tenant.token, json!({"name": "ok", "secret_key": "rk_live_1234567890abc"})).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let id = created.str("/id");
        let bad_secret = app.post(&format!("/v1/stripe-accounts/{id}/webhook-secrets"), &tenant.token, json!({"secret": "sk_test_123456789"})).await;
        assert_eq!(bad_secret.assert_problem(StatusCode::UNPROCESSABLE_ENTITY), vec!["secret"]);
        let listed = app.get("/v1/stripe-accounts", &tenant.token).await;
        assert_eq!(listed.body["data"].as_array().unwrap().len(), 1, "the refused request wrote nothing");
    })
    .await;
}

#[tokio::test]
async fn signing_secrets_rotate_and_accounts_update_and_delete() {
    each_backend(|app| async move {
        let tenant = app.signup("Rotate").await;
        let created = app.post("/v1/stripe-accounts", &tenant.token, json!({"name": "Main", "webhook_secret": SIGNING_SECRET})).await;
        let id = created.str("/id");
        let old_secret_id = created.str("/webhook_secrets/0/id");

        let added = app.post(&format!("/v1/stripe-accounts/{id}/webhook-secrets"), &tenant.token, json!({"secret": "whsec_NewSecretForRotation0001"})).await;
        assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
        assert_eq!(added.body["last4"], "0001");
        let both = app.get(&format!("/v1/stripe-accounts/{id}"), &tenant.token).await;
        assert_eq!(both.body["webhook_secrets"].as_array().unwrap().len(), 2);

        let retired = app.delete(&format!("/v1/stripe-accounts/{id}/webhook-secrets/{old_secret_id}"), &tenant.token).await;
        assert_eq!(retired.status, StatusCode::NO_CONTENT);
        let after = app.get(&format!("/v1/stripe-accounts/{id}"), &tenant.token).await;
        let secrets = after.body["webhook_secrets"].as_array().unwrap();
        assert_eq!(secrets.len(), 1);
        assert_eq!(secrets[0]["last4"], "0001");

        let patched = app
            .patch(&format!("/v1/stripe-accounts/{id}"), &tenant.token, json!({"name": "Renamed", "secret_key": "sk_live_abcdefghij5555", "tolerance_seconds": 600}))
            .await;
        assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
        assert_eq!(patched.body["name"], "Renamed");
        assert_eq!(patched.body["secret_key_last4"], "5555");
        assert_eq!(patched.body["tolerance_seconds"], 600);
        let cleared = app.patch(&format!("/v1/stripe-accounts/{id}"), &tenant.token, json!({"secret_key": null})).await;
        assert!(cleared.body["secret_key_last4"].is_null());
        assert_eq!(cleared.body["name"], "Renamed", "absent fields stay");

        assert_eq!(app.delete(&format!("/v1/stripe-accounts/{id}"), &tenant.token).await.status, StatusCode::NO_CONTENT);
        app.get(&format!("/v1/stripe-accounts/{id}"), &tenant.token).await.assert_problem(StatusCode::NOT_FOUND);

        let audit = app.get("/v1/audit-log?limit=100", &tenant.token).await;
        let actions: Vec<&str> = audit.body["data"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
        for expected in ["stripe_account.create", "webhook_secret.create", "webhook_secret.delete", "stripe_account.update", "stripe_account.delete"] {
            assert!(actions.contains(&expected), "{expected} missing from {actions:?}");
        }
    })
    .await;
}
