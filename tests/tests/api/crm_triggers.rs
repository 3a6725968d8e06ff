//! CRM-side events trigger flows: a Salesforce org pushes Outbound Messages (SOAP) and Flow
//! callouts to the connection's `inbound_url`; each change is stored in the inbox with its
//! `source`, deduplicated, listed, and runs the flows whose trigger names the CRM, with the
//! record's previous values — and the changes Tributary's own integration user made are
//! recorded and skipped.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tributary_fakes::salesforce::FakeSalesforce;
use tributary_tests::{Pipeline, TestApp, each_backend};

const ORG: &str = "00D000000000001EAA";
const INTEGRATION_USER: &str = "005000000000INTEG";

fn outbound_message(
    org: &str,
    notification: &str,
    opportunity: &str,
    stage: &str,
    user: &str,
) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body>
  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
   <OrganizationId>{org}</OrganizationId>
   <ActionId>04k000000000001AAA</ActionId>
   <SessionId xsi:nil="true"/>
   <EnterpriseUrl>https://example.my.salesforce.com/services/Soap/c/59.0/00D000000000001</EnterpriseUrl>
   <PartnerUrl>https://example.my.salesforce.com/services/Soap/u/59.0/00D000000000001</PartnerUrl>
   <Notification>
    <Id>{notification}</Id>
    <sObject xsi:type="sf:Opportunity" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
     <sf:Id>{opportunity}</sf:Id>
     <sf:StageName>{stage}</sf:StageName>
     <sf:Amount>1200.0</sf:Amount>
     <sf:LastModifiedById>{user}</sf:LastModifiedById>
     <sf:SystemModstamp>{stamp}</sf:SystemModstamp>
    </sObject>
   </Notification>
  </notifications>
 </soapenv:Body>
</soapenv:Envelope>"#,
        stamp = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ")
    )
}

async fn salesforce_connection(app: &TestApp, fake: &FakeSalesforce, settings: Value) -> Pipeline {
    app.salesforce_pipeline(fake, settings).await
}

async fn post_xml(app: &TestApp, url: &str, body: String) -> (StatusCode, String) {
    let reply = reqwest::Client::new()
        .post(local(app, url))
        .header("content-type", "text/xml; charset=utf-8")
        .header("soapaction", "\"\"")
        .body(body)
        .send()
        .await
        .expect("sent");
    (reply.status(), reply.text().await.unwrap_or_default())
}

/// Where the test reaches a public URL the install handed out.
fn local(app: &TestApp, url: &str) -> String {
    app.url(url.strip_prefix(&app.settings.public_url).unwrap_or(url))
}

/// The flow of seed 002's other direction: an Opportunity newly Closed Won is noted on it.
fn won_flow(connection_id: &str) -> Value {
    json!({
        "name": "Closed Won in Salesforce", "connection_id": connection_id,
        "trigger": {"source": "salesforce", "events": ["Opportunity.updated"],
                    "filter": "record.StageName == 'Closed Won' and previous.StageName != 'Closed Won'"},
        "steps": [{"id": "note", "action": "update", "object": "Opportunity",
                   "record_id": "{{ record.Id }}",
                   "fields": {"Description": "won at {{ record.Amount }}, was {{ previous.StageName }}"}}]
    })
}

