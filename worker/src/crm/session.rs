//! Talking to a vendor on behalf of one connection: credentials opened from their seal, an
//! access token obtained and kept (sealed) on the connection, refreshed single-flight when it
//! expires or is refused, the request sent with a timeout, and what the vendor says about the
//! connection (API usage, discovered settings) kept for the tenant to see.
//!
//! Single flight: within a process, one refresh per connection at a time (a mutex); across
//! processes, a lease on the connection row (`refresh_lease_until`) that only one worker can
//! take. A worker that loses either waits for the winner's token instead of refreshing again,
//! which matters for vendors that rotate refresh tokens. A refused refresh marks the
//! connection `needs_reauth`; its deliveries wait until the tenant reconnects.

pub mod account;
pub mod batch;
mod connector;
mod credentials;
mod gather;
mod leases;
pub mod pacing;
mod refresh;
mod send;
mod status;
mod trail;
mod wire;

use crate::sealed;
use std::time::Duration;

use entity::connections;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use serde_json::{Map, Value};

use super::config::{self, Credentials};
use super::error::{BoxFuture, CrmError, CrmOutcome, ErrorKind, Write};
use super::object_fields::FieldInfo;
use crate::flow::Operation;
use crate::secrets::SecretContext;

pub use connector::Connector;
pub use credentials::{Exchanged, Session, credential_values, open_credentials, seal_credentials};
pub use send::xml_escape;
pub use status::{hold, mark_needs_reauth, pause};
pub use trail::Trail;
pub use wire::{
    Reply, Request, SESSION_SLOT, excerpt, kind_of_status, redact_url, rotated, token_field,
};

/// One CRM vendor's API.
pub trait Adapter: Sync {
    /// Exchanges the connection's credentials for a session (refresh token, JWT assertion).
    fn exchange<'a>(&'a self, call: &'a Call<'_>) -> BoxFuture<'a, Result<Exchanged, CrmError>>;

    /// The URL relative request paths are joined to.
    fn api_base(&self, call: &Call<'_>, session: &Session) -> Result<String, CrmError>;

    /// Executes one rendered step. `linked` is the record this Stripe object was written to
    /// before, which wins over a lookup by `match`.
    fn apply<'a, 'c: 'a>(
        &'a self,
        call: &'a mut Call<'c>,
        kind: Write,
        op: &'a Operation,
        linked: Option<&'a str>,
    ) -> BoxFuture<'a, Result<CrmOutcome, CrmError>>;

    /// Finds the records of `op.object` whose fields equal every `op.match_fields` value,
    /// reading the `op.select` fields: at most [`FIND_LIMIT`], each an object of its `id` and
    /// the fields as the vendor returned them. Finding none is no error.
    fn find<'a, 'c: 'a>(
        &'a self,
        call: &'a mut Call<'c>,
        _op: &'a Operation,
    ) -> BoxFuture<'a, Result<Found, CrmError>> {
        let message = format!(
            "{} connections cannot find records",
            call.connection.provider
        );
        Box::pin(async move { Err(CrmError::new(ErrorKind::Permanent, message)) })
    }

    /// The fields of `object` (a name matching [`crate::crm::OBJECT_NAME_PATTERN`]) as the
    /// vendor describes them; an object the vendor does not know is a not-found error.
    fn fields<'a, 'c: 'a>(
        &'a self,
        call: &'a mut Call<'c>,
        _object: &'a str,
    ) -> BoxFuture<'a, Result<Vec<FieldInfo>, CrmError>> {
        let message = format!(
            "{} connections have no object fields to read",
            call.connection.provider
        );
        Box::pin(async move { Err(CrmError::new(ErrorKind::Permanent, message)) })
    }

    /// One cheap authenticated call; says what it saw.
    fn check<'a, 'c: 'a>(
        &'a self,
        call: &'a mut Call<'c>,
    ) -> BoxFuture<'a, Result<String, CrmError>>;

    /// Whether records of `object` can be merged ([`Adapter::merge`]).
    fn merges(&self, _object: &str) -> bool {
        false
    }

    /// Merges record `loser` into `winner` (both of `object`), the vendor's way: the loser is
    /// gone after, its associations moved to the survivor. Answers the survivor's id.
    fn merge<'a, 'c: 'a>(
        &'a self,
        call: &'a mut Call<'c>,
        object: &'a str,
        _winner: &'a str,
        _loser: &'a str,
    ) -> BoxFuture<'a, Result<String, CrmError>> {
        let message = format!(
            "{} connections cannot merge {object} records",
            call.connection.provider
        );
        Box::pin(async move { Err(CrmError::new(ErrorKind::Permanent, message)) })
    }

    /// Settings templates see besides the connection's own (e.g. a discovered won stage).
    fn template_settings<'a, 'c: 'a>(
        &'a self,
        _call: &'a mut Call<'c>,
    ) -> BoxFuture<'a, Result<Map<String, Value>, CrmError>> {
        Box::pin(async { Ok(Map::new()) })
    }
}

