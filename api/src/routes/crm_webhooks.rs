//! The CRMs' doors in: `POST /webhooks/hubspot/{token}`, `/webhooks/zoho/{token}` and
//! `/webhooks/salesforce/{token}`, one URL per connection (its `inbound_url`), and
//! `/webhooks/hubspot` for the operator's shared HubSpot app, routed by portal. No bearer token:
//! the vendor's own proof (HubSpot's signature, Zoho's channel token, the Salesforce org id)
//! and the URL's token are the authentication.

use actix_web::web::{Data, Path};
use actix_web::{HttpRequest, HttpResponse, post, web};
use utoipa_actix_web::service_config::ServiceConfig;

use super::responses;
use crate::error::ApiError;
use crate::extract::webhook_body;
use crate::services::crm_ingress::{self, CrmIngressOut};
use crate::services::ingress::MAX_WEBHOOK_BYTES;
use crate::state::AppState;

async fn body_of(req: &HttpRequest, payload: web::Payload) -> Result<Vec<u8>, ApiError> {
    Ok(webhook_body(req, payload, MAX_WEBHOOK_BYTES)
        .await?
        .to_vec())
}

/// Receive HubSpot webhooks
///
/// HubSpot's app webhooks for one connection: a JSON array of up to 100 events, signed with
/// `X-HubSpot-Signature-v3` (HMAC-SHA256 of method, URL, body and timestamp with the app's
/// client secret; at most 5 minutes old). Each event is stored once per connection (HubSpot
/// sends some more than once) before the 200, then runs the flows whose trigger has
/// `source: hubspot`. Items that are not events are skipped and named, so one bad item never
/// makes HubSpot retry the batch.
#[utoipa::path(tag = "webhooks", operation_id = "webhooks.hubspot",
    params(("token" = String, Path, description = "The connection's inbound token, from its `inbound_url`"),
           ("X-HubSpot-Signature-v3" = String, Header, description = "base64 HMAC-SHA256 signature"),
           ("X-HubSpot-Request-Timestamp" = String, Header, description = "epoch milliseconds")),
    request_body(content = Vec<std::collections::HashMap<String, serde_json::Value>>, description = "HubSpot's batch of events", content_type = "application/json",
        example = json!([{"eventId": 4218806431_u64, "subscriptionId": 2712345, "portalId": 62515, "appId": 54321,
            "occurredAt": 1735689598123_u64, "subscriptionType": "deal.propertyChange", "attemptNumber": 0,
            "objectId": 9876543210_u64, "propertyName": "dealstage", "propertyValue": "closedwon",
            "changeSource": "CRM_UI", "sourceId": "userId:1234567"}])),
    responses(
        (status = 200, description = "The events are stored (or were already).", body = CrmIngressOut),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 413, response = inline(responses::TooLarge)),
        (status = 429, response = inline(responses::TooManyRequests)),
        (status = 503, response = inline(responses::Unavailable))),
    security(()))]
#[post("/webhooks/hubspot/{token}")]
async fn hubspot(
    state: Data<AppState>,
    req: HttpRequest,
    token: Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = body_of(&req, payload).await?;
    let out =
        crm_ingress::hubspot(&state, &token, &path_and_query(&req), req.headers(), &body).await?;
    Ok(HttpResponse::Ok().json(out))
}

/// Receive the shared HubSpot app's webhooks
///
/// The target URL of this server's own HubSpot app (`TRIBUTARY_OAUTH_HUBSPOT_CLIENT_ID` /
/// `_SECRET`), which HubSpot calls for every portal that installed the app. Verified with that
/// app's client secret; each event is stored for the connections installed through the app in
/// the portal it names (`portalId`, matched against each connection's `vendor_account`, which
/// HubSpot itself named when the connection was authorized). Events of a portal that no
/// connection here is installed in are skipped and named. A request without HubSpot's
/// signature headers is 401; a signed one is 404 when no operator HubSpot app is configured.
#[utoipa::path(tag = "webhooks", operation_id = "webhooks.hubspot_app",
    params(("X-HubSpot-Signature-v3" = String, Header, description = "base64 HMAC-SHA256 signature"),
           ("X-HubSpot-Request-Timestamp" = String, Header, description = "epoch milliseconds")),
    request_body(content = Vec<std::collections::HashMap<String, serde_json::Value>>, description = "HubSpot's batch of events, of any portals", content_type = "application/json",
        example = json!([{"eventId": 4218806431_u64, "subscriptionId": 2712345, "portalId": 62515, "appId": 54321,
            "occurredAt": 1735689598123_u64, "subscriptionType": "deal.propertyChange", "attemptNumber": 0,
            "objectId": 9876543210_u64, "propertyName": "dealstage", "propertyValue": "closedwon",
            "changeSource": "CRM_UI", "sourceId": "userId:1234567"}])),
    responses(
        (status = 200, description = "The events are stored (or were already) for the connections of their portals.", body = CrmIngressOut),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 413, response = inline(responses::TooLarge)),
        (status = 429, response = inline(responses::TooManyRequests)),
        (status = 503, response = inline(responses::Unavailable))),
    security(()))]
