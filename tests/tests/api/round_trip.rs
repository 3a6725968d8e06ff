//! Seed 002's round trip, as one test, against the fake Salesforce and the fake Stripe: an
//! Opportunity marked Closed Won (seen by polling) creates the Stripe Customer and the
//! subscription from the Opportunity's plan; Stripe's `customer.subscription.created` comes
//! back and writes the subscription id to the Opportunity; the integration user's own writes
//! come back as echoes, are recorded, and run nothing — the loop settles after one lap. The
//! connection names no integration user: the one Salesforce's token answer names is it.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tributary_fakes::salesforce::{self, FakeSalesforce};
use tributary_fakes::stripe::FakeStripe;
use tributary_tests::{Pipeline, TestApp, backends, wait_for};

const PRICE: &str = "price_1RoundTripPro";
const SEAT_PRICE: &str = "price_1RoundTripSeat";

fn setup_org(fake: &FakeSalesforce) {
    for field in [
        "Plan__c",
        "Quantity__c",
        "Stripe_Subscription_ID__c",
        "MRR__c",
        "ARR__c",
    ] {
        fake.define_field("Opportunity", field, false);
    }
    fake.define_field("Opportunity", "Stripe_Customer_ID__c", true);
}

async fn salesforce_pipeline(app: &TestApp, fake: &FakeSalesforce) -> Pipeline {
    app.pipeline_with(json!({
        "name": "Salesforce", "provider": "salesforce",
        "auth": {"type": "jwt_bearer", "client_id": salesforce::CLIENT_ID,
                 "username": salesforce::USERNAME,
                 "private_key": salesforce::TEST_PRIVATE_KEY_PEM},
        "settings": {"login_url": fake.login_url, "api_version": "60.0",
                     "won_stage": "Closed Won", "watch": ["Opportunity"], "poll_seconds": 3600,
                     "stripe_prices": {"Pro": PRICE, "SEAT-1": SEAT_PRICE}}
    }))
    .await
}

