//! The fake CRM: records the first and every later arrival of each event's record.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

#[derive(Default)]
pub struct Arrivals {
    /// event id → (first arrival, how many times it arrived)
    pub seen: Mutex<HashMap<String, (Instant, u32)>>,
    pub total: AtomicU64,
}

pub async fn start_crm(arrivals: Arc<Arrivals>) -> (String, actix_web::dev::ServerHandle) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let server = HttpServer::new(move || {
        let arrivals = arrivals.clone();
        App::new().route(
            "/contacts",
            web::post().to(move |body: web::Json<Value>| {
                let arrivals = arrivals.clone();
                async move {
                    let now = Instant::now();
                    let event = body["stripe_event"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    let n = arrivals.total.fetch_add(1, Ordering::Relaxed);
                    arrivals
                        .seen
                        .lock()
                        .unwrap()
                        .entry(event)
                        .and_modify(|(_, count)| *count += 1)
                        .or_insert((now, 1));
                    HttpResponse::Created().json(json!({"id": format!("c_{n}")}))
                }
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    (format!("http://{address}"), handle)
}
