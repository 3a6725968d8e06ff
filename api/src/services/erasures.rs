//! Erasure on request (a customer's right to be forgotten): everything of one email address in
//! the caller's tenant, in one transaction. Events are redacted, not deleted: the row keeps its
//! Stripe ids, so a late retry or a backfill of the same Stripe event is recognised as a
//! duplicate and the person's data is not stored again. Deliveries, and every attempt in their
//! history, lose what was sent and answered; sandbox records holding the address are deleted
//! with their links; the events' search keys keep only the ids the redacted payload holds. The
//! audit log names the erasure by the address's SHA-256, never the address.

use std::collections::BTreeSet;

use entity::{
    Role, TenantOwned, deliveries, delivery_attempts, event_keys, events, record_links, reviews,
    sandbox_records,
};
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tributary_worker::statuses::{delivery_status as ds, status};
use utoipa::ToSchema;

use super::fields::Email;
use super::{audit, now, parse_email};
use crate::error::{ApiError, FieldError};
use crate::extract::{TenantContext, Validate};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErasureIn {
    /// The person's email address; matched without regard to case.
    #[schema(value_type = Email, example = "ada@example.com")]
    pub email: String,
}

impl Validate for ErasureIn {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        parse_email(&self.email)
            .map(|_| ())
            .map_err(|message| vec![FieldError::new("email", message)])
    }
}

/// What an erasure touched.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErasureOut {
    /// SHA-256 (hex) of the normalised address: how the audit log names this erasure.
    pub email_hash: String,
    /// Events whose payload (the raw body) was redacted.
    pub events: u64,
    /// Deliveries whose request, answer and error were cleared, with those of their attempts.
    pub deliveries: u64,
    /// Sandbox CRM records deleted.
    pub sandbox_records: u64,
}

/// Rows whose `column`, lower-cased, contains `needle` (already lower-case). A prefilter: the
/// caller checks each row again in full.
fn contains(column: impl sea_orm::sea_query::IntoColumnRef, needle: &str) -> Expr {
    let mut pattern = String::from("%");
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    Expr::expr(Func::lower(Expr::col(column))).like(LikeExpr::new(pattern).escape('\\'))
}

fn mentions(text: Option<&str>, email: &str) -> bool {
    text.is_some_and(|t| t.to_lowercase().contains(email))
}

/// The event with only what identifies it: the envelope (id, type, created, livemode, api
/// version, account) and the object's id and kind. Everything about the person goes.
fn redact_payload(payload: &str) -> String {
    let Ok(Value::Object(event)) = serde_json::from_str::<Value>(payload) else {
        return "{}".into();
    };
    let mut kept = Map::new();
    for key in [
        "id",
        "object",
        "type",
        "created",
        "livemode",
        "api_version",
        "account",
    ] {
        if let Some(value) = event.get(key) {
            kept.insert(key.into(), value.clone());
        }
    }
    let mut object = Map::new();
    if let Some(original) = event.get("data").and_then(|d| d.get("object")) {
        for key in ["id", "object"] {
            if let Some(value) = original.get(key).filter(|v| !v.is_object()) {
                object.insert(key.into(), value.clone());
            }
        }
    }
    kept.insert(
        "data".into(),
        Value::Object(Map::from_iter([("object".into(), Value::Object(object))])),
    );
    Value::Object(kept).to_string()
}

pub fn email_hash(email: &str) -> String {
    hex::encode(Sha256::digest(email.as_bytes()))
}

pub async fn erase(
    state: &AppState,
    ctx: &TenantContext,
    input: ErasureIn,
) -> Result<ErasureOut, ApiError> {
    ctx.require(Role::Admin)?;
    let email = parse_email(&input.email).map_err(|m| ApiError::field("email", m))?;
    let hash = email_hash(&email);
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    let events = redact_events(&txn, &ctx.tenant_id, &email).await?;
    forget_search_keys(&txn, &ctx.tenant_id, &email, &events).await?;
    let deliveries = clear_deliveries(&txn, &ctx.tenant_id, &email, &events).await?;
    let sandbox_records = delete_sandbox_records(&txn, &ctx.tenant_id, &email).await?;
    delete_reviews(&txn, &ctx.tenant_id, &email, &events).await?;
    audit::log(&txn, ctx, "erasure.create", "erasure", &hash).await?;
    txn.commit().await?;
    tracing::info!(
        email_hash = %hash,
        events = events.len(),
        deliveries,
        sandbox_records,
        "erasure done"
    );
    Ok(ErasureOut {
        email_hash: hash,
        events: events.len() as u64,
        deliveries,
        sandbox_records,
    })
}

