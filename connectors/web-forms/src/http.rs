//! The form's public routes: `POST /`, `OPTIONS /`, `GET /embed.js`, `GET /embed.html`.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::BodyExt;
use kommutator_sdk::{ConnectorError, InboundSender, Secret};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::limiter::RateLimiter;
use crate::map::{self, FormInfo, RequestMeta};
use crate::parse::{
    check_content_type, parse_submission, FormError, FormKind, FormSpec, ParseContext,
};
use crate::signature::{self, SIGNATURE_HEADER, TIMESTAMP_HEADER};

/// How long a browser may cache a preflight answer, in seconds.
pub const PREFLIGHT_MAX_AGE_SECS: u32 = 600;
/// The longest `User-Agent` kept in `raw`, in characters.
const MAX_USER_AGENT_CHARS: usize = 512;
/// The most of a refused post's body read and dropped before answering, in bytes.
pub const DRAIN_MAX_BYTES: usize = 1024 * 1024;
/// The longest a refused post's body is read and dropped before answering.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// What the handlers need; shared by all requests of one instance.
pub(crate) struct App {
    pub(crate) sender: InboundSender,
    pub(crate) form_name: String,
    pub(crate) kind: FormKind,
    pub(crate) spec: FormSpec,
    pub(crate) allowed_origins: Vec<String>,
    pub(crate) hmac_secret: Option<Secret>,
    pub(crate) allow_browser: bool,
    pub(crate) trust_forwarded_for: bool,
    pub(crate) max_body_bytes: usize,
    /// Never held across an `.await`.
    pub(crate) limiter: Mutex<RateLimiter>,
    pub(crate) embed_js: String,
    pub(crate) consent_text: Option<String>,
}

