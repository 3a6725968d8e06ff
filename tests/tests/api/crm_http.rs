//! Seed 003's custom CRM: any REST API over HTTP, with templated method, path and body, an
//! HMAC-signed body, the answer of one step feeding the next, and a hung CRM that never holds a
//! worker.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tributary_fakes::Served;
use tributary_tests::{Pipeline, TestApp, charge_event, each_backend, wait_for};

/// What the custom CRM received: method, path, headers, body.
type Seen = Arc<Mutex<Vec<(String, String, Vec<(String, String)>, String)>>>;

/// A small REST CRM: creates customers and payments, is slow on `/slow`, and refuses a wrong
/// bearer token.
fn start_crm() -> (Served, Seen) {
    let seen: Seen = Arc::default();
    let state = seen.clone();
    let served = Served::start(move |cfg| {
        let state = state.clone();
        cfg.default_service(web::to(move |req: HttpRequest, body: Bytes| {
            let state = state.clone();
            async move {
                let headers = req
                    .headers()
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                    .collect();
                let text = String::from_utf8_lossy(&body).to_string();
                state.lock().unwrap().push((
                    req.method().to_string(),
                    req.uri().to_string(),
                    headers,
                    text,
                ));
                if req
                    .headers()
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    == Some("Bearer wrong")
                {
                    return HttpResponse::Unauthorized().json(json!({"error": "bad token"}));
                }
                let path = req.path().to_string();
                if path.starts_with("/slow") {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    return HttpResponse::Ok().json(json!({"id": "late"}));
                }
                if path == "/customers" {
                    return HttpResponse::Created().json(json!({"id": "cust_1", "tier": "gold"}));
                }
                if path.starts_with("/customers/cust_1/payments") {
                    return HttpResponse::Created().json(json!({"payment": {"ref": "pay_9"}}));
                }
                HttpResponse::NotFound().json(json!({"error": "no such path"}))
            }
        }));
    });
    (served, seen)
}

async fn connect(app: &TestApp, base_url: &str, auth: Value, settings: Value) -> Pipeline {
    let mut all = json!({"base_url": base_url});
    all.as_object_mut()
        .unwrap()
        .extend(settings.as_object().unwrap().clone());
    app.pipeline_with(json!({"name": "Our CRM", "provider": "http", "auth": auth, "settings": all}))
        .await
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn templated_requests_chain_and_carry_an_hmac_signature() {
    each_backend(|app| async move {
        let (crm, seen) = start_crm();
        let p = connect(
            &app,
            &crm.base_url,
            json!({"type": "hmac", "secret": "shared-secret", "header": "X-Signature"}),
            json!({"headers": {"X-Tenant": "acme"}}),
        )
        .await;
        let flow = json!({
            "name": "Custom CRM", "connection_id": p.connection_id,
            "trigger": {"events": ["charge.succeeded"]},
            "steps": [
                {"id": "customer", "action": "create", "object": "customers",
                 "fields": {"email": "{{ object.billing_details.email }}",
                            "amount": "{{ object.amount | major_units(object.currency) }}"}},
                {"id": "payment", "action": "create", "object": "payments", "method": "PUT",
                 "path": "/customers/{{ steps.customer.response.id }}/payments",
                 "fields": {"charge": "{{ object.id }}", "tier": "{{ steps.customer.response.tier }}"}}
            ]
        });
        let created = app.post("/v1/flows", &p.tenant.token, flow).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);

        let done = app
            .deliver(
                &p,
                &charge_event(
                    "evt_c1",
                    "ch_c1",
                    "c@example.com",
                    "Cy",
                    2500,
                    chrono::Utc::now().timestamp(),
                ),
            )
            .await;
        assert_eq!(done["status"], "processed", "{done}");
        assert_eq!(done["deliveries"][0]["crm_record_id"], "cust_1");

        let requests = seen.lock().unwrap().clone();
        assert_eq!(requests.len(), 2, "{requests:?}");
        let (method, path, headers, body) = &requests[0];
        assert_eq!((method.as_str(), path.as_str()), ("POST", "/customers"));
        assert_eq!(
            serde_json::from_str::<Value>(body).unwrap(),
            json!({"email": "c@example.com", "amount": 25.0})
        );
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"shared-secret").unwrap();
        mac.update(body.as_bytes());
        assert_eq!(
            header(headers, "x-signature"),
            Some(hex::encode(mac.finalize().into_bytes()).as_str()),
            "the signature covers the exact body"
        );
        assert_eq!(header(headers, "x-tenant"), Some("acme"));
        let (method, path, _, body) = &requests[1];
        assert_eq!(
            (method.as_str(), path.as_str()),
            ("PUT", "/customers/cust_1/payments")
        );
        assert_eq!(
            serde_json::from_str::<Value>(body).unwrap(),
            json!({"charge": "ch_c1", "tier": "gold"})
        );
    })
    .await;
}

