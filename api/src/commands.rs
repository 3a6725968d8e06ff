//! Operator commands besides serving: key rotation, over every sealed column (Stripe keys and
//! signing secrets, connection credentials and sessions, PKCE verifiers, notification channels,
//! the seeds of generated secrets, the answers kept for idempotency keys).

use anyhow::Context;
use entity::{
    connections, event_seeds, idempotency_keys, notification_channels, oauth_states,
    stripe_accounts, webhook_secrets,
};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use crate::secrets::{Keyring, SecretContext};
use crate::services::idempotency::RESPONSE_PURPOSE;
use crate::services::oauth::VERIFIER_PURPOSE;
use crate::services::stripe_accounts::{SECRET_KEY_PURPOSE, WEBHOOK_SECRET_PURPOSE};
use tributary_worker::alerts::{SECRET_PURPOSE as CHANNEL_SECRET_PURPOSE, URL_PURPOSE};
use tributary_worker::crm::session::{CREDENTIALS_PURPOSE, SESSION_PURPOSE};
use tributary_worker::engine::EVENT_SEED_PURPOSE;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct RotationReport {
    /// Secrets re-encrypted under the current key.
    pub resealed: usize,
    /// Secrets already under the current key.
    pub current: usize,
}

impl RotationReport {
    /// The value sealed under the current key, or `None` if it already is.
    fn reseal(
        &mut self,
        keyring: &Keyring,
        sealed: &str,
        context: &SecretContext<'_>,
    ) -> anyhow::Result<Option<String>> {
        if Keyring::key_id_of(sealed) == Some(keyring.current_key_id()) {
            self.current += 1;
            return Ok(None);
        }
        let plain = keyring.open(sealed, context)?;
        self.resealed += 1;
        Ok(Some(keyring.seal(crate::secrets::expose(&plain), context)))
    }

    /// [`Self::reseal`] for an optional column: `Some(new value)` only when it changed.
    fn reseal_opt(
        &mut self,
        keyring: &Keyring,
        sealed: Option<&str>,
        context: &SecretContext<'_>,
    ) -> anyhow::Result<Option<String>> {
        match sealed {
            Some(sealed) => self.reseal(keyring, sealed, context),
            None => Ok(None),
        }
    }
}

fn context<'a>(tenant_id: &'a str, purpose: &'a str, row_id: &'a str) -> SecretContext<'a> {
    SecretContext {
        tenant_id,
        purpose,
        row_id,
    }
}

