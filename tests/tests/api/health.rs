use reqwest::StatusCode;
use tributary_tests::each_backend;

#[tokio::test]
async fn probes_answer() {
    each_backend(|app| async move {
        let live = app.client.get(app.url("/healthz")).send().await.unwrap();
        assert_eq!(live.status(), StatusCode::OK);
        let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), StatusCode::OK);
        let body: serde_json::Value = ready.json().await.unwrap();
        assert_eq!(body["status"], "ok");
    })
    .await;
}

#[tokio::test]
async fn the_spec_and_the_reference_are_served() {
    each_backend(|app| async move {
        let spec: serde_json::Value = app
            .client
            .get(app.url("/openapi.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(spec["openapi"].as_str().unwrap().starts_with('3'));
        assert!(spec["paths"]["/v1/stripe-accounts"]["post"].is_object());
        let docs = app.client.get(app.url("/docs")).send().await.unwrap();
        assert_eq!(docs.status(), StatusCode::OK);
        assert!(
            docs.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(docs.text().await.unwrap().contains("Tributary"));
    })
    .await;
}

#[tokio::test]
async fn metrics_count_webhooks_deliveries_and_the_queue() {
    each_backend(|app| async move {
        use tributary_tests::{charge_event, metric};
        let p = app.pipeline(serde_json::json!({})).await;
        let flow = serde_json::json!({
            "name": "m", "connection_id": p.connection_id,
            "trigger": {"events": ["charge.succeeded"]},
            "steps": [{"id": "contact", "action": "upsert", "object": "contacts",
                       "match": {"email": "{{ object.billing_details.email }}"}}]
        });
        assert_eq!(
            app.post("/v1/flows", &p.tenant.token, flow).await.status,
            StatusCode::CREATED
        );
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
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain"),
            "Prometheus text format"
        );
        let text = response.text().await.unwrap();
        assert!(!text.contains(&p.tenant.id), "no tenant ids in labels");
        for (series, at_least) in [
            (
                r#"tributary_webhooks_total{outcome="accepted",reason=""}"#,
                1.0,
            ),
            (
                r#"tributary_webhooks_total{outcome="rejected",reason="signature"}"#,
                1.0,
            ),
            (
                r#"tributary_deliveries_total{provider="sandbox",status="succeeded"}"#,
                1.0,
            ),
            ("tributary_ingest_duration_seconds_count", 1.0),
        ] {
            let value = metric(&app, series)
                .await
                .unwrap_or_else(|| panic!("{series} in:\n{text}"));
            assert!(value >= at_least, "{series} = {value}");
        }
        assert_eq!(
            metric(&app, "tributary_queue_depth").await,
            Some(0.0),
            "nothing waits"
        );
    })
    .await;
}