#[tokio::test]
async fn a_hung_crm_times_out_and_is_retried_then_dead_lettered() {
    each_backend(|app| async move {
        let (crm, seen) = start_crm();
        let p = connect(
            &app,
            &crm.base_url,
            json!({"type": "token", "token": "good"}),
            json!({"timeout_seconds": 1}),
        )
        .await;
        let flow = json!({
            "name": "Slow", "connection_id": p.connection_id,
            "trigger": {"events": ["charge.succeeded"]},
            "steps": [{"id": "slow", "action": "create", "object": "slow", "fields": {"x": 1}}]
        });
        assert_eq!(
            app.post("/v1/flows", &p.tenant.token, flow).await.status,
            StatusCode::CREATED
        );
        let done = app
            .deliver(
                &p,
                &charge_event(
                    "evt_slow",
                    "ch_slow",
                    "s@example.com",
                    "S",
                    100,
                    chrono::Utc::now().timestamp(),
                ),
            )
            .await;
        assert_eq!(done["status"], "failed", "{done}");
        let d = &done["deliveries"][0];
        assert_eq!(d["error"]["kind"], "transient");
        assert_eq!(d["attempts"], 3, "the test retry budget");
        assert_eq!(d["status"], "dead");
        assert_eq!(d["reason"], "attempts_exhausted");
        assert!(
            d["error"]["message"]
                .as_str()
                .unwrap()
                .contains("no answer within 1 s"),
            "{d}"
        );
        assert_eq!(seen.lock().unwrap().len(), 3);
        assert_eq!(
            header(&seen.lock().unwrap()[0].2, "authorization"),
            Some("Bearer good")
        );
    })
    .await;
}

#[tokio::test]
async fn a_refused_token_waits_for_new_credentials() {
    each_backend(|app| async move {
        let (crm, _seen) = start_crm();
        let p = connect(
            &app,
            &crm.base_url,
            json!({"type": "token", "token": "wrong"}),
            json!({}),
        )
        .await;
        let flow = json!({
            "name": "Customers", "connection_id": p.connection_id,
            "trigger": {"events": ["charge.succeeded"]},
            "steps": [{"id": "customer", "action": "create", "object": "customers", "fields": {"x": 1}}]
        });
        assert_eq!(
            app.post("/v1/flows", &p.tenant.token, flow).await.status,
            StatusCode::CREATED
        );
        let sent = app
            .send_event(
                &p,
                &charge_event(
                    "evt_w",
                    "ch_w",
                    "w@example.com",
                    "W",
                    100,
                    chrono::Utc::now().timestamp(),
                ),
            )
            .await;
        let id = sent.str("/event_id");
        wait_for(10, "the delivery to wait", || async {
            let e = app.get(&format!("/v1/events/{id}"), &p.tenant.token).await;
            (e.body["deliveries"][0]["status"] == "waiting").then_some(())
        })
        .await;
        assert_eq!(app.connection(&p).await["status"], "needs_reauth");
        let fixed = app
            .patch(
                &format!("/v1/connections/{}", p.connection_id),
                &p.tenant.token,
                json!({"auth": {"type": "token", "token": "good"}}),
            )
            .await;
        assert_eq!(fixed.status, StatusCode::OK, "{}", fixed.text);
        let done = app.finished_event(&p.tenant.token, &id).await;
        assert_eq!(done["status"], "processed", "{done}");
    })
    .await;
}
