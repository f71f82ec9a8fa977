//! Kommutator connector for the **WhatsApp Business Cloud API** (Meta's Graph API): one
//! instance per business phone number, receiving its webhooks and sending its replies.
//!
//! # Protocol
//!
//! - **Webhook verification.** When the callback URL is saved in the Meta app, Meta sends
//!   `GET {url}?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`. The connector
//!   answers 200 with the raw `hub.challenge` as `text/plain` when the mode is `subscribe`
//!   and the token equals `verify_token` (compared in constant time), else 403 with a JSON
//!   `{"error": "…"}` saying which.
//! - **Notifications.** `POST {url}` with a JSON body (at most 3 MiB, else 413) signed in
//!   `X-Hub-Signature-256: sha256=<hex>`, the HMAC-SHA256 of the raw body keyed with the
//!   app secret. The signature is checked on the raw bytes before parsing, in constant
//!   time: missing or wrong → 401. Malformed JSON or a notification without the fields
//!   that identify its items → 400. Nothing reaches the hub on an error. Changes for
//!   another `phone_number_id` are skipped (logged) and answered 200. Otherwise every item
//!   is handed to the hub, and only then is the answer 200 (`{}`); 503 when the hub is
//!   shutting down, so Meta retries.
//! - **Sending.** `POST {graph_url}/{api_version}/{phone_number_id}/messages` with
//!   `Authorization: Bearer {access_token}`: text messages (`context.message_id` when the
//!   reply quotes a wamid), and one media message per attachment: an http(s) URL is passed
//!   as `link`, a file of the hub's store is first uploaded (`POST
//!   …/{phone_number_id}/media`, multipart `messaging_product=whatsapp`, `type`, `file`)
//!   and sent by `id`. The type follows the MIME type: JPEG/PNG → `image`, MP4/3GPP →
//!   `video`, `audio/*` → `audio`, else `document` (with its file name). A text and a lone
//!   image, video or document go as one message with a caption; otherwise the text goes
//!   first (split at 4096 characters), then each attachment. The ack carries the wamid of
//!   the first message (`messages[0].id`).
//! - **Send errors** (`{"error": {"code", "message", "error_subcode", "error_data"}}`):
//!   4xx such as 131047 (outside the 24-hour window), 131026 (undeliverable), 100 (invalid
//!   parameter), 190 (access token; also logged at ERROR) → `outbound_failed` with the
//!   message. 429, codes 4, 80007, 130429, 131048, 131056 (rate limits), 1, 2, 131000,
//!   131016 and 5xx or network errors → retried up to 5 times with exponential backoff
//!   (1 s doubling, at most 60 s, or the `Retry-After`), then `run` returns `Connect` or
//!   `RateLimited` and the hub hands the message over again.
//!
//! # Mapping and external ids
//!
//! From `entry[].changes[]` with `field = "messages"` and `value.metadata.phone_number_id`
//! equal to the configured one:
//!
//! | item | event | `external_id` |
//! |---|---|---|
//! | `value.messages[]`: `text`, `image`, `video`, `audio`, `voice`, `document`, `sticker`, `location`, `contacts`, `interactive` (`button_reply`, `list_reply`), `button` | `Message` | the wamid (`id`) |
//! | `value.messages[]`: `reaction`, `unsupported`, `order`, `system`, other `interactive`, … | `Unknown` | the wamid |
//! | `value.statuses[]`: `sent`, `delivered`, `read`, `failed` | `DeliveryStatus` of the outbound wamid (`id`); `failed` with `errors[0]` title/message, details and code | `{wamid}:{status}` |
//! | `value.statuses[]`, another status | `Unknown` | `{wamid}:{status}` |
//! | another `field` (`account_update`, template and quality updates, …), or a `messages` change with neither messages nor statuses | `Unknown` | `change:{32 hex of SHA-256 of the change's JSON}` |
//! | a notification whose `object` is not `whatsapp_business_account` | `Unknown` | `webhook:{32 hex of SHA-256 of the body's JSON}` |
//!
//! A message's `thread_id` is the sender's wa_id (`from`); the sender has the identities
//! `whatsapp` = wa_id and `phone` = `+{wa_id}`, and the display name
//! `contacts[].profile.name`. `context.id` → `reply_to_external_id`; `occurred_at` is
//! `timestamp`. Text: `text.body`; the caption of a medium; `📍 {name}, {address} ({lat},
//! {lon})` for a location; one `👤 {name}: {phones}` line per shared contact; the title of
//! an interactive reply or the text of a `button` (ids stay in `raw`). Media are looked up
//! (`GET {graph_url}/{api_version}/{media id}` → `url`, `mime_type`, `file_size`),
//! downloaded with the bearer token and stored with the hub's `FileStore` when at most
//! `max_file_bytes`; otherwise, or on failure, the attachment keeps
//! `url_or_ref = "wa-media:{media id}"` and a WARN line says why. `raw` is the item with
//! the `metadata` (and `contacts`) of its change; no credential ever goes in it.
//!
//! A webhook redelivered by Meta yields the same keys, so the hub stores it once.
//!
//! # Config
//!
//! ```toml
//! [connectors.wa_sales]
//! type = "whatsapp"
//! phone_number_id = "106540352242922"
//! access_token = "EAAG…"                 # a system-user token with whatsapp_business_messaging
//! app_secret = "app-secret"              # signs the webhooks (X-Hub-Signature-256)
//! verify_token = "a-random-string"       # the token typed into the Meta app's webhook form
//! # graph_url = "https://graph.facebook.com"
//! # api_version = "v21.0"
//! # max_file_bytes = 20971520            # 20 MiB, at most 25 MiB
//! ```
//!
//! The callback URL to give Meta is `https://{hub}/hooks/{id}/` (here `/hooks/wa_sales/`),
//! subscribed to the `messages` field. `run` is long-running: it sends the replies.
//!
//! # Limitations
//!
//! - Media are fetched while the webhook waits, so a large file delays the 200; Meta
//!   retries a webhook that is not answered in time, which the keys make harmless.
//! - Only the first part of a message split in several (text, then attachments) is
//!   acked; delivery statuses of the other parts refer to wamids the hub does not know.
//!   A part refused after others were sent fails the whole message, saying so.
//! - Templates (needed outside the 24-hour window) are not sent: such a reply fails with
//!   131047 and the operator sees it.
//!
//! # Fixtures
//!
//! `tests/fixtures/` holds notifications written for this crate from the shapes in Meta's
//! webhook reference for WhatsApp Cloud API messages and statuses (and the API's send,
//! media and error answers); no captured traffic was available. Provenance per file in
//! the README there.

