//! End to end: an inquiry through the `api` channel reaches the assigned operator's socket,
//! the operator's reply goes back out through the channel (signed), its delivery status
//! comes back live, and the dialog and Feed show both messages.

use std::sync::Arc;

use axum::routing::post;
use kommutator::domain::Role;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::helpers::*;
use crate::ws_client::*;

/// Signature header, raw body, parsed body of each reply received.
pub(crate) type Received = Arc<Mutex<Vec<(Option<String>, String, Value)>>>;

/// A local system receiving the channel's replies.
pub(crate) struct Receiver {
    /// Where the channel posts its replies.
    pub(crate) url: String,
    /// What it posted.
    pub(crate) got: Received,
    /// Woken at every reply.
    pub(crate) notify: Arc<tokio::sync::Notify>,
}

/// Starts the receiver on a free port; it answers each reply with `external_id: ext-<id>`.
pub(crate) async fn receiver() -> Receiver {
    let got: Received = Arc::default();
    let notify = Arc::new(tokio::sync::Notify::new());
    let (g, n) = (got.clone(), notify.clone());
    let app = axum::Router::new().route(
        "/replies",
        post(move |headers: axum::http::HeaderMap, body: String| {
            let (g, n) = (g.clone(), n.clone());
            async move {
                let sig = headers
                    .get("x-kommutator-signature")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let v: Value = serde_json::from_str(&body).expect("json body");
                let id = v["id"].clone();
                g.lock().await.push((sig, body, v));
                n.notify_waiters();
                axum::Json(json!({"external_id": format!("ext-{id}")}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Receiver {
        url: format!("http://{addr}/replies"),
        got,
        notify,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inquiry_reaches_operator_and_reply_goes_back_out() {
    let rx = receiver().await;
    let app = spawn_app_with(with_api_channel("Sales", Some(rx.url.clone()))).await;
    eprintln!("end to end on {}", backend_name());
    let sales = app.department("Sales").await;
    let op = app.user("olga", Role::Operator, Some(sales)).await;
    let connector = app
        .api_key(&[kommutator::domain::Scope::DialogsWrite])
        .await;

    let (mut ws, hello) = Ws::operator(&app, &op).await;
    assert_eq!(hello["v"], 1);
    let (replayed, sub) = ws.subscribe(&format!("user:{}", op.id), None).await;
    assert!(replayed.is_empty());
    assert_eq!(sub["type"], "subscribed");

    // An inquiry from an unknown number.
    let (status, out) = ingest(
        &app,
        &connector,
        &inbound("m-1", "t-1", "+7 916 123-45-67", "Сколько стоит доставка?"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["result"], "message");
    assert_eq!(out["status"], "stored");
    assert!(out["new_lead"].is_i64(), "a lead is created: {out}");
    assert_eq!(out["assignment"]["user_id"], op.id);
    assert_eq!(out["assignment"]["reason"], "round_robin");
    let dialog_id = out["dialog"]["id"].as_i64().expect("dialog id");

    // It reaches the operator's socket: the assignment, then the message.
    let assigned = ws
        .event_where(|e| e["entity"] == "dialog" && e["op"] == "assign")
        .await;
    assert_eq!(assigned["data"]["assignee_id"], op.id);
    assert_eq!(assigned["data"]["assign_reason"], "round_robin");
    let msg = ws.event_where(|e| e["entity"] == "message").await;
    assert_eq!(msg["data"]["body"], "Сколько стоит доставка?");
    assert!(msg["seq"].as_i64().expect("seq") > assigned["seq"].as_i64().expect("seq"));

    // The same event again (a webhook retry) changes nothing.
    let (status, again) = ingest(
        &app,
        &connector,
        &inbound("m-1", "t-1", "+7 916 123-45-67", "Сколько стоит доставка?"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["status"], "duplicate");

    // The operator answers through the socket.
    ws.send(json!({"type": "send", "id": 7, "dialog_id": dialog_id, "client_msg_id": "c-1", "text": "Доставка бесплатная"}))
        .await;
    let (ack, _) = ws.until_type("ack").await;
    assert_eq!(ack["id"], 7);
    assert_eq!(ack["duplicate"], false);
    let reply_id = ack["message_id"].as_i64().expect("message id");

    // It goes out through the channel, signed.
    let posted = loop {
        let notified = rx.notify.notified();
        if let Some(p) = rx.got.lock().await.first().cloned() {
            break p;
        }
        tokio::time::timeout(FRAME_WAIT, notified)
            .await
            .expect("the reply is posted to the channel");
    };
    let (sig, raw, body) = posted;
    assert_eq!(body["id"], reply_id);
    assert_eq!(body["thread_id"], "t-1");
    assert_eq!(body["text"], "Доставка бесплатная");
    let expected = kommutator::pipeline::outbound::sign("test-secret", raw.as_bytes());
    assert_eq!(sig.as_deref(), Some(expected.as_str()));

    // Its delivery status comes back live.
    let delivered = ws
        .event_where(|e| {
            e["entity"] == "message" && e["op"] == "delivery" && e["entity_id"] == reply_id
        })
        .await;
    assert_eq!(delivered["data"]["delivery_status"], "sent");
    assert_eq!(
        delivered["data"]["provider_message_id"],
        format!("ext-{reply_id}")
    );

    // The channel reports it read; that comes back too.
    let (status, out) = ingest(
        &app,
        &connector,
        &json!({
            "connector_id": "site", "external_id": format!("ext-{reply_id}:read"),
            "occurred_at": "2026-11-29T10:01:00Z",
            "kind": {"type": "delivery_status", "message_external_id": format!("ext-{reply_id}"), "status": {"type": "read"}}
        }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let read = ws
        .event_where(|e| {
            e["entity"] == "message"
                && e["op"] == "delivery"
                && e["data"]["delivery_status"] == "read"
        })
        .await;
    assert_eq!(read["entity_id"], reply_id);

    // The dialog and the Feed show both messages.
    let (status, page) = app
        .get(Some(&op), &format!("/api/v1/dialogs/{dialog_id}/messages"))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let bodies: Vec<&str> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| m["body"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        bodies,
        vec!["Сколько стоит доставка?", "Доставка бесплатная"]
    );
    let lead = out_lead(&app, &op, dialog_id).await;
    let (status, feed) = app
        .get(Some(&op), &format!("/api/v1/leads/{lead}/feed"))
        .await;
    assert_eq!(status, StatusCode::OK, "{feed}");
    let kinds: Vec<&str> = feed["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["kind"] == "message")
        .map(|e| e["title"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds.len(), 2, "{feed}");

    // The assignment is on record with its reason.
    let (status, asg) = app
        .get(
            Some(&op),
            &format!("/api/v1/dialogs/{dialog_id}/assignments"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{asg}");
    assert_eq!(asg[0]["reason"], "round_robin");
}

async fn out_lead(app: &TestApp, who: &Principal, dialog_id: i64) -> i64 {
    let (_, d) = app
        .get(Some(who), &format!("/api/v1/dialogs/{dialog_id}"))
        .await;
    d["lead_id"].as_i64().expect("the dialog belongs to a lead")
}
