//! Tests of webhook delivery: signed POSTs to a local listener, retries, which endpoints get
//! which events, Dashboard changes, and the signature scheme itself.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};

use super::writes::post_keyed;
use super::*;
use crate::Served;

/// One request the listener received.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    signature: String,
    content_type: String,
    body: String,
}

/// A webhook listener answering `statuses` in turn, then 200.
fn listener(statuses: Vec<u16>) -> (Served, Arc<Mutex<Vec<Received>>>) {
    let received: Arc<Mutex<Vec<Received>>> = Arc::default();
    let script = Arc::new(Mutex::new(statuses));
    let log = received.clone();
    let served = Served::start(move |cfg| {
        let log = log.clone();
        let script = script.clone();
        cfg.default_service(web::to(move |req: HttpRequest, body: Bytes| {
            let header = |name: &str| {
                req.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string()
            };
            log.lock().unwrap().push(Received {
                path: req.uri().to_string(),
                signature: header("stripe-signature"),
                content_type: header("content-type"),
                body: String::from_utf8_lossy(&body).into_owned(),
            });
            let mut script = script.lock().unwrap();
            let status = if script.is_empty() {
                200
            } else {
                script.remove(0)
            };
            let response =
                HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                    .body("{}");
            async move { response }
        }));
    });
    (served, received)
}

/// Registers a webhook endpoint through the API; its id and secret.
async fn endpoint(fake: &FakeStripe, url: &str, events: &[&str]) -> (String, String) {
    let events: Vec<String> = events
        .iter()
        .map(|e| format!("enabled_events[]={e}"))
        .collect();
    let created = post(
        fake,
        "/v1/webhook_endpoints",
        &format!("url={url}&{}", events.join("&")),
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.body);
    (
        created.body["id"].as_str().unwrap().to_string(),
        created.body["secret"].as_str().unwrap().to_string(),
    )
}

/// Checks a `Stripe-Signature` header against the body and secret; its timestamp.
fn verify(header: &str, body: &str, secret: &str) -> i64 {
    let (t, v1) = header.split_once(',').unwrap();
    let t: i64 = t.strip_prefix("t=").unwrap().parse().unwrap();
    let v1 = v1.strip_prefix("v1=").unwrap();
    let mac = hmac_sha256(secret.as_bytes(), format!("{t}.{body}").as_bytes());
    let expected: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(v1, expected, "the signature covers t and the exact body");
    t
}

