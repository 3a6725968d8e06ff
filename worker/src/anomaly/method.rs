//! The detectors' arithmetic, on a series' counts per hour (see [`entity::activity`]); no
//! database, no clock: `now` is always given.
//!
//! **Baseline.** What a series usually does at hour `h` is a seasonal mean: the mean of its
//! counts at the same hour of the week, and the hours either side, over the last
//! [`HISTORY_WEEKS`] weeks it has history for (Monday 9:00 is compared with Mondays around
//! 9:00, never with Sunday 3:00). Until a series has [`MIN_WEEKS`] weeks of history, no
//! detector looks at it (the cold start).
//!
//! **Tests.** Counts are taken as Poisson with the baseline's mean, so each detector asks how
//! likely what was observed is under the usual rate, and speaks only below [`ALPHA`] (at a
//! tenant's `normal` level; see [`super::sensitivity`] for the others):
//! - *silence*: nothing seen for at least [`SILENCE_MIN_MINUTES`], while the baseline expected
//!   λ events in that time: P(0 | λ) = e^-λ < α (λ > 13.8: about 21 minutes of an account that
//!   usually sends 40 an hour, so the hour's minimum decides);
//! - *spike*: in the current hour so far (from its 10th minute) or the last whole hour, at
//!   least [`SPIKE_MIN`] events and [`SPIKE_RATIO`] times the baseline, and P(X ≥ observed) < α;
//! - *failure rate*: a flow's delivery attempts in the last whole hour and the current one, at
//!   least [`FAILURE_MIN_ATTEMPTS`], failing at a rate [`FAILURE_JUMP`] above the flow's rate
//!   over the week before (smoothed: (failures + 1) / (attempts + 2), from at least
//!   [`FAILURE_BASELINE_MIN`] attempts), with a binomial P(X ≥ failures) < α;
//! - *latency*: a flow's mean event → CRM time over the last whole hour and the current one
//!   (at least [`LATENCY_MIN_SAMPLES`] successful attempts) at least twice, and [`LATENCY_Z`]
//!   standard deviations above, the mean of its hourly means over the week before (hours with
//!   at least 5 samples, 24 such hours at least), and a second or more slower;
//! - *unusual amount*: a payment of the last whole hour or the current one whose amount's
//!   logarithm is [`AMOUNT_Z`] standard deviations or more from the mean of the account's
//!   payments in that currency over four weeks (at least [`AMOUNT_MIN_PAYMENTS`]): amounts are
//!   compared on a log scale, so 49.00 against a usual 45.00 is nothing and 4,900.00 is.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::sensitivity::Level;

/// Hours in a week.
pub const WEEK: i64 = 168;
/// Weeks of history a baseline is built from.
pub const HISTORY_WEEKS: i64 = 4;
/// Weeks of history a series needs before any detector looks at it.
pub const MIN_WEEKS: i64 = 2;
/// How unlikely under the baseline an observation must be to open an incident.
pub const ALPHA: f64 = Level::Normal.alpha();
/// A spike is at least this many times the baseline…
pub const SPIKE_RATIO: f64 = 5.0;
/// …and at least this many events.
pub const SPIKE_MIN: i64 = 10;
/// The current hour counts for a spike from this minute on.
pub const SPIKE_FROM_MINUTE: i64 = 10;
/// Silence shorter than this never opens an incident.
pub const SILENCE_MIN_MINUTES: i64 = 60;
/// A failure rate this far (absolute) above the flow's usual rate…
pub const FAILURE_JUMP: f64 = 0.2;
/// …over at least this many attempts…
pub const FAILURE_MIN_ATTEMPTS: i64 = 20;
/// …against a usual rate measured over at least this many.
pub const FAILURE_BASELINE_MIN: i64 = 50;

/// A latency jump needs this many successful attempts in its window…
pub const LATENCY_MIN_SAMPLES: i64 = 10;
/// …and this many standard deviations above the usual hourly mean.
pub const LATENCY_Z: f64 = 4.0;
/// A payment's amount this many standard deviations (of the log amounts) from the usual…
pub const AMOUNT_Z: f64 = 4.5;
/// …against at least this many payments.
pub const AMOUNT_MIN_PAYMENTS: i64 = 30;

/// The hour (since the Unix epoch) `at` falls in.
pub fn hour_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(3600)
}

