//! `email` steps: a message sent through the tenant's `smtp` connection with `lettre`.
//!
//! Settings of an `smtp` connection: `host`, `port` (587), `tls` (`starttls`, `tls` for
//! implicit TLS, or `none`), `from` (the sender address), `from_name`, `timeout_seconds` (30);
//! auth `basic` (username, password) or `none`. The message carries a `Message-ID` derived from
//! its delivery, and every send is recorded by that id before and after the server takes it,
//! so a retried or replayed step never mails the recipient twice: a message the server already
//! accepted is reported as sent, not sent again. SMTP answers are classified like CRM errors:
//! 4xx and connection trouble are retried, a refused login needs new credentials, other 5xx are
//! dead-lettered with the server's words.

use std::time::Duration;

use entity::{connections, email_sends};
use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials as SmtpCredentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Map, Value, json};

use crate::crm::config::{self, Credentials};
use crate::crm::session::{Connector, open_credentials};
use crate::crm::{CrmError, CrmOutcome, ErrorKind};
use crate::flow::Operation;
use crate::settings::VendorUrls;

/// The `Message-ID` of a delivery's email.
pub fn message_id(delivery_id: &str, connection: &connections::Model) -> String {
    let settings: Map<String, Value> =
        serde_json::from_str(&connection.settings).unwrap_or_default();
    let domain = config::text(&settings, "from")
        .and_then(|from| from.rsplit_once('@').map(|(_, d)| d.to_string()))
        .unwrap_or_else(|| "tributary.invalid".into());
    format!("<{delivery_id}@{domain}>")
}

fn invalid(message: String) -> CrmError {
    CrmError::new(ErrorKind::Invalid, message)
}

fn mailboxes(op: &Operation, field: &str) -> Result<Vec<Mailbox>, CrmError> {
    let Some(text) = op.fields.get(field).and_then(Value::as_str) else {
        return Ok(Vec::new());
    };
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| {
            part.parse::<Mailbox>().map_err(|e| {
                invalid(format!(
                    "fields.{field}: '{}' is not an email address ({e})",
                    op.redact(part)
                ))
            })
        })
        .collect()
}

fn build(
    op: &Operation,
    settings: &Map<String, Value>,
    message_id: &str,
) -> Result<Message, CrmError> {
    let from = config::text(settings, "from").unwrap_or_default();
    let from: Mailbox = match config::text(settings, "from_name") {
        Some(name) => format!("{name} <{from}>").parse(),
        None => from.parse(),
    }
    .map_err(|e| invalid(format!("settings.from of the smtp connection: {e}")))?;
    let mut builder = Message::builder()
        .from(from)
        .message_id(Some(message_id.to_string()))
        .subject(
            op.fields
                .get("subject")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        );
    let to = mailboxes(op, "to")?;
    if to.is_empty() {
        return Err(invalid("fields.to: no recipient".into()));
    }
    for mailbox in to {
        builder = builder.to(mailbox);
    }
    for mailbox in mailboxes(op, "cc")? {
        builder = builder.cc(mailbox);
    }
    for mailbox in mailboxes(op, "bcc")? {
        builder = builder.bcc(mailbox);
    }
    if let Some(reply_to) = mailboxes(op, "reply_to")?.into_iter().next() {
        builder = builder.reply_to(reply_to);
    }
    let part = |key: &str| {
        op.fields
            .get(key)
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
    };
    let message = match (part("text"), part("html")) {
        (Some(text), Some(html)) => {
            builder.multipart(MultiPart::alternative_plain_html(text, html))
        }
        (Some(text), None) => builder.singlepart(SinglePart::plain(text)),
        (None, Some(html)) => builder.singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_HTML)
                .body(html),
        ),
        (None, None) => return Err(invalid("the email has no text or html body".into())),
    };
    message.map_err(|e| invalid(format!("the email cannot be built: {e}")))
}