async fn events_from(app: &TestApp, token: &str, source: &str) -> Vec<Value> {
    let reply = app.get(&format!("/v1/events?source={source}"), token).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.body["data"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn salesforce_outbound_messages_run_crm_flows_once_with_previous_values() {
    each_backend(|app| async move {
        let fake = FakeSalesforce::start();
        let opp = fake.insert(
            "Opportunity",
            json!({"Name": "Stark renewal", "StageName": "Negotiation", "CloseDate": "2030-01-01"}),
        );
        let p = salesforce_connection(
            &app,
            &fake,
            json!({"organization_id": ORG, "integration_user_id": INTEGRATION_USER}),
        )
        .await;
        let token = &p.tenant.token;
        let connection = app.connection(&p).await;
        let inbound = connection["inbound_url"]
            .as_str()
            .expect("an inbound URL")
            .to_string();
        assert!(inbound.contains("/webhooks/salesforce/"), "{inbound}");
        let created = app
            .post("/v1/flows", token, won_flow(&p.connection_id))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);

        // The stage before: stored, seen, no flow runs.
        let (status, ack) = post_xml(
            &app,
            &inbound,
            outbound_message(ORG, "04l01", &opp, "Negotiation", "005USER"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{ack}");
        assert!(
            ack.contains("<Ack>true</Ack>"),
            "Salesforce's acknowledgement: {ack}"
        );

        // Closed Won: the flow runs with the previous stage.
        let won = outbound_message(ORG, "04l02", &opp, "Closed Won", "005USER");
        let (status, _) = post_xml(&app, &inbound, won.clone()).await;
        assert_eq!(status, StatusCode::OK);
        // Salesforce retries what it thinks was not acknowledged: kept once.
        let (status, _) = post_xml(&app, &inbound, won).await;
        assert_eq!(status, StatusCode::OK);

        let listed = events_from(&app, token, "salesforce").await;
        assert_eq!(
            listed.len(),
            2,
            "two changes, the retry not stored again: {listed:?}"
        );
        for event in &listed {
            assert_eq!(event["source"], "salesforce");
            assert_eq!(event["connection_id"], p.connection_id.as_str());
            assert_eq!(event["stripe_account_id"], "");
            assert_eq!(event["type"], "Opportunity.updated");
        }
        let stripe_only = events_from(&app, token, "stripe").await;
        assert!(stripe_only.is_empty(), "{stripe_only:?}");
        let won_event = listed
            .iter()
            .find(|e| e["stripe_event_id"] == "om:04l02")
            .expect("the won event");
        let done = app
            .finished_event(token, won_event["id"].as_str().unwrap())
            .await;
        assert_eq!(done["status"], "processed", "{done}");
        let record = fake.record("Opportunity", &opp).unwrap();
        assert_eq!(
            record["Description"], "won at 1200.0, was Negotiation",
            "{record:?}"
        );
        let before = listed
            .iter()
            .find(|e| e["stripe_event_id"] == "om:04l01")
            .unwrap();
        let before = app
            .finished_event(token, before["id"].as_str().unwrap())
            .await;
        assert_eq!(
            before["status"], "ignored",
            "the filter is false before the win: {before}"
        );

        // The integration user's own change is recorded and skipped: no echo.
        let (status, _) = post_xml(
            &app,
            &inbound,
            outbound_message(ORG, "04l03", &opp, "Negotiation", INTEGRATION_USER),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = post_xml(
            &app,
            &inbound,
            outbound_message(ORG, "04l04", &opp, "Closed Won", INTEGRATION_USER),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let echo = events_from(&app, token, "salesforce").await;
        let echo = echo
            .iter()
            .find(|e| e["stripe_event_id"] == "om:04l04")
            .expect("stored");
        let echo = app
            .finished_event(token, echo["id"].as_str().unwrap())
            .await;
        assert_eq!(echo["status"], "ignored", "{echo}");
        assert!(
            echo["deliveries"].as_array().is_none_or(|d| d.is_empty()),
            "{echo}"
        );

        refusals(&app, token, &inbound, &opp).await;
    })
    .await;
}

/// What is not the org's Outbound Message is refused, and nothing of it is stored.
async fn refusals(app: &TestApp, token: &str, inbound: &str, opp: &str) {
    // Another org, a stranger's URL, and bodies that are not messages.
    let (status, text) = post_xml(
        app,
        inbound,
        outbound_message("00D000000000999EAA", "04l05", opp, "Closed Won", "005USER"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    assert!(text.contains("00D000000000999EAA"), "{text}");
    let unknown = inbound.rsplit_once('/').unwrap().0.to_string() + "/nosuchtoken";
    let (status, _) = post_xml(
        app,
        &unknown,
        outbound_message(ORG, "04l06", opp, "Closed Won", "005USER"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, text) = post_xml(app, inbound, "<notxml".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("not XML"), "{text}");
    let listed = events_from(app, token, "salesforce").await;
    assert_eq!(listed.len(), 4, "nothing refused was stored: {listed:?}");
}

#[tokio::test]
async fn outbound_messages_need_the_org_named_and_flow_callouts_name_their_object() {
    each_backend(|app| async move {
        let fake = FakeSalesforce::start();
        let p = salesforce_connection(&app, &fake, json!({})).await;
        let token = &p.tenant.token;
        let inbound = app.connection(&p).await["inbound_url"]
            .as_str()
            .unwrap()
            .to_string();

        let (status, text) = post_xml(
            &app,
            &inbound,
            outbound_message(ORG, "04l01", "006A", "Closed Won", "005USER"),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
        assert!(text.contains("organization_id"), "says what to set: {text}");

        let callout = |body: Value| {
            let inbound = local(&app, &inbound);
            async move {
                reqwest::Client::new()
                    .post(&inbound)
                    .json(&body)
                    .send()
                    .await
                    .expect("sent")
            }
        };
        let bad = callout(json!({"records": [{"Id": "006A"}]})).await;
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        assert!(bad.text().await.unwrap().contains("object"));
        let good = callout(
            json!({"object": "Opportunity", "event": "updated", "id": "flow-run-1",
            "records": [{"Id": "006A", "StageName": "Closed Won"}]}),
        )
        .await;
        assert_eq!(good.status(), StatusCode::OK);
        let out: Value = good.json().await.unwrap();
        assert_eq!(out["received"], 1, "{out}");
        let again = callout(
            json!({"object": "Opportunity", "event": "updated", "id": "flow-run-1",
            "records": [{"Id": "006A", "StageName": "Closed Won"}]}),
        )
        .await;
        let again: Value = again.json().await.unwrap();
        assert_eq!(again["duplicates"], 1, "{again}");
        let listed = events_from(&app, token, "salesforce").await;
        assert_eq!(listed.len(), 1, "{listed:?}");

        // A flow must listen to a connection of its source.
        let sandbox = app
            .post(
                "/v1/connections",
                token,
                json!({"name": "Sandbox", "provider": "sandbox"}),
            )
            .await;
        let mut flow = won_flow(&sandbox.str("/id"));
        flow["steps"] = json!([{"id": "note", "action": "log", "message": "won"}]);
        let refused = app.post("/v1/flows", token, flow).await;
        let fields = refused.assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(fields, ["trigger.source"], "{}", refused.text);
        let bad_source = app
            .post(
                "/v1/flows",
                token,
                json!({"name": "x", "connection_id": p.connection_id,
                "trigger": {"source": "pipedrive", "events": ["Deal.updated"]},
                "steps": [{"id": "note", "action": "log", "message": "x"}]}),
            )
            .await;
        assert_eq!(
            bad_source.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
            ["trigger.source"]
        );
        let bad_list = app.get("/v1/events?source=pipedrive", token).await;
        assert_eq!(
            bad_list.assert_problem(StatusCode::UNPROCESSABLE_ENTITY),
            ["source"]
        );
    })
    .await;
}
