//! Operator commands besides serving: key rotation.

use anyhow::Context;
use entity::{stripe_accounts, webhook_secrets};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, DatabaseConnection, EntityTrait};

use crate::secrets::{Keyring, SecretContext};
use crate::services::stripe_accounts::{SECRET_KEY_PURPOSE, WEBHOOK_SECRET_PURPOSE};

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

    txn.commit().await?;
    Ok(report)
}
