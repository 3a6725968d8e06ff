//! The sender, checked against a local listener that recomputes HubSpot's signatures from
//! the request it received, and the signing primitives against WEBHOOKS.md §6's vectors.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use super::super::post::hmac_sha256;
use super::*;
use crate::{RequestLog, Served};

const SECRET: &str = "3f0c5e9a-7b21-4d8e-a6f4-19c2d0b7e5aa";
const PORTAL: u64 = 62515;

#[test]
fn signatures_match_the_published_vectors() {
    // RFC 4231 case 6: a key longer than the block is hashed first.
    let long_key = [0xaa_u8; 131];
    let mac = hmac_sha256(
        &long_key,
        b"Test Using Larger Than Block-Size Key - Hash Key First",
    );
    let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
    // WEBHOOKS.md §6 A6 (v3) and A1 (v1).
    let a_secret = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy";
    let a6 = signature_v3(
        "POST",
        "https://www.example.com/webhook_uri",
        b"{'example_field':'example_value'}",
        "1693657560000",
        a_secret,
    );
    assert_eq!(a6, "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y=");
    let a1_body = concat!(
        r#"[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,"#,
        r#""subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"#,
        r#""changeSource":"CRM","changeFlag":"NEW","appId":54321}]"#
    );
    assert_eq!(
        signature_v1(a1_body.as_bytes(), a_secret),
        "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"
    );
    // WEBHOOKS.md §6 B, with the no-query variant: the escapes are decoded before signing.
    let b_body = concat!(
        r#"[{"eventId":4218806431,"subscriptionId":2712345,"portalId":62515,"appId":54321,"#,
        r#""occurredAt":1735689598123,"subscriptionType":"deal.propertyChange","attemptNumber":0,"#,
        r#""objectId":9876543210,"propertyName":"dealstage","propertyValue":"closedwon","#,
        r#""changeSource":"CRM_UI","sourceId":"userId:1234567"},"#,
        r#"{"eventId":4218806432,"subscriptionId":2712399,"portalId":62515,"appId":54321,"#,
        r#""occurredAt":1735689598456,"subscriptionType":"object.propertyChange","#,
        r#""objectTypeId":"0-1","attemptNumber":0,"objectId":512,"propertyName":"email","#,
        r#""propertyValue":"ada@example.com","changeSource":"INTEGRATION","sourceId":"54321"}]"#
    );
    let b = |uri: &str| signature_v3("POST", uri, b_body.as_bytes(), "1735689600000", SECRET);
    assert_eq!(
        b("https://hooks.example.com/hubspot/webhooks?tenant=acme%3Aeu&redirect=%2Fdone"),
        "9z9C3CNNsbvw7xWC2i8XKiMBqBT4MxFMTKpcF7BtE4s="
    );
    assert_eq!(
        b("https://hooks.example.com/hubspot/webhooks"),
        "0VUPSrSZwGTvZIJSN0NWfJMp4VwV525Eri5UQH0srVM="
    );
}

