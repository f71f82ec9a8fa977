//! Lead conversion through the API: into an existing client, refusals, nothing half-moved.

use kommutator::domain::Scope;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn convert_into_an_existing_client_moves_everything() {
    let app = spawn_app().await;
    let admin = &app.admin;
    let bot = app
        .api_key(&[Scope::DialogsWrite, Scope::ClientsWrite])
        .await;
    let (_, client) = app
        .post(
            Some(admin),
            "/api/v1/clients",
            &json!({"kind": "company", "name": "ООО Ромашка"}),
        )
        .await;
    let c = client["id"].as_i64().unwrap();
    let (_, lead) = app
        .post(
            Some(admin),
            "/api/v1/leads",
            &json!({"name": "Иван", "phone": "+7 916 000-11-22", "email": "ivan@romashka.ru"}),
        )
        .await;
    let l = lead["id"].as_i64().unwrap();
    let (_, deal) = app
        .post(
            Some(admin),
            "/api/v1/interests",
            &json!({"title": "Опт", "lead_id": l}),
        )
        .await;
    let (_, d) = app
        .post(Some(&bot), "/api/v1/dialogs", &json!({"channel": "telegram", "connector_id": "tg", "external_thread_id": "chat-9", "lead_id": l}))
        .await;
    let d = d["id"].as_i64().unwrap();
    let (status, _) = app
        .post(
            Some(&bot),
            &format!("/api/v1/dialogs/{d}/messages"),
            &json!({"direction": "inbound", "external_id": "tg-1", "body": "Нужен прайс"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, before) = app
        .get(Some(admin), &format!("/api/v1/leads/{l}/feed"))
        .await;
    assert_eq!(before["items"].as_array().unwrap().len(), 2, "{before}");

    // A rejected lead cannot be converted; an open one can, into the existing client.
    let (_, other) = app
        .post(Some(admin), "/api/v1/leads", &json!({"name": "Spam"}))
        .await;
    app.patch(
        Some(admin),
        &format!("/api/v1/leads/{}", other["id"]),
        &json!({"status": "rejected"}),
    )
    .await;
    let seq = app.last_seq().await;
    let refused = app
        .post(
            Some(admin),
            &format!("/api/v1/leads/{}/convert", other["id"]),
            &json!({}),
        )
        .await;
    assert_error(&refused, StatusCode::CONFLICT, "conflict", Some("status"));
    assert_eq!(app.last_seq().await, seq);

    let (status, conv) = app
        .post(
            Some(admin),
            &format!("/api/v1/leads/{l}/convert"),
            &json!({"client_id": c}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{conv}");
    assert_eq!(conv["client"]["id"], c);
    assert_eq!(conv["moved"]["identities"], 2);
    assert_eq!(conv["moved"]["dialogs"], 1);
    assert_eq!(conv["moved"]["interests"], 1);
    let (_, found) = app
        .get(Some(admin), "/api/v1/clients?phone=89160001122")
        .await;
    assert_eq!(found["items"][0]["id"], c);
    let (_, feed) = app
        .get(Some(admin), &format!("/api/v1/clients/{c}/feed"))
        .await;
    let kinds: Vec<&str> = feed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["message", "interest"], "{feed}");
    let (_, moved_deal) = app
        .get(Some(admin), &format!("/api/v1/interests/{}", deal["id"]))
        .await;
    assert_eq!(
        (
            moved_deal["client_id"].as_i64(),
            moved_deal["lead_id"].is_null()
        ),
        (Some(c), true)
    );
    let (_, after) = app
        .get(Some(admin), &format!("/api/v1/leads/{l}/feed"))
        .await;
    assert!(after["items"].as_array().unwrap().is_empty());
    // New inbound messages of that chat now land on the client.
    let (_, dialog) = app.get(Some(admin), &format!("/api/v1/dialogs/{d}")).await;
    assert_eq!(dialog["client_id"], c);
}

#[tokio::test]
async fn conversion_that_cannot_complete_moves_nothing() {
    let app = spawn_app().await;
    let admin = &app.admin;
    let (_, lead) = app
        .post(
            Some(admin),
            "/api/v1/leads",
            &json!({"name": "Пётр", "phone": "+7 916 000-33-44"}),
        )
        .await;
    let l = lead["id"].as_i64().unwrap();
    app.post(
        Some(admin),
        "/api/v1/custom-fields",
        &json!({"key": "inn", "label": "ИНН", "field_type": "string", "required": true}),
    )
    .await;
    let seq = app.last_seq().await;
    let got = app
        .post(
            Some(admin),
            &format!("/api/v1/leads/{l}/convert"),
            &json!({"create_contact": true}),
        )
        .await;
    assert_error(
        &got,
        StatusCode::UNPROCESSABLE_ENTITY,
        "required",
        Some("custom_fields.inn"),
    );
    assert_eq!(app.last_seq().await, seq, "nothing written");
    let (_, still) = app.get(Some(admin), &format!("/api/v1/leads/{l}")).await;
    assert_eq!(still["status"], "open");
    let (_, ident) = app
        .get(
            Some(admin),
            "/api/v1/identities/lookup?kind=phone&value=89160003344",
        )
        .await;
    assert_eq!(
        (ident["lead_id"].as_i64(), ident["client_id"].is_null()),
        (Some(l), true)
    );
    // Into a client that does not exist: 422 on client_id, nothing moved.
    let got = app
        .post(
            Some(admin),
            &format!("/api/v1/leads/{l}/convert"),
            &json!({"client_id": 999_999}),
        )
        .await;
    assert_error(
        &got,
        StatusCode::UNPROCESSABLE_ENTITY,
        "not_found",
        Some("client_id"),
    );
    assert_eq!(app.last_seq().await, seq);
}

#[tokio::test]
async fn parallel_conversions_of_one_lead_make_one_client() {
    let app = std::sync::Arc::new(spawn_app().await);
    let (_, lead) = app
        .post(
            Some(&app.admin),
            "/api/v1/leads",
            &json!({"name": "Гонка", "company_name": "ООО Гонка"}),
        )
        .await;
    let l = lead["id"].as_i64().unwrap();
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                app.post(
                    Some(&app.admin),
                    &format!("/api/v1/leads/{l}/convert"),
                    &json!({}),
                )
                .await
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::CONFLICT => assert_eq!(body["error"]["field"], "status", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(ok, 1, "exactly one conversion");
    let (_, found) = app.get(Some(&app.admin), "/api/v1/clients?q=гонка").await;
    assert_eq!(
        found["items"].as_array().unwrap().len(),
        1,
        "one client: {found}"
    );
}
