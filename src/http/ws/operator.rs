//! `/ws/operator`: the console's live connection (session token: the cookie, or a bearer
//! header). One task per connection owns the socket, its subscriptions and its bounded
//! event queue; see `docs/ws-protocol.md` for the frames.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures_util::SinkExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc::error::TryRecvError;

use super::subscriptions::{Sub, Subs};
use super::{close, FrameLimiter, ReqId, PROTOCOL_VERSION};
use crate::domain::*;
use crate::http::error::ApiError;
use crate::http::extract::Auth;
use crate::http::AppState;
use crate::hub::{ConnHandle, Event, Owner, Replay};
use crate::storage::StoreError;

/// Most subscriptions one connection may hold.
const MAX_SUBSCRIPTIONS: usize = 200;
/// Malformed frames tolerated before the connection is closed.
const MAX_PROTOCOL_ERRORS: u32 = 20;
/// Refused (over-rate) frames in a row before the connection is closed.
const MAX_REFUSED_IN_ROW: u32 = 200;
/// How long one write may wait for the client to read.
/// How often the session is checked again.
const SESSION_RECHECK: Duration = Duration::from_secs(300);

/// What a console sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientFrame {
    Subscribe {
        #[serde(default)]
        id: Option<ReqId>,
        /// One topic …
        #[serde(default)]
        topic: Option<String>,
        #[serde(default)]
        since: Option<i64>,
        /// … or several, replayed together in seq order (what a reconnect should send).
        #[serde(default)]
        topics: Option<Vec<TopicSince>>,
    },
    Unsubscribe {
        #[serde(default)]
        id: Option<ReqId>,
        topic: String,
    },
    Send {
        #[serde(default)]
        id: Option<ReqId>,
        dialog_id: Id,
        client_msg_id: String,
        #[serde(default)]
        text: Option<String>,
        #[serde(default)]
        attachments: Vec<Attachment>,
    },
    Typing {
        #[serde(default)]
        id: Option<ReqId>,
        dialog_id: Id,
    },
    Read {
        #[serde(default)]
        id: Option<ReqId>,
        dialog_id: Id,
    },
    Assign {
        #[serde(default)]
        id: Option<ReqId>,
        dialog_id: Id,
        user_id: Id,
    },
    Transfer {
        #[serde(default)]
        id: Option<ReqId>,
        dialog_id: Id,
        #[serde(default)]
        user_id: Option<Id>,
        #[serde(default)]
        department_id: Option<Id>,
    },
    Close {
        #[serde(default)]
        id: Option<ReqId>,
        dialog_id: Id,
    },
    Reopen {
        #[serde(default)]
        id: Option<ReqId>,
        dialog_id: Id,
    },
    Presence {
        #[serde(default)]
        id: Option<ReqId>,
        status: PresenceStatus,
    },
    Handover {
        #[serde(default)]
        id: Option<ReqId>,
        dialog_id: Id,
        #[serde(default)]
        department_id: Option<Id>,
    },
    Ping {
        #[serde(default)]
        id: Option<ReqId>,
    },
}

/// One topic of a multi-topic subscribe.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicSince {
    topic: String,
    #[serde(default)]
    since: Option<i64>,
}

impl ClientFrame {
    fn id(&self) -> Option<&ReqId> {
        match self {
            ClientFrame::Subscribe { id, .. }
            | ClientFrame::Unsubscribe { id, .. }
            | ClientFrame::Send { id, .. }
            | ClientFrame::Typing { id, .. }
            | ClientFrame::Read { id, .. }
            | ClientFrame::Assign { id, .. }
            | ClientFrame::Transfer { id, .. }
            | ClientFrame::Close { id, .. }
            | ClientFrame::Reopen { id, .. }
            | ClientFrame::Presence { id, .. }
            | ClientFrame::Handover { id, .. }
            | ClientFrame::Ping { id } => id.as_ref(),
        }
    }
}

