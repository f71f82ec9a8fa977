//! Replay: the fixture events posted over loopback HTTP to the Callback API route, and a
//! fake VK API (axum on 127.0.0.1:0) serving `messages.send`, the Long Poll server and
//! the document upload, all through the real `routes` and `run`.

#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use kommutator_sdk::testing::http_request;
use kommutator_sdk::{
    Attachment, Connector, ConnectorContext, ConnectorError, DeliveryState, InboundEvent,
    InboundKind, OutboundMessage, TestHarness,
};
use kommutator_vk::{random_id, Config, Vk, MAX_BODY_BYTES, TS_KEY};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tower::ServiceExt;

const GROUP: u64 = 218_000_001;
const SECRET: &str = "test-callback-secret";
const CONFIRM: &str = "5d7f1c2e";
const WAIT: Duration = Duration::from_secs(5);
const ID: &str = "vk_test";

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read_to_string(path).unwrap()
}

#[derive(Default)]
struct FakeState {
    addr: Option<SocketAddr>,
    sends: Vec<HashMap<String, String>>,
    send_script: VecDeque<Value>,
    lp_servers: usize,
    lp_script: VecDeque<Value>,
    lp_requests: Vec<HashMap<String, String>>,
    uploads: Vec<Vec<u8>>,
    saves: Vec<HashMap<String, String>>,
}

type Fake = Arc<Mutex<FakeState>>;

