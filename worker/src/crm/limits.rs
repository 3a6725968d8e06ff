//! The vendors' documented API limits by plan (edition), and the daily cap a connection keeps.
//!
//! A connection's `edition` setting names its plan; the plan gives the burst rate its requests
//! start at (HubSpot) and the account's daily allocation (all three vendors), until the
//! vendor's own headers say better. `licenses` counts the user licenses an allocation grows
//! with (Salesforce, Zoho); `daily_limit` overrides the allocation; `daily_reserve_percent`
//! keeps part of it for the account's other apps.
//!
//! The vendors count daily usage per account, not per app, and a spent allocation stops every
//! integration of the account (Salesforce refuses with `REQUEST_LIMIT_EXCEEDED` until the
//! rolling 24 hours free some). So where the vendor reports the account's usage with each
//! answer (HubSpot's `X-HubSpot-RateLimit-Daily`/`-Daily-Remaining`, Salesforce's
//! `Sforce-Limit-Info: api-usage=used/limit`), Tributary pauses the connection when the usage
//! reaches its *daily cap* — the allocation less the reserve — before the vendor refuses
//! anyone. Zoho's answers carry no usage, so its cap is shown but enforced by Zoho's own
//! refusal (which pauses the connection too).
//!
//! Sources (plan tables as the vendors publish them): HubSpot's API usage guidelines and its
//! changelog "Increasing our API limits" (Free and Starter 100 per 10 s and 250,000 a day;
//! Professional 190 per 10 s and 650,000; Enterprise 190 per 10 s and 1,000,000); Salesforce's
//! "API Request Limits and Allocations"; Zoho CRM's "API Limits" (credits per 24 hours).

use std::time::Duration;

use serde_json::{Map, Value};

use crate::budget::Rate;

/// How long a connection at its daily cap is paused before it looks again: the vendors'
/// windows roll (Salesforce) or reset at a midnight of the account's time zone (HubSpot), so
/// the next answer after an hour says whether room has come back.
pub const CAP_PAUSE: Duration = Duration::from_secs(3600);

/// The largest `licenses` setting.
pub const MAX_LICENSES: u64 = 1_000_000;
/// The largest `daily_limit` setting.
pub const MAX_DAILY_LIMIT: u64 = 1_000_000_000;
/// The largest `daily_reserve_percent` setting: Tributary keeps at least a tenth.
pub const MAX_RESERVE_PERCENT: u64 = 90;

/// One plan of a vendor: its name as the `edition` setting spells it, the burst rate its
/// requests are held to, and its daily allocation for a number of user licenses.
pub struct Edition {
    pub name: &'static str,
    pub burst: Option<Rate>,
    base: u64,
    per_license: u64,
    most: Option<u64>,
}

impl Edition {
    /// The plan's daily allocation with `licenses` user licenses (none given: the base).
    pub fn daily(&self, licenses: Option<u64>) -> u64 {
        let total = self
            .base
            .saturating_add(self.per_license.saturating_mul(licenses.unwrap_or(0)));
        self.most.map_or(total, |most| total.min(most))
    }
}

const fn plan(
    name: &'static str,
    burst: Option<Rate>,
    base: u64,
    per_license: u64,
    most: Option<u64>,
) -> Edition {
    Edition {
        name,
        burst,
        base,
        per_license,
        most,
    }
}

const HUBSPOT_LOW: Option<Rate> = Some(Rate::new(100, 10_000));
const HUBSPOT_HIGH: Option<Rate> = Some(Rate::new(190, 10_000));

static HUBSPOT: &[Edition] = &[
    plan("free", HUBSPOT_LOW, 250_000, 0, None),
    plan("starter", HUBSPOT_LOW, 250_000, 0, None),
    plan("professional", HUBSPOT_HIGH, 650_000, 0, None),
    plan("enterprise", HUBSPOT_HIGH, 1_000_000, 0, None),
];

static SALESFORCE: &[Edition] = &[
    plan("developer", None, 15_000, 0, None),
    plan("professional", None, 100_000, 1_000, None),
    plan("enterprise", None, 100_000, 1_000, None),
    plan("unlimited", None, 100_000, 5_000, None),
    plan("performance", None, 100_000, 5_000, None),
    plan("full_sandbox", None, 5_000_000, 0, None),
];

