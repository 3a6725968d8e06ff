//! Failed-login throttle and sign-up rate, kept in the database so every api replica sees the
//! same counts. Every attempt is counted by one atomic statement (an upsert that increments
//! and returns the count) *before* any password is checked, so concurrent attempts are all
//! counted and none slips past the limit.
//!
//! The login policy, per attempt from client address A for email E:
//! - **(A, E) pair**: the first [`PAIR_FREE`] attempts in [`PAIR_WINDOW`] are checked at once.
//!   From then on each attempt must wait out an exponential delay: attempt n (n ≥ 5) is let
//!   through only when no delay is running, and starts one of
//!   `min(30 s × 2^(n − 5), 15 min)`; attempts made while a delay runs are refused (429) and
//!   still counted. A successful login clears the pair.
//! - **Known addresses**: an address that signed up as E, logged in to E or refreshed a
//!   session of E in the last [`KNOWN_FOR`] is subject to its pair counter only. A stranger
//!   elsewhere can therefore never lock a user out of the addresses they already use.
//! - **Account ceiling** (E, from addresses not known for E): at most [`ACCOUNT_LIMIT`]
//!   attempts per [`WINDOW`]; over it, unknown addresses are refused until the window ends,
//!   at most 15 minutes, however many more attempts arrive meanwhile.
//! - **Address ceiling** (A, for accounts A is not known for): at most [`ADDRESS_LIMIT`]
//!   attempts per [`WINDOW`] across all emails; over it, refused until the window ends.
//!
//! An IPv6 client is counted by its /64. Rows whose windows and delays are over are pruned
//! now and then by [`admit`].

use std::net::{IpAddr, Ipv6Addr};

use chrono::{DateTime, Duration, Utc};
use entity::login_throttle::{self, Column};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, QueryFilter};

/// The account and address ceilings count attempts in windows of this length.
pub const WINDOW: Duration = Duration::minutes(15);
/// Attempts from unknown addresses one account takes per window.
pub const ACCOUNT_LIMIT: i32 = 20;
/// Attempts one address makes per window, across the accounts it is not known for.
pub const ADDRESS_LIMIT: i32 = 30;
/// Attempts one address makes at one account before the exponential delay starts.
pub const PAIR_FREE: i32 = 5;
/// A pair's count starts again this long after its first attempt.
pub const PAIR_WINDOW: Duration = Duration::hours(1);
/// The first delay, doubled at each further attempt.
pub const PAIR_BASE_DELAY: Duration = Duration::seconds(30);
/// The longest delay.
pub const PAIR_MAX_DELAY: Duration = Duration::minutes(15);
/// How long a successful login makes an address known for an account.
pub const KNOWN_FOR: Duration = Duration::days(30);

pub fn email_key(email: &str) -> String {
    format!("email:{}", email.to_lowercase())
}

pub fn address_key(address: &str) -> String {
    format!("ip:{}", bucket(address))
}

/// The address comes first and holds no space, so the key is unambiguous.
pub fn pair_key(address: &str, email: &str) -> String {
    format!("pair:{} {}", bucket(address), email.to_lowercase())
}

fn known_key(address: &str, email: &str) -> String {
    format!("known:{} {}", bucket(address), email.to_lowercase())
}

pub fn signup_key(address: &str) -> String {
    format!("signup:{}", bucket(address))
}

/// What one client is counted as: an IPv4 address, or the /64 network of an IPv6 address
/// (one subscriber's allocation, which holds more addresses than any counter could).
pub fn bucket(address: &str) -> String {
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => {
            let network = u128::from(v6) & (u128::MAX << 64);
            format!("{}/64", Ipv6Addr::from(network))
        }
        _ => address.to_string(),
    }
}

/// Deletes counters whose windows and delays are over, and known addresses not seen for
/// [`KNOWN_FOR`]. Runs now and then from [`admit`], so the table stays small without a loop.
pub async fn prune<C: ConnectionTrait>(db: &C) -> Result<u64, DbErr> {
    let now = Utc::now();
    // Every window (sign-up rates included) is at most an hour long.
    let counters = login_throttle::Entity::delete_many()
        .filter(Column::Key.not_like("known:%"))
        .filter(Column::WindowStartedAt.lt(now - PAIR_WINDOW))
        .filter(
            Column::BlockedUntil
                .is_null()
                .or(Column::BlockedUntil.lt(now)),
        )
        .exec(db)
        .await?;
    let known = login_throttle::Entity::delete_many()
        .filter(Column::Key.like("known:%"))
        .filter(Column::WindowStartedAt.lt(now - KNOWN_FOR))
        .exec(db)
        .await?;
    Ok(counters.rows_affected + known.rows_affected)
}

