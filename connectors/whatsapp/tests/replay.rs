//! Replay: the fixture webhooks, signed as Meta signs them, posted over real loopback HTTP
//! to the connector's router with `run` alive beside it, against a fake Graph API (axum on
//! 127.0.0.1:0) for media; outbound messages through `run` to the same fake; then a
//! clean shutdown. Error paths go through the router with `tower::ServiceExt::oneshot`.

#![allow(clippy::unwrap_used)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use kommutator_sdk::testing::http_request;
use kommutator_sdk::{
    Attachment, Connector, ConnectorContext, ConnectorError, ConnectorId, DeliveryState, FileStore,
    IdentityKind, InboundEvent, InboundKind, InboundMessage, OutboundMessage, PartyIdentity,
    TestHarness,
};
use kommutator_whatsapp::{Config, WhatsApp};
use serde_json::{json, Value};
use sha2::Sha256;
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tower::ServiceExt;

const PNID: &str = "106540352242922";
const TOKEN: &str = "EAAG-test-access-token";
const APP_SECRET: &str = "test-app-secret";
const VERIFY_TOKEN: &str = "test-verify-token";
const CUSTOMER: &str = "16315551234";
const WAIT: Duration = Duration::from_secs(5);
const IMAGE_ID: &str = "1003383421387256";
const DOCUMENT_ID: &str = "1578822629524862";
const IMAGE_BYTES: &[u8] = b"\xff\xd8\xff\xe0 not really a jpeg";
const UPLOADED_ID: &str = "1166846181421424";
const W: &str = "wamid.HBgLMTYzMTU1NTEyMzQVAgASGBQzQTdCRDAxMjM0NTY3ODlBQkNERUYA";
const OUT: &str = "wamid.HBgLMTYzMTU1NTEyMzQVAgARGBJPVVRCT1VORDAwMDAwMDAwMQA=";

// ---------------------------------------------------------------- the fake Graph API

/// One request the fake received.
#[derive(Debug, Clone)]
struct Recorded {
    path: String,
    authorization: String,
    content_type: String,
    body: Vec<u8>,
}

#[derive(Default)]
struct Fake {
    addr: Mutex<Option<SocketAddr>>,
    requests: Mutex<Vec<Recorded>>,
    /// Answers for the next `/messages` calls, before the default success.
    scripted: Mutex<VecDeque<(u16, Value)>>,
    sent: Mutex<u32>,
}