mod api;
mod http;
mod parse;
mod send;

use std::time::Duration;

use kommutator_sdk::{store::MAX_FILE_SIZE, Connector, ConnectorContext, ConnectorError};
use serde::Deserialize;

pub use api::{
    media_message, parse_graph_error, parse_media_info, parse_send_response, parse_upload_response,
    text_message, ApiError, MediaInfo, MediaKind, MediaSource, TOKEN_ERROR_CODE,
};
pub use kommutator_sdk::Secret;
pub use parse::{
    hub_signature, parse_webhook, verify_signature, Mapped, MediaRef, Notification, ParseError,
    SignatureError, MAX_BODY_BYTES, MEDIA_REF_PREFIX,
};
pub use send::{MAX_CAPTION_CHARS, MAX_TEXT_CHARS};

/// The default Graph API base URL.
pub const DEFAULT_GRAPH_URL: &str = "https://graph.facebook.com";
/// The default Graph API version.
pub const DEFAULT_API_VERSION: &str = "v21.0";
/// The default largest medium downloaded and stored, in bytes (20 MiB).
pub const DEFAULT_MAX_FILE_BYTES: usize = 20 * 1024 * 1024;

/// The instance's config table (see the crate docs for an example).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The id of the business phone number (digits), as the Meta app shows it.
    pub phone_number_id: String,
    /// The access token the Graph API calls are made with.
    pub access_token: Secret,
    /// The app secret that signs the webhooks.
    pub app_secret: Secret,
    /// The token Meta sends back in the verification handshake.
    pub verify_token: Secret,
    /// The Graph API base URL (tests point it at 127.0.0.1).
    #[serde(default = "default_graph_url")]
    pub graph_url: String,
    /// The Graph API version, like `v21.0`.
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// The largest medium downloaded and stored, in bytes (1 to 25 MiB).
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: usize,
}

