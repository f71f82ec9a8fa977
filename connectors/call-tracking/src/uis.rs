//! UIS / CoMagic event notifications ("Уведомления"). The account owner writes the body
//! template, so the field names are this connector's contract (see the crate docs); the
//! values come from UIS's `{{variables}}`. Pure: parse, map.

use kommutator_sdk::{CallEventKind, Direction, MissedReason};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::common::{
    checked_key, form_object, json_object, json_text, key_part, raw_with_source, Mapped,
    ParseError, TrafficSource,
};
use kommutator_sdk::phone::{normalize_number, NumberPlan};

/// A UIS notification as this connector reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct UisNotification {
    /// `event`: `ringing`, `answered`, `hung_up`, `missed`, `recording` (a literal in the
    /// template).
    pub event: String,
    /// `call_session_id`: UIS's id of the call.
    pub call_session_id: String,
    /// Every field, as received.
    pub fields: Map<String, Value>,
}

/// Parses a notification body: JSON when `content_type` says so or the body starts with
/// `{`, else a form.
///
/// # Errors
///
/// When the body is neither, or `event` or `call_session_id` is missing.
pub fn parse_uis(body: &[u8], content_type: Option<&str>) -> Result<UisNotification, ParseError> {
    let json = match content_type {
        Some(ct) if ct.to_ascii_lowercase().contains("json") => true,
        Some(ct) if ct.to_ascii_lowercase().contains("x-www-form-urlencoded") => false,
        _ => body
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'{'),
    };
    let fields = if json {
        json_object(body, "body")?
    } else {
        form_object(body)?
    };
    let event = json_text(&fields, "event")?.ok_or_else(|| ParseError::missing("event"))?;
    let call_session_id = json_text(&fields, "call_session_id")?
        .ok_or_else(|| ParseError::missing("call_session_id"))?;
    Ok(UisNotification {
        event,
        call_session_id,
        fields,
    })
}

