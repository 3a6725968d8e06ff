//! Seed 000 end to end against the fake Zoho CRM: a refresh token exchanged at the account's
//! accounts server, calls to the token response's api_domain with `Zoho-oauthtoken`, contacts
//! upserted by Email through Zoho's duplicate check, and Zoho's per-record errors.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tributary_fakes::zoho::{self, FakeZoho};
use tributary_tests::{Pipeline, TestApp, charge_event, each_backend, wait_for};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn connect(app: &TestApp, fake: &FakeZoho, refresh_token: &str) -> Pipeline {
    app.pipeline_with(json!({
        "name": "Zoho CRM", "provider": "zoho",
        "auth": {"type": "refresh_token", "client_id": zoho::CLIENT_ID,
                 "client_secret": zoho::CLIENT_SECRET, "refresh_token": refresh_token},
        "settings": {"accounts_url": fake.accounts_url, "api_version": "v8"}
    }))
    .await
}

fn define_fields(fake: &FakeZoho) {
    fake.define_field("Contacts", "Stripe_Transaction_ID", "text");
    fake.define_field("Contacts", "Total_Amount", "double");
}

#[tokio::test]
async fn charges_upsert_one_contact_by_email() {
    each_backend(|app| async move {
        let fake = FakeZoho::start();
        define_fields(&fake);
        let p = connect(&app, &fake, &fake.issue_refresh_token()).await;
        app.flow_from_template(&p, "zoho-contact-from-charge").await;

        let first = app
            .deliver(
                &p,
                &charge_event(
                    "evt_z1",
                    "ch_z1",
                    "Bruce@Wayne.com",
                    "Bruce Wayne",
                    9900,
                    now(),
                ),
            )
            .await;
        assert_eq!(first["status"], "processed", "{first}");
        let second = app
            .deliver(
                &p,
                &charge_event(
                    "evt_z2",
                    "ch_z2",
                    "bruce@wayne.com",
                    "Bruce Wayne",
                    12000,
                    now(),
                ),
            )
            .await;
        assert_eq!(second["status"], "processed", "{second}");

        let contacts = fake.records("Contacts");
        assert_eq!(contacts.len(), 1, "one contact: {contacts:?}");
        let contact = &contacts[0];
        assert_eq!(contact["Email"], "bruce@wayne.com");
        assert_eq!(contact["First_Name"], "Bruce");
        assert_eq!(contact["Last_Name"], "Wayne");
        assert_eq!(
            contact["Stripe_Transaction_ID"], "ch_z2",
            "updated by the second charge"
        );
        assert_eq!(contact["Total_Amount"].as_f64(), Some(120.0));
        assert_eq!(
            first["deliveries"][0]["crm_record_id"],
            second["deliveries"][0]["crm_record_id"]
        );

        let test = app
            .post(
                &format!("/v1/connections/{}/test", p.connection_id),
                &p.tenant.token,
                json!({}),
            )
            .await;
        assert_eq!(test.body["ok"], true, "{}", test.text);
        assert_eq!(
            test.body["detail"],
            "Zoho CRM reachable as admin@example.com"
        );

        // The token came from the accounts server; the API calls went to api_domain.
        let log = fake.log.all();
        assert_eq!(
            log.iter()
                .filter(|l| l.path.starts_with("/oauth/v2/token"))
                .count(),
            1
        );
        let upserts = fake.log.matching("POST", "/crm/v8/Contacts/upsert");
        assert_eq!(upserts.len(), 2);
        assert!(
            upserts[0]
                .authorization
                .as_deref()
                .unwrap()
                .starts_with("Zoho-oauthtoken ")
        );
        let body: Value = serde_json::from_str(&upserts[0].body).unwrap();
        assert_eq!(body["duplicate_check_fields"], json!(["Email"]));
        fake.stop().await;
    })
    .await;
}

