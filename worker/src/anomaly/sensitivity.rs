//! How readily each detector speaks for one tenant: `off`, `low`, `normal` (the default) or
//! `high`, kept as JSON on the tenant (`tenants.anomaly_sensitivity`) and set through
//! `PUT /v1/anomaly-sensitivity`.
//!
//! For the count detectors (silence, spike, failure rate) a level is the probability under
//! which they speak: `low` 10⁻⁹, `normal` 10⁻⁶ (`method::ALPHA`), `high` 10⁻⁴. For
//! the measured ones (latency, amount) it is the standard deviations they need: one more at
//! `low`, one fewer at `high`. `off` never speaks, and resolves what the detector had open.

use serde::{Deserialize, Serialize};

/// One detector's level.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Off,
    Low,
    #[default]
    Normal,
    High,
}

impl Level {
    pub const NAMES: &[&str] = &["off", "low", "normal", "high"];

    /// The probability under which a count detector speaks (none when off).
    pub const fn alpha(self) -> f64 {
        match self {
            Level::Off => 0.0,
            Level::Low => 1e-9,
            Level::Normal => 1e-6,
            Level::High => 1e-4,
        }
    }

    /// The standard deviations a measured detector needs, `normal` at this level.
    pub fn z(self, normal: f64) -> f64 {
        match self {
            Level::Off => f64::INFINITY,
            Level::Low => normal + 1.0,
            Level::Normal => normal,
            Level::High => normal - 1.0,
        }
    }
}

/// Every detector's level for one tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sensitivity {
    pub silence: Level,
    pub spike: Level,
    pub failure_rate: Level,
    pub latency: Level,
    pub amount: Level,
}

impl Sensitivity {
    /// The detectors, as `incidents.detector` names them.
    pub const DETECTORS: &[&str] = &["silence", "spike", "failure_rate", "latency", "amount"];

    /// A tenant's stored levels; `normal` for what is not stored (or unreadable).
    pub fn of(stored: Option<&str>) -> Sensitivity {
        stored
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_move_the_bar_each_way_and_unset_is_normal() {
        assert!(Level::Low.alpha() < Level::Normal.alpha());
        assert!(Level::High.alpha() > Level::Normal.alpha());
        assert_eq!(Level::Off.alpha(), 0.0);
        assert_eq!(Level::High.z(4.0), 3.0);
        assert_eq!(Level::Low.z(4.0), 5.0);
        assert_eq!(Sensitivity::of(None), Sensitivity::default());
        assert_eq!(Sensitivity::of(Some("not json")), Sensitivity::default());
        let stored = Sensitivity::of(Some(r#"{"spike":"off","latency":"high"}"#));
        assert_eq!(stored.spike, Level::Off);
        assert_eq!(stored.latency, Level::High);
        assert_eq!(stored.silence, Level::Normal);
    }
}
