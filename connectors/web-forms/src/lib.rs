//! Kommutator connector for **website forms**: one instance is one form on a customer's
//! site (a lead form or a callback request), posted by the visitor's browser through a
//! small script the hub serves, or by the site's own server.
//!
//! # Protocol
//!
//! The hub mounts the instance's routes at `/forms/<id>/` (and `/hooks/<id>/`):
//!
//! | route | what |
//! |---|---|
//! | `POST /` | a submission: `application/json` (an object of strings or string arrays) or `application/x-www-form-urlencoded` (repeated keys are arrays) |
//! | `OPTIONS /` | CORS preflight: 204 with `Access-Control-Allow-Origin` echoing an allowed origin, `-Allow-Methods: POST`, `-Allow-Headers: Content-Type`, `-Max-Age: 600`; 403 otherwise |
//! | `GET /embed.js` | the script (`application/javascript`) |
//! | `GET /embed.html` | an example snippet to paste |
//!
//! A site includes `<script src="https://HUB/forms/<id>/embed.js" data-form="#selector"
//! async></script>`. The script (dependency-free, written for this crate; its only global is
//! `KommutatorForm` with `attach(form)`) hooks the form's submit and posts it
//! form-urlencoded with `fetch`, adding: the hidden honeypot field, `_started` and `_sent`
//! (ms timestamps of showing and sending, client clock), `utm_source`, `utm_medium`,
//! `utm_campaign`, `utm_content`, `utm_term` (from the landing URL, kept in
//! `sessionStorage` across pages), `referrer` and `landing_page` (of the landing),
//! `page_url`, `ga_client_id` (from the `_ga` cookie), `ym_client_id` (`_ym_uid`) and an
//! `idempotency_key` (a random UUID per attempt, reused on retry until it succeeds). It
//! shows a success or error text in Russian or English after `navigator.language`, marks
//! the field at fault with `aria-invalid`, and fires `kommutator:success` /
//! `kommutator:error` events on the form.
//!
//! Server-to-server posts send the same fields. With `hmac_secret` set they must carry
//! `X-Kommutator-Timestamp` (Unix seconds, within 5 minutes) and `X-Kommutator-Signature:
//! sha256=<hex of HMAC-SHA256(secret, "{timestamp}.{raw body}")>` ([`sign`] computes it).
//!
//! Answers (JSON): 200 `{"ok":true,"id":"<external id>"}`; 400 `{"error":
//! "missing_field" | "invalid_field", "field", "input", "message"}` (`field` is ours,
//! `input` the site's field name), 400 `spam` (honeypot filled, sent faster than
//! `min_fill_secs`), 400 `malformed_body` / `too_many_fields` (over 200 fields or 1000
//! values), 401 `unauthorized` (signature missing, stale or wrong), 403
//! `origin_not_allowed` (a browser post, i.e. with `Origin` or `Sec-Fetch-Site`, whose
//! origin is not in `allowed_origins`) or `browser_not_allowed` (a browser post to a
//! signed form without `allow_browser`), 413 `too_large`, 415 `unsupported_content_type`,
//! 429 `rate_limited` with `Retry-After`, 503 `unavailable` (the hub is shutting down).
//! Every refusal hands nothing to the hub. Answers to an allowed origin carry its CORS
//! headers, errors included, so the script can read them.
//!
//! The rate limit is a token bucket per client IP (`rate_limit_per_minute`, burst the
//! same) in a map of at most 10 000 IPs; the IP is the peer address, or with
//! `trust_forwarded_for` the last entry of `X-Forwarded-For` (the one the proxy in front
//! of the hub appended). Without a peer address (tests) it is `unknown`.
//!
//! # Mapping and external ids
//!
//! `fields` maps the site's field names to ours: `name`, `phone`, `email`, `message`,
//! `company`, `extra:<label>`; the five standard names map to themselves unless the
//! config maps them elsewhere. Fields mapped to nothing are ignored. A submission becomes
//! an [`InboundKind::Message`](kommutator_sdk::InboundKind::Message):
//!
//! - `external_id`: the client's `idempotency_key` when it is 8 to 64 of
//!   `[A-Za-z0-9_-]`, else `h:` + hex SHA-256 of (form id, phone, email, message, 10-minute
//!   time bucket), so a double click is one lead. The two never collide (`:`).
//! - `thread_id`: `form:{external_id}`: each submission is its own conversation.
//! - sender: `phone` identity (normalized toward E.164 with `default_country_code`) and/or
//!   `email` identity, display name = `name`.
//! - `subject`: `form_name`, or `Callback request: {form_name}` for a callback.
//! - `text`: the message, then `Company: …` and one `Label: value` line per extra field.
//! - `occurred_at`: the receive time (the client's clock is not trusted).
//! - `raw`: `{"form": id, "form_name", "kind", "fields": {our fields, extras by label},
//!   "consent": bool, "traffic_source": {"utm_source", "utm_medium", "utm_campaign",
//!   "utm_term", "utm_content", "referrer", "landing_page", "page_url", "ga_client_id",
//!   "ym_client_id", "visit_id"} (only those present), "ip", "user_agent"}`. The hub reads
//!   `raw.traffic_source` as it does for call tracking.
//!
//! A submission with no field of ours at all (possible only when the config requires
//! nothing) becomes `InboundKind::Unknown` with the same `raw`. Outbound messages are
//! answered with `outbound_failed` "forms cannot carry replies".
//!
//! # Config
//!
//! ```toml
//! [connectors.site_callback]
//! type = "web_form"
//! form_name = "Callback on shop.example"
//! kind = "callback"                      # or "lead" (default)
//! allowed_origins = ["https://shop.example", "https://www.shop.example"]
//! default_country_code = "7"             # for national phone numbers
//! min_fill_secs = 3                      # optional
//! consent_text = "I agree to the processing of my personal data"   # optional
//! # everything below is optional, with these defaults
//! honeypot_field = "website"
//! rate_limit_per_minute = 5
//! trust_forwarded_for = false
//! max_body_bytes = 32768
//! # required = ["phone"]                 # callback default; lead: require_contact = true
//! # hmac_secret = "…"                    # server-to-server posts must be signed
//! # allow_browser = false                # with hmac_secret: browser posts too
//! [connectors.site_callback.fields]
//! tel = "phone"
//! fio = "name"
//! city = "extra:City"
//! ```
//!
//! # Fixtures
//!
//! `tests/fixtures/` holds example submissions written for this crate in the shapes the
//! script and the crate docs above define (this form protocol is ours; no third-party
//! API is involved); provenance in the README there.

