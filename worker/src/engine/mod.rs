//! The engine: runs one stored event through every enabled flow of its tenant that matches
//! it, one delivery per step. A step that succeeded never runs again for that event; a
//! retryable failure schedules the event again after a jittered backoff; anything else, or
//! running out of attempts, dead-letters the step with its reason. Events of different tenants
//! and flows never wait on each other: a failing flow only stops its own later steps.

mod core;
mod event;
mod execute;
mod fairness;
mod job;
mod ledger;
mod links;
mod review;
mod run;
mod steps;

pub use self::core::{Engine, retry_delay};
pub use fairness::{FairSlot, Fairness};

#[cfg(test)]
mod tests {
    use super::core::*;

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
        let a1 = fairness.enter("a", 0, wait).await.expect("under the share");
        let _a2 = fairness.enter("a", 0, wait).await.expect("under the share");
        // Another tenant is never held up by a's full share.
        let _b = tokio::time::timeout(Duration::from_millis(50), fairness.enter("b", 0, wait))
            .await
            .expect("b enters at once")
            .expect("b has a slot");
        // a's third job waits for a's next free slot and takes it as soon as one is freed.
        let third = tokio::spawn({
            let fairness = fairness.clone();
            async move { fairness.enter("a", 0, wait).await.is_some() }
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
    async fn a_higher_priority_job_jumps_its_tenants_line_and_is_never_turned_away() {
        use crate::queue::priority::{BULK, LIVE_FAILURE};
        // 1 slot a tenant, a line of 1.
        let fairness = Fairness::new(1, 3);
        let wait = Duration::from_secs(5);
        let running = fairness.enter("a", BULK, wait).await.unwrap();
        let bulk = tokio::spawn({
            let fairness = fairness.clone();
            async move { fairness.enter("a", BULK, wait).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The line is full of the backlog, and another backlog job goes back to the queue...
        assert!(fairness.enter("a", BULK, wait).await.is_none());
        // ...but a failed payment waits in line, ahead of it.
        let failed = tokio::spawn({
            let fairness = fairness.clone();
            async move { fairness.enter("a", LIVE_FAILURE, wait).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(running);
        let failed = tokio::time::timeout(Duration::from_secs(1), failed)
            .await
            .expect("the freed slot goes to the failed payment")
            .unwrap()
            .expect("a slot");
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!bulk.is_finished(), "the backlog's job still waits");
        drop(failed);
        let bulk = tokio::time::timeout(Duration::from_secs(1), bulk)
            .await
            .expect("then the backlog's job")
            .unwrap();
        assert!(bulk.is_some());
    }

    #[tokio::test]
    async fn a_full_line_or_a_long_wait_sends_the_job_back_to_the_queue() {
        let fairness = Fairness::new(1, 3);
        let running = fairness.enter("a", 0, Duration::ZERO).await.unwrap();
        // One may wait (half of the 2 slots left to others); it gives up after its wait.
        let waiting = tokio::spawn({
            let fairness = fairness.clone();
            async move {
                fairness
                    .enter("a", 0, Duration::from_millis(200))
                    .await
                    .is_some()
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = std::time::Instant::now();
        assert!(
            fairness
                .enter("a", 0, Duration::from_secs(5))
                .await
                .is_none(),
            "the line is full: back to the queue at once"
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(!waiting.await.unwrap(), "no slot within its wait");
        // The line is empty again.
        let again = tokio::spawn({
            let fairness = fairness.clone();
            async move {
                fairness
                    .enter("a", 0, Duration::from_secs(5))
                    .await
                    .is_some()
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(running);
        assert!(again.await.unwrap());
    }
}
