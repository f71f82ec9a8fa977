//! Reading one request body of the Zammad generic CTI shape: pure, no I/O, no panic.

use serde_json::{Map, Value};

/// The largest body the webhook reads, in bytes; a larger one is answered 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The three events of the generic CTI API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtiEventType {
    /// `newCall`: a call starts ringing.
    NewCall,
    /// `answer`: someone picked up.
    Answer,
    /// `hangup`: the call ended.
    Hangup,
}

impl CtiEventType {
    /// The name as on the wire (`newCall`), also the suffix of event keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NewCall => "newCall",
            Self::Answer => "answer",
            Self::Hangup => "hangup",
        }
    }
}

/// `direction`: `in` (the customer called) or `out` (an agent called).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtiDirection {
    /// `in`
    In,
    /// `out`
    Out,
}

/// One parsed request, before normalizing.
#[derive(Debug, Clone, PartialEq)]
pub struct CtiRequest {
    /// `event`.
    pub event: CtiEventType,
    /// `callId`, trimmed, never empty.
    pub call_id: String,
    /// `from`, as sent.
    pub from: Option<String>,
    /// `to`, as sent.
    pub to: Option<String>,
    /// `direction`; required for `newCall`.
    pub direction: Option<CtiDirection>,
    /// `user[]` / `user`: names of the agents involved.
    pub users: Vec<String>,
    /// `answeringNumber`: who answered (a phone, login or user id).
    pub answering_number: Option<String>,
    /// `cause` of a hangup (`normalClearing`, `busy`, …).
    pub cause: Option<String>,
    /// `queue`, if given.
    pub queue: Option<String>,
    /// Every field as received, as a JSON object (form bodies as strings, `user` as an
    /// array); kept as the event's `raw`.
    pub fields: Map<String, Value>,
}

/// Why a body is not a valid CTI request. The message is safe to send back (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CtiParseError {
    /// The body is JSON but not an object, or not valid JSON.
    #[error("body is not a JSON object: {0}")]
    Json(String),
    /// The body is neither JSON nor a form (e.g. not UTF-8 once decoded).
    #[error("body is not a form or JSON object")]
    Malformed,
    /// A required field is missing or empty.
    #[error("missing field `{0}`")]
    Missing(&'static str),
    /// A field has a JSON type that cannot be a CTI value (an object, a nested array).
    #[error("field `{0}` must be a string or number")]
    BadType(String),
    /// `event` is not one of `newCall`, `answer`, `hangup`.
    #[error("unknown event {0:?}, expected newCall, answer or hangup")]
    UnknownEvent(String),
    /// `direction` is not `in` or `out`.
    #[error("invalid direction {0:?}, expected in or out")]
    InvalidDirection(String),
}

/// Parses a CTI request body. `content_type` picks JSON (`…json…`) or form
/// (`application/x-www-form-urlencoded`, `multipart` is not accepted); without one, a body
/// starting with `{` is JSON and anything else a form.
///
/// # Errors
///
/// [`CtiParseError`] naming what is wrong.
pub fn parse_cti(body: &[u8], content_type: Option<&str>) -> Result<CtiRequest, CtiParseError> {
    let is_json = match content_type {
        Some(ct) if ct.to_ascii_lowercase().contains("json") => true,
        Some(ct) if ct.to_ascii_lowercase().contains("x-www-form-urlencoded") => false,
        _ => body
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'{'),
    };
    let fields = if is_json {
        parse_json_fields(body)?
    } else {
        parse_form_fields(body)?
    };
    from_fields(fields)
}

fn parse_json_fields(body: &[u8]) -> Result<Map<String, Value>, CtiParseError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(CtiParseError::Json("expected an object".to_owned())),
        Err(e) => Err(CtiParseError::Json(e.to_string())),
    }
}

fn parse_form_fields(body: &[u8]) -> Result<Map<String, Value>, CtiParseError> {
    if std::str::from_utf8(body).is_err() {
        return Err(CtiParseError::Malformed);
    }
    let mut map = Map::new();
    for (key, value) in form_urlencoded::parse(body) {
        if key.is_empty() {
            continue;
        }
        if key == "user[]" || key == "user" {
            match map
                .entry("user")
                .or_insert_with(|| Value::Array(Vec::new()))
            {
                Value::Array(users) => users.push(Value::String(value.into_owned())),
                _ => return Err(CtiParseError::Malformed),
            }
        } else {
            // The first occurrence wins; a repeated key is a client bug we tolerate.
            map.entry(key.into_owned())
                .or_insert_with(|| Value::String(value.into_owned()));
        }
    }
    if map.is_empty() {
        return Err(CtiParseError::Malformed);
    }
    Ok(map)
}

/// A scalar field as trimmed text; `None` when absent, null or empty.
fn text(fields: &Map<String, Value>, key: &str) -> Result<Option<String>, CtiParseError> {
    let s = match fields.get(key) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(_) => return Err(CtiParseError::BadType(key.to_owned())),
    };
    Ok((!s.is_empty()).then_some(s))
}

fn users(fields: &Map<String, Value>) -> Result<Vec<String>, CtiParseError> {
    let one = |v: &Value| match v {
        Value::String(s) => Ok(Some(s.trim().to_owned()).filter(|s| !s.is_empty())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::Null => Ok(None),
        _ => Err(CtiParseError::BadType("user".to_owned())),
    };
    let list = fields.get("user").or_else(|| fields.get("user[]"));
    match list {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                if let Some(u) = one(item)? {
                    out.push(u);
                }
            }
            Ok(out)
        }
        Some(v) => Ok(one(v)?.into_iter().collect()),
    }
}

