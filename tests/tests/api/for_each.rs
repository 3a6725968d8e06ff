//! `for_each`: a step that runs once per item of a list, each item a delivery of its own,
//! previewed item by item, never merged into the event's own record link, and not doubled by
//! a forced replay.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tributary_tests::{TestApp, charge_event, each_backend, wait_for};

/// A charge event that carries a list: two lines with ids, a free line without one, and a
/// repeat of the first line's id.
fn event_with_lines(event_id: &str) -> Value {
    let mut event = charge_event(
        event_id,
        "ch_lines_1",
        "ada@example.com",
        "Ada Lovelace",
        3500,
        chrono::Utc::now().timestamp(),
    );
    event["data"]["object"]["lines"] = json!({"data": [
        {"id": "il_1", "description": "Seat", "amount": 1000},
        {"id": "il_2", "description": "Support", "amount": 2500},
        {"description": "Welcome gift", "amount": 0},
        {"id": "il_1", "description": "Seat, again", "amount": 1000}
    ]});
    event
}

fn lines_flow(connection_id: &str) -> Value {
    json!({
        "name": "One record per line", "connection_id": connection_id,
        "trigger": {"events": ["charge.succeeded"]},
        "steps": [
            {"id": "lines", "action": "upsert", "object": "line_items",
             "for_each": "object.lines.data",
             "when": "item.amount > 0",
             "match": {"line_id": "{{ item.id }}", "charge": "{{ object.id }}"},
             "fields": {"description": "{{ item.description }}",
                        "amount": "{{ item.amount | major_units(object.currency) }}"}},
            {"id": "summary", "action": "log",
             "message": "{{ steps.lines.items | length }} lines: {{ steps.lines.items | map(attribute='key') | join(',') }}"}
        ]
    })
}

fn steps_of(done: &Value) -> Vec<(String, String)> {
    done["deliveries"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            (
                d["step"].as_str().unwrap_or_default().to_string(),
                d["status"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_for_each_step_writes_one_record_per_item_and_later_steps_read_them_all() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;
        let created = app
            .post("/v1/flows", token, lines_flow(&p.connection_id))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let flow_id = created.str("/id");
        let event = event_with_lines("evt_lines_1");

        // The preview shows each item's operation under its own name.
        let preview = app
            .post(
                &format!("/v1/flows/{flow_id}/preview"),
                token,
                json!({"event": event}),
            )
            .await;
        assert_eq!(preview.status, StatusCode::OK, "{}", preview.text);
        let named: Vec<&str> = preview.body["operations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|op| op["step"].as_str().unwrap())
            .collect();
        // An item whose id an earlier item has is named by its position.
        assert_eq!(
            named,
            ["lines[il_1]", "lines[il_2]", "lines[#3]", "summary"]
        );
        assert_eq!(preview.body["skipped"], json!(["lines[#2]"]));
        assert_eq!(
            preview.body["operations"][1]["fields"]["description"],
            "Support"
        );
        assert_eq!(
            preview.body["operations"][3]["fields"]["message"],
            "3 lines: il_1,il_2,#3"
        );

        let done = app.deliver(&p, &event).await;
        assert_eq!(done["status"], "processed", "{done}");
        let mut steps = steps_of(&done);
        steps.sort();
        assert_eq!(
            steps,
            [
                ("lines[#2]".to_string(), "skipped".to_string()),
                ("lines[#3]".to_string(), "succeeded".to_string()),
                ("lines[il_1]".to_string(), "succeeded".to_string()),
                ("lines[il_2]".to_string(), "succeeded".to_string()),
                ("summary".to_string(), "succeeded".to_string()),
            ]
        );
        // Each item is its own record, not the charge's record written over; the repeated
        // line found its record by `match`.
        let records = lines(&app, token, &p.connection_id).await;
        assert_eq!(
            records,
            pairs(&[("il_1", "Seat, again"), ("il_2", "Support")])
        );
        let summary = done["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["step"] == "summary")
            .unwrap();
        assert_eq!(
            summary["operation"]["fields"]["message"],
            "3 lines: il_1,il_2,#3"
        );

        // A forced replay runs every item again and writes the same two records.
        assert_eq!(summary["crm_record_id"], Value::Null);
        let event_id = done["id"].as_str().unwrap().to_string();
        let replay = app
            .post(
                &format!("/v1/events/{event_id}/replay"),
                token,
                json!({"force": true}),
            )
            .await;
        assert_eq!(replay.status, StatusCode::ACCEPTED, "{}", replay.text);
        wait_for(10, "the replay to finish", || async {
            let e = app.get(&format!("/v1/events/{event_id}"), token).await;
            (e.body["status"] == "processed" && e.body["runs"].as_i64() >= Some(2)).then_some(())
        })
        .await;
        assert_eq!(
            lines(&app, token, &p.connection_id).await,
            pairs(&[("il_1", "Seat, again"), ("il_2", "Support")])
        );
    })
    .await;
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

async fn lines(app: &TestApp, token: &str, connection_id: &str) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = app
        .records(token, connection_id, "line_items")
        .await
        .iter()
        .map(|r| {
            let text = |name: &str| r["fields"][name].as_str().unwrap_or_default().to_string();
            (text("line_id"), text("description"))
        })
        .collect();
    found.sort();
    found
}

#[tokio::test]
async fn a_for_each_that_is_not_a_list_or_an_item_outside_one_is_refused_by_name() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;

        // `item` belongs to steps with for_each; for_each's own expression is checked.
        let mut flow = lines_flow(&p.connection_id);
        flow["steps"][0].as_object_mut().unwrap().remove("for_each");
        flow["steps"][1]["for_each"] = json!("object.lines.data |");
        let bad = app.post("/v1/flows", token, flow).await;
        let mut fields = bad.assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
        fields.sort();
        fields.dedup();
        assert_eq!(
            fields,
            [
                "steps[0].fields.amount",
                "steps[0].fields.description",
                "steps[0].match.line_id",
                "steps[0].when",
                "steps[1].for_each"
            ],
            "{}",
            bad.text
        );
        assert!(
            bad.text.contains("only a step with for_each has an item"),
            "{}",
            bad.text
        );

        // A list that turns out not to be one stops the flow at that step, saying why.
        let mut flow = lines_flow(&p.connection_id);
        flow["steps"][0]["for_each"] = json!("object.amount");
        let created = app.post("/v1/flows", token, flow).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let done = app.deliver(&p, &event_with_lines("evt_lines_2")).await;
        assert_eq!(
            steps_of(&done),
            [("lines".to_string(), "dead".to_string())],
            "{done}"
        );
        let message = done["deliveries"][0]["error"]["message"]
            .as_str()
            .unwrap_or_default();
        assert!(
            message.contains("for_each") && message.contains("needs a list"),
            "{done}"
        );
        assert!(
            app.records(token, &p.connection_id, "line_items")
                .await
                .is_empty()
        );
    })
    .await;
}

