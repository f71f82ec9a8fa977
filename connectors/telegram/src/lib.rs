//! Kommutator connector for **Telegram bots** over the Bot API (HTTPS + JSON), through
//! teloxide-core's `Bot` and `Requester`. teloxide's dispatcher and webhook server are
//! not used: this crate answers 400 to malformed JSON and acknowledges an update only
//! once the hub took its event.
//!
//! # Modes
//!
//! - **`polling`** (default): `run` calls `deleteWebhook` once, then long-polls
//!   `getUpdates(offset, timeout = poll_timeout_secs)`. Each update is mapped, its media
//!   fetched, and the event handed to the hub; only then does the offset move past it
//!   (kept in the instance's state under `offset`, so a restart resumes there). Telegram
//!   forgets updates below the offset of the next call.
//! - **`webhook`**: the route `POST /` (mounted by the hub at `/hooks/<id>/`) takes one
//!   update per request. It checks the header `X-Telegram-Bot-Api-Secret-Token` in
//!   constant time (401 when missing or wrong), limits bodies to 1 MiB (413), answers 400
//!   to malformed JSON or a body that is not an update, and 200 once the hub took the
//!   event (503 while shutting down, so Telegram retries). Nothing reaches the hub on an
//!   error. When `webhook_url` is set, `run` calls `setWebhook(url, secret_token)` at
//!   start; otherwise register the webhook yourself. `run` then only sends outbound.
//!
//! In both modes `run` is long-running: it sends the hub's outbound messages.
//!
//! Errors that end `run`: 401 (bad token) → `Auth` (not retried); 409 (another poller
//! or a webhook is set) → a retryable error saying so; `retry_after` → `RateLimited`;
//! network → `Connect`. The token never appears in logs or errors (replaced by `***`).
//!
//! # Mapping and external ids
//!
//! | update | event | `external_id` |
//! |---|---|---|
//! | `message` in a private chat, group or supergroup | `message` | `{chat_id}:{message_id}` |
//! | `edited_message` | `message` with `edit_of = {chat_id}:{message_id}` | `{chat_id}:{message_id}:edit:{edit_date}` |
//! | anything else (callback queries, member updates, channel posts, polls, service messages…) | `unknown` | `update:{update_id}` |
//!
//! `thread_id` is the chat id. The sender is the Telegram user id (`telegram` identity),
//! named by first and last name; the @username stays in `raw` (the update as received).
//! Text is `text` or `caption`; photos (largest size), documents, voice, audio, video,
//! video notes and animations become attachments; stickers are the text
//! `[sticker {emoji}]`, locations `[location lat, lon]`, venues `[venue title, address
//! (lat, lon)]`, contacts `[contact name phone]`. A contact the user shares with their
//! own `user_id` adds a `phone` identity to the sender: it links the chat to that number.
//! A reply sets `reply_to_external_id` to `{chat_id}:{replied message_id}`.
//!
//! An `update_id` handed over recently (the last 4096) is skipped without sending: a
//! webhook redelivery or a replayed poll.
//!
//! **Media**: `getFile`, then `GET {api_url}/file/bot{token}/{file_path}`, stored with
//! the hub's `FileStore` when at most `max_file_bytes` (default 20 MiB, the Bot API's
//! download limit). A bigger file, or any failure, keeps an attachment whose
//! `url_or_ref` is `tg-file:{file_id}`, with a WARN line saying why.
//!
//! **Outbound**: `thread_id` is the chat id. Text goes with `sendMessage` (split at 4096
//! characters), replying (`reply_parameters`) when `reply_to_external_id` is
//! `{chat}:{msg}` of the same chat; attachments follow, a file of the hub's store
//! uploaded (multipart) and an http(s) URL passed by URL, as `sendPhoto` for JPEG, PNG
//! and WebP and `sendDocument` otherwise. The ack carries `{chat_id}:{message_id}` of the
//! first message sent. 400/403 refusals ("bot was blocked by the user", "chat not
//! found") → `outbound_failed` with Telegram's description; 429 waits `retry_after` and
//! retries; network errors and Telegram's 5xx are retried with backoff (5 tries), then
//! `run` ends with a retryable error and the hub hands the message over again.
//!
//! # Config
//!
//! ```toml
//! [connectors.support_bot]
//! type = "telegram"
//! token = "123456789:AA...your-bot-token"
//! # api_url = "https://api.telegram.org"   # or a local Bot API server; no trailing slash needed
//! mode = "polling"                          # or "webhook"
//! poll_timeout_secs = 10                    # 1..=15, under the client's 17 s timeout
//! # webhook mode:
//! # webhook_secret = "a-random-secret_1"    # required: 1-256 of A-Z a-z 0-9 _ -
//! # webhook_url = "https://hub.example.com/hooks/support_bot/"  # optional: setWebhook at start
//! max_file_bytes = 20971520
//! ```
//!
//! # Limitations
//!
//! - An outbound message with text and attachments is several Bot API calls; when a
//!   later one fails transiently, the hub's retry sends the earlier parts again.
//! - A local Bot API server in `--local` mode returns absolute `file_path`s, which are
//!   not downloadable over HTTP: such media are kept as `tg-file:` references.
//! - The duplicate filter is in memory; after a restart the hub's idempotent
//!   `(connector_id, external_id)` key catches repeats.
//!
//! # Fixtures
//!
//! `tests/fixtures/` holds `Update` JSON written for this crate from the shapes the Bot
//! API documentation gives (<https://core.telegram.org/bots/api#update> and the types it
//! links); provenance in the README there. No captured traffic was used.

