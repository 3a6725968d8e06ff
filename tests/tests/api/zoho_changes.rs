//! Zoho CRM changes into Tributary against the fake Zoho and a real database: the
//! notification channel enabled, kept, renewed, re-created after Zoho drops it and updated;
//! callbacks turned into events and hydrated from the record Zoho has now; polling on
//! `Modified_Time` storing each change once.

use std::sync::Arc;

use entity::{connections, crm_watches, events};
use reqwest::StatusCode;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use tributary_fakes::zoho::{self, FakeZoho};
use tributary_fakes::{RequestLog, Served};
use tributary_tests::{TestApp, each_backend};
use tributary_worker::crm::Connector;
use tributary_worker::inbound::zoho::{
    CHANNEL_OBJECT, ChannelAction, ensure_channel, hydrate, parse_notification, poll_module,
};
use tributary_worker::queue::Queue;

const TOKEN: &str = "b41d84a7f3c9e2acme0123456789abcdef012345";

struct Zoho {
    fake: FakeZoho,
    connector: Connector,
    queue: Queue,
    connection: connections::Model,
}

async fn zoho(app: &TestApp, settings: Value) -> Zoho {
    let fake = FakeZoho::start();
    let tenant = app.signup("Zoho changes").await;
    let mut all = json!({"accounts_url": fake.accounts_url, "api_version": "v8"});
    all.as_object_mut()
        .unwrap()
        .extend(settings.as_object().cloned().unwrap_or_default());
    let created = app
        .post(
            "/v1/connections",
            &tenant.token,
            json!({"name": "Zoho", "provider": "zoho", "settings": all,
                   "auth": {"type": "refresh_token", "client_id": zoho::CLIENT_ID,
                            "client_secret": zoho::CLIENT_SECRET,
                            "refresh_token": fake.issue_refresh_token()}}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let connection = connections::Entity::find_by_id(created.str("/id"))
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    let keyring = tributary_worker::secrets::Keyring::parse(tributary_tests::TEST_KEYRING)
        .expect("the test keyring parses");
    let connector = Connector::new(app.db.clone(), Arc::new(keyring), app.settings.vendor_urls);
    let queue = Queue::connect(&app.settings, &app.db).await.unwrap();
    Zoho {
        fake,
        connector,
        queue,
        connection,
    }
}

/// A local listener standing for Tributary's inbound URL: answers 200, records each callback.
fn listener() -> (Served, RequestLog) {
    let log = RequestLog::default();
    let served = Served::answering(log.clone(), |_, _| actix_web::HttpResponse::Ok().finish());
    (served, log)
}

async fn callbacks(log: &RequestLog, count: usize) -> Vec<Vec<u8>> {
    tributary_tests::wait_for(10, "Zoho's callbacks", || async {
        let all = log.all();
        (all.len() >= count).then(|| all.into_iter().map(|l| l.body.into_bytes()).collect())
    })
    .await
}

async fn channel_row(app: &TestApp, z: &Zoho) -> crm_watches::Model {
    crm_watches::Entity::find()
        .filter(crm_watches::Column::ConnectionId.eq(z.connection.id.as_str()))
        .filter(crm_watches::Column::Object.eq(CHANNEL_OBJECT))
        .one(&app.db)
        .await
        .unwrap()
        .unwrap()
}

async fn expires_in_hours(app: &TestApp, z: &Zoho, hours: i64) {
    crm_watches::Entity::update_many()
        .set(crm_watches::ActiveModel {
            channel_expires_at: Set(Some(chrono::Utc::now() + chrono::Duration::hours(hours))),
            ..Default::default()
        })
        .filter(crm_watches::Column::ConnectionId.eq(z.connection.id.as_str()))
        .exec(&app.db)
        .await
        .unwrap();
}

fn watch_calls(z: &Zoho, method: &str) -> usize {
    z.fake.log.matching(method, "/crm/v8/actions/watch").len()
}

#[tokio::test]
async fn the_channel_is_enabled_kept_renewed_recreated_and_updated() {
    each_backend(|app| async move {
        let z = zoho(&app, json!({})).await;
        let (listener, log) = listener();
        let url = format!("{}/webhooks/zoho/abc?tenant=acme", listener.base_url);
        let modules = vec!["Deals".to_string(), "Contacts".to_string()];
        let (db, zr) = (&app.db, &z);
        let ensure = |modules: Vec<String>, token: &'static str| {
            let url = url.clone();
            async move {
                ensure_channel(db, &zr.connector, &zr.connection, &modules, &url, token).await
            }
        };
        let created = ensure(modules.clone(), TOKEN).await.unwrap();
        assert_eq!(created.action, ChannelAction::Created);
        let days = (created.expires_at - chrono::Utc::now()).num_hours();
        assert!((143..=144).contains(&days), "six days, read back: {days} h");
        let channels = z.fake.channels();
        assert_eq!(channels.len(), 1);
        assert_eq!(channels[0]["channel_id"], created.channel_id);
        assert_eq!(channels[0]["events"], json!(["Deals.all", "Contacts.all"]));
        assert_eq!(channels[0]["token"], TOKEN);
        assert_eq!(channels[0]["notify_on_related_action"], false);
        let row = channel_row(&app, &z).await;
        assert_eq!(row.channel_id.as_deref(), Some(created.channel_id.as_str()));
        assert!(!row.seen.contains(TOKEN), "the token is not kept");

        // Live for days: nothing sent.
        let kept = ensure(modules.clone(), TOKEN).await.unwrap();
        assert_eq!(kept.action, ChannelAction::Kept);
        assert_eq!(watch_calls(&z, "POST"), 1);

        // Less than a day left: renewed by PATCH, for six days again.
        expires_in_hours(&app, &z, 12).await;
        let renewed = ensure(modules.clone(), TOKEN).await.unwrap();
        assert_eq!(renewed.action, ChannelAction::Renewed);
        assert_eq!(renewed.channel_id, created.channel_id);
        assert!((renewed.expires_at - chrono::Utc::now()).num_hours() >= 143);
        assert_eq!(watch_calls(&z, "PATCH"), 1);

        // Zoho dropped it: the PATCH answers NOT_SUBSCRIBED and a new channel is enabled.
        assert!(z.fake.expire_channel(&created.channel_id));
        expires_in_hours(&app, &z, 12).await;
        let recreated = ensure(modules.clone(), TOKEN).await.unwrap();
        assert_eq!(recreated.action, ChannelAction::Recreated);
        assert_ne!(recreated.channel_id, created.channel_id);
        assert_eq!(watch_calls(&z, "PATCH"), 2);
        assert_eq!(z.fake.channels()[0]["channel_id"], recreated.channel_id);

        // Fewer modules: every detail replaced by PUT.
        let updated = ensure(vec!["Deals".into()], TOKEN).await.unwrap();
        assert_eq!(updated.action, ChannelAction::Updated);
        assert_eq!(z.fake.channels()[0]["events"], json!(["Deals.all"]));

        // A user's edit in Zoho reaches the notify URL and reads as an event with the token.
        let id = z.fake.insert("Deals", json!({"Deal_Name": "Big", "Stage": "Qualification"}));
        assert!(z.fake.touch("Deals", &id, json!({"Stage": "Closed Won"})));
        let bodies = callbacks(&log, 1).await;
        let events = parse_notification(&bodies[0], TOKEN).unwrap();
        assert_eq!(events[0].event_type, "Deals.updated");
        assert_eq!(events[0].record["Stage"], "Closed Won");
        assert!(events[0].key.starts_with(&recreated.channel_id));
        assert_eq!(events[0].vendor["query_params"], json!({"tenant": "acme"}));
        assert!(parse_notification(&bodies[0], "another-token").is_err());

        // Zoho refuses a module it does not have: the error is kept on the channel's watch.
        let refused = ensure(vec!["Nope".into()], TOKEN).await.unwrap_err();
        assert!(format!("{refused:#}").contains("INVALID_DATA"), "{refused:#}");
        let row = channel_row(&app, &z).await;
        assert!(row.last_error.unwrap().contains("INVALID_DATA"));
        assert_eq!(row.channel_id.as_deref(), Some(recreated.channel_id.as_str()));
        assert!(ensure(modules, "x").await.is_ok(), "a new token is sent");
        listener.stop().await;
        z.fake.stop().await;
    })
    .await;
}

/// An access token of the fake's, to write as the integration user.
async fn api_token(fake: &FakeZoho) -> String {
    let refresh = fake.issue_refresh_token();
    let answer: Value = reqwest::Client::new()
        .post(format!("{}/oauth/v2/token", fake.accounts_url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", "refresh_token")
                .append_pair("client_id", zoho::CLIENT_ID)
                .append_pair("client_secret", zoho::CLIENT_SECRET)
                .append_pair("refresh_token", refresh.as_str())
                .finish(),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["access_token"].as_str().unwrap().to_string()
}

async fn write_as_integration(fake: &FakeZoho, id: &str, fields: Value) {
    let reply = reqwest::Client::new()
        .put(format!("{}/crm/v8/Deals/{id}", fake.api_domain))
        .header(
            "authorization",
            format!("Zoho-oauthtoken {}", api_token(fake).await),
        )
        .json(&json!({"data": [fields]}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
}

#[tokio::test]
async fn callbacks_are_hydrated_from_the_record_zoho_has_now() {
    each_backend(|app| async move {
        let z = zoho(
            &app,
            json!({"integration_user_id": zoho::INTEGRATION_USER_ID}),
        )
        .await;
        let (listener, log) = listener();
        let url = format!("{}/notify", listener.base_url);
        ensure_channel(
            &app.db,
            &z.connector,
            &z.connection,
            &["Deals".into()],
            &url,
            TOKEN,
        )
        .await
        .unwrap();
        let id = z.fake.insert(
            "Deals",
            json!({"Deal_Name": "Big", "Stage": "Qualification"}),
        );
        let (db, zr, logr) = (&app.db, &z, &log);
        let hydrated = |n: usize| async move {
            let bodies = callbacks(logr, n).await;
            let mut events = parse_notification(&bodies[n - 1], TOKEN).unwrap();
            let payload = events.remove(0).payload(&zr.connection.id);
            let hydrated = hydrate(db, &zr.connector, &zr.connection, &payload).await;
            (hydrated.unwrap(), payload)
        };
        assert!(z.fake.touch("Deals", &id, json!({"Stage": "Negotiation"})));
        let (first, _) = hydrated(1).await;
        let first = first.expect("the record is there");
        assert_eq!(first["data"]["object"]["Deal_Name"], "Big");
        assert_eq!(first["data"]["object"]["Stage"], "Negotiation");
        assert_eq!(
            first["data"]["previous_attributes"],
            json!({}),
            "first version seen"
        );
        assert_eq!(first["echo"], false, "a user's edit");

        assert!(z.fake.touch("Deals", &id, json!({"Stage": "Closed Won"})));
        let (second, _) = hydrated(2).await;
        let second = second.unwrap();
        assert_eq!(
            second["data"]["previous_attributes"]["Stage"],
            "Negotiation"
        );
        assert_eq!(second["type"], "Deals.updated");

        // Tributary's own write, through the API as the integration user: an echo.
        write_as_integration(&z.fake, &id, json!({"Amount": 99.5})).await;
        let (third, _) = hydrated(3).await;
        let third = third.unwrap();
        assert_eq!(third["echo"], true);
        let previous = &third["data"]["previous_attributes"];
        assert_eq!(previous["Amount"], Value::Null);
        assert!(previous.get("Amount").is_some(), "new field: {previous}");
        assert_eq!(previous["Modified_By"]["id"], zoho::OTHER_USER_ID);

        // Deleted: an update's record is gone; the deletion itself is kept as it came.
        assert!(z.fake.touch("Deals", &id, json!({"Stage": "Lost"})));
        let bodies = callbacks(&log, 4).await;
        assert!(z.fake.remove("Deals", &id));
        let stale = parse_notification(&bodies[3], TOKEN).unwrap().remove(0);
        let stale = stale.payload(&z.connection.id);
        let gone = hydrate(&app.db, &z.connector, &z.connection, &stale)
            .await
            .unwrap();
        assert_eq!(gone, None);
        let (deleted, payload) = hydrated(5).await;
        assert_eq!(deleted, Some(payload.clone()));
        assert_eq!(payload["type"], "Deals.deleted");
        listener.stop().await;
        z.fake.stop().await;
    })
    .await;
}

async fn stored(app: &TestApp, z: &Zoho) -> Vec<Value> {
    let mut rows = events::Entity::find()
        .filter(events::Column::StripeAccountId.eq(z.connection.id.as_str()))
        .all(&app.db)
        .await
        .unwrap();
    rows.sort_by_key(|r| r.received_at);
    rows.iter()
        .map(|r| serde_json::from_str(&r.payload).unwrap())
        .collect()
}

#[tokio::test]
async fn polling_stores_each_change_once_from_about_now() {
    each_backend(|app| async move {
        let z = zoho(
            &app,
            json!({"poll_seconds": 30,
                                  "integration_user_id": zoho::INTEGRATION_USER_ID}),
        )
        .await;
        z.fake
            .set_time_zone(chrono::FixedOffset::east_opt(5 * 3600 + 1800).unwrap());
        // Older than the first poll's window: not replayed.
        z.fake.shift_clock(chrono::Duration::minutes(-10));
        let old = z.fake.insert(
            "Deals",
            json!({"Deal_Name": "Old", "Stage": "Qualification"}),
        );
        z.fake.shift_clock(chrono::Duration::minutes(10));
        let a = z
            .fake
            .create("Deals", json!({"Deal_Name": "A", "Stage": "Qualification"}));
        let b = z
            .fake
            .create("Deals", json!({"Deal_Name": "B", "Stage": "Qualification"}));
        let poll = || poll_module(&app.db, &z.queue, &z.connector, &z.connection, "Deals");

        let first = poll().await.unwrap();
        assert_eq!(first.events, 2, "{first:?}");
        assert_eq!(first.api_calls, 2, "the field list and one page");
        assert!(
            first.cursor.as_deref().unwrap().ends_with("+05:30"),
            "{first:?}"
        );
        let payloads = stored(&app, &z).await;
        assert_eq!(payloads.len(), 2);
        for (payload, id) in payloads.iter().zip([&a, &b]) {
            assert_eq!(payload["type"], "Deals.created");
            assert_eq!(payload["source"], "zoho");
            assert_eq!(payload["data"]["object"]["id"], json!(id));
            assert!(payload["data"]["object"]["Deal_Name"].is_string());
            assert_eq!(payload["echo"], false);
            assert!(
                payload["id"]
                    .as_str()
                    .unwrap()
                    .starts_with(&format!("{id}@"))
            );
        }
        let watch = crm_watches::Entity::find()
            .filter(crm_watches::Column::ConnectionId.eq(z.connection.id.as_str()))
            .filter(crm_watches::Column::Object.eq("Deals"))
            .one(&app.db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(watch.api_calls, 2);
        let wait = watch.next_poll_at.unwrap() - watch.polled_at.unwrap();
        assert_eq!(wait.num_seconds(), 30);
        let since = &z.fake.log.matching("GET", "/crm/v8/Deals")[0];
        assert!(
            since.path.contains("sort_by=Modified_Time"),
            "{}",
            since.path
        );
        assert!(since.path.contains("sort_order=asc") && since.path.contains("per_page=200"));

        // The overlap reads them again; nothing is stored twice.
        let again = poll().await.unwrap();
        assert_eq!(again.events, 0, "{again:?}");
        assert_eq!(stored(&app, &z).await.len(), 2);

        // A user's edit, an edit of the old record, and Tributary's own write, a few seconds
        // later (Zoho's times are whole seconds: a change within the same second as the last
        // version seen is the same `id@Modified_Time`).
        z.fake.shift_clock(chrono::Duration::seconds(2));
        assert!(z.fake.touch("Deals", &a, json!({"Stage": "Closed Won"})));
        assert!(z.fake.touch("Deals", &old, json!({"Stage": "Negotiation"})));
        write_as_integration(&z.fake, &b, json!({"Amount": 5.0})).await;
        let third = poll().await.unwrap();
        assert_eq!(third.events, 3, "{third:?}");
        let payloads = stored(&app, &z).await;
        let of = |id: &str| {
            payloads[2..]
                .iter()
                .find(|p| p["data"]["object"]["id"] == id)
                .unwrap()
                .clone()
        };
        assert_eq!(of(&a)["type"], "Deals.updated");
        assert_eq!(
            of(&a)["data"]["previous_attributes"]["Stage"],
            "Qualification"
        );
        assert_eq!(of(&old)["type"], "Deals.updated", "created long before");
        assert_eq!(of(&b)["echo"], true, "modified by the integration user");

        // Zoho refusing: the error is kept on the watch and the poll fails.
        z.fake.throttle(5, 1);
        let failed = poll().await.unwrap_err();
        assert!(format!("{failed:#}").contains("429"), "{failed:#}");
        let watch = crm_watches::Entity::find_by_id(watch.id.clone())
            .one(&app.db)
            .await
            .unwrap()
            .unwrap();
        assert!(watch.last_error.is_some());
        assert!(watch.next_poll_at.is_some());
        z.fake.stop().await;
    })
    .await;
}
