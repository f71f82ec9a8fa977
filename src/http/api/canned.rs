//! Canned responses: ready answers operators insert into replies by shortcut.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::domain::*;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiJson, ApiQuery, Auth, IdPath};
use crate::http::AppState;

/// The longest `q`, in characters.
const Q_MAX: usize = 100;

/// Canned response filter.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CannedParams {
    /// Keeps the responses whose shortcut starts with it or whose title contains it,
    /// ignoring case (at most 100 characters).
    pub q: Option<String>,
}

/// The canned responses you may use: the global ones, your department's and your own, by
/// shortcut, then personal before department before global, then id. An API key gets the
/// global ones and every department's.
#[utoipa::path(get, path = "/api/v1/canned-responses", tag = "canned responses", params(CannedParams),
    responses((status = 200, body = Vec<CannedResponse>), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_canned_responses(
    State(s): State<AppState>,
    a: Auth,
    ApiQuery(p): ApiQuery<CannedParams>,
) -> Result<Json<Vec<CannedResponse>>, ApiError> {
    a.require(Scope::DialogsRead)?;
    if p.q.as_deref().is_some_and(|q| q.chars().count() > Q_MAX) {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("q is at most {Q_MAX} characters"),
        )
        .field("q"));
    }
    Ok(Json(
        s.store
            .list_canned_responses(&a.actor, p.q.as_deref())
            .await?,
    ))
}

/// Create a canned response: `personal` (yours), `department` (admins and the department's
/// supervisors; `department_id` defaults to yours) or `global` (admins). A shortcut is
/// unique per owner (`409 duplicate`).
#[utoipa::path(post, path = "/api/v1/canned-responses", tag = "canned responses", request_body = NewCannedResponse,
    responses((status = 201, body = CannedResponse), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_canned_response(
    State(s): State<AppState>,
    a: Auth,
    ApiJson(input): ApiJson<NewCannedResponse>,
) -> Result<(StatusCode, Json<CannedResponse>), ApiError> {
    a.require(Scope::DialogsWrite)?;
    Ok((
        StatusCode::CREATED,
        Json(s.store.create_canned_response(&a.actor, &input).await?),
    ))
}

/// Change a canned response's shortcut, title or text; the same people as may create it.
/// One you may not see is `404`; one you see but may not change, `403`.
#[utoipa::path(patch, path = "/api/v1/canned-responses/{id}", tag = "canned responses", params(("id" = i64, Path)),
    request_body = CannedResponsePatch,
    responses((status = 200, body = CannedResponse), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_canned_response(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
    ApiJson(p): ApiJson<CannedResponsePatch>,
) -> Result<Json<CannedResponse>, ApiError> {
    a.require(Scope::DialogsWrite)?;
    Ok(Json(
        s.store.update_canned_response(&a.actor, id, &p).await?,
    ))
}

/// Delete a canned response; the same people as may create it.
#[utoipa::path(delete, path = "/api/v1/canned-responses/{id}", tag = "canned responses", params(("id" = i64, Path)),
    responses((status = 204, description = "deleted"), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_canned_response(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    a.require(Scope::DialogsWrite)?;
    s.store.delete_canned_response(&a.actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
