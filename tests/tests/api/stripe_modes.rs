//! Test and live mode: an account's `livemode` comes from its key's prefix (or is told, for an
//! account with only a signing secret) and never changes; an event of the other mode is refused
//! at the door with 400 naming `livemode`, stored nowhere and delivered nowhere; test events
//! carry the account's mode; a backfill passes the other mode's events over and counts them.

use entity::stripe_accounts;
use reqwest::StatusCode;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Value, json};
use tributary_fakes::stripe::{API_VERSION, FakeStripe, SECRET_KEY};
use tributary_tests::{
    Pipeline, Reply, TestApp, backends, charge_event, each_backend, metric, stripe_signature,
    wait_for,
};

const LIVE_KEY: &str = "sk_live_51HxTributaryModesLive1234";
const TEST_KEY: &str = "sk_test_51HxTributaryModesTest1234";
const REFUSED: &str = "tributary_webhooks_total{outcome=\"rejected\",reason=\"livemode\"}";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A charge event of a mode, with ids of its own.
fn charge(livemode: bool, email: &str) -> Value {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut event = charge_event(
        &format!("evt_{id}"),
        &format!("ch_{id}"),
        email,
        "Ada Lovelace",
        4200,
        now(),
    );
    event["livemode"] = json!(livemode);
    event
}

/// A Stripe account of `p`'s tenant made from `body` (plus a signing secret), as a pipeline
/// whose events go to it.
async fn account(app: &TestApp, p: &Pipeline, body: Value) -> (Pipeline, Value) {
    let secret = format!("whsec_{}", uuid::Uuid::new_v4().simple());
    let mut body = body;
    body["webhook_secret"] = json!(secret);
    let created = app.post("/v1/stripe-accounts", &p.tenant.token, body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let path = created
        .str("/webhook_url")
        .strip_prefix(&app.settings.public_url)
        .expect("webhook URL")
        .to_string();
    let pipeline = Pipeline {
        tenant: p.tenant.clone(),
        connection_id: p.connection_id.clone(),
        account_id: created.str("/id"),
        webhook_path: path,
        secret,
    };
    (pipeline, created.body)
}

/// Asserts a refusal of the event's mode, naming both modes.
fn assert_mode_refused(reply: &Reply, event: &str, account: &str) {
    assert_eq!(
        reply.assert_problem(StatusCode::BAD_REQUEST),
        ["livemode"],
        "{}",
        reply.text
    );
    let detail = reply.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&format!("{event}-mode event"))
            && detail.contains(&format!("in {account} mode")),
        "{detail}"
    );
}

async fn events(app: &TestApp, token: &str) -> Vec<Value> {
    let listed = app.get("/v1/events?limit=100", token).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    listed.body["data"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_live_account_refuses_test_events_and_stores_and_delivers_nothing() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        app.contact_flow(&p, json!({"name": "{{ object.billing_details.name }}"}))
            .await;
        let (live, body) = account(&app, &p, json!({"name": "Live", "secret_key": LIVE_KEY})).await;
        assert_eq!(body["livemode"], true, "{body}");
        let fetched = app
            .get(
                &format!("/v1/stripe-accounts/{}", live.account_id),
                &p.tenant.token,
            )
            .await;
        assert_eq!(fetched.body["livemode"], true);

        let before = metric(&app, REFUSED).await.unwrap_or(0.0);
        let refused = app
            .send_event(&live, &charge(false, "test@example.com"))
            .await;
        assert_mode_refused(&refused, "test", "live");
        assert!(
            metric(&app, REFUSED).await.unwrap_or(0.0) >= before + 1.0,
            "counted as a rejection"
        );
        assert!(
            events(&app, &p.tenant.token).await.is_empty(),
            "stored nowhere"
        );

        // The live event goes through, and only it reaches the CRM.
        let done = app.deliver(&live, &charge(true, "live@example.com")).await;
        assert_eq!(done["status"], "processed", "{done}");
        assert_eq!(done["livemode"], true);
        let contacts = app
            .records(&p.tenant.token, &p.connection_id, "contacts")
            .await;
        let emails: Vec<&str> = contacts
            .iter()
            .filter_map(|c| c["fields"]["email"].as_str())
            .collect();
        assert_eq!(
            emails,
            ["live@example.com"],
            "the refused event wrote nothing: {contacts:?}"
        );
        assert_eq!(events(&app, &p.tenant.token).await.len(), 1);
    })
    .await;
}

