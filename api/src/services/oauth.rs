//! The OAuth authorization-code flow for CRM connections (HubSpot, Salesforce, Zoho), with the
//! `oauth2` crate: an authorize URL with a single-use `state` bound to the tenant and the
//! connection (10 minutes), PKCE S256 where the vendor takes it, and a callback that exchanges
//! the code, seals the tokens on the connection and makes it `active`. Every failure leaves the
//! connection as it was (never active) and says why.
//!
//! The client app is the tenant's own (client id and secret sealed on the connection) or the
//! operator's (`TRIBUTARY_OAUTH_<PROVIDER>_CLIENT_ID` / `_CLIENT_SECRET`). The operator's app is
//! only ever sent to the vendor's own token endpoint or the one the operator configured, never
//! to a URL from a connection's settings; a tenant who points a connection elsewhere brings
//! their own app.

use entity::{TenantOwned, connections, oauth_states};
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, ExtraTokenFields,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, StandardRevocableToken,
    StandardTokenResponse, TokenResponse, TokenUrl,
};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tributary_worker::crm::config::{self, Credentials};
use tributary_worker::crm::providers::{self, Revoke};
use tributary_worker::crm::session::{Session, open_credentials, seal_credentials};
use tributary_worker::sealed;
use tributary_worker::secrets::{SecretContext, expose, random_token};

use super::{audit, now};
use crate::error::{ApiError, FieldError};
use crate::extract::Actor;
use crate::state::AppState;

/// How long an authorize link stays usable.
const STATE_TTL_MINUTES: i64 = 10;
/// The longest access-token lifetime believed from a vendor's `expires_in`: a year. Vendors
/// issue tokens for minutes or hours; a longer (or unrepresentable) value is taken as a year,
/// and a refused token is refreshed whatever its stored expiry says.
const MAX_TOKEN_LIFETIME_DAYS: i64 = 365;

/// What vendors add to a token answer (Salesforce's `instance_url`, Zoho's `api_domain`: the
/// provider's `api_host_field` says which to read).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct VendorFields {
    #[serde(flatten)]
    pub fields: serde_json::Map<String, Value>,
}

impl ExtraTokenFields for VendorFields {}

type VendorTokenResponse = StandardTokenResponse<VendorFields, BasicTokenType>;
type VendorClient = oauth2::Client<
    BasicErrorResponse,
    VendorTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
>;

/// The redirect URI to register at every vendor.
pub fn redirect_uri(state: &AppState) -> String {
    format!("{}/v1/oauth/callback", state.settings.public_url)
}

fn state_id(state_token: &str) -> String {
    hex::encode(Sha256::digest(state_token.as_bytes()))
}

/// The operator's app for `provider` whose secret is `secret`, if it is one.
fn operator_app<'a>(
    state: &'a AppState,
    provider: &str,
    secret: &str,
) -> Option<&'a tributary_worker::settings::OAuthApp> {
    state
        .settings
        .oauth_apps
        .iter()
        .find(|app| app.provider == provider && expose(&app.client_secret) == secret)
}

/// The client app a connection with `settings` authorizes with: its own, else the operator's.
/// The operator's app (also when the callback stored it on the connection) is refused, naming
/// the setting, unless the settings lead to a token endpoint it may be sent to.
fn client_app(
    state: &AppState,
    provider: &str,
    credentials: &Credentials,
    settings: &Map<String, Value>,
) -> Result<(String, String), ApiError> {
    let operator_only = |app: &tributary_worker::settings::OAuthApp| {
        config::check_operator_endpoint(app, settings)
            .map_err(|(field, message)| ApiError::field(field, message))
    };
    match credentials {
        Credentials::Oauth {
            client_id: Some(id),
            client_secret: Some(secret),
        }
        | Credentials::RefreshToken {
            client_id: id,
            client_secret: secret,
            ..
        } => {
            if let Some(app) = operator_app(state, provider, secret) {
                operator_only(app)?;
            }
            Ok((id.clone(), secret.clone()))
        }
        _ => state
            .settings
            .oauth_apps
            .iter()
            .find(|app| app.provider == provider)
            .map(|app| {
                operator_only(app)?;
                Ok((app.client_id.clone(), expose(&app.client_secret).to_string()))
            })
            .unwrap_or_else(|| {
                Err(
                ApiError::field(
                    "auth.client_id",
                    format!(
                        "no {provider} OAuth app is configured on this server \
                         (TRIBUTARY_OAUTH_{}_CLIENT_ID); bring your own client_id and client_secret",
                        provider.to_uppercase()
                    ),
                ))
            }),
    }
}

