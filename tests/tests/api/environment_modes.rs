//! Mode safety per environment: `production` takes live-mode Stripe accounts and every other
//! environment test-mode ones, unless the tenant lets it hold both (`mixed_modes`); test events
//! are test-mode events, so a live account refuses them. Together: a test-mode event never
//! reaches a production CRM.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tributary_fakes::hubspot::{self, FakeHubSpot};
use tributary_tests::{Pipeline, Reply, Tenant, TestApp, charge_event, each_backend};

const LIVE_KEY: &str = "sk_live_51HxTributaryEnvModesLive12";
const TEST_KEY: &str = "sk_test_51HxTributaryEnvModesTest12";

/// An admin API key bound to `environment`: requests with it act there.
async fn key_in(app: &TestApp, owner: &Tenant, environment: &str) -> String {
    let made = app
        .post(
            "/v1/environments",
            &owner.token,
            json!({"name": environment}),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    let key = app
        .post(
            "/v1/api-keys",
            &owner.token,
            json!({"name": environment, "role": "admin", "environment": environment}),
        )
        .await;
    assert_eq!(key.status, StatusCode::CREATED, "{}", key.text);
    key.str("/key")
}

/// `PATCH /v1/environments/{environment} {"mixed_modes": on}`.
async fn mixed(app: &TestApp, token: &str, environment: &str, on: bool) -> Reply {
    app.patch(
        &format!("/v1/environments/{environment}"),
        token,
        json!({"mixed_modes": on}),
    )
    .await
}

async fn register(app: &TestApp, token: &str, body: Value) -> Reply {
    app.post("/v1/stripe-accounts", token, body).await
}

/// Asserts a 409 naming `field` that says how to opt in.
fn assert_other_mode(reply: &Reply, field: &str) {
    assert_eq!(
        reply.assert_problem(StatusCode::CONFLICT),
        [field],
        "{}",
        reply.text
    );
    let detail = reply.body["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("\"mixed_modes\": true"), "{detail}");
}

