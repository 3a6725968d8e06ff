//! Tenant scoping by construction: tenant-owned entities are queried through these
//! constructors, which always carry the tenant's id.

use sea_orm::{ColumnTrait, DeleteMany, EntityTrait, QueryFilter, Select};

pub trait TenantOwned: EntityTrait {
    fn tenant_column() -> Self::Column;
    fn id_column() -> Self::Column;

    /// Every row of one tenant.
    fn find_in_tenant(tenant_id: &str) -> Select<Self> {
        Self::find().filter(Self::tenant_column().eq(tenant_id))
    }

    /// One row of one tenant; another tenant's id finds nothing.
    fn find_by_id_in_tenant(tenant_id: &str, id: &str) -> Select<Self> {
        Self::find_in_tenant(tenant_id).filter(Self::id_column().eq(id))
    }

    /// Deletes one row of one tenant.
    fn delete_by_id_in_tenant(tenant_id: &str, id: &str) -> DeleteMany<Self> {
        Self::delete_many()
            .filter(Self::tenant_column().eq(tenant_id))
            .filter(Self::id_column().eq(id))
    }
}

/// Implements [`TenantOwned`] for an entity module with `id` and `tenant_id` columns.
#[macro_export]
macro_rules! tenant_owned {
    ($entity:ty, $column:ty) => {
        impl $crate::TenantOwned for $entity {
            fn tenant_column() -> $column {
                <$column>::TenantId
            }
            fn id_column() -> $column {
                <$column>::Id
            }
        }
    };
}
