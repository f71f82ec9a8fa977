//! Files connectors received (mail attachments, messenger media), served to signed-in
//! users. The key is the content's SHA-256; the name in the path is what the browser
//! saves it as.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, Response};

use crate::domain::Scope;
use crate::http::error::{ApiError, ErrorBody};
use crate::http::extract::{Auth, IdPath};
use crate::http::AppState;

/// Types a browser may show in place; everything else downloads.
const INLINE: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "audio/ogg",
    "audio/mpeg",
    "video/mp4",
    "application/pdf",
];

/// A stored file (the `name` segment only names the download).
#[utoipa::path(get, path = "/api/v1/files/{key}/{name}", tag = "files",
    params(("key" = String, Path, description = "hex SHA-256 of the content"), ("name" = String, Path, description = "file name for the download")),
    responses((status = 200, description = "the content"), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_file(
    State(s): State<AppState>,
    a: Auth,
    Path((key, name)): Path<(String, String)>,
) -> Result<Response<Body>, ApiError> {
    serve(&s, &a, &key, &name).await
}

/// A stored file, without a name.
#[utoipa::path(get, path = "/api/v1/files/{key}", tag = "files",
    params(("key" = String, Path, description = "hex SHA-256 of the content")),
    responses((status = 200, description = "the content"), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn get_file_by_key(
    State(s): State<AppState>,
    a: Auth,
    Path(key): Path<String>,
) -> Result<Response<Body>, ApiError> {
    serve(&s, &a, &key, "file").await
}

async fn serve(s: &AppState, a: &Auth, key: &str, name: &str) -> Result<Response<Body>, ApiError> {
    a.require(Scope::DialogsRead)?;
    if !crate::storage::is_file_key(key) {
        return Err(
            ApiError::bad_request("invalid_key", "a file key is 64 lower-case hex digits")
                .field("key"),
        );
    }
    let file = s
        .store
        .get_file(key)
        .await?
        .ok_or_else(|| ApiError::not_found("file"))?;
    let inline = INLINE.contains(&file.mime_type.as_str());
    // The name only goes into a quoted-string and an RFC 5987 value: no quotes, no controls.
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    let disposition = format!(
        "{}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}",
        if inline { "inline" } else { "attachment" }
    );
    let mut resp = Response::new(Body::from(file.content));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&file.mime_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Whatever the file holds, it runs nothing in our origin.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=31536000, immutable"),
    );
    Ok(resp)
}

/// The policy of a mail's HTML body: an opaque origin that runs nothing and loads nothing
/// remote (images only from `data:` URLs), framed only by the console.
pub const MAIL_HTML_CSP: &str =
    "sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none'; \
    img-src data:; style-src 'unsafe-inline'; font-src data:; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'self'";

/// A message's HTML body (email), sanitized by its connector, as a document for the
/// console's frame.
#[utoipa::path(get, path = "/api/v1/messages/{id}/html", tag = "dialogs", params(("id" = i64, Path)),
    responses((status = 200, description = "text/html"), (status = "4XX", body = ErrorBody)), security(("bearer" = [])))]
pub async fn message_html(
    State(s): State<AppState>,
    a: Auth,
    IdPath(id): IdPath,
) -> Result<Response<Body>, ApiError> {
    a.require(Scope::DialogsRead)?;
    let html = s
        .store
        .message_html(&a.actor, id)
        .await?
        .ok_or_else(|| ApiError::not_found("HTML body"))?;
    let doc = format!(
        "<!doctype html><meta charset=\"utf-8\"><base target=\"_blank\"><style>body{{font:14px system-ui,sans-serif;\
         margin:8px;overflow-wrap:anywhere}}img{{max-width:100%}}</style>{html}"
    );
    let mut resp = Response::new(Body::from(doc));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(MAIL_HTML_CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    Ok(resp)
}
