//! `/v1/flows` and `/v1/flow-templates`.

use actix_web::http::header;
use actix_web::web::{Data, Path};
use actix_web::{HttpRequest, HttpResponse, delete, get, post, put};
use serde::Serialize;
use tributary_worker::flow::templates::FlowTemplate;
use tributary_worker::flow::{FlowSpec, Preview};
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::responses;
use crate::error::ApiError;
use crate::extract::{JsonOrYaml, ListQuery, ListResponse, Page, TenantContext, ValidJson};
use crate::services::flows::{self, FlowOut, FlowVersionOut, PreviewIn, ValidateIn, ValidateOut};
use crate::state::AppState;

/// Create a flow
///
/// Creates a mapping flow from Stripe events to CRM writes, as JSON or `application/yaml`. Start
/// from a recipe of `GET /v1/flow-templates` with your `connection_id`. The flow is validated
/// first; every problem is reported with its path. A tenant has at most `TRIBUTARY_MAX_FLOWS`
/// flows (409 beyond) of at most `TRIBUTARY_MAX_STEPS_PER_FLOW` steps each (422 on `steps`).
#[utoipa::path(tag = "flows", operation_id = "flows.create",
    request_body(content = FlowSpec,
        description = "A flow; the examples are the built-in templates. The same document is also accepted as YAML with `content-type: application/yaml`."),
    responses(
        (status = 201, description = "The flow, version 1.", body = FlowOut),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 409, response = inline(responses::Conflict)),
        (status = 413, response = inline(responses::TooLarge)),
        (status = 415, response = inline(responses::UnsupportedMediaType)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[post("/v1/flows")]
async fn create(
    state: Data<AppState>,
    ctx: TenantContext,
    JsonOrYaml(body): JsonOrYaml,
) -> Result<HttpResponse, ApiError> {
    let flow = flows::create(&state, &ctx, body).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/flows/{}", flow.id)))
        .insert_header((header::ETAG, flows::etag(flow.version)))
        .json(flow))
}