/// Most records a `find` reads.
pub const FIND_LIMIT: usize = 100;

/// What a `find` read: the records, each an object holding its `id`, and whether the vendor
/// said more matched than were read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Found {
    pub records: Vec<Map<String, Value>>,
    pub more: bool,
}

/// One connection's conversation with its vendor, for one operation or test.
pub struct Call<'c> {
    pub connector: &'c Connector,
    /// The vendor's adapter: how this connection's sessions are obtained and where its API is.
    adapter: &'static dyn Adapter,
    pub connection: connections::Model,
    pub settings: Map<String, Value>,
    pub credentials: Credentials,
    session: Option<Session>,
    refreshed: bool,
    /// The next request's rate slot is taken already (by the lead of a batch).
    prepaid: bool,
    /// Facts to merge into the connection's `vendor_info` when the call ends.
    pub info: Map<String, Value>,
    pub timeout: Duration,
    /// The requests sent, for the delivery's history.
    pub trail: Trail,
}

fn db_error(err: sea_orm::DbErr) -> CrmError {
    CrmError::new(ErrorKind::Transient, format!("database: {err}"))
}

impl<'c> Call<'c> {
    /// Opens the connection's credentials and stored session.
    pub fn open(
        connector: &'c Connector,
        connection: &connections::Model,
        adapter: &'static dyn Adapter,
    ) -> Result<Self, CrmError> {
        let settings: Map<String, Value> =
            serde_json::from_str(&connection.settings).unwrap_or_default();
        let mut call = Call {
            connector,
            adapter,
            connection: connection.clone(),
            timeout: config::timeout(&settings),
            settings,
            credentials: Credentials::None,
            session: None,
            refreshed: false,
            prepaid: false,
            info: Map::new(),
            trail: Trail::default(),
        };
        call.credentials = call.open_credentials(connection)?;
        call.session = call.open_session(connection);
        Ok(call)
    }

    fn context<'a>(connection: &'a connections::Model, purpose: &'a str) -> SecretContext<'a> {
        SecretContext {
            tenant_id: &connection.tenant_id,
            purpose,
            row_id: &connection.id,
        }
    }

    fn open_credentials(&self, connection: &connections::Model) -> Result<Credentials, CrmError> {
        open_credentials(&self.connector.keyring, connection)
    }

    /// The stored session; one that cannot be opened is treated as none (a refresh follows).
    fn open_session(&self, connection: &connections::Model) -> Option<Session> {
        let sealed = connection.session.as_deref()?;
        let plain = self
            .connector
            .keyring
            .open(
                sealed,
                &Self::context(connection, sealed::CONNECTION_SESSION),
            )
            .ok()?;
        serde_json::from_str(crate::secrets::expose(&plain)).ok()
    }

    pub fn setting(&self, key: &str) -> Option<&str> {
        config::text(&self.settings, key)
    }

    /// The base every relative path is joined to.
    fn api_base(&self, session: &Session) -> Result<String, CrmError> {
        self.adapter.api_base(self, session)
    }

    /// Merges what was learned into the connection's `vendor_info`.
    pub async fn finish(&mut self) {
        if self.info.is_empty() {
            return;
        }
        let db = &self.connector.db;
        let Ok(Some(row)) = connections::Entity::find_by_id(self.connection.id.clone())
            .one(db)
            .await
        else {
            return;
        };
        let mut info: Map<String, Value> =
            serde_json::from_str(&row.vendor_info).unwrap_or_default();
        info.extend(std::mem::take(&mut self.info));
        let result = connections::Entity::update_many()
            .set(connections::ActiveModel {
                vendor_info: Set(Value::Object(info).to_string()),
                ..Default::default()
            })
            .filter(connections::Column::Id.eq(row.id.as_str()))
            .exec(db)
            .await;
        if let Err(e) = result {
            tracing::warn!(connection_id = %row.id, error = %e, "could not record vendor info");
        }
    }
}
