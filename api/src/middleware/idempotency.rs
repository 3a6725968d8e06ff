//! `Idempotency-Key` on the tenant API's POSTs. A POST under `/v1/` sent with the header by an
//! authenticated caller claims the key before its handler runs; its final answer is kept for a
//! day and given again (with `Idempotent-Replayed: true`) to the same caller sending the same
//! request; the same key with another request answers 409, and while the first request still
//! runs, 409 with `Retry-After`. Sign-up, login, token refresh and switching tenant take no
//! key: each answer is fresh credentials, which are not kept. `/webhooks` is Stripe's and is
//! outside.
//!
//! The handler runs in a task of its own, so a client that hangs up mid-request does not stop
//! it: its answer is still kept for the retry. Rows live in [`crate::services::idempotency`].

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::web::Data;
use actix_web::{FromRequest, HttpMessage, HttpResponse};

use crate::error::{ApiError, FieldError, current_request_id, with_request_id};
use crate::extract::TenantContext;
use crate::services::idempotency::{self as store, Claim, Fingerprint, StoredAnswer};
use crate::state::AppState;

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// Set on an answer given again.
pub const REPLAYED: &str = "idempotent-replayed";

/// POSTs under `/v1/` that take no key: they answer credentials, never kept.
const WITHOUT_KEYS: [&str; 4] = [
    "/v1/signup",
    "/v1/login",
    "/v1/token/refresh",
    "/v1/auth/switch",
];

/// Whether a request to `path` with `method` honours `Idempotency-Key` (also used to document
/// it, with the routes' path templates).
pub fn applies(method: &Method, path: &str) -> bool {
    method == Method::POST && path.starts_with("/v1/") && !WITHOUT_KEYS.contains(&path)
}

/// Answers kept for replay: successes, and refusals that the same request would get again.
/// Anything else (a server error, 401, 403, 409, 429, 503…) may clear, so the key is released
/// and the same request can be sent again.
fn kept(status: StatusCode) -> bool {
    status.is_success() || matches!(status.as_u16(), 400 | 404 | 410 | 413 | 415 | 422)
}

/// Headers of the first answer that are given again with it.
const KEPT_HEADERS: [HeaderName; 3] = [header::CONTENT_TYPE, header::LOCATION, header::ETAG];

fn bad_key(message: &str) -> ApiError {
    ApiError::Validation(vec![FieldError::new("Idempotency-Key", message)])
}

/// The key as sent: 1 to 255 visible ASCII characters, one header.
fn parse_key(req: &ServiceRequest) -> Option<Result<String, ApiError>> {
    let mut values = req.headers().get_all(HEADER);
    let value = values.next()?;
    if values.next().is_some() {
        return Some(Err(bad_key("send the header once")));
    }
    let bytes = value.as_bytes();
    if bytes.is_empty()
        || bytes.len() > store::MAX_KEY_CHARS
        || !bytes.iter().all(|b| (0x21..=0x7e).contains(b))
    {
        return Some(Err(bad_key(
            "must be 1 to 255 visible ASCII characters (no spaces), e.g. a UUID",
        )));
    }
    Some(Ok(String::from_utf8_lossy(bytes).into_owned()))
}

pub async fn middleware(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if !applies(req.method(), req.path()) {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    }
    let key = match parse_key(&req) {
        None => {
            return next
                .call(req)
                .await
                .map(ServiceResponse::map_into_boxed_body);
        }
        Some(Err(e)) => return Ok(req.error_response(e)),
        Some(Ok(key)) => key,
    };
    let Some(state) = req.app_data::<Data<AppState>>().cloned() else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    // Keys belong to a caller: without one the handler answers 401 as usual.
    let ctx = match TenantContext::from_request(req.request(), &mut Payload::None).await {
        Ok(ctx) => ctx,
        Err(_) => {
            return next
                .call(req)
                .await
                .map(ServiceResponse::map_into_boxed_body);
        }
    };
    req.extensions_mut().insert(ctx.clone());

    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut payload = req.take_payload();
    let body = match crate::extract::read_body(
        &mut payload,
        declared,
        state.settings.max_body_bytes,
    )
    .await
    {
        Ok(body) => body.freeze(),
        Err(e) => return Ok(req.error_response(e)),
    };
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let fingerprint = Fingerprint::of(
        req.method().as_str(),
        req.path(),
        req.query_string(),
        content_type,
        &body,
    );
    req.set_payload(Payload::from(body));

    let row = match store::claim(&state, &ctx, &key, &fingerprint).await {
        Ok(Claim::Run(row)) => row,
        Ok(Claim::Replay(answer)) => return Ok(replay(req, answer)),
        Err(e) => return Ok(req.error_response(e)),
    };

    // Run to the end even if the client hangs up, so the retry finds the answer.
    let run = async move {
        let result = next.call(req).await;
        settle(&state, &ctx.tenant_id, &row, result).await
    };
    let task = match current_request_id() {
        Some(id) => actix_web::rt::spawn(with_request_id(id, run)),
        None => actix_web::rt::spawn(run),
    };
    task.await.map_err(|e| {
        actix_web::Error::from(ApiError::Internal(anyhow::anyhow!(
            "an idempotent request's task failed: {e}"
        )))
    })?
}

