//! Call tracking: a pure state machine from AMI events to normalized [`CallEvent`]s.
//!
//! A call is everything sharing one `Linkedid` (Asterisk's id of the oldest channel of
//! the call); its legs are keyed by `Uniqueid`. Local channels (`Local/…;1`, `;2`) are
//! legs like any other, and every event is keyed by a step of the call, so a queue member
//! rung through a Local pair or a ring group answered twice over is reported once.
//!
//! | step (`external_id` = `{linkedid}:{step}`) | event | AMI trigger |
//! |---|---|---|
//! | `ringing` | `Ringing`, no extension: an inbound call reached the PBX | first channel of the call, from a trunk |
//! | `ringing:{ext}` | `Ringing` at extension `ext` | `DialBegin` / `AgentCalled` / `Newstate` 5 to an extension; for an outbound call, the dialing extension |
//! | `answered` | `Answered` | `DialEnd` `ANSWER`, `AgentConnect`, `BridgeEnter` of two parties |
//! | `answered:{ext}` | `Answered` by another extension later (after a transfer) | the same |
//! | `transferred:{to}` | `Transferred` | `BlindTransfer` / `AttendedTransfer` with `Result: Success` |
//! | `hangup` | `HungUp` with talk time and `Cause-txt` | the last leg's `Hangup`, call answered |
//! | `missed` | `Missed` with a reason | the last leg's `Hangup`, never answered |
//! | `failed` | `Failed` | click-to-call refused: `OriginateResponse` `Failure` or an `Originate` error |
//! | `recording:{file name}` | `RecordingAvailable` | `VarSet` `MIXMONITOR_FILENAME`, reported when the call ends |
//!
//! Direction: a call whose first channel is not an internal phone is inbound; a call from
//! an internal phone to a number that is not an extension is outbound; a call between
//! extensions is internal and reported not at all.
//!
//! After a reconnect, [`CallTracker::apply_snapshot`] takes the `CoreShowChannel` list:
//! calls that appeared meanwhile are reported from the point they reached, known calls
//! that vanished get their terminal event, and nothing already reported is reported again.

use std::collections::{HashMap, HashSet, VecDeque};

use kommutator_sdk::{
    normalize_external_id, CallEvent, CallEventKind, ConnectorId, Direction, InboundEvent,
    InboundKind, MissedReason, OriginateRequest,
};
/// Re-exported: the time type of this API.
pub use time::OffsetDateTime;

use crate::codec::AmiMessage;
use crate::numbers::{number_in_dial_string, parse_channel, NumberPlan};

/// Calls tracked at once; past this the least recently active one is forgotten (a call
/// whose `Hangup` never came). Resyncs also drop calls the PBX no longer lists.
const MAX_CALLS: usize = 10_000;
/// Ended calls remembered, so late events of an ended call do not revive it.
const FINISHED_MEMORY: usize = 4_096;
/// The `Cause` written when a call ended while the connector was not connected.
const LOST_CAUSE: &str = "ended while the connector was disconnected from the PBX";

/// What the tracker needs to know about the PBX.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrackerConfig {
    /// Numbers, extensions, internal contexts.
    pub plan: NumberPlan,
    /// Base of recording URLs; no recording events without it.
    pub recording_base_url: Option<String>,
    /// The part of `MIXMONITOR_FILENAME` paths to drop before appending the rest to
    /// `recording_base_url` (`/var/spool/asterisk/monitor/`).
    pub recording_path_prefix: String,
}

/// One normalized call event produced by the tracker.
#[derive(Debug, Clone, PartialEq)]
pub struct CallUpdate {
    /// `{linkedid}:{step}`, the idempotency key.
    pub external_id: String,
    /// When it happened: the AMI `Timestamp` when the PBX sends one, else receive time.
    pub occurred_at: OffsetDateTime,
    /// The call event.
    pub event: CallEvent,
    /// The AMI message that triggered it, as a JSON object.
    pub raw: serde_json::Value,
}

impl CallUpdate {
    /// The event to hand to the hub.
    pub fn into_inbound(self, connector_id: ConnectorId) -> InboundEvent {
        InboundEvent::new(
            connector_id,
            self.external_id,
            self.occurred_at,
            InboundKind::Call(self.event),
        )
        .with_raw(self.raw)
    }
}

/// Builds the `Failed` update of a click-to-call that never reached the PBX (invalid
/// request, no connection); `None` when `call_id` cannot be a key.
pub fn failed_update(call_id: &str, reason: &str, at: OffsetDateTime) -> Option<CallUpdate> {
    let call_id = normalize_external_id(call_id).ok()?;
    let external_id = normalize_external_id(&format!("{call_id}:failed")).ok()?;
    Some(CallUpdate {
        external_id,
        occurred_at: at,
        event: CallEvent {
            call_external_id: call_id.clone(),
            kind: CallEventKind::Failed {
                reason: reason.to_owned(),
            },
        },
        raw: serde_json::json!({ "call_external_id": call_id, "reason": reason }),
    })
}

/// The time of an AMI event: its `Timestamp: 1714566600.123456` (sent with
/// `timestampevents = yes`), if valid.
pub fn parse_event_time(msg: &AmiMessage) -> Option<OffsetDateTime> {
    let ts = msg.get_nonempty("Timestamp")?;
    let (secs, frac) = ts.split_once('.').unwrap_or((ts, ""));
    let secs: i64 = secs.trim().parse().ok()?;
    let frac = frac.trim();
    let mut micros: i64 = 0;
    if !frac.is_empty() {
        if !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let digits: String = frac.chars().chain(std::iter::repeat('0')).take(6).collect();
        micros = digits.parse().ok()?;
    }
    let nanos = i128::from(secs)
        .checked_mul(1_000_000_000)?
        .checked_add(i128::from(micros) * 1_000)?;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()
}

/// `HH:MM:SS` (`CoreShowChannel` `Duration`) in seconds.
fn parse_hms(s: &str) -> Option<i64> {
    let mut total: i64 = 0;
    for part in s.trim().split(':') {
        let n: i64 = part.parse().ok()?;
        total = total.checked_mul(60)?.checked_add(n)?;
    }
    Some(total)
}

/// The URL of a recording file under `base`: the path after `prefix` (else the file
/// name), each segment percent-encoded.
pub fn recording_url(base: &str, prefix: &str, file: &str) -> Option<String> {
    let file = file.trim();
    if file.is_empty() {
        return None;
    }
    let relative = if !prefix.is_empty() && file.starts_with(prefix) {
        file.get(prefix.len()..).unwrap_or(file)
    } else {
        file.rsplit('/').next().unwrap_or(file)
    };
    let relative = relative.trim_start_matches('/');
    if relative.is_empty() {
        return None;
    }
    let encoded: Vec<String> = relative.split('/').map(percent_encode).collect();
    Some(format!(
        "{}/{}",
        base.trim_end_matches('/'),
        encoded.join("/")
    ))
}

fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Shape {
    /// Not known yet (an internal phone dialed `s` or a feature code).
    Undecided,
    /// Between extensions: not reported.
    Internal,
    /// A customer called in.
    Inbound { from: String, to: Option<String> },
    /// An extension called out (or click-to-call).
    Outbound { extension: String, to: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OriginateState {
    /// Sent; `OriginateResponse` not seen yet.
    Pending { epoch: u64 },
    /// The operator's phone picked up, or the answer was lost with its session: the call
    /// goes on like any other.
    Settled,
}

#[derive(Debug, Default, Clone, Copy)]
struct DialOutcomes {
    cancel: bool,
    no_answer: bool,
    busy: bool,
    rejected: bool,
    unavailable: bool,
}

#[derive(Debug)]
struct Leg {
    channel: String,
    /// The session in which the leg was last seen alive.
    epoch: u64,
}

#[derive(Debug)]
struct Call {
    legs: HashMap<String, Leg>,
    shape: Shape,
    /// The extension of the first channel, when it is an internal phone.
    origin_extension: Option<String>,
    /// The first extension or queue the call was sent to: the called party of an
    /// inbound call whose DID is unknown.
    first_target: Option<String>,
    emitted: HashSet<String>,
    answered_at: Option<OffsetDateTime>,
    answered: bool,
    answered_by: Vec<String>,
    /// `Cause-txt` of the first channel's hangup once answered: how the call ended.
    hangup_cause: Option<String>,
    /// `Cause-txt` of the latest hangup after the answer, when the first channel's is
    /// unknown.
    last_cause: Option<String>,
    caller_cause: Option<u32>,
    outcomes: DialOutcomes,
    abandoned: bool,
    originate: Option<OriginateState>,
    /// A failed/succeeded terminal event was emitted.
    terminal: bool,
    /// All legs are gone but the click-to-call outcome is still awaited.
    ended_at: Option<OffsetDateTime>,
    recordings: Vec<String>,
    touched: u64,
}

impl Call {
    fn new(touched: u64) -> Self {
        Self {
            legs: HashMap::new(),
            shape: Shape::Undecided,
            origin_extension: None,
            first_target: None,
            emitted: HashSet::new(),
            answered_at: None,
            answered: false,
            answered_by: vec![],
            hangup_cause: None,
            last_cause: None,
            caller_cause: None,
            outcomes: DialOutcomes::default(),
            abandoned: false,
            originate: None,
            terminal: false,
            ended_at: None,
            recordings: vec![],
            touched,
        }
    }

    fn is_reported(&self) -> bool {
        matches!(self.shape, Shape::Inbound { .. } | Shape::Outbound { .. })
    }

    fn missed_reason(&self, default: MissedReason) -> MissedReason {
        let o = self.outcomes;
        if self.abandoned || o.cancel {
            MissedReason::Cancelled
        } else if o.no_answer {
            MissedReason::NoAnswer
        } else if o.busy {
            MissedReason::Busy
        } else if o.rejected {
            MissedReason::Rejected
        } else if o.unavailable {
            MissedReason::NoAnswer
        } else {
            match self.caller_cause {
                Some(17) => MissedReason::Busy,
                Some(21) => MissedReason::Rejected,
                Some(18 | 19) => MissedReason::NoAnswer,
                _ => default,
            }
        }
    }
}

/// The call state machine. Feed it every AMI event with [`handle_event`](Self::handle_event);
/// it returns the call events to hand to the hub, each exactly once per tracker.
#[derive(Debug)]
pub struct CallTracker {
    cfg: TrackerConfig,
    calls: HashMap<String, Call>,
    /// Uniqueid → Linkedid of every live leg.
    leg_index: HashMap<String, String>,
    /// Bridge → the Uniqueids in it.
    bridges: HashMap<String, Vec<String>>,
    finished: VecDeque<String>,
    finished_set: HashSet<String>,
    /// ActionID of an `Originate` → the call it places.
    originates: HashMap<String, String>,
    epoch: u64,
    clock: u64,
}

/// What an event said about one of its channels.
struct ChannelRef<'a> {
    uniqueid: String,
    linkedid: String,
    channel: &'a str,
}

impl CallTracker {
    /// A tracker with no call.
    pub fn new(cfg: TrackerConfig) -> Self {
        Self {
            cfg,
            calls: HashMap::new(),
            leg_index: HashMap::new(),
            bridges: HashMap::new(),
            finished: VecDeque::new(),
            finished_set: HashSet::new(),
            originates: HashMap::new(),
            epoch: 0,
            clock: 0,
        }
    }

    /// How many calls are being tracked.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Whether no call is being tracked.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Whether `call_id` is a live or recently ended call.
    pub fn knows_call(&self, call_id: &str) -> bool {
        self.calls.contains_key(call_id) || self.finished_set.contains(call_id)
    }

    /// Marks the start of a new AMI session: legs not seen from now on until the next
    /// [`apply_snapshot`](Self::apply_snapshot) are presumed gone if the snapshot does not
    /// list them.
    pub fn begin_session(&mut self) {
        self.epoch += 1;
    }

    /// Records a click-to-call sent as `Originate` with `ActionID: action_id` and
    /// `ChannelId` = `req.call_external_id`, so its events are attributed to it.
    pub fn originate_requested(&mut self, req: &OriginateRequest, action_id: &str) {
        let Ok(id) = normalize_external_id(&req.call_external_id) else {
            return;
        };
        self.originates.insert(action_id.to_owned(), id.clone());
        let epoch = self.epoch;
        let to = self.cfg.plan.normalize_number(&req.to);
        let call = self.call_entry(&id);
        call.shape = Shape::Outbound {
            extension: req.extension.clone(),
            to,
        };
        call.origin_extension = Some(req.extension.clone());
        call.originate = Some(OriginateState::Pending { epoch });
    }

    /// The PBX answered our `Originate` with `Response: Error`: the call fails.
    pub fn originate_rejected(
        &mut self,
        action_id: &str,
        message: &str,
        at: OffsetDateTime,
        raw: serde_json::Value,
    ) -> Vec<CallUpdate> {
        let mut out = vec![];
        let Some(id) = self.originates.remove(action_id) else {
            return out;
        };
        let reason = if message.is_empty() {
            "the PBX refused the call".to_owned()
        } else {
            format!("the PBX refused the call: {message}")
        };
        self.fail_call(&id, &reason, at, raw, &mut out);
        out
    }

    /// Handles one AMI event and returns the call events it produced.
    pub fn handle_event(&mut self, msg: &AmiMessage, now: OffsetDateTime) -> Vec<CallUpdate> {
        let mut out = vec![];
        let Some(name) = msg.event() else {
            return out;
        };
        let at = parse_event_time(msg).unwrap_or(now);
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if is("OriginateResponse") {
            self.on_originate_response(msg, at, &mut out);
            return out;
        }
        if msg.action_id().is_some() {
            // List items (CoreShowChannel, QueueStatus…) answer our actions; the session
            // hands them to `apply_snapshot`.
            return out;
        }
        if is("Hangup") {
            self.on_hangup(msg, at, &mut out);
        } else if is("Newchannel") || is("Newstate") {
            self.on_channel_state(msg, at, &mut out);
        } else if is("DialBegin") {
            self.on_dial_begin(msg, at, &mut out);
        } else if is("DialEnd") {
            self.on_dial_end(msg, at, &mut out);
        } else if is("BridgeEnter") {
            self.on_bridge_enter(msg, at, &mut out);
        } else if is("BridgeLeave") {
            if let (Some(bridge), Some(uid)) = (
                msg.get_nonempty("BridgeUniqueid"),
                msg.get_nonempty("Uniqueid"),
            ) {
                self.note_leg(msg, "", at, &mut out);
                if let Some(members) = self.bridges.get_mut(bridge) {
                    members.retain(|m| m != uid);
                }
            }
        } else if is("BridgeDestroy") {
            if let Some(bridge) = msg.get_nonempty("BridgeUniqueid") {
                self.bridges.remove(bridge);
            }
        } else if is("QueueCallerJoin") {
            if let Some(lid) = self.note_leg(msg, "", at, &mut out) {
                let queue = msg.get_nonempty("Queue").map(str::to_owned);
                if let Some(call) = self.calls.get_mut(&lid) {
                    if call.first_target.is_none() {
                        call.first_target = queue;
                    }
                }
                self.ensure_call_ringing(&lid, at, &msg.to_json(), &mut out);
            }
        } else if is("QueueCallerAbandon") {
            if let Some(lid) = self.note_leg(msg, "", at, &mut out) {
                if let Some(call) = self.calls.get_mut(&lid) {
                    call.abandoned = true;
                }
            }
        } else if is("AgentCalled") || is("AgentConnect") {
            self.on_agent(msg, is("AgentConnect"), at, &mut out);
        } else if is("AgentRingNoAnswer") {
            if let Some(lid) = self.note_leg(msg, "", at, &mut out) {
                if let Some(call) = self.calls.get_mut(&lid) {
                    call.outcomes.no_answer = true;
                }
            }
        } else if is("BlindTransfer") || is("AttendedTransfer") {
            self.on_transfer(msg, is("AttendedTransfer"), at, &mut out);
        } else if is("VarSet") {
            let lid = self.note_leg(msg, "", at, &mut out);
            let is_recording = msg
                .get("Variable")
                .is_some_and(|v| v.eq_ignore_ascii_case("MIXMONITOR_FILENAME"));
            if let (true, Some(lid), Some(file)) = (is_recording, lid, msg.get_nonempty("Value")) {
                if let Some(call) = self.calls.get_mut(&lid) {
                    if !call.recordings.iter().any(|r| r == file) {
                        call.recordings.push(file.to_owned());
                    }
                }
            }
        } else if msg.get_nonempty("Uniqueid").is_some() && msg.get_nonempty("Linkedid").is_some() {
            // Any other channel event keeps the leg (and its Linkedid) up to date.
            self.note_leg(msg, "", at, &mut out);
        } else {
            tracing::debug!(event = name, "ami event outside the call model, ignored");
        }
        out
    }

    /// Reconciles the tracker with a `CoreShowChannels` list taken right after a
    /// (re)connect; call [`begin_session`](Self::begin_session) first, when the session
    /// starts.
    ///
    /// Calls listed but unknown are reported up to where they are (ringing, answered);
    /// legs neither listed nor seen in this session are dropped, and calls left without
    /// legs get their terminal event (`hangup` with a "disconnected" cause, or `missed`).
    pub fn apply_snapshot(
        &mut self,
        channels: &[AmiMessage],
        now: OffsetDateTime,
    ) -> Vec<CallUpdate> {
        let mut out = vec![];
        let mut listed: HashSet<String> = HashSet::new();
        let mut by_call: Vec<(String, Vec<&AmiMessage>)> = vec![];
        for ch in channels {
            let (Some(uid), Some(lid)) = (
                ch.get_nonempty("Uniqueid")
                    .and_then(|u| normalize_external_id(u).ok()),
                ch.get_nonempty("Linkedid")
                    .and_then(|l| normalize_external_id(l).ok()),
            ) else {
                continue;
            };
            listed.insert(uid);
            match by_call.iter_mut().find(|(l, _)| *l == lid) {
                Some((_, list)) => list.push(ch),
                None => by_call.push((lid, vec![ch])),
            }
        }
        for (lid, list) in &by_call {
            if self.finished_set.contains(lid) {
                continue;
            }
            let longest = list
                .iter()
                .filter_map(|c| c.get("Duration").and_then(parse_hms))
                .max()
                .unwrap_or(0);
            let started = now
                .checked_sub(time::Duration::seconds(longest))
                .unwrap_or(now);
            // The originator first, so the call is classified before its other legs.
            let mut ordered: Vec<&AmiMessage> = list.clone();
            ordered.sort_by_key(|c| c.get("Uniqueid").map(str::trim) != Some(lid.as_str()));
            for ch in &ordered {
                self.note_leg(ch, "", started, &mut out);
                if let (Some(bridge), Some(uid)) =
                    (ch.get_nonempty("BridgeId"), ch.get_nonempty("Uniqueid"))
                {
                    let members = self.bridges.entry(bridge.to_owned()).or_default();
                    if !members.iter().any(|m| m == uid) {
                        members.push(uid.to_owned());
                    }
                }
            }
            for ch in &ordered {
                let state = ch.get("ChannelState").unwrap_or_default();
                let channel = ch.get("Channel").unwrap_or_default();
                let is_origin = ch.get("Uniqueid").map(str::trim) == Some(lid.as_str());
                if let Some(ext) = self.cfg.plan.extension_of(channel) {
                    if !is_origin && (state == "5" || state == "6") {
                        self.ring_extension(lid, &ext, started, ch, &mut out);
                    }
                }
            }
            let was_answered = self.calls.get(lid).is_some_and(|c| c.answered);
            for ch in &ordered {
                if let (Some(bridge), Some(uid)) =
                    (ch.get_nonempty("BridgeId"), ch.get_nonempty("Uniqueid"))
                {
                    self.answer_by_bridge(lid, bridge, uid, now, ch, &mut out);
                }
            }
            if let Some(call) = self.calls.get_mut(lid) {
                if call.answered && !was_answered {
                    // Inferred from the snapshot: when the talk began is not known.
                    call.answered_at = None;
                }
            }
        }
        // Legs from before this session that the PBX no longer lists are gone.
        let epoch = self.epoch;
        let ids: Vec<String> = self.calls.keys().cloned().collect();
        for lid in ids {
            let Some(call) = self.calls.get_mut(&lid) else {
                continue;
            };
            let gone: Vec<String> = call
                .legs
                .iter()
                .filter(|(uid, leg)| leg.epoch < epoch && !listed.contains(*uid))
                .map(|(uid, _)| uid.clone())
                .collect();
            for uid in &gone {
                call.legs.remove(uid);
                self.leg_index.remove(uid);
            }
            let stale_originate =
                matches!(call.originate, Some(OriginateState::Pending { epoch: e }) if e < epoch);
            let lost = call.legs.is_empty()
                && (!gone.is_empty() || call.ended_at.is_some() || stale_originate);
            if lost {
                let raw = serde_json::json!({
                    "linkedid": lid,
                    "resync": "the call is not among the channels listed by CoreShowChannels",
                });
                self.end_call(&lid, now, &raw, true, &mut out);
            }
        }
        for members in self.bridges.values_mut() {
            members.retain(|uid| self.leg_index.contains_key(uid));
        }
        self.bridges.retain(|_, members| !members.is_empty());
        // The answer to an `Originate` of a past session will never come: those calls go
        // on as ordinary calls.
        for call in self.calls.values_mut() {
            if matches!(call.originate, Some(OriginateState::Pending { epoch: e }) if e < epoch) {
                call.originate = Some(OriginateState::Settled);
            }
        }
        let calls = &self.calls;
        self.originates.retain(|_, id| {
            calls
                .get(id)
                .is_some_and(|c| matches!(c.originate, Some(OriginateState::Pending { .. })))
        });
        out
    }

    // ---- event handlers ----

    fn on_channel_state(
        &mut self,
        msg: &AmiMessage,
        at: OffsetDateTime,
        out: &mut Vec<CallUpdate>,
    ) {
        let Some(lid) = self.note_leg(msg, "", at, out) else {
            return;
        };
        // A phone that is not the first channel starts ringing.
        let is_origin = msg.get("Uniqueid").map(str::trim) == Some(lid.as_str());
        if msg.get("ChannelState").map(str::trim) == Some("5") && !is_origin {
            if let Some(ext) = self
                .cfg
                .plan
                .extension_of(msg.get("Channel").unwrap_or_default())
            {
                self.ring_extension(&lid, &ext, at, msg, out);
            }
        }
    }

    fn on_dial_begin(&mut self, msg: &AmiMessage, at: OffsetDateTime, out: &mut Vec<CallUpdate>) {
        let caller = self.note_leg(msg, "", at, out);
        let dest = self.note_leg(msg, "Dest", at, out);
        let Some(lid) = caller.or(dest) else {
            return;
        };
        let dest_channel = msg.get("DestChannel").unwrap_or_default();
        let dest_internal = self
            .cfg
            .plan
            .is_internal_channel(dest_channel, msg.get("DestContext"));
        let dest_ext = self.cfg.plan.extension_of(dest_channel);
        let plan = self.cfg.plan.clone();
        let Some(call) = self.calls.get_mut(&lid) else {
            return;
        };
        match call.shape.clone() {
            Shape::Inbound { .. } => {
                if let Some(ext) = dest_ext {
                    self.ring_extension(&lid, &ext, at, msg, out);
                }
            }
            Shape::Undecided | Shape::Internal => {
                if dest_internal {
                    call.shape = Shape::Internal;
                } else if let Some(extension) = call.origin_extension.clone() {
                    let dialed = msg
                        .get("DialString")
                        .and_then(number_in_dial_string)
                        .or_else(|| msg.get_nonempty("DestConnectedLineNum"))
                        .or_else(|| msg.get_nonempty("DestExten"))
                        .unwrap_or("unknown");
                    call.shape = Shape::Outbound {
                        extension: extension.clone(),
                        to: plan.normalize_number(dialed),
                    };
                    self.ring_extension(&lid, &extension, at, msg, out);
                }
            }
            Shape::Outbound { extension, .. } => {
                self.ring_extension(&lid, &extension, at, msg, out);
            }
        }
    }

    fn on_dial_end(&mut self, msg: &AmiMessage, at: OffsetDateTime, out: &mut Vec<CallUpdate>) {
        let caller = self.note_leg(msg, "", at, out);
        let dest = self.note_leg(msg, "Dest", at, out);
        let Some(lid) = caller.or(dest) else {
            return;
        };
        let dest_channel = msg.get("DestChannel").unwrap_or_default();
        let dest_internal = self
            .cfg
            .plan
            .is_internal_channel(dest_channel, msg.get("DestContext"));
        let dest_ext = self.cfg.plan.extension_of(dest_channel);
        let status = msg
            .get("DialStatus")
            .unwrap_or_default()
            .trim()
            .to_ascii_uppercase();
        let Some(call) = self.calls.get_mut(&lid) else {
            return;
        };
        match status.as_str() {
            "ANSWER" => match call.shape.clone() {
                Shape::Inbound { .. } => self.answer(&lid, dest_ext, at, msg, out),
                Shape::Outbound { extension, .. } if !dest_internal => {
                    self.answer(&lid, Some(extension), at, msg, out);
                }
                _ => {}
            },
            "CANCEL" => call.outcomes.cancel = true,
            "NOANSWER" => call.outcomes.no_answer = true,
            "BUSY" => call.outcomes.busy = true,
            "CONGESTION" => call.outcomes.rejected = true,
            "CHANUNAVAIL" => call.outcomes.unavailable = true,
            _ => {}
        }
    }

    fn on_bridge_enter(&mut self, msg: &AmiMessage, at: OffsetDateTime, out: &mut Vec<CallUpdate>) {
        let Some(lid) = self.note_leg(msg, "", at, out) else {
            return;
        };
        let (Some(bridge), Some(uid)) = (
            msg.get_nonempty("BridgeUniqueid"),
            msg.get_nonempty("Uniqueid"),
        ) else {
            return;
        };
        let holding = msg
            .get("BridgeTechnology")
            .is_some_and(|t| t.eq_ignore_ascii_case("holding_bridge"))
            || msg.get("BridgeType").is_some_and(|t| {
                t.eq_ignore_ascii_case("holding") || t.eq_ignore_ascii_case("parking")
            });
        if holding {
            return;
        }
        let members = self.bridges.entry(bridge.to_owned()).or_default();
        if !members.iter().any(|m| m == uid) {
            members.push(uid.to_owned());
        }
        self.answer_by_bridge(&lid, bridge, uid, at, msg, out);
    }

    /// Two parties in one bridge: the call is answered, by the extension among them.
    fn answer_by_bridge(
        &mut self,
        lid: &str,
        bridge: &str,
        entering: &str,
        at: OffsetDateTime,
        msg: &AmiMessage,
        out: &mut Vec<CallUpdate>,
    ) {
        let Some(members) = self.bridges.get(bridge) else {
            return;
        };
        if members.len() < 2 {
            return;
        }
        let Some(call) = self.calls.get(lid) else {
            return;
        };
        let channel_of = |uid: &str| -> Option<String> {
            let owner = self.leg_index.get(uid)?;
            Some(self.calls.get(owner)?.legs.get(uid)?.channel.clone())
        };
        let channels: Vec<(String, String)> = members
            .iter()
            .filter_map(|uid| channel_of(uid).map(|c| (uid.clone(), c)))
            .collect();
        match call.shape.clone() {
            Shape::Inbound { .. } => {
                // The entering phone first, else any phone in the bridge.
                let mut ext = None;
                for (uid, channel) in channels.iter() {
                    if let Some(e) = self.cfg.plan.extension_of(channel) {
                        if uid == entering || ext.is_none() {
                            ext = Some(e);
                        }
                    }
                }
                if ext.is_some() || !call.answered {
                    self.answer(lid, ext, at, msg, out);
                }
            }
            Shape::Outbound { extension, .. } => {
                let external = channels
                    .iter()
                    .any(|(_, c)| !self.cfg.plan.is_internal_channel(c, None));
                if external {
                    self.answer(lid, Some(extension), at, msg, out);
                }
            }
            _ => {}
        }
    }

    fn on_agent(
        &mut self,
        msg: &AmiMessage,
        connect: bool,
        at: OffsetDateTime,
        out: &mut Vec<CallUpdate>,
    ) {
        let caller = self.note_leg(msg, "", at, out);
        let dest = self.note_leg(msg, "Dest", at, out);
        let Some(lid) = caller.or(dest) else {
            return;
        };
        let plan = &self.cfg.plan;
        let ext = msg
            .get("Interface")
            .and_then(|i| plan.extension_of(i))
            .or_else(|| msg.get("DestChannel").and_then(|c| plan.extension_of(c)))
            .or_else(|| {
                msg.get_nonempty("MemberName")
                    .filter(|m| plan.is_extension(m))
                    .map(str::to_owned)
            });
        if !matches!(
            self.calls.get(&lid).map(|c| &c.shape),
            Some(Shape::Inbound { .. })
        ) {
            return;
        }
        if connect {
            self.answer(&lid, ext, at, msg, out);
        } else if let Some(ext) = ext {
            self.ring_extension(&lid, &ext, at, msg, out);
        }
    }

    fn on_transfer(
        &mut self,
        msg: &AmiMessage,
        attended: bool,
        at: OffsetDateTime,
        out: &mut Vec<CallUpdate>,
    ) {
        if !msg
            .get("Result")
            .is_some_and(|r| r.eq_ignore_ascii_case("Success"))
        {
            return;
        }
        let plan = self.cfg.plan.clone();
        let (lid, target) = if attended {
            let lid = msg
                .get_nonempty("TransfereeLinkedid")
                .or_else(|| msg.get_nonempty("OrigTransfererLinkedid"));
            let target = msg
                .get("TransferTargetChannel")
                .and_then(|c| plan.extension_of(c))
                .or_else(|| {
                    msg.get_nonempty("SecondTransfererConnectedLineNum")
                        .map(|n| plan.normalize_number(n))
                });
            (lid, target)
        } else {
            let lid = msg
                .get_nonempty("TransfereeLinkedid")
                .or_else(|| msg.get_nonempty("TransfererLinkedid"));
            let target = msg
                .get_nonempty("Extension")
                .map(|e| plan.normalize_number(e));
            (lid, target)
        };
        let (Some(lid), Some(target)) = (lid.and_then(|l| normalize_external_id(l).ok()), target)
        else {
            return;
        };
        if !self.calls.get(&lid).is_some_and(Call::is_reported) {
            return;
        }
        self.emit(
            &lid,
            &format!("transferred:{target}"),
            at,
            CallEventKind::Transferred {
                to_extension: target.clone(),
            },
            msg.to_json(),
            out,
        );
    }

    fn on_hangup(&mut self, msg: &AmiMessage, at: OffsetDateTime, out: &mut Vec<CallUpdate>) {
        let Some(uid) = msg
            .get_nonempty("Uniqueid")
            .and_then(|u| normalize_external_id(u).ok())
        else {
            return;
        };
        let lid = self.leg_index.get(&uid).cloned().or_else(|| {
            msg.get_nonempty("Linkedid")
                .and_then(|l| normalize_external_id(l).ok())
        });
        let Some(lid) = lid else {
            return;
        };
        self.leg_index.remove(&uid);
        for members in self.bridges.values_mut() {
            members.retain(|m| *m != uid);
        }
        let Some(call) = self.calls.get_mut(&lid) else {
            return;
        };
        call.legs.remove(&uid);
        let cause: Option<u32> = msg.get("Cause").and_then(|c| c.trim().parse().ok());
        let cause_txt = msg.get_nonempty("Cause-txt").map(str::to_owned);
        if uid == lid {
            call.caller_cause = cause;
            if call.answered {
                call.hangup_cause.clone_from(&cause_txt);
            }
        }
        if call.answered && cause_txt.is_some() {
            call.last_cause = cause_txt;
        }
        if call.legs.is_empty() {
            self.end_call(&lid, at, &msg.to_json(), false, out);
        }
    }

    fn on_originate_response(
        &mut self,
        msg: &AmiMessage,
        at: OffsetDateTime,
        out: &mut Vec<CallUpdate>,
    ) {
        let Some(id) = msg.action_id().and_then(|a| self.originates.remove(a)) else {
            return;
        };
        let success = msg
            .get("Response")
            .is_some_and(|r| r.eq_ignore_ascii_case("Success"));
        if success {
            let ended = match self.calls.get_mut(&id) {
                Some(call) => {
                    call.originate = Some(OriginateState::Settled);
                    call.ended_at
                }
                None => None,
            };
            if let Some(ended_at) = ended {
                self.end_call(&id, ended_at, &msg.to_json(), false, out);
            }
            return;
        }
        let extension = self
            .calls
            .get(&id)
            .and_then(|c| c.origin_extension.clone())
            .unwrap_or_default();
        let reason =
            originate_failure_reason(msg.get("Reason").unwrap_or_default().trim(), &extension);
        self.fail_call(&id, &reason, at, msg.to_json(), out);
    }

    // ---- building blocks ----

    fn call_entry(&mut self, lid: &str) -> &mut Call {
        self.clock += 1;
        let clock = self.clock;
        if !self.calls.contains_key(lid) && self.calls.len() >= MAX_CALLS {
            self.evict_oldest();
        }
        let call = self
            .calls
            .entry(lid.to_owned())
            .or_insert_with(|| Call::new(clock));
        call.touched = clock;
        call
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .calls
            .iter()
            .min_by_key(|(_, c)| c.touched)
            .map(|(id, _)| id.clone());
        if let Some(id) = oldest {
            tracing::warn!(linkedid = %id, "too many tracked calls; forgetting the least recently active one");
            if let Some(call) = self.calls.remove(&id) {
                for uid in call.legs.keys() {
                    self.leg_index.remove(uid);
                }
            }
        }
    }

    /// Registers the channel an event names (with `prefix`: `""` or `Dest`), moving it
    /// when its Linkedid changed, creating the call, and classifying the call from its
    /// first channel. Returns the call's Linkedid, or `None` for events to ignore.
    fn note_leg(
        &mut self,
        msg: &AmiMessage,
        prefix: &str,
        at: OffsetDateTime,
        out: &mut Vec<CallUpdate>,
    ) -> Option<String> {
        let r = channel_ref(msg, prefix)?;
        if self.finished_set.contains(&r.linkedid) {
            return None;
        }
        if let Some(old) = self.leg_index.get(&r.uniqueid).cloned() {
            if old != r.linkedid {
                // Linkedids merged (attended transfer, bridge): the leg joins the older call.
                let mut emptied = false;
                if let Some(call) = self.calls.get_mut(&old) {
                    call.legs.remove(&r.uniqueid);
                    emptied = call.legs.is_empty();
                }
                if emptied {
                    let raw = msg.to_json();
                    self.end_call(&old, at, &raw, false, out);
                }
            }
        }
        self.leg_index
            .insert(r.uniqueid.clone(), r.linkedid.clone());
        let epoch = self.epoch;
        let channel = r.channel.to_owned();
        let is_origin = r.uniqueid == r.linkedid;
        let call = self.call_entry(&r.linkedid);
        let first_leg = call.legs.is_empty();
        call.legs.insert(
            r.uniqueid.clone(),
            Leg {
                channel: channel.clone(),
                epoch,
            },
        );
        if prefix.is_empty() && is_origin && call.shape == Shape::Undecided {
            self.classify(&r.linkedid, msg, at, out);
        } else if is_origin && first_leg {
            if let Some(Shape::Outbound { extension, .. }) =
                self.calls.get(&r.linkedid).map(|c| c.shape.clone())
            {
                // Click-to-call: the operator's phone is being rung.
                self.ring_extension(&r.linkedid, &extension, at, msg, out);
            }
        }
        Some(r.linkedid)
    }

    /// Decides the direction of a call from its first channel (the event's own block).
    fn classify(
        &mut self,
        lid: &str,
        msg: &AmiMessage,
        at: OffsetDateTime,
        out: &mut Vec<CallUpdate>,
    ) {
        let plan = &self.cfg.plan;
        let channel = msg.get("Channel").unwrap_or_default();
        let caller = msg.get("CallerIDNum").unwrap_or_default().trim();
        let exten = msg.get("Exten").unwrap_or_default().trim();
        let internal = plan.is_internal_channel(channel, msg.get("Context"));
        let shape;
        let mut origin_extension = None;
        if internal {
            let ext = plan
                .extension_of(channel)
                .or_else(|| plan.is_extension(caller).then(|| caller.to_owned()))
                .or_else(|| parse_channel(channel).map(|c| c.endpoint.to_owned()))
                .unwrap_or_default();
            origin_extension = Some(ext.clone());
            let callee = plan.normalize_number(exten);
            let is_number = callee.starts_with('+')
                || (!callee.is_empty()
                    && callee.bytes().all(|b| b.is_ascii_digit())
                    && !plan.is_extension(&callee));
            shape = if is_number {
                Shape::Outbound {
                    extension: ext,
                    to: callee,
                }
            } else if plan.is_extension(exten) {
                Shape::Internal
            } else {
                Shape::Undecided
            };
        } else {
            let from = if caller.is_empty() {
                "unknown".to_owned()
            } else {
                plan.normalize_number(caller)
            };
            let to = (!exten.is_empty()
                && exten
                    .trim_start_matches('+')
                    .bytes()
                    .all(|b| b.is_ascii_digit()))
            .then(|| plan.normalize_number(exten));
            shape = Shape::Inbound { from, to };
        }
        let Some(call) = self.calls.get_mut(lid) else {
            return;
        };
        call.shape = shape.clone();
        call.origin_extension = origin_extension;
        match shape {
            Shape::Inbound { to: Some(_), .. } => {
                self.ensure_call_ringing(lid, at, &msg.to_json(), out)
            }
            Shape::Outbound { extension, .. } => self.ring_extension(lid, &extension, at, msg, out),
            _ => {}
        }
    }

    /// The call-level `ringing` of an inbound call, once.
    fn ensure_call_ringing(
        &mut self,
        lid: &str,
        at: OffsetDateTime,
        raw: &serde_json::Value,
        out: &mut Vec<CallUpdate>,
    ) {
        let Some(call) = self.calls.get(lid) else {
            return;
        };
        let Shape::Inbound { from, to } = &call.shape else {
            return;
        };
        let to = to
            .clone()
            .or_else(|| call.first_target.clone())
            .unwrap_or_else(|| "unknown".to_owned());
        let kind = CallEventKind::Ringing {
            from: from.clone(),
            to,
            direction: Direction::Inbound,
            extension: None,
        };
        self.emit(lid, "ringing", at, kind, raw.clone(), out);
    }

    /// `ringing:{ext}`, once per extension.
    fn ring_extension(
        &mut self,
        lid: &str,
        ext: &str,
        at: OffsetDateTime,
        msg: &AmiMessage,
        out: &mut Vec<CallUpdate>,
    ) {
        let Some(call) = self.calls.get_mut(lid) else {
            return;
        };
        if call.first_target.is_none() {
            call.first_target = Some(ext.to_owned());
        }
        let kind = match &call.shape {
            Shape::Inbound { from, to } => CallEventKind::Ringing {
                from: from.clone(),
                to: to
                    .clone()
                    .or_else(|| call.first_target.clone())
                    .unwrap_or_default(),
                direction: Direction::Inbound,
                extension: Some(ext.to_owned()),
            },
            Shape::Outbound { extension, to } if extension == ext => CallEventKind::Ringing {
                from: extension.clone(),
                to: to.clone(),
                direction: Direction::Outbound,
                extension: Some(ext.to_owned()),
            },
            _ => return,
        };
        self.ensure_call_ringing(lid, at, &msg.to_json(), out);
        self.emit(lid, &format!("ringing:{ext}"), at, kind, msg.to_json(), out);
    }

    /// `answered` the first time, `answered:{ext}` for each other extension later.
    fn answer(
        &mut self,
        lid: &str,
        ext: Option<String>,
        at: OffsetDateTime,
        msg: &AmiMessage,
        out: &mut Vec<CallUpdate>,
    ) {
        let Some(call) = self.calls.get_mut(lid) else {
            return;
        };
        if !call.is_reported() {
            return;
        }
        let step = if !call.answered {
            call.answered = true;
            call.answered_at = Some(at);
            if let Some(e) = &ext {
                call.answered_by.push(e.clone());
            }
            "answered".to_owned()
        } else {
            match &ext {
                Some(e) if !call.answered_by.contains(e) => {
                    call.answered_by.push(e.clone());
                    format!("answered:{e}")
                }
                _ => return,
            }
        };
        self.ensure_call_ringing(lid, at, &msg.to_json(), out);
        self.emit(
            lid,
            &step,
            at,
            CallEventKind::Answered { by_extension: ext },
            msg.to_json(),
            out,
        );
    }

    fn fail_call(
        &mut self,
        id: &str,
        reason: &str,
        at: OffsetDateTime,
        raw: serde_json::Value,
        out: &mut Vec<CallUpdate>,
    ) {
        let done = match self.calls.get_mut(id) {
            Some(call) if !call.terminal => {
                call.terminal = true;
                call.legs.is_empty()
            }
            Some(_) => return,
            None => true,
        };
        self.emit_raw(
            id,
            "failed",
            at,
            CallEventKind::Failed {
                reason: reason.to_owned(),
            },
            raw,
            out,
        );
        if done {
            self.finish(id);
        }
    }

    /// The last leg is gone: the terminal event, then recordings.
    fn end_call(
        &mut self,
        lid: &str,
        at: OffsetDateTime,
        raw: &serde_json::Value,
        lost: bool,
        out: &mut Vec<CallUpdate>,
    ) {
        let Some(call) = self.calls.get_mut(lid) else {
            return;
        };
        let awaiting_originate = matches!(call.originate, Some(OriginateState::Pending { .. }))
            && !call.answered
            && !call.terminal;
        if awaiting_originate {
            if lost {
                let reason = "the outcome is unknown: the connection to the PBX was lost before it reported one";
                self.fail_call(lid, reason, at, raw.clone(), out);
                self.finish(lid);
            } else {
                // `OriginateResponse` tells whether the click-to-call failed; wait for it.
                call.ended_at = Some(at);
            }
            return;
        }
        if call.is_reported() && !call.terminal {
            call.terminal = true;
            if call.answered {
                let duration_secs = if lost {
                    None
                } else {
                    call.answered_at
                        .map(|t| u64::try_from((at - t).whole_seconds()).unwrap_or(0))
                };
                let cause = if lost {
                    Some(LOST_CAUSE.to_owned())
                } else {
                    call.hangup_cause
                        .clone()
                        .or_else(|| call.last_cause.clone())
                };
                self.emit(
                    lid,
                    "hangup",
                    at,
                    CallEventKind::HungUp {
                        duration_secs,
                        cause,
                    },
                    raw.clone(),
                    out,
                );
            } else {
                let default = if lost {
                    MissedReason::NoAnswer
                } else {
                    MissedReason::Cancelled
                };
                let reason = call.missed_reason(default);
                self.ensure_call_ringing(lid, at, raw, out);
                self.emit(
                    lid,
                    "missed",
                    at,
                    CallEventKind::Missed { reason },
                    raw.clone(),
                    out,
                );
            }
        }
        if let (Some(base), Some(call)) = (self.cfg.recording_base_url.clone(), self.calls.get(lid))
        {
            if call.is_reported() {
                let files = call.recordings.clone();
                for file in files {
                    let Some(url) = recording_url(&base, &self.cfg.recording_path_prefix, &file)
                    else {
                        continue;
                    };
                    let name = file.rsplit('/').next().unwrap_or(&file).to_owned();
                    let raw = serde_json::json!({ "linkedid": lid, "MIXMONITOR_FILENAME": file });
                    self.emit(
                        lid,
                        &format!("recording:{name}"),
                        at,
                        CallEventKind::RecordingAvailable { url },
                        raw,
                        out,
                    );
                }
            }
        }
        self.finish(lid);
    }

    fn finish(&mut self, lid: &str) {
        if let Some(call) = self.calls.remove(lid) {
            for uid in call.legs.keys() {
                self.leg_index.remove(uid);
            }
        }
        self.originates.retain(|_, id| id != lid);
        if self.finished_set.insert(lid.to_owned()) {
            self.finished.push_back(lid.to_owned());
            while self.finished.len() > FINISHED_MEMORY {
                if let Some(old) = self.finished.pop_front() {
                    self.finished_set.remove(&old);
                }
            }
        }
    }

    fn emit(
        &mut self,
        lid: &str,
        step: &str,
        at: OffsetDateTime,
        kind: CallEventKind,
        raw: serde_json::Value,
        out: &mut Vec<CallUpdate>,
    ) {
        let Some(call) = self.calls.get_mut(lid) else {
            return;
        };
        if !call.emitted.insert(step.to_owned()) {
            return;
        }
        push_update(lid, step, at, kind, raw, out);
    }

    /// Like `emit`, for a call the tracker may not hold (a failed click-to-call).
    fn emit_raw(
        &mut self,
        lid: &str,
        step: &str,
        at: OffsetDateTime,
        kind: CallEventKind,
        raw: serde_json::Value,
        out: &mut Vec<CallUpdate>,
    ) {
        if let Some(call) = self.calls.get_mut(lid) {
            if !call.emitted.insert(step.to_owned()) {
                return;
            }
        } else if self.finished_set.contains(lid) {
            return;
        }
        push_update(lid, step, at, kind, raw, out);
    }
}

fn push_update(
    lid: &str,
    step: &str,
    at: OffsetDateTime,
    kind: CallEventKind,
    raw: serde_json::Value,
    out: &mut Vec<CallUpdate>,
) {
    match normalize_external_id(&format!("{lid}:{step}")) {
        Ok(external_id) => out.push(CallUpdate {
            external_id,
            occurred_at: at,
            event: CallEvent {
                call_external_id: lid.to_owned(),
                kind,
            },
            raw,
        }),
        Err(e) => {
            tracing::warn!(linkedid = %lid, step, error = %e, "call event without a usable key, dropped")
        }
    }
}

fn channel_ref<'a>(msg: &'a AmiMessage, prefix: &str) -> Option<ChannelRef<'a>> {
    let uniqueid = msg.get_nonempty(&format!("{prefix}Uniqueid"))?;
    let linkedid = msg.get_nonempty(&format!("{prefix}Linkedid"))?;
    let channel = msg.get(&format!("{prefix}Channel")).unwrap_or_default();
    Some(ChannelRef {
        uniqueid: normalize_external_id(uniqueid).ok()?,
        linkedid: normalize_external_id(linkedid).ok()?,
        channel,
    })
}