/// Redacts every event of the tenant whose payload holds the address; an event not yet
/// finished is closed (`ignored`) so its flows never run on the redacted payload. Returns the
/// events' ids.
async fn redact_events<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
    email: &str,
) -> Result<BTreeSet<String>, ApiError> {
    let found = events::Entity::find_in_tenant(tenant_id)
        .filter(contains(events::Column::Payload, email))
        .all(db)
        .await?;
    let mut ids = BTreeSet::new();
    let at = now();
    for event in found
        .into_iter()
        .filter(|e| mentions(Some(&e.payload), email))
    {
        let mut update = events::ActiveModel {
            payload: Set(redact_payload(&event.payload)),
            redacted_at: Set(Some(at)),
            updated_at: Set(at),
            ..Default::default()
        };
        if mentions(event.last_error.as_deref(), email) {
            update.last_error = Set(None);
        }
        if matches!(event.status.as_str(), status::RECEIVED | status::QUEUED) {
            update.status = Set(status::IGNORED.into());
            update.processed_at = Set(Some(at));
            update.next_run_at = Set(None);
        }
        events::Entity::update_many()
            .set(update)
            .filter(events::Column::TenantId.eq(tenant_id))
            .filter(events::Column::Id.eq(event.id.as_str()))
            .exec(db)
            .await?;
        ids.insert(event.id);
    }
    Ok(ids)
}

/// The redacted events keep only the search keys their payload still holds (the event's and
/// the object's ids): the email and the ids of related objects go, and so does the address
/// wherever else it is a key.
async fn forget_search_keys<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
    email: &str,
    event_ids: &BTreeSet<String>,
) -> Result<(), ApiError> {
    event_keys::Entity::delete_many()
        .filter(event_keys::Column::TenantId.eq(tenant_id))
        .filter(event_keys::Column::Kind.eq(event_keys::kind::EMAIL))
        .filter(event_keys::Column::Value.eq(email))
        .exec(db)
        .await?;
    let ids: Vec<&str> = event_ids.iter().map(String::as_str).collect();
    for chunk in ids.chunks(500) {
        event_keys::Entity::delete_many()
            .filter(event_keys::Column::TenantId.eq(tenant_id))
            .filter(event_keys::Column::EventId.is_in(chunk.iter().copied()))
            .filter(
                event_keys::Column::Kind
                    .is_in([event_keys::kind::EMAIL, event_keys::kind::RELATED]),
            )
            .exec(db)
            .await?;
    }
    Ok(())
}

/// Clears what the deliveries of those events (and any other delivery that mentions the
/// address, itself or in an attempt) sent and received, in the delivery and in every attempt
/// of its history; open ones are closed as `skipped`, reason `erased`.
/// Deletes the review items of the erased events, and any other that shows the address (in
/// the incoming values, a candidate or the summary): a held write cannot be decided without
/// the data it was held with.
async fn delete_reviews<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
    email: &str,
    event_ids: &BTreeSet<String>,
) -> Result<u64, ApiError> {
    Ok(reviews::Entity::delete_many()
        .filter(reviews::Column::TenantId.eq(tenant_id))
        .filter(
            Condition::any()
                .add(reviews::Column::EventId.is_in(event_ids.iter().map(String::as_str)))
                .add(contains(reviews::Column::Incoming, email))
                .add(contains(reviews::Column::Candidates, email))
                .add(contains(reviews::Column::Summary, email)),
        )
        .exec(db)
        .await?
        .rows_affected)
}

async fn clear_deliveries<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
    email: &str,
    event_ids: &BTreeSet<String>,
) -> Result<u64, ApiError> {
    let mut found = deliveries::Entity::find_in_tenant(tenant_id)
        .filter(
            Condition::any()
                .add(contains(deliveries::Column::Operation, email))
                .add(contains(deliveries::Column::Response, email))
                .add(contains(deliveries::Column::VendorBody, email))
                .add(contains(deliveries::Column::ErrorMessage, email))
                .add(contains(deliveries::Column::Warnings, email)),
        )
        .all(db)
        .await?
        .into_iter()
        .filter(|d| {
            [
                d.operation.as_deref(),
                d.response.as_deref(),
                d.vendor_body.as_deref(),
                d.error_message.as_deref(),
                Some(d.warnings.as_str()),
            ]
            .into_iter()
            .any(|text| mentions(text, email))
        })
        .collect::<Vec<_>>();
    let ids: Vec<&str> = event_ids.iter().map(String::as_str).collect();
    for chunk in ids.chunks(500) {
        found.extend(
            deliveries::Entity::find_in_tenant(tenant_id)
                .filter(deliveries::Column::EventId.is_in(chunk.iter().copied()))
                .all(db)
                .await?,
        );
    }
    // A delivery whose earlier attempts mention the address, though its latest does not.
    let from_attempts: BTreeSet<String> = delivery_attempts::Entity::find_in_tenant(tenant_id)
        .filter(
            Condition::any()
                .add(contains(delivery_attempts::Column::Request, email))
                .add(contains(delivery_attempts::Column::ErrorMessage, email))
                .add(contains(delivery_attempts::Column::ResponseExcerpt, email))
                .add(contains(delivery_attempts::Column::Reason, email)),
        )
        .all(db)
        .await?
        .into_iter()
        .filter(|a| {
            [
                a.request.as_deref(),
                a.error_message.as_deref(),
                a.response_excerpt.as_deref(),
                a.reason.as_deref(),
            ]
            .into_iter()
            .any(|text| mentions(text, email))
        })
        .map(|a| a.delivery_id)
        .collect();
    let from_attempts: Vec<&str> = from_attempts.iter().map(String::as_str).collect();
    for chunk in from_attempts.chunks(500) {
        found.extend(
            deliveries::Entity::find_in_tenant(tenant_id)
                .filter(deliveries::Column::Id.is_in(chunk.iter().copied()))
                .all(db)
                .await?,
        );
    }
    let mut seen = BTreeSet::new();
    let at = now();
    for delivery in found {
        if !seen.insert(delivery.id.clone()) {
            continue;
        }
        let mut update = deliveries::ActiveModel {
            operation: Set(None),
            response: Set(None),
            vendor_body: Set(None),
            warnings: Set("[]".into()),
            updated_at: Set(at),
            ..Default::default()
        };
        if delivery.error_message.is_some() {
            update.error_message = Set(Some("erased on request".into()));
        }
        if matches!(
            delivery.status.as_str(),
            ds::PENDING | ds::RETRYING | ds::WAITING
        ) {
            update.status = Set(ds::SKIPPED.into());
            update.reason = Set(Some("erased".into()));
            update.next_attempt_at = Set(None);
        }
        deliveries::Entity::update_many()
            .set(update)
            .filter(deliveries::Column::TenantId.eq(tenant_id))
            .filter(deliveries::Column::Id.eq(delivery.id.as_str()))
            .exec(db)
            .await?;
    }
    let cleared: Vec<&str> = seen.iter().map(String::as_str).collect();
    for chunk in cleared.chunks(500) {
        clear_attempts(db, tenant_id, email, chunk).await?;
    }
    Ok(seen.len() as u64)
}