/// The connection's credentials, opened.
pub fn credentials_of(
    state: &AppState,
    connection: &connections::Model,
) -> Result<Credentials, ApiError> {
    open_credentials(&state.keyring, connection)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("{}", e.message)))
}

fn settings_of(connection: &connections::Model) -> Map<String, Value> {
    serde_json::from_str(&connection.settings).unwrap_or_default()
}

/// Starts an authorization: stores its state and returns the vendor's authorize URL.
pub async fn start<C: ConnectionTrait>(
    db: &C,
    state: &AppState,
    actor: &Actor,
    connection: &connections::Model,
    credentials: &Credentials,
) -> Result<String, ApiError> {
    let settings = settings_of(connection);
    let endpoints = config::oauth_endpoints(&connection.provider, &settings).ok_or_else(|| {
        ApiError::field(
            "provider",
            format!("{} has no OAuth browser flow", connection.provider),
        )
    })?;
    let (client_id, _) = client_app(state, &connection.provider, credentials, &settings)?;
    let bad_url = |what: &str| ApiError::field("settings", format!("the {what} is not a URL"));
    let client = VendorClient::new(ClientId::new(client_id))
        .set_auth_uri(
            AuthUrl::new(endpoints.authorize_url.clone()).map_err(|_| bad_url("authorize URL"))?,
        )
        .set_redirect_uri(
            RedirectUrl::new(redirect_uri(state)).map_err(|_| bad_url("redirect URI"))?,
        );
    let state_token = random_token::<32>();
    let mut request = client
        .authorize_url(|| CsrfToken::new(state_token.clone()))
        .add_scopes(endpoints.scopes.iter().cloned().map(Scope::new));
    for (key, value) in &endpoints.extra {
        request = request.add_extra_param(*key, *value);
    }
    let id = state_id(&state_token);
    let mut verifier = None;
    if endpoints.pkce {
        let (challenge, pkce_verifier) = PkceCodeChallenge::new_random_sha256();
        request = request.set_pkce_challenge(challenge);
        verifier = Some(state.keyring.seal(
            pkce_verifier.secret(),
            &SecretContext {
                tenant_id: &connection.tenant_id,
                purpose: sealed::OAUTH_VERIFIER,
                row_id: &id,
            },
        ));
    }
    let (url, _) = request.url();
    let at = now();
    oauth_states::Entity::insert(oauth_states::ActiveModel {
        id: Set(id),
        tenant_id: Set(connection.tenant_id.clone()),
        connection_id: Set(connection.id.clone()),
        provider: Set(connection.provider.clone()),
        verifier: Set(verifier),
        redirect_uri: Set(redirect_uri(state)),
        actor_type: Set(actor.kind().to_string()),
        actor_id: Set(actor.id().to_string()),
        expires_at: Set(at + chrono::Duration::minutes(STATE_TTL_MINUTES)),
        used_at: Set(None),
        created_at: Set(at),
    })
    .exec(db)
    .await?;
    Ok(url.to_string())
}

/// What the vendor sends the browser back with.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    /// The authorization code.
    pub code: Option<String>,
    /// The state Tributary put in the authorize URL.
    pub state: Option<String>,
    /// Set when the user or the vendor refused, e.g. `access_denied`.
    pub error: Option<String>,
    pub error_description: Option<String>,
    /// Zoho: the accounts server of the user's data centre.
    #[serde(rename = "accounts-server")]
    #[param(rename = "accounts-server")]
    pub accounts_server: Option<String>,
    /// Zoho: the user's data centre.
    pub location: Option<String>,
}

/// Every failure of a callback is a page for the person in the browser, never a problem.
impl crate::extract::Validate for CallbackQuery {}

/// Why a callback was refused, in words for the person in the browser.
#[derive(Debug)]
pub struct Refused(pub String);

impl From<ApiError> for Refused {
    fn from(err: ApiError) -> Self {
        tracing::error!(error = ?err, "OAuth callback failed");
        Refused("the authorization could not be stored; try again".into())
    }
}

