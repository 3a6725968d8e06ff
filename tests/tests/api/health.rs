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
