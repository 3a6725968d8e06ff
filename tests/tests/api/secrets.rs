//! Secrets at rest: sealed in the database, bound to their row and tenant, rotatable, and never
//! shown in a response or a log line.

use entity::{stripe_accounts, webhook_secrets};
use reqwest::StatusCode;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use secrecy::ExposeSecret;
use serde_json::json;
use tributary_api::commands::rotate_keys;
use tributary_tests::{TEST_KEYRING, each_backend};
use tributary_worker::sealed;
use tributary_worker::secrets::{Keyring, SecretContext};

const K2: &str = "k2:QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk=";

#[tokio::test]
async fn secrets_never_leave_in_responses_logs_or_the_database() {
    each_backend(|app| async move {
        let tenant = app.signup("Leaks").await;
        let secret_key = format!("sk_live_{}", uuid::Uuid::new_v4().simple());
        let signing = format!("whsec_{}", uuid::Uuid::new_v4().simple());
        let second = format!("whsec_{}", uuid::Uuid::new_v4().simple());
        let mut texts = Vec::new();
        let created = app
            .post(
                "/v1/stripe-accounts",
                &tenant.token,
                json!({"name": "L", "secret_key": secret_key, "webhook_secret": signing}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED);
        let id = created.str("/id");
        texts.push(created.text.clone());
        texts.push(
            app.post(
                &format!("/v1/stripe-accounts/{id}/webhook-secrets"),
                &tenant.token,
                json!({"secret": second}),
            )
            .await
            .text,
        );
        texts.push(
            app.get(&format!("/v1/stripe-accounts/{id}"), &tenant.token)
                .await
                .text,
        );
        texts.push(app.get("/v1/stripe-accounts", &tenant.token).await.text);
        texts.push(
            app.patch(
                &format!("/v1/stripe-accounts/{id}"),
                &tenant.token,
                json!({"name": "L2"}),
            )
            .await
            .text,
        );
        texts.push(app.get("/v1/audit-log", &tenant.token).await.text);
        let (_, api_key) = app.api_key(&tenant, "admin").await;
        texts.push(app.get("/v1/api-keys", &tenant.token).await.text);

        let logs = tributary_tests::captured_logs();
        assert!(
            logs.contains("request"),
            "the app logs requests, so the check below means something"
        );
        for secret in [
            &secret_key,
            &signing,
            &second,
            &api_key,
            &tenant.refresh_token,
            &tenant.token,
        ] {
            assert!(!logs.contains(secret.as_str()), "a secret reached the log");
            for text in &texts {
                assert!(
                    !text.contains(secret.as_str()),
                    "a secret reached a response: {text}"
                );
            }
        }
        assert!(!logs.contains(tributary_tests::PASSWORD));

        let row = stripe_accounts::Entity::find_by_id(id.clone())
            .one(&app.db)
            .await
            .unwrap()
            .unwrap();
        let sealed = row.secret_key.clone().unwrap();
        assert!(sealed.starts_with("k1:") && !sealed.contains(&secret_key));
        assert!(
            !format!("{row:?}").contains(&sealed),
            "Debug of a row omits the ciphertext too"
        );
        let keyring = Keyring::parse(TEST_KEYRING).unwrap();
        let context = SecretContext {
            tenant_id: &tenant.id,
            purpose: sealed::STRIPE_SECRET_KEY,
            row_id: &id,
        };
        assert_eq!(
            keyring.open(&sealed, &context).unwrap().expose_secret(),
            secret_key
        );
    })
    .await;
}

#[tokio::test]
async fn a_ciphertext_moved_to_another_tenants_row_does_not_open() {
    each_backend(|app| async move {
        let a = app.signup("A").await;
        let b = app.signup("B").await;
        let a_account = app
            .post(
                "/v1/stripe-accounts",
                &a.token,
                json!({"name": "A", "secret_key": "sk_live_AAAAAAAAAAAA1111"}),
            )
            .await
            .str("/id");
        let b_account = app
            .post(
                "/v1/stripe-accounts",
                &b.token,
                json!({"name": "B", "secret_key": "sk_live_BBBBBBBBBBBB2222"}),
            )
            .await
            .str("/id");

        let a_row = stripe_accounts::Entity::find_by_id(a_account.clone())
            .one(&app.db)
            .await
            .unwrap()
            .unwrap();
        let b_row = stripe_accounts::Entity::find_by_id(b_account.clone())
            .one(&app.db)
            .await
            .unwrap()
            .unwrap();
        let mut moved: stripe_accounts::ActiveModel = b_row.into();
        moved.secret_key = Set(a_row.secret_key.clone());
        let moved = moved.update(&app.db).await.unwrap();

        let keyring = Keyring::parse(TEST_KEYRING).unwrap();
        let context = SecretContext {
            tenant_id: &b.id,
            purpose: sealed::STRIPE_SECRET_KEY,
            row_id: &b_account,
        };
        assert!(
            keyring
                .open(moved.secret_key.as_deref().unwrap(), &context)
                .is_err()
        );

        // Rotation refuses to launder it, names the row, and changes nothing.
        let rotating = Keyring::parse(&format!("{K2},{TEST_KEYRING}")).unwrap();
        let err = rotate_keys(&app.db, &rotating).await.unwrap_err();
        assert!(format!("{err:#}").contains(&b_account), "{err:#}");
        let a_after = stripe_accounts::Entity::find_by_id(a_account)
            .one(&app.db)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            a_after.secret_key, a_row.secret_key,
            "the failed rotation rolled back"
        );
    })
    .await;
}

