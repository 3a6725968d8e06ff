//! Attacks on credentials: the login throttle raced and turned into a lockout, spoofed client
//! addresses, sessions that outlive a password change, sign-up as an oracle, and admins
//! reaching for owner keys. Each test reproduces the attack and checks it is closed.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tributary_tests::{PASSWORD, Reply, Tenant, TestApp, each_backend, each_backend_with};

/// The app's peer in every test is 127.0.0.1: trusting it lets a test speak for any client.
const TRUST_LOCALHOST: (&str, &str) = ("TRIBUTARY_TRUSTED_PROXIES", "127.0.0.1/32");

/// POSTs `body` to `path` with an optional `X-Forwarded-For`.
async fn post_from(app: &TestApp, path: &str, forwarded_for: Option<&str>, body: Value) -> Reply {
    let mut request = app.client.post(app.url(path)).json(&body);
    if let Some(forwarded) = forwarded_for {
        request = request.header("x-forwarded-for", forwarded);
    }
    Reply::read(request.send().await.expect("request sent")).await
}

async fn login_from(app: &TestApp, email: &str, password: &str, from: Option<&str>) -> Reply {
    post_from(
        app,
        "/v1/login",
        from,
        json!({"email": email, "password": password}),
    )
    .await
}

async fn refresh(app: &TestApp, token: &str) -> Reply {
    app.call(
        Method::POST,
        "/v1/token/refresh",
        None,
        Some(json!({"refresh_token": token})),
    )
    .await
}

