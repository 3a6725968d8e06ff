//! The console's session and pages over HTTP: `/` leads to it, sign-up and sign-in set the
//! API's tokens in httpOnly SameSite=Strict cookies, a change made with the cookie needs the
//! CSRF header, pages show only the signed-in tenant's data and point nowhere else, and
//! sign-out ends the session. (The pages in a real browser: tests/console/run.sh.)

use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Client, Method, StatusCode, redirect::Policy};
use serde_json::{Value, json};
use tributary_tests::{TestApp, charge_event, each_backend};

/// A browser without a cookie store: the test carries the cookies itself.
pub(crate) fn browser() -> Client {
    Client::builder()
        .redirect(Policy::none())
        .build()
        .expect("a client")
}

/// The session cookies a response set, as `name=value` pairs for a `Cookie` header, and the
/// attributes of each `Set-Cookie`.
pub(crate) fn cookies(response: &reqwest::Response) -> (String, Vec<String>) {
    let set: Vec<String> = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    let jar = set
        .iter()
        .filter_map(|c| c.split(';').next())
        .collect::<Vec<_>>()
        .join("; ");
    (jar, set)
}

pub(crate) fn cookie_value(jar: &str, name: &str) -> String {
    jar.split("; ")
        .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
        .unwrap_or_default()
        .to_string()
}

/// A form as a browser posts it.
pub(crate) fn post_form(
    app: &TestApp,
    path: &str,
    jar: &str,
    fields: &[(&str, &str)],
) -> reqwest::RequestBuilder {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    browser()
        .post(app.url(path))
        .header(COOKIE, jar)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body)
}

async fn form(app: &TestApp, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    post_form(app, path, "", fields)
        .send()
        .await
        .expect("the form is sent")
}

/// The session cookies of `email` signed in with the tests' password.
pub(crate) async fn signed_in(app: &TestApp, email: &str) -> String {
    let response = form(
        app,
        "/console/login",
        &[("email", email), ("password", tributary_tests::PASSWORD)],
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "{email} signs in");
    cookies(&response).0
}

pub(crate) async fn page(app: &TestApp, path: &str, jar: &str) -> (StatusCode, String) {
    let response = browser()
        .get(app.url(path))
        .header(COOKIE, jar)
        .send()
        .await
        .expect("the page loads");
    let status = response.status();
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = response.text().await.unwrap_or_default();
    (
        status,
        if status.is_redirection() {
            location
        } else {
            body
        },
    )
}

