//! From a parsed [`CtiRequest`] and what we remember of its call to a normalized call
//! event: pure, no I/O, no panic.

use kommutator_sdk::{normalize_external_id, CallEventKind, Direction, MissedReason};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::parse::{CtiDirection, CtiEventType, CtiRequest};
use kommutator_sdk::phone::{normalize_number, Number, NumberPlan};

/// What the connector remembers of one call between requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallRecord {
    /// When the call was answered (our receive time of `answer`), if it was.
    pub answered_at: Option<OffsetDateTime>,
}

/// How the call table changes once the event is handed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateUpdate {
    /// Remember the call (or replace what we knew).
    Put(CallRecord),
    /// The call is over: forget it.
    Forget,
}

/// One request, normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtiOutcome {
    /// The key of the call: `callId` (or `sha256:<hex>` of a very long one).
    pub call_key: String,
    /// The event's idempotency key: `{call_key}:{event}`.
    pub external_id: String,
    /// What happened.
    pub kind: CallEventKind,
    /// Whether the caller is blocked and the PBX should reject the call.
    pub blocked: bool,
    /// The change to the call table to make once the event is handed over.
    pub update: StateUpdate,
}

/// A callId longer than this is replaced by its hash in keys, so that
/// `{call_key}:newCall` fits the 256-byte limit of external ids.
const MAX_RAW_CALL_KEY: usize = 200;