#[tokio::test]
async fn rotation_reseals_everything_and_old_keys_can_then_go() {
    each_backend(|app| async move {
        let tenant = app.signup("Rotation").await;
        let mut originals = Vec::new();
        for i in 0..3 {
            let key = format!("sk_live_rotation{i}abcdefgh");
            let signing = format!("whsec_rotation{i}abcdefgh");
            app.post(
                "/v1/stripe-accounts",
                &tenant.token,
                json!({"name": format!("R{i}"), "secret_key": key, "webhook_secret": signing}),
            )
            .await;
            originals.push((key, signing));
        }
        // CRM credentials and a notification channel's URL and secret are rotated too.
        let crm = app
            .post(
                "/v1/connections",
                &tenant.token,
                json!({"name": "CRM", "provider": "http", "auth": {"type": "token", "token": "crm-token-rotation"},
                       "settings": {"base_url": "https://crm.example.com"}}),
            )
            .await;
        assert_eq!(crm.status, StatusCode::CREATED, "{}", crm.text);
        let channel = app
            .post(
                "/v1/notification-channels",
                &tenant.token,
                json!({"name": "Hook", "kind": "webhook", "url": "https://ops.example.com/hook?k=rotation"}),
            )
            .await;
        assert_eq!(channel.status, StatusCode::CREATED, "{}", channel.text);
        let channel_secret = channel.str("/secret");

        // Before rotation, a keyring without k1 fails loudly, naming the missing key.
        let only_new = Keyring::parse(K2).unwrap();
        let err = rotate_keys(&app.db, &only_new).await.unwrap_err();
        assert!(format!("{err:#}").contains("'k1'"), "{err:#}");

        let both = Keyring::parse(&format!("{K2},{TEST_KEYRING}")).unwrap();
        let report = rotate_keys(&app.db, &both).await.unwrap();
        assert_eq!((report.resealed, report.current), (9, 0));
        let again = rotate_keys(&app.db, &both).await.unwrap();
        assert_eq!(
            (again.resealed, again.current),
            (0, 9),
            "rotation is idempotent"
        );

        // Now k1 can be removed: every secret opens with k2 alone and is what was stored.
        let mut opened = Vec::new();
        for account in stripe_accounts::Entity::find().all(&app.db).await.unwrap() {
            let sealed = account.secret_key.clone().unwrap();
            assert!(sealed.starts_with("k2:"));
            let ctx = SecretContext {
                tenant_id: &account.tenant_id,
                purpose: sealed::STRIPE_SECRET_KEY,
                row_id: &account.id,
            };
            opened.push(
                only_new
                    .open(&sealed, &ctx)
                    .unwrap()
                    .expose_secret()
                    .to_string(),
            );
        }
        for secret in webhook_secrets::Entity::find().all(&app.db).await.unwrap() {
            let ctx = SecretContext {
                tenant_id: &secret.tenant_id,
                purpose: sealed::WEBHOOK_SECRET,
                row_id: &secret.id,
            };
            opened.push(
                only_new
                    .open(&secret.secret, &ctx)
                    .unwrap()
                    .expose_secret()
                    .to_string(),
            );
        }
        for (key, signing) in &originals {
            assert!(opened.contains(key) && opened.contains(signing));
        }
        let connection = entity::connections::Entity::find_by_id(crm.str("/id"))
            .one(&app.db)
            .await
            .unwrap()
            .unwrap();
        let credentials =
            tributary_worker::crm::session::open_credentials(&only_new, &connection).unwrap();
        assert!(
            serde_json::to_string(&credentials)
                .unwrap()
                .contains("crm-token-rotation")
        );
        let stored = entity::notification_channels::Entity::find_by_id(channel.str("/id"))
            .one(&app.db)
            .await
            .unwrap()
            .unwrap();
        let ctx = |purpose| SecretContext {
            tenant_id: &stored.tenant_id,
            purpose,
            row_id: &stored.id,
        };
        let url = only_new.open(&stored.url, &ctx(sealed::CHANNEL_URL)).unwrap();
        assert_eq!(url.expose_secret(), "https://ops.example.com/hook?k=rotation");
        let secret = only_new
            .open(stored.secret.as_deref().unwrap(), &ctx(sealed::CHANNEL_SECRET))
            .unwrap();
        assert_eq!(secret.expose_secret(), channel_secret);
    })
    .await;
}

