//! The load generator: signed `charge.succeeded` events sent on an open-loop schedule, or
//! closed-loop for the ingest ceiling.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tributary_tests::stripe_signature;

/// Most requests the generator keeps open at once; beyond it an event is counted as not sent.
pub const MAX_IN_FLIGHT: usize = 2048;

/// A `charge.succeeded` event shaped like Stripe's, about 3.9 KB.
pub fn event(id: &str, n: usize) -> Value {
    let charge = format!("ch_{id}");
    json!({
        "id": id, "object": "event", "api_version": "2024-06-20",
        "created": chrono::Utc::now().timestamp(), "livemode": false, "pending_webhooks": 1,
        "request": {"id": format!("req_{n:014}"), "idempotency_key": format!("{n:08x}-1f2e-4d3c-9b8a-7f6e5d4c3b2a")},
        "type": "charge.succeeded",
        "data": {"object": {
            "id": charge, "object": "charge", "amount": 1000 + n, "amount_captured": 1000 + n,
            "amount_refunded": 0, "application": null, "application_fee": null,
            "application_fee_amount": null, "balance_transaction": format!("txn_{n:024}"),
            "billing_details": {"address": {"city": "Springfield", "country": "US", "line1": "742 Evergreen Terrace",
                "line2": null, "postal_code": "49007", "state": "OR"},
                "email": format!("buyer{n}@load.test"), "name": "Load Test Buyer", "phone": "+1-555-0100"},
            "calculated_statement_descriptor": "TRIBUTARY BENCH", "captured": true,
            "created": chrono::Utc::now().timestamp(), "currency": "usd", "customer": format!("cus_{n:014}"),
            "description": "Subscription update", "destination": null, "dispute": null, "disputed": false,
            "failure_balance_transaction": null, "failure_code": null, "failure_message": null,
            "fraud_details": {}, "invoice": format!("in_{n:024}"), "livemode": false,
            "metadata": {"company": "Stark Industries", "plan": "pro", "seats": "12", "order": format!("ord_{n}"),
                "account_manager": "Pepper Potts", "region": "north-america", "channel": "self-serve",
                "campaign": "winter-launch-2026", "referrer": "https://partner.example.com/landing/winter",
                "crm_owner": "sales-team-west", "contract": format!("ctr_{n:012}"), "billing_cycle": "annual",
                "notes": "Upgraded from starter after the trial; invoice contact is the finance team, not the signer.",
                "utm_source": "newsletter", "utm_medium": "email", "utm_campaign": "winter-launch",
                "support_tier": "priority", "renewal_date": "2027-12-06", "tax_id": "US-EIN-12-3456789",
                "items": "pro-annual x12; onboarding-package x1; priority-support x1; extra-workspace x3",
                "sales_rep_email": "rep.west@stark.example.com", "signup_source": "pricing-page",
                "previous_plan": "starter-monthly", "discount": "WINTER26 (20% first year)",
                "purchase_order": format!("PO-{n:010}"), "cost_center": "CC-4410-Engineering",
                "approver": "Virginia Potts", "internal_ref": format!("ref-{n:016x}"),
                "delivery_notes": "Send the welcome pack to the Malibu office; the signer travels until January."},
            "on_behalf_of": null, "order": null,
            "outcome": {"network_status": "approved_by_network", "reason": null, "risk_level": "normal",
                "risk_score": 32, "seller_message": "Payment complete.", "type": "authorized"},
            "paid": true, "payment_intent": format!("pi_{n:024}"), "payment_method": format!("pm_{n:024}"),
            "payment_method_details": {"card": {"amount_authorized": 1000 + n, "brand": "visa",
                "checks": {"address_line1_check": "pass", "address_postal_code_check": "pass", "cvc_check": "pass"},
                "country": "US", "exp_month": 8, "exp_year": 2030, "extended_authorization": {"status": "disabled"},
                "fingerprint": "Xt5EWLLDS7FJjR1c", "funding": "credit", "incremental_authorization": {"status": "unavailable"},
                "installments": null, "last4": "4242", "mandate": null,
                "multicapture": {"status": "unavailable"}, "network": "visa",
                "network_token": {"used": false}, "overcapture": {"maximum_amount_capturable": 1000 + n, "status": "unavailable"},
                "three_d_secure": null, "wallet": null}, "type": "card"},
            "radar_options": {}, "receipt_email": format!("buyer{n}@load.test"), "receipt_number": null,
            "receipt_url": format!("https://pay.stripe.com/receipts/payment/{charge}"),
            "refunded": false, "refunds": {"object": "list", "data": [], "has_more": false,
                "total_count": 0, "url": format!("/v1/charges/{charge}/refunds")},
            "review": null, "shipping": {"address": {"city": "Springfield", "country": "US", "line1": "742 Evergreen Terrace",
                "line2": null, "postal_code": "49007", "state": "OR"}, "carrier": null, "name": "Load Test Buyer",
                "phone": "+1-555-0100", "tracking_number": null},
            "source": null, "source_transfer": null, "statement_descriptor": null,
            "statement_descriptor_suffix": null, "status": "succeeded", "transfer_data": null, "transfer_group": null
        }, "previous_attributes": null}
    })
}

