//! Any REST CRM over HTTP.
//!
//! Settings: `base_url` (required), `headers` sent with every request, `id_pointer` (a JSON
//! pointer to the record id in the answer, default `/id`). Auth: none, a bearer `token`,
//! `basic`, a fixed `header`, or `hmac` (a hex HMAC-SHA256 of the exact body bytes with a shared
//! secret, in the header the tenant names).
//!
//! A step's `method` and `path` are templates; by default `create` and `upsert` POST to
//! `/<object>`, an `update` PATCHes `/<object>/<record_id>`, and an upsert of a Stripe object
//! written before PATCHes the record it wrote. The body is `match` and `fields` as one JSON
//! object. Any 2xx is success, and the answer's JSON is offered to later steps as
//! `steps.<id>.response`.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Map, Value};

use super::Write;
use super::session::{Call, Exchanged, Reply, Request, Session, excerpt, kind_of_status};
use super::{Adapter, BoxFuture, CrmError, CrmOutcome, ErrorKind, merged};
use crate::flow::Operation;

pub struct HttpCrm;

fn classify(reply: &Reply) -> CrmError {
    let mut kind = kind_of_status(reply.status);
    if reply.status == 403 {
        kind = ErrorKind::Auth;
    }
    if reply.status == 409 {
        kind = ErrorKind::Permanent;
    }
    let mut body = excerpt(&reply.body);
    if body.len() > 300 {
        body = format!("{}…", body.chars().take(300).collect::<String>());
    }
    let mut error = reply.error(kind, format!("the CRM answered {}: {body}", reply.status));
    if kind == ErrorKind::RateLimited {
        error.retry_after = reply.retry_after().or(Some(Duration::from_secs(5)));
    }
    error
}

fn segment(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

fn record_id(call: &Call<'_>, reply: &Reply, body: &Value, fallback: Option<&str>) -> String {
    let pointer = call.setting("id_pointer").unwrap_or("/id");
    let from_body = body.pointer(pointer).and_then(|v| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
    from_body
        .or_else(|| fallback.map(str::to_string))
        .or_else(|| {
            reply
                .header("location")
                .and_then(|l| l.trim_end_matches('/').rsplit('/').next())
                .map(str::to_string)
        })
        .unwrap_or_default()
}

impl Adapter for HttpCrm {
    fn exchange<'a>(&'a self, _call: &'a Call<'_>) -> BoxFuture<'a, Result<Exchanged, CrmError>> {
        Box::pin(async {
            Err(CrmError::new(
                ErrorKind::Auth,
                "HTTP CRM credentials cannot be refreshed",
            ))
        })
    }

    fn api_base(&self, call: &Call<'_>, _session: &Session) -> Result<String, CrmError> {
        call.setting("base_url")
            .map(str::to_string)
            .ok_or_else(|| CrmError::new(ErrorKind::Permanent, "the connection has no base_url"))
    }

    fn apply<'a, 'c: 'a>(
        &'a self,
        call: &'a mut Call<'c>,
        kind: Write,
        op: &'a Operation,
        linked: Option<&'a str>,
    ) -> BoxFuture<'a, Result<CrmOutcome, CrmError>> {
        Box::pin(async move {
            let known = super::known_ids(kind, op, linked).first().copied();
            let default_method = match (kind, known) {
                (Write::Update, _) | (Write::Upsert, Some(_)) => Method::PATCH,
                _ => Method::POST,
            };
            let method = match op.method.as_deref() {
                Some(m) => Method::from_bytes(m.as_bytes()).map_err(|_| {
                    CrmError::new(ErrorKind::Invalid, format!("unknown HTTP method {m}"))
                })?,
                None => default_method,
            };
            let path = match (op.path.as_deref(), known) {
                (Some(path), _) if path.starts_with('/') => path.to_string(),
                (Some(path), _) => format!("/{path}"),
                (None, Some(id)) => format!("/{}/{}", segment(&op.object), segment(id)),
                (None, None) => format!("/{}", segment(&op.object)),
            };
            let mut request = Request::new(method.clone(), path);
            if method != Method::DELETE {
                request = request.json(Value::Object(merged(op)));
            }
            let defaults: Map<String, Value> = call
                .settings
                .get("headers")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            // The connection's default headers, then the step's own.
            for (name, value) in defaults.iter().chain(op.headers.iter()) {
                if let Some(value) = value.as_str() {
                    request = request.header(name, value);
                }
            }
            let reply = call.send(&request).await?;
            if !reply.is_success() {
                return Err(classify(&reply));
            }
            let body = reply.json().unwrap_or(Value::Null);
            let id = record_id(call, &reply, &body, known);
            Ok(CrmOutcome {
                record_id: id,
                warnings: Vec::new(),
                response: (!body.is_null()).then_some(body),
            })
        })
    }

    fn check<'a, 'c: 'a>(
        &'a self,
        call: &'a mut Call<'c>,
    ) -> BoxFuture<'a, Result<String, CrmError>> {
        Box::pin(async move {
            let reply = call.send(&Request::new(Method::GET, "/")).await?;
            match reply.status {
                401 | 403 => Err(classify(&reply)),
                500..=599 => Err(classify(&reply)),
                status => Ok(format!(
                    "{} answered {status}",
                    call.setting("base_url").unwrap_or("the CRM")
                )),
            }
        })
    }
}
