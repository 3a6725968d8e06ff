//! Salesforce change capture by polling, against the fake Salesforce on every backend: records
//! created, changed and deleted in the org become `Opportunity.created|updated|deleted` events
//! with the values the fields had before; polling again, equal timestamps and the overlap
//! never make an event twice; answers longer than a page are followed; every API call is
//! counted on the watch; a failed poll keeps its error and waits out the org's pause.
//!
//! The connections here set no `watch`, so the app's own watcher leaves them alone and each
//! test decides when to poll.

use std::sync::Arc;

use entity::{connections, crm_watches, events};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::{Value, json};
use tributary_fakes::salesforce::{self, FakeSalesforce};
use tributary_tests::{Pipeline, TestApp, each_backend};
use tributary_worker::crm::Connector;
use tributary_worker::inbound::salesforce::{PollOutcome, format_stamp, poll_object};
use tributary_worker::queue::Queue;

struct Poller {
    queue: Queue,
    connector: Connector,
    connection_id: String,
}

impl Poller {
    async fn new(app: &TestApp, fake: &FakeSalesforce) -> (Poller, Pipeline) {
        let p = app
            .pipeline_with(json!({
                "name": "Salesforce", "provider": "salesforce",
                "auth": {"type": "jwt_bearer", "client_id": salesforce::CLIENT_ID,
                         "username": salesforce::USERNAME,
                         "private_key": salesforce::TEST_PRIVATE_KEY_PEM},
                "settings": {"login_url": fake.login_url, "poll_seconds": 30,
                             "integration_user_id": salesforce::API_USER_ID}
            }))
            .await;
        let keyring = tributary_worker::secrets::load_keyring(&app.settings).unwrap();
        let poller = Poller {
            queue: Queue::connect(&app.settings, &app.db).await.unwrap(),
            connector: Connector::new(app.db.clone(), Arc::new(keyring), app.settings.vendor_urls),
            connection_id: p.connection_id.clone(),
        };
        (poller, p)
    }

    async fn connection(&self, app: &TestApp) -> connections::Model {
        connections::Entity::find_by_id(self.connection_id.clone())
            .one(&app.db)
            .await
            .unwrap()
            .unwrap()
    }

    async fn try_poll(&self, app: &TestApp) -> anyhow::Result<PollOutcome> {
        let connection = self.connection(app).await;
        poll_object(
            &app.db,
            &self.queue,
            &self.connector,
            &connection,
            "Opportunity",
        )
        .await
    }

    async fn poll(&self, app: &TestApp) -> PollOutcome {
        self.try_poll(app).await.expect("the poll succeeds")
    }

    /// The payloads of the connection's events, oldest first.
    async fn events(&self, app: &TestApp) -> Vec<Value> {
        events::Entity::find()
            .filter(events::Column::StripeAccountId.eq(self.connection_id.as_str()))
            .order_by_asc(events::Column::ReceivedAt)
            .all(&app.db)
            .await
            .unwrap()
            .iter()
            .map(|e| {
                assert_eq!(
                    e.source, "salesforce",
                    "the events row says where it came from"
                );
                serde_json::from_str(&e.payload).unwrap()
            })
            .collect()
    }

    async fn watch(&self, app: &TestApp) -> crm_watches::Model {
        crm_watches::Entity::find()
            .filter(crm_watches::Column::ConnectionId.eq(self.connection_id.as_str()))
            .filter(crm_watches::Column::Object.eq("Opportunity"))
            .one(&app.db)
            .await
            .unwrap()
            .expect("the watch row")
    }
}

fn opportunity(fake: &FakeSalesforce, name: &str) -> String {
    fake.insert(
        "Opportunity",
        json!({"Name": name, "StageName": "Prospecting", "CloseDate": "2030-01-01"}),
    )
}

/// Lets the fake's clock move on, so the next write gets a later stamp.
async fn tick() {
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
}

