//! Stripe accounts by webhook token, as the ingress needs them, kept briefly in the process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use entity::{stripe_accounts, webhook_secrets};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};

use crate::error::ApiError;

/// How long a looked-up account is reused: the longest a change made on another replica (a
/// retired signing secret) takes to reach this one. Changes made here clear it at once.
const ACCOUNT_TTL: Duration = Duration::from_secs(1);

/// A Stripe account and its sealed signing secrets, as the ingress needs them.
pub struct WebhookAccount {
    pub account: stripe_accounts::Model,
    pub secrets: Vec<webhook_secrets::Model>,
}

/// Webhook accounts by token, kept for `ACCOUNT_TTL`: without it every webhook costs two
/// lookups. Secrets stay sealed in it; they are opened per request.
#[derive(Default)]
pub struct AccountCache {
    entries: Mutex<HashMap<String, (Instant, Arc<WebhookAccount>)>>,
}

impl AccountCache {
    /// Forgets everything; called after any change to an account or its secrets.
    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// The account with this webhook token, from the cache or the database.
    pub async fn get(
        &self,
        db: &DatabaseConnection,
        token: &str,
    ) -> Result<Option<Arc<WebhookAccount>>, ApiError> {
        if let Some((at, hit)) = self
            .entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(token)
            && at.elapsed() < ACCOUNT_TTL
        {
            return Ok(Some(hit.clone()));
        }
        let Some(account) = stripe_accounts::Entity::find()
            .filter(stripe_accounts::Column::WebhookToken.eq(token))
            .one(db)
            .await?
        else {
            return Ok(None);
        };
        let secrets = webhook_secrets::Entity::find()
            .filter(webhook_secrets::Column::StripeAccountId.eq(account.id.as_str()))
            .filter(webhook_secrets::Column::TenantId.eq(account.tenant_id.as_str()))
            .all(db)
            .await?;
        let found = Arc::new(WebhookAccount { account, secrets });
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() > 10_000 {
            entries.clear();
        }
        entries.insert(token.to_string(), (Instant::now(), found.clone()));
        Ok(Some(found))
    }
}
