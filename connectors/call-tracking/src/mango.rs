//! Mango Office VPBX API notifications: form-encoded POSTs of `vpbx_api_key`, `sign` and
//! `json` to `{base}/events/{kind}`. Pure: parse, verify, map (with the per-call state
//! passed in and returned, so the caller decides when to keep it).

use kommutator_sdk::{CallEventKind, Direction, MissedReason};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::common::{
    checked_key, digest_hex, form_object, json_object, json_text, key_part, raw_with_source,
    Mapped, ParseError, TrafficSource,
};
use crate::zadarma::SignatureError;
use kommutator_sdk::phone::{normalize_number, NumberPlan};

/// The three form fields of every Mango notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MangoEnvelope {
    /// `vpbx_api_key`: the account's API key (`None` when missing).
    pub api_key: Option<String>,
    /// `sign`: hex SHA-256 of `api_key + json + salt` (`None` when missing).
    pub sign: Option<String>,
    /// `json`: the notification itself, as sent.
    pub json: String,
}

/// Parses the form body of a notification. A missing `vpbx_api_key` or `sign` is left to
/// [`verify_mango_sign`], which rejects it as missing credentials.
///
/// # Errors
///
/// When the body is not a form or has no `json`.
pub fn parse_mango_envelope(body: &[u8]) -> Result<MangoEnvelope, ParseError> {
    let fields = form_object(body)?;
    let get = |k: &str| match fields.get(k) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    Ok(MangoEnvelope {
        api_key: get("vpbx_api_key"),
        sign: get("sign"),
        json: get("json").ok_or_else(|| ParseError::missing("json"))?,
    })
}

/// The `sign` Mango sends: lowercase hex of SHA-256(`api_key` + `json` + `salt`).
pub fn mango_sign(api_key: &str, json: &str, salt: &str) -> String {
    let mut h = Sha256::new();
    h.update(api_key.as_bytes());
    h.update(json.as_bytes());
    h.update(salt.as_bytes());
    hex::encode(h.finalize())
}

/// Checks the key and the `sign` of an envelope in constant time.
///
/// # Errors
///
/// [`SignatureError::Missing`] or [`SignatureError::Mismatch`] naming `vpbx_api_key` or
/// `sign`.
pub fn verify_mango_sign(
    env: &MangoEnvelope,
    api_key: &str,
    salt: &str,
) -> Result<(), SignatureError> {
    let their_key = env
        .api_key
        .as_deref()
        .ok_or(SignatureError::Missing("vpbx_api_key"))?;
    let sign = env.sign.as_deref().ok_or(SignatureError::Missing("sign"))?;
    let key_ok = Sha256::digest(their_key.as_bytes()).ct_eq(&Sha256::digest(api_key.as_bytes()));
    if !bool::from(key_ok) {
        return Err(SignatureError::Mismatch("vpbx_api_key"));
    }
    let got = hex::decode(sign.trim()).map_err(|_| SignatureError::Mismatch("sign"))?;
    let want = Sha256::new()
        .chain_update(their_key.as_bytes())
        .chain_update(env.json.as_bytes())
        .chain_update(salt.as_bytes())
        .finalize();
    if got.len() == want.len() && bool::from(want.as_slice().ct_eq(&got)) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch("sign"))
    }
}

/// One party of a Mango call leg (`from` / `to`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MangoParty {
    /// `extension`: the employee's extension, if an employee.
    pub extension: Option<String>,
    /// `number`: the phone number or SIP address.
    pub number: Option<String>,
    /// `line_number`: our number the call came in on (`to` only).
    pub line_number: Option<String>,
}