mod api;
pub mod parse;
mod session;
mod webhook;

use kommutator_sdk::{Connector, ConnectorContext, ConnectorError};
use serde::Deserialize;

pub use kommutator_sdk::Secret;
pub use parse::{file_ref, parse_update, parse_update_bytes, MediaRef, ParseError, ParsedUpdate};
pub use session::OFFSET_KEY;
pub use webhook::{MAX_BODY_BYTES, SECRET_HEADER};

/// The default Bot API base URL.
pub const DEFAULT_API_URL: &str = "https://api.telegram.org";

/// The default and largest useful `max_file_bytes`: the Bot API's download limit (20 MB).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 20 * 1024 * 1024;

/// How updates arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `getUpdates` long polling by `run`.
    #[default]
    Polling,
    /// Telegram posts updates to the route `POST /`.
    Webhook,
}

/// The instance's config table (see the crate docs for an example).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The bot token from @BotFather.
    pub token: Secret,
    /// The Bot API base URL (default `https://api.telegram.org`).
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// `polling` (default) or `webhook`.
    #[serde(default)]
    pub mode: Mode,
    /// The long-poll timeout in seconds, 1 to 15 (default 10).
    #[serde(default = "default_poll_timeout")]
    pub poll_timeout_secs: u32,
    /// The webhook's secret token (webhook mode, required): 1 to 256 of `A-Z a-z 0-9 _ -`.
    #[serde(default)]
    pub webhook_secret: Option<Secret>,
    /// The public URL of the webhook route; when set, `run` registers it with
    /// `setWebhook` at start (webhook mode only).
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// The largest media file downloaded and stored, in bytes (default 20 MiB).
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
}

fn default_api_url() -> String {
    DEFAULT_API_URL.to_owned()
}

fn default_poll_timeout() -> u32 {
    10
}

fn default_max_file_bytes() -> u64 {
    DEFAULT_MAX_FILE_BYTES
}

/// The connector: long polling or a webhook route, and outbound sending.
pub struct Telegram {
    api: api::Api,
    mode: Mode,
    poll_timeout_secs: u32,
    webhook_secret: Option<Secret>,
    webhook_url: Option<reqwest::Url>,
    recent: session::Recent,
}

impl std::fmt::Debug for Telegram {
    // By hand: teloxide's `Bot` prints its token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telegram")
            .field("mode", &self.mode)
            .field("poll_timeout_secs", &self.poll_timeout_secs)
            .field(
                "webhook_url",
                &self.webhook_url.as_ref().map(reqwest::Url::as_str),
            )
            .finish_non_exhaustive()
    }
}

fn check_token(token: &str) -> Result<(), ConnectorError> {
    let valid = token.split_once(':').is_some_and(|(id, key)| {
        !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_digit())
            && !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    });
    if valid {
        Ok(())
    } else {
        Err(ConnectorError::config(
            "token",
            "must look like a Bot API token: digits, `:`, then letters, digits, `_` or `-`",
        ))
    }
}

