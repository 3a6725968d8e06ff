//! Unit tests of the fake Stripe, over HTTP: the helpers they share, and form parsing.

use chrono::Utc;
use serde_json::{Value, json};

use super::answer::redact;
use super::params::glob;
use super::*;

mod balance;
mod deliveries;
mod events;
mod requests;
mod resources;
mod writes;

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

async fn send(
    fake: &FakeStripe,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<&str>,
    idempotency_key: Option<&str>,
) -> Reply {
    let mut request = client()
        .request(method, format!("{}{path}", fake.base_url))
        .bearer_auth(key)
        .header("stripe-version", API_VERSION);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_string());
    }
    if let Some(k) = idempotency_key {
        request = request.header("idempotency-key", k);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap();
    Reply {
        status,
        headers,
        body,
    }
}

async fn get(fake: &FakeStripe, path: &str) -> Reply {
    send(fake, reqwest::Method::GET, path, SECRET_KEY, None, None).await
}

async fn post(fake: &FakeStripe, path: &str, body: &str) -> Reply {
    send(
        fake,
        reqwest::Method::POST,
        path,
        SECRET_KEY,
        Some(body),
        None,
    )
    .await
}

fn ids(reply: &Reply) -> Vec<String> {
    reply.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn bracket_notation_parses_to_a_tree() {
    let p = parse_form(
        "enabled_events[]=a&enabled_events[]=b&metadata[k]=v&expand[0]=customer&items[1][price]=p2&items[0][price]=p1&url=x",
    )
    .unwrap();
    assert_eq!(p["enabled_events"], json!(["a", "b"]));
    assert_eq!(p["metadata"], json!({"k": "v"}));
    assert_eq!(p["expand"], json!(["customer"]));
    assert_eq!(p["items"], json!([{"price": "p1"}, {"price": "p2"}]));
    assert_eq!(p["url"], json!("x"));
    assert!(glob("customer.*", "customer.subscription.created"));
    assert!(!glob("invoice.*", "customer.created"));
    assert_eq!(redact("sk_test_123456abcd"), "sk_test_****abcd");
}
