//! Request extractors that answer bad input with our JSON errors: body, query, path,
//! and the authenticated principal.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::AppState;
use crate::auth;
use crate::domain::{Actor, Scope, Timestamp, User};

/// The name of the session cookie.
pub const SESSION_COOKIE: &str = "kommutator_session";

/// A JSON body, parsed strictly: `application/json`, within the size limit, no unknown
/// fields, every type checked, the failing field named.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if mime != "application/json" {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the request body is larger than the server accepts",
                )
            } else {
                ApiError::bad_request("unreadable_body", "the request body could not be read")
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Parses a JSON request body with precise errors (see [`ApiJson`]): first the syntax,
/// then the shape, so a wrong type is never reported as malformed JSON and vice versa.
///
/// # Errors
/// 400 `malformed_json` for syntax; 422 `invalid_type` when the body is not an object;
/// 422 `unknown_field` / `missing_field` / `invalid_type` / `invalid_value` for shape, with
/// the field's path.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "malformed_json",
            "the request body is empty; send a JSON object",
        ));
    }
    serde_json::from_slice::<serde_json::Value>(bytes)
        .map_err(|e| ApiError::bad_request("malformed_json", format!("malformed JSON: {e}")))?;
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_type",
            "the request body must be a JSON object",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        shape_error(&path, &e.into_inner())
    })
}

fn shape_error(path: &str, e: &serde_json::Error) -> ApiError {
    let full = e.to_string();
    let msg = full.split(" at line ").next().unwrap_or(&full).to_owned();
    let (code, msg) = if msg.starts_with("unknown field") {
        ("unknown_field", msg)
    } else if msg.starts_with("missing field") {
        ("missing_field", msg)
    } else if msg.starts_with("invalid type") {
        ("invalid_type", msg)
    } else if msg.starts_with("expected value") {
        // serde_json says "expected value" for an enum given a number, null or an array.
        (
            "invalid_type",
            "invalid type: expected one of the documented values".to_owned(),
        )
    } else {
        ("invalid_value", msg)
    };
    let mut field = path.replace('[', ".").replace(']', "");
    if field == "." || field == "?" {
        field.clear();
    }
    if code == "missing_field" || (code == "unknown_field" && field.is_empty()) {
        if let Some(name) = msg.split('`').nth(1) {
            field = if field.is_empty() {
                name.to_owned()
            } else {
                format!("{field}.{name}")
            };
        }
    }
    let mut err = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, msg);
    if !field.is_empty() {
        err = err.field(field);
    }
    err
}

/// Query parameters, parsed strictly.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        if q.len() > 8192 {
            return Err(ApiError::bad_request(
                "invalid_query",
                "the query string is too long",
            ));
        }
        serde_urlencoded::from_str(q)
            .map(ApiQuery)
            .map_err(|e| ApiError::bad_request("invalid_query", format!("invalid query: {e}")))
    }
}

/// A path parameter that must be a positive id.
#[derive(Debug, Clone, Copy)]
pub struct IdPath(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::bad_request("invalid_path", "the path needs one id"))?;
        let digits =
            !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) && !raw.starts_with('0');
        match raw.parse::<i64>() {
            Ok(id) if digits && id > 0 => Ok(IdPath(id)),
            _ => Err(ApiError::bad_request(
                "invalid_path",
                format!(
                    "`{}` is not an id",
                    raw.chars().take(40).collect::<String>()
                ),
            )),
        }
    }
}

/// The client's address, when the server knows it.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// The authenticated principal: a signed-in user (session cookie or bearer session token)
/// or an API key (bearer). Users with a one-time password must change it first.
#[derive(Debug, Clone)]
pub struct Auth {
    /// Who acts.
    pub actor: Actor,
    /// The user, for sessions.
    pub user: Option<User>,
    /// Hash of the session token, for sessions.
    pub session_hash: Option<String>,
}

impl Auth {
    /// 403 unless the principal has `scope`.
    ///
    /// # Errors
    /// `forbidden`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.actor.has_scope(scope) {
            Ok(())
        } else if matches!(self.actor, Actor::ApiKey { .. }) {
            Err(ApiError::forbidden(format!(
                "this API key lacks the {} scope",
                scope.as_str()
            )))
        } else {
            Err(ApiError::forbidden("your role does not allow this"))
        }
    }
}

