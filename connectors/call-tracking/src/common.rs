//! What every provider module shares: the mapped event, the parse error, field helpers
//! and the `traffic_source` object. Pure.

use kommutator_sdk::{normalize_external_id, CallEvent, CallEventKind, InboundKind};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// The largest body the webhooks read, in bytes; a larger one is answered 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The key in `raw` under which the traffic source of a call is put.
pub const TRAFFIC_SOURCE_KEY: &str = "traffic_source";

/// One provider notification, normalized: everything of an `InboundEvent` but the
/// connector id.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    /// The idempotency key (`{provider}:{call id}:{step}`).
    pub external_id: String,
    /// The provider's time of the event, when it gives one with a known time zone.
    pub occurred_at: Option<OffsetDateTime>,
    /// A call event, or `Unknown` for valid notifications without a mapping.
    pub kind: InboundKind,
    /// The notification as received, as a JSON object, plus `traffic_source` when known.
    pub raw: Value,
}

impl Mapped {
    pub(crate) fn call(
        external_id: String,
        call_external_id: String,
        occurred_at: Option<OffsetDateTime>,
        kind: CallEventKind,
        raw: Value,
    ) -> Self {
        Self {
            external_id,
            occurred_at,
            kind: InboundKind::Call(CallEvent {
                call_external_id,
                kind,
            }),
            raw,
        }
    }

    pub(crate) fn unknown(
        external_id: String,
        occurred_at: Option<OffsetDateTime>,
        description: impl Into<String>,
        raw: Value,
    ) -> Self {
        Self {
            external_id,
            occurred_at,
            kind: InboundKind::Unknown {
                description: description.into(),
            },
            raw,
        }
    }
}

/// Why a notification is not valid. The message is safe to send back with a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

impl ParseError {
    pub(crate) fn missing(field: &str) -> Self {
        Self(format!("missing field `{field}`"))
    }
}

/// A JSON field as trimmed text: strings as is, numbers and booleans written out;
/// `None` when absent, null or empty.
///
/// # Errors
///
/// When the field is an object or an array.
pub(crate) fn json_text(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, ParseError> {
    let s = match obj.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(_) => {
            return Err(ParseError(format!(
                "field `{key}` must be a string or number"
            )))
        }
    };
    Ok((!s.is_empty()).then_some(s))
}

/// A JSON object from a body.
///
/// # Errors
///
/// When the body is not valid JSON or not an object.
pub(crate) fn json_object(bytes: &[u8], what: &str) -> Result<Map<String, Value>, ParseError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ParseError(format!("{what} is not a JSON object"))),
        Err(e) => Err(ParseError(format!("{what} is not valid JSON: {e}"))),
    }
}

/// Form fields as a JSON object of strings; the first of a repeated key wins.
///
/// # Errors
///
/// When the body is not UTF-8 or has no field.
pub(crate) fn form_object(bytes: &[u8]) -> Result<Map<String, Value>, ParseError> {
    if std::str::from_utf8(bytes).is_err() {
        return Err(ParseError("body is not UTF-8".to_owned()));
    }
    let mut map = Map::new();
    for (k, v) in form_urlencoded::parse(bytes) {
        if !k.is_empty() {
            map.entry(k.into_owned())
                .or_insert_with(|| Value::String(v.into_owned()));
        }
    }
    if map.is_empty() {
        return Err(ParseError("body has no form fields".to_owned()));
    }
    Ok(map)
}

/// An id from the wire made into a key part.
///
/// # Errors
///
/// When it is empty, too long or has control characters (the message names `field`).
pub(crate) fn key_part(field: &str, value: &str) -> Result<String, ParseError> {
    normalize_external_id(value).map_err(|e| {
        let text = e.to_string();
        let text = text.strip_prefix("protocol error: ").unwrap_or(&text);
        ParseError(text.replace("external id", &format!("`{field}`")))
    })
}

/// Checks that a finished key fits the external id rules.
///
/// # Errors
///
/// When the key is over the length limit.
pub(crate) fn checked_key(key: String) -> Result<String, ParseError> {
    key_part("id", &key).map_err(|_| ParseError("ids are too long for an event key".to_owned()))
}

