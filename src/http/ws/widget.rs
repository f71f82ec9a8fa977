//! `/ws/widget?site=<key>`: a website visitor's chat. The visitor is identified by a
//! signed visitor token the page keeps (localStorage); a logged-in customer can be
//! recognised with an HMAC of their id from the site's backend. Messages go through the
//! ingest pipeline like any channel's; operator replies and typing come back, and a
//! reconnect with `since` replays what was missed.
//!
//! Visitors see only their own dialog's messages and the operators' typing, in a
//! customer-facing shape: no internal ids, notes, assignments or delivery errors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::SinkExt;
use hmac::{Hmac, Mac};
use kommutator_sdk::{
    ConnectorId, IdentityKind, InboundEvent, InboundKind, InboundMessage, Party, PartyIdentity,
};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::error::TryRecvError;

use super::{close, FrameLimiter, ReqId, PROTOCOL_VERSION};
use crate::config::WidgetSite;
use crate::domain::{Dialog, Id, Timestamp, Topic};
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::hub::{ConnHandle, Event, Owner, Replay};
use crate::pipeline::{ChannelInfo, Processed};

/// How long a visitor token stays valid.
const TOKEN_DAYS: i64 = 365;
/// How long the page has to send `start`.
const START_WAIT: Duration = Duration::from_secs(10);
/// Malformed frames tolerated before the connection is closed.
const MAX_PROTOCOL_ERRORS: u32 = 10;

/// The connector id of a site's widget channel.
pub fn connector_id(site: &str) -> String {
    format!("widget-{site}")
}

/// The pipeline's view of every configured site.
pub fn channels(sites: &std::collections::BTreeMap<String, WidgetSite>) -> Vec<ChannelInfo> {
    sites
        .iter()
        .map(|(key, s)| ChannelInfo {
            connector_id: connector_id(key),
            channel: "widget".into(),
            department: s.department.clone(),
        })
        .collect()
}

/// Signs and checks visitor tokens: `v1.<visitor>.<site>.<issued unix secs>.<mac>`.
#[derive(Clone)]
pub struct VisitorTokens {
    key: Arc<[u8]>,
}

impl std::fmt::Debug for VisitorTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VisitorTokens(<key>)")
    }
}

impl VisitorTokens {
    /// Tokens signed with `key` (shared by every node through the store).
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.into() }
    }

    fn mac(&self, payload: &str) -> String {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC takes a key of any length");
        m.update(payload.as_bytes());
        hex(&m.finalize().into_bytes()[..16])
    }

    /// A new token for a new visitor of `site`: `(token, visitor_id)`.
    pub fn issue(&self, site: &str) -> (String, String) {
        let visitor = hex(&rand::random::<[u8; 12]>());
        (
            self.sign(&visitor, site, Timestamp::now().micros() / 1_000_000),
            visitor,
        )
    }

    fn sign(&self, visitor: &str, site: &str, issued: i64) -> String {
        let payload = format!("v1.{visitor}.{site}.{issued}");
        let mac = self.mac(&payload);
        format!("{payload}.{mac}")
    }

    /// The visitor id of a valid, unexpired token of `site`.
    pub fn verify(&self, token: &str, site: &str) -> Option<String> {
        if token.len() > 200 {
            return None;
        }
        let (payload, mac) = token.rsplit_once('.')?;
        let parts: Vec<&str> = payload.split('.').collect();
        let [v, visitor, token_site, issued] = parts.as_slice() else {
            return None;
        };
        if *v != "v1" || *token_site != site {
            return None;
        }
        if !constant_time_eq(self.mac(payload).as_bytes(), mac.as_bytes()) {
            return None;
        }
        let issued: i64 = issued.parse().ok()?;
        let now = Timestamp::now().micros() / 1_000_000;
        if issued > now + 300 || now - issued > TOKEN_DAYS * 86_400 {
            return None;
        }
        let ok = visitor.len() == 24 && visitor.bytes().all(|b| b.is_ascii_hexdigit());
        ok.then(|| (*visitor).to_owned())
    }
}

use crate::auth::{constant_time_eq, hex};

/// Query of the upgrade.
#[derive(Debug, Deserialize)]
pub struct WidgetQuery {
    site: String,
}