fn default_graph_url() -> String {
    DEFAULT_GRAPH_URL.to_owned()
}

fn default_api_version() -> String {
    DEFAULT_API_VERSION.to_owned()
}

fn default_max_file_bytes() -> usize {
    DEFAULT_MAX_FILE_BYTES
}

/// The connector: webhook routes, and `run` sending replies until shutdown.
#[derive(Debug)]
pub struct WhatsApp {
    phone_number_id: String,
    app_secret: Secret,
    verify_token: Secret,
    graph: api::Graph,
    max_file_bytes: usize,
    retry: send::Retry,
}

fn check_secret(field: &str, secret: &Secret) -> Result<(), ConnectorError> {
    let s = secret.expose();
    if s.is_empty() {
        return Err(ConnectorError::config(field, "must not be empty"));
    }
    if s.trim() != s || s.chars().any(char::is_control) {
        return Err(ConnectorError::config(
            field,
            "must not have surrounding whitespace or control characters",
        ));
    }
    Ok(())
}

fn check_api_version(v: &str) -> bool {
    let Some(rest) = v.strip_prefix('v') else {
        return false;
    };
    let (major, minor) = rest.split_once('.').unwrap_or((rest, "0"));
    let digits = |s: &str| !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit());
    digits(major) && digits(minor)
}

