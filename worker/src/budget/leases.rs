//! Leases on a budget's requests in flight, for vendors that limit how many run at once
//! (Salesforce: 25 concurrent long-running requests an org, 5 on Developer Edition). A
//! request takes a lease before it is sent and gives it back when its answer is in; at most
//! `most` leases of a key are out at once, across every process. A lease that is never
//! given back (its process died) counts until it expires.
//!
//! In the database a lease is a `request_leases` row, taken by one statement that inserts it
//! only while fewer than `most` unexpired rows of the key exist; on Postgres the budget's row
//! is locked first so two processes cannot both take the last lease. In Redis the leases
//! are a sorted set scored by expiry, taken by a script.

use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement, TransactionTrait};

use super::{Budgets, LeaseGate, Store, insert_row, micros_now, sql};

const LUA_TAKE: &str = r#"
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[4])
redis.call('PEXPIREAT', KEYS[1], math.floor(tonumber(ARGV[3]) / 1000) + 1000)
return 1
"#;

const TAKE: &str = "INSERT INTO request_leases (lease_id, budget_key, tenant_id, expires_at) \
     SELECT $1, $2, $3, $4 WHERE (SELECT COUNT(*) FROM request_leases \
       WHERE budget_key = $2 AND expires_at > $5) < $6";

impl Budgets {
    /// This process's line for `key`'s leases.
    pub fn lease_gate(&self, key: &str) -> std::sync::Arc<LeaseGate> {
        let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        if gates.len() > 10_000 {
            gates.retain(|_, gate| std::sync::Arc::strong_count(gate) > 1);
        }
        gates.entry(key.to_string()).or_default().clone()
    }

    /// Takes a lease on one of `key`'s `most` requests in flight, good until `expires_us`;
    /// `false` when all are out (nothing taken).
    pub async fn take_lease(
        &self,
        key: &str,
        tenant_id: &str,
        lease_id: &str,
        most: u32,
        expires_us: i64,
    ) -> Result<bool, String> {
        let now = micros_now();
        match &self.store {
            Store::Db(db) => take_row(db, key, tenant_id, lease_id, most, expires_us, now).await,
            Store::Redis { conn, namespace } => {
                let mut conn = conn.clone();
                let taken: i64 = redis::cmd("EVAL")
                    .arg(LUA_TAKE)
                    .arg(1)
                    .arg(format!("{namespace}.leases.{key}"))
                    .arg(now)
                    .arg(most)
                    .arg(expires_us)
                    .arg(lease_id)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| format!("request leases {key} in Redis: {e}"))?;
                Ok(taken == 1)
            }
        }
    }

    /// Gives a lease back.
    pub async fn give_back(&self, key: &str, lease_id: &str) {
        let result = match &self.store {
            Store::Db(db) => {
                let backend = db.get_database_backend();
                db.execute_raw(Statement::from_sql_and_values(
                    backend,
                    sql(backend, "DELETE FROM request_leases WHERE lease_id = $1"),
                    [lease_id.into()],
                ))
                .await
                .map(drop)
                .map_err(|e| e.to_string())
            }
            Store::Redis { conn, namespace } => {
                let mut conn = conn.clone();
                redis::cmd("ZREM")
                    .arg(format!("{namespace}.leases.{key}"))
                    .arg(lease_id)
                    .query_async::<i64>(&mut conn)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        };
        if let Err(e) = result {
            tracing::warn!(key, error = %e, "could not give back a request lease; it expires on its own");
        }
        self.lease_gate(key).freed.notify_one();
    }

    /// How many of `key`'s leases are out now.
    pub async fn leases_out(&self, key: &str) -> Result<u64, String> {
        let now = micros_now();
        match &self.store {
            Store::Db(db) => {
                let backend = db.get_database_backend();
                let row = db
                    .query_one_raw(Statement::from_sql_and_values(
                        backend,
                        sql(
                            backend,
                            "SELECT COUNT(*) AS n FROM request_leases \
                             WHERE budget_key = $1 AND expires_at > $2",
                        ),
                        [key.into(), now.into()],
                    ))
                    .await
                    .map_err(|e| format!("request leases {key}: {e}"))?;
                let n: i64 = row
                    .map(|r| r.try_get("", "n"))
                    .transpose()
                    .map_err(|e| format!("request leases {key}: {e}"))?
                    .unwrap_or(0);
                Ok(n.max(0) as u64)
            }
            Store::Redis { conn, namespace } => {
                let mut conn = conn.clone();
                redis::cmd("ZCOUNT")
                    .arg(format!("{namespace}.leases.{key}"))
                    .arg(format!("({now}"))
                    .arg("+inf")
                    .query_async::<u64>(&mut conn)
                    .await
                    .map_err(|e| format!("request leases {key} in Redis: {e}"))
            }
        }
    }
}

/// One lease taken in the database, or none when `most` are out.
async fn take_row(
    db: &DatabaseConnection,
    key: &str,
    tenant_id: &str,
    lease_id: &str,
    most: u32,
    expires_us: i64,
    now: i64,
) -> Result<bool, String> {
    let failed = |e: sea_orm::DbErr| format!("request leases {key}: {e}");
    let backend = db.get_database_backend();
    let values = |now: i64| {
        [
            lease_id.into(),
            key.into(),
            tenant_id.into(),
            expires_us.into(),
            now.into(),
            i64::from(most).into(),
        ]
    };
    let expired = "DELETE FROM request_leases WHERE budget_key = $1 AND expires_at <= $2";
    if backend != DatabaseBackend::Postgres {
        // SQLite writes one statement at a time: the count and the insert cannot interleave.
        db.execute_raw(Statement::from_sql_and_values(
            backend,
            sql(backend, expired),
            [key.into(), now.into()],
        ))
        .await
        .map_err(failed)?;
        let done = db
            .execute_raw(Statement::from_sql_and_values(
                backend,
                sql(backend, TAKE),
                values(now),
            ))
            .await
            .map_err(failed)?;
        return Ok(done.rows_affected() == 1);
    }
    // The budget's row is the lock; it is made only the first time a key has none.
    let lock = "SELECT 1 FROM rate_budgets WHERE budget_key = $1 FOR UPDATE";
    let mut txn = db.begin().await.map_err(failed)?;
    let locked = txn
        .query_one_raw(Statement::from_sql_and_values(backend, lock, [key.into()]))
        .await
        .map_err(failed)?;
    if locked.is_none() {
        txn.rollback().await.map_err(failed)?;
        insert_row(db, key, tenant_id).await?;
        txn = db.begin().await.map_err(failed)?;
        txn.query_one_raw(Statement::from_sql_and_values(backend, lock, [key.into()]))
            .await
            .map_err(failed)?;
    }
    txn.execute_raw(Statement::from_sql_and_values(
        backend,
        expired,
        [key.into(), now.into()],
    ))
    .await
    .map_err(failed)?;
    let done = txn
        .execute_raw(Statement::from_sql_and_values(backend, TAKE, values(now)))
        .await
        .map_err(failed)?;
    txn.commit().await.map_err(failed)?;
    Ok(done.rows_affected() == 1)
}
