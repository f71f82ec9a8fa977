//! The Bot API client: teloxide-core's `Bot` plus what the connector needs around it
//! (raw `getUpdates`, bounded downloads, error classification, retries). Every error
//! message that leaves this module has the token replaced by `***`: reqwest errors
//! quote request URLs, and the token is part of every Bot API URL.

use std::sync::Arc;
use std::time::Duration;

use kommutator_sdk::{Attachment, CancellationToken, ConnectorError, FileStore};
use serde::Serialize;
use serde_json::Value;
use teloxide_core::payloads::SetWebhookSetters;
use teloxide_core::requests::{JsonRequest, Payload, Requester};
use teloxide_core::types::FileId;
use teloxide_core::{ApiError, Bot, RequestError};

use crate::parse::{file_ref, MediaRef};

/// The longest error text we quote (Telegram's descriptions are short; a broken proxy's
/// HTML page is not).
const MAX_QUOTE: usize = 300;

/// `getUpdates` with the updates kept as JSON values, so `raw` is the update as sent
/// and an update type teloxide does not know still maps (to `Unknown`).
#[derive(Debug, Clone, Serialize)]
struct GetUpdatesRaw {
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<i64>,
    timeout: u32,
}

impl Payload for GetUpdatesRaw {
    type Output = Vec<Value>;
    const NAME: &'static str = "getUpdates";

    fn timeout_hint(&self) -> Option<Duration> {
        Some(Duration::from_secs(self.timeout.into()))
    }
}

/// How a failed call ends.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Telegram refused the request for good (4xx: blocked, chat not found, bad
    /// request): an outbound message fails with this reason.
    Refused(String),
    /// The connector must stop with this error (bad token, retries exhausted, shutdown).
    Fatal(ConnectorError),
}

/// The bot: a teloxide `Bot` pointed at `api_url`.
#[derive(Clone)]
pub(crate) struct Api {
    bot: Bot,
    api_url: reqwest::Url,
    max_file_bytes: u64,
}

impl Api {
    /// No I/O: builds the HTTP client (17 s total timeout, teloxide's safe settings).
    pub(crate) fn new(
        token: &str,
        api_url: reqwest::Url,
        max_file_bytes: u64,
    ) -> Result<Self, ConnectorError> {
        let client = teloxide_core::net::default_reqwest_settings()
            .build()
            .map_err(|e| ConnectorError::other(format!("cannot build the http client: {e}")))?;
        let bot = Bot::with_client(token, client).set_api_url(api_url.clone());
        Ok(Self {
            bot,
            api_url,
            max_file_bytes,
        })
    }

    pub(crate) fn bot(&self) -> &Bot {
        &self.bot
    }

    /// `text` with the token replaced by `***`, cut to a sane length.
    pub(crate) fn redact(&self, text: &str) -> String {
        let token = self.bot.token();
        let clean = if token.is_empty() {
            text.to_owned()
        } else {
            text.replace(token, "***")
        };
        if clean.chars().count() > MAX_QUOTE {
            let cut: String = clean.chars().take(MAX_QUOTE).collect();
            format!("{cut}…")
        } else {
            clean
        }
    }

    /// One long poll from `offset`.
    pub(crate) async fn get_updates(
        &self,
        offset: Option<i64>,
        timeout: u32,
    ) -> Result<Vec<Value>, RequestError> {
        JsonRequest::new(self.bot.clone(), GetUpdatesRaw { offset, timeout }).await
    }