fn form(body: &Bytes) -> HashMap<String, String> {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn messages_send(State(f): State<Fake>, body: Bytes) -> Json<Value> {
    let mut s = f.lock().unwrap();
    let params = form(&body);
    assert_eq!(params.get("v").map(String::as_str), Some("5.199"));
    assert_eq!(
        params.get("access_token").map(String::as_str),
        Some("test-token")
    );
    s.sends.push(params);
    let n = s.sends.len();
    Json(
        s.send_script
            .pop_front()
            .unwrap_or_else(|| json!({"response": 1000 + n})),
    )
}

async fn get_lp_server(State(f): State<Fake>, body: Bytes) -> Json<Value> {
    let mut s = f.lock().unwrap();
    assert_eq!(
        form(&body).get("group_id").map(String::as_str),
        Some("218000001")
    );
    s.lp_servers += 1;
    let addr = s.addr.unwrap();
    Json(json!({"response": {
        "key": format!("key{}", s.lp_servers),
        "server": format!("http://{addr}/lp"),
        "ts": (s.lp_servers * 1000).to_string()
    }}))
}

async fn lp(State(f): State<Fake>, Query(q): Query<HashMap<String, String>>) -> Json<Value> {
    let next = {
        let mut s = f.lock().unwrap();
        assert_eq!(q.get("act").map(String::as_str), Some("a_check"));
        s.lp_requests.push(q.clone());
        s.lp_script.pop_front()
    };
    match next {
        Some(v) => Json(v),
        None => {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Json(json!({"ts": q.get("ts").cloned().unwrap_or_default(), "updates": []}))
        }
    }
}

async fn upload_server(State(f): State<Fake>, body: Bytes) -> Json<Value> {
    let p = form(&body);
    assert_eq!(p.get("type").map(String::as_str), Some("doc"));
    let addr = f.lock().unwrap().addr.unwrap();
    Json(json!({"response": {"upload_url": format!("http://{addr}/upload?srv=1")}}))
}

async fn upload(State(f): State<Fake>, body: Bytes) -> Json<Value> {
    f.lock().unwrap().uploads.push(body.to_vec());
    Json(json!({"file": "uploaded-file-token"}))
}

async fn docs_save(State(f): State<Fake>, body: Bytes) -> Json<Value> {
    f.lock().unwrap().saves.push(form(&body));
    Json(
        json!({"response": {"type": "doc", "doc": {"id": 77, "owner_id": 745120033, "title": "offer.pdf"}}}),
    )
}

async fn file(axum::extract::Path(name): axum::extract::Path<String>) -> Vec<u8> {
    match name.as_str() {
        "price-list.pdf" => vec![b'%'; 4096],
        other => other.as_bytes().to_vec(),
    }
}

async fn fake_vk() -> (SocketAddr, Fake) {
    let state: Fake = Arc::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    state.lock().unwrap().addr = Some(addr);
    let router = Router::new()
        .route("/method/messages.send", post(messages_send))
        .route("/method/groups.getLongPollServer", post(get_lp_server))
        .route("/method/docs.getMessagesUploadServer", post(upload_server))
        .route("/method/docs.save", post(docs_save))
        .route("/upload", post(upload))
        .route("/lp", get(lp))
        .route("/files/{name}", get(file))
        .with_state(state.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (addr, state)
}

fn connector(api: SocketAddr, extra: Value) -> Vk {
    let mut cfg = json!({
        "group_id": GROUP,
        "access_token": "test-token",
        "api_url": format!("http://{api}/method"),
        "confirmation": CONFIRM,
        "secret": SECRET,
        "max_file_bytes": 1024,
    });
    if let (Value::Object(c), Value::Object(e)) = (&mut cfg, extra) {
        c.extend(e);
    }
    let config: Config = serde_json::from_value(cfg).unwrap();
    Vk::new(config)
        .unwrap()
        .with_retry_base(Duration::from_millis(10))
}

/// A callback-mode instance: its routes served on loopback, `run` spawned.
struct Callback {
    addr: SocketAddr,
    router: Router,
    hub: TestHarness,
    task: tokio::task::JoinHandle<Result<(), ConnectorError>>,
}

async fn start_callback(api: SocketAddr) -> Callback {
    let vk = connector(api, json!({}));
    let (ctx, hub) = ConnectorContext::for_test(ID);
    let router = vk.routes(&ctx).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = router.clone();
    tokio::spawn(async move { axum::serve(listener, served).await });
    let task = tokio::spawn(vk.run(ctx));
    Callback {
        addr,
        router,
        hub,
        task,
    }
}

async fn post_body(addr: SocketAddr, body: &str) -> (u16, String) {
    http_request(
        addr,
        "POST",
        "/",
        &[("Content-Type", "application/json")],
        body,
    )
    .await
    .unwrap()
}

fn with_fake(body: &str, api: SocketAddr) -> String {
    body.replace("http://FAKE", &format!("http://{api}"))
}

fn message(ev: &InboundEvent) -> &kommutator_sdk::InboundMessage {
    match &ev.kind {
        InboundKind::Message(m) => m,
        other => panic!("not a message: {other:?}"),
    }
}

fn outbound(id: i64, thread: &str, text: &str) -> OutboundMessage {
    OutboundMessage {
        id,
        connector_id: kommutator_sdk::ConnectorId::new(ID),
        thread_id: thread.to_owned(),
        to: None,
        subject: None,
        text: Some(text.to_owned()),
        attachments: vec![],
        reply_to_external_id: None,
    }
}

async fn stop(mut cb: Callback) {
    cb.hub.shutdown();
    tokio::time::timeout(WAIT, &mut cb.task)
        .await
        .expect("run stops promptly")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn confirmation_is_answered_with_the_string() {
    let (api, _) = fake_vk().await;
    let mut cb = start_callback(api).await;
    let (status, body) = post_body(cb.addr, &fixture("callback_confirmation.json")).await;
    assert_eq!((status, body.as_str()), (200, CONFIRM));
    // Without the secret too (a server added before the key was set).
    let (status, body) = post_body(
        cb.addr,
        &json!({"type": "confirmation", "group_id": GROUP}).to_string(),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, CONFIRM));
    assert_eq!(cb.hub.try_next_event(), None);
    stop(cb).await;
}

#[tokio::test]
async fn message_new_becomes_a_message_with_files_and_ok() {
    let (api, _) = fake_vk().await;
    let mut cb = start_callback(api).await;
    let body = with_fake(&fixture("callback_message_new.json"), api);
    let (status, resp) = post_body(cb.addr, &body).await;
    assert_eq!((status, resp.as_str()), (200, "ok"));
    let ev = cb.hub.next_event(WAIT).await.unwrap();
    assert_eq!(ev.external_id, "745120033:57");
    assert_eq!(ev.occurred_at.unix_timestamp(), 1_714_566_600);
    let raw = ev.raw.clone().unwrap().to_string();
    assert!(!raw.contains(SECRET), "{raw}");
    let m = message(&ev);
    assert_eq!(m.thread_id, "745120033");
    assert_eq!(m.sender.identities[0].value, "745120033");
    assert_eq!(
        m.text.as_deref(),
        Some("Здравствуйте! Сколько стоит доставка?")
    );
    // Photo (largest size) and voice stored; the 4096-byte doc is over the 1024 limit.
    assert_eq!(m.attachments.len(), 3);
    assert_eq!(m.attachments[0].url_or_ref, "memory:1");
    assert_eq!(m.attachments[0].name, "photo745120033_457239017.jpg");
    assert_eq!(
        m.attachments[1].url_or_ref,
        format!("http://{api}/files/price-list.pdf")
    );
    assert_eq!(m.attachments[1].name, "price-list.pdf");
    assert_eq!(m.attachments[2].url_or_ref, "memory:2");
    assert_eq!(m.attachments[2].mime_type, "audio/ogg");
    let files = cb.hub.files().files();
    assert_eq!(files[0].content, b"photo_w.jpg");
    assert_eq!(files[1].content, b"voice.ogg");

    // A group chat: `id` is 0, the key is still peer + conversation_message_id.
    let (status, _) = post_body(cb.addr, &fixture("callback_message_new_chat.json")).await;
    assert_eq!(status, 200);
    let ev = cb.hub.next_event(WAIT).await.unwrap();
    assert_eq!(ev.external_id, "2000000004:311");
    let m = message(&ev);
    assert_eq!(m.reply_to_external_id.as_deref(), Some("2000000004:310"));
    assert_eq!(m.attachments[0].url_or_ref, "vk:sticker");

    // Another type: Unknown, keyed by event_id.
    let (status, _) = post_body(cb.addr, &fixture("callback_group_join.json")).await;
    assert_eq!(status, 200);
    let ev = cb.hub.next_event(WAIT).await.unwrap();
    assert_eq!(
        ev.external_id,
        "event:0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b"
    );
    assert!(matches!(ev.kind, InboundKind::Unknown { .. }));
    stop(cb).await;
}

#[tokio::test]
async fn bad_input_is_refused_and_nothing_is_sent() {
    let (api, _) = fake_vk().await;
    let mut cb = start_callback(api).await;
    let good: Value = serde_json::from_str(&fixture("callback_message_edit.json")).unwrap();

    let mut bad_secret = good.clone();
    bad_secret["secret"] = json!("test-callback-secreT");
    let (status, body) = post_body(cb.addr, &bad_secret.to_string()).await;
    assert_eq!((status, body.as_str()), (403, "bad secret"));

    let mut no_secret = good.clone();
    no_secret.as_object_mut().unwrap().remove("secret");
    let (status, body) = post_body(cb.addr, &no_secret.to_string()).await;
    assert_eq!((status, body.as_str()), (403, "bad secret"));

    let mut wrong_group = good.clone();
    wrong_group["group_id"] = json!(1);
    let (status, body) = post_body(cb.addr, &wrong_group.to_string()).await;
    assert_eq!((status, body.as_str()), (403, "wrong group_id"));

    let (status, body) = post_body(cb.addr, "{\"type\": \"message_new\",").await;
    assert_eq!(status, 400);
    assert!(body.starts_with("malformed JSON"), "{body}");

    let mut no_ids = good.clone();
    no_ids["object"]
        .as_object_mut()
        .unwrap()
        .remove("conversation_message_id");
    let (status, body) = post_body(cb.addr, &no_ids.to_string()).await;
    assert_eq!(
        (status, body.as_str()),
        (400, "missing field `conversation_message_id`")
    );

    // Over 1 MiB: 413.
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(MAX_BODY_BYTES));
    let resp = cb
        .router
        .clone()
        .oneshot(
            Request::post("/")
                .header("content-type", "application/json")
                .body(Body::from(big))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let text = to_bytes(resp.into_body(), 1024).await.unwrap();
    assert!(String::from_utf8_lossy(&text).contains("larger than"));

    assert_eq!(cb.hub.try_next_event(), None);
    stop(cb).await;
}

#[tokio::test]
async fn replayed_event_id_gives_one_event_and_edit_maps() {
    let (api, _) = fake_vk().await;
    let mut cb = start_callback(api).await;
    let edit = fixture("callback_message_edit.json");
    for _ in 0..2 {
        let (status, body) = post_body(cb.addr, &edit).await;
        assert_eq!((status, body.as_str()), (200, "ok"));
    }
    let ev = cb.hub.next_event(WAIT).await.unwrap();
    assert_eq!(ev.external_id, "745120033:57:edit:1714566720");
    let m = message(&ev);
    assert_eq!(m.edit_of.as_deref(), Some("745120033:57"));
    assert_eq!(
        m.text.as_deref(),
        Some("Здравствуйте! Сколько стоит доставка в Казань?")
    );
    assert_eq!(cb.hub.next_event(Duration::from_millis(200)).await, None);
    stop(cb).await;
}

#[tokio::test]
async fn hub_gone_answers_503() {
    let (api, _) = fake_vk().await;
    let mut cb = start_callback(api).await;
    cb.hub.close_inbound();
    let (status, _) = post_body(cb.addr, &fixture("callback_message_edit.json")).await;
    assert_eq!(status, 503);
    stop(cb).await;
}

#[tokio::test]
async fn outbound_text_is_sent_once_per_id_and_its_echo_is_a_delivery_status() {
    let (api, fake) = fake_vk().await;
    let mut cb = start_callback(api).await;
    cb.hub
        .send_outbound(outbound(7, "745120033", "Доставка — 300 ₽"))
        .await
        .unwrap();
    let ack = cb.hub.next_event(WAIT).await.unwrap();
    assert_eq!(
        ack.kind,
        InboundKind::OutboundAck {
            message_id: 7,
            external_id: "745120033:id:1001".into()
        }
    );
    let rid = random_id(ID, 7);
    {
        let s = fake.lock().unwrap();
        let p = &s.sends[0];
        assert_eq!(p["peer_id"], "745120033");
        assert_eq!(p["message"], "Доставка — 300 ₽");
        assert_eq!(p["random_id"], rid.to_string());
    }

    // The echo VK sends back for our message.
    let echo = fixture("callback_message_reply.json").replace("123456789", &rid.to_string());
    let (status, _) = post_body(cb.addr, &echo).await;
    assert_eq!(status, 200);
    let ev = cb.hub.next_event(WAIT).await.unwrap();
    assert_eq!(
        ev.kind,
        InboundKind::DeliveryStatus {
            message_external_id: "745120033:id:1001".into(),
            status: DeliveryState::Delivered
        }
    );
    assert_eq!(ev.external_id, "745120033:id:1001:delivered");

    // A message an admin typed in VK itself.
    let theirs = fixture("callback_message_reply.json").replace("5e6f", "5e70");
    let (status, _) = post_body(cb.addr, &theirs).await;
    assert_eq!(status, 200);
    let ev = cb.hub.next_event(WAIT).await.unwrap();
    match ev.kind {
        InboundKind::Unknown { description } => {
            assert!(description.contains("outside the hub"), "{description}");
        }
        other => panic!("{other:?}"),
    }
    stop(cb).await;

    // The hub hands the message over again after a restart: same random_id.
    let mut cb = start_callback(api).await;
    cb.hub
        .send_outbound(outbound(7, "745120033", "Доставка — 300 ₽"))
        .await
        .unwrap();
    cb.hub.next_event(WAIT).await.unwrap();
    {
        let s = fake.lock().unwrap();
        assert_eq!(s.sends.len(), 2);
        assert_eq!(s.sends[1]["random_id"], s.sends[0]["random_id"]);
    }
    stop(cb).await;
}

#[tokio::test]
async fn refused_sends_fail_and_transient_ones_are_retried() {
    let (api, fake) = fake_vk().await;
    let mut cb = start_callback(api).await;
    fake.lock().unwrap().send_script = VecDeque::from([
        serde_json::from_str(&fixture("messages_send_error_901.json")).unwrap(),
        json!({"error": {"error_code": 6, "error_msg": "Too many requests per second"}}),
        json!({"response": [{"peer_id": 2000000004_i64, "message_id": 0, "conversation_message_id": 320}]}),
    ]);
    cb.hub
        .send_outbound(outbound(8, "745120099", "hello"))
        .await
        .unwrap();
    let ev = cb.hub.next_event(WAIT).await.unwrap();
    assert_eq!(
        ev.kind,
        InboundKind::OutboundFailed {
            message_id: 8,
            reason: "vk error 901: Can't send messages for users without permission".into()
        }
    );

    let mut reply = outbound(9, "2000000004", "answer");
    reply.reply_to_external_id = Some("2000000004:311".into());
    cb.hub.send_outbound(reply).await.unwrap();
    let ev = cb.hub.next_event(WAIT).await.unwrap();
    assert_eq!(
        ev.kind,
        InboundKind::OutboundAck {
            message_id: 9,
            external_id: "2000000004:320".into()
        }
    );
    {
        let s = fake.lock().unwrap();
        assert_eq!(s.sends.len(), 3, "901 once, 6 then success");
        assert_eq!(s.sends[1]["random_id"], s.sends[2]["random_id"]);
        let fwd: Value = serde_json::from_str(&s.sends[2]["forward"]).unwrap();
        assert_eq!(
            fwd,
            json!({"peer_id": 2000000004_i64, "conversation_message_ids": [311], "is_reply": true})
        );
    }

    // Not a peer id: refused without a call.
    cb.hub
        .send_outbound(outbound(10, "nope", "x"))
        .await
        .unwrap();
    let ev = cb.hub.next_event(WAIT).await.unwrap();
    assert!(matches!(
        ev.kind,
        InboundKind::OutboundFailed { message_id: 10, .. }
    ));

    // A bad token ends run with Auth.
    fake.lock().unwrap().send_script = VecDeque::from([
        json!({"error": {"error_code": 5, "error_msg": "User authorization failed"}}),
    ]);
    cb.hub
        .send_outbound(outbound(11, "745120033", "x"))
        .await
        .unwrap();
    let err = tokio::time::timeout(WAIT, &mut cb.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, ConnectorError::Auth(_)), "{err:?}");
    assert!(!err.to_string().contains("test-token"));
}

#[tokio::test]
async fn hub_files_are_uploaded_as_documents() {
    let (api, fake) = fake_vk().await;
    let mut cb = start_callback(api).await;
    // Put a file in the store the run's context reads from.
    let stored = {
        use kommutator_sdk::FileStore;
        cb.hub
            .files()
            .put("offer.pdf", "application/pdf", b"%PDF-1.4 offer".to_vec())
            .await
            .unwrap()
    };
    let mut msg = outbound(12, "745120033", "see attached");
    msg.attachments = vec![
        stored,
        Attachment {
            name: "site".into(),
            mime_type: "text/html".into(),
            size: None,
            url_or_ref: "https://example.com/offer".into(),
        },
    ];
    cb.hub.send_outbound(msg).await.unwrap();
    let ev = cb.hub.next_event(WAIT).await.unwrap();
    assert!(
        matches!(ev.kind, InboundKind::OutboundAck { message_id: 12, .. }),
        "{ev:?}"
    );
    {
        let s = fake.lock().unwrap();
        let upload = String::from_utf8_lossy(&s.uploads[0]).into_owned();
        assert!(upload.contains("name=\"file\""), "{upload}");
        assert!(upload.contains("filename=\"offer.pdf\""), "{upload}");
        assert!(upload.contains("%PDF-1.4 offer"), "{upload}");
        assert_eq!(s.saves[0]["file"], "uploaded-file-token");
        let p = &s.sends[0];
        assert_eq!(p["attachment"], "doc745120033_77");
        assert_eq!(p["message"], "see attached\nhttps://example.com/offer");
    }
    stop(cb).await;
}

fn lp_connector(api: SocketAddr) -> Vk {
    connector(
        api,
        json!({"mode": "long_poll", "wait_secs": 1, "max_file_bytes": 0}),
    )
}

#[tokio::test]
async fn long_poll_delivers_survives_failures_and_resumes_from_saved_ts() {
    let (api, fake) = fake_vk().await;
    let updates: Value = serde_json::from_str(&fixture("longpoll_updates.json")).unwrap();
    {
        let mut s = fake.lock().unwrap();
        s.lp_script = VecDeque::from([
            json!({"failed": 1, "ts": "1030"}),
            json!({"failed": 2}),
            updates.clone(),
            json!({"failed": 3}),
        ]);
    }
    let (ctx, mut hub) = ConnectorContext::for_test(ID);
    assert!(lp_connector(api).routes(&ctx).is_none());
    let task = tokio::spawn(lp_connector(api).run(ctx));

    let ev = hub.next_event(WAIT).await.unwrap();
    assert_eq!(ev.external_id, "745120033:64");
    assert_eq!(message(&ev).text.as_deref(), Some("Спасибо!"));
    let ev = hub.next_event(WAIT).await.unwrap();
    assert_eq!(
        ev.external_id,
        "event:3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b"
    );
    // failed 3: a new key and ts (the third server's, 3000) are fetched and saved.
    tokio::time::timeout(WAIT, async {
        loop {
            if hub.state().value(TS_KEY).as_deref() == Some("218000001:3000") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("ts 3000 saved after failed 3");
    hub.shutdown();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("run stops promptly")
        .unwrap()
        .unwrap();
    {
        let s = fake.lock().unwrap();
        let seen: Vec<(&str, &str)> = s
            .lp_requests
            .iter()
            .take(4)
            .map(|q| (q["key"].as_str(), q["ts"].as_str()))
            .collect();
        // Start at the server's ts; failed 1 → returned ts; failed 2 → new key, same ts;
        // updates → their ts; failed 3 → new key and ts.
        assert_eq!(
            seen,
            vec![
                ("key1", "1000"),
                ("key1", "1030"),
                ("key2", "1030"),
                ("key2", "1041")
            ]
        );
        assert_eq!(s.lp_requests[4]["key"], "key3");
        assert_eq!(s.lp_requests[4]["ts"], "3000");
    }

    // Restart: the saved ts (3000) wins over the new server's (4000).
    let before = fake.lock().unwrap().lp_requests.len();
    let (ctx, mut hub2) = ConnectorContext::for_test(ID);
    let ctx = ctx.with_state(hub.state().clone());
    let task = tokio::spawn(lp_connector(api).run(ctx));
    tokio::time::timeout(WAIT, async {
        loop {
            if fake.lock().unwrap().lp_requests.len() > before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(fake.lock().unwrap().lp_requests[before]["ts"], "3000");
    assert_eq!(fake.lock().unwrap().lp_requests[before]["key"], "key4");
    hub2.shutdown();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("run stops promptly")
        .unwrap()
        .unwrap();
    assert_eq!(hub2.try_next_event(), None);
}

#[tokio::test]
async fn long_poll_skips_a_replayed_event_and_stops_on_bad_version() {
    let (api, fake) = fake_vk().await;
    let updates: Value = serde_json::from_str(&fixture("longpoll_updates.json")).unwrap();
    let mut again = updates.clone();
    again["ts"] = json!("1042");
    fake.lock().unwrap().lp_script = VecDeque::from([
        updates,
        again,
        json!({"failed": 4, "min_version": 0, "max_version": 3}),
    ]);
    let (ctx, mut hub) = ConnectorContext::for_test(ID);
    let task = tokio::spawn(lp_connector(api).run(ctx));
    let err = tokio::time::timeout(WAIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    match err {
        ConnectorError::Config { field, .. } => assert_eq!(field, "api_version"),
        other => panic!("{other:?}"),
    }
    let mut keys = vec![];
    while let Some(ev) = hub.try_next_event() {
        keys.push(ev.external_id);
    }
    assert_eq!(
        keys,
        vec![
            "745120033:64".to_owned(),
            "event:3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b".to_owned()
        ]
    );
    assert_eq!(hub.state().value(TS_KEY).as_deref(), Some("218000001:1042"));
}

#[tokio::test]
async fn long_poll_bad_token_is_auth_and_shutdown_is_prompt_while_waiting() {
    let (api, _) = fake_vk().await;
    // A token VK refuses: the API answers error 5 on getLongPollServer.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bad = listener.local_addr().unwrap();
    let router = Router::new().route(
        "/method/groups.getLongPollServer",
        post(|| async {
            Json(json!({"error": {"error_code": 5, "error_msg": "User authorization failed: invalid access_token (4)."}}))
        }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    let (ctx, _hub) = ConnectorContext::for_test(ID);
    let err = tokio::time::timeout(WAIT, lp_connector(bad).run(ctx))
        .await
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, ConnectorError::Auth(_)), "{err:?}");

    // Shutdown while a long poll request is waiting.
    let (ctx, hub) = ConnectorContext::for_test(ID);
    let task = tokio::spawn(lp_connector(api).run(ctx));
    tokio::time::sleep(Duration::from_millis(30)).await;
    hub.shutdown();
    tokio::time::timeout(WAIT, task)
        .await
        .expect("run stops promptly")
        .unwrap()
        .unwrap();
}
