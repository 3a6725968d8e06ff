//! A flow's history put to use: one version, the structural diff between two, and rollback
//! (a new version equal to an old one, with `If-Match`, roles and tenants as for a replace).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tributary_tests::{Reply, TestApp, charge_event, each_backend};

fn first(connection_id: &str) -> Value {
    json!({"name": "History", "connection_id": connection_id,
        "trigger": {"events": ["charge.succeeded"]},
        "steps": [
            {"id": "contact", "action": "upsert", "object": "contacts",
             "match": {"email": "{{ object.billing_details.email }}"},
             "fields": {"tier": "silver", "firstname": "{{ object.billing_details.name | first_name }}"}},
            {"id": "deal", "action": "upsert", "object": "deals",
             "match": {"charge_id": "{{ object.id }}", "region": "eu"},
             "fields": {"amount": "{{ object.amount }}"}},
            {"id": "note", "action": "create", "object": "notes",
             "fields": {"text": "paid {{ object.id }}"}}]})
}

/// The first version with `deal` losing a match key, `contact` moved last with a new tier,
/// and a `task` step added.
fn second(connection_id: &str) -> Value {
    let mut flow = first(connection_id);
    let steps = flow["steps"].as_array().unwrap().clone();
    let mut contact = steps[0].clone();
    contact["fields"]["tier"] = json!("gold");
    let mut deal = steps[1].clone();
    deal["match"].as_object_mut().unwrap().remove("region");
    let task = json!({"id": "task", "action": "create", "object": "tasks",
                      "fields": {"subject": "Follow up {{ object.id }}"}});
    flow["steps"] = json!([deal, steps[2], contact, task]);
    flow
}

async fn put(app: &TestApp, token: &str, id: &str, body: Value, if_match: &str) -> Reply {
    let response = app
        .client
        .request(Method::PUT, app.url(&format!("/v1/flows/{id}")))
        .bearer_auth(token)
        .header("if-match", if_match)
        .json(&body)
        .send()
        .await
        .unwrap();
    Reply::read(response).await
}

async fn rollback(
    app: &TestApp,
    token: &str,
    id: &str,
    version: i64,
    if_match: Option<&str>,
) -> Reply {
    let mut request = app
        .client
        .post(app.url(&format!("/v1/flows/{id}/rollback")))
        .bearer_auth(token)
        .json(&json!({"version": version}));
    if let Some(tag) = if_match {
        request = request.header("if-match", tag);
    }
    Reply::read(request.send().await.unwrap()).await
}

fn change<'a>(diff: &'a Reply, path: &str) -> &'a Value {
    diff.body["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == path)
        .unwrap_or_else(|| panic!("no change at {path}: {}", diff.text))
}

async fn contact_tier(app: &TestApp, token: &str, connection_id: &str, email: &str) -> Value {
    let records = app.records(token, connection_id, "contacts").await;
    let record = records
        .iter()
        .find(|r| r["fields"]["email"] == email)
        .unwrap_or_else(|| panic!("no contact {email}: {records:?}"));
    record["fields"]["tier"].clone()
}

#[tokio::test]
async fn versions_read_one_and_diff_by_step_id() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;
        let created = app.post("/v1/flows", token, first(&p.connection_id)).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let id = created.str("/id");
        let replaced = put(&app, token, &id, second(&p.connection_id), "\"v1\"").await;
        assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.text);

        // One version, as the list shows it.
        let listed = app.get(&format!("/v1/flows/{id}/versions"), token).await;
        let one = app.get(&format!("/v1/flows/{id}/versions/1"), token).await;
        assert_eq!(one.status, StatusCode::OK, "{}", one.text);
        assert_eq!(
            one.body, listed.body["data"][1],
            "the same shape as a list item"
        );
        assert_eq!(one.body["flow"]["steps"][0]["fields"]["tier"], "silver");
        for missing in [
            format!("/v1/flows/{id}/versions/3"),
            format!("/v1/flows/{id}/versions/x"),
            "/v1/flows/nope/versions/1".to_string(),
        ] {
            app.get(&missing, token)
                .await
                .assert_problem(StatusCode::NOT_FOUND);
        }

        // By default: the version before the current one, to the current one.
        let diff = app.get(&format!("/v1/flows/{id}/diff"), token).await;
        assert_eq!(diff.status, StatusCode::OK, "{}", diff.text);
        assert_eq!(
            (diff.body["from"].clone(), diff.body["to"].clone()),
            (json!(1), json!(2))
        );
        let tier = change(&diff, "steps[contact].fields.tier");
        assert_eq!(
            (&tier["change"], &tier["before"], &tier["after"]),
            (&json!("changed"), &json!("silver"), &json!("gold"))
        );
        let task = change(&diff, "steps[task]");
        assert_eq!(task["change"], "added");
        assert_eq!(task["after"]["object"], "tasks");
        let region = change(&diff, "steps[deal].match.region");
        assert_eq!(
            (&region["change"], &region["before"]),
            (&json!("removed"), &json!("eu"))
        );
        let moved = change(&diff, "steps[contact]");
        assert_eq!(
            (&moved["change"], &moved["before"], &moved["after"]),
            (&json!("moved"), &json!(0), &json!(2))
        );
        // Steps are matched by id: the others kept their order, so only `contact` moved.
        let moves = diff.body["changes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["change"] == "moved")
            .count();
        assert_eq!(moves, 1, "{}", diff.text);
        assert_eq!(
            diff.body["changes"].as_array().unwrap().len(),
            4,
            "{}",
            diff.text
        );
        let again = app
            .get(&format!("/v1/flows/{id}/diff?from=1&to=2"), token)
            .await;
        assert_eq!(again.body, diff.body, "deterministic");

        let back = app
            .get(&format!("/v1/flows/{id}/diff?from=2&to=1"), token)
            .await;
        assert_eq!(change(&back, "steps[task]")["change"], "removed");
        let none = app
            .get(&format!("/v1/flows/{id}/diff?from=0&to=1"), token)
            .await;
        assert_eq!(change(&none, "steps[contact]")["change"], "added");
        assert_eq!(change(&none, "name")["after"], "History");
        let unknown = app.get(&format!("/v1/flows/{id}/diff?from=7"), token).await;
        assert_eq!(unknown.assert_problem(StatusCode::NOT_FOUND), ["from"]);
        let bad = app
            .get(&format!("/v1/flows/{id}/diff?to=soon"), token)
            .await;
        assert_eq!(bad.assert_problem(StatusCode::UNPROCESSABLE_ENTITY), ["to"]);

        // Another tenant sees none of it.
        let other = app.signup("Other").await;
        for path in [
            format!("/v1/flows/{id}/versions/1"),
            format!("/v1/flows/{id}/diff"),
        ] {
            app.get(&path, &other.token)
                .await
                .assert_problem(StatusCode::NOT_FOUND);
        }
    })
    .await;
}