impl From<sea_orm::DbErr> for Refused {
    fn from(err: sea_orm::DbErr) -> Self {
        Refused::from(ApiError::from(err))
    }
}

/// Completes an authorization; returns the connection, now active.
pub async fn callback(
    state: &AppState,
    query: &CallbackQuery,
) -> Result<connections::Model, Refused> {
    let row = claim_state(state, query).await?;
    let connection = pending_connection(state, &row).await?;
    let code = vendor_code(state, query, &connection).await?;
    let oauth = providers::get(&connection.provider)
        .and_then(|p| p.oauth)
        .ok_or_else(|| Refused("this provider has no OAuth flow".into()))?;
    let settings = callback_settings(query, &connection, oauth)?;
    let (token, client_id, client_secret) =
        exchange_code(state, &row, &connection, oauth, &settings, code).await?;
    let (session, refresh_token) = read_token(state, &connection, oauth, &token).await?;
    let credentials = Credentials::RefreshToken {
        client_id,
        client_secret,
        refresh_token,
        access_token: None,
        expires_at: None,
    };
    // Where the vendor routes webhooks by account (HubSpot's hub id): asked at every
    // authorization, so a connection re-authorized into another account follows it.
    let account = tributary_worker::crm::session::account::account_of(
        &state.connector().http,
        &connection,
        &settings,
        &session.access_token,
        config::timeout(&settings),
    )
    .await;
    let authorized = Authorized {
        settings,
        session: &session,
        credentials: &credentials,
        account,
    };
    store_authorization(state, &row, &connection, authorized).await?;
    let active = connections::Entity::find_by_id(connection.id.clone())
        .one(&state.db)
        .await?
        .ok_or_else(|| Refused("the connection no longer exists".into()))?;
    super::events::release_waiting(state, &active).await?;
    Ok(active)
}

/// A refusal of the callback with `message`.
fn refuse<T>(message: &str) -> Result<T, Refused> {
    Err(Refused(message.to_string()))
}

/// The callback's state row, claimed so it is never used twice; refused when the state is
/// missing, unknown, used or expired.
async fn claim_state(
    state: &AppState,
    query: &CallbackQuery,
) -> Result<oauth_states::Model, Refused> {
    let Some(state_token) = query.state.as_deref().filter(|s| !s.is_empty()) else {
        return refuse("the callback has no state; start again from the connection");
    };
    let id = state_id(state_token);
    let Some(row) = oauth_states::Entity::find_by_id(id.clone())
        .one(&state.db)
        .await?
    else {
        return refuse("unknown authorization state; start again from the connection");
    };
    if row.used_at.is_some() {
        return refuse("this authorization link was already used; ask for a new one");
    }
    if row.expires_at < now() {
        return refuse(
            "this authorization link expired; ask for a new one (POST /v1/connections/{id}/reauthorize)",
        );
    }
    // Single use, even when two callbacks race.
    let claimed = oauth_states::Entity::update_many()
        .set(oauth_states::ActiveModel {
            used_at: Set(Some(now())),
            ..Default::default()
        })
        .filter(oauth_states::Column::Id.eq(id.as_str()))
        .filter(oauth_states::Column::UsedAt.is_null())
        .exec(&state.db)
        .await?
        .rows_affected
        == 1;
    if !claimed {
        return refuse("this authorization link was already used; ask for a new one");
    }
    Ok(row)
}

/// The connection the state row was made for, in the state's tenant and of its provider.
async fn pending_connection(
    state: &AppState,
    row: &oauth_states::Model,
) -> Result<connections::Model, Refused> {
    // The state names its tenant: another tenant's connection cannot be reached from it.
    let Some(connection) =
        connections::Entity::find_by_id_in_tenant(&row.tenant_id, &row.connection_id)
            .one(&state.db)
            .await?
            .filter(|c| c.provider == row.provider)
    else {
        return refuse("the connection this authorization was for no longer exists");
    };
    Ok(connection)
}

