//! A connection's credentials and access token: sealing and opening them, the session a token
//! exchange produces, and the secret values a vendor's echo must never carry into storage.

use crate::sealed;

use chrono::{DateTime, Utc};
use entity::connections;
use serde::{Deserialize, Serialize};

use crate::crm::config::Credentials;
use crate::crm::error::{CrmError, ErrorKind};
use crate::secrets::{Keyring, SecretContext};

/// Seals a connection's credentials for storage.
pub fn seal_credentials(
    keyring: &Keyring,
    tenant_id: &str,
    connection_id: &str,
    credentials: &Credentials,
) -> String {
    let json = serde_json::to_string(credentials).expect("credentials serialize");
    keyring.seal(
        &json,
        &SecretContext {
            tenant_id,
            purpose: sealed::CONNECTION_CREDENTIALS,
            row_id: connection_id,
        },
    )
}

/// A connection's credentials, opened from their seal (`None` when it holds none).
pub fn open_credentials(
    keyring: &Keyring,
    connection: &connections::Model,
) -> Result<Credentials, CrmError> {
    let Some(sealed) = connection.credentials.as_deref() else {
        return Ok(Credentials::None);
    };
    let context = SecretContext {
        tenant_id: &connection.tenant_id,
        purpose: sealed::CONNECTION_CREDENTIALS,
        row_id: &connection.id,
    };
    let plain = keyring.open(sealed, &context).map_err(|e| {
        CrmError::new(
            ErrorKind::Permanent,
            format!("the connection's credentials cannot be opened: {e}"),
        )
    })?;
    serde_json::from_str(crate::secrets::expose(&plain)).map_err(|_| {
        CrmError::new(
            ErrorKind::Permanent,
            "the connection's stored credentials are malformed",
        )
    })
}

/// An access token and where to use it. Debug never shows the token.
#[derive(Clone, Serialize, Deserialize)]
pub struct Session {
    pub access_token: String,
    /// Unknown for Salesforce sessions, which last until refused.
    pub expires_at: Option<DateTime<Utc>>,
    /// The API host the token response named (`instance_url`, `api_domain`).
    pub api_base: Option<String>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("expires_at", &self.expires_at)
            .field("api_base", &self.api_base)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Usable for at least another minute.
    pub(super) fn fresh(&self) -> bool {
        self.expires_at
            .is_none_or(|at| at > crate::now() + chrono::Duration::seconds(60))
    }
}

/// What a token exchange produced: the session, and new credentials if the vendor rotated the
/// refresh token.
pub struct Exchanged {
    pub session: Session,
    pub rotated: Option<Credentials>,
    /// The vendor's id of the user the session acts as (Salesforce's token answer names it),
    /// kept as `info.integration_user_id`: that user's changes are Tributary's own.
    pub user_id: Option<String>,
}

/// The values of a connection's credentials and current access token that are long enough to
/// be told apart from ordinary text (8 characters or more), longest first: what a vendor's
/// echo of a request must never carry into what Tributary stores or shows.
pub fn credential_values(keyring: &Keyring, connection: &connections::Model) -> Vec<String> {
    use base64::Engine as _;
    let mut values = Vec::new();
    match open_credentials(keyring, connection).unwrap_or(Credentials::None) {
        Credentials::None
        | Credentials::Oauth {
            client_secret: None,
            ..
        } => {}
        Credentials::Oauth {
            client_secret: Some(secret),
            ..
        } => values.push(secret),
        Credentials::Token {
            token,
            client_secret,
        } => {
            values.push(token);
            values.extend(client_secret);
        }
        Credentials::RefreshToken {
            client_secret,
            refresh_token,
            access_token,
            ..
        } => {
            values.extend([client_secret, refresh_token]);
            values.extend(access_token);
        }
        Credentials::JwtBearer { private_key, .. } => values.push(private_key),
        Credentials::Basic { username, password } => {
            values.push(
                base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}")),
            );
            values.push(password);
        }
        Credentials::Header { value, .. } => values.push(value),
        Credentials::Hmac { secret, .. } => values.push(secret),
    }
    if let Some(sealed) = connection.session.as_deref()
        && let Ok(plain) = keyring.open(
            sealed,
            &SecretContext {
                tenant_id: &connection.tenant_id,
                purpose: sealed::CONNECTION_SESSION,
                row_id: &connection.id,
            },
        )
        && let Ok(session) = serde_json::from_str::<Session>(crate::secrets::expose(&plain))
    {
        values.push(session.access_token);
    }
    values.retain(|v| v.chars().count() >= 8);
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    values.dedup();
    values
}
