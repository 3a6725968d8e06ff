//! The engine: runs one stored event through every enabled flow of its tenant that matches
//! it, one delivery per step. A step that succeeded never runs again for that event; a
//! retryable failure schedules the event again after a jittered backoff; anything else, or
//! running out of attempts, dead-letters the step with its reason. Events of different tenants
//! and flows never wait on each other: a failing flow only stops its own later steps.

use crate::sealed;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use entity::{TenantOwned, connections, deliveries, events, flows, record_links};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    DbBackend, EntityTrait, QueryFilter, QueryOrder, Statement,
};
use serde_json::Value;

use crate::crm::{self, CrmError, ErrorKind, Trail};
use crate::flow::{self, Action, FlowSpec, Operation, RenderContext};
use crate::history::{self, Attempt, outcome};
use crate::queue::{ProcessEvent, Queue};
use crate::settings::RetrySettings;

use crate::statuses::{delivery_status as ds, status};

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
    /// Talks to the vendors.
    pub crm: Arc<crm::Connector>,
    /// Talks to Stripe (`stripe.retrieve` steps, refetch-on-apply).
    pub stripe: Arc<crate::stripe::StripeApi>,
    /// Each tenant's share of this process's job slots.
    pub fairness: Arc<Fairness>,
    /// Test-only fault hooks (off in production).
    pub faults: crate::faults::Faults,
}

/// Stripe objects fetched during one run of one event, by object, id and expansions, so a
/// flow (or several) asking for the same object again is served without another call.
type Fetched = HashMap<String, Value>;

/// What one run of one event shares between its flows.
struct EventRun<'a> {
    now: DateTime<Utc>,
    fetched: Fetched,
    /// The event's deliveries as they were when the run started.
    existing: &'a [deliveries::Model],
}

/// Whether a stored flow calls `password()` or `token(…)` anywhere.
fn uses_generated_secrets(spec: &str) -> bool {
    spec.contains("password(") || spec.contains("token(")
}

/// Rate-limited attempts after which a delivery is dead-lettered anyway.
const MAX_THROTTLED_ATTEMPTS: i32 = 50;

impl Engine {
    /// Runs `event_id`. Safe to call again at any time, even concurrently: finished steps are
    /// not repeated, and the event's status is derived from its stored deliveries at the end,
    /// so a replay that lands while a run is in flight is never overwritten.
    pub async fn process(&self, event_id: &str) -> anyhow::Result<()> {
        let Some(event) = events::Entity::find_by_id(event_id.to_string())
            .one(&self.db)
            .await?
        else {
            tracing::warn!(event_id, "job for an unknown event");
            return Ok(());
        };
        self.process_event(event).await
    }

    /// [`Engine::process`] for an event row just read.
    async fn process_event(&self, event: events::Model) -> anyhow::Result<()> {
        // Every line logged while the event runs carries its tenant and event ids.
        let span = tracing::info_span!("event", tenant_id = %event.tenant_id, event_id = %event.id);
        tracing::Instrument::instrument(self.run_event(event), span).await
    }

    async fn run_event(&self, event: events::Model) -> anyhow::Result<()> {
        if event.status == status::IGNORED
            || (matches!(event.status.as_str(), status::PROCESSED | status::FAILED)
                && !self.has_open_deliveries(&event.id).await?)
        {
            return Ok(());
        }
        let payload: Value =
            serde_json::from_str(&event.payload).context("stored payload is not JSON")?;
        let now = crate::now();

        // Flows with unfinished deliveries for this event run again even if their trigger
        // changed since; disabled or deleted flows' deliveries are closed as skipped.
        let existing = deliveries::Entity::find()
            .filter(deliveries::Column::EventId.eq(event.id.as_str()))
            .all(&self.db)
            .await?;
        let mut matched = Vec::new();
        let mut run_flow_ids = Vec::new();
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
            let has_deliveries = existing.iter().any(|d| d.flow_id == row.id);
            let matches = match flow::trigger_matches(&spec, &payload) {
                Ok(matches) => matches,
                Err(e) => {
                    tracing::warn!(flow_id = %row.id, error = %e, "trigger filter failed");
                    false
                }
            };
            if matches || has_deliveries {
                run_flow_ids.push(row.id.clone());
                matched.push((row, spec));
            }
        }
        for orphan in existing
            .iter()
            .filter(|d| !run_flow_ids.contains(&d.flow_id) && is_open(&d.status))
        {
            self.transition(orphan, OPEN, |active| {
                active.status = Set(ds::SKIPPED.into());
                active.reason = Set(Some("flow_disabled".into()));
            })
            .await?;
        }

        let mut scheduled: Option<DateTime<Utc>> = None;
        let mut run = EventRun {
            now,
            fetched: Fetched::new(),
            existing: &existing,
        };
        for (row, spec) in &matched {
            if let Some(due) = self.run_flow(&event, &payload, row, spec, &mut run).await? {
                scheduled = Some(scheduled.map_or(due, |s| s.min(due)));
            }
        }

