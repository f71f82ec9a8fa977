//! Kommutator connector for **VK community messages**: what users write to a VK community
//! (group), received through the **Callback API** (VK posts events to the hub) or the
//! **Bots Long Poll API** (the connector asks), and the operators' answers sent with
//! `messages.send` using a community access token.
//!
//! # Protocol
//!
//! - **Callback API** (`mode = "callback"`): VK POSTs JSON `{type, group_id, event_id, v,
//!   object, secret}` to the route `POST /` (mounted by the hub at `/hooks/<id>/`). A
//!   `confirmation` request is answered with the plain confirmation string VK shows in the
//!   community settings; every other event with the plain body `ok`, only once the event
//!   was handed to the hub. Errors: 413 (body over 1 MiB), 400 (malformed JSON, missing
//!   `group_id`, a message without its ids), 403 `wrong group_id`, 403 `bad secret` (when
//!   `secret` is configured it is compared in constant time; nothing reaches the hub), 503
//!   while the hub shuts down (VK retries).
//! - **Bots Long Poll** (`mode = "long_poll"`): `groups.getLongPollServer(group_id)` gives
//!   `{server, key, ts}`; then `GET {server}?act=a_check&key=…&ts=…&wait=…` in a loop.
//!   `failed: 1` continues with the returned `ts`, `2` renews the key, `3` renews key and
//!   `ts`, `4` ends `run` with a config error on `api_version`. The cursor is saved in the
//!   instance state (`long_poll_ts` = `{group_id}:{ts}`) only after every event before it
//!   was handed over, so a restart resumes there. Network failures and VK errors 6/9/10
//!   are retried with backoff; error 5 (authorization failed) ends `run` with `Auth`.
//! - **Outbound**: `messages.send` (form-encoded POST: `peer_id`, `message`, `random_id`,
//!   `attachment`, `reply_to` or `forward`, `v`, `access_token`). `random_id` is derived
//!   from the connector id and `OutboundMessage::id` (FNV-1a into 1..=i32::MAX), so a
//!   message handed over again is dropped by VK rather than delivered twice. Hub files
//!   are uploaded as documents (`docs.getMessagesUploadServer(type=doc, peer_id)` → POST
//!   multipart `file` → `docs.save` → `doc{owner_id}_{id}`); http(s) URLs go in the text,
//!   VK taking no attachment by URL. VK errors 900 (blacklist), 901 (no permission to
//!   write), 902 (privacy), 7, 100 and other non-transient codes become `outbound_failed`
//!   with VK's text; 1/6/9/10/29 and network failures are retried with backoff; 5 ends
//!   `run` with `Auth`. The access token is sent in the request body, never in a URL, a log
//!   line or `raw`.
//!
//! # Mapping and external ids
//!
//! | VK event | hub event | `external_id` |
//! |---|---|---|
//! | `message_new` | `Message`: `thread_id` = `peer_id`, sender `vk` = `from_id`, text, attachments, `reply_to_external_id` from `reply_message` (`{peer_id}:id:{id}` for a community message with an id, as our acks name them, else `{peer_id}:{conversation_message_id}`) | `{peer_id}:{conversation_message_id}` |
//! | `message_edit` of a user's message | `Message` with `edit_of` = `{peer_id}:{conversation_message_id}` | `{peer_id}:{conversation_message_id}:edit:{update_time or date}` |
//! | `message_edit` of a community message (`out: 1`) | `Unknown` | `event:{event_id}` |
//! | `message_reply` whose `random_id` is one of our sends | `DeliveryStatus` `delivered` of the acked id | `{their_id}:delivered` |
//! | `message_reply` otherwise | `Unknown` ("sent by the community outside the hub") | `event:{event_id}` |
//! | any other type | `Unknown` | `event:{event_id}` |
//! | our send accepted / refused | `outbound_ack` / `outbound_failed` | built by the SDK |
//!
//! Group chats give `id: 0`, so a message is never keyed by `message.id`. The ack's
//! `their_id` is `{peer_id}:{conversation_message_id}` when VK answers it (`peer_ids`
//! form), else `{peer_id}:id:{message_id}` (the `peer_id` form this connector uses), else
//! `{peer_id}:random:{random_id}` (group chats answer 0). An echo arriving before the
//! API's answer is keyed by the same rule from its `id`. An `event_id` handed over recently (the last 4096) is
//! skipped without a second event, in both modes. `occurred_at` is the message's `date`
//! (`update_time` for edits). `raw` is the event as received, without `secret`.
//!
//! Attachments: `photo` → its largest size's `url`, `doc` → `url`, `audio_message` →
//! `link_ogg` (else `link_mp3`); each downloaded and stored with the hub's file store when
//! at most `max_file_bytes`, else (or when the download fails, logged) kept with its URL
//! as `url_or_ref`. Other kinds (sticker, video, wall, …) are kept as the reference
//! `vk:{type}{owner_id}_{id}`.
//!
//! # Config
//!
//! ```toml
//! [connectors.vk_shop]
//! type = "vk"
//! group_id = 123456789
//! access_token = "vk1.a.community-token"      # community token with messages (+ docs)
//! # api_url = "https://api.vk.com/method"     # default
//! # api_version = "5.199"                     # default
//! mode = "callback"                           # or "long_poll"; default callback
//! confirmation = "1a2b3c4d"                   # required in callback mode
//! secret = "a-long-random-secret-key"         # optional, recommended
//! # wait_secs = 25                            # long poll only, 1..=90
//! # max_file_bytes = 20971520                 # 20 MB default; 0 never downloads
//! ```
//!
//! In callback mode `routes` gives `POST /` and `run` serves outbound until shutdown; in
//! long-poll mode there are no routes and `run` polls and serves outbound. Either way
//! `run` is long-running.
//!
//! # Limitations
//!
//! - Our `random_id`s are remembered in memory (the last 4096) to recognise the echo of
//!   our own sends; after a restart a late echo of an earlier send becomes `Unknown`.
//! - In callback mode files are fetched before `ok` is answered; a slow download delays
//!   the answer and VK may retry (the retry is then skipped by `event_id`).
//! - `message_read`, typing and other events are `Unknown`; no read receipts yet.
//!
//! # Fixtures
//!
//! `tests/fixtures/` holds events written for this crate from the shapes in VK's
//! documentation (dev.vk.com, Callback API and Bots Long Poll pages) and the
//! VKCOM/vk-api-schema objects (`callback/objects.json`, `messages` objects); provenance
//! in the README there. No captured traffic was available.