/// The transport of an `smtp` connection. Under `TRIBUTARY_VENDOR_URLS=official` the host is
/// resolved here, to public addresses only, and lettre dials the checked address while TLS
/// still verifies the host name; lettre resolving the name itself would reach any address.
async fn transport(
    connector: &Connector,
    connection: &connections::Model,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, CrmError> {
    let settings: Map<String, Value> =
        serde_json::from_str(&connection.settings).unwrap_or_default();
    let host = config::text(&settings, "host")
        .ok_or_else(|| CrmError::new(ErrorKind::Permanent, "the smtp connection has no host"))?;
    let tls = config::text(&settings, "tls").unwrap_or("starttls");
    let setup = |e: lettre::transport::smtp::Error| {
        CrmError::new(ErrorKind::Permanent, format!("the smtp connection: {e}"))
    };
    let default_port = if tls == "tls" { 465 } else { 587 };
    let port = settings
        .get("port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(default_port);
    let timeout = config::timeout(&settings).min(Duration::from_secs(120));
    let server = match connector.vendor_urls {
        VendorUrls::Any => host.to_string(),
        VendorUrls::Official => {
            let found = tokio::time::timeout(timeout, crate::net::resolve_public(host, port))
                .await
                .map_err(|_| {
                    CrmError::new(
                        ErrorKind::Transient,
                        format!("the mail server {host} was not resolved in time"),
                    )
                })?;
            let addresses = found.map_err(|e| {
                let kind = if e.kind() == std::io::ErrorKind::PermissionDenied {
                    ErrorKind::Permanent
                } else {
                    ErrorKind::Transient
                };
                CrmError::new(kind, format!("the mail server: {e}"))
            })?;
            addresses[0].ip().to_string()
        }
    };
    // The webpki roots, and the operator's private CAs (`TRIBUTARY_EXTRA_CA_CERTS`).
    let parameters = || {
        let mut builder = TlsParameters::builder(host.to_string());
        for der in &connector.extra_ca_certs {
            builder =
                builder.add_root_certificate(Certificate::from_der(der.clone()).map_err(setup)?);
        }
        builder.build().map_err(setup)
    };
    let builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(server).tls(match tls {
        "tls" => Tls::Wrapper(parameters()?),
        "none" => Tls::None,
        _ => Tls::Required(parameters()?),
    });
    let mut builder = builder.port(port).timeout(Some(timeout));
    if let Credentials::Basic { username, password } =
        open_credentials(&connector.keyring, connection)?
    {
        builder = builder.credentials(SmtpCredentials::new(username, password));
    }
    Ok(builder.build())
}

fn classify(error: &lettre::transport::smtp::Error) -> CrmError {
    let code = error.status().map(|c| c.to_string());
    let text = error.to_string();
    let kind = match code.as_deref() {
        Some("530" | "534" | "535" | "538") => ErrorKind::Auth,
        _ if error.is_transient() => ErrorKind::Transient,
        Some(_) if error.is_permanent() => ErrorKind::Permanent,
        _ => ErrorKind::Transient,
    };
    let text = match untrusted_certificate(error) {
        Some(reason) => format!("its TLS certificate is not trusted ({reason})"),
        None => text,
    };
    let mut crm_error = CrmError::new(kind, format!("the mail server: {text}"));
    crm_error.vendor_status = code.and_then(|c| c.parse().ok());
    crm_error
}

/// Why the TLS handshake refused the server's certificate, when that is what failed.
fn untrusted_certificate(error: &lettre::transport::smtp::Error) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        // An I/O error hides the error it carries from `source()`.
        let inner = current
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map(|inner| inner as &(dyn std::error::Error + 'static));
        for candidate in [Some(current), inner].into_iter().flatten() {
            if let Some(rustls::Error::InvalidCertificate(reason)) =
                candidate.downcast_ref::<rustls::Error>()
            {
                return Some(format!("{reason:?}"));
            }
        }
        cause = inner.or_else(|| current.source());
    }
    None
}

/// Claims the send of `message_id`: true when this attempt may send it, false when a send of
/// it was started before (by this delivery or a concurrent run).
async fn claim(
    connector: &Connector,
    connection: &connections::Model,
    message_id: &str,
) -> Result<bool, CrmError> {
    let now = crate::now();
    let inserted = email_sends::Entity::insert(email_sends::ActiveModel {
        message_id: Set(message_id.to_string()),
        tenant_id: Set(connection.tenant_id.clone()),
        connection_id: Set(connection.id.clone()),
        status: Set("sending".into()),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(email_sends::Column::MessageId)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(&connector.db)
    .await
    .map_err(|e| CrmError::new(ErrorKind::Transient, format!("recording the send: {e}")))?;
    Ok(inserted == 1)
}

async fn mark_sent(connector: &Connector, message_id: &str) -> Result<(), CrmError> {
    email_sends::Entity::update_many()
        .set(email_sends::ActiveModel {
            status: Set("sent".into()),
            updated_at: Set(crate::now()),
            ..Default::default()
        })
        .filter(email_sends::Column::MessageId.eq(message_id))
        .exec(&connector.db)
        .await
        .map_err(|e| CrmError::new(ErrorKind::Transient, format!("recording the send: {e}")))?;
    Ok(())
}

/// Sends the email of `op`, whose `record_id` is its Message-ID; at most once.
pub async fn send(
    connector: &Connector,
    connection: &connections::Model,
    op: &Operation,
) -> Result<CrmOutcome, CrmError> {
    let message_id = op
        .record_id
        .clone()
        .ok_or_else(|| CrmError::new(ErrorKind::Permanent, "the email has no Message-ID"))?;
    let before = email_sends::Entity::find_by_id(message_id.clone())
        .filter(email_sends::Column::TenantId.eq(connection.tenant_id.as_str()))
        .one(&connector.db)
        .await
        .map_err(|e| CrmError::new(ErrorKind::Transient, format!("reading the send: {e}")))?;
    let not_again = |warning: String| CrmOutcome {
        record_id: message_id.clone(),
        warnings: vec![warning],
        response: None,
    };
    if let Some(earlier) = before {
        return Ok(not_again(if earlier.status == "sent" {
            format!(
                "the mail server accepted this email at {}; it was not sent again",
                earlier.updated_at.to_rfc3339()
            )
        } else {
            format!(
                "an attempt at {} was cut off while the mail server had this email, so it may have arrived; it was not sent again, to never mail twice",
                earlier.updated_at.to_rfc3339()
            )
        }));
    }
    let settings: Map<String, Value> =
        serde_json::from_str(&connection.settings).unwrap_or_default();
    let message = build(op, &settings, &message_id)?;
    let transport = transport(connector, connection).await?;
    if !claim(connector, connection, &message_id).await? {
        return Ok(not_again(
            "another run is sending this email; it was not sent twice".into(),
        ));
    }
    match transport.send(message).await {
        Ok(response) => {
            mark_sent(connector, &message_id).await?;
            let answer: Vec<String> = response.message().map(str::to_string).collect();
            Ok(CrmOutcome {
                record_id: message_id.clone(),
                warnings: Vec::new(),
                response: Some(json!({
                    "message_id": message_id,
                    "code": response.code().to_string(),
                    "message": answer.join(" "),
                })),
            })
        }
        Err(error) => {
            // Not taken: a later attempt sends it.
            let _ = email_sends::Entity::delete_by_id(message_id.clone())
                .exec(&connector.db)
                .await;
            Err(classify(&error))
        }
    }
}

/// The connection test of an `smtp` connection: connect, greet, and log in if it has
/// credentials.
pub async fn check(
    connector: &Connector,
    connection: &connections::Model,
) -> Result<String, CrmError> {
    let transport = transport(connector, connection).await?;
    match transport.test_connection().await {
        Ok(true) => Ok("the mail server answered and accepted the login".into()),
        Ok(false) => Err(CrmError::new(
            ErrorKind::Transient,
            "the mail server did not answer",
        )),
        Err(error) => Err(classify(&error)),
    }
}