fn retry_after(reply: &Reply) -> u64 {
    reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// The attempts counted for `key` in the shared throttle table.
async fn counted(app: &TestApp, key: &str) -> i32 {
    use sea_orm::EntityTrait;
    entity::login_throttle::Entity::find_by_id(key.to_string())
        .one(&app.db)
        .await
        .unwrap()
        .map_or(0, |row| row.failures)
}

#[tokio::test]
async fn forty_concurrent_bad_logins_are_all_counted() {
    each_backend(|app| async move {
        let tenant = app.signup("Raced").await;
        let attempts = (0..40).map(|i| {
            let app = &app;
            let email = tenant.email.clone();
            async move { login_from(app, &email, &format!("wrong password {i}"), None).await }
        });
        let replies = futures::future::join_all(attempts).await;
        let mut checked = 0;
        for reply in &replies {
            match reply.status {
                StatusCode::UNAUTHORIZED => checked += 1,
                StatusCode::TOO_MANY_REQUESTS => assert!(retry_after(reply) >= 1),
                other => panic!("a bad login answered {other}: {}", reply.text),
            }
        }
        // The count came first, so the race could not outrun it: every attempt is counted,
        // and only the free attempts of one address reached a password check.
        assert_eq!(
            counted(&app, &format!("pair:127.0.0.1 {}", tenant.email)).await,
            40,
            "attempts counted against this address and account"
        );
        assert!(checked <= 5, "{checked} passwords were checked");
        // The account is throttled afterwards, even with the right password.
        login_from(&app, &tenant.email, PASSWORD, None)
            .await
            .assert_problem(StatusCode::TOO_MANY_REQUESTS);
    })
    .await;
}

#[tokio::test]
async fn a_correct_login_racing_bad_ones_never_fails() {
    each_backend(|app| async move {
        let owner = app.signup("Racing").await;
        for round in 0..8 {
            let email = format!("racer{round}-{}@example.com", uuid::Uuid::new_v4().simple());
            let created = app
                .post(
                    "/v1/users",
                    &owner.token,
                    json!({"email": email, "password": PASSWORD, "role": "member"}),
                )
                .await;
            assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
            let right = login_from(&app, &email, PASSWORD, None);
            let wrong = (0..3).map(|_| login_from(&app, &email, "not the password", None));
            let (right, wrong) = futures::join!(right, futures::future::join_all(wrong));
            assert_eq!(
                right.status,
                StatusCode::OK,
                "round {round}: {}",
                right.text
            );
            for reply in wrong {
                assert!(
                    matches!(
                        reply.status,
                        StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS
                    ),
                    "round {round}: {}",
                    reply.text
                );
            }
        }
    })
    .await;
}

#[tokio::test]
async fn a_stranger_cannot_keep_a_known_user_locked_out() {
    each_backend_with(&[TRUST_LOCALHOST], |app| async move {
        let victim = app.signup("Victim").await;
        let home = "198.51.100.7";
        let first = login_from(&app, &victim.email, PASSWORD, Some(home)).await;
        assert_eq!(first.status, StatusCode::OK, "{}", first.text);

        // An attacker elsewhere hammers the account far past every limit.
        let attacker = "203.0.113.66";
        for _ in 0..60 {
            let reply = login_from(&app, &victim.email, "guess guess guess", Some(attacker)).await;
            assert!(
                matches!(
                    reply.status,
                    StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS
                ),
                "{}",
                reply.text
            );
        }
        // The attacker is stopped, even holding the right password...
        login_from(&app, &victim.email, PASSWORD, Some(attacker))
            .await
            .assert_problem(StatusCode::TOO_MANY_REQUESTS);
        // ...a new address waits at most the ceiling's window...
        let elsewhere = login_from(&app, &victim.email, PASSWORD, Some("192.0.2.44")).await;
        elsewhere.assert_problem(StatusCode::TOO_MANY_REQUESTS);
        assert!(
            (1..=900).contains(&retry_after(&elsewhere)),
            "{:?}",
            elsewhere.headers
        );
        // ...and the victim's own address gets in.
        let home_again = login_from(&app, &victim.email, PASSWORD, Some(home)).await;
        assert_eq!(home_again.status, StatusCode::OK, "{}", home_again.text);
    })
    .await;
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    // No trusted proxies (the default): the header is the client's claim and changes nothing.
    each_backend(|app| async move {
        let tenant = app.signup("Spoof").await;
        for i in 0..5 {
            let reply = login_from(
                &app,
                &tenant.email,
                "wrong password",
                Some(&format!("198.51.100.{i}")),
            )
            .await;
            reply.assert_problem(StatusCode::UNAUTHORIZED);
        }
        login_from(&app, &tenant.email, PASSWORD, Some("198.51.100.200"))
            .await
            .assert_problem(StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            counted(&app, &format!("pair:127.0.0.1 {}", tenant.email)).await,
            6
        );
    })
    .await;

    // Behind a trusted proxy: each client is throttled under its own address, the right-most
    // untrusted one, whatever a client writes to the left of it.
    each_backend_with(&[TRUST_LOCALHOST], |app| async move {
        let tenant = app.signup("Proxied").await;
        let noisy = "203.0.113.9";
        for _ in 0..5 {
            login_from(&app, &tenant.email, "wrong password", Some(noisy))
                .await
                .assert_problem(StatusCode::UNAUTHORIZED);
        }
        login_from(
            &app,
            &tenant.email,
            PASSWORD,
            Some(&format!("198.51.100.1, {noisy}")),
        )
        .await
        .assert_problem(StatusCode::TOO_MANY_REQUESTS);
        let other = login_from(&app, &tenant.email, PASSWORD, Some("198.51.100.1")).await;
        assert_eq!(other.status, StatusCode::OK, "{}", other.text);
    })
    .await;
}

#[tokio::test]
async fn a_password_change_ends_every_session() {
    each_backend(|app| async move {
        let owner = app.signup("Sessions").await;
        let (_, key) = app.api_key(&owner, "admin").await;
        let second = login_from(&app, &owner.email, PASSWORD, None).await;
        assert_eq!(second.status, StatusCode::OK, "{}", second.text);
        let changed = app
            .patch(
                &format!("/v1/users/{}", owner.user_id),
                &owner.token,
                json!({"current_password": PASSWORD, "password": "a brand new passphrase"}),
            )
            .await;
        assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);

        // Both logins: refresh tokens refused, access tokens refused at the next request.
        refresh(&app, &owner.refresh_token)
            .await
            .assert_problem(StatusCode::UNAUTHORIZED);
        refresh(&app, &second.str("/refresh_token"))
            .await
            .assert_problem(StatusCode::UNAUTHORIZED);
        app.get("/v1/me", &owner.token)
            .await
            .assert_problem(StatusCode::UNAUTHORIZED);
        app.get("/v1/me", &second.str("/access_token"))
            .await
            .assert_problem(StatusCode::UNAUTHORIZED);
        // API keys have no session: they go on until deleted.
        assert_eq!(app.get("/v1/me", &key).await.status, StatusCode::OK);
        let again = login_from(&app, &owner.email, "a brand new passphrase", None).await;
        assert_eq!(again.status, StatusCode::OK, "{}", again.text);
        let owner_token = again.str("/access_token");

        // A reset by an owner ends the member's sessions too.
        let (member_id, member_token) = app
            .user_with_role(
                &Tenant {
                    token: owner_token.clone(),
                    ..owner.clone()
                },
                "member",
            )
            .await;
        assert_eq!(
            app.get("/v1/me", &member_token).await.status,
            StatusCode::OK
        );
        let reset = app
            .patch(
                &format!("/v1/users/{member_id}"),
                &owner_token,
                json!({"password": "reset by the owner"}),
            )
            .await;
        assert_eq!(reset.status, StatusCode::OK, "{}", reset.text);
        app.get("/v1/me", &member_token)
            .await
            .assert_problem(StatusCode::UNAUTHORIZED);
        assert_eq!(app.get("/v1/me", &owner_token).await.status, StatusCode::OK);
    })
    .await;
}