mod embed;
mod http;
mod limiter;
pub mod map;
pub mod parse;
mod signature;

use std::collections::BTreeMap;
use std::sync::Mutex;

use kommutator_sdk::phone::{is_valid_country_code, NumberPlan};
use kommutator_sdk::{Connector, ConnectorContext, ConnectorError, InboundEvent};
use serde::Deserialize;
use time::OffsetDateTime;

pub use embed::{escape_html, script as embed_script, EMBED_JS_TEMPLATE};
pub use kommutator_sdk::Secret;
pub use limiter::{RateLimiter, MAX_TRACKED_IPS};
pub use parse::{
    check_content_type, parse_submission, Field, FormError, FormKind, FormSpec, ParseContext,
    Submission,
};
pub use signature::{sign, verify, SignatureError, MAX_SKEW_SECS};

/// The default hidden field.
pub const DEFAULT_HONEYPOT: &str = "website";
/// The default rate limit per IP.
pub const DEFAULT_RATE_LIMIT_PER_MINUTE: u32 = 5;
/// The default body limit, in bytes.
pub const DEFAULT_MAX_BODY_BYTES: usize = 32 * 1024;
/// The largest `max_body_bytes` accepted.
pub const MAX_MAX_BODY_BYTES: usize = 1024 * 1024;
/// The reason given for outbound messages.
pub const NO_REPLIES: &str = "forms cannot carry replies";