/// A logged-in customer as the site's backend vouches for them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifiedIdentity {
    /// The customer's id on the site.
    id: String,
    /// `hex(HMAC-SHA256(identity_secret, id))`.
    hash: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    phone: Option<String>,
}

/// What a visitor sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum VisitorFrame {
    Start {
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        since: Option<i64>,
        #[serde(default)]
        identity: Option<VerifiedIdentity>,
        /// Pre-chat fields.
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        email: Option<String>,
        #[serde(default)]
        phone: Option<String>,
    },
    Message {
        #[serde(default)]
        id: Option<ReqId>,
        client_msg_id: String,
        text: String,
    },
    Typing {},
    Ping {
        #[serde(default)]
        id: Option<ReqId>,
    },
}

/// Parses a visitor frame as the socket does and names its type (for fuzzing and tests).
///
/// # Errors
/// The parser's message.
pub fn parse_frame_type(text: &str) -> Result<&'static str, String> {
    let f: VisitorFrame = serde_json::from_str(text).map_err(|e| e.to_string())?;
    Ok(match f {
        VisitorFrame::Start { .. } => "start",
        VisitorFrame::Message { .. } => "message",
        VisitorFrame::Typing {} => "typing",
        VisitorFrame::Ping { .. } => "ping",
    })
}

/// `GET /ws/widget?site=<key>`.
pub async fn handler(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<WidgetQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let Some(site) = state.config.widget.sites.get(&q.site).cloned() else {
        return ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such widget site")
            .into_response();
    };
    if !site.origins.is_empty() {
        let origin = headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !site
            .origins
            .iter()
            .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin))
        {
            return ApiError::forbidden("this page's origin may not use this widget site")
                .into_response();
        }
    }
    let Some(tokens) = state.visitor_tokens.clone() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the widget is starting",
        )
        .into_response();
    };
    let w = &state.config.widget;
    let rt = &state.config.realtime;
    ws.read_buffer_size(rt.read_buffer_bytes.min(4096))
        .max_message_size(w.max_frame_bytes)
        .max_frame_size(w.max_frame_bytes)
        .on_upgrade(move |socket| async move {
            let mut v = Visitor::new(socket, state, q.site, site, tokens);
            let flow = v.serve().await;
            v.finish(flow).await;
        })
}

struct Visitor {
    socket: WebSocket,
    state: AppState,
    site_key: String,
    site: WidgetSite,
    tokens: VisitorTokens,
    handle: Arc<ConnHandle>,
    rx: tokio::sync::mpsc::Receiver<Arc<Event>>,
    limiter: FrameLimiter,
    protocol_errors: u32,
    /// The visitor id of the token.
    visitor_id: String,
    /// The visitor's thread and identity value.
    thread: String,
    party: Party,
    dialog: Option<Id>,
    /// The subscription's replay bound (live events of the dialog after it).
    until: i64,
    /// Messages this connection sent and had acked: not echoed back to it.
    own: std::collections::VecDeque<Id>,
    last_sent: i64,
}

enum Flow {
    Continue,
    Close(u16, &'static str),
    Gone,
}

impl Visitor {
    fn new(
        socket: WebSocket,
        state: AppState,
        site_key: String,
        site: WidgetSite,
        tokens: VisitorTokens,
    ) -> Self {
        let sub = state.hub.connect(64);
        let limiter = FrameLimiter::new(state.config.widget.frames_per_sec);
        Self {
            socket,
            state,
            site_key,
            site,
            tokens,
            handle: sub.handle,
            rx: sub.rx,
            limiter,
            protocol_errors: 0,
            visitor_id: String::new(),
            thread: String::new(),
            party: Party {
                identities: Vec::new(),
                display_name: None,
            },
            dialog: None,
            until: 0,
            own: std::collections::VecDeque::new(),
            last_sent: 0,
        }
    }

    async fn finish(&mut self, flow: Flow) {
        if let Some(d) = self.dialog {
            self.state.hub.unsubscribe(Topic::dialog(d), self.handle.id);
        }
        if let Flow::Close(code, reason) = flow {
            super::close_gracefully(&mut self.socket, code, reason).await;
        }
        metrics::gauge!("kommutator_ws_connections", "kind" => "widget").decrement(1.0);
    }