/// Words for an `OriginateResponse` `Reason` code (the last control frame Asterisk saw).
fn originate_failure_reason(code: &str, extension: &str) -> String {
    let ext = if extension.is_empty() {
        "the operator's phone".to_owned()
    } else {
        format!("extension {extension}")
    };
    match code {
        "0" => format!("{ext} is unavailable or does not exist"),
        "1" => format!("{ext} hung up"),
        "3" => format!("{ext} did not answer"),
        "5" => format!("{ext} is busy"),
        "8" => "the PBX reported congestion".to_owned(),
        "" => "the PBX could not place the call".to_owned(),
        other => format!("the PBX could not place the call (reason {other})"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::codec::{AmiCodec, AmiFrame};
    use bytes::BytesMut;
    use time::macros::datetime;
    use tokio_util::codec::Decoder;

    const NOW: OffsetDateTime = datetime!(2024-05-01 13:00:00 UTC);

    fn cfg() -> TrackerConfig {
        TrackerConfig {
            plan: NumberPlan {
                country_code: Some("7".to_owned()),
                extension_max_len: 4,
                internal_contexts: vec![],
            },
            recording_base_url: Some("https://pbx.example/rec".to_owned()),
            recording_path_prefix: "/var/spool/asterisk/monitor/".to_owned(),
        }
    }

    fn fixture(name: &str) -> Vec<AmiMessage> {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        let bytes = std::fs::read(&path).unwrap();
        let mut codec = AmiCodec::new();
        let mut buf = BytesMut::from(&bytes[..]);
        let mut out = vec![];
        while let Some(frame) = codec.decode_eof(&mut buf).unwrap() {
            match frame {
                AmiFrame::Message(m) => out.push(m),
                AmiFrame::Banner { .. } => {}
                AmiFrame::Rejected { reason } => panic!("{name}: {reason}"),
            }
        }
        out
    }

    fn run(tracker: &mut CallTracker, msgs: &[AmiMessage]) -> Vec<CallUpdate> {
        msgs.iter()
            .flat_map(|m| tracker.handle_event(m, NOW))
            .collect()
    }

    fn ids(updates: &[CallUpdate]) -> Vec<&str> {
        updates.iter().map(|u| u.external_id.as_str()).collect()
    }

    fn kind<'a>(updates: &'a [CallUpdate], id: &str) -> &'a CallEventKind {
        &updates
            .iter()
            .find(|u| u.external_id == id)
            .unwrap_or_else(|| panic!("no {id}"))
            .event
            .kind
    }

    #[test]
    fn inbound_answered_by_101() {
        let mut t = CallTracker::new(cfg());
        let out = run(&mut t, &fixture("inbound_answered.ami"));
        let rec = "1714566600.101:recording:in-74951234567-89161234567-20240501-123000-1714566600.101.wav";
        assert_eq!(
            ids(&out),
            [
                "1714566600.101:ringing",
                "1714566600.101:ringing:101",
                "1714566600.101:answered",
                "1714566600.101:hangup",
                rec,
            ]
        );
        assert_eq!(
            kind(&out, "1714566600.101:ringing"),
            &CallEventKind::Ringing {
                from: "+79161234567".to_owned(),
                to: "+74951234567".to_owned(),
                direction: Direction::Inbound,
                extension: None
            }
        );
        assert_eq!(
            kind(&out, "1714566600.101:ringing:101"),
            &CallEventKind::Ringing {
                from: "+79161234567".to_owned(),
                to: "+74951234567".to_owned(),
                direction: Direction::Inbound,
                extension: Some("101".to_owned())
            }
        );
        assert_eq!(
            kind(&out, "1714566600.101:answered"),
            &CallEventKind::Answered {
                by_extension: Some("101".to_owned())
            }
        );
        assert_eq!(
            kind(&out, "1714566600.101:hangup"),
            &CallEventKind::HungUp {
                duration_secs: Some(93),
                cause: Some("Normal Clearing".to_owned())
            }
        );
        assert_eq!(
            kind(&out, rec),
            &CallEventKind::RecordingAvailable {
                url: "https://pbx.example/rec/2024/05/01/in-74951234567-89161234567-20240501-123000-1714566600.101.wav".to_owned()
            }
        );
        let ringing = &out[0];
        assert_eq!(
            ringing.occurred_at,
            datetime!(2024-05-01 12:30:00.012345 UTC)
        );
        assert_eq!(ringing.raw["Event"], "Newchannel");
        assert_eq!(ringing.event.call_external_id, "1714566600.101");
        assert!(t.is_empty(), "the call is over");
    }

    #[test]
    fn missed_cancelled_and_busy() {
        let mut t = CallTracker::new(cfg());
        let out = run(&mut t, &fixture("missed_cancelled.ami"));
        assert_eq!(
            ids(&out),
            [
                "1714567000.110:ringing",
                "1714567000.110:ringing:101",
                "1714567000.110:missed"
            ]
        );
        assert_eq!(
            kind(&out, "1714567000.110:missed"),
            &CallEventKind::Missed {
                reason: MissedReason::Cancelled
            }
        );

        let out = run(&mut t, &fixture("missed_busy.ami"));
        assert_eq!(
            ids(&out),
            [
                "1714567200.120:ringing",
                "1714567200.120:ringing:102",
                "1714567200.120:missed"
            ]
        );
        assert_eq!(
            kind(&out, "1714567200.120:missed"),
            &CallEventKind::Missed {
                reason: MissedReason::Busy
            }
        );
        assert!(t.is_empty());
    }

    #[test]
    fn queue_call_through_local_channels() {
        let mut t = CallTracker::new(cfg());
        let out = run(&mut t, &fixture("queue_call.ami"));
        assert_eq!(
            ids(&out),
            [
                "1714568000.130:ringing",
                "1714568000.130:ringing:101",
                "1714568000.130:ringing:102",
                "1714568000.130:answered",
                "1714568000.130:hangup",
            ]
        );
        assert_eq!(
            kind(&out, "1714568000.130:ringing"),
            &CallEventKind::Ringing {
                from: "+79031112233".to_owned(),
                to: "+74951234567".to_owned(),
                direction: Direction::Inbound,
                extension: None
            }
        );
        assert_eq!(
            kind(&out, "1714568000.130:answered"),
            &CallEventKind::Answered {
                by_extension: Some("101".to_owned())
            }
        );
        assert!(matches!(
            kind(&out, "1714568000.130:hangup"),
            CallEventKind::HungUp {
                duration_secs: Some(64),
                ..
            }
        ));
        assert!(t.is_empty());
    }

    #[test]
    fn queue_abandoned() {
        let mut t = CallTracker::new(cfg());
        let out = run(&mut t, &fixture("queue_abandoned.ami"));
        assert_eq!(
            ids(&out),
            [
                "1714568500.140:ringing",
                "1714568500.140:ringing:101",
                "1714568500.140:missed"
            ]
        );
        assert_eq!(
            kind(&out, "1714568500.140:missed"),
            &CallEventKind::Missed {
                reason: MissedReason::Cancelled
            }
        );
    }

    #[test]
    fn blind_transfer() {
        let mut t = CallTracker::new(cfg());
        let out = run(&mut t, &fixture("blind_transfer.ami"));
        assert_eq!(
            ids(&out),
            [
                "1714569000.150:ringing",
                "1714569000.150:ringing:101",
                "1714569000.150:answered",
                "1714569000.150:transferred:102",
                "1714569000.150:ringing:102",
                "1714569000.150:answered:102",
                "1714569000.150:hangup",
            ]
        );
        assert_eq!(
            kind(&out, "1714569000.150:transferred:102"),
            &CallEventKind::Transferred {
                to_extension: "102".to_owned()
            }
        );
        assert!(t.is_empty());
    }

    #[test]
    fn attended_transfer() {
        let mut t = CallTracker::new(cfg());
        let out = run(&mut t, &fixture("attended_transfer.ami"));
        assert_eq!(
            ids(&out),
            [
                "1714570000.160:ringing",
                "1714570000.160:ringing:101",
                "1714570000.160:answered",
                "1714570000.160:transferred:102",
                "1714570000.160:answered:102",
                "1714570000.160:hangup",
            ]
        );
        assert!(matches!(
            kind(&out, "1714570000.160:hangup"),
            CallEventKind::HungUp {
                duration_secs: Some(200),
                ..
            }
        ));
        assert!(t.is_empty(), "the consult call (internal) is over too");
    }

    fn c2c(id: &str) -> OriginateRequest {
        OriginateRequest {
            call_external_id: id.to_owned(),
            extension: "101".to_owned(),
            to: "+79161234567".to_owned(),
            caller_id: None,
        }
    }

    #[test]
    fn click_to_call_success() {
        let mut t = CallTracker::new(cfg());
        t.originate_requested(&c2c("crm-c2c-0001"), "kommutator-7");
        let out = run(&mut t, &fixture("click_to_call_ok.ami"));
        assert_eq!(
            ids(&out),
            [
                "crm-c2c-0001:ringing:101",
                "crm-c2c-0001:answered",
                "crm-c2c-0001:hangup"
            ]
        );
        assert_eq!(
            kind(&out, "crm-c2c-0001:ringing:101"),
            &CallEventKind::Ringing {
                from: "101".to_owned(),
                to: "+79161234567".to_owned(),
                direction: Direction::Outbound,
                extension: Some("101".to_owned())
            }
        );
        assert!(matches!(
            kind(&out, "crm-c2c-0001:hangup"),
            CallEventKind::HungUp {
                duration_secs: Some(41),
                ..
            }
        ));
        assert!(t.is_empty());
    }

    #[test]
    fn click_to_call_failure_is_failed_not_missed() {
        let mut t = CallTracker::new(cfg());
        t.originate_requested(&c2c("crm-c2c-0002"), "kommutator-9");
        let out = run(&mut t, &fixture("click_to_call_failed.ami"));
        assert_eq!(
            ids(&out),
            ["crm-c2c-0002:ringing:101", "crm-c2c-0002:failed"]
        );
        assert_eq!(
            kind(&out, "crm-c2c-0002:failed"),
            &CallEventKind::Failed {
                reason: "extension 101 did not answer".to_owned()
            }
        );
        assert!(t.is_empty());
    }

    #[test]
    fn originate_error_response_fails_the_call() {
        let mut t = CallTracker::new(cfg());
        t.originate_requested(&c2c("k-1"), "a-1");
        let out = t.originate_rejected("a-1", "Originate failed", NOW, serde_json::json!({}));
        assert_eq!(ids(&out), ["k-1:failed"]);
        assert_eq!(
            out[0].event.kind,
            CallEventKind::Failed {
                reason: "the PBX refused the call: Originate failed".to_owned()
            }
        );
        assert!(t
            .originate_rejected("a-1", "again", NOW, serde_json::json!({}))
            .is_empty());
        assert!(t.knows_call("k-1"));
    }

    #[test]
    fn outbound_from_an_extension_lf_only() {
        let mut t = CallTracker::new(cfg());
        let out = run(&mut t, &fixture("lf_only_outbound.ami"));
        assert_eq!(
            ids(&out),
            [
                "1714571000.170:ringing:103",
                "1714571000.170:answered",
                "1714571000.170:hangup"
            ]
        );
        assert_eq!(
            kind(&out, "1714571000.170:ringing:103"),
            &CallEventKind::Ringing {
                from: "103".to_owned(),
                to: "+79167654321".to_owned(),
                direction: Direction::Outbound,
                extension: Some("103".to_owned())
            }
        );
        assert_eq!(
            kind(&out, "1714571000.170:answered"),
            &CallEventKind::Answered {
                by_extension: Some("103".to_owned())
            }
        );
    }

    fn split_at_event(msgs: &[AmiMessage], event: &str) -> (Vec<AmiMessage>, Vec<AmiMessage>) {
        let at = msgs.iter().position(|m| m.is_event(event)).unwrap();
        (msgs[..at].to_vec(), msgs[at..].to_vec())
    }

    fn snapshot_of(name: &str) -> Vec<AmiMessage> {
        fixture(name)
            .into_iter()
            .filter(|m| m.is_event("CoreShowChannel"))
            .collect()
    }

    #[test]
    fn resync_mid_call_reports_nothing_twice() {
        let msgs = fixture("inbound_answered.ami");
        let (before, after) = split_at_event(&msgs, "HangupRequest");
        let mut t = CallTracker::new(cfg());
        t.begin_session();
        let first = run(&mut t, &before);
        assert_eq!(first.len(), 3);
        // Reconnect: the call is still up.
        t.begin_session();
        let resync = t.apply_snapshot(&snapshot_of("core_show_channels.ami"), NOW);
        assert!(resync.is_empty(), "{resync:?}");
        let rest = run(&mut t, &after);
        assert_eq!(ids(&rest)[0], "1714566600.101:hangup");
        assert_eq!(rest.len(), 2, "hangup and recording");
    }

    #[test]
    fn resync_with_a_fresh_tracker_rebuilds_the_call() {
        let mut t = CallTracker::new(cfg());
        t.begin_session();
        let out = t.apply_snapshot(&snapshot_of("core_show_channels.ami"), NOW);
        assert_eq!(
            ids(&out),
            [
                "1714566600.101:ringing",
                "1714566600.101:ringing:101",
                "1714566600.101:answered"
            ]
        );
        let (_, after) = split_at_event(&fixture("inbound_answered.ami"), "HangupRequest");
        let rest = run(&mut t, &after);
        // Talk time is unknown: the answer was not seen, only inferred.
        assert_eq!(
            kind(&rest, "1714566600.101:hangup"),
            &CallEventKind::HungUp {
                duration_secs: None,
                cause: Some("Normal Clearing".to_owned())
            }
        );
        // Applying the same snapshot again changes nothing.
        assert!(t
            .apply_snapshot(&snapshot_of("core_show_channels.ami"), NOW)
            .is_empty());
    }

    #[test]
    fn resync_closes_calls_that_ended_while_disconnected() {
        let msgs = fixture("inbound_answered.ami");
        let (before, _) = split_at_event(&msgs, "HangupRequest");
        let mut t = CallTracker::new(cfg());
        t.begin_session();
        run(&mut t, &before);
        let (ringing_only, _) = split_at_event(&fixture("missed_busy.ami"), "DialEnd");
        run(&mut t, &ringing_only);
        assert_eq!(t.len(), 2);
        t.begin_session();
        let out = t.apply_snapshot(&[], NOW);
        let mut got = ids(&out);
        got.sort_unstable();
        assert_eq!(
            got,
            [
                "1714566600.101:hangup",
                "1714566600.101:recording:in-74951234567-89161234567-20240501-123000-1714566600.101.wav",
                "1714567200.120:missed"
            ]
        );
        assert_eq!(
            kind(&out, "1714566600.101:hangup"),
            &CallEventKind::HungUp {
                duration_secs: None,
                cause: Some(LOST_CAUSE.to_owned())
            }
        );
        assert_eq!(
            kind(&out, "1714567200.120:missed"),
            &CallEventKind::Missed {
                reason: MissedReason::NoAnswer
            }
        );
        assert!(t.is_empty());
        // Late events of an ended call do not revive it.
        let (_, after) = split_at_event(&msgs, "HangupRequest");
        assert!(run(&mut t, &after).is_empty());
    }

    #[test]
    fn live_events_before_the_snapshot_are_not_pruned() {
        let msgs = fixture("missed_busy.ami");
        let (ringing, _) = split_at_event(&msgs, "DialEnd");
        let mut t = CallTracker::new(cfg());
        t.begin_session();
        // The call starts after the snapshot was taken but before it arrives.
        run(&mut t, &ringing);
        assert!(t.apply_snapshot(&[], NOW).is_empty());
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_click_to_call_whose_answer_was_lost_ends_like_a_call() {
        let mut t = CallTracker::new(cfg());
        t.begin_session();
        t.originate_requested(&c2c("k-5"), "a-5");
        let ring = AmiMessage::new()
            .with("Event", "Newchannel")
            .with("Channel", "PJSIP/101-00000001")
            .with("Uniqueid", "k-5")
            .with("Linkedid", "k-5");
        assert_eq!(ids(&t.handle_event(&ring, NOW)), ["k-5:ringing:101"]);
        // Reconnect: the channel is still there, the OriginateResponse is gone for good.
        t.begin_session();
        assert!(t
            .apply_snapshot(&[ring.clone().with("ChannelState", "5")], NOW)
            .is_empty());
        let hangup = AmiMessage::new()
            .with("Event", "Hangup")
            .with("Uniqueid", "k-5")
            .with("Linkedid", "k-5")
            .with("Cause", "19");
        let out = t.handle_event(&hangup, NOW);
        assert_eq!(ids(&out), ["k-5:missed"]);
        assert_eq!(
            out[0].event.kind,
            CallEventKind::Missed {
                reason: MissedReason::NoAnswer
            }
        );
        assert!(t.is_empty());
    }

    #[test]
    fn a_missed_call_never_rung_still_says_who_called() {
        // The DID is `s`, the caller hangs up in the IVR: `ringing` comes with the end.
        let mut t = CallTracker::new(cfg());
        let new = AmiMessage::new()
            .with("Event", "Newchannel")
            .with("Channel", "PJSIP/rt-trunk-00000001")
            .with("CallerIDNum", "89161234567")
            .with("Exten", "s")
            .with("Uniqueid", "7.1")
            .with("Linkedid", "7.1");
        assert!(t.handle_event(&new, NOW).is_empty());
        let hangup = AmiMessage::new()
            .with("Event", "Hangup")
            .with("Uniqueid", "7.1")
            .with("Linkedid", "7.1")
            .with("Cause", "16");
        let out = t.handle_event(&hangup, NOW);
        assert_eq!(ids(&out), ["7.1:ringing", "7.1:missed"]);
        assert_eq!(out[0].raw["Event"], "Hangup");
        assert!(matches!(
            &out[0].event.kind,
            CallEventKind::Ringing { from, to, .. } if from == "+79161234567" && to == "unknown"
        ));
    }

    #[test]
    fn lost_click_to_call_is_failed_on_resync() {
        let mut t = CallTracker::new(cfg());
        t.begin_session();
        t.originate_requested(&c2c("k-9"), "a-9");
        t.begin_session();
        let out = t.apply_snapshot(&[], NOW);
        assert_eq!(ids(&out), ["k-9:failed"]);
    }

    #[test]
    fn absurd_snapshot_durations_do_not_overflow() {
        // Found by the fuzz target.
        let ch = AmiMessage::new()
            .with("Event", "CoreShowChannel")
            .with("Channel", "PJSIP/rt-trunk-00000001")
            .with("CallerIDNum", "89161234567")
            .with("Exten", "74951234567")
            .with("Uniqueid", "1.1")
            .with("Linkedid", "1.1")
            .with("Duration", "99999999999:00:00");
        let mut t = CallTracker::new(cfg());
        t.begin_session();
        let out = t.apply_snapshot(&[ch], NOW);
        assert_eq!(out[0].occurred_at, NOW);
    }

    #[test]
    fn event_times() {
        let m = AmiMessage::new().with("Timestamp", "1714566600.5");
        assert_eq!(
            parse_event_time(&m),
            Some(datetime!(2024-05-01 12:30:00.5 UTC))
        );
        for bad in ["", "x", "1.x", "99999999999999999999", "1.-5"] {
            assert_eq!(
                parse_event_time(&AmiMessage::new().with("Timestamp", bad)),
                None,
                "{bad}"
            );
        }
        assert_eq!(parse_hms("00:01:33"), Some(93));
        assert_eq!(parse_hms("x"), None);
    }

    #[test]
    fn recording_urls() {
        let u = recording_url(
            "https://pbx/rec/",
            "/var/spool/asterisk/monitor/",
            "/var/spool/asterisk/monitor/2024/05/01/a b.wav",
        );
        assert_eq!(u.as_deref(), Some("https://pbx/rec/2024/05/01/a%20b.wav"));
        assert_eq!(
            recording_url("https://pbx/rec", "/x/", "/tmp/y.wav").as_deref(),
            Some("https://pbx/rec/y.wav")
        );
        assert_eq!(recording_url("https://pbx/rec", "/x/", "  "), None);
        assert_eq!(recording_url("https://pbx/rec", "/x/", "/x/"), None);
    }

    #[test]
    fn internal_calls_are_not_reported() {
        let mut t = CallTracker::new(cfg());
        let chan = |uid: &str, lid: &str, channel: &str, exten: &str| {
            AmiMessage::new()
                .with("Event", "Newchannel")
                .with("Channel", channel)
                .with("CallerIDNum", "101")
                .with("Exten", exten)
                .with("Uniqueid", uid)
                .with("Linkedid", lid)
        };
        let mut out = t.handle_event(&chan("9.1", "9.1", "PJSIP/101-00000001", "102"), NOW);
        out.extend(t.handle_event(&chan("9.2", "9.1", "PJSIP/102-00000002", ""), NOW));
        out.extend(
            t.handle_event(
                &AmiMessage::new()
                    .with("Event", "Hangup")
                    .with("Uniqueid", "9.2")
                    .with("Linkedid", "9.1"),
                NOW,
            ),
        );
        out.extend(
            t.handle_event(
                &AmiMessage::new()
                    .with("Event", "Hangup")
                    .with("Uniqueid", "9.1")
                    .with("Linkedid", "9.1"),
                NOW,
            ),
        );
        assert!(out.is_empty(), "{out:?}");
        assert!(t.is_empty());
    }

    #[test]
    fn events_without_ids_or_unknown_are_ignored() {
        let mut t = CallTracker::new(cfg());
        for m in [
            AmiMessage::new()
                .with("Event", "PeerStatus")
                .with("Peer", "PJSIP/101"),
            AmiMessage::new().with("Event", "Hangup"),
            AmiMessage::new()
                .with("Event", "Hangup")
                .with("Uniqueid", "1.1"),
            AmiMessage::new()
                .with("Event", "DialBegin")
                .with("DestUniqueid", "\u{7}"),
            AmiMessage::new().with("Response", "Success"),
            AmiMessage::new()
                .with("Event", "OriginateResponse")
                .with("ActionID", "nope"),
        ] {
            assert!(t.handle_event(&m, NOW).is_empty());
        }
        assert!(t.is_empty());
    }
}