/// The instance's config table (see the crate docs for an example).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The form's name as operators see it (the subject of its messages).
    pub form_name: String,
    /// `lead` (default) or `callback`.
    #[serde(default)]
    pub kind: FormKind,
    /// The site's field name → ours (`name`, `phone`, `email`, `message`, `company`,
    /// `extra:<label>`).
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// Our fields that must be present (default: `["phone"]` for a callback, none for a
    /// lead).
    #[serde(default)]
    pub required: Option<Vec<String>>,
    /// Whether a phone or an email must be present (default: true for a lead, false for
    /// a callback).
    #[serde(default)]
    pub require_contact: Option<bool>,
    /// Origins allowed to post from a browser (`https://shop.example`); empty: none.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// The hidden field bots fill (`[A-Za-z0-9_-]`, default `website`).
    #[serde(default = "default_honeypot")]
    pub honeypot_field: String,
    /// A browser submission filled faster than this is spam (needs the script).
    #[serde(default)]
    pub min_fill_secs: Option<u32>,
    /// Posts per minute per client IP, and the burst (default 5).
    #[serde(default = "default_rate")]
    pub rate_limit_per_minute: u32,
    /// When set, server-to-server posts must be signed (see the crate docs).
    #[serde(default)]
    pub hmac_secret: Option<Secret>,
    /// With `hmac_secret`: still take browser posts from `allowed_origins`.
    #[serde(default)]
    pub allow_browser: bool,
    /// Take the client IP from `X-Forwarded-For` (set only behind a proxy that sets it).
    #[serde(default)]
    pub trust_forwarded_for: bool,
    /// The largest body, in bytes (default 32 KiB, at most 1 MiB).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// When set, the `consent` field must be truthy; the text is shown in the snippet.
    #[serde(default)]
    pub consent_text: Option<String>,
    /// The country calling code for national phone numbers (digits, e.g. `"7"`).
    #[serde(default)]
    pub default_country_code: Option<String>,
}

fn default_honeypot() -> String {
    DEFAULT_HONEYPOT.to_owned()
}

fn default_rate() -> u32 {
    DEFAULT_RATE_LIMIT_PER_MINUTE
}

fn default_max_body() -> usize {
    DEFAULT_MAX_BODY_BYTES
}

/// The connector: the form's public routes; `run` only refuses outbound messages.
#[derive(Debug)]
pub struct WebForm {
    form_name: String,
    kind: FormKind,
    spec: FormSpec,
    allowed_origins: Vec<String>,
    hmac_secret: Option<Secret>,
    allow_browser: bool,
    trust_forwarded_for: bool,
    max_body_bytes: usize,
    rate_limit_per_minute: u32,
    consent_text: Option<String>,
}

fn is_field_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'[' | b']'))
}

impl WebForm {
    /// The form's rules, as parsed by the routes.
    pub fn spec(&self) -> &FormSpec {
        &self.spec
    }
}

impl Connector for WebForm {
    const KIND: &'static str = "web_form";
    type Config = Config;

