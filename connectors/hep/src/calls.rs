//! [`CallTracker`]: derives call events from the SIP messages of many calls, keyed by
//! Call-ID. Pure: no I/O and no clock of its own; the caller passes `now` (a monotonic
//! [`Instant`]) and the capture time comes from HEP.
//!
//! What it copes with (research note §3.2, §3.4):
//! - **Mirrored twice.** A proxy in `trace_mode` reports each message once in and once
//!   out, with a different top Via and different addresses. Copies are recognised by
//!   (CSeq number, CSeq method, From-tag, request method or status code), which is the
//!   same on both sides and on retransmissions; the copy with the earliest capture time
//!   is kept.
//! - **Out of order.** Each message is held for the reorder window after it arrives.
//!   When its time is up it is processed together with every held message of the same
//!   call that comes before it in logical order: INVITE, then provisional responses,
//!   final responses, CANCEL, in-dialog requests, BYE, and the 200 to BYE last; capture
//!   time breaks ties. A late message that still arrives after the window cannot undo a
//!   state: the transitions only move forward (a late 200 to BYE after the hangup, or a
//!   late 180 after the answer, changes nothing).
//! - **Lost messages.** A call first seen by a response or a CANCEL still gets its
//!   `ringing` (From/To are the same on every message of the INVITE transaction); a BYE
//!   while ringing implies the answer; a 200 to BYE stands in for a BYE never seen.
//! - **Bounded memory.** At most `max_calls` calls are tracked (the one closest to
//!   expiring is dropped to make room), each remembers at most 64 message keys and
//!   holds at most 64 messages; a call is forgotten after `idle_timeout` without
//!   messages, or 64 s after it ended.
//!
//! An idle call that rang or was answered but never ended ends when it expires: a
//! `missed` (`no_answer`) or a `hung_up` without duration, with cause
//! `call state expired`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use kommutator_sdk::{
    normalize_external_id, CallEvent, CallEventKind, ConnectorId, Direction, InboundEvent,
    InboundKind, MissedReason,
};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::number::{normalize_party, NumberRules};
use crate::sip::{Method, SipMessage, StartLine};

/// Longest Call-ID accepted, in bytes: every event key `{call-id}:{step}` then fits the
/// 256 bytes of an external id.
pub const MAX_CALL_ID_LEN: usize = 200;
/// How many message keys a call remembers for deduplication.
const SEEN_CAP: usize = 64;
/// How many messages a call holds in its reorder buffer.
const PENDING_CAP: usize = 64;
/// How long an ended call is remembered, to recognise late copies (about twice SIP's
/// 32 s transaction timeout).
const ENDED_LINGER: Duration = Duration::from_secs(64);

/// The tracker's settings, from the connector's config.
#[derive(Debug, Clone)]
pub struct TrackerSettings {
    /// How numbers and extensions are read.
    pub rules: NumberRules,
    /// How long each message is held for reordering.
    pub reorder_window: Duration,
    /// How long a call without messages is remembered.
    pub idle_timeout: Duration,
    /// The most calls tracked at once (at least 1).
    pub max_calls: usize,
}

/// A SIP message as captured: the message and its HEP metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// The message.
    pub msg: SipMessage,
    /// Capture time (HEP timestamp, else the time we received it).
    pub ts: OffsetDateTime,
    /// Source of the captured message.
    pub src: Option<SocketAddr>,
    /// Destination of the captured message.
    pub dst: Option<SocketAddr>,
    /// HEP capture agent id.
    pub capture_id: Option<u32>,
    /// HEP correlation id, if the agent sent one.
    pub correlation_id: Option<String>,
}

/// One event derived by the tracker, ready to become an [`InboundEvent`].
#[derive(Debug, Clone, PartialEq)]
pub struct CallUpdate {
    /// `{call-id}:{step}`.
    pub external_id: String,
    /// Capture time of the message that caused it.
    pub occurred_at: OffsetDateTime,
    /// A [`InboundKind::Call`], or [`InboundKind::Unknown`] for a request with no
    /// mapping (an unknown method, MESSAGE).
    pub kind: InboundKind,
    /// The key SIP and HEP fields of that message (no body).
    pub raw: Value,
}

impl CallUpdate {
    /// The event for connector instance `connector_id`.
    pub fn into_event(self, connector_id: ConnectorId) -> InboundEvent {
        InboundEvent::new(connector_id, self.external_id, self.occurred_at, self.kind)
            .with_raw(self.raw)
    }
}

/// What [`CallTracker::ingest`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingest {
    /// Held for reordering; events follow from [`CallTracker::poll`].
    Held,
    /// A copy of a message already seen (the proxy's other copy, a retransmission).
    Duplicate,
    /// Valid SIP that changes no call state (ACK, 100 Trying, OPTIONS, REGISTER, a
    /// re-INVITE, …).
    Ignored,
}

/// Why a message cannot be tracked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackError {
    /// The Call-ID is not usable as a key.
    #[error("unusable Call-ID: {0}")]
    CallId(String),
}

/// What a message means for its call; the order of [`Class::phase`] is the logical
/// order of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// INVITE without To-tag.
    Invite,
    /// 101–199 to INVITE.
    Progress,
    /// 2xx to INVITE.
    Answer,
    /// A final failure to INVITE.
    Reject(u16),
    /// CANCEL.
    Cancel,
    /// REFER.
    Refer,
    /// A request with no mapping (unknown method, MESSAGE): an `Unknown` event.
    Unmapped,
    /// BYE.
    Bye,
    /// 2xx to BYE.
    ByeOk,
}