        self.settle(&event, !matched.is_empty()).await?;
        // Only a retry scheduled by this run needs a job; overdue work is the sweeper's.
        if let Some(due) = scheduled {
            let delay = (due - crate::now()).to_std().unwrap_or_default();
            tracing::debug!(event_id = %event.id, ?delay, "event scheduled to run again");
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

    async fn has_open_deliveries(&self, event_id: &str) -> anyhow::Result<bool> {
        Ok(deliveries::Entity::find()
            .filter(deliveries::Column::EventId.eq(event_id))
            .filter(deliveries::Column::Status.is_in(OPEN.iter().copied()))
            .one(&self.db)
            .await?
            .is_some())
    }

    /// Sets the event's status from its deliveries as they are stored now.
    async fn settle(&self, event: &events::Model, matched: bool) -> anyhow::Result<()> {
        let rows = deliveries::Entity::find()
            .filter(deliveries::Column::EventId.eq(event.id.as_str()))
            .all(&self.db)
            .await?;
        let at = crate::now();
        let mut update = events::ActiveModel {
            runs: Set(event.runs + 1),
            updated_at: Set(at),
            ..Default::default()
        };
        let open: Vec<&deliveries::Model> = rows.iter().filter(|d| is_open(&d.status)).collect();
        if !matched && rows.is_empty() {
            update.status = Set(status::IGNORED.into());
            update.processed_at = Set(Some(at));
            update.next_run_at = Set(None);
        } else if open.is_empty() {
            let dead = rows.iter().any(|d| d.status == ds::DEAD);
            update.status = Set(if dead {
                status::FAILED
            } else {
                status::PROCESSED
            }
            .into());
            update.processed_at = Set(Some(at));
            update.next_run_at = Set(None);
        } else {
            // Pending work is due now; retries when scheduled; waiting work when released.
            let due = open
                .iter()
                .filter_map(|d| match d.status.as_str() {
                    ds::PENDING => Some(at),
                    ds::RETRYING => Some(d.next_attempt_at.unwrap_or(at)),
                    _ => None,
                })
                .min();
            update.status = Set(status::QUEUED.into());
            update.processed_at = Set(None);
            update.next_run_at = Set(due);
        }
        let settled = match &update.status {
            sea_orm::ActiveValue::Set(status) => status.clone(),
            _ => String::new(),
        };
        events::Entity::update_many()
            .set(update)
            .filter(events::Column::Id.eq(event.id.as_str()))
            .exec(&self.db)
            .await?;
        tracing::info!(status = %settled, deliveries = rows.len(), "event settled");
        Ok(())
    }

    /// Updates a delivery only if it is still in one of `from`: a write based on what this run
    /// read never undoes what another run finished meanwhile. Returns whether it applied.
    async fn transition(
        &self,
        delivery: &deliveries::Model,
        from: &[&str],
        change: impl FnOnce(&mut deliveries::ActiveModel),
    ) -> anyhow::Result<bool> {
        self.update_delivery(delivery, Guard::Status(from), None, change)
            .await
    }

    /// Updates a delivery under `guard`; with an `attempt`, the attempt joins its history in the
    /// same transaction, and only if the update applied. Returns whether it applied.
    async fn update_delivery(
        &self,
        delivery: &deliveries::Model,
        guard: Guard<'_>,
        attempt: Option<Attempt>,
        change: impl FnOnce(&mut deliveries::ActiveModel),
    ) -> anyhow::Result<bool> {
        let mut active = deliveries::ActiveModel {
            updated_at: Set(crate::now()),
            ..Default::default()
        };
        change(&mut active);
        let update = deliveries::Entity::update_many()
            .set(active)
            .filter(deliveries::Column::Id.eq(delivery.id.as_str()));
        let update = match guard {
            Guard::Status(from) => {
                update.filter(deliveries::Column::Status.is_in(from.iter().copied()))
            }
            Guard::Claim => update.filter(deliveries::Column::UpdatedAt.eq(delivery.updated_at)),
        };
        let Some(attempt) = attempt else {
            return Ok(update.exec(&self.db).await?.rows_affected == 1);
        };
        let txn = crate::db::begin_write(&self.db).await?;
        let applied = update.exec(&txn).await?.rows_affected == 1;
        if applied {
            history::record(&txn, delivery, attempt).await?;
        }
        txn.commit().await?;
        Ok(applied)
    }

    /// Runs one flow's steps in order; returns when a retry this run scheduled is due.
    async fn run_flow(
        &self,
        event: &events::Model,
        payload: &Value,
        flow_row: &flows::Model,
        spec: &FlowSpec,
        run: &mut EventRun<'_>,
    ) -> anyhow::Result<Option<DateTime<Utc>>> {
        let now = run.now;
        let mut payload = std::borrow::Cow::Borrowed(payload);
        if spec.refetch {
            match self
                .refetch(event, flow_row, &payload, now, &mut run.fetched)
                .await?
            {
                Refetched::Current(object) => {
                    if let Some(data) = payload.to_mut().get_mut("data") {
                        data["object"] = object;
                    }
                }
                Refetched::Snapshot => {}
                Refetched::Wait(due) => return Ok(due),
            }
        }
        let payload = payload.as_ref();
        let connection =
            connections::Entity::find_by_id_in_tenant(&event.tenant_id, &spec.connection_id)
                .one(&self.db)
                .await?;
        let settings: Value = connection
            .as_ref()
            .and_then(|c| serde_json::from_str(&c.settings).ok())
            .unwrap_or(Value::Object(Default::default()));
        let mut discovered = false;
        let mut ctx = RenderContext {
            event: payload.clone(),
            steps: BTreeMap::new(),
            responses: BTreeMap::new(),
            objects: BTreeMap::new(),
            settings,
            now,
            // password() and token(n) give the same value on every attempt of this event's
            // run of this flow, and it is never stored.
            // Only flows that make secrets need the event's seed (one more row per event).
            secret_seed: if uses_generated_secrets(&flow_row.spec) {
                Some(format!("{}|{}", self.event_seed(event).await?, flow_row.id))
            } else {
                None
            },
        };

        for step in &spec.steps {
            let (delivery, fresh) = self
                .delivery_for(
                    event,
                    flow_row,
                    (&step.id, &step.object, action_name(step.action)),
                    &spec.connection_id,
                    Some(run.existing),
                )
                .await?;
            note_current_delivery(&delivery.id);
            // A retry after the flow was edited runs the new version: say so.
            let delivery = if is_open(&delivery.status) && delivery.flow_version != flow_row.version
            {
                let version = flow_row.version;
                self.transition(&delivery, OPEN, |active| active.flow_version = Set(version))
                    .await?;
                deliveries::Model {
                    flow_version: version,
                    ..delivery
                }
            } else {
                delivery
            };
            match delivery.status.as_str() {
                ds::SUCCEEDED | ds::SKIPPED => {
                    let answer = delivery
                        .response
                        .as_deref()
                        .and_then(|r| serde_json::from_str(r).ok());
                    ctx.finished(step, delivery.crm_record_id.clone(), answer);
                    continue;
                }
                ds::DEAD => return Ok(None),
                // Not due yet (or in another run's hands): run again when it is.
                ds::RETRYING if delivery.next_attempt_at.is_some_and(|t| t > now) => {
                    return Ok(delivery.next_attempt_at);
                }
                _ => {}
            }

            // Reading from Stripe needs no CRM connection.
            if step.action == Action::StripeRetrieve {
                let op = match self.render(step, &ctx, &delivery).await? {
                    Rendered::Run(op) => *op,
                    Rendered::Skipped => continue,
                    Rendered::Failed => return Ok(None),
                };
                match self
                    .retrieve(event, &delivery, &op, &mut run.fetched)
                    .await?
                {
                    StepResult::Done(id, object) => {
                        ctx.finished(step, id, object);
                        continue;
                    }
                    StepResult::Retrying(due) => return Ok(Some(due)),
                    StepResult::Stop => return Ok(None),
                }
            }

            // An assert only looks at the data: it passes, or it ends the flow here.
            if step.action == Action::Assert {
                let op = match self.render(step, &ctx, &delivery).await? {
                    Rendered::Run(op) => *op,
                    Rendered::Skipped => continue,
                    Rendered::Failed => return Ok(None),
                };
                if self.assert(&delivery, &op).await? {
                    continue;
                }
                return Ok(None);
            }

            // An http step without a connection calls its URL as it is, with no credentials.
            if step.action == Action::Http && step.connection_id.is_none() {
                let mut op = match self.render(step, &ctx, &delivery).await? {
                    Rendered::Run(op) => *op,
                    Rendered::Skipped => continue,
                    Rendered::Failed => return Ok(None),
                };
                self.faults.step(&op);
                let target = match self.http_target(event, &mut op) {
                    Ok(target) => target,
                    Err(error) => {
                        self.record_failure(
                            &delivery,
                            Some(&op),
                            error,
                            Failure::final_attempt(&delivery),
                        )
                        .await?;
                        return Ok(None);
                    }
                };
                match self
                    .execute_remote(event, &target, &delivery, &op, fresh)
                    .await?
                {
                    StepResult::Done(record_id, response) => {
                        ctx.finished(step, record_id, response);
                        continue;
                    }
                    StepResult::Retrying(due) => return Ok(Some(due)),
                    StepResult::Stop => return Ok(None),
                }
            }

            // A step may name its own connection (an email's smtp server, an http step's
            // endpoint); the others use the flow's.
            let own;
            let connection = match &step.connection_id {
                Some(id) => {
                    own = connections::Entity::find_by_id_in_tenant(&event.tenant_id, id)
                        .one(&self.db)
                        .await?;
                    own.as_ref()
                }
                None => connection.as_ref(),
            };
            let connection_id = step.connection_id.as_ref().unwrap_or(&spec.connection_id);
            let Some(connection) = connection else {
                let error = CrmError::new(
                    ErrorKind::Permanent,
                    format!("connection {connection_id} no longer exists"),
                );
                self.record_failure(&delivery, None, error, Failure::final_attempt(&delivery))
                    .await?;
                return Ok(None);
            };
            let wrong_kind = match step.action {
                Action::Email => (connection.provider != "smtp").then_some("an smtp connection"),
                Action::Http => (connection.provider != "http").then_some("an http connection"),
                _ => (connection.provider == "smtp").then_some("a CRM connection"),
            };
            if let Some(wanted) = wrong_kind {
                let error = CrmError::new(
                    ErrorKind::Invalid,
                    format!(
                        "{} steps need {wanted}; connection {connection_id} is {}",
                        step.action, connection.provider
                    ),
                );
                self.record_failure(&delivery, None, error, Failure::final_attempt(&delivery))
                    .await?;
                return Ok(None);
            }
            // A pause or a vendor's Retry-After holds every delivery of the connection.
            let held = connection
                .paused_until
                .filter(|until| *until > crate::now());
            if connection.status == "paused" && held.is_none() {
                self.resume(connection).await?;
            }
            if let Some(until) = held
                && matches!(connection.status.as_str(), "active" | "paused")
            {
                let reason = if connection.status == "paused" {
                    "connection paused"
                } else {
                    "connection held: rate limited"
                };
                let applied = self
                    .transition(&delivery, OPEN, |active| {
                        active.status = Set(ds::RETRYING.into());
                        active.reason = Set(Some(reason.into()));
                        active.next_attempt_at = Set(Some(until));
                    })
                    .await?;
                tracing::debug!(delivery_id = %delivery.id, %until, reason, "delivery held by its connection");
                return Ok(applied.then_some(until));
            }
            if !matches!(connection.status.as_str(), "active" | "paused") {
                let reason = format!("connection {}", connection.status);
                self.transition(&delivery, OPEN, |active| {
                    active.status = Set(ds::WAITING.into());
                    active.reason = Set(Some(reason));
                })
                .await?;
                return Ok(None);
            }

            // Vendor-discovered settings (Salesforce's won stage) of the flow's connection,
            // once per run.
            if !discovered && connection.provider != "sandbox" && step.connection_id.is_none() {
                let started = std::time::Instant::now();
                let (found, trail) = crm::template_settings(&self.crm, connection).await;
                match found {
                    Ok(settings) => {
                        ctx.settings = settings;
                        discovered = true;
                    }
                    Err(error) => {
                        let tried = Tried {
                            attempts: delivery.attempts + 1,
                            duration_ms: elapsed_ms(started),
                            claim: None,
                            trail,
                        };
                        return Ok(
                            match self.fail(connection, &delivery, None, error, tried).await? {
                                StepResult::Retrying(due) => Some(due),
                                _ => None,
                            },
                        );
                    }
                }
            }

            let mut op = match self.render(step, &ctx, &delivery).await? {
                Rendered::Run(op) => *op,
                Rendered::Skipped => continue,
                Rendered::Failed => return Ok(None),
            };
            if step.action == Action::Email {
                // The Message-ID is the delivery's own, so every attempt sends the same message.
                op.record_id = Some(crate::actions::email::message_id(&delivery.id, connection));
            }

            self.faults.step(&op);
            let result = if connection.provider == "sandbox" {
                self.execute(event, connection, &delivery, &op).await?
            } else {
                self.execute_remote(event, connection, &delivery, &op, fresh)
                    .await?
            };
            match result {
                StepResult::Done(record_id, response) => {
                    ctx.finished(step, record_id, response);
                }
                StepResult::Retrying(due) => return Ok(Some(due)),
                StepResult::Stop => return Ok(None),
            }
        }
        Ok(None)
    }

    async fn delivery_for(
        &self,
        event: &events::Model,
        flow_row: &flows::Model,
        (step, object, action): (&str, &str, &str),
        connection_id: &str,
        existing: Option<&[deliveries::Model]>,
    ) -> anyhow::Result<(deliveries::Model, bool)> {
        let find = || {
            deliveries::Entity::find()
                .filter(deliveries::Column::EventId.eq(event.id.as_str()))
                .filter(deliveries::Column::FlowId.eq(flow_row.id.as_str()))
                .filter(deliveries::Column::Step.eq(step))
        };
        // `existing`: the event's deliveries read at the start of this run. When the step had
        // none then, it is created straight away (a run that made one meanwhile wins the
        // insert, and its row is read below); otherwise it is read as it is now. The flag
        // says whether this run created it.
        let had_none = existing.is_some_and(|rows| {
            !rows
                .iter()
                .any(|d| d.flow_id == flow_row.id && d.step == step)
        });
        if !had_none && let Some(existing) = find().one(&self.db).await? {
            return Ok((existing, false));
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
            action: action.into(),
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
            response: None,
            throttled_attempts: 0,
            created_at: now,
            updated_at: now,
        };
        match deliveries::Entity::insert(deliveries::ActiveModel::from(row.clone()))
            .exec(&self.db)
            .await
        {
            Ok(_) => Ok((row, true)),
            // Another run created it at the same moment: use theirs.
            Err(insert_error) => match find().one(&self.db).await? {
                Some(theirs) => Ok((theirs, false)),
                None => Err(anyhow::Error::new(insert_error).context("creating a delivery")),
            },
        }
    }

    /// Runs one operation and records its outcome. Sandbox writes share the transaction that
    /// claims and completes the delivery, so a crash leaves either both or neither, and a
    /// second run that loses the claim uses the first one's result.
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
                deliveries::Column::UpdatedAt,
                sea_orm::sea_query::Expr::value(crate::now()),
            )
            .filter(deliveries::Column::Id.eq(delivery.id.as_str()))
            .filter(deliveries::Column::Status.is_in(OPEN.iter().copied()))
            .exec(&txn)
            .await?
            .rows_affected
            == 1;
        if !claimed {
            txn.rollback().await?;
            return self.outcome_of_other_run(delivery).await;
        }
        let attempts = delivery.attempts + 1;