/// Seconds from `now` to `until`, rounded up, at least 1.
pub fn seconds_until(now: DateTime<Utc>, until: DateTime<Utc>) -> u64 {
    let millis = std::cmp::max((until - now).num_milliseconds(), 0) as u64;
    std::cmp::max(millis.div_ceil(1000), 1)
}

/// Counts one attempt for `key` and returns the row after it: the count restarts at 1 when
/// the key's window (begun by its first attempt) is older than `window`. One statement, so
/// concurrent callers each see a distinct count.
pub async fn count<C: ConnectionTrait>(
    db: &C,
    key: &str,
    window: Duration,
) -> Result<login_throttle::Model, DbErr> {
    let now = Utc::now();
    let table = login_throttle::Entity;
    let expired = || Expr::col((table, Column::WindowStartedAt)).lte(now - window);
    let statement = Query::insert()
        .into_table(table)
        .columns([
            Column::Key,
            Column::Failures,
            Column::WindowStartedAt,
            Column::BlockedUntil,
        ])
        .values_panic([
            key.into(),
            1i32.into(),
            now.into(),
            Option::<DateTime<Utc>>::None.into(),
        ])
        .on_conflict(
            OnConflict::column(Column::Key)
                .values([
                    (
                        Column::Failures,
                        Expr::case(expired(), 1i32)
                            .finally(Expr::col((table, Column::Failures)).add(1i32))
                            .into(),
                    ),
                    (
                        Column::WindowStartedAt,
                        Expr::case(expired(), now)
                            .finally(Expr::col((table, Column::WindowStartedAt)))
                            .into(),
                    ),
                ])
                .to_owned(),
        )
        .returning_all()
        .to_owned();
    let row = db
        .query_one(&statement)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("throttle row {key}")))?;
    login_throttle::Model::from_query_result(&row, "")
}

/// Takes one count back, for an attempt that turned out not to be a failure.
pub async fn uncount<C: ConnectionTrait>(db: &C, key: &str) -> Result<(), DbErr> {
    login_throttle::Entity::update_many()
        .col_expr(Column::Failures, Expr::col(Column::Failures).sub(1i32))
        .filter(Column::Key.eq(key))
        .filter(Column::Failures.gt(0))
        .exec(db)
        .await?;
    Ok(())
}

/// Starts a delay on `key` ending at `until`, unless one is running: true when this caller
/// started it (and so may make the one attempt it allows).
async fn start_delay<C: ConnectionTrait>(
    db: &C,
    key: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let started = login_throttle::Entity::update_many()
        .col_expr(Column::BlockedUntil, Expr::value(Some(until)))
        .filter(Column::Key.eq(key))
        .filter(
            Column::BlockedUntil
                .is_null()
                .or(Column::BlockedUntil.lte(now)),
        )
        .exec(db)
        .await?;
    Ok(started.rows_affected == 1)
}

/// Forgets `key`.
pub async fn clear<C: ConnectionTrait>(db: &C, key: &str) -> Result<(), DbErr> {
    login_throttle::Entity::delete_by_id(key.to_string())
        .exec(db)
        .await?;
    Ok(())
}

/// The delay attempt `n` of a pair starts (n ≥ [`PAIR_FREE`]).
pub fn pair_delay(n: i32) -> Duration {
    let doublings = (n - PAIR_FREE).clamp(0, 16) as u32;
    std::cmp::min(PAIR_BASE_DELAY * 2i32.pow(doublings), PAIR_MAX_DELAY)
}

/// Makes `address` known for `email` for [`KNOWN_FOR`] from now: it proved it holds the
/// account (a sign-up, a login, a session refreshed from there).
pub async fn mark_known<C: ConnectionTrait>(
    db: &C,
    address: &str,
    email: &str,
) -> Result<(), DbErr> {
    remember(db, known_key(address, email)).await
}

