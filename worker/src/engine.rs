//! The engine: runs one stored event through every enabled flow of its tenant that matches
//! it, one delivery per step. A step that succeeded never runs again for that event; a
//! retryable failure schedules the event again after a jittered backoff; anything else, or
//! running out of attempts, dead-letters the step with its reason. Events of different tenants
//! and flows never wait on each other: a failing flow only stops its own later steps.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use entity::{TenantOwned, connections, deliveries, events, flow_versions, flows, record_links};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    EntityTrait, QueryFilter, QueryOrder,
};
use serde_json::Value;

use crate::crm::{self, CrmError, ErrorKind};
use crate::flow::{self, Action, FlowSpec, Operation, RenderContext};
use crate::queue::{ProcessEvent, Queue};
use crate::settings::RetrySettings;

pub mod status {
    pub const RECEIVED: &str = "received";
    pub const QUEUED: &str = "queued";
    pub const PROCESSED: &str = "processed";
    pub const FAILED: &str = "failed";
    pub const IGNORED: &str = "ignored";
}

pub mod delivery_status {
    pub const PENDING: &str = "pending";
    pub const SUCCEEDED: &str = "succeeded";
    pub const RETRYING: &str = "retrying";
    pub const WAITING: &str = "waiting";
    pub const DEAD: &str = "dead";
    pub const SKIPPED: &str = "skipped";
}

use delivery_status as ds;

/// Exponential backoff with full jitter, never sooner than the vendor's `Retry-After`.
pub fn retry_delay(retry: &RetrySettings, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let exponent = attempt.saturating_sub(1).min(30);
    let ceiling = retry
        .base_delay
        .saturating_mul(1u32 << exponent)
        .min(retry.max_delay);
    let random = u64::from_le_bytes(crate::secrets::random_bytes::<8>());
    let jittered = Duration::from_nanos(random % (ceiling.as_nanos().max(1) as u64));
    jittered.max(retry_after.unwrap_or_default())
}

pub struct Engine {
    pub db: DatabaseConnection,
    pub queue: Queue,
    pub retry: RetrySettings,
}

/// What happened to one flow's steps on this run.
#[derive(Default)]
struct FlowRun {
    done: bool,
    dead: bool,
    next_due: Option<DateTime<Utc>>,
}

impl Engine {
    /// Runs `event_id`. Safe to call again at any time: finished steps are not repeated.
    pub async fn process(&self, event_id: &str) -> anyhow::Result<()> {
        let Some(event) = events::Entity::find_by_id(event_id.to_string())
            .one(&self.db)
            .await?
        else {
            tracing::warn!(event_id, "job for an unknown event");
            return Ok(());
        };
        if matches!(
            event.status.as_str(),
            status::PROCESSED | status::FAILED | status::IGNORED
        ) {
            return Ok(());
        }
        let payload: Value =
            serde_json::from_str(&event.payload).context("stored payload is not JSON")?;
        let now = crate::now();

        let mut matched = Vec::new();
        for row in flows::Entity::find_in_tenant(&event.tenant_id)
            .filter(flows::Column::Enabled.eq(true))
            .order_by_asc(flows::Column::Id)
            .all(&self.db)
            .await?
        {
            let spec: FlowSpec = match serde_json::from_str(&row.spec) {
                Ok(spec) => spec,
                Err(e) => {
                    tracing::error!(flow_id = %row.id, error = %e, "stored flow does not parse");
                    continue;
                }
            };
            match flow::trigger_matches(&spec, &payload) {
                Ok(true) => matched.push((row, spec)),
                Ok(false) => {}
                Err(e) => tracing::warn!(flow_id = %row.id, error = %e, "trigger filter failed"),
            }
        }
        // A replayed event also re-runs flows that have deliveries for it, even if no longer matching.
        let mut runs = Vec::new();
        for (row, spec) in &matched {
            runs.push(self.run_flow(&event, &payload, row, spec, now).await?);
        }

        let all_done = runs.iter().all(|r| r.done);
        let any_dead = runs.iter().any(|r| r.dead);
        let next_due = runs.iter().filter_map(|r| r.next_due).min();
        let mut active: events::ActiveModel = event.clone().into();
        active.runs = Set(event.runs + 1);
        active.updated_at = Set(crate::now());
        if matched.is_empty() {
            active.status = Set(status::IGNORED.into());
            active.processed_at = Set(Some(crate::now()));
            active.next_run_at = Set(None);
        } else if all_done {
            active.status = Set(if any_dead {
                status::FAILED
            } else {
                status::PROCESSED
            }
            .into());
            active.processed_at = Set(Some(crate::now()));
            active.next_run_at = Set(None);
        } else {
            active.status = Set(status::QUEUED.into());
            active.next_run_at = Set(next_due);
        }
        active.update(&self.db).await?;

        if !all_done && let Some(due) = next_due {
            let delay = (due - crate::now()).to_std().unwrap_or_default();
            self.queue
                .push(
                    ProcessEvent {
                        event_id: event.id.clone(),
                    },
                    Some(delay),
                )
                .await?;
        }
        Ok(())
    }

