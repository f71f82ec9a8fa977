//! The Graph API calls the connector makes: send a message, upload a medium, look a medium
//! up and download it. Request bodies and answers are built and read by pure functions
//! (`*_message`, `parse_*`); [`Graph`] does the HTTP.

use std::time::Duration;

use kommutator_sdk::Secret;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde_json::{json, Value};

use crate::parse::ParseError;

/// Rate-limit error codes of the Graph and Cloud APIs: 4 (app), 80007 (business account),
/// 130429 (throughput), 131048 (spam rate), 131056 (pair rate).
const RATE_LIMIT_CODES: [i64; 5] = [4, 80007, 130_429, 131_048, 131_056];

/// Codes that say "try again": 1 and 2 (API unknown / service unavailable), 131000
/// (something went wrong), 131016 (service overloaded).
const TRANSIENT_CODES: [i64; 4] = [1, 2, 131_000, 131_016];

/// The code of an invalid or expired access token.
pub const TOKEN_ERROR_CODE: i64 = 190;

/// Why a Graph API call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// Worth retrying later: network, 5xx, rate limits.
    Transient {
        /// What happened (no credentials).
        message: String,
        /// Whether the API asked us to slow down.
        rate_limited: bool,
        /// The `Retry-After` the answer gave, if any.
        retry_after: Option<Duration>,
    },
    /// Refused for good (4xx): retrying the same request fails the same way.
    Refused {
        /// `error.code`, when the answer had one.
        code: Option<i64>,
        /// The reason, for an operator: `error.message`, details and code.
        reason: String,
    },
}

impl ApiError {
    fn transient(message: impl Into<String>) -> Self {
        Self::Transient {
            message: message.into(),
            rate_limited: false,
            retry_after: None,
        }
    }

    /// Whether this is the API rejecting the access token (code 190, HTTP 401).
    pub fn is_token_error(&self) -> bool {
        matches!(
            self,
            Self::Refused {
                code: Some(TOKEN_ERROR_CODE),
                ..
            }
        )
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Transient { message, .. } => f.write_str(message),
            Self::Refused { reason, .. } => f.write_str(reason),
        }
    }
}

/// Classifies an error answer of the Graph API from its HTTP status and body
/// (`{"error": {"message", "type", "code", "error_subcode", "error_data": {"details"}}}`).
/// Pure; any body is accepted.
pub fn parse_graph_error(status: u16, body: &[u8]) -> ApiError {
    let err = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").cloned())
        .filter(Value::is_object);
    let code = err
        .as_ref()
        .and_then(|e| e.get("code"))
        .and_then(Value::as_i64);
    let subcode = err
        .as_ref()
        .and_then(|e| e.get("error_subcode"))
        .and_then(Value::as_i64);
    let message = err
        .as_ref()
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|m| !m.is_empty());
    let details = err
        .as_ref()
        .and_then(|e| e.pointer("/error_data/details"))
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|d| !d.is_empty());
    let mut reason = message.map_or_else(|| format!("HTTP {status}"), str::to_owned);
    if let Some(d) = details {
        if !reason.contains(d) {
            reason = format!("{reason} ({d})");
        }
    }
    match (code, subcode) {
        (Some(c), Some(s)) => reason = format!("{reason} [code {c}/{s}]"),
        (Some(c), None) => reason = format!("{reason} [code {c}]"),
        _ => {}
    }
    let rate_limited = status == 429 || code.is_some_and(|c| RATE_LIMIT_CODES.contains(&c));
    if rate_limited || status >= 500 || code.is_some_and(|c| TRANSIENT_CODES.contains(&c)) {
        return ApiError::Transient {
            message: format!("whatsapp api: {reason}"),
            rate_limited,
            retry_after: None,
        };
    }
    let code = code.or((status == 401).then_some(TOKEN_ERROR_CODE));
    ApiError::Refused { code, reason }
}

/// The wamid of an accepted message: `messages[0].id` of
/// `{"messaging_product", "contacts": [..], "messages": [{"id": "wamid.…"}]}`.
///
/// # Errors
///
/// [`ParseError`] when the answer has no such id.
pub fn parse_send_response(body: &[u8]) -> Result<String, ParseError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ParseError(format!("send answer is not JSON: {e}")))?;
    v.pointer("/messages/0/id")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| ParseError("send answer has no `messages[0].id`".to_owned()))
}