/// Maps a notification; `external_id` is `uis:{call_session_id}:{event}`,
/// `call_external_id` `uis:{call_session_id}`, `occurred_at` the
/// `notification_timestamp` (Unix seconds) when given. `ringing` carries
/// `raw.traffic_source` from `utm_*`, `visit_id`, `landing_page`. An `event` outside the
/// vocabulary → `unknown`.
///
/// # Errors
///
/// When a field the event needs is missing or malformed.
pub fn map_uis(n: &UisNotification, plan: &NumberPlan) -> Result<Mapped, ParseError> {
    let f = &n.fields;
    let text = |k: &str| json_text(f, k);
    let session = key_part("call_session_id", &n.call_session_id)?;
    let call = format!("uis:{session}");
    let event = key_part("event", &n.event)?;
    let key = checked_key(format!("{call}:{event}"))?;
    let at = match text("notification_timestamp")? {
        None => None,
        Some(t) => Some(
            t.parse::<i64>()
                .ok()
                .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
                .ok_or_else(|| {
                    ParseError("field `notification_timestamp` must be Unix seconds".to_owned())
                })?,
        ),
    };
    let num = |k: &str| -> Result<Option<String>, ParseError> {
        Ok(text(k)?.map(|v| normalize_number(&v, plan).into_string()))
    };
    let extension = text("extension")?;
    let mut source = None;
    let kind = match event.as_str() {
        "ringing" => {
            let direction = match text("direction")?.as_deref() {
                None | Some("in" | "incoming" | "inbound") => Direction::Inbound,
                Some("out" | "outgoing" | "outbound") => Direction::Outbound,
                Some(other) => {
                    return Err(ParseError(format!(
                        "invalid direction {:?}, expected in or out",
                        other.chars().take(32).collect::<String>()
                    )))
                }
            };
            let from = num("calling_phone_number")?
                .ok_or_else(|| ParseError::missing("calling_phone_number"))?;
            let to = match num("called_phone_number")? {
                Some(to) => to,
                None => num("virtual_phone_number")?
                    .ok_or_else(|| ParseError::missing("called_phone_number"))?,
            };
            source = TrafficSource::from_flat(f).to_json("uis");
            CallEventKind::Ringing {
                from,
                to,
                direction,
                extension,
            }
        }
        "answered" => CallEventKind::Answered {
            by_extension: extension,
        },
        "hung_up" => CallEventKind::HungUp {
            duration_secs: match text("duration")? {
                None => None,
                Some(d) => Some(d.parse().map_err(|_| {
                    ParseError("field `duration` must be whole seconds".to_owned())
                })?),
            },
            cause: text("finish_reason")?,
        },
        "missed" => CallEventKind::Missed {
            reason: match text("reason")?.as_deref() {
                Some("busy") => MissedReason::Busy,
                Some("cancelled" | "cancel") => MissedReason::Cancelled,
                Some("rejected") => MissedReason::Rejected,
                _ => MissedReason::NoAnswer,
            },
        },
        "recording" => CallEventKind::RecordingAvailable {
            url: text("recording_url")?.ok_or_else(|| ParseError::missing("recording_url"))?,
        },
        other => {
            tracing::debug!(event = other, "uis notification without a mapping");
            let description = format!("uis event {other:?}");
            return Ok(Mapped::unknown(
                key,
                at,
                description,
                Value::Object(f.clone()),
            ));
        }
    };
    Ok(Mapped::call(
        key,
        call,
        at,
        kind,
        raw_with_source(f.clone(), source),
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use kommutator_sdk::InboundKind;
    use serde_json::json;

    use super::*;

    fn plan() -> NumberPlan {
        NumberPlan::new(Some("7".to_owned()), 5)
    }

    fn map(v: Value) -> Result<Mapped, ParseError> {
        parse_uis(v.to_string().as_bytes(), Some("application/json"))
            .and_then(|n| map_uis(&n, &plan()))
    }

    fn kind(m: &Mapped) -> &CallEventKind {
        let InboundKind::Call(c) = &m.kind else {
            panic!("{m:?}")
        };
        &c.kind
    }

    #[test]
    fn ringing_with_source() {
        let m = map(json!({
            "event": "ringing", "call_session_id": 7788, "calling_phone_number": "79161234567",
            "virtual_phone_number": "74957770000", "direction": "in", "notification_timestamp": "1714550400",
            "utm_source": "google", "utm_campaign": "brand", "visit_id": "v-1", "landing_page": "https://example.ru/"
        }))
        .unwrap();
        assert_eq!(m.external_id, "uis:7788:ringing");
        assert_eq!(
            m.occurred_at,
            OffsetDateTime::from_unix_timestamp(1714550400).ok()
        );
        assert_eq!(
            kind(&m),
            &CallEventKind::Ringing {
                from: "+79161234567".to_owned(),
                to: "+74957770000".to_owned(),
                direction: Direction::Inbound,
                extension: None,
            }
        );
        assert_eq!(
            m.raw["traffic_source"],
            json!({"utm_source": "google", "utm_campaign": "brand", "visit_id": "v-1",
                   "landing_page": "https://example.ru/", "provider": "uis"})
        );
    }

    #[test]
    fn other_events() {
        let m =
            map(json!({"event": "answered", "call_session_id": "1", "extension": "101"})).unwrap();
        assert_eq!(
            kind(&m),
            &CallEventKind::Answered {
                by_extension: Some("101".to_owned())
            }
        );
        let m = map(json!({"event": "hung_up", "call_session_id": "1", "duration": "65"})).unwrap();
        assert_eq!(
            kind(&m),
            &CallEventKind::HungUp {
                duration_secs: Some(65),
                cause: None
            }
        );
        let m = map(json!({"event": "missed", "call_session_id": "1", "reason": "busy"})).unwrap();
        assert_eq!(
            kind(&m),
            &CallEventKind::Missed {
                reason: MissedReason::Busy
            }
        );
        let m = map(json!({"event": "missed", "call_session_id": "1"})).unwrap();
        assert_eq!(
            kind(&m),
            &CallEventKind::Missed {
                reason: MissedReason::NoAnswer
            }
        );
        let m = map(json!({"event": "recording", "call_session_id": "1", "recording_url": "https://x/r.mp3"})).unwrap();
        assert_eq!(
            kind(&m),
            &CallEventKind::RecordingAvailable {
                url: "https://x/r.mp3".to_owned()
            }
        );
        let m = map(json!({"event": "chat_started", "call_session_id": "1"})).unwrap();
        assert_eq!(m.external_id, "uis:1:chat_started");
        assert!(matches!(m.kind, InboundKind::Unknown { .. }));
    }

    #[test]
    fn form_bodies_work_too() {
        let n = parse_uis(b"event=answered&call_session_id=5&extension=102", None).unwrap();
        let m = map_uis(&n, &plan()).unwrap();
        assert_eq!(m.external_id, "uis:5:answered");
    }

    #[test]
    fn errors_are_named() {
        let cases = [
            (json!({"call_session_id": "1"}), "missing field `event`"),
            (
                json!({"event": "ringing"}),
                "missing field `call_session_id`",
            ),
            (
                json!({"event": "ringing", "call_session_id": "1", "called_phone_number": "1"}),
                "missing field `calling_phone_number`",
            ),
            (
                json!({"event": "ringing", "call_session_id": "1", "calling_phone_number": "1"}),
                "missing field `called_phone_number`",
            ),
            (
                json!({"event": "ringing", "call_session_id": "1", "calling_phone_number": "1", "called_phone_number": "2", "direction": "x"}),
                "invalid direction \"x\", expected in or out",
            ),
            (
                json!({"event": "hung_up", "call_session_id": "1", "duration": "1.5"}),
                "field `duration` must be whole seconds",
            ),
            (
                json!({"event": "recording", "call_session_id": "1"}),
                "missing field `recording_url`",
            ),
            (
                json!({"event": "answered", "call_session_id": "1", "notification_timestamp": "yesterday"}),
                "field `notification_timestamp` must be Unix seconds",
            ),
        ];
        for (v, msg) in cases {
            assert_eq!(map(v.clone()).unwrap_err().0, msg, "{v}");
        }
    }
}
