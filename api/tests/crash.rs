//! A process killed with SIGKILL mid-run loses nothing: after a restart every acknowledged
//! event is processed exactly once in the sandbox CRM. A process asked to stop with SIGTERM
//! finishes the CRM call in hand before it exits, and sends nothing twice after a restart. A
//! backfill from Stripe killed mid-way resumes where it stopped after a restart.

// The shared helpers live in `crash/`, not next to this file, so they are not built as a
// test crate of their own.
#[path = "crash/support.rs"]
mod support;

use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use support::{
    Running, add_webhook_account, charge_succeeded, create_flow, first_crm_call, free_port, get,
    on_every_backend, post_event, set_up_payments, sign_up, slow_crm, start, start_with,
};
use tributary_fakes::held::HeldCrm;
use tributary_tests::TestDatabase;

/// The webhook secret of the SIGKILL mid-run test.
const CRASH_SECRET: &str = "whsec_crash_test_secret_0001";

#[tokio::test]
async fn sigkill_mid_run_then_restart_processes_every_acknowledged_event_once() {
    on_every_backend(sigkill_mid_run).await;
}

async fn sigkill_mid_run(db: TestDatabase, dir: tempfile::TempDir) {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = start(&db, dir.path(), port);
    let client = reqwest::Client::new();
    let (token, connection_id, path) = set_up_deals(&client, &base).await;

    // A burst of events, acknowledged faster than the worker can finish them; then SIGKILL.
    let acknowledged = send_burst(&client, &base, &path).await;
    let unfinished = count_unfinished(&client, &base, &token).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        acknowledged.len(),
        200,
        "every event was acknowledged before the kill"
    );
    assert!(
        unfinished > 0,
        "the kill must come mid-run (every event was processed before it)"
    );

    let mut child = start(&db, dir.path(), port);
    let client = reqwest::Client::new();
    let records_url = format!("{base}/v1/connections/{connection_id}/records");
    let (deals, notes) = wait_for_records(
        &mut child,
        &client,
        &records_url,
        &token,
        acknowledged.len(),
    )
    .await;
    // Let any duplicate work surface before counting.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = child.kill();
    let _ = child.wait();

    for (name, records) in [("deals", &deals), ("notes", &notes)] {
        assert_each_charge_once(name, records, &acknowledged);
    }
}

/// Sets up a sandbox deals-and-notes flow and webhook; returns token, connection id, path.
async fn set_up_deals(client: &reqwest::Client, base: &str) -> (String, String, String) {
    let token = sign_up(client, base, "Crash", "crash@example.com").await;
    let connection = support::json(
        client,
        reqwest::Method::POST,
        format!("{base}/v1/connections"),
        &token,
        json!({"name": "S", "provider": "sandbox"}),
    )
    .await;
    let connection_id = connection["id"].as_str().unwrap().to_string();
    let flow = json!({"name": "deals", "connection_id": connection_id, "trigger": {"events": ["charge.succeeded"]},
        "steps": [{"id": "deal", "action": "upsert", "object": "deals", "match": {"charge": "{{ object.id }}"},
                   "fields": {"amount": "{{ object.amount | major_units(object.currency) }}"}},
                  {"id": "note", "action": "create", "object": "notes", "fields": {"charge": "{{ object.id }}", "deal": "{{ steps.deal.id }}"}}]});
    create_flow(client, base, &token, flow).await;
    let path = add_webhook_account(client, base, &token, CRASH_SECRET).await;
    (token, connection_id, path)
}

/// Sends 200 events, 16 at a time; returns the charges of those acknowledged with a 200.
async fn send_burst(client: &reqwest::Client, base: &str, path: &str) -> Vec<String> {
    let sends = (0..200).map(|i| {
        let client = client.clone();
        let url = format!("{base}{path}");
        async move {
            let event =
                charge_succeeded(format!("evt_crash_{i}"), &format!("ch_crash_{i}"), 100 + i);
            // A send that got no answer at all (a pooled connection the server had just
            // closed) is sent again, as Stripe sends again what it saw no answer to; an answer
            // other than 200 is final.
            let mut reply = post_event(&client, url.clone(), CRASH_SECRET, &event).await;
            for _ in 0..2 {
                if reply.is_ok() {
                    break;
                }
                reply = post_event(&client, url.clone(), CRASH_SECRET, &event).await;
            }
            match reply {
                Ok(r) if r.status() == 200 => Some(format!("ch_crash_{i}")),
                Ok(r) => {
                    eprintln!("charge {i} answered {}", r.status());
                    None
                }
                Err(e) => {
                    eprintln!("charge {i} got no answer: {e:?}");
                    None
                }
            }
        }
    });
    futures::stream::iter(sends)
        .buffer_unordered(16)
        .filter_map(|charge| async move { charge })
        .collect()
        .await
}