async fn account_names(app: &TestApp, token: &str) -> Vec<String> {
    let listed = app.get("/v1/stripe-accounts", token).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    listed.body["data"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| a["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn production_takes_live_accounts_and_the_others_test_ones() {
    each_backend(|app| async move {
        let owner = app.signup("Modes").await;
        let token = &owner.token;
        let staging = key_in(&app, &owner, "staging").await;

        // Production refuses a test-mode account, by key or by word, and keeps nothing.
        let by_key = register(&app, token, json!({"name": "T", "secret_key": TEST_KEY})).await;
        assert_other_mode(&by_key, "secret_key");
        let by_word = register(
            &app,
            token,
            json!({"name": "T", "webhook_secret": "whsec_envmodes_secret", "livemode": false}),
        )
        .await;
        assert_other_mode(&by_word, "livemode");
        assert!(account_names(&app, token).await.is_empty());
        // Staging refuses a live one and takes a test one.
        assert_other_mode(
            &register(&app, &staging, json!({"name": "L", "secret_key": LIVE_KEY})).await,
            "secret_key",
        );
        let test = register(
            &app,
            &staging,
            json!({"name": "Test", "secret_key": TEST_KEY}),
        )
        .await;
        assert_eq!(test.status, StatusCode::CREATED, "{}", test.text);
        assert_eq!(account_names(&app, &staging).await, ["Test"]);

        // An account of unknown mode is taken, but cannot be told it is a test one later.
        let unknown = register(
            &app,
            token,
            json!({"name": "Unknown", "webhook_secret": "whsec_envmodes_secret"}),
        )
        .await;
        assert_eq!(unknown.status, StatusCode::CREATED, "{}", unknown.text);
        let path = format!("/v1/stripe-accounts/{}", unknown.str("/id"));
        assert_other_mode(
            &app.patch(&path, token, json!({"livemode": false})).await,
            "livemode",
        );
        assert_other_mode(
            &app.patch(&path, token, json!({"secret_key": TEST_KEY}))
                .await,
            "secret_key",
        );
        assert!(app.get(&path, token).await.body["livemode"].is_null());
    })
    .await;
}

#[tokio::test]
async fn an_environment_opts_in_to_both_modes_and_out_only_when_it_holds_no_other() {
    each_backend(|app| async move {
        let owner = app.signup("Opt in").await;
        let token = &owner.token;
        key_in(&app, &owner, "staging").await;

        // The environments say their mode.
        let listed = app.get("/v1/environments", token).await;
        let modes: Vec<(Value, Value, Value)> = listed.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["name"].clone(),
                    e["livemode"].clone(),
                    e["mixed_modes"].clone(),
                )
            })
            .collect();
        assert_eq!(
            modes,
            [
                (json!("production"), json!(true), json!(false)),
                (json!("staging"), json!(false), json!(false))
            ],
            "{}",
            listed.text
        );

        // Only an admin opts in; then production holds a test account too.
        let (_, member) = app.user_with_role(&owner, "member").await;
        mixed(&app, &member, "production", true)
            .await
            .assert_problem(StatusCode::FORBIDDEN);
        let opted = mixed(&app, token, "production", true).await;
        assert_eq!(opted.status, StatusCode::OK, "{}", opted.text);
        assert_eq!(opted.body["mixed_modes"], true);
        let taken = register(
            &app,
            token,
            json!({"name": "Test here", "secret_key": TEST_KEY}),
        )
        .await;
        assert_eq!(taken.status, StatusCode::CREATED, "{}", taken.text);
        assert_eq!(taken.body["livemode"], false);

        // Opting out again is refused while it holds one, which the answer names.
        let out = mixed(&app, token, "production", false).await;
        assert_eq!(
            out.assert_problem(StatusCode::CONFLICT),
            ["mixed_modes"],
            "{}",
            out.text
        );
        assert!(out.text.contains("Test here"), "{}", out.text);
        let gone = app
            .delete(&format!("/v1/stripe-accounts/{}", taken.str("/id")), token)
            .await;
        assert_eq!(gone.status, StatusCode::NO_CONTENT, "{}", gone.text);
        let out = mixed(&app, token, "production", false).await;
        assert_eq!(out.status, StatusCode::OK, "{}", out.text);
        assert_eq!(out.body["mixed_modes"], false);
        let audit = app.get("/v1/audit-log", token).await;
        for action in ["environment.mixed_modes.on", "environment.mixed_modes.off"] {
            assert!(audit.text.contains(action), "{action}: {}", audit.text);
        }
        mixed(&app, token, "nowhere", true)
            .await
            .assert_problem(StatusCode::NOT_FOUND);
    })
    .await;
}

/// A charge event of a mode, with ids of its own.
fn charge(livemode: bool, email: &str) -> Value {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let now = chrono::Utc::now().timestamp();
    let mut event = charge_event(
        &format!("evt_{id}"),
        &format!("ch_{id}"),
        email,
        "Ada L",
        4200,
        now,
    );
    event["livemode"] = json!(livemode);
    event
}

