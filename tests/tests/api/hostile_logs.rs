//! What the api's public port and its logs give away: webhook tokens never reach the access
//! log (the route template and a request id do), and `/metrics` needs the operator's token.

use reqwest::StatusCode;
use serde_json::json;
use tributary_tests::{captured_logs, charge_event, each_backend, each_backend_with};

#[tokio::test]
async fn the_access_log_names_the_route_and_a_request_id_never_the_webhook_token() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let token = p.webhook_path.rsplit('/').next().unwrap().to_string();
        assert!(token.len() >= 16, "{}", p.webhook_path);
        let event = charge_event(
            "evt_log",
            "ch_log",
            "l@x.co",
            "L",
            100,
            chrono::Utc::now().timestamp(),
        );
        let sent = app.send_event(&p, &event).await;
        assert_eq!(sent.status, StatusCode::OK, "{}", sent.text);
        let id = sent.headers["x-request-id"].to_str().unwrap().to_string();
        assert!(!id.is_empty());
        // A forged signature: the problem document carries the same id as the header.
        let forged = app.webhook(&p.webhook_path, b"{}", Some("t=1,v1=00")).await;
        forged.assert_problem(StatusCode::BAD_REQUEST);
        assert_eq!(
            forged.body["request_id"].as_str(),
            forged.headers["x-request-id"].to_str().ok(),
            "{}",
            forged.text
        );

        let logs = captured_logs();
        assert!(!logs.contains(&token), "the webhook token is in the logs");
        let line = logs
            .lines()
            .find(|l| l.contains(&id))
            .expect("the request's access-log line");
        assert!(line.contains("/webhooks/stripe/{token}"), "{line}");
    })
    .await;
}

#[tokio::test]
async fn a_callers_request_id_is_kept_only_when_it_is_a_plain_token() {
    each_backend(|app| async move {
        let plain = app
            .client
            .get(app.url("/v1/me"))
            .header("x-request-id", "trace-42.a_b")
            .send()
            .await
            .unwrap();
        assert_eq!(plain.headers()["x-request-id"], "trace-42.a_b");
        let body: serde_json::Value = plain.json().await.unwrap();
        assert_eq!(body["request_id"], "trace-42.a_b");
        // A value that could forge a log line (or fill it) is replaced by a fresh id.
        for hostile in ["a b\" forged=1", &"x".repeat(200)] {
            let reply = app
                .client
                .get(app.url("/v1/me"))
                .header("x-request-id", hostile)
                .send()
                .await
                .unwrap();
            let id = reply.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_string();
            assert_ne!(id, hostile);
            assert!(id.starts_with("req_"), "{id}");
        }
    })
    .await;
}

#[tokio::test]
async fn metrics_are_not_served_on_the_public_port_without_a_token() {
    each_backend_with(&[("TRIBUTARY_METRICS_TOKEN", "")], |app| async move {
        let reply = app.call(reqwest::Method::GET, "/metrics", None, None).await;
        reply.assert_problem(StatusCode::NOT_FOUND);
        let with_any = app
            .call(
                reqwest::Method::GET,
                "/metrics",
                Some(tributary_tests::METRICS_TOKEN),
                None,
            )
            .await;
        with_any.assert_problem(StatusCode::NOT_FOUND);
        assert!(!with_any.text.contains("tributary_"));
    })
    .await;
}
