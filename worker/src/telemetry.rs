//! Logging set-up: human-readable text by default, JSON lines for production.

use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, Settings, VendorUrls};

/// Starts logging, then warns about the unsafe settings in force.
pub fn init(settings: &Settings) {
    let filter =
        EnvFilter::try_new(&settings.log_filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()));
    let _ = match settings.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    if settings.vendor_urls == VendorUrls::Any {
        tracing::warn!(
            "TRIBUTARY_VENDOR_URLS=any is unsafe outside development: tenants' URLs may reach \
             loopback, private networks and cloud metadata addresses"
        );
    }
}