/// List flows
///
/// The tenant's flows at their current versions, newest first.
#[utoipa::path(tag = "flows", operation_id = "flows.list", params(ListQuery),
    responses(
        (status = 200, description = "A page of flows, newest first.", body = ListResponse<FlowOut>),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/flows")]
async fn list(
    state: Data<AppState>,
    ctx: TenantContext,
    page: Page,
) -> Result<HttpResponse, ApiError> {
    let (data, has_more) = flows::list(&state, &ctx, &page).await?;
    Ok(HttpResponse::Ok().json(ListResponse::new(data, has_more)))
}

/// Get a flow
///
/// One flow at its current version. With `Accept: application/yaml`, the flow document alone
/// as YAML (no id or version), which `POST /v1/flows` takes back with `content-type:
/// application/yaml`: export and import for flows kept in git.
#[utoipa::path(tag = "flows", operation_id = "flows.get", params(("id" = String, Path, description = "The flow's id")),
    responses(
        (status = 200, description = "The flow's current version (as YAML with `Accept: application/yaml`).", content(
            (FlowOut = "application/json"),
            (String = "application/yaml"))),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/flows/{id}")]
async fn get_one(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let flow = flows::get(&state, &ctx, &id).await?;
    let mut reply = HttpResponse::Ok();
    reply.insert_header((header::ETAG, flows::etag(flow.version)));
    if wants_yaml(&req) {
        // The flow document alone, as `POST /v1/flows` takes it back: a file for git.
        let text = yaml_serde::to_string(&flow.flow).map_err(anyhow::Error::from)?;
        return Ok(reply
            .content_type("application/yaml; charset=utf-8")
            .insert_header((header::VARY, "Accept"))
            .body(text));
    }
    Ok(reply.insert_header((header::VARY, "Accept")).json(flow))
}

/// Whether the request's `Accept` prefers YAML (`application/yaml` or `application/x-yaml`)
/// over JSON.
fn wants_yaml(req: &HttpRequest) -> bool {
    let Some(accept) = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let first = accept
        .split(',')
        .map(|part| {
            part.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .find(|media| media.contains("yaml") || media.contains("json") || media == "*/*");
    first.is_some_and(|media| media.contains("yaml"))
}

/// Replace a flow
///
/// Replaces the whole flow, as JSON or `application/yaml`; every replace is a new version, and
/// deliveries keep the version they ran. Send the `ETag` of the version you edited as
/// `If-Match`, and a replace made meanwhile by someone else answers 412 instead of being
/// overwritten.
#[utoipa::path(tag = "flows", operation_id = "flows.replace", params(("id" = String, Path, description = "The flow's id"),
        ("If-Match" = Option<String>, Header, description = "The `ETag` of the version being replaced, e.g. `\"v3\"`; a stale one answers 412")),
    request_body(content = FlowSpec,
        description = "The whole new flow. The same document is also accepted as YAML with `content-type: application/yaml`."),
    responses(
        (status = 200, description = "The flow at its new version (its `ETag` header names it).", body = FlowOut),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 412, response = inline(responses::PreconditionFailed)),
        (status = 413, response = inline(responses::TooLarge)),
        (status = 415, response = inline(responses::UnsupportedMediaType)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[put("/v1/flows/{id}")]
async fn replace(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
    req: HttpRequest,
    JsonOrYaml(body): JsonOrYaml,
) -> Result<HttpResponse, ApiError> {
    let if_match = req
        .headers()
        .get(header::IF_MATCH)
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let flow = flows::replace(&state, &ctx, &id, body, if_match).await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::ETAG, flows::etag(flow.version)))
        .json(flow))
}

/// Delete a flow
///
/// Deletes the flow; its versions are kept for the deliveries that ran them.
#[utoipa::path(tag = "flows", operation_id = "flows.delete", params(("id" = String, Path, description = "The flow's id")),
    responses(
        (status = 204, description = "The flow is gone; its versions stay for the deliveries that ran them."),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[delete("/v1/flows/{id}")]
async fn remove(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    flows::delete(&state, &ctx, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Serialize, ToSchema)]
struct VersionsOut {
    data: Vec<FlowVersionOut>,
}

/// List a flow's versions
///
/// Every version of the flow, newest first.
#[utoipa::path(tag = "flows", operation_id = "flows.versions", params(("id" = String, Path, description = "The flow's id")),
    responses(
        (status = 200, description = "Every version of the flow, newest first.", body = VersionsOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/flows/{id}/versions")]
async fn versions(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(VersionsOut {
        data: flows::versions(&state, &ctx, &id).await?,
    }))
}

/// Validate a flow
///
/// Checks a flow without storing it and reports every problem with its JSON path. The body is
/// the same as `POST /v1/flows` takes (or that flow wrapped as `{"flow": …}`). Wrapped, it may
/// add `"preview"`: `{"event": …}`, `{"event_id": …}` or `{"latest": "<type>"}` (the newest
/// inbox event of that type, else Stripe's fixture of it); a valid flow is then also run on
/// that event, writing nothing, and the answer's `preview` says what it would send.
#[utoipa::path(tag = "flows", operation_id = "flows.validate",
    request_body(content = inline(serde_json::Value),
        description = "The flow to check, as `POST /v1/flows` takes it (`FlowSpec`, or wrapped as `{\"flow\": …, \"preview\": {\"latest\": \"charge.succeeded\"}}`), as JSON or with `content-type: application/yaml`. Any document is read: what does not make a flow (or a preview) is reported in `errors`, with a 200."),
    responses(
        (status = 200, description = "Whether the flow is valid, with the path of every error.", body = ValidateOut),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 413, response = inline(responses::TooLarge)),
        (status = 415, response = inline(responses::UnsupportedMediaType)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[post("/v1/flows/validate")]
async fn validate(
    state: Data<AppState>,
    ctx: TenantContext,
    JsonOrYaml(body): JsonOrYaml,
) -> Result<HttpResponse, ApiError> {
    let input = ValidateIn::from(body);
    Ok(HttpResponse::Ok()
        .json(flows::validate(&state, &ctx, &input.flow, input.preview.as_ref()).await?))
}

/// Preview a flow
///
/// Runs the flow against a Stripe event without writing anything: whether its trigger matches, and
/// the operations each step would send to the CRM, or why nothing would run. The event is pasted
/// (`event`), an inbox event (`event_id`), or the newest inbox event of a type (`latest`).
#[utoipa::path(tag = "flows", operation_id = "flows.preview", request_body(content = PreviewIn,
        example = json!({"event": {"id": "evt_1PzXb2LkdIwHu7ix0ExAmPle", "object": "event", "type": "checkout.session.completed",
            "created": 1718000000, "livemode": false, "api_version": "2024-06-20",
            "data": {"object": {"id": "cs_test_a1B2c3D4", "object": "checkout.session", "amount_total": 4900, "currency": "eur",
                "customer": "cus_QXyZ12345", "payment_status": "paid", "status": "complete",
                "customer_details": {"email": "ada@example.com", "name": "Ada Lovelace"},
                "metadata": {"serviceId": "onboarding"}}}}})),
    params(("id" = String, Path, description = "The flow's id")),
    responses(
        (status = 200, description = "Whether the event matches and the operations that would run; nothing is written.", body = Preview),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 413, response = inline(responses::TooLarge)),
        (status = 415, response = inline(responses::UnsupportedMediaType)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[post("/v1/flows/{id}/preview")]
async fn preview(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
    ValidJson(input): ValidJson<PreviewIn>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(flows::preview(&state, &ctx, &id, &input).await?))
}

#[derive(Serialize, ToSchema)]
struct TemplatesOut {
    data: Vec<FlowTemplate>,
}

/// List flow templates
///
/// Ready-made recipes, one per pipeline (sandbox, HubSpot, Salesforce, Zoho CRM). Post a
/// template's `flow` with your `connection_id` to `POST /v1/flows`.
#[utoipa::path(tag = "flows", operation_id = "flow_templates.list",
    responses(
        (status = 200, description = "Ready recipes; post a template's `flow` with your `connection_id` to /v1/flows.", body = TemplatesOut),
        (status = 401, response = inline(responses::Unauthorized))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/flow-templates")]
async fn templates(_ctx: TenantContext) -> HttpResponse {
    HttpResponse::Ok().json(TemplatesOut {
        data: flows::templates(),
    })
}

impl crate::extract::Validate for PreviewIn {}

pub fn configure(cfg: &mut ServiceConfig) {
    // `validate` before `{id}` routes so the literal path wins.
    cfg.service(validate)
        .service(create)
        .service(list)
        .service(get_one)
        .service(replace)
        .service(remove)
        .service(versions)
        .service(preview)
        .service(templates);
}
