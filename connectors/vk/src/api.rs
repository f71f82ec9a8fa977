//! The VK API over HTTP: method calls (form-encoded POST, the token in the body, never in
//! a URL), the Long Poll request, file downloads and the document upload.

use std::time::Duration;

use kommutator_sdk::{ConnectorError, Secret};
use serde_json::Value;

use crate::parse::{as_i64, ts_string};

/// Why a call failed, classified for retries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// VK answered `{"error": {...}}`.
    #[error("vk error {code}: {message}")]
    Vk {
        /// `error_code`.
        code: i64,
        /// `error_msg`.
        message: String,
    },
    /// The transport failed or VK answered a non-2xx status: transient.
    #[error("{0}")]
    Network(String),
    /// VK answered something this connector cannot read.
    #[error("unexpected answer: {0}")]
    Decode(String),
}

/// How a failure is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Code 5: the token is wrong; an admin must act.
    Auth,
    /// Retry later: too many requests (6, 9, 29), internal errors (1, 10), network.
    Transient,
    /// Refused for good (blacklist 900, no permission 901, privacy 902, 7, 100, …).
    Permanent,
}

impl ApiError {
    /// The class of this failure.
    pub fn class(&self) -> Class {
        match self {
            Self::Vk { code: 5, .. } => Class::Auth,
            Self::Vk {
                code: 1 | 6 | 9 | 10 | 29,
                ..
            }
            | Self::Network(_) => Class::Transient,
            Self::Vk { .. } | Self::Decode(_) => Class::Permanent,
        }
    }

    /// As a [`ConnectorError`] for `run`'s result.
    pub fn into_connector_error(self) -> ConnectorError {
        match (&self, self.class()) {
            (_, Class::Auth) => ConnectorError::auth(self.to_string()),
            (Self::Network(m), _) => ConnectorError::connect(m.clone()),
            (
                Self::Vk {
                    code: 6 | 9 | 29, ..
                },
                _,
            ) => ConnectorError::RateLimited { retry_after: None },
            (_, Class::Transient) => ConnectorError::other(self.to_string()),
            (_, Class::Permanent) => ConnectorError::protocol(self.to_string()),
        }
    }
}

fn network(what: &str, e: &reqwest::Error) -> ApiError {
    // `without_url`: a Long Poll URL carries the key.
    let e = format!("{}", ErrNoUrl(e));
    ApiError::Network(format!("{what}: {e}"))
}

/// Displays a reqwest error without its URL.
struct ErrNoUrl<'a>(&'a reqwest::Error);

impl std::fmt::Display for ErrNoUrl<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_timeout() {
            f.write_str("timed out")
        } else if self.0.is_connect() {
            f.write_str("connection failed")
        } else if let Some(s) = self.0.status() {
            write!(f, "http status {s}")
        } else if self.0.is_body() || self.0.is_decode() {
            f.write_str("bad response body")
        } else {
            f.write_str("request failed")
        }
    }
}

/// The Long Poll server of the community.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LongPollServer {
    /// `server`, the URL to poll.
    pub server: String,
    /// `key`, a credential of the session (never logged).
    pub key: String,
    /// `ts`, the first event to ask for.
    pub ts: String,
}

/// A VK API client for one community.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    api_url: String,
    version: String,
    token: Secret,
}

/// What `messages.send` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// `message_id`, when given.
    pub message_id: Option<i64>,
    /// `conversation_message_id`, when given.
    pub conversation_message_id: Option<i64>,
}

