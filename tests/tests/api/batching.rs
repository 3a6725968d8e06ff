//! Batching under backlog: upserts by email to one HubSpot connection that wait for the rate
//! budget at the same time go out as one batch upsert, each event reading its own record's
//! answer; a record HubSpot refuses fails alone; and an event that finds the connection idle
//! is sent at once, by itself.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tributary_fakes::hubspot::{self, FakeHubSpot};
use tributary_tests::{Pipeline, TestApp, charge_event, each_backend_with};

async fn hubspot(app: &TestApp, fake: &FakeHubSpot) -> Pipeline {
    let p = app
        .pipeline_with(json!({
            "name": "HubSpot", "provider": "hubspot",
            "auth": {"type": "token", "token": hubspot::PRIVATE_APP_TOKEN},
            "settings": {"base_url": fake.base_url, "rate_limit": {"requests": 2, "per_seconds": 1}}
        }))
        .await;
    app.contact_flow(
        &p,
        json!({"firstname": "{{ object.billing_details.name }}"}),
    )
    .await;
    p
}

/// The number of inputs of each batch upsert HubSpot received, in order.
fn batch_sizes(fake: &FakeHubSpot) -> Vec<usize> {
    fake.log
        .matching("POST", "/crm/v3/objects/contacts/batch/upsert")
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(&l.body).unwrap()["inputs"]
                .as_array()
                .map_or(0, Vec::len)
        })
        .collect()
}

#[tokio::test]
async fn a_backlog_goes_out_in_batch_calls_and_a_refused_record_fails_alone() {
    // A batch holds the events a worker has in hand for the tenant at once: 16 of 32 here.
    each_backend_with(
        &[("TRIBUTARY_WORKER_CONCURRENCY", "32")],
        |app| async move {
            let fake = FakeHubSpot::start();
            fake.set_rate_limits(2, 1_000, 250_000);
            let p = hubspot(&app, &fake).await;
            // 30 charges at once, one of them with an address HubSpot refuses.
            let now = chrono::Utc::now().timestamp();
            let mut sent = Vec::new();
            for i in 0..30 {
                let email = if i == 17 {
                    "nobody@nowhere".to_string()
                } else {
                    format!("backlog{i}@batch.example")
                };
                let event = charge_event(
                    &format!("evt_backlog{i}"),
                    &format!("ch_backlog{i}"),
                    &email,
                    &format!("Name {i}"),
                    100,
                    now,
                );
                let reply = app.send_event(&p, &event).await;
                assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
                sent.push((email, reply.str("/event_id")));
            }
            for (email, id) in &sent {
                let done = app.finished_event(&p.tenant.token, id).await;
                if email == "nobody@nowhere" {
                    assert_eq!(done["status"], "failed", "{done}");
                    let delivery = &done["deliveries"][0];
                    assert_eq!(delivery["status"], "dead", "{done}");
                    let message = delivery["error"]["message"].as_str().unwrap_or_default();
                    assert!(
                        message.contains("Email address nobody@nowhere is invalid"),
                        "{done}"
                    );
                } else {
                    assert_eq!(done["status"], "processed", "{email}: {done}");
                }
            }

            // Every other record written once, with its own name.
            let records = fake.records("contacts");
            assert_eq!(records.len(), 29, "{records:?}");
            for (i, (email, _)) in sent.iter().enumerate().filter(|(i, _)| *i != 17) {
                let record = records
                    .iter()
                    .find(|r| r.properties["email"] == json!(email))
                    .unwrap_or_else(|| panic!("{email} not written"));
                assert_eq!(record.properties["firstname"], json!(format!("Name {i}")));
            }

            // Fewer calls than events, none over HubSpot's 100, none refused for the rate.
            let sizes = batch_sizes(&fake);
            assert_eq!(sizes.iter().sum::<usize>(), 30, "{sizes:?}");
            assert!(
                sizes.len() <= 15,
                "{} calls for 30 events: {sizes:?}",
                sizes.len()
            );
            assert!(sizes.iter().any(|n| *n >= 5), "{sizes:?}");
            assert!(sizes.iter().all(|n| *n <= 100), "{sizes:?}");
            let refused: Vec<_> = fake
                .log
                .all()
                .into_iter()
                .filter(|l| l.status == 429)
                .collect();
            assert!(refused.is_empty(), "{refused:?}");
            assert_eq!(fake.early_requests(), 0);

            // The connection idle again: one event goes at once, alone.
            tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
            let event = charge_event(
                "evt_idle",
                "ch_idle",
                "idle@batch.example",
                "Idle",
                100,
                now,
            );
            let done = app.deliver(&p, &event).await;
            assert_eq!(done["status"], "processed", "{done}");
            assert_eq!(batch_sizes(&fake).last(), Some(&1));
        },
    )
    .await;
}