impl Class {
    fn of(msg: &SipMessage) -> Option<Self> {
        match &msg.start {
            StartLine::Request { method, .. } => match method {
                Method::Invite if msg.to.tag.is_none() => Some(Self::Invite),
                Method::Cancel => Some(Self::Cancel),
                Method::Bye => Some(Self::Bye),
                Method::Refer => Some(Self::Refer),
                Method::Message | Method::Other(_) => Some(Self::Unmapped),
                _ => None,
            },
            StartLine::Response { code, .. } => match (&msg.cseq.method, *code) {
                (Method::Invite, 101..=199) => Some(Self::Progress),
                (Method::Invite, 200..=299) => Some(Self::Answer),
                // Challenges and retry-with responses are followed by a new INVITE;
                // redirects by a new attempt.
                (Method::Invite, 300..=399 | 401 | 407 | 422 | 491) => None,
                (Method::Invite, 400..=699) => Some(Self::Reject(*code)),
                (Method::Bye, 200..=299) => Some(Self::ByeOk),
                _ => None,
            },
        }
    }

    fn phase(self) -> u8 {
        match self {
            Self::Invite => 0,
            Self::Progress => 1,
            // A 487 answers a CANCEL: it goes with it, after any 2xx that crossed it.
            Self::Reject(487) | Self::Cancel => 3,
            Self::Answer | Self::Reject(_) => 2,
            Self::Refer | Self::Unmapped => 4,
            Self::Bye => 5,
            Self::ByeOk => 6,
        }
    }
}

/// What makes two captured messages copies of one another.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DedupKey {
    seq: u32,
    cseq_method: Method,
    from_tag: Option<String>,
    method: Option<Method>,
    status: Option<u16>,
}

impl DedupKey {
    fn of(msg: &SipMessage) -> Self {
        Self {
            seq: msg.cseq.seq,
            cseq_method: msg.cseq.method.clone(),
            from_tag: msg.from.tag.clone(),
            method: msg.method().cloned(),
            status: msg.status(),
        }
    }
}

#[derive(Debug)]
struct Pending {
    id: u64,
    due: Instant,
    class: Class,
    key: DedupKey,
    pkt: Captured,
}

impl Pending {
    fn order(&self) -> (u8, OffsetDateTime, u64) {
        (self.class.phase(), self.pkt.ts, self.id)
    }
}

#[derive(Debug)]
struct Call {
    call_id: String,
    ringing: bool,
    answered: bool,
    answered_at: Option<OffsetDateTime>,
    ended: bool,
    direction: Direction,
    extension: Option<String>,
    caller_tag: Option<String>,
    last_ts: OffsetDateTime,
    seen: VecDeque<DedupKey>,
    pending: Vec<Pending>,
    expiry: (Instant, u64),
}

/// The per-Call-ID state machines of all calls in flight. See the module docs.
#[derive(Debug)]
pub struct CallTracker {
    settings: TrackerSettings,
    calls: HashMap<String, Call>,
    /// (due, pending id) → Call-ID; entries of messages already released are stale and
    /// skipped.
    deadlines: BTreeMap<(Instant, u64), String>,
    /// (expiry, sequence) → Call-ID, one entry per call.
    expiries: BTreeMap<(Instant, u64), String>,
    next_id: u64,
    evicted: u64,
}

fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or(now)
}

impl CallTracker {
    /// An empty tracker.
    pub fn new(settings: TrackerSettings) -> Self {
        Self {
            settings,
            calls: HashMap::new(),
            deadlines: BTreeMap::new(),
            expiries: BTreeMap::new(),
            next_id: 0,
            evicted: 0,
        }
    }