        // Serialise writers of the same Stripe object and match key (Postgres; SQLite
        // transactions here are already exclusive), so two events cannot both create a record
        // or move a link backwards.
        let linked_object = linked_object(event, op);
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

        let link = find_link(&txn, connection, op, linked_object).await?;
        let stale = match &link {
            Some(l) => superseded(&txn, l, event).await?,
            None => false,
        };
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
    async fn execute_remote(
        &self,
        event: &events::Model,
        connection: &connections::Model,
        delivery: &deliveries::Model,
        op: &Operation,
        fresh: bool,
    ) -> anyhow::Result<StepResult> {
        let started = std::time::Instant::now();
        // A delivery this run just created is as it was written; any other is read again.
        let current = if fresh {
            Some(delivery.clone())
        } else {
            deliveries::Entity::find_by_id(delivery.id.clone())
                .one(&self.db)
                .await?
        };
        let Some(current) = current else {
            return Ok(StepResult::Stop);
        };
        let now = crate::now();
        if !is_open(&current.status)
            || (current.status == ds::RETRYING && current.next_attempt_at.is_some_and(|t| t > now))
        {
            return self.outcome_of_other_run(delivery).await;
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
            return self.outcome_of_other_run(delivery).await;
        }
        let attempts = current.attempts + 1;
        let claimed_row = deliveries::Model {
            status: ds::RETRYING.into(),
            updated_at: claim,
            ..current
        };

        let linked_object = linked_object(event, op);
        let link = find_link(&self.db, connection, op, linked_object).await?;
        let stale = match &link {
            Some(l) => superseded(&self.db, l, event).await?,
            None => false,
        };
        if let Some(link) = link.as_ref().filter(|_| stale) {
            let warning = stale_warning(link, op, event.event_created);
            let attempt = skipped_as_stale(&claimed_row, op, &warning, elapsed_ms(started));
            self.update_delivery(&claimed_row, Guard::Claim, Some(attempt), |active| {
                mark_stale(active, link, op, attempts, &warning)
            })
            .await?;
            return Ok(StepResult::Done(Some(link.crm_record_id.clone()), None));
        }

        let (result, trail) = crm::apply(
            &self.crm,
            connection,
            op,
            link.as_ref().map(|l| l.crm_record_id.as_str()),
        )
        .await;
        let duration_ms = elapsed_ms(started);
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(error) => {
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
        Ok(StepResult::Done(Some(outcome.record_id), outcome.response))
    }

    /// Ends a pause whose time is up: the connection is active again.
    async fn resume(&self, connection: &connections::Model) -> anyhow::Result<()> {
        connections::Entity::update_many()
            .set(connections::ActiveModel {
                status: Set("active".into()),
                status_reason: Set(None),
                paused_until: Set(None),
                updated_at: Set(crate::now()),
                ..Default::default()
            })
            .filter(connections::Column::Id.eq(connection.id.as_str()))
            .filter(connections::Column::Status.eq("paused"))
            .filter(connections::Column::PausedUntil.lte(crate::now()))
            .exec(&self.db)
            .await?;
        tracing::info!(connection_id = %connection.id, "connection pause ended");
        Ok(())
    }

    /// Connection credentials to keep out of what an attempt of `connection` stores.
    fn credentials_of(&self, connection: &connections::Model) -> Vec<String> {
        if connection.id.is_empty() {
            return Vec::new();
        }
        crm::session::credential_values(&self.crm.keyring, connection)
    }

    /// Records a failed attempt as its kind demands: refused credentials make the connection
    /// `needs_reauth` and the delivery wait; a rate limit holds the whole connection for the
    /// vendor's `Retry-After` (a daily limit pauses it) without using up the retry budget;
    /// anything else retries with backoff or is dead-lettered.
    ///
    /// A vendor that echoes what it was sent never gets the connection's credentials (nor
    /// generated secrets) into what the delivery and its history keep.
    async fn fail(
        &self,
        connection: &connections::Model,
        delivery: &deliveries::Model,
        op: Option<&Operation>,
        error: CrmError,
        tried: Tried,
    ) -> anyhow::Result<StepResult> {
        let Tried {
            attempts,
            duration_ms,
            claim,
            trail,
        } = tried;
        let secrets = self.credentials_of(connection);
        let mut error = error;
        if let Some(op) = op {
            error.message = op.redact(&error.message);
            error.vendor_body = error.vendor_body.as_deref().map(|b| op.redact(b));
        }
        error.message = history::scrub(&error.message, &secrets);
        error.vendor_body = error
            .vendor_body
            .as_deref()
            .map(|b| history::scrub(b, &secrets));
        let request = asked(Some(&trail), delivery, op, &secrets);
        if connection.id.is_empty() && error.kind == ErrorKind::Auth {
            // An http step without a connection has no credentials to renew.
            error.kind = ErrorKind::Permanent;
        }
        // A vendor's waits are capped (and the cut recorded) before anything is computed.
        let warning = clamp_waits(&mut error);
        let now = crate::now();
        let throttled = error.kind == ErrorKind::RateLimited || error.pause.is_some();
        if error.kind == ErrorKind::Auth {
            crm::session::mark_needs_reauth(&self.db, &connection.id, &error.message).await?;
            let operation = op.and_then(Operation::stored_json);
            let attempt = Attempt {
                outcome: outcome::WAITING,
                duration_ms,
                request: Some(request),
                vendor_status: error.vendor_status.map(i32::from),
                error_kind: Some(error.kind.as_str().into()),
                error_message: Some(error.message.clone()),
                response: error.vendor_body.clone(),
                reason: Some(NEEDS_REAUTH.into()),
            };
            let change = |active: &mut deliveries::ActiveModel| {
                active.status = Set(ds::WAITING.into());
                active.reason = Set(Some(NEEDS_REAUTH.into()));
                active.attempts = Set(attempts);
                active.operation = Set(operation);
                active.error_kind = Set(Some(error.kind.as_str().into()));
                active.error_message = Set(Some(error.message.clone()));
                active.vendor_status = Set(error.vendor_status.map(i32::from));
                active.vendor_body = Set(error.vendor_body.clone());
                active.duration_ms = Set(Some(duration_ms));
                active.next_attempt_at = Set(None);
            };
            let applied = self
                .update_delivery(delivery, Guard::of(claim), Some(attempt), change)
                .await?;
            if !applied {
                return self.outcome_of_other_run(delivery).await;
            }
            crate::metrics::delivery(&connection.provider, ds::WAITING);
            return Ok(StepResult::Stop);
        }
        if throttled {
            let wait = error
                .pause
                .or(error.retry_after)
                .unwrap_or(Duration::from_secs(1));
            let until = crate::vendor_time::after(now, wait);
            crate::metrics::rate_limited(&connection.provider, wait.as_secs_f64());
            match error.pause {
                Some(_) => {
                    crm::session::pause(&self.db, &connection.id, until, &error.message).await?
                }
                None => crm::session::hold(&self.db, &connection.id, until).await?,
            }
        }
        let budget_used = attempts - delivery.throttled_attempts - i32::from(throttled);
        let retry = if throttled {
            delivery.throttled_attempts + 1 < MAX_THROTTLED_ATTEMPTS
        } else {
            error.kind.is_retryable() && (budget_used as u32) < self.retry.max_attempts
        };
        crate::metrics::delivery(
            &connection.provider,
            if retry { ds::RETRYING } else { ds::DEAD },
        );
        self.record_failure(
            delivery,
            op,
            error,
            Failure {
                retry,
                attempts,
                throttled: delivery.throttled_attempts + i32::from(throttled),
                duration_ms,
                claim,
                warning,
                request: Some(request),
            },
        )
        .await
    }

    /// The event's seed for generated secrets: made and sealed on its first run; a run that
    /// loses the race to make it reads the winner's.
    async fn event_seed(&self, event: &events::Model) -> anyhow::Result<String> {
        use entity::event_seeds;
        let context = crate::secrets::SecretContext {
            tenant_id: &event.tenant_id,
            purpose: sealed::EVENT_SEED,
            row_id: &event.id,
        };
        let find = || event_seeds::Entity::find_by_id(event.id.clone()).one(&self.db);
        let row = match find().await? {
            Some(row) => row,
            None => {
                let seed = hex::encode(crate::secrets::random_bytes::<32>());
                event_seeds::Entity::insert(event_seeds::ActiveModel {
                    event_id: Set(event.id.clone()),
                    tenant_id: Set(event.tenant_id.clone()),
                    seed: Set(self.crm.keyring.seal(&seed, &context)),
                    created_at: Set(crate::now()),
                })
                .on_conflict(
                    sea_orm::sea_query::OnConflict::column(event_seeds::Column::EventId)
                        .do_nothing()
                        .to_owned(),
                )
                .exec_without_returning(&self.db)
                .await?;
                find()
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("the event's seed vanished"))?
            }
        };
        let seed = self
            .crm
            .keyring
            .open(&row.seed, &context)
            .context("the event's seed for generated secrets cannot be opened")?;
        Ok(crate::secrets::expose(&seed).to_string())
    }

