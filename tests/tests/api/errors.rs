//! Every error is a problem document, including the framework's own.

use reqwest::{Method, StatusCode};
use serde_json::json;
use tributary_tests::each_backend;

#[tokio::test]
async fn framework_errors_are_problems() {
    each_backend(|app| async move {
        let tenant = app.signup("Errors").await;

        let unknown = app.get("/v1/nothing-here", &tenant.token).await;
        unknown.assert_problem(StatusCode::NOT_FOUND);

        let wrong_method = app
            .call(
                Method::PUT,
                "/v1/stripe-accounts",
                Some(&tenant.token),
                Some(json!({})),
            )
            .await;
        wrong_method.assert_problem(StatusCode::METHOD_NOT_ALLOWED);
        let allow = wrong_method.headers["allow"].to_str().unwrap().to_string();
        assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");

        let bad_json = app
            .client
            .post(app.url("/v1/stripe-accounts"))
            .bearer_auth(&tenant.token)
            .header("content-type", "application/json")
            .body("{\"name\": ")
            .send()
            .await
            .unwrap();
        let reply = tributary_tests::Reply::read(bad_json).await;
        reply.assert_problem(StatusCode::BAD_REQUEST);

        let not_json = app
            .client
            .post(app.url("/v1/stripe-accounts"))
            .bearer_auth(&tenant.token)
            .header("content-type", "text/plain")
            .body("name=x")
            .send()
            .await
            .unwrap();
        tributary_tests::Reply::read(not_json)
            .await
            .assert_problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);

        let huge = json!({"name": "x".repeat(300 * 1024)});
        let too_large = app.post("/v1/stripe-accounts", &tenant.token, huge).await;
        too_large.assert_problem(StatusCode::PAYLOAD_TOO_LARGE);

        let typo = app
            .post(
                "/v1/stripe-accounts",
                &tenant.token,
                json!({"name": "x", "secret_kye": "sk_test_123456789"}),
            )
            .await;
        assert_eq!(
            typo.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
            vec!["secret_kye"]
        );

        let wrong_type = app
            .post("/v1/stripe-accounts", &tenant.token, json!({"name": 5}))
            .await;
        assert_eq!(
            wrong_type.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
            vec!["name"]
        );

        let missing = app
            .post("/v1/api-keys", &tenant.token, json!({"name": "k"}))
            .await;
        assert_eq!(
            missing.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
            vec!["role"]
        );

        let bad_enum = app
            .post(
                "/v1/api-keys",
                &tenant.token,
                json!({"name": "k", "role": "god"}),
            )
            .await;
        assert_eq!(
            bad_enum.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
            vec!["role"]
        );

        let bad_limit = app.get("/v1/users?limit=1000", &tenant.token).await;
        assert_eq!(
            bad_limit.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
            vec!["limit"]
        );

        let bad_filter = app.get("/v1/events?created_gte=soon", &tenant.token).await;
        assert_eq!(
            bad_filter.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
            vec!["created_gte"]
        );
        let good_filter = app
            .get(
                "/v1/events?created_gte=0&type=charge.succeeded&limit=5",
                &tenant.token,
            )
            .await;
        assert_eq!(good_filter.status, StatusCode::OK, "{}", good_filter.text);

        let no_token = app.call(Method::GET, "/v1/me", None, None).await;
        no_token.assert_problem(StatusCode::UNAUTHORIZED);
        assert_eq!(no_token.headers["www-authenticate"], "Bearer");

        // Nothing was half-written by any of the refused requests.
        let accounts = app.get("/v1/stripe-accounts", &tenant.token).await;
        assert_eq!(accounts.body["data"].as_array().unwrap().len(), 0);
    })
    .await;
}
