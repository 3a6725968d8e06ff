//! Delivery history: every attempt of a delivery is kept (time, duration, request summary,
//! vendor status, error, an excerpt of the answer) with the connection's credentials taken out,
//! shown by `GET /v1/deliveries/{id}` and in the event's view; a retry adds to it; a delivery
//! keeps its latest 50; retention and erasure take attempts with their deliveries.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use entity::{deliveries, delivery_attempts, events};
use reqwest::StatusCode;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use tributary_fakes::Served;
use tributary_tests::{Pipeline, TestApp, charge_event, each_backend, each_backend_with, wait_for};

/// A credential that looks like one; the fake CRM echoes it back in its error bodies.
const TOKEN: &str = "tok_live_9f8e7d6c5b4a39281706SECRET";

/// A CRM that answers from a script: each `(status, delay)` in turn, then `then` for good.
/// Errors echo the `Authorization` header and the body they were sent, as careless APIs do.
#[derive(Clone, Default)]
struct Script {
    answers: Arc<Mutex<VecDeque<(u16, u64)>>>,
    then: Arc<Mutex<u16>>,
    calls: Arc<AtomicUsize>,
    authorization: Arc<Mutex<Option<String>>>,
}

impl Script {
    fn start(answers: &[(u16, u64)], then: u16) -> (Served, Script) {
        let script = Script::default();
        script
            .answers
            .lock()
            .unwrap()
            .extend(answers.iter().copied());
        *script.then.lock().unwrap() = then;
        let state = script.clone();
        let served = Served::start(move |cfg| {
            let state = state.clone();
            cfg.default_service(web::to(move |req: HttpRequest, body: Bytes| {
                let state = state.clone();
                async move {
                    let call = state.calls.fetch_add(1, Ordering::SeqCst) + 1;
                    let authorization = req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    *state.authorization.lock().unwrap() = authorization.clone();
                    let next = state.answers.lock().unwrap().pop_front();
                    let (status, delay) = next.unwrap_or((*state.then.lock().unwrap(), 0));
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    let status = actix_web::http::StatusCode::from_u16(status).unwrap();
                    if status.is_success() {
                        return HttpResponse::build(status)
                            .json(json!({"id": format!("cust_{call}")}));
                    }
                    HttpResponse::build(status).json(json!({
                        "error": "boom",
                        "authorization": authorization,
                        "received": String::from_utf8_lossy(&body),
                    }))
                }
            }));
        });
        (served, script)
    }

    fn answer_from_now_on(&self, status: u16) {
        *self.then.lock().unwrap() = status;
    }
}

/// A tenant whose `charge.succeeded` events create a customer in the scripted CRM.
async fn wired(app: &TestApp, crm: &Served) -> Pipeline {
    let p = app
        .pipeline_with(json!({"name": "Flaky CRM", "provider": "http",
            "auth": {"type": "token", "token": TOKEN},
            "settings": {"base_url": crm.base_url}}))
        .await;
    let flow = json!({
        "name": "Customers", "connection_id": p.connection_id,
        "trigger": {"events": ["charge.succeeded"]},
        "steps": [{"id": "customer", "action": "create", "object": "customers",
                   "fields": {"email": "{{ object.billing_details.email }}",
                              "amount": "{{ object.amount }}"}}]
    });
    let created = app.post("/v1/flows", &p.tenant.token, flow).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    p
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Sends a charge for `email` and returns the event's id.
async fn charge(app: &TestApp, p: &Pipeline, name: &str, email: &str) -> String {
    let sent = app
        .send_event(
            p,
            &charge_event(
                &format!("evt_{name}"),
                &format!("ch_{name}"),
                email,
                "Ada L",
                1200,
                now(),
            ),
        )
        .await;
    assert_eq!(sent.status, StatusCode::OK, "{}", sent.text);
    sent.str("/event_id")
}

/// The id of the event's one delivery.
async fn delivery_of(app: &TestApp, token: &str, event_id: &str) -> String {
    let listed = app
        .get(&format!("/v1/deliveries?event_id={event_id}"), token)
        .await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    assert_eq!(
        listed.body["data"].as_array().unwrap().len(),
        1,
        "{}",
        listed.text
    );
    listed.str("/data/0/id")
}

fn column(history: &Value, pointer: &str) -> Vec<Value> {
    history
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.pointer(pointer).cloned().unwrap_or(Value::Null))
        .collect()
}

