//! `http`: calls any endpoint with the step's `fields` as the JSON body; the answer is
//! `steps.<id>.response`. Through the step's own `http` connection (base URL, auth, signing),
//! or at its absolute `url` with no credentials.

use entity::connections;

use super::kind::{Done, Exec, Runs, Shape, StepKind, Templates, Wants};
use crate::crm::{self, BoxFuture, CrmError, ErrorKind, Trail, Write};
use crate::flow::{Action, Operation, Step, ValidationError};

pub struct Http;

impl StepKind for Http {
    fn action(&self) -> Action {
        Action::Http
    }

    fn keys(&self) -> Option<&'static [&'static str]> {
        Some(&[
            "id",
            "action",
            "object",
            "connection_id",
            "url",
            "path",
            "method",
            "headers",
            "fields",
            "when",
        ])
    }

    fn needs_object(&self) -> bool {
        false
    }

    fn validate(&self, step: &Shape<'_>, problems: &mut Vec<ValidationError>) {
        let has_url = step.has("url");
        let has_connection = step.has("connection_id");
        if !has_url && !has_connection {
            problems.push(ValidationError::new(
                "url",
                "an http step needs a url, or an http connection (connection_id) and a path",
            ));
        }
        if has_url && has_connection {
            problems.push(ValidationError::new(
                "url",
                "with a connection, give the path under its base_url instead of a url",
            ));
        }
        for name in step.object("headers").into_iter().flat_map(|h| h.keys()) {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                problems.push(ValidationError::new(
                    format!("headers.{name}"),
                    "is not a valid header name",
                ));
            }
        }
    }

    fn render(
        &self,
        step: &Step,
        op: &mut Operation,
        _: &dyn Templates,
    ) -> Result<(), ValidationError> {
        if step.connection_id.is_some() {
            return Ok(());
        }
        let url = op.url.as_deref();
        let absolute = url.is_some_and(|u| {
            url::Url::parse(u).is_ok_and(|p| matches!(p.scheme(), "http" | "https"))
        });
        if absolute {
            return Ok(());
        }
        Err(ValidationError::new(
            "url",
            format!(
                "rendered {}; an http step without a connection needs an absolute http(s) URL",
                url.map_or("empty".to_string(), |u| format!("'{u}'"))
            ),
        ))
    }

    fn runs(&self, own_connection: bool) -> Runs {
        if own_connection {
            Runs::Connection(Wants::Provider {
                provider: "http",
                named: "an http connection",
            })
        } else {
            Runs::Endpoint
        }
    }

    /// The step's URL (checked against `TRIBUTARY_VENDOR_URLS`) as a connection of no
    /// credentials, and the path to call on it.
    fn endpoint(
        &self,
        op: &mut Operation,
        tenant_id: &str,
        vendor_urls: crate::settings::VendorUrls,
    ) -> Result<connections::Model, CrmError> {
        let url = op.url.clone().unwrap_or_default();
        let bad = |message: String| CrmError::new(ErrorKind::Invalid, format!("url: {message}"));
        crm::config::check_url("http", &url, vendor_urls).map_err(bad)?;
        let parsed = url::Url::parse(&url).map_err(|e| bad(e.to_string()))?;
        let mut base = format!(
            "{}://{}",
            parsed.scheme(),
            parsed.host_str().unwrap_or_default()
        );
        if let Some(port) = parsed.port() {
            base.push_str(&format!(":{port}"));
        }
        let mut path = parsed.path().to_string();
        if let Some(query) = parsed.query() {
            path.push('?');
            path.push_str(query);
        }
        op.path = Some(path);
        let now = crate::now();
        Ok(connections::Model {
            inbound_token: None,
            vendor_account: None,
            id: String::new(),
            tenant_id: tenant_id.to_string(),
            name: "http step".into(),
            provider: "http".into(),
            auth_type: "none".into(),
            credentials: None,
            settings: serde_json::json!({ "base_url": base }).to_string(),
            status: "active".into(),
            status_reason: None,
            paused_until: None,
            session: None,
            refresh_lease_until: None,
            vendor_info: "{}".into(),
            created_at: now,
            updated_at: now,
        })
    }

    /// A request the HTTP adapter sends like a create: `POST` unless the step says otherwise.
    fn execute<'a>(&'a self, cx: Exec<'a>) -> BoxFuture<'a, (Result<Done, CrmError>, Trail)> {
        Box::pin(async move {
            let connection = match cx.connection() {
                Ok(connection) => connection,
                Err(error) => return (Err(error), Trail::default()),
            };
            let (result, trail) =
                crm::apply(cx.connector, connection, Write::Create, cx.op, None).await;
            (result.map(Done::Wrote), trail)
        })
    }
}