mod api;
mod callback;
mod inbound;
mod longpoll;
mod outbound;
pub mod parse;

use std::sync::Arc;
use std::time::Duration;

use kommutator_sdk::store::MAX_FILE_SIZE;
use kommutator_sdk::{Connector, ConnectorContext, ConnectorError};
use serde::Deserialize;

pub use api::{doc_attachment, response_of, sent_of, ApiError, Class, Sent};
pub use callback::MAX_BODY_BYTES;
pub use kommutator_sdk::Secret;
pub use longpoll::TS_KEY;
pub use outbound::{random_id, reply_params, their_id};
pub use parse::{
    envelope_from_value, map_event, parse_callback, parse_long_poll, Envelope, LongPollAnswer,
    Mapped, OurSend, ParseError, RemoteFile,
};

/// How events reach the connector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// VK posts to the hub's webhook route.
    #[default]
    Callback,
    /// The connector polls the Bots Long Poll server.
    LongPoll,
}

/// The instance's config table (see the crate docs for an example).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The community id (positive).
    pub group_id: u64,
    /// The community access token.
    pub access_token: Secret,
    /// The API base URL, without the method name.
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// The API version sent as `v`.
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// `callback` or `long_poll`.
    #[serde(default)]
    pub mode: Mode,
    /// The string VK expects back on `confirmation` (callback mode, required there).
    #[serde(default)]
    pub confirmation: Option<String>,
    /// The Callback API secret key (callback mode; optional, recommended).
    #[serde(default)]
    pub secret: Option<Secret>,
    /// How long one long poll request waits, in seconds (1 to 90).
    #[serde(default = "default_wait_secs")]
    pub wait_secs: u64,
    /// Received files up to this size are downloaded and stored; 0 never downloads.
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
}

