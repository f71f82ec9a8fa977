//! Replay: the real `run` (polling and outbound) and the webhook route against a fake Bot
//! API on 127.0.0.1, shaped like the documented one: every method a POST under
//! `/bot{token}/`, JSON or multipart bodies, answers `{"ok":true,"result":…}` or
//! `{"ok":false,"error_code":…,"description":…}`, never 5xx (teloxide sleeps 10 s on
//! those), and files under `GET /file/bot{token}/{path}`.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kommutator_sdk::testing::http_request;
use kommutator_sdk::{
    Attachment, Connector, ConnectorContext, ConnectorError, FileStore, IdentityKind, InboundEvent,
    InboundKind, InboundMessage, OutboundMessage, PartyIdentity, TestHarness,
};
use kommutator_telegram::{Config, Telegram, OFFSET_KEY};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tower::ServiceExt;

const TOKEN: &str = "123456:TEST-token_abc";
const SECRET: &str = "hook-secret_42";
const WAIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------- the fake Bot API

#[derive(Debug, Clone, Default)]
struct Sent {
    method: String,
    chat_id: String,
    text: Option<String>,
    reply_to: Option<i64>,
    file_name: Option<String>,
    file_bytes: Option<Vec<u8>>,
    url: Option<String>,
}

#[derive(Default)]
struct FakeState {
    /// Telegram's queue of updates, confirmed by later `offset`s.
    updates: Vec<Value>,
    /// Delivered once by the next `getUpdates`, whatever the offset (a replay).
    replay: Vec<Value>,
    /// The `offset` of every `getUpdates` call.
    offsets: Vec<Option<i64>>,
    /// Every method called, in order, with its parameters.
    calls: Vec<(String, Value)>,
    sent: Vec<Sent>,
    /// file_id → (file_path, content).
    files: HashMap<String, (String, Vec<u8>)>,
    /// The answer to the next send call instead of success.
    fail_next_send: Option<(u16, String)>,
    conflict: bool,
    next_message_id: i64,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<FakeState>>);

impl Fake {
    fn with<R>(&self, f: impl FnOnce(&mut FakeState) -> R) -> R {
        f(&mut self.0.lock().unwrap())
    }
    fn push(&self, update: Value) {
        self.with(|s| s.updates.push(update));
    }
    fn offsets(&self) -> Vec<Option<i64>> {
        self.with(|s| s.offsets.clone())
    }
    fn sent(&self) -> Vec<Sent> {
        self.with(|s| s.sent.clone())
    }
    fn calls(&self, method: &str) -> Vec<Value> {
        self.with(|s| {
            s.calls
                .iter()
                .filter(|(m, _)| m == method)
                .map(|(_, p)| p.clone())
                .collect()
        })
    }
}

fn ok(result: Value) -> Response {
    Json(json!({"ok": true, "result": result})).into_response()
}

fn fail(code: u16, description: &str) -> Response {
    let mut body = json!({"ok": false, "error_code": code, "description": description});
    if code == 429 {
        body["parameters"] = json!({"retry_after": 1});
    }
    (StatusCode::from_u16(code).unwrap(), Json(body)).into_response()
}