/// What a tenant makes long — a step id, an object name, an item's id, an assert's message —
/// is refused by name or recorded whole; it never stops its event's run on a column's length.
#[tokio::test]
async fn long_names_and_messages_are_refused_by_name_or_recorded_whole() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let token = &p.tenant.token;
        let long_id = "s".repeat(65);
        let long_object = "o".repeat(129);
        let bad = app
            .post(
                "/v1/flows",
                token,
                json!({"name": "Long", "connection_id": p.connection_id,
                       "trigger": {"events": ["charge.succeeded"]},
                       "steps": [{"id": long_id, "action": "log", "message": "x"},
                                 {"id": "b", "action": "create", "object": long_object,
                                  "fields": {"a": "b"}}]}),
            )
            .await;
        assert_eq!(
            bad.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
            ["steps[0].id", "steps[1].object"],
            "{}",
            bad.text
        );

        let message = "m".repeat(500);
        let flow = json!({
            "name": "Long values", "connection_id": p.connection_id,
            "trigger": {"events": ["charge.succeeded"]},
            "steps": [
                {"id": "lines", "action": "log", "for_each": "object.lines.data",
                 "message": "{{ item.description }}"},
                {"id": "stop", "action": "assert", "check": "false",
                 "message": format!("{message} {{{{ object.id }}}}")}
            ]
        });
        let created = app.post("/v1/flows", token, flow).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let mut event = event_with_lines("evt_lines_long");
        event["data"]["object"]["lines"]["data"] =
            json!([{"id": "il_".to_string() + &"9".repeat(100), "description": "Long id"}]);
        let done = app.deliver(&p, &event).await;
        assert_eq!(done["status"], "processed", "{done}");
        assert_eq!(
            steps_of(&done),
            [
                ("lines[#0]".to_string(), "succeeded".to_string()),
                ("stop".to_string(), "skipped".to_string())
            ]
        );
        let stop = &done["deliveries"][1];
        assert_eq!(
            stop["reason"],
            format!("assertion: {message} ch_lines_1"),
            "the whole message"
        );
    })
    .await;
}

/// An assert that stopped its flow stops it again when the event runs again for another
/// flow's retry: the steps after it never run.
#[tokio::test]
async fn a_stopped_flow_stays_stopped_when_its_event_runs_again() {
    each_backend(|app| async move {
        let p = app
            .pipeline(json!({"simulate_failure": {"deals": "permanent"}}))
            .await;
        let token = &p.tenant.token;
        for flow in [
            json!({"name": "Stopped", "connection_id": p.connection_id,
                   "trigger": {"events": ["charge.succeeded"]},
                   "steps": [{"id": "gate", "action": "assert", "check": "false", "message": "closed"},
                             {"id": "after", "action": "upsert", "object": "contacts",
                              "match": {"email": "{{ object.billing_details.email }}"}}]}),
            json!({"name": "Failing", "connection_id": p.connection_id,
                   "trigger": {"events": ["charge.succeeded"]},
                   "steps": [{"id": "deal", "action": "upsert", "object": "deals",
                              "match": {"charge": "{{ object.id }}"}}]}),
        ] {
            let created = app.post("/v1/flows", token, flow).await;
            assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        }
        let done = app.deliver(&p, &event_with_lines("evt_gate_1")).await;
        let mut steps = steps_of(&done);
        steps.sort();
        assert_eq!(
            steps,
            [
                ("deal".to_string(), "dead".to_string()),
                ("gate".to_string(), "skipped".to_string())
            ]
        );
        let dead = done["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["step"] == "deal")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let fixed = app
            .call(
                reqwest::Method::PATCH,
                &format!("/v1/connections/{}", p.connection_id),
                Some(token),
                Some(json!({"settings": {}})),
            )
            .await;
        assert_eq!(fixed.status, StatusCode::OK, "{}", fixed.text);
        let retry = app
            .post(&format!("/v1/deliveries/{dead}/retry"), token, json!({}))
            .await;
        assert_eq!(retry.status, StatusCode::ACCEPTED, "{}", retry.text);
        let again = app
            .finished_event(token, done["id"].as_str().unwrap())
            .await;
        let mut steps = steps_of(&again);
        steps.sort();
        assert_eq!(
            steps,
            [
                ("deal".to_string(), "succeeded".to_string()),
                ("gate".to_string(), "skipped".to_string())
            ],
            "{again}"
        );
        assert!(app.records(token, &p.connection_id, "contacts").await.is_empty());
    })
    .await;
}