pub struct Target {
    pub client: reqwest::Client,
    pub url: String,
    pub secret: String,
}

impl Target {
    /// Sends event `id` signed now; the status, or 0 when the request failed.
    pub async fn send(&self, id: &str, n: usize) -> u16 {
        let body = serde_json::to_vec(&event(id, n)).unwrap();
        let signature = stripe_signature(&body, &self.secret, chrono::Utc::now().timestamp());
        match self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("stripe-signature", signature)
            .body(body)
            .send()
            .await
        {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }
}

/// When each event of an open-loop run is due: event `i` at `start + i × interval`.
#[derive(Clone, Copy)]
pub struct Schedule {
    pub start: Instant,
    pub interval: Duration,
}

impl Schedule {
    /// The time event `i` is due.
    pub fn due(&self, i: usize) -> Instant {
        self.start + self.interval.mul_f64(i as f64)
    }
}

/// Per event: its ack latency (ms from the scheduled time) and status.
pub type Acks = Arc<Mutex<HashMap<usize, (f64, u16)>>>;

/// What the open-loop generator's requests share: where they go and what they report.
pub struct Sending {
    pub target: Arc<Target>,
    pub acks: Acks,
    pub in_flight: Arc<AtomicUsize>,
    pub acked_ok: Arc<AtomicU64>,
}

impl Sending {
    /// Sends `count` events named `evt_{tag}_{n}` as they fall due, each in a task of its own;
    /// returns how many were not sent because `MAX_IN_FLIGHT` requests were open.
    pub async fn send_on_schedule(&self, tag: &str, count: usize, schedule: Schedule) -> usize {
        let due = |i: usize| schedule.due(i);
        let mut not_sent = 0;
        let mut i = 0;
        while i < count {
            let now = Instant::now();
            while i < count && due(i) <= now {
                if self.in_flight.load(Ordering::Relaxed) >= MAX_IN_FLIGHT {
                    not_sent += 1;
                    i += 1;
                    continue;
                }
                self.in_flight.fetch_add(1, Ordering::Relaxed);
                let (target, acks, in_flight, acked_ok) = (
                    self.target.clone(),
                    self.acks.clone(),
                    self.in_flight.clone(),
                    self.acked_ok.clone(),
                );
                let scheduled = due(i);
                let n = i;
                let id = format!("evt_{tag}_{n}");
                tokio::spawn(async move {
                    let status = target.send(&id, n).await;
                    let latency = scheduled.elapsed().as_secs_f64() * 1000.0;
                    if status == 200 {
                        acked_ok.fetch_add(1, Ordering::Relaxed);
                    }
                    acks.lock().unwrap().insert(n, (latency, status));
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                });
                i += 1;
            }
            if i < count {
                tokio::time::sleep_until(due(i).into()).await;
            }
        }
        not_sent
    }
}

/// Closed loop: `clients` senders as fast as acknowledgements come, for `seconds`.
pub async fn ingest_ceiling(target: Arc<Target>, clients: usize, seconds: u64) -> (f64, usize) {
    let stop = Instant::now() + Duration::from_secs(seconds);
    let counter = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let (target, counter, refused) = (target.clone(), counter.clone(), refused.clone());
            tokio::spawn(async move {
                let mut k = 0;
                while Instant::now() < stop {
                    let id = format!("evt_ingest_{c}_{k}");
                    if target.send(&id, c * 1_000_000 + k).await == 200 {
                        counter.fetch_add(1, Ordering::Relaxed);
                    } else {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    k += 1;
                }
            })
        })
        .collect();
    let started = Instant::now();
    for h in handles {
        let _ = h.await;
    }
    (
        counter.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64(),
        refused.load(Ordering::Relaxed),
    )
}
