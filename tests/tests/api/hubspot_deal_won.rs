//! A HubSpot deal moved to closed won becomes a Stripe subscription (the
//! `hubspot-deal-won-to-stripe` recipe), against the fake HubSpot's signed webhooks and the fake
//! Stripe: the deal is read by a find step, the Customer created once and tagged with the deal,
//! the ids written back to the deal; the app's own write comes back as an echo and runs
//! nothing; a deal whose plan has no price, or that already has a subscription, writes nothing.

use serde_json::{Value, json};
use tributary_fakes::hubspot::webhooks::{APP_ID, deal_property_change};
use tributary_fakes::hubspot::{FakeHubSpot, PRIVATE_APP_TOKEN, WebhookSender};
use tributary_fakes::stripe::FakeStripe;
use tributary_tests::{Pipeline, TestApp, backends, wait_for};

const PORTAL: u64 = 62515;
const APP_SECRET: &str = "hubspot-app-client-secret-1";
const PRICE: &str = "price_1HubSpotPro";

fn local(app: &TestApp, url: &str) -> String {
    app.url(url.strip_prefix(&app.settings.public_url).unwrap_or(url))
}

/// The connection's events, once every one has finished: their statuses.
async fn settled(app: &TestApp, p: &Pipeline, count: usize) -> Vec<String> {
    wait_for(30, "every HubSpot event finished", || async {
        let reply = app.get("/v1/events?source=hubspot", &p.tenant.token).await;
        let events = reply.body["data"].as_array()?.clone();
        let mut statuses = Vec::new();
        for event in &events {
            let status = event["status"].as_str().unwrap_or_default();
            if !matches!(status, "processed" | "ignored" | "failed") {
                return None;
            }
            statuses.push(status.to_string());
        }
        (statuses.len() == count).then(|| {
            statuses.sort();
            statuses
        })
    })
    .await
}

async fn skipped_because(app: &TestApp, p: &Pipeline, step: &str) -> Value {
    wait_for(30, "the flow to stop", || async {
        let reply = app.get("/v1/deliveries?limit=100", &p.tenant.token).await;
        reply.body["data"]
            .as_array()?
            .iter()
            .find(|d| d["step"] == step && d["status"] == "skipped")
            .cloned()
    })
    .await
}

/// The fake Stripe with `prices` (id, product), the fake HubSpot with the recipe's deal
/// properties, and the app running the recipe on a HubSpot connection with `stripe_prices`.
struct World {
    stripe: FakeStripe,
    hubspot: FakeHubSpot,
    app: TestApp,
    p: Pipeline,
    sender: WebhookSender,
}

async fn world(
    backend: tributary_tests::Backend,
    prices: &[(&str, &str)],
    stripe_prices: Value,
) -> World {
    let stripe = FakeStripe::start();
    for (price, product) in prices {
        stripe.put(json!({"id": price, "object": "price", "currency": "usd",
            "unit_amount": 4900, "recurring": {"interval": "month", "interval_count": 1},
            "product": product, "active": true, "livemode": false}));
    }
    let hubspot = FakeHubSpot::start();
    for property in [
        "plan",
        "quantity",
        "stripe_customer_id",
        "stripe_subscription_id",
    ] {
        hubspot.define_property("deals", property, false);
    }
    let app = TestApp::spawn_with(
        backend,
        &[("TRIBUTARY_STRIPE_API_URL", stripe.base_url.as_str())],
    )
    .await;
    let p = app
        .pipeline_with(json!({
            "name": "HubSpot", "provider": "hubspot",
            "auth": {"type": "token", "token": PRIVATE_APP_TOKEN, "client_secret": APP_SECRET},
            "settings": {"base_url": hubspot.base_url, "app_id": APP_ID.to_string(),
                         "stripe_prices": stripe_prices}
        }))
        .await;
    app.connect_fake_stripe(&p, &stripe).await;
    app.flow_from_template(&p, "hubspot-deal-won-to-stripe")
        .await;
    let inbound = app.connection(&p).await["inbound_url"]
        .as_str()
        .unwrap()
        .to_string();
    let sender = WebhookSender::new(&local(&app, &inbound), APP_SECRET)
        .signed_as(&inbound)
        .retries(0);
    World {
        stripe,
        hubspot,
        app,
        p,
        sender,
    }
}

#[tokio::test]
async fn a_deal_won_in_hubspot_becomes_one_stripe_subscription() {
    for backend in backends() {
        let World {
            stripe,
            hubspot,
            app,
            p,
            sender,
        } = world(backend, &[(PRICE, "prod_pro")], json!({"Pro": PRICE})).await;
        let deal = hubspot.insert(
            "deals",
            json!({"dealname": "Stark renewal",
            "dealstage": "qualifiedtobuy", "plan": "Pro", "quantity": "3"}),
        );
        let unpriced = hubspot.insert(
            "deals",
            json!({"dealname": "Gold deal",
            "dealstage": "qualifiedtobuy", "plan": "Gold"}),
        );
        let user = Some("userId:1234567");
        let won = |id: &str| {
            deal_property_change(
                PORTAL,
                APP_ID,
                id.parse().unwrap(),
                "dealstage",
                "closedwon",
                user,
            )
        };
        assert!(sender.send(&[won(&deal)]).await, "{:?}", sender.attempts());
        assert_eq!(settled(&app, &p, 1).await, ["processed"]);

        let sub = one_subscription(&stripe, &hubspot, &deal);

        // HubSpot tells of the app's own write (by its app id): recorded, and nothing runs.
        // Moved back and won again by a person, the deal already has its subscription.
        let own = Some(APP_ID.to_string());
        let echo = deal_property_change(
            PORTAL,
            APP_ID,
            deal.parse().unwrap(),
            "stripe_subscription_id",
            sub["id"].as_str().unwrap(),
            own.as_deref(),
        );
        let reopened = deal_property_change(
            PORTAL,
            APP_ID,
            deal.parse().unwrap(),
            "dealstage",
            "presentationscheduled",
            user,
        );
        assert!(sender.send(&[echo, reopened]).await);
        assert!(sender.send(&[won(&deal)]).await);
        let stopped = skipped_because(&app, &p, "open").await;
        assert!(
            stopped["reason"]
                .as_str()
                .unwrap()
                .contains("has Stripe subscription"),
            "{stopped}"
        );
        assert_eq!(stripe.objects_of("subscription").len(), 1);
        assert_eq!(stripe.objects_of("customer").len(), 1);

        // A plan with no price: the flow stops before anything is written.
        assert!(sender.send(&[won(&unpriced)]).await);
        let stopped = skipped_because(&app, &p, "priced").await;
        assert!(
            stopped["reason"].as_str().unwrap().contains("'Gold'"),
            "{stopped}"
        );
        assert_eq!(stripe.objects_of("customer").len(), 1);
        let statuses = settled(&app, &p, 5).await;
        assert_eq!(
            statuses.iter().filter(|s| *s == "ignored").count(),
            2,
            "{statuses:?}"
        );
        stripe.stop().await;
        hubspot.stop().await;
    }
}

