//! Finding events: `search` (a Stripe event id, a Stripe object id or a customer email, looked
//! up in `event_keys`) and `flow_id` / `connection_id` (events with a delivery of that flow or
//! connection). Used by the event list and by bulk replay. Each is an indexed subquery that
//! carries the tenant; no request reads payloads.

use entity::{deliveries, event_keys, events};
use sea_orm::sea_query::Query;
use sea_orm::{ColumnTrait, QueryFilter, Select};
use serde::Deserialize;
use utoipa::IntoParams;

/// The longest search: an email address's limit.
pub const MAX_SEARCH_CHARS: usize = 320;
/// The longest id a filter takes.
pub const MAX_ID_CHARS: usize = 64;

/// Whitespace as JSON Schema's `\s` (ECMA-262) knows it, so the documented pattern and the
/// check agree on every character.
fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202f}'
                | '\u{205f}'
                | '\u{3000}'
                | '\u{feff}'
    )
}

/// What `search` takes: 1 to 320 characters, no whitespace. An email (it has an `@`) matches
/// in any case; an id matches exactly.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct SearchTerm(String);

impl TryFrom<String> for SearchTerm {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        let chars = value.chars().count();
        if chars == 0 {
            return Err(
                "must not be empty: a Stripe event id (evt_…), a Stripe object id \
                        (ch_…, cus_…, sub_…, in_…, pi_…, cs_…) or a customer email"
                    .into(),
            );
        }
        if chars > MAX_SEARCH_CHARS {
            return Err(format!("must be at most {MAX_SEARCH_CHARS} characters"));
        }
        if value.chars().any(is_space) {
            return Err("must not contain whitespace: search one id or one email".into());
        }
        Ok(SearchTerm(value))
    }
}

impl SearchTerm {
    /// The key it is looked up as.
    fn key(&self) -> String {
        if self.0.contains('@') {
            self.0.to_lowercase()
        } else {
            self.0.clone()
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One of Tributary's ids in a filter: at most 64 characters.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct FilterId(String);

impl TryFrom<String> for FilterId {
    type Error = String;

    fn try_from(value: String) -> Result<Self, String> {
        if value.is_empty() || value.chars().count() > MAX_ID_CHARS {
            return Err(format!("must be an id of 1 to {MAX_ID_CHARS} characters"));
        }
        Ok(FilterId(value))
    }
}

impl FilterId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Finding events by what they are about, and by where they went.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventSearch {
    /// A Stripe event id (`evt_…`); the id of the Stripe object the event is about or of one
    /// it points at (`ch_…`, `cus_…`, `sub_…`, `in_…`, `pi_…`, `cs_…`); or the customer's
    /// email, in any case. Matches exactly.
    #[param(value_type = Option<String>, min_length = 1, max_length = 320, pattern = r"^\S+$",
        example = "cus_QXg1o8vcGmoR32")]
    pub search: Option<SearchTerm>,
    /// Only events with a delivery of this flow.
    #[param(value_type = Option<String>, min_length = 1, max_length = 64)]
    pub flow_id: Option<FilterId>,
    /// Only events with a delivery through this connection.
    #[param(value_type = Option<String>, min_length = 1, max_length = 64)]
    pub connection_id: Option<FilterId>,
}

/// Each field checks itself as it is read (`SearchTerm`, `FilterId`).
impl crate::extract::Validate for EventSearch {}

impl EventSearch {
    /// `select` (the tenant's events) narrowed to what this search finds.
    pub fn narrow(
        &self,
        mut select: Select<events::Entity>,
        tenant_id: &str,
    ) -> Select<events::Entity> {
        if let Some(term) = &self.search {
            select = select.filter(
                events::Column::Id.in_subquery(event_keys::matching(tenant_id, &[term.key()])),
            );
        }
        for (column, id) in [
            (deliveries::Column::FlowId, &self.flow_id),
            (deliveries::Column::ConnectionId, &self.connection_id),
        ] {
            if let Some(id) = id {
                select = select.filter(
                    events::Column::Id.in_subquery(
                        Query::select()
                            .column(deliveries::Column::EventId)
                            .from(deliveries::Entity)
                            .and_where(deliveries::Column::TenantId.eq(tenant_id))
                            .and_where(column.eq(id.as_str()))
                            .to_owned(),
                    ),
                );
            }
        }
        select
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_terms_are_bounded() {
        for good in [
            "evt_1Pgc76B7WZ01zgkWwyRHS12y",
            "Ada@Example.COM",
            "cs_test_a1",
        ] {
            assert!(SearchTerm::try_from(good.to_string()).is_ok(), "{good}");
        }
        for bad in [
            String::new(),
            "a b".into(),
            "evt_1\n".into(),
            "x\u{3000}y".into(),
            "x".repeat(321),
        ] {
            assert!(SearchTerm::try_from(bad.clone()).is_err(), "{bad:?}");
        }
        assert!(SearchTerm::try_from("é".repeat(320)).is_ok());
        assert_eq!(
            SearchTerm::try_from("Ada@Example.COM".to_string())
                .unwrap()
                .key(),
            "ada@example.com"
        );
        assert_eq!(
            SearchTerm::try_from("cus_AbC".to_string()).unwrap().key(),
            "cus_AbC"
        );
        assert!(FilterId::try_from("x".repeat(65)).is_err());
    }
}