impl Fake {
    fn record(&self, path: String, headers: &HeaderMap, body: &[u8]) {
        let h = |k: &str| {
            headers
                .get(k)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        self.requests.lock().unwrap().push(Recorded {
            path,
            authorization: h("authorization"),
            content_type: h("content-type"),
            body: body.to_vec(),
        });
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    fn script(&self, answers: impl IntoIterator<Item = (u16, Value)>) {
        self.scripted.lock().unwrap().extend(answers);
    }
}

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(path).unwrap()
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

/// The Graph API's answer to a missing or wrong token, if it is.
fn unauthorized(headers: &HeaderMap) -> Option<Response> {
    let ok = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {TOKEN}"));
    (!ok).then(|| {
        (
            StatusCode::UNAUTHORIZED,
            Json(fixture_json("api_error_190.json")),
        )
            .into_response()
    })
}

async fn media_info(
    State(fake): State<Arc<Fake>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    fake.record(format!("GET /v21.0/{id}"), &headers, b"");
    if let Some(r) = unauthorized(&headers) {
        return r;
    }
    let addr = fake.addr.lock().unwrap().unwrap();
    let mut info = fixture_json("api_media_info.json");
    info["id"] = json!(id);
    info["url"] = json!(format!("http://{addr}/lookaside/{id}"));
    match id.as_str() {
        IMAGE_ID => info["file_size"] = json!(IMAGE_BYTES.len().to_string()),
        // Over the instance's max_file_bytes (4096): not downloaded.
        DOCUMENT_ID => {
            info["mime_type"] = json!("application/pdf");
            info["file_size"] = json!(5_000_000);
        }
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": {"message": "(#100) Invalid parameter", "type": "OAuthException", "code": 100}})),
            )
                .into_response()
        }
    }
    Json(info).into_response()
}

async fn download(
    State(fake): State<Arc<Fake>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    fake.record(format!("GET /lookaside/{id}"), &headers, b"");
    if let Some(r) = unauthorized(&headers) {
        return r;
    }
    ([("content-type", "image/jpeg")], IMAGE_BYTES).into_response()
}

async fn messages(
    State(fake): State<Arc<Fake>>,
    Path(pnid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    fake.record(format!("POST /v21.0/{pnid}/messages"), &headers, &body);
    if let Some(r) = unauthorized(&headers) {
        return r;
    }
    if let Some((status, answer)) = fake.scripted.lock().unwrap().pop_front() {
        return (StatusCode::from_u16(status).unwrap(), Json(answer)).into_response();
    }
    let req: Value = serde_json::from_slice(&body).unwrap();
    let n = {
        let mut sent = fake.sent.lock().unwrap();
        *sent += 1;
        *sent
    };
    let mut answer = fixture_json("api_send_ok.json");
    answer["contacts"][0]["input"] = req["to"].clone();
    answer["contacts"][0]["wa_id"] = req["to"].clone();
    answer["messages"][0]["id"] = json!(format!("wamid.OUT-{n}"));
    Json(answer).into_response()
}

async fn upload(
    State(fake): State<Arc<Fake>>,
    Path(pnid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    fake.record(format!("POST /v21.0/{pnid}/media"), &headers, &body);
    if let Some(r) = unauthorized(&headers) {
        return r;
    }
    Json(json!({ "id": UPLOADED_ID })).into_response()
}

async fn start_fake() -> (Arc<Fake>, SocketAddr) {
    let fake = Arc::new(Fake::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    *fake.addr.lock().unwrap() = Some(addr);
    let router = Router::new()
        .route("/v21.0/{id}", get(media_info))
        .route("/v21.0/{pnid}/messages", post(messages))
        .route("/v21.0/{pnid}/media", post(upload))
        .route("/lookaside/{id}", get(download))
        .with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (fake, addr)
}

// ---------------------------------------------------------------- helpers

fn connector(graph: SocketAddr) -> WhatsApp {
    let config: Config = serde_json::from_value(json!({
        "phone_number_id": PNID,
        "access_token": TOKEN,
        "app_secret": APP_SECRET,
        "verify_token": VERIFY_TOKEN,
        "graph_url": format!("http://{graph}/"),
        "max_file_bytes": 4096,
    }))
    .unwrap();
    WhatsApp::new(config)
        .unwrap()
        .with_retry_base(Duration::from_millis(1))
}

/// `sha256=` HMAC of the body with the app secret, computed here as Meta does.
fn sign(body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(APP_SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

async fn post_signed(addr: SocketAddr, body: &[u8]) -> (u16, String) {
    let text = std::str::from_utf8(body).unwrap();
    let sig = sign(body);
    http_request(
        addr,
        "POST",
        "/",
        &[
            ("Content-Type", "application/json"),
            ("X-Hub-Signature-256", sig.as_str()),
        ],
        text,
    )
    .await
    .unwrap()
}

/// Posts one fixture; returns the events the hub got for it.
async fn post_fixture(addr: SocketAddr, name: &str, hub: &mut TestHarness) -> Vec<InboundEvent> {
    let (status, body) = post_signed(addr, &fixture(name)).await;
    assert_eq!((status, body.as_str()), (200, "{}"), "{name}");
    let mut out = vec![];
    while let Some(ev) = hub.try_next_event() {
        out.push(ev);
    }
    assert!(!out.is_empty(), "{name}: no event");
    out
}

fn message(ev: &InboundEvent) -> &InboundMessage {
    match &ev.kind {
        InboundKind::Message(m) => m,
        other => panic!("not a message: {other:?}"),
    }
}

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

fn outbound(id: i64, text: Option<&str>) -> OutboundMessage {
    OutboundMessage {
        id,
        connector_id: ConnectorId::new("wa"),
        thread_id: CUSTOMER.to_owned(),
        to: Some(PartyIdentity::new(IdentityKind::Whatsapp, CUSTOMER)),
        subject: None,
        text: text.map(str::to_owned),
        attachments: vec![],
        reply_to_external_id: None,
    }
}

fn sent_bodies(fake: &Fake) -> Vec<Value> {
    fake.requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/messages"))
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn verification_handshake() {
    let (_fake, graph) = start_fake().await;
    let conn = connector(graph);
    let (ctx, mut hub) = ConnectorContext::for_test("wa");
    let addr = serve(conn.routes(&ctx).unwrap(), &hub).await;

    let good =
        format!("/?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1158201444");
    let (status, body) = http_request(addr, "GET", &good, &[], "").await.unwrap();
    assert_eq!((status, body.as_str()), (200, "1158201444"));

    let cases = [
        (
            "/?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1",
            403,
            "hub.verify_token does not match the configured verify_token",
        ),
        (
            "/?hub.mode=subscribe&hub.challenge=1",
            403,
            "hub.verify_token does not match the configured verify_token",
        ),
        (
            &format!("/?hub.mode=unsubscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1"),
            403,
            "hub.mode must be `subscribe`",
        ),
        (
            &format!("/?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}"),
            400,
            "missing query parameter hub.challenge",
        ),
    ];
    for (path, want, message) in cases {
        let (status, body) = http_request(addr, "GET", path, &[], "").await.unwrap();
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            (status, body["error"].as_str().unwrap()),
            (want, message),
            "{path}"
        );
    }
    assert!(hub.try_next_event().is_none());
    hub.shutdown();
}

#[tokio::test]
async fn replay_inbound_fixtures_over_loopback_then_shut_down() {
    let (fake, graph) = start_fake().await;
    let conn = connector(graph);
    let (ctx, mut hub) = ConnectorContext::for_test("wa");
    let router = conn.routes(&ctx).unwrap();
    // The hub runs a second instance for `run`; one instance is enough here.
    let run = tokio::spawn(connector(graph).run(ctx));
    let addr = serve(router, &hub).await;

    // Text, with everything a message carries.
    let evs = post_fixture(addr, "text.json", &mut hub).await;
    assert_eq!(evs.len(), 1);
    let ev = &evs[0];
    assert_eq!(ev.connector_id.as_str(), "wa");
    assert_eq!(ev.external_id, format!("{W}01"));
    assert_eq!(
        ev.occurred_at,
        OffsetDateTime::from_unix_timestamp(1_714_566_600).unwrap()
    );
    let m = message(ev);
    assert_eq!(m.thread_id, CUSTOMER);
    assert_eq!(
        m.text.as_deref(),
        Some("Hello, is the blue sofa still available?")
    );
    assert_eq!(m.sender.display_name.as_deref(), Some("Kerry Fisher"));
    assert_eq!(
        m.sender.identities,
        vec![
            PartyIdentity::new(IdentityKind::Whatsapp, CUSTOMER),
            PartyIdentity::new(IdentityKind::Phone, format!("+{CUSTOMER}")),
        ]
    );
    assert_eq!(m.reply_to_external_id, None);
    let raw = ev.raw.as_ref().unwrap();
    assert_eq!(raw["message"]["id"], format!("{W}01"));
    assert!(!raw.to_string().contains(TOKEN) && !raw.to_string().contains(APP_SECRET));

    // A duplicate delivery (Meta retries) gives the same key; the hub dedupes on it.
    let again = post_fixture(addr, "text.json", &mut hub).await;
    assert_eq!(again[0].external_id, ev.external_id);
    assert_eq!(again[0].kind, ev.kind);

    let evs = post_fixture(addr, "text_reply.json", &mut hub).await;
    assert_eq!(message(&evs[0]).reply_to_external_id.as_deref(), Some(OUT));

    // Image: looked up, downloaded with the token, stored.
    let evs = post_fixture(addr, "image.json", &mut hub).await;
    let m = message(&evs[0]);
    assert_eq!(m.text.as_deref(), Some("This one"));
    assert_eq!(
        m.attachments,
        vec![Attachment {
            name: format!("image-{IMAGE_ID}.jpg"),
            mime_type: "image/jpeg".to_owned(),
            size: Some(IMAGE_BYTES.len() as u64),
            url_or_ref: "memory:1".to_owned(),
        }]
    );
    let stored = hub.files().files();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].content, IMAGE_BYTES);
    let reqs = fake.requests();
    assert!(reqs
        .iter()
        .any(|r| r.path == format!("GET /v21.0/{IMAGE_ID}")));
    assert!(reqs
        .iter()
        .filter(|r| r.path.starts_with("GET "))
        .all(|r| r.authorization == format!("Bearer {TOKEN}")));

    // Document over max_file_bytes, and a voice note the API cannot find: references kept.
    let evs = post_fixture(addr, "document.json", &mut hub).await;
    let a = &message(&evs[0]).attachments[0];
    assert_eq!(a.url_or_ref, format!("wa-media:{DOCUMENT_ID}"));
    assert_eq!(
        (a.name.as_str(), a.size),
        ("order-1042.pdf", Some(5_000_000))
    );
    let evs = post_fixture(addr, "voice.json", &mut hub).await;
    let a = &message(&evs[0]).attachments[0];
    assert_eq!(a.url_or_ref, "wa-media:1230939951291546");
    assert_eq!(a.mime_type, "audio/ogg; codecs=opus");
    assert_eq!(hub.files().files().len(), 1, "nothing else stored");

    let evs = post_fixture(addr, "location.json", &mut hub).await;
    assert_eq!(
        message(&evs[0]).text.as_deref(),
        Some("📍 Showroom, 1 Red Square, Moscow (55.7539303, 37.620795)")
    );
    let evs = post_fixture(addr, "contacts.json", &mut hub).await;
    assert_eq!(
        message(&evs[0]).text.as_deref(),
        Some("👤 Anna Petrova: +7 916 123-45-67, +7 495 765-43-21")
    );
    for (name, text) in [
        ("interactive_button_reply.json", "Confirm"),
        ("interactive_list_reply.json", "Tuesday 10:00"),
        ("button.json", "Stop promotions"),
    ] {
        let evs = post_fixture(addr, name, &mut hub).await;
        let m = message(&evs[0]);
        assert_eq!(m.text.as_deref(), Some(text), "{name}");
        assert!(m.reply_to_external_id.is_some(), "{name}");
    }
    let evs = post_fixture(addr, "reaction.json", &mut hub).await;
    assert_eq!(
        evs[0].kind,
        InboundKind::Unknown {
            description: "whatsapp message type \"reaction\"".to_owned()
        }
    );
    assert_eq!(evs[0].external_id, format!("{W}11"));

    // Statuses of an outbound message.
    let mut statuses = vec![];
    for name in [
        "status_sent.json",
        "status_delivered.json",
        "status_read.json",
    ] {
        statuses.extend(post_fixture(addr, name, &mut hub).await);
    }
    let keys: Vec<&str> = statuses.iter().map(|e| e.external_id.as_str()).collect();
    assert_eq!(
        keys,
        [
            format!("{OUT}:sent"),
            format!("{OUT}:delivered"),
            format!("{OUT}:read")
        ]
    );
    for (ev, state) in statuses.iter().zip([
        DeliveryState::Sent,
        DeliveryState::Delivered,
        DeliveryState::Read,
    ]) {
        assert_eq!(
            ev.kind,
            InboundKind::DeliveryStatus {
                message_external_id: OUT.to_owned(),
                status: state
            }
        );
    }
    let evs = post_fixture(addr, "status_failed.json", &mut hub).await;
    let InboundKind::DeliveryStatus {
        status: DeliveryState::Failed { reason },
        message_external_id,
    } = &evs[0].kind
    else {
        panic!("{:?}", evs[0].kind);
    };
    assert!(message_external_id.ends_with("MDAwNQA="));
    assert!(
        reason.contains("24 hours") && reason.ends_with("[code 131047]"),
        "{reason}"
    );
    assert!(evs[0].external_id.ends_with(":failed"));

    // Several messages in one webhook: each, in order.
    let evs = post_fixture(addr, "batch.json", &mut hub).await;
    let texts: Vec<_> = evs
        .iter()
        .map(|e| message(e).text.clone().unwrap())
        .collect();
    assert_eq!(texts, ["First", "Second, from someone else", "Third"]);
    assert_eq!(message(&evs[1]).thread_id, "447700900123");
    assert_eq!(
        message(&evs[1]).sender.display_name.as_deref(),
        Some("Sam Jones")
    );

    let evs = post_fixture(addr, "account_update.json", &mut hub).await;
    assert!(evs[0].external_id.starts_with("change:"));
    assert!(matches!(evs[0].kind, InboundKind::Unknown { .. }));

    hub.shutdown();
    tokio::time::timeout(WAIT, run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

async fn oneshot(router: &Router, headers: &[(&str, &str)], body: Vec<u8>) -> (StatusCode, Value) {
    let mut req = Request::builder().method("POST").uri("/");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = router
        .clone()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn bad_inputs_are_refused_and_nothing_is_sent() {
    let (fake, graph) = start_fake().await;
    let conn = connector(graph);
    let (ctx, mut hub) = ConnectorContext::for_test("wa");
    let router = conn.routes(&ctx).unwrap();
    let text = fixture("text.json");
    let good_sig = sign(&text);

    let wrong_sig = format!("sha256={}", "0".repeat(64));
    let other_secret = {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"another-secret").unwrap();
        mac.update(&text);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    };
    let malformed = b"{\"object\": \"whatsapp_business_account\", \"entry\": [".to_vec();
    let malformed_sig = sign(&malformed);
    let no_id = serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "metadata": {"phone_number_id": PNID},
            "messages": [{"from": CUSTOMER, "type": "text", "text": {"body": "x"}}]}}]}]
    }))
    .unwrap();
    let no_id_sig = sign(&no_id);
    let big = vec![b' '; 3 * 1024 * 1024 + 1];
    let big_sig = sign(&big);

    type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<u8>, StatusCode, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            vec![],
            text.clone(),
            StatusCode::UNAUTHORIZED,
            "missing header X-Hub-Signature-256",
        ),
        (
            vec![("X-Hub-Signature-256", wrong_sig.as_str())],
            text.clone(),
            StatusCode::UNAUTHORIZED,
            "X-Hub-Signature-256 does not match the body",
        ),
        (
            vec![("X-Hub-Signature-256", other_secret.as_str())],
            text.clone(),
            StatusCode::UNAUTHORIZED,
            "X-Hub-Signature-256 does not match the body",
        ),
        (
            vec![("X-Hub-Signature-256", "sha1=abc")],
            text.clone(),
            StatusCode::UNAUTHORIZED,
            "header X-Hub-Signature-256 is not `sha256=<hex>`",
        ),
        (
            // Signed for another body: a tampered payload.
            vec![("X-Hub-Signature-256", good_sig.as_str())],
            fixture("image.json"),
            StatusCode::UNAUTHORIZED,
            "X-Hub-Signature-256 does not match the body",
        ),
        (
            vec![("X-Hub-Signature-256", malformed_sig.as_str())],
            malformed,
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            vec![("X-Hub-Signature-256", no_id_sig.as_str())],
            no_id,
            StatusCode::BAD_REQUEST,
            "`entry[0].changes[0].value.messages[0].id` is missing or empty",
        ),
        (
            vec![("X-Hub-Signature-256", big_sig.as_str())],
            big,
            StatusCode::PAYLOAD_TOO_LARGE,
            "body is larger than 3145728 bytes",
        ),
    ];
    for (headers, body, want_status, want_message) in cases {
        let (status, resp) = oneshot(&router, &headers, body).await;
        assert_eq!(status, want_status, "{headers:?}: {resp}");
        let message = resp["error"].as_str().unwrap();
        if want_message.is_empty() {
            assert!(message.starts_with("body is not valid JSON"), "{message}");
        } else {
            assert_eq!(message, want_message);
        }
        assert!(hub.try_next_event().is_none(), "nothing handed over");
    }
    assert!(fake.requests().is_empty(), "no Graph call either");

    // A change for another phone number: 200, nothing sent.
    let mut other = fixture_json("text.json");
    other["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = json!("999000999");
    let other = serde_json::to_vec(&other).unwrap();
    let other_sig = sign(&other);
    let (status, _) = oneshot(
        &router,
        &[("X-Hub-Signature-256", other_sig.as_str())],
        other,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(hub.try_next_event().is_none());

    // The hub going away: 503, so Meta retries.
    hub.close_inbound();
    let (status, resp) =
        oneshot(&router, &[("X-Hub-Signature-256", good_sig.as_str())], text).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{resp}");
}

#[tokio::test]
async fn outbound_messages_reach_the_fake_and_are_acked_or_failed() {
    let (fake, graph) = start_fake().await;
    let (ctx, mut hub) = ConnectorContext::for_test("wa");
    let run = tokio::spawn(connector(graph).run(ctx));

    // A text reply quoting an inbound wamid.
    let mut msg = outbound(1, Some("Yes, it is in stock"));
    msg.reply_to_external_id = Some(format!("{W}01"));
    hub.send_outbound(msg).await.unwrap();
    let ack = hub.next_event(WAIT).await.unwrap();
    assert_eq!(ack.external_id, "outbound:1:ack");
    assert_eq!(
        ack.kind,
        InboundKind::OutboundAck {
            message_id: 1,
            external_id: "wamid.OUT-1".to_owned()
        }
    );
    let req = fake.requests().pop().unwrap();
    assert_eq!(req.path, format!("POST /v21.0/{PNID}/messages"));
    assert_eq!(req.authorization, format!("Bearer {TOKEN}"));
    assert!(req.content_type.starts_with("application/json"));
    assert_eq!(
        serde_json::from_slice::<Value>(&req.body).unwrap(),
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": CUSTOMER,
            "type": "text",
            "text": {"body": "Yes, it is in stock"},
            "context": {"message_id": format!("{W}01")}
        })
    );

    // Outside the 24-hour window: refused for good.
    fake.script([(400, fixture_json("api_error_131047.json"))]);
    hub.send_outbound(outbound(2, Some("Late reply")))
        .await
        .unwrap();
    let failed = hub.next_event(WAIT).await.unwrap();
    assert_eq!(failed.external_id, "outbound:2:failed");
    let InboundKind::OutboundFailed {
        message_id: 2,
        reason,
    } = &failed.kind
    else {
        panic!("{:?}", failed.kind);
    };
    assert!(
        reason.starts_with("(#131047) Re-engagement message"),
        "{reason}"
    );
    assert!(!reason.contains(TOKEN));

    // An expired token: refused (and logged at ERROR).
    fake.script([(401, fixture_json("api_error_190.json"))]);
    hub.send_outbound(outbound(3, Some("x"))).await.unwrap();
    let failed = hub.next_event(WAIT).await.unwrap();
    assert!(
        matches!(&failed.kind, InboundKind::OutboundFailed { message_id: 3, reason } if reason.ends_with("[code 190/463]")),
        "{:?}",
        failed.kind
    );

    // Rate limited twice, then accepted: retried with backoff, acked once.
    fake.script([
        (429, fixture_json("api_error_130429.json")),
        (
            400,
            json!({"error": {"message": "(#131056) pair rate limit", "code": 131_056}}),
        ),
    ]);
    let before = sent_bodies(&fake).len();
    hub.send_outbound(outbound(4, Some("after the limit")))
        .await
        .unwrap();
    let ack = hub.next_event(WAIT).await.unwrap();
    assert_eq!(
        ack.kind,
        InboundKind::OutboundAck {
            message_id: 4,
            external_id: "wamid.OUT-2".to_owned()
        }
    );
    assert_eq!(
        sent_bodies(&fake).len() - before,
        3,
        "two refusals, one success"
    );

    // A file of the hub: uploaded, then sent by id, with the text as caption.
    let stored = hub
        .files()
        .put("offer.pdf", "application/pdf", b"%PDF-1.4 offer".to_vec())
        .await
        .unwrap();
    let mut msg = outbound(5, Some("Here is the offer"));
    msg.attachments = vec![stored.clone()];
    hub.send_outbound(msg).await.unwrap();
    let ack = hub.next_event(WAIT).await.unwrap();
    assert!(
        matches!(&ack.kind, InboundKind::OutboundAck { message_id: 5, external_id } if external_id == "wamid.OUT-3")
    );
    let reqs = fake.requests();
    let up = reqs
        .iter()
        .find(|r| r.path.ends_with("/media"))
        .expect("an upload");
    assert_eq!(up.authorization, format!("Bearer {TOKEN}"));
    assert!(up
        .content_type
        .starts_with("multipart/form-data; boundary="));
    let form = String::from_utf8_lossy(&up.body);
    assert!(
        form.contains("name=\"messaging_product\"\r\n\r\nwhatsapp\r\n"),
        "{form}"
    );
    assert!(
        form.contains("name=\"type\"\r\n\r\napplication/pdf\r\n"),
        "{form}"
    );
    assert!(
        form.contains("name=\"file\"; filename=\"offer.pdf\""),
        "{form}"
    );
    assert!(form.contains("%PDF-1.4 offer"), "{form}");
    assert_eq!(
        sent_bodies(&fake).pop().unwrap(),
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": CUSTOMER,
            "type": "document",
            "document": {"id": UPLOADED_ID, "caption": "Here is the offer", "filename": "offer.pdf"}
        })
    );

    // A URL attachment goes by link; text and two files make three messages.
    let mut msg = outbound(6, Some("Photos"));
    msg.attachments = vec![
        Attachment {
            name: "sofa.jpg".to_owned(),
            mime_type: "image/jpeg".to_owned(),
            size: None,
            url_or_ref: "https://cdn.example/sofa.jpg".to_owned(),
        },
        Attachment {
            name: "memo.ogg".to_owned(),
            mime_type: "audio/ogg".to_owned(),
            size: None,
            url_or_ref: "https://cdn.example/memo.ogg".to_owned(),
        },
    ];
    hub.send_outbound(msg).await.unwrap();
    let ack = hub.next_event(WAIT).await.unwrap();
    assert!(
        matches!(&ack.kind, InboundKind::OutboundAck { message_id: 6, external_id } if external_id == "wamid.OUT-4")
    );
    let bodies = sent_bodies(&fake);
    let last3 = &bodies[bodies.len() - 3..];
    assert_eq!(last3[0]["text"]["body"], "Photos");
    assert_eq!(
        last3[1]["image"],
        json!({"link": "https://cdn.example/sofa.jpg"})
    );
    assert_eq!(
        last3[2]["audio"],
        json!({"link": "https://cdn.example/memo.ogg"})
    );

    // A reference that is neither a hub file nor a URL: refused.
    let mut msg = outbound(7, None);
    msg.attachments = vec![Attachment {
        name: "ghost.pdf".to_owned(),
        mime_type: "application/pdf".to_owned(),
        size: None,
        url_or_ref: "memory:99".to_owned(),
    }];
    hub.send_outbound(msg).await.unwrap();
    let failed = hub.next_event(WAIT).await.unwrap();
    assert!(
        matches!(&failed.kind, InboundKind::OutboundFailed { message_id: 7, reason }
            if reason == "attachment `ghost.pdf` is neither a file of the hub nor an http(s) URL"),
        "{:?}",
        failed.kind
    );

    hub.shutdown();
    tokio::time::timeout(WAIT, run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn persistent_server_errors_end_run_with_a_retryable_error() {
    let (fake, graph) = start_fake().await;
    let (ctx, mut hub) = ConnectorContext::for_test("wa");
    let run = tokio::spawn(connector(graph).run(ctx));
    let down = json!({"error": {"message": "Service temporarily unavailable", "code": 2}});
    fake.script(std::iter::repeat_n((503, down), 5));
    hub.send_outbound(outbound(1, Some("hello"))).await.unwrap();
    let err = tokio::time::timeout(WAIT, run)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert!(matches!(err, ConnectorError::Connect { .. }), "{err:?}");
    assert_eq!(sent_bodies(&fake).len(), 5, "five tries");
    assert!(hub.try_next_event().is_none(), "neither acked nor failed");

    // The supervisor restarts `run`; the hub hands the unacked message over again.
    let (ctx, mut hub) = ConnectorContext::for_test("wa");
    let run = tokio::spawn(connector(graph).run(ctx));
    hub.send_outbound(outbound(1, Some("hello"))).await.unwrap();
    let ack = hub.next_event(WAIT).await.unwrap();
    assert_eq!(
        ack.kind,
        InboundKind::OutboundAck {
            message_id: 1,
            external_id: "wamid.OUT-1".to_owned()
        }
    );
    hub.shutdown();
    tokio::time::timeout(WAIT, run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