/// A `POST /events/call` notification.
#[derive(Debug, Clone, PartialEq)]
pub struct MangoCallEvent {
    /// `entry_id`: the call group id, stable across transfers and forwards.
    pub entry_id: String,
    /// `call_id`: the leg.
    pub call_id: String,
    /// `seq`: the order of notifications within the entry.
    pub seq: u64,
    /// `timestamp`, UTC, if given.
    pub timestamp: Option<i64>,
    /// `call_state`: `Appeared`, `Connected`, `OnHold`, `Disconnected`.
    pub call_state: String,
    /// `location`: `ivr`, `queue`, `abonent`.
    pub location: Option<String>,
    /// `from`.
    pub from: MangoParty,
    /// `to`.
    pub to: MangoParty,
    /// `disconnect_reason`, as text.
    pub disconnect_reason: Option<String>,
    /// `dct`: the call-tracking number and type (0 none, 1 dynamic, 2 static).
    pub dct: Option<(String, u8)>,
    /// The whole notification, kept as `raw`.
    pub fields: Map<String, Value>,
}

fn party(obj: &Map<String, Value>, key: &str) -> Result<MangoParty, ParseError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(MangoParty::default()),
        Some(Value::Object(p)) => Ok(MangoParty {
            extension: json_text(p, "extension")?,
            number: json_text(p, "number")?,
            line_number: json_text(p, "line_number")?,
        }),
        Some(_) => Err(ParseError(format!("field `{key}` must be an object"))),
    }
}

fn integer(obj: &Map<String, Value>, key: &str) -> Result<Option<i64>, ParseError> {
    match json_text(obj, key)? {
        None => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| ParseError(format!("field `{key}` must be an integer"))),
    }
}

/// Parses the `json` of a `/events/call` notification.
///
/// # Errors
///
/// When it is not a JSON object, or `entry_id`, `call_id`, `seq` or `call_state` is
/// missing or malformed.
pub fn parse_mango_call(json: &[u8]) -> Result<MangoCallEvent, ParseError> {
    let obj = json_object(json, "json")?;
    let need = |k: &str| json_text(&obj, k).and_then(|v| v.ok_or_else(|| ParseError::missing(k)));
    let seq = integer(&obj, "seq")?.ok_or_else(|| ParseError::missing("seq"))?;
    let seq = u64::try_from(seq)
        .map_err(|_| ParseError("field `seq` must not be negative".to_owned()))?;
    let dct = match obj.get("dct") {
        Some(Value::Object(d)) => match json_text(d, "number")? {
            Some(number) => {
                let ty = json_text(d, "type")?
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0);
                Some((number, ty))
            }
            None => None,
        },
        _ => None,
    };
    Ok(MangoCallEvent {
        entry_id: need("entry_id")?,
        call_id: need("call_id")?,
        seq,
        timestamp: integer(&obj, "timestamp")?,
        call_state: need("call_state")?,
        location: json_text(&obj, "location")?,
        from: party(&obj, "from")?,
        to: party(&obj, "to")?,
        disconnect_reason: json_text(&obj, "disconnect_reason")?,
        dct,
        fields: obj,
    })
}

/// The most legs of one entry the connector follows; a call fanned out wider forgets
/// its oldest unanswered legs.
const MAX_LEGS: usize = 16;

/// One leg the connector follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MangoLeg {
    /// `call_id`.
    pub call_id: String,
    /// Whether the leg is talking (`Connected` seen).
    pub connected: bool,
    /// Mango's `timestamp` of `Connected`, when given.
    pub connected_at: Option<i64>,
}

/// What the connector remembers of one entry (call group).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MangoEntry {
    /// The highest `seq` handled; lower or equal ones are stale or redelivered.
    pub last_seq: u64,
    /// Whether any leg was connected.
    pub answered: bool,
    /// The legs still up.
    pub legs: Vec<MangoLeg>,
}