async fn api(
    app: &TestApp,
    method: Method,
    path: &str,
    jar: &str,
    csrf: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    let mut request = browser()
        .request(method, app.url(path))
        .header(COOKIE, jar)
        .json(&body);
    if let Some(csrf) = csrf {
        request = request.header("X-CSRF-Token", csrf);
    }
    let response = request.send().await.expect("the request is sent");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_console_keeps_the_apis_session_in_strict_cookies_and_needs_csrf_to_change() {
    each_backend(|app| async move {
        // `/` leads to the console, which asks to sign in.
        assert_eq!(
            page(&app, "/", "").await,
            (StatusCode::SEE_OTHER, "/console/".into())
        );
        assert_eq!(
            page(&app, "/console/", "").await,
            (StatusCode::SEE_OTHER, "/console/login".into())
        );
        let (status, login) = page(&app, "/console/login", "").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            login.contains(r#"<label for="email">Email</label>"#),
            "{login}"
        );

        // A refused sign-up says why, by field, and sets nothing.
        let short = form(
            &app,
            "/console/signup",
            &[
                ("company", "Acme"),
                ("email", "ada@example.com"),
                ("password", "short"),
            ],
        )
        .await;
        assert_eq!(short.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(short.headers().get(SET_COOKIE).is_none());
        assert!(short.text().await.unwrap().contains("password"));

        let signed_up = form(
            &app,
            "/console/signup",
            &[
                ("company", "Acme"),
                ("email", "ada@example.com"),
                ("password", "correct horse battery"),
            ],
        )
        .await;
        assert_eq!(signed_up.status(), StatusCode::SEE_OTHER);
        let (jar, set) = cookies(&signed_up);
        for name in ["tributary_access", "tributary_refresh"] {
            let cookie = set
                .iter()
                .find(|c| c.starts_with(name))
                .expect("the cookie is set");
            assert!(
                cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
                "{cookie}"
            );
        }
        let csrf_cookie = set
            .iter()
            .find(|c| c.starts_with("tributary_csrf"))
            .unwrap();
        assert!(
            !csrf_cookie.contains("HttpOnly"),
            "the page's script reads it: {csrf_cookie}"
        );
        let csrf = cookie_value(&jar, "tributary_csrf");

        csrf_guards_changes(&app, &jar, &csrf).await;
        pages_point_nowhere_else(&app, &jar).await;
        sign_out(&app, &jar, &csrf).await;

        cross_site_sign_in_is_refused(&app).await;
        // Signing in again works; a wrong password says so and sets nothing.
        let wrong = form(
            &app,
            "/console/login",
            &[
                ("email", "ada@example.com"),
                ("password", "wrong password!"),
            ],
        )
        .await;
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        assert!(wrong.headers().get(SET_COOKIE).is_none());
        let again = form(
            &app,
            "/console/login",
            &[
                ("email", "ada@example.com"),
                ("password", "correct horse battery"),
            ],
        )
        .await;
        assert_eq!(again.status(), StatusCode::SEE_OTHER);
        let (jar, _) = cookies(&again);
        assert_eq!(page(&app, "/console/", &jar).await.0, StatusCode::OK);
        renewal(&app, &jar).await;
    })
    .await;
}

#[tokio::test]
async fn console_pages_show_the_tenants_own_events_and_nobody_elses() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let jar = signed_in(&app, p.tenant.email.as_str()).await;
        let flow = json!({"name": "Contacts", "connection_id": p.connection_id,
            "trigger": {"events": ["charge.succeeded"]},
            "steps": [{"id": "contact", "action": "upsert", "object": "contacts",
                       "match": {"email": "{{ object.billing_details.email }}"}}]});
        let created = app.post("/v1/flows", &p.tenant.token, flow).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let event = charge_event(
            "evt_console_1",
            "ch_console_1",
            "ada@example.com",
            "Ada Lovelace",
            4200,
            chrono::Utc::now().timestamp(),
        );
        let done = app.deliver(&p, &event).await;
        let event_id = done["id"].as_str().unwrap().to_string();
        assert_eq!(done["status"], "processed", "{done}");

        // The overview counts it, and the flow's success rate.
        let (status, overview) = page(&app, "/console/", &jar).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            overview.contains(r#"<span class="number">1</span> events in the last 24 hours"#),
            "{overview}"
        );
        assert!(overview.contains("<td>100% (1 of 1)</td>"), "{overview}");
        assert!(
            overview.contains("<th scope=\"row\">Contacts</th>"),
            "{overview}"
        );

        let (status, list) = page(&app, "/console/events", &jar).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            list.contains(&format!(
                r#"<a href="/console/events/{event_id}">evt_console_1</a>"#
            )),
            "{list}"
        );
        let (status, shown) = page(&app, &format!("/console/events/{event_id}"), &jar).await;
        assert_eq!(status, StatusCode::OK);
        assert!(shown.contains("<h1>Event evt_console_1</h1>"));
        for step in done["deliveries"].as_array().unwrap() {
            assert!(
                shown.contains(&format!(
                    "<th scope=\"row\">{}</th>",
                    step["step"].as_str().unwrap()
                )),
                "{shown}"
            );
        }
        let (_, filtered) = page(
            &app,
            "/console/events?search=ch_console_1&status=processed",
            &jar,
        )
        .await;
        assert!(filtered.contains("evt_console_1"), "{filtered}");
        let (_, none) = page(&app, "/console/events?status=failed", &jar).await;
        assert!(!none.contains("evt_console_1"));

        // Another tenant sees a 404 page for it, and none of it in its list.
        let other = app.signup("Other").await;
        let their_jar = signed_in(&app, other.email.as_str()).await;
        let (status, body) = page(&app, &format!("/console/events/{event_id}"), &their_jar).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(!body.contains("evt_console_1"));
        let (_, their_list) = page(&app, "/console/events", &their_jar).await;
        assert!(!their_list.contains("evt_console_1"));
    })
    .await;
}

