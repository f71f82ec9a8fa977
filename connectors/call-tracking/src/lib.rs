//! Kommutator connector for **call-tracking and cloud-PBX webhooks**: Zadarma, Mango
//! Office, Roistat and UIS/CoMagic, one instance serving each configured provider on its
//! own sub-route, each with its own credentials.
//!
//! # Routes (relative to the prefix the hub mounts for the instance)
//!
//! | route | provider | authentication |
//! |---|---|---|
//! | `GET /zadarma?zd_echo=X` | Zadarma URL check: answers `X` as text | none (by design) |
//! | `POST /zadarma` | Zadarma PBX notifications, form-encoded | header `Signature` = base64(hex(HMAC-SHA1(secret, event string))) |
//! | `POST /mango/events/{kind}` | Mango Office VPBX (`call`, `recording`, `summary`, …): give Mango the URL up to `/mango` | form `vpbx_api_key` + `sign` = hex(SHA-256(key + json + salt)) |
//! | `POST /roistat/start`, `POST /roistat/end` | Roistat `webhook_start` / `webhook`, JSON | shared token (`?token=` or `Bearer`) |
//! | `POST /uis` | UIS/CoMagic notifications, JSON or form, template below | shared token (`?token=` or `Bearer`) |
//!
//! Only configured providers get routes. Secrets are compared in constant time.
//! Answers: `{}` with 200 once the event was handed to the hub; `{"error": "…"}` with 401
//! (credentials missing), 403 (wrong signature, key or token; or a Zadarma event whose
//! signing scheme is unknown), 400 (malformed body, missing field), 413 (body over
//! 64 KiB), 503 (hub shutting down: the provider retries). Nothing reaches the hub on an
//! error.
//!
//! # Mapping and external ids
//!
//! Keys are prefixed with the provider so they never collide within the instance;
//! `call_external_id` is `{provider}:{the provider's call id}`.
//!
//! - **Zadarma** (signature strings per event from the official PHP SDK):
//!   `NOTIFY_START` → `ringing` (`zadarma:{pbx_call_id}:start`); `NOTIFY_INTERNAL` →
//!   `ringing` at `internal` (`…:internal:{internal}`); `NOTIFY_ANSWER` → `answered`
//!   (`…:answer:{internal}`); `NOTIFY_END` / `NOTIFY_OUT_END` → from `disposition`:
//!   `answered` → `hung_up` (duration; cause = `status_code`), `busy` / `cancel` /
//!   `no answer` → `missed`, other failures → `missed` `no_answer` inbound, `failed`
//!   outbound (`…:end`, `…:out_end`); `NOTIFY_OUT_START` → outbound `ringing`
//!   (`…:out_start`); `NOTIFY_RECORD` → `recording_available`
//!   (`…:record:{call_id_with_rec}`); `NOTIFY_IVR` → `unknown`. `occurred_at` is the
//!   receive time: `call_start` has no time zone.
//! - **Mango** `events/call`: `external_id` `mango:{entry_id}:{seq}`. `Appeared` →
//!   `ringing`, `Connected` → `answered`, `Disconnected` → `hung_up` (talk time from the
//!   `Connected` timestamp) or, for the last leg of an entry never answered, `missed`
//!   (`disconnect_reason` 11xx → `cancelled`, else `no_answer`); a leg ending while others
//!   go on and `OnHold` → `unknown`. Mango posts in parallel, so notifications arrive out
//!   of order: the connector keeps each entry's last `seq` (10 000 entries at most, oldest
//!   forgotten first) and turns a lower or equal `seq` into an `unknown` event with the
//!   same key (a redelivery is thus a duplicate for the hub; a stale one is kept for
//!   audit, not applied). State changes only after the hub accepted the event.
//!   `events/recording` `Completed` → `recording_available`
//!   (`mango:{entry_id}:recording:{recording_id}:completed`); `summary` and other kinds →
//!   `unknown` (`mango:{entry_id}:{kind}`). `occurred_at` is Mango's `timestamp`.
//! - **Roistat**: `/roistat/start` → inbound `ringing` `caller` → `callee`
//!   (`roistat:{id}:start`); `/roistat/end` → `unknown` (`roistat:{id}:end`), the body
//!   kept in `raw`.
//! - **UIS**: `uis:{call_session_id}:{event}`, mapping in the template section below.
//!
//! Numbers go toward E.164 with `default_country_code`; numbers of at most
//! `max_extension_len` digits are extensions, kept as is. `raw` is the notification as a
//! JSON object (Zadarma's form fields, Mango's `json` without key and sign, the Roistat
//! and UIS bodies).
//!
//! # Traffic source: `raw.traffic_source`
//!
//! `CallEventKind::Ringing` has no field for it, so the ringing event of a call (every
//! Roistat event, which all repeat it) carries an object under the fixed key
//! `traffic_source` in `raw`, with only the fields the provider gave:
//!
//! ```json
//! {"utm_source": "yandex", "utm_medium": "cpc", "utm_campaign": "spring",
//!  "utm_term": "buy sofa", "utm_content": "ad1", "visit_id": "123456",
//!  "landing_page": "example.ru/sale", "provider": "roistat"}
//! ```
//!
//! Provider extras: Roistat adds `marker` (its visit source); Mango, whose webhooks carry
//! no UTM, gives `tracking_number` and `tracking_type` (`dynamic` / `static`) from `dct`
//! when `dct.type` is not 0. Zadarma webhooks carry no source at all.
//!
//! # UIS template
//!
//! UIS lets the account owner write the notification body, so this connector defines the
//! field names. Per notification, put a literal `event` and map UIS variables, e.g. JSON:
//!
//! ```text
//! {"event": "ringing", "call_session_id": "{{call_session_id}}",
//!  "calling_phone_number": "{{calling_phone_number}}",
//!  "called_phone_number": "{{virtual_phone_number}}", "direction": "{{direction}}",
//!  "notification_timestamp": "{{notification_timestamp}}", "utm_source": "…", …}
//! ```
//!
//! | `event` | maps to | other fields read |
//! |---|---|---|
//! | `ringing` | `ringing` | `calling_phone_number`, `called_phone_number` (or `virtual_phone_number`), `direction` (`in`/`out`, default in), `extension`, `utm_*`, `visit_id`, `landing_page` |
//! | `answered` | `answered` | `extension` |
//! | `hung_up` | `hung_up` | `duration` (seconds), `finish_reason` |
//! | `missed` | `missed` | `reason`: `busy`, `cancelled`, `rejected`, else `no_answer` |
//! | `recording` | `recording_available` | `recording_url` |
//! | anything else | `unknown` | |
//!
//! # Config
//!
//! ```toml
//! [connectors.tracking]
//! type = "call_tracking"
//! default_country_code = "7"     # optional
//! max_extension_len = 5          # optional, 1..=8
//! [connectors.tracking.zadarma]
//! secret = "zadarma-api-secret"
//! [connectors.tracking.mango]
//! api_key = "vpbx-api-key"
//! api_salt = "vpbx-api-salt"
//! [connectors.tracking.roistat]
//! token = "a-long-random-token-1"   # at least 16 characters
//! [connectors.tracking.uis]
//! token = "a-long-random-token-2"
//! ```
//!
//! At least one provider table is required.
//!
//! # Limitations (what the sources we rely on do not say)
//!
//! - **Roistat** documents no signature or secret for its webhooks, so the connector
//!   requires a shared token in the URL it is given (`?token=`). The after-call body's
//!   extra fields (result, duration, recording) are not documented in our sources: that
//!   webhook becomes an `unknown` event with the body in `raw`, so a Roistat-only setup
//!   gets `ringing` but no end of call. The body's `date` has no time zone and is not used.
//! - **UIS** notifications are unsigned and their body is the customer's template: the
//!   shared token and the field names above are this connector's contract, not UIS's. The
//!   values of `direction` and UIS's own event names are not documented in our sources.
//! - **Zadarma** sends no recording URL: `recording_available.url` is the reference
//!   `zadarma:record:{call_id_with_rec}`, to be resolved through Zadarma's API
//!   (`pbx/record/request`). `call_start` has no time zone, so `occurred_at` is the
//!   receive time. Events whose signing scheme the SDK does not give (`SMS`,
//!   `SPEECH_RECOGNITION`) are refused with 403 rather than accepted unverified.
//! - **Mango**: `disconnect_reason` codes are documented only by range, so missed reasons
//!   are coarse (11xx → `cancelled`, else `no_answer`). Recordings are the reference
//!   `mango:recording:{recording_id}`; the download call is not in our sources. The
//!   `summary` fields beyond those the note names are unknown, so `summary` is `unknown`.
//!   Dropping stale `seq`s follows Mango's advice but means a late notification is only
//!   audited, not applied; a `Disconnected` for an entry never seen becomes `hung_up`
//!   without duration. Entry state is in memory and lost on restart.
//!
//! # Fixtures
//!
//! `tests/fixtures/` holds notifications written for this crate from the documented field
//! lists (Zadarma's PHP SDK, Mango's VPBX API PDF as summarized in the project's research
//! note, Roistat's help page, the UIS notification variables); provenance in the README
//! there. No captured traffic was available.

