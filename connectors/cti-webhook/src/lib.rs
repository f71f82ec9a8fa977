//! Kommutator connector for PBX call events pushed in the **Zammad generic CTI** shape.
//!
//! Many PBXs and middleware (and small scripts around Asterisk, FreeSWITCH or a cloud
//! PBX) can push the three events of Zammad's generic CTI API. This connector accepts
//! that shape, so such a PBX can feed the hub without a connector of its own.
//!
//! # Protocol
//!
//! `POST` to the route the hub mounts for the instance, body form-urlencoded or JSON
//! (picked by `Content-Type`, else sniffed), fields as in Zammad's generic CTI docs:
//!
//! | `event` | fields | event sent to the hub |
//! |---|---|---|
//! | `newCall` | `from`, `to`, `direction` (`in`/`out`), `callId`, `user[]`/`user`, `queue` | `ringing` |
//! | `answer` | `callId`, `answeringNumber`, `user`, … | `answered` by `answeringNumber`, else the first `user` |
//! | `hangup` | `callId`, `cause`, `answeringNumber`, … | `hung_up` or `missed` (below) |
//!
//! Authentication: a shared token as `?token=` or `Authorization: Bearer <token>`,
//! compared in constant time. (Zammad puts the token in the URL path; here the hub owns
//! the path, so the token moves to the query.)
//!
//! Numbers are normalized toward E.164 with `default_country_code` (`84951234567` →
//! `+74951234567` for `7`); numbers of at most `max_extension_len` digits are extensions and
//! kept as is. In `ringing`, `extension` is the extension side of the call if any
//! (`to` of an inbound call, `from` of an outbound one).
//!
//! `hangup` → `hung_up` with the talk time when this instance saw the `answer` (our
//! receive times; the protocol carries no times, so every `occurred_at` is the receive
//! time). A call that rang and was never answered → `missed`, its reason from `cause`:
//! `cancel`/`normalClearing` → `cancelled`, `busy`/`congestion` → `busy`, `noAnswer` →
//! `no_answer`, `notFound` → `rejected`; `forwarded` → `hung_up` without duration (Zammad
//! does not count a forwarded call as missed). When the call is unknown (restart,
//! forgotten, no `newCall` sent) the cause alone decides: the missed causes above →
//! `missed`, anything else → `hung_up` with `duration_secs: None`. The connector keeps
//! at most 10 000 unfinished calls (the oldest is forgotten first).
//!
//! Blocked callers: a `newCall` with `direction=in` from a number in `blocked_numbers`
//! (normalized the same way) is answered `{"action":"reject","reason":"busy"}`, Zammad's
//! answer, after the `ringing` event is recorded with `"rejected_as_blocked": true` added
//! to its `raw`. Every other success is answered `{}` with 200.
//!
//! Errors, with a JSON body `{"error": "…"}` and nothing sent to the hub: missing or wrong
//! token 401, malformed body, missing field, unknown `event` or invalid `direction` 400,
//! a body over 64 KiB 413, and 503 when the hub is shutting down (the PBX retries).
//! The answer is 2xx only after the event was handed to the hub.
//!
//! An `event` other than the three is answered 400 rather than mapped to an `unknown`
//! event: the generic CTI API has exactly these three, so anything else is a
//! misconfigured sender, and a 4xx makes that visible on its side.
//!
//! # External ids
//!
//! `call_external_id` is the `callId` (trimmed; a `callId` over 200 bytes becomes
//! `sha256:<hex>` so the keys below fit 256 bytes). Each event's `external_id` is
//! `{callId}:{event}`: `c1:newCall`, `c1:answer`, `c1:hangup`. A redelivered request gets
//! the same key and the hub keeps one copy. `raw` is the request's fields as a JSON object
//! (form values as strings, `user` as an array).
//!
//! # Traffic source
//!
//! This protocol carries no call-tracking data, so events of this connector never have
//! the `raw.traffic_source` object that `kommutator-call-tracking` puts on its ringing
//! events.
//!
//! # Config
//!
//! ```toml
//! [connectors.office_cti]
//! type = "cti_webhook"
//! token = "a-long-random-shared-secret"   # at least 16 characters
//! default_country_code = "7"              # optional: digits of the country code
//! max_extension_len = 5                   # optional, default 5
//! blocked_numbers = ["+74950000000", "anonymous"]  # optional
//! ```
//!
//! # Limitations
//!
//! - The protocol has no timestamps: `occurred_at` and talk times are our receive times.
//! - Call state lives in memory: after a restart (or when more than 10 000 calls are
//!   open) a `hangup` falls back to its cause and carries no duration.
//! - Zammad's outbound routing answer (`{"action":"dial",…}`) is not produced; outbound
//!   `newCall` is answered `{}`.
//! - `answeringNumber` is passed through as `by_extension` untouched: Zammad reads it as
//!   a phone, login or user id, so it is not normalized as a number.
//!
//! # Fixtures
//!
//! `tests/fixtures/` holds requests written for this crate from the field tables and
//! examples of Zammad's public generic CTI documentation (provenance in the README
//! there); no captured traffic was available.

