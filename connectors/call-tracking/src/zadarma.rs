//! Zadarma (and its white labels) PBX call notifications: form-encoded POSTs with a
//! `Signature` header. Pure: parse, verify, map.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use kommutator_sdk::{CallEventKind, Direction, MissedReason};
use serde_json::{Map, Value};
use sha1::Sha1;

use crate::common::{
    checked_key, digest_hex, form_object, json_text, key_part, Mapped, ParseError,
};
use kommutator_sdk::phone::{normalize_number, NumberPlan};

/// One notification: its `event` and every form field.
#[derive(Debug, Clone, PartialEq)]
pub struct ZadarmaNotification {
    /// `event`, e.g. `NOTIFY_START`.
    pub event: String,
    /// All fields, as strings.
    pub fields: Map<String, Value>,
}

impl ZadarmaNotification {
    fn get(&self, key: &str) -> Option<String> {
        json_text(&self.fields, key).ok().flatten()
    }

    /// A field as PHP would concatenate it: missing is empty.
    fn sig_part(&self, key: &str) -> String {
        match self.fields.get(key) {
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        }
    }
}

/// Parses a notification body (`application/x-www-form-urlencoded`).
///
/// # Errors
///
/// When the body is not a form or has no `event`.
pub fn parse_zadarma(body: &[u8]) -> Result<ZadarmaNotification, ParseError> {
    let fields = form_object(body)?;
    let event = json_text(&fields, "event")?.ok_or_else(|| ParseError::missing("event"))?;
    Ok(ZadarmaNotification { event, fields })
}

/// The string Zadarma signs for this event, per the official SDK's `getSignatureString`;
/// `None` for events whose scheme is not known to us.
pub fn zadarma_signature_string(n: &ZadarmaNotification) -> Option<String> {
    let cat = |keys: [&str; 3]| keys.iter().map(|k| n.sig_part(k)).collect::<String>();
    match n.event.as_str() {
        "NOTIFY_START" | "NOTIFY_INTERNAL" | "NOTIFY_IVR" | "NOTIFY_END" => {
            Some(cat(["caller_id", "called_did", "call_start"]))
        }
        "NOTIFY_ANSWER" => Some(cat(["caller_id", "destination", "call_start"])),
        "NOTIFY_OUT_START" | "NOTIFY_OUT_END" => {
            Some(cat(["internal", "destination", "call_start"]))
        }
        "NOTIFY_RECORD" => Some(format!(
            "{}{}",
            n.sig_part("pbx_call_id"),
            n.sig_part("call_id_with_rec")
        )),
        _ => None,
    }
}

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No signature was sent.
    #[error("missing {0}")]
    Missing(&'static str),
    /// The signature does not match.
    #[error("{0} does not match")]
    Mismatch(&'static str),
    /// The event's signing scheme is not known, so it cannot be verified.
    #[error("cannot verify the signature of event {0:?}")]
    UnknownScheme(String),
}

/// Checks `Signature` = base64(hex(HMAC-SHA1(secret, signature string))), comparing the
/// MAC in constant time.
///
/// # Errors
///
/// [`SignatureError`] when it is missing, does not match, or the event is not verifiable.
pub fn verify_zadarma_signature(
    secret: &[u8],
    signature: Option<&str>,
    n: &ZadarmaNotification,
) -> Result<(), SignatureError> {
    let Some(signed) = zadarma_signature_string(n) else {
        return Err(SignatureError::UnknownScheme(
            n.event.chars().take(64).collect(),
        ));
    };
    let signature = signature
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or(SignatureError::Missing("Signature header"))?;
    let mismatch = SignatureError::Mismatch("Signature");
    let hex_text = base64::engine::general_purpose::STANDARD
        .decode(signature)
        .map_err(|_| mismatch.clone())?;
    let tag = hex::decode(&hex_text).map_err(|_| mismatch.clone())?;
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).map_err(|_| mismatch.clone())?;
    mac.update(signed.as_bytes());
    mac.verify_slice(&tag).map_err(|_| mismatch)
}

/// The `Signature` Zadarma would send for `n` (for tests and tools).
pub fn zadarma_sign(secret: &[u8], n: &ZadarmaNotification) -> Option<String> {
    let signed = zadarma_signature_string(n)?;
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).ok()?;
    mac.update(signed.as_bytes());
    let hex_text = hex::encode(mac.finalize().into_bytes());
    Some(base64::engine::general_purpose::STANDARD.encode(hex_text))
}

