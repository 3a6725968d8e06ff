//! `/v1/reviews`: writes held because their record is in doubt, and a person's decision.

use actix_web::web::{Data, Path};
use actix_web::{HttpResponse, get, post};
use utoipa_actix_web::service_config::ServiceConfig;

use super::responses;
use crate::error::ApiError;
use crate::extract::{ListQuery, ListResponse, Page, TenantContext, ValidJson, ValidQuery};
use crate::services::reviews::{self, DecisionIn, ReviewOut, ReviewsQuery};
use crate::state::AppState;

/// List review items
///
/// CRM writes held for a person, newest first: a step with `review.policy: pause` whose match
/// found several records, or none but records that look like the same one. `?status=open`
/// lists what waits for a decision.
#[utoipa::path(tag = "reviews", operation_id = "reviews.list", params(ReviewsQuery, ListQuery),
    responses(
        (status = 200, description = "A page of review items, newest first.", body = ListResponse<ReviewOut>),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/reviews")]
async fn list(
    state: Data<AppState>,
    ctx: TenantContext,
    ValidQuery(query): ValidQuery<ReviewsQuery>,
    page: Page,
) -> Result<HttpResponse, ApiError> {
    let (data, has_more) = reviews::list(&state, &ctx, &query, &page).await?;
    Ok(HttpResponse::Ok().json(ListResponse::new(data, has_more)))
}

/// Get a review item
///
/// The incoming values beside each candidate, with the fields that differ named, and the
/// decision once taken.
#[utoipa::path(tag = "reviews", operation_id = "reviews.get",
    params(("id" = String, Path, description = "The review item's id")),
    responses(
        (status = 200, description = "The review item.", body = ReviewOut),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 404, response = inline(responses::NotFound))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[get("/v1/reviews/{id}")]
async fn get_one(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(reviews::get(&state, &ctx, &id).await?))
}

/// Decide a review item
///
/// Once (admins and owners; audited): `pick` a candidate to write to, `create` a new record,
/// `merge` the candidates into the one named (HubSpot contacts and deals, Salesforce Accounts, Contacts and Leads, the sandbox), or
/// `dismiss` (nothing is written and the flow stops for this event). The held delivery runs
/// again to carry it out, and the Stripe object's record link follows the decision, so its
/// later events write the same record. A second decision is 409.
#[utoipa::path(tag = "reviews", operation_id = "reviews.decide",
    params(("id" = String, Path, description = "The review item's id")),
    request_body(content = DecisionIn, examples(
        ("pick" = (summary = "Write to this candidate", value = json!({"decision": "pick", "record_id": "101"}))),
        ("create" = (summary = "It is someone new", value = json!({"decision": "create"}))))),
    responses(
        (status = 200, description = "The review item, decided.", body = ReviewOut),
        (status = 400, response = inline(responses::BadRequest)),
        (status = 401, response = inline(responses::Unauthorized)),
        (status = 403, response = inline(responses::Forbidden)),
        (status = 404, response = inline(responses::NotFound)),
        (status = 409, response = inline(responses::Conflict)),
        (status = 413, response = inline(responses::TooLarge)),
        (status = 415, response = inline(responses::UnsupportedMediaType)),
        (status = 422, response = inline(responses::Invalid))),
    security(("bearer_jwt" = []), ("api_key" = [])))]
#[post("/v1/reviews/{id}/decision")]
async fn decide(
    state: Data<AppState>,
    ctx: TenantContext,
    id: Path<String>,
    ValidJson(input): ValidJson<DecisionIn>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(reviews::decide(&state, &ctx, &id, input).await?))
}

pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(list).service(get_one).service(decide);
}
