//! Tests of the writes: customers, subscriptions, invoice items and portal sessions, their
//! validation, idempotent replays, and the events they record.

use super::*;

pub(super) async fn post_keyed(fake: &FakeStripe, path: &str, body: &str, key: &str) -> Reply {
    send(
        fake,
        reqwest::Method::POST,
        path,
        SECRET_KEY,
        Some(body),
        Some(key),
    )
    .await
}

fn price(id: &str, currency: &str) -> Value {
    json!({"id": id, "object": "price", "active": true, "currency": currency,
           "product": "prod_1", "type": "recurring", "unit_amount": 2000,
           "recurring": {"interval": "month", "interval_count": 1}})
}

#[tokio::test]
async fn an_idempotent_create_is_replayed_without_a_second_event() {
    let fake = FakeStripe::start();
    let body = "email=ann@example.com&name=Ann&metadata[crm_contact_id]=42";
    let first = post_keyed(&fake, "/v1/customers", body, "tributary-evt1-customer").await;
    assert_eq!(first.status, 200, "{}", first.body);
    let id = first.body["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("cus_"));
    assert_eq!(first.body["object"], "customer");
    assert_eq!(first.body["email"], "ann@example.com");
    assert_eq!(first.body["metadata"], json!({"crm_contact_id": "42"}));
    assert_eq!(first.body["livemode"], false);

    let again = post_keyed(&fake, "/v1/customers", body, "tributary-evt1-customer").await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body, first.body, "the same customer");
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(fake.objects_of("customer").len(), 1);
    let events = fake.events();
    assert_eq!(events.len(), 1, "a replay raises no event");
    assert_eq!(events[0]["type"], "customer.created");
    assert_eq!(
        events[0]["request"],
        json!({"id": first.headers["request-id"].to_str().unwrap(),
               "idempotency_key": "tributary-evt1-customer"})
    );

    let changed = post_keyed(
        &fake,
        "/v1/customers",
        "email=bob@example.com",
        "tributary-evt1-customer",
    )
    .await;
    assert_eq!(changed.status, 400);
    assert_eq!(changed.body["error"]["type"], "idempotency_error");
    assert_eq!(fake.objects_of("customer").len(), 1);

    // Listed like every other event.
    let listed = get(&fake, "/v1/events?type=customer.created").await;
    assert_eq!(ids(&listed), vec![events[0]["id"].as_str().unwrap()]);
    let fetched = get(&fake, &format!("/v1/customers/{id}")).await;
    assert_eq!(fetched.body, first.body);
    fake.stop().await;
}

#[tokio::test]
async fn customer_updates_record_previous_attributes() {
    let fake = FakeStripe::start();
    let created = post(
        &fake,
        "/v1/customers",
        "name=Ann&metadata[a]=1&metadata[b]=2",
    )
    .await;
    let id = created.body["id"].as_str().unwrap().to_string();
    let path = format!("/v1/customers/{id}");
    let updated = post(&fake, &path, "name=Anne&metadata[a]=&metadata[c]=3&phone=").await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.body["name"], "Anne");
    assert_eq!(updated.body["metadata"], json!({"b": "2", "c": "3"}));
    let events = fake.events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["type"], "customer.updated");
    assert_eq!(events[1]["data"]["object"]["name"], "Anne");
    assert_eq!(
        events[1]["data"]["previous_attributes"],
        json!({"name": "Ann", "metadata": {"a": "1", "c": null}})
    );
    assert_eq!(events[1]["request"]["idempotency_key"], Value::Null);

    // Nothing changed: no event.
    assert_eq!(post(&fake, &path, "name=Anne").await.status, 200);
    assert_eq!(fake.events().len(), 2);
    let missing = post(&fake, "/v1/customers/cus_nope", "name=x").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body["error"]["code"], "resource_missing");
    let unknown = post(&fake, &path, "colour=red").await;
    assert_eq!(unknown.body["error"]["code"], "parameter_unknown");
    let email = post(&fake, "/v1/customers", "email=nope").await;
    assert_eq!(email.body["error"]["param"], "email");
    fake.stop().await;
}