#[test]
fn builders_make_hubspot_shaped_items() {
    let first = deal_property_change(PORTAL, APP_ID, 77, "dealstage", "closedwon", Some("54321"));
    let second = deal_property_change(PORTAL, APP_ID, 77, "dealstage", "open", Some("userId:9"));
    assert_eq!(first["subscriptionType"], "deal.propertyChange");
    assert_eq!(first["portalId"], PORTAL);
    assert_eq!(first["appId"], APP_ID);
    assert_eq!(first["objectId"], 77);
    assert_eq!(first["propertyName"], "dealstage");
    assert_eq!(first["propertyValue"], "closedwon");
    assert_eq!(first["attemptNumber"], 0);
    assert_eq!(first["changeSource"], "INTEGRATION");
    assert_eq!(first["sourceId"], "54321");
    assert_eq!(second["changeSource"], "CRM_UI");
    assert_ne!(first["eventId"], second["eventId"]);
    assert_eq!(first["subscriptionId"], second["subscriptionId"]);
    assert!((now_ms() - first["occurredAt"].as_i64().unwrap()).abs() < 60_000);

    let created = object_creation(PORTAL, APP_ID, "0-3", 78);
    assert_eq!(created["subscriptionType"], "object.creation");
    assert_eq!(created["objectTypeId"], "0-3");
    assert_eq!(created["changeFlag"], "CREATED");
    let contact = contact_creation(PORTAL, APP_ID, 79);
    assert_eq!(contact["subscriptionType"], "contact.creation");
    assert_ne!(contact["subscriptionId"], created["subscriptionId"]);
    let gone = deletion(PORTAL, APP_ID, "contact", 79);
    assert_eq!(gone["subscriptionType"], "contact.deletion");
    assert_eq!(gone["changeFlag"], "DELETED");
    assert!(gone.get("propertyName").is_none());
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> &'a str {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// What a receiver does, written apart from the sender: rebuild the URL HubSpot called from
/// the request, decode the twelve escapes, recompute both signatures and check the age.
fn genuine(req: &HttpRequest, body: &[u8]) -> bool {
    let mut uri = format!("http://{}{}", header(req, "host"), req.uri());
    for (escape, c) in [
        ("%3A", ":"),
        ("%2F", "/"),
        ("%3F", "?"),
        ("%40", "@"),
        ("%21", "!"),
        ("%24", "$"),
        ("%27", "'"),
        ("%28", "("),
        ("%29", ")"),
        ("%2A", "*"),
        ("%2C", ","),
        ("%3B", ";"),
    ] {
        uri = uri.replace(escape, c).replace(&escape.to_lowercase(), c);
    }
    let timestamp = header(req, "x-hubspot-request-timestamp");
    let mut message = format!("{}{uri}", req.method()).into_bytes();
    message.extend_from_slice(body);
    message.extend_from_slice(timestamp.as_bytes());
    let v3 = STANDARD.encode(hmac_sha256(SECRET.as_bytes(), &message));
    let v1: String = Sha256::digest([SECRET.as_bytes(), body].concat())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let fresh = timestamp
        .parse::<i64>()
        .is_ok_and(|ts| (now_ms() - ts).abs() <= 300_000);
    header(req, "x-hubspot-signature-v3") == v3
        && header(req, "x-hubspot-signature") == v1
        && header(req, "x-hubspot-signature-version") == "v1"
        && header(req, "content-type") == "application/json"
        && fresh
}

fn items(n: u64) -> Vec<Value> {
    (0..n)
        .map(|i| deal_property_change(PORTAL, APP_ID, 1000 + i, "amount", &i.to_string(), None))
        .collect()
}

#[tokio::test]
async fn batches_of_100_are_signed_over_the_url_called() {
    let log = RequestLog::default();
    let served = Served::answering(log.clone(), |req, body| {
        if genuine(req, body) {
            HttpResponse::NoContent().finish()
        } else {
            HttpResponse::Unauthorized().body("bad signature")
        }
    });
    let url = format!(
        "{}/hubspot/webhooks?tenant=acme%3Aeu&next=%2Fdone&q=a%20b",
        served.base_url
    );
    let sender = WebhookSender::new(&url, SECRET).retries(0);
    assert!(sender.send(&items(150)).await);

    let attempts = sender.attempts();
    assert_eq!(attempts.len(), 2);
    let sizes: Vec<usize> = attempts
        .iter()
        .map(|a| serde_json::from_str::<Vec<Value>>(&a.body).unwrap().len())
        .collect();
    assert_eq!(sizes, [100, 50]);
    assert!(
        attempts
            .iter()
            .all(|a| a.status == Some(204) && a.attempt_number == 0)
    );
    assert_eq!((attempts[0].request, attempts[1].request), (0, 1));
    let received = log.all();
    assert_eq!(received.len(), 2);
    assert_eq!(
        received[0].path,
        "/hubspot/webhooks?tenant=acme%3Aeu&next=%2Fdone&q=a%20b"
    );
    assert_eq!(received[0].body, attempts[0].body);

    // Signed for another URL (a proxy's public one): the listener, which sees its own, refuses.
    let proxied = WebhookSender::new(&url, SECRET)
        .retries(0)
        .signed_as("https://hooks.example.com/h");
    assert!(!proxied.send(&items(1)).await);
    let refused = &proxied.attempts()[0];
    assert_eq!(
        (refused.status, refused.answer.as_deref()),
        (Some(401), Some("bad signature"))
    );
    let tampered = sender.headers(b"[]");
    let mut headers = tampered.clone();
    headers[0].1 = sender.signature(b"[1]", &tampered[1].1);
    let raw = sender.post_raw(b"[]", headers).await;
    assert_eq!((raw.status, raw.request), (Some(401), 2));
    assert!(sender.post_raw(b"[]", tampered).await.delivered());
    served.stop().await;
}

#[tokio::test]
async fn a_failed_request_is_retried_re_signed_with_the_next_attempt_number() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let served = Served::answering(RequestLog::default(), move |req, body| {
        if !genuine(req, body) {
            return HttpResponse::Unauthorized().finish();
        }
        match counter.fetch_add(1, Ordering::SeqCst) {
            0 => HttpResponse::InternalServerError().finish(),
            _ => HttpResponse::Ok().finish(),
        }
    });
    let sender = WebhookSender::new(&format!("{}/hooks", served.base_url), SECRET)
        .retries(3)
        .retry_delay(Duration::from_millis(20));
    let mut batch = items(1);
    let mut retried = contact_creation(PORTAL, APP_ID, 5);
    retried["attemptNumber"] = json!(2);
    batch.push(retried);
    assert!(sender.send(&batch).await);

    let attempts = sender.attempts();
    let outcomes: Vec<(u32, Option<u16>)> = attempts
        .iter()
        .map(|a| (a.attempt_number, a.status))
        .collect();
    assert_eq!(outcomes, [(0, Some(500)), (1, Some(200))]);
    let first: Vec<Value> = serde_json::from_str(&attempts[0].body).unwrap();
    let second: Vec<Value> = serde_json::from_str(&attempts[1].body).unwrap();
    assert_eq!(
        (
            first[0]["attemptNumber"].clone(),
            first[1]["attemptNumber"].clone()
        ),
        (json!(0), json!(2))
    );
    assert_eq!(
        (
            second[0]["attemptNumber"].clone(),
            second[1]["attemptNumber"].clone()
        ),
        (json!(1), json!(3))
    );
    assert_eq!(first[0]["eventId"], second[0]["eventId"]);
    assert_ne!(
        attempts[0].header(SIGNATURE_V3_HEADER),
        attempts[1].header(SIGNATURE_V3_HEADER)
    );
    assert!(attempts[1].at >= attempts[0].at + chrono::Duration::milliseconds(20));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    served.stop().await;
}