    /// The error that ends a polling run for a failed Bot API call.
    pub(crate) fn run_error(&self, method: &str, e: &RequestError) -> ConnectorError {
        match e {
            RequestError::Api(ApiError::InvalidToken) => ConnectorError::auth(format!(
                "telegram rejected the bot token on {method} (401 Unauthorized)"
            )),
            RequestError::Api(api) if is_conflict(api) => ConnectorError::other(format!(
                "telegram answered 409 conflict on {method}: {}; another process polls with \
                 this bot token, or a webhook is set (polling deletes it at start); retrying",
                self.redact(&api.to_string())
            )),
            RequestError::Api(api) => ConnectorError::protocol(format!(
                "telegram refused {method}: {}",
                self.redact(&api.to_string())
            )),
            RequestError::RetryAfter(s) => ConnectorError::RateLimited {
                retry_after: Some(s.duration()),
            },
            RequestError::Network(n) => {
                ConnectorError::connect(format!("{method}: {}", self.redact(&n.to_string())))
            }
            RequestError::InvalidJson { source, .. } => ConnectorError::protocol(format!(
                "telegram answered {method} with unexpected JSON: {}",
                self.redact(&source.to_string())
            )),
            RequestError::MigrateToChatId(_) | RequestError::Io(_) => {
                ConnectorError::other(format!("{method}: {}", self.redact(&e.to_string())))
            }
        }
    }

    /// Runs `call` until it succeeds, retrying transient failures (network, 5xx, 429
    /// with `retry_after`) with backoff; at most `attempts` tries.
    pub(crate) async fn with_retry<T, F, Fut>(
        &self,
        method: &str,
        shutdown: &CancellationToken,
        attempts: u32,
        mut call: F,
    ) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, RequestError>>,
    {
        let mut backoff = Duration::from_millis(500);
        let mut tries = 0;
        loop {
            tries += 1;
            let result = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Err(Failure::Fatal(ConnectorError::Closed)),
                r = call() => r,
            };
            let e = match result {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let wait = match &e {
                RequestError::Api(ApiError::InvalidToken) => {
                    return Err(Failure::Fatal(self.run_error(method, &e)))
                }
                RequestError::Api(api) if !is_transient(api) => {
                    return Err(Failure::Refused(self.redact(&api.to_string())))
                }
                RequestError::MigrateToChatId(to) => {
                    return Err(Failure::Refused(format!(
                        "the group was migrated to the supergroup {to}"
                    )))
                }
                RequestError::RetryAfter(s) => s.duration(),
                _ => backoff,
            };
            if tries >= attempts {
                return Err(Failure::Fatal(self.run_error(method, &e)));
            }
            tracing::warn!(method, error = %self.redact(&e.to_string()), wait_ms = wait.as_millis() as u64, "telegram: retrying");
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return Err(Failure::Fatal(ConnectorError::Closed)),
                () = tokio::time::sleep(wait) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }
    }

    /// `deleteWebhook` (polling mode, at start).
    pub(crate) async fn delete_webhook(&self) -> Result<(), ConnectorError> {
        self.bot
            .delete_webhook()
            .await
            .map(|_| ())
            .map_err(|e| self.run_error("deleteWebhook", &e))
    }

    /// `setWebhook` with our URL and secret (webhook mode, at start).
    pub(crate) async fn set_webhook(
        &self,
        url: reqwest::Url,
        secret: &str,
    ) -> Result<(), ConnectorError> {
        self.bot
            .set_webhook(url)
            .secret_token(secret.to_owned())
            .await
            .map(|_| ())
            .map_err(|e| self.run_error("setWebhook", &e))
    }

    /// `{api_url}/file/bot{token}/{file_path}`; each `/`-separated part of the path is a
    /// segment of its own (teloxide would escape the slashes).
    fn file_url(&self, file_path: &str) -> Option<reqwest::Url> {
        let mut url = self.api_url.clone();
        {
            let mut segments = url.path_segments_mut().ok()?;
            segments.pop_if_empty();
            segments.push("file");
            segments.push(&format!("bot{}", self.bot.token()));
            segments.extend(file_path.split('/').filter(|s| !s.is_empty()));
        }
        Some(url)
    }

    /// Downloads `media` and stores it; on any failure (too big, `getFile` refused,
    /// download failed, store refused) keeps `tg-file:{file_id}` and logs why.
    pub(crate) async fn fetch_media(
        &self,
        files: &Arc<dyn FileStore>,
        media: &MediaRef,
    ) -> Attachment {
        match self.try_fetch(files, media).await {
            Ok(a) => a,
            Err(why) => {
                tracing::warn!(file_id = %media.file_id, name = %media.name, reason = %why, "telegram: media kept as a reference");
                Attachment {
                    name: media.name.clone(),
                    mime_type: media.mime_type.clone(),
                    size: media.size,
                    url_or_ref: file_ref(&media.file_id),
                }
            }
        }
    }