#[tokio::test]
async fn metadata_is_held_to_stripes_limits() {
    let fake = FakeStripe::start();
    let many: Vec<String> = (0..51).map(|i| format!("metadata[k{i}]=v")).collect();
    let refused = post(&fake, "/v1/customers", &many.join("&")).await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.body["error"]["param"], "metadata");
    let long_key = "k".repeat(41);
    let refused = post(&fake, "/v1/customers", &format!("metadata[{long_key}]=v")).await;
    assert_eq!(
        refused.body["error"]["param"],
        format!("metadata[{long_key}]")
    );
    let long_value = "v".repeat(501);
    let refused = post(&fake, "/v1/customers", &format!("metadata[k]={long_value}")).await;
    assert_eq!(refused.body["error"]["param"], "metadata[k]");
    let refused = post(&fake, "/v1/customers", "metadata[a]b]=v").await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("square brackets")
    );
    let refused = post(&fake, "/v1/customers", "metadata[a[b]=v").await;
    assert_eq!(refused.body["error"]["param"], "metadata[a[b]");
    assert!(fake.objects_of("customer").is_empty());
    assert!(fake.events().is_empty(), "a refused write raises no event");

    // 50 keys, a 40-character key and a 500-character value are fine.
    let mut fine: Vec<String> = (0..49).map(|i| format!("metadata[k{i}]=v")).collect();
    fine.push(format!("metadata[{}]={}", "k".repeat(40), "v".repeat(500)));
    assert_eq!(
        post(&fake, "/v1/customers", &fine.join("&")).await.status,
        200
    );
    fake.stop().await;
}

#[tokio::test]
async fn subscriptions_need_a_customer_and_known_prices() {
    let fake = FakeStripe::start();
    fake.put(price("price_month", "usd"));
    let missing = post(
        &fake,
        "/v1/subscriptions",
        "customer=cus_nope&items[0][price]=price_month",
    )
    .await;
    assert_eq!(missing.status, 400);
    let e = &missing.body["error"];
    assert_eq!(
        (e["type"].clone(), e["code"].clone(), e["param"].clone()),
        (
            json!("invalid_request_error"),
            json!("resource_missing"),
            json!("customer")
        )
    );
    assert_eq!(e["message"], "No such customer: 'cus_nope'");
    let none = post(&fake, "/v1/subscriptions", "items[0][price]=price_month").await;
    assert_eq!(none.body["error"]["code"], "parameter_missing");
    assert_eq!(none.body["error"]["param"], "customer");

    let customer = post(&fake, "/v1/customers", "name=Ann").await.body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let unknown = post(
        &fake,
        "/v1/subscriptions",
        &format!("customer={customer}&items[0][price]=price_nope"),
    )
    .await;
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.body["error"]["code"], "resource_missing");
    assert_eq!(unknown.body["error"]["param"], "items[0][price]");
    let no_items = post(&fake, "/v1/subscriptions", &format!("customer={customer}")).await;
    assert_eq!(no_items.body["error"]["param"], "items");
    assert!(fake.objects_of("subscription").is_empty());
    fake.stop().await;
}