/// The authorization code the vendor sent; a refusal the vendor sent instead is noted on the
/// connection.
async fn vendor_code<'q>(
    state: &AppState,
    query: &'q CallbackQuery,
    connection: &connections::Model,
) -> Result<&'q str, Refused> {
    if let Some(error) = &query.error {
        let reason = match &query.error_description {
            Some(description) => format!("{error}: {description}"),
            None => error.clone(),
        };
        note_refusal(
            state,
            connection,
            &format!("authorization refused: {reason}"),
        )
        .await?;
        return Err(Refused(format!(
            "{} refused the authorization ({reason}); the connection is not active",
            connection.provider
        )));
    }
    let Some(code) = query.code.as_deref().filter(|c| !c.is_empty()) else {
        return refuse("the callback has no code");
    };
    Ok(code)
}

/// The connection's settings, with the accounts server the callback names (Zoho) when it is
/// one the provider allows.
fn callback_settings(
    query: &CallbackQuery,
    connection: &connections::Model,
    oauth: &providers::OAuth,
) -> Result<Map<String, Value>, Refused> {
    let mut settings = settings_of(connection);
    // Zoho names the user's data centre; only one of the vendor's accounts servers or the
    // connection's own is believed.
    if !oauth.callback_servers.is_empty()
        && let Some(server) = query.accounts_server.as_deref()
    {
        let server = server.trim_end_matches('/');
        if server != (oauth.token_endpoint)(&settings) {
            if !oauth.callback_servers.contains(&server) {
                return refuse(&format!(
                    "the callback names an accounts server that is not {}'s",
                    connection.provider
                ));
            }
            if let Some(from) = oauth.token_setting_from {
                settings.remove(from);
            }
            settings.insert(
                oauth.token_setting.into(),
                Value::String(server.to_string()),
            );
        }
    }
    Ok(settings)
}

/// Exchanges the code at the token endpoint with the connection's client app; returns the
/// vendor's token answer with the client id and secret used. A refused exchange is noted on
/// the connection.
async fn exchange_code(
    state: &AppState,
    row: &oauth_states::Model,
    connection: &connections::Model,
    oauth: &providers::OAuth,
    settings: &Map<String, Value>,
    code: &str,
) -> Result<(VendorTokenResponse, String, String), Refused> {
    let endpoints = (oauth.endpoints)(settings);
    let credentials = credentials_of(state, connection)?;
    let (client_id, client_secret) =
        match client_app(state, &connection.provider, &credentials, settings) {
            Ok(app) => app,
            Err(ApiError::Validation(errors)) => {
                let reason = errors
                    .first()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .unwrap_or_else(|| "no OAuth app is configured for this connection".into());
                note_refusal(state, connection, &reason).await?;
                return Err(Refused(reason));
            }
            Err(_) => return refuse("no OAuth app is configured for this connection"),
        };
    // The operator's secret goes only where the operator's app may go, whatever built the URL.
    if let Some(app) = operator_app(state, &connection.provider, &client_secret)
        && !app.may_send_to(&endpoints.token_url)
    {
        return refuse("this server's OAuth app is not sent to this connection's token URL");
    }
    let token_url = TokenUrl::new(endpoints.token_url.clone())
        .map_err(|_| Refused("the token URL is not a URL".into()))?;
    let redirect = RedirectUrl::new(row.redirect_uri.clone())
        .map_err(|_| Refused("the redirect URI is not a URL".into()))?;
    let client = VendorClient::new(ClientId::new(client_id.clone()))
        .set_client_secret(ClientSecret::new(client_secret.clone()))
        .set_auth_type(AuthType::RequestBody)
        .set_token_uri(token_url)
        .set_redirect_uri(redirect);
    let mut exchange = client.exchange_code(AuthorizationCode::new(code.to_string()));
    if let Some(sealed) = &row.verifier {
        let verifier = state
            .keyring
            .open(
                sealed,
                &SecretContext {
                    tenant_id: &row.tenant_id,
                    purpose: sealed::OAUTH_VERIFIER,
                    row_id: &row.id,
                },
            )
            .map_err(|_| Refused("the authorization's PKCE verifier cannot be opened".into()))?;
        exchange = exchange.set_pkce_verifier(PkceCodeVerifier::new(expose(&verifier).to_string()));
    }
    let http = state.connector().http.clone();
    let send = move |request: oauth2::HttpRequest| {
        let http = http.clone();
        async move { send(&http, request).await }
    };
    let token = match exchange.request_async(&send).await {
        Ok(token) => token,
        Err(error) => {
            let reason = exchange_error(&error);
            note_refusal(
                state,
                connection,
                &format!("code exchange failed: {reason}"),
            )
            .await?;
            return Err(Refused(format!(
                "{} refused the code exchange ({reason}); the connection is not active",
                connection.provider
            )));
        }
    };
    Ok((token, client_id, client_secret))
}

