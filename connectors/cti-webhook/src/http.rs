//! The webhook: authenticates, reads the body, hands the event over, answers.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use kommutator_sdk::{CallEvent, ConnectorError, InboundEvent, InboundKind, InboundSender};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use tokio::sync::Mutex;

use crate::map::{normalize_cti, CallRecord, StateUpdate};
use crate::parse::{parse_cti, MAX_BODY_BYTES};
use kommutator_sdk::phone::NumberPlan;
use kommutator_sdk::CallTable;

/// How many calls the connector remembers between `newCall`/`answer` and `hangup`.
pub(crate) const MAX_TRACKED_CALLS: usize = 10_000;

/// What the handler needs; shared by all requests of one instance.
pub(crate) struct Hook {
    pub(crate) sender: InboundSender,
    pub(crate) token_digest: [u8; 32],
    pub(crate) plan: NumberPlan,
    pub(crate) blocked: Vec<String>,
    /// Held across `send`, so that the state of a call changes only once its event is
    /// handed over, and requests of one call are mapped in the order they arrive.
    pub(crate) calls: Mutex<CallTable<CallRecord>>,
}

pub(crate) fn router(hook: Hook) -> Router {
    Router::new()
        .route("/", post(receive))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(Arc::new(hook))
}

pub(crate) fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// The token from `?token=` or `Authorization: Bearer`, compared in constant time (as
/// SHA-256 digests, so the length does not leak either).
fn authorized(hook: &Hook, uri: &Uri, headers: &HeaderMap) -> bool {
    let from_query = uri.query().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
    });
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|v| v.trim().to_owned());
    [from_query, from_header]
        .into_iter()
        .flatten()
        .any(|t| bool::from(digest(&t).ct_eq(&hook.token_digest)))
}

async fn receive(
    State(hook): State<Arc<Hook>>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    if !authorized(&hook, &uri, &headers) {
        tracing::warn!("cti webhook: missing or invalid token");
        return error(StatusCode::UNAUTHORIZED, "missing or invalid token");
    }
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            tracing::warn!(%status, "cti webhook: body rejected");
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!("body is larger than {MAX_BODY_BYTES} bytes")
            } else {
                rejection.body_text()
            };
            return error(status, message);
        }
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let request = match parse_cti(&body, content_type) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cti webhook: bad request");
            return error(StatusCode::BAD_REQUEST, e.to_string());
        }
    };

    let now = OffsetDateTime::now_utc();
    let mut calls = hook.calls.lock().await;
    let known = crate::map::call_key(&request.call_id)
        .ok()
        .and_then(|k| calls.get(&k).copied());
    let outcome = match normalize_cti(&request, known.as_ref(), now, &hook.plan, &hook.blocked) {
        Ok(o) => o,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    tracing::debug!(
        call = %outcome.call_key,
        event = request.event.as_str(),
        from = request.from.as_deref().unwrap_or_default(),
        to = request.to.as_deref().unwrap_or_default(),
        "cti webhook: event"
    );
    let mut raw = Value::Object(request.fields);
    if outcome.blocked {
        if let Value::Object(map) = &mut raw {
            map.insert("rejected_as_blocked".to_owned(), Value::Bool(true));
        }
    }
    let event = InboundEvent::new(
        hook.sender.id().clone(),
        outcome.external_id.clone(),
        now,
        InboundKind::Call(CallEvent {
            call_external_id: outcome.call_key.clone(),
            kind: outcome.kind,
        }),
    )
    .with_raw(raw);
    match hook.sender.send(event).await {
        Ok(()) => {}
        Err(ConnectorError::Closed) => {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting down, retry later",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "cti webhook: event not handed over");
            return error(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        }
    }
    match outcome.update {
        StateUpdate::Put(record) => calls.insert(outcome.call_key, record),
        StateUpdate::Forget => calls.remove(&outcome.call_key),
    }
    drop(calls);
    if outcome.blocked {
        tracing::info!(call = %outcome.external_id, "cti webhook: rejecting a blocked caller");
        return Json(json!({ "action": "reject", "reason": "busy" })).into_response();
    }
    Json(json!({})).into_response()
}
