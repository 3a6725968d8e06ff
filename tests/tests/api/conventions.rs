//! Request conventions client authors expect: `Idempotency-Key` on POSTs, `ETag` with
//! `If-Match` / `If-None-Match`, and `Location` on every 201.

use entity::idempotency_keys;
use reqwest::StatusCode;
use reqwest::header::HeaderValue;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set};
use serde_json::{Value, json};
use tributary_tests::{Reply, TestApp, each_backend};

use crate::stripe_accounts::SIGNING_SECRET;

async fn post_with_key(app: &TestApp, path: &str, token: &str, key: &str, body: &Value) -> Reply {
    let request = app
        .client
        .post(app.url(path))
        .bearer_auth(token)
        .header("idempotency-key", key)
        .json(body);
    Reply::read(request.send().await.unwrap()).await
}

async fn count(app: &TestApp, path: &str, token: &str) -> usize {
    let listed = app.get(path, token).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    listed.body["data"].as_array().unwrap().len()
}

fn replayed(reply: &Reply) -> bool {
    reply
        .headers
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true")
}

#[tokio::test]
async fn a_retried_create_gets_the_first_answer_and_makes_one_resource() {
    each_backend(|app| async move {
        let tenant = app.signup("Retries").await;
        let token = &tenant.token;
        let key = uuid::Uuid::new_v4().to_string();
        let sandbox = json!({"name": "Sandbox", "provider": "sandbox"});

        let first = post_with_key(&app, "/v1/connections", token, &key, &sandbox).await;
        assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
        assert!(!replayed(&first));
        let again = post_with_key(&app, "/v1/connections", token, &key, &sandbox).await;
        assert_eq!(again.status, StatusCode::CREATED, "{}", again.text);
        assert!(replayed(&again), "{:?}", again.headers);
        assert_eq!(again.str("/id"), first.str("/id"));
        assert_eq!(again.text, first.text);
        assert_eq!(again.headers["location"], first.headers["location"]);
        assert_eq!(
            count(&app, "/v1/connections", token).await,
            1,
            "one connection, not two"
        );

        // The same key with another body, or for another request: refused, naming the header.
        let other_body = post_with_key(
            &app,
            "/v1/connections",
            token,
            &key,
            &json!({"name": "Other", "provider": "sandbox"}),
        )
        .await;
        assert_eq!(
            other_body.assert_problem(StatusCode::CONFLICT),
            vec!["Idempotency-Key"]
        );
        let other_path = post_with_key(
            &app,
            "/v1/stripe-accounts",
            token,
            &key,
            &json!({"name": "Acct"}),
        )
        .await;
        assert_eq!(
            other_path.assert_problem(StatusCode::CONFLICT),
            vec!["Idempotency-Key"]
        );
        assert!(
            other_path.text.contains("POST /v1/connections"),
            "{}",
            other_path.text
        );
        assert_eq!(count(&app, "/v1/connections", token).await, 1);
        assert_eq!(count(&app, "/v1/stripe-accounts", token).await, 0);

        // Keys belong to their caller: another tenant, or another key of this tenant, with the
        // same key runs its own request.
        let stranger = app.signup("Stranger").await;
        let theirs = post_with_key(&app, "/v1/connections", &stranger.token, &key, &sandbox).await;
        assert_eq!(theirs.status, StatusCode::CREATED, "{}", theirs.text);
        assert!(!replayed(&theirs));
        assert_ne!(theirs.str("/id"), first.str("/id"));
        assert_eq!(count(&app, "/v1/connections", &stranger.token).await, 1);
        let (_, api_key) = app.api_key(&tenant, "admin").await;
        let machine = post_with_key(&app, "/v1/connections", &api_key, &key, &sandbox).await;
        assert_eq!(machine.status, StatusCode::CREATED, "{}", machine.text);
        assert_ne!(machine.str("/id"), first.str("/id"));

        // A refusal the same request would get again is kept; one that may clear is not.
        let invalid = json!({"name": "", "provider": "sandbox"});
        let bad_key = uuid::Uuid::new_v4().to_string();
        let refused = post_with_key(&app, "/v1/connections", token, &bad_key, &invalid).await;
        assert_eq!(
            refused.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
            vec!["name"]
        );
        let refused_again = post_with_key(&app, "/v1/connections", token, &bad_key, &invalid).await;
        assert_eq!(refused_again.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(replayed(&refused_again));
        let member_key = uuid::Uuid::new_v4().to_string();
        let (_, member) = app.user_with_role(&tenant, "member").await;
        let forbidden =
            post_with_key(&app, "/v1/connections", &member, &member_key, &sandbox).await;
        forbidden.assert_problem(StatusCode::FORBIDDEN);
        let forbidden_again =
            post_with_key(&app, "/v1/connections", &member, &member_key, &sandbox).await;
        forbidden_again.assert_problem(StatusCode::FORBIDDEN);
        assert!(
            !replayed(&forbidden_again),
            "a 403 is not kept: the role may change"
        );
    })
    .await;
}

#[tokio::test]
async fn a_secret_shown_once_is_replayed_to_its_caller_and_stored_sealed() {
    each_backend(|app| async move {
        let tenant = app.signup("Keys").await;
        let key = uuid::Uuid::new_v4().to_string();
        let body = json!({"name": "CI", "role": "member"});
        let first = post_with_key(&app, "/v1/api-keys", &tenant.token, &key, &body).await;
        assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
        let secret = first.str("/key");
        let again = post_with_key(&app, "/v1/api-keys", &tenant.token, &key, &body).await;
        assert!(replayed(&again));
        assert_eq!(
            again.str("/key"),
            secret,
            "the caller who lost the answer gets it again"
        );
        assert_eq!(count(&app, "/v1/api-keys", &tenant.token).await, 1);
        let rows = idempotency_keys::Entity::find()
            .filter(idempotency_keys::Column::TenantId.eq(tenant.id.as_str()))
            .all(&app.db)
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        let stored = format!("{rows:?}");
        assert!(!stored.contains(&secret), "the kept answer is sealed");

        // After its day the key is free again, and retention prunes it.
        let past = chrono::Utc::now() - chrono::Duration::hours(25);
        let mut expired: idempotency_keys::ActiveModel = rows[0].clone().into();
        expired.expires_at = Set(past);
        idempotency_keys::Entity::update(expired)
            .exec(&app.db)
            .await
            .unwrap();
        let fresh = post_with_key(
            &app,
            "/v1/api-keys",
            &tenant.token,
            &key,
            &json!({"name": "CI 2", "role": "member"}),
        )
        .await;
        assert_eq!(fresh.status, StatusCode::CREATED, "{}", fresh.text);
        assert!(!replayed(&fresh));
        let row = idempotency_keys::Entity::find()
            .filter(idempotency_keys::Column::TenantId.eq(tenant.id.as_str()))
            .one(&app.db)
            .await
            .unwrap()
            .unwrap();
        let mut expired: idempotency_keys::ActiveModel = row.into();
        expired.expires_at = Set(past);
        idempotency_keys::Entity::update(expired)
            .exec(&app.db)
            .await
            .unwrap();
        let long_ago = chrono::Utc::now() - chrono::Duration::days(3650);
        let pruned = tributary_worker::retention::prune(&app.db, long_ago, long_ago)
            .await
            .unwrap();
        assert_eq!(pruned.idempotency_keys, 1);
        let left = idempotency_keys::Entity::find().all(&app.db).await.unwrap();
        assert!(left.is_empty(), "{left:?}");
    })
    .await;
}

#[tokio::test]
async fn concurrent_requests_with_one_key_make_one_resource() {
    each_backend(|app| async move {
        let tenant = app.signup("Racing").await;
        let key = uuid::Uuid::new_v4().to_string();
        let body = json!({"name": "Raced", "provider": "sandbox"});
        let replies = futures::future::join_all(
            (0..6).map(|_| post_with_key(&app, "/v1/connections", &tenant.token, &key, &body)),
        )
        .await;
        let mut ids = Vec::new();
        for reply in &replies {
            match reply.status {
                StatusCode::CREATED => ids.push(reply.str("/id")),
                StatusCode::CONFLICT => {
                    reply.assert_problem(StatusCode::CONFLICT);
                    assert!(reply.text.contains("Idempotency-Key"), "{}", reply.text);
                    assert!(
                        reply.headers.contains_key("retry-after"),
                        "{:?}",
                        reply.headers
                    );
                }
                other => panic!("unexpected {other}: {}", reply.text),
            }
        }
        assert!(!ids.is_empty(), "one of them ran");
        ids.dedup();
        assert_eq!(
            ids.len(),
            1,
            "every success is the same connection: {ids:?}"
        );
        assert_eq!(count(&app, "/v1/connections", &tenant.token).await, 1);
        let later = post_with_key(&app, "/v1/connections", &tenant.token, &key, &body).await;
        assert_eq!(later.status, StatusCode::CREATED);
        assert_eq!(later.str("/id"), ids[0]);
    })
    .await;
}

#[tokio::test]
async fn bad_idempotency_keys_are_refused_naming_the_header() {
    each_backend(|app| async move {
        let tenant = app.signup("Bad keys").await;
        let body = json!({"name": "Sandbox", "provider": "sandbox"});
        let too_long = "k".repeat(256);
        for value in [
            HeaderValue::from_static(""),
            HeaderValue::from_str(&too_long).unwrap(),
            HeaderValue::from_static("two words"),
            HeaderValue::from_bytes("clé".as_bytes()).unwrap(),
        ] {
            let request = app
                .client
                .post(app.url("/v1/connections"))
                .bearer_auth(&tenant.token)
                .header("idempotency-key", value.clone())
                .json(&body);
            let reply = Reply::read(request.send().await.unwrap()).await;
            assert_eq!(
                reply.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
                vec!["Idempotency-Key"],
                "{value:?}"
            );
        }
        let longest = "k".repeat(255);
        let ok = post_with_key(&app, "/v1/connections", &tenant.token, &longest, &body).await;
        assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text);
        assert_eq!(
            count(&app, "/v1/connections", &tenant.token).await,
            1,
            "refused keys ran nothing"
        );
    })
    .await;
}

