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

/// Every operation in the OpenAPI document is routed (asking without credentials gets 401,
/// never "no such endpoint" or "method not allowed"), and the documented security matches.
#[tokio::test]
async fn openapi_matches_the_router() {
    let app = spawn_app().await;
    let (_, doc) = app.get(None, "/api/v1/openapi.json").await;
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 30, "{} paths", paths.len());
    let mut operations = 0;
    for (path, item) in paths {
        let concrete = path.replace("{id}", "1");
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let body = if m == reqwest::Method::GET || m == reqwest::Method::DELETE {
                None
            } else {
                Some(serde_json::json!({}))
            };
            let (status, resp) = app.request(m.clone(), None, &concrete, body.as_ref()).await;
            let public = path == "/api/v1/auth/login";
            if public {
                assert_ne!(status, StatusCode::NOT_FOUND, "{method} {path}");
            } else {
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {resp}");
                assert!(
                    op["security"].is_array(),
                    "{method} {path} documents its security"
                );
            }
        }
    }
    assert!(operations >= 50, "{operations} operations");
    // And an undocumented path is not routed.
    let (status, body) = app.get(Some(&app.admin), "/api/v1/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "no_route");
}