    /// How many calls are tracked.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// Whether no call is tracked.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// How many calls were dropped to stay within `max_calls`.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// When [`poll`](Self::poll) next has work: a held message's window ends or a call
    /// expires.
    pub fn next_deadline(&self) -> Option<Instant> {
        let release = self.deadlines.keys().next().map(|(t, _)| *t);
        let expire = self.expiries.keys().next().map(|(t, _)| *t);
        match (release, expire) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Takes one captured message. Call-relevant messages are held for the reorder
    /// window; events come out of [`poll`](Self::poll). `out` receives events only when
    /// a call had to be dropped (or its buffer was full) and its held messages were
    /// processed early.
    ///
    /// # Errors
    ///
    /// [`TrackError::CallId`] when the Call-ID is longer than [`MAX_CALL_ID_LEN`] bytes
    /// or fails [`normalize_external_id`].
    pub fn ingest(
        &mut self,
        pkt: Captured,
        now: Instant,
        out: &mut Vec<CallUpdate>,
    ) -> Result<Ingest, TrackError> {
        let call_id = normalize_external_id(&pkt.msg.call_id)
            .map_err(|e| TrackError::CallId(e.to_string()))?;
        if call_id.len() > MAX_CALL_ID_LEN {
            return Err(TrackError::CallId(format!(
                "{} bytes long, at most {MAX_CALL_ID_LEN} allowed",
                call_id.len()
            )));
        }
        let Some(class) = Class::of(&pkt.msg) else {
            if self.calls.contains_key(&call_id) {
                self.touch(&call_id, now);
            }
            return Ok(Ingest::Ignored);
        };
        let key = DedupKey::of(&pkt.msg);
        if !self.calls.contains_key(&call_id) {
            while self.calls.len() >= self.settings.max_calls.max(1) {
                if !self.evict_one(out) {
                    break;
                }
            }
            let expiry = (now, self.fresh_id());
            self.expiries.insert(expiry, call_id.clone());
            self.calls.insert(
                call_id.clone(),
                Call {
                    call_id: call_id.clone(),
                    ringing: false,
                    answered: false,
                    answered_at: None,
                    ended: false,
                    direction: Direction::Inbound,
                    extension: None,
                    caller_tag: None,
                    last_ts: pkt.ts,
                    seen: VecDeque::new(),
                    pending: Vec::new(),
                    expiry,
                },
            );
        }
        let id = self.fresh_id();
        let due = later(now, self.settings.reorder_window);
        let outcome = match self.calls.get_mut(&call_id) {
            None => Ingest::Ignored,
            Some(call) if call.seen.contains(&key) => {
                // Keep the earliest copy: the result then does not depend on which copy
                // arrived first.
                if let Some(p) = call.pending.iter_mut().find(|p| p.key == key) {
                    if pkt.ts < p.pkt.ts {
                        p.pkt = pkt;
                    }
                }
                Ingest::Duplicate
            }
            Some(call) => {
                call.seen.push_back(key.clone());
                if call.seen.len() > SEEN_CAP {
                    call.seen.pop_front();
                }
                call.pending.push(Pending {
                    id,
                    due,
                    class,
                    key,
                    pkt,
                });
                self.deadlines.insert((due, id), call_id.clone());
                Ingest::Held
            }
        };
        let overfull = self
            .calls
            .get(&call_id)
            .filter(|c| c.pending.len() > PENDING_CAP)
            .and_then(|c| c.pending.iter().min_by_key(|p| (p.due, p.id)))
            .map(|p| p.id);
        if let Some(first) = overfull {
            self.release_through(&call_id, first, now, out);
        }
        self.touch(&call_id, now);
        Ok(outcome)
    }

    /// Processes the held messages whose window has ended (and those that come before
    /// them), and expires idle calls; their events go to `out` in order.
    pub fn poll(&mut self, now: Instant, out: &mut Vec<CallUpdate>) {
        while let Some(entry) = self.deadlines.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((_, id), call_id) = entry.remove_entry();
            self.release_through(&call_id, id, now, out);
        }
        while let Some(entry) = self.expiries.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (_, call_id) = entry.remove_entry();
            if let Some(mut call) = self.calls.remove(&call_id) {
                self.flush_call(&mut call, out);
                expire(&mut call, out);
            }
        }
    }

    /// Processes every held message now, e.g. at shutdown. Calls stay tracked.
    pub fn flush(&mut self, out: &mut Vec<CallUpdate>) {
        let ids: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| !c.pending.is_empty())
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            if let Some(mut call) = self.calls.remove(&id) {
                self.flush_call(&mut call, out);
                self.calls.insert(id, call);
            }
        }
        self.deadlines.clear();
    }

    fn flush_call(&self, call: &mut Call, out: &mut Vec<CallUpdate>) {
        let mut batch = std::mem::take(&mut call.pending);
        batch.sort_by_key(Pending::order);
        for p in batch {
            process(call, &self.settings.rules, p, out);
        }
    }

    /// Drops the call closest to expiring, after processing what it holds.
    fn evict_one(&mut self, out: &mut Vec<CallUpdate>) -> bool {
        let Some((_, call_id)) = self.expiries.pop_first() else {
            return false;
        };
        if let Some(mut call) = self.calls.remove(&call_id) {
            self.flush_call(&mut call, out);
            self.evicted += 1;
        }
        true
    }

    fn release_through(&mut self, call_id: &str, id: u64, now: Instant, out: &mut Vec<CallUpdate>) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        let Some(limit) = call.pending.iter().find(|p| p.id == id).map(Pending::order) else {
            return; // already released with an earlier batch
        };
        let (mut batch, keep): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut call.pending)
            .into_iter()
            .partition(|p| p.order() <= limit);
        call.pending = keep;
        batch.sort_by_key(Pending::order);
        for p in batch {
            process(call, &self.settings.rules, p, out);
        }
        if call.ended {
            // Shorten its memory to the linger time.
            self.touch(call_id, now);
        }
    }

    fn touch(&mut self, call_id: &str, now: Instant) {
        let fresh = self.fresh_id();
        let idle = self.settings.idle_timeout;
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        let ttl = if call.ended {
            idle.min(ENDED_LINGER)
        } else {
            idle
        };
        self.expiries.remove(&call.expiry);
        call.expiry = (later(now, ttl), fresh);
        self.expiries.insert(call.expiry, call.call_id.clone());
    }
}

/// The terminal event of a call that expired without ending.
fn expire(call: &mut Call, out: &mut Vec<CallUpdate>) {
    if call.ended || !(call.ringing || call.answered) {
        return;
    }
    call.ended = true;
    let raw = json!({"derived": {"expired": true}, "sip": {"call_id": call.call_id}});
    let (step, kind) = if call.answered {
        (
            "hung_up",
            CallEventKind::HungUp {
                duration_secs: None,
                cause: Some("call state expired".to_owned()),
            },
        )
    } else {
        (
            "missed",
            CallEventKind::Missed {
                reason: MissedReason::NoAnswer,
            },
        )
    };
    out.push(update(call, step, call.last_ts, kind, raw));
}

fn update(
    call: &Call,
    step: &str,
    occurred_at: OffsetDateTime,
    kind: CallEventKind,
    raw: Value,
) -> CallUpdate {
    CallUpdate {
        external_id: format!("{}:{step}", call.call_id),
        occurred_at,
        kind: InboundKind::Call(CallEvent {
            call_external_id: call.call_id.clone(),
            kind,
        }),
        raw,
    }
}

/// The key fields of a captured message, for `raw`. No body, no auth key.
pub fn raw_fields(pkt: &Captured) -> Value {
    let m = &pkt.msg;
    let (method, uri, status, phrase) = match &m.start {
        StartLine::Request { method, uri } => {
            (Some(method.as_str()), Some(uri.as_str()), None, None)
        }
        StartLine::Response { code, reason } => (None, None, Some(*code), Some(reason.as_str())),
    };
    json!({
        "hep": {
            "src": pkt.src.map(|a| a.to_string()),
            "dst": pkt.dst.map(|a| a.to_string()),
            "timestamp": pkt.ts.format(&time::format_description::well_known::Rfc3339).ok(),
            "capture_id": pkt.capture_id,
            "correlation_id": pkt.correlation_id,
        },
        "sip": {
            "method": method,
            "request_uri": uri,
            "status": status,
            "reason_phrase": phrase,
            "call_id": m.call_id,
            "cseq": format!("{} {}", m.cseq.seq, m.cseq.method),
            "from": m.from.raw,
            "to": m.to.raw,
            "via_branch": m.via_branch,
            "reason": m.reason,
            "refer_to": m.refer_to.as_ref().map(|r| r.raw.as_str()),
            "user_agent": m.user_agent,
        }
    })
}