    async fn run_flow(
        &self,
        event: &events::Model,
        payload: &Value,
        flow_row: &flows::Model,
        spec: &FlowSpec,
        now: DateTime<Utc>,
    ) -> anyhow::Result<FlowRun> {
        let mut run = FlowRun::default();
        let connection =
            connections::Entity::find_by_id_in_tenant(&event.tenant_id, &spec.connection_id)
                .one(&self.db)
                .await?;
        let settings: Value = connection
            .as_ref()
            .and_then(|c| serde_json::from_str(&c.settings).ok())
            .unwrap_or(Value::Object(Default::default()));
        let mut ctx = RenderContext {
            event: payload.clone(),
            steps: BTreeMap::new(),
            settings,
            now,
        };

        for step in &spec.steps {
            let delivery = self
                .delivery_for(
                    event,
                    flow_row,
                    &step.id,
                    &step.object,
                    step.action,
                    &spec.connection_id,
                )
                .await?;
            match delivery.status.as_str() {
                ds::SUCCEEDED => {
                    if let Some(id) = &delivery.crm_record_id {
                        ctx.steps.insert(step.id.clone(), id.clone());
                    }
                    continue;
                }
                ds::SKIPPED => continue,
                ds::DEAD => {
                    run.done = true;
                    run.dead = true;
                    return Ok(run);
                }
                ds::RETRYING if delivery.next_attempt_at.is_some_and(|t| t > now) => {
                    run.next_due = delivery.next_attempt_at;
                    return Ok(run);
                }
                _ => {}
            }

            let Some(connection) = connection.as_ref() else {
                self.finish_failed(
                    &delivery,
                    None,
                    CrmError::new(
                        ErrorKind::Permanent,
                        format!("connection {} no longer exists", spec.connection_id),
                    ),
                    false,
                )
                .await?;
                run.done = true;
                run.dead = true;
                return Ok(run);
            };
            if connection.status != "active" {
                let mut active: deliveries::ActiveModel = delivery.into();
                active.status = Set(ds::WAITING.into());
                active.reason = Set(Some(format!("connection {}", connection.status)));
                active.updated_at = Set(crate::now());
                active.update(&self.db).await?;
                return Ok(run);
            }

            let op = match flow::render_step(step, &ctx) {
                Ok(Some(op)) => op,
                Ok(None) => {
                    self.finish_skipped(&delivery, "condition").await?;
                    continue;
                }
                Err(e) => {
                    self.finish_failed(
                        &delivery,
                        None,
                        CrmError::new(ErrorKind::Invalid, e.to_string()),
                        false,
                    )
                    .await?;
                    run.done = true;
                    run.dead = true;
                    return Ok(run);
                }
            };

            match self.execute(event, connection, &delivery, &op).await? {
                StepResult::Succeeded(record_id) => {
                    ctx.steps.insert(step.id.clone(), record_id);
                }
                StepResult::Skipped => {}
                StepResult::Retrying(due) => {
                    run.next_due = Some(due);
                    return Ok(run);
                }
                StepResult::Dead => {
                    run.done = true;
                    run.dead = true;
                    return Ok(run);
                }
            }
        }
        run.done = true;
        Ok(run)
    }

    async fn delivery_for(
        &self,
        event: &events::Model,
        flow_row: &flows::Model,
        step: &str,
        object: &str,
        action: Action,
        connection_id: &str,
    ) -> anyhow::Result<deliveries::Model> {
        let find = || {
            deliveries::Entity::find()
                .filter(deliveries::Column::EventId.eq(event.id.as_str()))
                .filter(deliveries::Column::FlowId.eq(flow_row.id.as_str()))
                .filter(deliveries::Column::Step.eq(step))
        };
        if let Some(existing) = find().one(&self.db).await? {
            return Ok(existing);
        }
        let now = crate::now();
        let row = deliveries::Model {
            id: crate::new_id(),
            tenant_id: event.tenant_id.clone(),
            event_id: event.id.clone(),
            flow_id: flow_row.id.clone(),
            flow_version: flow_row.version,
            connection_id: connection_id.to_string(),
            step: step.to_string(),
            action: action_name(action).into(),
            object: object.to_string(),
            status: ds::PENDING.into(),
            attempts: 0,
            crm_record_id: None,
            operation: None,
            error_kind: None,
            error_message: None,
            vendor_status: None,
            vendor_body: None,
            warnings: "[]".into(),
            reason: None,
            next_attempt_at: None,
            duration_ms: None,
            created_at: now,
            updated_at: now,
        };
        match deliveries::Entity::insert(deliveries::ActiveModel::from(row.clone()))
            .exec(&self.db)
            .await
        {
            Ok(_) => Ok(row),
            // Another run created it at the same moment: use theirs.
            Err(_) => find().one(&self.db).await?.context("delivery row vanished"),
        }
    }

