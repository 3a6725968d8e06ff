//! One-click webhook endpoints: Tributary registers the account's `webhook_url` at Stripe with
//! exactly the event types the tenant's enabled flows need and the account's pinned API
//! version, keeps the endpoint's event types in step when flows change, and removes it when
//! the account goes. It never makes a second endpoint for the same URL (Stripe allows 16 per
//! account): it updates the one it made, or adopts one already registered for the URL. The
//! signing secret Stripe returns for a new endpoint is sealed as one of the account's secrets.

use std::collections::BTreeSet;

use entity::{Role, TenantOwned, flows, stripe_accounts, webhook_secrets};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use secrecy::SecretString;
use serde_json::Value;
use tributary_worker::flow::FlowSpec;
use tributary_worker::stripe::StripeApi;
use tributary_worker::stripe::client::{StripeError, StripeKey, list_param};
use tributary_worker::stripe::event_types::EVENT_TYPES;

use super::stripe_accounts::{
    MAX_WEBHOOK_SECRETS, StripeAccountOut, find, new_webhook_secret, render, secrets_of,
    stripe_failure, webhook_url,
};
use super::{audit, now};
use crate::error::ApiError;
use crate::extract::TenantContext;
use crate::state::AppState;

/// The exact event types a tenant's enabled flows trigger on: patterns such as
/// `customer.subscription.*` become the types they match; `*` stays `*`.
pub async fn wanted_events(
    db: &DatabaseConnection,
    tenant_id: &str,
) -> Result<Vec<String>, ApiError> {
    let mut wanted = BTreeSet::new();
    for row in flows::Entity::find_in_tenant(tenant_id)
        .filter(flows::Column::Enabled.eq(true))
        .all(db)
        .await?
    {
        let Ok(spec) = serde_json::from_str::<FlowSpec>(&row.spec) else {
            continue;
        };
        for pattern in &spec.trigger.events {
            if pattern == "*" {
                return Ok(vec!["*".into()]);
            }
            if pattern.ends_with(".*") {
                wanted.extend(
                    EVENT_TYPES
                        .iter()
                        .filter(|t| tributary_worker::flow::event_type_matches(pattern, t))
                        .map(|t| t.to_string()),
                );
            } else {
                wanted.insert(pattern.clone());
            }
        }
    }
    Ok(wanted.into_iter().collect())
}