#[tokio::test]
async fn a_test_account_refuses_live_events() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        app.allow_mixed_modes(&p.tenant.token, "production").await;
        let (test, body) = account(&app, &p, json!({"name": "Test", "secret_key": TEST_KEY})).await;
        assert_eq!(body["livemode"], false, "{body}");
        let refused = app
            .send_event(&test, &charge(true, "live@example.com"))
            .await;
        assert_mode_refused(&refused, "live", "test");
        assert!(events(&app, &p.tenant.token).await.is_empty());
        let taken = app
            .send_event(&test, &charge(false, "test@example.com"))
            .await;
        assert_eq!(taken.status, StatusCode::OK, "{}", taken.text);
        // A restricted key says its mode the same way.
        let (restricted, body) = account(
            &app,
            &p,
            json!({"name": "R", "secret_key": "rk_live_51HxRestricted99"}),
        )
        .await;
        assert_eq!(body["livemode"], true, "{body}");
        assert_mode_refused(
            &app.send_event(&restricted, &charge(false, "t@example.com"))
                .await,
            "test",
            "live",
        );
    })
    .await;
}

#[tokio::test]
async fn an_account_with_only_a_signing_secret_is_told_its_mode_once() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        app.allow_mixed_modes(&p.tenant.token, "production").await;
        let token = &p.tenant.token;
        let (told, body) = account(&app, &p, json!({"name": "Told", "livemode": true})).await;
        assert_eq!(body["livemode"], true, "{body}");
        assert!(body["secret_key_last4"].is_null());
        assert_mode_refused(
            &app.send_event(&told, &charge(false, "t@example.com")).await,
            "test",
            "live",
        );
        let taken = app.send_event(&told, &charge(true, "l@example.com")).await;
        assert_eq!(taken.status, StatusCode::OK, "{}", taken.text);

        // Not told: unknown, and events of either mode are taken (the pipeline's account).
        let unknown = app
            .get(&format!("/v1/stripe-accounts/{}", p.account_id), token)
            .await;
        assert!(unknown.body["livemode"].is_null(), "{}", unknown.text);
        for livemode in [false, true] {
            let taken = app.send_event(&p, &charge(livemode, "u@example.com")).await;
            assert_eq!(taken.status, StatusCode::OK, "{}", taken.text);
        }
        // Told later, once: then it holds, and never changes.
        let path = format!("/v1/stripe-accounts/{}", p.account_id);
        let set = app.patch(&path, token, json!({"livemode": false})).await;
        assert_eq!(set.status, StatusCode::OK, "{}", set.text);
        assert_eq!(set.body["livemode"], false);
        assert_mode_refused(
            &app.send_event(&p, &charge(true, "u@example.com")).await,
            "live",
            "test",
        );
        let again = app.patch(&path, token, json!({"livemode": false})).await;
        assert_eq!(
            again.status,
            StatusCode::OK,
            "the same mode again changes nothing: {}",
            again.text
        );
        let flip = app.patch(&path, token, json!({"livemode": true})).await;
        assert_eq!(flip.assert_problem(StatusCode::CONFLICT), ["livemode"]);
        let live_key = app
            .patch(&path, token, json!({"secret_key": LIVE_KEY}))
            .await;
        assert_eq!(
            live_key.assert_problem(StatusCode::CONFLICT),
            ["secret_key"]
        );
        assert!(
            live_key.body["detail"]
                .as_str()
                .unwrap()
                .contains("never changes mode"),
            "{}",
            live_key.text
        );
        let test_key = app
            .patch(&path, token, json!({"secret_key": TEST_KEY}))
            .await;
        assert_eq!(test_key.status, StatusCode::OK, "{}", test_key.text);
        assert_eq!(test_key.body["livemode"], false);
        // Clearing the key keeps the mode.
        let cleared = app.patch(&path, token, json!({"secret_key": null})).await;
        assert_eq!(cleared.body["livemode"], false, "{}", cleared.text);
    })
    .await;
}