    fn new(config: Config) -> Result<Self, ConnectorError> {
        let form_name = config.form_name.trim().to_owned();
        if form_name.is_empty() || form_name.chars().count() > 200 {
            return Err(ConnectorError::config(
                "form_name",
                "must be 1 to 200 characters",
            ));
        }
        if let Some(cc) = &config.default_country_code {
            if !is_valid_country_code(cc) {
                return Err(ConnectorError::config(
                    "default_country_code",
                    "must be 1 to 3 digits, not starting with 0 (e.g. \"7\")",
                ));
            }
        }
        let honeypot = config.honeypot_field.clone();
        if !(1..=64).contains(&honeypot.len())
            || !honeypot
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
            || parse::is_reserved_field(&honeypot)
        {
            return Err(ConnectorError::config(
                "honeypot_field",
                "must be 1 to 64 of A-Z, a-z, 0-9, _ and -, and not a field the connector reads",
            ));
        }

        let mut fields: Vec<(String, Field)> = Vec::new();
        for (site, ours) in &config.fields {
            let field_key = format!("fields.{site}");
            if !is_field_name(site) || parse::is_reserved_field(site) || *site == honeypot {
                return Err(ConnectorError::config(
                    field_key,
                    "the site's field name must be 1 to 64 of A-Z, a-z, 0-9, _ - . [ ], and not a field the connector reads itself (utm_*, referrer, consent, …) nor the honeypot",
                ));
            }
            let Some(f) = Field::parse(ours) else {
                return Err(ConnectorError::config(
                    field_key,
                    "must be name, phone, email, message, company or extra:<label>",
                ));
            };
            fields.push((site.clone(), f));
        }
        // The identity mapping of the standard names, unless the config maps them.
        for f in Field::STANDARD {
            let site = f.key().to_owned();
            if site != honeypot && !config.fields.contains_key(&site) {
                fields.push((site, f));
            }
        }

        let required_names = config
            .required
            .clone()
            .unwrap_or_else(|| match config.kind {
                FormKind::Callback => vec!["phone".to_owned()],
                FormKind::Lead => vec![],
            });
        let mut required = Vec::new();
        for name in &required_names {
            let Some(f) = Field::parse(name) else {
                return Err(ConnectorError::config(
                    "required",
                    format!("{name:?} is not one of name, phone, email, message, company, extra:<label>"),
                ));
            };
            if !fields.iter().any(|(_, m)| *m == f) {
                return Err(ConnectorError::config(
                    "required",
                    format!("{name:?} is required but no field of the form maps to it"),
                ));
            }
            required.push(f);
        }
        let require_contact = config
            .require_contact
            .unwrap_or(config.kind == FormKind::Lead);

        let mut allowed_origins = Vec::new();
        for o in &config.allowed_origins {
            let n = http::normalize_origin(o);
            if !http::is_valid_origin(&n) {
                return Err(ConnectorError::config(
                    "allowed_origins",
                    format!("{o:?} is not an origin like \"https://shop.example\" (scheme, host and port only)"),
                ));
            }
            allowed_origins.push(n);
        }
        if config.rate_limit_per_minute == 0 || config.rate_limit_per_minute > 10_000 {
            return Err(ConnectorError::config(
                "rate_limit_per_minute",
                "must be between 1 and 10000",
            ));
        }
        if config.max_body_bytes < 256 || config.max_body_bytes > MAX_MAX_BODY_BYTES {
            return Err(ConnectorError::config(
                "max_body_bytes",
                format!("must be between 256 and {MAX_MAX_BODY_BYTES}"),
            ));
        }
        if let Some(s) = config.min_fill_secs {
            if s > 3_600 {
                return Err(ConnectorError::config(
                    "min_fill_secs",
                    "must be at most 3600",
                ));
            }
        }
        if let Some(secret) = &config.hmac_secret {
            let s = secret.expose();
            if s.chars().count() < 16 || s.trim() != s {
                return Err(ConnectorError::config(
                    "hmac_secret",
                    "must be at least 16 characters, without surrounding whitespace",
                ));
            }
        }
        if config.allow_browser && config.hmac_secret.is_none() {
            return Err(ConnectorError::config(
                "allow_browser",
                "only applies with hmac_secret (without it browser posts are allowed)",
            ));
        }
        let consent_text = config
            .consent_text
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty());