/// One series: counts per hour (hours without a row count 0), the first hour it has history
/// from, and the last time it was seen.
#[derive(Debug, Clone, Default)]
pub struct Series {
    pub counts: BTreeMap<i64, i64>,
    /// Per hour, the sum of the series' values and of their squares (latency, amounts).
    pub sums: BTreeMap<i64, (f64, f64)>,
    pub first_hour: Option<i64>,
    pub last_at: Option<DateTime<Utc>>,
}

impl Series {
    pub fn count(&self, hour: i64) -> i64 {
        self.counts.get(&hour).copied().unwrap_or(0)
    }

    pub fn sum(&self, hour: i64) -> (f64, f64) {
        self.sums.get(&hour).copied().unwrap_or((0.0, 0.0))
    }

    /// The seasonal mean at `hour`, or `None` before [`MIN_WEEKS`] weeks of history.
    pub fn expected(&self, hour: i64) -> Option<f64> {
        let first = self.first_hour?;
        let weeks: Vec<i64> = (1..=HISTORY_WEEKS)
            .filter(|k| hour - k * WEEK > first)
            .collect();
        if (weeks.len() as i64) < MIN_WEEKS {
            return None;
        }
        let mut total = 0i64;
        for k in &weeks {
            for d in -1..=1 {
                total += self.count(hour - k * WEEK + d);
            }
        }
        Some(total as f64 / (weeks.len() * 3) as f64)
    }

    /// The baseline's expected count between `from` and `to`, hour by hour, pro rata.
    pub fn expected_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Option<f64> {
        let mut total = 0.0;
        for hour in hour_of(from)..=hour_of(to) {
            let start = (hour * 3600).max(from.timestamp());
            let end = ((hour + 1) * 3600).min(to.timestamp());
            if end > start {
                total += self.expected(hour)? * (end - start) as f64 / 3600.0;
            }
        }
        Some(total)
    }
}

/// What a detector found: the window, what was expected and observed, how unlikely that is.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub expected: f64,
    pub observed: f64,
    pub p_value: f64,
    /// The event it is about, when it is one (an unusual payment).
    pub event_id: Option<String>,
}

/// Nothing seen since the series' last event, for longer than its usual rate allows.
pub fn silence(series: &Series, now: DateTime<Utc>, level: Level) -> Option<Finding> {
    let last = series.last_at?;
    if (now - last).num_minutes() < SILENCE_MIN_MINUTES {
        return None;
    }
    let expected = series.expected_between(last, now)?;
    let p_value = (-expected).exp();
    (p_value < level.alpha()).then_some(Finding {
        from: last,
        to: now,
        expected,
        observed: 0.0,
        p_value,
        event_id: None,
    })
}

/// Far more events than usual, in the current hour so far or the last whole one.
pub fn spike(series: &Series, now: DateTime<Utc>, level: Level) -> Option<Finding> {
    let hour = hour_of(now);
    let minutes = (now.timestamp() - hour * 3600) / 60;
    let mut windows = vec![(hour - 1, 1.0)];
    if minutes >= SPIKE_FROM_MINUTE {
        windows.push((hour, minutes as f64 / 60.0));
    }
    windows.into_iter().find_map(|(h, fraction)| {
        let observed = series.count(h);
        let expected = series.expected(h)? * fraction;
        let p_value = poisson_at_least(observed, expected.max(0.1));
        (observed >= SPIKE_MIN
            && observed as f64 >= SPIKE_RATIO * expected.max(0.1)
            && p_value < level.alpha())
        .then(|| Finding {
            from: at_hour(h),
            to: at_hour(h + 1).min(now),
            expected,
            observed: observed as f64,
            p_value,
            event_id: None,
        })
    })
}

/// A flow's attempts failing far more often than over the week before.
pub fn failure_rate(
    attempts: &Series,
    failures: &Series,
    now: DateTime<Utc>,
    level: Level,
) -> Option<Finding> {
    let hour = hour_of(now);
    let window = [hour - 1, hour];
    let n: i64 = window.iter().map(|h| attempts.count(*h)).sum();
    let k: i64 = window.iter().map(|h| failures.count(*h)).sum();
    let before = (hour - 1 - WEEK)..(hour - 1);
    let n0: i64 = before.clone().map(|h| attempts.count(h)).sum();
    let k0: i64 = before.map(|h| failures.count(h)).sum();
    if n < FAILURE_MIN_ATTEMPTS || n0 < FAILURE_BASELINE_MIN {
        return None;
    }
    let usual = (k0 as f64 + 1.0) / (n0 as f64 + 2.0);
    let rate = k as f64 / n as f64;
    let p_value = binomial_at_least(k, n, usual);
    (rate >= usual + FAILURE_JUMP && p_value < level.alpha()).then(|| Finding {
        from: at_hour(hour - 1),
        to: now,
        expected: usual,
        observed: rate,
        p_value,
        event_id: None,
    })
}