#[post("/webhooks/hubspot")]
async fn hubspot_app(
    state: Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = body_of(&req, payload).await?;
    let out = crm_ingress::hubspot_app(&state, &path_and_query(&req), req.headers(), &body).await?;
    Ok(HttpResponse::Ok().json(out))
}

/// The path and query HubSpot called, as signed.
fn path_and_query(req: &HttpRequest) -> String {
    req.uri()
        .path_and_query()
        .map_or(req.path(), |p| p.as_str())
        .to_string()
}

/// Receive Zoho CRM notifications
///
/// The callbacks of the connection's Notifications API channel (`actions/watch`), which
/// Tributary enables and renews when the connection's `notifications` setting is on. Verified
/// by the channel's token; each notified record is stored as an event, and re-read from Zoho
/// before flows run on it.
#[utoipa::path(tag = "webhooks", operation_id = "webhooks.zoho",
    params(("token" = String, Path, description = "The connection's inbound token, from its `inbound_url`")),
    request_body(content = std::collections::HashMap<String, serde_json::Value>, description = "Zoho's notification", content_type = "application/json",
        example = json!({"server_time": 1735689601234_u64, "query_params": {}, "module": "Deals",
            "resource_uri": "https://www.zohoapis.com/crm/v8/Deals", "ids": ["5725767000003000064"],
            "affected_fields": [], "operation": "update", "channel_id": "1000000068001",
            "token": "the channel's token"})),
    responses(
        (status = 200, description = "The events are stored (or were already).", body = CrmIngressOut),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 413, response = inline(responses::TooLarge)),
        (status = 429, response = inline(responses::TooManyRequests)),
        (status = 503, response = inline(responses::Unavailable))),
    security(()))]
#[post("/webhooks/zoho/{token}")]
async fn zoho(
    state: Data<AppState>,
    req: HttpRequest,
    token: Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = body_of(&req, payload).await?;
    Ok(HttpResponse::Ok().json(crm_ingress::zoho(&state, &token, &body).await?))
}

/// Receive Salesforce Outbound Messages and Flow callouts
///
/// For tenants who prefer push to polling. `text/xml`: a SOAP Outbound Message, accepted
/// only from the org in the connection's `organization_id` setting and answered with the
/// SOAP acknowledgement Salesforce expects. JSON: a Flow HTTP callout,
/// `{"object": "Opportunity", "records": [{"Id": …, …}], "event": "updated"}`.
#[utoipa::path(tag = "webhooks", operation_id = "webhooks.salesforce",
    params(("token" = String, Path, description = "The connection's inbound token, from its `inbound_url`")),
    request_body(content = std::collections::HashMap<String, serde_json::Value>,
        description = "A Flow callout (JSON, as here) — or, with `Content-Type: text/xml`, a SOAP Outbound Message, answered with the SOAP `Ack`",
        content_type = "application/json",
        example = json!({"object": "Opportunity", "event": "updated", "id": "flow-run-0001",
            "records": [{"Id": "0065g00000XyZ12AAB", "StageName": "Closed Won", "Amount": 1200.0}]})),
    responses(
        (status = 200, description = "Stored: the SOAP `Ack` for an Outbound Message, else what was stored.", body = CrmIngressOut),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 413, response = inline(responses::TooLarge)),
        (status = 429, response = inline(responses::TooManyRequests)),
        (status = 503, response = inline(responses::Unavailable))),
    security(()))]
#[post("/webhooks/salesforce/{token}")]
async fn salesforce(
    state: Data<AppState>,
    req: HttpRequest,
    token: Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let xml = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("xml"));
    let body = body_of(&req, payload).await?;
    let out = crm_ingress::salesforce(&state, &token, xml, &body).await?;
    Ok(match xml {
        true => HttpResponse::Ok()
            .content_type("text/xml; charset=utf-8")
            .body(tributary_worker::inbound::outbound_message::ACK),
        false => HttpResponse::Ok().json(out),
    })
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(hubspot)
        .service(hubspot_app)
        .service(zoho)
        .service(salesforce);
}
