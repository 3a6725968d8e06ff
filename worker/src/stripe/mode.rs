//! Stripe's two modes, test and live: which one a key belongs to, and how a mode reads.

/// The mode a Stripe API key belongs to, from its prefix: `Some(true)` for a live key
/// (`sk_live_…`, `rk_live_…`), `Some(false)` for a test key (`sk_test_…`, `rk_test_…`), `None`
/// for anything else.
pub fn key_livemode(key: &str) -> Option<bool> {
    let rest = key
        .strip_prefix("sk_")
        .or_else(|| key.strip_prefix("rk_"))?;
    if rest.starts_with("live_") {
        Some(true)
    } else if rest.starts_with("test_") {
        Some(false)
    } else {
        None
    }
}

/// How a mode reads in messages: `live` or `test`.
pub fn mode_name(livemode: bool) -> &'static str {
    if livemode { "live" } else { "test" }
}

#[cfg(test)]
mod tests {
    use super::key_livemode;

    #[test]
    fn a_keys_prefix_says_its_mode() {
        assert_eq!(key_livemode("sk_live_51Hx0000"), Some(true));
        assert_eq!(key_livemode("rk_live_51Hx0000"), Some(true));
        assert_eq!(key_livemode("sk_test_51Hx0000"), Some(false));
        assert_eq!(key_livemode("rk_test_51Hx0000"), Some(false));
        for other in [
            "sk_51Hx0000",
            "pk_live_51Hx",
            "sk_livex",
            "whsec_live_1",
            "",
        ] {
            assert_eq!(key_livemode(other), None, "{other}");
        }
    }
}