/// Every attempt row of a delivery, as stored.
async fn stored_attempts(app: &TestApp, delivery_id: &str) -> Vec<delivery_attempts::Model> {
    delivery_attempts::Entity::find()
        .filter(delivery_attempts::Column::DeliveryId.eq(delivery_id))
        .all(&app.db)
        .await
        .unwrap()
}

#[tokio::test]
async fn every_attempt_is_kept_with_its_status_and_duration_and_no_credential() {
    each_backend(|app| async move {
        let (crm, script) = Script::start(&[(500, 0), (500, 150)], 201);
        let p = wired(&app, &crm).await;
        let token = &p.tenant.token;
        let event_id = charge(&app, &p, "flaky", "ada@example.com").await;
        let done = app.finished_event(token, &event_id).await;
        assert_eq!(done["status"], "processed", "{done}");
        assert_eq!(script.calls.load(Ordering::SeqCst), 3);
        assert_eq!(
            script.authorization.lock().unwrap().as_deref(),
            Some(format!("Bearer {TOKEN}").as_str()),
            "the CRM was sent the token (and echoed it in its errors)"
        );

        let id = delivery_of(&app, token, &event_id).await;
        let reply = app.get(&format!("/v1/deliveries/{id}"), token).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        let delivery = &reply.body;
        assert_eq!(delivery["status"], "succeeded");
        assert_eq!(
            delivery["attempts"], 3,
            "the delivery's own fields are unchanged"
        );
        assert!(delivery["error"].is_null(), "{delivery}");
        let history = &delivery["history"];
        assert_eq!(column(history, "/attempt"), [json!(1), json!(2), json!(3)]);
        assert_eq!(
            column(history, "/outcome"),
            [json!("retrying"), json!("retrying"), json!("succeeded")]
        );
        assert_eq!(
            column(history, "/vendor_status"),
            [json!(500), json!(500), json!(201)]
        );
        assert_eq!(
            column(history, "/error/kind"),
            [json!("transient"), json!("transient"), Value::Null]
        );
        let host = crm.base_url.trim_start_matches("http://");
        for request in column(history, "/request") {
            assert_eq!(
                request,
                json!(format!("POST {host}/customers")),
                "{history}"
            );
        }
        let durations: Vec<i64> = column(history, "/duration_ms")
            .iter()
            .map(|d| d.as_i64().unwrap())
            .collect();
        assert!(durations.iter().all(|d| *d >= 0), "{durations:?}");
        assert!(
            durations[1] >= 150,
            "the slow answer took its time: {durations:?}"
        );
        let started: Vec<chrono::DateTime<chrono::Utc>> = column(history, "/started_at")
            .iter()
            .map(|t| t.as_str().unwrap().parse().unwrap())
            .collect();
        assert!(started.windows(2).all(|w| w[0] < w[1]), "{started:?}");

        // The echoed credential is redacted; what else the CRM said is kept.
        let first = history[0]["response_excerpt"].as_str().unwrap();
        assert!(
            first.contains("boom") && first.contains("[credential]"),
            "{first}"
        );
        assert!(first.contains("ada@example.com"), "{first}");
        assert!(
            history[2]["response_excerpt"]
                .as_str()
                .unwrap()
                .contains("cust_3"),
            "{history}"
        );
        assert!(!reply.text.contains(TOKEN), "{}", reply.text);

        // The event's view carries the same history; the list stays light.
        let event = app.get(&format!("/v1/events/{event_id}"), token).await;
        assert_eq!(
            event.body["deliveries"][0]["history"], *history,
            "{}",
            event.text
        );
        assert!(!event.text.contains(TOKEN));
        let listed = app
            .get(&format!("/v1/deliveries?event_id={event_id}"), token)
            .await;
        assert!(
            listed.body["data"][0].get("history").is_none(),
            "{}",
            listed.text
        );

        // Nor is the credential anywhere in what was stored.
        for attempt in stored_attempts(&app, &id).await {
            assert!(!format!("{attempt:?}").contains(TOKEN), "{attempt:?}");
        }
        let stored = deliveries::Entity::find_by_id(id.clone())
            .one(&app.db)
            .await
            .unwrap()
            .unwrap();
        assert!(!format!("{stored:?}").contains(TOKEN));
    })
    .await;
}