/// Parses a client frame as the socket does and names its type (for fuzzing and tests).
///
/// # Errors
/// The parser's message, as the `error` frame would carry it.
pub fn parse_frame_type(text: &str) -> Result<&'static str, String> {
    let f: ClientFrame = serde_json::from_str(text).map_err(|e| e.to_string())?;
    Ok(match f {
        ClientFrame::Subscribe { topic, topics, .. } => {
            // Topics are parsed after the frame; a fuzzer reaches that parser too.
            for t in topic
                .iter()
                .chain(topics.iter().flatten().map(|x| &x.topic))
            {
                let _ = t.parse::<Topic>();
            }
            "subscribe"
        }
        ClientFrame::Unsubscribe { .. } => "unsubscribe",
        ClientFrame::Send { .. } => "send",
        ClientFrame::Typing { .. } => "typing",
        ClientFrame::Read { .. } => "read",
        ClientFrame::Assign { .. } => "assign",
        ClientFrame::Transfer { .. } => "transfer",
        ClientFrame::Close { .. } => "close",
        ClientFrame::Reopen { .. } => "reopen",
        ClientFrame::Presence { .. } => "presence",
        ClientFrame::Handover { .. } => "handover",
        ClientFrame::Ping { .. } => "ping",
    })
}

/// A reply frame that is not an event.
#[derive(Serialize)]
struct Reply<'a, T: Serialize> {
    #[serde(rename = "type")]
    ty: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a ReqId>,
    seq: i64,
    #[serde(flatten)]
    body: T,
}

/// An error to send back: code and message.
#[derive(Debug, Serialize)]
struct WsError {
    code: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

impl WsError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
        }
    }
}

impl From<StoreError> for WsError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { entity } => {
                WsError::new("not_found", format!("{entity} not found"))
            }
            StoreError::Invalid(f) => WsError {
                code: "invalid",
                message: f.message.clone(),
                field: Some(f.field.clone()),
            },
            StoreError::Duplicate { message, .. } => WsError::new("duplicate", message),
            StoreError::Conflict { message, .. } => WsError::new("conflict", message),
            StoreError::Forbidden(m) => WsError::new("forbidden", m),
            other => {
                tracing::error!(error = %other, "store error on a websocket command");
                WsError::new("internal", "the command failed; try again")
            }
        }
    }
}

