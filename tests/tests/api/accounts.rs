//! Sign-up, login, refresh rotation, `/v1/me` and the access-token checks.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tributary_tests::{PASSWORD, TestApp, each_backend, each_backend_with};

async fn login(app: &TestApp, email: &str, password: &str) -> tributary_tests::Reply {
    app.call(
        Method::POST,
        "/v1/login",
        None,
        Some(json!({"email": email, "password": password})),
    )
    .await
}

#[tokio::test]
async fn signup_then_login_then_me() {
    each_backend(|app| async move {
        let tenant = app.signup("Acme").await;
        let me = app.get("/v1/me", &tenant.token).await;
        assert_eq!(me.status, StatusCode::OK, "{}", me.text);
        assert_eq!(me.body["tenant"]["name"], "Acme");
        assert_eq!(me.body["tenant"]["id"], tenant.id.as_str());
        assert_eq!(me.body["user"]["email"], tenant.email.as_str());
        assert_eq!(me.body["role"], "owner");
        assert!(me.body["user"].get("password_hash").is_none());

        // Email matching ignores case and surrounding space.
        let reply = login(
            &app,
            &format!("  {}  ", tenant.email.to_uppercase()),
            PASSWORD,
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        assert_eq!(reply.body["token_type"], "Bearer");
        assert_eq!(reply.body["expires_in"], 900);
        let token = reply.str("/access_token");
        assert_eq!(app.get("/v1/me", &token).await.status, StatusCode::OK);
    })
    .await;
}

#[tokio::test]
async fn signup_validates_and_refuses_a_taken_email() {
    each_backend(|app| async move {
        let bad = app
            .call(Method::POST, "/v1/signup", None, Some(json!({"tenant_name": " ", "email": "nope", "password": "short"})))
            .await;
        let mut fields = bad.assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
        fields.sort();
        assert_eq!(fields, vec!["email", "password", "tenant_name"]);

        let tenant = app.signup("First").await;
        let again = app
            .call(Method::POST, "/v1/signup", None, Some(json!({"tenant_name": "Second", "email": tenant.email.to_uppercase(), "password": PASSWORD})))
            .await;
        assert_eq!(again.assert_problem(StatusCode::CONFLICT), vec!["email"]);
    })
    .await;
}

#[tokio::test]
async fn signup_can_be_closed() {
    each_backend_with(&[("TRIBUTARY_SIGNUP", "closed")], |app| async move {
        let reply = app
            .call(
                Method::POST,
                "/v1/signup",
                None,
                Some(json!({"tenant_name": "X", "email": "x@example.com", "password": PASSWORD})),
            )
            .await;
        reply.assert_problem(StatusCode::FORBIDDEN);
        assert!(reply.body["detail"].as_str().unwrap().contains("closed"));
    })
    .await;
}

#[tokio::test]
async fn wrong_passwords_and_unknown_emails_look_alike_and_get_throttled() {
    each_backend(|app| async move {
        let tenant = app.signup("Throttle").await;
        let wrong = login(&app, &tenant.email, "not the password").await;
        let unknown = login(&app, "nobody@example.com", "not the password").await;
        wrong.assert_problem(StatusCode::UNAUTHORIZED);
        unknown.assert_problem(StatusCode::UNAUTHORIZED);
        assert_eq!(wrong.body["detail"], unknown.body["detail"]);

        for _ in 0..4 {
            login(&app, &tenant.email, "still wrong")
                .await
                .assert_problem(StatusCode::UNAUTHORIZED);
        }
        // Five failures: the email is refused, even with the right password, and told when to retry.
        let blocked = login(&app, &tenant.email, PASSWORD).await;
        blocked.assert_problem(StatusCode::TOO_MANY_REQUESTS);
        let retry_after: u64 = blocked.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=900).contains(&retry_after), "{retry_after}");
        // Another account is not affected by this email's failures.
        let other = app.signup("Other").await;
        assert_eq!(
            login(&app, &other.email, PASSWORD).await.status,
            StatusCode::OK
        );
    })
    .await;
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    each_backend(|app| async move {
        let tenant = app.signup("Refresh").await;
        let refresh = |token: String| {
            let app = &app;
            async move {
                app.call(
                    Method::POST,
                    "/v1/token/refresh",
                    None,
                    Some(json!({"refresh_token": token})),
                )
                .await
            }
        };
        let first = refresh(tenant.refresh_token.clone()).await;
        assert_eq!(first.status, StatusCode::OK, "{}", first.text);
        let second_token = first.str("/refresh_token");
        assert_ne!(second_token, tenant.refresh_token);
        assert_eq!(
            app.get("/v1/me", &first.str("/access_token")).await.status,
            StatusCode::OK
        );

        // The first token again: reuse. It fails, and so does the whole family from now on.
        refresh(tenant.refresh_token.clone())
            .await
            .assert_problem(StatusCode::UNAUTHORIZED);
        refresh(second_token)
            .await
            .assert_problem(StatusCode::UNAUTHORIZED);

        // A separate login is a separate family and still works.
        let fresh = login(&app, &tenant.email, PASSWORD).await;
        assert_eq!(
            refresh(fresh.str("/refresh_token")).await.status,
            StatusCode::OK
        );
        refresh("rt_made_up".into())
            .await
            .assert_problem(StatusCode::UNAUTHORIZED);
    })
    .await;
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn forge(secret: &[u8], alg: Algorithm, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(alg),
        claims,
        &EncodingKey::from_secret(secret).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn access_tokens_are_checked_strictly() {
    each_backend(|app| async move {
        let tenant = app.signup("Jwt").await;
        let secret = std::fs::read_to_string(app.settings.data_dir.join("jwt.secret")).unwrap();
        let secret = secret.trim().as_bytes().to_vec();
        // The session the app's own token belongs to.
        let sid = {
            use base64::Engine;
            let payload = tenant.token.split('.').nth(1).unwrap();
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap();
            serde_json::from_slice::<Value>(&bytes).unwrap()["sid"].clone()
        };
        let claims = |overrides: Value| {
            let mut c = json!({"sub": tenant.user_id, "tid": tenant.id, "sid": sid, "iss": "tributary", "aud": "tributary-api",
                               "iat": now(), "exp": now() + 600, "jti": "x"});
            for (k, v) in overrides.as_object().unwrap() {
                c[k] = v.clone();
            }
            c
        };
        // Control: a token made exactly like the app's works.
        let good = forge(&secret, Algorithm::HS256, &claims(json!({})));
        assert_eq!(app.get("/v1/me", &good).await.status, StatusCode::OK);

        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none = format!("{}.{}.", b64.encode(r#"{"alg":"none","typ":"JWT"}"#), b64.encode(claims(json!({})).to_string()));
        let cases = [
            ("alg=none", none),
            ("wrong key", forge(b"some-other-secret-some-other-secret", Algorithm::HS256, &claims(json!({})))),
            ("other algorithm", forge(&secret, Algorithm::HS384, &claims(json!({})))),
            ("expired", forge(&secret, Algorithm::HS256, &claims(json!({"exp": now() - 120, "iat": now() - 1000})))),
            ("wrong audience", forge(&secret, Algorithm::HS256, &claims(json!({"aud": "someone-else"})))),
            ("wrong issuer", forge(&secret, Algorithm::HS256, &claims(json!({"iss": "someone-else"})))),
            ("another tenant", forge(&secret, Algorithm::HS256, &claims(json!({"tid": "00000000-0000-0000-0000-000000000000"})))),
            ("no session", forge(&secret, Algorithm::HS256, &claims(json!({"sid": null})))),
            ("another session", forge(&secret, Algorithm::HS256, &claims(json!({"sid": "00000000-0000-0000-0000-000000000000"})))),
            ("garbage", "not.a.jwt".to_string()),
        ];
        for (name, token) in cases {
            let reply = app.get("/v1/me", &token).await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{name}: {}", reply.text);
        }
    })
    .await;
}

#[tokio::test]
async fn a_deleted_users_token_stops_working() {
    each_backend(|app| async move {
        let tenant = app.signup("Gone").await;
        let (member_id, member_token) = app.user_with_role(&tenant, "member").await;
        assert_eq!(
            app.get("/v1/me", &member_token).await.status,
            StatusCode::OK
        );
        assert_eq!(
            app.delete(&format!("/v1/users/{member_id}"), &tenant.token)
                .await
                .status,
            StatusCode::NO_CONTENT
        );
        app.get("/v1/me", &member_token)
            .await
            .assert_problem(StatusCode::UNAUTHORIZED);
    })
    .await;
}