mod http;
mod map;
mod parse;

use kommutator_sdk::{Connector, ConnectorContext, ConnectorError};
use serde::Deserialize;
use tokio::sync::Mutex;

pub use kommutator_sdk::phone::{is_valid_country_code, normalize_number, Number, NumberPlan};
pub use kommutator_sdk::Secret;
pub use map::{call_key, normalize_blocked, normalize_cti, CallRecord, CtiOutcome, StateUpdate};
pub use parse::{parse_cti, CtiDirection, CtiEventType, CtiParseError, CtiRequest, MAX_BODY_BYTES};

/// The shortest token `new` accepts.
pub const MIN_TOKEN_LEN: usize = 16;

/// The instance's config table (see the crate docs for an example).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The shared token the PBX sends as `?token=` or `Authorization: Bearer`.
    pub token: Secret,
    /// The country calling code to assume for national numbers (digits, e.g. `"7"`).
    #[serde(default)]
    pub default_country_code: Option<String>,
    /// Numbers of at most this many digits are internal extensions (1 to 8; default 5).
    #[serde(default = "default_max_extension_len")]
    pub max_extension_len: usize,
    /// Callers whose inbound calls the PBX is told to reject.
    #[serde(default)]
    pub blocked_numbers: Vec<String>,
}

fn default_max_extension_len() -> usize {
    NumberPlan::DEFAULT_MAX_EXTENSION_LEN
}

/// The connector: one webhook route, nothing to run.
#[derive(Debug)]
pub struct CtiWebhook {
    token: Secret,
    plan: NumberPlan,
    blocked: Vec<String>,
}

impl Connector for CtiWebhook {
    const KIND: &'static str = "cti_webhook";
    type Config = Config;

