//! `Idempotency-Key`s of the tenant API's POSTs: which request a key was first sent with, and
//! the answer it got, kept for a day so a retried request gets that answer instead of running
//! again. One row per caller and key; a row without a `status` is a request still running.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "idempotency_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub tenant_id: String,
    /// Who sent the key: `user:{id}` or `api_key:{id}`. Keys of different callers never meet.
    pub caller: String,
    pub key: String,
    /// Method and path of the first request, for the message when the key is reused elsewhere.
    pub request: String,
    /// SHA-256 of the method, path and query string.
    pub request_hash: String,
    /// SHA-256 of the content type and body.
    pub body_hash: String,
    /// The first answer's status; `None` while the first request is running.
    pub status: Option<i32>,
    /// The first answer's `Content-Type`, `Location` and `ETag`, as a JSON object.
    pub headers: Option<String>,
    /// The first answer's body, sealed with the keyring (it may hold a secret shown once);
    /// `None` when it was too large to keep.
    pub response: Option<String>,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

crate::tenant_owned!(Entity, Column);
