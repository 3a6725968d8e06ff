//! Every environment variable the processes read, with its default and meaning: what
//! `api --help` and `worker --help` list. A test keeps it in step with the settings parser.

/// (name, default, meaning) of each variable.
pub const VARIABLES: &[(&str, &str, &str)] = &[
    ("TRIBUTARY_LISTEN", "127.0.0.1:8080", "the api's address"),
    (
        "TRIBUTARY_PUBLIC_URL",
        "http://{listen}",
        "the base of webhook URLs and the OAuth redirect URI",
    ),
    (
        "TRIBUTARY_DATA_DIR",
        "./data",
        "where the embedded SQLite file and generated keys live",
    ),
    (
        "DATABASE_URL",
        "sqlite://{data_dir}/tributary.db",
        "sqlite://… or postgres://…",
    ),
    (
        "TRIBUTARY_QUEUE_URL",
        "the database",
        "redis://… to put the queue on Redis",
    ),
    (
        "TRIBUTARY_QUEUE_NAMESPACE",
        "tributary",
        "prefix of the queue's keys on Redis",
    ),
    (
        "TRIBUTARY_ENCRYPTION_KEYS",
        "generated file",
        "id1:base64key,… (32-byte keys, the first is current)",
    ),
    (
        "TRIBUTARY_JWT_SECRET",
        "generated file",
        "signs access tokens; 32+ characters",
    ),
    (
        "TRIBUTARY_EMBEDDED_WORKER",
        "true",
        "the api also runs a worker in-process",
    ),
    (
        "TRIBUTARY_CRM_WATCHER",
        "true",
        "this process polls what CRM connections watch (one process at a time)",
    ),
    (
        "TRIBUTARY_AUTO_MIGRATE",
        "true",
        "apply pending migrations at start-up",
    ),
    (
        "TRIBUTARY_SIGNUP",
        "open",
        "open or closed: self-service tenant sign-up",
    ),
    (
        "TRIBUTARY_SIGNUP_RATE",
        "10/hour",
        "sign-ups per client address",
    ),
    (
        "TRIBUTARY_TRUSTED_PROXIES",
        "none",
        "CIDRs whose X-Forwarded-For is believed",
    ),
    ("RUST_LOG", "info", "log filter"),
    ("TRIBUTARY_LOG_FORMAT", "text", "text or json"),
    (
        "TRIBUTARY_VENDOR_URLS",
        "official",
        "official (public addresses only) or any (unsafe, development)",
    ),
    (
        "TRIBUTARY_EXTRA_CA_CERTS",
        "unset",
        "a PEM file of private CAs trusted, besides the public roots, by smtp connections",
    ),
    (
        "TRIBUTARY_OAUTH_SUCCESS_URL",
        "unset",
        "where the OAuth callback sends the browser",
    ),
    (
        "TRIBUTARY_OAUTH_HUBSPOT_CLIENT_ID",
        "unset",
        "the operator's HubSpot app (with _CLIENT_SECRET)",
    ),
    (
        "TRIBUTARY_OAUTH_HUBSPOT_CLIENT_SECRET",
        "unset",
        "the operator's HubSpot app secret",
    ),
    (
        "TRIBUTARY_OAUTH_HUBSPOT_TOKEN_URL",
        "unset",
        "one more token endpoint for the operator's HubSpot app",
    ),
    (
        "TRIBUTARY_OAUTH_SALESFORCE_CLIENT_ID",
        "unset",
        "the operator's Salesforce app (with _CLIENT_SECRET)",
    ),
    (
        "TRIBUTARY_OAUTH_SALESFORCE_CLIENT_SECRET",
        "unset",
        "the operator's Salesforce app secret",
    ),
    (
        "TRIBUTARY_OAUTH_SALESFORCE_LOGIN_URL",
        "unset",
        "one more login server for the operator's Salesforce app",
    ),
    (
        "TRIBUTARY_OAUTH_ZOHO_CLIENT_ID",
        "unset",
        "the operator's Zoho app (with _CLIENT_SECRET)",
    ),
    (
        "TRIBUTARY_OAUTH_ZOHO_CLIENT_SECRET",
        "unset",
        "the operator's Zoho app secret",
    ),
    (
        "TRIBUTARY_OAUTH_ZOHO_ACCOUNTS_URL",
        "unset",
        "one more accounts server for the operator's Zoho app",
    ),
    (
        "TRIBUTARY_RETRY_MAX_ATTEMPTS",
        "8",
        "attempts of a delivery before it is dead",
    ),
    (
        "TRIBUTARY_RETRY_BASE_DELAY",
        "5s",
        "the first retry's delay (exponential, full jitter)",
    ),
    ("TRIBUTARY_RETRY_MAX_DELAY", "1h", "the longest retry delay"),
    ("TRIBUTARY_ACCESS_TOKEN_TTL", "15m", "access token lifetime"),
    (
        "TRIBUTARY_REFRESH_TOKEN_TTL",
        "30days",
        "refresh token lifetime",
    ),
    (
        "TRIBUTARY_WORKER_CONCURRENCY",
        "32",
        "jobs one worker process runs at once",
    ),
    (
        "TRIBUTARY_BATCH_LINGER",
        "1s",
        "how long a busy group's batch leader waits for its batch to fill (off: never)",
    ),
    (
        "TRIBUTARY_DATABASE_POOL_SIZE",
        "20 (SQLite 1)",
        "database connections one process opens at most",
    ),
    (
        "TRIBUTARY_TENANT_MAX_IN_FLIGHT",
        "half the concurrency",
        "one tenant's jobs running at once",
    ),
    (
        "TRIBUTARY_SWEEP_INTERVAL",
        "5s",
        "how often the sweeper looks",
    ),
    (
        "TRIBUTARY_SWEEP_GRACE",
        "60s",
        "how long an event may sit unqueued or overdue",
    ),
    (
        "TRIBUTARY_SHUTDOWN_GRACE",
        "30s",
        "how long the jobs in hand may run after SIGTERM",
    ),
    (
        "TRIBUTARY_WORKER_LISTEN",
        "127.0.0.1:9090",
        "the standalone worker's probes and metrics; off for none",
    ),
    (
        "TRIBUTARY_METRICS_TOKEN",
        "unset",
        "the bearer token the api's /metrics asks for",
    ),
    (
        "TRIBUTARY_STRIPE_API_URL",
        "https://api.stripe.com",
        "Stripe's API",
    ),
    (
        "TRIBUTARY_RECONCILE_INTERVAL",
        "1h",
        "how often accounts are reconciled with Stripe",
    ),
    (
        "TRIBUTARY_RECONCILE_WINDOW",
        "24h",
        "how far back reconciliation looks",
    ),
    (
        "TRIBUTARY_BACKFILL_PAGE_SIZE",
        "100",
        "events per page a backfill asks Stripe for",
    ),
    (
        "TRIBUTARY_ALERT_INTERVAL",
        "30s",
        "how often alert conditions are checked",
    ),
    (
        "TRIBUTARY_ALERT_PERIOD",
        "1h",
        "how long before one condition is sent again",
    ),
    ("TRIBUTARY_MAX_FLOWS", "100", "flows per tenant"),
    ("TRIBUTARY_MAX_CONNECTIONS", "50", "connections per tenant"),
    ("TRIBUTARY_MAX_STEPS_PER_FLOW", "50", "steps in one flow"),
    (
        "TRIBUTARY_WEBHOOK_RATE",
        "100/second",
        "verified webhook events per Stripe account, per replica",
    ),
    (
        "TRIBUTARY_PREVIEW_RATE",
        "60/minute",
        "previews and validations per tenant, per replica",
    ),
    (
        "TRIBUTARY_MAX_BULK_ITEMS",
        "10000",
        "deliveries or events one bulk retry or replay may cover",
    ),
    (
        "TRIBUTARY_INGEST_MAX_PENDING",
        "1024",
        "webhooks waiting for their commit; more get 503",
    ),
    (
        "TRIBUTARY_INGEST_MAX_BACKLOG",
        "10000",
        "a tenant's due live events past which its webhooks get 503; 0 never",
    ),
    (
        "TRIBUTARY_RETENTION",
        "90days",
        "how long finished events and deliveries are kept",
    ),
    (
        "TRIBUTARY_AUDIT_RETENTION",
        "365days",
        "how long audit entries are kept",
    ),
    (
        "TRIBUTARY_RETENTION_INTERVAL",
        "10m",
        "how often the retention loop prunes",
    ),
    (
        "TRIBUTARY_TEST_FAULTS",
        "false",
        "test-only fault hooks; never in production",
    ),
];