    fn new(config: Config) -> Result<Self, ConnectorError> {
        let token = config.token.expose();
        if token.trim() != token || token.chars().any(char::is_control) {
            return Err(ConnectorError::config(
                "token",
                "must not have surrounding whitespace or control characters",
            ));
        }
        if token.chars().count() < MIN_TOKEN_LEN {
            return Err(ConnectorError::config(
                "token",
                format!("must be at least {MIN_TOKEN_LEN} characters"),
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
        if !(1..=8).contains(&config.max_extension_len) {
            return Err(ConnectorError::config(
                "max_extension_len",
                "must be between 1 and 8",
            ));
        }
        let plan = NumberPlan::new(config.default_country_code, config.max_extension_len);
        if let Some(i) = config
            .blocked_numbers
            .iter()
            .position(|n| n.trim().is_empty())
        {
            return Err(ConnectorError::config(
                "blocked_numbers",
                format!("entry {i} is empty"),
            ));
        }
        let blocked = normalize_blocked(&config.blocked_numbers, &plan);
        Ok(Self {
            token: config.token,
            plan,
            blocked,
        })
    }

    fn routes(&self, ctx: &ConnectorContext) -> Option<axum::Router> {
        Some(http::router(http::Hook {
            sender: ctx.sender(),
            token_digest: http::digest(self.token.expose()),
            plan: self.plan.clone(),
            blocked: self.blocked.clone(),
            calls: Mutex::new(kommutator_sdk::CallTable::new(http::MAX_TRACKED_CALLS)),
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
    use std::time::Duration;

    use axum::body::{to_bytes, Body};
    use axum::http::{Request, StatusCode};
    use kommutator_sdk::{CallEventKind, InboundKind, TestHarness};
    use serde_json::{json, Value};
    use tower::ServiceExt;

    use super::*;

    const TOKEN: &str = "0123456789abcdef-token";

    fn config(extra: Value) -> Config {
        let mut base = json!({"token": TOKEN, "default_country_code": "7"});
        if let (Value::Object(b), Value::Object(e)) = (&mut base, extra) {
            b.extend(e);
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn config_rejects_unknown_fields_and_hides_the_token() {
        let err = serde_json::from_value::<Config>(json!({"token": TOKEN, "tokn": 1})).unwrap_err();
        assert!(err.to_string().contains("unknown field `tokn`"), "{err}");
        let cfg = config(json!({}));
        let debug = format!("{cfg:?}");
        assert!(!debug.contains(TOKEN), "{debug}");
        assert!(debug.contains("***"), "{debug}");
        assert_eq!(cfg.max_extension_len, 5);
        let conn = CtiWebhook::new(cfg).unwrap();
        assert!(!format!("{conn:?}").contains(TOKEN));
    }

    #[test]
    fn new_validates_each_field() {
        let cases = [
            (
                json!({"token": "short"}),
                "token",
                "must be at least 16 characters",
            ),
            (
                json!({"token": " 0123456789abcdef "}),
                "token",
                "must not have surrounding whitespace or control characters",
            ),
            (
                json!({"default_country_code": "+7"}),
                "default_country_code",
                "must be 1 to 3 digits, not starting with 0 (e.g. \"7\")",
            ),
            (
                json!({"max_extension_len": 0}),
                "max_extension_len",
                "must be between 1 and 8",
            ),
            (
                json!({"max_extension_len": 9}),
                "max_extension_len",
                "must be between 1 and 8",
            ),
            (
                json!({"blocked_numbers": ["+7495", "  "]}),
                "blocked_numbers",
                "entry 1 is empty",
            ),
        ];
        for (extra, field, message) in cases {
            let err = CtiWebhook::new(config(extra.clone())).unwrap_err();
            assert!(!err.is_retryable());
            assert_eq!(
                err.to_string(),
                format!("invalid config field `{field}`: {message}"),
                "{extra}"
            );
        }
    }

    async fn post(router: &axum::Router, uri: &str, ct: &str, body: &str) -> (StatusCode, Value) {
        let req = Request::post(uri)
            .header("content-type", ct)
            .body(Body::from(body.to_owned()))
            .unwrap();
        let resp = router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    fn setup(extra: Value) -> (axum::Router, TestHarness, ConnectorContext) {
        let conn = CtiWebhook::new(config(extra)).unwrap();
        let (ctx, hub) = ConnectorContext::for_test("cti");
        let router = conn.routes(&ctx).unwrap();
        (router, hub, ctx)
    }

    #[tokio::test]
    async fn state_is_kept_only_after_send_succeeded() {
        let (router, mut hub, _ctx) = setup(json!({}));
        let form = "application/x-www-form-urlencoded";
        let uri = format!("/?token={TOKEN}");
        let (s, _) = post(
            &router,
            &uri,
            form,
            "event=newCall&callId=k&from=1234567&to=101&direction=in",
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        hub.close_inbound();
        let (s, body) = post(
            &router,
            &uri,
            form,
            "event=answer&callId=k&answeringNumber=101",
        )
        .await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"], "shutting down, retry later");
        let ev = hub.next_event(Duration::from_secs(1)).await.unwrap();
        assert_eq!(ev.external_id, "k:newCall");
        assert!(hub.try_next_event().is_none());
    }

    #[tokio::test]
    async fn run_returns_on_shutdown() {
        let conn = CtiWebhook::new(config(json!({}))).unwrap();
        let (ctx, hub) = ConnectorContext::for_test("cti");
        let task = tokio::spawn(conn.run(ctx));
        hub.shutdown();
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn hangup_after_answer_has_duration() {
        let (router, mut hub, _ctx) = setup(json!({}));
        let uri = format!("/?token={TOKEN}");
        let json = "application/json";
        for body in [
            r#"{"event":"newCall","callId":"d","from":"84951234567","to":"101","direction":"in"}"#,
            r#"{"event":"answer","callId":"d","answeringNumber":"101"}"#,
            r#"{"event":"hangup","callId":"d","cause":"normalClearing"}"#,
        ] {
            let (s, b) = post(&router, &uri, json, body).await;
            assert_eq!((s, b), (StatusCode::OK, json!({})));
        }
        let mut kinds = vec![];
        while let Some(ev) = hub.try_next_event() {
            let InboundKind::Call(call) = ev.kind else {
                panic!()
            };
            assert_eq!(call.call_external_id, "d");
            kinds.push(call.kind);
        }
        assert_eq!(kinds.len(), 3);
        assert!(
            matches!(
                kinds[2],
                CallEventKind::HungUp {
                    duration_secs: Some(_),
                    ..
                }
            ),
            "{kinds:?}"
        );
    }
}