/// Like [`Auth`] but also admits users who still must change their one-time password
/// (for `/auth/me`, `/auth/password`, `/auth/logout`).
#[derive(Debug, Clone)]
pub struct SessionAuth(pub Auth);

fn bearer_or_cookie(parts: &Parts) -> Option<String> {
    if let Some(v) = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        return v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .map(|t| t.trim().to_owned());
    }
    for cookies in parts.headers.get_all(header::COOKIE) {
        let Ok(s) = cookies.to_str() else { continue };
        for c in s.split(';') {
            if let Some((k, v)) = c.trim().split_once('=') {
                if k == SESSION_COOKIE && !v.is_empty() {
                    return Some(v.to_owned());
                }
            }
        }
    }
    None
}

async fn authenticate(parts: &Parts, state: &AppState) -> Result<Auth, ApiError> {
    let token = bearer_or_cookie(parts).ok_or_else(|| {
        ApiError::unauthenticated("sign in, or send a session token or API key as a bearer token")
    })?;
    if token.len() > 512 {
        return Err(ApiError::unauthenticated("the token is not valid"));
    }
    if let Some(prefix) = auth::api_key_prefix(&token) {
        let found = state.store.api_key_by_prefix(prefix).await?;
        return match found {
            Some((key, hash))
                if auth::constant_time_eq(auth::token_hash(&token).as_bytes(), hash.as_bytes()) =>
            {
                Ok(Auth {
                    actor: Actor::ApiKey {
                        id: key.id,
                        scopes: key.scopes,
                    },
                    user: None,
                    session_hash: None,
                })
            }
            _ => Err(ApiError::unauthenticated(
                "the API key is not valid or was revoked",
            )),
        };
    }
    let hash = auth::token_hash(&token);
    match state.store.session_user(&hash, Timestamp::now()).await? {
        Some(user) => Ok(Auth {
            actor: Actor::User {
                id: user.id,
                role: user.role,
                department_id: user.department_id,
            },
            user: Some(user),
            session_hash: Some(hash),
        }),
        None => Err(ApiError::unauthenticated(
            "the session has expired or was ended; sign in again",
        )),
    }
}

impl FromRequestParts<AppState> for SessionAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        authenticate(parts, state).await.map(SessionAuth)
    }
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let a = authenticate(parts, state).await?;
        if a.user.as_ref().is_some_and(|u| u.must_change_password) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "password_change_required",
                "choose a new password first: POST /api/v1/auth/password",
            ));
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Input {
        name: String,
        #[serde(default)]
        items: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        n: i64,
    }

    fn err(body: &str) -> ApiError {
        parse_json::<Input>(body.as_bytes()).expect_err("invalid")
    }

    #[test]
    fn json_errors_are_specific() {
        let e = err("{\"name\": \"a\", \"nmae\": 1}");
        assert_eq!(
            (e.status, e.code, e.field.as_deref()),
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_field",
                Some("nmae")
            )
        );
        let e = err("{\"name\": 5}");
        assert_eq!((e.code, e.field.as_deref()), ("invalid_type", Some("name")));
        let e = parse_json::<crate::domain::NewClient>(b"{\"kind\": 5, \"name\": \"x\"}")
            .expect_err("enum");
        assert_eq!((e.code, e.field.as_deref()), ("invalid_type", Some("kind")));
        let e = err("{}");
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("missing_field", Some("name"))
        );
        let e = err("{\"name\": \"a\", \"items\": [{\"n\": \"x\"}]}");
        assert_eq!(
            (e.code, e.field.as_deref()),
            ("invalid_type", Some("items.0.n"))
        );
        for bad in [
            "{",
            "",
            "  ",
            "[1,",
            "{\"name\": \"a\"} trailing",
            "\u{0}",
            "{\"name\": }",
        ] {
            assert_eq!(err(bad).code, "malformed_json", "{bad:?}");
        }
        for not_object in ["[\"a\"]", "5", "null", "\"x\""] {
            assert_eq!(
                (err(not_object).status, err(not_object).code),
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_type"),
                "{not_object}"
            );
        }
        let deep = "[".repeat(10_000);
        assert_eq!(err(&deep).status, StatusCode::BAD_REQUEST);
    }
}
