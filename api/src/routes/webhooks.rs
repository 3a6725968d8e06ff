//! `POST /webhooks/stripe/{token}`: Stripe's door in. No bearer token: the signature is the
//! authentication.

use actix_web::web::{Data, Path};
use actix_web::{HttpRequest, HttpResponse, post, web};
use utoipa_actix_web::service_config::ServiceConfig;

use super::responses;
use crate::error::ApiError;
use crate::extract::webhook_body;
use crate::services::ingress::{self, IngressOut, MAX_WEBHOOK_BYTES};
use crate::state::AppState;

/// Receive a Stripe webhook
///
/// Stripe's door in, one URL per Stripe account. No bearer token: the `Stripe-Signature` header,
/// checked against the account's signing secrets, is the authentication. The event is stored
/// durably before the 200, then processed asynchronously; a duplicate is acknowledged and not
/// processed again. An event whose `livemode` is not the account's (a test event at a live
/// account or the reverse) is refused with 400 naming `livemode`, and stored nowhere. Over the account's rate (`TRIBUTARY_WEBHOOK_RATE`) the answer is 429 with
/// `Retry-After` and nothing is stored; Stripe retries. Webhooks arriving together share one
/// commit; when more than `TRIBUTARY_INGEST_MAX_PENDING` wait for theirs, or the tenant has
/// more than `TRIBUTARY_INGEST_MAX_BACKLOG` live events due and not yet processed, the answer is 503
/// with `Retry-After` at once and nothing is stored; Stripe retries.
#[utoipa::path(tag = "webhooks", operation_id = "webhooks.receive",
    params(("token" = String, Path, description = "The account's webhook token, from its `webhook_url`"),
           ("Stripe-Signature" = String, Header, description = "Stripe's `t=…,v1=…` signature")),
    request_body(content = std::collections::HashMap<String, serde_json::Value>, description = "A Stripe event, exactly as Stripe sends it", content_type = "application/json",
        example = json!({"id": "evt_1PzXb2LkdIwHu7ix0ExAmPle", "object": "event", "type": "charge.succeeded", "created": 1718000000,
            "livemode": false, "api_version": "2024-06-20", "data": {"object": {"id": "ch_3PzXb2LkdIwHu7ix1", "object": "charge",
            "amount": 4900, "currency": "eur", "billing_details": {"email": "ada@example.com", "name": "Ada Lovelace"}}}})),
    responses(
        (status = 200, description = "The event is stored (or was already): Stripe may stop retrying.", body = IngressOut),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 413, response = inline(responses::TooLarge)),
        (status = 429, response = inline(responses::TooManyRequests)),
        (status = 503, response = inline(responses::Unavailable))),
    security(()))]
#[post("/webhooks/stripe/{token}")]
async fn receive(
    state: Data<AppState>,
    req: HttpRequest,
    token: Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = webhook_body(&req, payload, MAX_WEBHOOK_BYTES).await?;
    let signature = req
        .headers()
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    Ok(HttpResponse::Ok().json(ingress::receive(&state, &token, signature, &body).await?))
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(receive);
}
