//! Spacing each Stripe account's requests: under its rate budget shared by every process when
//! the client has one, else in this process alone.

use std::time::{Duration, Instant};

use super::{StripeClient, StripeKey};

/// Reads per second allowed per account: about 100 live and 25 in test mode, as Stripe
/// documents; Tributary stays a little under both.
fn reads_per_second(key: &StripeKey) -> f64 {
    if key.is_test() { 20.0 } else { 80.0 }
}

impl StripeClient {
    /// Waits for this account's next request slot: its shared budget's, else this process's.
    pub(super) async fn pace(&self, key: &StripeKey) {
        use crate::budget::{Rate, Slot, Source};
        if let Some(budgets) = &self.budgets {
            let per_second = reads_per_second(key);
            // `interval_us` keeps a twentieth and one request under the rate given: give it
            // as much more.
            let rate = Rate::new(((per_second + 1.0) * 1.05).round() as u32, 1_000);
            loop {
                let reserved = budgets
                    .reserve(
                        &format!("stripe:{}", key.account_id),
                        "",
                        rate,
                        Source::Setting,
                        Duration::from_secs(60),
                    )
                    .await;
                match reserved {
                    Ok(Slot::After(wait)) => {
                        if !wait.is_zero() {
                            tokio::time::sleep(wait).await;
                        }
                        return;
                    }
                    // A line longer than a minute: wait most of it, then take a slot.
                    Ok(Slot::TooFar(wait)) => tokio::time::sleep(wait / 2).await,
                    Err(e) => {
                        tracing::warn!(error = %e, "the Stripe rate budget is unreachable; pacing in this process");
                        break;
                    }
                }
            }
        }
        let spacing = Duration::from_secs_f64(1.0 / reads_per_second(key));
        let wait = {
            let mut slots = self.next_slot.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let slot = slots.get(&key.account_id).copied().unwrap_or(now).max(now);
            slots.insert(key.account_id.clone(), slot + spacing);
            if slots.len() > 10_000 {
                slots.retain(|_, at| *at > now);
            }
            slot - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}
