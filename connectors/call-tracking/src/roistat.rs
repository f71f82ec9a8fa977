//! Roistat call-tracking webhooks: JSON POSTs sent when Roistat dials the number
//! (`webhook_start`) and after the call (`webhook`). Pure: parse, map.

use kommutator_sdk::{CallEventKind, Direction};
use serde_json::{Map, Value};

use crate::common::{
    checked_key, json_object, json_text, key_part, raw_with_source, Mapped, ParseError,
    TrafficSource,
};
use kommutator_sdk::phone::{normalize_number, NumberPlan};

/// Which of Roistat's two webhooks sent the body; the payload does not say, so each has
/// its own route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoistatStage {
    /// The webhook "at the moment of call" (`webhook_start`).
    Start,
    /// The webhook "after call" (`webhook`).
    End,
}

/// A Roistat webhook body.
#[derive(Debug, Clone, PartialEq)]
pub struct RoistatCall {
    /// `id`: Roistat's call number.
    pub id: String,
    /// `caller`: the customer's number.
    pub caller: Option<String>,
    /// `callee`: the number dialed (ours).
    pub callee: Option<String>,
    /// `utm_*`, `visit_id`, `landing_page` and `marker` (Roistat's visit source).
    pub source: TrafficSource,
    /// The whole body, kept as `raw`.
    pub fields: Map<String, Value>,
}

/// Parses a Roistat webhook body.
///
/// # Errors
///
/// When it is not a JSON object or has no `id`.
pub fn parse_roistat(body: &[u8]) -> Result<RoistatCall, ParseError> {
    let obj = json_object(body, "body")?;
    let id = json_text(&obj, "id")?.ok_or_else(|| ParseError::missing("id"))?;
    let mut source = TrafficSource::from_flat(&obj);
    source.marker = json_text(&obj, "marker").ok().flatten();
    Ok(RoistatCall {
        id,
        caller: json_text(&obj, "caller")?,
        callee: json_text(&obj, "callee")?,
        source,
        fields: obj,
    })
}

/// Maps a Roistat webhook. Every Roistat event carries `raw.traffic_source`.
///
/// - `Start` → `ringing` from `caller` to `callee` (inbound), `external_id`
///   `roistat:{id}:start`.
/// - `End` → `unknown`, `external_id` `roistat:{id}:end`: the after-call fields (result,
///   duration, recording) are not documented in the research we rely on, so they are only
///   kept in `raw`.
///
/// `call_external_id` is `roistat:{id}`. The body's `date` has no time zone, so
/// `occurred_at` is left to the receive time.
///
/// # Errors
///
/// When `caller` or `callee` is missing at `Start`, or `id` cannot be a key.
pub fn map_roistat(
    call: &RoistatCall,
    stage: RoistatStage,
    plan: &NumberPlan,
) -> Result<Mapped, ParseError> {
    let id = key_part("id", &call.id)?;
    let call_key = format!("roistat:{id}");
    let raw = raw_with_source(call.fields.clone(), call.source.to_json("roistat"));
    match stage {
        RoistatStage::Start => {
            let caller = call
                .caller
                .as_deref()
                .ok_or_else(|| ParseError::missing("caller"))?;
            let callee = call
                .callee
                .as_deref()
                .ok_or_else(|| ParseError::missing("callee"))?;
            let kind = CallEventKind::Ringing {
                from: normalize_number(caller, plan).into_string(),
                to: normalize_number(callee, plan).into_string(),
                direction: Direction::Inbound,
                extension: None,
            };
            let key = checked_key(format!("{call_key}:start"))?;
            Ok(Mapped::call(key, call_key, None, kind, raw))
        }
        RoistatStage::End => {
            let key = checked_key(format!("{call_key}:end"))?;
            Ok(Mapped::unknown(
                key,
                None,
                "roistat after-call webhook",
                raw,
            ))
        }
    }
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

    #[test]
    fn start_is_ringing_with_the_traffic_source() {
        let body = json!({
            "id": "313", "caller": "79161234567", "callee": "74957654321", "visit_id": "123456",
            "marker": "yandex_cpc", "landing_page": "example.ru/sale", "utm_source": "yandex",
            "utm_medium": "cpc", "utm_campaign": "spring", "utm_term": "buy sofa", "utm_content": null
        });
        let call = parse_roistat(body.to_string().as_bytes()).unwrap();
        let m = map_roistat(&call, RoistatStage::Start, &plan()).unwrap();
        assert_eq!(m.external_id, "roistat:313:start");
        let InboundKind::Call(c) = &m.kind else {
            panic!()
        };
        assert_eq!(c.call_external_id, "roistat:313");
        assert_eq!(
            c.kind,
            CallEventKind::Ringing {
                from: "+79161234567".to_owned(),
                to: "+74957654321".to_owned(),
                direction: Direction::Inbound,
                extension: None,
            }
        );
        assert_eq!(
            m.raw["traffic_source"],
            json!({"utm_source": "yandex", "utm_medium": "cpc", "utm_campaign": "spring",
                   "utm_term": "buy sofa", "visit_id": "123456", "landing_page": "example.ru/sale",
                   "marker": "yandex_cpc", "provider": "roistat"})
        );
        assert_eq!(m.raw["caller"], "79161234567", "the body is kept");
    }

    #[test]
    fn end_is_unknown_with_its_own_key() {
        let call = parse_roistat(br#"{"id": 313, "caller": "1"}"#).unwrap();
        let m = map_roistat(&call, RoistatStage::End, &plan()).unwrap();
        assert_eq!(m.external_id, "roistat:313:end");
        assert!(matches!(m.kind, InboundKind::Unknown { .. }));
        assert!(
            m.raw.get("traffic_source").is_none(),
            "nothing known, no object"
        );
    }

    #[test]
    fn errors() {
        assert_eq!(parse_roistat(b"{}").unwrap_err().0, "missing field `id`");
        assert_eq!(
            parse_roistat(b"[]").unwrap_err().0,
            "body is not a JSON object"
        );
        let call = parse_roistat(br#"{"id": "1", "callee": "2"}"#).unwrap();
        assert_eq!(
            map_roistat(&call, RoistatStage::Start, &plan())
                .unwrap_err()
                .0,
            "missing field `caller`"
        );
    }
}