#[tokio::test]
async fn a_livemode_against_the_key_or_a_key_without_a_mode_is_refused_by_field() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;
        let contradicting = app
            .post(
                "/v1/stripe-accounts",
                token,
                json!({"name": "x", "secret_key": TEST_KEY, "livemode": true}),
            )
            .await;
        assert_eq!(
            contradicting.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
            ["livemode"]
        );
        assert!(
            contradicting.text.contains("test key"),
            "{}",
            contradicting.text
        );
        let agreeing = app
            .post(
                "/v1/stripe-accounts",
                token,
                json!({"name": "x", "secret_key": LIVE_KEY, "livemode": true}),
            )
            .await;
        assert_eq!(agreeing.status, StatusCode::CREATED, "{}", agreeing.text);
        for key in [
            "sk_51HxNoModeAtAll1234",
            "rk_prod_51HxNoMode1234",
            "pk_live_51HxPublishable12",
        ] {
            let refused = app
                .post(
                    "/v1/stripe-accounts",
                    token,
                    json!({"name": "x", "secret_key": key}),
                )
                .await;
            assert_eq!(
                refused.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
                ["secret_key"],
                "{key}"
            );
            assert!(!refused.text.contains(key), "errors never echo a key");
        }
        let path = format!("/v1/stripe-accounts/{}", p.account_id);
        let patched = app
            .patch(
                &path,
                token,
                json!({"secret_key": LIVE_KEY, "livemode": false}),
            )
            .await;
        assert_eq!(
            patched.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
            ["livemode"]
        );
        let no_mode = app
            .patch(
                &path,
                token,
                json!({"secret_key": "sk_51HxNoModeAtAll1234"}),
            )
            .await;
        assert_eq!(
            no_mode.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
            ["secret_key"]
        );
        let unchanged = app.get(&path, token).await;
        assert!(
            unchanged.body["livemode"].is_null() && unchanged.body["secret_key_last4"].is_null(),
            "{}",
            unchanged.text
        );
        let listed = app.get("/v1/stripe-accounts", token).await;
        assert_eq!(
            listed.body["data"].as_array().unwrap().len(),
            2,
            "refused requests wrote nothing"
        );
    })
    .await;
}

#[tokio::test]
async fn test_events_are_test_mode_and_a_live_account_refuses_them() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;
        app.allow_mixed_modes(token, "production").await;
        let (live, _) = account(&app, &p, json!({"name": "Live", "livemode": true})).await;
        let (test, _) = account(&app, &p, json!({"name": "Test", "secret_key": TEST_KEY})).await;
        let send = |account_id: String| {
            let app = &app;
            async move {
                app.post(
                    &format!("/v1/stripe-accounts/{account_id}/test-events"),
                    token,
                    json!({"type": "charge.succeeded"}),
                )
                .await
            }
        };
        for account_id in [&test.account_id, &p.account_id] {
            let sent = send(account_id.clone()).await;
            assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.text);
            let event = app
                .get(&format!("/v1/events/{}", sent.str("/event_id")), token)
                .await;
            assert_eq!(event.body["livemode"], false, "{}", event.text);
            assert_eq!(event.body["payload"]["livemode"], false);
            assert_eq!(event.body["payload"]["data"]["object"]["livemode"], false);
        }
        let before = events(&app, token).await.len();
        let refused = send(live.account_id.clone()).await;
        refused.assert_problem(StatusCode::CONFLICT);
        assert!(refused.text.contains("live mode"), "{}", refused.text);
        assert_eq!(events(&app, token).await.len(), before, "nothing stored");
    })
    .await;
}

/// An account from before modes were kept has `livemode` unknown in its row but a key that
/// says it: reads and the ingress take the key's mode, and the next update writes it down.
#[tokio::test]
async fn an_older_account_takes_its_mode_from_its_key() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let (live, _) = account(&app, &p, json!({"name": "Old", "secret_key": LIVE_KEY})).await;
        // As the migration leaves it: the column unknown, the key sealed.
        stripe_accounts::Entity::update_many()
            .set(stripe_accounts::ActiveModel {
                livemode: Set(None),
                ..Default::default()
            })
            .filter(stripe_accounts::Column::Id.eq(live.account_id.as_str()))
            .exec(&app.db)
            .await
            .unwrap();
        let path = format!("/v1/stripe-accounts/{}", live.account_id);
        let read = app.get(&path, &p.tenant.token).await;
        assert_eq!(read.body["livemode"], true, "{}", read.text);
        assert_mode_refused(
            &app.send_event(&live, &charge(false, "t@example.com")).await,
            "test",
            "live",
        );
        let renamed = app
            .patch(&path, &p.tenant.token, json!({"name": "Old live"}))
            .await;
        assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.text);
        let row = stripe_accounts::Entity::find_by_id(live.account_id.clone())
            .one(&app.db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.livemode, Some(true), "written down by the update");
    })
    .await;
}

