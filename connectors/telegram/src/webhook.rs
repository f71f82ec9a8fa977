//! Webhook mode: `POST /` receives one `Update` per request.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use kommutator_sdk::{ConnectorError, InboundKind, InboundSender, Secret};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::api::Api;
use crate::parse::parse_update_bytes;
use crate::session::{resolve, Recent};

/// The largest webhook body accepted (Telegram's updates are a few KiB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The header Telegram puts the `secret_token` of `setWebhook` in.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";

pub(crate) struct App {
    pub(crate) api: Api,
    pub(crate) sender: InboundSender,
    pub(crate) secret: Secret,
    pub(crate) recent: Recent,
}

pub(crate) fn router(app: App) -> Router {
    Router::new()
        .route("/", post(hook))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(Arc::new(app))
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    tracing::warn!(%status, error = %message, "telegram webhook: request rejected");
    (status, Json(json!({ "error": message }))).into_response()
}

async fn hook(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(given) = headers.get(SECRET_HEADER) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "missing X-Telegram-Bot-Api-Secret-Token header",
        );
    };
    if !bool::from(given.as_bytes().ct_eq(app.secret.expose().as_bytes())) {
        return error(
            StatusCode::UNAUTHORIZED,
            "wrong X-Telegram-Bot-Api-Secret-Token",
        );
    }
    let body = match body {
        Ok(b) => b,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body is larger than {MAX_BODY_BYTES} bytes"),
            )
        }
        Err(r) => return error(r.status(), r.body_text()),
    };
    let parsed = match parse_update_bytes(app.sender.id(), &body) {
        Ok(p) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.0),
    };
    let update_id = parsed.update_id;
    if app.recent.contains(update_id) {
        tracing::debug!(update_id, "telegram webhook: repeated update skipped");
        return ok();
    }
    if let InboundKind::Unknown { description } = &parsed.event.kind {
        tracing::debug!(update_id, %description, "telegram webhook: unmapped update");
    }
    let event = resolve(&app.api, app.sender.files(), parsed).await;
    match app.sender.send(event).await {
        Ok(()) => {
            app.recent.insert(update_id);
            ok()
        }
        Err(ConnectorError::Closed) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down, retry later",
        ),
        Err(e) => {
            tracing::error!(error = %e, "telegram webhook: event not handed over");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

fn ok() -> Response {
    Json(json!({})).into_response()
}
