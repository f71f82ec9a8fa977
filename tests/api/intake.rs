//! The intake wizard's API: an inquiry from an unknown sender (a lead) is linked to the
//! client the operator found, with its Interest, and optionally the sender's identity, so
//! the next message is recognised. Bad links are refused with nothing changed.

use kommutator::domain::Scope;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::*;
use crate::ws_client::*;

fn feed_kinds(page: &Value) -> Vec<(String, Option<i64>)> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or_default().to_owned(),
                e["interest_id"].as_i64(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_lead_inquiry_is_linked_to_the_found_client_its_interest_and_identity() {
    let app = spawn_app_with(with_api_channel("Sales", None)).await;
    app.department("Sales").await;
    let key = app.api_key(&[Scope::DialogsWrite]).await;

    let (status, out) = ingest(
        &app,
        &key,
        &inbound("m-1", "t-1", "+7 916 555-00-01", "Нужен счёт"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let dialog = out["dialog"]["id"].as_i64().expect("dialog");
    let lead = out["dialog"]["lead_id"]
        .as_i64()
        .expect("a lead for the unknown sender");
    let lead_interest = out["dialog"]["interest_id"].as_i64().expect("interest");

    let (status, client) = app
        .post(
            Some(&app.admin),
            "/api/v1/clients",
            &json!({"kind": "company", "name": "ООО Ромашка",
            "identities": [{"kind": "email", "value": "office@romashka.example"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{client}");
    let client = client["id"].as_i64().expect("client");
    let (status, interest) = app
        .post(
            Some(&app.admin),
            "/api/v1/interests",
            &json!({"client_id": client, "title": "Поставка"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{interest}");
    let interest = interest["id"].as_i64().expect("interest");

    // A console watching the lead learns the conversation left it.
    let (mut ws, _) = Ws::operator(&app, &app.admin).await;
    ws.subscribe(&format!("lead:{lead}"), Some(app.last_seq().await))
        .await;

    let path = format!("/api/v1/dialogs/{dialog}");
    let (status, d) = app
        .patch(
            Some(&app.admin),
            &path,
            &json!({"client_id": client, "interest_id": interest, "move_identity": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!(d["client_id"], client);
    assert_eq!(d["lead_id"], Value::Null);
    assert_eq!(d["interest_id"], interest);
    let ev = ws
        .event_where(|e| e["entity"] == "dialog" && e["op"] == "link")
        .await;
    assert_eq!(ev["data"]["client_id"], client, "{ev}");

    // The message now shows in the client's Feed, under the chosen Interest, not the lead's.
    let (_, feed) = app
        .get(Some(&app.admin), &format!("/api/v1/clients/{client}/feed"))
        .await;
    assert!(
        feed_kinds(&feed).contains(&("message".into(), Some(interest))),
        "{feed}"
    );
    let (_, feed) = app
        .get(Some(&app.admin), &format!("/api/v1/leads/{lead}/feed"))
        .await;
    assert!(
        !feed_kinds(&feed).iter().any(|(k, _)| k == "message"),
        "{feed}"
    );
    let (_, feed) = app
        .get(
            Some(&app.admin),
            &format!("/api/v1/interests/{lead_interest}/feed"),
        )
        .await;
    assert!(
        !feed_kinds(&feed).iter().any(|(k, _)| k == "message"),
        "{feed}"
    );

    // The phone is the client's now: the sender's next message is theirs.
    let (status, ident) = app
        .get(
            Some(&app.admin),
            "/api/v1/identities/lookup?kind=phone&value=%2B79165550001",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{ident}");
    assert_eq!(ident["client_id"], client);
    assert_eq!(ident["lead_id"], Value::Null);
    let (status, out) = ingest(
        &app,
        &key,
        &inbound("m-2", "t-2", "+7 916 555-00-01", "И ещё вопрос"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["dialog"]["client_id"], client, "{out}");

    // Linking again to the same party changes nothing and logs nothing.
    let seq = app.last_seq().await;
    let (status, _) = app
        .patch(
            Some(&app.admin),
            &path,
            &json!({"client_id": client, "move_identity": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app.last_seq().await, seq);
}

#[tokio::test]
async fn bad_links_are_refused_and_change_nothing() {
    let app = spawn_app_with(with_api_channel("Sales", None)).await;
    app.department("Sales").await;
    let key = app.api_key(&[Scope::DialogsWrite]).await;
    let (_, out) = ingest(
        &app,
        &key,
        &inbound("m-1", "t-1", "+7 916 555-00-02", "Привет"),
    )
    .await;
    let dialog = out["dialog"]["id"].as_i64().expect("dialog");
    let lead = out["dialog"]["lead_id"].as_i64().expect("lead");
    let (_, other) = ingest(
        &app,
        &key,
        &inbound("m-9", "t-9", "+7 916 555-00-09", "Другой"),
    )
    .await;
    let other_lead = other["dialog"]["lead_id"].as_i64().expect("lead");
    let other_interest = other["dialog"]["interest_id"].as_i64().expect("interest");
    let (_, client) = app
        .post(
            Some(&app.admin),
            "/api/v1/clients",
            &json!({"kind": "person", "name": "Анна"}),
        )
        .await;
    let client = client["id"].as_i64().expect("client");
    // A lead converted into a client may no longer take dialogs.
    let (_, conv) = app
        .post(
            Some(&app.admin),
            "/api/v1/leads",
            &json!({"name": "Старый", "phone": "+7 916 555-00-77"}),
        )
        .await;
    let converted = conv["id"].as_i64().expect("lead");
    let (status, body) = app
        .post(
            Some(&app.admin),
            &format!("/api/v1/leads/{converted}/convert"),
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let path = format!("/api/v1/dialogs/{dialog}");
    let (_, before) = app.get(Some(&app.admin), &path).await;
    let seq = app.last_seq().await;
    let s422 = StatusCode::UNPROCESSABLE_ENTITY;
    let cases: Vec<(&str, Value, StatusCode, &str, &str)> = vec![
        (
            "both parties",
            json!({"client_id": client, "lead_id": other_lead}),
            s422,
            "exclusive",
            "lead_id",
        ),
        (
            "no such client",
            json!({"client_id": 999_999, "move_identity": true}),
            s422,
            "not_found",
            "client_id",
        ),
        (
            "no such lead",
            json!({"lead_id": 999_999}),
            s422,
            "not_found",
            "lead_id",
        ),
        (
            "converted lead",
            json!({"lead_id": converted}),
            s422,
            "converted",
            "lead_id",
        ),
        (
            "identity without party",
            json!({"move_identity": true}),
            s422,
            "needs_party",
            "move_identity",
        ),
        // The identity would move before the Interest is found wrong: all or nothing.
        (
            "Interest of the old lead",
            json!({"client_id": client, "interest_id": other_interest, "move_identity": true}),
            s422,
            "wrong_party",
            "interest_id",
        ),
        (
            "client id as text",
            json!({"client_id": "7"}),
            s422,
            "invalid_type",
            "client_id",
        ),
        (
            "negative id",
            json!({"client_id": -1}),
            s422,
            "not_found",
            "client_id",
        ),
    ];
    for (name, body, status, code, field) in cases {
        let got = app.patch(Some(&app.admin), &path, &body).await;
        if got.1["error"]["code"] != code {
            panic!("{name}: {}", got.1);
        }
        assert_error(&got, status, code, Some(field));
    }
    let (_, after) = app.get(Some(&app.admin), &path).await;
    assert_eq!(after, before, "the dialog is as it was");
    assert_eq!(app.last_seq().await, seq, "nothing logged");
    let (_, ident) = app
        .get(
            Some(&app.admin),
            "/api/v1/identities/lookup?kind=phone&value=%2B79165550002",
        )
        .await;
    assert_eq!(ident["lead_id"], lead, "the identity stayed with the lead");

    // An operator who may not see the client cannot link to it.
    let dept = app.department("Support").await;
    let op = app
        .user("op1", kommutator::domain::Role::Operator, Some(dept))
        .await;
    let got = app
        .patch(Some(&op), &path, &json!({"client_id": client}))
        .await;
    assert!(got.0 == StatusCode::NOT_FOUND || got.0 == s422, "{got:?}");
}
