use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn health_and_openapi_answer() {
    let app = spawn_app().await;
    assert_eq!(
        app.http
            .get(format!("{}/healthz", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.http
            .get(format!("{}/readyz", app.base))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let metrics = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("kommutator_"), "{metrics}");
    let (status, doc) = app.get(None, "/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["paths"]["/api/v1/clients"]["post"].is_object());
    let (status, me) = app.get(Some(&app.admin), "/api/v1/auth/me").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["user"]["role"], "admin");
    let (status, c) = app
        .post(
            Some(&app.admin),
            "/api/v1/clients",
            &json!({"kind": "company", "name": "ООО Ромашка"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    eprintln!("backend: {}", backend_name());
}