fn from_fields(fields: Map<String, Value>) -> Result<CtiRequest, CtiParseError> {
    let event = match text(&fields, "event")?.as_deref() {
        None => return Err(CtiParseError::Missing("event")),
        Some("newCall") => CtiEventType::NewCall,
        Some("answer") => CtiEventType::Answer,
        Some("hangup") => CtiEventType::Hangup,
        Some(other) => return Err(CtiParseError::UnknownEvent(truncate(other))),
    };
    let call_id = text(&fields, "callId")?.ok_or(CtiParseError::Missing("callId"))?;
    let direction = match text(&fields, "direction")?.as_deref() {
        None => None,
        Some("in") => Some(CtiDirection::In),
        Some("out") => Some(CtiDirection::Out),
        Some(other) => return Err(CtiParseError::InvalidDirection(truncate(other))),
    };
    let from = text(&fields, "from")?;
    let to = text(&fields, "to")?;
    if event == CtiEventType::NewCall {
        if direction.is_none() {
            return Err(CtiParseError::Missing("direction"));
        }
        if from.is_none() {
            return Err(CtiParseError::Missing("from"));
        }
        if to.is_none() {
            return Err(CtiParseError::Missing("to"));
        }
    }
    Ok(CtiRequest {
        event,
        call_id,
        from,
        to,
        direction,
        users: users(&fields)?,
        answering_number: text(&fields, "answeringNumber")?,
        cause: text(&fields, "cause")?,
        queue: text(&fields, "queue")?,
        fields,
    })
}

/// Cuts a value echoed in an error message to a readable length.
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    const FORM: &str = "application/x-www-form-urlencoded";

    #[test]
    fn form_new_call_with_group_users() {
        let body = b"event=newCall&from=493055571600&to=491711234567890&direction=in\
                     &callId=4991155921769858278-1&user%5B%5D=Alice+Smith&user%5B%5D=Bob&queue=helpdesk";
        let req = parse_cti(body, Some(FORM)).unwrap();
        assert_eq!(req.event, CtiEventType::NewCall);
        assert_eq!(req.call_id, "4991155921769858278-1");
        assert_eq!(req.from.as_deref(), Some("493055571600"));
        assert_eq!(req.direction, Some(CtiDirection::In));
        assert_eq!(req.users, vec!["Alice Smith", "Bob"]);
        assert_eq!(req.queue.as_deref(), Some("helpdesk"));
        assert_eq!(req.fields["user"], json!(["Alice Smith", "Bob"]));
    }

    #[test]
    fn json_answer_with_numbers_and_single_user() {
        let body = br#"{"event":"answer","from":493055571600,"to":"4930","direction":"in",
                        "callId":77,"user":"Alice","answeringNumber":"42"}"#;
        let req = parse_cti(body, Some("application/json; charset=utf-8")).unwrap();
        assert_eq!(req.event, CtiEventType::Answer);
        assert_eq!(req.call_id, "77");
        assert_eq!(req.from.as_deref(), Some("493055571600"));
        assert_eq!(req.users, vec!["Alice"]);
        assert_eq!(req.answering_number.as_deref(), Some("42"));
    }

    #[test]
    fn sniffs_the_format_without_content_type() {
        let json = parse_cti(br#" {"event":"hangup","callId":"c","cause":"busy"}"#, None).unwrap();
        assert_eq!(json.cause.as_deref(), Some("busy"));
        let form = parse_cti(b"event=hangup&callId=c&cause=cancel", None).unwrap();
        assert_eq!(form.cause.as_deref(), Some("cancel"));
    }

    #[test]
    fn errors_name_the_problem() {
        let cases: [(&[u8], Option<&str>, &str); 11] = [
            (b"", Some(FORM), "body is not a form or JSON object"),
            (b"\xff\xfe", Some(FORM), "body is not a form or JSON object"),
            (
                b"[1]",
                Some("application/json"),
                "body is not a JSON object: expected an object",
            ),
            (b"callId=1", Some(FORM), "missing field `event`"),
            (
                b"event=ring&callId=1",
                Some(FORM),
                "unknown event \"ring\", expected newCall, answer or hangup",
            ),
            (b"event=answer", Some(FORM), "missing field `callId`"),
            (
                b"event=answer&callId=%20",
                Some(FORM),
                "missing field `callId`",
            ),
            (
                b"event=newCall&callId=1&from=1&to=2",
                Some(FORM),
                "missing field `direction`",
            ),
            (
                b"event=newCall&callId=1&to=2&direction=in",
                Some(FORM),
                "missing field `from`",
            ),
            (
                b"event=newCall&callId=1&from=1&to=2&direction=sideways",
                Some(FORM),
                "invalid direction \"sideways\", expected in or out",
            ),
            (
                br#"{"event":"answer","callId":{"a":1}}"#,
                None,
                "field `callId` must be a string or number",
            ),
        ];
        for (body, ct, msg) in cases {
            let err = parse_cti(body, ct).unwrap_err();
            assert_eq!(err.to_string(), msg, "{:?}", String::from_utf8_lossy(body));
        }
        let err = parse_cti(b"{\"event\":", Some("application/json")).unwrap_err();
        assert!(matches!(err, CtiParseError::Json(_)), "{err:?}");
    }

    #[test]
    fn answer_and_hangup_need_no_direction() {
        let req = parse_cti(b"event=hangup&callId=x", Some(FORM)).unwrap();
        assert_eq!(req.direction, None);
        assert_eq!(req.cause, None);
    }
}
