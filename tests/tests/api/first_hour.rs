//! The first hour, as the README's quick start walks it: placeholder secrets are refused with
//! the rule spelled out, a signing secret alone is enough, and a test event can be waited for,
//! so the record is there when the next command lists it.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tributary_tests::{Pipeline, Reply, TestApp, each_backend};

#[tokio::test]
async fn the_quick_start_needs_no_stripe_account_and_no_polling() {
    each_backend(|app| async move {
        let tenant = app.signup("Acme").await;
        let token = &tenant.token;

        // A placeholder key that has the prefix but not the length says what the rule is.
        let refused = app
            .post(
                "/v1/stripe-accounts",
                token,
                json!({"name": "Acme test", "secret_key": "sk_test_123", "webhook_secret": "whsec_123"}),
            )
            .await;
        let fields = refused.assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(fields, ["secret_key", "webhook_secret"], "{}", refused.text);
        assert!(refused.text.contains("at least 9"), "{}", refused.text);
        assert!(refused.text.contains("at least 8 characters"), "{}", refused.text);

        // The README's pair: a signing secret only.
        let account = app
            .post(
                "/v1/stripe-accounts",
                token,
                json!({"name": "Acme test", "webhook_secret": "whsec_quickstart_secret"}),
            )
            .await;
        assert_eq!(account.status, StatusCode::CREATED, "{}", account.text);
        let connection = app
            .post("/v1/connections", token, json!({"name": "Sandbox", "provider": "sandbox"}))
            .await;
        assert_eq!(connection.status, StatusCode::CREATED, "{}", connection.text);
        let pipeline = Pipeline {
            tenant: tenant.clone(),
            connection_id: connection.str("/id"),
            account_id: account.str("/id"),
            webhook_path: String::new(),
            secret: "whsec_quickstart_secret".into(),
        };
        app.flow_from_template(&pipeline, "sandbox-lead-from-checkout").await;

        let path = format!("/v1/stripe-accounts/{}/test-events", pipeline.account_id);
        let too_long = app
            .post(&format!("{path}?wait=31"), token, json!({"type": "checkout.session.completed"}))
            .await;
        assert_eq!(
            too_long.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
            ["wait"]
        );

        let sent = app
            .post(&format!("{path}?wait=20"), token, json!({"type": "checkout.session.completed"}))
            .await;
        assert_eq!(sent.status, StatusCode::ACCEPTED, "{}", sent.text);
        assert_eq!(sent.body["status"], "processed", "{}", sent.text);
        // The very next command finds the record: no race with the worker.
        let leads = app.records(token, &pipeline.connection_id, "leads").await;
        assert_eq!(leads.len(), 1, "{leads:?}");

        // Without wait the answer comes at once and says the event is on its way.
        let quick = app
            .post(&path, token, json!({"type": "checkout.session.completed"}))
            .await;
        assert_eq!(quick.status, StatusCode::ACCEPTED, "{}", quick.text);
        assert!(quick.body["status"].is_string(), "{}", quick.text);
    })
    .await;
}

/// Checks validate takes the flow as POST /v1/flows does, bare or wrapped, and explains a
/// mistyped event type.
async fn check_validate_takes_the_flow_as_saved(app: &TestApp, token: &str, flow: &Value) {
    // The body POST /v1/flows takes, bare or wrapped.
    for body in [flow.clone(), json!({"flow": flow.clone()})] {
        let checked = app.post("/v1/flows/validate", token, body).await;
        assert_eq!(checked.status, StatusCode::OK, "{}", checked.text);
        assert_eq!(checked.body["valid"], true, "{}", checked.text);
    }
    let mut typo = flow.clone();
    typo["trigger"]["events"] = json!(["charge.succeded"]);
    let checked = app.post("/v1/flows/validate", token, typo).await;
    assert_eq!(checked.body["valid"], false);
    assert_eq!(checked.body["errors"][0]["path"], "trigger.events[0]");
    assert!(
        checked.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("did you mean 'charge.succeeded'"),
        "{}",
        checked.text
    );
}

/// Saves the flow and delivers a small and a big charge; returns the flow's id and the two
/// finished events.
async fn save_the_flow_and_deliver_two_charges(
    app: &TestApp,
    p: &Pipeline,
    flow: Value,
) -> (String, Value, Value) {
    let created = app.post("/v1/flows", &p.tenant.token, flow).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    let id = created.str("/id");
    let small = app
        .deliver(
            p,
            &tributary_tests::charge_event("evt_s", "ch_s", "s@x.co", "S X", 100, 1_700_000_000),
        )
        .await;
    let big = app
        .deliver(
            p,
            &tributary_tests::charge_event("evt_b", "ch_b", "b@x.co", "B X", 900, 1_700_000_100),
        )
        .await;
    (id, small, big)
}

/// Previews flow `id` on the event `body` names.
async fn preview(app: &TestApp, token: &str, id: &str, body: Value) -> Reply {
    app.post(&format!("/v1/flows/{id}/preview"), token, body)
        .await
}

