//! What steps that are not CRM writes leave on their delivery: a step that ran here (`assert`),
//! one that stopped its flow, a `stripe.retrieve` (and the `refetch` of a flow); rendering
//! for a delivery and generated secrets.

use super::core::*;
use super::run::Next;
use crate::steps::{self, Done, Exec};

impl Engine {
    /// The event's seed for generated secrets: made and sealed on its first run; a run that
    /// loses the race to make it reads the winner's.
    pub(super) async fn event_seed(&self, event: &events::Model) -> anyhow::Result<String> {
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

    /// Records a step that ran here: succeeded with what it made, or skipped with the reason
    /// it stopped the flow for this event.
    pub(super) async fn settle_here(
        &self,
        delivery: &deliveries::Model,
        op: &Operation,
        result: Result<Done, CrmError>,
    ) -> anyhow::Result<Next> {
        let outcome = match result {
            Ok(Done::Wrote(outcome)) => outcome,
            Ok(Done::Stopped(reason)) => {
                self.settle_stopped(delivery, Guard::Status(OPEN), op, reason)
                    .await?;
                return Ok(Next::Halt(None));
            }
            Err(error) => {
                self.record_failure(delivery, Some(op), error, Failure::final_attempt(delivery))
                    .await?;
                return Ok(Next::Halt(None));
            }
        };
        let record = Some(outcome.record_id.clone()).filter(|id| !id.is_empty());
        let response = outcome
            .response
            .as_ref()
            .map(|r| op.redact(&stored_response(r)));
        let attempt = Attempt {
            outcome: outcome::SUCCEEDED,
            request: Some(asked(None, delivery, Some(op), &[])),
            response: response.clone(),
            ..Default::default()
        };
        let attempts = delivery.attempts + 1;
        let operation = op.stored_json();
        let written = record.clone();
        self.update_delivery(delivery, Guard::Status(OPEN), Some(attempt), |active| {
            active.status = Set(ds::SUCCEEDED.into());
            active.attempts = Set(attempts);
            active.operation = Set(operation);
            active.crm_record_id = Set(written);
            active.response = Set(response);
            active.next_attempt_at = Set(None);
            active.reason = Set(None);
        })
        .await?;
        Ok(Next::Go(record, outcome.response))
    }

    /// Records a step that ended its flow for this event: skipped, with the reason.
    pub(super) async fn settle_stopped(
        &self,
        delivery: &deliveries::Model,
        guard: Guard<'_>,
        op: &Operation,
        reason: String,
    ) -> anyhow::Result<StepResult> {
        let reason = op.redact(&reason);
        let attempt = Attempt {
            outcome: outcome::SKIPPED,
            request: Some(asked(None, delivery, Some(op), &[])),
            reason: Some(reason.clone()),
            ..Default::default()
        };
        let attempts = delivery.attempts + 1;
        let operation = op.stored_json();
        let stored = reason.clone();
        self.update_delivery(delivery, guard, Some(attempt), |active| {
            active.status = Set(ds::SKIPPED.into());
            active.attempts = Set(attempts);
            active.operation = Set(operation);
            active.next_attempt_at = Set(None);
            active.reason = Set(Some(stored));
        })
        .await?;
        tracing::info!(delivery_id = %delivery.id, %reason, "the step stopped the flow");
        Ok(StepResult::Stop)
    }

    /// Renders a step for its delivery: a `when` that is false closes the delivery as skipped,
    /// a template that fails dead-letters it (retrying cannot change the outcome).
    pub(super) async fn render(
        &self,
        step: &flow::Step,
        ctx: &RenderContext,
        delivery: &deliveries::Model,
    ) -> anyhow::Result<Rendered> {
        Ok(match flow::render_step(step, ctx) {
            Ok(Some(mut op)) => {
                // Named like its delivery: a `for_each` item's operation says which item.
                op.step.clone_from(&delivery.step);
                Rendered::Run(Box::new(op))
            }
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

    /// The Stripe account a `stripe.*` step calls: the one it names (of the event's tenant),
    /// else the account a Stripe event came from, else the tenant's only account. `Err` is
    /// the delivery's error when none can be told.
    pub(super) async fn stripe_account_for(
        &self,
        event: &events::Model,
        step: &flow::Step,
    ) -> anyhow::Result<Result<String, CrmError>> {
        use entity::stripe_accounts;
        let accounts = stripe_accounts::Entity::find_in_tenant(&event.tenant_id)
            .all(&self.db)
            .await?;
        let problem = |message: String| Ok(Err(CrmError::new(ErrorKind::Permanent, message)));
        if let Some(named) = step.stripe_account_id.as_deref() {
            return match accounts.iter().any(|a| a.id == named) {
                true => Ok(Ok(named.to_string())),
                false => problem(format!(
                    "stripe_account_id: no Stripe account '{named}' in this tenant"
                )),
            };
        }
        if event.source == "stripe" {
            return Ok(Ok(event.stripe_account_id.clone()));
        }
        match accounts.as_slice() {
            [only] => Ok(Ok(only.id.clone())),
            [] => problem(
                "this tenant has no Stripe account to call; add one with POST /v1/stripe-accounts"
                    .into(),
            ),
            _ => problem(format!(
                "the event came from {} and the tenant has {} Stripe accounts: name one in the step's stripe_account_id",
                event.source,
                accounts.len()
            )),
        }
    }

    /// Runs a `stripe.*` operation with `account`'s key (a read once per run for the same
    /// object) and records the object Stripe answered with as the delivery's answer. Failures
    /// are classified like CRM errors: a missing object, key or permission is dead at once with
    /// a message saying what to fix; Stripe's own trouble and rate limits are retried. Writes
    /// carry an `Idempotency-Key` derived from the event and step, so a second run of the same
    /// step gets Stripe's first answer instead of a second object.
    pub(super) async fn at_stripe(
        &self,
        delivery: &deliveries::Model,
        op: &Operation,
        account: Result<String, CrmError>,
        fetched: &mut Fetched,
    ) -> anyhow::Result<StepResult> {
        let started = std::time::Instant::now();
        let id = op.record_id.clone().unwrap_or_default();
        let memo = (op.action == Action::StripeRetrieve)
            .then(|| format!("{account:?}|{}|{id}|{}", op.object, op.expand.join(",")));
        let result = match (memo.as_ref().and_then(|m| fetched.get(m)), account) {
            (Some(object), _) => Ok(object.clone()),
            (None, Err(error)) => Err(error),
            (None, Ok(account)) => {
                let cx = Exec {
                    connector: &self.crm,
                    stripe: &self.stripe,
                    account: &account,
                    delivery_id: &delivery.id,
                    connection: None,
                    op,
                    linked: None,
                };
                match steps::kind(op.action).execute(cx).await.0 {
                    Ok(Done::Wrote(outcome)) => {
                        let object = outcome.response.unwrap_or(Value::Null);
                        if let Some(memo) = memo {
                            fetched.insert(memo, object.clone());
                        }
                        Ok(object)
                    }
                    Ok(Done::Stopped(reason)) => {
                        return self
                            .settle_stopped(delivery, Guard::Status(OPEN), op, reason)
                            .await;
                    }
                    Err(error) => Err(error),
                }
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
            Err(error) => {
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
    pub(super) async fn refetch(
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
            select: Vec::new(),
            connection_id: None,
            url: None,
            headers: Default::default(),
            review: None,
            decided: None,
            secrets: Vec::new(),
        };
        let account = Ok(event.stripe_account_id.clone());
        Ok(
            match self.at_stripe(&delivery, &op, account, fetched).await? {
                StepResult::Done(_, Some(object)) => Refetched::Current(object),
                StepResult::Done(_, None) => Refetched::Snapshot,
                StepResult::Retrying(due) => Refetched::Wait(Some(due)),
                StepResult::Stop => Refetched::Wait(None),
            },
        )
    }
}