    /// Records an assert step: succeeded when its check held; otherwise skipped with the
    /// reason, which ends the flow for this event. Returns whether it held.
    async fn assert(&self, delivery: &deliveries::Model, op: &Operation) -> anyhow::Result<bool> {
        let passed = op.fields.get("passed") == Some(&Value::Bool(true));
        let message = op
            .fields
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("the check failed")
            .to_string();
        let operation = op.stored_json();
        let attempts = delivery.attempts + 1;
        let reason = op.redact(&format!("assertion: {message}"));
        let attempt = Attempt {
            outcome: if passed {
                outcome::SUCCEEDED
            } else {
                outcome::SKIPPED
            },
            request: Some(asked(None, delivery, Some(op), &[])),
            reason: (!passed).then(|| reason.clone()),
            ..Default::default()
        };
        self.update_delivery(delivery, Guard::Status(OPEN), Some(attempt), |active| {
            active.attempts = Set(attempts);
            active.operation = Set(operation);
            active.next_attempt_at = Set(None);
            if passed {
                active.status = Set(ds::SUCCEEDED.into());
                active.reason = Set(None);
            } else {
                active.status = Set(ds::SKIPPED.into());
                active.reason = Set(Some(reason));
            }
        })
        .await?;
        if !passed {
            tracing::info!(delivery_id = %delivery.id, reason = %message, "assert stopped the flow");
        }
        Ok(passed)
    }

    /// The endpoint of an http step without a connection: its URL (checked against
    /// `TRIBUTARY_VENDOR_URLS`) as a connection of no credentials, and the path to call on it.
    fn http_target(
        &self,
        event: &events::Model,
        op: &mut Operation,
    ) -> Result<connections::Model, CrmError> {
        let url = op.url.clone().unwrap_or_default();
        let bad = |message: String| CrmError::new(ErrorKind::Invalid, format!("url: {message}"));
        crm::config::check_url("http", &url, self.crm.vendor_urls).map_err(bad)?;
        let parsed = url::Url::parse(&url).map_err(|e| bad(e.to_string()))?;
        let mut base = format!(
            "{}://{}",
            parsed.scheme(),
            parsed.host_str().unwrap_or_default()
        );
        if let Some(port) = parsed.port() {
            base.push_str(&format!(":{port}"));
        }
        let mut path = parsed.path().to_string();
        if let Some(query) = parsed.query() {
            path.push('?');
            path.push_str(query);
        }
        op.path = Some(path);
        let now = crate::now();
        Ok(connections::Model {
            id: String::new(),
            tenant_id: event.tenant_id.clone(),
            name: "http step".into(),
            provider: "http".into(),
            auth_type: "none".into(),
            credentials: None,
            settings: serde_json::json!({ "base_url": base }).to_string(),
            status: "active".into(),
            status_reason: None,
            paused_until: None,
            session: None,
            refresh_lease_until: None,
            vendor_info: "{}".into(),
            created_at: now,
            updated_at: now,
        })
    }

