//! Bad input on the operator WebSocket (`/ws/operator`) and on the ingest endpoint
//! (`POST /api/v1/connectors/{id}/events` and `/events/batch`).
//!
//! Every case checks three things:
//! 1. the answer the protocol document (`docs/ws-protocol.md`) or the REST contract promises:
//!    an `error` frame with its `code` (and the request `id` echoed), a close code, or an HTTP
//!    error with its code;
//! 2. that nothing else was harmed: the same socket still answers a `ping`, or, when the
//!    socket had to end, a fresh connection works and the other connections carry on;
//! 3. that nothing was stored: the change log's `last_seq` is unchanged (every write gets an
//!    entry), and where a listing could show a half-written record, the test looks there.
//!
//! Opening and closing an operator connection can write presence changes (offline →
//! online, and online → offline after the grace period). So every user that opens test
//! connections keeps a first connection (a *keeper*) open for the whole test: with it, later
//! connections of that user open and close without any presence change, and `last_seq`
//! moves only when something was really stored.
//!
//! Tests that once showed a bug in `src/` stay as regressions of it.

use std::time::Duration;

use futures::SinkExt;
use kommutator::config::Config;
use kommutator::domain::{Actor, NewUser, Role, Scope};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;
use crate::ws_client::*;

/// How long a test waits to be sure a frame does *not* come.
const QUIET: Duration = Duration::from_millis(500);

/// The frame limit of the oversize tests (the default is 64 KiB).
const SMALL_FRAME: usize = 4096;

// ---------------------------------------------------------------------------------------
// The world: departments, operators, a channel, a dialog.
// ---------------------------------------------------------------------------------------

/// A hub with the `api` channel `site` routed to Sales, two departments, operators in each,
/// a connector key, keepers for every user that connects, and one dialog of `op1`.
struct World {
    app: TestApp,
    sales: i64,
    support: i64,
    /// Sales operator: the dialog is theirs.
    op1: Principal,
    /// Support operator: may not see Sales' dialogs.
    op2: Principal,
    /// Sales operator too; the dialog is not theirs (routing shares it with Sales, until a
    /// test makes it private with [`World::unshare`]).
    op3: Principal,
    /// An API key with `dialogs:write` (the channel's system).
    key: Principal,
    /// One open connection per user, never read (they subscribe to nothing).
    keepers: Vec<Ws>,
    /// `op1`'s dialog (thread `t-1`) and its lead.
    dialog: i64,
    lead: i64,
}

async fn world() -> World {
    world_with(|_| {}).await
}

