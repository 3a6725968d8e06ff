//! One flow's steps for one event, in order: each step's delivery, where its kind runs it,
//! and what the next step sees.

use super::core::*;
use super::review::{DISMISSED, Gate};
use crate::steps::{self, Runs, StepKind, Wants};

/// Why an item's delivery of an earlier run was closed: the list no longer holds it.
const ITEM_GONE: &str = "item_gone";

/// What a step's turn means for the rest of its flow.
pub(super) enum Next {
    /// Go on; later steps see this record id and answer.
    Go(Option<String>, Option<Value>),
    /// Go on without it: its `when` was false.
    Skip,
    /// The flow stops here for now; runs again at this time, if given.
    Halt(Option<DateTime<Utc>>),
}

impl From<StepResult> for Next {
    fn from(result: StepResult) -> Next {
        match result {
            StepResult::Done(id, answer) => Next::Go(id, answer),
            StepResult::Retrying(due) => Next::Halt(Some(due)),
            StepResult::Stop => Next::Halt(None),
        }
    }
}

/// What one run of one flow carries from step to step.
pub(super) struct FlowRun<'a> {
    pub(super) event: &'a events::Model,
    pub(super) spec: &'a FlowSpec,
    /// The flow's connection, as read when the run started.
    pub(super) connection: Option<connections::Model>,
    pub(super) ctx: RenderContext,
    /// Whether `ctx.settings` has the flow connection's vendor-discovered settings yet.
    pub(super) discovered: bool,
}