#[tokio::test]
async fn created_changed_and_deleted_records_become_events_with_previous_values() {
    each_backend(|app| async move {
        let fake = FakeSalesforce::start();
        let (poller, _p) = Poller::new(&app, &fake).await;
        // Written by the integration user: an echo of Tributary's own write.
        let id = opportunity(&fake, "Acme renewal");
        let first = poller.poll(&app).await;
        assert_eq!(first.events, 1);
        tick().await;
        fake.touch(
            &id,
            json!({"StageName": "Negotiation/Review", "Amount": 1200}),
        );
        assert_eq!(poller.poll(&app).await.events, 1);
        tick().await;
        fake.delete(&id);
        assert_eq!(poller.poll(&app).await.events, 1);
        assert_eq!(poller.poll(&app).await.events, 0, "nothing new");

        let events = poller.events(&app).await;
        let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            [
                "Opportunity.created",
                "Opportunity.updated",
                "Opportunity.deleted"
            ]
        );
        let (created, updated, deleted) = (&events[0], &events[1], &events[2]);
        assert_eq!(created["source"], "salesforce");
        assert_eq!(created["echo"], true, "{created}");
        assert_eq!(created["data"]["object"]["Name"], "Acme renewal");
        assert_eq!(created["data"]["object"]["id"], id.as_str());
        assert_eq!(created["data"]["previous_attributes"], json!({}));
        assert_eq!(created["vendor"]["attributes"]["type"], "Opportunity");
        assert!(created["data"]["object"].get("attributes").is_none());

        assert_eq!(updated["echo"], false, "changed by another user");
        assert_eq!(updated["data"]["object"]["StageName"], "Negotiation/Review");
        let previous = &updated["data"]["previous_attributes"];
        assert_eq!(previous["StageName"], "Prospecting", "{previous}");
        assert_eq!(previous["Amount"], Value::Null, "{previous}");
        assert_eq!(previous["LastModifiedById"], salesforce::API_USER_ID);
        assert!(
            previous.get("Name").is_none(),
            "unchanged fields are left out"
        );
        let stamp = updated["data"]["object"]["SystemModstamp"]
            .as_str()
            .unwrap();
        assert_eq!(updated["id"], format!("{id}@{stamp}"));

        assert_eq!(deleted["data"]["object"]["IsDeleted"], true);
        assert_eq!(deleted["data"]["previous_attributes"]["IsDeleted"], false);
        assert!(
            deleted["data"]["previous_attributes"]
                .get("StageName")
                .is_none(),
            "a deletion changes no other field"
        );
        let watch = poller.watch(&app).await;
        assert_eq!(
            watch.cursor.as_deref(),
            deleted["data"]["object"]["SystemModstamp"].as_str()
        );
        assert!(watch.last_error.is_none());
        fake.stop().await;
    })
    .await;
}