    async fn try_fetch(
        &self,
        files: &Arc<dyn FileStore>,
        media: &MediaRef,
    ) -> Result<Attachment, String> {
        let limit = self.max_file_bytes;
        let too_big = |n: u64| format!("{n} bytes is over max_file_bytes ({limit})");
        if let Some(size) = media.size.filter(|s| *s > limit) {
            return Err(too_big(size));
        }
        let file = self
            .bot
            .get_file(FileId(media.file_id.clone()))
            .await
            .map_err(|e| format!("getFile failed: {}", self.redact(&e.to_string())))?;
        if u64::from(file.meta.size) > limit && file.meta.size != u32::MAX {
            return Err(too_big(file.meta.size.into()));
        }
        let url = self
            .file_url(&file.path)
            .ok_or_else(|| "api_url cannot take a path".to_owned())?;
        let mut resp = self.bot.client().get(url).send().await.map_err(|e| {
            format!(
                "download failed: {}",
                self.redact(&e.without_url().to_string())
            )
        })?;
        if !resp.status().is_success() {
            return Err(format!("download answered {}", resp.status()));
        }
        let mut content = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| {
            format!(
                "download failed: {}",
                self.redact(&e.without_url().to_string())
            )
        })? {
            content.extend_from_slice(&chunk);
            if content.len() as u64 > limit {
                return Err(too_big(content.len() as u64));
            }
        }
        files
            .put(&media.name, &media.mime_type, content)
            .await
            .map_err(|e| format!("file store refused it: {e}"))
    }
}

/// 409: another `getUpdates` poller, or a webhook is set.
fn is_conflict(e: &ApiError) -> bool {
    matches!(
        e,
        ApiError::TerminatedByOtherGetUpdates | ApiError::CantGetUpdates
    ) || e.to_string().starts_with("Conflict")
}

/// A refusal worth retrying: Telegram's own server trouble, reported with `ok: false`.
fn is_transient(e: &ApiError) -> bool {
    let text = e.to_string();
    [
        "Internal Server Error",
        "Bad Gateway",
        "Gateway",
        "Service Unavailable",
        "Too Many Requests",
    ]
    .iter()
    .any(|p| text.contains(p))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn api(base: &str) -> Api {
        Api::new("123:SECRET-token", reqwest::Url::parse(base).unwrap(), 10).unwrap()
    }

    #[test]
    fn file_urls_keep_slashes_and_prefixes() {
        let a = api("http://127.0.0.1:8081");
        assert_eq!(
            a.file_url("photos/file_1.jpg").unwrap().as_str(),
            "http://127.0.0.1:8081/file/bot123:SECRET-token/photos/file_1.jpg"
        );
        let a = api("https://example.com/tg");
        assert_eq!(
            a.file_url("voice/f.oga").unwrap().as_str(),
            "https://example.com/tg/file/bot123:SECRET-token/voice/f.oga"
        );
    }

    #[test]
    fn redact_hides_the_token_and_cuts_long_text() {
        let a = api("http://127.0.0.1:1");
        assert_eq!(
            a.redact("error for url (http://h/bot123:SECRET-token/getMe)"),
            "error for url (http://h/bot***/getMe)"
        );
        assert_eq!(a.redact(&"x".repeat(400)).chars().count(), MAX_QUOTE + 1);
    }

    #[test]
    fn errors_are_classified() {
        let a = api("http://127.0.0.1:1");
        let e = a.run_error("getUpdates", &RequestError::Api(ApiError::InvalidToken));
        assert!(matches!(e, ConnectorError::Auth(_)), "{e}");
        let e = a.run_error(
            "getUpdates",
            &RequestError::Api(ApiError::TerminatedByOtherGetUpdates),
        );
        assert!(e.is_retryable());
        assert!(e.to_string().contains("409 conflict"), "{e}");
        assert!(is_transient(&ApiError::Unknown(
            "Internal Server Error".into()
        )));
        assert!(!is_transient(&ApiError::BotBlocked));
    }
}
