//! Cursor pagination like Stripe's: `?limit=&starting_after=` → `{data, has_more}`, newest
//! first. Ids are UUIDv7, so their order is creation order.

use actix_web::FromRequest;
use actix_web::dev::Payload;
use actix_web::{HttpRequest, web};
use futures::future::{Ready, ready};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::Validate;
use crate::error::{ApiError, FieldError};

pub const DEFAULT_LIMIT: u64 = 10;
pub const MAX_LIMIT: u64 = 100;

/// The list parameters every list endpoint takes.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// How many items to return, 1 to 100 (default 10).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100, default = 10, example = 10)]
    limit: Option<String>,
    /// The id of the last item of the previous page: pass the `id` of the last item of `data`
    /// while `has_more` is true.
    starting_after: Option<String>,
}

/// Parsed list parameters.
#[derive(Debug, Clone)]
pub struct Page {
    pub limit: u64,
    pub starting_after: Option<String>,
}

impl FromRequest for Page {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(parse_page(req.query_string()))
    }
}

fn parse_page(query: &str) -> Result<Page, ApiError> {
    let raw = web::Query::<ListQuery>::from_query(query)
        .map_err(|e| ApiError::BadRequest(format!("the query string is malformed: {e}")))?
        .into_inner();
    let mut errors = Vec::new();
    // `?limit=` (empty) is no number, so it is refused like any other.
    let limit = match raw.limit.as_deref() {
        None => DEFAULT_LIMIT,
        Some(text) => match text.parse::<u64>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                errors.push(FieldError::new(
                    "limit",
                    "must be a whole number from 1 to 100",
                ));
                DEFAULT_LIMIT
            }
        },
    };
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    Ok(Page {
        limit,
        starting_after: raw.starting_after.filter(|s| !s.is_empty()),
    })
}

/// Query parameters deserialized with the name of any bad one (`?created_gte=soon` is a 422
/// naming `created_gte`, not a bare 400), then checked by the type's own [`Validate`], as
/// bodies are.
pub struct ValidQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned + Validate> FromRequest for ValidQuery<T> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let pairs = url::form_urlencoded::parse(req.query_string().as_bytes());
        let deserializer = serde_urlencoded::Deserializer::new(pairs);
        ready(
            serde_path_to_error::deserialize(deserializer)
                .map_err(|err| {
                    let field = err.path().to_string();
                    let message = err.inner().to_string();
                    ApiError::Validation(vec![FieldError::new(
                        if field == "." {
                            "query".to_string()
                        } else {
                            field
                        },
                        message,
                    )])
                })
                .and_then(|query: T| {
                    query.validate().map_err(ApiError::Validation)?;
                    Ok(ValidQuery(query))
                }),
        )
    }
}

/// A page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListResponse<T: ToSchema> {
    /// The items, newest first.
    #[schema(inline = false)]
    pub data: Vec<T>,
    /// Whether more items follow the last one returned.
    pub has_more: bool,
}

impl Page {
    /// Runs `select` ordered newest first, one page of it.
    pub async fn fetch<E, C>(
        &self,
        db: &C,
        select: Select<E>,
        id_column: E::Column,
    ) -> Result<(Vec<E::Model>, bool), ApiError>
    where
        E: EntityTrait,
        C: ConnectionTrait,
    {
        let mut select = select.order_by_desc(id_column);
        if let Some(after) = &self.starting_after {
            select = select.filter(id_column.lt(after.as_str()));
        }
        let mut rows = select.limit(self.limit + 1).all(db).await?;
        let has_more = rows.len() as u64 > self.limit;
        rows.truncate(self.limit as usize);
        Ok((rows, has_more))
    }
}

impl<T: ToSchema> ListResponse<T> {
    pub fn new(data: Vec<T>, has_more: bool) -> Self {
        ListResponse { data, has_more }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked_and_named() {
        assert_eq!(parse_page("").unwrap().limit, 10);
        assert_eq!(
            parse_page("limit=100&starting_after=abc")
                .unwrap()
                .starting_after
                .as_deref(),
            Some("abc")
        );
        for bad in ["limit=0", "limit=101", "limit=ten", "limit=-1", "limit="] {
            match parse_page(bad) {
                Err(ApiError::Validation(errors)) => assert_eq!(errors[0].field, "limit"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
