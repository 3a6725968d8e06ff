//! The metrics, in a test binary of their own: the counters are process-wide, so only here do
//! a test's own webhooks and deliveries move them and nothing else. Each count is read before
//! and after and must move by exactly what the test did, under the right labels.

use reqwest::StatusCode;
use serde_json::json;
use tributary_tests::{TestApp, charge_event, each_backend, metric, wait_for};

/// The series' values now; an absent series is 0.
async fn read(app: &TestApp, series: &[&str]) -> Vec<f64> {
    let mut values = Vec::new();
    for s in series {
        values.push(metric(app, s).await.unwrap_or(0.0));
    }
    values
}

#[tokio::test]
async fn metrics_count_webhooks_deliveries_and_the_queue() {
    each_backend(|app| async move {
        let p = app.pipeline(json!({})).await;
        let flow = json!({
            "name": "m", "connection_id": p.connection_id,
            "trigger": {"events": ["charge.succeeded"]},
            "steps": [{"id": "contact", "action": "upsert", "object": "contacts",
                       "match": {"email": "{{ object.billing_details.email }}"}}]
        });
        assert_eq!(
            app.post("/v1/flows", &p.tenant.token, flow).await.status,
            StatusCode::CREATED
        );
        // Each series with how much this test moves it.
        let series = [
            (
                r#"tributary_webhooks_total{outcome="accepted",reason=""}"#,
                1.0,
            ),
            (
                r#"tributary_webhooks_total{outcome="rejected",reason="signature"}"#,
                1.0,
            ),
            (
                r#"tributary_webhooks_total{outcome="rejected",reason="malformed"}"#,
                0.0,
            ),
            (
                r#"tributary_webhooks_total{outcome="duplicate",reason=""}"#,
                0.0,
            ),
            (
                r#"tributary_deliveries_total{provider="sandbox",status="succeeded"}"#,
                1.0,
            ),
            (
                r#"tributary_deliveries_total{provider="sandbox",status="retrying"}"#,
                0.0,
            ),
            ("tributary_ingest_duration_seconds_count", 1.0),
        ];
        let names: Vec<&str> = series.iter().map(|(s, _)| *s).collect();
        let before = read(&app, &names).await;

        let done = app
            .deliver(
                &p,
                &charge_event("evt_m1", "ch_m1", "m@example.com", "M", 100, 1_700_000_000),
            )
            .await;
        assert_eq!(done["status"], "processed");
        let forged = app.webhook(&p.webhook_path, b"{}", Some("t=1,v1=00")).await;
        assert_eq!(forged.status, StatusCode::BAD_REQUEST);

        // The api's port is public: no token, a wrong one → refused, with nothing in the answer.
        let anonymous = app.client.get(app.url("/metrics")).send().await.unwrap();
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
        assert!(!anonymous.text().await.unwrap().contains("tributary_"));
        let wrong = app
            .client
            .get(app.url("/metrics"))
            .bearer_auth("not-the-metrics-token")
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
        let response = app
            .client
            .get(app.url("/metrics"))
            .bearer_auth(tributary_tests::METRICS_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        // The body is OpenMetrics text (it ends with `# EOF`), and says so.
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        );
        let text = response.text().await.unwrap();
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
        assert!(!text.contains(&p.tenant.id), "no tenant ids in labels");
        // A delivery is counted as its attempt settles: wait until every count has moved.
        let after = wait_for(10, "the counts to move", || {
            let (app, names, before) = (&app, &names, &before);
            async move {
                let after = read(app, names).await;
                let moved = series
                    .iter()
                    .zip(before.iter().zip(&after))
                    .all(|((_, by), (b, a))| a - b >= *by);
                moved.then_some(after)
            }
        })
        .await;
        for (((name, moved), before), after) in series.iter().zip(&before).zip(&after) {
            assert_eq!(
                after - before,
                *moved,
                "{name}: {before} before, {after} after, in:\n{text}"
            );
        }
        assert_eq!(
            metric(&app, "tributary_queue_depth").await,
            Some(0.0),
            "nothing waits"
        );
    })
    .await;
}
