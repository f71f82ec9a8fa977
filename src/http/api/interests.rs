//! Interests (deals) with stage moves, and interactions.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use utoipa::ToSchema;

use super::clients::{feed_of, FeedPage, FeedParams, ListParams};
use crate::domain::*;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiJson, ApiQuery, Auth, IdPath};
use crate::http::AppState;
use crate::storage::FeedTarget;

/// A page of Interests.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct InterestPage {
    /// Interests, newest first.
    pub items: Vec<Interest>,
    /// Cursor of the next page.
    pub next_cursor: Option<String>,
}

/// Interests, newest first.
#[utoipa::path(get, path = "/api/v1/interests", tag = "interests", params(ListParams),
    responses((status = 200, body = InterestPage), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_interests(
    State(s): State<AppState>,
    a: Auth,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Json<InterestPage>, ApiError> {
    a.require(Scope::InterestsRead)?;
    let page = s
        .store
        .list_interests(&a.actor, &p.filter(&["open", "won", "lost"])?)
        .await?;
    Ok(Json(InterestPage {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// Open an Interest at the first stage of its sales scenario.
#[utoipa::path(post, path = "/api/v1/interests", tag = "interests", request_body = NewInterest,
    responses((status = 201, body = Interest), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_interest(
    State(s): State<AppState>,
    a: Auth,
    ApiJson(input): ApiJson<NewInterest>,
) -> Result<(StatusCode, Json<Interest>), ApiError> {
    a.require(Scope::InterestsWrite)?;
    Ok((
        StatusCode::CREATED,
        Json(s.store.create_interest(&a.actor, &input).await?),
    ))
}

/// One Interest.
#[utoipa::path(get, path = "/api/v1/interests/{id}", tag = "interests", params(("id" = i64, Path)),
    responses((status = 200, body = Interest), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_interest(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
) -> Result<Json<Interest>, ApiError> {
    a.require(Scope::InterestsRead)?;
    Ok(Json(s.store.get_interest(&a.actor, id).await?))
}

/// Change an Interest.
#[utoipa::path(patch, path = "/api/v1/interests/{id}", tag = "interests", params(("id" = i64, Path)), request_body = InterestPatch,
    responses((status = 200, body = Interest), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_interest(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
    ApiJson(p): ApiJson<InterestPatch>,
) -> Result<Json<Interest>, ApiError> {
    a.require(Scope::InterestsWrite)?;
    Ok(Json(s.store.update_interest(&a.actor, id, &p).await?))
}

/// Move an Interest to another stage of its scenario; a won or lost stage closes it.
#[utoipa::path(post, path = "/api/v1/interests/{id}/stage", tag = "interests", params(("id" = i64, Path)), request_body = StageMove,
    responses((status = 200, body = Interest), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn move_stage(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
    ApiJson(m): ApiJson<StageMove>,
) -> Result<Json<Interest>, ApiError> {
    a.require(Scope::InterestsWrite)?;
    Ok(Json(
        s.store
            .move_interest_stage(&a.actor, id, m.stage_id)
            .await?,
    ))
}

/// The stage history of an Interest, oldest first.
#[utoipa::path(get, path = "/api/v1/interests/{id}/stages", tag = "interests", params(("id" = i64, Path)),
    responses((status = 200, body = Vec<StageChange>), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn stage_history(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
) -> Result<Json<Vec<StageChange>>, ApiError> {
    a.require(Scope::InterestsRead)?;
    Ok(Json(s.store.interest_stage_history(&a.actor, id).await?))
}

/// The Interest's Feed.
#[utoipa::path(get, path = "/api/v1/interests/{id}/feed", tag = "interests", params(("id" = i64, Path), FeedParams),
    responses((status = 200, body = FeedPage), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn interest_feed(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
    ApiQuery(p): ApiQuery<FeedParams>,
) -> Result<Json<FeedPage>, ApiError> {
    feed_of(&s, &a, FeedTarget::Interest(id), p).await
}

/// A page of interactions.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct InteractionPage {
    /// Interactions, newest first.
    pub items: Vec<Interaction>,
    /// Cursor of the next page.
    pub next_cursor: Option<String>,
}

/// Interactions, newest first.
#[utoipa::path(get, path = "/api/v1/interactions", tag = "interactions", params(ListParams),
    responses((status = 200, body = InteractionPage), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_interactions(
    State(s): State<AppState>,
    a: Auth,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Json<InteractionPage>, ApiError> {
    a.require(Scope::InteractionsRead)?;
    let page = s
        .store
        .list_interactions(&a.actor, &p.filter(&["planned", "done", "cancelled"])?)
        .await?;
    Ok(Json(InteractionPage {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// Log or plan an interaction (note, task, call, meeting, email, message); it appears in the
/// Feed at once.
#[utoipa::path(post, path = "/api/v1/interactions", tag = "interactions", request_body = NewInteraction,
    responses((status = 201, body = Interaction), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_interaction(
    State(s): State<AppState>,
    a: Auth,
    ApiJson(input): ApiJson<NewInteraction>,
) -> Result<(StatusCode, Json<Interaction>), ApiError> {
    a.require(Scope::InteractionsWrite)?;
    Ok((
        StatusCode::CREATED,
        Json(s.store.create_interaction(&a.actor, &input).await?),
    ))
}

/// One interaction.
#[utoipa::path(get, path = "/api/v1/interactions/{id}", tag = "interactions", params(("id" = i64, Path)),
    responses((status = 200, body = Interaction), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_interaction(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
) -> Result<Json<Interaction>, ApiError> {
    a.require(Scope::InteractionsRead)?;
    Ok(Json(s.store.get_interaction(&a.actor, id).await?))
}

/// Change an interaction (mark done, reschedule, reassign).
#[utoipa::path(patch, path = "/api/v1/interactions/{id}", tag = "interactions", params(("id" = i64, Path)), request_body = InteractionPatch,
    responses((status = 200, body = Interaction), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_interaction(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
    ApiJson(p): ApiJson<InteractionPatch>,
) -> Result<Json<Interaction>, ApiError> {
    a.require(Scope::InteractionsWrite)?;
    Ok(Json(s.store.update_interaction(&a.actor, id, &p).await?))
}
