//! A person in several tenants: an owner or admin invites the email of a person of another
//! tenant, who becomes a member with the role given (never with a password the inviter
//! chose), lists both tenants, switches with a new token pair, and acts there with the
//! membership's role and that tenant's data only. Removing the membership ends their sessions
//! there, and only there; the console's header switcher is the same, with cookies and CSRF.

use reqwest::header::{LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tributary_tests::{PASSWORD, Reply, Tenant, TestApp, each_backend};

use super::console::{browser, cookie_value, cookies, page, post_form, signed_in};

/// The password an inviter tries to give a person who already has one.
const INVITERS_PASSWORD: &str = "the inviter chose this one";

/// A person of `home` with `role`: (id, email, access token, refresh token).
async fn person(app: &TestApp, home: &Tenant, role: &str) -> (String, String, String, String) {
    let email = format!("person-{}@example.com", uuid::Uuid::new_v4().simple());
    let created = app
        .post(
            "/v1/users",
            &home.token,
            json!({"email": email, "password": PASSWORD, "role": role}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let login = login(app, &email, PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK, "{}", login.text);
    (
        created.str("/id"),
        email,
        login.str("/access_token"),
        login.str("/refresh_token"),
    )
}

async fn login(app: &TestApp, email: &str, password: &str) -> Reply {
    app.call(
        Method::POST,
        "/v1/login",
        None,
        Some(json!({"email": email, "password": password})),
    )
    .await
}

async fn refresh(app: &TestApp, refresh_token: &str) -> Reply {
    app.call(
        Method::POST,
        "/v1/token/refresh",
        None,
        Some(json!({"refresh_token": refresh_token})),
    )
    .await
}

/// `owner`'s tenant invites `email` as `role`, offering a password it must not be able to set.
async fn invite(app: &TestApp, owner: &Tenant, email: &str, role: &str) -> Reply {
    app.post(
        "/v1/users",
        &owner.token,
        json!({"email": email, "password": INVITERS_PASSWORD, "role": role}),
    )
    .await
}

async fn switch(app: &TestApp, token: &str, tenant_id: &str) -> Reply {
    app.post("/v1/auth/switch", token, json!({"tenant_id": tenant_id}))
        .await
}

/// The (id, role, current, home) of each tenant `token` lists.
async fn my_tenants(app: &TestApp, token: &str) -> Vec<(String, String, bool, bool)> {
    let listed = app.get("/v1/me/tenants", token).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    assert_eq!(listed.body["has_more"], false);
    listed.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert!(t["name"].is_string(), "{t}");
            (
                t["id"].as_str().unwrap().to_string(),
                t["role"].as_str().unwrap().to_string(),
                t["current"].as_bool().unwrap(),
                t["home"].as_bool().unwrap(),
            )
        })
        .collect()
}

async fn sandbox(app: &TestApp, token: &str, name: &str) -> String {
    let created = app
        .post(
            "/v1/connections",
            token,
            json!({"name": name, "provider": "sandbox"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    created.str("/id")
}

fn flow(connection_id: &str) -> Value {
    json!({"name": "members write nothing", "connection_id": connection_id,
           "trigger": {"events": ["charge.succeeded"]},
           "steps": [{"id": "contact", "action": "upsert", "object": "contacts",
                      "match": {"email": "{{ object.billing_details.email }}"}}]})
}

fn actions(audit: &Reply) -> Vec<String> {
    audit.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect()
}

/// `b` invites the person `id` (an e-mail of another tenant): a membership with B's role,
/// the same person; once only. B's own people and new people without a password are 409s.
async fn invited_once(app: &TestApp, b: &Tenant, id: &str, email: &str) {
    // B invites the person: a membership with B's role, the same person (same id).
    let invited = invite(app, b, &email.to_uppercase(), "member").await;
    assert_eq!(invited.status, StatusCode::CREATED, "{}", invited.text);
    assert_eq!(invited.str("/id"), id);
    assert_eq!(invited.body["role"], "member");
    assert_eq!(invited.body["home"], false);
    assert_eq!(
        invited.headers[LOCATION].to_str().unwrap(),
        format!("/v1/users/{id}")
    );
    // Once is enough; and B's own people stay a 409 as before.
    let again = invite(app, b, email, "admin").await;
    assert_eq!(again.assert_problem(StatusCode::CONFLICT), vec!["email"]);
    let own = invite(app, b, &b.email, "member").await;
    assert_eq!(own.assert_problem(StatusCode::CONFLICT), vec!["email"]);
    // A new person still needs a password (a 409 naming it: whether one is needed
    // depends on who the email belongs to); a short one is invalid as before.
    let new = format!("new-{}@example.com", uuid::Uuid::new_v4().simple());
    let bare = app
        .post(
            "/v1/users",
            &b.token,
            json!({"email": new, "role": "member"}),
        )
        .await;
    assert_eq!(bare.assert_problem(StatusCode::CONFLICT), vec!["password"]);
    let short = app
        .post(
            "/v1/users",
            &b.token,
            json!({"email": new, "password": "short", "role": "member"}),
        )
        .await;
    assert_eq!(
        short.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
        vec!["password"]
    );
}

/// B lists the member with its own people; A still lists them as its own; the person lists
/// both tenants, home first and current.
async fn listed_in_both(
    app: &TestApp,
    a: &Tenant,
    b: &Tenant,
    id: &str,
    email: &str,
    token_a: &str,
) {
    // B lists its own owner and its member in one list, same shape.
    let listed = app.get("/v1/users", &b.token).await;
    let people = listed.body["data"].as_array().unwrap();
    assert_eq!(people.len(), 2, "{}", listed.text);
    let member = people.iter().find(|u| u["id"] == id).unwrap();
    assert_eq!(
        (member["email"].as_str(), member["role"].as_str()),
        (Some(email), Some("member"))
    );
    assert_eq!(member["home"], false);
    assert_eq!(
        app.get(&format!("/v1/users/{id}"), &b.token).await.body["home"],
        false
    );
    // A still shows them as its own admin.
    let at_home = app.get(&format!("/v1/users/{id}"), &a.token).await;
    assert_eq!(
        (&at_home.body["role"], &at_home.body["home"]),
        (&json!("admin"), &json!(true))
    );

    // They list both tenants, home first and current.
    assert_eq!(
        my_tenants(app, token_a).await,
        vec![
            (a.id.clone(), "admin".into(), true, true),
            (b.id.clone(), "member".into(), false, false)
        ]
    );
}

#[tokio::test]
async fn an_invited_person_switches_and_acts_with_the_memberships_role_and_data() {
    each_backend(|app| async move {
        let a = app.signup("Home A").await;
        let b = app.signup("Other B").await;
        let (id, email, token_a, _) = person(&app, &a, "admin").await;
        let a_connection = sandbox(&app, &a.token, "A's sandbox").await;
        let b_connection = sandbox(&app, &b.token, "B's sandbox").await;

        invited_once(&app, &b, &id, &email).await;

        listed_in_both(&app, &a, &b, &id, &email, &token_a).await;

        // Switching answers a token pair for B, with B's role and B's data only.
        let switched = switch(&app, &token_a, &b.id).await;
        assert_eq!(switched.status, StatusCode::OK, "{}", switched.text);
        let token_b = switched.str("/access_token");
        assert_eq!(switched.body["token_type"], "Bearer");
        let me = app.get("/v1/me", &token_b).await;
        assert_eq!(me.body["tenant"]["id"], b.id.as_str());
        assert_eq!(me.body["role"], "member");
        assert_eq!(me.body["user"]["id"], id.as_str());
        assert_eq!(me.body["user"]["home"], false);
        let connections = app.get("/v1/connections", &token_b).await;
        assert!(
            connections.text.contains(&b_connection),
            "{}",
            connections.text
        );
        assert!(!connections.text.contains(&a_connection));
        app.get(&format!("/v1/connections/{a_connection}"), &token_b)
            .await
            .assert_problem(StatusCode::NOT_FOUND);
        // The membership's role governs: a member writes nothing in B.
        app.post("/v1/flows", &token_b, flow(&b_connection))
            .await
            .assert_problem(StatusCode::FORBIDDEN);
        app.post(
            "/v1/users",
            &token_b,
            json!({"email": "x@example.com", "password": PASSWORD, "role": "member"}),
        )
        .await
        .assert_problem(StatusCode::FORBIDDEN);
        let mine = my_tenants(&app, &token_b).await;
        assert_eq!(mine[1], (b.id.clone(), "member".into(), true, false));
        // The session in A goes on, as A's admin.
        let me_a = app.get("/v1/me", &token_a).await;
        assert_eq!(
            (&me_a.body["tenant"]["id"], &me_a.body["role"]),
            (&json!(a.id), &json!("admin"))
        );

        // B's session refreshes into B.
        let renewed = refresh(&app, &switched.str("/refresh_token")).await;
        assert_eq!(renewed.status, StatusCode::OK, "{}", renewed.text);
        let me = app.get("/v1/me", &renewed.str("/access_token")).await;
        assert_eq!(me.body["tenant"]["id"], b.id.as_str());

        // A role change in B takes effect at the next request.
        let promoted = app
            .patch(
                &format!("/v1/users/{id}"),
                &b.token,
                json!({"role": "admin"}),
            )
            .await;
        assert_eq!(promoted.status, StatusCode::OK, "{}", promoted.text);
        assert_eq!(
            (&promoted.body["role"], &promoted.body["home"]),
            (&json!("admin"), &json!(false))
        );
        let token_b = renewed.str("/access_token");
        assert_eq!(app.get("/v1/me", &token_b).await.body["role"], "admin");
        let made = app.post("/v1/flows", &token_b, flow(&b_connection)).await;
        assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
        assert_eq!(app.get("/v1/me", &token_a).await.body["role"], "admin");

        // Audited in both tenants; A learns nothing of B's id.
        let b_audit = app.get("/v1/audit-log?limit=100", &b.token).await;
        let b_actions = actions(&b_audit);
        for action in [
            "membership.create",
            "session.switch_in",
            "membership.update",
        ] {
            assert!(b_actions.contains(&action.to_string()), "{b_actions:?}");
        }
        let a_audit = app.get("/v1/audit-log?limit=100", &a.token).await;
        assert!(actions(&a_audit).contains(&"session.switch_out".to_string()));
        assert!(!a_audit.text.contains(&b.id), "{}", a_audit.text);
    })
    .await;
}

#[tokio::test]
async fn the_inviter_never_sets_the_persons_password() {
    each_backend(|app| async move {
        let a = app.signup("Home").await;
        let b = app.signup("Inviter").await;
        let (id, email, token_a, _) = person(&app, &a, "member").await;
        let invited = invite(&app, &b, &email, "owner").await;
        assert_eq!(invited.status, StatusCode::CREATED, "{}", invited.text);

        // The password B offered opens nothing; the person's own still does, into A.
        login(&app, &email, INVITERS_PASSWORD)
            .await
            .assert_problem(StatusCode::UNAUTHORIZED);
        let own = login(&app, &email, PASSWORD).await;
        assert_eq!(own.status, StatusCode::OK, "{}", own.text);
        let me = app.get("/v1/me", &own.str("/access_token")).await;
        assert_eq!(me.body["tenant"]["id"], a.id.as_str());

        // Not even B's owner resets it, and a member of B who is an owner there cannot
        // either (it is their own, but it is kept by their home tenant).
        app.patch(
            &format!("/v1/users/{id}"),
            &b.token,
            json!({"password": "taken over by B's owner"}),
        )
        .await
        .assert_problem(StatusCode::FORBIDDEN);
        let token_b = switch(&app, &token_a, &b.id).await.str("/access_token");
        app.patch(
            &format!("/v1/users/{id}"),
            &token_b,
            json!({"password": "changed from B", "current_password": PASSWORD}),
        )
        .await
        .assert_problem(StatusCode::FORBIDDEN);
        // Nor A's owner now: it would let A's owner into B as this person.
        app.patch(
            &format!("/v1/users/{id}"),
            &a.token,
            json!({"password": "taken over by A's owner"}),
        )
        .await
        .assert_problem(StatusCode::FORBIDDEN);
        assert_eq!(login(&app, &email, PASSWORD).await.status, StatusCode::OK);

        // They change it themselves at home, which ends their sessions in every tenant.
        let changed = app
            .patch(
                &format!("/v1/users/{id}"),
                &token_a,
                json!({"password": "the persons new password", "current_password": PASSWORD}),
            )
            .await;
        assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
        app.get("/v1/me", &token_b)
            .await
            .assert_problem(StatusCode::UNAUTHORIZED);
        app.get("/v1/me", &token_a)
            .await
            .assert_problem(StatusCode::UNAUTHORIZED);
        assert_eq!(
            login(&app, &email, "the persons new password").await.status,
            StatusCode::OK
        );
    })
    .await;
}

#[tokio::test]
async fn a_tenant_without_membership_answers_404_whether_or_not_it_exists() {
    each_backend(|app| async move {
        let a = app.signup("Mine").await;
        let c = app.signup("Not mine").await;
        let (_, _, token, _) = person(&app, &a, "owner").await;
        for tenant in [
            c.id.clone(),
            uuid::Uuid::now_v7().to_string(),
            String::new(),
        ] {
            let refused = switch(&app, &token, &tenant).await;
            assert_eq!(
                refused.assert_problem(StatusCode::NOT_FOUND),
                vec!["tenant_id"]
            );
            assert_eq!(
                refused.body["detail"], "you are not a member of this tenant",
                "the same words for a tenant that exists and one that does not"
            );
        }
        // Switching to where one is answers a new session there.
        let same = switch(&app, &token, &a.id).await;
        assert_eq!(same.status, StatusCode::OK, "{}", same.text);
        // An API key has no person behind it: it lists its own tenant and switches nowhere.
        let (_, key) = app.api_key(&a, "admin").await;
        assert_eq!(
            my_tenants(&app, &key).await,
            vec![(a.id.clone(), "admin".into(), true, true)]
        );
        switch(&app, &key, &a.id)
            .await
            .assert_problem(StatusCode::FORBIDDEN);
        // No credentials, no switch.
        app.call(
            Method::POST,
            "/v1/auth/switch",
            None,
            Some(json!({"tenant_id": a.id})),
        )
        .await
        .assert_problem(StatusCode::UNAUTHORIZED);
    })
    .await;
}

#[tokio::test]
async fn removing_a_membership_ends_the_sessions_there_and_nowhere_else() {
    each_backend(|app| async move {
        let a = app.signup("Stays").await;
        let b = app.signup("Leaves").await;
        let (id, email, token_a, refresh_a) = person(&app, &a, "member").await;
        invite(&app, &b, &email, "admin").await;
        let switched = switch(&app, &token_a, &b.id).await;
        let token_b = switched.str("/access_token");
        assert_eq!(app.get("/v1/me", &token_b).await.status, StatusCode::OK);

        // An admin of B cannot remove B's owners; the owner removes the member.
        let (_, b_admin) = app.user_with_role(&b, "admin").await;
        app.delete(&format!("/v1/users/{}", b.user_id), &b_admin)
            .await
            .assert_problem(StatusCode::FORBIDDEN);
        let removed = app.delete(&format!("/v1/users/{id}"), &b_admin).await;
        assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.text);

        // Their B session ends at its next request, refresh included; B is gone from their
        // list and from B's; switching there is a 404.
        app.get("/v1/me", &token_b)
            .await
            .assert_problem(StatusCode::UNAUTHORIZED);
        refresh(&app, &switched.str("/refresh_token"))
            .await
            .assert_problem(StatusCode::UNAUTHORIZED);
        assert_eq!(
            my_tenants(&app, &token_a).await,
            vec![(a.id.clone(), "member".into(), true, true)]
        );
        app.get(&format!("/v1/users/{id}"), &b.token)
            .await
            .assert_problem(StatusCode::NOT_FOUND);
        assert!(!app.get("/v1/users", &b.token).await.text.contains(&id));
        switch(&app, &token_a, &b.id)
            .await
            .assert_problem(StatusCode::NOT_FOUND);

        // At home nothing changed: the session, its refresh, the person.
        assert_eq!(app.get("/v1/me", &token_a).await.status, StatusCode::OK);
        assert_eq!(refresh(&app, &refresh_a).await.status, StatusCode::OK);
        assert_eq!(
            app.get(&format!("/v1/users/{id}"), &a.token).await.body["email"],
            email.as_str()
        );
        assert_eq!(login(&app, &email, PASSWORD).await.status, StatusCode::OK);
    })
    .await;
}

/// The console's switch refused: without the session's CSRF token, from another site, or to a
/// tenant the person does not belong to; no cookies set, the session as it was.
async fn refused_switches(app: &TestApp, jar: &str, csrf: &str, b_id: &str) {
    // Without the session's CSRF token, or from another site: refused, no cookies.
    for (fields, origin) in [
        (vec![("csrf", "forged"), ("tenant_id", b_id)], None),
        (vec![("tenant_id", b_id)], None),
        (
            vec![("csrf", csrf), ("tenant_id", b_id)],
            Some("https://evil.example"),
        ),
    ] {
        let mut request = post_form(app, "/console/switch", jar, &fields);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let refused = request.send().await.unwrap();
        assert!(
            refused.status() == StatusCode::FORBIDDEN
                || refused.status() == StatusCode::BAD_REQUEST,
            "{fields:?} {origin:?}: {}",
            refused.status()
        );
        assert!(refused.headers().get(SET_COOKIE).is_none());
    }
    // A tenant the person does not belong to: 404, the session as it was.
    let c = app.signup("Console stranger").await;
    let stranger = post_form(
        app,
        "/console/switch",
        jar,
        &[("csrf", csrf), ("tenant_id", c.id.as_str())],
    )
    .send()
    .await
    .unwrap();
    assert_eq!(stranger.status(), StatusCode::NOT_FOUND);
    assert_eq!(page(app, "/console/", jar).await.0, StatusCode::OK);
}

#[tokio::test]
async fn the_console_switcher_needs_the_csrf_token_and_moves_the_cookies_to_the_new_tenant() {
    each_backend(|app| async move {
        let a = app.signup("Console home").await;
        let b = app.signup("Console other").await;
        let (_, email, _, _) = person(&app, &a, "admin").await;
        sandbox(&app, &a.token, "Home sandbox").await;
        sandbox(&app, &b.token, "Other sandbox").await;
        let jar = signed_in(&app, &email).await;
        let csrf = cookie_value(&jar, "tributary_csrf");

        // One tenant: its name in the header, no switcher.
        let (_, overview) = page(&app, "/console/", &jar).await;
        assert!(overview.contains("Console home"), "{overview}");
        assert!(!overview.contains("Switch tenant"));

        invite(&app, &b, &email, "member").await;
        let (_, overview) = page(&app, "/console/", &jar).await;
        assert!(
            overview.contains(r#"<label for="tenant-switch" class="inline-label">Tenant</label>"#),
            "{overview}"
        );
        assert!(overview.contains(">Switch tenant</button>"));
        assert!(overview.contains(&format!(
            r#"<option value="{}">Console other</option>"#,
            b.id
        )));

        refused_switches(&app, &jar, &csrf, &b.id).await;

        // With it: new cookies for B, and the overview of B.
        let switched = post_form(
            &app,
            "/console/switch",
            &jar,
            &[("csrf", csrf.as_str()), ("tenant_id", b.id.as_str())],
        )
        .send()
        .await
        .unwrap();
        assert_eq!(switched.status(), StatusCode::SEE_OTHER);
        assert_eq!(switched.headers()[LOCATION], "/console/");
        let (new_jar, set) = cookies(&switched);
        for name in ["tributary_access", "tributary_refresh"] {
            let cookie = set.iter().find(|c| c.starts_with(name)).unwrap();
            assert!(
                cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
                "{cookie}"
            );
        }
        let (status, overview) = page(&app, "/console/", &new_jar).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            overview.contains(&format!(
                r#"<option value="{}" selected>Console other</option>"#,
                b.id
            )),
            "{overview}"
        );
        let (_, connections) = page(&app, "/console/connections", &new_jar).await;
        assert!(connections.contains("Other sandbox"), "{connections}");
        assert!(!connections.contains("Home sandbox"));
        // The `/v1` API with the new cookie is B's, as a member.
        let me = browser()
            .get(app.url("/v1/me"))
            .header(reqwest::header::COOKIE, &new_jar)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        assert_eq!(
            (&me["tenant"]["id"], &me["role"]),
            (&json!(b.id), &json!("member"))
        );
        // The cookies' old session is over: it signs in again.
        assert_eq!(
            page(&app, "/console/", &jar).await,
            (StatusCode::SEE_OTHER, "/console/login".into())
        );

        // And back home.
        let back = post_form(
            &app,
            "/console/switch",
            &new_jar,
            &[
                ("csrf", cookie_value(&new_jar, "tributary_csrf").as_str()),
                ("tenant_id", a.id.as_str()),
            ],
        )
        .send()
        .await
        .unwrap();
        assert_eq!(back.status(), StatusCode::SEE_OTHER);
        let (_, connections) = page(&app, "/console/connections", &cookies(&back).0).await;
        assert!(connections.contains("Home sandbox"), "{connections}");
    })
    .await;
}
