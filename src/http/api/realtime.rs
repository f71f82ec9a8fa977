//! Real-time core over REST: inbound events of HTTP channels, routing settings, operator
//! presence and load, assignment history, and the stream position for the snapshot
//! pattern (read the position, load the snapshot, subscribe with `since` = position).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use kommutator_sdk::InboundEvent;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::domain::*;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{parse_json, ApiJson, ApiQuery, Auth, IdPath};
use crate::http::AppState;
use crate::pipeline::{PipelineError, Processed};

/// Most events in one batch.
const MAX_BATCH: usize = 500;

impl From<PipelineError> for ApiError {
    fn from(e: PipelineError) -> Self {
        match e {
            PipelineError::UnknownConnector(id) => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no connector `{id}` is configured"),
            ),
            PipelineError::Invalid(f) => f.into(),
            PipelineError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "not_found", m),
            PipelineError::Store(s) => s.into(),
            PipelineError::Closed => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "the hub is shutting down; retry on another node",
            ),
        }
    }
}

/// Inbound events come from channels (API keys), never from a person's session: an
/// operator must not be able to forge a customer's message.
fn channel_key(a: &Auth) -> Result<(), ApiError> {
    a.require(Scope::DialogsWrite)?;
    if a.user.is_some() {
        return Err(ApiError::forbidden(
            "inbound events come from channels: use an API key with dialogs:write",
        ));
    }
    Ok(())
}

fn connector_path(id: &str, body_id: &str, field: &str) -> Result<(), ApiError> {
    if id != body_id {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_value",
            format!("connector_id `{body_id}` is not the connector of this URL (`{id}`)"),
        )
        .field(field));
    }
    Ok(())
}

/// Hand one inbound event of an HTTP channel (an `api` connector) to the pipeline. The body
/// is the connector SDK's `InboundEvent` JSON. Answers once the event is persisted; sending
/// the same `external_id` again changes nothing and answers `duplicate`.
#[utoipa::path(post, path = "/api/v1/connectors/{id}/events", tag = "dialogs",
    params(("id" = String, Path, description = "connector instance id")),
    request_body(content = Object, description = "an InboundEvent (see connectors/README.md)"),
    responses((status = 200, body = Object, description = "what the event did"), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn post_event(
    State(s): State<AppState>,
    a: Auth,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Processed>, ApiError> {
    channel_key(&a)?;
    let ev: InboundEvent = parse_json(&body)?;
    connector_path(&id, ev.connector_id.as_str(), "connector_id")?;
    Ok(Json(s.pipeline.submit(ev).await?))
}

/// A batch of inbound events.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBatch {
    /// At most 500 events, processed in order.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<InboundEvent>,
}

/// The result of one event of a batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchItem {
    /// The event's `external_id`.
    pub external_id: String,
    /// What it did, when it was accepted.
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Processed>,
    /// Why it was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<BatchError>,
}

/// A refused event of a batch.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchError {
    /// Error code.
    pub code: String,
    /// Message.
    pub message: String,
}

