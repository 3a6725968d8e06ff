//! One flow's steps for one event, in order: each step's delivery, its kind, and what the
//! next step sees.

use super::core::*;

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
}