/// Seals a new endpoint's signing secret as one of the account's (Stripe shows it only in
/// the answer that made the endpoint).
async fn keep_secret<C: sea_orm::ConnectionTrait>(
    db: &C,
    keyring: &tributary_worker::secrets::Keyring,
    account: &stripe_accounts::Model,
    endpoint: &Value,
) -> Result<(), ApiError> {
    if let Some(secret) = endpoint["secret"].as_str() {
        let row = new_webhook_secret(
            keyring,
            &account.tenant_id,
            &account.id,
            &SecretString::from(secret.to_string()),
        );
        webhook_secrets::Entity::insert(webhook_secrets::ActiveModel::from(row))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// What Stripe holds for this account now: the endpoint as registered, and whether it is new.
async fn sync(
    stripe: &StripeApi,
    key: &StripeKey,
    account: &stripe_accounts::Model,
    url: &str,
    events: &[String],
) -> Result<(Value, bool), StripeError> {
    let mut form = vec![("url".to_string(), url.to_string())];
    form.extend(list_param("enabled_events", events));
    let mut update = form.clone();
    // An endpoint adopted while disabled would stay silent.
    update.push(("disabled".into(), "false".into()));
    // Each sync is its own request: a key reused for the same events later would make Stripe
    // replay an old answer (keys live 24 h) instead of applying the change. A retried create
    // cannot duplicate the endpoint either way: it is looked up by URL first.
    let attempt = crate::services::new_id();
    // The endpoint made before, else one already registered for this URL.
    let mut existing = None;
    if let Some(id) = &account.webhook_endpoint_id {
        match stripe
            .client
            .get(key, &format!("/v1/webhook_endpoints/{id}"), &[])
            .await
        {
            Ok(endpoint) => existing = Some(endpoint),
            Err(e) if e.status == Some(404) => {}
            Err(e) => return Err(e),
        }
    }
    if existing.is_none() {
        let listed = stripe
            .client
            .get(
                key,
                "/v1/webhook_endpoints",
                &[("limit".into(), "100".into())],
            )
            .await?;
        existing = listed["data"]
            .as_array()
            .and_then(|all| all.iter().find(|e| e["url"] == url).cloned());
    }
    let pinned = account.api_version.as_deref();
    match existing {
        // Stripe cannot change an endpoint's API version; an endpoint on another one is
        // replaced below.
        Some(endpoint) if pinned.is_none() || endpoint["api_version"].as_str() == pinned => {
            let id = endpoint["id"].as_str().unwrap_or_default().to_string();
            let updated = stripe
                .client
                .post(
                    key,
                    &format!("/v1/webhook_endpoints/{id}"),
                    &update,
                    &format!("tributary-endpoint-{}-{attempt}", account.id),
                )
                .await?;
            Ok((updated, false))
        }
        stale => {
            if let Some(version) = pinned {
                form.push(("api_version".into(), version.into()));
            }
            form.push(("description".into(), format!("Tributary: {}", account.name)));
            form.push(("metadata[tributary_account]".into(), account.id.clone()));
            let created = stripe
                .client
                .post(
                    key,
                    "/v1/webhook_endpoints",
                    &form,
                    &format!("tributary-endpoint-new-{}-{attempt}", account.id),
                )
                .await?;
            if let Some(old) = stale.as_ref().and_then(|e| e["id"].as_str()) {
                let _ = stripe
                    .client
                    .delete(key, &format!("/v1/webhook_endpoints/{old}"))
                    .await;
            }
            Ok((created, true))
        }
    }
}

/// `POST /v1/stripe-accounts/{id}/register-webhook`.
pub async fn register(
    state: &AppState,
    ctx: &TenantContext,
    account_id: &str,
) -> Result<StripeAccountOut, ApiError> {
    let account = find(&state.db, ctx, account_id).await?;
    ctx.require(Role::Admin)?;
    let stripe = &state.pipeline.stripe;
    let key = stripe.key_of(&account).map_err(|_| {
        ApiError::field(
            "secret_key",
            "the account needs a secret key (or a restricted key with Webhook Endpoints write) to register its endpoint; PATCH it first",
        )
    })?;
    let events = wanted_events(&state.db, &ctx.tenant_id).await?;
    if events.is_empty() {
        return Err(ApiError::Conflict {
            detail: "no enabled flow triggers on any event yet, so there is nothing to ask Stripe for; create a flow first".into(),
            field: None,
        });
    }
    if account.webhook_endpoint_id.is_none()
        && secrets_of(&state.db, &ctx.tenant_id, &account.id)
            .await?
            .len()
            >= MAX_WEBHOOK_SECRETS
    {
        return Err(ApiError::Conflict {
            detail: format!(
                "the account holds {MAX_WEBHOOK_SECRETS} signing secrets already; retire one so the new endpoint's secret can be kept"
            ),
            field: None,
        });
    }
    let url = webhook_url(state, &account.webhook_token);
    let (endpoint, created) = sync(stripe, &key, &account, &url, &events)
        .await
        .map_err(stripe_failure)?;
    let endpoint_id = endpoint["id"].as_str().unwrap_or_default().to_string();
    let out = match store_registration(state, ctx, &account, &endpoint, created, &events).await {
        Ok(out) => out,
        Err(e) => {
            if created {
                // Its secret could not be kept: an endpoint nobody can verify must not stay.
                let _ = stripe
                    .client
                    .delete(&key, &format!("/v1/webhook_endpoints/{endpoint_id}"))
                    .await;
            }
            return Err(e);
        }
    };
    state.webhook_accounts.clear();
    tracing::info!(stripe_account_id = %out.id, endpoint = %endpoint_id, created, events = events.len(), "webhook endpoint registered at Stripe");
    Ok(out)
}

async fn store_registration(
    state: &AppState,
    ctx: &TenantContext,
    account: &stripe_accounts::Model,
    endpoint: &Value,
    created: bool,
    events: &[String],
) -> Result<StripeAccountOut, ApiError> {
    let endpoint_id = endpoint["id"].as_str().unwrap_or_default().to_string();
    let txn = tributary_worker::db::begin_write(&state.db).await?;
    if created {
        keep_secret(&txn, &state.keyring, account, endpoint).await?;
    }
    stripe_accounts::Entity::update_many()
        .set(stripe_accounts::ActiveModel {
            webhook_endpoint_id: sea_orm::Set(Some(endpoint_id)),
            webhook_endpoint_events: sea_orm::Set(Some(
                serde_json::to_string(events).unwrap_or_default(),
            )),
            webhook_registered_at: sea_orm::Set(Some(now())),
            webhook_sync_error: sea_orm::Set(None),
            updated_at: sea_orm::Set(now()),
            ..Default::default()
        })
        .filter(stripe_accounts::Column::Id.eq(account.id.as_str()))
        .exec(&txn)
        .await?;
    audit::log(
        &txn,
        ctx,
        "stripe_account.register_webhook",
        "stripe_account",
        &account.id,
    )
    .await?;
    let account = find(&txn, ctx, &account.id).await?;
    let out = render(&txn, state, account).await?;
    txn.commit().await?;
    Ok(out)
}

/// After flows change: brings every registered endpoint of the tenant up to the event types
/// its flows now need, in the background; a failure is kept as the account's `sync_error`.
pub fn resync_later(state: &AppState, tenant_id: &str) {
    let db = state.db.clone();
    let stripe = state.pipeline.stripe.clone();
    let public_url = state.settings.public_url.clone();
    let keyring = state.keyring.clone();
    let tenant_id = tenant_id.to_string();
    tokio::spawn(async move {
        if let Err(e) = resync(&db, &stripe, &keyring, &public_url, &tenant_id).await {
            tracing::warn!(tenant_id = %tenant_id, error = format!("{e:#}"), "bringing webhook endpoints up to date failed");
        }
    });
}

async fn resync(
    db: &DatabaseConnection,
    stripe: &StripeApi,
    keyring: &tributary_worker::secrets::Keyring,
    public_url: &str,
    tenant_id: &str,
) -> anyhow::Result<()> {
    let accounts = stripe_accounts::Entity::find_in_tenant(tenant_id)
        .filter(stripe_accounts::Column::WebhookEndpointId.is_not_null())
        .all(db)
        .await?;
    if accounts.is_empty() {
        return Ok(());
    }
    let events = wanted_events(db, tenant_id)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for account in accounts {
        let current: Vec<String> = account
            .webhook_endpoint_events
            .as_deref()
            .and_then(|e| serde_json::from_str(e).ok())
            .unwrap_or_default();
        if current == events || events.is_empty() {
            continue;
        }
        let url = format!("{public_url}/webhooks/stripe/{}", account.webhook_token);
        let outcome = match stripe.key_of(&account) {
            Ok(key) => sync(stripe, &key, &account, &url, &events).await,
            Err(e) => Err(e),
        };
        let mut update = stripe_accounts::ActiveModel {
            updated_at: sea_orm::Set(now()),
            ..Default::default()
        };
        // The new secret and the endpoint it belongs to are kept together, or neither.
        let txn = tributary_worker::db::begin_write(db).await?;
        match outcome {
            Ok((endpoint, created)) => {
                if created {
                    // The endpoint vanished at Stripe, or its API version changed: the new
                    // one's secret is shown only now, so it is kept now.
                    keep_secret(&txn, keyring, &account, &endpoint)
                        .await
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                }
                update.webhook_sync_error = sea_orm::Set(None);
                update.webhook_endpoint_id =
                    sea_orm::Set(endpoint["id"].as_str().map(str::to_string));
                update.webhook_endpoint_events =
                    sea_orm::Set(Some(serde_json::to_string(&events)?));
            }
            Err(e) => update.webhook_sync_error = sea_orm::Set(Some(e.to_string())),
        }
        stripe_accounts::Entity::update_many()
            .set(update)
            .filter(stripe_accounts::Column::Id.eq(account.id.as_str()))
            .exec(&txn)
            .await?;
        txn.commit().await?;
    }
    Ok(())
}
