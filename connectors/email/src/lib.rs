//! Kommutator connector for **email**: IMAP (with IDLE) in, SMTP out, with threading,
//! auto-reply and bounce handling, emailed site forms, and state that survives restarts.
//!
//! # Protocol
//!
//! - **In:** one IMAP session per configured mailbox, concurrently (IDLE watches only the
//!   selected mailbox, so several mailboxes need several sessions). Each session logs in,
//!   SELECTs, reads its cursor `{mailbox}` = `"{uidvalidity}:{last_uid}"` from the state
//!   store, fetches `UID FETCH {last+1}:* (UID RFC822.SIZE)` then each message with
//!   `BODY.PEEK[]`, hands it to the hub and only then advances and persists the cursor.
//!   Then it IDLEs (re-issued every `idle_renew_secs`, default 1500 s, under the 29 min of
//!   RFC 2177), or polls every `poll_secs` when the server lacks IDLE. Errors reconnect
//!   with jittered exponential backoff (1 s to 5 min); a rejected login is
//!   [`ConnectorError::Auth`] and stops the instance.
//! - **First start** (no cursor): the last 50 messages and every UNSEEN one are imported,
//!   so a connector added to a busy mailbox does not flood the hub with its history.
//!   **UIDVALIDITY changed:** the whole mailbox is scanned again; the hub drops what it
//!   already has by Message-ID (the external id).
//! - **`\Seen` is not touched:** the connector reads with `BODY.PEEK[]` and keeps its own
//!   cursor, so people reading the same mailbox in a mail client still see new mail as
//!   new.
//! - **Out:** [`OutboundMessage`](kommutator_sdk::OutboundMessage)s go out by SMTP
//!   (lettre; implicit TLS, STARTTLS or plain), then a copy is APPENDed (`\Seen`) to
//!   `sent_mailbox` (created if missing; best effort: a failed copy is logged, the mail
//!   is not sent twice). SMTP 5xx → `outbound_failed` with the server's text; 4xx and
//!   connection errors are retried with backoff until shutdown (the hub hands unacked
//!   messages over again after a restart).
//!
//! # Config
//!
//! ```toml
//! [connectors.support_mail]
//! type = "email"
//! address = "support@example.com"        # our mailbox: From of replies
//! display_name = "Example support"
//! # domain = "example.com"               # of our Message-IDs; default: after the @ of address
//! # max_attachment_bytes = 20971520       # bigger attachments are kept by name only
//!
//! [connectors.support_mail.imap]
//! host = "imap.example.com"
//! port = 993                             # default: 993 implicit, 143 otherwise
//! tls = "implicit"                       # "implicit" | "starttls" | "none"
//! username = "support@example.com"
//! password = "…"
//! mailboxes = ["INBOX"]                  # default ["INBOX"]
//! sent_mailbox = "Sent"                  # default "Sent"; "" disables the copy
//! idle_renew_secs = 1500
//! poll_secs = 60                         # when the server has no IDLE
//!
//! [connectors.support_mail.smtp]
//! host = "smtp.example.com"
//! port = 587                             # default: 465 implicit, 587 starttls, 25 none
//! tls = "starttls"
//! username = "support@example.com"       # optional (no AUTH without it)
//! password = "…"
//!
//! [[connectors.support_mail.form_templates]]
//! name = "site"
//! from = "*@example.com"
//! subject = "New request"
//! fields = { name = '(?m)^Name:\s*(.+)$', phone = '(?m)^Phone:\s*(.+)$' }
//! ```
//!
//! # Events and external ids
//!
//! - A mail → `message` with `external_id` = its Message-ID without angle brackets; a mail
//!   without one gets `sha256:{hex of Date|From|Subject|first 4 KiB of the raw mail}`.
//!   Sender: the From address (`email` identity) and display name; `subject`, `text` (the
//!   new text only), `quoted`, `html` (sanitized), `attachments` (stored with
//!   `files().put`, at most `max_attachment_bytes` each), `reply_to_external_id` =
//!   In-Reply-To, `occurred_at` = Date (else the IMAP internal date, else now), `raw` =
//!   `{message_id, in_reply_to, references, from, to, cc, subject, mailbox, uid}`.
//! - `thread_id` (see [`thread`]): the Message-ID of the conversation's first mail,
//!   found again by References / In-Reply-To, our `[K-xxxxxxxx]` subject token, or the
//!   same subject from the same address within 30 days.
//! - An auto-reply (RFC 3834 and the usual vendor headers) → `unknown` with the same
//!   external id: kept for audit, never a new dialog.
//! - A bounce of a mail we sent → `delivery_status` `failed` with the DSN status as
//!   reason, for `message_external_id` = our Message-ID (the `external_id` of our outbound
//!   ack), external id `{our message-id}:failed`; any other bounce → `unknown`.
//! - A site form mail matched by `form_templates` → `message` from the person in the form
//!   (identities `phone` and `email`, display name from `name`), subject
//!   `Site form: {template}`, a new thread; `raw.form` holds the fields and
//!   `raw.traffic_source` the `utm_*` ones.
//! - Our sent mail → `outbound_ack` with external id = our Message-ID
//!   `{connector id}.{outbound id}.{hash}@{domain}` (deterministic, so a message handed
//!   over twice keeps one id).
//! - A mail over 30 MiB (`mime::Limits`) is read by its header only: a `message` whose
//!   text says so.
//! - An unreadable mail (no header block) → `unknown`, external id
//!   `imap:{mailbox}:{uidvalidity}:{uid}`.
//!
//! # Fixtures
//!
//! The replay test runs against a private Dovecot (IMAP + LMTP) and Postfix started by
//! `tests/rig`; its messages are written by hand from RFC 5322 / 2045 / 3464 / 3834
//! shapes (see `tests/fixtures/README.md`).