#[tokio::test]
async fn logout_ends_only_the_current_session() {
    each_backend(|app| async move {
        let owner = app.signup("Logout").await;
        let other = login_from(&app, &owner.email, PASSWORD, None).await;
        assert_eq!(other.status, StatusCode::OK, "{}", other.text);

        let out = app
            .call(Method::POST, "/v1/logout", Some(&owner.token), None)
            .await;
        assert_eq!(out.status, StatusCode::NO_CONTENT, "{}", out.text);
        app.get("/v1/me", &owner.token)
            .await
            .assert_problem(StatusCode::UNAUTHORIZED);
        refresh(&app, &owner.refresh_token)
            .await
            .assert_problem(StatusCode::UNAUTHORIZED);

        // The other login is untouched.
        assert_eq!(
            app.get("/v1/me", &other.str("/access_token")).await.status,
            StatusCode::OK
        );
        let renewed = refresh(&app, &other.str("/refresh_token")).await;
        assert_eq!(renewed.status, StatusCode::OK, "{}", renewed.text);

        // An API key has no session; it is revoked by deleting it, and logout says so.
        let (_, key) = app
            .api_key(
                &Tenant {
                    token: renewed.str("/access_token"),
                    ..owner.clone()
                },
                "admin",
            )
            .await;
        app.call(Method::POST, "/v1/logout", Some(&key), None)
            .await
            .assert_problem(StatusCode::FORBIDDEN);
        assert_eq!(app.get("/v1/me", &key).await.status, StatusCode::OK);
    })
    .await;
}

#[tokio::test]
async fn changing_ones_own_password_needs_the_current_one() {
    each_backend(|app| async move {
        let owner = app.signup("Current").await;
        let path = format!("/v1/users/{}", owner.user_id);
        let missing = app
            .patch(
                &path,
                &owner.token,
                json!({"password": "stolen session's choice"}),
            )
            .await;
        assert_eq!(
            missing.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
            vec!["current_password"]
        );
        let wrong = app
            .patch(
                &path,
                &owner.token,
                json!({"current_password": "a guess at it", "password": "stolen session's choice"}),
            )
            .await;
        assert!(wrong.status.is_client_error(), "{}", wrong.text);
        assert!(wrong.text.contains("current_password"), "{}", wrong.text);
        // Nothing changed: the old password still logs in.
        let login = login_from(&app, &owner.email, PASSWORD, None).await;
        assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    })
    .await;
}

#[tokio::test]
async fn signup_is_metered_per_client_address_by_default() {
    // An empty value is unset: the default rate, 10 an hour, applies.
    each_backend_with(
        &[("TRIBUTARY_SIGNUP_RATE", ""), TRUST_LOCALHOST],
        |app| async move {
            assert_eq!(app.settings.signup_rate.count, 10);
            let prober = "203.0.113.50";
            let signup = |email: String, from: &'static str| {
                let app = &app;
                async move {
                    post_from(
                        app,
                        "/v1/signup",
                        Some(from),
                        json!({"tenant_name": "Probe", "email": email, "password": PASSWORD}),
                    )
                    .await
                }
            };
            let taken = app.signup("Known").await.email;
            // The first answers say whether an email is registered...
            signup(taken.clone(), prober)
                .await
                .assert_problem(StatusCode::CONFLICT);
            for i in 0..9 {
                let reply = signup(
                    format!("probe{i}-{}@example.com", uuid::Uuid::new_v4().simple()),
                    prober,
                )
                .await;
                assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
            }
            // ...then the address is metered, taken or not.
            for email in [taken.clone(), "fresh-probe@example.com".to_string()] {
                let reply = signup(email, prober).await;
                reply.assert_problem(StatusCode::TOO_MANY_REQUESTS);
                assert!(
                    (1..=3600).contains(&retry_after(&reply)),
                    "{:?}",
                    reply.headers
                );
            }
            // Another client is not affected.
            let reply = signup("someone-else@example.com".into(), "198.51.100.23").await;
            assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        },
    )
    .await;
}