async fn world_with(tweak: impl FnOnce(&mut Config)) -> World {
    let app = spawn_app_with(|c| {
        with_api_channel("Sales", None)(c);
        tweak(c);
    })
    .await;
    let sales = app.department("Sales").await;
    let support = app.department("Support").await;
    let op1 = app.user("olga", Role::Operator, Some(sales)).await;
    let op2 = app.user("pavel", Role::Operator, Some(support)).await;
    let key = app.api_key(&[Scope::DialogsWrite]).await;
    let mut keepers = Vec::new();
    // op1 first and alone in Sales, so routing gives them the dialog.
    for who in [&op1, &op2, &app.admin] {
        keepers.push(Ws::operator(&app, who).await.0);
    }
    let (status, out) = ingest(
        &app,
        &key,
        &inbound("m-1", "t-1", "+7 916 123-45-67", "Сколько стоит доставка?"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["status"], "stored", "{out}");
    assert_eq!(out["assignment"]["user_id"], op1.id, "{out}");
    let dialog = out["dialog"]["id"].as_i64().expect("dialog id");
    let lead = out["new_lead"].as_i64().expect("a new lead");
    // op3 comes after the dialog was routed; a keeper for them too.
    let op3 = app.user("sofia", Role::Operator, Some(sales)).await;
    keepers.push(Ws::operator(&app, &op3).await.0);
    World {
        app,
        sales,
        support,
        op1,
        op2,
        op3,
        key,
        keepers,
        dialog,
        lead,
    }
}

impl World {
    /// Bodies of the dialog's messages, oldest first (as the admin sees them).
    async fn messages(&self, dialog: i64) -> Vec<Value> {
        let (status, page) = self
            .app
            .get(
                Some(&self.app.admin),
                &format!("/api/v1/dialogs/{dialog}/messages?limit=200"),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(page["next_cursor"].is_null(), "one page: {page}");
        page["items"].as_array().expect("items").clone()
    }

    /// How many dialogs, leads and messages of `self.dialog` there are.
    async fn counts(&self) -> (usize, usize, usize) {
        let count = |path: &'static str| async move {
            let (status, page) = self.app.get(Some(&self.app.admin), path).await;
            assert_eq!(status, StatusCode::OK, "{path}: {page}");
            page["items"].as_array().expect("items").len()
        };
        let dialogs = count("/api/v1/dialogs?limit=200").await;
        let leads = count("/api/v1/leads?limit=200").await;
        (dialogs, leads, self.messages(self.dialog).await.len())
    }

    /// Makes the dialog private to its operator (routed dialogs are shared with the
    /// department), so that op3, in Sales too, may not see it.
    async fn unshare(&self) {
        let (status, d) = self
            .app
            .patch(
                Some(&self.app.admin),
                &format!("/api/v1/dialogs/{}", self.dialog),
                &json!({"shared": false}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{d}");
        assert_eq!(d["shared"], false, "{d}");
    }

    /// Every keeper still answers a ping.
    async fn keepers_alive(&mut self) {
        for (i, k) in self.keepers.iter_mut().enumerate() {
            alive(k, &format!("keeper-{i}")).await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// Frame helpers.
// ---------------------------------------------------------------------------------------

/// The next frame that is not an `event` (events may interleave with replies).
async fn reply(ws: &mut Ws) -> Value {
    loop {
        let v = ws.next().await;
        if v["type"] != "event" {
            return v;
        }
    }
}

/// Asserts an `error` frame: its code, a message, a `seq`, and the echoed `id` (or none).
#[track_caller]
fn assert_ws_error(v: &Value, code: &str, id: Option<&Value>, what: &str) {
    assert_eq!(
        v["type"], "error",
        "{what}: expected an error frame, got {v}"
    );
    assert_eq!(v["code"], code, "{what}: code; frame {v}");
    assert!(
        v["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: the error says why; frame {v}"
    );
    assert!(
        v["seq"].is_i64(),
        "{what}: every frame has a seq; frame {v}"
    );
    match id {
        Some(id) => assert_eq!(&v["id"], id, "{what}: the id is echoed; frame {v}"),
        None => assert!(v.get("id").is_none(), "{what}: no id to echo; frame {v}"),
    }
}

/// Sends `frame` and expects an `error` with `code`, echoing `frame.id` when it has one.
async fn refused(ws: &mut Ws, frame: Value, code: &str, what: &str) -> Value {
    let id = frame.get("id").cloned();
    ws.send(frame).await;
    let v = reply(ws).await;
    assert_ws_error(&v, code, id.as_ref(), what);
    v
}

/// The socket still works: a ping gets its pong, with the id echoed.
async fn alive(ws: &mut Ws, tag: &str) {
    ws.send(json!({"type": "ping", "id": tag})).await;
    let v = reply(ws).await;
    assert_eq!(
        v["type"], "pong",
        "{tag}: the socket still answers; got {v}"
    );
    assert_eq!(v["id"], tag, "{v}");
    assert!(v["seq"].is_i64(), "{v}");
}

/// A fresh connection of `who` says hello and answers a ping.
async fn fresh_connection_works(app: &TestApp, who: &Principal) {
    let (mut ws, hello) = Ws::operator(app, who).await;
    assert_eq!(hello["v"], 1, "{hello}");
    assert_eq!(hello["user_id"], who.id, "{hello}");
    alive(&mut ws, "fresh").await;
}

/// Nothing arrives on the socket for a while.
async fn quiet(ws: &mut Ws, what: &str) {
    if let Some(v) = ws.try_next(QUIET).await {
        panic!("{what}: nothing may arrive, got {v}");
    }
}

/// `(what, bearer token, extra headers)` of an upgrade.
type UpgradeCase<'a> = (&'a str, Option<&'a str>, Vec<(&'a str, &'a str)>);

/// The upgrade is refused: the HTTP status and the REST error body.
async fn upgrade_refused(
    app: &TestApp,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    match Ws::try_connect(app, "/ws/operator", token, headers).await {
        Ok(_) => panic!("the upgrade must be refused (token {token:?}, headers {headers:?})"),
        Err(tungstenite::Error::Http(resp)) => {
            let status = StatusCode::from_u16(resp.status().as_u16()).expect("status");
            let body = resp
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            (status, body)
        }
        Err(e) => panic!("the upgrade must be answered with an HTTP error, got {e}"),
    }
}

/// A text frame of exactly `len` bytes: `{"type":"send",...,"text":"aaa…"}`.
fn send_frame_of_len(dialog: i64, client_msg_id: &str, len: usize) -> String {
    let head = format!(
        r#"{{"type":"send","id":"{client_msg_id}","dialog_id":{dialog},"client_msg_id":"{client_msg_id}","text":""#
    );
    let tail = r#""}"#;
    let n = len - head.len() - tail.len();
    let s = format!("{head}{}{tail}", "a".repeat(n));
    assert_eq!(s.len(), len);
    s
}

// ---------------------------------------------------------------------------------------
// Malformed frames.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn malformed_frames_are_answered_with_error_frames() {
    let mut w = world().await;
    let long_id = "i".repeat(65);
    let ping_long_id = json!({"type": "ping", "id": long_id}).to_string();
    let nope_long_id = json!({"type": "nope", "id": long_id}).to_string();
    let d = w.dialog;
    let send = |extra: &str| {
        format!(
            r#"{{"type":"send","id":30,"dialog_id":{d},"client_msg_id":"mf","text":"hi"{extra}}}"#
        )
    };
    let unknown_send_field = send(r#","html":"<b>hi</b>""#);
    let attachments_not_list = send(r#","attachments":"x""#);
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, &str, Option<Value>)> = vec![
        // (what, text, code, echoed id)
        ("an empty frame", "", "invalid_json", None),
        ("blank", " \n\t", "invalid_json", None),
        ("not JSON", "hello", "invalid_json", None),
        ("truncated", r#"{"type":"ping","id":1"#, "invalid_json", None),
        ("a trailing comma", r#"{"type":"ping","id":1,}"#, "invalid_json", None),
        ("single quotes", "{'type':'ping','id':1}", "invalid_json", None),
        ("two documents", r#"{"type":"ping","id":1}{"type":"ping","id":2}"#, "invalid_json", None),
        ("trailing garbage", r#"{"type":"ping","id":1} x"#, "invalid_json", None),
        ("a byte order mark", "\u{feff}{\"type\":\"ping\",\"id\":1}", "invalid_json", None),
        ("a lone surrogate", r#"{"type":"ping","id":"\ud800"}"#, "invalid_json", None),
        ("a comment", r#"/* hi */ {"type":"ping","id":1}"#, "invalid_json", None),
        ("an array", r#"[{"type":"ping","id":1}]"#, "invalid_frame", None),
        ("null", "null", "invalid_frame", None),
        ("a number", "42", "invalid_frame", None),
        ("a string", r#""ping""#, "invalid_frame", None),
        ("no type", "{}", "invalid_frame", None),
        ("no type, with an id", r#"{"id":7}"#, "invalid_frame", Some(json!(7))),
        ("an unknown type", r#"{"type":"nope","id":"x-1"}"#, "invalid_frame", Some(json!("x-1"))),
        ("the type in capitals", r#"{"type":"PING","id":2}"#, "invalid_frame", Some(json!(2))),
        ("the type not a string", r#"{"type":1,"id":3}"#, "invalid_frame", Some(json!(3))),
        ("a null type", r#"{"type":null,"id":-4}"#, "invalid_frame", Some(json!(-4))),
        ("an unknown field on ping", r#"{"type":"ping","id":5,"extra":true}"#, "invalid_frame", Some(json!(5))),
        ("a misspelt since", r#"{"type":"subscribe","id":6,"topic":"user:1","sice":0}"#, "invalid_frame", Some(json!(6))),
        ("an unknown field on send", &unknown_send_field, "invalid_frame", Some(json!(30))),
        ("subscribe without a topic", r#"{"type":"subscribe","id":8}"#, "invalid_frame", Some(json!(8))),
        ("a topic that is not a string", r#"{"type":"subscribe","id":9,"topic":7}"#, "invalid_frame", Some(json!(9))),
        ("since as a string", r#"{"type":"subscribe","id":10,"topic":"user:1","since":"0"}"#, "invalid_frame", Some(json!(10))),
        ("since fractional", r#"{"type":"subscribe","id":11,"topic":"user:1","since":1.5}"#, "invalid_frame", Some(json!(11))),
        ("send without client_msg_id", r#"{"type":"send","id":12,"dialog_id":1,"text":"hi"}"#, "invalid_frame", Some(json!(12))),
        ("send without dialog_id", r#"{"type":"send","id":13,"client_msg_id":"a","text":"hi"}"#, "invalid_frame", Some(json!(13))),
        ("dialog_id as a string", r#"{"type":"send","id":14,"dialog_id":"1","client_msg_id":"a","text":"hi"}"#, "invalid_frame", Some(json!(14))),
        ("dialog_id fractional", r#"{"type":"read","id":15,"dialog_id":1.5}"#, "invalid_frame", Some(json!(15))),
        ("dialog_id past i64", r#"{"type":"read","id":16,"dialog_id":9223372036854775808}"#, "invalid_frame", Some(json!(16))),
        ("text not a string", r#"{"type":"send","id":17,"dialog_id":1,"client_msg_id":"a","text":5}"#, "invalid_frame", Some(json!(17))),
        ("attachments not a list", &attachments_not_list, "invalid_frame", Some(json!(30))),
        ("an unknown presence status", r#"{"type":"presence","id":18,"status":"busy"}"#, "invalid_frame", Some(json!(18))),
        ("assign without user_id", r#"{"type":"assign","id":"as","dialog_id":1}"#, "invalid_frame", Some(json!("as"))),
        ("an id that is an object", r#"{"type":"ping","id":{"n":1}}"#, "invalid_frame", None),
        ("an id that is a bool", r#"{"type":"ping","id":true}"#, "invalid_frame", None),
        ("a fractional id", r#"{"type":"ping","id":1.5}"#, "invalid_frame", None),
        ("an id past i64", r#"{"type":"ping","id":18446744073709551615}"#, "invalid_frame", None),
        ("an id of 65 bytes", &ping_long_id, "invalid_frame", None),
        ("an id of 65 bytes, unknown type", &nope_long_id, "invalid_frame", None),
    ];
    let before = w.app.last_seq().await;
    let messages_before = w.messages(w.dialog).await.len();
    // Each connection takes at most 8 bad frames (the limit is 20) plus a ping after each
    // (16 frames: within the burst of 40).
    for (n, chunk) in cases.chunks(8).enumerate() {
        let (mut ws, _) = Ws::operator(&w.app, &w.op1).await;
        for (what, text, code, id) in chunk {
            ws.send_text(text).await;
            let v = reply(&mut ws).await;
            assert_ws_error(&v, code, id.as_ref(), what);
            alive(&mut ws, &format!("after {what}")).await;
        }
        // An id of exactly 64 bytes is echoed.
        let id64 = format!("{n}{}", "i".repeat(63));
        ws.send(json!({"type": "ping", "id": id64})).await;
        assert_eq!(reply(&mut ws).await["id"], id64.as_str());
    }
    assert_eq!(
        w.app.last_seq().await,
        before,
        "malformed frames store nothing"
    );
    assert_eq!(w.messages(w.dialog).await.len(), messages_before);
    w.keepers_alive().await;
}

#[tokio::test]
async fn valid_frames_without_an_id_get_replies_without_one() {
    let mut w = world().await;
    let (mut ws, _) = Ws::operator(&w.app, &w.op1).await;
    ws.send(json!({"type": "ping"})).await;
    let v = reply(&mut ws).await;
    assert_eq!(v["type"], "pong", "{v}");
    assert!(v.get("id").is_none(), "{v}");
    // A null id is no id.
    ws.send_text(r#"{"type":"ping","id":null}"#).await;
    let v = reply(&mut ws).await;
    assert_eq!(v["type"], "pong", "{v}");
    assert!(v.get("id").is_none(), "{v}");
    // An error to a frame without an id has none either.
    refused(
        &mut ws,
        json!({"type": "subscribe", "topic": "x:1"}),
        "invalid_topic",
        "no id",
    )
    .await;
    w.keepers_alive().await;
}

#[tokio::test]
async fn binary_frames_are_refused() {
    let mut w = world().await;
    let before = w.app.last_seq().await;
    let (mut ws, _) = Ws::operator(&w.app, &w.op1).await;
    let payloads: Vec<Vec<u8>> = vec![
        br#"{"type":"ping","id":1}"#.to_vec(),
        format!(
            r#"{{"type":"send","id":2,"dialog_id":{},"client_msg_id":"bin","text":"hi"}}"#,
            w.dialog
        )
        .into_bytes(),
        vec![],
        vec![0xff, 0x00, 0xfe],
    ];
    for (i, p) in payloads.into_iter().enumerate() {
        ws.stream
            .send(Message::binary(p))
            .await
            .expect("send binary");
        let v = reply(&mut ws).await;
        // Binary frames are not parsed, so no id is echoed.
        assert_ws_error(&v, "binary_not_supported", None, &format!("binary #{i}"));
        alive(&mut ws, &format!("after binary #{i}")).await;
    }
    assert_eq!(
        w.app.last_seq().await,
        before,
        "binary frames store nothing"
    );
    assert!(
        !w.messages(w.dialog).await.iter().any(|m| m["body"] == "hi"),
        "the binary send was not stored"
    );
    w.keepers_alive().await;
}

#[tokio::test]
async fn twenty_malformed_frames_are_tolerated_and_the_twenty_first_closes_with_4002() {
    let mut w = world().await;
    let before = w.app.last_seq().await;
    let (mut ws, _) = Ws::operator(&w.app, &w.op1).await;
    for i in 1..=20_i64 {
        match i % 3 {
            0 => {
                ws.send_text("{ not json").await;
                assert_ws_error(
                    &reply(&mut ws).await,
                    "invalid_json",
                    None,
                    &format!("#{i}"),
                );
            }
            1 => {
                ws.send(json!({"type": "nope", "id": i})).await;
                assert_ws_error(
                    &reply(&mut ws).await,
                    "invalid_frame",
                    Some(&json!(i)),
                    &format!("#{i}"),
                );
            }
            _ => {
                ws.stream
                    .send(Message::binary(b"x".to_vec()))
                    .await
                    .expect("send");
                assert_ws_error(
                    &reply(&mut ws).await,
                    "binary_not_supported",
                    None,
                    &format!("#{i}"),
                );
            }
        }
        if i % 5 == 0 {
            // Valid frames do not wipe the count, and refused *commands* are not malformed
            // frames: neither closes the connection nor counts.
            alive(&mut ws, &format!("after #{i}")).await;
            refused(
                &mut ws,
                json!({"type": "subscribe", "id": format!("t{i}"), "topic": "dialog:abc"}),
                "invalid_topic",
                "a refused command",
            )
            .await;
            refused(
                &mut ws,
                json!({"type": "read", "id": format!("r{i}"), "dialog_id": 999_999}),
                "not_found",
                "a refused command",
            )
            .await;
        }
    }
    // Twenty malformed frames: the connection still works.
    alive(&mut ws, "after twenty").await;
    // The twenty-first closes it with 4002.
    ws.send_text("still not json").await;
    assert_eq!(ws.ended().await, Ended::Closed(4002));
    // Nothing stored, the server and the other connections carry on.
    fresh_connection_works(&w.app, &w.op1).await;
    w.keepers_alive().await;
    assert_eq!(w.app.last_seq().await, before, "nothing was stored");
}

#[tokio::test]
async fn binary_frames_alone_count_towards_4002() {
    let mut w = world().await;
    let (mut ws, _) = Ws::operator(&w.app, &w.op2).await;
    for i in 0..20 {
        ws.stream
            .send(Message::binary(vec![i]))
            .await
            .expect("send");
        assert_ws_error(
            &reply(&mut ws).await,
            "binary_not_supported",
            None,
            "binary",
        );
    }
    ws.stream
        .send(Message::binary(vec![21]))
        .await
        .expect("send");
    assert_eq!(ws.ended().await, Ended::Closed(4002));
    fresh_connection_works(&w.app, &w.op2).await;
    w.keepers_alive().await;
}

// ---------------------------------------------------------------------------------------
// Oversize frames and frames that are not WebSocket text.
// ---------------------------------------------------------------------------------------

/// Sends raw frames, ignoring a send error (the server may hang up mid-way), and expects
/// the socket to end with 1009 or a dropped connection.
async fn ends_for_size(mut ws: Ws, frames: Vec<Message>, what: &str) {
    for f in frames {
        if ws.stream.send(f).await.is_err() {
            break;
        }
    }
    let end = ws.ended().await;
    assert!(
        matches!(end, Ended::Closed(1009) | Ended::Dropped),
        "{what}: the connection ends with 1009 or is dropped, got {end:?}"
    );
}

#[tokio::test]
async fn oversize_frames_end_the_connection_and_store_nothing() {
    let mut w = world_with(|c| c.realtime.max_frame_bytes = SMALL_FRAME).await;
    let (mut ws, hello) = Ws::operator(&w.app, &w.op1).await;
    assert_eq!(hello["max_frame_bytes"], SMALL_FRAME, "{hello}");

    // Exactly at the limit: accepted (a `send` padded to 4096 bytes).
    ws.send_text(&send_frame_of_len(w.dialog, "exact", SMALL_FRAME))
        .await;
    let ack = reply(&mut ws).await;
    assert_eq!(
        ack["type"], "ack",
        "a frame of exactly the limit is accepted: {ack}"
    );
    assert_eq!(ack["id"], "exact");
    // A message reassembled from fragments within the limit is accepted too.
    let text = send_frame_of_len(w.dialog, "fragments", 3000);
    let parts: Vec<&[u8]> = text.as_bytes().chunks(1000).collect();
    let n = parts.len();
    for (i, p) in parts.into_iter().enumerate() {
        let op = if i == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        ws.stream
            .send(Message::Frame(Frame::message(p.to_vec(), op, i + 1 == n)))
            .await
            .expect("send fragment");
    }
    let ack = reply(&mut ws).await;
    assert_eq!(ack["type"], "ack", "fragments within the limit: {ack}");
    assert_eq!(ack["id"], "fragments");

    let before = w.app.last_seq().await;
    let messages_before = w.messages(w.dialog).await.len();

    // One byte over the limit.
    ends_for_size(
        ws,
        vec![Message::text(send_frame_of_len(
            w.dialog,
            "over",
            SMALL_FRAME + 1,
        ))],
        "one byte over",
    )
    .await;
    fresh_connection_works(&w.app, &w.op1).await;

    // Far over the limit (1 MiB).
    let (ws, _) = Ws::operator(&w.app, &w.op1).await;
    ends_for_size(
        ws,
        vec![Message::text(send_frame_of_len(w.dialog, "huge", 1 << 20))],
        "1 MiB",
    )
    .await;
    fresh_connection_works(&w.app, &w.op1).await;

    // Fragments of 1000 bytes each, 5000 in all: the message is over the limit.
    let (ws, _) = Ws::operator(&w.app, &w.op1).await;
    let text = send_frame_of_len(w.dialog, "fragmented", 5000);
    let parts: Vec<Message> = text
        .as_bytes()
        .chunks(1000)
        .enumerate()
        .map(|(i, p)| {
            let op = if i == 0 {
                OpCode::Data(Data::Text)
            } else {
                OpCode::Data(Data::Continue)
            };
            Message::Frame(Frame::message(p.to_vec(), op, i == 4))
        })
        .collect();
    assert_eq!(parts.len(), 5);
    ends_for_size(ws, parts, "fragmented message over the limit").await;
    fresh_connection_works(&w.app, &w.op1).await;

    // A binary frame over the limit ends it too (the size is checked before the type).
    let (ws, _) = Ws::operator(&w.app, &w.op1).await;
    ends_for_size(
        ws,
        vec![Message::binary(vec![b'x'; SMALL_FRAME * 2])],
        "binary",
    )
    .await;
    fresh_connection_works(&w.app, &w.op1).await;

    w.keepers_alive().await;
    assert_eq!(w.app.last_seq().await, before, "nothing was stored");
    let bodies = w.messages(w.dialog).await;
    assert_eq!(bodies.len(), messages_before, "no message was added");
}

#[tokio::test]
async fn default_frame_limit_is_64_kib() {
    let mut w = world().await;
    let (mut ws, hello) = Ws::operator(&w.app, &w.op1).await;
    assert_eq!(hello["max_frame_bytes"], 64 * 1024, "{hello}");
    ws.send_text(&send_frame_of_len(w.dialog, "exact64", 64 * 1024))
        .await;
    let ack = reply(&mut ws).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let before = w.app.last_seq().await;
    ends_for_size(
        ws,
        vec![Message::text(send_frame_of_len(
            w.dialog,
            "over64",
            64 * 1024 + 1,
        ))],
        "64 KiB + 1",
    )
    .await;
    fresh_connection_works(&w.app, &w.op1).await;
    w.keepers_alive().await;
    assert_eq!(w.app.last_seq().await, before, "nothing was stored");
}

#[tokio::test]
async fn a_text_frame_that_is_not_utf8_ends_the_connection() {
    let mut w = world().await;
    let before = w.app.last_seq().await;
    let (mut ws, _) = Ws::operator(&w.app, &w.op1).await;
    ws.stream
        .send(Message::Frame(Frame::message(
            b"{\"type\":\"ping\",\"id\":\"\xff\"}".to_vec(),
            OpCode::Data(Data::Text),
            true,
        )))
        .await
        .expect("send");
    let end = ws.ended().await;
    assert!(
        matches!(end, Ended::Closed(1007) | Ended::Dropped),
        "invalid UTF-8 ends the connection (1007 or dropped), got {end:?}"
    );
    fresh_connection_works(&w.app, &w.op1).await;
    w.keepers_alive().await;
    assert_eq!(w.app.last_seq().await, before);
}

// ---------------------------------------------------------------------------------------
// Floods.
// ---------------------------------------------------------------------------------------

/// What the server answered to a flood whose frames' ids are in `sent`, in order: the `id`
/// of each accepted frame's reply (`ack` or `pong`), and `None` for a `rate_limited` error.
///
/// Once the flood is sent, a ping marks the end: its pong is the last reply. When the ping
/// itself falls into a run of dropped frames it gets no answer, so after a silence another
/// one is sent (its id joins `sent`).
async fn flood_replies(ws: &mut Ws, sent: &mut Vec<Value>) -> Vec<Option<Value>> {
    let mut out = Vec::new();
    for k in 1..=10 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let end = format!("end-{k}");
        ws.send(json!({"type": "ping", "id": end})).await;
        sent.push(json!(end));
        while let Some(v) = ws.try_next(Duration::from_secs(3)).await {
            match v["type"].as_str() {
                Some("event") => {}
                Some("error") => {
                    assert_ws_error(&v, "rate_limited", None, "during a flood");
                    out.push(None);
                }
                Some("ack" | "pong") => {
                    out.push(Some(v["id"].clone()));
                    if v["id"] == end.as_str() {
                        return out;
                    }
                }
                _ => panic!("unexpected frame during a flood: {v}"),
            }
        }
    }
    panic!("the socket never answered again; replies so far: {out:?}");
}

/// The replies the server owes for `sent` ids when `accepted` of them were let through:
/// each accepted frame's reply, and one `rate_limited` per run of refused frames.
fn expected_replies(sent: &[Value], accepted: &[Value]) -> Vec<Option<Value>> {
    let mut out = Vec::new();
    let mut in_run = false;
    for id in sent {
        if accepted.contains(id) {
            out.push(Some(id.clone()));
            in_run = false;
        } else if !in_run {
            out.push(None);
            in_run = true;
        }
    }
    out
}

#[tokio::test]
async fn a_flood_of_sends_is_rate_limited_and_only_acked_messages_are_stored() {
    // Five frames a second, bursts of ten. (With the default 20 a second, a `send` that took
    // 50 ms under load would earn its successor's token while it ran, and a slow machine
    // could let the whole flood through; the default rate is flooded with pings below.)
    let mut w = world_with(|c| c.realtime.frames_per_sec = 5).await;
    let (mut ws, _) = Ws::operator(&w.app, &w.op1).await;
    let before = w.messages(w.dialog).await.len();

    // 100 sends back to back.
    let mut sent: Vec<Value> = Vec::new();
    for i in 1..=100 {
        let frame = json!({"type": "send", "id": i, "dialog_id": w.dialog, "client_msg_id": format!("flood-{i}"), "text": format!("flood {i}")});
        ws.stream
            .feed(Message::text(frame.to_string()))
            .await
            .expect("feed");
        sent.push(json!(i));
    }
    ws.stream.flush().await.expect("flush");

    let got = flood_replies(&mut ws, &mut sent).await;
    let accepted: Vec<Value> = got.iter().flatten().cloned().collect();
    let acked: Vec<i64> = accepted.iter().filter_map(Value::as_i64).collect();
    assert!(
        acked.len() >= 10,
        "a full burst (10) goes through: {} acked",
        acked.len()
    );
    assert!(
        acked.len() < 50,
        "most of the flood is dropped: {} of 100 acked",
        acked.len()
    );
    let limited = got.iter().filter(|r| r.is_none()).count();
    assert!(limited >= 1, "the flood is told it is rate limited");
    assert_eq!(
        got,
        expected_replies(&sent, &accepted),
        "every accepted frame is answered in order, with one rate_limited per run of dropped frames"
    );

    // Exactly the acked messages are stored, once each.
    let messages = w.messages(w.dialog).await;
    assert_eq!(
        messages.len(),
        before + acked.len(),
        "as many stored as acked"
    );
    let mut stored: Vec<String> = messages
        .iter()
        .filter_map(|m| m["body"].as_str())
        .filter(|b| b.starts_with("flood "))
        .map(str::to_owned)
        .collect();
    let mut expected: Vec<String> = acked.iter().map(|i| format!("flood {i}")).collect();
    stored.sort();
    expected.sort();
    assert_eq!(stored, expected, "the stored messages are the acked ones");

    // The connection is still open (once there is room again).
    tokio::time::sleep(Duration::from_millis(500)).await;
    alive(&mut ws, "after the flood").await;
    w.keepers_alive().await;
}

#[tokio::test]
async fn a_flood_of_pings_gets_one_rate_limited_per_burst() {
    let mut w = world().await;
    let before = w.app.last_seq().await;
    let (mut ws, _) = Ws::operator(&w.app, &w.op2).await;
    let mut sent = Vec::new();
    for i in 1..=100 {
        ws.stream
            .feed(Message::text(json!({"type": "ping", "id": i}).to_string()))
            .await
            .expect("feed");
        sent.push(json!(i));
    }
    ws.stream.flush().await.expect("flush");
    let got = flood_replies(&mut ws, &mut sent).await;
    let accepted: Vec<Value> = got.iter().flatten().cloned().collect();
    let pongs = accepted.iter().filter(|v| v.is_i64()).count();
    assert!((40..90).contains(&pongs), "{pongs} of 100 pings answered");
    assert_eq!(got, expected_replies(&sent, &accepted));
    assert!(got.iter().any(Option::is_none), "rate_limited was sent");
    w.keepers_alive().await;
    assert_eq!(w.app.last_seq().await, before);
}

#[tokio::test]
async fn a_flood_that_goes_on_is_closed_with_4029() {
    // One frame a second, bursts of two: the counts below do not depend on timing (the
    // whole flood is sent well within a second).
    let mut w = world_with(|c| c.realtime.frames_per_sec = 1).await;
    let before = w.app.last_seq().await;
    let (mut ws, _) = Ws::operator(&w.app, &w.op1).await;
    // The burst of two.
    alive(&mut ws, "burst-1").await;
    alive(&mut ws, "burst-2").await;
    // 200 refused in a row: one rate_limited, and the connection stays.
    for i in 0..200 {
        ws.stream
            .feed(Message::text(json!({"type": "ping", "id": i}).to_string()))
            .await
            .expect("feed");
    }
    ws.stream.flush().await.expect("flush");
    assert_ws_error(&reply(&mut ws).await, "rate_limited", None, "first refused");
    quiet(&mut ws, "the other 199 refused frames get no answer").await;
    // After a pause (1.1 s with the quiet wait) there is room again: the run of refusals
    // ends. The next token comes 0.9 s after this ping, long after the 201 frames below.
    tokio::time::sleep(Duration::from_millis(600)).await;
    alive(&mut ws, "after the pause").await;
    // 201 refused in a row: closed with 4029.
    for i in 0..201 {
        ws.stream
            .feed(Message::text(
                json!({"type": "send", "id": i, "dialog_id": w.dialog, "client_msg_id": format!("f-{i}"), "text": "flood"}).to_string(),
            ))
            .await
            .expect("feed");
    }
    ws.stream.flush().await.expect("flush");
    assert_ws_error(&reply(&mut ws).await, "rate_limited", None, "second run");
    assert_eq!(ws.ended().await, Ended::Closed(4029));
    fresh_connection_works(&w.app, &w.op1).await;
    w.keepers_alive().await;
    assert_eq!(w.app.last_seq().await, before, "no refused send was stored");
    assert!(!w
        .messages(w.dialog)
        .await
        .iter()
        .any(|m| m["body"] == "flood"));
}

// ---------------------------------------------------------------------------------------
// Authentication of the upgrade.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn upgrades_without_a_valid_session_are_401() {
    let w = world().await;
    let app = &w.app;
    // A forged API key: a real key's prefix with another secret.
    let real = app.api_key(&[Scope::DialogsRead]).await;
    let (prefix, _) = real.token.split_once('.').expect("prefix.secret");
    let forged_key = format!("{prefix}.{}", "A".repeat(43));
    // An ended session.
    let ended = app.login("olga", w.op1.id).await;
    let (status, out) = app
        .post(Some(&ended), "/api/v1/auth/logout", &json!({}))
        .await;
    assert!(status.is_success(), "logout: {status} {out}");
    let before = app.last_seq().await;
    let long = "t".repeat(513);
    let ended_cookie = format!("kommutator_session={}", ended.token);
    let forged_cookie = "kommutator_session=not-a-session".to_owned();

    #[rustfmt::skip]
    let cases: Vec<UpgradeCase> = vec![
        ("no credentials", None, vec![]),
        ("a forged session token", Some("not-a-session-token"), vec![]),
        ("an empty bearer token", Some(""), vec![]),
        ("a token over 512 bytes", Some(&long), vec![]),
        ("a forged API key", Some(&forged_key), vec![]),
        ("a session ended by logout", Some(&ended.token), vec![]),
        ("a session ended by logout, as a cookie", None, vec![("cookie", &ended_cookie)]),
        ("a forged cookie", None, vec![("cookie", &forged_cookie)]),
        ("an empty cookie", None, vec![("cookie", "kommutator_session=")]),
        ("another cookie's name", None, vec![("cookie", "session=x")]),
        ("basic auth", None, vec![("authorization", "Basic b2xnYTp0ZXN0LXBhc3N3b3JkLTEyMzQ=")]),
    ];
    for (what, token, headers) in cases {
        let (status, body) = upgrade_refused(app, token, &headers).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert_eq!(
            body["error"]["code"], "unauthenticated",
            "{what}: the REST error body; got {body}"
        );
    }
    // The server is fine, and nothing was stored.
    fresh_connection_works(app, &w.op1).await;
    assert_eq!(app.last_seq().await, before);
}

#[tokio::test]
async fn api_keys_are_refused_on_the_operator_socket() {
    let w = world().await;
    let app = &w.app;
    let all = app
        .api_key(&[
            Scope::DialogsRead,
            Scope::DialogsWrite,
            Scope::ClientsRead,
            Scope::Admin,
        ])
        .await;
    let before = app.last_seq().await;
    for (what, key) in [("a dialogs:write key", &w.key), ("an admin key", &all)] {
        let (status, body) = upgrade_refused(app, Some(&key.token), &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{what}: {body}");
        assert_eq!(body["error"]["code"], "forbidden", "{what}: {body}");
    }
    fresh_connection_works(app, &w.op1).await;
    assert_eq!(app.last_seq().await, before);
}

#[tokio::test]
async fn a_user_who_must_change_the_password_is_refused() {
    let w = world().await;
    let app = &w.app;
    let hash = kommutator::auth::hash_password(PASSWORD).expect("hash");
    let u = app
        .store
        .create_user(
            &Actor::System,
            &NewUser {
                login: "newbie".into(),
                name: "Newbie".into(),
                email: None,
                role: Role::Operator,
                department_id: Some(w.sales),
                password: PASSWORD.into(),
                must_change_password: true,
            },
            &hash,
        )
        .await
        .expect("user");
    let newbie = app.login("newbie", u.id).await;
    let before = app.last_seq().await;
    let (status, body) = upgrade_refused(app, Some(&newbie.token), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "password_change_required", "{body}");
    fresh_connection_works(app, &w.op1).await;
    assert_eq!(app.last_seq().await, before);
}

#[tokio::test]
async fn cookie_upgrades_from_a_foreign_origin_are_403() {
    let mut w = world().await;
    let app = &w.app;
    let cookie = format!("kommutator_session={}", w.op1.token);
    let host = app.base.trim_start_matches("http://").to_owned();
    let port = host.rsplit_once(':').expect("port").1.to_owned();
    let other_port = format!(
        "http://127.0.0.1:{}",
        port.parse::<u16>().expect("port").wrapping_add(1)
    );
    let suffix = format!("http://{host}.evil.example");
    let in_path = format!("https://evil.example/{host}");
    let userinfo = format!("http://{host}@evil.example");
    let before = app.last_seq().await;
    for (what, origin) in [
        ("another site", "https://evil.example"),
        ("an opaque origin", "null"),
        ("the hub's host on another port", other_port.as_str()),
        ("the hub's host as a prefix", suffix.as_str()),
        ("the hub's host in the path", in_path.as_str()),
        ("the hub's host as user info", userinfo.as_str()),
        ("localhost for 127.0.0.1", "http://localhost"),
    ] {
        let (status, body) =
            upgrade_refused(app, None, &[("cookie", &cookie), ("origin", origin)]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{what} ({origin}): {body}");
        assert_eq!(body["error"]["code"], "forbidden", "{what}: {body}");
    }
    assert_eq!(
        app.last_seq().await,
        before,
        "refused upgrades store nothing"
    );

    // The hub's own origin, or none (a non-browser client), is accepted with the cookie.
    let same = app.base.clone();
    let same_slash = format!("{same}/");
    for headers in [
        vec![("cookie", cookie.as_str()), ("origin", same.as_str())],
        vec![("cookie", cookie.as_str()), ("origin", same_slash.as_str())],
        vec![("cookie", cookie.as_str())],
    ] {
        let mut ws = Ws::try_connect(app, "/ws/operator", None, &headers)
            .await
            .unwrap_or_else(|e| panic!("{headers:?} is accepted: {e}"));
        let hello = ws.next().await;
        assert_eq!(hello["type"], "hello");
        assert_eq!(hello["user_id"], w.op1.id, "the cookie's user: {hello}");
        alive(&mut ws, "cookie").await;
    }
    // A bearer token is not sent by browsers on their own: no Origin check for it.
    let mut ws = Ws::try_connect(
        app,
        "/ws/operator",
        Some(&w.op1.token),
        &[("origin", "https://evil.example")],
    )
    .await
    .expect("bearer with any origin");
    assert_eq!(ws.next().await["type"], "hello");
    w.keepers_alive().await;
}

// ---------------------------------------------------------------------------------------
// Subscriptions.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn subscriptions_to_what_one_may_not_see_are_refused_and_carry_nothing() {
    let mut w = world().await;
    let app = &w.app;
    // A supervisor of Support.
    let sup = app.user("stepan", Role::Supervisor, Some(w.support)).await;
    let (mut sup_keeper, _) = Ws::operator(app, &sup).await;
    w.unshare().await;

    // op1 follows the dialog: the positive control that its events are published.
    let (mut owner, _) = Ws::operator(app, &w.op1).await;
    owner.subscribe(&format!("dialog:{}", w.dialog), None).await;

    let (mut op2, _) = Ws::operator(app, &w.op2).await;
    let (mut op3, _) = Ws::operator(app, &w.op3).await;
    let (mut sup_ws, _) = Ws::operator(app, &sup).await;
    // What they may follow, they can (so the sockets are live).
    op2.subscribe(&format!("user:{}", w.op2.id), None).await;
    op2.subscribe(&format!("dept:{}", w.support), None).await;
    op3.subscribe(&format!("user:{}", w.op3.id), None).await;
    sup_ws.subscribe(&format!("dept:{}", w.support), None).await;
    let before = app.last_seq().await;

    let d = w.dialog;
    // (what, socket: 0 = op2, 1 = op3, 2 = the supervisor, topic, code)
    #[rustfmt::skip]
    let refusals: Vec<(&str, usize, String, &str)> = vec![
        ("another department's dialog", 0, format!("dialog:{d}"), "not_found"),
        ("another department's lead", 0, format!("lead:{}", w.lead), "not_found"),
        ("a dialog that does not exist", 0, "dialog:999999999".into(), "not_found"),
        ("another department", 0, format!("dept:{}", w.sales), "forbidden"),
        ("a department that does not exist", 0, "dept:999999".into(), "forbidden"),
        ("another operator", 0, format!("user:{}", w.op1.id), "forbidden"),
        ("the admin", 0, format!("user:{}", w.app.admin.id), "forbidden"),
        ("a colleague's dialog, not shared", 1, format!("dialog:{d}"), "not_found"),
        ("a colleague", 1, format!("user:{}", w.op1.id), "forbidden"),
        ("as a supervisor, another department's operator", 2, format!("user:{}", w.op1.id), "forbidden"),
        ("as a supervisor, another department", 2, format!("dept:{}", w.sales), "forbidden"),
        ("as a supervisor, another department's dialog", 2, format!("dialog:{d}"), "not_found"),
    ];
    for (what, which, topic, code) in refusals {
        let ws = match which {
            0 => &mut op2,
            1 => &mut op3,
            _ => &mut sup_ws,
        };
        refused(
            ws,
            json!({"type": "subscribe", "id": format!("s-{topic}"), "topic": topic, "since": 0}),
            code,
            what,
        )
        .await;
    }
    assert_eq!(
        app.last_seq().await,
        before,
        "refused subscriptions store nothing"
    );

    // The refused topics were not recorded: unsubscribing says so.
    for (which, topic) in [
        (0, format!("dialog:{d}")),
        (0, format!("dept:{}", w.sales)),
        (0, format!("user:{}", w.op1.id)),
        (1, format!("dialog:{d}")),
        (2, format!("user:{}", w.op1.id)),
    ] {
        let ws = match which {
            0 => &mut op2,
            1 => &mut op3,
            _ => &mut sup_ws,
        };
        ws.send(json!({"type": "unsubscribe", "id": "u", "topic": topic}))
            .await;
        let v = reply(ws).await;
        assert_eq!(v["type"], "unsubscribed", "{v}");
        assert_eq!(v["reason"], "not_subscribed", "{topic}: {v}");
        assert_eq!(v["id"], "u");
    }

    // A new message in the dialog reaches its operator, and none of the refused.
    let (status, out) = ingest(
        app,
        &w.key,
        &inbound("m-2", "t-1", "+7 916 123-45-67", "Алло?"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let msg = owner
        .event_where(|e| e["entity"] == "message" && e["data"]["body"] == "Алло?")
        .await;
    assert_eq!(msg["data"]["dialog_id"], d);
    // op1 types: the typing event is not for them either.
    owner.send(json!({"type": "typing", "dialog_id": d})).await;
    quiet(&mut op2, "op2 refused dialog, lead, dept and user").await;
    quiet(&mut op3, "op3 refused the dialog and op1").await;
    quiet(
        &mut sup_ws,
        "the supervisor refused op1, Sales and the dialog",
    )
    .await;
    for ws in [&mut op2, &mut op3, &mut sup_ws, &mut owner] {
        alive(ws, "after the refusals").await;
    }
    alive(&mut sup_keeper, "supervisor keeper").await;
    w.keepers_alive().await;
}

#[tokio::test]
async fn malformed_topics_and_since_are_refused() {
    let mut w = world().await;
    let (mut ws, _) = Ws::operator(&w.app, &w.op1).await;
    let before = w.app.last_seq().await;
    let long = format!("dialog:{}", "1".repeat(10_000));
    let very_long = "x".repeat(60_000);
    #[rustfmt::skip]
    let topics: Vec<&str> = vec![
        "dialog:-1", "dialog:abc", "x:1", "", "dialog", "dialog:", ":1", "dialog:0",
        "dialog:+1", "dialog: 1", "dialog:1 ", "Dialog:1", "dialog:1:2", "dialog:1.0",
        "dialog:0x1", "dialog:1234567890123456789", "dialog:99999999999999999999",
        "dialog:١", "dialog:1\u{0}", "user:\u{3}", &long, &very_long,
    ];
    for (i, t) in topics.iter().enumerate() {
        refused(
            &mut ws,
            json!({"type": "subscribe", "id": i, "topic": t}),
            "invalid_topic",
            &format!("topic {:?}", t.chars().take(40).collect::<String>()),
        )
        .await;
    }
    alive(&mut ws, "after bad topics").await;
    // Unsubscribing from a malformed topic is refused the same way.
    refused(
        &mut ws,
        json!({"type": "unsubscribe", "id": "u1", "topic": "dialog:-1"}),
        "invalid_topic",
        "unsubscribe",
    )
    .await;
    let me = format!("user:{}", w.op1.id);
    for since in [-1, -1000, i64::MIN] {
        refused(
            &mut ws,
            json!({"type": "subscribe", "id": format!("since{since}"), "topic": me, "since": since}),
            "invalid_since",
            &format!("since {since}"),
        )
        .await;
    }
    // The topic is checked first.
    refused(
        &mut ws,
        json!({"type": "subscribe", "id": "both", "topic": "x:1", "since": -1}),
        "invalid_topic",
        "bad topic and since",
    )
    .await;
    // None of them was recorded.
    ws.send(json!({"type": "unsubscribe", "id": "u2", "topic": me}))
        .await;
    let v = reply(&mut ws).await;
    assert_eq!(v["reason"], "not_subscribed", "{v}");
    // A valid subscription still works on this socket.
    let (_, sub) = ws.subscribe(&me, Some(0)).await;
    assert_eq!(sub["type"], "subscribed", "{sub}");
    assert_eq!(w.app.last_seq().await, before);
    w.keepers_alive().await;
}

#[tokio::test]
async fn more_than_200_subscriptions_are_refused() {
    // 200 subscriptions at 20 frames a second would take 10 s: raise the rate.
    let mut w = world_with(|c| c.realtime.frames_per_sec = 10_000).await;
    let admin = w.app.admin.clone();
    let (mut ws, _) = Ws::operator(&w.app, &admin).await;
    let before = w.app.last_seq().await;
    // An admin may follow any user (existing or not).
    for i in 1..=200 {
        let (_, sub) = ws.subscribe(&format!("user:{i}"), None).await;
        assert_eq!(sub["type"], "subscribed", "{sub}");
    }
    refused(
        &mut ws,
        json!({"type": "subscribe", "id": "201", "topic": "user:201"}),
        "too_many_subscriptions",
        "the 201st",
    )
    .await;
    refused(
        &mut ws,
        json!({"type": "subscribe", "id": "dept", "topic": format!("dept:{}", w.sales)}),
        "too_many_subscriptions",
        "another kind",
    )
    .await;
    // Subscribing again to a topic already held is not a new subscription.
    let (_, sub) = ws.subscribe("user:5", Some(0)).await;
    assert_eq!(sub["type"], "subscribed", "{sub}");
    // Making room allows one more, and only one.
    ws.send(json!({"type": "unsubscribe", "id": "u", "topic": "user:5"}))
        .await;
    assert_eq!(reply(&mut ws).await["reason"], "requested");
    let (_, sub) = ws.subscribe("user:201", None).await;
    assert_eq!(sub["type"], "subscribed", "{sub}");
    refused(
        &mut ws,
        json!({"type": "subscribe", "id": "202", "topic": "user:202"}),
        "too_many_subscriptions",
        "full again",
    )
    .await;
    alive(&mut ws, "full").await;
    assert_eq!(w.app.last_seq().await, before);
    w.keepers_alive().await;
}

// ---------------------------------------------------------------------------------------
// Commands.
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn commands_on_a_dialog_one_may_not_see_are_refused_and_change_nothing() {
    let mut w = world().await;
    let app = &w.app;
    let (mut owner, _) = Ws::operator(app, &w.op1).await;
    owner.subscribe(&format!("dialog:{}", w.dialog), None).await;
    let (mut op2, _) = Ws::operator(app, &w.op2).await;
    let (mut op3, _) = Ws::operator(app, &w.op3).await;
    w.unshare().await;
    let before = app.last_seq().await;
    let counts = w.counts().await;
    let (status, dialog_before) = app
        .get(Some(&app.admin), &format!("/api/v1/dialogs/{}", w.dialog))
        .await;
    assert_eq!(status, StatusCode::OK);

    let d = w.dialog;
    // op2 is in another department; op3 is in Sales, but the dialog is not shared.
    for (who, ws) in [("op2", &mut op2), ("op3", &mut op3)] {
        #[rustfmt::skip]
        let frames = vec![
            json!({"type": "send", "id": "send", "dialog_id": d, "client_msg_id": format!("{who}-1"), "text": "Не ваш диалог"}),
            json!({"type": "send", "id": "send-att", "dialog_id": d, "client_msg_id": format!("{who}-2"),
                   "attachments": [{"name": "a.pdf", "mime_type": "application/pdf", "size": 1, "url": "https://files.example/a.pdf"}]}),
            json!({"type": "typing", "id": "typing", "dialog_id": d}),
            json!({"type": "read", "id": "read", "dialog_id": d}),
            json!({"type": "close", "id": "close", "dialog_id": d}),
            json!({"type": "reopen", "id": "reopen", "dialog_id": d}),
            json!({"type": "transfer", "id": "transfer-dept", "dialog_id": d, "department_id": w.support}),
        ];
        for f in frames {
            let what = format!("{who} {}", f["id"]);
            refused(ws, f, "not_found", &what).await;
        }
        // Assigning to oneself is allowed in principle, but not a dialog one cannot see.
        let me = if who == "op2" { w.op2.id } else { w.op3.id };
        refused(
            ws,
            json!({"type": "assign", "id": "assign-self", "dialog_id": d, "user_id": me}),
            "not_found",
            &format!("{who} assign to self"),
        )
        .await;
        refused(
            ws,
            json!({"type": "transfer", "id": "transfer-self", "dialog_id": d, "user_id": me}),
            "not_found",
            &format!("{who} transfer to self"),
        )
        .await;
        alive(ws, who).await;
    }
    // Dialogs that do not exist, for the owner too.
    for id in [0, -1, 999_999_999, i64::MAX] {
        refused(
            &mut owner,
            json!({"type": "send", "id": format!("ghost{id}"), "dialog_id": id, "client_msg_id": format!("ghost{id}"), "text": "x"}),
            "not_found",
            &format!("send to dialog {id}"),
        )
        .await;
        refused(
            &mut owner,
            json!({"type": "read", "id": format!("read{id}"), "dialog_id": id}),
            "not_found",
            &format!("read dialog {id}"),
        )
        .await;
    }
    // An operator may not hand their dialog to someone else.
    refused(
        &mut owner,
        json!({"type": "assign", "id": "give", "dialog_id": d, "user_id": w.op3.id}),
        "forbidden",
        "an operator assigns to a colleague",
    )
    .await;
    // A user that does not exist.
    refused(
        &mut owner,
        json!({"type": "assign", "id": "nobody", "dialog_id": d, "user_id": 999_999}),
        "not_found",
        "assign to nobody",
    )
    .await;
    // Offline is not a status one chooses.
    let v = refused(
        &mut owner,
        json!({"type": "presence", "id": "off", "status": "offline"}),
        "invalid",
        "presence offline",
    )
    .await;
    assert_eq!(v["field"], "status", "{v}");

    assert_eq!(
        app.last_seq().await,
        before,
        "refused commands store nothing"
    );
    assert_eq!(w.counts().await, counts);
    let (_, dialog_after) = app
        .get(Some(&app.admin), &format!("/api/v1/dialogs/{}", w.dialog))
        .await;
    assert_eq!(dialog_after, dialog_before, "the dialog is unchanged");
    // The owner got no event from any of it (no typing, no message, no transfer).
    quiet(&mut owner, "the owner's dialog").await;
    alive(&mut owner, "owner").await;
    w.keepers_alive().await;
}

#[tokio::test]
async fn sends_with_a_bad_client_msg_id_or_no_content_are_invalid() {
    let mut w = world().await;
    let (mut ws, _) = Ws::operator(&w.app, &w.op1).await;
    let before = w.app.last_seq().await;
    let messages = w.messages(w.dialog).await.len();
    let d = w.dialog;
    let ok_text = "Ответ";
    #[rustfmt::skip]
    let bad_keys: Vec<(&str, String)> = vec![
        ("empty", String::new()),
        ("65 characters", "k".repeat(65)),
        ("a space inside", "a b".into()),
        ("a leading space", " ab".into()),
        ("a trailing newline", "ab\n".into()),
        ("a slash", "a/b".into()),
        ("a NUL", "a\u{0}b".into()),
        ("non-ASCII letters", "ключ".into()),
        ("non-ASCII digits", "١٢٣".into()),
        ("an emoji", "a😀".into()),
        ("32 two-byte letters (64 bytes)", "я".repeat(32)),
    ];
    for (what, key) in bad_keys {
        let v = refused(
            &mut ws,
            json!({"type": "send", "id": what, "dialog_id": d, "client_msg_id": key, "text": ok_text}),
            "invalid",
            what,
        )
        .await;
        assert_eq!(v["field"], "client_msg_id", "{what}: {v}");
    }
    alive(&mut ws, "after bad keys").await;

    // No content: the command is refused, whatever the key.
    let att = |name: &str, url: &str| json!({"name": name, "mime_type": "image/png", "size": 1, "url": url});
    #[rustfmt::skip]
    let no_content: Vec<(&str, Value)> = vec![
        ("neither text nor attachments", json!({})),
        ("null text", json!({"text": null})),
        ("empty text", json!({"text": ""})),
        ("blank text", json!({"text": " \n\t "})),
        ("empty attachments", json!({"attachments": []})),
        ("text with a control character", json!({"text": "a\u{1b}[31mb"})),
        ("text with a NUL", json!({"text": "a\u{0}b"})),
        ("an attachment without a name", json!({"attachments": [att("", "https://f.example/a")]})),
        ("an attachment without a url", json!({"attachments": [att("a.png", " ")]})),
        ("21 attachments", json!({"attachments": vec![att("a.png", "https://f.example/a"); 21]})),
    ];
    for (i, (what, extra)) in no_content.into_iter().enumerate() {
        let mut frame =
            json!({"type": "send", "id": what, "dialog_id": d, "client_msg_id": format!("nc-{i}")});
        for (k, v) in extra.as_object().expect("object") {
            frame[k] = v.clone();
        }
        let v = refused(&mut ws, frame, "invalid", what).await;
        assert!(v["field"].is_string(), "{what}: names the field: {v}");
    }
    alive(&mut ws, "after no content").await;
    assert_eq!(w.app.last_seq().await, before, "nothing was stored");
    assert_eq!(w.messages(w.dialog).await.len(), messages);

    // The refused keys are still free: a valid send with one of the same frames' keys works.
    ws.send(json!({"type": "send", "id": "ok", "dialog_id": d, "client_msg_id": "nc-0", "text": ok_text}))
        .await;
    let ack = reply(&mut ws).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(ack["duplicate"], false, "{ack}");
    // 64 characters of the allowed alphabet is the longest key.
    let key64 = format!("{}-_.:", "A1".repeat(30));
    assert_eq!(key64.len(), 64);
    ws.send(json!({"type": "send", "id": "ok64", "dialog_id": d, "client_msg_id": key64, "text": ok_text}))
        .await;
    let ack = reply(&mut ws).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    assert_eq!(w.messages(w.dialog).await.len(), messages + 2);
    w.keepers_alive().await;
}

/// A `send` without content is refused naming the frame's field, `text`.
#[tokio::test]
async fn a_send_without_text_names_the_text_field() {
    let w = world().await;
    let (mut ws, _) = Ws::operator(&w.app, &w.op1).await;
    let v = refused(
        &mut ws,
        json!({"type": "send", "id": 1, "dialog_id": w.dialog, "client_msg_id": "empty", "text": " "}),
        "invalid",
        "blank text",
    )
    .await;
    assert_eq!(v["field"], "text", "{v}");
}

#[tokio::test]
async fn the_same_client_msg_id_twice_stores_one_message() {
    let mut w = world().await;
    // A second dialog of op1's (another customer).
    let (status, out) = ingest(
        &w.app,
        &w.key,
        &inbound("m-9", "t-9", "+7 916 999-99-99", "Второй клиент"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    // Round robin gives it to op3; Sales' dialogs are shared, so op1 may write in it.
    assert_eq!(out["dialog"]["shared"], true, "{out}");
    let other = out["dialog"]["id"].as_i64().expect("dialog");

    let (mut ws, _) = Ws::operator(&w.app, &w.op1).await;
    let d = w.dialog;
    ws.send(json!({"type": "send", "id": 1, "dialog_id": d, "client_msg_id": "retry-1", "text": "Первый"}))
        .await;
    let first = reply(&mut ws).await;
    assert_eq!(first["type"], "ack", "{first}");
    assert_eq!(first["duplicate"], false, "{first}");
    assert_eq!(first["delivery_status"], "pending", "{first}");
    let id = first["message_id"].as_i64().expect("message id");
    let before = w.app.last_seq().await;
    let messages = w.messages(d).await.len();

    // The same key again, even with other text, from a new connection (a retry after a
    // reconnect): the stored message, marked duplicate.
    let (mut ws2, _) = Ws::operator(&w.app, &w.op1).await;
    for (n, sock) in [(2, &mut ws), (3, &mut ws2)] {
        sock.send(json!({"type": "send", "id": n, "dialog_id": d, "client_msg_id": "retry-1", "text": "Другой текст"}))
            .await;
        let again = reply(sock).await;
        assert_eq!(again["type"], "ack", "{again}");
        assert_eq!(again["id"], n);
        assert_eq!(again["duplicate"], true, "{again}");
        assert_eq!(again["message_id"], id, "{again}");
    }
    assert_eq!(w.app.last_seq().await, before, "a duplicate stores nothing");
    let list = w.messages(d).await;
    assert_eq!(list.len(), messages);
    assert_eq!(
        list.iter().filter(|m| m["body"] == "Первый").count(),
        1,
        "one message, with the first text"
    );
    assert!(!list.iter().any(|m| m["body"] == "Другой текст"));

    // The same key in another dialog of the same channel is a conflict, and stores nothing.
    refused(
        &mut ws,
        json!({"type": "send", "id": 4, "dialog_id": other, "client_msg_id": "retry-1", "text": "Не туда"}),
        "conflict",
        "the key of a message of another dialog",
    )
    .await;
    assert_eq!(w.app.last_seq().await, before);
    assert_eq!(w.messages(other).await.len(), 1);
    // Keys are per operator: op3 (who may write in this shared dialog) using the same key
    // stores a message of their own.
    let (mut op3, _) = Ws::operator(&w.app, &w.op3).await;
    op3.send(json!({"type": "send", "id": 5, "dialog_id": d, "client_msg_id": "retry-1", "text": "От коллеги"}))
        .await;
    let theirs = reply(&mut op3).await;
    assert_eq!(theirs["type"], "ack", "{theirs}");
    assert_eq!(theirs["duplicate"], false, "{theirs}");
    assert_ne!(theirs["message_id"], id);
    alive(&mut ws, "after duplicates").await;
    w.keepers_alive().await;
}

// ---------------------------------------------------------------------------------------
// The ingest endpoint.
// ---------------------------------------------------------------------------------------

const EVENTS: &str = "/api/v1/connectors/site/events";
const BATCH: &str = "/api/v1/connectors/site/events/batch";

/// `(what, path, body, status, code, field)` of a refused ingest request.
type IngestCase<'a> = (
    &'a str,
    &'a str,
    Value,
    StatusCode,
    &'a str,
    Option<&'a str>,
);

/// A valid inbound message event with `f` applied.
fn event_with(f: impl FnOnce(&mut Value)) -> Value {
    let mut e = inbound("bad-1", "bad-thread", "+7 903 000-00-01", "Здравствуйте");
    f(&mut e);
    e
}

/// Sends `body` (JSON or raw bytes) to `path` as `who`.
async fn post_raw(
    app: &TestApp,
    who: Option<&Principal>,
    path: &str,
    body: &[u8],
) -> (StatusCode, Value) {
    app.raw(Method::POST, who, path, "application/json", body.to_vec())
        .await
}

#[tokio::test]
async fn ingest_rejects_bad_events_and_stores_nothing() {
    let w = world().await;
    let app = &w.app;
    let key = &w.key;
    let before = app.last_seq().await;
    let counts = w.counts().await;

    let ident = |i: usize| json!({"kind": "phone", "value": format!("+7 903 000-{:02}-{:02}", i / 100, i % 100)});
    let att = json!({"name": "a.png", "mime_type": "image/png", "size": 1, "url_or_ref": "file:1"});
    #[rustfmt::skip]
    let json_cases: Vec<IngestCase> = vec![
        // Shape.
        ("an array", EVENTS, json!([]), S422, "invalid_type", None),
        ("an empty object", EVENTS, json!({}), S422, "missing_field", None),
        ("no kind", EVENTS, event_with(|e| { e.as_object_mut().expect("obj").remove("kind"); }), S422, "missing_field", None),
        ("no occurred_at", EVENTS, event_with(|e| { e.as_object_mut().expect("obj").remove("occurred_at"); }), S422, "missing_field", None),
        ("an unknown kind", EVENTS, event_with(|e| e["kind"]["type"] = json!("fax")), S422, "invalid_value", None),
        ("occurred_at not a time", EVENTS, event_with(|e| e["occurred_at"] = json!("yesterday")), S422, "invalid_value", None),
        ("occurred_at a number", EVENTS, event_with(|e| e["occurred_at"] = json!(1_700_000_000)), S422, "invalid_type", None),
        ("text a number", EVENTS, event_with(|e| e["kind"]["text"] = json!(5)), S422, "invalid_type", None),
        ("an unknown identity kind", EVENTS, event_with(|e| e["kind"]["sender"]["identities"][0]["kind"] = json!("fax")), S422, "invalid_value", None),
        ("external_id a number", EVENTS, event_with(|e| e["external_id"] = json!(1)), S422, "invalid_type", None),
        ("connector_id null", EVENTS, event_with(|e| e["connector_id"] = Value::Null), S422, "invalid_type", None),
        // The connector.
        ("another connector in the body", EVENTS, event_with(|e| e["connector_id"] = json!("other")), S422, "invalid_value", Some("connector_id")),
        ("the connector in other case", EVENTS, event_with(|e| e["connector_id"] = json!("SITE")), S422, "invalid_value", Some("connector_id")),
        ("an unknown connector", "/api/v1/connectors/nope/events", event_with(|e| e["connector_id"] = json!("nope")), S404, "not_found", None),
        ("an unknown connector, body says site", "/api/v1/connectors/nope/events", event_with(|_| {}), S422, "invalid_value", Some("connector_id")),
        // external_id and thread_id.
        ("an empty external_id", EVENTS, event_with(|e| e["external_id"] = json!("")), S422, "invalid_external_id", Some("external_id")),
        ("a blank external_id", EVENTS, event_with(|e| e["external_id"] = json!(" \t ")), S422, "invalid_external_id", Some("external_id")),
        ("a NUL in external_id", EVENTS, event_with(|e| e["external_id"] = json!("a\u{0}b")), S422, "invalid_external_id", Some("external_id")),
        ("a newline in external_id", EVENTS, event_with(|e| e["external_id"] = json!("a\nb")), S422, "invalid_external_id", Some("external_id")),
        ("an escape in external_id", EVENTS, event_with(|e| e["external_id"] = json!("ab\u{1b}[31m")), S422, "invalid_external_id", Some("external_id")),
        ("a C1 control in external_id", EVENTS, event_with(|e| e["external_id"] = json!("a\u{85}b")), S422, "invalid_external_id", Some("external_id")),
        ("external_id of 257 bytes", EVENTS, event_with(|e| e["external_id"] = json!("x".repeat(257))), S422, "invalid_external_id", Some("external_id")),
        ("external_id of 129 two-byte letters", EVENTS, event_with(|e| e["external_id"] = json!("я".repeat(129))), S422, "invalid_external_id", Some("external_id")),
        ("an empty thread_id", EVENTS, event_with(|e| e["kind"]["thread_id"] = json!("")), S422, "invalid_external_id", Some("thread_id")),
        ("a control character in thread_id", EVENTS, event_with(|e| e["kind"]["thread_id"] = json!("t\u{7}")), S422, "invalid_external_id", Some("thread_id")),
        ("thread_id of 257 bytes", EVENTS, event_with(|e| e["kind"]["thread_id"] = json!("t".repeat(257))), S422, "invalid_external_id", Some("thread_id")),
        // Content.
        ("text over the limit", EVENTS, event_with(|e| e["kind"]["text"] = json!("ж".repeat(100_001))), S422, "too_long", Some("text")),
        ("a control character in text", EVENTS, event_with(|e| e["kind"]["text"] = json!("a\u{0}b")), S422, "invalid_characters", Some("text")),
        ("neither text nor attachments", EVENTS, event_with(|e| e["kind"]["text"] = Value::Null), S422, "required", Some("text")),
        ("blank text", EVENTS, event_with(|e| e["kind"]["text"] = json!("  \n ")), S422, "required", Some("text")),
        ("21 attachments", EVENTS, event_with(|e| e["kind"]["attachments"] = json!(vec![att.clone(); 21])), S422, "too_many", Some("attachments")),
        ("21 identities", EVENTS, event_with(|e| e["kind"]["sender"]["identities"] = json!((0..21).map(ident).collect::<Vec<_>>())), S422, "too_many", Some("sender.identities")),
        ("a display name over 200", EVENTS, event_with(|e| e["kind"]["sender"]["display_name"] = json!("ж".repeat(201))), S422, "too_long", Some("display_name")),
        // Batches.
        ("a batch that is not an object", BATCH, json!([event_with(|_| {})]), S422, "invalid_type", None),
        ("a batch without events", BATCH, json!({}), S422, "missing_field", Some("events")),
        ("a batch with an unknown field", BATCH, json!({"events": [], "dry_run": true}), S422, "unknown_field", None),
        ("a batch of 501 events", BATCH, json!({"events": (0..501).map(|i| event_with(|e| e["external_id"] = json!(format!("b-{i}")))).collect::<Vec<_>>()}), S422, "too_many", Some("events")),
        ("a batch with one foreign connector", BATCH, json!({"events": (0..5).map(|i| event_with(|e| {
            e["external_id"] = json!(format!("c-{i}"));
            if i == 3 { e["connector_id"] = json!("other"); }
        })).collect::<Vec<_>>()}), S422, "invalid_value", Some("events.3.connector_id")),
        ("a batch with one malformed event", BATCH, json!({"events": [event_with(|_| {}), {"connector_id": "site"}]}), S422, "missing_field", None),
    ];
    let n = json_cases.len();
    for (what, path, body, status, code, field) in json_cases {
        let got = post_raw(app, Some(key), path, body.to_string().as_bytes()).await;
        assert_eq!(
            (got.0, got.1["error"]["code"].as_str()),
            (status, Some(code)),
            "{what}: {}",
            got.1
        );
        assert_error(&got, status, code, field);
        assert_eq!(app.last_seq().await, before, "{what}: nothing stored");
    }

    // Not JSON at all.
    #[rustfmt::skip]
    let raw_cases: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", br#"{"connector_id":"site","#.to_vec()),
        ("empty", Vec::new()),
        ("blank", b"  \n".to_vec()),
        ("not JSON", b"connector_id=site".to_vec()),
        ("invalid UTF-8", b"{\"connector_id\":\"\xff\"}".to_vec()),
        ("trailing garbage", format!("{} x", event_with(|_| {})).into_bytes()),
        ("two documents", format!("{0}{0}", event_with(|_| {})).into_bytes()),
    ];
    for (what, body) in &raw_cases {
        for path in [EVENTS, BATCH] {
            let got = post_raw(app, Some(key), path, body).await;
            assert_error(&got, S400, "malformed_json", None);
            assert_eq!(
                app.last_seq().await,
                before,
                "{what} on {path}: nothing stored"
            );
        }
    }
    // A body over the server's limit.
    let mut huge = event_with(|_| {});
    huge["kind"]["text"] = json!("x".repeat(1024 * 1024));
    let got = post_raw(app, Some(key), EVENTS, huge.to_string().as_bytes()).await;
    assert_eq!(got.0, StatusCode::PAYLOAD_TOO_LARGE, "{}", got.1);

    assert_eq!(app.last_seq().await, before, "nothing was stored");
    assert_eq!(w.counts().await, counts, "no dialog, lead or message");
    // The endpoint still takes a good event.
    let (status, out) = ingest(app, key, &event_with(|_| {})).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["status"], "stored", "{out}");
    eprintln!(
        "{} bad ingest bodies refused on {}",
        n + raw_cases.len() * 2 + 1,
        backend_name()
    );
}

#[tokio::test]
async fn ingest_needs_an_api_key_with_dialogs_write() {
    let w = world().await;
    let app = &w.app;
    let body = event_with(|_| {});
    let read_only = app
        .api_key(&[Scope::DialogsRead, Scope::ClientsWrite])
        .await;
    let before = app.last_seq().await;
    let counts = w.counts().await;
    let (prefix, _) = w.key.token.split_once('.').expect("key");
    let forged = Principal {
        id: 0,
        token: format!("{prefix}.{}", "B".repeat(43)),
    };
    let stranger = Principal {
        id: 0,
        token: "not-a-token".into(),
    };
    for path in [EVENTS, BATCH] {
        let body = if path == BATCH {
            json!({"events": [body.clone()]})
        } else {
            body.clone()
        };
        let got = app.post(None, path, &body).await;
        assert_error(&got, StatusCode::UNAUTHORIZED, "unauthenticated", None);
        let got = app.post(Some(&stranger), path, &body).await;
        assert_error(&got, StatusCode::UNAUTHORIZED, "unauthenticated", None);
        let got = app.post(Some(&forged), path, &body).await;
        assert_error(&got, StatusCode::UNAUTHORIZED, "unauthenticated", None);
        let got = app.post(Some(&read_only), path, &body).await;
        assert_error(&got, StatusCode::FORBIDDEN, "forbidden", None);
        // Bad credentials are checked before the body.
        let got = post_raw(app, None, path, b"{").await;
        assert_error(&got, StatusCode::UNAUTHORIZED, "unauthenticated", None);
        let got = post_raw(app, Some(&read_only), path, b"{").await;
        assert_error(&got, StatusCode::FORBIDDEN, "forbidden", None);
    }
    assert_eq!(app.last_seq().await, before, "nothing stored");
    assert_eq!(w.counts().await, counts);
}

/// Inbound events come from channels (API keys): an operator's session cannot post them
/// (it would forge a customer's message).
#[tokio::test]
async fn ingest_refuses_user_sessions() {
    let w = world().await;
    let app = &w.app;
    let before = app.last_seq().await;
    for who in [&w.op1, &w.op2] {
        let got = app
            .post(
                Some(who),
                EVENTS,
                &event_with(|e| e["external_id"] = json!(format!("forged-{}", who.id))),
            )
            .await;
        assert_eq!(got.0, StatusCode::FORBIDDEN, "{}", got.1);
    }
    assert_eq!(app.last_seq().await, before, "nothing stored");
}

/// An outbound message of op1's in the world's dialog, to aim delivery reports at.
async fn outbound_message(w: &World) -> (Ws, i64) {
    let (mut ws, _) = Ws::operator(&w.app, &w.op1).await;
    ws.send(json!({"type": "send", "id": 1, "dialog_id": w.dialog, "client_msg_id": "out-1", "text": "Ответ"}))
        .await;
    let ack = reply(&mut ws).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    (ws, ack["message_id"].as_i64().expect("message id"))
}

/// An inbound event of `site` with `kind`.
fn site_event(external_id: &str, kind: Value) -> Value {
    json!({"connector_id": "site", "external_id": external_id, "occurred_at": "2026-11-29T10:00:00Z", "kind": kind})
}

#[tokio::test]
async fn ingest_refuses_control_characters_in_delivery_reports() {
    let w = world().await;
    let app = &w.app;
    let (mut ws, out_id) = outbound_message(&w).await;
    // The channel took it as `ext-out-1`.
    let (status, out) = ingest(
        app,
        &w.key,
        &site_event(
            "ack-1",
            json!({"type": "outbound_ack", "message_id": out_id, "external_id": "ext-out-1"}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let before = app.last_seq().await;
    #[rustfmt::skip]
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        ("a failure reason with NUL", site_event("cc-1", json!({"type": "outbound_failed", "message_id": out_id, "reason": "blocked\u{0}"})), "invalid_characters", "error"),
        ("a failed report's reason with an escape", site_event("cc-2", json!({"type": "delivery_status", "message_external_id": "ext-out-1", "status": {"type": "failed", "reason": "\u{1b}[31m"}})), "invalid_characters", "error"),
        ("an ack with a NUL channel id", site_event("cc-3", json!({"type": "outbound_ack", "message_id": out_id, "external_id": "ext\u{0}1"})), "invalid_external_id", "external_id"),
        ("an ack with an empty channel id", site_event("cc-4", json!({"type": "outbound_ack", "message_id": out_id, "external_id": ""})), "invalid_external_id", "external_id"),
        ("an ack with a channel id of 257 bytes", site_event("cc-5", json!({"type": "outbound_ack", "message_id": out_id, "external_id": "e".repeat(257)})), "invalid_external_id", "external_id"),
    ];
    for (what, body, code, field) in cases {
        let got = ingest(app, &w.key, &body).await;
        assert!(
            got.0 == S422 && got.1["error"]["code"] == code,
            "{what}: {} {}",
            got.0,
            got.1
        );
        assert_error(&got, S422, code, Some(field));
        assert_eq!(app.last_seq().await, before, "{what}: nothing stored");
    }
    // The message is still as the ack left it: no report was applied.
    let list = w.messages(w.dialog).await;
    let m = list.iter().find(|m| m["id"] == out_id).expect("the reply");
    assert_eq!(m["delivery_status"], "sent", "{m}");
    assert_eq!(m["provider_message_id"], "ext-out-1", "{m}");
    assert!(m["delivery_error"].is_null(), "{m}");
    alive(&mut ws, "after the reports").await;
}

/// Regression: a NUL byte in a delivery report's `message_external_id` or a typing event's
/// `thread_id` reached PostgreSQL and came back as 500; every channel id is now checked like
/// the event's own key.
#[tokio::test]
async fn ingest_ids_with_nul_bytes_are_not_server_errors() {
    let w = world().await;
    let app = &w.app;
    let sender = json!({"identities": [{"kind": "phone", "value": "+7 916 123-45-67"}], "display_name": null});
    #[rustfmt::skip]
    let cases: Vec<(&str, Value)> = vec![
        ("a delivery report for a message id with NUL", site_event("nul-1", json!({"type": "delivery_status", "message_external_id": "m\u{0}1", "status": {"type": "read"}}))),
        ("typing in a thread with NUL", site_event("nul-2", json!({"type": "typing", "thread_id": "t\u{0}1", "sender": sender}))),
    ];
    let before = app.last_seq().await;
    let mut failures = Vec::new();
    for (what, body) in cases {
        let (status, out) = ingest(app, &w.key, &body).await;
        if status.is_server_error() {
            failures.push(format!("{what}: {status} {out}"));
        }
    }
    assert!(
        failures.is_empty(),
        "on {}:\n{}",
        backend_name(),
        failures.join("\n")
    );
    assert_eq!(app.last_seq().await, before, "nothing stored");
}

/// Inbound attachments are checked like the REST API's (name, MIME type, URL).
#[tokio::test]
async fn ingest_validates_attachments_like_the_rest_api() {
    let w = world().await;
    let app = &w.app;
    let att = |name: &str, mime: &str, url: &str| json!({"name": name, "mime_type": mime, "size": 1, "url_or_ref": url});
    let long_url = format!("https://files.example/{}", "a".repeat(3000));
    #[rustfmt::skip]
    let cases: Vec<(&str, Value, &str)> = vec![
        ("an empty name", att("", "image/png", "file:1"), "attachments.0.name"),
        ("a NUL in the name", att("a\u{0}.png", "image/png", "file:1"), "attachments.0.name"),
        ("an empty MIME type", att("a.png", "", "file:1"), "attachments.0.mime_type"),
        ("an empty url", att("a.png", "image/png", " "), "attachments.0.url"),
        ("a url over 2048", att("a.png", "image/png", &long_url), "attachments.0.url"),
    ];
    let before = app.last_seq().await;
    let mut stored = Vec::new();
    for (i, (what, a, field)) in cases.into_iter().enumerate() {
        let body = event_with(|e| {
            e["external_id"] = json!(format!("att-{i}"));
            e["kind"]["text"] = Value::Null;
            e["kind"]["attachments"] = json!([a]);
        });
        let got = ingest(app, &w.key, &body).await;
        if got.0 != S422 || got.1["error"]["field"] != field {
            stored.push(format!("{what}: {} {}", got.0, got.1["status"]));
        }
    }
    assert!(
        stored.is_empty(),
        "refused as 422 with the field, like REST:\n{}",
        stored.join("\n")
    );
    assert_eq!(app.last_seq().await, before, "nothing stored");
}

#[tokio::test]
async fn batch_errors_store_none_of_the_batch() {
    let w = world().await;
    let app = &w.app;
    let before = app.last_seq().await;
    let counts = w.counts().await;
    // Refused as a whole: the good events before the bad one are not stored either.
    let events: Vec<Value> = (0..4)
        .map(|i| {
            event_with(|e| {
                e["external_id"] = json!(format!("whole-{i}"));
                e["kind"]["thread_id"] = json!(format!("whole-thread-{i}"));
                if i == 2 {
                    e["connector_id"] = json!("elsewhere");
                }
            })
        })
        .collect();
    let got = app
        .post(Some(&w.key), BATCH, &json!({"events": events}))
        .await;
    assert_error(&got, S422, "invalid_value", Some("events.2.connector_id"));
    assert_eq!(app.last_seq().await, before);
    assert_eq!(w.counts().await, counts);

    // Each event refused on its own: 200 with an error per item, and nothing stored.
    let bad: Vec<Value> = vec![
        event_with(|e| e["external_id"] = json!("")),
        event_with(|e| {
            e["external_id"] = json!("b2");
            e["kind"]["text"] = json!("ж".repeat(100_001));
        }),
        event_with(|e| {
            e["external_id"] = json!("b3");
            e["kind"]["sender"]["identities"] =
                json!(vec![json!({"kind": "email", "value": "a@b.example"}); 21]);
        }),
    ];
    let (status, items) = app.post(Some(&w.key), BATCH, &json!({"events": bad})).await;
    assert_eq!(status, StatusCode::OK, "{items}");
    let items = items.as_array().expect("items").clone();
    assert_eq!(items.len(), 3);
    for item in &items {
        assert!(item["error"]["code"].is_string(), "{item}");
        assert!(item.get("outcome").is_none(), "{item}");
    }
    assert_eq!(app.last_seq().await, before, "nothing stored");
    assert_eq!(w.counts().await, counts);
}

const S400: StatusCode = StatusCode::BAD_REQUEST;
const S404: StatusCode = StatusCode::NOT_FOUND;
const S422: StatusCode = StatusCode::UNPROCESSABLE_ENTITY;