/// One field of a multipart body: its file name (if a file) and content.
struct Part {
    file_name: Option<String>,
    data: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn quoted(head: &str, key: &str) -> Option<String> {
    let start = head.find(&format!("{key}=\""))? + key.len() + 2;
    let end = head[start..].find('"')? + start;
    Some(head[start..end].to_owned())
}

fn parse_multipart(body: &[u8], boundary: &str) -> HashMap<String, Part> {
    let delim = format!("--{boundary}");
    let mut out = HashMap::new();
    let mut rest = body;
    while let Some(at) = find(rest, delim.as_bytes()) {
        rest = &rest[at + delim.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        let Some(head_end) = find(rest, b"\r\n\r\n") else {
            break;
        };
        let head = String::from_utf8_lossy(&rest[..head_end]).into_owned();
        let data_start = head_end + 4;
        let Some(data_len) = find(&rest[data_start..], delim.as_bytes()) else {
            break;
        };
        let data = rest[data_start..data_start + data_len - 2].to_vec(); // minus CRLF
        if let Some(name) = quoted(&head, "name") {
            out.insert(
                name,
                Part {
                    file_name: quoted(&head, "filename"),
                    data,
                },
            );
        }
        rest = &rest[data_start + data_len..];
    }
    out
}

/// The request's parameters as JSON, and the multipart files by field name.
fn params(headers: &HeaderMap, body: &[u8]) -> (Value, HashMap<String, Part>) {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some(boundary) = ct.split("boundary=").nth(1) {
        let parts = parse_multipart(body, boundary.trim_matches('"'));
        let mut obj = serde_json::Map::new();
        for (k, p) in &parts {
            if p.file_name.is_none() {
                let s = String::from_utf8_lossy(&p.data).into_owned();
                obj.insert(
                    k.clone(),
                    serde_json::from_str(&s).unwrap_or(Value::String(s)),
                );
            }
        }
        (Value::Object(obj), parts)
    } else if body.is_empty() {
        (json!({}), HashMap::new())
    } else {
        (serde_json::from_slice(body).unwrap(), HashMap::new())
    }
}

fn message_result(id: i64, chat: &Value) -> Value {
    let chat_id = chat.as_i64().unwrap_or(0);
    let chat = if chat_id > 0 {
        json!({"id": chat_id, "type": "private", "first_name": "Ivan"})
    } else {
        json!({"id": chat_id, "type": "supergroup", "title": "Group"})
    };
    json!({"message_id": id, "date": 1_714_575_700, "chat": chat,
           "from": {"id": 424_242, "is_bot": true, "first_name": "Shop bot"}})
}

async fn method(
    State(fake): State<Fake>,
    Path((bot, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if bot != format!("bot{TOKEN}") {
        eprintln!("fake: unknown bot path {bot:?} for {method}");
        return fail(401, "Unauthorized");
    }
    // The Bot API's method names are case-insensitive (teloxide sends `DeleteWebhook`).
    let method = [
        "getMe",
        "getUpdates",
        "deleteWebhook",
        "setWebhook",
        "sendMessage",
        "sendDocument",
        "sendPhoto",
        "getFile",
    ]
    .into_iter()
    .find(|m| m.eq_ignore_ascii_case(&method))
    .map_or(method, str::to_owned);
    let (p, parts) = params(&headers, &body);
    fake.with(|s| s.calls.push((method.clone(), p.clone())));
    match method.as_str() {
        "getMe" => ok(
            json!({"id": 424_242, "is_bot": true, "first_name": "Shop bot", "username": "shop_bot"}),
        ),
        "deleteWebhook" | "setWebhook" => ok(json!(true)),
        "getUpdates" => {
            if fake.with(|s| s.conflict) {
                return fail(409, "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running");
            }
            let offset = p.get("offset").and_then(Value::as_i64);
            let take = |s: &mut FakeState| {
                s.offsets.push(offset);
                if let Some(o) = offset {
                    s.updates.retain(|u| u["update_id"].as_i64().unwrap() >= o);
                }
                let mut out: Vec<Value> = s.replay.drain(..).collect();
                out.extend(s.updates.iter().cloned());
                out
            };
            let mut out = fake.with(take);
            if out.is_empty() {
                // A short long poll: wait a little, look once more.
                tokio::time::sleep(Duration::from_millis(100)).await;
                out = fake.with(|s| {
                    let mut o: Vec<Value> = s.replay.drain(..).collect();
                    o.extend(s.updates.iter().cloned());
                    o
                });
            }
            ok(Value::Array(out))
        }
        "sendMessage" | "sendDocument" | "sendPhoto" => {
            if let Some((code, d)) = fake.with(|s| s.fail_next_send.take()) {
                return fail(code, &d);
            }
            let field = match method.as_str() {
                "sendDocument" => "document",
                "sendPhoto" => "photo",
                _ => "",
            };
            let mut sent = Sent {
                method: method.clone(),
                chat_id: match &p["chat_id"] {
                    Value::String(s) => s.clone(),
                    v => v.to_string(),
                },
                text: p.get("text").and_then(Value::as_str).map(str::to_owned),
                reply_to: p
                    .get("reply_parameters")
                    .and_then(|r| r.get("message_id"))
                    .and_then(Value::as_i64),
                ..Sent::default()
            };
            // A file may be attached by reference: `"document": "attach://<part name>"`.
            let attached = p
                .get(field)
                .and_then(Value::as_str)
                .and_then(|v| v.strip_prefix("attach://"))
                .and_then(|name| parts.get(name));
            if let Some(part) = attached.or_else(|| parts.get(field)) {
                match &part.file_name {
                    Some(n) => {
                        sent.file_name = Some(n.clone());
                        sent.file_bytes = Some(part.data.clone());
                    }
                    None => sent.url = Some(String::from_utf8_lossy(&part.data).into_owned()),
                }
            } else if let Some(u) = p.get(field).and_then(Value::as_str) {
                sent.url = Some(u.to_owned());
            }
            let id = fake.with(|s| {
                s.next_message_id += 1;
                s.sent.push(sent);
                s.next_message_id + 100
            });
            let mut result = message_result(id, &p["chat_id"]);
            match field {
                "document" => {
                    result["document"] = json!({"file_id": "BQAdoc", "file_unique_id": "doc"})
                }
                "photo" => {
                    result["photo"] = json!([{"file_id": "AgAph", "file_unique_id": "ph", "width": 1, "height": 1}])
                }
                _ => result["text"] = p["text"].clone(),
            }
            ok(result)
        }
        "getFile" => {
            let id = p["file_id"].as_str().unwrap_or_default().to_owned();
            match fake.with(|s| s.files.get(&id).cloned()) {
                Some((path, content)) => ok(json!({"file_id": id, "file_unique_id": "u",
                    "file_size": content.len(), "file_path": path})),
                None => fail(400, "Bad Request: invalid file_id"),
            }
        }
        other => {
            eprintln!("fake: unknown method {other:?}");
            fail(404, "Not Found")
        }
    }
}

async fn file(State(fake): State<Fake>, Path((bot, path)): Path<(String, String)>) -> Response {
    if bot != format!("bot{TOKEN}") {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let found = fake.with(|s| {
        s.files
            .values()
            .find(|(p, _)| *p == path)
            .map(|(_, c)| c.clone())
    });
    match found {
        Some(c) => c.into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn start_fake() -> (Fake, SocketAddr) {
    let fake = Fake::default();
    let app = Router::new()
        .route("/{bot}/{method}", post(method))
        .route("/file/{bot}/{*path}", get(file))
        .with_state(fake.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (fake, addr)
}

// ---------------------------------------------------------------- helpers

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn connector(addr: SocketAddr, extra: Value) -> Telegram {
    let mut cfg =
        json!({"token": TOKEN, "api_url": format!("http://{addr}"), "poll_timeout_secs": 1});
    for (k, v) in extra.as_object().unwrap() {
        cfg[k] = v.clone();
    }
    Telegram::new(serde_json::from_value::<Config>(cfg).unwrap()).unwrap()
}

fn message(ev: &InboundEvent) -> &InboundMessage {
    match &ev.kind {
        InboundKind::Message(m) => m,
        other => panic!("not a message: {other:?}"),
    }
}

async fn next(hub: &mut TestHarness) -> InboundEvent {
    hub.next_event(WAIT).await.expect("an event")
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..100 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn outbound(
    id: i64,
    thread: &str,
    text: Option<&str>,
    attachments: Vec<Attachment>,
) -> OutboundMessage {
    OutboundMessage {
        id,
        connector_id: "tg".into(),
        thread_id: thread.to_owned(),
        to: None,
        subject: None,
        text: text.map(str::to_owned),
        attachments,
        reply_to_external_id: None,
    }
}

// ---------------------------------------------------------------- polling

#[tokio::test]
async fn polling_delivers_text_photo_contact_and_edit_then_shuts_down() {
    let (fake, addr) = start_fake().await;
    fake.with(|s| {
        s.files.insert(
            "AgACAgIAAxkBAAIBlarge".into(),
            (
                "photos/file_8.jpg".into(),
                b"\xff\xd8fake-jpeg-bytes".to_vec(),
            ),
        );
    });
    for f in [
        "text_private.json",
        "photo_caption.json",
        "contact_own.json",
        "edited_message.json",
        "callback_query.json",
    ] {
        fake.push(fixture(f));
    }
    let conn = connector(addr, json!({}));
    let (ctx, mut hub) = ConnectorContext::for_test("tg");
    assert!(conn.routes(&ctx).is_none());
    let run = tokio::spawn(conn.run(ctx));

    let text = next(&mut hub).await;
    assert_eq!(text.connector_id.as_str(), "tg");
    assert_eq!(text.external_id, "1001:7");
    let m = message(&text);
    assert_eq!(m.thread_id, "1001");
    assert_eq!(m.text.as_deref(), Some("Hello, do you deliver to Kazan?"));
    assert_eq!(m.sender.display_name.as_deref(), Some("Ivan Petrov"));
    assert_eq!(
        text.raw.as_ref().unwrap()["message"]["from"]["username"],
        "ivanp"
    );

    let photo = next(&mut hub).await;
    assert_eq!(photo.external_id, "1001:8");
    let m = message(&photo);
    assert_eq!(m.text.as_deref(), Some("This sofa, in grey"));
    assert_eq!(m.attachments.len(), 1);
    assert_eq!(m.attachments[0].url_or_ref, "memory:1");
    assert_eq!(m.attachments[0].mime_type, "image/jpeg");
    let stored = hub.files().files();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].content, b"\xff\xd8fake-jpeg-bytes");
    assert_eq!(fake.calls("getFile")[0]["file_id"], "AgACAgIAAxkBAAIBlarge");

    let contact = next(&mut hub).await;
    let m = message(&contact);
    assert_eq!(
        m.sender.identities,
        [
            PartyIdentity::new(IdentityKind::Telegram, "1001"),
            PartyIdentity::new(IdentityKind::Phone, "+79161234567"),
        ]
    );
    assert_eq!(m.reply_to_external_id.as_deref(), Some("1001:3"));

    let edit = next(&mut hub).await;
    assert_eq!(edit.external_id, "1001:7:edit:1714575690");
    assert_eq!(message(&edit).edit_of.as_deref(), Some("1001:7"));

    let unknown = next(&mut hub).await;
    assert_eq!(unknown.external_id, "update:700000010");
    assert!(matches!(unknown.kind, InboundKind::Unknown { .. }));

    // deleteWebhook once at start; the offset confirmed everything.
    assert_eq!(fake.calls("deleteWebhook").len(), 1);
    wait_for("the offset past the last update", || {
        fake.offsets().contains(&Some(700_000_011))
    })
    .await;
    assert_eq!(hub.state().value(OFFSET_KEY).as_deref(), Some("700000011"));

    // Shutdown is prompt, even in the middle of a long poll.
    hub.shutdown();
    tokio::time::timeout(Duration::from_secs(2), run)
        .await
        .expect("run returns promptly")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn offset_advances_only_after_the_hub_took_the_event() {
    let (fake, addr) = start_fake().await;
    for (i, id) in [10_i64, 11, 12].iter().enumerate() {
        let mut u = fixture("text_private.json");
        u["update_id"] = json!(id);
        u["message"]["message_id"] = json!(100 + i);
        fake.push(u);
    }
    let (ctx, mut hub) = ConnectorContext::for_test_with_capacity("tg", 1);
    let state = hub.state().clone();
    let run = tokio::spawn(connector(addr, json!({})).run(ctx));

    // The queue holds one event: the second send waits, so the offset stays after 10.
    wait_for("the first offset", || {
        state.value(OFFSET_KEY).as_deref() == Some("11")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(state.value(OFFSET_KEY).as_deref(), Some("11"));
    assert_eq!(
        fake.offsets(),
        [None],
        "no getUpdates confirmed anything yet"
    );

    let keys = [
        next(&mut hub).await,
        next(&mut hub).await,
        next(&mut hub).await,
    ]
    .map(|e| e.external_id);
    assert_eq!(keys, ["1001:100", "1001:101", "1001:102"]);
    wait_for("the confirming poll", || fake.offsets().contains(&Some(13))).await;
    assert_eq!(state.value(OFFSET_KEY).as_deref(), Some("13"));
    hub.shutdown();
    run.await.unwrap().unwrap();

    // A restart resumes from the stored offset.
    let (ctx, hub2) = ConnectorContext::for_test("tg");
    let ctx = ctx.with_state(state.clone());
    let calls_before = fake.offsets().len();
    let run = tokio::spawn(connector(addr, json!({})).run(ctx));
    wait_for("a poll after restart", || {
        fake.offsets().len() > calls_before
    })
    .await;
    assert_eq!(fake.offsets()[calls_before], Some(13));
    hub2.shutdown();
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_replayed_update_is_not_sent_twice() {
    let (fake, addr) = start_fake().await;
    fake.push(fixture("text_private.json"));
    let (ctx, mut hub) = ConnectorContext::for_test("tg");
    let run = tokio::spawn(connector(addr, json!({})).run(ctx));
    assert_eq!(next(&mut hub).await.external_id, "1001:7");

    // Telegram hands the same update over again, then a new one.
    fake.with(|s| s.replay.push(fixture("text_private.json")));
    fake.push(fixture("location.json"));
    assert_eq!(next(&mut hub).await.external_id, "1001:13");
    assert_eq!(hub.next_event(Duration::from_millis(300)).await, None);
    hub.shutdown();
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn media_over_the_limit_or_unknown_keeps_a_telegram_reference() {
    let (fake, addr) = start_fake().await;
    fake.push(fixture("document.json")); // 48213 bytes, over the limit below
    fake.push(fixture("voice.json")); // getFile answers 400: not in the fake
    let (ctx, mut hub) = ConnectorContext::for_test("tg");
    let run = tokio::spawn(connector(addr, json!({"max_file_bytes": 10000})).run(ctx));

    let doc = next(&mut hub).await;
    let a = &message(&doc).attachments[0];
    assert_eq!(a.url_or_ref, "tg-file:BQACAgIAAxkBAAIBdoc");
    assert_eq!((a.name.as_str(), a.size), ("requisites.pdf", Some(48213)));
    let voice = next(&mut hub).await;
    assert_eq!(
        message(&voice).attachments[0].url_or_ref,
        "tg-file:AwACAgIAAxkBAAIBvoice"
    );
    assert_eq!(
        fake.calls("getFile").len(),
        1,
        "no getFile for the big file"
    );
    assert!(hub.files().files().is_empty());
    hub.shutdown();
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn bad_token_is_auth_and_conflict_is_retryable() {
    let (fake, addr) = start_fake().await;
    let cfg =
        json!({"token": "999:wrong", "api_url": format!("http://{addr}"), "poll_timeout_secs": 1});
    let conn = Telegram::new(serde_json::from_value(cfg).unwrap()).unwrap();
    let (ctx, _hub) = ConnectorContext::for_test("tg");
    let err = tokio::time::timeout(WAIT, conn.run(ctx))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, ConnectorError::Auth(_)), "{err}");
    assert!(!err.to_string().contains("wrong"), "{err}");

    fake.with(|s| s.conflict = true);
    let (ctx, _hub) = ConnectorContext::for_test("tg");
    let err = tokio::time::timeout(WAIT, connector(addr, json!({})).run(ctx))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("409 conflict"), "{err}");
    assert!(!err.to_string().contains("TEST-token"), "{err}");
}

#[tokio::test]
async fn network_errors_never_show_the_token() {
    // Nothing listens on this port: a connect error quoting the URL.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let (ctx, _hub) = ConnectorContext::for_test("tg");
    let err = tokio::time::timeout(WAIT, connector(addr, json!({})).run(ctx))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, ConnectorError::Connect { .. }), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(!text.contains("TEST-token"), "{text}");
}

// ---------------------------------------------------------------- outbound

#[tokio::test]
async fn outbound_text_and_files_reach_the_chat_and_are_acked() {
    let (fake, addr) = start_fake().await;
    let (ctx, mut hub) = ConnectorContext::for_test("tg");
    let run = tokio::spawn(connector(addr, json!({})).run(ctx));

    let mut msg = outbound(5, "1001", Some("We deliver to Kazan, yes"), vec![]);
    msg.reply_to_external_id = Some("1001:7".into());
    hub.send_outbound(msg).await.unwrap();
    let ack = next(&mut hub).await;
    assert_eq!(ack.external_id, "outbound:5:ack");
    assert_eq!(
        ack.kind,
        InboundKind::OutboundAck {
            message_id: 5,
            external_id: "1001:101".into()
        }
    );
    let sent = fake.sent();
    assert_eq!(sent[0].method, "sendMessage");
    assert_eq!(sent[0].chat_id, "1001");
    assert_eq!(sent[0].text.as_deref(), Some("We deliver to Kazan, yes"));
    assert_eq!(sent[0].reply_to, Some(7));

    // A stored file is uploaded, a URL passed as is.
    let stored = hub
        .files()
        .put("offer.pdf", "application/pdf", b"%PDF-1.4 offer".to_vec())
        .await
        .unwrap();
    let url = Attachment {
        name: "sofa.png".into(),
        mime_type: "image/png".into(),
        size: None,
        url_or_ref: "https://shop.example/sofa.png".into(),
    };
    hub.send_outbound(outbound(6, "-1001234567890", None, vec![stored, url]))
        .await
        .unwrap();
    let ack = next(&mut hub).await;
    assert_eq!(
        ack.kind,
        InboundKind::OutboundAck {
            message_id: 6,
            external_id: "-1001234567890:102".into()
        }
    );
    let sent = fake.sent();
    assert_eq!(sent[1].method, "sendDocument");
    assert_eq!(sent[1].chat_id, "-1001234567890");
    assert_eq!(sent[1].file_name.as_deref(), Some("offer.pdf"));
    assert_eq!(sent[1].file_bytes.as_deref(), Some(&b"%PDF-1.4 offer"[..]));
    assert_eq!(sent[2].method, "sendPhoto");
    assert_eq!(
        sent[2].url.as_deref(),
        Some("https://shop.example/sofa.png")
    );

    hub.shutdown();
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn refusals_become_outbound_failed() {
    let (fake, addr) = start_fake().await;
    let (ctx, mut hub) = ConnectorContext::for_test("tg");
    let run = tokio::spawn(connector(addr, json!({})).run(ctx));

    fake.with(|s| s.fail_next_send = Some((403, "Forbidden: bot was blocked by the user".into())));
    hub.send_outbound(outbound(7, "1001", Some("hello?"), vec![]))
        .await
        .unwrap();
    let ev = next(&mut hub).await;
    assert_eq!(ev.external_id, "outbound:7:failed");
    let InboundKind::OutboundFailed { message_id, reason } = &ev.kind else {
        panic!("{ev:?}")
    };
    assert_eq!(*message_id, 7);
    assert!(reason.contains("bot was blocked by the user"), "{reason}");

    fake.with(|s| s.fail_next_send = Some((400, "Bad Request: chat not found".into())));
    hub.send_outbound(outbound(8, "42", Some("hi"), vec![]))
        .await
        .unwrap();
    let ev = next(&mut hub).await;
    assert!(
        matches!(&ev.kind, InboundKind::OutboundFailed { message_id: 8, reason } if reason.contains("chat not found")),
        "{ev:?}"
    );

    for (id, msg, why) in [
        (
            9,
            outbound(9, "not-a-chat", Some("x"), vec![]),
            "is not a telegram chat id",
        ),
        (10, outbound(10, "1001", None, vec![]), "nothing to send"),
        (
            11,
            outbound(
                11,
                "1001",
                None,
                vec![Attachment {
                    name: "a".into(),
                    mime_type: "text/plain".into(),
                    size: None,
                    url_or_ref: "memory:99".into(),
                }],
            ),
            "neither a stored file",
        ),
    ] {
        hub.send_outbound(msg).await.unwrap();
        let ev = next(&mut hub).await;
        assert!(
            matches!(&ev.kind, InboundKind::OutboundFailed { message_id, reason } if *message_id == id && reason.contains(why)),
            "{ev:?}"
        );
    }
    assert_eq!(fake.sent().len(), 0);
    hub.shutdown();
    run.await.unwrap().unwrap();
}

#[tokio::test]
async fn rate_limit_waits_and_retries() {
    let (fake, addr) = start_fake().await;
    let (ctx, mut hub) = ConnectorContext::for_test("tg");
    let run = tokio::spawn(connector(addr, json!({})).run(ctx));
    // The fake's 429 carries `retry_after` in `parameters`.
    fake.with(|s| s.fail_next_send = Some((429, "Too Many Requests: retry after 1".into())));
    hub.send_outbound(outbound(12, "1001", Some("hi"), vec![]))
        .await
        .unwrap();
    let ev = next(&mut hub).await;
    assert!(
        matches!(ev.kind, InboundKind::OutboundAck { message_id: 12, .. }),
        "{ev:?}"
    );
    assert_eq!(fake.sent().len(), 1);
    hub.shutdown();
    run.await.unwrap().unwrap();
}

// ---------------------------------------------------------------- webhook

async fn serve(router: Router, hub: &TestHarness) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = hub.shutdown_token().clone();
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    });
    addr
}

#[tokio::test]
async fn webhook_checks_the_secret_parses_and_delivers_once() {
    let (fake, api) = start_fake().await;
    fake.with(|s| {
        s.files.insert(
            "AgACAgIAAxkBAAIBlarge".into(),
            ("photos/file_8.jpg".into(), b"jpeg".to_vec()),
        );
    });
    let conn = connector(
        api,
        json!({"mode": "webhook", "webhook_secret": SECRET, "webhook_url": "https://hub.example/hooks/tg/"}),
    );
    let (ctx, mut hub) = ConnectorContext::for_test("tg");
    let router = conn.routes(&ctx).unwrap();
    let run = tokio::spawn(conn.run(ctx));
    let addr = serve(router.clone(), &hub).await;

    wait_for("setWebhook", || !fake.calls("setWebhook").is_empty()).await;
    let set = &fake.calls("setWebhook")[0];
    assert_eq!(set["url"], "https://hub.example/hooks/tg/");
    assert_eq!(set["secret_token"], SECRET);
    assert!(
        fake.calls("getUpdates").is_empty(),
        "no polling in webhook mode"
    );

    let body = fixture("photo_caption.json").to_string();
    let good = [
        ("Content-Type", "application/json"),
        ("X-Telegram-Bot-Api-Secret-Token", SECRET),
    ];

    // Bad and missing secrets: 401, nothing sent.
    let (status, text) = http_request(
        addr,
        "POST",
        "/",
        &[("X-Telegram-Bot-Api-Secret-Token", "nope")],
        &body,
    )
    .await
    .unwrap();
    assert_eq!(status, 401);
    assert!(
        text.contains("wrong X-Telegram-Bot-Api-Secret-Token"),
        "{text}"
    );
    let (status, text) = http_request(addr, "POST", "/", &[], &body).await.unwrap();
    assert_eq!(status, 401);
    assert!(
        text.contains("missing X-Telegram-Bot-Api-Secret-Token"),
        "{text}"
    );
    // Malformed JSON and a non-update: 400.
    let (status, text) = http_request(addr, "POST", "/", &good, "{\"update_id\": 1,")
        .await
        .unwrap();
    assert_eq!(status, 400);
    assert!(text.contains("body is not valid JSON"), "{text}");
    let (status, text) = http_request(addr, "POST", "/", &good, "{\"message\": {}}")
        .await
        .unwrap();
    assert_eq!(status, 400);
    assert!(text.contains("update_id"), "{text}");
    assert_eq!(hub.try_next_event(), None);

    // The good one, twice: one event, two 200s.
    for _ in 0..2 {
        let (status, text) = http_request(addr, "POST", "/", &good, &body).await.unwrap();
        assert_eq!((status, text.as_str()), (200, "{}"));
    }
    let ev = next(&mut hub).await;
    assert_eq!(ev.external_id, "1001:8");
    assert_eq!(message(&ev).attachments[0].url_or_ref, "memory:1");
    assert_eq!(hub.next_event(Duration::from_millis(200)).await, None);

    // Oversized body: 413.
    let big = format!(
        "{{\"update_id\": 1, \"pad\": \"{}\"}}",
        "x".repeat(kommutator_telegram::MAX_BODY_BYTES)
    );
    let req = Request::post("/")
        .header("x-telegram-bot-api-secret-token", SECRET)
        .header("content-type", "application/json")
        .body(Body::from(big))
        .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(hub.try_next_event(), None);

    // Outbound still works in webhook mode.
    hub.send_outbound(outbound(3, "1001", Some("hi"), vec![]))
        .await
        .unwrap();
    assert!(matches!(
        next(&mut hub).await.kind,
        InboundKind::OutboundAck { message_id: 3, .. }
    ));

    hub.shutdown();
    tokio::time::timeout(Duration::from_secs(2), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn webhook_answers_503_when_the_hub_is_gone() {
    let (_fake, api) = start_fake().await;
    let conn = connector(api, json!({"mode": "webhook", "webhook_secret": SECRET}));
    let (ctx, mut hub) = ConnectorContext::for_test("tg");
    let router = conn.routes(&ctx).unwrap();
    hub.close_inbound();
    let req = Request::post("/")
        .header("x-telegram-bot-api-secret-token", SECRET)
        .body(Body::from(fixture("text_private.json").to_string()))
        .unwrap();
    let resp = router.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    drop(ctx);
}