/// `graph_url` without its trailing `/`, when it is a plain http(s) base URL.
fn check_graph_url(url: &str) -> Result<String, ConnectorError> {
    let bad = |m: &str| ConnectorError::config("graph_url", m);
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(&format!("not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("must be an http or https URL"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("must have a host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad("must not have a query or fragment"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad("must not hold credentials"));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

impl WhatsApp {
    /// Sets the first backoff delay of retried requests (default 1 s, doubling up to
    /// 60 s). For tests that exercise retries without waiting.
    #[must_use]
    pub fn with_retry_base(mut self, base: Duration) -> Self {
        self.retry.base = base;
        self
    }
}

impl Connector for WhatsApp {
    const KIND: &'static str = "whatsapp";
    type Config = Config;

    fn new(config: Config) -> Result<Self, ConnectorError> {
        let pnid = config.phone_number_id.trim();
        if pnid.is_empty() || pnid.len() > 32 || !pnid.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ConnectorError::config(
                "phone_number_id",
                "must be the numeric id of the phone number (digits only)",
            ));
        }
        check_secret("access_token", &config.access_token)?;
        check_secret("app_secret", &config.app_secret)?;
        check_secret("verify_token", &config.verify_token)?;
        let graph_url = check_graph_url(config.graph_url.trim())?;
        if !check_api_version(&config.api_version) {
            return Err(ConnectorError::config(
                "api_version",
                "must look like `v21.0`",
            ));
        }
        if config.max_file_bytes == 0 || config.max_file_bytes > MAX_FILE_SIZE {
            return Err(ConnectorError::config(
                "max_file_bytes",
                format!("must be between 1 and {MAX_FILE_SIZE}"),
            ));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .user_agent(concat!("kommutator-whatsapp/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConnectorError::other(format!("cannot build the http client: {e}")))?;
        let graph = api::Graph::new(
            http,
            format!("{graph_url}/{}", config.api_version),
            config.access_token,
            pnid.to_owned(),
        );
        Ok(Self {
            phone_number_id: pnid.to_owned(),
            app_secret: config.app_secret,
            verify_token: config.verify_token,
            graph,
            max_file_bytes: config.max_file_bytes,
            retry: send::Retry {
                attempts: 5,
                base: Duration::from_secs(1),
                max: Duration::from_secs(60),
            },
        })
    }

    fn routes(&self, ctx: &ConnectorContext) -> Option<axum::Router> {
        Some(http::router(http::App {
            sender: ctx.sender(),
            phone_number_id: self.phone_number_id.clone(),
            app_secret: self.app_secret.clone(),
            verify_token: http::digest(self.verify_token.expose()),
            graph: self.graph.clone(),
            max_file_bytes: self.max_file_bytes,
        }))
    }

    async fn run(self, ctx: ConnectorContext) -> Result<(), ConnectorError> {
        send::run(self.graph, self.retry, ctx).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    fn config(v: Value) -> Config {
        serde_json::from_value(v).unwrap()
    }

    fn base() -> Value {
        json!({
            "phone_number_id": "106540352242922",
            "access_token": "EAAG-secret-token",
            "app_secret": "app-secret-value",
            "verify_token": "verify-secret-value"
        })
    }

    fn with(k: &str, v: Value) -> Value {
        let mut b = base();
        b[k] = v;
        b
    }

    #[test]
    fn config_defaults_hide_secrets_and_reject_unknown_fields() {
        let cfg = config(base());
        assert_eq!(cfg.graph_url, "https://graph.facebook.com");
        assert_eq!(cfg.api_version, "v21.0");
        assert_eq!(cfg.max_file_bytes, 20 * 1024 * 1024);
        let debug = format!("{cfg:?}");
        let conn = WhatsApp::new(cfg).unwrap();
        let conn_debug = format!("{conn:?}");
        for secret in [
            "EAAG-secret-token",
            "app-secret-value",
            "verify-secret-value",
        ] {
            assert!(!debug.contains(secret), "{debug}");
            assert!(!conn_debug.contains(secret), "{conn_debug}");
        }
        assert!(serde_json::from_value::<Config>(with("channel", json!("x"))).is_err());
        let mut missing = base();
        missing.as_object_mut().unwrap().remove("app_secret");
        assert!(serde_json::from_value::<Config>(missing).is_err());
        assert_eq!(WhatsApp::KIND, "whatsapp");
    }

    #[test]
    fn new_validates_each_field() {
        let cases = [
            (
                with("phone_number_id", json!("+1555")),
                "phone_number_id",
                "must be the numeric id of the phone number (digits only)",
            ),
            (
                with("access_token", json!("")),
                "access_token",
                "must not be empty",
            ),
            (
                with("app_secret", json!(" x")),
                "app_secret",
                "must not have surrounding whitespace or control characters",
            ),
            (
                with("verify_token", json!("")),
                "verify_token",
                "must not be empty",
            ),
            (
                with("graph_url", json!("ftp://x")),
                "graph_url",
                "must be an http or https URL",
            ),
            (
                with("graph_url", json!("https://u:p@graph.example")),
                "graph_url",
                "must not hold credentials",
            ),
            (
                with("graph_url", json!("https://graph.example/?a=1")),
                "graph_url",
                "must not have a query or fragment",
            ),
            (
                with("api_version", json!("21.0")),
                "api_version",
                "must look like `v21.0`",
            ),
            (
                with("api_version", json!("v21.x")),
                "api_version",
                "must look like `v21.0`",
            ),
            (
                with("max_file_bytes", json!(0)),
                "max_file_bytes",
                "must be between 1 and 26214400",
            ),
        ];
        for (v, field, message) in cases {
            let err = WhatsApp::new(config(v.clone())).unwrap_err();
            assert!(!err.is_retryable());
            assert_eq!(
                err.to_string(),
                format!("invalid config field `{field}`: {message}"),
                "{v}"
            );
        }
        assert!(WhatsApp::new(config(with("graph_url", json!("http://127.0.0.1:9/")))).is_ok());
        assert!(WhatsApp::new(config(with("api_version", json!("v19")))).is_ok());
    }

    #[tokio::test]
    async fn run_returns_on_shutdown() {
        let conn = WhatsApp::new(config(base())).unwrap();
        let (ctx, hub) = ConnectorContext::for_test("wa");
        assert!(conn.routes(&ctx).is_some());
        let task = tokio::spawn(conn.run(ctx));
        hub.shutdown();
        task.await.unwrap().unwrap();
    }
}