    /// Renders a step for its delivery: a `when` that is false closes the delivery as skipped,
    /// a template that fails dead-letters it (retrying cannot change the outcome).
    async fn render(
        &self,
        step: &flow::Step,
        ctx: &RenderContext,
        delivery: &deliveries::Model,
    ) -> anyhow::Result<Rendered> {
        Ok(match flow::render_step(step, ctx) {
            Ok(Some(op)) => Rendered::Run(Box::new(op)),
            Ok(None) => {
                self.transition(delivery, OPEN, |active| {
                    active.status = Set(ds::SKIPPED.into());
                    active.reason = Set(Some("condition".into()));
                })
                .await?;
                Rendered::Skipped
            }
            Err(e) => {
                let error = CrmError::new(ErrorKind::Invalid, e.to_string());
                self.record_failure(delivery, None, error, Failure::final_attempt(delivery))
                    .await?;
                Rendered::Failed
            }
        })
    }

    /// Fetches the Stripe object of a `stripe.retrieve` operation (once per run for the same
    /// object) and records it as the delivery's answer. Failures are classified like CRM
    /// errors: a missing object, key or permission is dead at once with a message saying what
    /// to fix; Stripe's own trouble and rate limits are retried.
    async fn retrieve(
        &self,
        event: &events::Model,
        delivery: &deliveries::Model,
        op: &Operation,
        fetched: &mut Fetched,
    ) -> anyhow::Result<StepResult> {
        let started = std::time::Instant::now();
        let id = op.record_id.clone().unwrap_or_default();
        let memo = format!("{}|{id}|{}", op.object, op.expand.join(","));
        let result = match fetched.get(&memo) {
            Some(object) => Ok(object.clone()),
            None => {
                let result = self
                    .stripe
                    .retrieve(&event.stripe_account_id, &op.object, &id, &op.expand)
                    .await;
                if let Ok(object) = &result {
                    fetched.insert(memo, object.clone());
                }
                result
            }
        };
        let duration_ms = elapsed_ms(started);
        let attempts = delivery.attempts + 1;
        match result {
            Ok(object) => {
                let object_id = object
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or(&id)
                    .to_string();
                let operation = op.stored_json();
                let response = object.to_string();
                let record = object_id.clone();
                let attempt = Attempt {
                    outcome: outcome::SUCCEEDED,
                    duration_ms,
                    request: Some(asked(None, delivery, Some(op), &[])),
                    response: Some(op.redact(&response)),
                    ..Default::default()
                };
                let applied = self
                    .update_delivery(delivery, Guard::Status(OPEN), Some(attempt), |active| {
                        active.status = Set(ds::SUCCEEDED.into());
                        active.attempts = Set(attempts);
                        active.crm_record_id = Set(Some(record));
                        active.operation = Set(operation);
                        active.response = Set(Some(response));
                        active.error_kind = Set(None);
                        active.error_message = Set(None);
                        active.vendor_status = Set(None);
                        active.vendor_body = Set(None);
                        active.reason = Set(None);
                        active.next_attempt_at = Set(None);
                        active.duration_ms = Set(Some(duration_ms));
                    })
                    .await?;
                if !applied {
                    return self.outcome_of_other_run(delivery).await;
                }
                crate::metrics::delivery("stripe", ds::SUCCEEDED);
                Ok(StepResult::Done(Some(object_id), Some(object)))
            }
            Err(stripe_error) => {
                let mut error = stripe_error.to_crm_error();
                if error.kind == ErrorKind::RateLimited {
                    // The client already waited and retried; this is Stripe's trouble now.
                    error.kind = ErrorKind::Transient;
                }
                let retry = error.kind.is_retryable()
                    && ((attempts - delivery.throttled_attempts) as u32) < self.retry.max_attempts;
                crate::metrics::delivery("stripe", if retry { ds::RETRYING } else { ds::DEAD });
                self.record_failure(
                    delivery,
                    Some(op),
                    error,
                    Failure {
                        retry,
                        attempts,
                        throttled: delivery.throttled_attempts,
                        duration_ms,
                        claim: None,
                        warning: None,
                        request: None,
                    },
                )
                .await
            }
        }
    }

