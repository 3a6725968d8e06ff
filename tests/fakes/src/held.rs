//! A CRM that holds every write until the test releases it, for proving what happens while a
//! vendor call is in flight: a retry asked for meanwhile, a process killed mid-call, a tenant
//! whose CRM hangs. It keeps the body of each write it received, in order.

use std::sync::{Arc, Mutex};

use actix_web::web::{self, Bytes};
use actix_web::{HttpResponse, http::StatusCode};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::Served;

pub struct HeldCrm {
    pub served: Served,
    received: Arc<Mutex<Vec<Value>>>,
    gate: Arc<Semaphore>,
}

impl HeldCrm {
    /// Starts a CRM that, once released, answers every write with `status` and
    /// `{"id": "rec_<charge>"}` (the body's `charge` field, as the tests' flows send it, or the
    /// write's number).
    pub fn start(status: u16) -> HeldCrm {
        let status = StatusCode::from_u16(status).expect("an HTTP status");
        let received: Arc<Mutex<Vec<Value>>> = Arc::default();
        let gate = Arc::new(Semaphore::new(0));
        let (log, held) = (received.clone(), gate.clone());
        let served = Served::start(move |cfg| {
            let (log, held) = (log.clone(), held.clone());
            cfg.default_service(web::to(move |body: Bytes| {
                let (log, held) = (log.clone(), held.clone());
                async move {
                    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let id = {
                        let mut log = log.lock().unwrap();
                        log.push(body.clone());
                        match body["charge"].as_str() {
                            Some(charge) => format!("rec_{charge}"),
                            None => format!("rec_{}", log.len()),
                        }
                    };
                    // Closed on release: every held and later write is answered.
                    let _ = held.acquire().await;
                    HttpResponse::build(status).json(json!({ "id": id }))
                }
            }));
        });
        HeldCrm {
            served,
            received,
            gate,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> &str {
        &self.served.base_url
    }

    /// How many writes it has received (held or answered).
    pub fn calls(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// The body of every write received, in order.
    pub fn received(&self) -> Vec<Value> {
        self.received.lock().unwrap().clone()
    }

    /// Answers every held write, and every later one at once.
    pub fn release(&self) {
        self.gate.close();
    }
}
