//! The webhook routes: the `GET` verification handshake and the signed `POST`
//! notifications (check the signature, parse, fetch media, hand over, answer).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use kommutator_sdk::{Attachment, ConnectorError, InboundEvent, InboundKind, InboundSender};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::api::{ApiError, Graph};
use crate::parse::{parse_webhook, verify_signature, Mapped, MediaRef, MAX_BODY_BYTES};
use crate::Secret;

/// What the handlers need; shared by all requests of one instance.
pub(crate) struct App {
    pub(crate) sender: InboundSender,
    pub(crate) phone_number_id: String,
    pub(crate) app_secret: Secret,
    /// SHA-256 of the verify token, compared in constant time with the candidate's.
    pub(crate) verify_token: [u8; 32],
    pub(crate) graph: Graph,
    pub(crate) max_file_bytes: usize,
}

pub(crate) fn router(app: App) -> Router {
    Router::new()
        .route("/", get(verify).post(notify))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(Arc::new(app))
}

pub(crate) fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// `GET /?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`: Meta checking the
/// callback URL. The challenge goes back as is, as text.
async fn verify(
    State(app): State<Arc<App>>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let Ok(Query(q)) = query else {
        return error(StatusCode::BAD_REQUEST, "query string is not valid");
    };
    if q.get("hub.mode").map(String::as_str) != Some("subscribe") {
        tracing::warn!("whatsapp: verification refused: hub.mode is not `subscribe`");
        return error(StatusCode::FORBIDDEN, "hub.mode must be `subscribe`");
    }
    let token_ok = q
        .get("hub.verify_token")
        .is_some_and(|t| bool::from(digest(t).ct_eq(&app.verify_token)));
    if !token_ok {
        tracing::warn!("whatsapp: verification refused: wrong hub.verify_token");
        return error(
            StatusCode::FORBIDDEN,
            "hub.verify_token does not match the configured verify_token",
        );
    }
    match q.get("hub.challenge") {
        Some(challenge) if !challenge.is_empty() => {
            tracing::info!("whatsapp: webhook verified");
            (
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                challenge.clone(),
            )
                .into_response()
        }
        _ => error(
            StatusCode::BAD_REQUEST,
            "missing query parameter hub.challenge",
        ),
    }
}

/// `POST /`: a notification, answered 200 once every event of it is handed over.
async fn notify(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            let status = rejection.status();
            tracing::warn!(%status, "whatsapp: body rejected");
            return if status == StatusCode::PAYLOAD_TOO_LARGE {
                error(
                    status,
                    format!("body is larger than {MAX_BODY_BYTES} bytes"),
                )
            } else {
                error(status, rejection.body_text())
            };
        }
    };
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    if let Err(e) = verify_signature(app.app_secret.expose().as_bytes(), signature, &body) {
        tracing::warn!(error = %e, "whatsapp: notification not authenticated");
        return error(StatusCode::UNAUTHORIZED, e.to_string());
    }
    let notification = match parse_webhook(&body, &app.phone_number_id) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "whatsapp: bad notification");
            return error(StatusCode::BAD_REQUEST, e.0);
        }
    };
    for other in &notification.ignored {
        tracing::info!(
            phone_number_id = %other,
            "whatsapp: change for another phone number ignored"
        );
    }
    for mut mapped in notification.events {
        if let Some(media) = mapped.media.take() {
            resolve_media(&app, &media, &mut mapped).await;
        }
        if let InboundKind::Unknown { description } = &mapped.kind {
            tracing::debug!(key = %mapped.external_id, %description, "whatsapp: unmapped item");
        }
        let event = InboundEvent::new(
            app.sender.id().clone(),
            mapped.external_id,
            mapped.occurred_at.unwrap_or_else(OffsetDateTime::now_utc),
            mapped.kind,
        )
        .with_raw(mapped.raw);
        match app.sender.send(event).await {
            Ok(()) => {}
            Err(ConnectorError::Closed) => {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "shutting down, retry later",
                )
            }
            Err(e) => {
                tracing::error!(error = %e, "whatsapp: event not handed over");
                return error(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
            }
        }
    }
    Json(json!({})).into_response()
}

/// Replaces the `wa-media:{id}` placeholder with the stored file; on failure keeps it and
/// says why in a log line.
async fn resolve_media(app: &App, media: &MediaRef, mapped: &mut Mapped) {
    let InboundKind::Message(msg) = &mut mapped.kind else {
        return;
    };
    let Some(slot) = msg.attachments.first_mut() else {
        return;
    };
    match fetch_and_store(app, media, slot).await {
        Ok(stored) => *slot = stored,
        Err(reason) => tracing::warn!(
            media_id = %media.id,
            kind = %media.kind,
            %reason,
            "whatsapp: medium not stored, keeping its wa-media reference"
        ),
    }
}

async fn fetch_and_store(
    app: &App,
    media: &MediaRef,
    placeholder: &mut Attachment,
) -> Result<Attachment, String> {
    if !media
        .id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        return Err("the media id is not a plain id".to_owned());
    }
    let info = app
        .graph
        .media_info(&media.id)
        .await
        .map_err(|e: ApiError| e.to_string())?;
    if let Some(size) = info.file_size {
        placeholder.size = Some(size);
        if size > app.max_file_bytes as u64 {
            return Err(format!(
                "medium is {size} bytes, over max_file_bytes ({})",
                app.max_file_bytes
            ));
        }
    }
    let content = app
        .graph
        .download(&info.url, app.max_file_bytes)
        .await
        .map_err(|e| e.to_string())?;
    let mime = info
        .mime_type
        .as_deref()
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .unwrap_or(&placeholder.mime_type)
        .to_owned();
    app.sender
        .files()
        .put(&placeholder.name, &mime, content)
        .await
        .map_err(|e| e.to_string())
}