    /// For a `refetch` flow: the event's object as it is at Stripe now, kept as the flow's
    /// `_refetch` delivery so every later attempt of this event works on the same state.
    async fn refetch(
        &self,
        event: &events::Model,
        flow_row: &flows::Model,
        payload: &Value,
        now: DateTime<Utc>,
        fetched: &mut Fetched,
    ) -> anyhow::Result<Refetched> {
        let object = payload.pointer("/data/object");
        let object_type = object
            .and_then(|o| o.get("object"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let object_id = object
            .and_then(|o| o.get("id"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let (delivery, _) = self
            .delivery_for(
                event,
                flow_row,
                (
                    flow::REFETCH_STEP,
                    &object_type,
                    action_name(Action::StripeRetrieve),
                ),
                "",
                None,
            )
            .await?;
        note_current_delivery(&delivery.id);
        match delivery.status.as_str() {
            ds::SUCCEEDED => {
                return Ok(delivery
                    .response
                    .as_deref()
                    .and_then(|r| serde_json::from_str(r).ok())
                    .map_or(Refetched::Snapshot, Refetched::Current));
            }
            ds::SKIPPED => return Ok(Refetched::Snapshot),
            ds::DEAD => return Ok(Refetched::Wait(None)),
            ds::RETRYING if delivery.next_attempt_at.is_some_and(|t| t > now) => {
                return Ok(Refetched::Wait(delivery.next_attempt_at));
            }
            _ => {}
        }
        if crate::stripe::client::object_path(&object_type).is_none() || object_id.is_empty() {
            // Nothing Stripe can give back for this object: the snapshot is all there is.
            self.transition(&delivery, OPEN, |active| {
                active.status = Set(ds::SKIPPED.into());
                active.reason = Set(Some(format!("refetch_unsupported: {object_type}")));
            })
            .await?;
            return Ok(Refetched::Snapshot);
        }
        let op = Operation {
            step: flow::REFETCH_STEP.into(),
            action: Action::StripeRetrieve,
            object: object_type,
            match_fields: Default::default(),
            fields: Default::default(),
            record_id: Some(object_id),
            fallback_fields: Vec::new(),
            associate: Vec::new(),
            method: None,
            path: None,
            expand: Vec::new(),
            connection_id: None,
            url: None,
            headers: Default::default(),
            secrets: Vec::new(),
        };
        Ok(match self.retrieve(event, &delivery, &op, fetched).await? {
            StepResult::Done(_, Some(object)) => Refetched::Current(object),
            StepResult::Done(_, None) => Refetched::Snapshot,
            StepResult::Retrying(due) => Refetched::Wait(Some(due)),
            StepResult::Stop => Refetched::Wait(None),
        })
    }

    /// What another run did with a delivery this run could not claim.
    async fn outcome_of_other_run(
        &self,
        delivery: &deliveries::Model,
    ) -> anyhow::Result<StepResult> {
        let current = deliveries::Entity::find_by_id(delivery.id.clone())
            .one(&self.db)
            .await?;
        Ok(match current {
            Some(d) if d.status == ds::SUCCEEDED || d.status == ds::SKIPPED => {
                let response = d
                    .response
                    .as_deref()
                    .and_then(|r| serde_json::from_str(r).ok());
                StepResult::Done(d.crm_record_id, response)
            }
            _ => StepResult::Stop,
        })
    }

    /// Records a failed attempt: retrying with a jittered delay, or dead with its reason.
    /// Applies only if the delivery is still open, so it never undoes another run's success.
    async fn record_failure(
        &self,
        delivery: &deliveries::Model,
        op: Option<&Operation>,
        error: CrmError,
        failure: Failure,
    ) -> anyhow::Result<StepResult> {
        let Failure {
            retry,
            attempts,
            throttled,
            duration_ms,
            claim,
            warning,
            request,
        } = failure;
        // A vendor may echo what it was sent: generated secrets stay out of what is kept.
        let mut error = error;
        let warning = warning.or_else(|| clamp_waits(&mut error));
        if let Some(op) = op {
            error.message = op.redact(&error.message);
            error.vendor_body = error.vendor_body.as_deref().map(|b| op.redact(b));
        }
        let due = retry.then(|| {
            let delay = retry_delay(&self.retry, attempts as u32, error.retry_after);
            crate::vendor_time::after(crate::now(), delay)
        });
        let warnings = warning.map(|w| serde_json::json!([w]).to_string());
        let operation = op.and_then(Operation::stored_json);
        let kind = error.kind;
        let dead_reason = if kind.is_retryable() {
            "attempts_exhausted"
        } else {
            "not_retryable"
        };
        let attempt = Attempt {
            outcome: match due {
                None => outcome::DEAD,
                Some(_) if throttled > delivery.throttled_attempts => outcome::THROTTLED,
                Some(_) => outcome::RETRYING,
            },
            duration_ms,
            request: Some(request.unwrap_or_else(|| asked(None, delivery, op, &[]))),
            vendor_status: error.vendor_status.map(i32::from),
            error_kind: Some(kind.as_str().into()),
            error_message: Some(error.message.clone()),
            response: error.vendor_body.clone(),
            reason: due.is_none().then(|| dead_reason.into()),
        };
        let change = |active: &mut deliveries::ActiveModel| {
            active.attempts = Set(attempts);
            active.throttled_attempts = Set(throttled);
            active.operation = Set(operation);
            active.error_kind = Set(Some(kind.as_str().into()));
            active.error_message = Set(Some(error.message.clone()));
            active.vendor_status = Set(error.vendor_status.map(i32::from));
            active.vendor_body = Set(error.vendor_body.clone());
            active.duration_ms = Set(Some(duration_ms));
            active.next_attempt_at = Set(due);
            if let Some(warnings) = warnings {
                active.warnings = Set(warnings);
            }
            match due {
                Some(_) => {
                    active.status = Set(ds::RETRYING.into());
                    active.reason = Set(None);
                }
                None => {
                    active.status = Set(ds::DEAD.into());
                    active.reason = Set(Some(dead_reason.into()));
                }
            }
        };
        let applied = self
            .update_delivery(delivery, Guard::of(claim), Some(attempt), change)
            .await?;
        if !applied {
            return self.outcome_of_other_run(delivery).await;
        }
        tracing::info!(delivery_id = %delivery.id, kind = kind.as_str(), attempts, "delivery failed");
        Ok(match due {
            Some(due) => StepResult::Retrying(due),
            None => StepResult::Stop,
        })
    }
}

/// How long a job over its tenant's share and its waiting room waits in the queue before it
/// is offered again.
const DEFER_DELAY: Duration = Duration::from_secs(1);

/// How long a job may wait in the process for one of its tenant's slots before it goes back to
/// the queue instead.
const SLOT_WAIT: Duration = Duration::from_millis(500);

/// Each tenant's share of a process's job slots: at most `share` of one tenant's jobs run at
/// once, so a tenant whose CRM hangs or fails holds no more than that, and the other slots
/// stay free for everyone else. A job over the share waits in the process for the tenant's
/// next free slot (first come, first served) while the tenant has fewer than `waiting`
/// jobs waiting; beyond that, or after [`SLOT_WAIT`], it goes back to the queue. So one busy
/// tenant keeps its share busy without a round trip through the queue, and still holds at
/// most `share + waiting` of the slots.
#[derive(Debug)]
pub struct Fairness {
    share: usize,
    waiting: usize,
    tenants: std::sync::Mutex<HashMap<String, TenantSlots>>,
}

#[derive(Debug, Default)]
struct TenantSlots {
    running: usize,
    waiting: usize,
    freed: Arc<tokio::sync::Notify>,
}

impl Fairness {
    /// `share` of a process's `slots` per tenant; a tenant's jobs may also wait in half of the
    /// slots the share leaves to others.
    pub fn new(share: usize, slots: usize) -> Arc<Fairness> {
        let share = share.max(1);
        Arc::new(Fairness {
            share,
            waiting: slots.saturating_sub(share) / 2,
            tenants: Default::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, TenantSlots>> {
        self.tenants.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for one of `tenant`'s jobs: at once when the tenant is under its share, else
    /// after waiting in line for up to `wait`, if the line is not full. `None`: the job should
    /// go back to the queue.
    pub async fn enter(self: &Arc<Self>, tenant: &str, wait: Duration) -> Option<FairSlot> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut in_line = false;
        loop {
            let freed = {
                let mut tenants = self.lock();
                let slots = tenants.entry(tenant.to_string()).or_default();
                if slots.running < self.share {
                    slots.running += 1;
                    if in_line {
                        slots.waiting -= 1;
                    }
                    return Some(self.slot(tenant));
                }
                if !in_line {
                    if slots.waiting >= self.waiting {
                        return None;
                    }
                    slots.waiting += 1;
                    in_line = true;
                }
                slots.freed.clone()
            };
            if tokio::time::timeout_at(deadline, freed.notified())
                .await
                .is_err()
            {
                let mut tenants = self.lock();
                let slots = tenants.entry(tenant.to_string()).or_default();
                slots.waiting -= 1;
                // A slot freed just now (its wake-up may have gone to another in line).
                if slots.running < self.share {
                    slots.running += 1;
                    return Some(self.slot(tenant));
                }
                return None;
            }
        }
    }

    fn slot(self: &Arc<Self>, tenant: &str) -> FairSlot {
        FairSlot {
            fairness: self.clone(),
            tenant: tenant.to_string(),
        }
    }
}

/// One running job of a tenant; its slot is given back when dropped (even on a panic).
#[derive(Debug)]
pub struct FairSlot {
    fairness: Arc<Fairness>,
    tenant: String,
}

impl Drop for FairSlot {
    fn drop(&mut self) {
        let mut tenants = self.fairness.lock();
        if let Some(slots) = tenants.get_mut(&self.tenant) {
            slots.running = slots.running.saturating_sub(1);
            if slots.waiting > 0 {
                slots.freed.notify_one();
            } else if slots.running == 0 {
                tenants.remove(&self.tenant);
            }
        }
    }
}

tokio::task_local! {
    /// The delivery a job is working on, to name it if the job panics.
    static CURRENT_DELIVERY: std::cell::RefCell<Option<String>>;
}

fn note_current_delivery(id: &str) {
    let _ = CURRENT_DELIVERY.try_with(|current| *current.borrow_mut() = Some(id.to_string()));
}

impl Engine {
    /// Runs one queued job: within its tenant's share of the slots (else it is offered again
    /// shortly), and isolated, so a panic dead-letters the delivery it was working on and the
    /// consumer goes on with the next job.
    pub async fn run_job(&self, event_id: &str) -> anyhow::Result<()> {
        let Some(event) = events::Entity::find_by_id(event_id.to_string())
            .one(&self.db)
            .await?
        else {
            tracing::warn!(event_id, "job for an unknown event");
            return Ok(());
        };
        let tenant = event.tenant_id.clone();
        let asked = std::time::Instant::now();
        let Some(_slot) = self.fairness.enter(&tenant, SLOT_WAIT).await else {
            tracing::debug!(event_id, tenant_id = %tenant, "tenant at its share of the job slots; job deferred");
            crate::metrics::job_deferred();
            return self
                .queue
                .push(
                    ProcessEvent {
                        event_id: event_id.to_string(),
                    },
                    Some(DEFER_DELAY),
                )
                .await;
        };
        CURRENT_DELIVERY
            .scope(std::cell::RefCell::new(None), async {
                use futures::FutureExt;
                // The row read above is current unless the job waited for its slot.
                let run = async {
                    if asked.elapsed() < Duration::from_millis(1) {
                        self.process_event(event).await
                    } else {
                        self.process(event_id).await
                    }
                };
                match std::panic::AssertUnwindSafe(run).catch_unwind().await {
                    Ok(result) => result,
                    Err(payload) => {
                        let message = crate::health::panic_message(payload.as_ref());
                        let delivery = CURRENT_DELIVERY.with(|current| current.borrow().clone());
                        self.record_panic(event_id, delivery, message).await
                    }
                }
            })
            .await
    }

    /// After a job panicked: the delivery it was on is dead (`permanent`, with the panic's
    /// message), the event is settled, and its other open work runs again.
    async fn record_panic(
        &self,
        event_id: &str,
        delivery_id: Option<String>,
        message: String,
    ) -> anyhow::Result<()> {
        let mut message = message;
        if message.len() > 1000 {
            let mut end = 1000;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        tracing::error!(event_id, delivery_id = ?delivery_id, panic = %message, "a job panicked; its delivery is dead-lettered");
        if delivery_id.is_none() {
            crate::metrics::job_panicked();
        }
        let Some(event) = events::Entity::find_by_id(event_id.to_string())
            .one(&self.db)
            .await?
        else {
            return Ok(());
        };
        let delivery = match delivery_id {
            Some(id) => deliveries::Entity::find_by_id(id).one(&self.db).await?,
            None => None,
        };
        let text = format!("internal error while running this step: {message}");
        let Some(delivery) = delivery else {
            // Nothing to pin it on: the event itself fails, and is not run again.
            let at = crate::now();
            events::Entity::update_many()
                .set(events::ActiveModel {
                    status: Set(status::FAILED.into()),
                    processed_at: Set(Some(at)),
                    next_run_at: Set(None),
                    updated_at: Set(at),
                    ..Default::default()
                })
                .filter(events::Column::Id.eq(event_id))
                .exec(&self.db)
                .await?;
            return Ok(());
        };
        let attempts = delivery.attempts + 1;
        let attempt = Attempt {
            outcome: outcome::DEAD,
            request: Some(asked(None, &delivery, None, &[])),
            error_kind: Some(ErrorKind::Permanent.as_str().into()),
            error_message: Some(text.clone()),
            reason: Some("panic".into()),
            ..Default::default()
        };
        self.update_delivery(&delivery, Guard::Status(OPEN), Some(attempt), |active| {
            active.status = Set(ds::DEAD.into());
            active.reason = Set(Some("panic".into()));
            active.attempts = Set(attempts);
            active.error_kind = Set(Some(ErrorKind::Permanent.as_str().into()));
            active.error_message = Set(Some(text));
            active.next_attempt_at = Set(None);
        })
        .await?;
        crate::metrics::job_panicked();
        self.settle(&event, true).await?;
        if self.has_open_deliveries(event_id).await? {
            self.queue
                .push(
                    ProcessEvent {
                        event_id: event_id.to_string(),
                    },
                    None,
                )
                .await?;
        }
        Ok(())
    }
}

/// Caps a failure's `Retry-After` and pause at [`crate::vendor_time::MAX_HOLD`]; returns the
/// warning to keep on the delivery when either was cut.
fn clamp_waits(error: &mut CrmError) -> Option<String> {
    use crate::vendor_time::clamp_hold;
    let mut warning = None;
    if let Some(wait) = error.retry_after {
        let (wait, cut) = clamp_hold(wait, "Retry-After");
        error.retry_after = Some(wait);
        warning = warning.or(cut);
    }
    if let Some(pause) = error.pause {
        let (pause, cut) = clamp_hold(pause, "pause");
        error.pause = Some(pause);
        warning = warning.or(cut);
    }
    warning
}

/// Delivery statuses that still have work to do.
const OPEN: &[&str] = &[ds::PENDING, ds::RETRYING, ds::WAITING];

fn is_open(status: &str) -> bool {
    OPEN.contains(&status)
}

/// How a failed attempt is recorded.
struct Failure {
    retry: bool,
    attempts: i32,
    throttled: i32,
    duration_ms: i64,
    /// The claim (its `updated_at`) a vendor call was made under, if any.
    claim: Option<DateTime<Utc>>,
    /// Kept on the delivery (e.g. a vendor's wait that was cut to the maximum hold).
    warning: Option<String>,
    /// What the attempt asked for, redacted (see [`asked`]); else the operation is named.
    request: Option<String>,
}

impl Failure {
    /// An attempt that cannot be retried and never reached the CRM.
    fn final_attempt(delivery: &deliveries::Model) -> Self {
        Failure {
            retry: false,
            attempts: delivery.attempts + 1,
            throttled: delivery.throttled_attempts,
            duration_ms: 0,
            claim: None,
            warning: None,
            request: None,
        }
    }
}

/// What an attempt that reached (or tried to reach) a vendor did, for recording its failure.
struct Tried {
    attempts: i32,
    duration_ms: i64,
    /// The claim (its `updated_at`) a vendor call was made under, if any.
    claim: Option<DateTime<Utc>>,
    /// The vendor requests it sent.
    trail: Trail,
}

/// Which writes to a delivery still apply.
#[derive(Clone, Copy)]
enum Guard<'a> {
    /// While it is in one of these statuses.
    Status(&'a [&'a str]),
    /// While this run's claim (the delivery's `updated_at` as read) holds.
    Claim,
}

impl Guard<'_> {
    /// Under the claim a vendor call was made with, or else while the delivery is open.
    fn of(claim: Option<DateTime<Utc>>) -> Guard<'static> {
        match claim {
            Some(_) => Guard::Claim,
            None => Guard::Status(OPEN),
        }
    }
}

/// The reason a delivery waits when its vendor refused the credentials.
const NEEDS_REAUTH: &str = "connection needs_reauth";

/// Seconds from `at` until now.
fn seconds_since(at: DateTime<Utc>) -> f64 {
    (crate::now() - at).num_milliseconds() as f64 / 1000.0
}

fn elapsed_ms(started: std::time::Instant) -> i64 {
    i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX)
}

/// What an attempt asked for, as its history shows it: the vendor requests it sent (method,
/// host and path), or else the operation; generated secrets and `secrets` (the connection's
/// credentials) taken out.
fn asked(
    trail: Option<&Trail>,
    delivery: &deliveries::Model,
    op: Option<&Operation>,
    secrets: &[String],
) -> String {
    let text = trail.and_then(Trail::summary).unwrap_or_else(|| match op {
        Some(op) if op.action == Action::StripeRetrieve => format!(
            "{} {} {}",
            op.action,
            op.object,
            op.record_id.as_deref().unwrap_or_default()
        ),
        Some(op) => format!("{} {}", op.action, op.object),
        None => format!("{} {}", delivery.action, delivery.object),
    });
    let text = match op {
        Some(op) => op.redact(&text),
        None => text,
    };
    history::scrub(text.trim_end(), secrets)
}

/// A successful write as its history keeps it: the status of the vendor's last answer and
/// the start of that answer, redacted.
fn succeeded_attempt(
    delivery: &deliveries::Model,
    op: &Operation,
    outcome: &crm::CrmOutcome,
    duration_ms: i64,
    trail: &Trail,
    secrets: &[String],
) -> Attempt {
    Attempt {
        outcome: outcome::SUCCEEDED,
        duration_ms,
        request: Some(asked(Some(trail), delivery, Some(op), secrets)),
        vendor_status: trail.status.map(i32::from),
        response: outcome
            .response
            .as_ref()
            .map(|answer| history::scrub(&op.redact(&answer.to_string()), secrets)),
        ..Default::default()
    }
}

/// An attempt that found a newer event already applied to the record.
fn skipped_as_stale(
    delivery: &deliveries::Model,
    op: &Operation,
    warning: &str,
    duration_ms: i64,
) -> Attempt {
    Attempt {
        outcome: outcome::SKIPPED,
        duration_ms,
        request: Some(asked(None, delivery, Some(op), &[])),
        reason: Some(format!("stale: {warning}")),
        ..Default::default()
    }
}

/// A delivery's columns once its write succeeded; clears the last attempt's error.
fn succeeded(
    op: &Operation,
    outcome: &crm::CrmOutcome,
    attempts: i32,
    duration_ms: i64,
) -> anyhow::Result<deliveries::ActiveModel> {
    Ok(deliveries::ActiveModel {
        status: Set(ds::SUCCEEDED.into()),
        attempts: Set(attempts),
        crm_record_id: Set(Some(outcome.record_id.clone())),
        operation: Set(op.stored_json()),
        warnings: Set(serde_json::to_string(&outcome.warnings)?),
        error_kind: Set(None),
        error_message: Set(None),
        vendor_status: Set(None),
        vendor_body: Set(None),
        reason: Set(None),
        next_attempt_at: Set(None),
        duration_ms: Set(Some(duration_ms)),
        response: Set(outcome
            .response
            .as_ref()
            .map(|r| op.redact(&stored_response(r)))),
        updated_at: Set(crate::now()),
        ..Default::default()
    })
}

/// A vendor answer as stored for later steps, cut off at 64 KiB.
fn stored_response(response: &Value) -> String {
    let text = response.to_string();
    if text.len() <= 65_536 {
        text
    } else {
        serde_json::json!({ "truncated": true }).to_string()
    }
}

/// A step rendered for its delivery.
enum Rendered {
    Run(Box<Operation>),
    /// Its `when` was false; the delivery is skipped.
    Skipped,
    /// A template failed; the delivery is dead.
    Failed,
}

/// What refetch-on-apply gives a flow to run on.
enum Refetched {
    /// The object as Stripe holds it now.
    Current(Value),
    /// The event's own snapshot (the object cannot be fetched again).
    Snapshot,
    /// The fetch failed: the flow waits (until the retry is due, if one is).
    Wait(Option<DateTime<Utc>>),
}

enum StepResult {
    /// The step has its outcome: a record id (unless it was skipped without one) and the
    /// vendor's answer, if it gave one.
    Done(Option<String>, Option<Value>),
    /// A retry is scheduled for this time; later steps wait.
    Retrying(DateTime<Utc>),
    /// Dead, or in another run's hands: later steps wait.
    Stop,
}

fn action_name(action: Action) -> &'static str {
    action.as_str()
}

/// The Stripe object whose record link an upsert or update follows.
fn linked_object<'e>(event: &'e events::Model, op: &Operation) -> Option<&'e str> {
    match (&event.stripe_object_id, op.action) {
        (Some(id), Action::Upsert | Action::Update) => Some(id.as_str()),
        _ => None,
    }
}

