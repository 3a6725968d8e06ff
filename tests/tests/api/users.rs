use reqwest::StatusCode;
use serde_json::json;
use tributary_tests::{PASSWORD, each_backend};

#[tokio::test]
async fn roles_govern_who_manages_whom() {
    each_backend(|app| async move {
        let tenant = app.signup("Roles").await;
        let (admin_id, admin_token) = app.user_with_role(&tenant, "admin").await;
        let (member_id, member_token) = app.user_with_role(&tenant, "member").await;

        // Members read but never write.
        assert_eq!(
            app.get("/v1/users", &member_token).await.status,
            StatusCode::OK
        );
        app.patch(
            &format!("/v1/users/{admin_id}"),
            &member_token,
            json!({"role": "member"}),
        )
        .await
        .assert_problem(StatusCode::FORBIDDEN);
        app.patch(
            &format!("/v1/users/{member_id}"),
            &member_token,
            json!({"role": "admin"}),
        )
        .await
        .assert_problem(StatusCode::FORBIDDEN);
        // ...except their own password (which ends their sessions).
        let own = app
            .patch(
                &format!("/v1/users/{member_id}"),
                &member_token,
                json!({"current_password": PASSWORD, "password": "a brand new password"}),
            )
            .await;
        assert_eq!(own.status, StatusCode::OK, "{}", own.text);

        // Admins manage members but not owners, and cannot make owners.
        let promoted = app
            .patch(
                &format!("/v1/users/{member_id}"),
                &admin_token,
                json!({"role": "admin"}),
            )
            .await;
        assert_eq!(promoted.body["role"], "admin");
        app.patch(
            &format!("/v1/users/{}", tenant.user_id),
            &admin_token,
            json!({"role": "member"}),
        )
        .await
        .assert_problem(StatusCode::FORBIDDEN);
        app.post(
            "/v1/users",
            &admin_token,
            json!({"email": "o2@example.com", "password": PASSWORD, "role": "owner"}),
        )
        .await
        .assert_problem(StatusCode::FORBIDDEN);
        app.delete(&format!("/v1/users/{}", tenant.user_id), &admin_token)
            .await
            .assert_problem(StatusCode::FORBIDDEN);

        // The last owner stays.
        let demote = app
            .patch(
                &format!("/v1/users/{}", tenant.user_id),
                &tenant.token,
                json!({"role": "admin"}),
            )
            .await;
        demote.assert_problem(StatusCode::CONFLICT);
        app.delete(&format!("/v1/users/{}", tenant.user_id), &tenant.token)
            .await
            .assert_problem(StatusCode::CONFLICT);
        // With a second owner, the first may step down.
        let made_owner = app
            .patch(
                &format!("/v1/users/{admin_id}"),
                &tenant.token,
                json!({"role": "owner"}),
            )
            .await;
        assert_eq!(made_owner.body["role"], "owner");
        let stepped = app
            .patch(
                &format!("/v1/users/{}", tenant.user_id),
                &tenant.token,
                json!({"role": "admin"}),
            )
            .await;
        assert_eq!(stepped.status, StatusCode::OK, "{}", stepped.text);
        // A role change takes effect on the next request, not at token expiry.
        assert_eq!(app.get("/v1/me", &tenant.token).await.body["role"], "admin");
    })
    .await;
}

#[tokio::test]
async fn users_list_pages_newest_first_and_emails_are_unique() {
    each_backend(|app| async move {
        let tenant = app.signup("Pages").await;
        for i in 0..4 {
            let reply = app.post("/v1/users", &tenant.token, json!({"email": format!("u{i}@pages.example.com"), "password": PASSWORD, "role": "member"})).await;
            assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        }
        let dup = app.post("/v1/users", &tenant.token, json!({"email": "U0@pages.example.com", "password": PASSWORD, "role": "member"})).await;
        assert_eq!(dup.assert_problem(StatusCode::CONFLICT), vec!["email"]);

        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(id) => format!("/v1/users?limit=2&starting_after={id}"),
                None => "/v1/users?limit=2".to_string(),
            };
            let page = app.get(&path, &tenant.token).await;
            let data = page.body["data"].as_array().unwrap().clone();
            assert!(data.len() <= 2);
            seen.extend(data.iter().map(|u| u["email"].as_str().unwrap().to_string()));
            if !page.body["has_more"].as_bool().unwrap() {
                break;
            }
            after = Some(data.last().unwrap()["id"].as_str().unwrap().to_string());
        }
        assert_eq!(seen.len(), 5);
        assert_eq!(seen[0], "u3@pages.example.com", "newest first");
        assert_eq!(seen[4], tenant.email);
    })
    .await;
}