mod common;
mod http;
mod mango;
mod roistat;
mod uis;
mod zadarma;

use kommutator_sdk::{Connector, ConnectorContext, ConnectorError};
use serde::Deserialize;
use tokio::sync::Mutex;

pub use common::{Mapped, ParseError, TrafficSource, MAX_BODY_BYTES, TRAFFIC_SOURCE_KEY};
pub use kommutator_sdk::phone::{is_valid_country_code, normalize_number, Number, NumberPlan};
pub use kommutator_sdk::Secret;
pub use mango::{
    mango_sign, map_mango_call, map_mango_other, map_mango_recording, parse_mango_call,
    parse_mango_envelope, verify_mango_sign, MangoCallEvent, MangoEntry, MangoEnvelope, MangoLeg,
    MangoParty,
};
pub use roistat::{map_roistat, parse_roistat, RoistatCall, RoistatStage};
pub use uis::{map_uis, parse_uis, UisNotification};
pub use zadarma::{
    map_zadarma, parse_zadarma, verify_zadarma_signature, zadarma_sign, zadarma_signature_string,
    SignatureError, ZadarmaNotification,
};

/// The shortest shared token `new` accepts.
pub const MIN_TOKEN_LEN: usize = 16;

/// `[…zadarma]`: the API secret key of the Zadarma account (it signs notifications).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZadarmaConfig {
    /// The API secret.
    pub secret: Secret,
}

