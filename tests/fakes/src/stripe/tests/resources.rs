//! Tests of the resources: stored objects with `expand[]`, and webhook endpoints.

use super::*;

#[tokio::test]
async fn objects_answer_404_in_stripes_shape_and_expand() {
    let fake = FakeStripe::start();
    fake.put(json!({"id": "cus_1", "object": "customer", "email": "a@example.com"}));
    fake.put(
        json!({"id": "ch_1", "object": "charge", "customer": "cus_1", "payment_intent": "pi_1"}),
    );
    fake.put(json!({"id": "pi_1", "object": "payment_intent", "customer": "cus_1", "latest_charge": "ch_1"}));

    let missing = get(&fake, "/v1/customers/cus_x").await;
    assert_eq!(missing.status, 404);
    let e = &missing.body["error"];
    assert_eq!(e["type"], "invalid_request_error");
    assert_eq!(e["code"], "resource_missing");
    assert_eq!(e["param"], "id");
    assert_eq!(e["message"], "No such customer: 'cus_x'");
    assert_eq!(
        e["doc_url"],
        "https://stripe.com/docs/error-codes/resource-missing"
    );
    assert!(e["request_log_url"].is_string());
    // An id of another type is not found under this route.
    assert_eq!(get(&fake, "/v1/invoices/cus_1").await.status, 404);

    let plain = get(&fake, "/v1/charges/ch_1").await;
    assert_eq!(plain.body["customer"], "cus_1");
    let expanded = get(
        &fake,
        "/v1/charges/ch_1?expand[]=customer&expand[]=payment_intent",
    )
    .await;
    assert_eq!(expanded.body["customer"]["email"], "a@example.com");
    assert_eq!(expanded.body["payment_intent"]["id"], "pi_1");
    let nested = get(
        &fake,
        "/v1/payment_intents/pi_1?expand[]=latest_charge.customer",
    )
    .await;
    assert_eq!(nested.body["latest_charge"]["customer"]["id"], "cus_1");
    let bad = get(&fake, "/v1/charges/ch_1?expand[]=nope").await;
    assert_eq!(bad.status, 400);

    let updated = fake.update(
        "cus_1",
        json!({"email": "b@example.com", "metadata": {"k": "v"}}),
    );
    assert_eq!(updated["email"], "b@example.com");
    assert_eq!(
        get(&fake, "/v1/customers/cus_1").await.body["metadata"]["k"],
        "v"
    );
    fake.stop().await;
}

#[tokio::test]
async fn webhook_endpoints_are_created_updated_deleted_and_capped_at_16() {
    let fake = FakeStripe::start();
    let created = post(&fake, "/v1/webhook_endpoints", "url=https://example.com/hook&enabled_events[]=charge.succeeded&description=mine&metadata[tenant]=t1&api_version=2023-08-16").await;
    assert_eq!(created.status, 200);
    let id = created.body["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("we_"));
    assert!(
        created.body["secret"]
            .as_str()
            .unwrap()
            .starts_with("whsec_")
    );
    assert_eq!(created.body["status"], "enabled");
    assert_eq!(created.body["enabled_events"], json!(["charge.succeeded"]));
    assert_eq!(created.body["metadata"], json!({"tenant": "t1"}));
    assert_eq!(created.body["api_version"], "2023-08-16");

    let fetched = get(&fake, &format!("/v1/webhook_endpoints/{id}")).await;
    assert!(
        fetched.body.get("secret").is_none(),
        "the secret is shown only at creation"
    );
    let updated = post(&fake, &format!("/v1/webhook_endpoints/{id}"), "disabled=true&enabled_events[]=invoice.paid&enabled_events[]=customer.updated&url=https://example.com/new").await;
    assert_eq!(updated.status, 200);
    assert_eq!(updated.body["status"], "disabled");
    assert_eq!(
        updated.body["enabled_events"],
        json!(["invoice.paid", "customer.updated"])
    );
    assert_eq!(updated.body["url"], "https://example.com/new");

    // Validation.
    let bad = post(
        &fake,
        "/v1/webhook_endpoints",
        "url=https://example.com&enabled_events[]=not.a_type",
    )
    .await;
    assert_eq!(
        (bad.status, bad.body["error"]["param"].clone()),
        (400, json!("enabled_events[0]"))
    );
    let bad = post(&fake, "/v1/webhook_endpoints", "enabled_events[]=*").await;
    assert_eq!(bad.body["error"]["code"], "parameter_missing");
    let bad = post(
        &fake,
        "/v1/webhook_endpoints",
        "url=https://e.com&enabled_events[]=*&colour=red",
    )
    .await;
    assert_eq!(bad.body["error"]["code"], "parameter_unknown");

    // 16 at most.
    for i in 1..MAX_WEBHOOK_ENDPOINTS {
        let r = post(
            &fake,
            "/v1/webhook_endpoints",
            &format!("url=https://example.com/{i}&enabled_events[]=*"),
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let over = post(
        &fake,
        "/v1/webhook_endpoints",
        "url=https://example.com/17&enabled_events[]=*",
    )
    .await;
    assert_eq!(over.status, 400);
    assert!(
        over.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("16")
    );
    let listed = get(&fake, "/v1/webhook_endpoints?limit=100").await;
    assert_eq!(listed.body["url"], "/v1/webhook_endpoints");
    assert_eq!(ids(&listed).len(), 16);
    assert_eq!(ids(&listed).last().unwrap(), &id, "newest first");

    let deleted = send(
        &fake,
        reqwest::Method::DELETE,
        &format!("/v1/webhook_endpoints/{id}"),
        SECRET_KEY,
        None,
        None,
    )
    .await;
    assert_eq!(
        deleted.body,
        json!({"id": id, "object": "webhook_endpoint", "deleted": true})
    );
    assert_eq!(
        get(&fake, &format!("/v1/webhook_endpoints/{id}"))
            .await
            .status,
        404
    );
    let again = post(
        &fake,
        "/v1/webhook_endpoints",
        "url=https://example.com/17&enabled_events[]=*",
    )
    .await;
    assert_eq!(again.status, 200, "room again after a delete");
    fake.stop().await;
}