async fn remember<C: ConnectionTrait>(db: &C, key: String) -> Result<(), DbErr> {
    login_throttle::Entity::insert(login_throttle::ActiveModel {
        key: sea_orm::Set(key),
        failures: sea_orm::Set(0),
        window_started_at: sea_orm::Set(Utc::now()),
        blocked_until: sea_orm::Set(None),
    })
    .on_conflict(
        OnConflict::column(Column::Key)
            .update_column(Column::WindowStartedAt)
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// A login attempt that was counted and may check its password. Report how it went.
#[derive(Debug)]
pub struct LoginAttempt {
    pair: String,
    known: String,
    /// The ceilings this attempt was counted against (none for a known address).
    ceilings: Vec<String>,
}

/// What the throttle says about a login attempt.
#[derive(Debug)]
pub enum Admission {
    /// Check the password, then report on the attempt.
    Check(LoginAttempt),
    /// Refused without checking; try again in this many seconds.
    Refused(u64),
}

/// Counts a login attempt and decides whether its password may be checked (module docs).
pub async fn admit<C: ConnectionTrait>(
    db: &C,
    address: &str,
    email: &str,
) -> Result<Admission, DbErr> {
    if uuid::Uuid::new_v4().as_u128().is_multiple_of(64)
        && let Err(e) = prune(db).await
    {
        tracing::warn!(error = %e, "pruning the login throttle failed");
    }
    let known = known_key(address, email);
    let now = Utc::now();
    let is_known = login_throttle::Entity::find_by_id(known.clone())
        .one(db)
        .await?
        .is_some_and(|row| row.window_started_at > now - KNOWN_FOR);

    let pair = pair_key(address, email);
    let counted = count(db, &pair, PAIR_WINDOW).await?;
    let mut wait: Option<DateTime<Utc>> = None;
    let mut ceilings = Vec::new();
    if !is_known {
        for (key, limit) in [
            (email_key(email), ACCOUNT_LIMIT),
            (address_key(address), ADDRESS_LIMIT),
        ] {
            let row = count(db, &key, WINDOW).await?;
            if row.failures > limit {
                let until = row.window_started_at + WINDOW;
                wait = std::cmp::max(wait, Some(until));
            }
            ceilings.push(key);
        }
    }
    let now = Utc::now();
    if let Some(until) = counted.blocked_until.filter(|u| *u > now) {
        wait = std::cmp::max(wait, Some(until));
    }
    if let Some(until) = wait {
        return Ok(Admission::Refused(seconds_until(now, until)));
    }
    if counted.failures >= PAIR_FREE {
        let until = now + pair_delay(counted.failures);
        if !start_delay(db, &pair, now, until).await? {
            let running = login_throttle::Entity::find_by_id(pair.clone())
                .one(db)
                .await?
                .and_then(|row| row.blocked_until)
                .unwrap_or(until);
            return Ok(Admission::Refused(seconds_until(now, running)));
        }
    }
    Ok(Admission::Check(LoginAttempt {
        pair,
        known,
        ceilings,
    }))
}

impl LoginAttempt {
    /// The password was right: the pair starts afresh, the ceilings give the count back and
    /// the address becomes known for the account.
    pub async fn succeeded<C: ConnectionTrait>(self, db: &C) -> Result<(), DbErr> {
        clear(db, &self.pair).await?;
        for key in &self.ceilings {
            uncount(db, key).await?;
        }
        remember(db, self.known).await
    }

    /// The password was never checked (the server was too busy): give every count back.
    pub async fn abandoned<C: ConnectionTrait>(self, db: &C) -> Result<(), DbErr> {
        for key in std::iter::once(&self.pair).chain(&self.ceilings) {
            uncount(db, key).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_client_is_counted_by_its_64() {
        assert_eq!(bucket("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(bucket("2001:db8:1:2:ffff::9"), "2001:db8:1:2::/64");
        assert_eq!(bucket("203.0.113.7"), "203.0.113.7");
        assert_eq!(bucket("unknown"), "unknown");
        assert_eq!(
            pair_key("2001:db8::1", "A@x.io"),
            "pair:2001:db8::/64 a@x.io"
        );
    }

    #[test]
    fn the_pair_delay_doubles_up_to_fifteen_minutes() {
        assert_eq!(pair_delay(5), Duration::seconds(30));
        assert_eq!(pair_delay(6), Duration::seconds(60));
        assert_eq!(pair_delay(9), Duration::seconds(480));
        assert_eq!(pair_delay(10), Duration::minutes(15));
        assert_eq!(pair_delay(1000), Duration::minutes(15));
    }
}