/// The media id of an upload answer `{"id": "…"}`.
///
/// # Errors
///
/// [`ParseError`] when the answer has no `id`.
pub fn parse_upload_response(body: &[u8]) -> Result<String, ParseError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ParseError(format!("upload answer is not JSON: {e}")))?;
    match v.get("id") {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err(ParseError("upload answer has no `id`".to_owned())),
    }
}

/// What `GET /{media id}` says of a medium.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaInfo {
    /// Where to download it (with the bearer token), valid for a few minutes.
    pub url: String,
    /// Its MIME type.
    pub mime_type: Option<String>,
    /// Its size in bytes.
    pub file_size: Option<u64>,
}

/// Reads `{"messaging_product", "url", "mime_type", "sha256", "file_size", "id"}`.
///
/// # Errors
///
/// [`ParseError`] when `url` is missing or not http(s).
pub fn parse_media_info(body: &[u8]) -> Result<MediaInfo, ParseError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ParseError(format!("media answer is not JSON: {e}")))?;
    let url = v
        .get("url")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        .ok_or_else(|| ParseError("media answer has no http(s) `url`".to_owned()))?;
    let file_size = match v.get("file_size") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    Ok(MediaInfo {
        url: url.to_owned(),
        mime_type: v
            .get("mime_type")
            .and_then(Value::as_str)
            .map(str::to_owned),
        file_size,
    })
}

/// The message type a file is sent as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// JPEG and PNG.
    Image,
    /// MP4 and 3GPP.
    Video,
    /// Any `audio/*`.
    Audio,
    /// Anything else, with its file name.
    Document,
}

impl MediaKind {
    /// The Cloud API's `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Video => "video",
            Self::Audio => "audio",
            Self::Document => "document",
        }
    }

    /// Whether the type takes a `caption`.
    pub fn takes_caption(self) -> bool {
        !matches!(self, Self::Audio)
    }

    /// The type for a MIME type: the image and video formats WhatsApp plays inline, any
    /// audio, and a document for the rest.
    pub fn for_mime(mime: &str) -> Self {
        let essence = mime
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "image/jpeg" | "image/png" => Self::Image,
            "video/mp4" | "video/3gpp" => Self::Video,
            a if a.starts_with("audio/") => Self::Audio,
            _ => Self::Document,
        }
    }
}

/// Where the content of a media message comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaSource<'a> {
    /// A public http(s) URL WhatsApp fetches.
    Link(&'a str),
    /// The id of an uploaded medium.
    Id(&'a str),
}

fn envelope(to: &str, kind: &str, reply_to: Option<&str>) -> Value {
    let mut body = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": kind,
    });
    if let Some(id) = reply_to {
        body["context"] = json!({ "message_id": id });
    }
    body
}

/// The body of a text message to `to`, quoting `reply_to` (a wamid) when given.
pub fn text_message(to: &str, text: &str, reply_to: Option<&str>) -> Value {
    let mut body = envelope(to, "text", reply_to);
    body["text"] = json!({ "body": text });
    body
}

/// The body of a media message to `to`.
pub fn media_message(
    to: &str,
    kind: MediaKind,
    source: MediaSource<'_>,
    caption: Option<&str>,
    filename: Option<&str>,
    reply_to: Option<&str>,
) -> Value {
    let mut media = match source {
        MediaSource::Link(url) => json!({ "link": url }),
        MediaSource::Id(id) => json!({ "id": id }),
    };
    if let Some(c) = caption.filter(|_| kind.takes_caption()) {
        media["caption"] = json!(c);
    }
    if let Some(f) = filename.filter(|_| kind == MediaKind::Document) {
        media["filename"] = json!(f);
    }
    let mut body = envelope(to, kind.as_str(), reply_to);
    body[kind.as_str()] = media;
    body
}

/// Whether `mime` is a bare `type/subtype` of token characters (what a multipart part
/// header takes as is).
fn is_plain_mime(mime: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    matches!(mime.split_once('/'), Some((t, s)) if token(t) && token(s))
}

/// The Graph API of one phone number.
#[derive(Debug, Clone)]
pub(crate) struct Graph {
    http: reqwest::Client,
    /// `{graph_url}/{api_version}`.
    base: String,
    token: Secret,
    phone_number_id: String,
}