#[tokio::test]
async fn an_admin_cannot_touch_owner_keys() {
    each_backend(|app| async move {
        let owner = app.signup("Keys").await;
        let (owner_key_id, owner_key) = app.api_key(&owner, "owner").await;
        let (_, admin_jwt) = app.user_with_role(&owner, "admin").await;
        let (_, admin_key) = app.api_key(&owner, "admin").await;
        for token in [&admin_jwt, &admin_key] {
            app.delete(&format!("/v1/api-keys/{owner_key_id}"), token)
                .await
                .assert_problem(StatusCode::FORBIDDEN);
            let create = app
                .post(
                    "/v1/api-keys",
                    token,
                    json!({"name": "escalate", "role": "owner"}),
                )
                .await;
            assert_eq!(
                create.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
                vec!["role"]
            );
        }
        // The owner key still works; its owner may revoke it.
        assert_eq!(app.get("/v1/me", &owner_key).await.status, StatusCode::OK);
        assert_eq!(
            app.delete(&format!("/v1/api-keys/{owner_key_id}"), &owner.token)
                .await
                .status,
            StatusCode::NO_CONTENT
        );
    })
    .await;
}

#[tokio::test]
async fn throttle_rows_of_finished_windows_are_pruned() {
    use sea_orm::{EntityTrait, Set};
    use tributary_api::auth::throttle;
    each_backend(|app| async move {
        let now = chrono::Utc::now();
        let row = |key: &str, age: chrono::Duration, blocked: Option<chrono::Duration>| {
            entity::login_throttle::ActiveModel {
                key: Set(key.to_string()),
                failures: Set(3),
                window_started_at: Set(now - age),
                blocked_until: Set(blocked.map(|b| now + b)),
            }
        };
        let rows = [
            row("pair:203.0.113.1 a@x.io", chrono::Duration::hours(2), None),
            row("email:a@x.io", chrono::Duration::minutes(5), None),
            row(
                "pair:203.0.113.2 a@x.io",
                chrono::Duration::hours(2),
                Some(chrono::Duration::minutes(5)),
            ),
            row("known:203.0.113.3 a@x.io", chrono::Duration::days(2), None),
            row("known:203.0.113.4 a@x.io", chrono::Duration::days(40), None),
        ];
        entity::login_throttle::Entity::insert_many(rows)
            .exec(&app.db)
            .await
            .unwrap();
        assert_eq!(throttle::prune(&app.db).await.unwrap(), 2);
        let left: Vec<String> = entity::login_throttle::Entity::find()
            .all(&app.db)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.key)
            .collect();
        for kept in [
            "email:a@x.io",
            "pair:203.0.113.2 a@x.io",
            "known:203.0.113.3 a@x.io",
        ] {
            assert!(left.iter().any(|k| k == kept), "{kept} pruned: {left:?}");
        }
    })
    .await;
}

/// Creates an API key with `X-Forwarded-For: forwarded` and returns the audit entry's address.
async fn audited_address(app: &TestApp, tenant: &Tenant, forwarded: &str) -> Value {
    let created = app
        .client
        .post(app.url("/v1/api-keys"))
        .bearer_auth(&tenant.token)
        .header("x-forwarded-for", forwarded)
        .json(&json!({"name": "audited", "role": "member"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let log = app.get("/v1/audit-log?limit=1", &tenant.token).await;
    assert_eq!(
        log.body["data"][0]["action"], "api_key.create",
        "{}",
        log.text
    );
    log.body["data"][0]["client_address"].clone()
}

#[tokio::test]
async fn the_audit_log_records_the_address_the_trusted_proxies_vouch_for() {
    // A client's own X-Forwarded-For is not believed: the entry names the peer.
    each_backend(|app| async move {
        let tenant = app.signup("Audited").await;
        assert_eq!(
            audited_address(&app, &tenant, "203.0.113.50").await,
            "127.0.0.1"
        );
    })
    .await;
    // Behind a trusted proxy, the client it vouches for.
    each_backend_with(&[TRUST_LOCALHOST], |app| async move {
        let tenant = app.signup("Audited").await;
        assert_eq!(
            audited_address(&app, &tenant, "198.51.100.1, 203.0.113.50").await,
            "203.0.113.50"
        );
    })
    .await;
}
