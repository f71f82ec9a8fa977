//! The website chat widget socket: a visitor writes, the operator answers, the visitor
//! gets the reply and typing live, and after a reconnect with the token and `since`
//! nothing is lost; bad input is refused without harm.

use std::time::Duration;

use hmac::{Hmac, Mac};
use kommutator::config::WidgetSite;
use kommutator::domain::Role;
use serde_json::{json, Value};
use sha2::Sha256;

use crate::helpers::*;
use crate::ws_client::*;

fn with_site(origins: Vec<String>) -> impl FnOnce(&mut kommutator::config::Config) {
    move |c| {
        c.widget.sites.insert(
            "shop".into(),
            WidgetSite {
                department: Some("Support".into()),
                origins,
                identity_secret: Some("site-secret".into()),
            },
        );
        c.widget.frames_per_sec = 5;
        c.realtime.presence_grace_secs = 1;
    }
}

async fn visitor(app: &TestApp, start: Value) -> (Ws, Value) {
    let mut ws = Ws::try_connect(app, "/ws/widget?site=shop", None, &[])
        .await
        .expect("widget connects");
    ws.send(start).await;
    let ready = ws.next().await;
    assert_eq!(ready["type"], "ready", "{ready}");
    (ws, ready)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visitor_chats_with_operator_and_resumes() {
    let app = spawn_app_with(with_site(vec![])).await;
    eprintln!("widget on {}", backend_name());
    let support = app.department("Support").await;
    let op = app.user("vera", Role::Operator, Some(support)).await;
    let (mut console, _) = Ws::operator(&app, &op).await;
    console.subscribe(&format!("user:{}", op.id), None).await;

    let (mut w, ready) = visitor(&app, json!({"type": "start", "name": "Anna"})).await;
    assert_eq!(ready["dialog_id"], Value::Null);
    assert_eq!(ready["operators_online"], true);
    let token = ready["token"].as_str().expect("token").to_owned();

    w.send(json!({"type": "message", "id": 1, "client_msg_id": "a1", "text": "Где мой заказ?"}))
        .await;
    let ack = w.next().await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["duplicate"], false);
    let dialog_id = ack["dialog_id"].as_i64().expect("dialog");

    // The operator gets it; the dialog belongs to a lead named after the pre-chat name.
    let m = console.event_where(|e| e["entity"] == "message").await;
    assert_eq!(m["data"]["body"], "Где мой заказ?");
    let (_, d) = app
        .get(Some(&op), &format!("/api/v1/dialogs/{dialog_id}"))
        .await;
    assert_eq!(d["channel"], "widget");
    assert_eq!(d["assignee_id"], op.id);

    // Typing and the reply reach the visitor, in the visitor's shape.
    console
        .send(json!({"type": "typing", "dialog_id": dialog_id}))
        .await;
    let typing = w.next().await;
    assert_eq!(typing["type"], "typing", "{typing}");
    console
        .send(json!({"type": "send", "id": 2, "dialog_id": dialog_id, "client_msg_id": "r1", "text": "Заказ в пути"}))
        .await;
    let reply = w.next().await;
    assert_eq!(reply["type"], "message", "{reply}");
    assert_eq!(reply["direction"], "outbound");
    assert_eq!(reply["text"], "Заказ в пути");
    assert!(reply.get("data").is_none(), "no internal record: {reply}");
    let seen = reply["seq"].as_i64().expect("seq");

    // The visitor leaves; two replies come while they are away.
    drop(w);
    for (i, t) in ["Трек-номер: 123", "Ещё вопросы?"].iter().enumerate() {
        console
            .send(json!({"type": "send", "dialog_id": dialog_id, "client_msg_id": format!("r{}", i + 2), "text": t}))
            .await;
        console.until_type("ack").await;
    }
    // Back with the token and `since`: both arrive, once, in order.
    let (mut w, ready) = visitor(
        &app,
        json!({"type": "start", "token": token, "since": seen}),
    )
    .await;
    assert_eq!(ready["dialog_id"], dialog_id);
    let a = w.next().await;
    let b = w.next().await;
    assert_eq!(a["text"], "Трек-номер: 123");
    assert_eq!(b["text"], "Ещё вопросы?");
    assert!(w.try_next(Duration::from_millis(300)).await.is_none());

    // The same client_msg_id again is a duplicate, stored once.
    w.send(json!({"type": "message", "client_msg_id": "a1", "text": "Где мой заказ?"}))
        .await;
    let ack = w.next().await;
    assert_eq!(ack["duplicate"], true, "{ack}");
    let (_, page) = app
        .get(Some(&op), &format!("/api/v1/dialogs/{dialog_id}/messages"))
        .await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_customer_is_recognised_across_devices() {
    let app = spawn_app_with(with_site(vec![])).await;
    app.department("Support").await;
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"site-secret").expect("key");
    mac.update(b"customer-42");
    let hash: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let identity =
        json!({"id": "customer-42", "hash": hash, "name": "Пётр", "email": "petr@example.com"});
    let (mut w1, _) = visitor(&app, json!({"type": "start", "identity": identity})).await;
    w1.send(json!({"type": "message", "client_msg_id": "x1", "text": "Здравствуйте"}))
        .await;
    let a1 = w1.next().await;
    // Another device, no token: the same customer, the same dialog.
    let (mut w2, ready) = visitor(&app, json!({"type": "start", "identity": identity})).await;
    assert_eq!(ready["dialog_id"], a1["dialog_id"], "{ready}");
    w2.send(json!({"type": "message", "client_msg_id": "x2", "text": "Это снова я"}))
        .await;
    let a2 = w2.until_type("ack").await.0;
    assert_eq!(a2["dialog_id"], a1["dialog_id"]);
    // The first device sees the second device's message.
    let other = w1.next().await;
    assert_eq!(other["text"], "Это снова я", "{other}");

    // A forged hash is refused and the socket closes.
    let mut w3 = Ws::try_connect(&app, "/ws/widget?site=shop", None, &[])
        .await
        .expect("connects");
    w3.send(json!({"type": "start", "identity": {"id": "customer-42", "hash": "00"}}))
        .await;
    let err = w3.next().await;
    assert_eq!(err["code"], "invalid_identity", "{err}");
    assert_eq!(w3.ended().await, Ended::Closed(4002));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn widget_refuses_bad_input() {
    let app = spawn_app_with(with_site(vec!["https://shop.example".into()])).await;
    app.department("Support").await;
    let seq0 = app.last_seq().await;

    // Unknown site; foreign origin.
    assert!(Ws::try_connect(&app, "/ws/widget?site=nope", None, &[])
        .await
        .is_err());
    assert!(Ws::try_connect(
        &app,
        "/ws/widget?site=shop",
        None,
        &[("origin", "https://evil.example")]
    )
    .await
    .is_err());
    let ok = [("origin", "https://shop.example")];

    // Something other than start first.
    let mut w = Ws::try_connect(&app, "/ws/widget?site=shop", None, &ok)
        .await
        .expect("connects");
    w.send(json!({"type": "message", "client_msg_id": "z", "text": "hi"}))
        .await;
    assert_eq!(w.ended().await, Ended::Closed(4002));

    // A forged token gets a new visitor, not someone else's chat.
    let mut w = Ws::try_connect(&app, "/ws/widget?site=shop", None, &ok)
        .await
        .expect("connects");
    w.send(
        json!({"type": "start", "token": "v1.000000000000000000000000.shop.1700000000.deadbeef"}),
    )
    .await;
    let ready = w.next().await;
    assert_eq!(ready["dialog_id"], Value::Null);
    assert_ne!(
        ready["token"],
        "v1.000000000000000000000000.shop.1700000000.deadbeef"
    );

    // Bad frames: errors, connection unharmed, nothing stored.
    w.send_text("{not json").await;
    assert_eq!(w.next().await["code"], "invalid_json");
    w.send(json!({"type": "nope"})).await;
    assert_eq!(w.next().await["code"], "invalid_frame");
    w.send(json!({"type": "message", "client_msg_id": "ok1", "text": "x".repeat(4001)}))
        .await;
    assert_eq!(w.next().await["code"], "invalid");
    w.send(json!({"type": "message", "client_msg_id": "bad id!", "text": "hi"}))
        .await;
    assert_eq!(w.next().await["code"], "invalid");
    assert_eq!(app.last_seq().await, seq0, "nothing stored");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    w.send(json!({"type": "ping", "id": 9})).await;
    assert_eq!(w.next().await["type"], "pong");

    // A flood: dropped with one notice, then closed.
    for _ in 0..200 {
        w.send(json!({"type": "ping"})).await;
    }
    let mut saw_limit = false;
    while let Some(v) = w.stream_next_or_end().await {
        saw_limit |= v["code"] == "rate_limited";
    }
    assert!(saw_limit);
    assert_eq!(app.last_seq().await, seq0, "nothing stored");
    // The server still serves new visitors.
    let mut w = Ws::try_connect(&app, "/ws/widget?site=shop", None, &ok)
        .await
        .expect("connects");
    w.send(json!({"type": "start"})).await;
    assert_eq!(w.next().await["type"], "ready");
}