fn parse_url(field: &str, s: &str) -> Result<reqwest::Url, ConnectorError> {
    let mut url = reqwest::Url::parse(s.trim())
        .map_err(|e| ConnectorError::config(field, format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
        return Err(ConnectorError::config(field, "must be an http(s) URL"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(ConnectorError::config(
            field,
            "must have no query, fragment or user info",
        ));
    }
    if field == "api_url" {
        // teloxide appends `/bot{token}/…` to the path: a trailing slash on a prefixed
        // base would give `//bot…`.
        let path = url.path().trim_end_matches('/').to_owned();
        url.set_path(&path);
    }
    Ok(url)
}

impl Connector for Telegram {
    const KIND: &'static str = "telegram";
    type Config = Config;

    fn new(config: Config) -> Result<Self, ConnectorError> {
        check_token(config.token.expose())?;
        let api_url = parse_url("api_url", &config.api_url)?;
        if !(1..=15).contains(&config.poll_timeout_secs) {
            return Err(ConnectorError::config(
                "poll_timeout_secs",
                "must be between 1 and 15 (the http client gives up after 17 s)",
            ));
        }
        let max = kommutator_sdk::store::MAX_FILE_SIZE as u64;
        if config.max_file_bytes == 0 || config.max_file_bytes > max {
            return Err(ConnectorError::config(
                "max_file_bytes",
                format!("must be between 1 and {max}"),
            ));
        }
        if let Some(s) = &config.webhook_secret {
            let s = s.expose();
            if s.is_empty()
                || s.len() > 256
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(ConnectorError::config(
                    "webhook_secret",
                    "must be 1 to 256 characters of A-Z a-z 0-9 _ -",
                ));
            }
        }
        let webhook_url = config
            .webhook_url
            .as_deref()
            .map(|u| parse_url("webhook_url", u))
            .transpose()?;
        match config.mode {
            Mode::Webhook if config.webhook_secret.is_none() => {
                return Err(ConnectorError::config(
                    "webhook_secret",
                    "is required in webhook mode",
                ))
            }
            Mode::Polling if config.webhook_secret.is_some() => {
                return Err(ConnectorError::config(
                    "webhook_secret",
                    "is only used in webhook mode (set mode = \"webhook\")",
                ))
            }
            Mode::Polling if webhook_url.is_some() => {
                return Err(ConnectorError::config(
                    "webhook_url",
                    "is only used in webhook mode (set mode = \"webhook\")",
                ))
            }
            _ => {}
        }
        Ok(Self {
            api: api::Api::new(config.token.expose(), api_url, config.max_file_bytes)?,
            mode: config.mode,
            poll_timeout_secs: config.poll_timeout_secs,
            webhook_secret: config.webhook_secret,
            webhook_url,
            recent: session::Recent::new(),
        })
    }

    fn routes(&self, ctx: &ConnectorContext) -> Option<axum::Router> {
        let secret = self
            .webhook_secret
            .clone()
            .filter(|_| self.mode == Mode::Webhook)?;
        Some(webhook::router(webhook::App {
            api: self.api.clone(),
            sender: ctx.sender(),
            secret,
            recent: self.recent.clone(),
        }))
    }

    async fn run(self, mut ctx: ConnectorContext) -> Result<(), ConnectorError> {
        let shutdown = ctx.shutdown().clone();
        let api = &self.api;
        let setup = async {
            match (self.mode, &self.webhook_url, &self.webhook_secret) {
                (Mode::Polling, _, _) => api.delete_webhook().await,
                (Mode::Webhook, Some(url), Some(secret)) => {
                    api.set_webhook(url.clone(), secret.expose()).await
                }
                (Mode::Webhook, _, _) => Ok(()),
            }
        };
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(()),
            r = setup => r?,
        }
        let sender = ctx.sender();
        let state = ctx.state().clone();
        let polling = async {
            match self.mode {
                Mode::Polling => {
                    session::poll_loop(
                        api,
                        sender,
                        state,
                        self.recent.clone(),
                        self.poll_timeout_secs,
                    )
                    .await
                }
                Mode::Webhook => std::future::pending().await,
            }
        };
        let result = tokio::select! {
            biased;
            () = shutdown.cancelled() => Ok(()),
            r = polling => r,
            r = session::outbound_loop(api, &mut ctx) => r,
        };
        if shutdown.is_cancelled() {
            return Ok(());
        }
        result
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    const TOKEN: &str = "123456:TEST-token_abc";

    fn config(v: Value) -> Config {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn defaults_and_secrets_hidden() {
        let cfg = config(json!({"token": TOKEN}));
        assert_eq!(cfg.api_url, DEFAULT_API_URL);
        assert_eq!(cfg.mode, Mode::Polling);
        assert_eq!(cfg.poll_timeout_secs, 10);
        assert_eq!(cfg.max_file_bytes, 20 * 1024 * 1024);
        assert!(!format!("{cfg:?}").contains("TEST-token"));
        let conn = Telegram::new(cfg).unwrap();
        assert!(!format!("{conn:?}").contains("TEST-token"), "{conn:?}");

        let cfg = config(json!({"token": TOKEN, "mode": "webhook", "webhook_secret": "s3cr3t_-X"}));
        assert!(!format!("{cfg:?}").contains("s3cr3t"));
        Telegram::new(cfg).unwrap();
        assert!(serde_json::from_value::<Config>(json!({"token": TOKEN, "extra": 1})).is_err());
        assert!(serde_json::from_value::<Config>(json!({"token": TOKEN, "mode": "push"})).is_err());
    }

    #[test]
    fn new_validates_each_field() {
        let cases = [
            (
                json!({"token": "nope"}),
                "token",
                "must look like a Bot API token: digits, `:`, then letters, digits, `_` or `-`",
            ),
            (
                json!({"token": "12:ab cd"}),
                "token",
                "must look like a Bot API token: digits, `:`, then letters, digits, `_` or `-`",
            ),
            (
                json!({"token": TOKEN, "api_url": "ftp://x"}),
                "api_url",
                "must be an http(s) URL",
            ),
            (
                json!({"token": TOKEN, "api_url": "http://x/?a=1"}),
                "api_url",
                "must have no query, fragment or user info",
            ),
            (
                json!({"token": TOKEN, "poll_timeout_secs": 17}),
                "poll_timeout_secs",
                "must be between 1 and 15 (the http client gives up after 17 s)",
            ),
            (
                json!({"token": TOKEN, "poll_timeout_secs": 0}),
                "poll_timeout_secs",
                "must be between 1 and 15 (the http client gives up after 17 s)",
            ),
            (
                json!({"token": TOKEN, "max_file_bytes": 0}),
                "max_file_bytes",
                "must be between 1 and 26214400",
            ),
            (
                json!({"token": TOKEN, "mode": "webhook"}),
                "webhook_secret",
                "is required in webhook mode",
            ),
            (
                json!({"token": TOKEN, "mode": "webhook", "webhook_secret": "bad secret"}),
                "webhook_secret",
                "must be 1 to 256 characters of A-Z a-z 0-9 _ -",
            ),
            (
                json!({"token": TOKEN, "mode": "webhook", "webhook_secret": ""}),
                "webhook_secret",
                "must be 1 to 256 characters of A-Z a-z 0-9 _ -",
            ),
            (
                json!({"token": TOKEN, "mode": "webhook", "webhook_secret": "a".repeat(257)}),
                "webhook_secret",
                "must be 1 to 256 characters of A-Z a-z 0-9 _ -",
            ),
            (
                json!({"token": TOKEN, "webhook_secret": "abc"}),
                "webhook_secret",
                "is only used in webhook mode (set mode = \"webhook\")",
            ),
            (
                json!({"token": TOKEN, "webhook_url": "https://h/x"}),
                "webhook_url",
                "is only used in webhook mode (set mode = \"webhook\")",
            ),
            (
                json!({"token": TOKEN, "mode": "webhook", "webhook_secret": "abc", "webhook_url": "nope"}),
                "webhook_url",
                "not a URL: relative URL without a base",
            ),
        ];
        for (v, field, message) in cases {
            let err = Telegram::new(config(v.clone())).unwrap_err();
            assert!(!err.is_retryable());
            assert_eq!(
                err.to_string(),
                format!("invalid config field `{field}`: {message}"),
                "{v}"
            );
            assert!(!err.to_string().contains("TEST-token"));
        }
    }

    #[test]
    fn api_url_loses_its_trailing_slash() {
        assert_eq!(
            parse_url("api_url", "http://127.0.0.1:8081/tg/")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:8081/tg"
        );
        assert_eq!(
            parse_url("api_url", "http://127.0.0.1:8081/")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:8081/"
        );
    }

    #[test]
    fn routes_only_in_webhook_mode() {
        let (ctx, _hub) = ConnectorContext::for_test("tg");
        let polling = Telegram::new(config(json!({"token": TOKEN}))).unwrap();
        assert!(polling.routes(&ctx).is_none());
        let hook = Telegram::new(config(
            json!({"token": TOKEN, "mode": "webhook", "webhook_secret": "abc"}),
        ))
        .unwrap();
        assert!(hook.routes(&ctx).is_some());
    }
}