/// The `text` of a `Reason` header (`Q.850;cause=16;text="Normal call clearing"`), or
/// `{protocol} cause {n}` when it has none, or the header as written.
fn reason_text(reason: &str) -> String {
    let mut parts = reason.split(';');
    let protocol = parts.next().unwrap_or("").trim();
    let mut cause = None;
    for p in parts {
        if let Some((k, v)) = p.split_once('=') {
            let v = v.trim().trim_matches('"');
            if k.trim().eq_ignore_ascii_case("text") && !v.is_empty() {
                return v.to_owned();
            }
            if k.trim().eq_ignore_ascii_case("cause") {
                cause = Some(v);
            }
        }
    }
    match cause {
        Some(c) => format!("{protocol} cause {c}"),
        None => reason.trim().to_owned(),
    }
    .chars()
    .take(200)
    .collect()
}

/// A CANCEL the proxy sends to the other forks once one answered
/// (`Reason: SIP;cause=200;text="Call completed elsewhere"`).
fn completed_elsewhere(msg: &SipMessage) -> bool {
    msg.reason.as_deref().is_some_and(|r| {
        r.split(';').any(|p| {
            p.split_once('=')
                .is_some_and(|(k, v)| k.trim().eq_ignore_ascii_case("cause") && v.trim() == "200")
        })
    })
}

fn ensure_ringing(call: &mut Call, rules: &NumberRules, pkt: &Captured, out: &mut Vec<CallUpdate>) {
    if call.ringing {
        return;
    }
    call.ringing = true;
    call.caller_tag = pkt.msg.from.tag.clone();
    let caller = normalize_party(rules, &pkt.msg.from.uri);
    let callee = normalize_party(rules, &pkt.msg.to.uri);
    let (direction, extension) = if caller.internal && !callee.internal {
        (Direction::Outbound, Some(caller.value.clone()))
    } else {
        (
            Direction::Inbound,
            callee.internal.then(|| callee.value.clone()),
        )
    };
    call.direction = direction;
    call.extension = extension.clone();
    let kind = CallEventKind::Ringing {
        from: caller.value,
        to: callee.value,
        direction,
        extension,
    };
    out.push(update(call, "ringing", pkt.ts, kind, raw_fields(pkt)));
}

fn answer(call: &mut Call, at: Option<OffsetDateTime>, pkt: &Captured, out: &mut Vec<CallUpdate>) {
    call.answered = true;
    call.answered_at = at;
    let by_extension = match call.direction {
        Direction::Inbound => call.extension.clone(),
        Direction::Outbound => None,
    };
    let mut raw = raw_fields(pkt);
    if at.is_none() {
        raw["derived"] =
            json!({"answer_implied_by": pkt.msg.method().map_or("200 to BYE", Method::as_str)});
    }
    out.push(update(
        call,
        "answered",
        pkt.ts,
        CallEventKind::Answered { by_extension },
        raw,
    ));
}

