//! `ETag` on every JSON answer of a GET under `/v1/`, and `If-None-Match` → 304. A handler may
//! set its own tag (flows name their version); otherwise the tag is a strong one made from the
//! body, the same [`tag_of`](crate::extract::tag_of) that `If-Match` on PATCH compares with.

use actix_web::HttpResponse;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;

use crate::error::ApiError;
use crate::extract::{tag_of_bytes, tags_match};

/// Whether a GET of `path` answers with an `ETag` (also used to document it).
pub fn applies(method: &Method, path: &str) -> bool {
    method == Method::GET && path.starts_with("/v1/") && path != "/v1/oauth/callback"
}

pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if !applies(req.method(), req.path()) {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    }
    let if_none_match = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .map(|v| v.to_str().unwrap_or_default().to_string());
    let response = next.call(req).await?;
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if response.status() != StatusCode::OK || !json {
        return Ok(response.map_into_boxed_body());
    }
    let (req, response) = response.into_parts();
    let (mut head, body) = response.into_parts();
    let bytes = actix_web::body::to_bytes(body).await.map_err(|e| {
        let e: Box<dyn std::error::Error> = e.into();
        ApiError::Internal(anyhow::anyhow!("reading an answer: {e}"))
    })?;
    let tag = match head.headers().get(header::ETAG) {
        Some(tag) => tag.clone(),
        None => {
            let tag = HeaderValue::from_str(&tag_of_bytes(&bytes))
                .map_err(|e| ApiError::Internal(e.into()))?;
            head.headers_mut().insert(header::ETAG, tag.clone());
            tag
        }
    };
    if let Some(wanted) = if_none_match
        && tags_match(&wanted, tag.to_str().unwrap_or_default())
    {
        let not_modified = HttpResponse::NotModified()
            .insert_header((header::ETAG, tag))
            .finish();
        return Ok(ServiceResponse::new(req, not_modified));
    }
    Ok(ServiceResponse::new(
        req,
        head.set_body(bytes).map_into_boxed_body(),
    ))
}
