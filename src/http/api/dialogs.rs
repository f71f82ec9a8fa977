//! Dialogs, messages (with delivery status) and calls.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::clients::{cursor, ListParams};
use crate::domain::*;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiJson, ApiQuery, Auth, IdPath};
use crate::http::AppState;

fn created<T>(fresh: bool, v: T) -> (StatusCode, Json<T>) {
    (
        if fresh {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(v),
    )
}

/// A page of dialogs.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct DialogPage {
    /// Dialogs, most recent activity first.
    pub items: Vec<Dialog>,
    /// Cursor of the next page.
    pub next_cursor: Option<String>,
}

/// Dialogs, most recent activity first (`user_id` = assignee).
#[utoipa::path(get, path = "/api/v1/dialogs", tag = "dialogs", params(ListParams),
    responses((status = 200, body = DialogPage), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_dialogs(
    State(s): State<AppState>,
    a: Auth,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Json<DialogPage>, ApiError> {
    a.require(Scope::DialogsRead)?;
    let page = s
        .store
        .list_dialogs(&a.actor, &p.filter(&["open", "closed"])?)
        .await?;
    Ok(Json(DialogPage {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// Open a dialog. An existing `(connector_id, external_thread_id)` answers 200 with it.
#[utoipa::path(post, path = "/api/v1/dialogs", tag = "dialogs", request_body = NewDialog,
    responses((status = 201, body = Dialog), (status = 200, body = Dialog, description = "already open"), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_dialog(
    State(s): State<AppState>,
    a: Auth,
    ApiJson(input): ApiJson<NewDialog>,
) -> Result<(StatusCode, Json<Dialog>), ApiError> {
    a.require(Scope::DialogsWrite)?;
    let (d, fresh) = s.store.create_dialog(&a.actor, &input).await?;
    Ok(created(fresh, d))
}

/// One dialog.
#[utoipa::path(get, path = "/api/v1/dialogs/{id}", tag = "dialogs", params(("id" = i64, Path)),
    responses((status = 200, body = Dialog), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_dialog(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
) -> Result<Json<Dialog>, ApiError> {
    a.require(Scope::DialogsRead)?;
    Ok(Json(s.store.get_dialog(&a.actor, id).await?))
}

/// Assign, transfer, link to an Interest, close or reopen a dialog.
#[utoipa::path(patch, path = "/api/v1/dialogs/{id}", tag = "dialogs", params(("id" = i64, Path)), request_body = DialogPatch,
    responses((status = 200, body = Dialog), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_dialog(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
    ApiJson(p): ApiJson<DialogPatch>,
) -> Result<Json<Dialog>, ApiError> {
    a.require(Scope::DialogsWrite)?;
    Ok(Json(s.store.update_dialog(&a.actor, id, &p).await?))
}

/// Message paging.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MessageParams {
    /// Page size (default 50, at most 200).
    pub limit: Option<i64>,
    /// Cursor from the previous page (of the same order).
    pub cursor: Option<String>,
    /// `asc` (oldest first, the default) or `desc` (newest first).
    pub order: Option<MessageOrder>,
}

/// The order of a message page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageOrder {
    /// Oldest first.
    Asc,
    /// Newest first.
    Desc,
}

/// A page of messages.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct MessagePage {
    /// Messages, oldest first (newest first with `order=desc`).
    pub items: Vec<Message>,
    /// Cursor of the next page.
    pub next_cursor: Option<String>,
}

/// Messages of a dialog, oldest first, or newest first with `order=desc`.
#[utoipa::path(get, path = "/api/v1/dialogs/{id}/messages", tag = "dialogs", params(("id" = i64, Path), MessageParams),
    responses((status = 200, body = MessagePage), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_messages(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
    ApiQuery(p): ApiQuery<MessageParams>,
) -> Result<Json<MessagePage>, ApiError> {
    a.require(Scope::DialogsRead)?;
    let (limit, after) = (p.limit.unwrap_or(50), cursor(p.cursor.as_deref())?);
    let page = if p.order == Some(MessageOrder::Desc) {
        s.store
            .list_messages_newest(&a.actor, id, limit, after)
            .await?
    } else {
        s.store.list_messages(&a.actor, id, limit, after).await?
    };
    Ok(Json(MessagePage {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// Post a message. Operators post replies (outbound); connectors post inbound messages with
/// the channel's id. A repeated `external_id` answers 200 with the stored message.
#[utoipa::path(post, path = "/api/v1/dialogs/{id}/messages", tag = "dialogs", params(("id" = i64, Path)), request_body = NewMessage,
    responses((status = 201, body = Message), (status = 200, body = Message, description = "already stored"), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn add_message(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
    ApiJson(input): ApiJson<NewMessage>,
) -> Result<(StatusCode, Json<Message>), ApiError> {
    a.require(Scope::DialogsWrite)?;
    let (m, fresh) = s.store.add_message(&a.actor, id, &input).await?;
    Ok(created(fresh, m))
}

/// Report a delivery status of an outbound message; it never moves backwards.
#[utoipa::path(post, path = "/api/v1/messages/{id}/delivery", tag = "dialogs", params(("id" = i64, Path)), request_body = DeliveryUpdate,
    responses((status = 200, body = Message), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_delivery(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
    ApiJson(u): ApiJson<DeliveryUpdate>,
) -> Result<Json<Message>, ApiError> {
    a.require(Scope::DialogsWrite)?;
    Ok(Json(s.store.update_delivery(&a.actor, id, &u).await?))
}

/// A page of calls.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct CallPage {
    /// Calls, newest first.
    pub items: Vec<Call>,
    /// Cursor of the next page.
    pub next_cursor: Option<String>,
}

/// Calls, newest first (`user_id` = operator).
#[utoipa::path(get, path = "/api/v1/calls", tag = "calls", params(ListParams),
    responses((status = 200, body = CallPage), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_calls(
    State(s): State<AppState>,
    a: Auth,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Json<CallPage>, ApiError> {
    a.require(Scope::CallsRead)?;
    let page = s
        .store
        .list_calls(
            &a.actor,
            &p.filter(&["ringing", "answered", "completed", "missed"])?,
        )
        .await?;
    Ok(Json(CallPage {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// Record a call; the customer is recognised by number. Idempotent on
/// `(connector_id, external_id)`.
#[utoipa::path(post, path = "/api/v1/calls", tag = "calls", request_body = NewCall,
    responses((status = 201, body = Call), (status = 200, body = Call, description = "already recorded"), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn record_call(
    State(s): State<AppState>,
    a: Auth,
    ApiJson(input): ApiJson<NewCall>,
) -> Result<(StatusCode, Json<Call>), ApiError> {
    a.require(Scope::CallsWrite)?;
    let (c, fresh) = s.store.record_call(&a.actor, &input).await?;
    Ok(created(fresh, c))
}

/// One call.
#[utoipa::path(get, path = "/api/v1/calls/{id}", tag = "calls", params(("id" = i64, Path)),
    responses((status = 200, body = Call), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_call(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
) -> Result<Json<Call>, ApiError> {
    a.require(Scope::CallsRead)?;
    Ok(Json(s.store.get_call(&a.actor, id).await?))
}

/// Change call state (answered, completed, missed), operator, recording.
#[utoipa::path(patch, path = "/api/v1/calls/{id}", tag = "calls", params(("id" = i64, Path)), request_body = CallPatch,
    responses((status = 200, body = Call), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_call(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
    ApiJson(p): ApiJson<CallPatch>,
) -> Result<Json<Call>, ApiError> {
    a.require(Scope::CallsWrite)?;
    Ok(Json(s.store.update_call(&a.actor, id, &p).await?))
}

/// A click-to-call request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OriginateInput {
    /// The number to dial, in any format (it is normalized to E.164).
    pub to: String,
    /// The client being called (recognised by number when absent).
    #[serde(default)]
    pub client_id: Option<Id>,
    /// The lead being called.
    #[serde(default)]
    pub lead_id: Option<Id>,
    /// Which telephony instance places the call, when several can.
    #[serde(default)]
    pub connector_id: Option<String>,
}

/// Click-to-call: the PBX rings your extension first and dials `to` when you pick up. The
/// call is answered at once, `ringing`; its progress arrives over the operator socket.
#[utoipa::path(post, path = "/api/v1/calls/originate", tag = "calls", request_body = OriginateInput,
    responses((status = 202, body = Call), (status = "4XX", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn originate_call(
    State(s): State<AppState>,
    a: Auth,
    ApiJson(input): ApiJson<OriginateInput>,
) -> Result<(StatusCode, Json<Call>), ApiError> {
    a.require(Scope::CallsWrite)?;
    let capable: Vec<&String> = s
        .config
        .connectors
        .iter()
        .filter(|(_, c)| c.can_originate())
        .map(|(id, _)| id)
        .collect();
    let connector = match &input.connector_id {
        Some(id) if capable.contains(&id) => id.clone(),
        Some(_) => {
            return Err(ApiError::from(FieldError::new(
                "connector_id",
                "not_found",
                "no telephony instance with this id can place calls",
            )))
        }
        None => match capable.first() {
            Some(id) => (*id).clone(),
            None => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "no_telephony",
                    "no telephony connector that can place calls is configured",
                ))
            }
        },
    };
    let call_id = format!(
        "k-{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    );
    let k = s
        .store
        .create_originate(
            &a.actor,
            &connector,
            &call_id,
            &input.to,
            input.client_id,
            input.lead_id,
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(k)))
}

/// A channel instance through which the hub can start a conversation.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct OutgoingChannel {
    /// The connector instance (`connector_id` of the new dialog).
    pub connector_id: String,
    /// Its channel name (`channel` of the new dialog).
    pub channel: String,
    /// Its type (`email`).
    pub kind: String,
    /// The identity kind it writes to (`email`).
    pub to: String,
}

/// Channels an operator can start a conversation on (an email from the client card): open
/// a dialog there with `POST /api/v1/dialogs` (a new `external_thread_id`, the
/// `identity_id` to write to, the `subject`), then post the message.
#[utoipa::path(get, path = "/api/v1/channels/outgoing", tag = "dialogs",
    responses((status = 200, body = Vec<OutgoingChannel>), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn outgoing_channels(
    State(s): State<AppState>,
    a: Auth,
) -> Result<Json<Vec<OutgoingChannel>>, ApiError> {
    a.require(Scope::DialogsWrite)?;
    Ok(Json(
        s.config
            .connectors
            .iter()
            .filter_map(|(id, c)| {
                c.starts_to().map(|to| OutgoingChannel {
                    connector_id: id.clone(),
                    channel: c.channel(),
                    kind: c.kind().to_owned(),
                    to: to.to_owned(),
                })
            })
            .collect(),
    ))
}
