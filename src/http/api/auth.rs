//! Sign-in, sign-out, the current principal, and changing one's own password.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth;
use crate::domain::{check_password, Actor, Id, Scope, Timestamp, User};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{ApiJson, ClientIp, SessionAuth, SESSION_COOKIE};
use crate::http::AppState;

/// Sign-in input.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Login.
    pub login: String,
    /// Password.
    pub password: String,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("login", &self.login)
            .finish_non_exhaustive()
    }
}

/// A new session.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    /// Session token: send as `Authorization: Bearer <token>` (the console uses the cookie).
    pub token: String,
    /// When it expires.
    pub expires_at: Timestamp,
    /// The signed-in user. When `must_change_password` is true, only `/auth/password`,
    /// `/auth/me` and `/auth/logout` answer until the password is changed.
    pub user: User,
}

/// Who is signed in.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// The user, for a session.
    pub user: Option<User>,
    /// The API key id, for a key.
    pub api_key_id: Option<Id>,
    /// The key's scopes.
    pub scopes: Vec<Scope>,
}

/// Password change input.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// The current password.
    pub current_password: String,
    /// The new one, 10 to 256 characters, different from the current one.
    pub new_password: String,
}

impl std::fmt::Debug for PasswordChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordChange { .. }")
    }
}

fn cookie(state: &AppState, value: &str, max_age: u64) -> HeaderValue {
    let secure = if state.config.auth.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("kommutator_session=; Path=/; Max-Age=0"))
}

/// The client address a trusted proxy appended last to `X-Forwarded-For`.
fn forwarded_for(headers: &HeaderMap) -> Option<std::net::IpAddr> {
    let last = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .last()?;
    last.trim().parse().ok()
}

async fn verify(hash: Option<String>, password: String) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || {
        auth::verify_password(hash.as_deref().unwrap_or(auth::dummy_hash()), &password)
            && hash.is_some()
    })
    .await
    .map_err(|e| ApiError::internal(&e))
}

/// Sign in with login and password.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401, body = ErrorBody, description = "wrong login or password"),
              (status = 429, body = ErrorBody, description = "too many failed attempts; see Retry-After")))]
pub async fn login(
    State(s): State<AppState>,
    ClientIp(peer): ClientIp,
    headers: HeaderMap,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let ip = if s.config.auth.trust_forwarded_for {
        forwarded_for(&headers).or(peer)
    } else {
        peer
    };
    if req.login.len() > 256 || req.password.len() > 1024 || req.login.chars().any(char::is_control)
    {
        return Err(ApiError::unauthenticated("wrong login or password"));
    }
    if let Err(wait) = s.limiter.attempt(&req.login, ip) {
        metrics::counter!("kommutator_login_blocked_total").increment(1);
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many failed sign-ins; try again later",
        );
        e.retry_after = Some(wait.as_secs().max(1));
        return Err(e);
    }
    let creds = s.store.credentials(&req.login).await?;
    let (user, hash) = match creds {
        Some(c) if c.user.active => (Some(c.user), c.password_hash),
        _ => (None, None),
    };
    let ok = verify(hash, req.password).await?;
    let Some(user) = user.filter(|_| ok) else {
        metrics::counter!("kommutator_login_failures_total").increment(1);
        tracing::info!(login = %req.login.chars().take(64).collect::<String>(), "failed sign-in");
        return Err(ApiError::unauthenticated("wrong login or password"));
    };
    s.limiter.succeeded(&req.login, ip);
    let (token, token_hash) = auth::new_session_token();
    let ttl = s.config.auth.session_ttl_hours * 3600;
    let expires_at = Timestamp(
        Timestamp::now().micros() + i64::try_from(ttl).unwrap_or(i64::MAX / 2_000_000) * 1_000_000,
    );
    s.store
        .create_session(user.id, &token_hash, expires_at)
        .await?;
    let mut headers = HeaderMap::new();
    headers.insert(header::SET_COOKIE, cookie(&s, &token, ttl));
    Ok((
        headers,
        Json(LoginResponse {
            token,
            expires_at,
            user,
        }),
    )
        .into_response())
}

/// End the current session.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub async fn logout(
    State(s): State<AppState>,
    SessionAuth(a): SessionAuth,
) -> Result<Response, ApiError> {
    if let Some(h) = &a.session_hash {
        s.store.delete_session(h).await?;
    }
    let mut headers = HeaderMap::new();
    headers.insert(header::SET_COOKIE, cookie(&s, "", 0));
    Ok((StatusCode::NO_CONTENT, headers).into_response())
}

/// The signed-in user or the API key in use.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth",
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub async fn me(SessionAuth(a): SessionAuth) -> Json<Me> {
    let (api_key_id, scopes) = match &a.actor {
        Actor::ApiKey { id, scopes } => (Some(*id), scopes.clone()),
        _ => (None, Vec::new()),
    };
    Json(Me {
        user: a.user,
        api_key_id,
        scopes,
    })
}

/// Change your own password (required after a one-time password). Other sessions end.
#[utoipa::path(post, path = "/api/v1/auth/password", tag = "auth", request_body = PasswordChange,
    responses((status = 204), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)), security(("bearer" = [])))]
pub async fn change_password(
    State(s): State<AppState>,
    SessionAuth(a): SessionAuth,
    ApiJson(req): ApiJson<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    let (Some(user), Some(session)) = (a.user, a.session_hash) else {
        return Err(ApiError::forbidden("API keys have no password"));
    };
    check_password("new_password", &req.new_password)?;
    if req.new_password == req.current_password {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "same_password",
            "choose a password different from the current one",
        )
        .field("new_password"));
    }
    let creds = s.store.credentials(&user.login).await?;
    if !verify(creds.and_then(|c| c.password_hash), req.current_password).await? {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "wrong_password",
            "the current password is wrong",
        )
        .field("current_password"));
    }
    let new = req.new_password;
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&new))
        .await
        .map_err(|e| ApiError::internal(&e))?
        .map_err(|e| ApiError::internal(&std::io::Error::other(e.to_string())))?;
    s.store
        .change_own_password(user.id, &hash, &session)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
