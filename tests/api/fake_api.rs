//! A fake third-party HTTP API on 127.0.0.1 (the Telegram Bot API, VK, the WhatsApp Graph
//! API): it records every request and answers with what the test's function says, shaped
//! as the real API documents it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, e.g. `/bot123:ABC/sendMessage`.
    pub path: String,
    /// The query string, without `?`.
    pub query: String,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

impl Call {
    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// A field of an `application/x-www-form-urlencoded` body or of the query.
    pub fn form(&self, key: &str) -> Option<String> {
        let body = String::from_utf8_lossy(&self.body).into_owned();
        serde_urlencoded::from_str::<Vec<(String, String)>>(&body)
            .ok()
            .into_iter()
            .flatten()
            .chain(
                serde_urlencoded::from_str::<Vec<(String, String)>>(&self.query)
                    .unwrap_or_default(),
            )
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

type Answer = dyn Fn(&Call) -> (u16, String, Value) + Send + Sync;

#[derive(Clone)]
struct Shared {
    calls: Arc<Mutex<Vec<Call>>>,
    answer: Arc<Answer>,
}

/// A running fake API.
pub struct FakeApi {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    calls: Arc<Mutex<Vec<Call>>>,
}

async fn handle(State(s): State<Shared>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body: Bytes = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let call = Call {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        headers: parts.headers,
        body: body.to_vec(),
    };
    let (status, content_type, value) = (s.answer)(&call);
    s.calls.lock().expect("lock").push(call);
    let body = match value {
        Value::String(text) if content_type != "application/json" => text,
        other => other.to_string(),
    };
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        [("content-type", content_type)],
        body,
    )
        .into_response()
}

impl FakeApi {
    /// Starts a fake that answers every request with `answer(call)`: status, content type
    /// and body (a JSON value, or a string sent as is for other content types).
    pub async fn start(
        answer: impl Fn(&Call) -> (u16, String, Value) + Send + Sync + 'static,
    ) -> FakeApi {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            calls: calls.clone(),
            answer: Arc::new(answer),
        };
        let app = axum::Router::new().fallback(handle).with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeApi { base, calls }
    }

    /// Every request so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("lock").clone()
    }

    /// Waits (10 s) for a request that matches.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&Call) -> bool) -> Call {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(c) = self.calls().into_iter().find(|c| pred(c)) {
                return c;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the fake API got no {what}; it got: {:?}",
                self.calls()
                    .iter()
                    .map(|c| format!("{} {}", c.method, c.path))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A JSON answer with status 200.
pub fn ok_json(v: Value) -> (u16, String, Value) {
    (200, "application/json".into(), v)
}
