//! Stripe accounts and their webhook signing secrets. Keys and secrets are sealed with the
//! keyring before they touch the database; responses carry only their last four characters.

use entity::{Role, TenantOwned, stripe_accounts, webhook_secrets};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize};
use tributary_worker::sealed;
use tributary_worker::stripe::client::StripeKey;
use tributary_worker::stripe::{key_livemode, mode_name};
use utoipa::ToSchema;

use super::fields::{
    Name, StripeApiVersion, StripeSecretKey, WebhookSigningSecret, is_api_version,
    is_signing_secret, is_stripe_secret_key,
};
use super::{audit, check_name, new_id, now};
use crate::error::{ApiError, FieldError};
use crate::extract::{IfMatch, Page, TenantContext, Validate};
use crate::state::AppState;
use tributary_worker::secrets::{Keyring, SecretContext, last4, random_token};

pub const DEFAULT_TOLERANCE_SECONDS: i64 = 300;
/// At most this many signing secrets are active at once (enough for any rotation).
pub const MAX_WEBHOOK_SECRETS: usize = 10;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StripeAccountIn {
    #[schema(value_type = Name, example = "Acme live")]
    pub name: String,
    /// A secret (`sk_…`) or restricted (`rk_…`) API key; its prefix gives the account its
    /// `livemode`.
    #[schema(value_type = Option<StripeSecretKey>)]
    pub secret_key: Option<SecretString>,
    /// Stripe's mode: `true` live, `false` test. Taken from `secret_key` when one is given
    /// (`sk_live_`/`rk_live_` live, `sk_test_`/`rk_test_` test): then leave it out or make it
    /// agree. For an account with only a signing secret, say it here; left out, the mode stays
    /// unknown (`null`) and events of either mode are taken.
    pub livemode: Option<bool>,
    /// The endpoint's signing secret (`whsec_…`); more can be added for rotation.
    #[schema(value_type = Option<WebhookSigningSecret>)]
    pub webhook_secret: Option<SecretString>,
    /// The Stripe API version the endpoint is pinned to.
    #[schema(value_type = Option<StripeApiVersion>, example = "2024-06-20")]
    pub api_version: Option<String>,
    /// How old a signed webhook may be, in seconds (default 300).
    #[schema(minimum = 1, maximum = 86400)]
    pub tolerance_seconds: Option<i64>,
}

impl Validate for StripeAccountIn {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        check_name("name", &self.name, &mut errors);
        if let Some(key) = &self.secret_key {
            check_secret_key(key, &mut errors);
            check_agrees(key, self.livemode, &mut errors);
        }
        if let Some(secret) = &self.webhook_secret {
            check_signing_secret("webhook_secret", secret, &mut errors);
        }
        if let Some(version) = &self.api_version {
            check_api_version(version, &mut errors);
        }
        if let Some(seconds) = self.tolerance_seconds {
            check_tolerance(seconds, &mut errors);
        }
        super::valid(errors)
    }
}

/// Absent fields stay as they are; `null` clears `secret_key` or `api_version`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StripeAccountPatch {
    #[schema(value_type = Option<Name>)]
    pub name: Option<String>,
    /// A new API key, of the account's mode: a key of the other mode is refused with 409 (an
    /// account never changes mode; register the other mode's account separately). Clearing
    /// the key keeps the mode.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<StripeSecretKey>)]
    pub secret_key: Option<Option<SecretString>>,
    /// The mode of an account whose mode is unknown (`true` live, `false` test). The account's
    /// own mode again changes nothing; the other one is refused with 409. With `secret_key` it
    /// must agree with the key's prefix.
    pub livemode: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<StripeApiVersion>)]
    pub api_version: Option<Option<String>>,
    #[schema(minimum = 1, maximum = 86400)]
    pub tolerance_seconds: Option<i64>,
}

fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

