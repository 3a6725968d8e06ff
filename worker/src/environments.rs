//! Environments inside a tenant. A tenant is its own `production` environment; each other
//! environment is a tenant row whose `parent_id` names the tenant and whose `environment` names
//! it, so everything scoped by tenant (Stripe accounts, connections, flows, events,
//! deliveries) is scoped by environment too.

use entity::tenants;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

/// The environment every tenant has, and the one a request acts in unless it names another.
pub const PRODUCTION: &str = "production";

/// The rule of an environment's name.
pub const NAME_PATTERN: &str = "^[a-z][a-z0-9-]{0,31}$";

/// Whether `name` can name an environment.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 32
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The tenant row of environment `name` of the tenant `account_id`: the tenant itself for
/// `production`; `None` when it has no such environment.
pub async fn resolve<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
    name: &str,
) -> Result<Option<String>, DbErr> {
    if name == PRODUCTION {
        return Ok(Some(account_id.to_string()));
    }
    if !valid_name(name) {
        return Ok(None);
    }
    Ok(tenants::Entity::find()
        .filter(tenants::Column::ParentId.eq(account_id))
        .filter(tenants::Column::Environment.eq(name))
        .one(db)
        .await?
        .map(|row| row.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_short_lower_case_words() {
        for good in ["staging", "qa-2", "d"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in [
            "",
            "Staging",
            "2qa",
            "qa_2",
            "a b",
            &"x".repeat(33),
            "qa;",
            "é",
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
