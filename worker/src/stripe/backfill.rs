//! Backfill and reconciliation: Stripe's `/v1/events` of one account ingested into the inbox
//! where it lacks them, through the same path as webhooks, oldest first.
//!
//! Stripe lists events newest first and keeps 30 days of them. A backfill first walks back
//! (`starting_after`) to the oldest event since its start time — the `scan` phase, reading ids
//! only — then walks forward from it (`ending_before`, each page reversed) and ingests every
//! event the inbox does not hold — the `ingest` phase. Both cursors and every counter are
//! stored after each page or event, so a backfill cut off by a crash resumes where it stopped
//! without ingesting anything twice or out of order.
//!
//! Every process runs [`run_forever`]: it claims due backfills with a lease (a crashed
//! process's backfill is taken over when the lease runs out), runs each in its own task so one
//! account's long backfill never holds up another's, and schedules a reconciliation for each
//! account with a key every `TRIBUTARY_RECONCILE_INTERVAL`: a backfill of the recent window
//! with `delivery_success=false`, which repairs what a failed webhook dropped.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{backfills, stripe_accounts};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use super::StripeApi;
use super::client::{StripeError, StripeKey, list_param};
use crate::inbox::{self, Stored};
use crate::queue::Queue;

pub const KIND_BACKFILL: &str = "backfill";
pub const KIND_RECONCILE: &str = "reconcile";

pub mod status {
    pub const PENDING: &str = "pending";
    pub const RUNNING: &str = "running";
    pub const SUCCEEDED: &str = "succeeded";
    pub const FAILED: &str = "failed";
}

/// How far back Stripe lists events.
pub const RETENTION: chrono::Duration = chrono::Duration::days(30);
/// Failed page reads in a row after which a backfill gives up.
const MAX_PAGE_FAILURES: u32 = 5;

/// What a backfill run needs; one per process.
#[derive(Clone)]
pub struct Backfiller {
    pub db: DatabaseConnection,
    pub queue: Queue,
    pub stripe: Arc<StripeApi>,
    /// Events per page (Stripe allows 1 to 100).
    pub page_size: u32,
    pub reconcile_interval: Duration,
    pub reconcile_window: Duration,
    /// How long a claim holds without progress before another process may take the backfill
    /// over (`TRIBUTARY_SWEEP_GRACE`, the same patience as for lost jobs).
    pub lease: chrono::Duration,
    running: Arc<Mutex<HashSet<String>>>,
}

/// A new backfill row (not yet stored).
pub fn new_backfill(
    account: &stripe_accounts::Model,
    kind: &str,
    since: DateTime<Utc>,
    types: Option<&[String]>,
    delivery_success: Option<bool>,
) -> backfills::Model {
    let at = crate::now();
    backfills::Model {
        id: crate::new_id(),
        tenant_id: account.tenant_id.clone(),
        stripe_account_id: account.id.clone(),
        kind: kind.into(),
        since,
        types: types.map(|t| serde_json::to_string(t).unwrap_or_else(|_| "[]".into())),
        delivery_success,
        status: status::PENDING.into(),
        phase: "scan".into(),
        scan_cursor: None,
        oldest_event_id: None,
        ingest_cursor: None,
        pages_read: 0,
        events_found: 0,
        ingested: 0,
        already_present: 0,
        failed: 0,
        skipped: 0,
        last_error: None,
        lease_until: None,
        created_at: at,
        updated_at: at,
        finished_at: None,
    }
}

impl Backfiller {
    pub fn new(
        db: DatabaseConnection,
        queue: Queue,
        stripe: Arc<StripeApi>,
        settings: &crate::settings::Settings,
    ) -> Backfiller {
        Backfiller {
            db,
            queue,
            stripe,
            page_size: settings.backfill_page_size,
            reconcile_interval: settings.reconcile_interval,
            reconcile_window: settings.reconcile_window,
            lease: chrono::Duration::from_std(settings.sweep_grace)
                .unwrap_or(chrono::Duration::seconds(60)),
            running: Arc::default(),
        }
    }