fn transport(what: &str, e: reqwest::Error) -> ApiError {
    // Without the URL: a media download URL carries Meta's signed query. The token is
    // never in a URL (it goes in a header).
    ApiError::transient(format!("whatsapp api: {what}: {}", e.without_url()))
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

impl Graph {
    pub(crate) fn new(
        http: reqwest::Client,
        base: String,
        token: Secret,
        phone_number_id: String,
    ) -> Self {
        Self {
            http,
            base,
            token,
            phone_number_id,
        }
    }

    /// The body of a 2xx answer, or the classified error.
    async fn answer(&self, what: &str, resp: reqwest::Response) -> Result<Vec<u8>, ApiError> {
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(|e| transport(what, e))?;
        if status.is_success() {
            return Ok(body.to_vec());
        }
        let mut err = parse_graph_error(status.as_u16(), &body);
        if let ApiError::Transient {
            retry_after: ra, ..
        } = &mut err
        {
            *ra = retry_after(&headers);
        }
        Err(err)
    }

    /// Sends a message; the wamid it got.
    pub(crate) async fn send(&self, body: &Value) -> Result<String, ApiError> {
        let url = format!("{}/{}/messages", self.base, self.phone_number_id);
        let resp = self
            .http
            .post(url)
            .bearer_auth(self.token.expose())
            .json(body)
            .send()
            .await
            .map_err(|e| transport("send", e))?;
        let answer = self.answer("send", resp).await?;
        parse_send_response(&answer).map_err(|e| ApiError::Refused {
            code: None,
            reason: format!("whatsapp accepted the message but {e}"),
        })
    }

    /// Uploads a file; its media id.
    pub(crate) async fn upload(
        &self,
        name: &str,
        mime_type: &str,
        content: Vec<u8>,
    ) -> Result<String, ApiError> {
        let url = format!("{}/{}/media", self.base, self.phone_number_id);
        let mime_type = if is_plain_mime(mime_type) {
            mime_type
        } else {
            "application/octet-stream"
        };
        let part = reqwest::multipart::Part::bytes(content)
            .file_name(name.to_owned())
            .mime_str(mime_type)
            .map_err(|e| ApiError::Refused {
                code: None,
                reason: format!("file type {mime_type:?}: {e}"),
            })?;
        let form = reqwest::multipart::Form::new()
            .text("messaging_product", "whatsapp")
            .text("type", mime_type.to_owned())
            .part("file", part);
        let resp = self
            .http
            .post(url)
            .bearer_auth(self.token.expose())
            .multipart(form)
            .send()
            .await
            .map_err(|e| transport("upload", e))?;
        let answer = self.answer("upload", resp).await?;
        parse_upload_response(&answer)
            .map_err(|e| ApiError::transient(format!("whatsapp api: {e}")))
    }

    /// Looks a received medium up.
    pub(crate) async fn media_info(&self, media_id: &str) -> Result<MediaInfo, ApiError> {
        let url = format!("{}/{media_id}", self.base);
        let resp = self
            .http
            .get(url)
            .bearer_auth(self.token.expose())
            .send()
            .await
            .map_err(|e| transport("media lookup", e))?;
        let answer = self.answer("media lookup", resp).await?;
        parse_media_info(&answer).map_err(|e| ApiError::transient(format!("whatsapp api: {e}")))
    }

    /// Downloads a medium from the URL [`media_info`](Self::media_info) gave, at most
    /// `max` bytes.
    pub(crate) async fn download(&self, url: &str, max: usize) -> Result<Vec<u8>, ApiError> {
        let mut resp = self
            .http
            .get(url)
            .bearer_auth(self.token.expose())
            .send()
            .await
            .map_err(|e| transport("media download", e))?;
        if !resp.status().is_success() {
            return Err(self
                .answer("media download", resp)
                .await
                .err()
                .unwrap_or_else(|| ApiError::transient("whatsapp api: media download failed")));
        }
        if resp.content_length().is_some_and(|n| n > max as u64) {
            return Err(ApiError::Refused {
                code: None,
                reason: format!("medium is larger than {max} bytes"),
            });
        }
        let mut out = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| transport("media download", e))?
        {
            if out.len() + chunk.len() > max {
                return Err(ApiError::Refused {
                    code: None,
                    reason: format!("medium is larger than {max} bytes"),
                });
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn graph_errors_are_classified() {
        let body = |code: i64, sub: Option<i64>| {
            let mut e = json!({"error": {"message": "boom", "type": "OAuthException", "code": code, "fbtrace_id": "A"}});
            if let Some(s) = sub {
                e["error"]["error_subcode"] = json!(s);
            }
            serde_json::to_vec(&e).unwrap()
        };
        for code in [131_047, 131_026, 100] {
            assert_eq!(
                parse_graph_error(400, &body(code, None)),
                ApiError::Refused {
                    code: Some(code),
                    reason: format!("boom [code {code}]")
                }
            );
        }
        let token = parse_graph_error(401, &body(190, Some(463)));
        assert!(token.is_token_error());
        assert_eq!(token.to_string(), "boom [code 190/463]");
        assert!(parse_graph_error(401, b"").is_token_error());
        for (status, code) in [(429, 130_429), (400, 131_048), (400, 131_056), (400, 4)] {
            assert!(
                matches!(
                    parse_graph_error(status, &body(code, None)),
                    ApiError::Transient {
                        rate_limited: true,
                        ..
                    }
                ),
                "{code}"
            );
        }
        assert!(matches!(
            parse_graph_error(503, b"<html>"),
            ApiError::Transient {
                rate_limited: false,
                ..
            }
        ));
        assert!(matches!(
            parse_graph_error(400, &body(131_000, None)),
            ApiError::Transient { .. }
        ));
        let detailed = serde_json::to_vec(&json!({"error": {"message": "(#131047) Re-engagement message", "code": 131_047,
            "error_data": {"messaging_product": "whatsapp", "details": "More than 24 hours have passed"}}}))
        .unwrap();
        assert_eq!(
            parse_graph_error(400, &detailed).to_string(),
            "(#131047) Re-engagement message (More than 24 hours have passed) [code 131047]"
        );
        assert_eq!(parse_graph_error(404, b"x").to_string(), "HTTP 404");
    }

    #[test]
    fn answers() {
        let ok = br#"{"messaging_product":"whatsapp","contacts":[{"input":"16315551234","wa_id":"16315551234"}],"messages":[{"id":"wamid.X"}]}"#;
        assert_eq!(parse_send_response(ok).unwrap(), "wamid.X");
        assert!(parse_send_response(br#"{"messages":[]}"#).is_err());
        assert!(parse_send_response(b"nope").is_err());
        assert_eq!(parse_upload_response(br#"{"id":"123"}"#).unwrap(), "123");
        assert_eq!(parse_upload_response(br#"{"id":123}"#).unwrap(), "123");
        assert!(parse_upload_response(b"{}").is_err());
        let info = parse_media_info(
            br#"{"messaging_product":"whatsapp","url":"https://lookaside.example/x","mime_type":"image/jpeg","sha256":"a","file_size":303833,"id":"1"}"#,
        )
        .unwrap();
        assert_eq!(info.file_size, Some(303_833));
        assert_eq!(info.mime_type.as_deref(), Some("image/jpeg"));
        assert!(parse_media_info(br#"{"url":"file:///etc/passwd"}"#).is_err());
    }

    #[test]
    fn message_bodies() {
        assert_eq!(
            text_message("16315551234", "hi", Some("wamid.A")),
            json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": "16315551234",
                   "type": "text", "text": {"body": "hi"}, "context": {"message_id": "wamid.A"}})
        );
        assert_eq!(
            media_message(
                "1",
                MediaKind::Document,
                MediaSource::Id("9"),
                Some("c"),
                Some("a.pdf"),
                None
            ),
            json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": "1",
                   "type": "document", "document": {"id": "9", "caption": "c", "filename": "a.pdf"}})
        );
        assert_eq!(
            media_message(
                "1",
                MediaKind::Audio,
                MediaSource::Link("https://x/a.ogg"),
                Some("c"),
                Some("a.ogg"),
                None
            )["audio"],
            json!({"link": "https://x/a.ogg"})
        );
        assert_eq!(MediaKind::for_mime("image/PNG"), MediaKind::Image);
        assert_eq!(MediaKind::for_mime("image/gif"), MediaKind::Document);
        assert_eq!(
            MediaKind::for_mime("audio/ogg; codecs=opus"),
            MediaKind::Audio
        );
        assert_eq!(MediaKind::for_mime("video/mp4"), MediaKind::Video);
        assert_eq!(MediaKind::for_mime(""), MediaKind::Document);
        assert!(is_plain_mime("application/vnd.ms-excel"));
        assert!(!is_plain_mime("text/plain; charset=utf-8"));
        assert!(!is_plain_mime("nonsense"));
    }
}