/// `GET /ws/operator`: upgrade for a signed-in user.
pub async fn handler(
    State(state): State<AppState>,
    headers: HeaderMap,
    auth: Result<Auth, ApiError>,
    ws: WebSocketUpgrade,
) -> Response {
    let auth = match auth {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let Some(user) = auth.user.clone() else {
        return ApiError::forbidden("API keys connect to /ws/bot").into_response();
    };
    if !super::has_bearer(&headers)
        && !super::same_origin(&headers, state.config.server.public_url.as_deref())
    {
        return ApiError::forbidden("the Origin of this page is not the hub's").into_response();
    }
    let rt = &state.config.realtime;
    ws.read_buffer_size(rt.read_buffer_bytes)
        .max_message_size(rt.max_frame_bytes)
        .max_frame_size(rt.max_frame_bytes)
        .on_upgrade(move |socket| async move {
            let conn = Conn::new(socket, state, auth.actor, Some(user), auth.session_hash);
            conn.run().await;
        })
}

/// `GET /ws/bot`: a chatbot with an API key (`dialogs:write`). It follows departments'
/// dialogs (`dept:<id>`), answers as the bot, and hands dialogs over to people.
pub async fn bot_handler(
    State(state): State<AppState>,
    auth: Result<Auth, ApiError>,
    ws: WebSocketUpgrade,
) -> Response {
    let auth = match auth {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    if auth.user.is_some() {
        return ApiError::forbidden("bots connect with an API key; people use /ws/operator")
            .into_response();
    }
    if let Err(e) = auth.require(Scope::DialogsWrite) {
        return e.into_response();
    }
    let rt = &state.config.realtime;
    ws.read_buffer_size(rt.read_buffer_bytes)
        .max_message_size(rt.max_frame_bytes)
        .max_frame_size(rt.max_frame_bytes)
        .on_upgrade(move |socket| async move {
            let conn = Conn::new(socket, state, auth.actor, None, None);
            conn.run().await;
        })
}

struct Conn {
    socket: WebSocket,
    state: AppState,
    actor: Actor,
    /// The signed-in user; `None` for a bot (an API key on `/ws/bot`).
    user: Option<User>,
    session_hash: Option<String>,
    handle: Arc<ConnHandle>,
    rx: tokio::sync::mpsc::Receiver<Arc<Event>>,
    subs: Subs,
    /// The highest event seq sent on this connection.
    last_sent: i64,
    limiter: FrameLimiter,
    protocol_errors: u32,
}

enum Flow {
    Continue,
    Close(u16, &'static str),
    Gone,
}

impl Conn {
    fn new(
        socket: WebSocket,
        state: AppState,
        actor: Actor,
        user: Option<User>,
        session_hash: Option<String>,
    ) -> Self {
        let sub = state.hub.connect(state.config.realtime.connection_queue);
        let limiter = FrameLimiter::new(state.config.realtime.frames_per_sec);
        Self {
            socket,
            state,
            actor,
            user,
            session_hash,
            handle: sub.handle,
            rx: sub.rx,
            subs: Subs::default(),
            last_sent: 0,
            limiter,
            protocol_errors: 0,
        }
    }

    async fn run(mut self) {
        let kind = if self.user.is_some() {
            "operator"
        } else {
            "bot"
        };
        metrics::gauge!("kommutator_ws_connections", "kind" => kind).increment(1.0);
        let routing = self.state.routing.clone();
        let uid = self.user.as_ref().map(|u| u.id);
        if let Some(u) = uid {
            routing.connected(u).await;
        }
        let flow = self.serve().await;
        for t in self.subs.topics().collect::<Vec<_>>() {
            self.state.hub.unsubscribe(t, self.handle.id);
        }
        if let Flow::Close(code, reason) = flow {
            super::close_gracefully(&mut self.socket, code, reason).await;
        }
        if let Some(u) = uid {
            routing.disconnected(u);
        }
        metrics::gauge!("kommutator_ws_connections", "kind" => kind).decrement(1.0);
    }

    async fn serve(&mut self) -> Flow {
        let rt = self.state.config.realtime.clone();
        let hello = json!({
            "type": "hello",
            "v": PROTOCOL_VERSION,
            "seq": self.state.hub.head(),
            "node": self.state.routing.node_id(),
            "user_id": self.user.as_ref().map(|u| u.id),
            "api_key_id": self.actor.api_key_id(),
            "ping_interval_ms": rt.ping_interval_secs * 1000,
            "max_frame_bytes": rt.max_frame_bytes,
        });
        if !self.send_json(&hello).await {
            return Flow::Gone;
        }
        let ping_every = Duration::from_secs(rt.ping_interval_secs);
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
        let mut last_recv = Instant::now();
        let mut session_checked = Instant::now();
        let shutdown = self.state.shutdown.clone();
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return Flow::Close(close::GOING_AWAY, "server shutting down; resume"),
                () = self.handle.kicked.notified() => {
                    if self.handle.is_slow() {
                        return Flow::Close(close::SLOW, "too slow; reconnect and resume");
                    }
                }
                ev = self.rx.recv() => {
                    let Some(ev) = ev else { return Flow::Gone };
                    // Boxed too: an idle socket should not carry the write path's state.
                    if !Box::pin(self.deliver_batch(ev)).await {
                        return Flow::Gone;
                    }
                }
                msg = self.socket.recv() => {
                    let Some(Ok(msg)) = msg else {
                        // Includes frames over the size limit (tungstenite refuses them).
                        return Flow::Gone;
                    };
                    last_recv = Instant::now();
                    // Boxed: the command path is deep and runs rarely; kept out of the
                    // connection's resident state machine, which every idle socket pays for.
                    match Box::pin(self.on_message(msg)).await {
                        Flow::Continue => {}
                        other => return other,
                    }
                }
                _ = ping.tick() => {
                    if last_recv.elapsed() > ping_every * 3 {
                        return Flow::Close(close::TIMEOUT, "no frame within three ping intervals");
                    }
                    if session_checked.elapsed() >= SESSION_RECHECK {
                        session_checked = Instant::now();
                        if !Box::pin(self.session_valid()).await {
                            return Flow::Close(close::UNAUTHORIZED, "session ended; sign in again");
                        }
                    }
                    if !Box::pin(self.send_raw(Message::Ping(bytes::Bytes::new()))).await {
                        return Flow::Gone;
                    }
                }
            }
        }
    }

    async fn session_valid(&mut self) -> bool {
        let Some(hash) = &self.session_hash else {
            return true;
        };
        matches!(
            self.state.store.session_user(hash, Timestamp::now()).await,
            Ok(Some(u)) if Some(u.id) == self.user.as_ref().map(|x| x.id)
        )
    }

    /// Sends `first` and whatever else is queued (up to 64), coalesced into one flush.
    async fn deliver_batch(&mut self, first: Arc<Event>) -> bool {
        let mut batch = vec![first];
        while batch.len() < 64 {
            match self.rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let mut lost = Vec::new();
        let mut out = Vec::with_capacity(batch.len());
        for e in batch {
            let d = self.subs.live(&self.actor, &e);
            lost.extend(d.lost);
            if d.deliver {
                out.push(e);
            }
        }
        if !self.send_events(&out).await {
            return false;
        }
        self.end_lost(lost).await
    }

    async fn send_events(&mut self, events: &[Arc<Event>]) -> bool {
        if events.is_empty() {
            return true;
        }
        let result = tokio::time::timeout(super::WRITE_TIMEOUT, async {
            for e in events {
                self.socket.feed(Message::Text(e.frame.clone())).await?;
            }
            self.socket.flush().await
        })
        .await;
        if !matches!(result, Ok(Ok(()))) {
            return false;
        }
        for e in events {
            if !e.ephemeral && e.seq > self.last_sent {
                self.last_sent = e.seq;
            }
        }
        metrics::counter!("kommutator_ws_frames_sent_total").increment(events.len() as u64);
        true
    }

    async fn end_lost(&mut self, mut lost: Vec<Topic>) -> bool {
        lost.sort();
        lost.dedup();
        for t in lost {
            if self.subs.remove(t) {
                self.state.hub.unsubscribe(t, self.handle.id);
                let body = json!({"topic": t.to_string(), "reason": "access_lost"});
                if !self.reply("unsubscribed", None, body).await {
                    return false;
                }
            }
        }
        true
    }

    async fn send_raw(&mut self, m: Message) -> bool {
        matches!(
            tokio::time::timeout(super::WRITE_TIMEOUT, self.socket.send(m)).await,
            Ok(Ok(()))
        )
    }

    async fn send_json(&mut self, v: &impl Serialize) -> bool {
        let text = serde_json::to_string(v).unwrap_or_default();
        self.send_raw(Message::Text(Utf8Bytes::from(text))).await
    }

    async fn reply(
        &mut self,
        ty: &'static str,
        id: Option<&ReqId>,
        body: serde_json::Value,
    ) -> bool {
        let r = Reply {
            ty,
            id,
            seq: self.last_sent,
            body,
        };
        self.send_json(&r).await
    }

    async fn error(&mut self, id: Option<&ReqId>, e: WsError) -> bool {
        let r = Reply {
            ty: "error",
            id,
            seq: self.last_sent,
            body: e,
        };
        self.send_json(&r).await
    }

    async fn on_message(&mut self, msg: Message) -> Flow {
        let text = match msg {
            Message::Text(t) => t,
            Message::Binary(_) => {
                return self
                    .protocol_error(
                        None,
                        WsError::new("binary_not_supported", "send JSON text frames"),
                    )
                    .await
            }
            Message::Ping(_) | Message::Pong(_) => return Flow::Continue,
            Message::Close(_) => return Flow::Gone,
        };
        if !self.limiter.allow() {
            if self.limiter.refused_in_row > MAX_REFUSED_IN_ROW {
                return Flow::Close(close::RATE_LIMITED, "too many frames");
            }
            metrics::counter!("kommutator_ws_rate_limited_total").increment(1);
            // One notice per burst is enough.
            if self.limiter.refused_in_row == 1
                && !self
                    .error(
                        None,
                        WsError::new("rate_limited", "too many frames; this one was dropped"),
                    )
                    .await
            {
                return Flow::Gone;
            }
            return Flow::Continue;
        }
        let frame: ClientFrame = match serde_json::from_str(text.as_str()) {
            Ok(f) => f,
            Err(e) => {
                let code = if serde_json::from_str::<serde_json::Value>(text.as_str()).is_ok() {
                    "invalid_frame"
                } else {
                    "invalid_json"
                };
                // The id, when the frame has one, so the client can match the error.
                let id = serde_json::from_str::<serde_json::Value>(text.as_str())
                    .ok()
                    .and_then(|v| v.get("id").cloned())
                    .and_then(|v| serde_json::from_value::<ReqId>(v).ok())
                    .filter(ReqId::is_valid);
                return self
                    .protocol_error(id.as_ref(), WsError::new(code, e.to_string()))
                    .await;
            }
        };
        if let Some(id) = frame.id() {
            if !id.is_valid() {
                return self
                    .protocol_error(
                        None,
                        WsError::new(
                            "invalid_frame",
                            "id is a number or a string of at most 64 bytes",
                        ),
                    )
                    .await;
            }
        }
        let id = frame.id().cloned();
        let result = self.command(frame).await;
        let ok = match result {
            Ok(Some((ty, body))) => self.reply(ty, id.as_ref(), body).await,
            Ok(None) => true,
            Err(e) => self.error(id.as_ref(), e).await,
        };
        if ok {
            Flow::Continue
        } else {
            Flow::Gone
        }
    }

    async fn protocol_error(&mut self, id: Option<&ReqId>, e: WsError) -> Flow {
        self.protocol_errors += 1;
        metrics::counter!("kommutator_ws_protocol_errors_total").increment(1);
        if self.protocol_errors > MAX_PROTOCOL_ERRORS {
            return Flow::Close(close::PROTOCOL, "too many malformed frames");
        }
        if self.error(id, e).await {
            Flow::Continue
        } else {
            Flow::Gone
        }
    }

    /// Runs a command; `Ok(Some((type, body)))` is the reply to send.
    async fn command(
        &mut self,
        frame: ClientFrame,
    ) -> Result<Option<(&'static str, serde_json::Value)>, WsError> {
        let store = self.state.store.clone();
        match frame {
            ClientFrame::Ping { .. } => Ok(Some(("pong", json!({})))),
            ClientFrame::Subscribe {
                id,
                topic,
                since,
                topics,
            } => {
                let list = match (topic, topics) {
                    (Some(t), None) => vec![TopicSince { topic: t, since }],
                    (None, Some(list)) if !list.is_empty() && since.is_none() => list,
                    _ => {
                        return Err(WsError::new(
                            "invalid_frame",
                            "give topic (with since) or topics: [{topic, since}], not both",
                        ))
                    }
                };
                self.subscribe(id.as_ref(), list).await?;
                Ok(None)
            }
            ClientFrame::Unsubscribe { topic, .. } => {
                let t: Topic = topic
                    .parse()
                    .map_err(|e: ParseTopicError| WsError::new("invalid_topic", e.to_string()))?;
                let existed = self.subs.remove(t);
                self.state.hub.unsubscribe(t, self.handle.id);
                Ok(Some((
                    "unsubscribed",
                    json!({"topic": t.to_string(), "reason": if existed { "requested" } else { "not_subscribed" }}),
                )))
            }
            ClientFrame::Send {
                dialog_id,
                client_msg_id,
                text,
                attachments,
                ..
            } => {
                let key_ok = (1..=64).contains(&client_msg_id.len())
                    && client_msg_id.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')
                    });
                if !key_ok {
                    return Err(WsError {
                        code: "invalid",
                        message: "client_msg_id is 1 to 64 of A-Z, a-z, 0-9, '-', '_', '.', ':'"
                            .into(),
                        field: Some("client_msg_id".into()),
                    });
                }
                let input = NewMessage {
                    direction: Some(Direction::Outbound),
                    external_id: Some(match &self.user {
                        Some(u) => format!("op:{}:{client_msg_id}", u.id),
                        None => format!(
                            "bot:{}:{client_msg_id}",
                            self.actor.api_key_id().unwrap_or(0)
                        ),
                    }),
                    body: text,
                    attachments,
                    sent_at: None,
                };
                let (m, created) = store
                    .add_message(&self.actor, dialog_id, &input)
                    .await
                    .map_err(|e| {
                        let mut e = WsError::from(e);
                        // The frame calls the message text `text`.
                        if e.field.as_deref() == Some("body") {
                            e.field = Some("text".into());
                        }
                        e
                    })?;
                Ok(Some((
                    "ack",
                    json!({"message_id": m.id, "dialog_id": dialog_id, "duplicate": !created, "delivery_status": m.delivery_status}),
                )))
            }
            ClientFrame::Typing { dialog_id, .. } => {
                let d = store.get_dialog(&self.actor, dialog_id).await?;
                let data = match &self.user {
                    Some(u) => {
                        json!({"dialog_id": d.id, "who": "operator", "user_id": u.id, "name": u.name})
                    }
                    None => {
                        json!({"dialog_id": d.id, "who": "bot", "api_key_id": self.actor.api_key_id()})
                    }
                };
                let head = self.state.hub.head();
                self.state.hub.publish_ephemeral(Event::ephemeral(
                    head,
                    vec![Topic::dialog(d.id)],
                    "typing",
                    d.id,
                    "operator",
                    &self.actor,
                    Some(Owner {
                        user_id: d.assignee_id,
                        department_id: d.department_id,
                        shared: d.shared,
                    }),
                    &data,
                ));
                Ok(None)
            }
            ClientFrame::Read { dialog_id, .. } => {
                let d = store.mark_read(&self.actor, dialog_id).await?;
                Ok(Some((
                    "ack",
                    json!({"dialog_id": d.id, "unread": d.unread}),
                )))
            }
            ClientFrame::Assign {
                dialog_id, user_id, ..
            } => {
                let dep = self.target_department(user_id).await?;
                if !crate::storage::access::may_assign(&self.actor, user_id, dep) {
                    return Err(WsError::new(
                        "forbidden",
                        "you may not assign dialogs to this user",
                    ));
                }
                let (d, a) = store
                    .assign_dialog(
                        &self.actor,
                        dialog_id,
                        Some(user_id),
                        None,
                        AssignReason::Manual,
                    )
                    .await?;
                Ok(Some(("ack", json!({"dialog_id": d.id, "assignment": a}))))
            }
            ClientFrame::Transfer {
                dialog_id,
                user_id,
                department_id,
                ..
            } => {
                let (d, a) = store
                    .assign_dialog(
                        &self.actor,
                        dialog_id,
                        user_id,
                        department_id,
                        AssignReason::Transfer,
                    )
                    .await?;
                Ok(Some(("ack", json!({"dialog_id": d.id, "assignment": a}))))
            }
            ClientFrame::Close { dialog_id, .. } => {
                self.set_status(dialog_id, DialogStatus::Closed).await
            }
            ClientFrame::Reopen { dialog_id, .. } => {
                self.set_status(dialog_id, DialogStatus::Open).await
            }
            ClientFrame::Handover {
                dialog_id,
                department_id,
                ..
            } => {
                if self.user.is_some() {
                    return Err(WsError::new(
                        "forbidden",
                        "operators transfer; handover is for bots",
                    ));
                }
                let current = store.get_dialog(&self.actor, dialog_id).await?;
                let dep = department_id.or(current.department_id).ok_or_else(|| {
                    WsError::new(
                        "invalid",
                        "the dialog has no department; name department_id",
                    )
                })?;
                let (d, a) = store
                    .assign_dialog(
                        &self.actor,
                        dialog_id,
                        None,
                        Some(dep),
                        AssignReason::Handover,
                    )
                    .await?;
                Ok(Some(("ack", json!({"dialog_id": d.id, "assignment": a}))))
            }
            ClientFrame::Presence { status, .. } => {
                let Some(u) = &self.user else {
                    return Err(WsError::new("forbidden", "bots have no presence"));
                };
                let s = store.presence_choose(u.id, status).await?;
                Ok(Some(("ack", json!({"presence": s}))))
            }
        }
    }

    async fn set_status(
        &mut self,
        dialog_id: Id,
        status: DialogStatus,
    ) -> Result<Option<(&'static str, serde_json::Value)>, WsError> {
        let patch = DialogPatch {
            status: Some(status),
            ..DialogPatch::default()
        };
        let d = self
            .state
            .store
            .update_dialog(&self.actor, dialog_id, &patch)
            .await?;
        Ok(Some((
            "ack",
            json!({"dialog_id": d.id, "status": d.status}),
        )))
    }

    async fn target_department(&mut self, user_id: Id) -> Result<Option<Id>, WsError> {
        Ok(self.state.store.get_user(user_id).await?.department_id)
    }

    /// Whether the actor may follow `topic`.
    async fn authorize(&mut self, t: Topic) -> Result<(), WsError> {
        let store = &self.state.store;
        let admin = self.actor.sees_everything();
        let my_dept = self.user.as_ref().and_then(|u| u.department_id);
        let me = self.user.as_ref().map(|u| (u.id, u.role));
        match t.kind {
            TopicKind::Dialog => {
                store.get_dialog(&self.actor, t.id).await?;
            }
            TopicKind::Client => {
                store.get_client(&self.actor, t.id).await?;
            }
            TopicKind::Lead => {
                store.get_lead(&self.actor, t.id).await?;
            }
            TopicKind::Interest => {
                store.get_interest(&self.actor, t.id).await?;
            }
            TopicKind::User => {
                let ok = me.is_some_and(|(id, _)| id == t.id)
                    || admin
                    || (me.is_some_and(|(_, r)| r == Role::Supervisor)
                        && my_dept.is_some()
                        && store
                            .get_user(t.id)
                            .await
                            .ok()
                            .and_then(|u| u.department_id)
                            == my_dept);
                if !ok {
                    return Err(WsError::new(
                        "forbidden",
                        "you may not follow this user's work",
                    ));
                }
            }
            TopicKind::Dept => {
                if !(admin || my_dept == Some(t.id)) {
                    return Err(WsError::new(
                        "forbidden",
                        "you may only follow your own department",
                    ));
                }
            }
        }
        Ok(())
    }

    async fn subscribe(
        &mut self,
        id: Option<&ReqId>,
        list: Vec<TopicSince>,
    ) -> Result<(), WsError> {
        let mut wanted: Vec<(Topic, Option<i64>)> = Vec::with_capacity(list.len());
        for ts in list {
            let t: Topic = ts.topic.parse().map_err(|e: ParseTopicError| {
                let shown: String = ts.topic.chars().take(80).collect();
                WsError::new("invalid_topic", format!("{shown}: {e}"))
            })?;
            if ts.since.is_some_and(|s| s < 0) {
                return Err(WsError::new(
                    "invalid_since",
                    "since is a sequence number, 0 or more",
                ));
            }
            if !wanted.iter().any(|(x, _)| *x == t) {
                wanted.push((t, ts.since));
            }
        }
        let added = wanted
            .iter()
            .filter(|(t, _)| !self.subs.contains(*t))
            .count();
        if self.subs.len() + added > MAX_SUBSCRIPTIONS {
            return Err(WsError::new(
                "too_many_subscriptions",
                format!("at most {MAX_SUBSCRIPTIONS} topics per connection"),
            ));
        }
        // All or nothing: every topic is checked before any is followed.
        for (t, _) in &wanted {
            if let Err(mut e) = self.authorize(*t).await {
                e.message = format!("{t}: {}", e.message);
                return Err(e);
            }
        }
        let hub = self.state.hub.clone();
        // Register first, then read the head: every event after it reaches the queue.
        for (t, _) in &wanted {
            hub.subscribe(*t, &self.handle);
        }
        let until = hub.head();
        let max = self.state.config.realtime.max_replay;
        let mut replayed = Vec::new();
        let mut outcome = Vec::with_capacity(wanted.len());
        for (t, since) in &wanted {
            let since = since.unwrap_or(until).min(until);
            let replay = match hub.replay(*t, since, until, max).await {
                Ok(r) => r,
                Err(e) => {
                    for (t, _) in &wanted {
                        self.subs.remove(*t);
                        hub.unsubscribe(*t, self.handle.id);
                    }
                    return Err(e.into());
                }
            };
            match replay {
                Replay::Events(v) => {
                    self.subs.insert(Sub {
                        topic: *t,
                        since,
                        until,
                    });
                    outcome.push((*t, false, v.len()));
                    replayed.extend(v);
                }
                Replay::TooOld => {
                    // Nothing is replayed: the client reloads a snapshot and applies events
                    // after `until` on top of it.
                    self.subs.insert(Sub {
                        topic: *t,
                        since: until,
                        until,
                    });
                    outcome.push((*t, true, 0));
                }
            }
        }
        let mut held = Vec::new();
        while let Ok(e) = self.rx.try_recv() {
            held.push(e);
        }
        let new: Vec<Topic> = wanted.iter().map(|(t, _)| *t).collect();
        let (out, lost) = self.subs.merge(&self.actor, &new, replayed, held);
        // The replay (up to `until`) goes before the replies, live events after them.
        let (before, after): (Vec<_>, Vec<_>) = out
            .into_iter()
            .partition(|e| !e.ephemeral && e.seq <= until);
        if !self.send_events(&before).await {
            return Err(WsError::new("internal", "connection lost"));
        }
        for (t, too_old, n) in outcome {
            let sent = if too_old {
                let body = json!({"topic": t.to_string(), "until": until, "reason": "too_old"});
                self.reply("resync", id, body).await
            } else {
                let body = json!({"topic": t.to_string(), "until": until, "replayed": n});
                self.reply("subscribed", id, body).await
            };
            if !sent {
                return Err(WsError::new("internal", "connection lost"));
            }
        }
        if !self.send_events(&after).await || !self.end_lost(lost).await {
            return Err(WsError::new("internal", "connection lost"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn future_size<F, Fut>(_: F) -> usize
    where
        F: FnOnce(Conn) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    #[test]
    fn connection_state_stays_small() {
        let task = future_size(|c: Conn| c.run());
        let conn = std::mem::size_of::<Conn>();
        eprintln!("operator connection: task future {task} B, Conn {conn} B");
        // Every idle socket pays for this; keep the deep command path boxed.
        assert!(task < 4096, "the connection future grew to {task} bytes");
    }
}