static ZOHO: &[Edition] = &[
    plan("free", None, 5_000, 0, Some(5_000)),
    plan("standard", None, 50_000, 250, Some(100_000)),
    plan("professional", None, 50_000, 500, Some(3_000_000)),
    plan("enterprise", None, 50_000, 1_000, Some(5_000_000)),
    plan("ultimate", None, 50_000, 2_000, None),
];

/// A provider's plans, empty for one without documented plans.
pub fn editions(provider: &str) -> &'static [Edition] {
    match provider {
        "hubspot" => HUBSPOT,
        "salesforce" => SALESFORCE,
        "zoho" => ZOHO,
        _ => &[],
    }
}

/// The connection's plan, if its `edition` setting names one.
pub fn edition(provider: &str, settings: &Map<String, Value>) -> Option<&'static Edition> {
    let name = settings.get("edition")?.as_str()?;
    editions(provider).iter().find(|e| e.name == name)
}

/// What is wrong with an `edition` setting, if anything.
pub fn check_edition(provider: &str, value: &Value) -> Option<String> {
    let names: Vec<&str> = editions(provider).iter().map(|e| e.name).collect();
    match value.as_str() {
        Some(name) if names.contains(&name) => None,
        _ => Some(format!("must be one of {}", names.join(", "))),
    }
}

/// The burst rate a connection's requests start at, before the vendor's headers say better:
/// its plan's, else the vendor's lowest documented (HubSpot Free and Starter, 100 per 10 s).
/// The other vendors limit by the day or by concurrency, which their answers handle.
pub fn default_rate(provider: &str, settings: &Map<String, Value>) -> Option<Rate> {
    match edition(provider, settings) {
        Some(plan) => plan.burst,
        None if provider == "hubspot" => HUBSPOT_LOW,
        None => None,
    }
}

/// The largest `max_concurrent_requests` setting (Salesforce's production limit is 25).
pub const MAX_CONCURRENT: u64 = 100;

/// The most of a connection's requests Tributary lets be in flight at once, across every
/// process: the `max_concurrent_requests` setting, else Salesforce's limit of concurrent
/// long-running (20 s or longer) requests, 5 on Developer Edition and 25 on any other org
/// ("API Request Limits and Allocations"). Past it Salesforce refuses every new request with
/// `REQUEST_LIMIT_EXCEEDED`; only requests of 20 s or longer count, but which of a request's
/// will take that long is not known when it is sent, so all of Tributary's count. `None`:
/// no limit on requests at once.
pub fn concurrent_requests(provider: &str, settings: &Map<String, Value>) -> Option<u32> {
    if let Some(n) = settings
        .get("max_concurrent_requests")
        .and_then(Value::as_u64)
        .filter(|n| (1..=MAX_CONCURRENT).contains(n))
    {
        return Some(n as u32);
    }
    (provider == "salesforce").then(|| match edition(provider, settings) {
        Some(plan) if plan.name == "developer" => 5,
        _ => 25,
    })
}

/// How long every process holds off a connection whose org refused a request for its
/// concurrent long-running requests: those run 20 s or longer, so some end within that.
pub const CONCURRENCY_HOLD: Duration = Duration::from_secs(10);

/// Whether the vendor refused for too many long-running requests at once: Salesforce's
/// `REQUEST_LIMIT_EXCEEDED` naming `ConcurrentRequests` or `ConcurrentPerOrgLongTxn`, not
/// the spent daily allocation (`TotalRequests`).
pub fn concurrency_refused(provider: &str, status: u16, body: &str) -> bool {
    provider == "salesforce"
        && status == 403
        && body.contains("REQUEST_LIMIT_EXCEEDED")
        && body.contains("Concurrent")
}

/// Where a daily allocation comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The connection's `daily_limit` setting.
    Setting,
    /// What the vendor's last answer reported.
    Reported,
    /// The plan the `edition` setting names.
    Edition,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Setting => "setting",
            Source::Reported => "reported",
            Source::Edition => "edition",
        }
    }
}

/// A connection's daily cap: the allocation, where it comes from, and the usage at which
/// Tributary stops sending (the allocation less the reserve).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    pub allocation: u64,
    pub source: Source,
    pub reserve_percent: u64,
    pub stop_at: u64,
}

