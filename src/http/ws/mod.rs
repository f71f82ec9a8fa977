//! WebSocket endpoints: `/ws/operator` (consoles) and the pieces every socket shares:
//! close codes, request ids, the frame-rate limiter, the Origin check, and the subscription
//! set with its gap-free replay (see [`subscriptions`]).
//!
//! The protocol is documented, with versions, in `docs/ws-protocol.md`.

pub mod operator;
pub mod subscriptions;
pub mod widget;

use std::time::Instant;

use axum::http::{header, HeaderMap};
use serde::{Deserialize, Serialize};

/// Protocol version in `hello`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Close codes (4000–4999 are ours; see the protocol doc).
pub mod close {
    /// The session ended or the token is no longer valid: sign in again.
    pub const UNAUTHORIZED: u16 = 4001;
    /// The client fell behind (its queue filled up): reconnect and resume with `since`.
    pub const SLOW: u16 = 4008;
    /// No frame within three ping intervals.
    pub const TIMEOUT: u16 = 4009;
    /// Too many malformed frames.
    pub const PROTOCOL: u16 = 4002;
    /// Frames sent faster than the limit, for too long.
    pub const RATE_LIMITED: u16 = 4029;
    /// The node is shutting down: reconnect (to another node) and resume.
    pub const GOING_AWAY: u16 = 1001;
    /// A frame larger than the limit.
    pub const TOO_BIG: u16 = 1009;
}

/// A request id as the client sent it, echoed in the reply: a number or a short string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ReqId {
    /// A number.
    Num(i64),
    /// A string of at most 64 bytes.
    Str(String),
}

impl ReqId {
    /// Whether the id is acceptable.
    pub fn is_valid(&self) -> bool {
        match self {
            ReqId::Num(_) => true,
            ReqId::Str(s) => s.len() <= 64,
        }
    }
}

/// A token bucket for client frames: `rate` per second, bursts of `2 × rate`.
#[derive(Debug)]
pub struct FrameLimiter {
    rate: f64,
    tokens: f64,
    last: Instant,
    /// Frames refused in a row; a flood that goes on is closed.
    pub refused_in_row: u32,
}

impl FrameLimiter {
    /// A full bucket.
    pub fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        Self {
            rate,
            tokens: rate * 2.0,
            last: Instant::now(),
            refused_in_row: 0,
        }
    }

    /// Takes a token; false when the client is over its rate.
    pub fn allow(&mut self) -> bool {
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.rate * 2.0);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.refused_in_row = 0;
            true
        } else {
            self.refused_in_row += 1;
            false
        }
    }
}

/// Refuses a cross-site upgrade that rides on the session cookie: with cookie auth the
/// `Origin` (when the browser sends one) must name the host the request came to (or the
/// configured public URL). Bearer tokens are not sent by browsers on their own, so they
/// need no such check.
pub fn same_origin(headers: &HeaderMap, public_url: Option<&str>) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let origin_host = origin
        .split_once("://")
        .map_or(origin, |(_, rest)| rest)
        .trim_end_matches('/');
    if let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) {
        if origin_host.eq_ignore_ascii_case(host) {
            return true;
        }
    }
    if let Some(p) = public_url {
        let p = p.split_once("://").map_or(p, |(_, rest)| rest);
        let p = p.split('/').next().unwrap_or(p);
        if origin_host.eq_ignore_ascii_case(p) {
            return true;
        }
    }
    false
}

/// How long one write to a client may block before the connection is dropped.
pub const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Sends a close frame, then reads (and discards) what the client still sends until its
/// close frame arrives or a second passes. Dropping the socket with unread input would make
/// the kernel reset the connection, and the client would lose the error and close frames
/// sent just before.
///
/// The close frame itself gets the full [`WRITE_TIMEOUT`]: a client closed as slow has, by
/// definition, a full send buffer ahead of it, and it should still learn the resumable
/// `4008` once it reads again rather than see the connection merely vanish.
pub async fn close_gracefully(
    socket: &mut axum::extract::ws::WebSocket,
    code: u16,
    reason: &'static str,
) {
    use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
    let frame = Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }));
    if tokio::time::timeout(WRITE_TIMEOUT, socket.send(frame))
        .await
        .is_err()
    {
        return;
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
    while let Ok(Some(Ok(m))) = tokio::time::timeout_at(deadline, socket.recv()).await {
        if matches!(m, Message::Close(_)) {
            break;
        }
    }
}

/// Whether the request authenticates with a bearer header (not a cookie).
pub fn has_bearer(headers: &HeaderMap) -> bool {
    headers.contains_key(header::AUTHORIZATION)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn origin_rules() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("hub.example:8080"));
        assert!(same_origin(&h, None));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://hub.example:8080"),
        );
        assert!(same_origin(&h, None));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!same_origin(&h, None));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://crm.example"),
        );
        assert!(same_origin(&h, Some("https://crm.example/")));
    }

    #[test]
    fn limiter_allows_burst_then_refuses() {
        let mut l = FrameLimiter::new(5);
        let allowed = (0..20).filter(|_| l.allow()).count();
        assert!((10..=11).contains(&allowed), "{allowed}");
        assert!(l.refused_in_row > 0);
    }
}