fn process(call: &mut Call, rules: &NumberRules, p: Pending, out: &mut Vec<CallUpdate>) {
    let pkt = &p.pkt;
    if pkt.ts > call.last_ts {
        call.last_ts = pkt.ts;
    }
    match p.class {
        Class::Invite | Class::Progress => {
            if !call.ended {
                ensure_ringing(call, rules, pkt, out);
            }
        }
        Class::Answer => {
            if call.ended || call.answered {
                return;
            }
            ensure_ringing(call, rules, pkt, out);
            answer(call, Some(pkt.ts), pkt, out);
        }
        Class::Reject(code) => {
            if call.ended || call.answered {
                return;
            }
            ensure_ringing(call, rules, pkt, out);
            call.ended = true;
            let (step, kind) = match code {
                487 => (
                    "missed",
                    CallEventKind::Missed {
                        reason: MissedReason::Cancelled,
                    },
                ),
                486 | 600 => (
                    "missed",
                    CallEventKind::Missed {
                        reason: MissedReason::Busy,
                    },
                ),
                603 => (
                    "missed",
                    CallEventKind::Missed {
                        reason: MissedReason::Rejected,
                    },
                ),
                408 | 480 => (
                    "missed",
                    CallEventKind::Missed {
                        reason: MissedReason::NoAnswer,
                    },
                ),
                _ => {
                    let phrase = match &pkt.msg.start {
                        StartLine::Response { reason, .. } => reason.as_str(),
                        StartLine::Request { .. } => "",
                    };
                    let reason = format!("{code} {phrase}")
                        .trim()
                        .chars()
                        .take(200)
                        .collect();
                    ("failed", CallEventKind::Failed { reason })
                }
            };
            out.push(update(call, step, pkt.ts, kind, raw_fields(pkt)));
        }
        Class::Cancel => {
            if call.ended || call.answered || completed_elsewhere(&pkt.msg) {
                return;
            }
            ensure_ringing(call, rules, pkt, out);
            call.ended = true;
            let kind = CallEventKind::Missed {
                reason: MissedReason::Cancelled,
            };
            out.push(update(call, "missed", pkt.ts, kind, raw_fields(pkt)));
        }
        Class::Refer => {
            if call.ended {
                return;
            }
            let Some(target) = pkt.msg.refer_to.as_ref() else {
                tracing::debug!(call_id = %call.call_id, "REFER without a usable Refer-To, ignored");
                return;
            };
            let to = normalize_party(rules, &target.uri);
            let step = format!("transferred:{}", pkt.msg.cseq.seq);
            let kind = CallEventKind::Transferred {
                to_extension: to.value,
            };
            out.push(update(call, &step, pkt.ts, kind, raw_fields(pkt)));
        }
        Class::Unmapped => {
            let method = pkt.msg.method().map_or("", Method::as_str);
            tracing::debug!(call_id = %call.call_id, method, "SIP request with no mapping");
            out.push(CallUpdate {
                external_id: format!("{}:request:{method}:{}", call.call_id, pkt.msg.cseq.seq),
                occurred_at: pkt.ts,
                kind: InboundKind::Unknown {
                    description: format!("sip {method} request"),
                },
                raw: raw_fields(pkt),
            });
        }
        Class::Bye | Class::ByeOk => {
            if call.ended {
                return;
            }
            if !call.answered && call.ringing {
                answer(call, None, pkt, out);
            }
            call.ended = true;
            let duration_secs = call.answered_at.map(|at| {
                let ms = (pkt.ts - at).whole_milliseconds().max(0);
                u64::try_from((ms + 500) / 1000).unwrap_or(u64::MAX)
            });
            let cause = pkt.msg.reason.as_deref().map(reason_text);
            let mut raw = raw_fields(pkt);
            let by = match (&call.caller_tag, &pkt.msg.from.tag) {
                (Some(caller), Some(from)) if caller == from => Some("caller"),
                (Some(_), Some(_)) => Some("callee"),
                _ => None,
            };
            raw["derived"] = json!({"hung_up_by": by});
            out.push(update(
                call,
                "hung_up",
                pkt.ts,
                CallEventKind::HungUp {
                    duration_secs,
                    cause,
                },
                raw,
            ));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::sip::parse_sip;

    fn settings() -> TrackerSettings {
        TrackerSettings {
            rules: NumberRules {
                country_code: "7".into(),
                national_prefix: "8".into(),
                extension_max_len: 4,
                internal_domains: vec![],
            },
            reorder_window: Duration::from_millis(200),
            idle_timeout: Duration::from_secs(3600),
            max_calls: 100,
        }
    }

    fn t(ms: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_714_564_800).unwrap()
            + time::Duration::milliseconds(ms)
    }

    /// A message of call `cid` between caller 89161234567 and extension 101.
    fn msg(cid: &str, first: &str, cseq: &str, to_tag: bool, extra: &str) -> SipMessage {
        let to = if to_tag {
            "<sip:101@pbx>;tag=callee"
        } else {
            "<sip:101@pbx>"
        };
        let text = format!(
            "{first}\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\nFrom: <sip:89161234567@trunk>;tag=caller\r\n\
             To: {to}\r\nCall-ID: {cid}\r\nCSeq: {cseq}\r\n{extra}\r\n"
        );
        parse_sip(text.as_bytes()).unwrap()
    }

    fn cap(msg: SipMessage, ms: i64) -> Captured {
        Captured {
            msg,
            ts: t(ms),
            src: None,
            dst: None,
            capture_id: Some(1),
            correlation_id: None,
        }
    }

    fn kinds(updates: &[CallUpdate]) -> Vec<(String, InboundKind)> {
        updates
            .iter()
            .map(|u| (u.external_id.clone(), u.kind.clone()))
            .collect()
    }

    fn call(cid: &str, kind: CallEventKind) -> InboundKind {
        InboundKind::Call(CallEvent {
            call_external_id: cid.into(),
            kind,
        })
    }

    fn ringing(cid: &str) -> (String, InboundKind) {
        (
            format!("{cid}:ringing"),
            call(
                cid,
                CallEventKind::Ringing {
                    from: "+79161234567".into(),
                    to: "101".into(),
                    direction: Direction::Inbound,
                    extension: Some("101".into()),
                },
            ),
        )
    }

    /// Feeds all packets at `start`, then polls after the window.
    fn run(tr: &mut CallTracker, pkts: Vec<Captured>) -> Vec<CallUpdate> {
        let start = Instant::now();
        let mut out = Vec::new();
        for p in pkts {
            tr.ingest(p, start, &mut out).unwrap();
        }
        assert!(out.is_empty(), "nothing before the window ends");
        tr.poll(start + Duration::from_millis(199), &mut out);
        assert!(out.is_empty(), "nothing before the window ends");
        tr.poll(start + Duration::from_millis(200), &mut out);
        out
    }

    #[test]
    fn answered_call_with_duration_and_cause() {
        let mut tr = CallTracker::new(settings());
        let out = run(
            &mut tr,
            vec![
                cap(msg("c1", "SIP/2.0 200 OK", "2 BYE", true, ""), 93_600),
                cap(
                    msg("c1", "INVITE sip:101@pbx SIP/2.0", "1 INVITE", false, ""),
                    0,
                ),
                cap(msg("c1", "SIP/2.0 100 Trying", "1 INVITE", false, ""), 1),
                cap(msg("c1", "SIP/2.0 180 Ringing", "1 INVITE", true, ""), 2),
                cap(msg("c1", "SIP/2.0 200 OK", "1 INVITE", true, ""), 5_000),
                cap(
                    msg("c1", "ACK sip:101@pbx SIP/2.0", "1 ACK", true, ""),
                    5_001,
                ),
                cap(
                    msg(
                        "c1",
                        "BYE sip:x@caller SIP/2.0",
                        "7 BYE",
                        true,
                        "Reason: Q.850;cause=16;text=\"Normal call clearing\"\r\n",
                    )
                    .with_from_tag("callee"),
                    98_400,
                ),
            ],
        );
        assert_eq!(
            kinds(&out),
            vec![
                ringing("c1"),
                (
                    "c1:answered".into(),
                    call(
                        "c1",
                        CallEventKind::Answered {
                            by_extension: Some("101".into())
                        }
                    )
                ),
                (
                    "c1:hung_up".into(),
                    call(
                        "c1",
                        CallEventKind::HungUp {
                            duration_secs: Some(93),
                            cause: Some("Normal call clearing".into())
                        }
                    )
                ),
            ]
        );
        assert_eq!(out[0].occurred_at, t(0));
        assert_eq!(out[1].occurred_at, t(5_000));
        assert_eq!(out[2].occurred_at, t(98_400));
        assert_eq!(out[2].raw["derived"]["hung_up_by"], "callee");
        assert_eq!(out[0].raw["sip"]["method"], "INVITE");
        assert_eq!(out[0].raw["sip"]["cseq"], "1 INVITE");
        assert_eq!(out[1].raw["sip"]["status"], 200);
    }

    impl SipMessage {
        fn with_from_tag(mut self, tag: &str) -> Self {
            self.from.tag = Some(tag.into());
            self
        }
    }

    #[test]
    fn final_responses_map_to_missed_and_failed() {
        for (code, phrase, step, kind) in [
            (
                486,
                "Busy Here",
                "missed",
                CallEventKind::Missed {
                    reason: MissedReason::Busy,
                },
            ),
            (
                600,
                "Busy Everywhere",
                "missed",
                CallEventKind::Missed {
                    reason: MissedReason::Busy,
                },
            ),
            (
                603,
                "Decline",
                "missed",
                CallEventKind::Missed {
                    reason: MissedReason::Rejected,
                },
            ),
            (
                408,
                "Request Timeout",
                "missed",
                CallEventKind::Missed {
                    reason: MissedReason::NoAnswer,
                },
            ),
            (
                480,
                "Temporarily Unavailable",
                "missed",
                CallEventKind::Missed {
                    reason: MissedReason::NoAnswer,
                },
            ),
            (
                487,
                "Request Terminated",
                "missed",
                CallEventKind::Missed {
                    reason: MissedReason::Cancelled,
                },
            ),
            (
                404,
                "Not Found",
                "failed",
                CallEventKind::Failed {
                    reason: "404 Not Found".into(),
                },
            ),
            (
                503,
                "",
                "failed",
                CallEventKind::Failed {
                    reason: "503".into(),
                },
            ),
        ] {
            let mut tr = CallTracker::new(settings());
            let out = run(
                &mut tr,
                vec![
                    cap(
                        msg("c", "INVITE sip:101@pbx SIP/2.0", "1 INVITE", false, ""),
                        0,
                    ),
                    cap(
                        msg(
                            "c",
                            &format!("SIP/2.0 {code} {phrase}"),
                            "1 INVITE",
                            true,
                            "",
                        ),
                        10,
                    ),
                ],
            );
            assert_eq!(
                kinds(&out),
                vec![ringing("c"), (format!("c:{step}"), call("c", kind))],
                "{code}"
            );
        }
    }

    #[test]
    fn challenges_and_redirects_are_not_final() {
        let mut tr = CallTracker::new(settings());
        let out = run(
            &mut tr,
            vec![
                cap(
                    msg("c", "INVITE sip:101@pbx SIP/2.0", "1 INVITE", false, ""),
                    0,
                ),
                cap(
                    msg(
                        "c",
                        "SIP/2.0 407 Proxy Authentication Required",
                        "1 INVITE",
                        true,
                        "",
                    ),
                    1,
                ),
                cap(msg("c", "SIP/2.0 302 Moved", "1 INVITE", true, ""), 1),
                cap(
                    msg("c", "INVITE sip:101@pbx SIP/2.0", "2 INVITE", false, ""),
                    2,
                ),
                cap(msg("c", "SIP/2.0 200 OK", "2 INVITE", true, ""), 3),
            ],
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].external_id, "c:answered");
    }

    #[test]
    fn cancel_wins_unless_completed_elsewhere() {
        let mut tr = CallTracker::new(settings());
        let out = run(
            &mut tr,
            vec![
                cap(
                    msg("c", "INVITE sip:101@pbx SIP/2.0", "1 INVITE", false, ""),
                    0,
                ),
                cap(
                    msg("c", "CANCEL sip:101@pbx SIP/2.0", "1 CANCEL", false, ""),
                    10,
                ),
                cap(
                    msg("c", "SIP/2.0 487 Request Terminated", "1 INVITE", true, ""),
                    12,
                ),
            ],
        );
        assert_eq!(
            kinds(&out)[1],
            (
                "c:missed".into(),
                call(
                    "c",
                    CallEventKind::Missed {
                        reason: MissedReason::Cancelled
                    }
                )
            )
        );
        assert_eq!(out[1].occurred_at, t(10), "the CANCEL, not the 487");
        assert_eq!(out.len(), 2);

        let mut tr = CallTracker::new(settings());
        let out = run(
            &mut tr,
            vec![
                cap(
                    msg("d", "INVITE sip:101@pbx SIP/2.0", "1 INVITE", false, ""),
                    0,
                ),
                cap(
                    msg(
                        "d",
                        "CANCEL sip:101@pbx SIP/2.0",
                        "1 CANCEL",
                        false,
                        "Reason: SIP;cause=200;text=\"Call completed elsewhere\"\r\n",
                    ),
                    10,
                ),
            ],
        );
        assert_eq!(kinds(&out), vec![ringing("d")]);
    }

    #[test]
    fn answer_beats_a_crossing_cancel_in_one_batch() {
        let mut tr = CallTracker::new(settings());
        let out = run(
            &mut tr,
            vec![
                cap(
                    msg("c", "INVITE sip:101@pbx SIP/2.0", "1 INVITE", false, ""),
                    0,
                ),
                cap(
                    msg("c", "CANCEL sip:101@pbx SIP/2.0", "1 CANCEL", false, ""),
                    10,
                ),
                cap(msg("c", "SIP/2.0 200 OK", "1 INVITE", true, ""), 11),
            ],
        );
        assert_eq!(out[1].external_id, "c:answered");
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn transfer_and_unknown_methods() {
        let mut tr = CallTracker::new(settings());
        let out = run(
            &mut tr,
            vec![
                cap(
                    msg("c", "INVITE sip:101@pbx SIP/2.0", "1 INVITE", false, ""),
                    0,
                ),
                cap(msg("c", "SIP/2.0 200 OK", "1 INVITE", true, ""), 1),
                cap(
                    msg(
                        "c",
                        "REFER sip:x SIP/2.0",
                        "2 REFER",
                        true,
                        "Refer-To: <sip:102@pbx>\r\n",
                    ),
                    5,
                ),
                cap(msg("c", "REFER sip:x SIP/2.0", "3 REFER", true, ""), 6),
                cap(msg("c", "FOO sip:x SIP/2.0", "4 FOO", true, ""), 7),
                cap(msg("c", "MESSAGE sip:x SIP/2.0", "5 MESSAGE", true, ""), 8),
            ],
        );
        let ks = kinds(&out);
        assert_eq!(
            ks[2],
            (
                "c:transferred:2".into(),
                call(
                    "c",
                    CallEventKind::Transferred {
                        to_extension: "102".into()
                    }
                )
            )
        );
        assert_eq!(
            ks[3],
            (
                "c:request:FOO:4".into(),
                InboundKind::Unknown {
                    description: "sip FOO request".into()
                }
            )
        );
        assert_eq!(ks[4].0, "c:request:MESSAGE:5");
        assert_eq!(ks.len(), 5);
    }

    #[test]
    fn lost_invite_and_lost_bye() {
        let mut tr = CallTracker::new(settings());
        // Only the 180, the 200 to BYE: ringing from the 180, the answer implied.
        let out = run(
            &mut tr,
            vec![
                cap(msg("c", "SIP/2.0 180 Ringing", "1 INVITE", true, ""), 0),
                cap(msg("c", "SIP/2.0 200 OK", "2 BYE", true, ""), 9_000),
            ],
        );
        let ks = kinds(&out);
        assert_eq!(ks[0], ringing("c"));
        assert_eq!(
            ks[1],
            (
                "c:answered".into(),
                call(
                    "c",
                    CallEventKind::Answered {
                        by_extension: Some("101".into())
                    }
                )
            )
        );
        assert_eq!(
            ks[2],
            (
                "c:hung_up".into(),
                call(
                    "c",
                    CallEventKind::HungUp {
                        duration_secs: None,
                        cause: None
                    }
                )
            )
        );
        assert_eq!(out[1].raw["derived"]["answer_implied_by"], "200 to BYE");

        // A BYE of a call never seen: just the hangup.
        let out = run(
            &mut tr,
            vec![cap(msg("e", "BYE sip:x SIP/2.0", "9 BYE", true, ""), 0)],
        );
        assert_eq!(
            kinds(&out),
            vec![(
                "e:hung_up".into(),
                call(
                    "e",
                    CallEventKind::HungUp {
                        duration_secs: None,
                        cause: None
                    }
                )
            )]
        );
    }

    #[test]
    fn late_copies_change_nothing() {
        let mut tr = CallTracker::new(settings());
        let start = Instant::now();
        let mut out = Vec::new();
        let invite = cap(
            msg("c", "INVITE sip:101@pbx SIP/2.0", "1 INVITE", false, ""),
            0,
        );
        let ok = cap(msg("c", "SIP/2.0 200 OK", "1 INVITE", true, ""), 10);
        let bye = cap(msg("c", "BYE sip:x SIP/2.0", "2 BYE", true, ""), 2_000);
        let bye_ok = cap(msg("c", "SIP/2.0 200 OK", "2 BYE", true, ""), 2_001);
        let ringing = cap(msg("c", "SIP/2.0 180 Ringing", "1 INVITE", true, ""), 5);
        for p in [invite.clone(), ok, bye.clone()] {
            assert_eq!(tr.ingest(p, start, &mut out).unwrap(), Ingest::Held);
        }
        tr.poll(start + Duration::from_secs(1), &mut out);
        assert_eq!(out.len(), 3);
        out.clear();
        // Seconds later: the 200 to BYE, a late 180, the other copy of the BYE.
        let later = start + Duration::from_secs(5);
        assert_eq!(tr.ingest(bye_ok, later, &mut out).unwrap(), Ingest::Held);
        assert_eq!(tr.ingest(ringing, later, &mut out).unwrap(), Ingest::Held);
        assert_eq!(tr.ingest(bye, later, &mut out).unwrap(), Ingest::Duplicate);
        assert_eq!(
            tr.ingest(invite, later, &mut out).unwrap(),
            Ingest::Duplicate
        );
        tr.poll(later + Duration::from_secs(1), &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn earliest_copy_is_kept() {
        let mut tr = CallTracker::new(settings());
        let mut a = cap(
            msg("c", "INVITE sip:101@pbx SIP/2.0", "1 INVITE", false, ""),
            5,
        );
        a.src = Some("127.0.0.1:5060".parse().unwrap());
        let mut b = a.clone();
        b.ts = t(1);
        b.src = Some("127.0.0.1:5090".parse().unwrap());
        let out = run(&mut tr, vec![a, b]);
        assert_eq!(out[0].occurred_at, t(1));
        assert_eq!(out[0].raw["hep"]["src"], "127.0.0.1:5090");
    }

    #[test]
    fn ignored_messages_do_not_create_calls() {
        let mut tr = CallTracker::new(settings());
        let mut out = Vec::new();
        let now = Instant::now();
        for first in [
            "ACK sip:x SIP/2.0",
            "OPTIONS sip:x SIP/2.0",
            "SIP/2.0 100 Trying",
        ] {
            let m = msg("o", first, "1 OPTIONS", false, "");
            assert_eq!(
                tr.ingest(cap(m, 0), now, &mut out).unwrap(),
                Ingest::Ignored
            );
        }
        let reinvite = msg("o", "INVITE sip:x SIP/2.0", "2 INVITE", true, "");
        assert_eq!(
            tr.ingest(cap(reinvite, 0), now, &mut out).unwrap(),
            Ingest::Ignored
        );
        assert!(tr.is_empty());
        assert_eq!(tr.next_deadline(), None);
    }

    #[test]
    fn bad_call_ids_are_rejected() {
        let mut tr = CallTracker::new(settings());
        let mut out = Vec::new();
        let long = "x".repeat(MAX_CALL_ID_LEN + 1);
        let mut m = msg("c", "INVITE sip:101@pbx SIP/2.0", "1 INVITE", false, "");
        m.call_id = long;
        assert_eq!(
            tr.ingest(cap(m.clone(), 0), Instant::now(), &mut out)
                .unwrap_err()
                .to_string(),
            "unusable Call-ID: 201 bytes long, at most 200 allowed"
        );
        m.call_id = "a\u{1}b".into();
        assert_eq!(
            tr.ingest(cap(m, 0), Instant::now(), &mut out).unwrap_err().to_string(),
            "unusable Call-ID: protocol error: external id contains control character '\\u{1}' at byte 1"
        );
    }

    #[test]
    fn idle_calls_expire_with_a_terminal_event() {
        let mut s = settings();
        s.idle_timeout = Duration::from_secs(60);
        let mut tr = CallTracker::new(s);
        let start = Instant::now();
        let mut out = Vec::new();
        tr.ingest(
            cap(
                msg("r", "INVITE sip:101@pbx SIP/2.0", "1 INVITE", false, ""),
                0,
            ),
            start,
            &mut out,
        )
        .unwrap();
        tr.ingest(
            cap(msg("a", "SIP/2.0 200 OK", "1 INVITE", true, ""), 0),
            start,
            &mut out,
        )
        .unwrap();
        tr.ingest(
            cap(msg("u", "FOO sip:x SIP/2.0", "1 FOO", true, ""), 0),
            start,
            &mut out,
        )
        .unwrap();
        tr.poll(start + Duration::from_secs(1), &mut out);
        assert_eq!(out.len(), 4);
        assert_eq!(tr.len(), 3);
        out.clear();
        assert_eq!(tr.next_deadline(), Some(start + Duration::from_secs(60)));
        tr.poll(start + Duration::from_secs(60), &mut out);
        assert!(tr.is_empty());
        let mut ks = kinds(&out);
        ks.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            ks,
            vec![
                (
                    "a:hung_up".into(),
                    call(
                        "a",
                        CallEventKind::HungUp {
                            duration_secs: None,
                            cause: Some("call state expired".into())
                        }
                    )
                ),
                (
                    "r:missed".into(),
                    call(
                        "r",
                        CallEventKind::Missed {
                            reason: MissedReason::NoAnswer
                        }
                    )
                ),
            ]
        );
    }

    #[test]
    fn ended_calls_linger_briefly() {
        let mut tr = CallTracker::new(settings());
        let start = Instant::now();
        let out = run(
            &mut tr,
            vec![
                cap(
                    msg("c", "INVITE sip:101@pbx SIP/2.0", "1 INVITE", false, ""),
                    0,
                ),
                cap(msg("c", "SIP/2.0 486 Busy", "1 INVITE", true, ""), 1),
            ],
        );
        assert_eq!(out.len(), 2);
        let mut out = Vec::new();
        tr.poll(start + ENDED_LINGER + Duration::from_secs(1), &mut out);
        assert!(tr.is_empty());
        assert!(out.is_empty(), "an ended call expires silently");
    }

    #[test]
    fn max_calls_evicts_the_call_closest_to_expiry() {
        let mut s = settings();
        s.max_calls = 2;
        let mut tr = CallTracker::new(s);
        let start = Instant::now();
        let mut out = Vec::new();
        for (i, cid) in ["a", "b", "c"].into_iter().enumerate() {
            let now = start + Duration::from_millis(10 * i as u64);
            tr.ingest(
                cap(
                    msg(cid, "INVITE sip:101@pbx SIP/2.0", "1 INVITE", false, ""),
                    0,
                ),
                now,
                &mut out,
            )
            .unwrap();
        }
        // "a" was dropped to make room, its held INVITE processed first.
        assert_eq!(kinds(&out), vec![ringing("a")]);
        assert_eq!(tr.len(), 2);
        assert_eq!(tr.evicted(), 1);
        tr.poll(start + Duration::from_secs(1), &mut out);
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn a_full_reorder_buffer_releases_early() {
        let mut tr = CallTracker::new(settings());
        let start = Instant::now();
        let mut out = Vec::new();
        tr.ingest(
            cap(
                msg("c", "INVITE sip:101@pbx SIP/2.0", "1 INVITE", false, ""),
                0,
            ),
            start,
            &mut out,
        )
        .unwrap();
        for seq in 2..=(PENDING_CAP as u32 + 1) {
            let m = msg("c", "FOO sip:x SIP/2.0", &format!("{seq} FOO"), true, "");
            tr.ingest(cap(m, 1), start, &mut out).unwrap();
        }
        assert_eq!(kinds(&out), vec![ringing("c")]);
    }

    #[test]
    fn flush_processes_everything_held() {
        let mut tr = CallTracker::new(settings());
        let mut out = Vec::new();
        tr.ingest(
            cap(
                msg("c", "INVITE sip:101@pbx SIP/2.0", "1 INVITE", false, ""),
                0,
            ),
            Instant::now(),
            &mut out,
        )
        .unwrap();
        tr.flush(&mut out);
        assert_eq!(kinds(&out), vec![ringing("c")]);
        assert_eq!(tr.len(), 1);
    }

    #[test]
    fn outbound_calls() {
        let mut tr = CallTracker::new(settings());
        let text = "INVITE sip:89161234567@trunk SIP/2.0\r\nFrom: \"Op\" <sip:101@pbx>;tag=a\r\n\
                    To: <sip:89161234567@trunk>\r\nCall-ID: o1\r\nCSeq: 1 INVITE\r\n\r\n";
        let ok = text.replace("INVITE sip:89161234567@trunk SIP/2.0", "SIP/2.0 200 OK");
        let out = run(
            &mut tr,
            vec![
                cap(parse_sip(text.as_bytes()).unwrap(), 0),
                cap(parse_sip(ok.as_bytes()).unwrap(), 1),
            ],
        );
        assert_eq!(
            kinds(&out),
            vec![
                (
                    "o1:ringing".into(),
                    call(
                        "o1",
                        CallEventKind::Ringing {
                            from: "101".into(),
                            to: "+79161234567".into(),
                            direction: Direction::Outbound,
                            extension: Some("101".into())
                        }
                    )
                ),
                (
                    "o1:answered".into(),
                    call("o1", CallEventKind::Answered { by_extension: None })
                ),
            ]
        );
    }

    #[test]
    fn reason_texts() {
        assert_eq!(
            reason_text("Q.850;cause=16;text=\"Normal call clearing\""),
            "Normal call clearing"
        );
        assert_eq!(reason_text("Q.850 ; cause=17"), "Q.850 cause 17");
        assert_eq!(reason_text("  something odd "), "something odd");
        assert_eq!(reason_text(&"x".repeat(500)).len(), 200);
    }
}
