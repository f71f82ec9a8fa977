//! HEP collector for Kommutator: receives HEPv3 (the Homer encapsulation protocol) from a
//! SIP proxy that mirrors its traffic, such as Kamailio's `siptrace`, and derives call
//! events from the SIP inside, without a PBX API.
//!
//! - [`hep`]: HEPv3 framing, [`parse_hep`] (pure).
//! - [`sip`]: a tolerant reader of the SIP fields calls need, [`parse_sip`] (pure).
//! - [`number`]: extensions and numbers toward E.164, [`normalize_party`] (pure).
//! - [`calls`]: [`CallTracker`], the per-Call-ID state machine with deduplication of the
//!   proxy's two copies of each message, a reorder window, expiry and a cap (pure).
//! - `collector`: the UDP/TCP receivers, a bounded queue and the processing loop.
//!
//! # Config
//!
//! ```toml
//! [connectors.office_sip]
//! type = "hep"
//! udp_bind = "127.0.0.1:9060"          # default
//! tcp_bind = "127.0.0.1:9061"          # optional, HEP framed by its length field
//! auth_key = "change-me"               # optional: drop packets without this key
//! default_country_code = "7"           # required: 89161234567 → +79161234567
//! national_prefix = "8"                # default "8" for 7, "1" for 1, else "0"
//! extension_max_len = 4                # all-digit users of ≤ 4 digits are extensions
//! internal_domains = ["pbx.example.com"]  # alice@pbx.example.com is internal too
//! reorder_window_ms = 200
//! call_idle_timeout_secs = 7200
//! max_calls = 10000
//! ```
//!
//! Kamailio side (research note `anchors-telephony.md` §3.4): `siptrace` with
//! `duplicate_uri "sip:127.0.0.1:9060"`, `hep_mode_on 1`, **`hep_version 3`** (the default
//! is 1, which this collector rejects with a message saying so), `trace_on 1`,
//! `trace_mode 1`, and `auth_key` when the collector has one.
//!
//! # Events and their keys
//!
//! `call_external_id` is the SIP Call-ID (through `normalize_external_id`, at most 200
//! bytes). Each event's `external_id` is `{call-id}:{step}`, the same for every copy or
//! retransmission of the message behind it:
//!
//! | SIP | event | step |
//! |---|---|---|
//! | INVITE (no To-tag), else the first 18x/final response/CANCEL seen | `ringing {from, to, direction, extension}` | `ringing` |
//! | 180/183 | (confirms ringing, no event) | |
//! | 2xx to INVITE | `answered {by_extension}` | `answered` |
//! | CANCEL (not `Reason: …cause=200`), 487 | `missed {cancelled}` | `missed` |
//! | 486, 600 / 603 / 408, 480 | `missed {busy}` / `{rejected}` / `{no_answer}` | `missed` |
//! | other 4xx–6xx (not 401, 407, 422, 491) | `failed {reason: "404 Not Found"}` | `failed` |
//! | BYE, or a 200 to BYE whose BYE was lost | `hung_up {duration_secs, cause}` | `hung_up` |
//! | REFER | `transferred {to_extension}` (the Refer-To user) | `transferred:{cseq}` |
//! | MESSAGE, an unknown method | `Unknown {"sip FOO request"}` | `request:{METHOD}:{cseq}` |
//!
//! `from`/`to` are extensions as dialled (`101`) or numbers toward E.164
//! (`+79161234567`). `direction` is `outbound` when an internal party calls an external
//! one, else `inbound`; `extension` is the internal side. `duration_secs` is the time
//! from the 200 to the BYE, rounded; `cause` is the `text` of a `Reason` header. `raw`
//! holds the message's HEP addresses, capture time and ids and its key SIP fields (no
//! body), plus `derived` notes (`hung_up_by`: caller/callee). Example:
//!
//! ```json
//! {"external_id": "c41fbddf08e78d4c:hung_up",
//!  "kind": {"type": "call", "call_external_id": "c41fbddf08e78d4c",
//!           "kind": {"type": "hung_up", "duration_secs": 2, "cause": null}}}
//! ```
//!
//! Valid traffic with no call meaning (ACK, 100, OPTIONS, REGISTER, SUBSCRIBE/NOTIFY,
//! re-INVITEs, non-SIP HEP such as RTCP) produces no event: it is counted as `ignored`
//! and logged at DEBUG. Bad packets are counted and logged at WARN, one line per 10 s
//! per kind. Counters: [`HepConnector::stats`].
//!
//! # Fixtures
//!
//! `tests/fixtures/captured/` holds HEP captured from Kamailio 5.6.3 + baresip 1.0.0 on
//! the development machine; `tests/fixtures/sessions/` holds SIP sessions written for
//! this crate in the shape those tools produce, plus hostile variants. Provenance is in
//! `tests/fixtures/README.md`.

pub mod calls;
mod collector;
mod config;
pub mod hep;
pub mod number;
pub mod sip;
mod stats;

use std::sync::Arc;

use kommutator_sdk::{Connector, ConnectorContext, ConnectorError};

pub use calls::{CallTracker, CallUpdate, Captured, Ingest, TrackError, TrackerSettings};
pub use config::{AuthKey, Config};
pub use hep::{hep_frame_len, parse_hep, HepError, HepPacket};
pub use number::{normalize_number, normalize_party, NumberRules, PartyNumber};
pub use sip::{parse_sip, SipError, SipMessage};
pub use stats::{HepStats, StatsSnapshot};

/// The HEP collector connector (`type = "hep"`). Receive-only: outbound messages are
/// answered with `outbound_failed`.
#[derive(Debug)]
pub struct HepConnector {
    settings: config::Settings,
    stats: Arc<HepStats>,
}

impl HepConnector {
    /// A handle on the instance's counters and bound addresses, valid across `run`.
    pub fn stats(&self) -> Arc<HepStats> {
        Arc::clone(&self.stats)
    }
}

impl Connector for HepConnector {
    const KIND: &'static str = "hep";
    type Config = Config;

    fn new(config: Config) -> Result<Self, ConnectorError> {
        Ok(Self {
            settings: config.validate()?,
            stats: Arc::default(),
        })
    }

    async fn run(self, ctx: ConnectorContext) -> Result<(), ConnectorError> {
        collector::run(self.settings, self.stats, ctx).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The example in the crate docs is a valid config.
    #[test]
    fn doc_example_config() {
        let doc = include_str!("lib.rs");
        let start = doc.find("//! ```toml\n").unwrap() + "//! ```toml\n".len();
        let end = start + doc[start..].find("//! ```").unwrap();
        let table: String = doc[start..end]
            .lines()
            .map(|l| l.trim_start_matches("//!").trim_start())
            .filter(|l| !l.starts_with('[') && !l.starts_with("type"))
            .map(|l| format!("{l}\n"))
            .collect();
        let config: Config = toml::from_str(&table).unwrap();
        let connector = HepConnector::new(config).unwrap();
        assert_eq!(HepConnector::KIND, "hep");
        assert!(!format!("{connector:?}").contains("change-me"));
        assert_eq!(connector.stats().snapshot(), StatsSnapshot::default());
    }

    #[test]
    fn new_rejects_bad_config() {
        let config: Config = toml::from_str("default_country_code = \"x\"").unwrap();
        let err = HepConnector::new(config).unwrap_err();
        assert!(
            matches!(err, ConnectorError::Config { ref field, .. } if field == "default_country_code")
        );
    }
}
