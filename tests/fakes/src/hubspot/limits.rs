//! HubSpot's API limits in the fake: counting requests in a rolling window (as the policy's
//! name, `TEN_SECONDLY_ROLLING`, says), announcing the budgets in headers, and counting the
//! requests that come while an announced `Retry-After` is pending.

use actix_web::HttpResponse;

use super::Limits;

/// How long after a `Retry-After` is announced a request may still have been on its way.
pub const IN_FLIGHT: std::time::Duration = std::time::Duration::from_millis(250);

impl Limits {
    pub(super) fn new() -> Self {
        Limits {
            max: 100,
            interval_ms: 10_000,
            daily: 250_000,
            window: std::collections::VecDeque::new(),
            day_start: std::time::Instant::now(),
            today: 0,
            retry_after: None,
            early: 0,
        }
    }

    /// Notes a request's arrival against an announced `Retry-After`. A request that arrives
    /// within [`IN_FLIGHT`] of the announcement left before its sender could know of it (the
    /// answer's way back, and the sender telling its other processes), so it is not early.
    pub(super) fn arrived(&mut self) {
        let now = std::time::Instant::now();
        if let Some((announced, until)) = self.retry_after
            && now >= announced + IN_FLIGHT
            && now < until
        {
            self.early += 1;
        }
    }

    /// A `Retry-After` of `seconds` was announced now.
    pub(super) fn announced(&mut self, seconds: u64) {
        let now = std::time::Instant::now();
        let until = now + std::time::Duration::from_secs(seconds);
        self.retry_after = Some(match self.retry_after {
            Some((first, pending)) if pending > now => (first, pending.max(until)),
            _ => (now, until),
        });
    }

    fn in_window(&self) -> u64 {
        self.window.len() as u64
    }

    /// Counts one request; `Err` names the policy it broke.
    pub(super) fn take(&mut self) -> Result<(), &'static str> {
        let now = std::time::Instant::now();
        let interval = std::time::Duration::from_millis(self.interval_ms);
        while self
            .window
            .front()
            .is_some_and(|at| now.duration_since(*at) >= interval)
        {
            self.window.pop_front();
        }
        if now.duration_since(self.day_start).as_secs() >= 86_400 {
            self.day_start = now;
            self.today = 0;
        }
        if self.today >= self.daily {
            return Err("DAILY");
        }
        if self.in_window() >= self.max {
            return Err("TEN_SECONDLY_ROLLING");
        }
        self.window.push_back(now);
        self.today += 1;
        Ok(())
    }

    pub(super) fn headers(&self, response: &mut HttpResponse) {
        let headers = response.headers_mut();
        for (name, value) in [
            ("x-hubspot-ratelimit-daily", self.daily),
            (
                "x-hubspot-ratelimit-daily-remaining",
                self.daily.saturating_sub(self.today),
            ),
            (
                "x-hubspot-ratelimit-interval-milliseconds",
                self.interval_ms,
            ),
            ("x-hubspot-ratelimit-max", self.max),
            (
                "x-hubspot-ratelimit-remaining",
                self.max.saturating_sub(self.in_window()),
            ),
        ] {
            headers.insert(
                actix_web::http::header::HeaderName::from_static(name),
                actix_web::http::header::HeaderValue::from(value),
            );
        }
    }
}