/// Keeps the handler's answer under the claimed row, or releases the row.
async fn settle(
    state: &AppState,
    tenant_id: &str,
    row: &str,
    result: Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let release = || async {
        if let Err(e) = store::release(state, row).await {
            tracing::warn!(error = %e, "releasing an idempotency key failed");
        }
    };
    let response = match result {
        Ok(response) => response,
        Err(e) => {
            release().await;
            return Err(e);
        }
    };
    if !kept(response.status()) {
        release().await;
        return Ok(response.map_into_boxed_body());
    }
    let (req, response) = response.into_parts();
    let (head, body) = response.into_parts();
    let bytes = match actix_web::body::to_bytes(body).await {
        Ok(bytes) => bytes,
        Err(e) => {
            release().await;
            let e: Box<dyn std::error::Error> = e.into();
            return Err(ApiError::Internal(anyhow::anyhow!("reading an answer: {e}")).into());
        }
    };
    let headers: Vec<(String, String)> = KEPT_HEADERS
        .iter()
        .filter_map(|name| {
            let value = head.headers().get(name)?.to_str().ok()?;
            Some((name.as_str().to_string(), value.to_string()))
        })
        .collect();
    // Not kept, the row stays claimed: the request is never run twice, and the retry hears
    // that its outcome is unknown.
    if let Err(e) = store::finish(
        state,
        tenant_id,
        row,
        head.status().as_u16(),
        &headers,
        &bytes,
    )
    .await
    {
        tracing::warn!(error = %e, "keeping an idempotent answer failed");
    }
    Ok(ServiceResponse::new(
        req,
        head.set_body(bytes).map_into_boxed_body(),
    ))
}

fn replay(req: ServiceRequest, answer: StoredAnswer) -> ServiceResponse<BoxBody> {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let Some(body) = answer.body else {
        return req.error_response(ApiError::Conflict {
            detail: format!(
                "the first request with this Idempotency-Key was answered with status {}, but \
                 that answer was not kept (larger than {} KiB); it is not run again: look the \
                 result up, then use a new key",
                answer.status,
                store::MAX_STORED_BODY / 1024
            ),
            field: Some("Idempotency-Key".into()),
        });
    };
    let mut response = HttpResponse::build(status);
    for (name, value) in &answer.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::from_str(value),
        ) {
            response.insert_header((name, value));
        }
    }
    response.insert_header((HeaderName::from_static(REPLAYED), "true"));
    req.into_response(response.body(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_posts_take_keys() {
        assert!(applies(&Method::POST, "/v1/flows"));
        assert!(applies(&Method::POST, "/v1/flows/{id}/preview"));
        assert!(!applies(&Method::GET, "/v1/flows"));
        assert!(!applies(&Method::POST, "/v1/login"));
        assert!(!applies(&Method::POST, "/v1/signup"));
        assert!(!applies(&Method::POST, "/v1/auth/switch"));
        assert!(!applies(&Method::POST, "/webhooks/stripe/abc"));
    }

    #[test]
    fn kept_answers() {
        for status in [200, 201, 202, 204, 400, 404, 422] {
            assert!(kept(StatusCode::from_u16(status).unwrap()), "{status}");
        }
        for status in [401, 403, 409, 412, 429, 500, 502, 503] {
            assert!(!kept(StatusCode::from_u16(status).unwrap()), "{status}");
        }
    }
}