impl Engine {
    /// Runs one flow's steps in order; returns when a retry this run scheduled is due.
    pub(super) async fn run_flow(
        &self,
        event: &events::Model,
        payload: &Value,
        flow_row: &flows::Model,
        spec: &FlowSpec,
        run: &mut EventRun<'_>,
    ) -> anyhow::Result<Option<DateTime<Utc>>> {
        let now = run.now;
        let mut payload = std::borrow::Cow::Borrowed(payload);
        if spec.refetch && event.source == "stripe" {
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
        let connection =
            connections::Entity::find_by_id_in_tenant(&event.tenant_id, &spec.connection_id)
                .one(&self.db)
                .await?;
        let settings: Value = connection
            .as_ref()
            .and_then(|c| serde_json::from_str(&c.settings).ok())
            .unwrap_or(Value::Object(Default::default()));
        let mut flow = FlowRun {
            event,
            spec,
            connection,
            ctx: RenderContext {
                event: payload.into_owned(),
                steps: BTreeMap::new(),
                responses: BTreeMap::new(),
                objects: BTreeMap::new(),
                settings,
                now,
                // password() and token(n) give the same value on every attempt of this
                // event's run of this flow, and it is never stored. Only flows that make
                // secrets need the event's seed (one more row per event).
                secret_seed: if uses_generated_secrets(&flow_row.spec) {
                    Some(format!("{}|{}", self.event_seed(event).await?, flow_row.id))
                } else {
                    None
                },
                item: None,
                items: BTreeMap::new(),
            },
            discovered: false,
        };

        for step in &spec.steps {
            let next = if step.for_each.is_some() {
                self.each_turn(step, flow_row, &mut flow, run).await?
            } else {
                self.step_turn(step, &step.id, flow_row, &mut flow, run)
                    .await?
            };
            match next {
                Next::Go(record_id, answer) => flow.ctx.finished(step, record_id, answer),
                Next::Skip => {}
                Next::Halt(due) => return Ok(due),
            }
        }
        Ok(None)
    }

    /// One step's turn under the delivery named `name`: what it gave before, or one attempt
    /// where its kind runs it.
    async fn step_turn(
        &self,
        step: &flow::Step,
        name: &str,
        flow_row: &flows::Model,
        flow: &mut FlowRun<'_>,
        run: &mut EventRun<'_>,
    ) -> anyhow::Result<Next> {
        let event = flow.event;
        let (delivery, fresh) = self
            .delivery_for(
                event,
                flow_row,
                (name, &step.object, action_name(step.action)),
                &flow.spec.connection_id,
                Some(run.existing),
            )
            .await?;
        note_current_delivery(&delivery.id);
        let delivery = self.on_version(delivery, flow_row).await?;
        let reason = delivery.reason.as_deref().unwrap_or_default();
        match delivery.status.as_str() {
            // An assert that stopped the flow stops it again on any re-run of the event; a
            // step whose `when` was false (or an item no longer in its list) stays left out.
            ds::SKIPPED if reason.starts_with(steps::STOPPED) || reason == DISMISSED => {
                return Ok(Next::Halt(None));
            }
            ds::SKIPPED if matches!(reason, "condition" | ITEM_GONE) => return Ok(Next::Skip),
            ds::SUCCEEDED | ds::SKIPPED => {
                let answer = delivery
                    .response
                    .as_deref()
                    .and_then(|r| serde_json::from_str(r).ok());
                return Ok(Next::Go(delivery.crm_record_id.clone(), answer));
            }
            ds::DEAD => return Ok(Next::Halt(None)),
            // Not due yet (or in another run's hands): run again when it is.
            ds::RETRYING if delivery.next_attempt_at.is_some_and(|t| t > run.now) => {
                return Ok(Next::Halt(delivery.next_attempt_at));
            }
            _ => {}
        }
        let kind = steps::kind(step.action);
        Ok(match kind.runs(step.connection_id.is_some()) {
            Runs::Here => self.step_here(kind, step, flow, &delivery).await?,
            Runs::Stripe => match self.render(step, &flow.ctx, &delivery).await? {
                Rendered::Run(op) => {
                    let account = self.stripe_account_for(event, step).await?;
                    self.at_stripe(&delivery, &op, account, &mut run.fetched)
                        .await?
                        .into()
                }
                Rendered::Skipped => Next::Skip,
                Rendered::Failed => Next::Halt(None),
            },
            Runs::Endpoint => {
                self.step_at_endpoint(kind, step, flow, &delivery, fresh)
                    .await?
            }
            Runs::Connection(wants) => {
                self.step_on_connection(kind, wants, step, flow, &delivery, fresh)
                    .await?
            }
        })
    }

    /// A `for_each` step: one turn per item, each its own delivery, in order; the flow goes
    /// on once every item's turn is done, and later steps read them as `steps.<id>.items`.
    async fn each_turn(
        &self,
        step: &flow::Step,
        flow_row: &flows::Model,
        flow: &mut FlowRun<'_>,
        run: &mut EventRun<'_>,
    ) -> anyhow::Result<Next> {
        let items = match flow::loop_items(step, &flow.ctx) {
            Ok(items) => items.unwrap_or_default(),
            Err(problem) => {
                // The list itself cannot be told: the step's own delivery says why.
                let (delivery, _) = self
                    .delivery_for(
                        flow.event,
                        flow_row,
                        (&step.id, &step.object, action_name(step.action)),
                        &flow.spec.connection_id,
                        Some(run.existing),
                    )
                    .await?;
                if is_open(&delivery.status) {
                    let error = CrmError::new(ErrorKind::Invalid, problem.to_string());
                    self.record_failure(&delivery, None, error, Failure::final_attempt(&delivery))
                        .await?;
                }
                return Ok(Next::Halt(None));
            }
        };
        self.close_gone_items(step, flow_row, &items, run).await?;
        let mut done = Vec::with_capacity(items.len());
        for (key, item) in items {
            flow.ctx.item = Some(item);
            let name = flow::each::delivery_name(&step.id, &key);
            let next = self.step_turn(step, &name, flow_row, flow, run).await;
            flow.ctx.item = None;
            match next? {
                Next::Go(id, answer) => {
                    // Read like the step's own answer: a Stripe object, else the vendor's.
                    let name = if step.action.is_stripe() {
                        "object"
                    } else {
                        "response"
                    };
                    done.push(serde_json::json!({ "key": key, "id": id, name: answer }));
                }
                Next::Skip => {}
                Next::Halt(due) => return Ok(Next::Halt(due)),
            }
        }
        flow.ctx.items.insert(step.id.clone(), done);
        Ok(Next::Skip)
    }

    /// A list that renders now leaves no delivery of an earlier run open outside it: the
    /// step's own (a list that failed to render before) and items no longer in the list are
    /// skipped (`item_gone`), so the event can finish.
    async fn close_gone_items(
        &self,
        step: &flow::Step,
        flow_row: &flows::Model,
        items: &[(String, Value)],
        run: &EventRun<'_>,
    ) -> anyhow::Result<()> {
        let names: std::collections::HashSet<String> = items
            .iter()
            .map(|(key, _)| flow::each::delivery_name(&step.id, key))
            .collect();
        for delivery in run.existing {
            let ours = delivery.flow_id == flow_row.id
                && (delivery.step == step.id || flow::each::is_item_of(&delivery.step, &step.id));
            if ours && is_open(&delivery.status) && !names.contains(&delivery.step) {
                self.transition(delivery, OPEN, |active| {
                    active.status = Set(ds::SKIPPED.into());
                    active.reason = Set(Some(ITEM_GONE.into()));
                })
                .await?;
            }
        }
        Ok(())
    }

    /// A retry after the flow was edited runs the new version: says so on the delivery.
    async fn on_version(
        &self,
        delivery: deliveries::Model,
        flow_row: &flows::Model,
    ) -> anyhow::Result<deliveries::Model> {
        if !is_open(&delivery.status) || delivery.flow_version == flow_row.version {
            return Ok(delivery);
        }
        let version = flow_row.version;
        self.transition(&delivery, OPEN, |active| active.flow_version = Set(version))
            .await?;
        Ok(deliveries::Model {
            flow_version: version,
            ..delivery
        })
    }

    /// A step that only looks at the data (`assert`): executed and recorded at once.
    async fn step_here(
        &self,
        kind: &dyn StepKind,
        step: &flow::Step,
        flow: &FlowRun<'_>,
        delivery: &deliveries::Model,
    ) -> anyhow::Result<Next> {
        let op = match self.render(step, &flow.ctx, delivery).await? {
            Rendered::Run(op) => *op,
            Rendered::Skipped => return Ok(Next::Skip),
            Rendered::Failed => return Ok(Next::Halt(None)),
        };
        let cx = steps::Exec {
            connector: &self.crm,
            stripe: &self.stripe,
            account: &flow.event.stripe_account_id,
            delivery_id: &delivery.id,
            connection: None,
            op: &op,
            linked: None,
        };
        let (result, _) = kind.execute(cx).await;
        self.settle_here(delivery, &op, result).await
    }

    /// A step that calls the address it names itself (`http` with a `url`), with no
    /// credentials.
    async fn step_at_endpoint(
        &self,
        kind: &dyn StepKind,
        step: &flow::Step,
        flow: &FlowRun<'_>,
        delivery: &deliveries::Model,
        fresh: bool,
    ) -> anyhow::Result<Next> {
        let mut op = match self.render(step, &flow.ctx, delivery).await? {
            Rendered::Run(op) => *op,
            Rendered::Skipped => return Ok(Next::Skip),
            Rendered::Failed => return Ok(Next::Halt(None)),
        };
        self.faults.step(&op);
        let target = match kind.endpoint(&mut op, &flow.event.tenant_id, self.crm.vendor_urls) {
            Ok(target) => target,
            Err(error) => {
                self.record_failure(delivery, Some(&op), error, Failure::final_attempt(delivery))
                    .await?;
                return Ok(Next::Halt(None));
            }
        };
        Ok(self
            .execute_remote(kind, flow.event, &target, delivery, &op, fresh)
            .await?
            .into())
    }

    /// A step that runs through a connection: the step's own or the flow's, of the kind the
    /// step wants, and not held by a pause or a vendor's wait.
    async fn step_on_connection(
        &self,
        kind: &dyn StepKind,
        wants: Wants,
        step: &flow::Step,
        flow: &mut FlowRun<'_>,
        delivery: &deliveries::Model,
        fresh: bool,
    ) -> anyhow::Result<Next> {
        let own = match &step.connection_id {
            Some(id) => Some(
                connections::Entity::find_by_id_in_tenant(&flow.event.tenant_id, id)
                    .one(&self.db)
                    .await?,
            ),
            None => None,
        };
        let connection = match &own {
            Some(own) => own.as_ref(),
            None => flow.connection.as_ref(),
        };
        let connection_id = step
            .connection_id
            .as_ref()
            .unwrap_or(&flow.spec.connection_id);
        let Some(connection) = connection else {
            let error = CrmError::new(
                ErrorKind::Permanent,
                format!("connection {connection_id} no longer exists"),
            );
            self.record_failure(delivery, None, error, Failure::final_attempt(delivery))
                .await?;
            return Ok(Next::Halt(None));
        };
        if let Some(wanted) = wants.refuses(&connection.provider) {
            let error = CrmError::new(
                ErrorKind::Invalid,
                format!(
                    "{} steps need {wanted}; connection {connection_id} is {}",
                    step.action, connection.provider
                ),
            );
            self.record_failure(delivery, None, error, Failure::final_attempt(delivery))
                .await?;
            return Ok(Next::Halt(None));
        }
        if let Some(next) = self.held(connection, delivery).await? {
            return Ok(next);
        }
        // Vendor-discovered settings (Salesforce's won stage) of the flow's connection, once
        // per run.
        if !flow.discovered && connection.provider != "sandbox" && step.connection_id.is_none() {
            let started = std::time::Instant::now();
            let (found, trail) = crm::template_settings(&self.crm, connection).await;
            match found {
                Ok(settings) => {
                    flow.ctx.settings = settings;
                    flow.discovered = true;
                }
                Err(error) => {
                    let tried = Tried {
                        attempts: delivery.attempts + 1,
                        duration_ms: elapsed_ms(started),
                        claim: None,
                        trail,
                    };
                    return Ok(
                        match self.fail(connection, delivery, None, error, tried).await? {
                            StepResult::Retrying(due) => Next::Halt(Some(due)),
                            _ => Next::Halt(None),
                        },
                    );
                }
            }
        }

        let mut op = match self.render(step, &flow.ctx, delivery).await? {
            Rendered::Run(op) => *op,
            Rendered::Skipped => return Ok(Next::Skip),
            Rendered::Failed => return Ok(Next::Halt(None)),
        };
        kind.prepare(&mut op, &delivery.id, connection);
        // A write in doubt waits for a person or is merged; a decided one becomes the decision.
        let kind = match self
            .review_gate(flow.event, connection, delivery, &mut op)
            .await?
        {
            Gate::Write if op.decided.is_some() => steps::kind(op.action),
            Gate::Write => kind,
            Gate::Halt(result) => return Ok(result.into()),
        };
        self.faults.step(&op);
        let result = match kind.write() {
            // The sandbox's records live in this database: written inside the claim.
            Some(write) if connection.provider == "sandbox" => {
                self.execute(write, flow.event, connection, delivery, &op)
                    .await?
            }
            _ => {
                self.execute_remote(kind, flow.event, connection, delivery, &op, fresh)
                    .await?
            }
        };
        Ok(result.into())
    }

    /// A pause or a vendor's Retry-After holds every delivery of the connection; a connection
    /// that is neither active nor paused leaves them waiting. `None` when the step may run.
    async fn held(
        &self,
        connection: &connections::Model,
        delivery: &deliveries::Model,
    ) -> anyhow::Result<Option<Next>> {
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
                .transition(delivery, OPEN, |active| {
                    active.status = Set(ds::RETRYING.into());
                    active.reason = Set(Some(reason.into()));
                    active.next_attempt_at = Set(Some(until));
                })
                .await?;
            tracing::debug!(delivery_id = %delivery.id, %until, reason, "delivery held by its connection");
            return Ok(Some(Next::Halt(applied.then_some(until))));
        }
        if !matches!(connection.status.as_str(), "active" | "paused") {
            let reason = format!("connection {}", connection.status);
            self.transition(delivery, OPEN, |active| {
                active.status = Set(ds::WAITING.into());
                active.reason = Set(Some(reason));
            })
            .await?;
            return Ok(Some(Next::Halt(None)));
        }
        Ok(None)
    }
}
