//! Running a CRM write: in the sandbox inside the claiming transaction, at a vendor under a
//! lease, and recording the outcome with its record link.

use std::ops::ControlFlow;

use super::core::*;
use super::links::*;
use crate::steps::{Done, Exec, StepKind};

impl Engine {
    /// Runs one operation and records its outcome. Sandbox writes share the transaction that
    /// claims and completes the delivery, so a crash leaves either both or neither, and a
    /// second run that loses the claim uses the first one's result.
    pub(super) async fn execute(
        &self,
        write: crm::Write,
        event: &events::Model,
        connection: &connections::Model,
        delivery: &deliveries::Model,
        op: &Operation,
    ) -> anyhow::Result<StepResult> {
        let started = std::time::Instant::now();
        let txn = crate::db::begin_write(&self.db).await?;
        if !claim_open(&txn, delivery).await? {
            txn.rollback().await?;
            return self.outcome_of_other_run(delivery).await;
        }
        let attempts = delivery.attempts + 1;

        let linked_object = linked_object(event, op);
        lock_writers(&txn, connection, op, linked_object).await?;

        let (link, stale) = link_and_staleness(&txn, connection, op, linked_object, event).await?;
        if let Some(link) = link.as_ref().filter(|_| stale) {
            let warning = stale_warning(link, op, event.event_created);
            let mut active: deliveries::ActiveModel = delivery.clone().into();
            mark_stale(&mut active, link, op, attempts, &warning);
            active.updated_at = Set(crate::now());
            active.update(&txn).await?;
            history::record(
                &txn,
                delivery,
                skipped_as_stale(delivery, op, &warning, elapsed_ms(started)),
            )
            .await?;
            txn.commit().await?;
            return Ok(StepResult::Done(Some(link.crm_record_id.clone()), None));
        }

        let result = crm::sandbox::apply(
            &txn,
            connection,
            write,
            op,
            link.as_ref().map(|l| l.crm_record_id.as_str()),
        )
        .await;
        let duration_ms = elapsed_ms(started);

        match result {
            Ok(outcome) => {
                let active = succeeded(op, &outcome, attempts, duration_ms)?;
                deliveries::Entity::update_many()
                    .set(active)
                    .filter(deliveries::Column::Id.eq(delivery.id.as_str()))
                    .exec(&txn)
                    .await?;
                history::record(
                    &txn,
                    delivery,
                    succeeded_attempt(delivery, op, &outcome, duration_ms, &Trail::default(), &[]),
                )
                .await?;
                if let Some(object_id) = linked_object {
                    upsert_link(
                        &txn,
                        event,
                        connection,
                        &op.object,
                        object_id,
                        &outcome.record_id,
                        link,
                    )
                    .await?;
                }
                txn.commit().await?;
                crate::metrics::delivery(&connection.provider, ds::SUCCEEDED);
                crate::metrics::event_to_crm(
                    &connection.provider,
                    seconds_since(event.received_at),
                );
                Ok(StepResult::Done(Some(outcome.record_id), None))
            }
            Err(error) => {
                // The write failed: nothing of it to keep, but the attempt counts.
                txn.rollback().await?;
                let tried = Tried {
                    attempts,
                    duration_ms,
                    claim: None,
                    trail: Trail::default(),
                };
                self.fail(connection, delivery, Some(op), error, tried)
                    .await
            }
        }
    }

