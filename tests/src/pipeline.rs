//! A tenant wired end to end, and the calls that send events through it and read the results.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{Reply, Tenant, TestApp, captured_logs, stripe_signature};

/// A tenant wired end to end: a sandbox connection, a Stripe account with a signing secret.
pub struct Pipeline {
    pub tenant: Tenant,
    pub connection_id: String,
    pub account_id: String,
    pub webhook_path: String,
    pub secret: String,
}

impl TestApp {
    pub async fn pipeline(&self, settings: Value) -> Pipeline {
        self.pipeline_with(json!({"name": "Sandbox", "provider": "sandbox", "settings": settings}))
            .await
    }

    /// Sends `n` `charge.succeeded` events (`evt_{tag}{i}`, paid by `{tag}{i}@{domain}`),
    /// `gap` apart, then waits until each is processed; their emails, in order.
    pub async fn charges_processed(
        &self,
        pipeline: &Pipeline,
        tag: &str,
        domain: &str,
        n: usize,
        gap: std::time::Duration,
    ) -> Vec<String> {
        let now = chrono::Utc::now().timestamp();
        let mut ids = Vec::new();
        let mut emails = Vec::new();
        for i in 0..n {
            let email = format!("{tag}{i}@{domain}");
            let event = crate::charge_event(
                &format!("evt_{tag}{i}"),
                &format!("ch_{tag}{i}"),
                &email,
                "Ada",
                100,
                now,
            );
            let sent = self.send_event(pipeline, &event).await;
            assert_eq!(sent.status, StatusCode::OK, "{}", sent.text);
            ids.push(sent.str("/event_id"));
            emails.push(email);
            if !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
        }
        for id in ids {
            let done = self.finished_event(&pipeline.tenant.token, &id).await;
            assert_eq!(done["status"], "processed", "{done}");
        }
        emails
    }

    /// A tenant wired end to end with a Salesforce connection to `fake` (JWT bearer, API
    /// 60.0), with `settings` added to its own.
    pub async fn salesforce_pipeline(
        &self,
        fake: &tributary_fakes::salesforce::FakeSalesforce,
        settings: Value,
    ) -> Pipeline {
        use tributary_fakes::salesforce;
        let mut all = json!({"login_url": fake.login_url, "api_version": "60.0"});
        for (key, value) in settings.as_object().into_iter().flatten() {
            all[key] = value.clone();
        }
        self.pipeline_with(json!({
            "name": "Salesforce", "provider": "salesforce",
            "auth": {"type": "jwt_bearer", "client_id": salesforce::CLIENT_ID,
                     "username": salesforce::USERNAME,
                     "private_key": salesforce::TEST_PRIVATE_KEY_PEM},
            "settings": all
        }))
        .await
    }

    /// A tenant wired end to end with the connection `connection` describes.
    pub async fn pipeline_with(&self, connection: Value) -> Pipeline {
        let tenant = self.signup("Pipeline").await;
        let connection = self
            .post("/v1/connections", &tenant.token, connection)
            .await;
        assert_eq!(
            connection.status,
            StatusCode::CREATED,
            "{}",
            connection.text
        );
        let secret = format!("whsec_{}", uuid::Uuid::new_v4().simple());
        let account = self
            .post(
                "/v1/stripe-accounts",
                &tenant.token,
                json!({"name": "Stripe", "webhook_secret": secret}),
            )
            .await;
        assert_eq!(account.status, StatusCode::CREATED, "{}", account.text);
        let url = account.str("/webhook_url");
        let path = url
            .strip_prefix(&self.settings.public_url)
            .expect("webhook URL")
            .to_string();
        Pipeline {
            tenant,
            connection_id: connection.str("/id"),
            account_id: account.str("/id"),
            webhook_path: path,
            secret,
        }
    }

    /// Posts a body to a webhook path with a given Stripe-Signature header (or none).
    pub async fn webhook(&self, path: &str, body: &[u8], signature: Option<&str>) -> Reply {
        let mut request = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(signature) = signature {
            request = request.header("stripe-signature", signature);
        }
        Reply::read(request.send().await.expect("webhook sent")).await
    }

    /// Sends `event` signed with the pipeline's secret, now.
    pub async fn send_event(&self, pipeline: &Pipeline, event: &Value) -> Reply {
        let body = serde_json::to_vec(event).unwrap();
        let signature = stripe_signature(&body, &pipeline.secret, chrono::Utc::now().timestamp());
        self.webhook(&pipeline.webhook_path, &body, Some(&signature))
            .await
    }

    /// Waits until the event has finished (processed, failed or ignored) and returns it.
    pub async fn finished_event(&self, token: &str, event_id: &str) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let reply = self.get(&format!("/v1/events/{event_id}"), token).await;
            if matches!(
                reply.body["status"].as_str(),
                Some("processed" | "failed" | "ignored")
            ) {
                return reply.body;
            }
            if std::time::Instant::now() >= deadline {
                let logs = captured_logs();
                let problems: Vec<&str> = logs
                    .lines()
                    .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                    .collect();
                let tail = &problems[problems.len().saturating_sub(10)..];
                panic!(
                    "event {event_id} did not finish: {}\n{}",
                    reply.text,
                    tail.join("\n")
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Creates a `charge.succeeded` flow that upserts a contact by the billing email with
    /// `fields`; returns its id.
    pub async fn contact_flow(&self, pipeline: &Pipeline, fields: Value) -> String {
        let flow = json!({
            "name": "Contacts", "connection_id": pipeline.connection_id,
            "trigger": {"events": ["charge.succeeded"]},
            "steps": [{"id": "contact", "action": "upsert", "object": "contacts",
                       "match": {"email": "{{ object.billing_details.email }}"},
                       "fields": fields}]
        });
        let created = self.post("/v1/flows", &pipeline.tenant.token, flow).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        created.str("/id")
    }

    /// Creates a flow from a built-in template for the pipeline's connection; returns its id.
    pub async fn flow_from_template(&self, pipeline: &Pipeline, template: &str) -> String {
        let templates = self.get("/v1/flow-templates", &pipeline.tenant.token).await;
        let mut flow = templates.body["data"]
            .as_array()
            .and_then(|all| all.iter().find(|t| t["id"] == template))
            .unwrap_or_else(|| panic!("no template {template}"))["flow"]
            .clone();
        flow["connection_id"] = json!(pipeline.connection_id);
        let created = self.post("/v1/flows", &pipeline.tenant.token, flow).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        created.str("/id")
    }

    /// Sends `event` and waits until it has finished.
    pub async fn deliver(&self, pipeline: &Pipeline, event: &Value) -> Value {
        let sent = self.send_event(pipeline, event).await;
        assert_eq!(sent.status, StatusCode::OK, "{}", sent.text);
        self.finished_event(&pipeline.tenant.token, &sent.str("/event_id"))
            .await
    }

    /// The connection as the API shows it.
    pub async fn connection(&self, pipeline: &Pipeline) -> Value {
        let reply = self
            .get(
                &format!("/v1/connections/{}", pipeline.connection_id),
                &pipeline.tenant.token,
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        reply.body
    }

    /// The sandbox connection's records of one object.
    pub async fn records(&self, token: &str, connection_id: &str, object: &str) -> Vec<Value> {
        let reply = self
            .get(
                &format!("/v1/connections/{connection_id}/records?object={object}&limit=100"),
                token,
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
        reply.body["data"].as_array().cloned().unwrap_or_default()
    }
}