/// Maps a `/events/call` notification given what is known of its entry. Returns the
/// event and the entry's new state (`None`: keep the old one).
///
/// - A `seq` not above the entry's last one is stale (Mango sends in parallel, so
///   notifications arrive out of order) or a redelivery: `unknown`, state unchanged; it
///   keeps the same key, so a redelivery is a duplicate for the hub.
/// - `Appeared` → `ringing` (at `to.extension` when set); the direction is outbound when
///   `from` is an employee and `to` is not.
/// - `Connected` → `answered` by the employee's extension.
/// - `Disconnected` of a connected leg → `hung_up` with the time since `Connected`; of
///   the last leg of an entry never answered → `missed` (reason from
///   `disconnect_reason`); of a leg while others ring or talk → `unknown`; of an entry we
///   know nothing of → `hung_up` without a duration.
/// - `OnHold` and other states → `unknown`.
///
/// `external_id` is `mango:{entry_id}:{seq}`, `call_external_id` `mango:{entry_id}`.
///
/// # Errors
///
/// When `entry_id` cannot be a key.
pub fn map_mango_call(
    ev: &MangoCallEvent,
    known: Option<&MangoEntry>,
    plan: &NumberPlan,
) -> Result<(Mapped, Option<MangoEntry>), ParseError> {
    let entry_id = key_part("entry_id", &ev.entry_id)?;
    let call = format!("mango:{entry_id}");
    let key = checked_key(format!("{call}:{}", ev.seq))?;
    let at = ev
        .timestamp
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok());
    if let Some(k) = known.filter(|k| ev.seq <= k.last_seq) {
        tracing::debug!(entry = %entry_id, seq = ev.seq, last = k.last_seq, "mango: stale or repeated notification");
        let raw = Value::Object(ev.fields.clone());
        let description = format!(
            "mango {} seq {} after seq {}",
            ev.call_state, ev.seq, k.last_seq
        );
        return Ok((Mapped::unknown(key, at, description, raw), None));
    }
    let mut entry = known.cloned().unwrap_or_default();
    entry.last_seq = ev.seq;
    let outbound = ev.from.extension.is_some() && ev.to.extension.is_none();
    let employee = if outbound {
        &ev.from.extension
    } else {
        &ev.to.extension
    };
    let mut source = None;
    let kind = match ev.call_state.as_str() {
        "Appeared" => {
            if !entry.legs.iter().any(|l| l.call_id == ev.call_id) {
                if entry.legs.len() >= MAX_LEGS {
                    if let Some(i) = entry.legs.iter().position(|l| !l.connected) {
                        entry.legs.remove(i);
                    }
                }
                entry.legs.push(MangoLeg {
                    call_id: ev.call_id.clone(),
                    connected: false,
                    connected_at: None,
                });
            }
            if let Some((number, ty)) = ev.dct.as_ref().filter(|(_, ty)| *ty != 0) {
                source = TrafficSource {
                    tracking_number: Some(normalize_number(number, plan).into_string()),
                    tracking_type: Some(if *ty == 1 { "dynamic" } else { "static" }.to_owned()),
                    ..TrafficSource::default()
                }
                .to_json("mango");
            }
            let num = |p: &MangoParty| {
                p.number
                    .as_deref()
                    .or(p.extension.as_deref())
                    .map(|n| normalize_number(n, plan).into_string())
                    .unwrap_or_default()
            };
            let to = if outbound {
                num(&ev.to)
            } else {
                ev.to
                    .line_number
                    .as_deref()
                    .map(|n| normalize_number(n, plan).into_string())
                    .unwrap_or_else(|| num(&ev.to))
            };
            CallEventKind::Ringing {
                from: num(&ev.from),
                to,
                direction: if outbound {
                    Direction::Outbound
                } else {
                    Direction::Inbound
                },
                extension: employee.clone(),
            }
        }
        "Connected" => {
            entry.answered = true;
            match entry.legs.iter_mut().find(|l| l.call_id == ev.call_id) {
                Some(leg) if leg.connected => {}
                Some(leg) => {
                    leg.connected = true;
                    leg.connected_at = ev.timestamp;
                }
                None => entry.legs.push(MangoLeg {
                    call_id: ev.call_id.clone(),
                    connected: true,
                    connected_at: ev.timestamp,
                }),
            }
            CallEventKind::Answered {
                by_extension: employee.clone(),
            }
        }
        "Disconnected" => {
            let leg = entry
                .legs
                .iter()
                .position(|l| l.call_id == ev.call_id)
                .map(|i| entry.legs.remove(i));
            let cause = ev.disconnect_reason.clone();
            match (known, leg) {
                (
                    _,
                    Some(MangoLeg {
                        connected: true,
                        connected_at,
                        ..
                    }),
                ) => {
                    let duration_secs = match (connected_at, ev.timestamp) {
                        (Some(since), Some(end)) => u64::try_from(end.saturating_sub(since)).ok(),
                        _ => None,
                    };
                    CallEventKind::HungUp {
                        duration_secs,
                        cause,
                    }
                }
                (None, _) => CallEventKind::HungUp {
                    duration_secs: None,
                    cause,
                },
                (Some(_), _) if entry.answered || !entry.legs.is_empty() => {
                    let raw = Value::Object(ev.fields.clone());
                    let description = "mango leg ended while the call goes on".to_owned();
                    return Ok((Mapped::unknown(key, at, description, raw), Some(entry)));
                }
                (Some(_), _) => CallEventKind::Missed {
                    reason: missed_reason(ev.disconnect_reason.as_deref()),
                },
            }
        }
        other => {
            tracing::debug!(state = other, "mango call_state without a mapping");
            let raw = Value::Object(ev.fields.clone());
            return Ok((
                Mapped::unknown(key, at, format!("mango call_state {other:?}"), raw),
                Some(entry),
            ));
        }
    };
    let raw = raw_with_source(ev.fields.clone(), source);
    Ok((Mapped::call(key, call, at, kind, raw), Some(entry)))
}