/// The session (access token, its expiry, the API host the vendor named) and the refresh
/// token in the vendor's token answer; refused without a refresh token, or with an API host
/// that is missing or not allowed.
async fn read_token(
    state: &AppState,
    connection: &connections::Model,
    oauth: &providers::OAuth,
    token: &VendorTokenResponse,
) -> Result<(Session, String), Refused> {
    let Some(refresh_token) = token.refresh_token() else {
        note_refusal(state, connection, "the vendor issued no refresh token").await?;
        return refuse(
            "the vendor issued no refresh token (the app needs offline access); the connection is not active",
        );
    };
    let api_base = oauth
        .api_host_field
        .and_then(|field| token.extra_fields().fields.get(field)?.as_str())
        .map(|url| url.trim_end_matches('/').to_string());
    if let Some(base) = &api_base
        && let Err(e) = config::check_url(&connection.provider, base, state.settings.vendor_urls)
    {
        return Err(Refused(format!(
            "the vendor named the API host {base}, which {e}"
        )));
    }
    if oauth.api_host_field.is_some() && api_base.is_none() {
        return refuse("the vendor's token answer names no API host");
    }
    let session = Session {
        access_token: token.access_token().secret().clone(),
        expires_at: token
            .expires_in()
            .map(|lifetime| token_expiry(&connection.id, lifetime)),
        api_base,
    };
    Ok((session, refresh_token.secret().clone()))
}

/// What an authorization gives a connection.
struct Authorized<'a> {
    settings: Map<String, Value>,
    session: &'a Session,
    credentials: &'a Credentials,
    account: Option<String>,
}

