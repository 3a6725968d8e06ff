//! Stripe: the event envelope every ingested event is parsed with, the `Stripe-Signature`
//! scheme (also used to sign Tributary's own alert webhooks), a client of Stripe's API
//! (enrichment steps, backfill and reconciliation, webhook endpoints), Stripe's event types and
//! its two modes.

pub mod backfill;
pub mod client;
pub mod envelope;
pub mod event_descriptions;
pub mod event_types;
pub mod mode;
pub mod signature;

use std::sync::Arc;

use entity::stripe_accounts;
use sea_orm::{DatabaseConnection, EntityTrait};
use serde_json::Value;

use crate::secrets::Keyring;
pub use client::IDEMPOTENCY_PREFIX;
use client::{StripeClient, StripeError, StripeKey};
pub use mode::{key_livemode, mode_name};

/// Stripe's API for the accounts in this database: opens an account's key when a call needs
/// it and never keeps it.
pub struct StripeApi {
    pub client: StripeClient,
    db: DatabaseConnection,
    keyring: Arc<Keyring>,
}

impl StripeApi {
    pub fn new(
        base_url: &str,
        db: DatabaseConnection,
        keyring: Arc<Keyring>,
    ) -> anyhow::Result<StripeApi> {
        Ok(StripeApi {
            client: StripeClient::new(base_url)?,
            db,
            keyring,
        })
    }

    /// Paces each account's calls under the shared budgets.
    pub fn with_budgets(mut self, budgets: Arc<crate::budget::Budgets>) -> Self {
        self.client = self.client.with_budgets(budgets);
        self
    }

    /// The account's key, or an error that says what is missing.
    pub fn key_of(&self, account: &stripe_accounts::Model) -> Result<StripeKey, StripeError> {
        let missing = |message: String| {
            StripeError::local("configuration_error", Some("secret_key"), message)
        };
        match StripeKey::open(&self.keyring, account) {
            Ok(Some(key)) => Ok(key),
            Ok(None) => Err(missing(format!(
                "the Stripe account \"{}\" has no secret key; add one with PATCH /v1/stripe-accounts/{}",
                account.name, account.id
            ))),
            Err(e) => Err(missing(format!(
                "the Stripe account's secret key cannot be decrypted: {e}"
            ))),
        }
    }

    /// The key of the account with this id.
    pub async fn key_for(&self, account_id: &str) -> Result<StripeKey, StripeError> {
        let account = stripe_accounts::Entity::find_by_id(account_id.to_string())
            .one(&self.db)
            .await
            .map_err(|e| StripeError::local("database_error", None, e.to_string()))?
            .ok_or_else(|| {
                StripeError::local(
                    "configuration_error",
                    None,
                    format!("the Stripe account {account_id} no longer exists"),
                )
            })?;
        self.key_of(&account)
    }

    /// Retrieves one object of an account.
    pub async fn retrieve(
        &self,
        account_id: &str,
        object: &str,
        id: &str,
        expand: &[String],
    ) -> Result<Value, StripeError> {
        let key = self.key_for(account_id).await?;
        self.client.retrieve(&key, object, id, expand).await
    }
}