/// A flow's event → CRM time far above its usual hourly means.
pub fn latency(series: &Series, now: DateTime<Utc>, level: Level) -> Option<Finding> {
    let hour = hour_of(now);
    let n: i64 = [hour - 1, hour].iter().map(|h| series.count(*h)).sum();
    if n < LATENCY_MIN_SAMPLES {
        return None;
    }
    let mean = [hour - 1, hour]
        .iter()
        .map(|h| series.sum(*h).0)
        .sum::<f64>()
        / n as f64;
    let means: Vec<f64> = (hour - 1 - WEEK..hour - 1)
        .filter(|h| series.count(*h) >= 5)
        .map(|h| series.sum(h).0 / series.count(h) as f64)
        .collect();
    if means.len() < 24 {
        return None;
    }
    let usual = means.iter().sum::<f64>() / means.len() as f64;
    let spread = (means.iter().map(|m| (m - usual).powi(2)).sum::<f64>() / means.len() as f64)
        .sqrt()
        .max(1.0);
    let z = (mean - usual) / spread;
    (mean >= 2.0 * usual && z >= level.z(LATENCY_Z) && mean - usual >= 1000.0).then(|| Finding {
        from: at_hour(hour - 1),
        to: now,
        expected: usual,
        observed: mean,
        p_value: normal_above(z),
        event_id: None,
    })
}

/// One payment of the current window: its event and amount (minor units).
#[derive(Debug, Clone, PartialEq)]
pub struct Payment {
    pub event_id: String,
    pub amount: i64,
    pub at: DateTime<Utc>,
}

/// The most unusual of `recent` payments, if its amount is far from the account's usual ones
/// (log scale) in the four weeks before the window.
pub fn unusual_amount(
    series: &Series,
    recent: &[Payment],
    now: DateTime<Utc>,
    level: Level,
) -> Option<Finding> {
    let hour = hour_of(now);
    let first = series.first_hour?;
    if hour - 1 - first < MIN_WEEKS * WEEK {
        return None;
    }
    let history = (hour - 1 - HISTORY_WEEKS * WEEK)..(hour - 1);
    let n: i64 = history.clone().map(|h| series.count(h)).sum();
    if n < AMOUNT_MIN_PAYMENTS {
        return None;
    }
    let (sum, sum_sq) = history
        .map(|h| series.sum(h))
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let mean = sum / n as f64;
    let spread = (sum_sq / n as f64 - mean * mean).max(0.0).sqrt().max(0.05);
    let window_start = at_hour(hour - 1);
    let (payment, z) = recent
        .iter()
        .filter(|p| p.amount > 0 && p.at >= window_start && p.at <= now)
        .map(|p| (p, ((p.amount as f64).ln() - mean) / spread))
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))?;
    (z.abs() >= level.z(AMOUNT_Z)).then(|| Finding {
        from: window_start,
        to: now,
        expected: mean.exp(),
        observed: payment.amount as f64,
        p_value: 2.0 * normal_above(z.abs()),
        event_id: Some(payment.event_id.clone()),
    })
}

/// P(Z ≥ z) for a standard normal Z (Abramowitz and Stegun 7.1.26, error under 1.5e-7).
pub fn normal_above(z: f64) -> f64 {
    let x = z.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erfc = poly * (-x * x).exp();
    if z >= 0.0 {
        erfc / 2.0
    } else {
        1.0 - erfc / 2.0
    }
}

fn at_hour(hour: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(hour * 3600, 0).unwrap_or_default()
}

/// ln(n!) for every n up to `max`.
fn ln_factorials(max: i64) -> Vec<f64> {
    let mut out = Vec::with_capacity(max.max(0) as usize + 1);
    out.push(0.0);
    for i in 1..=max.max(0) {
        out.push(out[(i - 1) as usize] + (i as f64).ln());
    }
    out
}

