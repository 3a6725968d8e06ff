//! `/v1/flows` and `/v1/flow-templates`.

use actix_web::web::{Data, Path};
use actix_web::{HttpResponse, delete, get, post, put};
use serde::Serialize;
use tributary_worker::flow::Preview;
use tributary_worker::flow::templates::FlowTemplate;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use super::responses;
use crate::app::AppState;
use crate::error::ApiError;
use crate::extract::{JsonOrYaml, ListQuery, ListResponse, Page, TenantContext, ValidJson};
use crate::services::flows::{self, FlowOut, FlowVersionOut, PreviewIn, ValidateIn, ValidateOut};

#[utoipa::path(tag = "flows", operation_id = "flows.create",
    request_body(content = Object, description = "A flow (DESIGN Flows), as JSON or `application/yaml`"),
    responses(
        (status = 201, description = "The flow, version 1.", body = FlowOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer" = [])))]
#[post("/v1/flows")]
async fn create(
    state: Data<AppState>,
    ctx: TenantContext,
    JsonOrYaml(body): JsonOrYaml,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Created().json(flows::create(&state, &ctx, body).await?))
}

#[utoipa::path(tag = "flows", operation_id = "flows.list", params(ListQuery),
    responses(
        (status = 200, description = "A page of flows, newest first.", body = ListResponse<FlowOut>),
        (status = 401, response = inline(responses::Unauthorized))),
    security(("bearer" = [])))]
#[get("/v1/flows")]
async fn list(
    state: Data<AppState>,
    ctx: TenantContext,
    page: Page,
) -> Result<HttpResponse, ApiError> {
    let (data, has_more) = flows::list(&state, &ctx, &page).await?;
    Ok(HttpResponse::Ok().json(ListResponse::new(data, has_more)))
}

#[utoipa::path(tag = "flows", operation_id = "flows.get", params(("id" = String, Path, description = "The flow's id")),
    responses(
        (status = 200, description = "The flow's current version.", body = FlowOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer" = [])))]
#[get("/v1/flows/{id}")]
async fn get_one(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(flows::get(&state, &ctx, &id).await?))
}

#[utoipa::path(tag = "flows", operation_id = "flows.replace", params(("id" = String, Path, description = "The flow's id")),
    request_body(content = Object, description = "The whole new flow, as JSON or `application/yaml`"),
    responses(
        (status = 200, description = "The flow at its new version.", body = FlowOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer" = [])))]
#[put("/v1/flows/{id}")]
async fn replace(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
    JsonOrYaml(body): JsonOrYaml,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(flows::replace(&state, &ctx, &id, body).await?))
}

#[utoipa::path(tag = "flows", operation_id = "flows.delete", params(("id" = String, Path, description = "The flow's id")),
    responses(
        (status = 204, description = "The flow is gone; its versions stay for the deliveries that ran them."),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer" = [])))]
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

#[utoipa::path(tag = "flows", operation_id = "flows.versions", params(("id" = String, Path, description = "The flow's id")),
    responses(
        (status = 200, description = "Every version of the flow, newest first.", body = VersionsOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer" = [])))]
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

#[utoipa::path(tag = "flows", operation_id = "flows.validate", request_body = ValidateIn,
    responses(
        (status = 200, description = "Whether the flow is valid, with the path of every error.", body = ValidateOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer" = [])))]
#[post("/v1/flows/validate")]
async fn validate(
    state: Data<AppState>,
    ctx: TenantContext,
    ValidJson(input): ValidJson<ValidateIn>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(flows::validate(&state, &ctx, &input.flow).await?))
}

#[utoipa::path(tag = "flows", operation_id = "flows.preview", request_body = PreviewIn,
    params(("id" = String, Path, description = "The flow's id")),
    responses(
        (status = 200, description = "Whether the event matches and the operations that would run; nothing is written.", body = Preview),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer" = [])))]
#[post("/v1/flows/{id}/preview")]
async fn preview(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
    ValidJson(input): ValidJson<PreviewIn>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(flows::preview(&state, &ctx, &id, &input.event).await?))
}

#[derive(Serialize, ToSchema)]
struct TemplatesOut {
    data: Vec<FlowTemplate>,
}

#[utoipa::path(tag = "flows", operation_id = "flow_templates.list",
    responses(
        (status = 200, description = "Ready recipes; post a template's `flow` with your `connection_id` to /v1/flows.", body = TemplatesOut),
        (status = 401, response = inline(responses::Unauthorized))),
    security(("bearer" = [])))]
#[get("/v1/flow-templates")]
async fn templates(_ctx: TenantContext) -> HttpResponse {
    HttpResponse::Ok().json(TemplatesOut {
        data: flows::templates(),
    })
}

impl crate::extract::Validate for ValidateIn {}
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