#[tokio::test]
async fn a_retried_dead_letter_keeps_its_history_and_adds_the_new_attempt() {
    each_backend(|app| async move {
        let (crm, script) = Script::start(&[], 400);
        let p = wired(&app, &crm).await;
        let token = &p.tenant.token;
        let event_id = charge(&app, &p, "refused", "bo@example.com").await;
        let done = app.finished_event(token, &event_id).await;
        assert_eq!(done["status"], "failed", "{done}");
        let id = delivery_of(&app, token, &event_id).await;

        let dead = app.get(&format!("/v1/deliveries/{id}"), token).await;
        assert_eq!(dead.body["status"], "dead", "{}", dead.text);
        let history = &dead.body["history"];
        assert_eq!(history.as_array().unwrap().len(), 1, "{history}");
        assert_eq!(history[0]["outcome"], "dead");
        assert_eq!(history[0]["vendor_status"], 400);
        assert_eq!(history[0]["error"]["kind"], "invalid");
        assert_eq!(history[0]["reason"], "not_retryable");

        // Another tenant sees neither the delivery nor a way to retry it.
        let other = app.signup("Other").await;
        app.get(&format!("/v1/deliveries/{id}"), &other.token)
            .await
            .assert_problem(StatusCode::NOT_FOUND);
        app.post(
            &format!("/v1/deliveries/{id}/retry"),
            &other.token,
            json!({}),
        )
        .await
        .assert_problem(StatusCode::NOT_FOUND);
        app.get("/v1/deliveries/no-such-delivery", token)
            .await
            .assert_problem(StatusCode::NOT_FOUND);

        // The CRM is fixed; the retry is accepted and its attempt joins the history.
        script.answer_from_now_on(201);
        let retry = app
            .post(&format!("/v1/deliveries/{id}/retry"), token, json!({}))
            .await;
        assert_eq!(retry.status, StatusCode::ACCEPTED, "{}", retry.text);
        assert_eq!(retry.body["event_id"], event_id.as_str());
        let done = app.finished_event(token, &event_id).await;
        assert_eq!(done["status"], "processed", "{done}");
        let after = app.get(&format!("/v1/deliveries/{id}"), token).await;
        assert_eq!(after.body["status"], "succeeded", "{}", after.text);
        assert_eq!(
            after.body["attempts"], 1,
            "a retry starts a fresh set of attempts"
        );
        let history = &after.body["history"];
        assert_eq!(
            column(history, "/attempt"),
            [json!(1), json!(2)],
            "{history}"
        );
        assert_eq!(
            column(history, "/outcome"),
            [json!("dead"), json!("succeeded")]
        );
        assert_eq!(column(history, "/vendor_status"), [json!(400), json!(201)]);
        assert_eq!(
            history[0], dead.body["history"][0],
            "the dead attempt is unchanged"
        );
    })
    .await;
}

#[tokio::test]
async fn a_delivery_keeps_only_its_latest_fifty_attempts() {
    let vars = [
        ("TRIBUTARY_RETRY_MAX_ATTEMPTS", "55"),
        ("TRIBUTARY_RETRY_BASE_DELAY", "1ms"),
        ("TRIBUTARY_RETRY_MAX_DELAY", "5ms"),
    ];
    each_backend_with(&vars, |app| async move {
        let (crm, script) = Script::start(&[], 503);
        let p = wired(&app, &crm).await;
        let token = &p.tenant.token;
        let event_id = charge(&app, &p, "forever", "cy@example.com").await;
        wait_for(90, "55 attempts and a dead letter", || async {
            let event = app.get(&format!("/v1/events/{event_id}"), token).await;
            (event.body["status"] == "failed").then_some(())
        })
        .await;
        assert_eq!(script.calls.load(Ordering::SeqCst), 55);
        let id = delivery_of(&app, token, &event_id).await;

        let reply = app.get(&format!("/v1/deliveries/{id}"), token).await;
        assert_eq!(reply.body["attempts"], 55, "{}", reply.text);
        let history = &reply.body["history"];
        let numbers: Vec<i64> = column(history, "/attempt")
            .iter()
            .map(|n| n.as_i64().unwrap())
            .collect();
        assert_eq!(
            numbers,
            (6..=55).collect::<Vec<_>>(),
            "the latest 50, oldest first"
        );
        let outcomes = column(history, "/outcome");
        assert_eq!(outcomes[49], "dead");
        assert!(
            outcomes[..49].iter().all(|o| o == "retrying"),
            "{outcomes:?}"
        );
        assert_eq!(
            stored_attempts(&app, &id).await.len(),
            50,
            "older attempts are deleted, not just hidden"
        );

        // An event's view shows each delivery's latest 10.
        let event = app.get(&format!("/v1/events/{event_id}"), token).await;
        let numbers: Vec<i64> = column(&event.body["deliveries"][0]["history"], "/attempt")
            .iter()
            .map(|n| n.as_i64().unwrap())
            .collect();
        assert_eq!(numbers, (46..=55).collect::<Vec<_>>(), "{}", event.text);
    })
    .await;
}