impl Validate for StripeAccountPatch {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        if let Some(name) = &self.name {
            check_name("name", name, &mut errors);
        }
        if let Some(Some(key)) = &self.secret_key {
            check_secret_key(key, &mut errors);
            check_agrees(key, self.livemode, &mut errors);
        }
        if let Some(Some(version)) = &self.api_version {
            check_api_version(version, &mut errors);
        }
        if let Some(seconds) = self.tolerance_seconds {
            check_tolerance(seconds, &mut errors);
        }
        super::valid(errors)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookSecretIn {
    /// The signing secret (`whsec_…`).
    #[schema(value_type = WebhookSigningSecret)]
    pub secret: SecretString,
}

impl Validate for WebhookSecretIn {
    fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        check_signing_secret("secret", &self.secret, &mut errors);
        super::valid(errors)
    }
}

/// A signing secret, known by its last four characters only.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookSecretOut {
    pub id: String,
    pub last4: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl From<webhook_secrets::Model> for WebhookSecretOut {
    fn from(s: webhook_secrets::Model) -> Self {
        WebhookSecretOut {
            id: s.id,
            last4: s.last4,
            created_at: s.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StripeAccountOut {
    pub id: String,
    pub name: String,
    /// Where Stripe must send this account's events.
    #[schema(example = "https://tributary.example.com/webhooks/stripe/3q2-7wE…")]
    pub webhook_url: String,
    /// The last four characters of the API key, if one is stored.
    pub secret_key_last4: Option<String>,
    /// Stripe's mode: `true` live, `false` test, `null` not known (an account with only a
    /// signing secret that was not told: it takes events of either mode). A webhook whose
    /// `livemode` is not the account's is refused with 400 and stored nowhere; the mode never
    /// changes.
    pub livemode: Option<bool>,
    pub api_version: Option<String>,
    pub tolerance_seconds: i64,
    /// The active signing secrets; a webhook verifies if it matches any of them.
    pub webhook_secrets: Vec<WebhookSecretOut>,
    /// The endpoint registered at Stripe with `POST …/register-webhook`, if any.
    pub webhook_endpoint: Option<WebhookEndpointOut>,
    /// Scheduled reconciliation against Stripe's events (accounts with a secret key).
    pub reconciliation: ReconciliationOut,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// The webhook endpoint Tributary keeps at Stripe for an account.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookEndpointOut {
    /// Stripe's id (`we_…`).
    pub id: String,
    /// The event types Stripe sends: what the tenant's enabled flows need, kept up to date as
    /// flows change.
    pub enabled_events: Vec<String>,
    pub registered_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Why the last update of the endpoint at Stripe failed, until one succeeds.
    pub sync_error: Option<String>,
}

/// What reconciliation did for an account.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReconciliationOut {
    /// When it last ran (or, before the first run, when the account was first seen).
    pub last_run_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Events it found missing from the inbox and ingested, over the account's life.
    pub repaired: i32,
    /// The backfill of its latest run (`GET …/backfills/{id}`).
    pub last_backfill_id: Option<String>,
}

const KEY_SHAPE: &str = "must be a Stripe secret key as Stripe's dashboard shows it: sk_test_…, \
    sk_live_…, rk_test_… or rk_live_… (the prefix gives the account its livemode), with at \
    least 9 letters, digits or underscores after sk_ or rk_ (at most 255 characters in all); \
    leave it out to receive webhooks only";
const KEY_WITHOUT_MODE: &str = "names no mode: a Stripe key starts sk_test_, sk_live_, rk_test_ \
    or rk_live_, and the account's livemode is taken from it; paste the key as Stripe's \
    dashboard shows it";

fn check_secret_key(key: &SecretString, errors: &mut Vec<FieldError>) {
    let key = key.expose_secret();
    if is_stripe_secret_key(key) {
        return;
    }
    let modeless =
        (key.starts_with("sk_") || key.starts_with("rk_")) && key_livemode(key).is_none();
    let message = if modeless {
        KEY_WITHOUT_MODE
    } else {
        KEY_SHAPE
    };
    errors.push(FieldError::new("secret_key", message));
}

/// A `livemode` sent beside a key must be the key's.
fn check_agrees(key: &SecretString, livemode: Option<bool>, errors: &mut Vec<FieldError>) {
    if let (Some(given), Some(of_key)) = (livemode, key_livemode(key.expose_secret()))
        && given != of_key
    {
        errors.push(FieldError::new(
            "livemode",
            format!(
                "contradicts secret_key: a {} key makes a {}-mode account (livemode {of_key}); \
                 leave livemode out or make it {of_key}",
                mode_name(of_key),
                mode_name(of_key),
            ),
        ));
    }
}

/// The account's mode: as stored, or else from its key's prefix. An account from before modes
/// were kept has it only there, sealed: it is opened here (in memory, no database) and written
/// down by its next `PATCH`, backfill or reconciliation.
pub fn livemode_of(keyring: &Keyring, account: &stripe_accounts::Model) -> Option<bool> {
    account.livemode.or_else(|| {
        StripeKey::open(keyring, account)
            .ok()
            .flatten()
            .and_then(|key| key.livemode())
    })
}

/// The mode an update leaves the account in, refusing a change of mode (409).
fn mode_after(known: Option<bool>, patch: &StripeAccountPatch) -> Result<Option<bool>, ApiError> {
    let (wanted, field) = match (&patch.secret_key, patch.livemode) {
        (Some(Some(key)), _) => (key_livemode(key.expose_secret()), "secret_key"),
        (_, livemode) => (livemode, "livemode"),
    };
    match (known, wanted) {
        (Some(known), Some(wanted)) if known != wanted => Err(ApiError::Conflict {
            detail: format!(
                "this Stripe account is in {} mode (livemode {known}) and an account never \
                 changes mode, so {} and {} events never mix; register the {} mode as another \
                 account (POST /v1/stripe-accounts)",
                mode_name(known),
                mode_name(known),
                mode_name(wanted),
                mode_name(wanted),
            ),
            field: Some(field.into()),
        }),
        _ => Ok(known.or(wanted)),
    }
}

fn check_signing_secret(field: &str, secret: &SecretString, errors: &mut Vec<FieldError>) {
    if !is_signing_secret(secret.expose_secret()) {
        errors.push(FieldError::new(
            field,
            "must be a Stripe webhook signing secret: whsec_ and then at least 8 characters, \
             without spaces (at most 255 characters; the endpoint's secret in Stripe's \
             dashboard, or any such value to try test events)",
        ));
    }
}

fn check_api_version(version: &str, errors: &mut Vec<FieldError>) {
    if !is_api_version(version) {
        errors.push(FieldError::new(
            "api_version",
            "must be a Stripe API version such as 2024-06-20 or 2025-03-31.basil",
        ));
    }
}

fn check_tolerance(seconds: i64, errors: &mut Vec<FieldError>) {
    if !(1..=86_400).contains(&seconds) {
        errors.push(FieldError::new(
            "tolerance_seconds",
            "must be from 1 to 86400",
        ));
    }
}

pub fn webhook_url(state: &AppState, token: &str) -> String {
    format!("{}/webhooks/stripe/{token}", state.settings.public_url)
}

fn seal_secret_key(
    keyring: &Keyring,
    tenant_id: &str,
    account_id: &str,
    key: &SecretString,
) -> String {
    keyring.seal(
        key.expose_secret(),
        &SecretContext {
            tenant_id,
            purpose: sealed::STRIPE_SECRET_KEY,
            row_id: account_id,
        },
    )
}

pub fn new_webhook_secret(
    keyring: &Keyring,
    tenant_id: &str,
    account_id: &str,
    secret: &SecretString,
) -> webhook_secrets::Model {
    let id = new_id();
    let sealed = keyring.seal(
        secret.expose_secret(),
        &SecretContext {
            tenant_id,
            purpose: sealed::WEBHOOK_SECRET,
            row_id: &id,
        },
    );
    webhook_secrets::Model {
        id,
        tenant_id: tenant_id.to_string(),
        stripe_account_id: account_id.to_string(),
        secret: sealed,
        last4: last4(secret.expose_secret()),
        created_at: now(),
    }
}

pub async fn secrets_of<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
    account_id: &str,
) -> Result<Vec<webhook_secrets::Model>, ApiError> {
    Ok(webhook_secrets::Entity::find_in_tenant(tenant_id)
        .filter(webhook_secrets::Column::StripeAccountId.eq(account_id))
        .order_by_asc(webhook_secrets::Column::Id)
        .all(db)
        .await?)
}

pub async fn render<C: ConnectionTrait>(
    db: &C,
    state: &AppState,
    account: stripe_accounts::Model,
) -> Result<StripeAccountOut, ApiError> {
    let secrets = secrets_of(db, &account.tenant_id, &account.id).await?;
    let livemode = livemode_of(&state.keyring, &account);
    Ok(StripeAccountOut {
        webhook_url: webhook_url(state, &account.webhook_token),
        id: account.id,
        name: account.name,
        livemode,
        secret_key_last4: account.secret_key_last4,
        api_version: account.api_version,
        tolerance_seconds: account.tolerance_seconds,
        webhook_secrets: secrets.into_iter().map(WebhookSecretOut::from).collect(),
        webhook_endpoint: account.webhook_endpoint_id.map(|id| WebhookEndpointOut {
            id,
            enabled_events: account
                .webhook_endpoint_events
                .as_deref()
                .and_then(|e| serde_json::from_str(e).ok())
                .unwrap_or_default(),
            registered_at: account.webhook_registered_at,
            sync_error: account.webhook_sync_error,
        }),
        reconciliation: ReconciliationOut {
            last_run_at: account.reconciled_at,
            repaired: account.reconcile_repaired,
            last_backfill_id: account.last_reconciliation_id,
        },
        created_at: account.created_at,
        updated_at: account.updated_at,
    })
}

/// Refuses (409, naming `field`) a Stripe account of mode `livemode` in the environment `ctx`
/// acts in, when that is the other mode and the environment has not opted in: test-mode
/// accounts stay out of `production`, so their events never reach its CRMs, and live ones stay
/// out of the rest. An account whose mode is unknown is taken anywhere. `db` is the
/// transaction that then writes the account.
pub async fn check_mode<C: ConnectionTrait>(
    db: &C,
    ctx: &TenantContext,
    livemode: Option<bool>,
    field: &str,
) -> Result<(), ApiError> {
    let production = ctx.environment == tributary_worker::PRODUCTION;
    let Some(livemode) = livemode.filter(|live| *live != production) else {
        return Ok(());
    };
    // Locked until the caller commits, as `environments::update` locks it to turn
    // `mixed_modes` off: one waits for the other, so an account of the other mode is never
    // added to an environment that has just stopped taking them.
    let environment = entity::tenants::Entity::find_by_id(ctx.tenant_id.clone())
        .lock_exclusive()
        .one(db)
        .await?
        .ok_or(ApiError::NotFound)?;
    if environment.mixed_modes {
        return Ok(());
    }
    let (mode, home) = if livemode {
        ("a live-mode", "production")
    } else {
        (
            "a test-mode",
            "a development or staging environment (header Tributary-Environment)",
        )
    };
    Err(ApiError::Conflict {
        detail: format!(
            "the {name} environment takes {own}-mode Stripe accounts only, and this is {mode} \
             one; register it in {home}, or let {name} hold both modes with PATCH \
             /v1/environments/{name} {{\"mixed_modes\": true}}",
            name = ctx.environment,
            own = if production { "live" } else { "test" },
        ),
        field: Some(field.into()),
    })
}

pub async fn find<C: ConnectionTrait>(
    db: &C,
    ctx: &TenantContext,
    id: &str,
) -> Result<stripe_accounts::Model, ApiError> {
    super::owned::<stripe_accounts::Entity, _>(db, ctx, id).await
}

pub async fn create(
    state: &AppState,
    ctx: &TenantContext,
    input: StripeAccountIn,
) -> Result<StripeAccountOut, ApiError> {
    ctx.require(Role::Admin)?;
    let from_key = input
        .secret_key
        .as_ref()
        .and_then(|key| key_livemode(key.expose_secret()));
    let field = if from_key.is_some() {
        "secret_key"
    } else {
        "livemode"
    };
    let livemode = from_key.or(input.livemode);
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    check_mode(&txn, ctx, livemode, field).await?;
    let id = new_id();
    let at = now();
    let account = stripe_accounts::Model {
        id: id.clone(),
        tenant_id: ctx.tenant_id.clone(),
        name: input.name.trim().to_string(),
        webhook_token: random_token::<24>(),
        secret_key: input
            .secret_key
            .as_ref()
            .map(|key| seal_secret_key(&state.keyring, &ctx.tenant_id, &id, key)),
        secret_key_last4: input.secret_key.as_ref().map(|k| last4(k.expose_secret())),
        api_version: input.api_version,
        tolerance_seconds: input.tolerance_seconds.unwrap_or(DEFAULT_TOLERANCE_SECONDS),
        webhook_endpoint_id: None,
        webhook_endpoint_events: None,
        webhook_registered_at: None,
        webhook_sync_error: None,
        reconciled_at: None,
        reconcile_repaired: 0,
        last_reconciliation_id: None,
        livemode,
        created_at: at,
        updated_at: at,
    };
    stripe_accounts::Entity::insert(stripe_accounts::ActiveModel::from(account.clone()))
        .exec(&txn)
        .await?;
    if let Some(secret) = &input.webhook_secret {
        let row = new_webhook_secret(&state.keyring, &ctx.tenant_id, &id, secret);
        webhook_secrets::Entity::insert(webhook_secrets::ActiveModel::from(row))
            .exec(&txn)
            .await?;
    }
    audit::log(&txn, ctx, "stripe_account.create", "stripe_account", &id).await?;
    let out = render(&txn, state, account).await?;
    txn.commit().await?;
    Ok(out)
}

pub async fn list(
    state: &AppState,
    ctx: &TenantContext,
    page: &Page,
) -> Result<(Vec<StripeAccountOut>, bool), ApiError> {
    let (rows, has_more) = page
        .fetch(
            &state.db,
            stripe_accounts::Entity::find_in_tenant(&ctx.tenant_id),
            stripe_accounts::Column::Id,
        )
        .await?;
    let mut data = Vec::with_capacity(rows.len());
    for row in rows {
        data.push(render(&state.db, state, row).await?);
    }
    Ok((data, has_more))
}

pub async fn get(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
) -> Result<StripeAccountOut, ApiError> {
    let account = find(&state.db, ctx, id).await?;
    render(&state.db, state, account).await
}

pub async fn update(
    state: &AppState,
    ctx: &TenantContext,
    id: &str,
    patch: StripeAccountPatch,
    if_match: &IfMatch,
) -> Result<StripeAccountOut, ApiError> {
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    let account = super::owned_for_update::<stripe_accounts::Entity, _>(&txn, ctx, id).await?;
    ctx.require(Role::Admin)?;
    if_match.check(
        &render(&txn, state, account.clone()).await?,
        "Stripe account",
    )?;
    let known = livemode_of(&state.keyring, &account);
    let livemode = mode_after(known, &patch)?;
    if known.is_none() {
        let field = if matches!(patch.secret_key, Some(Some(_))) {
            "secret_key"
        } else {
            "livemode"
        };
        check_mode(&txn, ctx, livemode, field).await?;
    }
    let mut active: stripe_accounts::ActiveModel = account.into();
    active.livemode = Set(livemode);
    if let Some(name) = patch.name {
        active.name = Set(name.trim().to_string());
    }
    if let Some(key) = patch.secret_key {
        active.secret_key_last4 = Set(key.as_ref().map(|k| last4(k.expose_secret())));
        active.secret_key =
            Set(key.map(|k| seal_secret_key(&state.keyring, &ctx.tenant_id, id, &k)));
    }
    if let Some(version) = patch.api_version {
        active.api_version = Set(version);
    }
    if let Some(seconds) = patch.tolerance_seconds {
        active.tolerance_seconds = Set(seconds);
    }
    active.updated_at = Set(now());
    let updated = active.update(&txn).await?;
    audit::log(&txn, ctx, "stripe_account.update", "stripe_account", id).await?;
    let out = render(&txn, state, updated).await?;
    txn.commit().await?;
    state.webhook_accounts.clear();
    Ok(out)
}

pub async fn delete(state: &AppState, ctx: &TenantContext, id: &str) -> Result<(), ApiError> {
    let account = find(&state.db, ctx, id).await?;
    ctx.require(Role::Admin)?;
    // Stripe forgets the endpoint first, so it stops sending to a URL that no longer answers.
    remove_endpoint(state, &account).await?;
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    let account = find(&txn, ctx, id).await?;
    entity::backfills::Entity::delete_many()
        .filter(entity::backfills::Column::TenantId.eq(ctx.tenant_id.as_str()))
        .filter(entity::backfills::Column::StripeAccountId.eq(account.id.as_str()))
        .exec(&txn)
        .await?;
    webhook_secrets::Entity::delete_many()
        .filter(webhook_secrets::Column::TenantId.eq(ctx.tenant_id.as_str()))
        .filter(webhook_secrets::Column::StripeAccountId.eq(account.id.as_str()))
        .exec(&txn)
        .await?;
    stripe_accounts::Entity::delete_by_id_in_tenant(&ctx.tenant_id, &account.id)
        .exec(&txn)
        .await?;
    audit::log(&txn, ctx, "stripe_account.delete", "stripe_account", id).await?;
    txn.commit().await?;
    state.webhook_accounts.clear();
    Ok(())
}

pub async fn add_webhook_secret(
    state: &AppState,
    ctx: &TenantContext,
    account_id: &str,
    input: WebhookSecretIn,
) -> Result<WebhookSecretOut, ApiError> {
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    let account = find(&txn, ctx, account_id).await?;
    ctx.require(Role::Admin)?;
    if secrets_of(&txn, &ctx.tenant_id, &account.id).await?.len() >= MAX_WEBHOOK_SECRETS {
        return Err(ApiError::Conflict {
            detail: format!(
                "an account holds at most {MAX_WEBHOOK_SECRETS} signing secrets; retire one first"
            ),
            field: None,
        });
    }
    let row = new_webhook_secret(&state.keyring, &ctx.tenant_id, &account.id, &input.secret);
    webhook_secrets::Entity::insert(webhook_secrets::ActiveModel::from(row.clone()))
        .exec(&txn)
        .await?;
    audit::log(
        &txn,
        ctx,
        "webhook_secret.create",
        "webhook_secret",
        &row.id,
    )
    .await?;
    txn.commit().await?;
    state.webhook_accounts.clear();
    Ok(row.into())
}

/// One signing secret of an account (its last four characters).
pub async fn get_webhook_secret(
    state: &AppState,
    ctx: &TenantContext,
    account_id: &str,
    secret_id: &str,
) -> Result<WebhookSecretOut, ApiError> {
    let account = find(&state.db, ctx, account_id).await?;
    webhook_secrets::Entity::find_by_id_in_tenant(&ctx.tenant_id, secret_id)
        .filter(webhook_secrets::Column::StripeAccountId.eq(account.id.as_str()))
        .one(&state.db)
        .await?
        .map(WebhookSecretOut::from)
        .ok_or(ApiError::NotFound)
}

pub async fn delete_webhook_secret(
    state: &AppState,
    ctx: &TenantContext,
    account_id: &str,
    secret_id: &str,
) -> Result<(), ApiError> {
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    let account = find(&txn, ctx, account_id).await?;
    let deleted = webhook_secrets::Entity::find_by_id_in_tenant(&ctx.tenant_id, secret_id)
        .filter(webhook_secrets::Column::StripeAccountId.eq(account.id.as_str()))
        .one(&txn)
        .await?
        .ok_or(ApiError::NotFound)?;
    ctx.require(Role::Admin)?;
    webhook_secrets::Entity::delete_by_id_in_tenant(&ctx.tenant_id, &deleted.id)
        .exec(&txn)
        .await?;
    audit::log(
        &txn,
        ctx,
        "webhook_secret.delete",
        "webhook_secret",
        &deleted.id,
    )
    .await?;
    txn.commit().await?;
    state.webhook_accounts.clear();
    Ok(())
}

/// What a refusal from Stripe becomes: a bad key names `secret_key`.
pub(crate) fn stripe_failure(error: tributary_worker::stripe::client::StripeError) -> ApiError {
    let mut detail = format!("Stripe refused: {error}");
    if error.is_missing_permission() {
        detail.push_str(
            " — a restricted key needs the Webhook Endpoints write permission (rak_webhook_write)",
        );
    }
    match error.status {
        Some(401 | 403) => ApiError::field("secret_key", detail),
        Some(400 | 404) => ApiError::Conflict {
            detail,
            field: None,
        },
        _ => ApiError::BadGateway(detail),
    }
}

/// Deletes the account's endpoint at Stripe, if it registered one. One that is already gone
/// is fine; any other refusal stops the deletion, so no endpoint is left sending to nowhere.
async fn remove_endpoint(
    state: &AppState,
    account: &stripe_accounts::Model,
) -> Result<(), ApiError> {
    let Some(id) = &account.webhook_endpoint_id else {
        return Ok(());
    };
    let stripe = &state.pipeline.stripe;
    let Ok(key) = stripe.key_of(account) else {
        return Ok(());
    };
    match stripe
        .client
        .delete(&key, &format!("/v1/webhook_endpoints/{id}"))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.status == Some(404) => Ok(()),
        Err(e) if matches!(e.status, Some(401 | 403)) => {
            // The key no longer works: Stripe cannot be asked, and the account may still go.
            tracing::warn!(stripe_account_id = %account.id, endpoint = %id, error = %e, "the endpoint could not be deleted at Stripe; remove it in the dashboard");
            Ok(())
        }
        Err(e) => Err(stripe_failure(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(check: impl Fn(&SecretString, &mut Vec<FieldError>), value: &str) -> Option<String> {
        let mut errors = Vec::new();
        check(&SecretString::from(value), &mut errors);
        errors.pop().map(|e| e.message)
    }

    /// A placeholder that looks right but is too short is refused with the rule spelled out.
    #[test]
    fn refusals_say_the_rule() {
        let message = refused(check_secret_key, "sk_test_123").unwrap();
        assert!(
            message.contains("at least 9") && message.contains("leave it out"),
            "{message}"
        );
        assert_eq!(refused(check_secret_key, "sk_test_123456789"), None);
        let message = refused(check_secret_key, "sk_abcdefghijkl").unwrap();
        assert!(message.contains("names no mode"), "{message}");
        let message = refused(
            |s, e| check_signing_secret("webhook_secret", s, e),
            "whsec_123",
        )
        .unwrap();
        assert!(message.contains("at least 8 characters"), "{message}");
        assert_eq!(
            refused(
                |s, e| check_signing_secret("webhook_secret", s, e),
                "whsec_quickstart_secret"
            ),
            None
        );
    }
}
