//! Every column that holds a sealed (encrypted) secret, in one registry. A sealed value is
//! bound to its purpose, its tenant and its row, so a ciphertext copied to another column or row
//! never opens; the purposes below are those bindings. `rotate-keys` re-encrypts exactly the
//! columns listed here, and the test `every_sealed_column_is_registered` fails when a table
//! holds a sealed value in a column that is missing from the list.

/// A Stripe account's restricted API key.
pub const STRIPE_SECRET_KEY: &str = "stripe_account.secret_key";
/// A Stripe webhook signing secret.
pub const WEBHOOK_SECRET: &str = "webhook_secret.secret";
/// A connection's credentials (OAuth client, API key, password, refresh token).
pub const CONNECTION_CREDENTIALS: &str = "connection.credentials";
/// A connection's access token and its expiry.
pub const CONNECTION_SESSION: &str = "connection.session";
/// The PKCE verifier of an OAuth authorization in progress.
pub const OAUTH_VERIFIER: &str = "oauth_state.verifier";
/// A notification channel's URL (it may carry a token).
pub const CHANNEL_URL: &str = "notification_channel.url";
/// A notification channel's signing secret.
pub const CHANNEL_SECRET: &str = "notification_channel.secret";
/// The seed of an event's generated secrets (`password()`, `token()`).
pub const EVENT_SEED: &str = "event_seed.seed";
/// The answer kept for an `Idempotency-Key` (it may hold a secret shown once).
pub const IDEMPOTENT_RESPONSE: &str = "idempotency_key.response";

/// One sealed column: the table, the column, the purpose its values are sealed for, and the
/// column holding the row id they are bound to (every such table has a `tenant_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedColumn {
    pub table: &'static str,
    pub column: &'static str,
    pub purpose: &'static str,
    pub row_id: &'static str,
}

const fn sealed(
    table: &'static str,
    column: &'static str,
    purpose: &'static str,
    row_id: &'static str,
) -> SealedColumn {
    SealedColumn {
        table,
        column,
        purpose,
        row_id,
    }
}

/// Every sealed column.
pub const SEALED_COLUMNS: &[SealedColumn] = &[
    sealed("stripe_accounts", "secret_key", STRIPE_SECRET_KEY, "id"),
    sealed("webhook_secrets", "secret", WEBHOOK_SECRET, "id"),
    sealed("connections", "credentials", CONNECTION_CREDENTIALS, "id"),
    sealed("connections", "session", CONNECTION_SESSION, "id"),
    sealed("oauth_states", "verifier", OAUTH_VERIFIER, "id"),
    sealed("notification_channels", "url", CHANNEL_URL, "id"),
    sealed("notification_channels", "secret", CHANNEL_SECRET, "id"),
    sealed("event_seeds", "seed", EVENT_SEED, "event_id"),
    sealed("idempotency_keys", "response", IDEMPOTENT_RESPONSE, "id"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_purpose_names_one_column() {
        for (i, a) in SEALED_COLUMNS.iter().enumerate() {
            for b in &SEALED_COLUMNS[i + 1..] {
                assert_ne!(a.purpose, b.purpose, "{a:?} and {b:?}");
                assert!(a.table != b.table || a.column != b.column, "{a:?} twice");
            }
        }
    }
}
