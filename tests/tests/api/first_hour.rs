//! The first hour, as the README's quick start walks it: placeholder secrets are refused with
//! the rule spelled out, a signing secret alone is enough, and a test event can be waited for,
//! so the record is there when the next command lists it.

use reqwest::StatusCode;
use serde_json::json;
use tributary_tests::{Pipeline, each_backend};

#[tokio::test]
async fn the_quick_start_needs_no_stripe_account_and_no_polling() {
    each_backend(|app| async move {
        let tenant = app.signup("Acme").await;
        let token = &tenant.token;

        // A placeholder key that has the prefix but not the length says what the rule is.
        let refused = app
            .post(
                "/v1/stripe-accounts",
                token,
                json!({"name": "Acme test", "secret_key": "sk_test_123", "webhook_secret": "whsec_123"}),
            )
            .await;
        let fields = refused.assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(fields, ["secret_key", "webhook_secret"], "{}", refused.text);
        assert!(refused.text.contains("at least 9"), "{}", refused.text);
        assert!(refused.text.contains("at least 8 characters"), "{}", refused.text);

        // The README's pair: a signing secret only.
        let account = app
            .post(
                "/v1/stripe-accounts",
                token,
                json!({"name": "Acme test", "webhook_secret": "whsec_quickstart_secret"}),
            )
            .await;
        assert_eq!(account.status, StatusCode::CREATED, "{}", account.text);
        let connection = app
            .post("/v1/connections", token, json!({"name": "Sandbox", "provider": "sandbox"}))
            .await;
        assert_eq!(connection.status, StatusCode::CREATED, "{}", connection.text);
        let pipeline = Pipeline {
            tenant: tenant.clone(),
            connection_id: connection.str("/id"),
            account_id: account.str("/id"),
            webhook_path: String::new(),
            secret: "whsec_quickstart_secret".into(),
        };
        app.flow_from_template(&pipeline, "sandbox-lead-from-checkout").await;

        let path = format!("/v1/stripe-accounts/{}/test-events", pipeline.account_id);
        let too_long = app
            .post(&format!("{path}?wait=31"), token, json!({"type": "checkout.session.completed"}))
            .await;
        assert_eq!(
            too_long.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
            ["wait"]
        );

        let sent = app
            .post(&format!("{path}?wait=20"), token, json!({"type": "checkout.session.completed"}))
            .await;
        assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.text);
        assert_eq!(sent.body["status"], "processed", "{}", sent.text);
        // The very next command finds the record: no race with the worker.
        let leads = app.records(token, &pipeline.connection_id, "leads").await;
        assert_eq!(leads.len(), 1, "{leads:?}");

        // Without wait the answer comes at once and says the event is on its way.
        let quick = app
            .post(&path, token, json!({"type": "checkout.session.completed"}))
            .await;
        assert_eq!(quick.status, StatusCode::ACCEPTED, "{}", quick.text);
        assert!(quick.body["status"].is_string(), "{}", quick.text);
    })
    .await;
}
