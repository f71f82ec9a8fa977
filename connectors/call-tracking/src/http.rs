//! The webhook routes: authenticate, read, map, hand over, answer.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kommutator_sdk::{ConnectorError, InboundEvent, InboundSender};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use tokio::sync::Mutex;

use crate::common::{Mapped, MAX_BODY_BYTES};
use crate::mango::{
    map_mango_call, map_mango_other, map_mango_recording, parse_mango_call, parse_mango_envelope,
    verify_mango_sign, MangoEntry,
};
use crate::roistat::{map_roistat, parse_roistat, RoistatStage};
use crate::uis::{map_uis, parse_uis};
use crate::zadarma::{map_zadarma, parse_zadarma, verify_zadarma_signature, SignatureError};
use crate::Secret;
use kommutator_sdk::phone::NumberPlan;
use kommutator_sdk::CallTable;

/// How many Mango entries (calls) the connector follows for `seq` ordering and talk time.
pub(crate) const MAX_TRACKED_ENTRIES: usize = 10_000;

/// The longest `zd_echo` value echoed back.
const MAX_ECHO_LEN: usize = 256;

/// What the handlers need; shared by all requests of one instance.
pub(crate) struct App {
    pub(crate) sender: InboundSender,
    pub(crate) plan: NumberPlan,
    pub(crate) zadarma_secret: Option<Secret>,
    pub(crate) mango: Option<(Secret, Secret)>,
    pub(crate) roistat_token: Option<[u8; 32]>,
    pub(crate) uis_token: Option<[u8; 32]>,
    /// Held across `send`: an entry's state changes only once its event is handed over.
    pub(crate) mango_entries: Mutex<CallTable<MangoEntry>>,
}

pub(crate) fn router(app: App) -> Router {
    let mut router = Router::new();
    if app.zadarma_secret.is_some() {
        router = router.route("/zadarma", get(zadarma_echo).post(zadarma_notify));
    }
    if app.mango.is_some() {
        router = router.route("/mango/events/{kind}", post(mango_notify));
    }
    if app.roistat_token.is_some() {
        router = router
            .route("/roistat/start", post(roistat_start))
            .route("/roistat/end", post(roistat_end));
    }
    if app.uis_token.is_some() {
        router = router.route("/uis", post(uis_notify));
    }
    router
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(Arc::new(app))
}

pub(crate) fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// An error answer not yet rendered (small, unlike a `Response`).
struct Reject {
    status: StatusCode,
    message: String,
}

impl Reject {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        error(self.status, self.message)
    }
}

fn signature_error(provider: &str, e: &SignatureError) -> Response {
    tracing::warn!(provider, error = %e, "call tracking: request not authenticated");
    let status = match e {
        SignatureError::Missing(_) => StatusCode::UNAUTHORIZED,
        SignatureError::Mismatch(_) | SignatureError::UnknownScheme(_) => StatusCode::FORBIDDEN,
    };
    error(status, e.to_string())
}

fn bad_request(provider: &str, message: String) -> Response {
    tracing::warn!(provider, error = %message, "call tracking: bad request");
    error(StatusCode::BAD_REQUEST, message)
}

fn read_body(provider: &str, body: Result<Bytes, BytesRejection>) -> Result<Bytes, Reject> {
    body.map_err(|rejection| {
        let status = rejection.status();
        tracing::warn!(provider, %status, "call tracking: body rejected");
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            Reject::new(
                status,
                format!("body is larger than {MAX_BODY_BYTES} bytes"),
            )
        } else {
            Reject::new(status, rejection.body_text())
        }
    })
}

fn query_param(uri: &Uri, name: &str) -> Option<String> {
    uri.query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    })
}

/// The token from `?token=` or `Authorization: Bearer`, compared in constant time.
fn check_token(expected: &[u8; 32], uri: &Uri, headers: &HeaderMap) -> Result<(), SignatureError> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|v| v.trim().to_owned());
    let candidates: Vec<String> = [query_param(uri, "token"), bearer]
        .into_iter()
        .flatten()
        .collect();
    if candidates.is_empty() {
        return Err(SignatureError::Missing("token"));
    }
    if candidates
        .iter()
        .any(|t| bool::from(digest(t).ct_eq(expected)))
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch("token"))
    }
}

/// Hands the event over; 2xx only once the hub has it.
async fn deliver(sender: &InboundSender, m: Mapped) -> Result<(), Reject> {
    let event = InboundEvent::new(
        sender.id().clone(),
        m.external_id,
        m.occurred_at.unwrap_or_else(OffsetDateTime::now_utc),
        m.kind,
    )
    .with_raw(m.raw);
    match sender.send(event).await {
        Ok(()) => Ok(()),
        Err(ConnectorError::Closed) => Err(Reject::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down, retry later",
        )),
        Err(e) => {
            tracing::error!(error = %e, "call tracking: event not handed over");
            Err(Reject::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
            ))
        }
    }
}

fn ok() -> Response {
    Json(json!({})).into_response()
}

/// Zadarma checks a notification URL by `GET ?zd_echo=X` and expects `X` back.
async fn zadarma_echo(uri: Uri) -> Response {
    match query_param(&uri, "zd_echo") {
        Some(echo) if !echo.is_empty() && echo.len() <= MAX_ECHO_LEN => {
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], echo).into_response()
        }
        Some(_) => error(
            StatusCode::BAD_REQUEST,
            format!("`zd_echo` must be 1 to {MAX_ECHO_LEN} bytes"),
        ),
        None => error(StatusCode::BAD_REQUEST, "missing query parameter `zd_echo`"),
    }
}

