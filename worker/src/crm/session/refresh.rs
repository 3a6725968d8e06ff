//! Obtaining a usable session for a call: a pasted token, one another worker stored, or a
//! refresh, single-flight per connection.

use crate::sealed;
use std::time::{Duration, Instant};

use entity::connections;
use sea_orm::{ActiveValue::Set, ColumnTrait, Condition, EntityTrait, QueryFilter};
use serde_json::Value;

use super::credentials::{Exchanged, Session, seal_credentials};
use super::status::mark_needs_reauth;
use super::{Call, db_error};
use crate::crm::config::Credentials;
use crate::crm::error::{CrmError, ErrorKind};

impl Call<'_> {
    /// A usable session, obtaining one if there is none or it has expired.
    pub async fn session(&mut self) -> Result<Session, CrmError> {
        match &self.credentials {
            Credentials::RefreshToken { .. } | Credentials::JwtBearer { .. } => {}
            _ => {
                return Ok(Session {
                    access_token: String::new(),
                    expires_at: None,
                    api_base: None,
                });
            }
        }
        if let Some(session) = self.session.as_ref().filter(|s| s.fresh()) {
            return Ok(session.clone());
        }
        // A pasted access token is used until it expires.
        if self.session.is_none()
            && let Credentials::RefreshToken {
                access_token: Some(token),
                expires_at,
                ..
            } = &self.credentials
        {
            let pasted = Session {
                access_token: token.clone(),
                expires_at: *expires_at,
                api_base: None,
            };
            let as_is = crate::crm::providers::get(&self.connection.provider)
                .is_some_and(|p| p.pasted_token_is_session);
            if pasted.fresh() && as_is {
                self.session = Some(pasted.clone());
                return Ok(pasted);
            }
        }
        let stale = self.session.as_ref().map(|s| s.access_token.clone());
        self.refresh(stale).await
    }

    /// Replaces a refused or expired token, single-flight per connection.
    pub(super) async fn refresh(&mut self, stale: Option<String>) -> Result<Session, CrmError> {
        let lock = self.connector.lock_for(&self.connection.id);
        let _guard = lock.lock().await;
        let deadline = Instant::now() + Duration::from_secs(20);
        let db = &self.connector.db;
        loop {
            let row = connections::Entity::find_by_id(self.connection.id.clone())
                .one(db)
                .await
                .map_err(db_error)?
                .ok_or_else(|| CrmError::new(ErrorKind::Permanent, "the connection was deleted"))?;
            if row.status == "needs_reauth" {
                return Err(CrmError::new(
                    ErrorKind::Auth,
                    row.status_reason
                        .clone()
                        .unwrap_or_else(|| "the connection needs re-authorization".into()),
                ));
            }
            // Another worker may have refreshed already: use its token.
            if let Some(current) = self.open_session(&row)
                && Some(&current.access_token) != stale.as_ref()
                && current.fresh()
            {
                self.credentials = self.open_credentials(&row)?;
                self.connection = row;
                self.session = Some(current.clone());
                return Ok(current);
            }
            let now = crate::now();
            let claimed = connections::Entity::update_many()
                .set(connections::ActiveModel {
                    refresh_lease_until: Set(Some(now + chrono::Duration::seconds(30))),
                    ..Default::default()
                })
                .filter(connections::Column::Id.eq(row.id.as_str()))
                .filter(
                    Condition::any()
                        .add(connections::Column::RefreshLeaseUntil.is_null())
                        .add(connections::Column::RefreshLeaseUntil.lt(now)),
                )
                // Only if nobody stored a new session since this read: a winner that
                // finished in between has released the lease, and its token is to be used.
                .filter(match &row.session {
                    Some(sealed) => connections::Column::Session.eq(sealed.as_str()),
                    None => connections::Column::Session.is_null(),
                })
                .exec(db)
                .await
                .map_err(db_error)?
                .rows_affected
                == 1;
            if claimed {
                self.credentials = self.open_credentials(&row)?;
                self.connection = row;
                let result = self.adapter.exchange(self).await;
                return self.settle_refresh(result).await;
            }
            if Instant::now() > deadline {
                return Err(CrmError::new(
                    ErrorKind::Transient,
                    "another worker is still refreshing this connection's token",
                ));
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    /// Stores a new session (and rotated credentials) or the reason the refresh failed, and
    /// releases the lease.
    async fn settle_refresh(
        &mut self,
        result: Result<Exchanged, CrmError>,
    ) -> Result<Session, CrmError> {
        let db = &self.connector.db;
        let mut update = connections::ActiveModel {
            refresh_lease_until: Set(None),
            ..Default::default()
        };
        let outcome = match result {
            Ok(exchanged) => {
                let sealed = self.connector.keyring.seal(
                    &serde_json::to_string(&exchanged.session).expect("session serializes"),
                    &Self::context(&self.connection, sealed::CONNECTION_SESSION),
                );
                update.session = Set(Some(sealed));
                if let Some(rotated) = exchanged.rotated {
                    update.credentials = Set(Some(seal_credentials(
                        &self.connector.keyring,
                        &self.connection.tenant_id,
                        &self.connection.id,
                        &rotated,
                    )));
                    self.credentials = rotated;
                }
                self.info.insert(
                    "token_refreshed_at".into(),
                    Value::String(crate::now().to_rfc3339()),
                );
                // Where the account lives (not a secret): links to its records use it.
                if let Some(base) = exchanged.session.api_base.clone() {
                    self.info.insert("api_base".into(), Value::String(base));
                }
                // A connection authorized before its account was kept learns it now.
                if self.connection.vendor_account.is_none()
                    && let Some(account) = super::account::account_of(
                        &self.connector.http,
                        &self.connection,
                        &self.settings,
                        &exchanged.session.access_token,
                        self.timeout,
                    )
                    .await
                {
                    update.vendor_account = Set(Some(account));
                }
                if let Some(user) = exchanged.user_id.clone() {
                    self.info
                        .insert("integration_user_id".into(), Value::String(user));
                }
                self.session = Some(exchanged.session.clone());
                Ok(exchanged.session)
            }
            Err(error) => Err(error),
        };
        connections::Entity::update_many()
            .set(update)
            .filter(connections::Column::Id.eq(self.connection.id.as_str()))
            .exec(db)
            .await
            .map_err(db_error)?;
        crate::metrics::token_refresh(
            &self.connection.provider,
            match &outcome {
                Ok(_) => "ok",
                Err(error) if error.kind == ErrorKind::Auth => "refused",
                Err(_) => "failed",
            },
        );
        if let Err(error) = &outcome
            && error.kind == ErrorKind::Auth
        {
            mark_needs_reauth(db, &self.connection.id, &error.message)
                .await
                .map_err(db_error)?;
        }
        outcome
    }
}
