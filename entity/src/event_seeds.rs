//! The seed an event's generated secrets (`password()`, `token(n)`) are derived from: random,
//! made on the event's first run, sealed like every secret. Every attempt of the event, in any
//! process and under any current key, derives the same values from it.

use sea_orm::entity::prelude::*;

#[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "event_seeds")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub event_id: String,
    pub tenant_id: String,
    /// Sealed (`keyid:base64`), never plaintext.
    pub seed: String,
    pub created_at: DateTimeUtc,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSeed")
            .field("event_id", &self.event_id)
            .finish_non_exhaustive()
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
