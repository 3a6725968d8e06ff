//! Time arithmetic on numbers a vendor (or a tenant's own endpoint) chose: `Retry-After` in
//! seconds or as a date, rate-limit reset headers, token `expires_in`. Such numbers can be
//! anything, so every sum here is checked and every wait is capped; nothing a vendor answers
//! can make the worker panic or hold a connection for years.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The longest a vendor's `Retry-After` (or a daily-limit pause) holds a delivery or a
/// connection: one day. A longer wait is cut to this, with a warning on the delivery.
pub const MAX_HOLD: Duration = Duration::from_secs(86_400);

/// The longest an access token is trusted without a refresh, whatever `expires_in` says:
/// one day. A shorter `expires_in` is kept as it is; a negative one means "expired".
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(86_400);

/// `at + wait`, never panicking: a sum past what a timestamp can hold is the latest one.
pub fn after(at: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(wait)
        .ok()
        .and_then(|delta| at.checked_add_signed(delta))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// A vendor's wait, at most [`MAX_HOLD`]; with the warning to record when it was cut.
pub fn clamp_hold(wait: Duration, what: &str) -> (Duration, Option<String>) {
    if wait <= MAX_HOLD {
        return (wait, None);
    }
    let warning = format!(
        "the vendor's {what} of {} s was cut to the maximum hold of {} s",
        wait.as_secs(),
        MAX_HOLD.as_secs()
    );
    (MAX_HOLD, Some(warning))
}

/// When a token whose answer said `expires_in` seconds expires: from now, at least now and at
/// most [`MAX_TOKEN_LIFETIME`] ahead.
pub fn token_expiry(now: DateTime<Utc>, expires_in: i64, vendor: &str) -> DateTime<Utc> {
    let max = MAX_TOKEN_LIFETIME.as_secs() as i64;
    let seconds = expires_in.clamp(0, max);
    if seconds != expires_in {
        tracing::warn!(
            vendor,
            expires_in,
            used = seconds,
            "a token answer's expires_in was out of range and was clamped"
        );
    }
    after(now, Duration::from_secs(seconds as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_never_panic() {
        let now = crate::now();
        assert_eq!(
            after(now, Duration::from_secs(u64::MAX)),
            DateTime::<Utc>::MAX_UTC
        );
        assert_eq!(
            after(now, Duration::from_secs(100_000_000_000_000)),
            DateTime::<Utc>::MAX_UTC
        );
        assert_eq!(
            after(now, Duration::from_secs(5)),
            now + chrono::Duration::seconds(5)
        );
    }

    #[test]
    fn holds_are_capped_with_a_warning() {
        let (wait, warning) = clamp_hold(Duration::from_secs(100_000_000_000_000), "Retry-After");
        assert_eq!(wait, MAX_HOLD);
        assert!(warning.unwrap().contains("100000000000000 s"));
        assert_eq!(
            clamp_hold(Duration::from_secs(30), "Retry-After"),
            (Duration::from_secs(30), None)
        );
    }

    #[test]
    fn token_lifetimes_are_capped() {
        let now = crate::now();
        for huge in [i64::MAX, i64::MAX / 1000 + 1, 100_000_000_000_000] {
            assert_eq!(
                token_expiry(now, huge, "test"),
                now + chrono::Duration::days(1)
            );
        }
        assert_eq!(token_expiry(now, i64::MIN, "test"), now);
        assert_eq!(
            token_expiry(now, 1800, "test"),
            now + chrono::Duration::seconds(1800)
        );
    }
}