#[tokio::test]
async fn a_test_mode_event_never_reaches_a_production_crm() {
    each_backend(|app| async move {
        let fake = FakeHubSpot::start();
        let owner = app.signup("Safe").await;
        let token = &owner.token;
        // Production: a HubSpot connection, a flow to it, and a live account.
        let crm = app
            .post(
                "/v1/connections",
                token,
                json!({"name": "HubSpot", "provider": "hubspot",
                       "auth": {"type": "token", "token": hubspot::PRIVATE_APP_TOKEN},
                       "settings": {"base_url": fake.base_url}}),
            )
            .await;
        assert_eq!(crm.status, StatusCode::CREATED, "{}", crm.text);
        let flow = |connection_id: &str| {
            json!({"name": "Contacts", "connection_id": connection_id,
                   "trigger": {"events": ["charge.succeeded"]},
                   "steps": [{"id": "contact", "action": "upsert", "object": "contacts",
                              "match": {"email": "{{ object.billing_details.email | lower }}"},
                              "fields": {"firstname": "{{ object.billing_details.name | first_name }}"}}]})
        };
        let made = app.post("/v1/flows", token, flow(&crm.str("/id"))).await;
        assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
        let live_secret = "whsec_envmodes_live_secret";
        let live = register(
            &app,
            token,
            json!({"name": "Live", "secret_key": LIVE_KEY, "webhook_secret": live_secret}),
        )
        .await;
        assert_eq!(live.status, StatusCode::CREATED, "{}", live.text);
        let live = Pipeline {
            tenant: owner.clone(),
            connection_id: crm.str("/id"),
            account_id: live.str("/id"),
            webhook_path: live
                .str("/webhook_url")
                .strip_prefix(&app.settings.public_url)
                .unwrap()
                .to_string(),
            secret: live_secret.into(),
        };

        // Development: its own sandbox CRM, a flow to it, and the test account.
        let dev = key_in(&app, &owner, "development").await;
        let sandbox = app.get("/v1/connections", &dev).await.body["data"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let made = app.post("/v1/flows", &dev, flow(&sandbox)).await;
        assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
        let test = register(
            &app,
            &dev,
            json!({"name": "Test", "secret_key": TEST_KEY, "webhook_secret": "whsec_envmodes_dev_secret"}),
        )
        .await;
        assert_eq!(test.status, StatusCode::CREATED, "{}", test.text);
        let test_events = |account: &str| format!("/v1/stripe-accounts/{account}/test-events?wait=10");

        // Every way a test-mode event could come to production is closed.
        let signed = app.send_event(&live, &charge(false, "test@example.com")).await;
        assert_eq!(signed.assert_problem(StatusCode::BAD_REQUEST), ["livemode"]);
        let sent = app
            .post(&test_events(&live.account_id), token, json!({"type": "charge.succeeded"}))
            .await;
        sent.assert_problem(StatusCode::CONFLICT);
        assert!(sent.text.contains("live mode"), "{}", sent.text);
        assert_other_mode(
            &register(&app, token, json!({"name": "T", "secret_key": TEST_KEY})).await,
            "secret_key",
        );
        // In development the test event runs development's flow on its sandbox.
        let sent = app
            .post(&test_events(&test.str("/id")), &dev, json!({"type": "charge.succeeded"}))
            .await;
        assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.text);
        assert_eq!(sent.body["status"], "processed", "{}", sent.text);
        let event = app
            .get(&format!("/v1/events/{}", sent.str("/event_id")), &dev)
            .await;
        assert_eq!(event.body["livemode"], false, "{}", event.text);
        assert_eq!(app.records(&dev, &sandbox, "contacts").await.len(), 1);
        assert!(
            fake.records("contacts").is_empty(),
            "no test-mode event reached production's HubSpot"
        );

        // A live event does reach it.
        let done = app.deliver(&live, &charge(true, "live@example.com")).await;
        assert_eq!(done["status"], "processed", "{done}");
        let written: Vec<String> = fake
            .records("contacts")
            .iter()
            .map(|r| r.properties["email"].as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(written, ["live@example.com"]);
    })
    .await;
}

/// Turning `mixed_modes` off while an account of the other mode is being added: one waits for
/// the other, so the environment never ends up refusing other-mode accounts while holding one.
/// The test holds the environment's row in a write transaction of its own, as a PATCH turning
/// it off does, and turns it off there while the account is being created.
#[tokio::test]
async fn an_account_of_the_other_mode_waits_for_mixed_modes_being_turned_off() {
    use sea_orm::{ActiveModelTrait, EntityTrait, QuerySelect, Set};
    each_backend(|app| async move {
        let owner = app.signup("Both Modes At Once").await;
        let token = &owner.token;
        let on = mixed(&app, token, "production", true).await;
        assert_eq!(on.status, StatusCode::OK, "{}", on.text);

        let txn = tributary_worker::db::begin_write(&app.db).await.unwrap();
        let row = entity::tenants::Entity::find_by_id(owner.id.clone())
            .lock_exclusive()
            .one(&txn)
            .await
            .unwrap()
            .expect("the production environment's row");
        let turn_off = async {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            let mut active: entity::tenants::ActiveModel = row.into();
            active.mixed_modes = Set(false);
            active.update(&txn).await.unwrap();
            txn.commit().await.unwrap();
        };
        let test_mode = json!({"name": "Test mode", "livemode": false});
        let (created, ()) = tokio::join!(register(&app, token, test_mode), turn_off);
        assert_other_mode(&created, "livemode");
        assert!(account_names(&app, token).await.is_empty());
    })
    .await;
}