/// Seals the session and credentials on the connection, makes it active and records the
/// authorization in the audit log, in one transaction.
async fn store_authorization(
    state: &AppState,
    row: &oauth_states::Model,
    connection: &connections::Model,
    authorized: Authorized<'_>,
) -> Result<(), Refused> {
    let Authorized {
        settings,
        session,
        credentials,
        account,
    } = authorized;
    let sealed_session = state.keyring.seal(
        &serde_json::to_string(session).map_err(|e| ApiError::Internal(e.into()))?,
        &SecretContext {
            tenant_id: &connection.tenant_id,
            purpose: sealed::CONNECTION_SESSION,
            row_id: &connection.id,
        },
    );
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    let updated = connections::Entity::update_many()
        .set(connections::ActiveModel {
            credentials: Set(Some(seal_credentials(
                &state.keyring,
                &connection.tenant_id,
                &connection.id,
                credentials,
            ))),
            session: Set(Some(sealed_session)),
            refresh_lease_until: Set(None),
            settings: Set(Value::Object(settings).to_string()),
            status: Set("active".into()),
            status_reason: Set(None),
            paused_until: Set(None),
            vendor_account: Set(account),
            updated_at: Set(now()),
            ..Default::default()
        })
        .filter(connections::Column::Id.eq(connection.id.as_str()))
        .filter(connections::Column::TenantId.eq(row.tenant_id.as_str()))
        .exec(&txn)
        .await?;
    if updated.rows_affected != 1 {
        return refuse("the connection this authorization was for no longer exists");
    }
    let actor = match row.actor_type.as_str() {
        "api_key" => Actor::ApiKey(row.actor_id.clone()),
        _ => Actor::User(row.actor_id.clone()),
    };
    audit::record(
        &txn,
        &row.tenant_id,
        &actor,
        "connection.authorize",
        "connection",
        Some(&connection.id),
        // The vendor's redirect carries the browser, but no session vouches for it here.
        None,
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// When a token the vendor says lives `lifetime` expires: at most a year from now (a longer or
/// unrepresentable lifetime is capped, with a warning), never an arithmetic overflow.
fn token_expiry(
    connection_id: &str,
    lifetime: std::time::Duration,
) -> chrono::DateTime<chrono::Utc> {
    let cap = chrono::Duration::days(MAX_TOKEN_LIFETIME_DAYS);
    let lifetime = match chrono::Duration::from_std(lifetime) {
        Ok(lifetime) if lifetime <= cap => lifetime,
        _ => {
            tracing::warn!(
                connection_id,
                expires_in = lifetime.as_secs(),
                "the vendor's token lifetime is over a year; taken as a year"
            );
            cap
        }
    };
    let at = now();
    at.checked_add_signed(lifetime).unwrap_or(at)
}

/// Records why an authorization failed on the connection, without changing its status.
async fn note_refusal(
    state: &AppState,
    connection: &connections::Model,
    reason: &str,
) -> Result<(), Refused> {
    connections::Entity::update_many()
        .set(connections::ActiveModel {
            status_reason: Set(Some(reason.to_string())),
            updated_at: Set(now()),
            ..Default::default()
        })
        .filter(connections::Column::Id.eq(connection.id.as_str()))
        .filter(connections::Column::Status.ne("active"))
        .exec(&state.db)
        .await?;
    Ok(())
}

fn exchange_error<RE: std::error::Error + 'static>(
    error: &oauth2::RequestTokenError<RE, BasicErrorResponse>,
) -> String {
    match error {
        oauth2::RequestTokenError::ServerResponse(response) => match response.error_description() {
            Some(description) => format!("{}: {description}", response.error()),
            None => response.error().to_string(),
        },
        oauth2::RequestTokenError::Request(_) => "the token endpoint could not be reached".into(),
        oauth2::RequestTokenError::Parse(_, body) => {
            let text = String::from_utf8_lossy(body);
            let shown: String = text.chars().take(200).collect();
            format!("unexpected answer: {shown}")
        }
        oauth2::RequestTokenError::Other(other) => other.clone(),
    }
}

/// Sends one of the `oauth2` crate's requests with the workers' HTTP client (no redirects,
/// timeouts).
async fn send(
    http: &reqwest::Client,
    request: oauth2::HttpRequest,
) -> Result<oauth2::HttpResponse, reqwest::Error> {
    let (parts, body) = request.into_parts();
    let response = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .timeout(std::time::Duration::from_secs(30))
        .body(body)
        .send()
        .await?;
    let mut builder = http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        builder = builder.header(name, value);
    }
    // An answer over the limit reaches the caller as an unparseable body that says so.
    use tributary_worker::net::{ANSWER_LIMIT, ReadError, read_limited};
    let body = match read_limited(response, ANSWER_LIMIT).await {
        Ok(body) => body,
        Err(ReadError::Cut(e)) => return Err(e),
        Err(too_large) => too_large.to_string().into_bytes(),
    };
    Ok(builder
        .body(body)
        .expect("a response rebuilt from a valid one is valid"))
}

/// Revokes a connection's refresh token at the vendor, where the vendor offers it. Failures
/// are reported, not raised: the tenant's delete goes ahead.
pub async fn revoke(state: &AppState, connection: &connections::Model) -> Option<bool> {
    let Ok(Credentials::RefreshToken { refresh_token, .. }) = credentials_of(state, connection)
    else {
        return None;
    };
    let settings = settings_of(connection);
    let http = &state.connector().http;
    let timeout = config::timeout(&settings);
    let oauth = providers::get(&connection.provider).and_then(|p| p.oauth)?;
    let request = match (oauth.revoke)(&settings, &refresh_token) {
        Revoke {
            delete: true, url, ..
        } => http.delete(url),
        Revoke {
            url,
            form: Some(form),
            ..
        } => http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form),
        Revoke { url, .. } => http.post(url),
    };
    let revoked = matches!(
        request.timeout(timeout).send().await,
        Ok(response) if response.status().is_success()
    );
    if !revoked {
        tracing::warn!(connection_id = %connection.id, "revoking the token at the vendor failed");
    }
    Some(revoked)
}

/// Checks that an `oauth` connection with `settings` can find a client app, and that the
/// operator's is not pointed at another token endpoint.
pub fn check_client(
    state: &AppState,
    provider: &str,
    credentials: &Credentials,
    settings: &Map<String, Value>,
    errors: &mut Vec<FieldError>,
) {
    if let Err(ApiError::Validation(found)) = client_app(state, provider, credentials, settings) {
        errors.extend(found);
    }
}

#[cfg(test)]
mod tests;
