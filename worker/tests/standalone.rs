//! `cargo run -p worker` alone: against a database where an event was committed but never
//! queued (the api crashed after its commit), the worker's sweeper queues it and its
//! consumers run the tenant's flow into the sandbox CRM.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use entity::{connections, events, flows, sandbox_records, tenants};
use sea_orm::{ActiveValue::Set, DatabaseConnection, EntityTrait};
use serde_json::json;
use tributary_tests::TestDatabase;
use tributary_worker::{db, new_id, now};

#[tokio::test]
async fn the_worker_binary_sweeps_and_processes_a_stranded_event() {
    for backend in tributary_tests::backends() {
        let dir = tempfile::tempdir().unwrap();
        let database = TestDatabase::create(backend, dir.path()).await;
        sweeps_and_processes(&database, dir.path()).await;
        database.drop_now().await;
    }
}

async fn sweeps_and_processes(database: &TestDatabase, dir: &std::path::Path) {
    let url = database.url.clone();
    let conn = db::connect(&url).await.unwrap();
    db::migrate(&conn).await.unwrap();
    let tenant_id = seed_stranded_event(&conn).await;

    let probe = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let log_path = dir.join("worker.log");
    let mut worker = spawn_worker(database, dir, probe, &log_path);

    let record = wait_for_a_record(&conn).await;
    let probes = read_probes(&format!("http://{probe}")).await;
    let _ = worker.kill();
    let _ = worker.wait();
    let record = record.expect("the worker processed the stranded event");

    // Its own probes and metrics: ready, nothing left waiting, its delivery counted.
    let (live, ready, metrics) = probes;
    assert_eq!(live, 200);
    assert_eq!(ready, 200);
    assert!(
        metrics.contains(r#"tributary_deliveries_total{provider="sandbox",status="succeeded"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains("tributary_queue_depth 0"), "{metrics}");

    assert_run_logged(&std::fs::read_to_string(&log_path).unwrap(), &tenant_id);
    let fields: serde_json::Value = serde_json::from_str(&record.fields).unwrap();
    assert_eq!(fields, json!({"email": "ada@example.com", "name": "Ada"}));
    let event = events::Entity::find().one(&conn).await.unwrap().unwrap();
    assert_eq!(event.status, "processed");
}

/// Inserts a tenant, its sandbox flow and an event never queued; returns the tenant's id.
async fn seed_stranded_event(conn: &DatabaseConnection) -> String {
    let at = now();
    let tenant_id = new_id();
    tenants::Entity::insert(tenants::ActiveModel {
        id: Set(tenant_id.clone()),
        name: Set("Standalone".into()),
        parent_id: Set(None),
        environment: Set(tributary_worker::PRODUCTION.into()),
        mixed_modes: Set(false),
        anomaly_sensitivity: Set(None),
        created_at: Set(at),
        updated_at: Set(at),
    })
    .exec(conn)
    .await
    .unwrap();
    let connection_id = insert_sandbox_connection(conn, &tenant_id, at).await;
    insert_contacts_flow(conn, &tenant_id, &connection_id, at).await;
    let payload = json!({"id": "evt_standalone", "object": "event", "type": "customer.created", "created": 1_700_000_000,
        "livemode": false, "data": {"object": {"id": "cus_1", "object": "customer", "email": "ada@example.com", "name": "Ada"}}});
    events::Entity::insert(events::ActiveModel {
        id: Set(new_id()),
        tenant_id: Set(tenant_id.clone()),
        stripe_account_id: Set("acct".into()),
        stripe_event_id: Set("evt_standalone".into()),
        event_type: Set("customer.created".into()),
        stripe_object_id: Set(Some("cus_1".into())),
        livemode: Set(false),
        api_version: Set(None),
        event_created: Set(1_700_000_000),
        payload: Set(payload.to_string()),
        status: Set("received".into()),
        runs: Set(0),
        next_run_at: Set(None),
        last_error: Set(None),
        received_at: Set(at - chrono::Duration::seconds(5)),
        queued_at: Set(None),
        processed_at: Set(None),
        updated_at: Set(at),
        redacted_at: Set(None),
        source: Set("stripe".into()),
        priority: Set(tributary_worker::queue::priority::LIVE),
    })
    .exec(conn)
    .await
    .unwrap();
    tenant_id
}

/// Inserts an active sandbox connection of the tenant; returns its id.
async fn insert_sandbox_connection(
    conn: &DatabaseConnection,
    tenant_id: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> String {
    let connection_id = new_id();
    connections::Entity::insert(connections::ActiveModel {
        id: Set(connection_id.clone()),
        tenant_id: Set(tenant_id.to_string()),
        name: Set("Sandbox".into()),
        provider: Set("sandbox".into()),
        auth_type: Set("none".into()),
        credentials: Set(None),
        settings: Set("{}".into()),
        status: Set("active".into()),
        status_reason: Set(None),
        paused_until: Set(None),
        session: Set(None),
        refresh_lease_until: Set(None),
        vendor_info: Set("{}".into()),
        inbound_token: Set(None),
        vendor_account: Set(None),
        created_at: Set(at),
        updated_at: Set(at),
    })
    .exec(conn)
    .await
    .unwrap();
    connection_id
}

/// Inserts an enabled flow upserting a contact for every `customer.created` event.
async fn insert_contacts_flow(
    conn: &DatabaseConnection,
    tenant_id: &str,
    connection_id: &str,
    at: chrono::DateTime<chrono::Utc>,
) {
    let spec = json!({"name": "contacts", "connection_id": connection_id, "enabled": true,
        "trigger": {"events": ["customer.created"]},
        "steps": [{"id": "contact", "action": "upsert", "object": "contacts",
                   "match": {"email": "{{ object.email }}"}, "fields": {"name": "{{ object.name }}"}}]});
    let spec = tributary_worker::flow::parse_flow(&spec).expect("a valid flow");
    flows::Entity::insert(flows::ActiveModel {
        id: Set(new_id()),
        tenant_id: Set(tenant_id.to_string()),
        name: Set(spec.name.clone()),
        connection_id: Set(connection_id.to_string()),
        enabled: Set(true),
        version: Set(1),
        spec: Set(serde_json::to_string(&spec).unwrap()),
        created_at: Set(at),
        updated_at: Set(at),
    })
    .exec(conn)
    .await
    .unwrap();
}

/// Starts the worker binary with JSON logs to `log_path` and its probes on `probe`.
fn spawn_worker(
    database: &TestDatabase,
    dir: &std::path::Path,
    probe: std::net::SocketAddr,
    log_path: &std::path::Path,
) -> Child {
    Command::new(env!("CARGO_BIN_EXE_worker"))
        .env_clear()
        .current_dir(dir)
        .envs(database.env())
        .env("TRIBUTARY_VENDOR_URLS", "any")
        .env("TRIBUTARY_SWEEP_INTERVAL", "200ms")
        .env("TRIBUTARY_SWEEP_GRACE", "1s")
        .env("TRIBUTARY_WORKER_CONCURRENCY", "2")
        .env("TRIBUTARY_WORKER_LISTEN", probe.to_string())
        .env("TRIBUTARY_LOG_FORMAT", "json")
        .stdout(std::fs::File::create(log_path).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("the worker binary starts")
}

/// Waits up to 30 s for the first sandbox record; `None` if none appears.
async fn wait_for_a_record(conn: &DatabaseConnection) -> Option<sandbox_records::Model> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let records = sandbox_records::Entity::find().all(conn).await.unwrap();
        if let Some(record) = records.into_iter().next() {
            break Some(record);
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Checks the run's JSON log: the settled event's tenant and id, the unsafe opt-in warned.
fn assert_run_logged(logs: &str, tenant_id: &str) {
    // JSON log lines of the run carry the tenant and the event.
    let settled = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["message"] == "event settled")
        .unwrap_or_else(|| panic!("an 'event settled' line in:\n{logs}"));
    assert_eq!(settled["span"]["tenant_id"], tenant_id, "{settled}");
    assert!(settled["span"]["event_id"].is_string(), "{settled}");
    // The development opt-in of this run is announced as unsafe.
    assert!(
        logs.lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .any(|line| line["level"] == "WARN"
                && line["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("TRIBUTARY_VENDOR_URLS=any is unsafe"))),
        "{logs}"
    );
}

/// `/healthz`, `/readyz` and `/metrics` of a running worker, once its delivery is counted.
async fn read_probes(base: &str) -> (u16, u16, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let get = |path: &str| client.get(format!("{base}{path}")).send();
        if let (Ok(live), Ok(ready), Ok(metrics)) = (
            get("/healthz").await,
            get("/readyz").await,
            get("/metrics").await,
        ) {
            let text = metrics.text().await.unwrap_or_default();
            if text.contains("status=\"succeeded\"") || Instant::now() > deadline {
                return (live.status().as_u16(), ready.status().as_u16(), text);
            }
        } else if Instant::now() > deadline {
            panic!("the worker's probe listener on {base} does not answer");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn a_bad_setting_stops_the_worker_naming_it() {
    let output = Command::new(env!("CARGO_BIN_EXE_worker"))
        .env_clear()
        .env("TRIBUTARY_WORKER_CONCURRENCY", "lots")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("TRIBUTARY_WORKER_CONCURRENCY"));
}
