//! An event's run: its flows matched, each flow's steps run, and the event's status settled
//! from its deliveries.

use super::core::*;

impl Engine {
    /// Runs `event_id`. Safe to call again at any time, even concurrently: finished steps are
    /// not repeated, and the event's status is derived from its stored deliveries at the end,
    /// so a replay that lands while a run is in flight is never overwritten.
    pub async fn process(&self, event_id: &str) -> anyhow::Result<()> {
        match self.job_event(event_id).await? {
            Some(event) => self.process_event(event).await,
            None => Ok(()),
        }
    }

    /// The event a job names, as stored now; `None` (and a warning) when there is none.
    pub(super) async fn job_event(&self, event_id: &str) -> anyhow::Result<Option<events::Model>> {
        let event = events::Entity::find_by_id(event_id.to_string())
            .one(&self.db)
            .await?;
        if event.is_none() {
            tracing::warn!(event_id, "job for an unknown event");
        }
        Ok(event)
    }

    /// [`Engine::process`] for an event row just read.
    pub(super) async fn process_event(&self, event: events::Model) -> anyhow::Result<()> {
        // Every line logged while the event runs carries its tenant and event ids.
        let span = tracing::info_span!("event", tenant_id = %event.tenant_id, event_id = %event.id);
        tracing::Instrument::instrument(self.run_event(event), span).await
    }

    pub(super) async fn run_event(&self, event: events::Model) -> anyhow::Result<()> {
        if event.status == status::IGNORED
            || (matches!(event.status.as_str(), status::PROCESSED | status::FAILED)
                && !self.has_open_deliveries(&event.id).await?)
        {
            return Ok(());
        }
        let payload: Value =
            serde_json::from_str(&event.payload).context("stored payload is not JSON")?;
        let payload = self.current(&event, payload).await?;
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
            let settings = self.filter_settings(&event.tenant_id, &spec).await?;
            let matches = match flow::trigger_matches_with(&spec, &payload, settings) {
                Ok(matches) => matches && listens(&spec, &event, &payload),
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
                .push(ProcessEvent::of(&event), Some(delay))
                .await?;
        }
        Ok(())
    }

    pub(super) async fn has_open_deliveries(&self, event_id: &str) -> anyhow::Result<bool> {
        Ok(deliveries::Entity::find()
            .filter(deliveries::Column::EventId.eq(event_id))
            .filter(deliveries::Column::Status.is_in(OPEN.iter().copied()))
            .one(&self.db)
            .await?
            .is_some())
    }

    /// Sets the event's status from its deliveries as they are stored now. Two runs of one
    /// event (a job offered twice) settle one after the other, each reading the deliveries
    /// after the other's write: otherwise a run that found a delivery in the other's hands
    /// could write `queued` over the other's `processed` and leave the event waiting for the
    /// claim's lease to run out.
    pub(super) async fn settle(&self, event: &events::Model, matched: bool) -> anyhow::Result<()> {
        let txn = crate::db::begin_write(&self.db).await?;
        if txn.get_database_backend() == DbBackend::Postgres {
            // SQLite's write transactions are exclusive already.
            txn.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT 1 FROM events WHERE id = $1 FOR UPDATE",
                [event.id.as_str().into()],
            ))
            .await?;
        }
        let rows = deliveries::Entity::find()
            .filter(deliveries::Column::EventId.eq(event.id.as_str()))
            .all(&txn)
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
            .exec(&txn)
            .await?;
        txn.commit().await?;
        tracing::info!(status = %settled, deliveries = rows.len(), "event settled");
        Ok(())
    }
}

/// Whether a flow listens to where an event came from: its trigger's source, and for a CRM
/// source the flow's own connection; an event Tributary's own write caused only when the
/// trigger takes echoes.
fn listens(spec: &FlowSpec, event: &events::Model, payload: &Value) -> bool {
    spec.trigger.source == event.source
        && (event.source == "stripe" || spec.connection_id == event.stripe_account_id)
        && (spec.trigger.echoes || !crate::inbound::is_echo(payload))
}

impl Engine {
    /// What `settings` a flow's trigger filter sees: the flow connection's settings, with the
    /// won stage it discovered (`info.won_stage`) unless set. Read only for a filter that names
    /// `settings`, so other flows cost no query.
    async fn filter_settings(&self, tenant_id: &str, spec: &FlowSpec) -> anyhow::Result<Value> {
        let mut settings = serde_json::Map::new();
        if !spec
            .trigger
            .filter
            .as_deref()
            .is_some_and(|f| f.contains("settings"))
        {
            return Ok(Value::Object(settings));
        }
        if let Some(connection) =
            connections::Entity::find_by_id_in_tenant(tenant_id, &spec.connection_id)
                .one(&self.db)
                .await?
        {
            settings = serde_json::from_str(&connection.settings).unwrap_or_default();
            let info: serde_json::Map<String, Value> =
                serde_json::from_str(&connection.vendor_info).unwrap_or_default();
            if let Some(stage) = info
                .get("won_stage")
                .filter(|_| !settings.contains_key("won_stage"))
            {
                settings.insert("won_stage".into(), stage.clone());
            }
        }
        Ok(Value::Object(settings))
    }

    /// The event as flows see it: a Zoho notification names its records only, so the record
    /// is read from Zoho now (with its previous values); every other event as stored. A Zoho
    /// that cannot be reached fails the run, which is retried, rather than run flows on a
    /// record without its fields. A CRM change the connection's own user made is marked an
    /// echo, whether or not its source saw it so.
    async fn current(&self, event: &events::Model, payload: Value) -> anyhow::Result<Value> {
        if event.source == "stripe" {
            return Ok(payload);
        }
        let Some(connection) =
            connections::Entity::find_by_id_in_tenant(&event.tenant_id, &event.stripe_account_id)
                .one(&self.db)
                .await?
        else {
            return Ok(payload);
        };
        let mut payload = if event.source == "zoho" {
            crate::inbound::zoho::hydrate(&self.db, &self.crm, &connection, &payload)
                .await
                .context("reading the notified record from Zoho")?
                .unwrap_or(payload)
        } else {
            payload
        };
        // The connection's own user made this change: Tributary's own write coming back.
        if crate::inbound::changed_by_own_user(&connection, &payload) {
            payload["echo"] = Value::Bool(true);
        }
        Ok(payload)
    }
}
