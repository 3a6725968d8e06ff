//! The review gate before a CRM write whose step has a `review` policy: a write in doubt is
//! held as a review item (`pause`) or merged by the step's rules (`merge`); a decided item
//! turns the write into the decision (write to the picked record, create, merge, or stop).
//! A write whose Stripe object is already linked to a record follows the link: no doubt, and
//! a decision carried out once is not carried out again.

use sea_orm::sea_query::OnConflict;

use super::core::*;
use super::links::{find_link, linked_object};
use crate::flow::ReviewPolicy;
use crate::review::{self, Doubt, decision};
use entity::reviews;

/// The reason of a delivery held for a person.
pub(super) const IN_REVIEW: &str = "review";
/// The reason of a delivery a person dismissed: its flow stops there for this event.
pub(crate) const DISMISSED: &str = "review: dismissed";

/// What the gate lets through.
pub(super) enum Gate {
    /// Write, as the (possibly decided) operation now says.
    Write,
    /// Not now: held, dismissed, or the question to the CRM failed (as that failure was
    /// recorded).
    Halt(StepResult),
}

impl Engine {
    /// Decides what a write with a review policy does (see the module docs); `op` becomes the
    /// decided write (`decided` set, its action the one to run).
    pub(super) async fn review_gate(
        &self,
        event: &events::Model,
        connection: &connections::Model,
        delivery: &deliveries::Model,
        op: &mut Operation,
    ) -> anyhow::Result<Gate> {
        let Some(rules) = op
            .review
            .clone()
            .filter(|r| r.policy != ReviewPolicy::Create)
        else {
            return Ok(Gate::Write);
        };
        // A linked object's record is certain, whoever chose it: a decision carried out
        // before (a replay creates nothing again) or an earlier event.
        let linked = linked_object(event, op);
        if find_link(&self.db, connection, op, linked).await?.is_some() {
            return Ok(Gate::Write);
        }
        let item = reviews::Entity::find()
            .filter(reviews::Column::DeliveryId.eq(delivery.id.as_str()))
            .one(&self.db)
            .await?;
        if let Some(item) = item {
            return self.decided(connection, delivery, op, &item).await;
        }
        let started = std::time::Instant::now();
        let (found, trail) = review::doubt(&self.crm, connection, op, &rules).await;
        let doubt = match found {
            Ok(Some(doubt)) => doubt,
            Ok(None) => return Ok(Gate::Write),
            Err(error) => {
                return self
                    .failed(connection, delivery, op, error, trail, started)
                    .await;
            }
        };
        if rules.policy == ReviewPolicy::Merge && crm::merges(connection, &op.object) {
            let kept = review::winner(&doubt.candidates, rules.winner);
            let copied = review::copied(&doubt.candidates, kept, &rules.copy);
            return self
                .merged(connection, delivery, op, &doubt.candidates, kept, copied)
                .await;
        }
        self.hold(
            event,
            connection,
            delivery,
            op,
            doubt,
            &trail,
            elapsed_ms(started),
        )
        .await?;
        Ok(Gate::Halt(StepResult::Stop))
    }