    async fn serve(&mut self) -> Flow {
        metrics::gauge!("kommutator_ws_connections", "kind" => "widget").increment(1.0);
        // The page starts with `start`.
        let first = match tokio::time::timeout(START_WAIT, self.socket.recv()).await {
            Ok(Some(Ok(Message::Text(t)))) => t,
            Ok(Some(Ok(_))) => return Flow::Close(close::PROTOCOL, "send start first"),
            Ok(_) => return Flow::Gone,
            Err(_) => return Flow::Close(close::TIMEOUT, "no start frame"),
        };
        let (token, since, identity, pre) =
            match serde_json::from_str::<VisitorFrame>(first.as_str()) {
                Ok(VisitorFrame::Start {
                    token,
                    since,
                    identity,
                    name,
                    email,
                    phone,
                }) => (token, since, identity, (name, email, phone)),
                _ => return Flow::Close(close::PROTOCOL, "the first frame must be start"),
            };
        if let Err(e) = self.identify(token, identity, pre).await {
            let _ = self
                .send_json(&json!({"type": "error", "seq": 0, "code": e.0, "message": e.1}))
                .await;
            return Flow::Close(close::PROTOCOL, "start refused");
        }
        let connector = connector_id(&self.site_key);
        // The dialog, if the visitor has one: follow it and replay what they missed.
        let dialog = self
            .state
            .store
            .dialog_by_thread(&connector, &self.thread)
            .await
            .ok()
            .flatten();
        let mut replayed = Vec::new();
        if let Some(d) = &dialog {
            replayed = self.follow(d, since).await;
        }
        let online = self.operators_online().await;
        let token = self.current_token();
        let ready = json!({
            "type": "ready",
            "v": PROTOCOL_VERSION,
            "seq": self.state.hub.head(),
            "token": token,
            "dialog_id": dialog.as_ref().map(|d| d.id),
            "operators_online": online,
        });
        if !self.send_json(&ready).await || !self.send_events(&replayed).await {
            return Flow::Gone;
        }
        let ping_every = Duration::from_secs(self.state.config.realtime.ping_interval_secs);
        let mut ping =
            tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
        let mut last_recv = Instant::now();
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
                    let mut batch = vec![ev];
                    while batch.len() < 32 {
                        match self.rx.try_recv() {
                            Ok(e) => batch.push(e),
                            Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                        }
                    }
                    let live: Vec<Arc<Event>> = batch.into_iter().filter(|e| e.ephemeral || e.seq > self.until).collect();
                    if !self.send_events(&live).await {
                        return Flow::Gone;
                    }
                }
                msg = self.socket.recv() => {
                    let Some(Ok(msg)) = msg else { return Flow::Gone };
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
                    if !self.send_raw(Message::Ping(bytes::Bytes::new())).await {
                        return Flow::Gone;
                    }
                }
            }
        }
    }

    fn current_token(&self) -> String {
        // Re-issued on every start, so an active visitor's token never expires.
        let visitor = self.visitor_id.clone();
        self.tokens.sign(
            &visitor,
            &self.site_key,
            Timestamp::now().micros() / 1_000_000,
        )
    }

    async fn operators_online(&mut self) -> bool {
        let Some(name) = &self.site.department else {
            return false;
        };
        let Ok(deps) = self.state.store.list_departments().await else {
            return false;
        };
        let Some(d) = deps.iter().find(|d| &d.name == name) else {
            return false;
        };
        self.state
            .store
            .operator_states(Some(d.id))
            .await
            .map(|ops| {
                ops.iter()
                    .any(|o| o.status == crate::domain::PresenceStatus::Online)
            })
            .unwrap_or(false)
    }

    /// Sets the visitor (from the token, or a new one), the thread and the party.
    async fn identify(
        &mut self,
        token: Option<String>,
        identity: Option<VerifiedIdentity>,
        (name, email, phone): (Option<String>, Option<String>, Option<String>),
    ) -> Result<(), (&'static str, String)> {
        self.visitor_id = match token
            .as_deref()
            .and_then(|t| self.tokens.verify(t, &self.site_key))
        {
            Some(v) => v,
            None => self.tokens.issue(&self.site_key).1,
        };
        let mut display = name;
        let mut email = email;
        let mut phone = phone;
        let value = match identity {
            Some(idn) => {
                let Some(secret) = &self.site.identity_secret else {
                    return Err((
                        "identity_not_enabled",
                        "this site does not verify customer identities".into(),
                    ));
                };
                if idn.id.is_empty() || idn.id.len() > 256 {
                    return Err((
                        "invalid_identity",
                        "identity.id is 1 to 256 characters".into(),
                    ));
                }
                let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
                    .expect("HMAC takes a key of any length");
                m.update(idn.id.as_bytes());
                let want = hex(&m.finalize().into_bytes());
                if !constant_time_eq(want.as_bytes(), idn.hash.to_ascii_lowercase().as_bytes()) {
                    return Err((
                        "invalid_identity",
                        "identity.hash does not match identity.id".into(),
                    ));
                }
                display = idn.name.or(display);
                email = idn.email.or(email);
                phone = idn.phone.or(phone);
                let digest = Sha256::digest(format!("{}\n{}", self.site_key, idn.id).as_bytes());
                format!("{}-u-{}", self.site_key, hex(&digest[..16]))
            }
            None => format!("{}-{}", self.site_key, self.visitor_id),
        };
        self.thread = value.clone();
        let mut ids = vec![PartyIdentity::new(IdentityKind::WebVisitor, value)];
        if let Some(e) = email.filter(|e| !e.trim().is_empty()) {
            ids.push(PartyIdentity::new(
                IdentityKind::Email,
                e.chars().take(254).collect::<String>(),
            ));
        }
        if let Some(p) = phone.filter(|p| !p.trim().is_empty()) {
            ids.push(PartyIdentity::new(
                IdentityKind::Phone,
                p.chars().take(64).collect::<String>(),
            ));
        }
        self.party = Party {
            identities: ids,
            display_name: display.map(|n| n.chars().take(200).collect()),
        };
        Ok(())
    }

    /// Follows the dialog and returns what to replay after `since`.
    async fn follow(&mut self, d: &Dialog, since: Option<i64>) -> Vec<Arc<Event>> {
        let hub = self.state.hub.clone();
        let t = Topic::dialog(d.id);
        hub.subscribe(t, &self.handle);
        self.dialog = Some(d.id);
        self.until = hub.head();
        let Some(since) = since.filter(|s| *s >= 0 && *s < self.until) else {
            return Vec::new();
        };
        let max = self.state.config.realtime.max_replay;
        let replayed = match hub.replay(t, since, self.until, max).await {
            Ok(Replay::Events(v)) => v,
            // Too much missed: the page reloads its history over... there is no REST for
            // visitors, so replay the most recent `max` events instead.
            Ok(Replay::TooOld) => {
                let from = self
                    .until
                    .saturating_sub(i64::try_from(max).unwrap_or(1000) * 4);
                match hub.replay(t, from, self.until, max * 4).await {
                    Ok(Replay::Events(v)) => v,
                    _ => Vec::new(),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "widget replay failed");
                Vec::new()
            }
        };
        // Events already queued (up to `until`) are in the replay.
        let mut held = Vec::new();
        while let Ok(e) = self.rx.try_recv() {
            if e.ephemeral || e.seq > self.until {
                held.push(e);
            }
        }
        let mut out = replayed;
        out.extend(held);
        out
    }

    /// Sends events in the visitor's shape; internal events are skipped.
    async fn send_events(&mut self, events: &[Arc<Event>]) -> bool {
        let frames: Vec<(i64, String)> = events
            .iter()
            .filter(|e| !(&*e.entity == "message" && self.own.contains(&e.entity_id)))
            .filter_map(|e| visitor_frame(e).map(|f| (e.seq, f)))
            .collect();
        if frames.is_empty() {
            return true;
        }
        let result = tokio::time::timeout(super::WRITE_TIMEOUT, async {
            for (_, f) in &frames {
                self.socket
                    .feed(Message::Text(Utf8Bytes::from(f.clone())))
                    .await?;
            }
            self.socket.flush().await
        })
        .await;
        if !matches!(result, Ok(Ok(()))) {
            return false;
        }
        if let Some((seq, _)) = frames.iter().max_by_key(|(s, _)| *s) {
            self.last_sent = self.last_sent.max(*seq);
        }
        true
    }

    async fn send_raw(&mut self, m: Message) -> bool {
        matches!(
            tokio::time::timeout(super::WRITE_TIMEOUT, self.socket.send(m)).await,
            Ok(Ok(()))
        )
    }

    async fn send_json(&mut self, v: &Value) -> bool {
        self.send_raw(Message::Text(Utf8Bytes::from(v.to_string())))
            .await
    }

    async fn error(&mut self, id: Option<&ReqId>, code: &str, message: &str) -> bool {
        let mut v =
            json!({"type": "error", "seq": self.last_sent, "code": code, "message": message});
        if let Some(id) = id {
            v["id"] = json!(id);
        }
        self.send_json(&v).await
    }

    async fn on_message(&mut self, msg: Message) -> Flow {
        let text = match msg {
            Message::Text(t) => t,
            Message::Binary(_) => {
                return self
                    .protocol_error("binary_not_supported", "send JSON text frames")
                    .await
            }
            Message::Ping(_) | Message::Pong(_) => return Flow::Continue,
            Message::Close(_) => return Flow::Gone,
        };
        if !self.limiter.allow() {
            if self.limiter.refused_in_row > 50 {
                return Flow::Close(close::RATE_LIMITED, "too many frames");
            }
            if self.limiter.refused_in_row == 1
                && !self
                    .error(
                        None,
                        "rate_limited",
                        "too many frames; this one was dropped",
                    )
                    .await
            {
                return Flow::Gone;
            }
            return Flow::Continue;
        }
        let frame: VisitorFrame = match serde_json::from_str(text.as_str()) {
            Ok(f) => f,
            Err(e) => {
                let code = if serde_json::from_str::<Value>(text.as_str()).is_ok() {
                    "invalid_frame"
                } else {
                    "invalid_json"
                };
                return self.protocol_error(code, &e.to_string()).await;
            }
        };
        match frame {
            VisitorFrame::Ping { id } => {
                let mut v = json!({"type": "pong", "seq": self.last_sent});
                if let Some(id) = id {
                    v["id"] = json!(id);
                }
                if self.send_json(&v).await {
                    Flow::Continue
                } else {
                    Flow::Gone
                }
            }
            VisitorFrame::Start { .. } => {
                self.protocol_error("invalid_frame", "start was already sent")
                    .await
            }
            VisitorFrame::Typing {} => {
                if let Some(d) = self.dialog {
                    let data =
                        json!({"dialog_id": d, "who": "customer", "name": self.party.display_name});
                    self.state.hub.publish_ephemeral(Event::ephemeral(
                        self.state.hub.head(),
                        vec![Topic::dialog(d)],
                        "typing",
                        d,
                        "customer",
                        &crate::domain::Actor::System,
                        None::<Owner>,
                        &data,
                    ));
                }
                Flow::Continue
            }
            VisitorFrame::Message {
                id,
                client_msg_id,
                text,
            } => {
                if id.as_ref().is_some_and(|i| !i.is_valid()) {
                    return self
                        .protocol_error(
                            "invalid_frame",
                            "id is a number or a string of at most 64 bytes",
                        )
                        .await;
                }
                let ok_key = (1..=64).contains(&client_msg_id.len())
                    && client_msg_id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
                if !ok_key {
                    return if self
                        .error(
                            id.as_ref(),
                            "invalid",
                            "client_msg_id is 1 to 64 of A-Z, a-z, 0-9, '-', '_', '.'",
                        )
                        .await
                    {
                        Flow::Continue
                    } else {
                        Flow::Gone
                    };
                }
                if text.trim().is_empty()
                    || text.chars().count() > self.state.config.widget.max_text_chars
                {
                    let m = format!(
                        "text is 1 to {} characters",
                        self.state.config.widget.max_text_chars
                    );
                    return if self.error(id.as_ref(), "invalid", &m).await {
                        Flow::Continue
                    } else {
                        Flow::Gone
                    };
                }
                self.post(id, client_msg_id, text).await
            }
        }
    }

    async fn post(&mut self, id: Option<ReqId>, client_msg_id: String, text: String) -> Flow {
        let ev = InboundEvent::new(
            ConnectorId::new(connector_id(&self.site_key)),
            format!("{}:{client_msg_id}", self.thread),
            time::OffsetDateTime::now_utc(),
            InboundKind::Message(InboundMessage {
                thread_id: self.thread.clone(),
                sender: self.party.clone(),
                text: Some(text),
                subject: None,
                html: None,
                quoted: None,
                attachments: Vec::new(),
                reply_to_external_id: None,
                edit_of: None,
            }),
        );
        let outcome = self.state.pipeline.submit(ev).await;
        let reply = match outcome {
            Ok(Processed::Message(crate::domain::IngestOutcome::Stored {
                message,
                dialog,
                ..
            })) => {
                self.own.push_back(message.id);
                if self.own.len() > 256 {
                    self.own.pop_front();
                }
                if self.dialog.is_none() {
                    // Follow the new dialog from now on (the message itself is acked).
                    let _ = self.follow(&dialog, None).await;
                }
                json!({"type": "ack", "seq": self.last_sent, "message_id": message.id, "dialog_id": dialog.id, "duplicate": false})
            }
            Ok(Processed::Message(crate::domain::IngestOutcome::Duplicate {
                message_id,
                dialog_id,
            })) => {
                json!({"type": "ack", "seq": self.last_sent, "message_id": message_id, "dialog_id": dialog_id, "duplicate": true})
            }
            Ok(_) => {
                json!({"type": "error", "seq": self.last_sent, "code": "internal", "message": "the message was not stored"})
            }
            Err(e) => {
                tracing::warn!(error = %e, "widget message refused");
                let (code, msg) = match e {
                    crate::pipeline::PipelineError::Invalid(f) => ("invalid", f.message),
                    crate::pipeline::PipelineError::Closed => {
                        ("unavailable", "the hub is restarting; retry".to_owned())
                    }
                    _ => ("internal", "the message was not stored; retry".to_owned()),
                };
                json!({"type": "error", "seq": self.last_sent, "code": code, "message": msg})
            }
        };
        let mut reply = reply;
        if let Some(id) = id {
            reply["id"] = json!(id);
        }
        if self.send_json(&reply).await {
            Flow::Continue
        } else {
            Flow::Gone
        }
    }

    async fn protocol_error(&mut self, code: &str, message: &str) -> Flow {
        self.protocol_errors += 1;
        if self.protocol_errors > MAX_PROTOCOL_ERRORS {
            return Flow::Close(close::PROTOCOL, "too many malformed frames");
        }
        if self.error(None, code, message).await {
            Flow::Continue
        } else {
            Flow::Gone
        }
    }
}