/// The daily cap of a connection, given the allocation its vendor last reported; `None` when
/// nothing says what the allocation is.
pub fn daily_cap(
    provider: &str,
    settings: &Map<String, Value>,
    reported: Option<u64>,
) -> Option<Cap> {
    let setting = settings
        .get("daily_limit")
        .and_then(Value::as_u64)
        .filter(|n| *n > 0);
    let licenses = settings.get("licenses").and_then(Value::as_u64);
    let (allocation, source) = match (setting, reported.filter(|n| *n > 0)) {
        (Some(n), _) => (n, Source::Setting),
        (None, Some(n)) => (n, Source::Reported),
        (None, None) => (
            edition(provider, settings)?.daily(licenses),
            Source::Edition,
        ),
    };
    let reserve_percent = settings
        .get("daily_reserve_percent")
        .and_then(Value::as_u64)
        .unwrap_or(0)
        .min(MAX_RESERVE_PERCENT);
    let stop_at = (allocation as u128 * u128::from(100 - reserve_percent) / 100) as u64;
    Some(Cap {
        allocation,
        source,
        reserve_percent,
        stop_at: stop_at.max(1),
    })
}

/// The account's daily usage as an answer's headers report it: (used, allocation).
pub fn reported_usage(provider: &str, header: impl Fn(&str) -> Option<String>) -> Option<Usage> {
    let number = |name: &str| header(name)?.trim().parse::<u64>().ok();
    match provider {
        "hubspot" => {
            let max = number("x-hubspot-ratelimit-daily")?;
            let remaining = number("x-hubspot-ratelimit-daily-remaining")?;
            Some(Usage {
                used: max.saturating_sub(remaining),
                allocation: max,
            })
        }
        "salesforce" => {
            let (used, allocation) = parse_api_usage(&header("sforce-limit-info")?)?;
            Some(Usage { used, allocation })
        }
        _ => None,
    }
}

/// An account's daily usage, as its vendor reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub used: u64,
    pub allocation: u64,
}

/// The usage the connection's `vendor_info.api_usage` holds (what the adapters recorded of the
/// last answer).
pub fn recorded_usage(provider: &str, info: &Map<String, Value>) -> Option<Usage> {
    let usage = info.get("api_usage")?;
    match provider {
        "hubspot" => {
            let max = usage.get("daily_max")?.as_u64()?;
            let remaining = usage.get("daily_remaining")?.as_u64()?;
            Some(Usage {
                used: max.saturating_sub(remaining),
                allocation: max,
            })
        }
        "salesforce" => {
            let (used, allocation) = parse_api_usage(usage.as_str()?)?;
            Some(Usage { used, allocation })
        }
        _ => None,
    }
}

/// `api-usage=18/5000` → (18, 5000).
pub fn parse_api_usage(header: &str) -> Option<(u64, u64)> {
    let usage = header
        .split([',', ';'])
        .find_map(|part| part.trim().strip_prefix("api-usage="))?;
    let (used, limit) = usage.split_once('/')?;
    Some((used.trim().parse().ok()?, limit.trim().parse().ok()?))
}

