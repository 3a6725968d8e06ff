use reqwest::StatusCode;
use serde_json::json;
use tributary_tests::each_backend;

#[tokio::test]
async fn keys_are_shown_once_work_and_can_be_revoked() {
    each_backend(|app| async move {
        let tenant = app.signup("Keys").await;
        let created = app
            .post(
                "/v1/api-keys",
                &tenant.token,
                json!({"name": "deploys", "role": "admin"}),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let key = created.str("/key");
        let prefix = created.str("/prefix");
        assert!(key.starts_with(&format!("trb_{prefix}_")));
        assert!(
            key.len() >= 4 + 12 + 1 + 43,
            "256 random bits after the prefix"
        );

        let listed = app.get("/v1/api-keys", &tenant.token).await;
        assert_eq!(listed.body["data"][0]["prefix"], prefix.as_str());
        assert!(listed.body["data"][0]["last_used_at"].is_null());
        assert!(!listed.text.contains(&key), "the key is never shown again");

        let me = app.get("/v1/me", &key).await;
        assert_eq!(me.status, StatusCode::OK, "{}", me.text);
        assert_eq!(me.body["role"], "admin");
        assert_eq!(me.body["api_key"]["name"], "deploys");
        assert!(me.body["user"].is_null());

        let listed = app.get("/v1/api-keys", &tenant.token).await;
        assert!(
            listed.body["data"][0]["last_used_at"].is_string(),
            "{}",
            listed.text
        );

        // A key with one wrong character is refused.
        let mut tampered = key.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        app.get("/v1/me", &tampered)
            .await
            .assert_problem(StatusCode::UNAUTHORIZED);

        let id = created.str("/id");
        assert_eq!(
            app.delete(&format!("/v1/api-keys/{id}"), &tenant.token)
                .await
                .status,
            StatusCode::NO_CONTENT
        );
        app.get("/v1/me", &key)
            .await
            .assert_problem(StatusCode::UNAUTHORIZED);
        app.delete(&format!("/v1/api-keys/{id}"), &tenant.token)
            .await
            .assert_problem(StatusCode::NOT_FOUND);
    })
    .await;
}

#[tokio::test]
async fn a_key_cannot_outrank_its_creator() {
    each_backend(|app| async move {
        let tenant = app.signup("Ranks").await;
        let (_, admin_key) = app.api_key(&tenant, "admin").await;
        let reply = app
            .post(
                "/v1/api-keys",
                &admin_key,
                json!({"name": "escalate", "role": "owner"}),
            )
            .await;
        assert_eq!(
            reply.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
            vec!["role"]
        );
        let ok = app
            .post(
                "/v1/api-keys",
                &admin_key,
                json!({"name": "member key", "role": "member"}),
            )
            .await;
        assert_eq!(ok.status, StatusCode::CREATED);
        let (_, member_key) = app.api_key(&tenant, "member").await;
        app.post(
            "/v1/api-keys",
            &member_key,
            json!({"name": "x", "role": "member"}),
        )
        .await
        .assert_problem(StatusCode::FORBIDDEN);
        assert_eq!(
            app.get("/v1/api-keys", &member_key).await.status,
            StatusCode::OK
        );
    })
    .await;
}
