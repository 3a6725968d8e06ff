//! The fake Stripe's answers: Stripe's error objects, the scripted failures, and how an answer becomes an HTTP response.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use chrono::Utc;
use serde_json::{Map, Value, json};

use super::params::is_api_version;
use super::{API_VERSION, Answer, Failure};

impl Answer {
    pub(super) fn ok(body: Value) -> Answer {
        Answer {
            status: 200,
            body,
            headers: Vec::new(),
        }
    }

    pub(super) fn header(mut self, name: &str, value: &str) -> Answer {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// Stripe's error object. `doc_url` follows the code, as Stripe's do.
pub(super) fn error(
    status: u16,
    kind: &str,
    code: Option<&str>,
    param: Option<&str>,
    message: &str,
) -> Answer {
    let mut inner = Map::new();
    if let Some(code) = code {
        inner.insert("code".into(), json!(code));
        inner.insert(
            "doc_url".into(),
            json!(format!(
                "https://stripe.com/docs/error-codes/{}",
                code.replace('_', "-")
            )),
        );
    }
    inner.insert("message".into(), json!(message));
    if let Some(param) = param {
        inner.insert("param".into(), json!(param));
    }
    inner.insert("type".into(), json!(kind));
    Answer {
        status,
        body: json!({ "error": inner }),
        headers: Vec::new(),
    }
}

pub(super) fn invalid(param: Option<&str>, message: &str) -> Answer {
    error(400, "invalid_request_error", None, param, message)
}

pub(super) fn missing_param(param: &str) -> Answer {
    error(
        400,
        "invalid_request_error",
        Some("parameter_missing"),
        Some(param),
        &format!("Missing required param: {param}."),
    )
}

pub(super) fn unknown_param(param: &str) -> Answer {
    error(
        400,
        "invalid_request_error",
        Some("parameter_unknown"),
        Some(param),
        &format!("Received unknown parameter: {param}"),
    )
}

pub(super) fn no_such(kind: &str, id: &str, param: &str, status: u16) -> Answer {
    error(
        status,
        "invalid_request_error",
        Some("resource_missing"),
        Some(param),
        &format!("No such {kind}: '{id}'"),
    )
}

/// `sk_test_****abcd`: the mode prefix, then the last four characters.
pub(super) fn redact(key: &str) -> String {
    let prefix_len = [
        "sk_test_", "sk_live_", "rk_test_", "rk_live_", "pk_test_", "pk_live_",
    ]
    .iter()
    .find(|p| key.starts_with(*p))
    .map_or(0, |p| p.len());
    let tail: String = key
        .chars()
        .rev()
        .take(4.min(key.len().saturating_sub(prefix_len)))
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{}****{tail}", &key[..prefix_len])
}

pub(super) fn rate_limited() -> Answer {
    error(
        429,
        "invalid_request_error",
        Some("rate_limit"),
        None,
        "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
    )
}

pub(super) fn scripted(failure: &Failure) -> Answer {
    let mut answer = match failure.status {
        429 => rate_limited(),
        409 => error(
            409,
            "invalid_request_error",
            Some("lock_timeout"),
            None,
            "This object cannot be accessed right now because another API request or Stripe process is currently accessing it. If you see this error intermittently, retry the request. If you see this error frequently and are making multiple concurrent requests to a single object, make your requests serially or at a lower rate.",
        ),
        status if status >= 500 => error(
            status,
            "api_error",
            None,
            None,
            "An unknown error occurred. Please try again later.",
        ),
        status => error(
            status,
            "invalid_request_error",
            None,
            None,
            "The request failed (scripted by the fake).",
        ),
    };
    if let Some(retry) = failure.should_retry {
        answer = answer.header("stripe-should-retry", if retry { "true" } else { "false" });
    }
    answer
}

pub(super) fn unrecognized(method: &str, path: &str) -> Answer {
    error(
        404,
        "invalid_request_error",
        None,
        None,
        &format!(
            "Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/."
        ),
    )
}

pub(super) fn respond(answer: Answer, req: &HttpRequest, request_id: &str) -> HttpResponse {
    let mut body = answer.body;
    if let Some(error) = body.get_mut("error").and_then(Value::as_object_mut) {
        error.insert(
            "request_log_url".into(),
            json!(format!(
                "https://dashboard.stripe.com/test/logs/{request_id}?t={}",
                Utc::now().timestamp()
            )),
        );
    }
    let version = req
        .headers()
        .get("stripe-version")
        .and_then(|v| v.to_str().ok())
        .filter(|v| is_api_version(v))
        .unwrap_or(API_VERSION)
        .to_string();
    let mut builder = HttpResponse::build(
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    );
    builder
        .insert_header(("request-id", request_id.to_string()))
        .insert_header(("stripe-version", version))
        .content_type("application/json");
    for (name, value) in answer.headers {
        builder.insert_header((name, value));
    }
    builder.body(serde_json::to_string_pretty(&body).unwrap())
}