    /// A write the vendor's duplicate rules refused, on a step that reviews doubtful matches
    /// and before any decision: held as a review item like a doubt found before writing, for a
    /// person (whatever the policy: merging is the vendor's own decision there). Says whether
    /// it was held.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn held_as_duplicate(
        &self,
        event: &events::Model,
        connection: &connections::Model,
        delivery: &deliveries::Model,
        op: &Operation,
        error: &CrmError,
        trail: &Trail,
        duration_ms: i64,
    ) -> anyhow::Result<bool> {
        let reviewed = op
            .review
            .as_ref()
            .is_some_and(|r| r.policy != ReviewPolicy::Create);
        if !reviewed || op.decided.is_some() {
            return Ok(false);
        }
        let Some(doubt) = review::refused_as_duplicate(&connection.provider, op, error) else {
            return Ok(false);
        };
        self.hold(event, connection, delivery, op, doubt, trail, duration_ms)
            .await?;
        Ok(true)
    }

    /// A question to the CRM (a lookup, a merge) failed: recorded as the delivery's attempt,
    /// retried or dead as any failure is.
    async fn failed(
        &self,
        connection: &connections::Model,
        delivery: &deliveries::Model,
        op: &Operation,
        error: CrmError,
        trail: Trail,
        started: std::time::Instant,
    ) -> anyhow::Result<Gate> {
        let tried = Tried {
            attempts: delivery.attempts + 1,
            duration_ms: elapsed_ms(started),
            claim: None,
            trail,
        };
        let result = self
            .fail(connection, delivery, Some(op), error, tried)
            .await?;
        Ok(Gate::Halt(result))
    }

    /// Keeps the doubt as a review item and holds the delivery for it.
    #[allow(clippy::too_many_arguments)]
    async fn hold(
        &self,
        event: &events::Model,
        connection: &connections::Model,
        delivery: &deliveries::Model,
        op: &Operation,
        doubt: Doubt,
        trail: &Trail,
        duration_ms: i64,
    ) -> anyhow::Result<()> {
        let now = crate::now();
        let minutes = op
            .review
            .as_ref()
            .and_then(|r| r.alert_after_minutes)
            .unwrap_or(review::DEFAULT_ALERT_MINUTES);
        let incoming = serde_json::json!({ "match": op.match_fields, "fields": op.fields });
        let candidates: Vec<Value> = doubt.candidates.into_iter().map(Value::Object).collect();
        let item = reviews::ActiveModel {
            id: Set(crate::new_id()),
            tenant_id: Set(event.tenant_id.clone()),
            delivery_id: Set(delivery.id.clone()),
            event_id: Set(event.id.clone()),
            flow_id: Set(delivery.flow_id.clone()),
            step: Set(delivery.step.clone()),
            connection_id: Set(connection.id.clone()),
            object: Set(op.object.clone()),
            status: Set("open".into()),
            reason: Set(doubt.reason.into()),
            summary: Set(op.redact(&doubt.summary)),
            incoming: Set(op.redact(&incoming.to_string())),
            candidates: Set(Value::Array(candidates).to_string()),
            decision: Set(None),
            record_id: Set(None),
            decided_by: Set(None),
            decided_at: Set(None),
            created_at: Set(now),
            alert_at: Set(now + chrono::Duration::minutes(i64::from(minutes))),
        };
        // A second run of the same delivery finds the item the first one made.
        reviews::Entity::insert(item)
            .on_conflict(
                OnConflict::column(reviews::Column::DeliveryId)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await?;
        let attempt = Attempt {
            outcome: outcome::WAITING,
            duration_ms,
            request: Some(asked(Some(trail), delivery, Some(op), &[])),
            reason: Some(format!("{IN_REVIEW}: {}", op.redact(&doubt.summary))),
            ..Default::default()
        };
        let operation = op.stored_json();
        self.update_delivery(delivery, Guard::Status(OPEN), Some(attempt), |active| {
            active.status = Set(ds::WAITING.into());
            active.reason = Set(Some(IN_REVIEW.into()));
            active.operation = Set(operation);
            active.next_attempt_at = Set(None);
        })
        .await?;
        crate::metrics::delivery(&connection.provider, ds::WAITING);
        Ok(())
    }

    /// A review item exists: still open, the delivery waits; decided, the write becomes the
    /// decision.
    async fn decided(
        &self,
        connection: &connections::Model,
        delivery: &deliveries::Model,
        op: &mut Operation,
        item: &reviews::Model,
    ) -> anyhow::Result<Gate> {
        let chosen = item.record_id.clone().unwrap_or_default();
        match item.decision.as_deref() {
            None => {
                if delivery.status != ds::WAITING {
                    self.transition(delivery, OPEN, |active| {
                        active.status = Set(ds::WAITING.into());
                        active.reason = Set(Some(IN_REVIEW.into()));
                        active.next_attempt_at = Set(None);
                    })
                    .await?;
                }
                Ok(Gate::Halt(StepResult::Stop))
            }
            Some(decision::DISMISS) => {
                self.transition(delivery, OPEN, |active| {
                    active.status = Set(ds::SKIPPED.into());
                    active.reason = Set(Some(DISMISSED.into()));
                    active.next_attempt_at = Set(None);
                })
                .await?;
                Ok(Gate::Halt(StepResult::Stop))
            }
            Some(decision::CREATE) => {
                let mut fields = std::mem::take(&mut op.match_fields);
                fields.extend(std::mem::take(&mut op.fields));
                op.fields = fields;
                op.action = Action::Create;
                op.decided = Some(decision::CREATE.into());
                Ok(Gate::Write)
            }
            Some(decision::MERGE) => {
                let candidates: Vec<serde_json::Map<String, Value>> =
                    serde_json::from_str(&item.candidates).unwrap_or_default();
                let kept = candidates
                    .iter()
                    .position(|c| c.get("id").map(crm::as_text).as_deref() == Some(&chosen))
                    .unwrap_or(0);
                self.merged(
                    connection,
                    delivery,
                    op,
                    &candidates,
                    kept,
                    Default::default(),
                )
                .await
            }
            Some(_) => {
                picked(op, chosen, decision::PICK);
                Ok(Gate::Write)
            }
        }
    }

    /// Merges every other candidate into candidate `kept` (after giving it `copied`), then
    /// writes to the survivor. A candidate already gone was merged by an earlier run.
    async fn merged(
        &self,
        connection: &connections::Model,
        delivery: &deliveries::Model,
        op: &mut Operation,
        candidates: &[serde_json::Map<String, Value>],
        kept: usize,
        copied: serde_json::Map<String, Value>,
    ) -> anyhow::Result<Gate> {
        let id = |record: &serde_json::Map<String, Value>| {
            record.get("id").map(crm::as_text).unwrap_or_default()
        };
        let mut survivor = candidates.get(kept).map(id).unwrap_or_default();
        let started = std::time::Instant::now();
        for (i, loser) in candidates.iter().enumerate() {
            if i == kept {
                continue;
            }
            let (merged, trail) =
                crm::merge(&self.crm, connection, &op.object, &survivor, &id(loser)).await;
            match merged {
                Ok(id) => survivor = id,
                Err(error) if error.kind == ErrorKind::NotFound => {}
                Err(error) => {
                    return self
                        .failed(connection, delivery, op, error, trail, started)
                        .await;
                }
            }
        }
        // The copied values go first; the event's own win over them.
        let mut fields = copied;
        fields.extend(std::mem::take(&mut op.fields));
        op.fields = fields;
        picked(op, survivor, decision::MERGE);
        Ok(Gate::Write)
    }
}

/// The write goes to record `id`, as the step would write it.
fn picked(op: &mut Operation, id: String, how: &str) {
    op.action = Action::Update;
    op.record_id = Some(id);
    op.decided = Some(how.into());
}