/// Mango documents `disconnect_reason` only by ranges (11xx normal, 2xxx billing, 32xx
/// bad number, 42xx unreachable, 5xxx overload or failure): a normal clearing before
/// anyone answered is the caller giving up; anything else, nobody could answer.
fn missed_reason(reason: Option<&str>) -> MissedReason {
    match reason {
        Some(r) if r.starts_with("11") && r.len() == 4 => MissedReason::Cancelled,
        _ => MissedReason::NoAnswer,
    }
}

/// Maps a `/events/recording` notification: `Completed` → `recording_available` with
/// the reference `mango:recording:{recording_id}`; `Started`/`Continued` → `unknown`.
/// `external_id` is `mango:{entry_id}:recording:{recording_id}:{state}`.
///
/// # Errors
///
/// When `json` is not an object or an id is missing.
pub fn map_mango_recording(json: &[u8]) -> Result<Mapped, ParseError> {
    let obj = json_object(json, "json")?;
    let need = |k: &str| json_text(&obj, k).and_then(|v| v.ok_or_else(|| ParseError::missing(k)));
    let entry_id = key_part("entry_id", &need("entry_id")?)?;
    let recording_id = key_part("recording_id", &need("recording_id")?)?;
    let state = need("recording_state")?;
    let at = integer(&obj, "timestamp")?.and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok());
    let call = format!("mango:{entry_id}");
    let key = checked_key(format!(
        "{call}:recording:{recording_id}:{}",
        state.to_ascii_lowercase()
    ))?;
    if state == "Completed" {
        let kind = CallEventKind::RecordingAvailable {
            url: format!("mango:recording:{recording_id}"),
        };
        return Ok(Mapped::call(key, call, at, kind, Value::Object(obj)));
    }
    let description = format!("mango recording_state {state:?}");
    Ok(Mapped::unknown(key, at, description, Value::Object(obj)))
}