    /// Runs one operation and records its outcome. Sandbox writes share the transaction that
    /// claims and completes the delivery, so a crash leaves either both or neither.
    async fn execute(
        &self,
        event: &events::Model,
        connection: &connections::Model,
        delivery: &deliveries::Model,
        op: &Operation,
    ) -> anyhow::Result<StepResult> {
        let started = std::time::Instant::now();
        let txn = crate::db::begin_write(&self.db).await?;
        let claimed = deliveries::Entity::update_many()
            .col_expr(
                deliveries::Column::Attempts,
                sea_orm::sea_query::ExprTrait::add(
                    sea_orm::sea_query::Expr::col(deliveries::Column::Attempts),
                    1,
                ),
            )
            .col_expr(
                deliveries::Column::UpdatedAt,
                sea_orm::sea_query::Expr::value(crate::now()),
            )
            .filter(deliveries::Column::Id.eq(delivery.id.as_str()))
            .filter(deliveries::Column::Status.is_in([ds::PENDING, ds::RETRYING, ds::WAITING]))
            .exec(&txn)
            .await?
            .rows_affected
            == 1;
        if !claimed {
            txn.rollback().await?;
            return Ok(StepResult::Skipped);
        }
        let attempts = delivery.attempts + 1;

        let link = match (&event.stripe_object_id, op.action) {
            (Some(object_id), Action::Upsert | Action::Update) => {
                record_links::Entity::find()
                    .filter(record_links::Column::ConnectionId.eq(connection.id.as_str()))
                    .filter(record_links::Column::CrmObject.eq(op.object.as_str()))
                    .filter(record_links::Column::StripeObjectId.eq(object_id.as_str()))
                    .one(&txn)
                    .await?
            }
            _ => None,
        };
        if let Some(link) = &link
            && link.last_event_created > event.event_created
        {
            let mut active: deliveries::ActiveModel = delivery.clone().into();
            active.status = Set(ds::SKIPPED.into());
            active.reason = Set(Some("stale".into()));
            active.attempts = Set(attempts);
            active.crm_record_id = Set(Some(link.crm_record_id.clone()));
            active.operation = Set(serde_json::to_string(op).ok());
            active.warnings = Set(serde_json::to_string(&[format!(
                "a newer event ({}) was already applied to {} {}",
                link.last_event_id, op.object, link.crm_record_id
            )])?);
            active.next_attempt_at = Set(None);
            active.updated_at = Set(crate::now());
            active.update(&txn).await?;
            txn.commit().await?;
            return Ok(StepResult::Skipped);
        }

        let result = match connection.provider.as_str() {
            "sandbox" => {
                crm::sandbox::apply(
                    &txn,
                    connection,
                    op,
                    link.as_ref().map(|l| l.crm_record_id.as_str()),
                )
                .await
            }
            other => Err(CrmError::new(
                ErrorKind::Permanent,
                format!("the {other} provider is not available yet"),
            )),
        };
        let duration_ms = started.elapsed().as_millis() as i64;

        match result {
            Ok(outcome) => {
                let mut active: deliveries::ActiveModel = delivery.clone().into();
                active.status = Set(ds::SUCCEEDED.into());
                active.attempts = Set(attempts);
                active.crm_record_id = Set(Some(outcome.record_id.clone()));
                active.operation = Set(serde_json::to_string(op).ok());
                active.warnings = Set(serde_json::to_string(&outcome.warnings)?);
                active.error_kind = Set(None);
                active.error_message = Set(None);
                active.vendor_status = Set(None);
                active.vendor_body = Set(None);
                active.reason = Set(None);
                active.next_attempt_at = Set(None);
                active.duration_ms = Set(Some(duration_ms));
                active.updated_at = Set(crate::now());
                active.update(&txn).await?;
                if let (Some(object_id), Action::Upsert | Action::Update) =
                    (&event.stripe_object_id, op.action)
                {
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
                Ok(StepResult::Succeeded(outcome.record_id))
            }
            Err(error) => {
                // The write failed: nothing of it to keep, but the attempt counts.
                txn.rollback().await?;
                let retry =
                    error.kind.is_retryable() && (attempts as u32) < self.retry.max_attempts;
                self.finish_failed_with(delivery, Some(op), error, retry, attempts, duration_ms)
                    .await
            }
        }
    }

    async fn finish_skipped(
        &self,
        delivery: &deliveries::Model,
        reason: &str,
    ) -> anyhow::Result<()> {
        let mut active: deliveries::ActiveModel = delivery.clone().into();
        active.status = Set(ds::SKIPPED.into());
        active.reason = Set(Some(reason.into()));
        active.updated_at = Set(crate::now());
        active.update(&self.db).await?;
        Ok(())
    }

    async fn finish_failed(
        &self,
        delivery: &deliveries::Model,
        op: Option<&Operation>,
        error: CrmError,
        retry: bool,
    ) -> anyhow::Result<()> {
        self.finish_failed_with(delivery, op, error, retry, delivery.attempts + 1, 0)
            .await?;
        Ok(())
    }

    async fn finish_failed_with(
        &self,
        delivery: &deliveries::Model,
        op: Option<&Operation>,
        error: CrmError,
        retry: bool,
        attempts: i32,
        duration_ms: i64,
    ) -> anyhow::Result<StepResult> {
        let mut active: deliveries::ActiveModel = delivery.clone().into();
        active.attempts = Set(attempts);
        active.operation = Set(op.and_then(|op| serde_json::to_string(op).ok()));
        active.error_kind = Set(Some(error.kind.as_str().into()));
        active.error_message = Set(Some(error.message.clone()));
        active.vendor_status = Set(error.vendor_status.map(i32::from));
        active.vendor_body = Set(error.vendor_body.clone());
        active.duration_ms = Set(Some(duration_ms));
        active.updated_at = Set(crate::now());
        let result = if retry {
            let delay = retry_delay(&self.retry, attempts as u32, error.retry_after);
            let due = crate::now() + chrono::Duration::from_std(delay).unwrap_or_default();
            active.status = Set(ds::RETRYING.into());
            active.next_attempt_at = Set(Some(due));
            StepResult::Retrying(due)
        } else {
            active.status = Set(ds::DEAD.into());
            active.next_attempt_at = Set(None);
            active.reason = Set(Some(
                if error.kind.is_retryable() {
                    "attempts_exhausted"
                } else {
                    "not_retryable"
                }
                .into(),
            ));
            StepResult::Dead
        };
        active.update(&self.db).await?;
        tracing::info!(delivery_id = %delivery.id, kind = error.kind.as_str(), attempts, "delivery failed");
        Ok(result)
    }
}

enum StepResult {
    Succeeded(String),
    Skipped,
    Retrying(DateTime<Utc>),
    Dead,
}

fn action_name(action: Action) -> &'static str {
    match action {
        Action::Upsert => "upsert",
        Action::Create => "create",
        Action::Update => "update",
    }
}