#[tokio::test]
async fn invalid_data_is_dead_lettered_with_the_field() {
    each_backend(|app| async move {
        let fake = FakeZoho::start();
        define_fields(&fake);
        let p = connect(&app, &fake, &fake.issue_refresh_token()).await;
        let flow = json!({
            "name": "Bad amounts", "connection_id": p.connection_id,
            "trigger": {"events": ["charge.succeeded"]},
            "steps": [{"id": "contact", "action": "upsert", "object": "Contacts",
                       "match": {"Email": "{{ object.billing_details.email }}"},
                       "fields": {"Last_Name": "Example", "Total_Amount": "lots"}}]
        });
        let created = app.post("/v1/flows", &p.tenant.token, flow).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        let done = app
            .deliver(
                &p,
                &charge_event("evt_zi", "ch_zi", "x@example.com", "X", 100, now()),
            )
            .await;
        assert_eq!(done["status"], "failed", "{done}");
        let d = &done["deliveries"][0];
        assert_eq!(d["status"], "dead");
        assert_eq!(d["error"]["kind"], "invalid");
        assert_eq!(d["attempts"], 1, "invalid data is not retried");
        let message = d["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("INVALID_DATA") && message.contains("Total_Amount"),
            "{message}"
        );
        assert!(
            d["error"]["vendor_body"]
                .as_str()
                .unwrap()
                .contains("INVALID_DATA")
        );
        assert!(fake.records("Contacts").is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_refused_field_retries_with_the_fallback_fields() {
    each_backend(|app| async move {
        let fake = FakeZoho::start();
        // Stripe_Transaction_ID holds numbers here: Zoho refuses the charge id, and the step
        // falls back to the basic fields.
        fake.define_field("Contacts", "Stripe_Transaction_ID", "integer");
        fake.define_field("Contacts", "Total_Amount", "double");
        let p = connect(&app, &fake, &fake.issue_refresh_token()).await;
        app.flow_from_template(&p, "zoho-contact-from-charge").await;
        let done = app
            .deliver(
                &p,
                &charge_event(
                    "evt_zf",
                    "ch_zf",
                    "f@example.com",
                    "Fay Example",
                    100,
                    now(),
                ),
            )
            .await;
        assert_eq!(done["status"], "processed", "{done}");
        let warnings = done["deliveries"][0]["warnings"].to_string();
        assert!(warnings.contains("Stripe_Transaction_ID"), "{warnings}");
        let contact = &fake.records("Contacts")[0];
        assert_eq!(contact["Email"], "f@example.com");
        assert!(
            contact
                .get("Stripe_Transaction_ID")
                .is_none_or(Value::is_null)
        );
    })
    .await;
}

#[tokio::test]
async fn expired_tokens_refresh_and_a_refused_refresh_needs_reauth() {
    each_backend(|app| async move {
        let fake = FakeZoho::start();
        define_fields(&fake);
        let p = connect(&app, &fake, &fake.issue_refresh_token()).await;
        app.flow_from_template(&p, "zoho-contact-from-charge").await;
        let token_calls = || {
            fake.log
                .all()
                .iter()
                .filter(|l| l.path.starts_with("/oauth/v2/token"))
                .count()
        };

        let first = app
            .deliver(
                &p,
                &charge_event("evt_ze1", "ch_ze1", "e1@example.com", "Eve One", 100, now()),
            )
            .await;
        assert_eq!(first["status"], "processed", "{first}");
        fake.expire_access_tokens();
        let second = app
            .deliver(
                &p,
                &charge_event("evt_ze2", "ch_ze2", "e2@example.com", "Eve Two", 100, now()),
            )
            .await;
        assert_eq!(second["status"], "processed", "{second}");
        assert_eq!(token_calls(), 2, "a 401 INVALID_TOKEN refreshed once");

        fake.expire_access_tokens();
        fake.revoke_refresh_tokens();
        let sent = app
            .send_event(
                &p,
                &charge_event(
                    "evt_ze3",
                    "ch_ze3",
                    "e3@example.com",
                    "Eve Three",
                    100,
                    now(),
                ),
            )
            .await;
        let event_id = sent.str("/event_id");
        wait_for(10, "the delivery to wait", || async {
            let e = app
                .get(&format!("/v1/events/{event_id}"), &p.tenant.token)
                .await;
            (e.body["deliveries"][0]["status"] == "waiting").then_some(())
        })
        .await;
        let connection = app.connection(&p).await;
        assert_eq!(connection["status"], "needs_reauth");
        assert!(
            connection["status_reason"]
                .as_str()
                .unwrap()
                .contains("invalid_code"),
            "{connection}"
        );

        let reconnect = app
            .patch(
                &format!("/v1/connections/{}", p.connection_id),
                &p.tenant.token,
                json!({"auth": {"type": "refresh_token", "client_id": zoho::CLIENT_ID,
                                "client_secret": zoho::CLIENT_SECRET,
                                "refresh_token": fake.issue_refresh_token()}}),
            )
            .await;
        assert_eq!(reconnect.status, StatusCode::OK, "{}", reconnect.text);
        let done = app.finished_event(&p.tenant.token, &event_id).await;
        assert_eq!(done["status"], "processed", "{done}");
        assert_eq!(fake.records("Contacts").len(), 3);
    })
    .await;
}

#[tokio::test]
async fn too_many_requests_back_off_as_told() {
    each_backend(|app| async move {
        let fake = FakeZoho::start();
        define_fields(&fake);
        let p = connect(&app, &fake, &fake.issue_refresh_token()).await;
        app.flow_from_template(&p, "zoho-contact-from-charge").await;
        fake.throttle(2, 1);
        let done = app
            .deliver(
                &p,
                &charge_event(
                    "evt_zt",
                    "ch_zt",
                    "t@example.com",
                    "Tim Example",
                    100,
                    now(),
                ),
            )
            .await;
        assert_eq!(done["status"], "processed", "{done}");
        let log = fake.log.all();
        let throttled: Vec<usize> = (0..log.len()).filter(|&i| log[i].status == 429).collect();
        assert_eq!(throttled.len(), 2, "{log:?}");
        for i in throttled {
            let waited = log[i + 1].at - log[i].at;
            assert!(
                waited >= chrono::Duration::milliseconds(950),
                "waited only {waited}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn search_before_write_updates_what_it_finds_and_inserts_the_rest() {
    each_backend(|app| async move {
        let fake = FakeZoho::start();
        define_fields(&fake);
        let existing = fake.insert(
            "Contacts",
            json!({"Email": "known@example.com", "Last_Name": "Known"}),
        );
        let p = app
            .pipeline_with(json!({
                "name": "Zoho CRM", "provider": "zoho",
                "auth": {"type": "refresh_token", "client_id": zoho::CLIENT_ID,
                         "client_secret": zoho::CLIENT_SECRET, "refresh_token": fake.issue_refresh_token()},
                "settings": {"accounts_url": fake.accounts_url, "search_before_write": true}
            }))
            .await;
        app.flow_from_template(&p, "zoho-contact-from-charge").await;
        let known = app
            .deliver(
                &p,
                &charge_event(
                    "evt_sb1",
                    "ch_sb1",
                    "Known@Example.com",
                    "Kim Known",
                    500,
                    now(),
                ),
            )
            .await;
        assert_eq!(known["status"], "processed", "{known}");
        assert_eq!(known["deliveries"][0]["crm_record_id"], existing.as_str());
        let new = app
            .deliver(
                &p,
                &charge_event(
                    "evt_sb2",
                    "ch_sb2",
                    "new@example.com",
                    "Nia New",
                    500,
                    now(),
                ),
            )
            .await;
        assert_eq!(new["status"], "processed", "{new}");
        assert_eq!(fake.records("Contacts").len(), 2);
        assert_eq!(
            fake.records("Contacts")[0]["Stripe_Transaction_ID"],
            "ch_sb1"
        );
        assert!(fake.log.matching("POST", "/Contacts/upsert").is_empty());
        assert_eq!(fake.log.matching("GET", "/Contacts/search").len(), 2);
        assert_eq!(
            fake.log
                .matching("PUT", &format!("/Contacts/{existing}"))
                .len(),
            1
        );
        assert_eq!(fake.log.matching("POST", "/crm/v8/Contacts").len(), 1);
    })
    .await;
}
