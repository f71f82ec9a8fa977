//! Bad input found by review: each must get its specific error and write nothing.

use kommutator::domain::Role;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::*;

/// What, method, path, body, expected status, code and field.
type Case = (
    &'static str,
    Method,
    String,
    serde_json::Value,
    StatusCode,
    &'static str,
    Option<&'static str>,
);

#[tokio::test]
async fn shapes_types_and_parties() {
    let app = spawn_app().await;
    let admin = &app.admin;
    let (_, c) = app
        .post(
            Some(admin),
            "/api/v1/clients",
            &json!({"kind": "company", "name": "Alpha"}),
        )
        .await;
    let c = c["id"].as_i64().unwrap();
    let (_, ct) = app
        .post(
            Some(admin),
            &format!("/api/v1/clients/{c}/contacts"),
            &json!({"name": "Bob"}),
        )
        .await;
    let ct = ct["id"].as_i64().unwrap();
    let (_, lead) = app
        .post(Some(admin), "/api/v1/leads", &json!({"name": "Lead"}))
        .await;
    let lead = lead["id"].as_i64().unwrap();
    let (_, other) = app
        .post(
            Some(admin),
            "/api/v1/clients",
            &json!({"kind": "person", "name": "Other"}),
        )
        .await;
    let (_, foreign) = app
        .post(
            Some(admin),
            "/api/v1/interests",
            &json!({"title": "Theirs", "client_id": other["id"]}),
        )
        .await;

    let seq = app.last_seq().await;
    let cases: Vec<Case> = vec![
        (
            "array as object",
            Method::POST,
            "/api/v1/departments".into(),
            json!(["Sales"]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_type",
            None,
        ),
        (
            "array as client",
            Method::POST,
            "/api/v1/clients".into(),
            json!(["person", "X"]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_type",
            None,
        ),
        (
            "array as patch",
            Method::PATCH,
            format!("/api/v1/clients/{c}"),
            json!(["person", "Renamed"]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_type",
            None,
        ),
        (
            "enum given a number",
            Method::POST,
            "/api/v1/clients".into(),
            json!({"kind": 5, "name": "X"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_type",
            Some("kind"),
        ),
        (
            "enum given null",
            Method::POST,
            "/api/v1/users".into(),
            json!({"login": "x1", "name": "X", "role": null, "password": "long-enough-1"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_type",
            Some("role"),
        ),
        (
            "scope given a number",
            Method::POST,
            "/api/v1/api-keys".into(),
            json!({"name": "k", "scopes": [1]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_type",
            Some("scopes.0"),
        ),
        (
            "contact of a client, no client",
            Method::POST,
            "/api/v1/dialogs".into(),
            json!({"channel": "telegram", "connector_id": "tg", "external_thread_id": "x1", "contact_id": 99999}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_found",
            Some("contact_id"),
        ),
        (
            "contact with a lead",
            Method::POST,
            "/api/v1/dialogs".into(),
            json!({"channel": "telegram", "connector_id": "tg", "external_thread_id": "x2", "contact_id": ct, "lead_id": lead}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "conflicting_party",
            Some("contact_id"),
        ),
        (
            "another client's Interest",
            Method::POST,
            "/api/v1/dialogs".into(),
            json!({"channel": "telegram", "connector_id": "tg", "external_thread_id": "x3", "client_id": c, "interest_id": foreign["id"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "wrong_party",
            Some("interest_id"),
        ),
        (
            "call with client and lead",
            Method::POST,
            "/api/v1/calls".into(),
            json!({"connector_id": "pbx", "external_id": "c1", "direction": "inbound", "from_number": "+74951234567", "to_number": "101", "client_id": c, "lead_id": lead}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "conflicting_party",
            Some("lead_id"),
        ),
        (
            "password of spaces",
            Method::POST,
            "/api/v1/users".into(),
            json!({"login": "sp", "name": "S", "role": "manager", "password": "           "}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "weak_password",
            Some("password"),
        ),
        (
            "wrong method",
            Method::PUT,
            "/api/v1/clients".into(),
            json!({}),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            None,
        ),
    ];
    for (what, method, path, body, status, code, field) in cases {
        let got = app.request(method, Some(admin), &path, Some(&body)).await;
        assert!(
            got.0 == status && got.1["error"]["code"] == code,
            "{what}: {} {}",
            got.0,
            got.1
        );
        assert_error(&got, status, code, field);
    }
    assert_eq!(app.last_seq().await, seq, "nothing written");
    assert_eq!(
        app.get(Some(admin), &format!("/api/v1/clients/{c}"))
            .await
            .1["name"],
        "Alpha"
    );

    // A change that changes nothing writes nothing (the audit trail shows real changes only).
    for (path, body) in [
        (format!("/api/v1/clients/{c}"), json!({})),
        (format!("/api/v1/clients/{c}"), json!({"name": "Alpha"})),
        (format!("/api/v1/contacts/{ct}"), json!({"name": "Bob"})),
        (format!("/api/v1/leads/{lead}"), json!({})),
    ] {
        let seq = app.last_seq().await;
        let (status, body) = app.patch(Some(admin), &path, &body).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(app.last_seq().await, seq, "{path}: a no-op is not logged");
    }
    let seq = app.last_seq().await;
    app.patch(
        Some(admin),
        &format!("/api/v1/clients/{c}"),
        &json!({"notes": "new"}),
    )
    .await;
    assert_eq!(app.last_seq().await, seq + 1, "a real change is");

    // A dialog given only a contact belongs to the contact's client.
    let (status, d) = app
        .post(Some(admin), "/api/v1/dialogs", &json!({"channel": "telegram", "connector_id": "tg", "external_thread_id": "x4", "contact_id": ct}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{d}");
    assert_eq!(
        (d["client_id"].as_i64(), d["contact_id"].as_i64()),
        (Some(c), Some(ct))
    );

    // A planned interaction needs a time, on change as on create.
    let (_, x) = app
        .post(
            Some(admin),
            "/api/v1/interactions",
            &json!({"kind": "call", "subject": "Done call", "client_id": c}),
        )
        .await;
    let seq = app.last_seq().await;
    let got = app
        .patch(
            Some(admin),
            &format!("/api/v1/interactions/{}", x["id"]),
            &json!({"status": "planned"}),
        )
        .await;
    assert_error(
        &got,
        StatusCode::UNPROCESSABLE_ENTITY,
        "required",
        Some("planned_at"),
    );
    assert_eq!(app.last_seq().await, seq);
}

#[tokio::test]
async fn queries_paths_and_control_characters() {
    let app = spawn_app().await;
    let m = app.user("mgr", Role::Manager, None).await;
    for (path, status, code, field) in [
        (
            "/api/v1/clients?messenger=telegram&messenger_id=abc",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_messenger_id",
            Some("messenger_id"),
        ),
        (
            "/api/v1/clients?messenger=phone&messenger_id=%2B74951234567",
            StatusCode::BAD_REQUEST,
            "invalid_query",
            None,
        ),
        (
            "/api/v1/clients/+1",
            StatusCode::BAD_REQUEST,
            "invalid_path",
            None,
        ),
        (
            "/api/v1/clients/01",
            StatusCode::BAD_REQUEST,
            "invalid_path",
            None,
        ),
        (
            "/api/v1/audit?entity=a%00b",
            StatusCode::BAD_REQUEST,
            "invalid_query",
            None,
        ),
        (
            "/api/v1/audit?entity=Client",
            StatusCode::BAD_REQUEST,
            "invalid_query",
            None,
        ),
    ] {
        let who = if path.starts_with("/api/v1/audit") {
            &app.admin
        } else {
            &m
        };
        assert_error(&app.get(Some(who), path).await, status, code, field);
    }
    // A cursor carrying a control character is not ours.
    let evil = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("[\"a\\u0000b\", 1]")
    };
    assert_error(
        &app.get(Some(&m), &format!("/api/v1/clients?cursor={evil}"))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_cursor",
        Some("cursor"),
    );
    // A NUL in a login is a failed sign-in, not a database error (PostgreSQL rejects NUL).
    let got = app
        .post(
            None,
            "/api/v1/auth/login",
            &json!({"login": "ad\u{0}min", "password": PASSWORD}),
        )
        .await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthenticated", None);
}