fn default_api_url() -> String {
    "https://api.vk.com/method".to_owned()
}

fn default_api_version() -> String {
    "5.199".to_owned()
}

fn default_wait_secs() -> u64 {
    25
}

fn default_max_file_bytes() -> u64 {
    20 * 1024 * 1024
}

/// The connector.
#[derive(Debug)]
pub struct Vk {
    group_id: u64,
    mode: Mode,
    confirmation: String,
    secret: Option<Secret>,
    wait_secs: u64,
    max_file_bytes: u64,
    api: api::Api,
    shared: Arc<inbound::Shared>,
    retry_base: Duration,
}

impl Vk {
    /// Sets the first delay of the retry backoff (1 s by default; it doubles up to 60
    /// times this). For tests.
    #[must_use]
    pub fn with_retry_base(mut self, base: Duration) -> Self {
        self.retry_base = base;
        self
    }
}

fn clean(field: &str, s: &str) -> Result<(), ConnectorError> {
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

impl Connector for Vk {
    const KIND: &'static str = "vk";
    type Config = Config;

    fn new(config: Config) -> Result<Self, ConnectorError> {
        if config.group_id == 0 || config.group_id > i64::MAX.unsigned_abs() {
            return Err(ConnectorError::config(
                "group_id",
                "must be the community's positive id",
            ));
        }
        clean("access_token", config.access_token.expose())?;
        let url = config.api_url.trim_end_matches('/');
        if !(url.starts_with("https://") || url.starts_with("http://"))
            || reqwest::Url::parse(url).is_err()
        {
            return Err(ConnectorError::config(
                "api_url",
                "must be an http(s) URL such as https://api.vk.com/method",
            ));
        }
        let v = &config.api_version;
        let mut parts = v.split('.');
        let numeric = |p: Option<&str>| {
            p.is_some_and(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        };
        if !(numeric(parts.next()) && numeric(parts.next()) && parts.next().is_none()) {
            return Err(ConnectorError::config(
                "api_version",
                "must look like \"5.199\"",
            ));
        }
        let confirmation = match (config.mode, config.confirmation) {
            (Mode::Callback, None) => {
                return Err(ConnectorError::config(
                    "confirmation",
                    "required in callback mode: the string VK shows in the community's Callback API settings",
                ))
            }
            (_, Some(c)) => {
                clean("confirmation", &c)?;
                c
            }
            (Mode::LongPoll, None) => String::new(),
        };
        if let Some(s) = &config.secret {
            clean("secret", s.expose())?;
        }
        if !(1..=90).contains(&config.wait_secs) {
            return Err(ConnectorError::config(
                "wait_secs",
                "must be between 1 and 90",
            ));
        }
        if config.max_file_bytes > MAX_FILE_SIZE as u64 {
            return Err(ConnectorError::config(
                "max_file_bytes",
                format!("must be at most {MAX_FILE_SIZE} (the hub's file limit)"),
            ));
        }
        let api = api::Api::new(url, v, config.access_token)?;
        Ok(Self {
            group_id: config.group_id,
            mode: config.mode,
            confirmation,
            secret: config.secret,
            wait_secs: config.wait_secs,
            max_file_bytes: config.max_file_bytes,
            api,
            shared: Arc::new(inbound::Shared::default()),
            retry_base: Duration::from_secs(1),
        })
    }

    fn routes(&self, ctx: &ConnectorContext) -> Option<axum::Router> {
        (self.mode == Mode::Callback).then(|| {
            callback::router(callback::App {
                sender: ctx.sender(),
                shared: self.shared.clone(),
                api: self.api.clone(),
                group_id: self.group_id,
                confirmation: self.confirmation.clone(),
                secret: self.secret.clone(),
                max_file_bytes: self.max_file_bytes,
            })
        })
    }

    async fn run(self, mut ctx: ConnectorContext) -> Result<(), ConnectorError> {
        let shutdown = ctx.shutdown().clone();
        let out = outbound::Outbound {
            api: self.api.clone(),
            shared: self.shared.clone(),
            files: ctx.files().clone(),
            retry_base: self.retry_base,
        };
        let poll_token = shutdown.child_token();
        // Stops the poller whichever way `run` returns.
        let _stop_poller = poll_token.clone().drop_guard();
        let mut poller = match self.mode {
            Mode::LongPoll => Some(tokio::spawn(
                longpoll::Poller {
                    sender: ctx.sender(),
                    state: ctx.state().clone(),
                    shared: self.shared.clone(),
                    api: self.api.clone(),
                    group_id: self.group_id,
                    wait_secs: self.wait_secs,
                    max_file_bytes: self.max_file_bytes,
                    retry_base: self.retry_base,
                }
                .run(poll_token),
            )),
            Mode::Callback => None,
        };
        let mut outbound_open = true;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    if let Some(p) = poller.take() {
                        let _ = p.await;
                    }
                    return Ok(());
                }
                ended = async {
                    match poller.as_mut() {
                        Some(p) => p.await,
                        None => std::future::pending().await,
                    }
                } => {
                    return match ended {
                        Ok(result) => result,
                        Err(e) => Err(ConnectorError::other(format!("long poll task: {e}"))),
                    };
                }
                msg = ctx.recv_outbound(), if outbound_open => match msg {
                    Some(msg) => out.handle(&ctx, msg, &shutdown).await?,
                    None => outbound_open = false,
                },
            }
        }
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

    #[test]
    fn config_defaults_and_secrets() {
        let cfg = config(json!({"group_id": 1, "access_token": "tok-123",
            "confirmation": "abc", "secret": "sec-456"}));
        assert_eq!(cfg.api_url, "https://api.vk.com/method");
        assert_eq!(cfg.api_version, "5.199");
        assert_eq!(cfg.mode, Mode::Callback);
        assert_eq!(cfg.wait_secs, 25);
        assert_eq!(cfg.max_file_bytes, 20 * 1024 * 1024);
        let debug = format!("{cfg:?}");
        assert!(
            !debug.contains("tok-123") && !debug.contains("sec-456"),
            "{debug}"
        );
        let vk = Vk::new(cfg).unwrap();
        let debug = format!("{vk:?}");
        assert!(
            !debug.contains("tok-123") && !debug.contains("sec-456"),
            "{debug}"
        );
        assert!(serde_json::from_value::<Config>(
            json!({"group_id": 1, "access_token": "t", "token": "x"})
        )
        .is_err());
        let lp = config(json!({"group_id": 1, "access_token": "t", "mode": "long_poll"}));
        assert_eq!(lp.mode, Mode::LongPoll);
        assert!(Vk::new(lp).is_ok());
    }

    #[test]
    fn new_names_the_bad_field() {
        let cases = [
            (
                json!({"group_id": 0, "access_token": "t", "confirmation": "c"}),
                "group_id",
            ),
            (
                json!({"group_id": 1, "access_token": "", "confirmation": "c"}),
                "access_token",
            ),
            (json!({"group_id": 1, "access_token": "t"}), "confirmation"),
            (
                json!({"group_id": 1, "access_token": "t", "confirmation": "c", "api_url": "ftp://x"}),
                "api_url",
            ),
            (
                json!({"group_id": 1, "access_token": "t", "confirmation": "c", "api_version": "5"}),
                "api_version",
            ),
            (
                json!({"group_id": 1, "access_token": "t", "confirmation": "c", "secret": " s"}),
                "secret",
            ),
            (
                json!({"group_id": 1, "access_token": "t", "mode": "long_poll", "wait_secs": 0}),
                "wait_secs",
            ),
            (
                json!({"group_id": 1, "access_token": "t", "mode": "long_poll", "max_file_bytes": 1_000_000_000}),
                "max_file_bytes",
            ),
        ];
        for (cfg, field) in cases {
            match Vk::new(config(cfg.clone())) {
                Err(ConnectorError::Config { field: f, .. }) => assert_eq!(f, field, "{cfg}"),
                other => panic!("{cfg}: {other:?}"),
            }
        }
    }
}
