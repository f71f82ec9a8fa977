//! The bot socket: a chatbot follows its department's new dialogs (held for it with
//! `bot_first`), answers as the bot, and hands over to a person; an unanswered hold goes to
//! people after the offer timeout; people and weak keys are refused.

use std::time::Duration;

use kommutator::domain::{Role, Scope};
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;
use crate::ws_client::*;

async fn bot_first(app: &TestApp, dept: i64, timeout: i64) {
    let (s, body) = app
        .patch(
            Some(&app.admin),
            &format!("/api/v1/departments/{dept}/routing"),
            &json!({"bot_first": true, "offer_timeout_secs": timeout}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["bot_first"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_answers_then_hands_over() {
    let app = spawn_app_with(with_api_channel("Sales", None)).await;
    eprintln!("bot on {}", backend_name());
    let sales = app.department("Sales").await;
    bot_first(&app, sales, 0).await;
    let op = app.user("oleg", Role::Operator, Some(sales)).await;
    let key = app.api_key(&[Scope::DialogsWrite]).await;
    let (mut console, _) = Ws::operator(&app, &op).await;
    console.subscribe(&format!("user:{}", op.id), None).await;

    let mut bot = Ws::connect(&app, "/ws/bot", &key).await;
    let hello = bot.next().await;
    assert_eq!(hello["type"], "hello");
    assert_eq!(hello["api_key_id"], key.id);
    bot.subscribe(&format!("dept:{sales}"), None).await;

    let (s, out) = ingest(
        &app,
        &key,
        &inbound("b-1", "bt-1", "+7 916 700-00-01", "Здравствуйте"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{out}");
    assert_eq!(out["assignment"]["reason"], "bot", "{out}");
    assert!(out["assignment"]["user_id"].is_null());
    let dialog = out["dialog"]["id"].as_i64().expect("dialog");

    // The bot sees the held dialog and the message; the operator gets nothing yet.
    let held = bot
        .event_where(|e| e["entity"] == "dialog" && e["op"] == "bot")
        .await;
    assert_eq!(held["data"]["id"], dialog);
    bot.event_where(|e| e["entity"] == "message").await;
    while let Some(v) = console.try_next(Duration::from_millis(300)).await {
        assert!(
            v["entity"] != "dialog" && v["entity"] != "message",
            "the operator must not get the held dialog: {v}"
        );
    }

    // It answers as the bot.
    bot.send(json!({"type": "send", "id": "r1", "dialog_id": dialog, "client_msg_id": "hi", "text": "Я бот. Чем помочь?"}))
        .await;
    let (ack, _) = bot.until_type("ack").await;
    assert_eq!(ack["id"], "r1");

    // And hands over: the operator gets it, recorded as a handover.
    bot.send(json!({"type": "handover", "id": "h1", "dialog_id": dialog}))
        .await;
    let (ack, _) = bot.until_type("ack").await;
    assert_eq!(ack["assignment"]["user_id"], op.id, "{ack}");
    let assigned = console
        .event_where(|e| e["entity"] == "dialog" && e["data"]["assignee_id"] == op.id)
        .await;
    assert_eq!(assigned["data"]["id"], dialog);
    let (_, asg) = app
        .get(Some(&op), &format!("/api/v1/dialogs/{dialog}/assignments"))
        .await;
    let reasons: Vec<&str> = asg
        .as_array()
        .expect("list")
        .iter()
        .map(|a| a["reason"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(reasons, vec!["bot", "handover", "round_robin"]);
    let (_, page) = app
        .get(Some(&op), &format!("/api/v1/dialogs/{dialog}/messages"))
        .await;
    let bot_msg = &page["items"][1];
    assert_eq!(bot_msg["direction"], "outbound");
    assert!(bot_msg["author_user_id"].is_null());

    // Operators may not hand over; they transfer.
    console
        .send(json!({"type": "handover", "id": 5, "dialog_id": dialog}))
        .await;
    let (err, _) = console.until_type("error").await;
    assert_eq!(err["code"], "forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_bot_hold_goes_to_people() {
    let app = spawn_app_with(with_api_channel("Sales", None)).await;
    let sales = app.department("Sales").await;
    bot_first(&app, sales, 1).await;
    let op = app.user("olya", Role::Operator, Some(sales)).await;
    let key = app.api_key(&[Scope::DialogsWrite]).await;
    let (_console, _) = Ws::operator(&app, &op).await;
    let (_, out) = ingest(
        &app,
        &key,
        &inbound("b-2", "bt-2", "+7 916 700-00-02", "Алло?"),
    )
    .await;
    let dialog = out["dialog"]["id"].as_i64().expect("dialog");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, d) = app
            .get(Some(&app.admin), &format!("/api/v1/dialogs/{dialog}"))
            .await;
        if d["assignee_id"] == op.id {
            assert_eq!(d["assign_reason"], "reoffer_timeout");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never reached a person: {d}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_socket_refuses_people_and_weak_keys() {
    let app = spawn_app().await;
    let op = app.user("olesya", Role::Operator, None).await;
    let weak = app.api_key(&[Scope::DialogsRead]).await;
    for (who, token) in [
        ("operator", Some(op.token.as_str())),
        ("read-only key", Some(weak.token.as_str())),
        ("nobody", None),
    ] {
        let r = Ws::try_connect(&app, "/ws/bot", token, &[]).await;
        assert!(r.is_err(), "{who} must be refused");
    }
    // A key may not use the operator socket either.
    let key = app.api_key(&[Scope::DialogsWrite]).await;
    assert!(Ws::try_connect(&app, "/ws/operator", Some(&key.token), &[])
        .await
        .is_err());
}