/// Maps a (verified) notification to an event.
///
/// | event | maps to | `external_id` |
/// |---|---|---|
/// | `NOTIFY_START` | `ringing` (inbound) | `zadarma:{pbx_call_id}:start` |
/// | `NOTIFY_INTERNAL` | `ringing` at `internal` | `zadarma:{pbx_call_id}:internal:{internal}` |
/// | `NOTIFY_ANSWER` | `answered` by `internal` | `zadarma:{pbx_call_id}:answer[:{internal}]` |
/// | `NOTIFY_END` | `hung_up` / `missed` from `disposition` | `zadarma:{pbx_call_id}:end` |
/// | `NOTIFY_OUT_START` | `ringing` (outbound from `internal`) | `zadarma:{pbx_call_id}:out_start` |
/// | `NOTIFY_OUT_END` | `hung_up` / `missed` / `failed` | `zadarma:{pbx_call_id}:out_end` |
/// | `NOTIFY_RECORD` | `recording_available` | `zadarma:{pbx_call_id}:record:{call_id_with_rec}` |
/// | `NOTIFY_IVR` | `unknown` | `zadarma:{pbx_call_id}:ivr:{digest of the fields}` |
///
/// # Errors
///
/// When a field the event needs is missing.
pub fn map_zadarma(n: &ZadarmaNotification, plan: &NumberPlan) -> Result<Mapped, ParseError> {
    let need = |k: &str| n.get(k).ok_or_else(|| ParseError::missing(k));
    let pbx_call_id = key_part("pbx_call_id", &need("pbx_call_id")?)?;
    let call = format!("zadarma:{pbx_call_id}");
    let num = |k: &str| normalize_number(&n.get(k).unwrap_or_default(), plan).into_string();
    let raw = Value::Object(n.fields.clone());
    let (suffix, kind) = match n.event.as_str() {
        "NOTIFY_START" => (
            "start".to_owned(),
            CallEventKind::Ringing {
                from: num("caller_id"),
                to: num("called_did"),
                direction: Direction::Inbound,
                extension: None,
            },
        ),
        "NOTIFY_INTERNAL" => {
            let internal = need("internal")?;
            (
                format!("internal:{}", key_part("internal", &internal)?),
                CallEventKind::Ringing {
                    from: num("caller_id"),
                    to: num("called_did"),
                    direction: Direction::Inbound,
                    extension: Some(internal),
                },
            )
        }
        "NOTIFY_ANSWER" => {
            let internal = n.get("internal");
            let suffix = match &internal {
                Some(i) => format!("answer:{}", key_part("internal", i)?),
                None => "answer".to_owned(),
            };
            (
                suffix,
                CallEventKind::Answered {
                    by_extension: internal,
                },
            )
        }
        "NOTIFY_END" => ("end".to_owned(), end_kind(n, false)?),
        "NOTIFY_OUT_START" => {
            let internal = n.get("internal");
            (
                "out_start".to_owned(),
                CallEventKind::Ringing {
                    from: internal.clone().unwrap_or_default(),
                    to: num("destination"),
                    direction: Direction::Outbound,
                    extension: internal,
                },
            )
        }
        "NOTIFY_OUT_END" => ("out_end".to_owned(), end_kind(n, true)?),
        "NOTIFY_RECORD" => {
            let rec = key_part("call_id_with_rec", &need("call_id_with_rec")?)?;
            (
                format!("record:{rec}"),
                CallEventKind::RecordingAvailable {
                    url: format!("zadarma:record:{rec}"),
                },
            )
        }
        other => {
            // Valid and signed, but no call event for it (IVR input).
            let mut sorted: Vec<(&String, &Value)> = n.fields.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(b.0));
            let digest = digest_hex(
                serde_json::to_string(&sorted)
                    .unwrap_or_default()
                    .as_bytes(),
            );
            let step = other
                .strip_prefix("NOTIFY_")
                .unwrap_or(other)
                .to_ascii_lowercase();
            let key = checked_key(format!("{call}:{step}:{digest}"))?;
            tracing::debug!(event = other, "zadarma notification without a mapping");
            return Ok(Mapped::unknown(
                key,
                None,
                format!("zadarma event {other:?}"),
                raw,
            ));
        }
    };
    let key = checked_key(format!("{call}:{suffix}"))?;
    Ok(Mapped::call(key, call, None, kind, raw))
}