/// The visitor's view of an event: messages (both directions, for other tabs) and the
/// operators' typing; `None` for everything else.
fn visitor_frame(e: &Event) -> Option<String> {
    match (&*e.entity, &*e.op) {
        ("message", "create") => {
            let v: Value = serde_json::from_str(e.frame.as_str()).ok()?;
            let d = &v["data"];
            Some(
                json!({
                    "type": "message",
                    "seq": e.seq,
                    "id": d["id"],
                    "direction": d["direction"],
                    "text": d["body"],
                    "attachments": d["attachments"],
                    "sent_at": d["sent_at"],
                })
                .to_string(),
            )
        }
        ("typing", "operator") => {
            Some(json!({"type": "typing", "seq": e.seq, "who": "operator"}).to_string())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_their_own() {
        let t = VisitorTokens::new(b"secret");
        let (token, visitor) = t.issue("shop");
        assert_eq!(t.verify(&token, "shop").as_deref(), Some(visitor.as_str()));
        assert_eq!(t.verify(&token, "other"), None);
        assert_eq!(VisitorTokens::new(b"other").verify(&token, "shop"), None);
        let mut forged = token.clone();
        forged.replace_range(3..5, "00");
        assert_eq!(t.verify(&forged, "shop"), None);
        assert_eq!(t.verify("", "shop"), None);
        assert_eq!(t.verify("v1.x.shop.1.y", "shop"), None);
        let old = t.sign(&visitor, "shop", 1);
        assert_eq!(t.verify(&old, "shop"), None, "expired");
    }
}