#[tokio::test]
async fn no_answer_in_time_or_no_connection_fails_until_retries_run_out() {
    let served = Served::start(|cfg| {
        cfg.default_service(web::to(|_body: Bytes| async {
            tokio::time::sleep(Duration::from_secs(2)).await;
            HttpResponse::Ok().finish()
        }));
    });
    let slow = WebhookSender::new(&served.base_url, SECRET)
        .retries(1)
        .retry_delay(Duration::from_millis(10))
        .timeout(Duration::from_millis(150));
    assert!(!slow.send(&items(1)).await);
    let attempts = slow.attempts();
    assert_eq!(attempts.len(), 2);
    for (n, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt.attempt_number, n as u32);
        assert_eq!(attempt.status, None);
        assert_eq!(attempt.error.as_deref(), Some("no answer within 150 ms"));
    }
    served.stop().await;

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let refused = WebhookSender::new(&format!("http://127.0.0.1:{port}/h"), SECRET)
        .retries(2)
        .retry_delay(Duration::ZERO);
    assert!(!refused.send(&items(1)).await);
    let attempts = refused.attempts();
    assert_eq!(attempts.len(), 3);
    assert!(attempts.iter().all(|a| {
        a.error
            .as_deref()
            .is_some_and(|e| e.contains("could not connect"))
    }));
}
