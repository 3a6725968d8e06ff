//! The fake Stripe's customer lookups: `GET /v1/customers` filtered by `email` (exact and
//! case-sensitive, as Stripe documents it) and `GET /v1/customers/search` with the part of
//! Stripe's search query language a lookup uses: `field:'value'` clauses on `email`, `name`,
//! `phone` and `metadata['key']`, joined by `AND` or by `OR` (not both, as Stripe requires).

use serde_json::{Map, Value, json};

use super::answer::invalid;
use super::balance::expand_items;
use super::lists::{cursor_param, limit_param, paginate};
use super::params::string_param;
use super::writes::only_params;
use super::{Answer, State};

/// Every customer with its sort key (newest first, ties in creation order).
fn customers(s: &State) -> Vec<((i64, u64), Value)> {
    let order = |id: &str| s.object_order.get(id).copied().unwrap_or(0);
    let mut all: Vec<((i64, u64), Value)> = s
        .objects
        .values()
        .filter(|o| o["object"] == "customer" && o["deleted"] != true)
        .map(|c| {
            let id = c["id"].as_str().unwrap_or_default();
            ((c["created"].as_i64().unwrap_or(0), order(id)), c.clone())
        })
        .collect();
    all.sort_by_key(|(key, _)| std::cmp::Reverse(*key));
    all
}

/// `GET /v1/customers`.
pub(super) fn list_customers(s: &State, params: &Map<String, Value>) -> Result<Answer, Answer> {
    only_params(
        params,
        &[
            "email",
            "ending_before",
            "expand",
            "limit",
            "starting_after",
        ],
    )?;
    let limit = limit_param(params)?;
    let cursor = cursor_param(params)?;
    let email = string_param(params, "email")?;
    if email.as_ref().is_some_and(|e| e.len() > 512) {
        return Err(invalid(
            Some("email"),
            "Invalid string: email must be at most 512 characters",
        ));
    }
    let all = customers(s);
    let ids: Vec<((i64, u64), String)> = all
        .iter()
        .map(|(k, c)| (*k, c["id"].as_str().unwrap_or_default().to_string()))
        .collect();
    let items = all
        .into_iter()
        .filter(|(_, c)| email.as_ref().is_none_or(|e| c["email"] == e.as_str()))
        .collect();
    let (mut data, has_more) = paginate(&ids, items, &cursor, limit, "customer")?;
    expand_items(s, &mut data, params)?;
    Ok(super::lists::list("/v1/customers", data, has_more))
}

/// One `field:'value'` clause.
struct Clause {
    field: String,
    value: String,
}

fn parse_query(query: &str) -> Result<(Vec<Clause>, bool), String> {
    let has_and = query.contains(" AND ");
    let has_or = query.contains(" OR ");
    if has_and && has_or {
        return Err("Search queries cannot mix AND and OR.".into());
    }
    let separator = if has_or { " OR " } else { " AND " };
    let mut clauses = Vec::new();
    for part in query.split(separator) {
        let part = part.trim();
        let (field, value) = part
            .split_once(':')
            .ok_or_else(|| format!("Could not parse the clause `{part}`."))?;
        let value = value
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .or_else(|| value.strip_prefix('"').and_then(|v| v.strip_suffix('"')))
            .ok_or_else(|| format!("The value of `{field}` must be quoted."))?;
        let known = ["email", "name", "phone"].contains(&field)
            || field
                .strip_prefix("metadata['")
                .and_then(|k| k.strip_suffix("']"))
                .is_some_and(|k| !k.is_empty());
        if !known {
            return Err(format!(
                "Field `{field}` is an unsupported search field for customers."
            ));
        }
        clauses.push(Clause {
            field: field.to_string(),
            value: value.to_string(),
        });
    }
    Ok((clauses, has_or))
}

fn matches(customer: &Value, clause: &Clause) -> bool {
    let found = match clause.field.strip_prefix("metadata['") {
        Some(key) => &customer["metadata"][key.trim_end_matches("']")],
        None => &customer[clause.field.as_str()],
    };
    found.as_str() == Some(clause.value.as_str())
}

/// `GET /v1/customers/search`: one page of `limit` results; `next_page` is the offset of
/// the next one.
pub(super) fn search_customers(s: &State, params: &Map<String, Value>) -> Result<Answer, Answer> {
    only_params(params, &["expand", "limit", "page", "query"])?;
    let limit = limit_param(params)?;
    let Some(query) = string_param(params, "query")? else {
        return Err(invalid(Some("query"), "Missing required param: query."));
    };
    let (clauses, any) = parse_query(&query).map_err(|m| invalid(Some("query"), &m))?;
    let offset = match string_param(params, "page")? {
        Some(page) => page
            .parse::<usize>()
            .map_err(|_| invalid(Some("page"), "Invalid page cursor."))?,
        None => 0,
    };
    let found: Vec<Value> = customers(s)
        .into_iter()
        .map(|(_, c)| c)
        .filter(|c| match any {
            true => clauses.iter().any(|clause| matches(c, clause)),
            false => clauses.iter().all(|clause| matches(c, clause)),
        })
        .collect();
    let total = found.len();
    let mut data: Vec<Value> = found.into_iter().skip(offset).take(limit).collect();
    expand_items(s, &mut data, params)?;
    let next = offset + data.len();
    let has_more = next < total;
    Ok(Answer::ok(json!({
        "object": "search_result",
        "url": "/v1/customers/search",
        "data": data,
        "has_more": has_more,
        "next_page": if has_more { Value::String(next.to_string()) } else { Value::Null },
    })))
}
