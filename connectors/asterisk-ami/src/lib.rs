//! Asterisk Manager Interface (AMI) connector of Kommutator: call events from an Asterisk
//! PBX (FreePBX, Issabel, plain Asterisk 13 to 22), and click-to-call.
//!
//! # Protocol
//!
//! AMI is a line protocol over TCP (port 5038): the server greets with
//! `Asterisk Call Manager/<version>`, then both sides exchange messages of `Key: Value`
//! lines ended by a blank line. The connector logs in (MD5 challenge, or plain), asks only
//! for the event classes it needs (`call,agent`, plus `dialplan` when recordings are
//! wanted), resyncs from `CoreShowChannels`, pings every `ping_interval_secs`, and turns
//! the events of each call (grouped by `Linkedid`) into [`CallEvent`](kommutator_sdk::CallEvent)s.
//! Module map:
//!
//! - [`codec`]: framing (pure [`codec::parse_frame`], `tokio_util` codec), size caps;
//! - [`numbers`]: E.164 normalization, extensions from channel names;
//! - [`tracker`]: the pure call state machine;
//! - `session`: the I/O loop (reader task, backlog, login, ping, resync, reconnect).
//!
//! # Config
//!
//! ```toml
//! [connectors.office_pbx]
//! type = "asterisk_ami"
//! host = "10.0.0.5"
//! username = "crmhub"
//! secret = "…"
//! default_country_code = "7"
//! recording_base_url = "https://pbx.example/monitor/"
//! ```
//!
//! Every field is described on [`Config`]. The manager user needs `read = call,agent`
//! (`,dialplan` for recordings) and `write = originate,call`; `timestampevents = yes` in
//! `manager.conf` gives every event its PBX time (otherwise the receive time is used).
//!
//! # Events and their `external_id`
//!
//! Every event is an [`InboundKind::Call`](kommutator_sdk::InboundKind::Call) whose
//! `call_external_id` is the call's `Linkedid` (for click-to-call: the hub's
//! `call_external_id`, passed as the `Originate` channel id so that Asterisk uses it as
//! the `Linkedid`). The `external_id` is `{call_external_id}:{step}`:
//!
//! | step | kind |
//! |---|---|
//! | `ringing` | `Ringing` of an inbound call as it reaches the PBX (no extension yet) |
//! | `ringing:{ext}` | `Ringing` at extension `ext` (inbound), or the dialing extension (outbound) |
//! | `answered` / `answered:{ext}` | `Answered`; the second form when another extension takes the call over later |
//! | `transferred:{to}` | `Transferred` (blind or attended) |
//! | `hangup` | `HungUp` with talk time and `Cause-txt`, for answered calls |
//! | `missed` | `Missed` with `cancelled` / `busy` / `no_answer` / `rejected`, for unanswered calls |
//! | `failed` | `Failed`: the PBX refused a click-to-call |
//! | `recording:{file name}` | `RecordingAvailable`, when the call ends |
//!
//! Steps are stable across redelivery and resync: after a reconnect the connector never
//! sends a step twice, and a restarted connector re-sends only steps the hub already has.
//! `raw` is the AMI message that caused the event, as a JSON object of its fields.
//! Calls between extensions are not reported, nor are AMI events outside a call's life
//! (peer status, RTCP, dialplan steps): they are ignored with a DEBUG line, as mapping
//! each of hundreds of per-call state messages to `Unknown` would flood the hub.
//!
//! # Reconnects
//!
//! A failure before the first login returns the error (`Connect`, `Protocol`) to the hub's
//! supervisor, which retries and shows the instance as reconnecting. Bad credentials are
//! `Auth`, never retried. Once a session has run, the connector reconnects by itself
//! (jittered backoff from 0.5 s up to `max_backoff_secs`), so it keeps its call state and
//! can close the calls that ended while it was away; click-to-calls asked for meanwhile
//! fail at once (`failed`) rather than ring minutes later.
//!
//! # Backpressure
//!
//! A reader task drains the socket into a bounded backlog (`max_backlog_messages`,
//! 64 MiB) without ever waiting, because Asterisk disconnects clients that stop reading
//! for 100 ms. When the hub is slow the backlog grows; when it is full the session is
//! dropped and resynced after the reconnect, and every call that ended meanwhile still
//! gets its terminal event (with a "disconnected" cause). Details in `session`.
//!
//! # Fixtures
//!
//! `tests/fixtures/*.ami` are AMI sessions written for this crate in the exact shape of
//! Asterisk 18 traffic (field names and order as `manager.c` emits them); none is a
//! capture of a real PBX. `tests/fixtures/README.md` describes each one.

mod backoff;
pub mod codec;
mod config;
pub mod numbers;
mod session;
pub mod tracker;

use kommutator_sdk::{Connector, ConnectorContext, ConnectorError};

pub use config::{AuthMethod, Config, Secret};

/// The Asterisk AMI connector (`type = "asterisk_ami"`).
#[derive(Debug)]
pub struct AsteriskAmi {
    settings: config::Settings,
}

impl Connector for AsteriskAmi {
    const KIND: &'static str = "asterisk_ami";
    const CAN_ORIGINATE: bool = true;
    type Config = Config;

    fn new(config: Config) -> Result<Self, ConnectorError> {
        Ok(Self {
            settings: config.validate()?,
        })
    }

    async fn run(self, ctx: ConnectorContext) -> Result<(), ConnectorError> {
        session::run(self.settings, ctx).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn new_validates_without_io() {
        let cfg: Config = serde_json::from_value(serde_json::json!({
            "host": "pbx.invalid", "username": "crm", "secret": "x"
        }))
        .unwrap();
        let connector = AsteriskAmi::new(cfg).unwrap();
        assert!(!format!("{connector:?}").contains("\"x\""));
        assert_eq!(AsteriskAmi::KIND, "asterisk_ami");
        const { assert!(AsteriskAmi::CAN_ORIGINATE) };

        let bad: Config = serde_json::from_value(serde_json::json!({
            "host": "pbx.invalid", "username": "crm", "secret": "x", "port": 0
        }))
        .unwrap();
        let err = AsteriskAmi::new(bad).unwrap_err();
        assert!(matches!(err, ConnectorError::Config { ref field, .. } if field == "port"));
    }
}
