//! HTTP: the REST API under `/api/v1` (with its OpenAPI document), health, metrics.

pub mod api;
pub mod console;
pub mod error;
pub mod extract;
pub mod ws;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::auth::LoginLimiter;
use crate::config::Config;
use crate::storage::Store;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The system of record.
    pub store: Arc<dyn Store>,
    /// The configuration.
    pub config: Arc<Config>,
    /// Failed sign-in tracking.
    pub limiter: Arc<LoginLimiter>,
    /// Prometheus metrics.
    pub metrics: PrometheusHandle,
    /// When the process started.
    pub started: Instant,
    /// This node's hub: sequenced events and their subscribers.
    pub hub: Arc<crate::hub::Hub>,
    /// The ingest pipeline.
    pub pipeline: crate::pipeline::Pipeline,
    /// Presence and routing.
    pub routing: Arc<crate::routing::Routing>,
    /// Cancelled when the process shuts down (closes WebSockets with "going away").
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Signs widget visitor tokens (the key is shared by all nodes through the store).
    pub visitor_tokens: Option<ws::widget::VisitorTokens>,
    /// States of the channel instances on this node.
    pub connectors: Arc<crate::pipeline::host::ConnectorStates>,
    /// Webhook routes of connector instances with the path each is mounted at
    /// (`/hooks/{id}`, and `/forms/{id}` for a website form).
    pub hooks: Vec<(String, Router)>,
    /// iConsultant's classifier.
    pub consultant: Arc<crate::assist::Consultant>,
    /// iConsultant's knowledge base and its suggestions.
    pub knowledge: Arc<crate::assist::Knowledge>,
}

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let (api, openapi) = api::routes().split_for_parts();
    let openapi = Arc::new(openapi);
    let max_body = state.config.server.max_body_bytes;
    let timeout = Duration::from_secs(state.config.server.request_timeout_secs.max(1));
    let mut app = Router::new();
    for (prefix, hook) in &state.hooks {
        app = app.nest_service(prefix, hook.clone());
    }
    app.merge(api)
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let doc = openapi.clone();
                async move { Json(doc.as_ref().clone()) }
            }),
        )
        .route("/", get(console::index))
        .route("/assets/{name}", get(console::asset))
        .route("/widget.js", get(console::widget))
        .route("/ws/operator", get(ws::operator::handler))
        .route("/ws/widget", get(ws::widget::handler))
        .route("/ws/bot", get(ws::operator::bot_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(middleware::from_fn(record_metrics))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .layer(TraceLayer::new_for_http())
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(s): State<AppState>) -> Response {
    match s.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}

async fn metrics_text(State(s): State<AppState>) -> Response {
    metrics::gauge!("kommutator_uptime_seconds").set(s.started.elapsed().as_secs_f64());
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}

async fn not_found() -> error::ApiError {
    error::ApiError::new(
        StatusCode::NOT_FOUND,
        "no_route",
        "no such endpoint; see /api/v1/openapi.json",
    )
}

async fn method_not_allowed() -> error::ApiError {
    error::ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method; see /api/v1/openapi.json",
    )
}

async fn record_metrics(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().to_string();
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("kommutator_http_requests_total", "method" => method.clone(), "path" => path.clone(), "status" => status).increment(1);
    metrics::histogram!("kommutator_http_request_seconds", "method" => method, "path" => path)
        .record(start.elapsed().as_secs_f64());
    resp
}