    /// Runs one operation against a vendor. The delivery is claimed first with a lease (it
    /// reads as `retrying`, reason `in_flight`, due when the lease ends), so no other run
    /// calls the vendor for it meanwhile, and a worker that dies mid-call leaves it to be
    /// retried when the lease runs out. The vendor's own upsert keys make that retry safe.
    pub(super) async fn execute_remote(
        &self,
        kind: &dyn StepKind,
        event: &events::Model,
        connection: &connections::Model,
        delivery: &deliveries::Model,
        op: &Operation,
        fresh: bool,
    ) -> anyhow::Result<StepResult> {
        let started = std::time::Instant::now();
        let (claimed_row, claim) = match self.claim_under_lease(connection, delivery, fresh).await?
        {
            ControlFlow::Continue(leased) => leased,
            ControlFlow::Break(result) => return Ok(result),
        };
        let attempts = claimed_row.attempts + 1;

        let linked_object = linked_object(event, op);
        let (link, stale) =
            link_and_staleness(&self.db, connection, op, linked_object, event).await?;
        if let Some(link) = link.as_ref().filter(|_| stale) {
            let warning = stale_warning(link, op, event.event_created);
            let attempt = skipped_as_stale(&claimed_row, op, &warning, elapsed_ms(started));
            self.update_delivery(&claimed_row, Guard::Claim, Some(attempt), |active| {
                mark_stale(active, link, op, attempts, &warning)
            })
            .await?;
            return Ok(StepResult::Done(Some(link.crm_record_id.clone()), None));
        }

        let cx = Exec {
            connector: &self.crm,
            stripe: &self.stripe,
            account: &event.stripe_account_id,
            delivery_id: &claimed_row.id,
            connection: Some(connection),
            op,
            linked: link.as_ref().map(|l| l.crm_record_id.as_str()),
        };
        let (result, trail) = kind.execute(cx).await;
        let duration_ms = elapsed_ms(started);
        let outcome = match result {
            Ok(Done::Wrote(outcome)) => outcome,
            Ok(Done::Stopped(reason)) => {
                return self
                    .settle_stopped(&claimed_row, Guard::Claim, op, reason)
                    .await;
            }
            Err(error) => {
                if self
                    .held_as_duplicate(
                        event,
                        connection,
                        &claimed_row,
                        op,
                        &error,
                        &trail,
                        duration_ms,
                    )
                    .await?
                {
                    return Ok(StepResult::Stop);
                }
                let tried = Tried {
                    attempts,
                    duration_ms,
                    claim: Some(claim),
                    trail,
                };
                return self
                    .fail(connection, &claimed_row, Some(op), error, tried)
                    .await;
            }
        };

        let txn = crate::db::begin_write(&self.db).await?;
        let active = succeeded(op, &outcome, attempts, duration_ms)?;
        let applied = deliveries::Entity::update_many()
            .set(active)
            .filter(deliveries::Column::Id.eq(claimed_row.id.as_str()))
            .filter(deliveries::Column::UpdatedAt.eq(claim))
            .exec(&txn)
            .await?
            .rows_affected
            == 1;
        if !applied {
            // The lease ran out and another run took the delivery over: its result stands.
            txn.rollback().await?;
            return self.outcome_of_other_run(delivery).await;
        }
        let secrets = self.credentials_of(connection);
        history::record(
            &txn,
            &claimed_row,
            succeeded_attempt(&claimed_row, op, &outcome, duration_ms, &trail, &secrets),
        )
        .await?;
        if let Some(object_id) = linked_object {
            // Read again inside the transaction: another event may have moved it meanwhile.
            let link = find_link(&txn, connection, op, Some(object_id)).await?;
            upsert_link(
                &txn,
                event,
                connection,
                &op.object,
                object_id,
                &outcome.record_id,
                link,
            )
            .await?;
        }
        txn.commit().await?;
        crate::metrics::delivery(&connection.provider, ds::SUCCEEDED);
        crate::metrics::event_to_crm(&connection.provider, seconds_since(event.received_at));
        Ok(StepResult::Done(
            Some(outcome.record_id).filter(|id| !id.is_empty()),
            outcome.response,
        ))
    }

