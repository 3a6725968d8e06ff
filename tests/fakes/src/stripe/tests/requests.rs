//! Tests of the request pipeline: idempotent replays, API keys and permissions, scripted failures and rate limits.

use super::*;

#[tokio::test]
async fn an_idempotent_post_is_replayed_and_a_changed_body_refused() {
    let fake = FakeStripe::start();
    let body = "url=https://example.com/hook&enabled_events[]=charge.succeeded&enabled_events[]=customer.created";
    let first = send(
        &fake,
        reqwest::Method::POST,
        "/v1/webhook_endpoints",
        SECRET_KEY,
        Some(body),
        Some("key-1"),
    )
    .await;
    assert_eq!(first.status, 200);
    assert!(first.headers.get("idempotent-replayed").is_none());
    let again = send(
        &fake,
        reqwest::Method::POST,
        "/v1/webhook_endpoints",
        SECRET_KEY,
        Some(body),
        Some("key-1"),
    )
    .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(again.body, first.body, "the same response, secret included");
    assert_eq!(fake.webhook_endpoints().len(), 1, "the work was done once");

    let changed = send(
        &fake,
        reqwest::Method::POST,
        "/v1/webhook_endpoints",
        SECRET_KEY,
        Some("url=https://example.com/other&enabled_events[]=*"),
        Some("key-1"),
    )
    .await;
    assert_eq!(changed.status, 400);
    assert_eq!(changed.body["error"]["type"], "idempotency_error");
    assert!(
        changed.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'key-1'")
    );
    assert_eq!(fake.webhook_endpoints().len(), 1);
    assert_eq!(fake.idempotency_keys(), vec![Some("key-1".to_string()); 3]);
    assert_eq!(fake.requests().all().len(), 3);

    // A JSON body is refused as Stripe refuses it.
    let json_body = send(
        &fake,
        reqwest::Method::POST,
        "/v1/webhook_endpoints",
        SECRET_KEY,
        Some("{\"url\":\"x\"}"),
        None,
    )
    .await;
    assert_eq!(json_body.status, 400);
    assert!(
        json_body.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("x-www-form-urlencoded")
    );
    fake.stop().await;
}

#[tokio::test]
async fn keys_are_checked_and_restricted_keys_refused_what_they_lack() {
    let fake = FakeStripe::start();
    fake.put(
        json!({"id": "cus_1", "object": "customer", "email": "a@example.com", "livemode": false}),
    );
    fake.put(json!({"id": "ch_1", "object": "charge", "customer": "cus_1", "amount": 2000}));
    fake.restrict("rk_test_abc123", &["customer_read", "event_read"]);

    let unknown = send(
        &fake,
        reqwest::Method::GET,
        "/v1/customers/cus_1",
        "sk_test_unknownabcd",
        None,
        None,
    )
    .await;
    assert_eq!(unknown.status, 401);
    assert_eq!(unknown.body["error"]["type"], "invalid_request_error");
    assert_eq!(
        unknown.body["error"]["message"],
        "Invalid API Key provided: sk_test_****abcd"
    );

    let ok = send(
        &fake,
        reqwest::Method::GET,
        "/v1/customers/cus_1",
        "rk_test_abc123",
        None,
        None,
    )
    .await;
    assert_eq!(
        (ok.status, ok.body["email"].clone()),
        (200, json!("a@example.com"))
    );
    let refused = send(
        &fake,
        reqwest::Method::GET,
        "/v1/charges/ch_1",
        "rk_test_abc123",
        None,
        None,
    )
    .await;
    assert_eq!(refused.status, 403);
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("'rak_charge_read'"), "{message}");
    assert!(message.contains(ACCOUNT_ID));
    let refused = send(
        &fake,
        reqwest::Method::POST,
        "/v1/webhook_endpoints",
        "rk_test_abc123",
        Some("url=https://e.com&enabled_events[]=*"),
        None,
    )
    .await;
    assert_eq!(refused.status, 403);
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rak_webhook_write")
    );

    // Basic auth with the key as the username.
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{SECRET_KEY}:"));
    let response = client()
        .get(format!("{}/v1/customers/cus_1", fake.base_url))
        .header("authorization", format!("Basic {basic}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let response = client()
        .get(format!("{}/v1/customers/cus_1", fake.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    fake.stop().await;
}

#[tokio::test]
async fn scripted_failures_and_rate_limits() {
    let fake = FakeStripe::start();
    fake.put(json!({"id": "cus_1", "object": "customer"}));
    fake.fail_next_with(1, 500, Some(true));
    fake.fail_next(1, 429);
    let failed = get(&fake, "/v1/customers/cus_1").await;
    assert_eq!(failed.status, 500);
    assert_eq!(failed.body["error"]["type"], "api_error");
    assert_eq!(failed.headers["stripe-should-retry"], "true");
    let limited = get(&fake, "/v1/customers/cus_1").await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.body["error"]["code"], "rate_limit");
    assert_eq!(get(&fake, "/v1/customers/cus_1").await.status, 200);

    // A failure before the idempotency layer is not replayed.
    fake.fail_next(1, 503);
    let body = "url=https://example.com&enabled_events[]=*";
    let first = send(
        &fake,
        reqwest::Method::POST,
        "/v1/webhook_endpoints",
        SECRET_KEY,
        Some(body),
        Some("k"),
    )
    .await;
    assert_eq!(first.status, 503);
    let retry = send(
        &fake,
        reqwest::Method::POST,
        "/v1/webhook_endpoints",
        SECRET_KEY,
        Some(body),
        Some("k"),
    )
    .await;
    assert_eq!(retry.status, 200);

    fake.rate_limit(3);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(get(&fake, "/v1/customers/cus_1").await.status);
    }
    assert_eq!(statuses, vec![200, 200, 200, 429, 429]);
    fake.rate_limit(0);
    assert_eq!(get(&fake, "/v1/customers/cus_1").await.status, 200);
    let unknown = get(&fake, "/v1/nothing").await;
    assert_eq!(unknown.status, 404);
    fake.stop().await;
}