/// Every table and text column, and the values in it sealed under the key `key_id`, as
/// (table, column) pairs: a value is taken as sealed when it is `key_id:` and base64 of at least
/// a nonce and a tag.
async fn columns_sealed_under(
    db: &sea_orm::DatabaseConnection,
    key_id: &str,
) -> std::collections::BTreeSet<(String, String)> {
    use base64::Engine;
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let backend = db.get_database_backend();
    let raw = |sql: String| Statement::from_string(backend, sql);
    let mut columns = Vec::new();
    if backend == DbBackend::Postgres {
        for row in db
            .query_all_raw(raw(
                "SELECT table_name::text AS t, column_name::text AS c FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND data_type IN ('text', 'character varying')"
                    .into(),
            ))
            .await
            .unwrap()
        {
            columns.push((row.try_get::<String>("", "t").unwrap(), row.try_get::<String>("", "c").unwrap()));
        }
    } else {
        for table in db
            .query_all_raw(raw(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
                    .into(),
            ))
            .await
            .unwrap()
        {
            let table: String = table.try_get("", "name").unwrap();
            for column in db
                .query_all_raw(raw(format!("PRAGMA table_info(\"{table}\")")))
                .await
                .unwrap()
            {
                let kind: String = column.try_get("", "type").unwrap();
                let kind = kind.to_ascii_lowercase();
                if kind.contains("text") || kind.contains("char") {
                    columns.push((table.clone(), column.try_get::<String>("", "name").unwrap()));
                }
            }
        }
    }
    assert!(
        columns.len() > 50,
        "only {} text columns found",
        columns.len()
    );
    let mut found = std::collections::BTreeSet::new();
    for (table, column) in columns {
        let values = db
            .query_all_raw(raw(format!(
                "SELECT \"{column}\" AS v FROM \"{table}\" WHERE \"{column}\" LIKE '{key_id}:%'"
            )))
            .await
            .unwrap();
        for value in values {
            let value: String = value.try_get("", "v").unwrap();
            let blob = value.split_once(':').map(|(_, b)| b).unwrap_or_default();
            let decoded = base64::engine::general_purpose::STANDARD.decode(blob);
            if decoded.is_ok_and(|bytes| bytes.len() >= 28) {
                found.insert((table.clone(), column.clone()));
            }
        }
    }
    found
}

