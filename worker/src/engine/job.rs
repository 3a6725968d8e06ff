//! A queue job in a process: each tenant's share of the job slots (fairness), and a job
//! that panics dead-lettering its delivery instead of taking the consumer down.

use super::core::*;
use super::fairness::*;

impl Engine {
    /// Runs one queued job: within its tenant's share of the slots (else it is offered again
    /// shortly), and isolated, so a panic dead-letters the delivery it was working on and the
    /// consumer goes on with the next job.
    pub async fn run_job(&self, event_id: &str) -> anyhow::Result<()> {
        let Some(event) = self.job_event(event_id).await? else {
            return Ok(());
        };
        let tenant = event.tenant_id.clone();
        let asked = std::time::Instant::now();
        let Some(_slot) = self
            .fairness
            .enter(&tenant, event.priority, SLOT_WAIT)
            .await
        else {
            tracing::debug!(event_id, tenant_id = %tenant, "tenant at its share of the job slots; job deferred");
            crate::metrics::job_deferred();
            return self
                .queue
                // Behind every other tenant's work: a tenant over its share yields, whatever
                // its events' priority.
                .push(
                    ProcessEvent {
                        priority: crate::queue::priority::BULK,
                        ..ProcessEvent::of(&event)
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
    pub(super) async fn record_panic(
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
            self.queue.push(ProcessEvent::of(&event), None).await?;
        }
        Ok(())
    }
}