async fn upsert_link<C: ConnectionTrait>(
    db: &C,
    event: &events::Model,
    connection: &connections::Model,
    object: &str,
    stripe_object_id: &str,
    record_id: &str,
    existing: Option<record_links::Model>,
) -> anyhow::Result<()> {
    match existing {
        Some(link) => {
            let newest = link.last_event_created.max(event.event_created);
            let mut active: record_links::ActiveModel = link.into();
            active.crm_record_id = Set(record_id.to_string());
            active.last_event_created = Set(newest);
            active.last_event_id = Set(event.id.clone());
            active.updated_at = Set(crate::now());
            active.update(db).await?;
        }
        None => {
            record_links::Entity::insert(record_links::ActiveModel {
                id: Set(crate::new_id()),
                tenant_id: Set(event.tenant_id.clone()),
                connection_id: Set(connection.id.clone()),
                crm_object: Set(object.to_string()),
                stripe_object_id: Set(stripe_object_id.to_string()),
                crm_record_id: Set(record_id.to_string()),
                last_event_created: Set(event.event_created),
                last_event_id: Set(event.id.clone()),
                updated_at: Set(crate::now()),
            })
            .exec(db)
            .await?;
        }
    }
    Ok(())
}

/// Looks up the flow version a delivery ran, for display.
pub async fn flow_version(
    db: &DatabaseConnection,
    tenant_id: &str,
    flow_id: &str,
    version: i32,
) -> anyhow::Result<Option<flow_versions::Model>> {
    Ok(flow_versions::Entity::find_in_tenant(tenant_id)
        .filter(flow_versions::Column::FlowId.eq(flow_id))
        .filter(flow_versions::Column::Version.eq(version))
        .one(db)
        .await?)
}