/// The record this Stripe object was written to before in `op.object`, if any.
async fn find_link<C: ConnectionTrait>(
    db: &C,
    connection: &connections::Model,
    op: &Operation,
    stripe_object_id: Option<&str>,
) -> Result<Option<record_links::Model>, sea_orm::DbErr> {
    let Some(object_id) = stripe_object_id else {
        return Ok(None);
    };
    record_links::Entity::find()
        .filter(record_links::Column::ConnectionId.eq(connection.id.as_str()))
        .filter(record_links::Column::CrmObject.eq(op.object.as_str()))
        .filter(record_links::Column::StripeObjectId.eq(object_id))
        .one(db)
        .await
}

/// Where an event falls in an object's life within one second: Stripe's `created` has
/// one-second resolution, so `*.created` comes before any change and `*.deleted` after it.
fn lifecycle_rank(event_type: &str) -> u8 {
    if event_type.ends_with(".created") {
        0
    } else if event_type.ends_with(".deleted") {
        2
    } else {
        1
    }
}

/// Whether the event last applied to a linked record supersedes `event`: it is newer, or of the
/// same second and later in the object's life (created, changed, deleted), or of the same stage
/// and not provably after it (see [`follows`]): ties nothing decides keep the first applied. A
/// replay of the event that was applied is never superseded by itself.
async fn superseded<C: ConnectionTrait>(
    db: &C,
    link: &record_links::Model,
    event: &events::Model,
) -> Result<bool, sea_orm::DbErr> {
    if link.last_event_id == event.id || link.last_event_created < event.event_created {
        return Ok(false);
    }
    if link.last_event_created > event.event_created {
        return Ok(true);
    }
    let Some(applied) = events::Entity::find_by_id(link.last_event_id.clone())
        .one(db)
        .await?
    else {
        return Ok(true);
    };
    let (theirs, ours) = (
        lifecycle_rank(&applied.event_type),
        lifecycle_rank(&event.event_type),
    );
    if theirs != ours {
        return Ok(theirs > ours);
    }
    // Same second, same stage: an update whose `previous_attributes` are the other event's
    // values came after it. Undecided, the first applied is kept.
    let parse = |payload: &str| serde_json::from_str::<Value>(payload).unwrap_or(Value::Null);
    let (applied, this) = (parse(&applied.payload), parse(&event.payload));
    Ok(!follows(&this, &applied))
}