/// `[…mango]`: the VPBX API key and salt ("подпись") of the Mango Office account.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MangoConfig {
    /// `vpbx_api_key`.
    pub api_key: Secret,
    /// The salt used in `sign`.
    pub api_salt: Secret,
}

/// `[…roistat]` / `[…uis]`: a shared token put in the webhook URL (`?token=`) or sent as
/// `Authorization: Bearer`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The token, at least 16 characters.
    pub token: Secret,
}

/// The instance's config table (see the crate docs for an example).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The country calling code to assume for national numbers (digits, e.g. `"7"`).
    #[serde(default)]
    pub default_country_code: Option<String>,
    /// Numbers of at most this many digits are internal extensions (1 to 8; default 5).
    #[serde(default = "default_max_extension_len")]
    pub max_extension_len: usize,
    /// Zadarma, if used.
    #[serde(default)]
    pub zadarma: Option<ZadarmaConfig>,
    /// Mango Office, if used.
    #[serde(default)]
    pub mango: Option<MangoConfig>,
    /// Roistat, if used.
    #[serde(default)]
    pub roistat: Option<TokenConfig>,
    /// UIS / CoMagic, if used.
    #[serde(default)]
    pub uis: Option<TokenConfig>,
}

fn default_max_extension_len() -> usize {
    NumberPlan::DEFAULT_MAX_EXTENSION_LEN
}

/// The connector: webhook routes per configured provider, nothing to run.
#[derive(Debug)]
pub struct CallTracking {
    plan: NumberPlan,
    zadarma: Option<ZadarmaConfig>,
    mango: Option<MangoConfig>,
    roistat: Option<TokenConfig>,
    uis: Option<TokenConfig>,
}

fn check_secret(field: &str, secret: &Secret, min_len: usize) -> Result<(), ConnectorError> {
    let s = secret.expose();
    if s.trim() != s || s.chars().any(char::is_control) {
        return Err(ConnectorError::config(
            field,
            "must not have surrounding whitespace or control characters",
        ));
    }
    if s.is_empty() {
        return Err(ConnectorError::config(field, "must not be empty"));
    }
    if s.chars().count() < min_len {
        return Err(ConnectorError::config(
            field,
            format!("must be at least {min_len} characters"),
        ));
    }
    Ok(())
}

impl Connector for CallTracking {
    const KIND: &'static str = "call_tracking";
    type Config = Config;

    fn new(config: Config) -> Result<Self, ConnectorError> {
        if let Some(cc) = &config.default_country_code {
            if !is_valid_country_code(cc) {
                return Err(ConnectorError::config(
                    "default_country_code",
                    "must be 1 to 3 digits, not starting with 0 (e.g. \"7\")",
                ));
            }
        }
        if !(1..=8).contains(&config.max_extension_len) {
            return Err(ConnectorError::config(
                "max_extension_len",
                "must be between 1 and 8",
            ));
        }
        if let Some(z) = &config.zadarma {
            check_secret("zadarma.secret", &z.secret, 1)?;
        }
        if let Some(m) = &config.mango {
            check_secret("mango.api_key", &m.api_key, 1)?;
            check_secret("mango.api_salt", &m.api_salt, 1)?;
        }
        if let Some(r) = &config.roistat {
            check_secret("roistat.token", &r.token, MIN_TOKEN_LEN)?;
        }
        if let Some(u) = &config.uis {
            check_secret("uis.token", &u.token, MIN_TOKEN_LEN)?;
        }
        if config.zadarma.is_none()
            && config.mango.is_none()
            && config.roistat.is_none()
            && config.uis.is_none()
        {
            return Err(ConnectorError::config(
                "zadarma",
                "configure at least one provider: zadarma, mango, roistat or uis",
            ));
        }
        Ok(Self {
            plan: NumberPlan::new(config.default_country_code, config.max_extension_len),
            zadarma: config.zadarma,
            mango: config.mango,
            roistat: config.roistat,
            uis: config.uis,
        })
    }