pub mod form_template;
pub mod imap;
mod inbound;
pub mod mime;
pub mod smtp;
pub mod thread;

use std::fmt;

use kommutator_sdk::{Connector, ConnectorContext, ConnectorError, Secret};
use serde::Deserialize;

/// The default of `max_attachment_bytes`: 20 MiB.
pub const DEFAULT_MAX_ATTACHMENT_BYTES: usize = 20 * 1024 * 1024;

/// How a connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS from the first byte (IMAPS 993, SMTPS 465).
    Implicit,
    /// Plain, then `STARTTLS` (IMAP 143, submission 587).
    Starttls,
    /// No TLS at all: for a local server only.
    None,
}

/// `[connectors.<id>]` of type `email`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Our mailbox address: the From of our replies.
    pub address: String,
    /// The display name of our replies' From.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Where mail comes in.
    pub imap: ImapConfig,
    /// Where mail goes out.
    pub smtp: SmtpConfig,
    /// The domain of our Message-IDs; default: the part of `address` after the `@`.
    #[serde(default)]
    pub domain: Option<String>,
    /// Attachments bigger than this are kept by name and size only.
    #[serde(default = "default_max_attachment_bytes")]
    pub max_attachment_bytes: usize,
    /// Emailed site forms to turn into leads.
    #[serde(default)]
    pub form_templates: Vec<form_template::FormTemplate>,
}

fn default_max_attachment_bytes() -> usize {
    DEFAULT_MAX_ATTACHMENT_BYTES
}

/// `[connectors.<id>.imap]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapConfig {
    /// Server host name.
    pub host: String,
    /// Port; default 993 for implicit TLS, else 143.
    #[serde(default)]
    pub port: Option<u16>,
    /// Default `implicit`.
    #[serde(default = "default_tls")]
    pub tls: TlsMode,
    /// Login name.
    pub username: String,
    /// Login password.
    pub password: Secret,
    /// Mailboxes to watch; default `["INBOX"]`.
    #[serde(default = "default_mailboxes")]
    pub mailboxes: Vec<String>,
    /// Where to keep a copy of what we send; default `Sent`; empty: keep none.
    #[serde(default = "default_sent")]
    pub sent_mailbox: String,
    /// How often IDLE is re-issued, in seconds; default 1500.
    #[serde(default = "default_idle_renew")]
    pub idle_renew_secs: u64,
    /// How often to poll when the server has no IDLE, in seconds; default 60.
    #[serde(default = "default_poll")]
    pub poll_secs: u64,
}

fn default_tls() -> TlsMode {
    TlsMode::Implicit
}
fn default_mailboxes() -> Vec<String> {
    vec!["INBOX".to_owned()]
}
fn default_sent() -> String {
    "Sent".to_owned()
}
fn default_idle_renew() -> u64 {
    1500
}
fn default_poll() -> u64 {
    60
}

impl fmt::Debug for ImapConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImapConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("mailboxes", &self.mailboxes)
            .field("sent_mailbox", &self.sent_mailbox)
            .field("idle_renew_secs", &self.idle_renew_secs)
            .field("poll_secs", &self.poll_secs)
            .finish()
    }
}

impl ImapConfig {
    /// The port to connect to.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            TlsMode::Implicit => 993,
            TlsMode::Starttls | TlsMode::None => 143,
        })
    }
}