/// A short, stable digest of `bytes`, for keys of notifications without an id.
pub(crate) fn digest_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The traffic source of a call: the fixed keys the hub reads from
/// `raw.traffic_source`; only present, non-empty values are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrafficSource {
    /// `utm_source`
    pub utm_source: Option<String>,
    /// `utm_medium`
    pub utm_medium: Option<String>,
    /// `utm_campaign`
    pub utm_campaign: Option<String>,
    /// `utm_term` (the keyword)
    pub utm_term: Option<String>,
    /// `utm_content`
    pub utm_content: Option<String>,
    /// The tracker's visit (session) id.
    pub visit_id: Option<String>,
    /// The page the visitor landed on.
    pub landing_page: Option<String>,
    /// Provider extras: Roistat's `marker`.
    pub marker: Option<String>,
    /// Provider extras: Mango's tracking number (`dct.number`).
    pub tracking_number: Option<String>,
    /// Provider extras: Mango's `dct.type` as `dynamic` or `static`.
    pub tracking_type: Option<String>,
}

impl TrafficSource {
    /// Reads the standard keys (`utm_*`, `visit_id`, `landing_page`) from a flat object.
    pub(crate) fn from_flat(obj: &Map<String, Value>) -> Self {
        let get = |k: &str| json_text(obj, k).ok().flatten();
        Self {
            utm_source: get("utm_source"),
            utm_medium: get("utm_medium"),
            utm_campaign: get("utm_campaign"),
            utm_term: get("utm_term"),
            utm_content: get("utm_content"),
            visit_id: get("visit_id"),
            landing_page: get("landing_page"),
            ..Self::default()
        }
    }

    /// The JSON object for `raw.traffic_source`, or `None` when nothing is known.
    pub fn to_json(&self, provider: &str) -> Option<Value> {
        let pairs = [
            ("utm_source", &self.utm_source),
            ("utm_medium", &self.utm_medium),
            ("utm_campaign", &self.utm_campaign),
            ("utm_term", &self.utm_term),
            ("utm_content", &self.utm_content),
            ("visit_id", &self.visit_id),
            ("landing_page", &self.landing_page),
            ("marker", &self.marker),
            ("tracking_number", &self.tracking_number),
            ("tracking_type", &self.tracking_type),
        ];
        let mut map = Map::new();
        for (k, v) in pairs {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                map.insert(k.to_owned(), Value::String(v.to_owned()));
            }
        }
        if map.is_empty() {
            return None;
        }
        map.insert("provider".to_owned(), Value::String(provider.to_owned()));
        Some(Value::Object(map))
    }
}

/// `raw` as the object `fields` with `traffic_source` added when known.
pub(crate) fn raw_with_source(mut fields: Map<String, Value>, source: Option<Value>) -> Value {
    if let Some(source) = source {
        fields.insert(TRAFFIC_SOURCE_KEY.to_owned(), source);
    }
    Value::Object(fields)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn traffic_source_keeps_only_present_values() {
        let obj = json!({"utm_source": "yandex", "utm_medium": null, "utm_term": "",
                         "visit_id": 123, "landing_page": "example.com/a"});
        let Value::Object(obj) = obj else { panic!() };
        let ts = TrafficSource::from_flat(&obj);
        assert_eq!(
            ts.to_json("uis").unwrap(),
            json!({"utm_source": "yandex", "visit_id": "123",
                   "landing_page": "example.com/a", "provider": "uis"})
        );
        assert_eq!(TrafficSource::default().to_json("uis"), None);
    }

    #[test]
    fn key_parts_name_the_field() {
        assert_eq!(key_part("id", " 7 ").unwrap(), "7");
        assert_eq!(key_part("id", "").unwrap_err().0, "`id` is empty");
        assert_eq!(
            key_part("entry_id", "a\nb").unwrap_err().0,
            "`entry_id` contains control character '\\n' at byte 1"
        );
        assert!(checked_key("x".repeat(300)).is_err());
    }

    #[test]
    fn bodies() {
        assert_eq!(
            json_object(b"[]", "body").unwrap_err().0,
            "body is not a JSON object"
        );
        assert!(json_object(b"{", "body")
            .unwrap_err()
            .0
            .starts_with("body is not valid JSON"));
        assert_eq!(form_object(b"").unwrap_err().0, "body has no form fields");
        assert_eq!(form_object(b"\xff").unwrap_err().0, "body is not UTF-8");
        let f = form_object(b"a=1&a=2&b=x+y").unwrap();
        assert_eq!(Value::Object(f), json!({"a": "1", "b": "x y"}));
        assert_eq!(digest_hex(b"x").len(), 32);
    }
}
