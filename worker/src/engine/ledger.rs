//! The delivery ledger: creating a step's delivery, moving it between statuses only from
//! the one this run read, recording failed attempts (retry, dead letter, needs_reauth, rate
//! limits) and what another run already finished.

use super::core::*;

impl Engine {
    /// Updates a delivery only if it is still in one of `from`: a write based on what this run
    /// read never undoes what another run finished meanwhile. Returns whether it applied.
    pub(super) async fn transition(
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
    pub(super) async fn update_delivery(
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

    pub(super) async fn delivery_for(
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

    /// Ends a pause whose time is up: the connection is active again.
    pub(super) async fn resume(&self, connection: &connections::Model) -> anyhow::Result<()> {
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
    pub(super) fn credentials_of(&self, connection: &connections::Model) -> Vec<String> {
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
    pub(super) async fn fail(
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

    /// What another run did with a delivery this run could not claim.
    pub(super) async fn outcome_of_other_run(
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
    pub(super) async fn record_failure(
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