/// Clears what the attempts of these deliveries sent and received; their times, durations,
/// statuses and outcomes stay.
async fn clear_attempts<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
    email: &str,
    delivery_ids: &[&str],
) -> Result<(), ApiError> {
    let of_these = || {
        Condition::all()
            .add(delivery_attempts::Column::TenantId.eq(tenant_id))
            .add(delivery_attempts::Column::DeliveryId.is_in(delivery_ids.iter().copied()))
    };
    delivery_attempts::Entity::update_many()
        .set(delivery_attempts::ActiveModel {
            request: Set(None),
            response_excerpt: Set(None),
            ..Default::default()
        })
        .filter(of_these())
        .exec(db)
        .await?;
    delivery_attempts::Entity::update_many()
        .set(delivery_attempts::ActiveModel {
            error_message: Set(Some("erased on request".into())),
            ..Default::default()
        })
        .filter(of_these())
        .filter(delivery_attempts::Column::ErrorMessage.is_not_null())
        .exec(db)
        .await?;
    delivery_attempts::Entity::update_many()
        .set(delivery_attempts::ActiveModel {
            reason: Set(None),
            ..Default::default()
        })
        .filter(of_these())
        .filter(contains(delivery_attempts::Column::Reason, email))
        .exec(db)
        .await?;
    Ok(())
}

/// Deletes the tenant's sandbox records that hold the address, and the links to them (a
/// later event for the same Stripe object creates a fresh record).
async fn delete_sandbox_records<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
    email: &str,
) -> Result<u64, ApiError> {
    let found: Vec<sandbox_records::Model> = sandbox_records::Entity::find_in_tenant(tenant_id)
        .filter(
            Condition::any()
                .add(contains(sandbox_records::Column::Fields, email))
                .add(contains(sandbox_records::Column::MatchKey, email)),
        )
        .all(db)
        .await?
        .into_iter()
        .filter(|r| mentions(Some(&r.fields), email) || mentions(Some(&r.match_key), email))
        .collect();
    for record in &found {
        record_links::Entity::delete_many()
            .filter(record_links::Column::TenantId.eq(tenant_id))
            .filter(record_links::Column::ConnectionId.eq(record.connection_id.as_str()))
            .filter(record_links::Column::CrmRecordId.eq(record.id.as_str()))
            .exec(db)
            .await?;
        sandbox_records::Entity::delete_by_id_in_tenant(tenant_id, &record.id)
            .exec(db)
            .await?;
    }
    Ok(found.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redacted_payload_keeps_only_ids() {
        let payload = r#"{"id":"evt_1","object":"event","type":"charge.succeeded","created":1,
            "livemode":false,"request":{"idempotency_key":"k"},
            "data":{"object":{"id":"ch_1","object":"charge","billing_details":{"email":"ada@example.com"}},
                    "previous_attributes":{"receipt_email":"ada@example.com"}}}"#;
        let redacted = redact_payload(payload);
        assert!(!redacted.contains("ada@"), "{redacted}");
        let value: Value = serde_json::from_str(&redacted).unwrap();
        assert_eq!(value["id"], "evt_1");
        assert_eq!(value["type"], "charge.succeeded");
        assert_eq!(value["data"]["object"]["id"], "ch_1");
    }

    #[test]
    fn like_wildcards_in_an_address_are_escaped() {
        let expr = contains(events::Column::Payload, "a_b%c@x.io");
        let sql = sea_orm::sea_query::Query::select()
            .expr(expr)
            .to_string(sea_orm::sea_query::SqliteQueryBuilder);
        assert!(sql.contains(r"a\_b\%c@x.io"), "{sql}");
    }
}