async fn zadarma_notify(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match read_body("zadarma", body) {
        Ok(b) => b,
        Err(reject) => return reject.into_response(),
    };
    let notification = match parse_zadarma(&body) {
        Ok(n) => n,
        Err(e) => return bad_request("zadarma", e.0),
    };
    let Some(secret) = &app.zadarma_secret else {
        return error(StatusCode::NOT_FOUND, "zadarma is not configured");
    };
    let signature = headers.get("signature").and_then(|v| v.to_str().ok());
    if let Err(e) = verify_zadarma_signature(secret.expose().as_bytes(), signature, &notification) {
        return signature_error("zadarma", &e);
    }
    let mapped = match map_zadarma(&notification, &app.plan) {
        Ok(m) => m,
        Err(e) => return bad_request("zadarma", e.0),
    };
    tracing::debug!(event = %notification.event, key = %mapped.external_id, "zadarma notification");
    match deliver(&app.sender, mapped).await {
        Ok(()) => ok(),
        Err(reject) => reject.into_response(),
    }
}

async fn mango_notify(
    State(app): State<Arc<App>>,
    Path(kind): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if kind.is_empty()
        || kind.len() > 32
        || !kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
    {
        return error(StatusCode::NOT_FOUND, "unknown mango event kind");
    }
    let body = match read_body("mango", body) {
        Ok(b) => b,
        Err(reject) => return reject.into_response(),
    };
    let envelope = match parse_mango_envelope(&body) {
        Ok(e) => e,
        Err(e) => return bad_request("mango", e.0),
    };
    let Some((key, salt)) = &app.mango else {
        return error(StatusCode::NOT_FOUND, "mango is not configured");
    };
    if let Err(e) = verify_mango_sign(&envelope, key.expose(), salt.expose()) {
        return signature_error("mango", &e);
    }
    let json = envelope.json.as_bytes();
    match kind.as_str() {
        "call" => {
            let event = match parse_mango_call(json) {
                Ok(e) => e,
                Err(e) => return bad_request("mango", e.0),
            };
            let mut entries = app.mango_entries.lock().await;
            let known = entries.get(&event.entry_id).cloned();
            let (mapped, next) = match map_mango_call(&event, known.as_ref(), &app.plan) {
                Ok(r) => r,
                Err(e) => return bad_request("mango", e.0),
            };
            tracing::debug!(key = %mapped.external_id, state = %event.call_state, "mango call event");
            if let Err(reject) = deliver(&app.sender, mapped).await {
                return reject.into_response();
            }
            if let Some(next) = next {
                entries.insert(event.entry_id.clone(), next);
            }
            ok()
        }
        "recording" => match map_mango_recording(json) {
            Ok(m) => deliver(&app.sender, m)
                .await
                .map_or_else(IntoResponse::into_response, |()| ok()),
            Err(e) => bad_request("mango", e.0),
        },
        other => match map_mango_other(other, json) {
            Ok(m) => deliver(&app.sender, m)
                .await
                .map_or_else(IntoResponse::into_response, |()| ok()),
            Err(e) => bad_request("mango", e.0),
        },
    }
}

async fn roistat(
    app: &App,
    stage: RoistatStage,
    uri: &Uri,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(token) = &app.roistat_token else {
        return error(StatusCode::NOT_FOUND, "roistat is not configured");
    };
    if let Err(e) = check_token(token, uri, headers) {
        return signature_error("roistat", &e);
    }
    let body = match read_body("roistat", body) {
        Ok(b) => b,
        Err(reject) => return reject.into_response(),
    };
    let mapped = match parse_roistat(&body).and_then(|c| map_roistat(&c, stage, &app.plan)) {
        Ok(m) => m,
        Err(e) => return bad_request("roistat", e.0),
    };
    tracing::debug!(key = %mapped.external_id, "roistat webhook");
    match deliver(&app.sender, mapped).await {
        Ok(()) => ok(),
        Err(reject) => reject.into_response(),
    }
}

async fn roistat_start(
    State(app): State<Arc<App>>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    roistat(&app, RoistatStage::Start, &uri, &headers, body).await
}

async fn roistat_end(
    State(app): State<Arc<App>>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    roistat(&app, RoistatStage::End, &uri, &headers, body).await
}

async fn uis_notify(
    State(app): State<Arc<App>>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(token) = &app.uis_token else {
        return error(StatusCode::NOT_FOUND, "uis is not configured");
    };
    if let Err(e) = check_token(token, &uri, &headers) {
        return signature_error("uis", &e);
    }
    let body = match read_body("uis", body) {
        Ok(b) => b,
        Err(reject) => return reject.into_response(),
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let mapped = match parse_uis(&body, content_type).and_then(|n| map_uis(&n, &app.plan)) {
        Ok(m) => m,
        Err(e) => return bad_request("uis", e.0),
    };
    tracing::debug!(key = %mapped.external_id, "uis notification");
    match deliver(&app.sender, mapped).await {
        Ok(()) => ok(),
        Err(reject) => reject.into_response(),
    }
}