/// Maps any other notification (`/events/summary`, `/events/dtmf`, …) to `unknown`, keyed
/// `mango:{entry_id}:{kind}` when it has an `entry_id` (`summary` is one per call), else
/// `mango:{kind}:{digest of json}`; a `seq` is added when given.
///
/// # Errors
///
/// When `json` is not an object.
pub fn map_mango_other(kind: &str, json: &[u8]) -> Result<Mapped, ParseError> {
    let obj = json_object(json, "json")?;
    let at = integer(&obj, "timestamp")
        .ok()
        .flatten()
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok());
    let seq = json_text(&obj, "seq").ok().flatten();
    let key = match json_text(&obj, "entry_id")? {
        Some(entry) => {
            let entry = key_part("entry_id", &entry)?;
            match seq {
                Some(seq) => format!("mango:{entry}:{kind}:{seq}"),
                None => format!("mango:{entry}:{kind}"),
            }
        }
        None => format!("mango:{kind}:{}", digest_hex(json)),
    };
    let key = checked_key(key)?;
    Ok(Mapped::unknown(
        key,
        at,
        format!("mango event {kind:?}"),
        Value::Object(obj),
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

    fn ev(v: Value) -> MangoCallEvent {
        parse_mango_call(v.to_string().as_bytes()).unwrap()
    }

    fn appeared(seq: u64, call_id: &str, ext: Option<&str>) -> MangoCallEvent {
        ev(json!({
            "entry_id": "MToxMDA1", "call_id": call_id, "timestamp": 1714550400 + seq, "seq": seq,
            "call_state": "Appeared", "location": if ext.is_some() { "abonent" } else { "ivr" },
            "from": {"number": "79161234567"},
            "to": {"extension": ext, "number": "sip:101@vpbx", "line_number": "74951234567"},
            "dct": {"number": "74957770000", "type": 1}
        }))
    }

    fn state(seq: u64, call_id: &str, state: &str, reason: Option<u32>) -> MangoCallEvent {
        ev(json!({
            "entry_id": "MToxMDA1", "call_id": call_id, "timestamp": 1714550400 + seq * 10, "seq": seq,
            "call_state": state, "from": {"number": "79161234567"},
            "to": {"extension": "101", "number": "sip:101@vpbx"}, "disconnect_reason": reason
        }))
    }

    fn call_kind(m: &Mapped) -> &CallEventKind {
        let InboundKind::Call(c) = &m.kind else {
            panic!("{m:?}")
        };
        &c.kind
    }

    #[test]
    fn sign_and_verify() {
        let json = r#"{"entry_id":"x"}"#;
        let sign = mango_sign("key", json, "salt");
        assert_eq!(sign.len(), 64);
        let env = MangoEnvelope {
            api_key: Some("key".to_owned()),
            sign: Some(sign.clone()),
            json: json.to_owned(),
        };
        verify_mango_sign(&env, "key", "salt").unwrap();
        assert_eq!(
            verify_mango_sign(&env, "key", "pepper"),
            Err(SignatureError::Mismatch("sign"))
        );
        assert_eq!(
            verify_mango_sign(&env, "other", "salt"),
            Err(SignatureError::Mismatch("vpbx_api_key"))
        );
        let upper = MangoEnvelope {
            sign: Some(sign.to_uppercase()),
            ..env.clone()
        };
        verify_mango_sign(&upper, "key", "salt").unwrap();
        let bad = MangoEnvelope {
            sign: Some("zz".to_owned()),
            ..env.clone()
        };
        assert_eq!(
            verify_mango_sign(&bad, "key", "salt"),
            Err(SignatureError::Mismatch("sign"))
        );
        let unsigned = MangoEnvelope {
            sign: None,
            ..env.clone()
        };
        assert_eq!(
            verify_mango_sign(&unsigned, "key", "salt"),
            Err(SignatureError::Missing("sign"))
        );
        let keyless = MangoEnvelope {
            api_key: None,
            ..env
        };
        assert_eq!(
            verify_mango_sign(&keyless, "key", "salt"),
            Err(SignatureError::Missing("vpbx_api_key"))
        );
    }

    #[test]
    fn envelope_needs_json() {
        assert_eq!(
            parse_mango_envelope(b"vpbx_api_key=k&sign=s")
                .unwrap_err()
                .0,
            "missing field `json`"
        );
        let env = parse_mango_envelope(b"vpbx_api_key=k&sign=s&json=%7B%22a%22%3A1%7D").unwrap();
        assert_eq!(env.json, r#"{"a":1}"#);
        let env = parse_mango_envelope(b"json=%7B%7D").unwrap();
        assert_eq!((env.api_key, env.sign), (None, None));
    }

    #[test]
    fn answered_call_through_ivr() {
        let p = plan();
        let (m, st) = map_mango_call(&appeared(1, "leg-ivr", None), None, &p).unwrap();
        assert_eq!(m.external_id, "mango:MToxMDA1:1");
        assert_eq!(
            call_kind(&m),
            &CallEventKind::Ringing {
                from: "+79161234567".to_owned(),
                to: "+74951234567".to_owned(),
                direction: Direction::Inbound,
                extension: None,
            }
        );
        assert_eq!(
            m.raw["traffic_source"],
            json!({"tracking_number": "+74957770000", "tracking_type": "dynamic", "provider": "mango"})
        );
        assert_eq!(
            m.occurred_at,
            OffsetDateTime::from_unix_timestamp(1714550401).ok()
        );
        let st = st.unwrap();
        let (m, st) = map_mango_call(&appeared(2, "leg-101", Some("101")), Some(&st), &p).unwrap();
        assert!(
            matches!(call_kind(&m), CallEventKind::Ringing { extension: Some(e), .. } if e == "101")
        );
        let st = st.unwrap();
        let (m, st) = map_mango_call(
            &state(3, "leg-ivr", "Disconnected", Some(1100)),
            Some(&st),
            &p,
        )
        .unwrap();
        assert!(
            matches!(m.kind, InboundKind::Unknown { .. }),
            "ivr leg ends while 101 rings: {m:?}"
        );
        let st = st.unwrap();
        let (m, st) =
            map_mango_call(&state(4, "leg-101", "Connected", None), Some(&st), &p).unwrap();
        assert_eq!(
            call_kind(&m),
            &CallEventKind::Answered {
                by_extension: Some("101".to_owned())
            }
        );
        let st = st.unwrap();
        let (m, st) = map_mango_call(
            &state(7, "leg-101", "Disconnected", Some(1110)),
            Some(&st),
            &p,
        )
        .unwrap();
        assert_eq!(
            call_kind(&m),
            &CallEventKind::HungUp {
                duration_secs: Some(30),
                cause: Some("1110".to_owned())
            }
        );
        assert!(st.unwrap().legs.is_empty());
    }

    #[test]
    fn stale_and_repeated_notifications_change_nothing() {
        let p = plan();
        let (_, st) = map_mango_call(&appeared(1, "a", Some("101")), None, &p).unwrap();
        let (_, st) = map_mango_call(&state(3, "a", "Connected", None), st.as_ref(), &p).unwrap();
        let st = st.unwrap();
        let (m, none) =
            map_mango_call(&state(2, "a", "Disconnected", None), Some(&st), &p).unwrap();
        assert_eq!(m.external_id, "mango:MToxMDA1:2");
        assert!(none.is_none());
        assert!(
            matches!(&m.kind, InboundKind::Unknown { description } if description == "mango Disconnected seq 2 after seq 3")
        );
        let (again, none) =
            map_mango_call(&state(3, "a", "Connected", None), Some(&st), &p).unwrap();
        assert_eq!(again.external_id, "mango:MToxMDA1:3");
        assert!(none.is_none());
    }

    #[test]
    fn unanswered_entry_is_missed() {
        let p = plan();
        let (_, st) = map_mango_call(&appeared(1, "a", Some("101")), None, &p).unwrap();
        let (m, _) =
            map_mango_call(&state(2, "a", "Disconnected", Some(1110)), st.as_ref(), &p).unwrap();
        assert_eq!(
            call_kind(&m),
            &CallEventKind::Missed {
                reason: MissedReason::Cancelled
            }
        );
        let (m, _) =
            map_mango_call(&state(2, "a", "Disconnected", Some(4201)), st.as_ref(), &p).unwrap();
        assert_eq!(
            call_kind(&m),
            &CallEventKind::Missed {
                reason: MissedReason::NoAnswer
            }
        );
        // Nothing known of the entry: a hangup without duration.
        let (m, _) = map_mango_call(&state(9, "z", "Disconnected", Some(1100)), None, &p).unwrap();
        assert_eq!(
            call_kind(&m),
            &CallEventKind::HungUp {
                duration_secs: None,
                cause: Some("1100".to_owned())
            }
        );
        let (m, _) = map_mango_call(&state(10, "z", "OnHold", None), None, &p).unwrap();
        assert!(matches!(m.kind, InboundKind::Unknown { .. }));
    }

    #[test]
    fn outbound_call_from_an_employee() {
        let e = ev(
            json!({"entry_id": "E", "call_id": "c", "seq": 1, "call_state": "Appeared",
                          "from": {"extension": "101", "number": "sip:101@vpbx"},
                          "to": {"number": "89161234567"}}),
        );
        let (m, _) = map_mango_call(&e, None, &plan()).unwrap();
        assert_eq!(
            call_kind(&m),
            &CallEventKind::Ringing {
                from: "sip:101@vpbx".to_owned(),
                to: "+79161234567".to_owned(),
                direction: Direction::Outbound,
                extension: Some("101".to_owned()),
            }
        );
        assert!(m.raw.get("traffic_source").is_none());
    }

    #[test]
    fn legs_are_bounded() {
        let p = plan();
        let mut st = None;
        for seq in 1..=40 {
            let (_, next) = map_mango_call(
                &appeared(seq, &format!("leg{seq}"), Some("101")),
                st.as_ref(),
                &p,
            )
            .unwrap();
            st = next;
        }
        assert_eq!(st.unwrap().legs.len(), MAX_LEGS);
    }

    #[test]
    fn parse_errors_are_named() {
        let cases = [
            (
                json!({"call_id": "c", "seq": 1, "call_state": "Appeared"}),
                "missing field `entry_id`",
            ),
            (
                json!({"entry_id": "e", "call_id": "c", "call_state": "Appeared"}),
                "missing field `seq`",
            ),
            (
                json!({"entry_id": "e", "call_id": "c", "seq": "x", "call_state": "Appeared"}),
                "field `seq` must be an integer",
            ),
            (
                json!({"entry_id": "e", "call_id": "c", "seq": -1, "call_state": "Appeared"}),
                "field `seq` must not be negative",
            ),
            (
                json!({"entry_id": "e", "call_id": "c", "seq": 1}),
                "missing field `call_state`",
            ),
            (
                json!({"entry_id": "e", "call_id": "c", "seq": 1, "call_state": "Appeared", "from": 5}),
                "field `from` must be an object",
            ),
        ];
        for (v, msg) in cases {
            assert_eq!(
                parse_mango_call(v.to_string().as_bytes()).unwrap_err().0,
                msg,
                "{v}"
            );
        }
    }

    #[test]
    fn recordings_and_others() {
        let done = json!({"entry_id": "E", "call_id": "c", "recording_id": "R1", "recording_state": "Completed", "timestamp": 1714550500, "seq": 1});
        let m = map_mango_recording(done.to_string().as_bytes()).unwrap();
        assert_eq!(m.external_id, "mango:E:recording:R1:completed");
        assert_eq!(
            call_kind(&m),
            &CallEventKind::RecordingAvailable {
                url: "mango:recording:R1".to_owned()
            }
        );
        let started = json!({"entry_id": "E", "recording_id": "R1", "recording_state": "Started"});
        let m = map_mango_recording(started.to_string().as_bytes()).unwrap();
        assert!(matches!(m.kind, InboundKind::Unknown { .. }));
        assert_eq!(
            map_mango_recording(b"{}").unwrap_err().0,
            "missing field `entry_id`"
        );

        let summary = json!({"entry_id": "E", "call_direction": 1, "disconnect_reason": 1110});
        let m = map_mango_other("summary", summary.to_string().as_bytes()).unwrap();
        assert_eq!(m.external_id, "mango:E:summary");
        let m = map_mango_other("sms", br#"{"text":"hi"}"#).unwrap();
        assert!(m.external_id.starts_with("mango:sms:"));
    }
}