        Ok(Self {
            form_name,
            kind: config.kind,
            spec: FormSpec {
                fields,
                required,
                require_contact,
                honeypot_field: honeypot,
                min_fill_ms: config.min_fill_secs.map(|s| i64::from(s) * 1_000),
                consent_required: consent_text.is_some(),
                plan: NumberPlan::new(
                    config.default_country_code,
                    NumberPlan::DEFAULT_MAX_EXTENSION_LEN,
                ),
            },
            allowed_origins,
            hmac_secret: config.hmac_secret,
            allow_browser: config.allow_browser,
            trust_forwarded_for: config.trust_forwarded_for,
            max_body_bytes: config.max_body_bytes,
            rate_limit_per_minute: config.rate_limit_per_minute,
            consent_text,
        })
    }

    fn routes(&self, ctx: &ConnectorContext) -> Option<axum::Router> {
        Some(http::router(http::App {
            sender: ctx.sender(),
            form_name: self.form_name.clone(),
            kind: self.kind,
            spec: self.spec.clone(),
            allowed_origins: self.allowed_origins.clone(),
            hmac_secret: self.hmac_secret.clone(),
            allow_browser: self.allow_browser,
            trust_forwarded_for: self.trust_forwarded_for,
            max_body_bytes: self.max_body_bytes,
            limiter: Mutex::new(RateLimiter::new(
                self.rate_limit_per_minute,
                MAX_TRACKED_IPS,
            )),
            embed_js: embed::script(&self.spec.honeypot_field),
            consent_text: self.consent_text.clone(),
        }))
    }

    async fn run(self, mut ctx: ConnectorContext) -> Result<(), ConnectorError> {
        // Inbound only: the routes do the work. An outbound message is refused for good.
        let shutdown = ctx.shutdown().clone();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                msg = ctx.recv_outbound() => {
                    let Some(msg) = msg else {
                        shutdown.cancelled().await;
                        return Ok(());
                    };
                    let ev = InboundEvent::outbound_failed(
                        ctx.id().clone(),
                        msg.id,
                        NO_REPLIES,
                        OffsetDateTime::now_utc(),
                    );
                    ctx.send(ev).await?;
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use kommutator_sdk::{ConnectorId, InboundKind, OutboundMessage};
    use serde_json::json;

    use super::*;

    fn config(v: serde_json::Value) -> Config {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn defaults_and_mapping() {
        let form = WebForm::new(config(json!({"form_name": "Call me", "kind": "callback",
            "fields": {"tel": "phone", "city": "extra:City"}})))
        .unwrap();
        let spec = form.spec();
        assert_eq!(spec.required, vec![Field::Phone]);
        assert!(!spec.require_contact);
        assert_eq!(
            spec.input_of(&Field::Phone),
            Some("tel"),
            "the config's name comes first"
        );
        assert!(spec.fields.contains(&("phone".to_owned(), Field::Phone)));
        assert!(spec
            .fields
            .contains(&("city".to_owned(), Field::Extra("City".to_owned()))));
        assert_eq!(spec.honeypot_field, "website");
        let lead = WebForm::new(config(json!({"form_name": "Lead"}))).unwrap();
        assert!(lead.spec().require_contact && lead.spec().required.is_empty());
        assert_eq!(WebForm::KIND, "web_form");
    }

    #[test]
    fn unknown_fields_are_refused_and_secrets_hidden() {
        assert!(serde_json::from_value::<Config>(json!({"form_name": "x", "nope": 1})).is_err());
        let c = config(json!({"form_name": "x", "hmac_secret": "super-secret-value-123"}));
        assert!(!format!("{c:?}").contains("super-secret"));
    }

    #[test]
    fn new_validates_each_field() {
        let cases = [
            (json!({"form_name": " "}), "form_name"),
            (
                json!({"form_name": "x", "default_country_code": "07"}),
                "default_country_code",
            ),
            (
                json!({"form_name": "x", "honeypot_field": "a b"}),
                "honeypot_field",
            ),
            (
                json!({"form_name": "x", "honeypot_field": "utm_source"}),
                "honeypot_field",
            ),
            (
                json!({"form_name": "x", "fields": {"tel": "telephone"}}),
                "fields.tel",
            ),
            (
                json!({"form_name": "x", "fields": {"utm_source": "name"}}),
                "fields.utm_source",
            ),
            (
                json!({"form_name": "x", "fields": {"website": "name"}}),
                "fields.website",
            ),
            (json!({"form_name": "x", "required": ["fax"]}), "required"),
            (
                json!({"form_name": "x", "required": ["extra:City"]}),
                "required",
            ),
            (
                json!({"form_name": "x", "allowed_origins": ["https://a.example/path"]}),
                "allowed_origins",
            ),
            (
                json!({"form_name": "x", "allowed_origins": ["a.example"]}),
                "allowed_origins",
            ),
            (
                json!({"form_name": "x", "rate_limit_per_minute": 0}),
                "rate_limit_per_minute",
            ),
            (
                json!({"form_name": "x", "max_body_bytes": 10}),
                "max_body_bytes",
            ),
            (
                json!({"form_name": "x", "min_fill_secs": 7200}),
                "min_fill_secs",
            ),
            (
                json!({"form_name": "x", "hmac_secret": "short"}),
                "hmac_secret",
            ),
            (
                json!({"form_name": "x", "allow_browser": true}),
                "allow_browser",
            ),
        ];
        for (v, field) in cases {
            match WebForm::new(config(v.clone())) {
                Err(ConnectorError::Config { field: f, .. }) => assert_eq!(f, field, "{v}"),
                other => panic!("{v}: {other:?}"),
            }
        }
        let ok = WebForm::new(config(json!({"form_name": "x",
            "allowed_origins": ["HTTPS://Shop.Example/"]})))
        .unwrap();
        assert_eq!(ok.allowed_origins, vec!["https://shop.example"]);
    }

    /// The config example of the crate docs, as the hub reads it (minus `type`).
    #[test]
    fn doc_example_config_is_valid() {
        let doc = include_str!("lib.rs");
        let start = doc.find("//! ```toml\n").unwrap() + "//! ```toml\n".len();
        let len = doc[start..].find("//! ```\n").unwrap();
        let toml_text: String = doc[start..start + len]
            .lines()
            .map(|l| l.strip_prefix("//!").unwrap_or(l).trim_start())
            .filter(|l| !l.starts_with("type =") && !l.starts_with("[connectors.site_callback]"))
            .map(|l| l.replace("[connectors.site_callback.fields]", "[fields]") + "\n")
            .collect();
        let config: Config = toml::from_str(&toml_text).unwrap();
        let form = WebForm::new(config).unwrap();
        assert_eq!(form.kind, FormKind::Callback);
        assert_eq!(form.spec.input_of(&Field::Phone), Some("tel"));
        assert!(form.spec.consent_required);
        assert_eq!(form.spec.min_fill_ms, Some(3_000));
    }

    #[tokio::test]
    async fn run_refuses_outbound_and_stops_on_shutdown() {
        let form = WebForm::new(config(json!({"form_name": "x"}))).unwrap();
        let (ctx, mut hub) = ConnectorContext::for_test("f");
        assert!(form.routes(&ctx).is_some());
        let task = tokio::spawn(form.run(ctx));
        hub.send_outbound(OutboundMessage {
            id: 9,
            connector_id: ConnectorId::new("f"),
            thread_id: "form:abc".to_owned(),
            to: None,
            subject: None,
            text: Some("hi".to_owned()),
            attachments: vec![],
            reply_to_external_id: None,
        })
        .await
        .unwrap();
        let ev = hub.next_event(Duration::from_secs(5)).await.unwrap();
        assert_eq!(ev.external_id, "outbound:9:failed");
        assert_eq!(
            ev.kind,
            InboundKind::OutboundFailed {
                message_id: 9,
                reason: NO_REPLIES.to_owned()
            }
        );
        hub.shutdown();
        task.await.unwrap().unwrap();
    }
}