    /// Claims a delivery for a vendor call under a lease: it reads as `retrying`, reason
    /// `in_flight`, due when the lease ends. Returns the claimed row and its claim (the
    /// `updated_at` it was written with), or the step's result when the delivery is gone or
    /// another run has it.
    async fn claim_under_lease(
        &self,
        connection: &connections::Model,
        delivery: &deliveries::Model,
        fresh: bool,
    ) -> anyhow::Result<ControlFlow<StepResult, (deliveries::Model, DateTime<Utc>)>> {
        // A delivery this run just created is as it was written; any other is read again.
        let current = if fresh {
            Some(delivery.clone())
        } else {
            deliveries::Entity::find_by_id(delivery.id.clone())
                .one(&self.db)
                .await?
        };
        let Some(current) = current else {
            return Ok(ControlFlow::Break(StepResult::Stop));
        };
        let now = crate::now();
        if !is_open(&current.status)
            || (current.status == ds::RETRYING && current.next_attempt_at.is_some_and(|t| t > now))
        {
            return Ok(ControlFlow::Break(
                self.outcome_of_other_run(delivery).await?,
            ));
        }
        let settings: serde_json::Map<String, Value> =
            serde_json::from_str(&connection.settings).unwrap_or_default();
        let lease = crm::config::timeout(&settings) * 8 + Duration::from_secs(60);
        let claim = crate::now();
        let claimed = deliveries::Entity::update_many()
            .set(deliveries::ActiveModel {
                status: Set(ds::RETRYING.into()),
                reason: Set(Some("in_flight".into())),
                next_attempt_at: Set(Some(crate::vendor_time::after(claim, lease))),
                updated_at: Set(claim),
                ..Default::default()
            })
            .filter(deliveries::Column::Id.eq(current.id.as_str()))
            .filter(deliveries::Column::Status.eq(current.status.as_str()))
            .filter(deliveries::Column::UpdatedAt.eq(current.updated_at))
            .exec(&self.db)
            .await?
            .rows_affected
            == 1;
        if !claimed {
            return Ok(ControlFlow::Break(
                self.outcome_of_other_run(delivery).await?,
            ));
        }
        let claimed_row = deliveries::Model {
            status: ds::RETRYING.into(),
            updated_at: claim,
            ..current
        };
        Ok(ControlFlow::Continue((claimed_row, claim)))
    }
}

/// Claims an open delivery inside `txn` by touching its `updated_at`; returns whether it did.
async fn claim_open<C: ConnectionTrait>(
    txn: &C,
    delivery: &deliveries::Model,
) -> Result<bool, sea_orm::DbErr> {
    Ok(deliveries::Entity::update_many()
        .col_expr(
            deliveries::Column::UpdatedAt,
            sea_orm::sea_query::Expr::value(crate::now()),
        )
        .filter(deliveries::Column::Id.eq(delivery.id.as_str()))
        .filter(deliveries::Column::Status.is_in(OPEN.iter().copied()))
        .exec(txn)
        .await?
        .rows_affected
        == 1)
}

/// Serialises writers of the same Stripe object and match key (Postgres; SQLite transactions
/// here are already exclusive), so two events cannot both create a record or move a link
/// backwards.
async fn lock_writers<C: ConnectionTrait>(
    txn: &C,
    connection: &connections::Model,
    op: &Operation,
    linked_object: Option<&str>,
) -> Result<(), sea_orm::DbErr> {
    if txn.get_database_backend() == DbBackend::Postgres {
        let mut keys = vec![format!(
            "{}|{}|match|{}",
            connection.id,
            op.object,
            crm::sandbox::match_key(&op.match_fields)
        )];
        if let Some(object_id) = linked_object {
            keys.push(format!(
                "{}|{}|link|{}",
                connection.id, op.object, object_id
            ));
        }
        keys.sort();
        for key in keys {
            txn.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                [key.into()],
            ))
            .await?;
        }
    }
    Ok(())
}

/// The record link a write follows, and whether a newer event already wrote its record.
async fn link_and_staleness<C: ConnectionTrait>(
    db: &C,
    connection: &connections::Model,
    op: &Operation,
    linked_object: Option<&str>,
    event: &events::Model,
) -> Result<(Option<record_links::Model>, bool), sea_orm::DbErr> {
    let link = find_link(db, connection, op, linked_object).await?;
    let stale = match &link {
        Some(l) => superseded(db, l, event).await?,
        None => false,
    };
    Ok((link, stale))
}