#[tokio::test]
async fn subscriptions_are_created_and_updated_with_their_events() {
    let fake = FakeStripe::start();
    fake.put(price("price_month", "usd"));
    let customer = post(&fake, "/v1/customers", "name=Ann").await.body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let body = format!(
        "customer={customer}&items[0][price]=price_month&items[0][quantity]=3&payment_behavior=default_incomplete&metadata[crm_deal_id]=9876543210&expand[0]=customer"
    );
    let created = post_keyed(&fake, "/v1/subscriptions", &body, "tributary-e-sub").await;
    assert_eq!(created.status, 200, "{}", created.body);
    let sub = &created.body;
    assert!(sub["id"].as_str().unwrap().starts_with("sub_"));
    assert_eq!(sub["status"], "incomplete", "no payment method to charge");
    assert_eq!(sub["customer"]["id"], customer.as_str(), "expanded");
    assert_eq!(sub["currency"], "usd");
    assert_eq!(sub["metadata"], json!({"crm_deal_id": "9876543210"}));
    let items = &sub["items"];
    assert_eq!(items["object"], "list");
    assert_eq!(items["total_count"], 1);
    assert_eq!(items["data"][0]["object"], "subscription_item");
    assert_eq!(items["data"][0]["price"]["id"], "price_month");
    assert_eq!(items["data"][0]["quantity"], 3);
    let sub_id = sub["id"].as_str().unwrap().to_string();

    // With a default payment method the subscription starts active.
    let paying = post(
        &fake,
        "/v1/customers",
        "invoice_settings[default_payment_method]=pm_card_visa",
    )
    .await;
    let active = post(
        &fake,
        "/v1/subscriptions",
        &format!(
            "customer={}&items[0][price]=price_month&payment_behavior=default_incomplete",
            paying.body["id"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(active.body["status"], "active");
    let allow = post(
        &fake,
        "/v1/subscriptions",
        &format!("customer={customer}&items[0][price]=price_month"),
    )
    .await;
    assert_eq!(allow.body["status"], "active");

    let item_id = items["data"][0]["id"].as_str().unwrap();
    let updated = post(
        &fake,
        &format!("/v1/subscriptions/{sub_id}"),
        &format!("metadata[stage]=won&cancel_at_period_end=true&items[0][id]={item_id}&items[0][quantity]=5"),
    )
    .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.body["cancel_at_period_end"], true);
    assert_eq!(updated.body["items"]["data"][0]["quantity"], 5);
    assert_eq!(updated.body["metadata"]["stage"], "won");
    let events = fake.events();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        vec![
            "customer.created",
            "customer.subscription.created",
            "customer.created",
            "customer.subscription.created",
            "customer.subscription.created",
            "customer.subscription.updated",
        ]
    );
    assert_eq!(events[1]["request"]["idempotency_key"], "tributary-e-sub");
    assert_eq!(
        events[1]["data"]["object"]["customer"], customer,
        "events carry the object unexpanded"
    );
    let previous = &events[5]["data"]["previous_attributes"];
    assert_eq!(previous["cancel_at_period_end"], false);
    assert_eq!(previous["metadata"], json!({"stage": null}));
    assert_eq!(previous["items"]["data"][0]["quantity"], 3);
    let missing = post(&fake, "/v1/subscriptions/sub_nope", "metadata[a]=b").await;
    assert_eq!(missing.status, 404);
    fake.stop().await;
}

#[tokio::test]
async fn invoice_items_and_portal_sessions() {
    let fake = FakeStripe::start();
    let customer = post(&fake, "/v1/customers", "name=Ann").await.body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let item = post(
        &fake,
        "/v1/invoiceitems",
        &format!("customer={customer}&amount=1250&currency=EUR&description=Setup&metadata[crm]=x"),
    )
    .await;
    assert_eq!(item.status, 200, "{}", item.body);
    assert!(item.body["id"].as_str().unwrap().starts_with("ii_"));
    assert_eq!(
        (item.body["amount"].clone(), item.body["currency"].clone()),
        (json!(1250), json!("eur"))
    );
    let fetched = get(
        &fake,
        &format!("/v1/invoiceitems/{}", item.body["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(fetched.body, item.body);
    let no_amount = post(&fake, "/v1/invoiceitems", &format!("customer={customer}")).await;
    assert_eq!(no_amount.body["error"]["param"], "amount");
    let no_customer = post(
        &fake,
        "/v1/invoiceitems",
        "customer=cus_nope&amount=1&currency=usd",
    )
    .await;
    assert_eq!(no_customer.body["error"]["param"], "customer");

    let session = post(
        &fake,
        "/v1/billing_portal/sessions",
        &format!("customer={customer}&return_url=https://example.com/account"),
    )
    .await;
    assert_eq!(session.status, 200, "{}", session.body);
    assert_eq!(session.body["object"], "billing_portal.session");
    assert_eq!(session.body["customer"], customer.as_str());
    assert_eq!(session.body["return_url"], "https://example.com/account");
    assert!(
        session.body["url"]
            .as_str()
            .unwrap()
            .starts_with("https://billing.stripe.com/p/session/test_")
    );
    let refused = post(&fake, "/v1/billing_portal/sessions", "customer=cus_nope").await;
    assert_eq!(
        (refused.status, refused.body["error"]["param"].clone()),
        (400, json!("customer"))
    );
    let types: Vec<String> = fake
        .events()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        types,
        vec!["customer.created", "invoiceitem.created"],
        "a portal session raises no event"
    );
    fake.stop().await;
}