#[tokio::test]
async fn rollback_makes_a_new_version_equal_to_an_old_one_and_restores_behaviour() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;
        let id = app
            .post("/v1/flows", token, first(&p.connection_id))
            .await
            .str("/id");
        let replaced = put(&app, token, &id, second(&p.connection_id), "\"v1\"").await;
        assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.text);

        let now = chrono::Utc::now().timestamp();
        app.deliver(
            &p,
            &charge_event("evt_h1", "ch_h1", "one@history.co", "Ada One", 1000, now),
        )
        .await;
        assert_eq!(
            contact_tier(&app, token, &p.connection_id, "one@history.co").await,
            "gold"
        );
        assert_eq!(app.records(token, &p.connection_id, "tasks").await.len(), 1);

        // Refused: a stale If-Match, a member, another tenant, a version the flow never had.
        let stale = rollback(&app, token, &id, 1, Some("\"v1\"")).await;
        stale.assert_problem(StatusCode::PRECONDITION_FAILED);
        let (_, member) = app.user_with_role(&p.tenant, "member").await;
        rollback(&app, &member, &id, 1, None)
            .await
            .assert_problem(StatusCode::FORBIDDEN);
        let other = app.signup("Other").await;
        rollback(&app, &other.token, &id, 1, None)
            .await
            .assert_problem(StatusCode::NOT_FOUND);
        let unknown = rollback(&app, token, &id, 9, None).await;
        assert_eq!(unknown.assert_problem(StatusCode::NOT_FOUND), ["version"]);
        let current = app.get(&format!("/v1/flows/{id}"), token).await;
        assert_eq!(
            current.body["version"], 2,
            "nothing refused changed the flow"
        );

        let rolled = rollback(&app, token, &id, 1, Some("\"v2\"")).await;
        assert_eq!(rolled.status, StatusCode::OK, "{}", rolled.text);
        assert_eq!(rolled.body["version"], 3);
        assert_eq!(rolled.headers["etag"], "\"v3\"");
        let v1 = app.get(&format!("/v1/flows/{id}/versions/1"), token).await;
        let v3 = app.get(&format!("/v1/flows/{id}/versions/3"), token).await;
        assert_eq!(
            v3.body["flow"], v1.body["flow"],
            "version 3 is version 1 again"
        );
        let diff = app
            .get(&format!("/v1/flows/{id}/diff?from=1&to=3"), token)
            .await;
        assert_eq!(diff.body["changes"], json!([]), "{}", diff.text);
        let updates = app.get("/v1/audit-log?limit=100", token).await;
        let logged = updates.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "flow.update" && e["resource_id"] == id.as_str())
            .count();
        assert_eq!(logged, 2, "the replace and the rollback: {}", updates.text);

        // The next event runs as version 1 did: silver, and no task.
        app.deliver(
            &p,
            &charge_event("evt_h2", "ch_h2", "two@history.co", "Bo Two", 2000, now),
        )
        .await;
        assert_eq!(
            contact_tier(&app, token, &p.connection_id, "two@history.co").await,
            "silver"
        );
        assert_eq!(app.records(token, &p.connection_id, "tasks").await.len(), 1);
        let event = app.get("/v1/deliveries?limit=100", token).await;
        let versions: Vec<i64> = event.body["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["step"] == "contact")
            .map(|d| d["flow_version"].as_i64().unwrap())
            .collect();
        assert_eq!(versions, [3, 2], "newest first: {}", event.text);
    })
    .await;
}
