//! Delivery history: one `delivery_attempts` row per attempt, written by the engine in the
//! same transaction that records the attempt's outcome on the delivery. Each row is bounded
//! (a short request summary, a 2 KiB excerpt of the answer, a 1 KiB message) and a delivery
//! keeps only its latest [`KEPT_ATTEMPTS`], so one retried forever stays small. What goes in
//! is already redacted by the engine; this module only numbers, cuts and stores it.

use entity::{deliveries, delivery_attempts};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect,
};

/// Attempts a delivery keeps; older ones are dropped as new ones are written.
pub const KEPT_ATTEMPTS: i32 = 50;
/// Bytes of a vendor's answer an attempt keeps.
pub const EXCERPT_LIMIT: usize = 2048;
/// Bytes of the request summary.
pub const REQUEST_LIMIT: usize = 512;
/// Bytes of an error message or reason.
pub const MESSAGE_LIMIT: usize = 1024;

/// What became of an attempt.
pub mod outcome {
    /// The write (or fetch, or check) succeeded.
    pub const SUCCEEDED: &str = "succeeded";
    /// It failed and another attempt is scheduled.
    pub const RETRYING: &str = "retrying";
    /// The vendor's rate limit refused it; it is tried again when the vendor says, without
    /// using up the retry budget.
    pub const THROTTLED: &str = "throttled";
    /// The vendor refused the credentials: the delivery waits for re-authorization.
    pub const WAITING: &str = "waiting";
    /// It failed for good: the delivery is dead-lettered.
    pub const DEAD: &str = "dead";
    /// Nothing was written: a newer event had already been applied (`stale`), or an assert
    /// did not hold.
    pub const SKIPPED: &str = "skipped";
    /// Every outcome.
    pub const ALL: &[&str] = &[SUCCEEDED, RETRYING, THROTTLED, WAITING, DEAD, SKIPPED];
}

/// One attempt as the engine hands it over, before it is numbered and cut to size.
#[derive(Debug, Clone, Default)]
pub struct Attempt {
    pub outcome: &'static str,
    pub duration_ms: i64,
    pub request: Option<String>,
    pub vendor_status: Option<i32>,
    pub error_kind: Option<String>,
    pub error_message: Option<String>,
    pub response: Option<String>,
    pub reason: Option<String>,
}

/// Stores `attempt` of `delivery` on `db` (the transaction that records its outcome on the
/// delivery), numbered after the latest one kept, and drops those older than the last
/// [`KEPT_ATTEMPTS`]. The number goes on across retries, so the history reads in order.
pub async fn record<C: ConnectionTrait>(
    db: &C,
    delivery: &deliveries::Model,
    attempt: Attempt,
) -> Result<(), DbErr> {
    let latest: Option<Option<i32>> = delivery_attempts::Entity::find()
        .select_only()
        .expr(delivery_attempts::Column::Attempt.max())
        .filter(delivery_attempts::Column::DeliveryId.eq(delivery.id.as_str()))
        .into_tuple()
        .one(db)
        .await?;
    let number = latest.flatten().unwrap_or(0).saturating_add(1);
    let now = crate::now();
    let duration_ms = attempt.duration_ms.max(0);
    let started_at = now
        .checked_sub_signed(chrono::Duration::milliseconds(duration_ms))
        .unwrap_or(now);
    delivery_attempts::Entity::insert(delivery_attempts::ActiveModel {
        id: Set(crate::new_id()),
        tenant_id: Set(delivery.tenant_id.clone()),
        delivery_id: Set(delivery.id.clone()),
        event_id: Set(delivery.event_id.clone()),
        attempt: Set(number),
        started_at: Set(started_at),
        duration_ms: Set(duration_ms),
        outcome: Set(attempt.outcome.to_string()),
        request: Set(attempt.request.map(|r| cut(&r, REQUEST_LIMIT))),
        vendor_status: Set(attempt.vendor_status),
        error_kind: Set(attempt.error_kind),
        error_message: Set(attempt.error_message.map(|m| cut(&m, MESSAGE_LIMIT))),
        response_excerpt: Set(attempt.response.map(|r| cut(&r, EXCERPT_LIMIT))),
        reason: Set(attempt.reason.map(|r| cut(&r, MESSAGE_LIMIT))),
    })
    .exec_without_returning(db)
    .await?;
    if number > KEPT_ATTEMPTS {
        delivery_attempts::Entity::delete_many()
            .filter(delivery_attempts::Column::DeliveryId.eq(delivery.id.as_str()))
            .filter(delivery_attempts::Column::Attempt.lte(number - KEPT_ATTEMPTS))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// `text` cut to at most `limit` bytes at a character boundary, marked with `…` when cut.
pub fn cut(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_string();
    }
    let mut end = limit.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// `text` with every one of `secrets` (credential values) replaced.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_string();
    for secret in secrets {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), REDACTED_CREDENTIAL);
        }
    }
    text
}

/// What replaces a connection's credential wherever a vendor echoed it.
pub const REDACTED_CREDENTIAL: &str = "[credential]";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_at_a_character_boundary_within_the_limit() {
        assert_eq!(cut("short", 10), "short");
        let long = "é".repeat(2000);
        let kept = cut(&long, EXCERPT_LIMIT);
        assert!(kept.len() <= EXCERPT_LIMIT, "{}", kept.len());
        assert!(kept.ends_with('…'));
        assert!(kept.starts_with("éé"));
    }

    #[test]
    fn scrubs_every_credential() {
        let secrets = vec!["pat-na1-0123456789".to_string(), "abcdefgh".to_string()];
        assert_eq!(
            scrub("bad token pat-na1-0123456789 and abcdefgh", &secrets),
            "bad token [credential] and [credential]"
        );
    }
}