/// `disposition` (and `duration`) of an end notification as an event.
fn end_kind(n: &ZadarmaNotification, outbound: bool) -> Result<CallEventKind, ParseError> {
    let disposition = n
        .get("disposition")
        .ok_or_else(|| ParseError::missing("disposition"))?;
    let missed = |reason| CallEventKind::Missed { reason };
    Ok(match disposition.as_str() {
        "answered" => CallEventKind::HungUp {
            duration_secs: n.get("duration").and_then(|d| d.parse().ok()),
            cause: n.get("status_code").or(Some(disposition)),
        },
        "busy" => missed(MissedReason::Busy),
        "cancel" => missed(MissedReason::Cancelled),
        "no answer" => missed(MissedReason::NoAnswer),
        // 'failed', 'no money', 'unallocated number', the limits: the call never got
        // through. Outbound, that is a failed call; inbound, nobody answered it.
        _ if outbound => CallEventKind::Failed {
            reason: format!("zadarma: {disposition}"),
        },
        _ => missed(MissedReason::NoAnswer),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use kommutator_sdk::InboundKind;

    use super::*;

    const SECRET: &[u8] = b"zadarma-secret";

    fn plan() -> NumberPlan {
        NumberPlan::new(Some("7".to_owned()), 5)
    }

    fn kind(m: &Mapped) -> &CallEventKind {
        let InboundKind::Call(c) = &m.kind else {
            panic!("{m:?}")
        };
        &c.kind
    }

    #[test]
    fn signature_is_base64_of_the_hex_hmac() {
        let n = parse_zadarma(
            b"event=NOTIFY_START&call_start=2024-05-01+12%3A00%3A00&pbx_call_id=in_1&caller_id=79161234567&called_did=74951234567",
        )
        .unwrap();
        assert_eq!(
            zadarma_signature_string(&n).unwrap(),
            "79161234567749512345672024-05-01 12:00:00"
        );
        let sig = zadarma_sign(SECRET, &n).unwrap();
        // base64 of 40 hex characters is 56 characters.
        assert_eq!(sig.len(), 56);
        let hex_text = base64::engine::general_purpose::STANDARD
            .decode(&sig)
            .unwrap();
        assert!(hex_text
            .iter()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        verify_zadarma_signature(SECRET, Some(&sig), &n).unwrap();
        assert_eq!(
            verify_zadarma_signature(b"other", Some(&sig), &n),
            Err(SignatureError::Mismatch("Signature"))
        );
        assert_eq!(
            verify_zadarma_signature(SECRET, None, &n),
            Err(SignatureError::Missing("Signature header"))
        );
        assert_eq!(
            verify_zadarma_signature(SECRET, Some("!!"), &n),
            Err(SignatureError::Mismatch("Signature"))
        );
    }

    #[test]
    fn signature_strings_per_event() {
        let cases = [
            ("NOTIFY_ANSWER", "c", "d", "s", "cds"),
            ("NOTIFY_OUT_START", "i", "d", "s", "ids"),
            ("NOTIFY_OUT_END", "i", "d", "s", "ids"),
        ];
        for (event, a, b, c, want) in cases {
            let body = format!(
                "event={event}&caller_id={a}&internal={a}&destination={b}&call_start={c}&pbx_call_id=p"
            );
            let n = parse_zadarma(body.as_bytes()).unwrap();
            assert_eq!(zadarma_signature_string(&n).unwrap(), want, "{event}");
        }
        let n = parse_zadarma(b"event=NOTIFY_RECORD&pbx_call_id=p1&call_id_with_rec=r1").unwrap();
        assert_eq!(zadarma_signature_string(&n).unwrap(), "p1r1");
        let n = parse_zadarma(b"event=SMS&result=x").unwrap();
        assert_eq!(zadarma_signature_string(&n), None);
        assert_eq!(
            verify_zadarma_signature(SECRET, Some("x"), &n),
            Err(SignatureError::UnknownScheme("SMS".to_owned()))
        );
    }

    #[test]
    fn maps_each_event() {
        let p = plan();
        let m = map_zadarma(&parse_zadarma(b"event=NOTIFY_INTERNAL&pbx_call_id=in_1&caller_id=89161234567&called_did=74951234567&internal=100").unwrap(), &p).unwrap();
        assert_eq!(m.external_id, "zadarma:in_1:internal:100");
        assert_eq!(
            kind(&m),
            &CallEventKind::Ringing {
                from: "+79161234567".to_owned(),
                to: "+74951234567".to_owned(),
                direction: Direction::Inbound,
                extension: Some("100".to_owned()),
            }
        );
        let m = map_zadarma(&parse_zadarma(b"event=NOTIFY_END&pbx_call_id=in_1&disposition=answered&duration=42&status_code=16").unwrap(), &p).unwrap();
        assert_eq!(m.external_id, "zadarma:in_1:end");
        assert_eq!(
            kind(&m),
            &CallEventKind::HungUp {
                duration_secs: Some(42),
                cause: Some("16".to_owned())
            }
        );
        for (disp, want) in [
            (
                "busy",
                CallEventKind::Missed {
                    reason: MissedReason::Busy,
                },
            ),
            (
                "cancel",
                CallEventKind::Missed {
                    reason: MissedReason::Cancelled,
                },
            ),
            (
                "no+answer",
                CallEventKind::Missed {
                    reason: MissedReason::NoAnswer,
                },
            ),
            (
                "no+money",
                CallEventKind::Missed {
                    reason: MissedReason::NoAnswer,
                },
            ),
        ] {
            let body = format!("event=NOTIFY_END&pbx_call_id=x&disposition={disp}");
            assert_eq!(
                kind(&map_zadarma(&parse_zadarma(body.as_bytes()).unwrap(), &p).unwrap()),
                &want
            );
        }
        let m = map_zadarma(
            &parse_zadarma(
                b"event=NOTIFY_OUT_END&pbx_call_id=out_1&disposition=unallocated+number",
            )
            .unwrap(),
            &p,
        )
        .unwrap();
        assert_eq!(
            kind(&m),
            &CallEventKind::Failed {
                reason: "zadarma: unallocated number".to_owned()
            }
        );
        let m = map_zadarma(
            &parse_zadarma(b"event=NOTIFY_RECORD&pbx_call_id=in_1&call_id_with_rec=1714550400.123")
                .unwrap(),
            &p,
        )
        .unwrap();
        assert_eq!(m.external_id, "zadarma:in_1:record:1714550400.123");
        assert_eq!(
            kind(&m),
            &CallEventKind::RecordingAvailable {
                url: "zadarma:record:1714550400.123".to_owned()
            }
        );
    }

    #[test]
    fn ivr_is_unknown_with_a_stable_key() {
        let a = map_zadarma(
            &parse_zadarma(b"event=NOTIFY_IVR&pbx_call_id=in_1&caller_id=1&wait_dtmf=5").unwrap(),
            &plan(),
        )
        .unwrap();
        let b = map_zadarma(
            &parse_zadarma(b"wait_dtmf=5&caller_id=1&pbx_call_id=in_1&event=NOTIFY_IVR").unwrap(),
            &plan(),
        )
        .unwrap();
        assert_eq!(a.external_id, b.external_id);
        assert!(a.external_id.starts_with("zadarma:in_1:ivr:"));
        assert!(matches!(a.kind, InboundKind::Unknown { .. }));
    }

    #[test]
    fn missing_fields_are_named() {
        let p = plan();
        let cases: [(&[u8], &str); 5] = [
            (b"pbx_call_id=1", "missing field `event`"),
            (b"event=NOTIFY_START", "missing field `pbx_call_id`"),
            (
                b"event=NOTIFY_INTERNAL&pbx_call_id=1",
                "missing field `internal`",
            ),
            (
                b"event=NOTIFY_END&pbx_call_id=1",
                "missing field `disposition`",
            ),
            (
                b"event=NOTIFY_RECORD&pbx_call_id=1",
                "missing field `call_id_with_rec`",
            ),
        ];
        for (body, msg) in cases {
            let err = parse_zadarma(body)
                .and_then(|n| map_zadarma(&n, &p))
                .unwrap_err();
            assert_eq!(err.0, msg);
        }
    }
}