/// One subscription of the deal's plan and quantity, on a Customer made for the deal, both
/// ids written back to the deal. Returns the subscription.
fn one_subscription(stripe: &FakeStripe, hubspot: &FakeHubSpot, deal: &str) -> Value {
    let subscriptions = stripe.objects_of("subscription");
    assert_eq!(subscriptions.len(), 1, "{subscriptions:?}");
    let sub = &subscriptions[0];
    assert_eq!(sub["items"]["data"][0]["price"]["id"], PRICE);
    assert_eq!(sub["items"]["data"][0]["quantity"], 3);
    assert_eq!(sub["metadata"]["hubspot_deal_id"], deal);
    let customers = stripe.objects_of("customer");
    assert_eq!(customers.len(), 1);
    assert_eq!(customers[0]["name"], "Stark renewal");
    assert_eq!(customers[0]["metadata"]["hubspot_deal_id"], deal);
    assert_eq!(sub["customer"], customers[0]["id"]);
    let stored = hubspot.records("deals");
    let written = stored.iter().find(|d| d.id == deal).unwrap();
    assert_eq!(written.properties["stripe_subscription_id"], sub["id"]);
    assert_eq!(written.properties["stripe_customer_id"], customers[0]["id"]);

    sub.clone()
}

/// A deal with line items: one subscription item per line item, its SKU's price and its
/// quantity, and the deal's own plan left aside; a line item whose SKU has no price stops the
/// flow before anything is written, naming the SKU.
#[tokio::test]
async fn a_won_deals_line_items_become_the_subscriptions_items() {
    for backend in backends() {
        let World {
            stripe,
            hubspot,
            app,
            p,
            sender,
        } = world(
            backend,
            &[(PRICE, "prod_pro"), ("price_1Support", "prod_support")],
            json!({"PRO-SEAT": PRICE, "SUPPORT": "price_1Support", "Pro": PRICE}),
        )
        .await;
        let deal = hubspot.insert(
            "deals",
            json!({"dealname": "Stark seats", "dealstage": "qualifiedtobuy", "plan": "Gold"}),
        );
        for (sku, quantity) in [("PRO-SEAT", "5"), ("SUPPORT", "1")] {
            let line = hubspot.insert(
                "line_items",
                json!({"name": sku, "hs_sku": sku, "quantity": quantity}),
            );
            hubspot.associate("line_items", &line, "deals", &deal);
        }
        let odd = hubspot.insert(
            "deals",
            json!({"dealname": "Odd deal", "dealstage": "qualifiedtobuy", "plan": "Pro"}),
        );
        let line = hubspot.insert(
            "line_items",
            json!({"name": "Widget", "hs_sku": "WIDGET", "quantity": "2"}),
        );
        hubspot.associate("deals", &odd, "line_items", &line);
        let won = |id: &str| {
            deal_property_change(
                PORTAL,
                APP_ID,
                id.parse().unwrap(),
                "dealstage",
                "closedwon",
                Some("userId:1"),
            )
        };

        assert!(sender.send(&[won(&deal)]).await, "{:?}", sender.attempts());
        assert_eq!(settled(&app, &p, 1).await, ["processed"]);
        let subscriptions = stripe.objects_of("subscription");
        assert_eq!(subscriptions.len(), 1, "{subscriptions:?}");
        let items: Vec<(Value, Value)> = subscriptions[0]["items"]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i["price"]["id"].clone(), i["quantity"].clone()))
            .collect();
        assert_eq!(
            items,
            [
                (json!(PRICE), json!(5)),
                (json!("price_1Support"), json!(1))
            ],
            "the line items' prices and quantities, not the deal's Gold plan"
        );
        let written = hubspot
            .records("deals")
            .into_iter()
            .find(|d| d.id == deal)
            .unwrap();
        assert_eq!(
            written.properties["stripe_subscription_id"],
            subscriptions[0]["id"]
        );

        // A line item whose SKU has no price: stopped before any Customer or subscription.
        assert!(sender.send(&[won(&odd)]).await);
        let stopped = skipped_because(&app, &p, "priced_lines").await;
        assert!(
            stopped["reason"].as_str().unwrap().contains("WIDGET"),
            "{stopped}"
        );
        assert_eq!(stripe.objects_of("subscription").len(), 1);
        assert_eq!(stripe.objects_of("customer").len(), 1);
        stripe.stop().await;
        hubspot.stop().await;
    }
}
