//! Stripe's side of a test: signed webhooks and the events they carry.

use serde_json::{Value, json};

/// Signs a body exactly as Stripe does: HMAC-SHA256 over `"{t}.{body}"`, hex.
pub fn stripe_signature(body: &[u8], secret: &str, t: i64) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// A charge.succeeded event of the current API version.
pub fn charge_event(
    event_id: &str,
    charge_id: &str,
    email: &str,
    name: &str,
    amount: i64,
    created: i64,
) -> Value {
    json!({
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "type": "charge.succeeded",
        "data": {"object": {
            "id": charge_id,
            "object": "charge",
            "amount": amount,
            "currency": "usd",
            "paid": true,
            "status": "succeeded",
            "receipt_url": format!("https://pay.stripe.com/receipts/{charge_id}"),
            "billing_details": {"email": email, "name": name, "phone": "+1-555-0100", "address": null},
            "metadata": {"company": "Stark Industries"}
        }}
    })
}