/// The cookie is the API's session: reads work, changes need the CSRF header.
async fn csrf_guards_changes(app: &TestApp, jar: &str, csrf: &str) {
    let (status, me) = api(app, Method::GET, "/v1/me", jar, None, Value::Null).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["user"]["email"], "ada@example.com");
    let sandbox = json!({"name": "Sandbox", "provider": "sandbox", "auth": {"type": "none"}});
    for wrong in [None, Some("not-the-token")] {
        let (status, problem) = api(
            app,
            Method::POST,
            "/v1/connections",
            jar,
            wrong,
            sandbox.clone(),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
        assert!(problem["detail"].as_str().unwrap().contains("X-CSRF-Token"));
    }
    let (status, created) = api(
        app,
        Method::POST,
        "/v1/connections",
        jar,
        Some(csrf),
        sandbox,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
}

/// Every page renders for the tenant and points at no other host.
async fn pages_point_nowhere_else(app: &TestApp, jar: &str) {
    for path in [
        "/console/",
        "/console/events",
        "/console/flows",
        "/console/flows/new",
        "/console/connections",
        "/console/stripe-accounts",
        "/console/dead-letters",
        "/console/users",
        "/console/api-keys",
        "/console/alerts",
        "/console/incidents",
        "/console/reviews",
        "/console/audit-log",
        "/console/connections/new",
        "/console/connections/new?provider=salesforce&auth=jwt_bearer",
        "/console/assets/console.css",
        "/console/assets/console.js",
    ] {
        let (status, body) = page(app, path, jar).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(
            !body.contains("http://") && !body.contains("https://") && !body.contains("//cdn"),
            "{path} points elsewhere"
        );
    }
    let (_, connections) = page(app, "/console/connections", jar).await;
    assert!(
        connections.contains("<th scope=\"row\">Sandbox</th>"),
        "{connections}"
    );
    let (_, designer) = page(app, "/console/flows/new", jar).await;
    assert!(designer.contains(">charge.succeeded</label>"));
}

/// Sign-out needs the session's token, ends the session and clears the cookies.
async fn sign_out(app: &TestApp, jar: &str, csrf: &str) {
    let forged = post_form(app, "/console/logout", jar, &[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let out = post_form(app, "/console/logout", jar, &[("csrf", csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    let (cleared, _) = cookies(&out);
    assert_eq!(cookie_value(&cleared, "tributary_access"), "");
    let (status, _) = api(app, Method::GET, "/v1/me", jar, None, Value::Null).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the old cookie's session has ended"
    );
    assert_eq!(
        page(app, "/console/", jar).await,
        (StatusCode::SEE_OTHER, "/console/login".into())
    );
}

/// What the designer's Preview asks: a draft flow validated and run on the newest inbox event
/// of its type, else Stripe's fixture of it; problems come back as validation errors.
#[tokio::test]
async fn a_draft_flow_previews_on_the_newest_event_or_stripes_fixture() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;
        let flow = json!({"name": "Draft", "connection_id": p.connection_id,
            "trigger": {"events": ["charge.succeeded"]},
            "steps": [{"id": "contact", "action": "upsert", "object": "contacts",
                       "match": {"email": "{{ object.billing_details.email }}"}}]});
        let ask = |preview: Value| json!({"flow": flow.clone(), "preview": preview});

        // No event yet: Stripe's fixture of the type.
        let fixture = app
            .post(
                "/v1/flows/validate",
                token,
                ask(json!({"latest": "charge.succeeded"})),
            )
            .await;
        assert_eq!(fixture.status, StatusCode::OK, "{}", fixture.text);
        assert_eq!(fixture.body["valid"], true, "{}", fixture.text);
        assert_eq!(fixture.body["preview"]["matched"], true);
        assert_eq!(fixture.body["preview"]["operations"][0]["action"], "upsert");
        assert_eq!(
            fixture.body["event"]["type"], "charge.succeeded",
            "the event it ran on"
        );

        // With one in the inbox: that event.
        let event = charge_event(
            "evt_draft_1",
            "ch_draft_1",
            "grace@example.com",
            "Grace Hopper",
            100,
            chrono::Utc::now().timestamp(),
        );
        app.deliver(&p, &event).await;
        let inbox = app
            .post(
                "/v1/flows/validate",
                token,
                ask(json!({"latest": "charge.succeeded"})),
            )
            .await;
        assert_eq!(inbox.body["event"]["id"], "evt_draft_1");
        assert_eq!(
            inbox.body["preview"]["operations"][0]["match"]["email"], "grace@example.com",
            "{}",
            inbox.text
        );

        // Problems are the validation's, by path; the plain body answers as before.
        let unknown = app
            .post(
                "/v1/flows/validate",
                token,
                ask(json!({"event_id": "nope"})),
            )
            .await;
        assert_eq!(unknown.status, StatusCode::OK);
        assert_eq!(unknown.body["valid"], false);
        assert_eq!(
            unknown.body["errors"][0]["path"], "preview.event_id",
            "{}",
            unknown.text
        );
        let plain = app.post("/v1/flows/validate", token, flow.clone()).await;
        assert_eq!(
            plain.body,
            json!({"valid": true, "errors": [], "flow": flow}),
            "the flow it read comes back"
        );
    })
    .await;
}

/// A member signed in to the console sees the pages and is refused what the API refuses a
/// member: changes, and the audit log.
#[tokio::test]
async fn a_member_in_the_console_is_refused_what_the_api_refuses_a_member() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let (member_id, _) = app.user_with_role(&p.tenant, "member").await;
        let member = app
            .get(&format!("/v1/users/{member_id}"), &p.tenant.token)
            .await
            .str("/email");
        let jar = signed_in(&app, member.as_str()).await;
        let csrf = cookie_value(&jar, "tributary_csrf");
        let (status, overview) = page(&app, "/console/", &jar).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            overview.contains(r#"<span class="role">member</span>"#),
            "{overview}"
        );
        let (status, audit) = page(&app, "/console/audit-log", &jar).await;
        assert_eq!(status, StatusCode::OK);
        assert!(audit.contains("role does not allow"), "{audit}");
        let flow = json!({"name": "Member's", "connection_id": p.connection_id,
            "trigger": {"events": ["charge.succeeded"]},
            "steps": [{"id": "note", "action": "log", "message": "x"}]});
        let (status, problem) = api(&app, Method::POST, "/v1/flows", &jar, Some(&csrf), flow).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains("role"),
            "{problem}"
        );
    })
    .await;
}

