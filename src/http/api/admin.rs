//! Administration: users, departments, API keys, custom fields, sales scenarios, the audit
//! trail and the change log.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth;
use crate::domain::*;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiJson, ApiQuery, Auth, IdPath};
use crate::http::AppState;

async fn hash(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(|e| ApiError::internal(&std::io::Error::other(e.to_string())))
}

/// Every signed-in user may see colleagues (to transfer a dialog, pick a responsible);
/// an API key needs the admin scope.
fn colleagues_visible(a: &Auth) -> Result<(), ApiError> {
    if a.user.is_some() {
        Ok(())
    } else {
        a.require(Scope::Admin)
    }
}

/// All users.
#[utoipa::path(get, path = "/api/v1/users", tag = "admin",
    responses((status = 200, body = Vec<User>), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_users(State(s): State<AppState>, a: Auth) -> Result<Json<Vec<User>>, ApiError> {
    colleagues_visible(&a)?;
    Ok(Json(s.store.list_users().await?))
}

/// Create a user (admin).
#[utoipa::path(post, path = "/api/v1/users", tag = "admin", request_body = NewUser,
    responses((status = 201, body = User), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_user(
    State(s): State<AppState>,
    a: Auth,
    ApiJson(input): ApiJson<NewUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    a.require(Scope::Admin)?;
    check_password("password", &input.password)?;
    let h = hash(input.password.clone()).await?;
    Ok((
        StatusCode::CREATED,
        Json(s.store.create_user(&a.actor, &input, &h).await?),
    ))
}

/// One user.
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "admin", params(("id" = i64, Path)),
    responses((status = 200, body = User), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_user(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
) -> Result<Json<User>, ApiError> {
    colleagues_visible(&a)?;
    Ok(Json(s.store.get_user(id).await?))
}

/// Change a user (admin). A new password is a one-time password; disabling ends sessions.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "admin", params(("id" = i64, Path)), request_body = UserPatch,
    responses((status = 200, body = User), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_user(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
    ApiJson(p): ApiJson<UserPatch>,
) -> Result<Json<User>, ApiError> {
    a.require(Scope::Admin)?;
    let h = match &p.password {
        Some(pw) => {
            check_password("password", pw)?;
            Some(hash(pw.clone()).await?)
        }
        None => None,
    };
    Ok(Json(s.store.update_user(&a.actor, id, &p, h).await?))
}

/// All departments.
#[utoipa::path(get, path = "/api/v1/departments", tag = "admin",
    responses((status = 200, body = Vec<Department>), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_departments(
    State(s): State<AppState>,
    _a: Auth,
) -> Result<Json<Vec<Department>>, ApiError> {
    Ok(Json(s.store.list_departments().await?))
}

/// Create a department (admin).
#[utoipa::path(post, path = "/api/v1/departments", tag = "admin", request_body = NewDepartment,
    responses((status = 201, body = Department), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_department(
    State(s): State<AppState>,
    a: Auth,
    ApiJson(input): ApiJson<NewDepartment>,
) -> Result<(StatusCode, Json<Department>), ApiError> {
    a.require(Scope::Admin)?;
    Ok((
        StatusCode::CREATED,
        Json(s.store.create_department(&a.actor, &input).await?),
    ))
}

/// A new API key, with its secret shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKey {
    /// The key record.
    #[serde(flatten)]
    pub key: ApiKey,
    /// The secret: send it as `Authorization: Bearer <secret>`. It cannot be shown again.
    pub secret: String,
}

/// All API keys (admin).
#[utoipa::path(get, path = "/api/v1/api-keys", tag = "admin",
    responses((status = 200, body = Vec<ApiKey>), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_api_keys(
    State(s): State<AppState>,
    a: Auth,
) -> Result<Json<Vec<ApiKey>>, ApiError> {
    a.require(Scope::Admin)?;
    Ok(Json(s.store.list_api_keys().await?))
}

/// Create an API key (admin).
#[utoipa::path(post, path = "/api/v1/api-keys", tag = "admin", request_body = NewApiKey,
    responses((status = 201, body = CreatedApiKey), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_api_key(
    State(s): State<AppState>,
    a: Auth,
    ApiJson(input): ApiJson<NewApiKey>,
) -> Result<(StatusCode, Json<CreatedApiKey>), ApiError> {
    a.require(Scope::Admin)?;
    let (secret, prefix, h) = auth::new_api_key();
    let key = s
        .store
        .create_api_key(&a.actor, &input, &prefix, &h)
        .await?;
    Ok((StatusCode::CREATED, Json(CreatedApiKey { key, secret })))
}

/// Revoke an API key (admin).
#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", tag = "admin", params(("id" = i64, Path)),
    responses((status = 200, body = ApiKey), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn revoke_api_key(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
) -> Result<Json<ApiKey>, ApiError> {
    a.require(Scope::Admin)?;
    Ok(Json(s.store.revoke_api_key(&a.actor, id).await?))
}

/// Custom fields of the client card.
#[utoipa::path(get, path = "/api/v1/custom-fields", tag = "admin",
    responses((status = 200, body = Vec<CustomField>), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_custom_fields(
    State(s): State<AppState>,
    a: Auth,
) -> Result<Json<Vec<CustomField>>, ApiError> {
    a.require(Scope::ClientsRead)?;
    Ok(Json(s.store.list_custom_fields().await?))
}

/// Define a custom field (admin).
#[utoipa::path(post, path = "/api/v1/custom-fields", tag = "admin", request_body = NewCustomField,
    responses((status = 201, body = CustomField), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_custom_field(
    State(s): State<AppState>,
    a: Auth,
    ApiJson(input): ApiJson<NewCustomField>,
) -> Result<(StatusCode, Json<CustomField>), ApiError> {
    a.require(Scope::Admin)?;
    Ok((
        StatusCode::CREATED,
        Json(s.store.create_custom_field(&a.actor, &input).await?),
    ))
}

/// Change a custom field's label, options (enum: add only), required flag or position (admin).
#[utoipa::path(patch, path = "/api/v1/custom-fields/{id}", tag = "admin", params(("id" = i64, Path)), request_body = CustomFieldPatch,
    responses((status = 200, body = CustomField), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn update_custom_field(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
    ApiJson(p): ApiJson<CustomFieldPatch>,
) -> Result<Json<CustomField>, ApiError> {
    a.require(Scope::Admin)?;
    Ok(Json(s.store.update_custom_field(&a.actor, id, &p).await?))
}

/// Remove a custom field and its values (admin).
#[utoipa::path(delete, path = "/api/v1/custom-fields/{id}", tag = "admin", params(("id" = i64, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn delete_custom_field(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
) -> Result<StatusCode, ApiError> {
    a.require(Scope::Admin)?;
    s.store.delete_custom_field(&a.actor, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sales scenarios with their stages.
#[utoipa::path(get, path = "/api/v1/sales-scenarios", tag = "interests",
    responses((status = 200, body = Vec<SalesScenario>), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_scenarios(
    State(s): State<AppState>,
    a: Auth,
) -> Result<Json<Vec<SalesScenario>>, ApiError> {
    a.require(Scope::InterestsRead)?;
    Ok(Json(s.store.list_scenarios().await?))
}

/// Create a sales scenario (admin).
#[utoipa::path(post, path = "/api/v1/sales-scenarios", tag = "interests", request_body = NewSalesScenario,
    responses((status = 201, body = SalesScenario), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_scenario(
    State(s): State<AppState>,
    a: Auth,
    ApiJson(input): ApiJson<NewSalesScenario>,
) -> Result<(StatusCode, Json<SalesScenario>), ApiError> {
    a.require(Scope::Admin)?;
    Ok((
        StatusCode::CREATED,
        Json(s.store.create_scenario(&a.actor, &input).await?),
    ))
}

/// Audit query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Entity type (`client`, `user`, ...).
    pub entity: Option<String>,
    /// Entity id.
    pub entity_id: Option<i64>,
    /// Only entries older than this sequence number (paging backwards).
    pub before: Option<i64>,
    /// Page size (default 50, at most 200).
    pub limit: Option<i64>,
}

/// The audit trail: who changed what and when, newest first (admin).
#[utoipa::path(get, path = "/api/v1/audit", tag = "admin", params(AuditQuery),
    responses((status = 200, body = Vec<ChangeEntry>), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn audit(
    State(s): State<AppState>,
    a: Auth,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<Vec<ChangeEntry>>, ApiError> {
    a.require(Scope::Admin)?;
    if q.entity.as_deref().is_some_and(|e| {
        e.is_empty() || e.len() > 32 || !e.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
    }) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "entity is a lowercase entity name such as client or user",
        ));
    }
    Ok(Json(
        s.store
            .audit(
                q.entity.as_deref(),
                q.entity_id,
                q.limit.unwrap_or(50),
                q.before,
            )
            .await?,
    ))
}

/// Change-log query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ChangesQuery {
    /// Entries with a sequence number above this (default 0).
    pub since: Option<i64>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<i64>,
}

/// A page of the change log.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChangesPage {
    /// Entries in sequence order.
    pub items: Vec<ChangeEntry>,
    /// Pass as `since` for the next page.
    pub last_seq: i64,
}

/// The change log from a sequence number on, in commit order (admin or `changes:read`).
#[utoipa::path(get, path = "/api/v1/changes", tag = "admin", params(ChangesQuery),
    responses((status = 200, body = ChangesPage), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn changes(
    State(s): State<AppState>,
    a: Auth,
    ApiQuery(q): ApiQuery<ChangesQuery>,
) -> Result<Json<ChangesPage>, ApiError> {
    if !(a.actor.has_scope(Scope::Admin)
        || matches!(&a.actor, Actor::ApiKey { scopes, .. } if scopes.contains(&Scope::ChangesRead)))
    {
        return Err(ApiError::forbidden(
            "the change log needs the admin role or the changes:read scope",
        ));
    }
    let since = q.since.unwrap_or(0);
    let items = s.store.changes_since(since, q.limit.unwrap_or(100)).await?;
    let last_seq = items.last().map_or(since, |c| c.seq);
    Ok(Json(ChangesPage { items, last_seq }))
}