pub(crate) fn router(app: App) -> Router {
    Router::new()
        .route("/", post(submit).options(preflight))
        .route("/embed.js", get(embed_js))
        .route("/embed.html", get(embed_html))
        .with_state(Arc::new(app))
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

fn refuse(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    answer(status, json!({"error": code, "message": message.into()}))
}

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// An origin as compared: lowercase, without a trailing slash.
pub(crate) fn normalize_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Whether a config origin is `http(s)://host[:port]` and nothing more.
pub(crate) fn is_valid_origin(origin: &str) -> bool {
    let Some(rest) = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
    else {
        return false;
    };
    !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

impl App {
    fn allowed_origin(&self, origin: &str) -> bool {
        let o = normalize_origin(origin);
        self.allowed_origins.contains(&o)
    }

    /// The client's IP: the last `X-Forwarded-For` entry when the proxy is trusted (the
    /// one the proxy in front of the hub appended), else the peer address.
    fn client_ip(&self, parts: &axum::http::request::Parts) -> String {
        if self.trust_forwarded_for {
            let forwarded = parts
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(|s| s.trim().parse::<IpAddr>().ok())
                .next_back();
            if let Some(ip) = forwarded {
                return ip.to_string();
            }
        }
        parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string())
    }
}

/// Adds the CORS headers of an allowed origin.
fn with_cors(mut resp: Response, origin: Option<&str>) -> Response {
    if let Some(o) = origin.and_then(|o| HeaderValue::from_str(o).ok()) {
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    resp
}

fn form_error(app: &App, e: &FormError) -> Response {
    tracing::debug!(code = e.code(), error = %e, "web form: submission refused");
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    answer(status, e.to_json(&app.spec))
}

async fn submit(State(app): State<Arc<App>>, req: Request) -> Response {
    let origin = header_str(req.headers(), header::ORIGIN).map(str::to_owned);
    let cors = origin.as_deref().filter(|o| app.allowed_origin(o));
    let (parts, body) = req.into_parts();
    let mut body = Some(body);
    let resp = handle(&app, parts, &mut body, origin.as_deref()).await;
    if let Some(rest) = body {
        drain(rest).await;
    }
    with_cors(resp, cors)
}

/// Reads and drops what is left of a refused post's body (at most [`DRAIN_MAX_BYTES`],
/// for at most two seconds) before the answer goes out. A client still sending when the
/// server closes a socket with unread data gets a reset instead of the answer, and most
/// HTTP clients (browsers' `fetch` included) then report a network error, not the 413 or
/// 429 that says what to do. Past the bounds the connection is simply closed.
async fn drain(mut body: Body) {
    let mut left = DRAIN_MAX_BYTES;
    let read = async {
        while let Some(Ok(frame)) = body.frame().await {
            let n = frame.data_ref().map_or(0, Bytes::len);
            if n >= left {
                break;
            }
            left -= n;
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, read).await;
}

/// The body, up to `max` bytes; `None` when it is longer (what was read past the limit,
/// up to the drain bound, is dropped: see [`drain`]) or cannot be read.
async fn read_body(mut body: Body, max: usize) -> Option<Bytes> {
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return None };
        if let Some(data) = frame.data_ref() {
            if buf.len() + data.len() > max {
                drain(body).await;
                return None;
            }
            buf.extend_from_slice(data);
        }
    }
    Some(Bytes::from(buf))
}

/// Answers a post; `body` is taken when read, and whatever is left untaken is drained by
/// the caller.
async fn handle(
    app: &App,
    parts: axum::http::request::Parts,
    body: &mut Option<Body>,
    origin: Option<&str>,
) -> Response {
    // A browser always sends `Origin` on a cross-origin POST (and the `Sec-Fetch-*` headers
    // in current versions); a server-to-server post sends neither.
    let browser = origin.is_some() || parts.headers.contains_key("sec-fetch-site");
    if browser {
        match origin {
            None => {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "origin_not_allowed",
                    "browser post without an Origin header",
                )
            }
            Some(o) if !app.allowed_origin(o) => {
                tracing::debug!(origin = %o, "web form: origin not allowed");
                return refuse(
                    StatusCode::FORBIDDEN,
                    "origin_not_allowed",
                    "this site may not post to the form",
                );
            }
            Some(_) => {}
        }
        if app.hmac_secret.is_some() && !app.allow_browser {
            return refuse(
                StatusCode::FORBIDDEN,
                "browser_not_allowed",
                "this form takes signed server-to-server posts only",
            );
        }
    }

    let ip = app.client_ip(&parts);
    let limited = app
        .limiter
        .lock()
        .map_or(Ok(()), |mut l| l.check(&ip, Instant::now()));
    if let Err(wait) = limited {
        tracing::debug!(%ip, "web form: rate limited");
        let secs = wait.as_secs_f64().ceil().max(1.0);
        let mut resp = refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("too many submissions, retry in {secs} s"),
        );
        if let Ok(v) = HeaderValue::from_str(&format!("{secs}")) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return resp;
    }

    let too_large = || form_error(app, &FormError::TooLarge(app.max_body_bytes));
    let declared = header_str(&parts.headers, header::CONTENT_LENGTH)
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(n) = declared.filter(|n| *n > app.max_body_bytes as u64) {
        if n > DRAIN_MAX_BYTES as u64 {
            // Too big to be worth reading even to drop: refuse and close.
            body.take();
        }
        return too_large();
    }
    let content_type = header_str(&parts.headers, header::CONTENT_TYPE);
    if let Err(e) = check_content_type(content_type) {
        return form_error(app, &e);
    }
    let Some(bytes) = read_body(body.take().unwrap_or_default(), app.max_body_bytes).await else {
        return too_large();
    };

    let now = OffsetDateTime::now_utc();
    if !browser {
        if let Some(secret) = &app.hmac_secret {
            let verified = signature::verify(
                secret.expose().as_bytes(),
                header_str(&parts.headers, TIMESTAMP_HEADER),
                header_str(&parts.headers, SIGNATURE_HEADER),
                &bytes,
                now.unix_timestamp(),
            );
            if let Err(e) = verified {
                tracing::warn!(%ip, error = %e, "web form: signed post refused");
                return refuse(StatusCode::UNAUTHORIZED, "unauthorized", e.to_string());
            }
        }
    }

    let ctx = ParseContext {
        now_ms: i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX),
        browser,
    };
    let sub = match parse_submission(&bytes, content_type, &app.spec, ctx) {
        Ok(s) => s,
        Err(e) => return form_error(app, &e),
    };
    let external_id = map::external_id(&sub, app.sender.id().as_str(), now.unix_timestamp());
    let meta = RequestMeta {
        ip,
        user_agent: header_str(&parts.headers, header::USER_AGENT)
            .map(|ua| ua.chars().take(MAX_USER_AGENT_CHARS).collect()),
    };
    let form = FormInfo {
        id: app.sender.id(),
        name: &app.form_name,
        kind: app.kind,
    };
    let event = map::event(form, &sub, external_id.clone(), &meta, now);
    tracing::debug!(key = %external_id, "web form: submission accepted");
    match app.sender.send(event).await {
        Ok(()) => answer(StatusCode::OK, json!({"ok": true, "id": external_id})),
        Err(ConnectorError::Closed) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the hub is not taking submissions right now, retry later",
        ),
        Err(e) => {
            tracing::error!(error = %e, "web form: event not handed over");
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            )
        }
    }
}

async fn preflight(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let Some(origin) = header_str(&headers, header::ORIGIN) else {
        return refuse(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "preflight without an Origin header",
        );
    };
    if !app.allowed_origin(origin) || (app.hmac_secret.is_some() && !app.allow_browser) {
        return refuse(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            "this site may not post to the form",
        );
    }
    let mut resp = with_cors(StatusCode::NO_CONTENT.into_response(), Some(origin));
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type"),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from(PREFLIGHT_MAX_AGE_SECS),
    );
    resp
}

async fn embed_js(State(app): State<Arc<App>>) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                "application/javascript; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "public, max-age=300"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        app.embed_js.clone(),
    )
        .into_response()
}

async fn embed_html(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let host = header_str(&headers, header::HOST)
        .filter(|h| {
            !h.is_empty()
                && h.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                })
        })
        .unwrap_or("hub.example");
    let html = crate::embed::snippet(
        host,
        app.sender.id(),
        &app.form_name,
        app.kind,
        &app.spec,
        app.consent_text.as_deref(),
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        html,
    )
        .into_response()
}
