//! The SMTP adapter's default TLS modes against a mail server with a certificate from a private
//! CA: an email step and the connection test succeed over STARTTLS and over implicit TLS when
//! `TRIBUTARY_EXTRA_CA_CERTS` names that CA, and without it the handshake is refused with an
//! error that says the certificate is not trusted, and nothing is sent.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tributary_fakes::smtp::{FakeSmtp, test_ca_path};
use tributary_tests::{Pipeline, TestApp, charge_event, each_backend_with};

/// An smtp connection to `smtp` in TLS mode `tls`, and a flow mailing a receipt through it for
/// each `charge.succeeded`; returns the connection's id.
async fn mail_flow(app: &TestApp, p: &Pipeline, smtp: &FakeSmtp, tls: &str) -> String {
    let token = &p.tenant.token;
    let mail = app
        .post(
            "/v1/connections",
            token,
            json!({"name": format!("Mail {tls}"), "provider": "smtp",
                   "auth": {"type": "basic", "username": "mailer", "password": "mail-password-1"},
                   "settings": {"host": smtp.host, "port": smtp.port, "tls": tls,
                                "from": "billing@acme.example"}}),
        )
        .await;
    assert_eq!(mail.status, StatusCode::CREATED, "{}", mail.text);
    let flow = json!({
        "name": format!("Receipts {tls}"), "connection_id": p.connection_id,
        "trigger": {"events": ["charge.succeeded"]},
        "steps": [{"id": "receipt", "action": "email", "connection_id": mail.str("/id"),
                   "fields": {"to": "{{ object.billing_details.email }}",
                              "subject": "Your receipt {{ object.id }}",
                              "text": "Paid: {{ object.amount }} cents."}}]
    });
    let created = app.post("/v1/flows", token, flow).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    mail.str("/id")
}

async fn connection_test(app: &TestApp, p: &Pipeline, connection_id: &str) -> Value {
    let tested = app
        .post(
            &format!("/v1/connections/{connection_id}/test"),
            &p.tenant.token,
            json!({}),
        )
        .await;
    assert_eq!(tested.status, StatusCode::OK, "{}", tested.text);
    tested.body
}

fn receipt(done: &Value) -> Value {
    done["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["step"] == "receipt")
        .cloned()
        .unwrap_or_else(|| panic!("no receipt delivery: {done}"))
}

#[tokio::test]
async fn email_goes_over_starttls_and_implicit_tls_to_a_server_of_a_trusted_private_ca() {
    let ca = test_ca_path().display().to_string();
    each_backend_with(&[("TRIBUTARY_EXTRA_CA_CERTS", &ca)], |app| async move {
        for tls in ["starttls", "tls"] {
            let smtp = if tls == "tls" {
                FakeSmtp::start_implicit_tls().await
            } else {
                FakeSmtp::start().await
            };
            smtp.require_login("mailer", "mail-password-1");
            let p = app.pipeline(json!({})).await;
            let mail_id = mail_flow(&app, &p, &smtp, tls).await;

            let tested = connection_test(&app, &p, &mail_id).await;
            assert_eq!(tested["ok"], true, "{tls}: {tested}");

            let email = format!("tony-{tls}@starkindustries.com");
            let event = charge_event(
                &format!("evt_tls_{tls}"),
                &format!("ch_tls_{tls}"),
                &email,
                "Tony Stark",
                4200,
                chrono::Utc::now().timestamp(),
            );
            let done = app.deliver(&p, &event).await;
            assert_eq!(done["status"], "processed", "{tls}: {done}");
            let delivery = receipt(&done);
            assert_eq!(delivery["status"], "succeeded", "{tls}: {delivery}");
            assert_eq!(delivery["attempts"], 1, "{tls}: {delivery}");

            // The server read it after the handshake, in full.
            let messages = smtp.messages();
            assert_eq!(messages.len(), 1, "{tls}: {messages:?}");
            let message = &messages[0];
            assert!(message.tls, "{tls}: the message came over TLS");
            assert_eq!(message.from, "billing@acme.example");
            assert_eq!(message.to, [email.as_str()]);
            assert!(
                message
                    .data
                    .contains(&format!("Subject: Your receipt ch_tls_{tls}")),
                "{}",
                message.data
            );
            assert!(
                message.data.contains("Paid: 4200 cents."),
                "{}",
                message.data
            );
            assert_eq!(smtp.failed_handshakes(), 0);
            assert_eq!(smtp.refused_logins(), 0);
        }
    })
    .await;
}

#[tokio::test]
async fn a_certificate_of_an_untrusted_ca_is_refused_and_nothing_is_sent() {
    // One attempt: the refusal is what is looked at, not the retries (tested elsewhere).
    each_backend_with(&[("TRIBUTARY_RETRY_MAX_ATTEMPTS", "1")], |app| async move {
        for tls in ["starttls", "tls"] {
            let smtp = if tls == "tls" {
                FakeSmtp::start_implicit_tls().await
            } else {
                FakeSmtp::start().await
            };
            let p = app.pipeline(json!({})).await;
            let mail_id = mail_flow(&app, &p, &smtp, tls).await;

            let tested = connection_test(&app, &p, &mail_id).await;
            assert_eq!(tested["ok"], false, "{tls}: {tested}");
            let detail = tested["detail"].as_str().unwrap();
            assert!(
                detail.contains("certificate is not trusted") && detail.contains("UnknownIssuer"),
                "{tls}: {detail}"
            );
            assert!(
                smtp.failed_handshakes() >= 1,
                "{tls}: the handshake was tried"
            );

            let event = charge_event(
                &format!("evt_untrusted_{tls}"),
                &format!("ch_untrusted_{tls}"),
                "pepper@starkindustries.com",
                "Pepper Potts",
                4200,
                chrono::Utc::now().timestamp(),
            );
            let done = app.deliver(&p, &event).await;
            assert_eq!(done["status"], "failed", "{tls}: {done}");
            let delivery = receipt(&done);
            assert_eq!(delivery["status"], "dead", "{tls}: {delivery}");
            let message = delivery["error"]["message"].as_str().unwrap();
            assert!(
                message.contains("certificate is not trusted") && message.contains("UnknownIssuer"),
                "{tls}: {message}"
            );
            assert!(smtp.messages().is_empty(), "{tls}: nothing was sent");
        }
    })
    .await;
}