#[tokio::test]
async fn equal_timestamps_and_late_commits_arrive_once_across_polls() {
    each_backend(|app| async move {
        let fake = FakeSalesforce::start();
        let (poller, _p) = Poller::new(&app, &fake).await;
        let now = chrono::Utc::now();
        let instant = format_stamp(now - chrono::Duration::seconds(10));
        let a = opportunity(&fake, "A");
        fake.set_modstamp(&a, &instant);
        assert_eq!(poller.poll(&app).await.events, 1);
        // Another record at the very same instant, seen by the next poll only.
        let b = opportunity(&fake, "B");
        fake.set_modstamp(&b, &instant);
        assert_eq!(poller.poll(&app).await.events, 1);
        // A transaction that committed late with an earlier stamp, inside the overlap.
        let c = opportunity(&fake, "C");
        fake.set_modstamp(&c, &format_stamp(now - chrono::Duration::seconds(70)));
        assert_eq!(poller.poll(&app).await.events, 1);
        assert_eq!(poller.poll(&app).await.events, 0);

        let ids: Vec<String> = poller
            .events(&app)
            .await
            .iter()
            .map(|e| e["data"]["object"]["Id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids, [a.clone(), b.clone(), c.clone()]);
        let watch = poller.watch(&app).await;
        assert_eq!(watch.cursor.as_deref(), Some(instant.as_str()));
        let seen: Vec<String> = serde_json::from_str(&watch.seen).unwrap();
        for id in [&a, &b] {
            assert!(seen.contains(&format!("{id}@{instant}")), "{seen:?}");
        }
        fake.stop().await;
    })
    .await;
}

#[tokio::test]
async fn the_first_poll_starts_minutes_back_not_at_the_orgs_history() {
    each_backend(|app| async move {
        let fake = FakeSalesforce::start();
        let (poller, _p) = Poller::new(&app, &fake).await;
        let old = opportunity(&fake, "Old");
        fake.set_modstamp(
            &old,
            &format_stamp(chrono::Utc::now() - chrono::Duration::hours(1)),
        );
        let quiet = poller.poll(&app).await;
        assert_eq!(quiet.events, 0);
        // Nothing found: the start is kept, so the next poll continues from there.
        let start = quiet.cursor.expect("the first poll's start is the cursor");
        let recent = opportunity(&fake, "Recent");
        let next = poller.poll(&app).await;
        assert_eq!(next.events, 1);
        assert!(next.cursor.unwrap() > start);
        let events = poller.events(&app).await;
        assert_eq!(events[0]["data"]["object"]["Id"], recent.as_str());
        fake.stop().await;
    })
    .await;
}

#[tokio::test]
async fn pages_are_followed_and_every_call_is_counted() {
    each_backend(|app| async move {
        let fake = FakeSalesforce::start();
        fake.set_page_size(2);
        let (poller, _p) = Poller::new(&app, &fake).await;
        for i in 0..5 {
            opportunity(&fake, &format!("Deal {i}"));
        }
        let before = fake.api_calls();
        let outcome = poller.poll(&app).await;
        // The describe, then three pages.
        assert_eq!((outcome.events, outcome.api_calls), (5, 4));
        assert_eq!(fake.api_calls() - before, 4);
        let (used, limit) = outcome.api_usage.expect("Sforce-Limit-Info was read");
        assert!(used >= 4 && limit == 15000, "{used}/{limit}");
        assert_eq!(poller.watch(&app).await.api_calls, 4);
        // The overlap reads the five again: no events, and the calls add up.
        let again = poller.poll(&app).await;
        assert_eq!((again.events, again.api_calls), (0, 4));
        assert_eq!(poller.watch(&app).await.api_calls, 8);
        assert_eq!(poller.events(&app).await.len(), 5);
        let info: Value = serde_json::from_str(&poller.connection(&app).await.vendor_info).unwrap();
        assert!(
            info["api_usage"]
                .as_str()
                .unwrap()
                .starts_with("api-usage="),
            "{info}"
        );
        let queried = fake.log.matching("GET", "/queryAll/");
        assert!(
            queried[0].path.contains("SystemModstamp"),
            "{}",
            queried[0].path
        );
        fake.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_failed_poll_keeps_its_error_and_waits_out_the_daily_limit() {
    each_backend(|app| async move {
        let fake = FakeSalesforce::start();
        let (poller, _p) = Poller::new(&app, &fake).await;
        opportunity(&fake, "Waiting");
        fake.exhaust_daily_limit(true);
        let error = poller.try_poll(&app).await.expect_err("the org refuses");
        assert!(
            format!("{error:#}").contains("REQUEST_LIMIT_EXCEEDED"),
            "{error:#}"
        );
        let watch = poller.watch(&app).await;
        let recorded = watch.last_error.expect("the error is kept");
        assert!(recorded.contains("REQUEST_LIMIT_EXCEEDED"), "{recorded}");
        let next = watch.next_poll_at.expect("a next poll");
        assert!(
            next > chrono::Utc::now() + chrono::Duration::minutes(50),
            "{next}"
        );
        assert_eq!(watch.api_calls, 1);

        fake.exhaust_daily_limit(false);
        assert_eq!(poller.poll(&app).await.events, 1);
        let watch = poller.watch(&app).await;
        assert!(watch.last_error.is_none());
        let next = watch.next_poll_at.unwrap();
        assert!(
            next < chrono::Utc::now() + chrono::Duration::seconds(31),
            "{next}"
        );
        fake.stop().await;
    })
    .await;
}