/// Re-encrypts every stored secret under the keyring's current key, in one transaction: if any
/// secret cannot be opened (its key was removed), nothing changes and the error names it.
pub async fn rotate_keys(
    db: &DatabaseConnection,
    keyring: &Keyring,
) -> anyhow::Result<RotationReport> {
    let mut report = RotationReport::default();
    let txn = crate::db::begin_write(db).await?;

    for account in stripe_accounts::Entity::find().all(&txn).await? {
        let Some(sealed) = account.secret_key.as_deref() else {
            continue;
        };
        let context = SecretContext {
            tenant_id: &account.tenant_id,
            purpose: SECRET_KEY_PURPOSE,
            row_id: &account.id,
        };
        let resealed = report
            .reseal(keyring, sealed, &context)
            .with_context(|| format!("stripe account {}: secret key", account.id))?;
        if let Some(resealed) = resealed {
            let mut active: stripe_accounts::ActiveModel = account.into();
            active.secret_key = Set(Some(resealed));
            active.update(&txn).await?;
        }
    }

    for secret in webhook_secrets::Entity::find().all(&txn).await? {
        let context = SecretContext {
            tenant_id: &secret.tenant_id,
            purpose: WEBHOOK_SECRET_PURPOSE,
            row_id: &secret.id,
        };
        let resealed = report
            .reseal(keyring, &secret.secret, &context)
            .with_context(|| format!("webhook secret {}", secret.id))?;
        if let Some(resealed) = resealed {
            let mut active: webhook_secrets::ActiveModel = secret.into();
            active.secret = Set(resealed);
            active.update(&txn).await?;
        }
    }

    for connection in connections::Entity::find().all(&txn).await? {
        let (tenant, id) = (&connection.tenant_id, &connection.id);
        let credentials = report
            .reseal_opt(
                keyring,
                connection.credentials.as_deref(),
                &context(tenant, CREDENTIALS_PURPOSE, id),
            )
            .with_context(|| format!("connection {id}: credentials"))?;
        let session = report
            .reseal_opt(
                keyring,
                connection.session.as_deref(),
                &context(tenant, SESSION_PURPOSE, id),
            )
            .with_context(|| format!("connection {id}: session"))?;
        // Each column is written only if it still holds what was read: a token a worker
        // refreshed meanwhile (already under the current key) is never overwritten.
        for (column, old, new) in [
            (
                connections::Column::Credentials,
                connection.credentials.clone(),
                credentials,
            ),
            (
                connections::Column::Session,
                connection.session.clone(),
                session,
            ),
        ] {
            let (Some(old), Some(new)) = (old, new) else {
                continue;
            };
            connections::Entity::update_many()
                .col_expr(column, sea_orm::sea_query::Expr::value(new))
                .filter(connections::Column::Id.eq(connection.id.as_str()))
                .filter(column.eq(old))
                .exec(&txn)
                .await?;
        }
    }

    for state in oauth_states::Entity::find().all(&txn).await? {
        let resealed = report
            .reseal_opt(
                keyring,
                state.verifier.as_deref(),
                &context(&state.tenant_id, VERIFIER_PURPOSE, &state.id),
            )
            .with_context(|| format!("OAuth authorization {}: PKCE verifier", state.id))?;
        if let Some(resealed) = resealed {
            let mut active: oauth_states::ActiveModel = state.into();
            active.verifier = Set(Some(resealed));
            active.update(&txn).await?;
        }
    }

    for channel in notification_channels::Entity::find().all(&txn).await? {
        let (tenant, id) = (&channel.tenant_id, &channel.id);
        let url = report
            .reseal(keyring, &channel.url, &context(tenant, URL_PURPOSE, id))
            .with_context(|| format!("notification channel {id}: URL"))?;
        let secret = report
            .reseal_opt(
                keyring,
                channel.secret.as_deref(),
                &context(tenant, CHANNEL_SECRET_PURPOSE, id),
            )
            .with_context(|| format!("notification channel {id}: secret"))?;
        if url.is_some() || secret.is_some() {
            let mut active: notification_channels::ActiveModel = channel.into();
            if let Some(url) = url {
                active.url = Set(url);
            }
            if let Some(secret) = secret {
                active.secret = Set(Some(secret));
            }
            active.update(&txn).await?;
        }
    }

    for seed in event_seeds::Entity::find().all(&txn).await? {
        let resealed = report
            .reseal(
                keyring,
                &seed.seed,
                &context(&seed.tenant_id, EVENT_SEED_PURPOSE, &seed.event_id),
            )
            .with_context(|| format!("event {}: seed of generated secrets", seed.event_id))?;
        if let Some(resealed) = resealed {
            let mut active: event_seeds::ActiveModel = seed.into();
            active.seed = Set(resealed);
            active.update(&txn).await?;
        }
    }

    // Kept answers can be many and large: a page at a time.
    let mut after = String::new();
    loop {
        let page = idempotency_keys::Entity::find()
            .filter(idempotency_keys::Column::Id.gt(after.as_str()))
            .filter(idempotency_keys::Column::Response.is_not_null())
            .order_by_asc(idempotency_keys::Column::Id)
            .limit(200)
            .all(&txn)
            .await?;
        let Some(last) = page.last() else { break };
        after = last.id.clone();
        for kept in page {
            reseal_kept_answer(&txn, keyring, &mut report, kept).await?;
        }
    }

    txn.commit().await?;
    Ok(report)
}

async fn reseal_kept_answer(
    txn: &sea_orm::DatabaseTransaction,
    keyring: &Keyring,
    report: &mut RotationReport,
    kept: idempotency_keys::Model,
) -> anyhow::Result<()> {
    let resealed = report
        .reseal_opt(
            keyring,
            kept.response.as_deref(),
            &context(&kept.tenant_id, RESPONSE_PURPOSE, &kept.id),
        )
        .with_context(|| format!("idempotency key {}: kept answer", kept.id))?;
    if let Some(resealed) = resealed {
        let mut active: idempotency_keys::ActiveModel = kept.into();
        active.response = Set(Some(resealed));
        active.update(txn).await?;
    }
    Ok(())
}
