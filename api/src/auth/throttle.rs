//! Failed-login throttle, kept in the database so every api replica sees the same counts.
//! After `limit` failures within the window, the key is refused until the window ends.

use chrono::{DateTime, Duration, Utc};
use entity::login_throttle;
use sea_orm::{ActiveModelTrait, ConnectionTrait, EntityTrait, Set};

pub const WINDOW_MINUTES: i64 = 15;
pub const EMAIL_LIMIT: i32 = 5;
pub const ADDRESS_LIMIT: i32 = 30;

pub fn email_key(email: &str) -> String {
    format!("email:{}", email.to_lowercase())
}

pub fn address_key(address: &str) -> String {
    format!("ip:{address}")
}

/// Seconds until `key` may try again, if it is blocked now.
pub async fn blocked_for<C: ConnectionTrait>(
    db: &C,
    key: &str,
) -> Result<Option<u64>, sea_orm::DbErr> {
    let now = Utc::now();
    Ok(login_throttle::Entity::find_by_id(key.to_string())
        .one(db)
        .await?
        .and_then(|row| row.blocked_until)
        .filter(|until| *until > now)
        .map(|until| seconds_until(now, until)))
}

fn seconds_until(now: DateTime<Utc>, until: DateTime<Utc>) -> u64 {
    ((until - now).num_milliseconds().max(0) as u64)
        .div_ceil(1000)
        .max(1)
}

/// Counts one failure for `key`, blocking it once it reaches `limit` within the window.
pub async fn record_failure<C: ConnectionTrait>(
    db: &C,
    key: &str,
    limit: i32,
) -> Result<(), sea_orm::DbErr> {
    let now = Utc::now();
    let window = Duration::minutes(WINDOW_MINUTES);
    match login_throttle::Entity::find_by_id(key.to_string())
        .one(db)
        .await?
    {
        Some(row) => {
            let fresh_window = now - row.window_started_at > window;
            let (failures, started) = if fresh_window {
                (1, now)
            } else {
                (row.failures + 1, row.window_started_at)
            };
            let mut active: login_throttle::ActiveModel = row.into();
            active.failures = Set(failures);
            active.window_started_at = Set(started);
            active.blocked_until = Set((failures >= limit).then(|| now + window));
            active.update(db).await?;
        }
        None => {
            let row = login_throttle::ActiveModel {
                key: Set(key.to_string()),
                failures: Set(1),
                window_started_at: Set(now),
                blocked_until: Set((limit <= 1).then(|| now + window)),
            };
            // Two first failures at once: the loser's count is lost, which only errs lenient.
            let _ = login_throttle::Entity::insert(row).exec(db).await;
        }
    }
    Ok(())
}

/// Forgets the failures of `key` after a successful login.
pub async fn clear<C: ConnectionTrait>(db: &C, key: &str) -> Result<(), sea_orm::DbErr> {
    login_throttle::Entity::delete_by_id(key.to_string())
        .exec(db)
        .await?;
    Ok(())
}