/// Whether update event `later` continues from event `earlier`: every attribute `later` says it
/// changed had, before the change, the value `earlier` left it with.
fn follows(later: &Value, earlier: &Value) -> bool {
    let Some(previous) = later
        .pointer("/data/previous_attributes")
        .and_then(Value::as_object)
        .filter(|p| !p.is_empty())
    else {
        return false;
    };
    let Some(before) = earlier.pointer("/data/object") else {
        return false;
    };
    previous
        .iter()
        .all(|(key, value)| before.get(key) == Some(value))
}

/// Why a delivery whose record a newer event already wrote is skipped.
fn stale_warning(link: &record_links::Model, op: &Operation, event_created: i64) -> String {
    if link.last_event_created == event_created {
        format!(
            "an event of the same second ({}) was already applied to {} {}; the first applied is kept",
            link.last_event_id, op.object, link.crm_record_id
        )
    } else {
        format!(
            "a newer event ({}) was already applied to {} {}",
            link.last_event_id, op.object, link.crm_record_id
        )
    }
}

/// A delivery whose record a newer event already wrote: skipped as `stale`, pointing at it.
fn mark_stale(
    active: &mut deliveries::ActiveModel,
    link: &record_links::Model,
    op: &Operation,
    attempts: i32,
    warning: &str,
) {
    active.status = Set(ds::SKIPPED.into());
    active.reason = Set(Some("stale".into()));
    active.attempts = Set(attempts);
    active.crm_record_id = Set(Some(link.crm_record_id.clone()));
    active.operation = Set(op.stored_json());
    active.warnings = Set(serde_json::json!([warning]).to_string());
    active.next_attempt_at = Set(None);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn retry() -> RetrySettings {
        RetrySettings {
            max_attempts: 8,
            base_delay: Duration::from_secs(5),
            max_delay: Duration::from_secs(3600),
        }
    }

    #[test]
    fn backoff_is_full_jitter_under_an_exponential_ceiling() {
        for attempt in 1..=12u32 {
            let ceiling =
                Duration::from_secs(5 * 2u64.pow(attempt - 1)).min(Duration::from_secs(3600));
            for _ in 0..50 {
                assert!(
                    retry_delay(&retry(), attempt, None) < ceiling,
                    "attempt {attempt}"
                );
            }
        }
        let spread: std::collections::HashSet<u128> = (0..20)
            .map(|_| retry_delay(&retry(), 6, None).as_millis())
            .collect();
        assert!(spread.len() > 10, "delays are jittered");
    }

    #[test]
    fn never_sooner_than_retry_after() {
        let wait = Duration::from_secs(7200);
        for attempt in 1..=3 {
            assert!(retry_delay(&retry(), attempt, Some(wait)) >= wait);
        }
    }

    #[tokio::test]
    async fn a_busy_tenant_waits_in_line_for_its_own_slots_only() {
        // 8 slots, 2 per tenant: 3 of a tenant's jobs may wait in the process.
        let fairness = Fairness::new(2, 8);
        let wait = Duration::from_secs(5);
        let a1 = fairness.enter("a", wait).await.expect("under the share");
        let _a2 = fairness.enter("a", wait).await.expect("under the share");
        // Another tenant is never held up by a's full share.
        let _b = tokio::time::timeout(Duration::from_millis(50), fairness.enter("b", wait))
            .await
            .expect("b enters at once")
            .expect("b has a slot");
        // a's third job waits for a's next free slot and takes it as soon as one is freed.
        let third = tokio::spawn({
            let fairness = fairness.clone();
            async move { fairness.enter("a", wait).await.is_some() }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!third.is_finished(), "over its share, a's job waits");
        let freed = std::time::Instant::now();
        drop(a1);
        assert!(
            third.await.unwrap(),
            "the freed slot goes to the job in line"
        );
        assert!(freed.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_full_line_or_a_long_wait_sends_the_job_back_to_the_queue() {
        let fairness = Fairness::new(1, 3);
        let running = fairness.enter("a", Duration::ZERO).await.unwrap();
        // One may wait (half of the 2 slots left to others); it gives up after its wait.
        let waiting = tokio::spawn({
            let fairness = fairness.clone();
            async move {
                fairness
                    .enter("a", Duration::from_millis(200))
                    .await
                    .is_some()
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = std::time::Instant::now();
        assert!(
            fairness.enter("a", Duration::from_secs(5)).await.is_none(),
            "the line is full: back to the queue at once"
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(!waiting.await.unwrap(), "no slot within its wait");
        // The line is empty again.
        let again = tokio::spawn({
            let fairness = fairness.clone();
            async move { fairness.enter("a", Duration::from_secs(5)).await.is_some() }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(running);
        assert!(again.await.unwrap());
    }
}