async fn poll(app: &TestApp, p: &Pipeline) -> Value {
    let reply = app
        .post(
            &format!("/v1/connections/{}/poll", p.connection_id),
            &p.tenant.token,
            json!({}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.body
}

async fn events(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let reply = app.get(&format!("/v1/events?{query}"), token).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.body["data"].as_array().cloned().unwrap_or_default()
}

/// Waits until every event listed has finished; their statuses by type.
async fn settled(app: &TestApp, token: &str, query: &str) -> Vec<(String, String)> {
    wait_for(30, "every event finished", || async {
        let mut out = Vec::new();
        for event in events(app, token, query).await {
            let status = event["status"].as_str().unwrap_or_default();
            if !matches!(status, "processed" | "ignored" | "failed") {
                return None;
            }
            out.push((
                event["type"].as_str().unwrap_or_default().to_string(),
                status.to_string(),
            ));
        }
        out.sort();
        Some(out)
    })
    .await
}

#[tokio::test]
async fn closed_won_creates_the_subscription_and_the_loop_settles_after_one_lap() {
    for backend in backends() {
        let stripe = FakeStripe::start();
        stripe.put(
            json!({"id": PRICE, "object": "price", "currency": "usd", "unit_amount": 4900,
            "recurring": {"interval": "month", "interval_count": 1}, "product": "prod_pro",
            "active": true, "livemode": false}),
        );
        let sf = FakeSalesforce::start();
        setup_org(&sf);
        let app = TestApp::spawn_with(
            backend,
            &[
                ("TRIBUTARY_STRIPE_API_URL", stripe.base_url.as_str()),
                // The test polls when it means to: no background watcher racing it.
                ("TRIBUTARY_CRM_WATCHER", "false"),
            ],
        )
        .await;
        let p = salesforce_pipeline(&app, &sf).await;
        app.connect_fake_stripe(&p, &stripe).await;
        let token = &p.tenant.token;
        app.flow_from_template(&p, "salesforce-closed-won-to-stripe")
            .await;
        app.flow_from_template(&p, "salesforce-opportunity-closed-won")
            .await;

        let opp = sf.insert("Opportunity", json!({"Name": "Stark renewal", "StageName": "Negotiation",
            "CloseDate": "2030-01-01", "AccountId": "001000000000042AAA", "Plan__c": "Pro", "Quantity__c": 3}));
        // The first poll sees the new Opportunity: no flow listens to creations.
        let first = poll(&app, &p).await;
        assert_eq!(first["events"], 1, "{first}");

        // A person wins it.
        sf.touch(&opp, json!({"StageName": "Closed Won"}));
        let won = poll(&app, &p).await;
        assert_eq!(won["events"], 1, "{won}");

        // Stripe: one Customer tagged with the Salesforce ids, one subscription of the plan.
        let subscription = wait_for(30, "the subscription id written back", || async {
            let record = sf.record("Opportunity", &opp)?;
            record
                .get("Stripe_Subscription_ID__c")?
                .as_str()
                .map(str::to_string)
        })
        .await;
        let customers = stripe.objects_of("customer");
        assert_eq!(customers.len(), 1, "{customers:?}");
        let customer = &customers[0];
        assert_eq!(
            customer["metadata"]["salesforce_opportunity_id"],
            opp.as_str()
        );
        assert_eq!(
            customer["metadata"]["salesforce_account_id"],
            "001000000000042AAA"
        );
        let subscriptions = stripe.objects_of("subscription");
        assert_eq!(subscriptions.len(), 1, "{subscriptions:?}");
        let sub = &subscriptions[0];
        assert_eq!(sub["id"], subscription.as_str());
        assert_eq!(sub["customer"], customer["id"]);
        assert_eq!(sub["items"]["data"][0]["price"]["id"], PRICE);
        assert_eq!(sub["items"]["data"][0]["quantity"], 3);
        assert_eq!(sub["metadata"]["salesforce_opportunity_id"], opp.as_str());
        let record = sf.record("Opportunity", &opp).unwrap();
        assert_eq!(
            record["Stripe_Customer_ID__c"], customer["id"],
            "{record:?}"
        );
        assert_eq!(record["StageName"], "Closed Won");

        // Every Stripe event the writes caused came back; the subscription's ran its flow.
        assert!(
            stripe
                .deliveries_settled(std::time::Duration::from_secs(10))
                .await
        );
        let from_stripe = settled(&app, token, "source=stripe").await;
        assert!(
            from_stripe.contains(&("customer.subscription.created".into(), "processed".into())),
            "{from_stripe:?}"
        );

        // The integration user's writes come back as echoes: recorded, nothing runs, and a
        // poll after that finds nothing new. One lap.
        let echoes = poll(&app, &p).await;
        assert!(echoes["events"].as_u64().unwrap() >= 1, "{echoes}");
        let from_salesforce = settled(&app, token, "source=salesforce").await;
        let processed: Vec<_> = from_salesforce
            .iter()
            .filter(|(_, s)| s == "processed")
            .collect();
        assert_eq!(
            processed.len(),
            1,
            "only the person's win ran a flow: {from_salesforce:?}"
        );
        let quiet = poll(&app, &p).await;
        assert_eq!(quiet["events"], 0, "{quiet}");
        assert_eq!(stripe.objects_of("customer").len(), 1);
        assert_eq!(stripe.objects_of("subscription").len(), 1);
        let watches = app
            .get(
                &format!("/v1/connections/{}/watches", p.connection_id),
                token,
            )
            .await;
        assert!(
            watches.body[0]["api_calls"].as_i64().unwrap() > 0,
            "{}",
            watches.text
        );
        stripe.stop().await;
    }
}

/// A Stripe account with the two prices, a Customer tagged with Account 1 and a Customer with
/// the email of Account 2's Contact.
fn stripe_with_customers() -> FakeStripe {
    let stripe = FakeStripe::start();
    for (price, amount, product) in [(PRICE, 4900, "prod_pro"), (SEAT_PRICE, 1000, "prod_seat")] {
        stripe.put(json!({"id": price, "object": "price", "currency": "usd",
            "unit_amount": amount, "recurring": {"interval": "month", "interval_count": 1},
            "product": product, "active": true, "livemode": false}));
    }
    stripe.put(
        json!({"id": "cus_known", "object": "customer", "name": "Known Ltd",
        "email": null, "created": 1_700_000_000, "livemode": false,
        "metadata": {"salesforce_account_id": "001000000000001AAA"}}),
    );
    stripe.put(
        json!({"id": "cus_mail", "object": "customer", "name": "Pepper Potts",
        "email": "pepper@stark.com", "created": 1_700_000_001, "livemode": false,
        "metadata": {}}),
    );
    stripe
}

/// Four Opportunities, of Accounts 1 to 4: the first with two priced products, the fourth
/// with a product no price is known for. Returns the first three and the fourth.
fn opportunities(sf: &FakeSalesforce) -> ([String; 3], String) {
    sf.insert(
        "Contact",
        json!({"LastName": "Potts", "Email": "pepper@stark.com",
        "AccountId": "001000000000002AAA"}),
    );
    let opportunity = |account: &str| {
        sf.insert(
            "Opportunity",
            json!({"Name": format!("Deal of {account}"),
            "StageName": "Negotiation", "CloseDate": "2030-01-01", "AccountId": account,
            "Plan__c": "Pro", "Quantity__c": 1}),
        )
    };
    let opportunities = [
        opportunity("001000000000001AAA"),
        opportunity("001000000000002AAA"),
        opportunity("001000000000003AAA"),
    ];
    for (code, quantity) in [("Pro", 2), ("SEAT-1", 5)] {
        sf.insert(
            "OpportunityLineItem",
            json!({"OpportunityId": opportunities[0],
            "ProductCode": code, "Quantity": quantity}),
        );
    }
    let unpriced = opportunity("001000000000004AAA");
    sf.insert(
        "OpportunityLineItem",
        json!({"OpportunityId": unpriced,
        "ProductCode": "GOLD-9", "Quantity": 1}),
    );
    (opportunities, unpriced)
}

/// Closed Won finds the Stripe Customer before it makes one: by the Account id in a
/// Customer's metadata, else by the email of the Account's Contact; only an Account with
/// neither gets a new Customer. Each Customer found is tagged with the Opportunity. An
/// Opportunity's products make its subscription's items; an unpriced product stops its flow
/// before anything is written.
#[tokio::test]
async fn closed_won_finds_the_stripe_customer_by_account_then_by_email() {
    for backend in backends() {
        let stripe = stripe_with_customers();
        let sf = FakeSalesforce::start();
        setup_org(&sf);
        let app = TestApp::spawn_with(
            backend,
            &[
                ("TRIBUTARY_STRIPE_API_URL", stripe.base_url.as_str()),
                // The test polls when it means to: no background watcher racing it.
                ("TRIBUTARY_CRM_WATCHER", "false"),
            ],
        )
        .await;
        let p = salesforce_pipeline(&app, &sf).await;
        app.connect_fake_stripe(&p, &stripe).await;
        app.flow_from_template(&p, "salesforce-closed-won-to-stripe")
            .await;
        let (opportunities, unpriced) = opportunities(&sf);
        assert_eq!(poll(&app, &p).await["events"], 4);
        for opp in opportunities.iter().chain([&unpriced]) {
            sf.touch(opp, json!({"StageName": "Closed Won"}));
        }
        assert_eq!(poll(&app, &p).await["events"], 4);

        let customer_of = |opp: &str| {
            let record = sf.record("Opportunity", opp)?;
            record
                .get("Stripe_Customer_ID__c")?
                .as_str()
                .map(str::to_string)
        };
        let customers: Vec<String> = wait_for(30, "each Opportunity's customer", || async {
            opportunities.iter().map(|opp| customer_of(opp)).collect()
        })
        .await;
        found_or_made(&stripe, &customers, &opportunities);
        subscribed(&stripe, &customers);
        unpriced_stops(&app, &p, &sf, &unpriced).await;
        stripe.stop().await;
    }
}

/// Account 1's Customer by metadata, Account 2's by email, a new one for Account 3; each
/// tagged with its Opportunity.
fn found_or_made(stripe: &FakeStripe, customers: &[String], opportunities: &[String]) {
    assert_eq!(customers[0], "cus_known", "found by the Account id");
    assert_eq!(customers[1], "cus_mail", "found by the Contact's email");
    let made = stripe.object(&customers[2]).expect("a new customer");
    assert_eq!(
        made["metadata"]["salesforce_account_id"],
        "001000000000003AAA"
    );
    assert_eq!(stripe.objects_of("customer").len(), 3);
    for (customer, opp) in customers.iter().zip(opportunities) {
        let tagged = stripe.object(customer).unwrap();
        assert_eq!(
            tagged["metadata"]["salesforce_opportunity_id"],
            opp.as_str()
        );
    }
    let mail = stripe.object("cus_mail").unwrap();
    assert_eq!(
        mail["metadata"]["salesforce_account_id"],
        "001000000000002AAA"
    );
}

/// One subscription per Opportunity; the first's items are its products.
fn subscribed(stripe: &FakeStripe, customers: &[String]) {
    let mut subscribed: Vec<String> = stripe
        .objects_of("subscription")
        .iter()
        .map(|s| s["customer"].as_str().unwrap_or_default().to_string())
        .collect();
    subscribed.sort();
    let mut expected = customers.to_vec();
    expected.sort();
    assert_eq!(subscribed, expected, "one subscription per Opportunity");
    let of_products = stripe
        .objects_of("subscription")
        .into_iter()
        .find(|s| s["customer"] == "cus_known")
        .unwrap();
    let items: Vec<(String, i64)> = of_products["items"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let price = i["price"]["id"].as_str().unwrap_or_default().to_string();
            (price, i["quantity"].as_i64().unwrap_or_default())
        })
        .collect();
    assert_eq!(items, [(PRICE.to_string(), 2), (SEAT_PRICE.to_string(), 5)]);
}

/// The unpriced product stopped its flow before any write, saying which code.
async fn unpriced_stops(app: &TestApp, p: &Pipeline, sf: &FakeSalesforce, unpriced: &str) {
    let stopped = wait_for(30, "the unpriced Opportunity's flow to stop", || async {
        let reply = app.get("/v1/deliveries?limit=100", &p.tenant.token).await;
        reply.body["data"]
            .as_array()?
            .iter()
            .find(|d| d["step"] == "priced" && d["status"] == "skipped")
            .cloned()
    })
    .await;
    let reason = stopped["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("without a Stripe price") && reason.contains("GOLD-9"),
        "{stopped}"
    );
    assert!(
        sf.record("Opportunity", unpriced)
            .unwrap()
            .get("Stripe_Customer_ID__c")
            .is_none_or(Value::is_null)
    );
}