#[tokio::test]
async fn attempts_go_with_their_event_when_retention_prunes_it() {
    let vars = [
        ("TRIBUTARY_RETENTION", "30days"),
        ("TRIBUTARY_RETENTION_INTERVAL", "200ms"),
    ];
    each_backend_with(&vars, |app| async move {
        let (crm, _script) = Script::start(&[(500, 0)], 201);
        let p = wired(&app, &crm).await;
        let token = &p.tenant.token;
        let event_id = charge(&app, &p, "old", "di@example.com").await;
        let done = app.finished_event(token, &event_id).await;
        assert_eq!(done["status"], "processed", "{done}");
        let id = delivery_of(&app, token, &event_id).await;
        assert_eq!(stored_attempts(&app, &id).await.len(), 2);

        events::Entity::update_many()
            .set(events::ActiveModel {
                received_at: Set(chrono::Utc::now() - chrono::Duration::days(40)),
                ..Default::default()
            })
            .filter(events::Column::Id.eq(event_id.as_str()))
            .exec(&app.db)
            .await
            .unwrap();
        wait_for(20, "the old event to be pruned", || async {
            let left = events::Entity::find_by_id(event_id.clone())
                .count(&app.db)
                .await
                .unwrap();
            (left == 0).then_some(())
        })
        .await;
        assert!(stored_attempts(&app, &id).await.is_empty());
        app.get(&format!("/v1/deliveries/{id}"), token)
            .await
            .assert_problem(StatusCode::NOT_FOUND);
    })
    .await;
}

#[tokio::test]
async fn an_erasure_clears_what_every_attempt_sent_and_received() {
    each_backend(|app| async move {
        let (crm, _script) = Script::start(&[(500, 0)], 201);
        let p = wired(&app, &crm).await;
        let token = &p.tenant.token;
        let email = "Erase.Me@Example.com";
        let lower = email.to_lowercase();
        let event_id = charge(&app, &p, "erase", email).await;
        let done = app.finished_event(token, &event_id).await;
        assert_eq!(done["status"], "processed", "{done}");
        let id = delivery_of(&app, token, &event_id).await;
        let before = app.get(&format!("/v1/deliveries/{id}"), token).await;
        assert!(
            before.body["history"][0]["response_excerpt"]
                .as_str()
                .unwrap()
                .contains(email),
            "the CRM echoed the address: {}",
            before.text
        );

        let erased = app
            .post("/v1/erasures", token, json!({"email": email}))
            .await;
        assert_eq!(erased.status, StatusCode::OK, "{}", erased.text);
        assert_eq!(erased.body["deliveries"], 1);

        let after = app.get(&format!("/v1/deliveries/{id}"), token).await;
        assert!(
            !after.text.to_lowercase().contains(&lower),
            "{}",
            after.text
        );
        let history = &after.body["history"];
        // When, how long and how it went stay; what was sent and answered goes.
        assert_eq!(
            column(history, "/attempt"),
            column(&before.body["history"], "/attempt")
        );
        assert_eq!(column(history, "/vendor_status"), [json!(500), json!(201)]);
        assert_eq!(
            column(history, "/outcome"),
            [json!("retrying"), json!("succeeded")]
        );
        assert_eq!(
            column(history, "/duration_ms"),
            column(&before.body["history"], "/duration_ms")
        );
        assert_eq!(history[0]["error"]["message"], "erased on request");
        assert_eq!(
            column(history, "/response_excerpt"),
            [Value::Null, Value::Null]
        );
        assert_eq!(column(history, "/request"), [Value::Null, Value::Null]);
        for attempt in stored_attempts(&app, &id).await {
            assert!(!format!("{attempt:?}").to_lowercase().contains(&lower));
        }
        let event = app.get(&format!("/v1/events/{event_id}"), token).await;
        assert!(
            !event.text.to_lowercase().contains(&lower),
            "{}",
            event.text
        );
    })
    .await;
}