#[tokio::test]
async fn a_backfill_skips_and_counts_the_other_modes_events() {
    for backend in backends() {
        // A fake of its own per backend, so each backfill sees only its own events.
        let fake = FakeStripe::start();
        let vars = [
            ("TRIBUTARY_STRIPE_API_URL", fake.base_url.as_str()),
            ("TRIBUTARY_BACKFILL_PAGE_SIZE", "3"),
        ];
        let app = TestApp::spawn_with(backend, &vars).await;
        let cleanup = app.cleanup_handle();
        let p = app.pipeline(json!({})).await;
        app.allow_mixed_modes(&p.tenant.token, "production").await;
        let token = &p.tenant.token;
        let path = format!("/v1/stripe-accounts/{}", p.account_id);
        let patched = app
            .patch(
                &path,
                token,
                json!({"secret_key": SECRET_KEY, "api_version": API_VERSION}),
            )
            .await;
        assert_eq!(patched.body["livemode"], false, "{}", patched.text);
        let start = now() - 3600;
        let mut test_ids = Vec::new();
        for i in 0..7 {
            let livemode = i % 3 == 1;
            let charge = json!({"id": format!("ch_modes{i}"), "object": "charge", "amount": 100,
                "currency": "usd", "billing_details": {"email": null, "name": null},
                "metadata": {}, "created": start + i, "livemode": livemode, "status": "succeeded"});
            let event = FakeStripe::event("charge.succeeded", charge, start + i);
            let id = fake.add_event(event, false);
            if !livemode {
                test_ids.push(id);
            }
        }
        let created = app
            .post(
                &format!("{path}/backfills"),
                token,
                json!({"since": start - 10}),
            )
            .await;
        assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.text);
        let id = created.str("/id");
        let done = wait_for(30, "the backfill to finish", || async {
            let b = app.get(&format!("{path}/backfills/{id}"), token).await;
            matches!(b.body["status"].as_str(), Some("succeeded" | "failed")).then_some(b.body)
        })
        .await;
        assert_eq!(done["status"], "succeeded", "{done}");
        let progress = &done["progress"];
        assert_eq!(progress["events_found"], 7, "{done}");
        assert_eq!(progress["skipped"], 2, "{done}");
        assert_eq!(progress["ingested"], 5, "{done}");
        assert_eq!(progress["failed"], 0, "{done}");
        let mut stored: Vec<String> = events(&app, token)
            .await
            .iter()
            .map(|e| {
                assert_eq!(e["livemode"], false, "{e}");
                e["stripe_event_id"].as_str().unwrap().to_string()
            })
            .collect();
        stored.sort();
        test_ids.sort();
        assert_eq!(stored, test_ids, "only the account's mode was stored");
        fake.stop().await;
        cleanup.run().await;
    }
}

#[tokio::test]
async fn a_signed_event_of_the_other_mode_is_refused_before_anything_else_counts() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let (live, _) = account(&app, &p, json!({"name": "Live", "livemode": true})).await;
        // Unsigned or badly signed, the signature is what fails: the mode is never looked at.
        let body = serde_json::to_vec(&charge(false, "x@example.com")).unwrap();
        let unsigned = app.webhook(&live.webhook_path, &body, None).await;
        assert_eq!(unsigned.status, StatusCode::BAD_REQUEST);
        assert!(
            unsigned.body["errors"]
                .as_array()
                .is_none_or(|e| e.is_empty()),
            "{}",
            unsigned.text
        );
        let wrong = stripe_signature(&body, "whsec_SomeoneElsesSecret000", now());
        let refused = app.webhook(&live.webhook_path, &body, Some(&wrong)).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert!(!refused.text.contains("livemode"), "{}", refused.text);
    })
    .await;
}
