//! CRM connections. Credentials are sealed like every secret and never returned; a
//! connection's session (its current access token) is sealed beside them. Every provider's
//! auth types and settings are checked by the worker's `crm::config`, the same definitions the
//! adapters read.

use entity::{Role, TenantOwned, connections, sandbox_records};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tributary_worker::crm::{self, config, session::seal_credentials};
use tributary_worker::schema::{AuthType, ConnectionStatus, CrmErrorKind, Provider};
use utoipa::ToSchema;

use super::fields::Name;
use super::{audit, check_name, new_id, now};
use crate::error::{ApiError, FieldError};
use crate::extract::{IfMatch, Page, TenantContext, Validate};
use crate::state::AppState;
use tributary_worker::crm::providers;

mod limits;
pub use limits::{DailyCapOut, RateLimitOut, rate_limit};

pub use config::AuthInput as AuthIn;

tributary_worker::string_enum_schema!(
    /// The statuses a tenant may set on a connection.
    ConnectionStatusChange,
    "`disabled` stops the connection's deliveries (they wait); `active` resumes them.",
    ["active", "disabled"]
);

/// A connection's settings as a tenant sends them: names of the provider's settings, each a
/// string, a whole number of seconds, a flag, a list of scope names or a map of header names to
/// values (see `ConnectionIn`); no setting nests deeper.
pub struct ConnectionSettings;

impl utoipa::PartialSchema for ConnectionSettings {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            AdditionalProperties, ArrayBuilder, ObjectBuilder, OneOfBuilder, Type,
        };
        let string = || ObjectBuilder::new().schema_type(Type::String);
        let value = OneOfBuilder::new()
            .item(string())
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0)),
            )
            .item(ObjectBuilder::new().schema_type(Type::Boolean))
            .item(ArrayBuilder::new().items(string()))
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Object)
                    .additional_properties(Some(AdditionalProperties::RefOr(string().into()))),
            );
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "Provider settings (vendor URLs, API version, …), each a string, a whole number, \
                 a flag, a list of strings or a map of strings; which names a provider takes, and \
                 where its URLs may point (`TRIBUTARY_VENDOR_URLS`), is checked per provider and \
                 unknown names are refused.",
            ))
            .additional_properties(Some(AdditionalProperties::RefOr(value.into())))
            .into()
    }
}

impl ToSchema for ConnectionSettings {}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionIn {
    #[schema(value_type = Name, example = "HubSpot prod")]
    pub name: String,
    /// `sandbox`, `hubspot`, `salesforce`, `zoho` or `http`.
    #[schema(value_type = Provider, example = "hubspot")]
    pub provider: String,
    /// Required except for the sandbox (and an HTTP CRM without auth).
    pub auth: Option<AuthIn>,
    /// Provider settings (vendor URLs, API version, …); unknown keys are refused.
    #[serde(default)]
    #[schema(value_type = ConnectionSettings)]
    pub settings: Map<String, Value>,
}

impl Validate for ConnectionIn {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        check_name("name", &self.name, &mut errors);
        if providers::get(&self.provider).is_none() {
            let names: Vec<&str> = providers::ALL.iter().map(|p| p.name).collect();
            errors.push(FieldError::new(
                "provider",
                format!("must be one of {}", names.join(", ")),
            ));
        }
        super::valid(errors)
    }
}

/// Builds the credentials a provider needs from `auth` (absent means `none`).
fn credentials(
    provider: &str,
    auth: Option<&AuthIn>,
    errors: &mut Vec<FieldError>,
) -> Option<config::Credentials> {
    let none = AuthIn {
        auth_type: Some("none".into()),
        ..Default::default()
    };
    let input = match auth {
        Some(auth) if auth.auth_type.is_none() => {
            errors.push(FieldError::new("auth.type", "is required"));
            return None;
        }
        Some(auth) => auth,
        None if config::auth_types(provider).is_some_and(|types| types.contains(&"none")) => &none,
        None => {
            errors.push(FieldError::new(
                "auth",
                format!(
                    "{provider} needs credentials: auth.type {}",
                    config::auth_types(provider).unwrap_or(&[]).join(" or ")
                ),
            ));
            return None;
        }
    };
    match config::credentials(provider, input) {
        Ok(credentials) => Some(credentials),
        Err(problems) => {
            errors.extend(problems.into_iter().map(|(f, m)| FieldError::new(f, m)));
            None
        }
    }
}