impl Api {
    /// A client for `api_url` (no trailing slash), API `version`, community `token`.
    ///
    /// # Errors
    ///
    /// [`ConnectorError::Other`] when the HTTP client cannot be built.
    pub fn new(api_url: &str, version: &str, token: Secret) -> Result<Self, ConnectorError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ConnectorError::other(format!("http client: {}", ErrNoUrl(&e))))?;
        Ok(Self {
            http,
            api_url: api_url.trim_end_matches('/').to_owned(),
            version: version.to_owned(),
            token,
        })
    }

    /// Calls `method` with `params` (plus `v` and `access_token`); returns `response`.
    ///
    /// # Errors
    ///
    /// [`ApiError`]: VK's error, a transport failure, or an unreadable answer.
    pub async fn call(&self, method: &str, params: &[(&str, String)]) -> Result<Value, ApiError> {
        let body = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            for (k, v) in params {
                form.append_pair(k, v);
            }
            form.append_pair("v", &self.version);
            form.append_pair("access_token", self.token.expose());
            form.finish()
        };
        let resp = self
            .http
            .post(format!("{}/{method}", self.api_url))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| network(method, &e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(ApiError::Network(format!("{method}: http status {status}")));
        }
        let body = resp.bytes().await.map_err(|e| network(method, &e))?;
        response_of(&body).map_err(|e| match e {
            ApiError::Decode(m) => ApiError::Decode(format!("{method}: {m}")),
            other => other,
        })
    }

    /// `groups.getLongPollServer`.
    ///
    /// # Errors
    ///
    /// [`ApiError`].
    pub async fn long_poll_server(&self, group_id: u64) -> Result<LongPollServer, ApiError> {
        let r = self
            .call(
                "groups.getLongPollServer",
                &[("group_id", group_id.to_string())],
            )
            .await?;
        let field = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_owned);
        let server = field("server").ok_or_else(|| missing("server"))?;
        let key = field("key").ok_or_else(|| missing("key"))?;
        let ts = r
            .get("ts")
            .and_then(ts_string)
            .ok_or_else(|| missing("ts"))?;
        Ok(LongPollServer { server, key, ts })
    }

    /// One `a_check` request: the raw answer body.
    ///
    /// # Errors
    ///
    /// [`ApiError::Network`].
    pub async fn a_check(
        &self,
        lp: &LongPollServer,
        wait_secs: u64,
    ) -> Result<axum::body::Bytes, ApiError> {
        let resp = self
            .http
            .get(&lp.server)
            .query(&[
                ("act", "a_check"),
                ("key", lp.key.as_str()),
                ("ts", lp.ts.as_str()),
                ("wait", wait_secs.to_string().as_str()),
            ])
            .timeout(Duration::from_secs(wait_secs.saturating_add(15)))
            .send()
            .await
            .map_err(|e| network("long poll", &e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(ApiError::Network(format!(
                "long poll: http status {status}"
            )));
        }
        resp.bytes().await.map_err(|e| network("long poll", &e))
    }

    /// `messages.send` with form `params` (peer_id, message, random_id, …).
    ///
    /// # Errors
    ///
    /// [`ApiError`].
    pub async fn send_message(&self, params: &[(&str, String)]) -> Result<Sent, ApiError> {
        let r = self.call("messages.send", params).await?;
        sent_of(&r).ok_or_else(|| ApiError::Decode(format!("messages.send: response {r}")))
    }

    /// Uploads `content` as a message document for `peer_id`:
    /// `docs.getMessagesUploadServer` → multipart `file` → `docs.save`; returns the
    /// attachment string `doc{owner_id}_{id}`.
    ///
    /// # Errors
    ///
    /// [`ApiError`].
    pub async fn upload_doc(
        &self,
        peer_id: i64,
        name: &str,
        mime: &str,
        content: Vec<u8>,
    ) -> Result<String, ApiError> {
        let r = self
            .call(
                "docs.getMessagesUploadServer",
                &[("type", "doc".to_owned()), ("peer_id", peer_id.to_string())],
            )
            .await?;
        let upload_url = r
            .get("upload_url")
            .and_then(Value::as_str)
            .ok_or_else(|| missing("upload_url"))?
            .to_owned();
        let mime =
            if mime.contains('/') && !mime.chars().any(|c| c.is_whitespace() || c.is_control()) {
                mime
            } else {
                "application/octet-stream"
            };
        let part = reqwest::multipart::Part::bytes(content)
            .file_name(name.to_owned())
            .mime_str(mime)
            .map_err(|_| ApiError::Decode(format!("upload: bad mime type {mime}")))?;
        let form = reqwest::multipart::Form::new().part("file", part);
        let resp = self
            .http
            .post(&upload_url)
            .multipart(form)
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .map_err(|e| network("upload", &e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(ApiError::Network(format!("upload: http status {status}")));
        }
        let body: Value = resp
            .json()
            .await
            .map_err(|_| ApiError::Decode("upload: answer is not JSON".into()))?;
        let Some(file) = body.get("file").and_then(Value::as_str) else {
            let why = body
                .get("error_descr")
                .or_else(|| body.get("error"))
                .map_or_else(|| "no `file`".to_owned(), Value::to_string);
            return Err(ApiError::Vk {
                code: 0,
                message: format!("upload refused: {why}"),
            });
        };
        let saved = self
            .call(
                "docs.save",
                &[("file", file.to_owned()), ("title", name.to_owned())],
            )
            .await?;
        doc_attachment(&saved).ok_or_else(|| ApiError::Decode(format!("docs.save: {saved}")))
    }

    /// Downloads `url` if it is at most `max` bytes; `Ok(None)` when bigger.
    ///
    /// # Errors
    ///
    /// [`ApiError::Network`].
    pub async fn download(&self, url: &str, max: u64) -> Result<Option<Vec<u8>>, ApiError> {
        let mut resp = self
            .http
            .get(url)
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .map_err(|e| network("download", &e))?;
        if !resp.status().is_success() {
            return Err(ApiError::Network(format!(
                "download: http status {}",
                resp.status()
            )));
        }
        if resp.content_length().is_some_and(|n| n > max) {
            return Ok(None);
        }
        let mut out = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| network("download", &e))? {
            if (out.len() + chunk.len()) as u64 > max {
                return Ok(None);
            }
            out.extend_from_slice(&chunk);
        }
        Ok(Some(out))
    }
}

