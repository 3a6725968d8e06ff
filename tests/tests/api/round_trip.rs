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
                     "stripe_prices": {"Pro": PRICE}}
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
            &[("TRIBUTARY_STRIPE_API_URL", stripe.base_url.as_str())],
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