/// `[connectors.<id>.smtp]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Server host name.
    pub host: String,
    /// Port; default 465 implicit, 587 starttls, 25 none.
    #[serde(default)]
    pub port: Option<u16>,
    /// Default `starttls`.
    #[serde(default = "default_smtp_tls")]
    pub tls: TlsMode,
    /// Login name; no AUTH without it.
    #[serde(default)]
    pub username: Option<String>,
    /// Login password (`Debug` prints `***`).
    #[serde(default)]
    pub password: Option<Secret>,
}

fn default_smtp_tls() -> TlsMode {
    TlsMode::Starttls
}

impl SmtpConfig {
    /// The port to connect to.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            TlsMode::Implicit => 465,
            TlsMode::Starttls => 587,
            TlsMode::None => 25,
        })
    }
}

/// The email connector: one instance per mailbox account.
#[derive(Debug)]
pub struct Email {
    cfg: Config,
    domain: String,
    templates: Templates,
}

/// The compiled form templates, with a `Debug` that does not depend on theirs.
pub(crate) struct Templates(pub(crate) form_template::CompiledTemplates);

impl fmt::Debug for Templates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Templates")
    }
}

fn valid_address(a: &str) -> bool {
    let Some((local, domain)) = a.split_once('@') else {
        return false;
    };
    let domain_ok = domain.contains('.') || domain == "localhost";
    !local.is_empty()
        && domain_ok
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !a
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>\"".contains(c))
}

impl Connector for Email {
    const KIND: &'static str = "email";
    type Config = Config;

    fn new(cfg: Config) -> Result<Self, ConnectorError> {
        if !valid_address(cfg.address.trim()) {
            return Err(ConnectorError::config(
                "address",
                "must be an email address like support@example.com",
            ));
        }
        let domain = match &cfg.domain {
            Some(d) => d.trim().to_owned(),
            None => cfg
                .address
                .trim()
                .rsplit_once('@')
                .map(|(_, d)| d.to_owned())
                .unwrap_or_default(),
        };
        if domain.is_empty()
            || domain
                .chars()
                .any(|c| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'))
        {
            return Err(ConnectorError::config(
                "domain",
                "must be a domain name (letters, digits, dots, hyphens)",
            ));
        }
        for (field, host) in [("imap.host", &cfg.imap.host), ("smtp.host", &cfg.smtp.host)] {
            if host.trim().is_empty() || host.chars().any(char::is_whitespace) {
                return Err(ConnectorError::config(field, "must be a host name"));
            }
        }
        if cfg.imap.port == Some(0) {
            return Err(ConnectorError::config("imap.port", "must not be 0"));
        }
        if cfg.smtp.port == Some(0) {
            return Err(ConnectorError::config("smtp.port", "must not be 0"));
        }
        if cfg.imap.username.trim().is_empty() {
            return Err(ConnectorError::config("imap.username", "must not be empty"));
        }
        if cfg.imap.mailboxes.is_empty() {
            return Err(ConnectorError::config(
                "imap.mailboxes",
                "must name at least one mailbox",
            ));
        }
        for (i, m) in cfg.imap.mailboxes.iter().enumerate() {
            if m.trim().is_empty() || m.chars().any(|c| c.is_control() || c == '"') {
                return Err(ConnectorError::config(
                    format!("imap.mailboxes[{i}]"),
                    "must be a mailbox name without quotes or control characters",
                ));
            }
        }
        if cfg
            .imap
            .sent_mailbox
            .chars()
            .any(|c| c.is_control() || c == '"')
        {
            return Err(ConnectorError::config(
                "imap.sent_mailbox",
                "must not contain quotes or control characters",
            ));
        }
        if !(10..=1740).contains(&cfg.imap.idle_renew_secs) {
            return Err(ConnectorError::config(
                "imap.idle_renew_secs",
                "must be between 10 and 1740 (29 minutes)",
            ));
        }
        if cfg.imap.poll_secs == 0 {
            return Err(ConnectorError::config(
                "imap.poll_secs",
                "must be at least 1",
            ));
        }
        if cfg.smtp.password.is_some() && cfg.smtp.username.is_none() {
            return Err(ConnectorError::config(
                "smtp.username",
                "is required when smtp.password is set",
            ));
        }
        if cfg.max_attachment_bytes == 0 {
            return Err(ConnectorError::config(
                "max_attachment_bytes",
                "must be at least 1",
            ));
        }
        let templates = form_template::CompiledTemplates::new(&cfg.form_templates)
            .map(Templates)
            .map_err(|(field, message)| ConnectorError::config(field, message))?;
        Ok(Self {
            cfg,
            domain,
            templates,
        })
    }

    async fn run(self, ctx: ConnectorContext) -> Result<(), ConnectorError> {
        run(self, ctx).await
    }
}

/// What the I/O tasks share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) cfg: Config,
    pub(crate) domain: String,
    pub(crate) templates: Templates,
    pub(crate) threads: thread::Threads,
}