    fn routes(&self, ctx: &ConnectorContext) -> Option<axum::Router> {
        Some(http::router(http::App {
            sender: ctx.sender(),
            plan: self.plan.clone(),
            zadarma_secret: self.zadarma.as_ref().map(|z| z.secret.clone()),
            mango: self
                .mango
                .as_ref()
                .map(|m| (m.api_key.clone(), m.api_salt.clone())),
            roistat_token: self
                .roistat
                .as_ref()
                .map(|r| http::digest(r.token.expose())),
            uis_token: self.uis.as_ref().map(|u| http::digest(u.token.expose())),
            mango_entries: Mutex::new(kommutator_sdk::CallTable::new(http::MAX_TRACKED_ENTRIES)),
        }))
    }

    async fn run(self, ctx: ConnectorContext) -> Result<(), ConnectorError> {
        // Webhook only: the router does the work; run just lives until shutdown.
        ctx.shutdown().cancelled().await;
        Ok(())
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
    fn config_hides_secrets_and_rejects_unknown_fields() {
        let cfg = config(json!({
            "zadarma": {"secret": "zsecret"},
            "mango": {"api_key": "mkey", "api_salt": "msalt"},
            "roistat": {"token": "roistat-token-0123"},
            "uis": {"token": "uis-token-0123456"}
        }));
        let debug = format!("{cfg:?}");
        for secret in [
            "zsecret",
            "mkey",
            "msalt",
            "roistat-token-0123",
            "uis-token-0123456",
        ] {
            assert!(!debug.contains(secret), "{debug}");
        }
        let conn = CallTracking::new(cfg).unwrap();
        assert!(!format!("{conn:?}").contains("zsecret"));
        for bad in [
            json!({"zadarma": {"secret": "s"}, "provider": "x"}),
            json!({"zadarma": {"secret": "s", "key": "k"}}),
            json!({"mango": {"api_key": "k"}}),
        ] {
            assert!(
                serde_json::from_value::<Config>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn new_validates_each_field() {
        let cases = [
            (
                json!({}),
                "zadarma",
                "configure at least one provider: zadarma, mango, roistat or uis",
            ),
            (
                json!({"zadarma": {"secret": ""}}),
                "zadarma.secret",
                "must not be empty",
            ),
            (
                json!({"zadarma": {"secret": " s"}}),
                "zadarma.secret",
                "must not have surrounding whitespace or control characters",
            ),
            (
                json!({"mango": {"api_key": "k", "api_salt": ""}}),
                "mango.api_salt",
                "must not be empty",
            ),
            (
                json!({"roistat": {"token": "short"}}),
                "roistat.token",
                "must be at least 16 characters",
            ),
            (
                json!({"uis": {"token": "short"}}),
                "uis.token",
                "must be at least 16 characters",
            ),
            (
                json!({"uis": {"token": "uis-token-0123456"}, "default_country_code": "07"}),
                "default_country_code",
                "must be 1 to 3 digits, not starting with 0 (e.g. \"7\")",
            ),
            (
                json!({"uis": {"token": "uis-token-0123456"}, "max_extension_len": 0}),
                "max_extension_len",
                "must be between 1 and 8",
            ),
        ];
        for (v, field, message) in cases {
            let err = CallTracking::new(config(v.clone())).unwrap_err();
            assert!(!err.is_retryable());
            assert_eq!(
                err.to_string(),
                format!("invalid config field `{field}`: {message}"),
                "{v}"
            );
        }
    }

    #[tokio::test]
    async fn run_returns_on_shutdown() {
        let conn = CallTracking::new(config(json!({"zadarma": {"secret": "s"}}))).unwrap();
        let (ctx, hub) = ConnectorContext::for_test("ct");
        assert!(conn.routes(&ctx).is_some());
        let task = tokio::spawn(conn.run(ctx));
        hub.shutdown();
        task.await.unwrap().unwrap();
    }
}