/// Counts the events not processed yet (received or queued), up to 100 of each.
async fn count_unfinished(client: &reqwest::Client, base: &str, token: &str) -> usize {
    let mut unfinished = 0;
    for status in ["received", "queued"] {
        let page = get(
            client,
            format!("{base}/v1/events?status={status}&limit=100"),
            token,
        )
        .await;
        unfinished += page["data"].as_array().map_or(0, Vec::len);
    }
    unfinished
}

/// Every sandbox record of `object`, page by page.
async fn all_records(
    client: &reqwest::Client,
    records_url: &str,
    token: &str,
    object: &str,
) -> Vec<Value> {
    let url = format!("{records_url}?object={object}&limit=100");
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page_url = match &after {
            Some(id) => format!("{url}&starting_after={id}"),
            None => url.clone(),
        };
        let page = get(client, page_url, token).await;
        let data = page["data"].as_array().cloned().unwrap_or_default();
        after = data
            .last()
            .and_then(|r| r["id"].as_str())
            .map(str::to_string);
        all.extend(data);
        if page["has_more"] != true {
            break all;
        }
    }
}

/// Waits up to 90 s until there are at least `expected` deals and notes; returns them.
async fn wait_for_records(
    child: &mut Child,
    client: &reqwest::Client,
    records_url: &str,
    token: &str,
    expected: usize,
) -> (Vec<Value>, Vec<Value>) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let deals = all_records(client, records_url, token, "deals").await;
        let notes = all_records(client, records_url, token, "notes").await;
        if deals.len() >= expected && notes.len() >= expected {
            break (deals, notes);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "after the restart only {} deals and {} notes of {} acknowledged events",
                deals.len(),
                notes.len(),
                expected
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Checks that no two `records` share a charge and that every acknowledged charge has one.
fn assert_each_charge_once(name: &str, records: &[Value], acknowledged: &[String]) {
    let mut charges: Vec<&str> = records
        .iter()
        .map(|r| r["fields"]["charge"].as_str().unwrap())
        .collect();
    charges.sort();
    let before = charges.len();
    charges.dedup();
    assert_eq!(before, charges.len(), "a {name} record was written twice");
    for charge in acknowledged {
        assert!(
            charges.contains(&charge.as_str()),
            "{charge} was acknowledged but has no {name} record"
        );
    }
}

#[tokio::test]
async fn sigkill_during_a_crm_write_loses_nothing_and_resends_it_only_after_its_lease() {
    on_every_backend(sigkill_during_a_write).await;
}

/// SIGKILL while the CRM holds a `create`: no acknowledged event is lost, and the write in
/// flight is sent again only once its lease (`timeout_seconds * 8 + 60 s`) has run out. That
/// second send is by design (README, "No duplicates": a `create` whose answer was lost in a
/// crash can be repeated); every other write reaches the CRM exactly once. The lease here is
/// 140 s, so once the restarted process has shown it leaves the delivery alone, the test moves
/// the lease's end into the past in the database, standing in for the wait.
async fn sigkill_during_a_write(db: TestDatabase, dir: tempfile::TempDir) {
    let crm = HeldCrm::start(201);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = Running(start(&db, dir.path(), port));
    let client = reqwest::Client::new();
    let token = sign_up(&client, &base, "Held", "held@example.com").await;
    let secret = "whsec_held_test_secret_0001";
    let path = set_up_payments(&client, &base, &token, "Held CRM", crm.base_url(), secret).await;
    let acknowledged = send_held_events(&client, &format!("{base}{path}"), secret).await;

    // The CRM holds a write, and the delivery reads as in flight under its lease: SIGKILL.
    let in_flight = first_crm_call(|| held_charges(&crm)).await;
    let held_event = acknowledged
        .iter()
        .find(|(charge, _)| *charge == in_flight)
        .map(|(_, id)| id.clone())
        .unwrap();
    let delivery_url = format!("{base}/v1/deliveries?event_id={held_event}");
    let delivery = get(&client, delivery_url, &token).await["data"][0].clone();
    assert_eq!(
        (&delivery["status"], &delivery["reason"]),
        (&json!("retrying"), &json!("in_flight")),
        "{delivery}"
    );
    child.stop();
    assert_eq!(held_charges(&crm), vec![in_flight.clone()]);

    // Restarted, with the CRM answering again: every other event is sent once, and the write
    // that was in flight is left alone while its lease lasts, though its event has run again.
    let mut child = Running(start(&db, dir.path(), port));
    let client = reqwest::Client::new();
    crm.release();
    let event_url = format!("{base}/v1/events/{held_event}");
    let held = wait_for_rerun(&client, &base, &event_url, &token, acknowledged.len()).await;
    let delivery_id = assert_left_alone_under_its_lease(&held, &crm, &acknowledged);

    // The lease runs out (moved into the past): the sweeper brings the event back and the
    // write is sent a second time, its only repeat, and the event is processed.
    end_the_lease(&db.url, &delivery_id, &held_event).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let done = loop {
        let event = get(&client, event_url.clone(), &token).await;
        if event["status"] == "processed" {
            break event;
        }
        assert!(Instant::now() < deadline, "the lease ended: {event}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    child.stop();
    crm.served.stop().await;
    assert_resent_only_in_flight(&done, &crm, &acknowledged, &in_flight);
}

/// The charges the held CRM received, in order.
fn held_charges(crm: &HeldCrm) -> Vec<String> {
    crm.received()
        .iter()
        .map(|body| body["charge"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Sends ten events one by one, each acknowledged; returns (charge, event id) pairs.
async fn send_held_events(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
) -> Vec<(String, String)> {
    let mut acknowledged = Vec::new();
    for i in 0..10 {
        let charge = format!("ch_held_{i}");
        let event = charge_succeeded(format!("evt_held_{i}"), &charge, 100);
        let reply = post_event(client, url.to_string(), secret, &event)
            .await
            .unwrap();
        assert_eq!(reply.status(), 200);
        let reply: Value = reply.json().await.unwrap();
        acknowledged.push((charge, reply["event_id"].as_str().unwrap().to_string()));
    }
    acknowledged
}

/// Waits up to 60 s until all events but one are processed and the held one has run again.
async fn wait_for_rerun(
    client: &reqwest::Client,
    base: &str,
    event_url: &str,
    token: &str,
    acknowledged: usize,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let processed = get(
            client,
            format!("{base}/v1/events?status=processed&limit=100"),
            token,
        )
        .await;
        let event = get(client, event_url.to_string(), token).await;
        if processed["data"].as_array().map_or(0, Vec::len) >= acknowledged - 1
            && event["runs"].as_i64() >= Some(1)
        {
            break event;
        }
        assert!(
            Instant::now() < deadline,
            "after the restart: {processed} {event}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Checks the held event waits under its lease, each write sent once; returns its delivery.
fn assert_left_alone_under_its_lease(
    held: &Value,
    crm: &HeldCrm,
    acknowledged: &[(String, String)],
) -> String {
    assert_eq!(held["status"], "queued", "{held}");
    let delivery = &held["deliveries"][0];
    assert_eq!(delivery["reason"], "in_flight", "{held}");
    let lease_end =
        chrono::DateTime::parse_from_rfc3339(delivery["next_attempt_at"].as_str().unwrap())
            .unwrap();
    assert!(
        lease_end > chrono::Utc::now() + chrono::Duration::seconds(60),
        "the lease is timeout_seconds * 8 + 60 s from the claim: {held}"
    );
    let mut sent = held_charges(crm);
    sent.sort();
    let mut each_once: Vec<String> = acknowledged.iter().map(|(c, _)| c.clone()).collect();
    each_once.sort();
    assert_eq!(
        sent, each_once,
        "each write once; the one in flight not yet again"
    );
    delivery["id"].as_str().unwrap().to_string()
}

/// Moves the end of the delivery's lease and the event's next run 10 s into the past.
async fn end_the_lease(db_url: &str, delivery_id: &str, event_id: &str) {
    use entity::{deliveries, events};
    use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};

    let conn = sea_orm::Database::connect(db_url).await.unwrap();
    let ended = chrono::Utc::now() - chrono::Duration::seconds(10);
    deliveries::Entity::update_many()
        .set(deliveries::ActiveModel {
            next_attempt_at: Set(Some(ended)),
            ..Default::default()
        })
        .filter(deliveries::Column::Id.eq(delivery_id))
        .exec(&conn)
        .await
        .unwrap();
    events::Entity::update_many()
        .set(events::ActiveModel {
            next_run_at: Set(Some(ended)),
            ..Default::default()
        })
        .filter(events::Column::Id.eq(event_id))
        .exec(&conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

/// Checks that the held write succeeded and that only it reached the CRM twice.
fn assert_resent_only_in_flight(
    done: &Value,
    crm: &HeldCrm,
    acknowledged: &[(String, String)],
    in_flight: &str,
) {
    assert_eq!(done["deliveries"][0]["status"], "succeeded", "{done}");
    assert_eq!(
        done["deliveries"][0]["crm_record_id"],
        format!("rec_{in_flight}")
    );
    let sent = held_charges(crm);
    for (charge, _) in acknowledged {
        let times = sent.iter().filter(|c| *c == charge).count();
        let expected = if *charge == in_flight { 2 } else { 1 };
        assert_eq!(times, expected, "{charge} reached the CRM: {sent:?}");
    }
}

#[tokio::test]
async fn sigterm_finishes_the_call_in_hand_and_nothing_is_sent_twice() {
    on_every_backend(sigterm_mid_call).await;
}

async fn sigterm_mid_call(db: TestDatabase, dir: tempfile::TempDir) {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let (crm_port, started, finished) = slow_crm();
    let mut child = start(&db, dir.path(), port);
    let client = reqwest::Client::new();
    let token = sign_up(&client, &base, "Term", "term@example.com").await;
    let secret = "whsec_term_test_secret_0001";
    let crm_url = format!("http://127.0.0.1:{crm_port}");
    let path = set_up_payments(&client, &base, &token, "Slow CRM", &crm_url, secret).await;
    let charges: Vec<String> = (0..3).map(|i| format!("ch_term_{i}")).collect();
    for (i, charge) in charges.iter().enumerate() {
        let event = charge_succeeded(format!("evt_term_{i}"), charge, 100);
        let reply = post_event(&client, format!("{base}{path}"), secret, &event)
            .await
            .unwrap();
        assert_eq!(reply.status(), 200);
    }

    // SIGTERM while the first call is in the CRM's hands.
    let in_hand = first_crm_call(|| started.lock().unwrap().clone()).await;
    let status = terminate(&mut child).await;
    assert!(status.success(), "a clean exit: {status}");
    assert!(
        finished.lock().unwrap().contains(&in_hand),
        "the call in hand was finished before the process exited"
    );

    // After a restart every event is sent, each exactly once.
    let mut child = start(&db, dir.path(), port);
    wait_all_processed(&mut child, &client, &base, &token, charges.len()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = child.kill();
    let _ = child.wait();
    let mut sent = started.lock().unwrap().clone();
    sent.sort();
    assert_eq!(sent, charges, "each charge reached the CRM exactly once");
}

/// Sends SIGTERM to `child` and waits up to 25 s for it to exit; returns its exit status.
async fn terminate(child: &mut Child) -> ExitStatus {
    let terminated = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(terminated.success());
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the api did not stop within the grace period"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits up to 60 s until exactly `count` events are processed, killing `child` on timeout.
async fn wait_all_processed(
    child: &mut Child,
    client: &reqwest::Client,
    base: &str,
    token: &str,
    count: usize,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let processed = get(
            client,
            format!("{base}/v1/events?status=processed&limit=100"),
            token,
        )
        .await;
        if processed["data"].as_array().map_or(0, Vec::len) == count {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("not every event was processed after the restart: {processed}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Enough pages (two events each) that the backfill is still running when it is seen
/// mid-way, even on a loaded machine where status reads wait behind its writes.
const EVENTS: i64 = 150;

#[tokio::test]
async fn a_backfill_killed_mid_way_resumes_and_ingests_each_event_once_in_order() {
    on_every_backend(backfill_killed_mid_way).await;
}

async fn backfill_killed_mid_way(db: TestDatabase, dir: tempfile::TempDir) {
    use tributary_fakes::stripe::FakeStripe;
    let fake = FakeStripe::start();
    let (start_at, stripe_ids) = add_stripe_events(&fake);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let env = [
        ("TRIBUTARY_STRIPE_API_URL", fake.base_url.as_str()),
        ("TRIBUTARY_BACKFILL_PAGE_SIZE", "2"),
    ];
    let mut child = Running(start_with(&db, dir.path(), port, &env));
    let client = reqwest::Client::new();
    let token = sign_up(&client, &base, "Resume", "resume@example.com").await;
    let backfill_url = start_backfill(&client, &base, &token, start_at).await;

    // Killed once it has ingested some events, well before the end.
    let deadline = Instant::now() + Duration::from_secs(60);
    let before = loop {
        let b = get(&client, backfill_url.clone(), &token).await;
        if b["progress"]["ingested"].as_i64().unwrap_or(0) >= 5 || Instant::now() > deadline {
            break b;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    child.stop();
    let at_kill = before["progress"]["ingested"].as_i64().unwrap();
    assert!(
        (5..EVENTS).contains(&at_kill),
        "the kill must come mid-way ({at_kill} ingested): {before}"
    );

    let mut child = Running(start_with(&db, dir.path(), port, &env));
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    let done = loop {
        let b = get(&client, backfill_url.clone(), &token).await;
        if b["status"] == "succeeded" || b["status"] == "failed" {
            break b;
        }
        assert!(
            Instant::now() < deadline,
            "the backfill did not resume: {b}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Every event is in the inbox once, stored oldest first.
    let stored = all_events(&client, &base, &token).await;
    child.stop();
    fake.stop().await;
    assert_backfilled_once_in_order(&done, stored, &stripe_ids);
}

/// Adds `EVENTS` charge events to the fake Stripe a minute apart; returns start time and ids.
fn add_stripe_events(fake: &tributary_fakes::stripe::FakeStripe) -> (i64, Vec<String>) {
    use tributary_fakes::stripe::FakeStripe;
    let start_at = chrono::Utc::now().timestamp() - EVENTS * 60 - 600;
    let mut stripe_ids = Vec::new();
    for i in 0..EVENTS {
        let charge = json!({"id": format!("ch_resume_{i}"), "object": "charge", "amount": 100 + i,
            "currency": "usd", "created": start_at + i * 60, "livemode": false});
        stripe_ids.push(fake.add_event(
            FakeStripe::event("charge.succeeded", charge, start_at + i * 60),
            false,
        ));
    }
    (start_at, stripe_ids)
}

/// Adds a Stripe account with an API key, starts a backfill; returns the backfill's URL.
async fn start_backfill(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    start_at: i64,
) -> String {
    use tributary_fakes::stripe::{API_VERSION, SECRET_KEY};
    // The fake's key is a test-mode one: production is let hold it.
    let production = support::json(
        client,
        reqwest::Method::PATCH,
        format!("{base}/v1/environments/production"),
        token,
        json!({"mixed_modes": true}),
    )
    .await;
    assert_eq!(production["mixed_modes"], true, "{production}");
    let account = support::json(
        client,
        reqwest::Method::POST,
        format!("{base}/v1/stripe-accounts"),
        token,
        json!({"name": "S", "secret_key": SECRET_KEY, "api_version": API_VERSION}),
    )
    .await;
    let account_id = account["id"].as_str().unwrap().to_string();
    let backfill = support::json(
        client,
        reqwest::Method::POST,
        format!("{base}/v1/stripe-accounts/{account_id}/backfills"),
        token,
        json!({"since": start_at - 60}),
    )
    .await;
    format!(
        "{base}/v1/stripe-accounts/{account_id}/backfills/{}",
        backfill["id"].as_str().unwrap()
    )
}

/// Every event in the inbox, page by page, newest first.
async fn all_events(client: &reqwest::Client, base: &str, token: &str) -> Vec<Value> {
    let mut stored = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let url = match &after {
            Some(id) => format!("{base}/v1/events?limit=100&starting_after={id}"),
            None => format!("{base}/v1/events?limit=100"),
        };
        let page = get(client, url, token).await;
        let data = page["data"].as_array().unwrap().clone();
        after = data.last().map(|e| e["id"].as_str().unwrap().to_string());
        stored.extend(data);
        if page["has_more"] != true {
            break stored;
        }
    }
}

/// Checks that the backfill succeeded and stored each Stripe event once, oldest first.
fn assert_backfilled_once_in_order(done: &Value, mut stored: Vec<Value>, stripe_ids: &[String]) {
    assert_eq!(done["status"], "succeeded", "{done}");
    stored.reverse();
    let order: Vec<&str> = stored
        .iter()
        .map(|e| e["stripe_event_id"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = stripe_ids.iter().map(String::as_str).collect();
    assert_eq!(order, expected, "each event once, oldest first");
    let progress = &done["progress"];
    assert_eq!(
        progress["ingested"].as_i64().unwrap() + progress["already_present"].as_i64().unwrap(),
        EVENTS,
        "{done}"
    );
    assert!(
        progress["already_present"].as_i64().unwrap() <= 1,
        "at most the event in hand at the kill is seen again: {done}"
    );
}
