//! A real WebSocket client for the hub's sockets, and helpers to feed the hub inbound
//! events through an `api` channel.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use kommutator::config::ConnectorConfig;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::{Principal, TestApp};

/// How long a test waits for one frame.
pub const FRAME_WAIT: Duration = Duration::from_secs(10);

/// A connected socket.
pub struct Ws {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What [`Ws::poll`] saw.
#[derive(Debug)]
pub enum Polled {
    /// A JSON frame.
    Frame(Value),
    /// Nothing within the wait.
    Idle,
    /// The socket closed or failed.
    Ended,
}

/// How a socket ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// A close frame with this code.
    Closed(u16),
    /// The stream ended without a close frame (or with an error).
    Dropped,
}

impl Ws {
    /// Connects to `path` (`/ws/operator`) with a bearer token.
    pub async fn connect(app: &TestApp, path: &str, who: &Principal) -> Ws {
        Self::try_connect(app, path, Some(&who.token), &[])
            .await
            .expect("websocket connects")
    }

    /// Connects with an optional bearer token and extra headers.
    pub async fn try_connect(
        app: &TestApp,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        let url = format!("{}{path}", app.base.replace("http://", "ws://"));
        let mut req = url.into_client_request()?;
        if let Some(t) = token {
            req.headers_mut().insert(
                "authorization",
                HeaderValue::from_str(&format!("Bearer {t}")).expect("header"),
            );
        }
        for (k, v) in headers {
            req.headers_mut().insert(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes())
                    .expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        let (stream, _) = tokio_tungstenite::connect_async(req).await?;
        Ok(Ws { stream })
    }

    /// Connects and reads the `hello`.
    pub async fn operator(app: &TestApp, who: &Principal) -> (Ws, Value) {
        let mut ws = Self::connect(app, "/ws/operator", who).await;
        let hello = ws.next().await;
        assert_eq!(hello["type"], "hello", "{hello}");
        (ws, hello)
    }

    /// Sends a JSON frame.
    pub async fn send(&mut self, v: Value) {
        self.stream
            .send(Message::text(v.to_string()))
            .await
            .expect("send");
    }

    /// Sends raw text.
    pub async fn send_text(&mut self, s: &str) {
        self.stream
            .send(Message::text(s.to_owned()))
            .await
            .expect("send");
    }

    /// The next JSON frame (pings are answered by the library and skipped).
    pub async fn next(&mut self) -> Value {
        match self.try_next(FRAME_WAIT).await {
            Some(v) => v,
            None => panic!("no frame within {FRAME_WAIT:?}"),
        }
    }

    /// The next JSON frame within `wait`, or `None`.
    pub async fn try_next(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()??;
            match msg {
                Ok(Message::Text(t)) => {
                    return Some(serde_json::from_str(t.as_str()).expect("server frames are JSON"))
                }
                Ok(Message::Close(c)) => panic!("socket closed: {c:?}"),
                Ok(_) => continue,
                Err(e) => panic!("socket error: {e}"),
            }
        }
    }

    /// The next JSON frame within `wait`; `Ended` when the socket closed or broke (a node
    /// died), instead of panicking.
    pub async fn poll(&mut self, wait: Duration) -> Polled {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return Polled::Idle,
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => {
                    return Polled::Ended
                }
                Ok(Some(Ok(Message::Text(t)))) => {
                    return Polled::Frame(
                        serde_json::from_str(t.as_str()).expect("server frames are JSON"),
                    )
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Frames until one of type `ty`; returns it and the frames skipped.
    pub async fn until_type(&mut self, ty: &str) -> (Value, Vec<Value>) {
        let mut skipped = Vec::new();
        loop {
            let v = self.next().await;
            if v["type"] == ty {
                return (v, skipped);
            }
            skipped.push(v);
        }
    }

    /// Events until one matches `pred`; returns it.
    pub async fn event_where(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let v = self.next().await;
            if v["type"] == "event" && pred(&v) {
                return v;
            }
        }
    }

    /// Subscribes and returns the replayed events and the `subscribed` (or `resync`) reply.
    pub async fn subscribe(&mut self, topic: &str, since: Option<i64>) -> (Vec<Value>, Value) {
        let mut frame = json!({"type": "subscribe", "id": format!("sub-{topic}"), "topic": topic});
        if let Some(s) = since {
            frame["since"] = json!(s);
        }
        self.send(frame).await;
        let mut events = Vec::new();
        loop {
            let v = self.next().await;
            match v["type"].as_str() {
                Some("subscribed" | "resync") if v["id"] == format!("sub-{topic}") => {
                    return (events, v)
                }
                Some("event") => events.push(v),
                Some("error") => panic!("subscribe {topic} failed: {v}"),
                _ => {}
            }
        }
    }

    /// The next JSON frame, or `None` once the socket closed or ended.
    pub async fn stream_next_or_end(&mut self) -> Option<Value> {
        loop {
            match tokio::time::timeout(FRAME_WAIT, self.stream.next()).await {
                Err(_) => panic!("neither a frame nor the end within {FRAME_WAIT:?}"),
                Ok(None) => return None,
                Ok(Some(Err(e))) => {
                    eprintln!("socket error: {e}");
                    return None;
                }
                Ok(Some(Ok(Message::Close(c)))) => {
                    eprintln!("socket closed: {c:?}");
                    return None;
                }
                Ok(Some(Ok(Message::Text(t)))) => {
                    return Some(serde_json::from_str(t.as_str()).expect("server frames are JSON"))
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Reads until the socket ends; the close code if a close frame came.
    pub async fn ended(&mut self) -> Ended {
        loop {
            match tokio::time::timeout(FRAME_WAIT, self.stream.next()).await {
                Err(_) => panic!("the socket did not end within {FRAME_WAIT:?}"),
                Ok(None) | Ok(Some(Err(_))) => return Ended::Dropped,
                Ok(Some(Ok(Message::Close(Some(c))))) => return Ended::Closed(u16::from(c.code)),
                Ok(Some(Ok(Message::Close(None)))) => {
                    return Ended::Closed(u16::from(CloseCode::Status))
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }
}

/// Config for an app with an `api` channel `site` routed to department `dept`, replies
/// posted to `outbound_url` when given.
pub fn with_api_channel(
    dept: &'static str,
    outbound_url: Option<String>,
) -> impl FnOnce(&mut kommutator::config::Config) {
    move |c| {
        c.connectors.insert(
            "site".into(),
            ConnectorConfig::Api {
                channel: Some("api".into()),
                department: Some(dept.into()),
                outbound_url,
                outbound_secret: Some("test-secret".into()),
            },
        );
        c.realtime.presence_grace_secs = 1;
    }
}

/// An inbound message event of channel `site`.
pub fn inbound(external_id: &str, thread: &str, from_phone: &str, text: &str) -> Value {
    json!({
        "connector_id": "site",
        "external_id": external_id,
        "occurred_at": "2026-11-29T10:00:00Z",
        "kind": {
            "type": "message",
            "thread_id": thread,
            "sender": {"identities": [{"kind": "phone", "value": from_phone}], "display_name": "Ivan Petrov"},
            "text": text,
            "attachments": [],
            "reply_to_external_id": null,
            "edit_of": null
        }
    })
}

/// Posts an event to the `site` channel; returns status and body.
pub async fn ingest(app: &TestApp, key: &Principal, event: &Value) -> (reqwest::StatusCode, Value) {
    app.post(Some(key), "/api/v1/connectors/site/events", event)
        .await
}
