//! The Callback API route: `POST /`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use kommutator_sdk::{ConnectorError, InboundSender, Secret};
use subtle::ConstantTimeEq;

use crate::api::Api;
use crate::inbound::{deliver, Shared};
use crate::parse::{map_event, parse_callback};

/// The largest Callback API body read, in bytes; a larger one is answered 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

pub(crate) struct App {
    pub(crate) sender: InboundSender,
    pub(crate) shared: Arc<Shared>,
    pub(crate) api: Api,
    pub(crate) group_id: u64,
    pub(crate) confirmation: String,
    pub(crate) secret: Option<Secret>,
    pub(crate) max_file_bytes: u64,
}

pub(crate) fn router(app: App) -> Router {
    Router::new()
        .route("/", post(notify))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(Arc::new(app))
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

fn reject(app: &App, status: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    tracing::warn!(connector = %app.sender.id(), %status, error = %message, "vk: callback rejected");
    text(status, message)
}

fn secret_matches(expected: &Secret, given: &str) -> bool {
    let a = expected.expose().as_bytes();
    let b = given.as_bytes();
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

async fn notify(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return reject(
                &app,
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body is larger than {MAX_BODY_BYTES} bytes"),
            )
        }
        Err(r) => return reject(&app, r.status(), r.body_text()),
    };
    let env = match parse_callback(&body) {
        Ok(e) => e,
        Err(e) => return reject(&app, StatusCode::BAD_REQUEST, e.to_string()),
    };
    match env.group_id {
        Some(g) if g == app.group_id => {}
        Some(_) => return reject(&app, StatusCode::FORBIDDEN, "wrong group_id"),
        None => return reject(&app, StatusCode::BAD_REQUEST, "missing field `group_id`"),
    }
    let secret_ok = match (&app.secret, env.secret.as_deref()) {
        (None, _) => true,
        (Some(s), Some(given)) => secret_matches(s, given),
        // VK puts the secret in the confirmation request too, but a setup made before the
        // key was set may not; the confirmation string is no credential.
        (Some(_), None) => env.event_type == "confirmation",
    };
    if !secret_ok {
        return reject(&app, StatusCode::FORBIDDEN, "bad secret");
    }
    if env.event_type == "confirmation" {
        tracing::info!(connector = %app.sender.id(), "vk: callback server confirmation");
        return text(StatusCode::OK, app.confirmation.clone());
    }
    if let Some(eid) = &env.event_id {
        if app.shared.seen(eid) {
            tracing::debug!(connector = %app.sender.id(), event_id = %eid, "vk: replayed event skipped");
            return text(StatusCode::OK, "ok");
        }
    }
    let mapped = match map_event(&env, &|r| app.shared.our_send(r)) {
        Ok(m) => m,
        Err(e) => return reject(&app, StatusCode::BAD_REQUEST, e.to_string()),
    };
    match deliver(
        &app.sender,
        &app.shared,
        &app.api,
        app.max_file_bytes,
        mapped,
    )
    .await
    {
        Ok(()) => text(StatusCode::OK, "ok"),
        Err(ConnectorError::Closed) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting down, retry later",
        ),
        Err(e) => {
            tracing::error!(connector = %app.sender.id(), error = %e, "vk: event not handed over");
            text(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}