async fn patch_if_match(app: &TestApp, path: &str, token: &str, tag: &str, body: &Value) -> Reply {
    let request = app
        .client
        .patch(app.url(path))
        .bearer_auth(token)
        .header("if-match", tag)
        .json(body);
    Reply::read(request.send().await.unwrap()).await
}

async fn get_if_none_match(app: &TestApp, path: &str, token: &str, tag: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .bearer_auth(token)
        .header("if-none-match", tag)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_stale_if_match_answers_412_and_the_current_tag_applies() {
    each_backend(|app| async move {
        let tenant = app.signup("Editors").await;
        let token = &tenant.token;
        let (member, _) = app.user_with_role(&tenant, "member").await;
        let cases = [
            ("/v1/stripe-accounts", json!({"name": "Acct", "webhook_secret": SIGNING_SECRET}), json!({"name": "Ada's"}), json!({"name": "Bob's"}), "name"),
            ("/v1/connections", json!({"name": "Sandbox", "provider": "sandbox"}), json!({"name": "Ada's"}), json!({"name": "Bob's"}), "name"),
            ("/v1/notification-channels", json!({"name": "#ops", "kind": "slack", "url": "https://hooks.slack.com/services/T000/B000/XXXX"}), json!({"name": "Ada's"}), json!({"name": "Bob's"}), "name"),
            ("/v1/users", Value::Null, json!({"role": "admin"}), json!({"role": "member"}), "role"),
        ];
        for (collection, create, ada, bob, field) in cases {
            let path = if create.is_null() {
                format!("{collection}/{member}")
            } else {
                let created = app.post(collection, token, create).await;
                assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
                format!("{collection}/{}", created.str("/id"))
            };
            let read = app.get(&path, token).await;
            assert_eq!(read.status, StatusCode::OK, "{}", read.text);
            let tag = read.headers["etag"].to_str().unwrap().to_string();
            assert!(tag.starts_with('"') && tag.ends_with('"'), "a strong tag: {tag}");
            assert_eq!(app.get(&path, token).await.headers["etag"], tag.as_str(), "stable while unchanged");

            // Unchanged: 304 without a body; a stale or other tag: the resource.
            let cached = get_if_none_match(&app, &path, token, &tag).await;
            assert_eq!(cached.status(), StatusCode::NOT_MODIFIED, "{path}");
            assert_eq!(cached.headers()["etag"], tag.as_str());
            assert!(cached.text().await.unwrap().is_empty());

            // Ada saves over the version she read: accepted, with the new version's tag.
            let saved = patch_if_match(&app, &path, token, &tag, &ada).await;
            assert_eq!(saved.status, StatusCode::OK, "{path}: {}", saved.text);
            let new_tag = saved.headers["etag"].to_str().unwrap().to_string();
            assert_ne!(new_tag, tag, "{path}");
            let now = app.get(&path, token).await;
            assert_eq!(now.headers["etag"], new_tag.as_str(), "{path}: PATCH names what GET shows");
            assert_eq!(get_if_none_match(&app, &path, token, &tag).await.status(), StatusCode::OK);

            // Bob read the same version: refused, and Ada's change stands.
            let stale = patch_if_match(&app, &path, token, &tag, &bob).await;
            stale.assert_problem(StatusCode::PRECONDITION_FAILED);
            let after = app.get(&path, token).await;
            assert_eq!(after.body[field], ada[field], "{path}");
            assert_eq!(after.headers["etag"], new_tag.as_str());

            // `*` and a weakened copy of the current tag match; no If-Match applies as before.
            let weak = patch_if_match(&app, &path, token, &format!("W/{new_tag}"), &bob).await;
            assert_eq!(weak.status, StatusCode::OK, "{path}: {}", weak.text);
            let star = patch_if_match(&app, &path, token, "*", &ada).await;
            assert_eq!(star.status, StatusCode::OK, "{path}: {}", star.text);
            assert_eq!(app.patch(&path, token, bob.clone()).await.status, StatusCode::OK);
        }

        // Another tenant's resource is absent, whatever the tag.
        let stranger = app.signup("Stranger").await;
        let mine = app.post("/v1/connections", token, json!({"name": "Mine", "provider": "sandbox"})).await;
        let path = format!("/v1/connections/{}", mine.str("/id"));
        let theirs = patch_if_match(&app, &path, &stranger.token, "*", &json!({"name": "x"})).await;
        theirs.assert_problem(StatusCode::NOT_FOUND);
    })
    .await;
}

#[tokio::test]
async fn every_create_answers_a_location_that_reads_what_it_made() {
    each_backend(|app| async move {
        // Sign-up: the new tenant and owner, as the new token sees them.
        let signup = app
            .call(
                reqwest::Method::POST,
                "/v1/signup",
                None,
                Some(json!({"tenant_name": "Located", "email": "located@example.com", "password": tributary_tests::PASSWORD})),
            )
            .await;
        assert_eq!(signup.status, StatusCode::CREATED, "{}", signup.text);
        let token = signup.str("/access_token");
        let me = app.get(signup.headers["location"].to_str().unwrap(), &token).await;
        assert_eq!(me.status, StatusCode::OK, "{}", me.text);
        assert!(me.text.contains(&signup.str("/tenant/id")), "{}", me.text);

        let account = app.post("/v1/stripe-accounts", &token, json!({"name": "Acct"})).await;
        let account_id = account.str("/id");
        let connection = app.post("/v1/connections", &token, json!({"name": "Sandbox", "provider": "sandbox"})).await;
        let connection_id = connection.str("/id");
        let flow = json!({
            "name": "Contacts", "connection_id": connection_id,
            "trigger": {"events": ["charge.succeeded"]},
            "steps": [{"id": "contact", "action": "upsert", "object": "contacts",
                       "match": {"email": "{{ object.billing_details.email }}"},
                       "fields": {"email": "{{ object.billing_details.email }}"}}]
        });
        let mut created = vec![
            ("/v1/stripe-accounts".to_string(), account),
            ("/v1/connections".to_string(), connection),
        ];
        for (path, body) in [
            (format!("/v1/stripe-accounts/{account_id}/webhook-secrets"), json!({"secret": SIGNING_SECRET})),
            ("/v1/api-keys".into(), json!({"name": "CI", "role": "member"})),
            ("/v1/users".into(), json!({"email": "grace@example.com", "password": tributary_tests::PASSWORD, "role": "member"})),
            ("/v1/notification-channels".into(), json!({"name": "#ops", "kind": "slack", "url": "https://hooks.slack.com/services/T000/B000/XXXX"})),
            ("/v1/flows".into(), flow),
        ] {
            let reply = app.post(&path, &token, body).await;
            created.push((path, reply));
        }
        // Environments are named by their name, which their Location carries.
        let environment = app.post("/v1/environments", &token, json!({"name": "staging"})).await;
        assert_eq!(environment.status, StatusCode::CREATED, "{}", environment.text);
        assert_eq!(environment.headers["location"], "/v1/environments/staging");
        let read = app.get("/v1/environments/staging", &token).await;
        assert_eq!(read.body["name"], "staging", "{}", read.text);
        let mut covered = vec!["/v1/signup".to_string(), "/v1/environments".to_string()];
        for (path, reply) in &created {
            assert_eq!(reply.status, StatusCode::CREATED, "{path}: {}", reply.text);
            let location = reply.headers["location"].to_str().unwrap();
            assert_eq!(location, format!("{path}/{}", reply.str("/id")), "{path}");
            let read = app.get(location, &token).await;
            assert_eq!(read.status, StatusCode::OK, "{location}: {}", read.text);
            assert_eq!(read.body["id"], reply.body["id"], "{location}");
            covered.push(path.replace(&account_id, "{id}"));
        }

        // Every operation that answers 201 is one of these, so a new create can't skip this.
        let spec = app.client.get(app.url("/openapi.json")).send().await.unwrap().json::<Value>().await.unwrap();
        let mut creates: Vec<String> = spec["paths"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, item)| item["post"]["responses"].get("201").is_some())
            .map(|(path, _)| path.clone())
            .collect();
        creates.sort();
        covered.sort();
        assert_eq!(creates, covered);
        for path in &creates {
            let created = &spec["paths"][path]["post"]["responses"]["201"];
            assert!(created["headers"]["Location"].is_object(), "{path} documents Location");
        }
    })
    .await;
}