fn missing(field: &str) -> ApiError {
    ApiError::Decode(format!("missing `{field}`"))
}

/// `response` of a method's answer, or its `error`. Pure.
///
/// # Errors
///
/// [`ApiError::Vk`] for `{"error": …}`, [`ApiError::Decode`] otherwise.
pub fn response_of(body: &[u8]) -> Result<Value, ApiError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|_| ApiError::Decode("answer is not JSON".into()))?;
    if let Some(err) = v.get("error") {
        let code = err.get("error_code").and_then(as_i64).unwrap_or(0);
        let message = err
            .get("error_msg")
            .and_then(Value::as_str)
            .unwrap_or("unknown error")
            .chars()
            .take(300)
            .collect();
        return Err(ApiError::Vk { code, message });
    }
    v.get("response")
        .cloned()
        .ok_or_else(|| ApiError::Decode("no `response`".into()))
}

/// The ids `messages.send` answered: a bare message id (with `peer_id`) or an array of
/// `{peer_id, message_id, conversation_message_id}` (with `peer_ids`). Pure.
pub fn sent_of(r: &Value) -> Option<Sent> {
    match r {
        Value::Array(items) => {
            let first = items.first()?;
            Some(Sent {
                message_id: first.get("message_id").and_then(as_i64),
                conversation_message_id: first.get("conversation_message_id").and_then(as_i64),
            })
        }
        v => Some(Sent {
            message_id: Some(as_i64(v)?),
            conversation_message_id: None,
        }),
    }
}

/// `doc{owner_id}_{id}` from `docs.save`'s `response`: `{type, doc: {...}}` in current
/// versions, an array of docs in older ones. Pure.
pub fn doc_attachment(r: &Value) -> Option<String> {
    let doc = match r {
        Value::Array(a) => a.first()?,
        v => v.get("doc").or_else(|| v.get("audio_message")).unwrap_or(v),
    };
    let owner = doc.get("owner_id").and_then(as_i64)?;
    let id = doc.get("id").and_then(as_i64)?;
    Some(format!("doc{owner}_{id}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn answers_and_errors() {
        assert_eq!(response_of(br#"{"response": 5}"#).unwrap(), json!(5));
        let e = response_of(br#"{"error": {"error_code": 901, "error_msg": "Can't send"}}"#)
            .unwrap_err();
        assert_eq!(e.class(), Class::Permanent);
        assert_eq!(e.to_string(), "vk error 901: Can't send");
        assert!(response_of(b"x").is_err());
        assert_eq!(
            ApiError::Vk {
                code: 5,
                message: String::new()
            }
            .class(),
            Class::Auth
        );
        assert_eq!(
            ApiError::Vk {
                code: 6,
                message: String::new()
            }
            .class(),
            Class::Transient
        );
        assert!(!ApiError::Vk {
            code: 5,
            message: String::new()
        }
        .into_connector_error()
        .is_retryable());
        assert!(ApiError::Network("x".into())
            .into_connector_error()
            .is_retryable());
    }

    #[test]
    fn sent_and_doc_shapes() {
        assert_eq!(
            sent_of(&json!(77)).unwrap(),
            Sent {
                message_id: Some(77),
                conversation_message_id: None
            }
        );
        assert_eq!(
            sent_of(&json!([{"peer_id": 1, "message_id": 0, "conversation_message_id": 9}]))
                .unwrap()
                .conversation_message_id,
            Some(9)
        );
        assert_eq!(sent_of(&json!([])), None);
        assert_eq!(
            doc_attachment(&json!({"type": "doc", "doc": {"id": 3, "owner_id": -5}})).unwrap(),
            "doc-5_3"
        );
        assert_eq!(
            doc_attachment(&json!([{"id": 3, "owner_id": 5}])).unwrap(),
            "doc5_3"
        );
    }
}