/// P(X ≥ k) for X ~ Poisson(λ).
pub fn poisson_at_least(k: i64, lambda: f64) -> f64 {
    if k <= 0 {
        return 1.0;
    }
    if lambda <= 0.0 {
        return 0.0;
    }
    let ln_k_factorial = ln_factorials(k)[k as usize];
    let mut term = (k as f64 * lambda.ln() - lambda - ln_k_factorial).exp();
    let mut total = 0.0;
    let mut i = k;
    while term > 0.0 && i < k + 100_000 {
        total += term;
        if term < total * 1e-17 {
            break;
        }
        i += 1;
        term *= lambda / i as f64;
    }
    total.min(1.0)
}

/// P(X ≥ k) for X ~ Binomial(n, p).
pub fn binomial_at_least(k: i64, n: i64, p: f64) -> f64 {
    if k <= 0 {
        return 1.0;
    }
    if k > n || p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    let ln = ln_factorials(n);
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    let total: f64 = (k..=n)
        .map(|i| {
            (ln[n as usize] - ln[i as usize] - ln[(n - i) as usize]
                + i as f64 * lp
                + (n - i) as f64 * lq)
                .exp()
        })
        .sum();
    total.min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(hour: i64, minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(hour * 3600 + minute * 60, 0).unwrap()
    }

    /// A series with `per_hour` events in every hour of `weeks` weeks before `hour`.
    fn steady(hour: i64, weeks: i64, per_hour: i64) -> Series {
        let first = hour - weeks * WEEK;
        Series {
            counts: (first..hour).map(|h| (h, per_hour)).collect(),
            first_hour: Some(first),
            last_at: Some(at(hour, 0)),
            ..Default::default()
        }
    }

    #[test]
    fn the_tails_match_known_values() {
        // P(X ≥ 1 | λ=1) = 1 - e^-1; P(X ≥ 3 | n=3, p=.5) = 1/8.
        assert!((poisson_at_least(1, 1.0) - (1.0 - (-1.0f64).exp())).abs() < 1e-12);
        assert!((binomial_at_least(3, 3, 0.5) - 0.125).abs() < 1e-12);
        assert!((binomial_at_least(0, 3, 0.5) - 1.0).abs() < 1e-12);
        // Summing upward from the mode loses nothing: P(X ≥ 40 | λ=40) is near one half.
        let half = poisson_at_least(40, 40.0);
        assert!((0.45..0.55).contains(&half), "{half}");
    }

    #[test]
    fn a_baseline_needs_two_weeks_and_compares_the_same_hour_of_the_week() {
        let now = 500_000;
        assert_eq!(
            steady(now, 1, 40).expected(now),
            None,
            "one week is a cold start"
        );
        let mut series = steady(now, 4, 40);
        assert_eq!(series.expected(now), Some(40.0));
        // Quiet at this hour of the week, busy otherwise: the baseline is the quiet one.
        for k in 1..=4 {
            for d in -1..=1 {
                series.counts.insert(now - k * WEEK + d, 2);
            }
        }
        assert_eq!(series.expected(now), Some(2.0));
    }

    #[test]
    fn silence_speaks_after_the_usual_rate_makes_it_unlikely_and_never_before_an_hour() {
        let now = 500_000;
        let mut series = steady(now, 4, 40);
        series.last_at = Some(at(now, 0));
        assert_eq!(
            silence(&series, at(now, 59), Level::Normal),
            None,
            "under an hour"
        );
        let found =
            silence(&series, at(now, 90), Level::Normal).expect("90 minutes without the usual 60");
        assert!((found.expected - 60.0).abs() < 1e-9, "{found:?}");
        // An account that sends two an hour is not missed after 90 minutes.
        let mut quiet = steady(now, 4, 2);
        quiet.last_at = Some(at(now, 0));
        assert_eq!(silence(&quiet, at(now, 90), Level::Normal), None);
    }

    #[test]
    fn a_tenants_level_moves_the_bar_and_off_silences_the_detector() {
        let now = 500_000;
        let silent = |per_hour| {
            let mut series = steady(now, 4, per_hour);
            series.last_at = Some(at(now, 0));
            series
        };
        let at_90 = at(now, 90);
        // Ten an hour, none for 90 minutes: λ = 15, e^-15 ≈ 3e-7.
        let ten = silent(10);
        assert!(silence(&ten, at_90, Level::Normal).is_some());
        assert!(silence(&ten, at_90, Level::High).is_some());
        assert_eq!(silence(&ten, at_90, Level::Low), None, "needs λ > 20.7");
        assert_eq!(silence(&ten, at_90, Level::Off), None);
        // Seven an hour: λ = 10.5, e^-10.5 ≈ 3e-5, which only `high` calls silence.
        let seven = silent(7);
        assert_eq!(silence(&seven, at_90, Level::Normal), None);
        assert!(silence(&seven, at_90, Level::High).is_some());
    }

    #[test]
    fn a_spike_needs_the_ratio_the_count_and_the_probability() {
        let now = 500_000;
        let mut series = steady(now, 4, 2);
        series.counts.insert(now, 9);
        assert_eq!(
            spike(&series, at(now, 30), Level::Normal),
            None,
            "fewer than the minimum"
        );
        series.counts.insert(now, 20);
        let found =
            spike(&series, at(now, 30), Level::Normal).expect("20 in half an hour against 1");
        assert!((found.expected - 1.0).abs() < 1e-9, "{found:?}");
        assert_eq!(
            spike(&series, at(now, 5), Level::Normal),
            None,
            "too early in the hour"
        );
        // A busy series: 60 against 40 is not five times.
        let mut busy = steady(now, 4, 40);
        busy.counts.insert(now - 1, 60);
        assert_eq!(spike(&busy, at(now, 5), Level::Normal), None);
    }

    #[test]
    fn a_failure_rate_jump_is_measured_against_the_week_before() {
        let now = 500_000;
        let attempts = steady(now + 1, 2, 100);
        let mut failures = steady(now + 1, 2, 1);
        assert_eq!(
            failure_rate(&attempts, &failures, at(now, 30), Level::Normal),
            None,
            "1 % as usual"
        );
        failures.counts.insert(now - 1, 40);
        failures.counts.insert(now, 30);
        let found = failure_rate(&attempts, &failures, at(now, 30), Level::Normal)
            .expect("35 % against 1 %");
        assert!((found.observed - 0.35).abs() < 1e-9, "{found:?}");
    }

    #[test]
    fn a_latency_jump_is_measured_against_the_weeks_hourly_means() {
        let now = 500_000;
        let mut series = steady(now + 1, 2, 20);
        for h in now - 2 * WEEK..=now {
            // About 300 ms, a little different every hour.
            series
                .sums
                .insert(h, (20.0 * (300.0 + (h % 7) as f64 * 10.0), 0.0));
        }
        assert_eq!(
            latency(&series, at(now, 30), Level::Normal),
            None,
            "as usual"
        );
        series.sums.insert(now - 1, (20.0 * 4000.0, 0.0));
        series.sums.insert(now, (20.0 * 4000.0, 0.0));
        let found = latency(&series, at(now, 30), Level::Normal).expect("4 s against 0.3 s");
        assert!((found.observed - 4000.0).abs() < 1e-9, "{found:?}");
        assert!(found.p_value < 1e-6, "{found:?}");
    }

    #[test]
    fn an_amount_far_from_the_accounts_usual_ones_is_found_on_a_log_scale() {
        let now = 500_000;
        let mut series = steady(now, 4, 10);
        // Ten payments an hour around 49.00 (log amounts spread by 0.2).
        let (mean, spread) = ((4900.0f64).ln(), 0.2);
        for h in now - 4 * WEEK..now {
            series
                .sums
                .insert(h, (10.0 * mean, 10.0 * (mean * mean + spread * spread)));
        }
        let payment = |id: &str, amount| Payment {
            event_id: id.into(),
            amount,
            at: at(now, 5),
        };
        let usual = [payment("evt_a", 5200), payment("evt_b", 4100)];
        assert_eq!(
            unusual_amount(&series, &usual, at(now, 10), Level::Normal),
            None
        );
        let odd = [payment("evt_a", 5200), payment("evt_big", 490_000)];
        let found =
            unusual_amount(&series, &odd, at(now, 10), Level::Normal).expect("100 times the usual");
        assert_eq!(found.event_id.as_deref(), Some("evt_big"));
        assert!((found.expected - 4900.0).abs() < 1.0, "{found:?}");
        assert!((normal_above(0.0) - 0.5).abs() < 1e-7 && normal_above(4.0) < 4e-5);
    }
}