    /// One look: schedules due reconciliations, then claims and starts due backfills.
    pub async fn tick(&self) -> anyhow::Result<()> {
        self.schedule_reconciliations().await?;
        let now = crate::now();
        let due = backfills::Entity::find()
            .filter(backfills::Column::Status.is_in([status::PENDING, status::RUNNING]))
            .filter(
                Condition::any()
                    .add(backfills::Column::LeaseUntil.is_null())
                    .add(backfills::Column::LeaseUntil.lt(now)),
            )
            .order_by_asc(backfills::Column::Id)
            .limit(50)
            .all(&self.db)
            .await?;
        for backfill in due {
            if self.running_here(&backfill.id) || !self.claim(&backfill).await? {
                continue;
            }
            self.running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(backfill.id.clone());
            let this = self.clone();
            tokio::spawn(async move {
                let id = backfill.id.clone();
                if let Err(e) = this.run(&id).await {
                    tracing::warn!(backfill_id = %id, error = format!("{e:#}"), "backfill stopped; it resumes when its lease ends");
                }
                this.running
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
            });
        }
        Ok(())
    }

    fn running_here(&self, id: &str) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(id)
    }

    /// Takes the lease of a backfill as read; false when another process got it first.
    async fn claim(&self, backfill: &backfills::Model) -> anyhow::Result<bool> {
        let now = crate::now();
        let claimed_at = now.max(backfill.updated_at + chrono::Duration::microseconds(1));
        Ok(backfills::Entity::update_many()
            .set(backfills::ActiveModel {
                status: Set(status::RUNNING.into()),
                lease_until: Set(Some(claimed_at + self.lease)),
                updated_at: Set(claimed_at),
                ..Default::default()
            })
            .filter(backfills::Column::Id.eq(backfill.id.as_str()))
            .filter(backfills::Column::UpdatedAt.eq(backfill.updated_at))
            .exec(&self.db)
            .await?
            .rows_affected
            == 1)
    }

    /// Writes progress and extends the lease; false if the lease was lost (another process
    /// took the backfill over), so this one stops.
    async fn save(&self, row: &mut backfills::Model) -> anyhow::Result<bool> {
        let now = crate::now().max(row.updated_at + chrono::Duration::microseconds(1));
        let applied = backfills::Entity::update_many()
            .set(backfills::ActiveModel {
                status: Set(row.status.clone()),
                phase: Set(row.phase.clone()),
                scan_cursor: Set(row.scan_cursor.clone()),
                oldest_event_id: Set(row.oldest_event_id.clone()),
                ingest_cursor: Set(row.ingest_cursor.clone()),
                pages_read: Set(row.pages_read),
                events_found: Set(row.events_found),
                ingested: Set(row.ingested),
                already_present: Set(row.already_present),
                failed: Set(row.failed),
                skipped: Set(row.skipped),
                last_error: Set(row.last_error.clone()),
                lease_until: Set(if row.status == status::RUNNING {
                    Some(now + self.lease)
                } else {
                    None
                }),
                finished_at: Set(row.finished_at),
                updated_at: Set(now),
                ..Default::default()
            })
            .filter(backfills::Column::Id.eq(row.id.as_str()))
            .filter(backfills::Column::UpdatedAt.eq(row.updated_at))
            .exec(&self.db)
            .await?
            .rows_affected
            == 1;
        row.updated_at = now;
        Ok(applied)
    }

    /// Runs one claimed backfill to its end (or until its lease is lost).
    pub async fn run(&self, id: &str) -> anyhow::Result<()> {
        let Some(mut row) = backfills::Entity::find_by_id(id.to_string())
            .one(&self.db)
            .await?
        else {
            return Ok(());
        };
        let Some(account) = stripe_accounts::Entity::find_by_id(row.stripe_account_id.clone())
            .one(&self.db)
            .await?
        else {
            row.status = status::FAILED.into();
            row.last_error = Some("the Stripe account was deleted".into());
            row.finished_at = Some(crate::now());
            self.save(&mut row).await?;
            return Ok(());
        };
        let key = match self.stripe.key_of(&account) {
            Ok(key) => key,
            Err(e) => return self.finish_failed(&mut row, &e).await,
        };
        let account = self.with_mode(account, &key).await?;
        let mut failures = 0;
        loop {
            let step = if row.phase == "scan" {
                self.scan_page(&key, &mut row).await
            } else {
                self.ingest_page(&key, &account, &mut row).await
            };
            match step {
                Ok(true) => {
                    failures = 0;
                    if !self.save(&mut row).await? {
                        return Ok(());
                    }
                }
                Ok(false) => break,
                Err(Step::Lost) => return Ok(()),
                Err(Step::Stripe(e)) => {
                    failures += 1;
                    let permanent = !e.kind().is_retryable();
                    if permanent || failures >= MAX_PAGE_FAILURES {
                        return self.finish_failed(&mut row, &e).await;
                    }
                    row.last_error = Some(e.to_string());
                    if !self.save(&mut row).await? {
                        return Ok(());
                    }
                    tokio::time::sleep(Duration::from_secs(2u64.pow(failures))).await;
                }
                Err(Step::Other(e)) => return Err(e),
            }
        }
        row.status = status::SUCCEEDED.into();
        row.last_error = None;
        row.finished_at = Some(crate::now());
        if !self.save(&mut row).await? {
            return Ok(());
        }
        if row.kind == KIND_RECONCILE {
            self.record_reconciliation(&account, &row).await?;
        }
        tracing::info!(backfill_id = %row.id, tenant_id = %row.tenant_id, kind = %row.kind,
            found = row.events_found, ingested = row.ingested, already_present = row.already_present,
            "backfill finished");
        Ok(())
    }

    /// The account with its mode, which an account from before modes were kept has only in
    /// its key's prefix: derived here, where the key is open, and written down for everyone.
    async fn with_mode(
        &self,
        mut account: stripe_accounts::Model,
        key: &StripeKey,
    ) -> anyhow::Result<stripe_accounts::Model> {
        if account.livemode.is_none()
            && let Some(livemode) = key.livemode()
        {
            stripe_accounts::Entity::update_many()
                .set(stripe_accounts::ActiveModel {
                    livemode: Set(Some(livemode)),
                    ..Default::default()
                })
                .filter(stripe_accounts::Column::Id.eq(account.id.as_str()))
                .filter(stripe_accounts::Column::Livemode.is_null())
                .exec(&self.db)
                .await?;
            account.livemode = Some(livemode);
        }
        Ok(account)
    }

    async fn finish_failed(
        &self,
        row: &mut backfills::Model,
        error: &StripeError,
    ) -> anyhow::Result<()> {
        let mut message = error.to_string();
        if error.is_missing_permission() {
            message.push_str(" — a restricted key needs the Events read permission (rak_event_read) for backfills");
        }
        row.status = status::FAILED.into();
        row.last_error = Some(message);
        row.finished_at = Some(crate::now());
        self.save(row).await?;
        Ok(())
    }

    /// The list query of this backfill: its start time, types and delivery filter.
    fn query(&self, row: &backfills::Model) -> Vec<(String, String)> {
        let mut query = vec![
            ("limit".to_string(), self.page_size.to_string()),
            (
                "created[gte]".to_string(),
                row.since.timestamp().to_string(),
            ),
        ];
        if let Some(types) = row
            .types
            .as_deref()
            .and_then(|t| serde_json::from_str::<Vec<String>>(t).ok())
            .filter(|t| !t.is_empty())
        {
            query.extend(list_param("types", &types));
        }
        if let Some(success) = row.delivery_success {
            query.push(("delivery_success".to_string(), success.to_string()));
        }
        query
    }

    /// One page back in time; false when the oldest event is found (or there is none).
    async fn scan_page(&self, key: &StripeKey, row: &mut backfills::Model) -> Result<bool, Step> {
        let mut query = self.query(row);
        if let Some(cursor) = &row.scan_cursor {
            query.push(("starting_after".to_string(), cursor.clone()));
        }
        let page = self.stripe.client.get(key, "/v1/events", &query).await?;
        row.pages_read += 1;
        let data = page["data"].as_array().cloned().unwrap_or_default();
        if let Some(last) = data.last().and_then(|e| e["id"].as_str()) {
            row.scan_cursor = Some(last.to_string());
            row.oldest_event_id = Some(last.to_string());
        }
        if page["has_more"].as_bool() == Some(true) && !data.is_empty() {
            return Ok(true);
        }
        row.phase = "ingest".into();
        // With nothing since the start time it is done.
        Ok(row.oldest_event_id.is_some())
    }

    /// One page forward in time, ingested oldest first; false when the newest is done.
    async fn ingest_page(
        &self,
        key: &StripeKey,
        account: &stripe_accounts::Model,
        row: &mut backfills::Model,
    ) -> Result<bool, Step> {
        let Some(oldest) = row.oldest_event_id.clone() else {
            return Ok(false);
        };
        let (events, more) = match row.ingest_cursor.clone() {
            // The oldest event itself comes first.
            None => {
                let event = self
                    .stripe
                    .client
                    .get(key, &format!("/v1/events/{oldest}"), &[])
                    .await?;
                row.pages_read += 1;
                (vec![event], true)
            }
            Some(cursor) => {
                let mut query = self.query(row);
                query.push(("ending_before".to_string(), cursor));
                let page = self.stripe.client.get(key, "/v1/events", &query).await?;
                row.pages_read += 1;
                let mut data = page["data"].as_array().cloned().unwrap_or_default();
                data.reverse();
                let more = page["has_more"].as_bool() == Some(true) && !data.is_empty();
                (data, more)
            }
        };
        for event in events {
            let Some(event_id) = event["id"].as_str().map(str::to_string) else {
                continue;
            };
            let payload = event.to_string();
            let envelope = match super::envelope::parse_value(event) {
                Ok(envelope) => envelope,
                Err(e) => {
                    // Not an event Tributary can keep: counted, and passed over for good.
                    row.events_found += 1;
                    row.failed += 1;
                    row.last_error = Some(format!("{event_id}: {e}"));
                    row.ingest_cursor = Some(event_id);
                    if !self.save(row).await.map_err(Step::Other)? {
                        return Err(Step::Lost);
                    }
                    continue;
                }
            };
            if account
                .livemode
                .is_some_and(|livemode| livemode != envelope.livemode)
            {
                // The other mode's event (as a webhook would be refused): counted, never stored.
                tracing::warn!(backfill_id = %row.id, stripe_event_id = %event_id,
                    event_livemode = envelope.livemode, "backfill skipped an event of the other mode than its account");
                row.events_found += 1;
                row.skipped += 1;
                row.ingest_cursor = Some(event_id);
                if !self.save(row).await.map_err(Step::Other)? {
                    return Err(Step::Lost);
                }
                continue;
            }
            // The database's trouble stops the page here, cursor unmoved: the event is tried
            // again, never skipped.
            let stored = self
                .ingest(account, envelope, payload)
                .await
                .map_err(Step::Other)?;
            row.events_found += 1;
            match stored {
                Stored::New(_) => row.ingested += 1,
                Stored::Duplicate(_) => row.already_present += 1,
            }
            row.ingest_cursor = Some(event_id);
            // Progress after every event: a crash repeats nothing.
            if !self.save(row).await.map_err(Step::Other)? {
                return Err(Step::Lost);
            }
        }
        Ok(more)
    }

    /// Puts one event from Stripe into the inbox, as the webhook ingress does.
    async fn ingest(
        &self,
        account: &stripe_accounts::Model,
        envelope: super::envelope::Envelope,
        payload: String,
    ) -> anyhow::Result<Stored> {
        let mut row = inbox::new_row(account, &envelope, payload);
        // Work from the past goes after live events, failures first.
        row.priority = crate::queue::priority::of(&envelope.event_type, false);
        let stored = inbox::store(&self.db, &self.queue, row).await?;
        if let Stored::New(id) = &stored {
            tracing::info!(event_id = %id, stripe_event_id = %envelope.id, event_type = %envelope.event_type, "event backfilled");
        }
        Ok(stored)
    }

    /// Adds a finished reconciliation's repairs to its account (and the metric).
    async fn record_reconciliation(
        &self,
        account: &stripe_accounts::Model,
        row: &backfills::Model,
    ) -> anyhow::Result<()> {
        let current = stripe_accounts::Entity::find_by_id(account.id.clone())
            .one(&self.db)
            .await?;
        if let Some(current) = current {
            stripe_accounts::Entity::update_many()
                .set(stripe_accounts::ActiveModel {
                    reconcile_repaired: Set(current.reconcile_repaired + row.ingested),
                    last_reconciliation_id: Set(Some(row.id.clone())),
                    ..Default::default()
                })
                .filter(stripe_accounts::Column::Id.eq(account.id.as_str()))
                .exec(&self.db)
                .await?;
        }
        crate::metrics::reconciled(row.ingested.max(0) as u64);
        if row.ingested > 0 {
            tracing::info!(tenant_id = %row.tenant_id, stripe_account_id = %account.id, repaired = row.ingested, "reconciliation repaired missed events");
        }
        Ok(())
    }

    /// Every account with a key whose last reconciliation is an interval old gets one; an
    /// account seen for the first time starts its clock now. The account's row is claimed by a
    /// compare-and-set, so one process schedules it.
    async fn schedule_reconciliations(&self) -> anyhow::Result<()> {
        let now = crate::now();
        let interval = chrono::Duration::from_std(self.reconcile_interval)
            .unwrap_or(chrono::Duration::hours(1));
        let accounts = stripe_accounts::Entity::find()
            .filter(stripe_accounts::Column::SecretKey.is_not_null())
            .filter(
                Condition::any()
                    .add(stripe_accounts::Column::ReconciledAt.is_null())
                    .add(stripe_accounts::Column::ReconciledAt.lt(now - interval)),
            )
            .limit(100)
            .all(&self.db)
            .await?;
        for account in accounts {
            let mut claim = stripe_accounts::Entity::update_many()
                .set(stripe_accounts::ActiveModel {
                    reconciled_at: Set(Some(now)),
                    ..Default::default()
                })
                .filter(stripe_accounts::Column::Id.eq(account.id.as_str()));
            claim = match account.reconciled_at {
                Some(at) => claim.filter(stripe_accounts::Column::ReconciledAt.eq(at)),
                None => claim.filter(stripe_accounts::Column::ReconciledAt.is_null()),
            };
            let won = claim.exec(&self.db).await?.rows_affected == 1;
            if !won || account.reconciled_at.is_none() {
                continue;
            }
            let window = chrono::Duration::from_std(self.reconcile_window)
                .unwrap_or(chrono::Duration::hours(24))
                .min(RETENTION - chrono::Duration::minutes(5));
            let row = new_backfill(&account, KIND_RECONCILE, now - window, None, Some(false));
            backfills::Entity::insert(backfills::ActiveModel::from(row))
                .exec(&self.db)
                .await?;
        }
        Ok(())
    }
}

/// Why a page step stopped.
enum Step {
    Stripe(StripeError),
    /// Another process holds the backfill now.
    Lost,
    Other(anyhow::Error),
}

impl From<StripeError> for Step {
    fn from(e: StripeError) -> Self {
        Step::Stripe(e)
    }
}

/// Runs [`Backfiller::tick`] every `interval` until the process stops.
pub async fn run_forever(backfiller: Backfiller, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Err(e) = backfiller.tick().await {
            tracing::warn!(error = format!("{e:#}"), "backfill scheduling failed");
        }
    }
}