/// Hand up to 500 inbound events to the pipeline, in order; each gets its own result.
#[utoipa::path(post, path = "/api/v1/connectors/{id}/events/batch", tag = "dialogs",
    params(("id" = String, Path, description = "connector instance id")),
    request_body = EventBatch,
    responses((status = 200, body = Vec<BatchItem>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn post_batch(
    State(s): State<AppState>,
    a: Auth,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<Vec<BatchItem>>, ApiError> {
    channel_key(&a)?;
    let batch: EventBatch = parse_json(&body)?;
    if batch.events.len() > MAX_BATCH {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_many",
            format!("at most {MAX_BATCH} events per batch"),
        )
        .field("events"));
    }
    for (i, e) in batch.events.iter().enumerate() {
        connector_path(
            &id,
            e.connector_id.as_str(),
            &format!("events.{i}.connector_id"),
        )?;
    }
    let mut out = Vec::with_capacity(batch.events.len());
    for ev in batch.events {
        let external_id = ev.external_id.clone();
        match s.pipeline.submit(ev).await {
            Ok(p) => out.push(BatchItem {
                external_id,
                outcome: Some(p),
                error: None,
            }),
            Err(e) => {
                let api: ApiError = e.into();
                if api.status.is_server_error() {
                    return Err(api);
                }
                out.push(BatchItem {
                    external_id,
                    outcome: None,
                    error: Some(BatchError {
                        code: api.code.to_owned(),
                        message: api.message,
                    }),
                });
            }
        }
    }
    Ok(Json(out))
}

/// The stream position.
#[derive(Debug, Serialize, ToSchema)]
pub struct Position {
    /// The last sequence number this node has delivered. Read it *before* loading a
    /// snapshot, then subscribe with `since` = this number.
    pub seq: i64,
}

/// The current stream position.
#[utoipa::path(get, path = "/api/v1/realtime/position", tag = "dialogs",
    responses((status = 200, body = Position), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn position(State(s): State<AppState>, _a: Auth) -> Json<Position> {
    Json(Position { seq: s.hub.head() })
}

/// A dialog's assignments with their reasons, oldest first.
#[utoipa::path(get, path = "/api/v1/dialogs/{id}/assignments", tag = "dialogs", params(("id" = i64, Path)),
    responses((status = 200, body = Vec<Assignment>), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn assignments(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
) -> Result<Json<Vec<Assignment>>, ApiError> {
    a.require(Scope::DialogsRead)?;
    Ok(Json(s.store.dialog_assignments(&a.actor, id).await?))
}

/// Assign or transfer a dialog (to an operator, or to a department's queue).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignInput {
    /// The operator.
    #[serde(default)]
    pub user_id: Option<Id>,
    /// The department (its queue routes it at once).
    #[serde(default)]
    pub department_id: Option<Id>,
}

/// Assign or transfer a dialog; the assignment is recorded with reason `manual` (first
/// assignment) or `transfer`.
#[utoipa::path(post, path = "/api/v1/dialogs/{id}/assign", tag = "dialogs", params(("id" = i64, Path)),
    request_body = AssignInput,
    responses((status = 200, body = Assignment), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn assign(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
    ApiJson(input): ApiJson<AssignInput>,
) -> Result<Json<Assignment>, ApiError> {
    a.require(Scope::DialogsWrite)?;
    let current = s.store.get_dialog(&a.actor, id).await?;
    let reason = if current.assignee_id.is_some() || input.department_id.is_some() {
        AssignReason::Transfer
    } else {
        AssignReason::Manual
    };
    // Handing a dialog one has to a colleague is everyday work; giving out unassigned
    // dialogs to others is a supervisor's (operators may take one themselves).
    if let (Some(u), AssignReason::Manual) = (input.user_id, reason) {
        let dep = s.store.get_user(u).await.ok().and_then(|u| u.department_id);
        if !crate::storage::access::may_assign(&a.actor, u, dep) {
            return Err(ApiError::forbidden(
                "you may only take unassigned dialogs yourself",
            ));
        }
    }
    let (_, asg) = s
        .store
        .assign_dialog(&a.actor, id, input.user_id, input.department_id, reason)
        .await?;
    Ok(Json(asg))
}

/// Operator filter.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct OperatorParams {
    /// Only this department.
    #[serde(default)]
    pub department_id: Option<Id>,
}

/// Operators with presence and load (supervisors: their department; admins: anyone).
#[utoipa::path(get, path = "/api/v1/operators", tag = "dialogs", params(OperatorParams),
    responses((status = 200, body = Vec<OperatorState>), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn operators(
    State(s): State<AppState>,
    a: Auth,
    ApiQuery(p): ApiQuery<OperatorParams>,
) -> Result<Json<Vec<OperatorState>>, ApiError> {
    let department = match &a.actor {
        Actor::User {
            role: Role::Admin, ..
        }
        | Actor::System => p.department_id,
        Actor::ApiKey { .. } => {
            a.require(Scope::Admin)?;
            p.department_id
        }
        Actor::User { department_id, .. } => {
            if p.department_id.is_some() && p.department_id != *department_id {
                return Err(ApiError::forbidden("you may only see your own department"));
            }
            match department_id {
                Some(d) => Some(*d),
                None => return Err(ApiError::forbidden("you belong to no department")),
            }
        }
    };
    Ok(Json(s.store.operator_states(department).await?))
}

/// A department's routing settings.
#[utoipa::path(get, path = "/api/v1/departments/{id}/routing", tag = "admin", params(("id" = i64, Path)),
    responses((status = 200, body = RoutingSettings), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_routing(
    State(s): State<AppState>,
    _a: Auth,
    IdPath(id): IdPath,
) -> Result<Json<RoutingSettings>, ApiError> {
    Ok(Json(s.store.routing_settings(id).await?))
}

/// Change a department's routing policy or offer timeout (admin).
#[utoipa::path(patch, path = "/api/v1/departments/{id}/routing", tag = "admin", params(("id" = i64, Path)),
    request_body = RoutingPatch,
    responses((status = 200, body = RoutingSettings), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_routing(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
    ApiJson(p): ApiJson<RoutingPatch>,
) -> Result<Json<RoutingSettings>, ApiError> {
    a.require(Scope::Admin)?;
    Ok(Json(s.store.update_routing(&a.actor, id, &p).await?))
}

/// An operator's capacity.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CapacityInput {
    /// Open dialogs at once, 0 to 1000.
    pub max_dialogs: i64,
}

/// Set how many open dialogs an operator takes at once (admin).
#[utoipa::path(put, path = "/api/v1/users/{id}/capacity", tag = "admin", params(("id" = i64, Path)),
    request_body = CapacityInput,
    responses((status = 200, body = OperatorState), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn set_capacity(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
    ApiJson(input): ApiJson<CapacityInput>,
) -> Result<Json<OperatorState>, ApiError> {
    a.require(Scope::Admin)?;
    Ok(Json(
        s.store
            .set_max_dialogs(&a.actor, id, input.max_dialogs)
            .await?,
    ))
}

/// Channel instances configured on this node with their state (`running`, `standby` while
/// another node holds the lease, `reconnecting` with the last error, `failed` with the
/// reason), and the widget sites (admin).
#[utoipa::path(get, path = "/api/v1/connectors", tag = "admin",
    responses((status = 200, body = Vec<crate::pipeline::host::ConnectorStatus>), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn connectors(
    State(s): State<AppState>,
    a: Auth,
) -> Result<Json<Vec<crate::pipeline::host::ConnectorStatus>>, ApiError> {
    a.require(Scope::Admin)?;
    let mut list = s.connectors.list();
    for key in s.config.widget.sites.keys() {
        list.push(crate::pipeline::host::ConnectorStatus {
            id: crate::http::ws::widget::connector_id(key),
            kind: "widget".into(),
            state: crate::pipeline::host::ConnectorState::Running,
            counters: crate::pipeline::host::ConnectorCounters::default(),
        });
    }
    Ok(Json(list))
}