/// A flow's page lists its versions and shows the lines one changed; the designer opens it
/// for editing with what it has; another tenant gets a 404 page for it.
#[tokio::test]
async fn a_flows_page_shows_its_versions_and_what_changed() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;
        let mut flow = json!({"name": "Contacts v1", "connection_id": p.connection_id,
            "trigger": {"events": ["charge.succeeded"], "filter": "object.paid"},
            "steps": [{"id": "contact", "action": "upsert", "object": "contacts",
                       "match": {"email": "{{ object.billing_details.email }}"}}]});
        let created = app.post("/v1/flows", token, flow.clone()).await;
        let id = created.str("/id");
        flow["name"] = json!("Contacts v2");
        let replaced = app
            .call(
                reqwest::Method::PUT,
                &format!("/v1/flows/{id}"),
                Some(token),
                Some(flow),
            )
            .await;
        assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.text);

        let jar = signed_in(&app, p.tenant.email.as_str()).await;
        let (status, shown) = page(&app, &format!("/console/flows/{id}"), &jar).await;
        assert_eq!(status, StatusCode::OK);
        assert!(shown.contains("<h1>Contacts v2</h1>"), "{shown}");
        assert!(shown.contains("Version 1 → version 2"), "{shown}");
        assert!(
            shown.contains(r#"<tr class="removed">"#) && shown.contains("Contacts v1"),
            "{shown}"
        );
        assert!(shown.contains(r#"<tr class="added">"#), "{shown}");
        assert!(shown.contains("Roll back to version 1"), "{shown}");

        let (status, editing) = page(&app, &format!("/console/flows/{id}/edit"), &jar).await;
        assert_eq!(status, StatusCode::OK);
        assert!(editing.contains(r#"value="Contacts v2""#), "{editing}");
        assert!(
            editing.contains(r#"value="charge.succeeded" id="#),
            "{editing}"
        );
        assert!(editing.contains("checked"), "{editing}");
        // What the designer does not show travels with the save (the filter).
        assert!(editing.contains("object.paid"), "{editing}");

        let other = app.signup("Other").await;
        let their_jar = signed_in(&app, other.email.as_str()).await;
        for path in [
            format!("/console/flows/{id}"),
            format!("/console/flows/{id}/edit"),
        ] {
            let (status, body) = page(&app, &path, &their_jar).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert!(!body.contains("Contacts v2"));
        }
    })
    .await;
}

/// A sign-in posted from another site is refused: nobody is signed in to someone else's account by a page they visited.
async fn cross_site_sign_in_is_refused(app: &TestApp) {
    let cross = post_form(
        app,
        "/console/login",
        "",
        &[
            ("email", "ada@example.com"),
            ("password", "correct horse battery"),
        ],
    )
    .header("origin", "https://evil.example")
    .send()
    .await
    .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN);
    assert!(cross.headers().get(SET_COOKIE).is_none());
}

/// A page renews an expired session with its CSRF token, and only with it.
async fn renewal(app: &TestApp, jar: &str) {
    let renew = |csrf: Option<String>| {
        let mut request = browser()
            .post(app.url("/console/refresh"))
            .header(COOKIE, jar);
        if let Some(csrf) = csrf {
            request = request.header("X-CSRF-Token", csrf);
        }
        request.send()
    };
    assert_eq!(renew(None).await.unwrap().status(), StatusCode::FORBIDDEN);
    let renewed = renew(Some(cookie_value(jar, "tributary_csrf")))
        .await
        .unwrap();
    assert_eq!(renewed.status(), StatusCode::NO_CONTENT);
}