#[tokio::test]
async fn a_created_customer_is_delivered_signed() {
    let fake = FakeStripe::start();
    let (hook, received) = listener(vec![]);
    let url = format!("{}/hooks/stripe?tenant=t1", hook.base_url);
    let (endpoint_id, secret) = endpoint(&fake, &url, &["customer.created"]).await;
    // Endpoints that must not get it: another type, and a disabled one.
    let (_, _) = endpoint(
        &fake,
        &format!("{}/other", hook.base_url),
        &["invoice.paid"],
    )
    .await;
    let (disabled, _) = endpoint(&fake, &format!("{}/off", hook.base_url), &["*"]).await;
    post(
        &fake,
        &format!("/v1/webhook_endpoints/{disabled}"),
        "disabled=true",
    )
    .await;

    let created = post_keyed(&fake, "/v1/customers", "name=Ann", "tributary-e1-c").await;
    assert!(fake.deliveries_settled(Duration::from_secs(10)).await);
    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 1, "{received:?}");
    let got = &received[0];
    assert_eq!(got.path, "/hooks/stripe?tenant=t1");
    assert_eq!(got.content_type, "application/json; charset=utf-8");
    let t = verify(&got.signature, &got.body, &secret);
    assert!((Utc::now().timestamp() - t).abs() < 60);
    assert!(
        got.body.contains("\n  \"id\""),
        "pretty-printed as Stripe's are"
    );
    let event: Value = serde_json::from_str(&got.body).unwrap();
    assert_eq!(event["object"], "event");
    assert_eq!(event["type"], "customer.created");
    assert_eq!(event["api_version"], API_VERSION);
    assert_eq!(event["data"]["object"]["id"], created.body["id"]);
    assert_eq!(
        event["request"]["id"],
        created.headers["request-id"].to_str().unwrap()
    );
    assert_eq!(event["request"]["idempotency_key"], "tributary-e1-c");
    assert_eq!(event["pending_webhooks"], 1);

    let deliveries = fake.deliveries();
    assert_eq!(deliveries.len(), 1);
    let d = &deliveries[0];
    assert_eq!(
        (d.event_id.as_str(), d.endpoint_id.as_str(), d.url.as_str()),
        (
            event["id"].as_str().unwrap(),
            endpoint_id.as_str(),
            url.as_str()
        )
    );
    assert_eq!((d.attempt, d.status), (1, Some(200)));
    assert!(d.succeeded());
    assert_eq!(d.signature, got.signature);
    let listed = get(&fake, "/v1/events?delivery_success=true").await;
    assert_eq!(listed.body["data"][0]["pending_webhooks"], 0);
    hook.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn failed_deliveries_are_retried_and_signed_anew() {
    let fake = FakeStripe::start();
    fake.delivery_retries(3, Duration::from_millis(20));
    let (hook, received) = listener(vec![500, 503, 500, 500, 500]);
    let (_, secret) = endpoint(&fake, &format!("{}/hook", hook.base_url), &["*"]).await;
    post(&fake, "/v1/customers", "name=Ann").await;
    assert!(fake.deliveries_settled(Duration::from_secs(10)).await);
    let attempts = fake.deliveries();
    assert_eq!(
        attempts
            .iter()
            .map(|d| (d.attempt, d.status))
            .collect::<Vec<_>>(),
        vec![(1, Some(500)), (2, Some(503)), (3, Some(500))]
    );
    for got in received.lock().unwrap().iter() {
        verify(&got.signature, &got.body, &secret);
    }
    let failed = get(&fake, "/v1/events?delivery_success=false").await;
    assert_eq!(ids(&failed).len(), 1, "the event counts as undelivered");

    // Two more failures, then a success on the third attempt.
    post(&fake, "/v1/customers", "name=Bob").await;
    assert!(fake.deliveries_settled(Duration::from_secs(10)).await);
    let last: Vec<Option<u16>> = fake.deliveries()[3..].iter().map(|d| d.status).collect();
    assert_eq!(last, vec![Some(500), Some(500), Some(200)]);

    // An endpoint nobody listens on: attempts without an answer.
    fake.delivery_retries(2, Duration::from_millis(10));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    endpoint(
        &fake,
        &format!("http://127.0.0.1:{port}/gone"),
        &["customer.updated"],
    )
    .await;
    let id = fake.objects_of("customer")[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    post(&fake, &format!("/v1/customers/{id}"), "name=Ann%20B").await;
    assert!(fake.deliveries_settled(Duration::from_secs(10)).await);
    let gone: Vec<StripeDelivery> = fake
        .deliveries()
        .into_iter()
        .filter(|d| d.url.ends_with("/gone"))
        .collect();
    assert_eq!(gone.len(), 2);
    assert!(gone.iter().all(|d| d.status.is_none() && d.error.is_some()));
    hook.stop().await;
    fake.stop().await;
}

#[tokio::test]
async fn dashboard_changes_carry_a_key_that_is_not_tributarys() {
    let fake = FakeStripe::start();
    let (hook, received) = listener(vec![]);
    let (_, secret) = endpoint(&fake, &format!("{}/hook", hook.base_url), &["*"]).await;
    let created = post_keyed(&fake, "/v1/customers", "name=Ann", "tributary-e2-c").await;
    let id = created.body["id"].as_str().unwrap();
    let event_id = fake.dashboard_update(
        id,
        json!({"email": "ann@example.com", "metadata": {"vip": "yes"}}),
    );
    assert_eq!(fake.object(id).unwrap()["email"], "ann@example.com");
    assert!(fake.deliveries_settled(Duration::from_secs(10)).await);
    let events = fake.events();
    let event = events
        .iter()
        .find(|e| e["id"] == event_id.as_str())
        .unwrap();
    assert_eq!(event["type"], "customer.updated");
    assert_eq!(
        event["data"]["previous_attributes"],
        json!({"email": null, "metadata": {"vip": null}})
    );
    let key = event["request"]["idempotency_key"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(key).is_ok(), "a random UUID: {key}");
    assert!(event["request"]["id"].as_str().unwrap().starts_with("req_"));
    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 2);
    let keys: Vec<Value> = received
        .iter()
        .map(|got| {
            verify(&got.signature, &got.body, &secret);
            serde_json::from_str::<Value>(&got.body).unwrap()["request"]["idempotency_key"].clone()
        })
        .collect();
    assert!(keys.contains(&json!("tributary-e2-c")) && keys.contains(&json!(key)));

    // A Dashboard-made subscription, and an event Stripe raises itself.
    let made = fake.dashboard_create(
        json!({"id": "sub_dash", "object": "subscription", "customer": id, "status": "active"}),
    );
    let own = fake.send_event(FakeStripe::event(
        "invoice.paid",
        json!({"id": "in_1", "object": "invoice"}),
        Utc::now().timestamp(),
    ));
    assert!(fake.deliveries_settled(Duration::from_secs(10)).await);
    let types: Vec<String> = fake
        .deliveries()
        .iter()
        .map(|d| d.event_type.clone())
        .collect();
    assert!(types.contains(&"customer.subscription.created".to_string()));
    assert!(types.contains(&"invoice.paid".to_string()));
    assert_ne!(made, own);
    assert_eq!(fake.objects_of("subscription").len(), 1);
    hook.stop().await;
    fake.stop().await;
}

#[test]
fn signatures_follow_the_hmac_sha256_scheme() {
    // RFC 4231, test case 2.
    let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    // A key longer than the block is hashed first.
    let mac = hmac_sha256(&[b'k'; 100], b"msg");
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "bd56a1782c2830e8abc6ed866a57a1230661e650b84c62f7ee3accc5fa5af491"
    );
    // The header, with the secret used verbatim (prefix included); computed independently.
    let body = "{\n  \"id\": \"evt_test_webhook\",\n  \"object\": \"event\"\n}";
    assert_eq!(
        signature_header("whsec_test_secret", 1_700_000_000, body),
        "t=1700000000,v1=4f1cd7feda9826e746b7d482c4badebb657398df1099e1046364f6196a230150"
    );
}
