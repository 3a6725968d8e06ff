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

impl crate::TestApp {
    /// Gives the pipeline's Stripe account `key` (one of the fake Stripe's), pinned to the
    /// fake's API version. The pipeline's account is in production and its events are
    /// test-mode ones, so production is let hold both modes first.
    pub async fn use_stripe_key(&self, pipeline: &crate::Pipeline, key: &str) {
        let token = &pipeline.tenant.token;
        self.allow_mixed_modes(token, tributary_worker::PRODUCTION)
            .await;
        let patched = self
            .patch(
                &format!("/v1/stripe-accounts/{}", pipeline.account_id),
                token,
                serde_json::json!({"secret_key": key, "api_version": tributary_fakes::stripe::API_VERSION}),
            )
            .await;
        assert_eq!(patched.status, reqwest::StatusCode::OK, "{}", patched.text);
    }

    /// Lets `environment` hold Stripe accounts of the other mode (a test-mode key in
    /// production), as a tenant opts in.
    pub async fn allow_mixed_modes(&self, token: &str, environment: &str) {
        let patched = self
            .patch(
                &format!("/v1/environments/{environment}"),
                token,
                serde_json::json!({"mixed_modes": true}),
            )
            .await;
        assert_eq!(patched.status, reqwest::StatusCode::OK, "{}", patched.text);
    }

    /// Points the pipeline's Stripe account at the fake Stripe: its secret key and API version,
    /// and a webhook endpoint at the fake that sends every event to the account's URL (reached
    /// directly, as the fake cannot resolve the public host), signed with a secret the account
    /// knows.
    pub async fn connect_fake_stripe(
        &self,
        pipeline: &crate::Pipeline,
        fake: &tributary_fakes::stripe::FakeStripe,
    ) {
        use tributary_fakes::stripe::SECRET_KEY;
        let token = &pipeline.tenant.token;
        self.use_stripe_key(pipeline, SECRET_KEY).await;
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("url", &self.url(&pipeline.webhook_path))
            .append_pair("enabled_events[]", "*")
            .finish();
        let endpoint: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/v1/webhook_endpoints", fake.base_url))
            .bearer_auth(SECRET_KEY)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .expect("endpoint created")
            .json()
            .await
            .expect("the endpoint's JSON");
        let secret = endpoint["secret"].as_str().expect("a signing secret");
        let added = self
            .post(
                &format!(
                    "/v1/stripe-accounts/{}/webhook-secrets",
                    pipeline.account_id
                ),
                token,
                serde_json::json!({"secret": secret}),
            )
            .await;
        assert_eq!(added.status, reqwest::StatusCode::CREATED, "{}", added.text);
    }
}
