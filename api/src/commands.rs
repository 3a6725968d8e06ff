//! Operator commands besides serving: key rotation, over every sealed column the registry
//! (`tributary_worker::sealed`) lists — Stripe keys and signing secrets, connection credentials
//! and sessions, PKCE verifiers, notification channels, the seeds of generated secrets, the
//! answers kept for idempotency keys.

use anyhow::Context;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Order, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction};

use tributary_worker::sealed::{SEALED_COLUMNS, SealedColumn};
use tributary_worker::secrets::{Keyring, SecretContext};

/// Rows read per round while rotating: kept answers can be many and large.
const PAGE: u64 = 200;

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
        Ok(Some(
            keyring.seal(tributary_worker::secrets::expose(&plain), context),
        ))
    }
}

/// Re-encrypts every stored secret under the keyring's current key, in one transaction: if any
/// secret cannot be opened (its key was removed), nothing changes and the error names it.
pub async fn rotate_keys(
    db: &DatabaseConnection,
    keyring: &Keyring,
) -> anyhow::Result<RotationReport> {
    let mut report = RotationReport::default();
    let txn = tributary_worker::db::begin_write(db).await?;
    for column in SEALED_COLUMNS {
        rotate_column(&txn, keyring, &mut report, column).await?;
    }
    txn.commit().await?;
    Ok(report)
}

/// Re-encrypts one sealed column, a page at a time in row order. Each value is written only if
/// it still holds what was read: a token a worker refreshed meanwhile (already under the current
/// key) is never overwritten.
async fn rotate_column(
    txn: &DatabaseTransaction,
    keyring: &Keyring,
    report: &mut RotationReport,
    column: &SealedColumn,
) -> anyhow::Result<()> {
    let (table, sealed, row_id) = (
        Alias::new(column.table),
        Alias::new(column.column),
        Alias::new(column.row_id),
    );
    let mut after = String::new();
    loop {
        let page = txn
            .query_all(
                Query::select()
                    .expr_as(Expr::col(row_id.clone()), Alias::new("row_id"))
                    .column(Alias::new("tenant_id"))
                    .expr_as(Expr::col(sealed.clone()), Alias::new("sealed"))
                    .from(table.clone())
                    .and_where(Expr::col(sealed.clone()).is_not_null())
                    .and_where(Expr::col(row_id.clone()).gt(after.as_str()))
                    .order_by(row_id.clone(), Order::Asc)
                    .limit(PAGE),
            )
            .await?;
        if page.is_empty() {
            return Ok(());
        }
        for row in page {
            let id: String = row.try_get("", "row_id")?;
            let tenant_id: String = row.try_get("", "tenant_id")?;
            let value: String = row.try_get("", "sealed")?;
            let context = SecretContext {
                tenant_id: &tenant_id,
                purpose: column.purpose,
                row_id: &id,
            };
            let resealed = report
                .reseal(keyring, &value, &context)
                .with_context(|| format!("{} {id}: {}", column.table, column.column))?;
            if let Some(resealed) = resealed {
                txn.execute(
                    Query::update()
                        .table(table.clone())
                        .value(sealed.clone(), resealed)
                        .and_where(Expr::col(row_id.clone()).eq(id.as_str()))
                        .and_where(Expr::col(sealed.clone()).eq(value.as_str())),
                )
                .await?;
            }
            after = id;
        }
    }
}