fn check_settings(
    state: &AppState,
    provider: &str,
    settings: &Map<String, Value>,
    errors: &mut Vec<FieldError>,
) {
    for (field, message) in config::check_settings(provider, settings, state.settings.vendor_urls) {
        errors.push(FieldError::new(field, message));
    }
}

/// Stored credentials go only to the host they were entered for: new settings that change
/// where they would be sent (`base_url`, `token_url`, `login_url`, `accounts_url` or
/// `data_center`, an SMTP `host` or `port`) are refused unless the credentials come again.
fn check_destinations(
    existing: &connections::Model,
    stored: &config::Credentials,
    settings: &Map<String, Value>,
    errors: &mut Vec<FieldError>,
) {
    let holds_secret = !matches!(
        stored,
        config::Credentials::None
            | config::Credentials::Oauth {
                client_secret: None,
                ..
            }
    );
    if !holds_secret {
        return;
    }
    let old: Map<String, Value> = serde_json::from_str(&existing.settings).unwrap_or_default();
    let before = config::credential_destinations(&existing.provider, &old);
    let after = config::credential_destinations(&existing.provider, settings);
    for ((field, was), (_, now)) in before.iter().zip(&after) {
        if was == now {
            continue;
        }
        let field = match *field {
            "accounts_url"
                if settings.contains_key("data_center")
                    || (!settings.contains_key("accounts_url")
                        && old.contains_key("data_center")) =>
            {
                "data_center"
            }
            field => field,
        };
        errors.push(FieldError::new(
            format!("settings.{field}"),
            "changing where credentials go needs them re-entered in auth",
        ));
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionPatch {
    #[schema(value_type = Option<Name>)]
    pub name: Option<String>,
    /// New credentials: the connection becomes `active` again and its waiting deliveries run.
    pub auth: Option<AuthIn>,
    /// Replaces the settings. A change to where the credentials are sent (`base_url`,
    /// `token_url`, `login_url`, `accounts_url`, `data_center`, an SMTP `host` or `port`) needs
    /// `auth` in the same request.
    #[schema(value_type = Option<ConnectionSettings>)]
    pub settings: Option<Map<String, Value>>,
    /// `active` or `disabled`.
    #[schema(value_type = Option<ConnectionStatusChange>)]
    pub status: Option<String>,
}

impl Validate for ConnectionPatch {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        if let Some(name) = &self.name {
            check_name("name", name, &mut errors);
        }
        if let Some(status) = &self.status
            && !matches!(status.as_str(), "active" | "disabled")
        {
            errors.push(FieldError::new("status", "must be active or disabled"));
        }
        super::valid(errors)
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuthOut {
    /// The kind of credentials held; the credentials themselves are never returned.
    #[serde(rename = "type")]
    #[schema(value_type = AuthType)]
    pub auth_type: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConnectionOut {
    pub id: String,
    pub name: String,
    #[schema(value_type = Provider)]
    pub provider: String,
    pub auth: AuthOut,
    #[schema(value_type = std::collections::HashMap<String, serde_json::Value>)]
    pub settings: Value,
    #[schema(value_type = ConnectionStatus)]
    pub status: String,
    pub status_reason: Option<String>,
    pub paused_until: Option<chrono::DateTime<chrono::Utc>>,
    /// What the vendor told Tributary about this connection: `api_usage` (Salesforce's
    /// `Sforce-Limit-Info`, HubSpot's rate-limit headers), the discovered `won_stage`,
    /// `token_refreshed_at`. Never a credential.
    #[schema(value_type = std::collections::HashMap<String, serde_json::Value>)]
    pub info: Value,
    /// Where to send the tenant's browser to authorize (`oauth` connections, when created or
    /// reauthorized); single-use, valid for 10 minutes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorize_url: Option<String>,
    /// Where the CRM sends its changes (HubSpot webhooks, Zoho notifications, Salesforce
    /// Outbound Messages and Flow callouts): give it to the CRM as its target URL. Only for
    /// CRMs that push.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inbound_url: Option<String>,
    /// The vendor's id of the account the connection's token acts in, as the vendor said it
    /// when the connection was authorized (HubSpot: the portal's hub id, from the token's
    /// metadata); null until then, and for connections without OAuth. A webhook of the
    /// operator's shared HubSpot app (`POST /webhooks/hubspot`) reaches the connections
    /// installed through that app whose account it names.
    pub vendor_account: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// CRMs that push their changes to a connection's own URL.
pub const INBOUND_PROVIDERS: &[&str] = &["hubspot", "salesforce", "zoho"];

/// A connection as the API shows it, with its inbound URL under this install's public URL.
pub fn out(state: &AppState, row: connections::Model) -> ConnectionOut {
    let inbound_url = row.inbound_token.as_deref().map(|token| {
        format!(
            "{}/webhooks/{}/{token}",
            state.settings.public_url, row.provider
        )
    });
    ConnectionOut {
        inbound_url,
        ..row.into()
    }
}

impl From<connections::Model> for ConnectionOut {
    fn from(c: connections::Model) -> Self {
        ConnectionOut {
            settings: serde_json::from_str(&c.settings).unwrap_or(Value::Object(Map::new())),
            id: c.id,
            name: c.name,
            provider: c.provider,
            auth: AuthOut {
                auth_type: c.auth_type,
            },
            status: c.status,
            status_reason: c.status_reason,
            paused_until: c.paused_until,
            info: serde_json::from_str(&c.vendor_info).unwrap_or(Value::Object(Map::new())),
            authorize_url: None,
            inbound_url: None,
            vendor_account: c.vendor_account,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionTestOut {
    pub ok: bool,
    /// What the vendor answered, or what failed.
    pub detail: String,
    /// On failure: `auth`, `rate_limited`, `invalid`, `not_found`, `transient` or `permanent`.
    #[schema(value_type = Option<CrmErrorKind>)]
    pub error_kind: Option<String>,
    /// On failure: the vendor's HTTP status, if it answered.
    pub vendor_status: Option<u16>,
}

/// A record held by a sandbox connection.
#[derive(Debug, Serialize, ToSchema)]
pub struct SandboxRecordOut {
    pub id: String,
    pub object: String,
    #[schema(value_type = std::collections::HashMap<String, serde_json::Value>)]
    pub fields: Value,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

pub async fn find(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
) -> Result<connections::Model, ApiError> {
    super::owned::<connections::Entity, _>(&state.db, ctx, id).await
}

pub async fn create(
    state: &AppState,
    ctx: &TenantContext,
    input: ConnectionIn,
) -> Result<ConnectionOut, ApiError> {
    ctx.require(Role::Admin)?;
    let mut errors = Vec::new();
    let credentials = credentials(&input.provider, input.auth.as_ref(), &mut errors);
    check_settings(state, &input.provider, &input.settings, &mut errors);
    if let Some(credentials @ config::Credentials::Oauth { .. }) = &credentials {
        super::oauth::check_client(
            state,
            &input.provider,
            credentials,
            &input.settings,
            &mut errors,
        );
    }
    let Some(credentials) = credentials.filter(|_| errors.is_empty()) else {
        return Err(ApiError::Validation(errors));
    };
    let oauth = matches!(credentials, config::Credentials::Oauth { .. });
    let at = now();
    let id = new_id();
    let sealed = (credentials != config::Credentials::None)
        .then(|| seal_credentials(&state.keyring, &ctx.tenant_id, &id, &credentials));
    let inbound_token = INBOUND_PROVIDERS
        .contains(&input.provider.as_str())
        .then(tributary_worker::secrets::random_token::<24>);
    let row = connections::Model {
        id,
        tenant_id: ctx.tenant_id.clone(),
        name: input.name.trim().to_string(),
        provider: input.provider,
        auth_type: credentials.type_name().into(),
        credentials: sealed,
        settings: Value::Object(input.settings).to_string(),
        status: if oauth {
            "pending_authorization"
        } else {
            "active"
        }
        .into(),
        status_reason: None,
        paused_until: None,
        session: None,
        refresh_lease_until: None,
        vendor_info: "{}".into(),
        inbound_token,
        vendor_account: None,
        created_at: at,
        updated_at: at,
    };
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    let max = state.settings.limits.max_connections;
    super::limits::ensure_room::<connections::Entity, _>(
        &txn,
        &ctx.tenant_id,
        max,
        "connections",
        format!("at most {max} connections per tenant (TRIBUTARY_MAX_CONNECTIONS)"),
    )
    .await?;
    connections::Entity::insert(connections::ActiveModel::from(row.clone()))
        .exec(&txn)
        .await?;
    audit::log(&txn, ctx, "connection.create", "connection", &row.id).await?;
    let authorize_url = match oauth {
        true => Some(super::oauth::start(&txn, state, &ctx.actor, &row, &credentials).await?),
        false => None,
    };
    txn.commit().await?;
    Ok(ConnectionOut {
        authorize_url,
        ..out(state, row)
    })
}

/// A new authorize URL for an OAuth-capable connection (e.g. one that needs
/// re-authorization); completing it makes the connection active and runs what waited.
pub async fn reauthorize(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
) -> Result<ConnectionOut, ApiError> {
    let existing = find(state, ctx, id).await?;
    ctx.require(Role::Admin)?;
    let credentials = super::oauth::credentials_of(state, &existing)?;
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    let url = super::oauth::start(&txn, state, &ctx.actor, &existing, &credentials).await?;
    audit::log(&txn, ctx, "connection.reauthorize", "connection", id).await?;
    txn.commit().await?;
    Ok(ConnectionOut {
        authorize_url: Some(url),
        ..out(state, existing)
    })
}

pub async fn list(
    state: &AppState,
    ctx: &TenantContext,
    page: &Page,
) -> Result<(Vec<ConnectionOut>, bool), ApiError> {
    let (rows, has_more) = page
        .fetch(
            &state.db,
            connections::Entity::find_in_tenant(&ctx.tenant_id),
            connections::Column::Id,
        )
        .await?;
    Ok((
        rows.into_iter().map(|row| out(state, row)).collect(),
        has_more,
    ))
}

pub async fn update(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
    patch: ConnectionPatch,
    if_match: &IfMatch,
) -> Result<ConnectionOut, ApiError> {
    let existing = find(state, ctx, id).await?;
    ctx.require(Role::Admin)?;
    let mut errors = Vec::new();
    let credentials = match &patch.auth {
        Some(auth) => credentials(&existing.provider, Some(auth), &mut errors),
        None => None,
    };
    if let Some(settings) = &patch.settings {
        check_settings(state, &existing.provider, settings, &mut errors);
    }
    let settings = match &patch.settings {
        Some(settings) => settings.clone(),
        None => serde_json::from_str(&existing.settings).unwrap_or_default(),
    };
    if let Some(credentials @ config::Credentials::Oauth { .. }) = &credentials {
        super::oauth::check_client(
            state,
            &existing.provider,
            credentials,
            &settings,
            &mut errors,
        );
    }
    if patch.auth.is_none() && patch.settings.is_some() && errors.is_empty() {
        let stored = super::oauth::credentials_of(state, &existing)?;
        check_destinations(&existing, &stored, &settings, &mut errors);
        if errors.is_empty()
            && matches!(
                stored,
                config::Credentials::Oauth { .. } | config::Credentials::RefreshToken { .. }
            )
        {
            super::oauth::check_client(state, &existing.provider, &stored, &settings, &mut errors);
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let oauth = matches!(credentials, Some(config::Credentials::Oauth { .. }));
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    let current = super::owned_for_update::<connections::Entity, _>(&txn, ctx, id).await?;
    if_match.check(&out(state, current), "connection")?;
    let tenant_id = existing.tenant_id.clone();
    let mut active: connections::ActiveModel = existing.into();
    if let Some(name) = patch.name {
        active.name = Set(name.trim().to_string());
    }
    if let Some(settings) = patch.settings {
        active.settings = Set(Value::Object(settings).to_string());
        // A token may belong to the old host.
        active.session = Set(None);
    }
    if let Some(credentials) = &credentials {
        active.auth_type = Set(credentials.type_name().into());
        active.credentials = Set((*credentials != config::Credentials::None)
            .then(|| seal_credentials(&state.keyring, &tenant_id, id, credentials)));
        active.session = Set(None);
        active.refresh_lease_until = Set(None);
        // New credentials may act in another account: known again once the vendor says so.
        active.vendor_account = Set(None);
        // New credentials are a reconnect, unless the tenant disables it in the same call;
        // OAuth credentials are complete only once the browser flow is.
        if patch.status.is_none() {
            active.status = Set(if oauth {
                "pending_authorization"
            } else {
                "active"
            }
            .into());
            active.status_reason = Set(None);
            active.paused_until = Set(None);
        }
    }
    if let Some(status) = patch.status {
        active.status = Set(status);
        active.status_reason = Set(None);
        active.paused_until = Set(None);
    }
    active.updated_at = Set(now());
    let updated = active.update(&txn).await?;
    audit::log(&txn, ctx, "connection.update", "connection", id).await?;
    let authorize_url = match &credentials {
        Some(credentials) if oauth => {
            Some(super::oauth::start(&txn, state, &ctx.actor, &updated, credentials).await?)
        }
        _ => None,
    };
    txn.commit().await?;
    if updated.status == "active" {
        super::events::release_waiting(state, &updated).await?;
    }
    Ok(ConnectionOut {
        authorize_url,
        ..out(state, updated)
    })
}

pub async fn delete(state: &AppState, ctx: &TenantContext, id: &str) -> Result<(), ApiError> {
    let existing = find(state, ctx, id).await?;
    ctx.require(Role::Admin)?;
    // The vendor forgets the token first, where it offers revocation.
    let revoked = super::oauth::revoke(state, &existing).await;
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    if revoked == Some(true) {
        audit::log(&txn, ctx, "connection.revoke", "connection", id).await?;
    }
    entity::oauth_states::Entity::delete_many()
        .filter(entity::oauth_states::Column::TenantId.eq(ctx.tenant_id.as_str()))
        .filter(entity::oauth_states::Column::ConnectionId.eq(existing.id.as_str()))
        .exec(&txn)
        .await?;
    sandbox_records::Entity::delete_many()
        .filter(sandbox_records::Column::TenantId.eq(ctx.tenant_id.as_str()))
        .filter(sandbox_records::Column::ConnectionId.eq(existing.id.as_str()))
        .exec(&txn)
        .await?;
    // What it watched at its CRM: the cursors and the last versions of the records it saw.
    entity::crm_watches::Entity::delete_many()
        .filter(entity::crm_watches::Column::TenantId.eq(ctx.tenant_id.as_str()))
        .filter(entity::crm_watches::Column::ConnectionId.eq(existing.id.as_str()))
        .exec(&txn)
        .await?;
    entity::crm_versions::Entity::delete_many()
        .filter(entity::crm_versions::Column::TenantId.eq(ctx.tenant_id.as_str()))
        .filter(entity::crm_versions::Column::ConnectionId.eq(existing.id.as_str()))
        .exec(&txn)
        .await?;
    connections::Entity::delete_by_id_in_tenant(&ctx.tenant_id, &existing.id)
        .exec(&txn)
        .await?;
    audit::log(&txn, ctx, "connection.delete", "connection", id).await?;
    txn.commit().await?;
    Ok(())
}

pub async fn test(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
) -> Result<ConnectionTestOut, ApiError> {
    let connection = find(state, ctx, id).await?;
    ctx.require(Role::Admin)?;
    if connection.provider != "sandbox" {
        let connector = state.connector();
        return Ok(match crm::check(connector, &connection).await {
            Ok(detail) => ConnectionTestOut {
                ok: true,
                detail,
                error_kind: None,
                vendor_status: None,
            },
            Err(error) => {
                if error.kind == crm::ErrorKind::Auth {
                    crm::session::mark_needs_reauth(&state.db, &connection.id, &error.message)
                        .await?;
                }
                ConnectionTestOut {
                    ok: false,
                    detail: error.message,
                    error_kind: Some(error.kind.as_str().into()),
                    vendor_status: error.vendor_status,
                }
            }
        });
    }
    let count = sandbox_records::Entity::find_in_tenant(&ctx.tenant_id)
        .filter(sandbox_records::Column::ConnectionId.eq(connection.id.as_str()))
        .all(&state.db)
        .await
        .map(|rows| rows.len());
    Ok(match count {
        Ok(count) => ConnectionTestOut {
            ok: connection.status == "active",
            detail: format!(
                "sandbox reachable, {count} records, status {}",
                connection.status
            ),
            error_kind: None,
            vendor_status: None,
        },
        Err(e) => ConnectionTestOut {
            ok: false,
            detail: format!("sandbox storage failed: {e}"),
            error_kind: Some("transient".into()),
            vendor_status: None,
        },
    })
}

pub async fn records(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
    object: Option<&str>,
    page: &Page,
) -> Result<(Vec<SandboxRecordOut>, bool), ApiError> {
    let connection = find(state, ctx, id).await?;
    if connection.provider != "sandbox" {
        return Err(ApiError::field(
            "id",
            "only sandbox connections hold records in Tributary",
        ));
    }
    let mut select = sandbox_records::Entity::find_in_tenant(&ctx.tenant_id)
        .filter(sandbox_records::Column::ConnectionId.eq(connection.id.as_str()));
    if let Some(object) = object {
        select = select.filter(sandbox_records::Column::Object.eq(object));
    }
    let (rows, has_more) = page
        .fetch(&state.db, select, sandbox_records::Column::Id)
        .await?;
    Ok((
        rows.into_iter()
            .map(|r| SandboxRecordOut {
                fields: serde_json::from_str(&r.fields).unwrap_or(Value::Null),
                id: r.id,
                object: r.object,
                created_at: r.created_at,
                updated_at: r.updated_at,
            })
            .collect(),
        has_more,
    ))
}