async fn run(email: Email, mut ctx: ConnectorContext) -> Result<(), ConnectorError> {
    let shared = std::sync::Arc::new(Shared {
        threads: thread::Threads::new(ctx.state().clone()),
        cfg: email.cfg,
        domain: email.domain,
        templates: email.templates,
    });
    let shutdown = ctx.shutdown().clone();
    let tasks_token = shutdown.child_token();
    let mut tasks = tokio::task::JoinSet::new();
    for mailbox in &shared.cfg.imap.mailboxes {
        tasks.spawn(imap::run_mailbox(
            shared.clone(),
            mailbox.clone(),
            ctx.sender(),
            ctx.state().clone(),
            tasks_token.clone(),
        ));
    }
    let mut outbound = smtp::Outbound::new(shared.clone())?;
    tracing::info!(
        connector = %ctx.id(),
        mailboxes = ?shared.cfg.imap.mailboxes,
        "email connector running"
    );
    let result = loop {
        tokio::select! {
            () = shutdown.cancelled() => break Ok(()),
            joined = tasks.join_next() => match joined {
                Some(Ok(Ok(()))) | None => {
                    if shutdown.is_cancelled() { break Ok(()); }
                    // Every mailbox task ends only on shutdown or error; keep serving
                    // outbound if they are all gone for no reason.
                    if tasks.is_empty() {
                        break Err(ConnectorError::other("every mailbox task ended"));
                    }
                }
                Some(Ok(Err(e))) => break Err(e),
                Some(Err(join)) => break Err(ConnectorError::other(join)),
            },
            msg = ctx.recv_outbound() => {
                let Some(msg) = msg else { break Err(ConnectorError::Closed) };
                if let Err(e) = outbound.deliver(&ctx, msg, &shutdown).await {
                    break Err(e);
                }
            }
        }
    };
    tasks_token.cancel();
    while tasks.join_next().await.is_some() {}
    result
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Config {
        let toml = format!(
            r#"{{"address": "support@example.com",
                "imap": {{"host": "imap.example.com", "username": "u", "password": "hunter2"}},
                "smtp": {{"host": "smtp.example.com", "username": "u", "password": "smtp-s3cret"}}
                {extra}}}"#
        );
        serde_json::from_str(&toml).unwrap()
    }

    #[test]
    fn defaults_and_redacted_debug() {
        let c = cfg("");
        assert_eq!(c.imap.port(), 993);
        assert_eq!(c.smtp.port(), 587);
        assert_eq!(c.imap.mailboxes, ["INBOX"]);
        assert_eq!(c.imap.sent_mailbox, "Sent");
        assert_eq!(c.imap.idle_renew_secs, 1500);
        assert_eq!(c.max_attachment_bytes, 20 * 1024 * 1024);
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("smtp-s3cret"),
            "{debug}"
        );
        let e = Email::new(c).unwrap();
        assert_eq!(e.domain, "example.com");
    }

    #[test]
    fn new_names_the_bad_field() {
        let bad = |c: Config, field: &str| match Email::new(c) {
            Err(ConnectorError::Config { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected a config error on {field}: {other:?}"),
        };
        let mut c = cfg("");
        c.address = "nobody".to_owned();
        bad(c, "address");
        let mut c = cfg("");
        c.domain = Some("bad domain".to_owned());
        bad(c, "domain");
        let mut c = cfg("");
        c.imap.mailboxes = vec![];
        bad(c, "imap.mailboxes");
        let mut c = cfg("");
        c.imap.mailboxes = vec!["INBOX".to_owned(), String::new()];
        bad(c, "imap.mailboxes[1]");
        let mut c = cfg("");
        c.imap.idle_renew_secs = 3600;
        bad(c, "imap.idle_renew_secs");
        let mut c = cfg("");
        c.smtp.host = " ".to_owned();
        bad(c, "smtp.host");
        let mut c = cfg("");
        c.smtp.username = None;
        bad(c, "smtp.username");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let r: Result<Config, _> = serde_json::from_str(
            r#"{"address": "a@b.c", "imap": {"host": "h", "username": "u", "password": "p",
                "passwrd": "x"}, "smtp": {"host": "h"}}"#,
        );
        assert!(r.unwrap_err().to_string().contains("passwrd"));
    }
}