/// The key of a call from its `callId`.
///
/// # Errors
///
/// A message when the id contains control characters.
pub fn call_key(call_id: &str) -> Result<String, String> {
    let id = call_id.trim();
    if id.len() > MAX_RAW_CALL_KEY {
        if id.chars().any(char::is_control) {
            return Err("callId contains a control character".to_owned());
        }
        let digest = Sha256::digest(id.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        return Ok(format!("sha256:{hex}"));
    }
    normalize_external_id(id).map_err(|e| match e {
        kommutator_sdk::ConnectorError::Protocol(m) => m.replace("external id", "callId"),
        other => other.to_string(),
    })
}

/// Maps `req` to a call event, given what we remember of the call (`known`, `None` when
/// we never saw it or forgot it) and our receive time `now`.
///
/// - `newCall` → `ringing` (numbers toward E.164; the extension side kept as is);
///   `blocked` when the caller of an inbound call is in `blocked` (normalized numbers).
/// - `answer` → `answered` by `answeringNumber`, else the first `user`.
/// - `hangup` → `hung_up` with the talk time when we saw the answer; `missed` when we saw
///   the call ring and never answer (reason from `cause`); when we know nothing of the
///   call, `cause` decides: `busy`/`cancel`/`noAnswer`/`congestion`/`notFound` are
///   missed, anything else `hung_up` without a duration.
///
/// # Errors
///
/// A message for a `callId` that cannot be a key.
pub fn normalize_cti(
    req: &CtiRequest,
    known: Option<&CallRecord>,
    now: OffsetDateTime,
    plan: &NumberPlan,
    blocked: &[String],
) -> Result<CtiOutcome, String> {
    let call_key = call_key(&req.call_id)?;
    let external_id = format!("{call_key}:{}", req.event.as_str());
    let mut is_blocked = false;
    let (kind, update) = match req.event {
        CtiEventType::NewCall => {
            let from = normalize_number(req.from.as_deref().unwrap_or_default(), plan);
            let to = normalize_number(req.to.as_deref().unwrap_or_default(), plan);
            let direction = match req.direction {
                Some(CtiDirection::Out) => Direction::Outbound,
                _ => Direction::Inbound,
            };
            let extension = match direction {
                Direction::Inbound => to.is_extension().then(|| to.as_str().to_owned()),
                Direction::Outbound => from.is_extension().then(|| from.as_str().to_owned()),
            };
            is_blocked =
                direction == Direction::Inbound && blocked.iter().any(|b| b == from.as_str());
            let update = StateUpdate::Put(CallRecord {
                answered_at: known.and_then(|k| k.answered_at),
            });
            let kind = CallEventKind::Ringing {
                from: from.into_string(),
                to: to.into_string(),
                direction,
                extension,
            };
            (kind, update)
        }
        CtiEventType::Answer => {
            let by = req
                .answering_number
                .clone()
                .or_else(|| req.users.first().cloned());
            let answered_at = known.and_then(|k| k.answered_at).unwrap_or(now);
            (
                CallEventKind::Answered { by_extension: by },
                StateUpdate::Put(CallRecord {
                    answered_at: Some(answered_at),
                }),
            )
        }
        CtiEventType::Hangup => (
            hangup_kind(req.cause.as_deref(), known, now),
            StateUpdate::Forget,
        ),
    };
    Ok(CtiOutcome {
        call_key,
        external_id,
        kind,
        blocked: is_blocked,
        update,
    })
}

fn hangup_kind(
    cause: Option<&str>,
    known: Option<&CallRecord>,
    now: OffsetDateTime,
) -> CallEventKind {
    let hung_up = |duration_secs| CallEventKind::HungUp {
        duration_secs,
        cause: cause.map(str::to_owned),
    };
    match known {
        Some(CallRecord {
            answered_at: Some(at),
        }) => {
            let secs = (now - *at).whole_seconds();
            hung_up(Some(u64::try_from(secs).unwrap_or(0)))
        }
        // Rang, never answered: missed, unless forwarded away (Zammad counts that as done).
        Some(CallRecord { answered_at: None }) => match cause {
            Some("forwarded") => hung_up(None),
            other => CallEventKind::Missed {
                reason: missed_reason(other).unwrap_or(MissedReason::Cancelled),
            },
        },
        // Nothing known (restart, evicted, or the PBX sent no newCall): the cause decides.
        None => match missed_reason(cause) {
            Some(reason) => CallEventKind::Missed { reason },
            None => hung_up(None),
        },
    }
}

/// The missed reason a `cause` names; `None` for causes that say nothing about answering
/// (`normalClearing`, `forwarded`, unknown ones).
fn missed_reason(cause: Option<&str>) -> Option<MissedReason> {
    match cause? {
        "cancel" => Some(MissedReason::Cancelled),
        "busy" | "congestion" => Some(MissedReason::Busy),
        "noAnswer" => Some(MissedReason::NoAnswer),
        "notFound" => Some(MissedReason::Rejected),
        _ => None,
    }
}

/// Normalizes the configured blocked numbers the same way callers are.
pub fn normalize_blocked(list: &[String], plan: &NumberPlan) -> Vec<String> {
    list.iter()
        .map(|n| normalize_number(n, plan))
        .map(Number::into_string)
        .filter(|n| !n.is_empty())
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::parse::parse_cti;

    const T0: OffsetDateTime = datetime!(2024-05-01 12:00:00 UTC);
    const T1: OffsetDateTime = datetime!(2024-05-01 12:01:33 UTC);

    fn plan() -> NumberPlan {
        NumberPlan::new(Some("7".to_owned()), 5)
    }

    fn req(body: &str) -> CtiRequest {
        parse_cti(body.as_bytes(), None).unwrap()
    }

    fn run(body: &str, known: Option<CallRecord>, now: OffsetDateTime) -> CtiOutcome {
        normalize_cti(
            &req(body),
            known.as_ref(),
            now,
            &plan(),
            &["+74950000000".to_owned()],
        )
        .unwrap()
    }

    #[test]
    fn new_call_inbound_to_an_extension() {
        let out = run(
            "event=newCall&callId=c1&from=84951234567&to=101&direction=in",
            None,
            T0,
        );
        assert_eq!(out.external_id, "c1:newCall");
        assert_eq!(
            out.kind,
            CallEventKind::Ringing {
                from: "+74951234567".to_owned(),
                to: "101".to_owned(),
                direction: Direction::Inbound,
                extension: Some("101".to_owned()),
            }
        );
        assert!(!out.blocked);
        assert_eq!(
            out.update,
            StateUpdate::Put(CallRecord { answered_at: None })
        );
    }

    #[test]
    fn new_call_outbound_from_an_extension() {
        let out = run(
            "event=newCall&callId=c1&from=102&to=+7 916 000-11-22&direction=out",
            None,
            T0,
        );
        assert_eq!(
            out.kind,
            CallEventKind::Ringing {
                from: "102".to_owned(),
                to: "+79160001122".to_owned(),
                direction: Direction::Outbound,
                extension: Some("102".to_owned()),
            }
        );
    }

    #[test]
    fn blocked_only_for_inbound() {
        let inbound = run(
            "event=newCall&callId=c&from=84950000000&to=101&direction=in",
            None,
            T0,
        );
        assert!(inbound.blocked);
        let outbound = run(
            "event=newCall&callId=c&from=84950000000&to=101&direction=out",
            None,
            T0,
        );
        assert!(!outbound.blocked);
    }

    #[test]
    fn answer_then_hangup_has_a_duration() {
        let rang = CallRecord { answered_at: None };
        let ans = run(
            "event=answer&callId=c&answeringNumber=101&user=Alice",
            Some(rang),
            T0,
        );
        assert_eq!(ans.external_id, "c:answer");
        assert_eq!(
            ans.kind,
            CallEventKind::Answered {
                by_extension: Some("101".to_owned())
            }
        );
        let StateUpdate::Put(rec) = ans.update else {
            panic!("{:?}", ans.update)
        };
        assert_eq!(rec.answered_at, Some(T0));

        let hang = run("event=hangup&callId=c&cause=normalClearing", Some(rec), T1);
        assert_eq!(hang.external_id, "c:hangup");
        assert_eq!(
            hang.kind,
            CallEventKind::HungUp {
                duration_secs: Some(93),
                cause: Some("normalClearing".to_owned())
            }
        );
        assert_eq!(hang.update, StateUpdate::Forget);
    }

    #[test]
    fn answer_falls_back_to_the_user_and_keeps_the_first_answer_time() {
        let known = CallRecord {
            answered_at: Some(T0),
        };
        let ans = run("event=answer&callId=c&user%5B%5D=Alice", Some(known), T1);
        assert_eq!(
            ans.kind,
            CallEventKind::Answered {
                by_extension: Some("Alice".to_owned())
            }
        );
        assert_eq!(ans.update, StateUpdate::Put(known));
    }

    #[test]
    fn unanswered_hangups_are_missed_by_cause() {
        let rang = Some(CallRecord { answered_at: None });
        for (cause, reason) in [
            ("cancel", MissedReason::Cancelled),
            ("normalClearing", MissedReason::Cancelled),
            ("busy", MissedReason::Busy),
            ("congestion", MissedReason::Busy),
            ("noAnswer", MissedReason::NoAnswer),
            ("notFound", MissedReason::Rejected),
            ("somethingNew", MissedReason::Cancelled),
        ] {
            let out = run(&format!("event=hangup&callId=c&cause={cause}"), rang, T1);
            assert_eq!(out.kind, CallEventKind::Missed { reason }, "{cause}");
        }
        let fwd = run("event=hangup&callId=c&cause=forwarded", rang, T1);
        assert_eq!(
            fwd.kind,
            CallEventKind::HungUp {
                duration_secs: None,
                cause: Some("forwarded".to_owned())
            }
        );
    }

    #[test]
    fn lost_state_lets_the_cause_decide() {
        let out = run("event=hangup&callId=c&cause=normalClearing", None, T1);
        assert_eq!(
            out.kind,
            CallEventKind::HungUp {
                duration_secs: None,
                cause: Some("normalClearing".to_owned())
            }
        );
        let out = run("event=hangup&callId=c&cause=noAnswer", None, T1);
        assert_eq!(
            out.kind,
            CallEventKind::Missed {
                reason: MissedReason::NoAnswer
            }
        );
        let out = run("event=hangup&callId=c", None, T1);
        assert_eq!(
            out.kind,
            CallEventKind::HungUp {
                duration_secs: None,
                cause: None
            }
        );
    }

    #[test]
    fn long_call_ids_are_hashed_and_bad_ones_rejected() {
        let long = "x".repeat(250);
        let key = call_key(&long).unwrap();
        assert!(key.starts_with("sha256:"));
        assert_eq!(key.len(), 7 + 64);
        assert_eq!(call_key(&long).unwrap(), key, "stable");
        assert_eq!(call_key(" abc ").unwrap(), "abc");
        assert_eq!(
            call_key("a\u{1b}b").unwrap_err(),
            "callId contains control character '\\u{1b}' at byte 1"
        );
        assert!(call_key(&format!("{long}\n{long}")).is_err());
    }

    #[test]
    fn blocked_list_is_normalized() {
        let list = normalize_blocked(
            &[
                "8 (495) 000-00-00".to_owned(),
                " ".to_owned(),
                "anonymous".to_owned(),
            ],
            &plan(),
        );
        assert_eq!(list, vec!["+74950000000", "anonymous"]);
    }
}
