//! HubSpot's API limits in the fake: counting requests and announcing the budgets in headers.

use actix_web::HttpResponse;

use super::Limits;

impl Limits {
    pub(super) fn new() -> Self {
        Limits {
            max: 100,
            interval_ms: 10_000,
            daily: 250_000,
            window_start: std::time::Instant::now(),
            in_window: 0,
            day_start: std::time::Instant::now(),
            today: 0,
        }
    }

    /// Counts one request; `Err` names the policy it broke.
    pub(super) fn take(&mut self) -> Result<(), &'static str> {
        let now = std::time::Instant::now();
        if now.duration_since(self.window_start).as_millis() >= u128::from(self.interval_ms) {
            self.window_start = now;
            self.in_window = 0;
        }
        if now.duration_since(self.day_start).as_secs() >= 86_400 {
            self.day_start = now;
            self.today = 0;
        }
        if self.today >= self.daily {
            return Err("DAILY");
        }
        if self.in_window >= self.max {
            return Err("TEN_SECONDLY_ROLLING");
        }
        self.in_window += 1;
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
                self.max.saturating_sub(self.in_window),
            ),
        ] {
            headers.insert(
                actix_web::http::header::HeaderName::from_static(name),
                actix_web::http::header::HeaderValue::from(value),
            );
        }
    }
}