/// The registry of sealed columns is complete: with one of every kind of secret stored, every
/// text column of every table is searched for values sealed under k1. Each column found must be
/// in the registry (`tributary_worker::sealed`), every registered column must turn up, and after
/// `rotate-keys` no value sealed under k1 is left anywhere — a new sealed column left out of the
/// registry fails here.
#[tokio::test]
async fn every_sealed_column_is_registered() {
    each_backend(|app| async move {
        let k1 = Keyring::parse(TEST_KEYRING).unwrap();
        // A Stripe key and a signing secret; a connection's credentials.
        let p = app.pipeline(json!({})).await;
        let token = p.tenant.token.clone();
        let account = app
            .post(
                "/v1/stripe-accounts",
                &token,
                json!({"name": "Keyed", "secret_key": "sk_live_registryabcdefgh", "webhook_secret": "whsec_registryabcdefgh"}),
            )
            .await;
        assert_eq!(account.status, StatusCode::CREATED, "{}", account.text);
        let crm = app
            .post(
                "/v1/connections",
                &token,
                json!({"name": "CRM", "provider": "http", "auth": {"type": "token", "token": "crm-token-registry"},
                       "settings": {"base_url": "https://crm.example.com"}}),
            )
            .await;
        assert_eq!(crm.status, StatusCode::CREATED, "{}", crm.text);
        // An event seed: a flow that generates a password seals one for its event.
        let flow = json!({"name": "Portal", "connection_id": p.connection_id,
            "trigger": {"events": ["charge.succeeded"]},
            "steps": [{"id": "contact", "action": "upsert", "object": "contacts",
                       "match": {"email": "{{ object.billing_details.email }}"},
                       "fields": {"portal_password": "{{ password('portal') }}"}}]});
        let created = app.post("/v1/flows", &token, flow).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let id = uuid::Uuid::new_v4().simple().to_string();
        let event = tributary_tests::charge_event(
            &format!("evt_{id}"),
            &format!("ch_{id}"),
            "registry@example.com",
            "Registry",
            100,
            chrono::Utc::now().timestamp(),
        );
        assert_eq!(app.deliver(&p, &event).await["status"], "processed");
        // A PKCE verifier: a Zoho connection waiting for its authorization; and a session,
        // sealed as the app seals one, on it.
        let zoho = app
            .post(
                "/v1/connections",
                &token,
                json!({"name": "Zoho", "provider": "zoho",
                       "auth": {"type": "oauth", "client_id": "1000.REGISTRY", "client_secret": "registry-client-secret"},
                       "settings": {"accounts_url": "https://accounts.zoho.example"}}),
            )
            .await;
        assert_eq!(zoho.status, StatusCode::CREATED, "{}", zoho.text);
        let zoho_id = zoho.str("/id");
        let session = k1.seal(
            r#"{"access_token":"1000.registry-access","expires_at":4102444800}"#,
            &SecretContext {
                tenant_id: &p.tenant.id,
                purpose: sealed::CONNECTION_SESSION,
                row_id: &zoho_id,
            },
        );
        entity::connections::Entity::update_many()
            .col_expr(
                entity::connections::Column::Session,
                sea_orm::sea_query::Expr::value(session),
            )
            .filter(entity::connections::Column::Id.eq(zoho_id.as_str()))
            .exec(&app.db)
            .await
            .unwrap();
        // A notification channel's URL and secret, created with an Idempotency-Key, so its
        // answer (which shows the secret once) is kept.
        let channel = app
            .client
            .post(app.url("/v1/notification-channels"))
            .bearer_auth(&token)
            .header("Idempotency-Key", "registry-1")
            .json(&json!({"name": "Hook", "kind": "webhook", "url": "https://ops.example.com/hook?k=registry"}))
            .send()
            .await
            .unwrap();
        assert_eq!(channel.status(), StatusCode::CREATED);

        let registered: std::collections::BTreeSet<(String, String)> = sealed::SEALED_COLUMNS
            .iter()
            .map(|c| (c.table.to_string(), c.column.to_string()))
            .collect();
        let found = columns_sealed_under(&app.db, "k1").await;
        let unregistered: Vec<_> = found.difference(&registered).collect();
        assert!(
            unregistered.is_empty(),
            "sealed values in columns missing from the registry: {unregistered:?}"
        );
        let absent: Vec<_> = registered.difference(&found).collect();
        assert!(
            absent.is_empty(),
            "registered columns this test stored nothing sealed in: {absent:?}"
        );

        let both = Keyring::parse(&format!("{K2},{TEST_KEYRING}")).unwrap();
        let report = rotate_keys(&app.db, &both).await.unwrap();
        assert!(report.resealed >= registered.len(), "{report:?}");
        let left = columns_sealed_under(&app.db, "k1").await;
        assert!(left.is_empty(), "still sealed under k1 after rotation: {left:?}");
        assert_eq!(columns_sealed_under(&app.db, "k2").await, found);
    })
    .await;
}