/// The variables as help text: one line each, name, default and meaning.
pub fn help() -> String {
    let width = VARIABLES.iter().map(|(n, _, _)| n.len()).max().unwrap_or(0);
    let mut text = String::from("Environment (a bad value stops start-up naming the variable):\n");
    for (name, default, meaning) in VARIABLES {
        text.push_str(&format!(
            "  {name:width$}  {meaning} [default: {default}]\n"
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variable the settings parser reads is listed, and nothing else is.
    #[test]
    fn the_list_matches_the_settings_parser() {
        let source = include_str!("settings.rs");
        let parser = source.split("#[cfg(test)]").next().unwrap();
        let mut read: Vec<&str> = parser
            .split('"')
            .filter(|s| {
                (s.starts_with("TRIBUTARY_")
                    && s.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
                    || *s == "DATABASE_URL"
                    || *s == "RUST_LOG"
            })
            .collect();
        // The operator's OAuth apps: the variables each provider names.
        for provider in crate::crm::providers::ALL {
            read.extend(provider.oauth.iter().flat_map(|o| o.operator_env));
        }
        read.sort_unstable();
        read.dedup();
        let mut listed: Vec<&str> = VARIABLES.iter().map(|(n, _, _)| *n).collect();
        listed.sort_unstable();
        assert_eq!(read, listed);
        assert!(help().contains("TRIBUTARY_VENDOR_URLS"));
    }
}