/// Checks previews of an inbox event by id, of the newest of a type and of a given event
/// each say whether the flow runs and why.
async fn check_previews_of_inbox_and_given_events(
    app: &TestApp,
    token: &str,
    id: &str,
    small: &Value,
    big: &Value,
) {
    // An inbox event by id: the small charge, which the filter turns away, and says why.
    let by_id = preview(app, token, id, json!({"event_id": small["id"]})).await;
    assert_eq!(by_id.status, StatusCode::OK, "{}", by_id.text);
    assert_eq!(by_id.body["matched"], false);
    assert!(
        by_id.body["reason"]
            .as_str()
            .unwrap()
            .contains("filter `object.amount > 500` is false"),
        "{}",
        by_id.text
    );
    // The newest event of a type: the big charge, which runs.
    let latest = preview(app, token, id, json!({"latest": "charge.succeeded"})).await;
    assert_eq!(latest.body["matched"], true, "{}", latest.text);
    assert_eq!(
        latest.body["operations"][0]["fields"]["paid"], 900,
        "{}",
        latest.text
    );
    assert_eq!(big["status"], "processed");
    // Another type: the reason names what the trigger listens to.
    let mut refund =
        tributary_tests::charge_event("evt_r", "ch_r", "r@x.co", "R", 100, 1_700_000_200);
    refund["type"] = json!("charge.refunded");
    let other = preview(app, token, id, json!({"event": refund})).await;
    assert!(
        other.body["reason"]
            .as_str()
            .unwrap()
            .contains("listens to charge.succeeded"),
        "{}",
        other.text
    );
}

/// Checks a preview needs exactly one source, and a real one.
async fn check_preview_needs_one_real_source(app: &TestApp, token: &str, id: &str) {
    let none = preview(app, token, id, json!({})).await;
    assert_eq!(
        none.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
        ["event"]
    );
    let missing = preview(app, token, id, json!({"event_id": "no-such-event"})).await;
    assert_eq!(
        missing.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
        ["event_id"]
    );
    let never = preview(app, token, id, json!({"latest": "invoice.paid"})).await;
    assert_eq!(
        never.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
        ["latest"]
    );
}

#[tokio::test]
async fn validate_takes_the_flow_as_saved_and_preview_takes_inbox_events() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;
        let flow = json!({
            "name": "Paid", "connection_id": p.connection_id,
            "trigger": {"events": ["charge.succeeded"], "filter": "object.amount > 500"},
            "steps": [{"id": "contact", "action": "upsert", "object": "contacts",
                       "match": {"email": "{{ object.billing_details.email }}"},
                       "fields": {"paid": "{{ object.amount }}"}}]
        });
        check_validate_takes_the_flow_as_saved(&app, token, &flow).await;

        let (id, small, big) = save_the_flow_and_deliver_two_charges(&app, &p, flow).await;
        check_previews_of_inbox_and_given_events(&app, token, &id, &small, &big).await;
        // Exactly one source, and a real one.
        check_preview_needs_one_real_source(&app, token, &id).await;
    })
    .await;
}

/// Two people editing one flow: the second replace, made from the version the first one
/// changed, is refused with 412 instead of silently overwriting it.
#[tokio::test]
async fn a_flow_edited_meanwhile_is_not_overwritten() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;
        let flow = |name: &str| {
            json!({"name": name, "connection_id": p.connection_id,
                   "trigger": {"events": ["charge.succeeded"]},
                   "steps": [{"id": "contact", "action": "upsert", "object": "contacts",
                              "match": {"email": "{{ object.billing_details.email }}"}, "fields": {}}]})
        };
        let created = app.post("/v1/flows", token, flow("First")).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let id = created.str("/id");
        assert_eq!(created.headers["location"], format!("/v1/flows/{id}").as_str());
        assert_eq!(created.headers["etag"], "\"v1\"");
        let read = app.get(&format!("/v1/flows/{id}"), token).await;
        let tag = read.headers["etag"].to_str().unwrap().to_string();
        assert_eq!(tag, "\"v1\"");

        let replace = |name: &'static str, tag: Option<String>| {
            let mut request = app
                .client
                .put(app.url(&format!("/v1/flows/{id}")))
                .bearer_auth(token)
                .json(&flow(name));
            if let Some(tag) = tag {
                request = request.header("if-match", tag);
            }
            async move { tributary_tests::Reply::read(request.send().await.unwrap()).await }
        };
        // Ada saves from v1: accepted, now v2.
        let ada = replace("Ada's", Some(tag.clone())).await;
        assert_eq!(ada.status, StatusCode::OK, "{}", ada.text);
        assert_eq!(ada.headers["etag"], "\"v2\"");
        // Bob also edited v1: refused, and Ada's change stands.
        let bob = replace("Bob's", Some(tag)).await;
        bob.assert_problem(StatusCode::PRECONDITION_FAILED);
        assert!(bob.text.contains("version 2"), "{}", bob.text);
        let now = app.get(&format!("/v1/flows/{id}"), token).await;
        assert_eq!(now.body["name"], "Ada's");
        assert_eq!(now.body["version"], 2);
        // Without If-Match a replace still goes through (as before), and `*` matches any.
        assert_eq!(replace("Anyone's", None).await.status, StatusCode::OK);
        assert_eq!(replace("Star's", Some("*".into())).await.status, StatusCode::OK);
    })
    .await;
}