/// Why a connection at its cap is paused, in words a tenant can act on.
pub fn cap_reason(provider: &str, usage: Usage, cap: Cap) -> String {
    let vendor = match provider {
        "hubspot" => "HubSpot",
        "salesforce" => "Salesforce",
        _ => provider,
    };
    let allocation = match cap.source {
        Source::Setting => format!("the daily_limit setting of {}", cap.allocation),
        Source::Reported => format!("the account's allocation of {}", cap.allocation),
        Source::Edition => format!("the edition's allocation of {}", cap.allocation),
    };
    format!(
        "daily cap reached: {vendor} reports {} API requests used of {} in its daily window; \
         Tributary stops at {} ({allocation}, less the {}% daily_reserve_percent kept for the \
         account's other apps) and looks again in an hour",
        usage.used, usage.allocation, cap.stop_at, cap.reserve_percent
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn plans_give_the_documented_allocations() {
        let sf = |v: Value| daily_cap("salesforce", &settings(v), None).map(|c| c.allocation);
        // Salesforce's own example: Enterprise with 15 Salesforce licenses → 115,000.
        assert_eq!(
            sf(json!({"edition": "enterprise", "licenses": 15})),
            Some(115_000)
        );
        assert_eq!(sf(json!({"edition": "developer"})), Some(15_000));
        assert_eq!(
            sf(json!({"edition": "unlimited", "licenses": 10})),
            Some(150_000)
        );
        assert_eq!(sf(json!({})), None);
        let zoho = |v: Value| daily_cap("zoho", &settings(v), None).map(|c| c.allocation);
        // Zoho's example: Standard with 10 licenses → 52,500; capped at the plan's most.
        assert_eq!(
            zoho(json!({"edition": "standard", "licenses": 10})),
            Some(52_500)
        );
        assert_eq!(
            zoho(json!({"edition": "standard", "licenses": 1000})),
            Some(100_000)
        );
        assert_eq!(
            zoho(json!({"edition": "free", "licenses": 50})),
            Some(5_000)
        );
        let hubspot = settings(json!({"edition": "professional"}));
        assert_eq!(
            daily_cap("hubspot", &hubspot, None).map(|c| c.allocation),
            Some(650_000)
        );
        assert_eq!(
            default_rate("hubspot", &hubspot),
            Some(Rate::new(190, 10_000))
        );
        assert_eq!(
            default_rate("hubspot", &Map::new()),
            Some(Rate::new(100, 10_000))
        );
        assert_eq!(default_rate("salesforce", &hubspot), None);
    }

    #[test]
    fn the_setting_wins_then_the_report_then_the_plan() {
        let both = settings(json!({"edition": "developer", "daily_limit": 1000}));
        let cap = daily_cap("salesforce", &both, Some(15_000)).unwrap();
        assert_eq!((cap.allocation, cap.source), (1000, Source::Setting));
        let plan = settings(json!({"edition": "developer"}));
        let cap = daily_cap("salesforce", &plan, Some(20_000)).unwrap();
        assert_eq!((cap.allocation, cap.source), (20_000, Source::Reported));
        let cap = daily_cap("salesforce", &plan, None).unwrap();
        assert_eq!((cap.allocation, cap.source), (15_000, Source::Edition));
    }

    #[test]
    fn the_reserve_lowers_where_sending_stops() {
        let reserved = settings(json!({"daily_reserve_percent": 10}));
        let cap = daily_cap("salesforce", &reserved, Some(15_000)).unwrap();
        assert_eq!((cap.stop_at, cap.reserve_percent), (13_500, 10));
        // No reserve: the whole allocation; never a cap of nothing.
        assert_eq!(
            daily_cap("hubspot", &Map::new(), Some(250_000))
                .unwrap()
                .stop_at,
            250_000
        );
        let most = settings(json!({"daily_reserve_percent": 90, "daily_limit": 1}));
        assert_eq!(daily_cap("zoho", &most, None).unwrap().stop_at, 1);
    }

    #[test]
    fn usage_is_read_from_each_vendors_headers() {
        let hubspot = |name: &str| match name {
            "x-hubspot-ratelimit-daily" => Some("250000".to_string()),
            "x-hubspot-ratelimit-daily-remaining" => Some("1000".to_string()),
            _ => None,
        };
        assert_eq!(
            reported_usage("hubspot", hubspot),
            Some(Usage {
                used: 249_000,
                allocation: 250_000
            })
        );
        let salesforce = |name: &str| {
            (name == "sforce-limit-info")
                .then(|| "api-usage=25/15000; per-app-api-usage=17/250(appName=x)".to_string())
        };
        assert_eq!(
            reported_usage("salesforce", salesforce),
            Some(Usage {
                used: 25,
                allocation: 15_000
            })
        );
        assert_eq!(reported_usage("zoho", salesforce), None);
        assert_eq!(parse_api_usage("api-usage=18/5000"), Some((18, 5000)));
        assert_eq!(parse_api_usage("nonsense"), None);
        let info = settings(json!({"api_usage": {"daily_max": 10, "daily_remaining": 4}}));
        assert_eq!(
            recorded_usage("hubspot", &info),
            Some(Usage {
                used: 6,
                allocation: 10
            })
        );
    }

    #[test]
    fn editions_are_checked_by_name() {
        assert_eq!(check_edition("hubspot", &json!("enterprise")), None);
        assert_eq!(
            check_edition("hubspot", &json!("platinum")).unwrap(),
            "must be one of free, starter, professional, enterprise"
        );
        assert!(check_edition("zoho", &json!(3)).is_some());
    }
}
