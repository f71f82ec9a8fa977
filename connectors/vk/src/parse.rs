//! Pure parsing and mapping of VK events (Callback API bodies and Bots Long Poll answers)
//! to hub events. No I/O, no panic on any input.

use kommutator_sdk::{
    normalize_external_id, DeliveryState, IdentityKind, InboundKind, InboundMessage, Party,
    PartyIdentity,
};
use serde::Deserialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;

/// Why a body or an update could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON at all.
    #[error("malformed JSON: {0}")]
    Json(String),
    /// JSON, but not an object where one is required.
    #[error("{0} is not a JSON object")]
    NotObject(&'static str),
    /// A field the mapping needs is missing.
    #[error("missing field `{0}`")]
    Missing(&'static str),
    /// A field has the wrong type or an impossible value.
    #[error("invalid field `{field}`: {message}")]
    Invalid {
        /// The field at fault.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

fn invalid(field: &'static str, message: impl Into<String>) -> ParseError {
    ParseError::Invalid {
        field,
        message: message.into(),
    }
}

/// One VK event: a Callback API body or one element of a Long Poll `updates` array.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// `type`, e.g. `message_new`, `confirmation`.
    pub event_type: String,
    /// `group_id`, the community the event belongs to.
    pub group_id: Option<u64>,
    /// `event_id`: "if it passed twice or more, you should ignore it".
    pub event_id: Option<String>,
    /// `secret`, the Callback API secret key (never put in `raw`).
    pub secret: Option<String>,
    /// `object`, the payload (`Null` when absent).
    pub object: Value,
    /// The event as received, without `secret`.
    pub raw: Value,
}

/// Reads a Callback API body.
///
/// # Errors
///
/// [`ParseError`] when the body is not a JSON object with a string `type`.
pub fn parse_callback(body: &[u8]) -> Result<Envelope, ParseError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    envelope_from_value(value)
}

/// Reads one event object (a Callback API body already decoded, or a Long Poll update).
///
/// # Errors
///
/// [`ParseError`] when `value` is not an object with a string `type`, or `group_id` /
/// `event_id` have the wrong type.
pub fn envelope_from_value(value: Value) -> Result<Envelope, ParseError> {
    let Value::Object(mut map) = value else {
        return Err(ParseError::NotObject("event"));
    };
    let secret = match map.remove("secret") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(invalid("secret", "must be a string")),
    };
    let event_type = match map.get("type") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(_) => return Err(invalid("type", "must be a non-empty string")),
        None => return Err(ParseError::Missing("type")),
    };
    let group_id = match map.get("group_id") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            as_i64(v)
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| invalid("group_id", "must be a positive integer"))?,
        ),
    };
    let event_id = match map.get("event_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(_) => return Err(invalid("event_id", "must be a string")),
    };
    let object = map.get("object").cloned().unwrap_or(Value::Null);
    Ok(Envelope {
        event_type,
        group_id,
        event_id,
        secret,
        object,
        raw: Value::Object(map),
    })
}

/// A Bots Long Poll answer to `a_check`.
#[derive(Debug, Clone, PartialEq)]
pub enum LongPollAnswer {
    /// Events, and the `ts` to ask from next.
    Updates {
        /// The next `ts`.
        ts: String,
        /// The events, each still to be read with [`envelope_from_value`].
        updates: Vec<Value>,
    },
    /// `{"failed": N}`: 1 history out of date (continue with `ts`), 2 key expired, 3
    /// information lost (new key and ts), 4 invalid version.
    Failed {
        /// `failed`.
        code: i64,
        /// `ts`, given with `failed: 1`.
        ts: Option<String>,
    },
}

/// Reads a Long Poll answer.
///
/// # Errors
///
/// [`ParseError`] when it is neither `{ts, updates}` nor `{failed}`.
pub fn parse_long_poll(body: &[u8]) -> Result<LongPollAnswer, ParseError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    let Value::Object(map) = value else {
        return Err(ParseError::NotObject("long poll answer"));
    };
    let ts = map.get("ts").and_then(ts_string);
    if let Some(failed) = map.get("failed") {
        let code = as_i64(failed).ok_or_else(|| invalid("failed", "must be an integer"))?;
        return Ok(LongPollAnswer::Failed { code, ts });
    }
    let ts = ts.ok_or(ParseError::Missing("ts"))?;
    let updates = match map.get("updates") {
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err(invalid("updates", "must be an array")),
        None => return Err(ParseError::Missing("updates")),
    };
    Ok(LongPollAnswer::Updates { ts, updates })
}

/// A `ts` as VK gives it: a string, or (in some versions) a number.
pub fn ts_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() && s.len() <= 64 => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// An integer from a JSON number or a numeric string.
pub(crate) fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A file referred to by a message: downloaded and stored when `download` and small
/// enough, else kept as a reference (`url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    /// A file name to show.
    pub name: String,
    /// Its MIME type.
    pub mime_type: String,
    /// Its size, when VK says.
    pub size: Option<u64>,
    /// Where to fetch it, or a `vk:` reference when it cannot be fetched.
    pub url: String,
    /// Whether `url` is a downloadable file.
    pub download: bool,
}

/// One event, mapped: everything of an `InboundEvent` but the connector id, plus the
/// files to fetch for a message.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    /// The idempotency key (see the crate docs).
    pub external_id: String,
    /// `event_id`, for the recently-seen set.
    pub event_id: Option<String>,
    /// The message's `date`.
    pub occurred_at: Option<OffsetDateTime>,
    /// The event; a message's `attachments` are still empty (see `files`).
    pub kind: InboundKind,
    /// The message's attachments, in order, for the I/O layer to resolve.
    pub files: Vec<RemoteFile>,
    /// The event as received, without `secret`.
    pub raw: Value,
}

/// What the connector knows of a `random_id` it may have produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OurSend {
    /// Not one of ours.
    No,
    /// Ours, the send not acknowledged yet (the echo can beat the API answer).
    Pending,
    /// Ours, acknowledged under this id.
    Acked(String),
}

#[derive(Debug, Deserialize)]
struct VkMessage {
    date: Option<i64>,
    from_id: Option<i64>,
    id: Option<i64>,
    peer_id: Option<i64>,
    #[serde(default)]
    text: Option<String>,
    conversation_message_id: Option<i64>,
    random_id: Option<i64>,
    update_time: Option<i64>,
    out: Option<i64>,
    #[serde(default)]
    attachments: Option<Vec<Value>>,
    reply_message: Option<Value>,
}

fn message_of(object: &Value, nested: bool) -> Result<VkMessage, ParseError> {
    // `message_new` wraps the message as `object.message` (with `client_info`) since API
    // 5.103; `message_edit` and `message_reply` give the message itself.
    let m = match object {
        Value::Object(o) if nested && o.get("message").is_some_and(Value::is_object) => {
            o.get("message").unwrap_or(object)
        }
        Value::Object(_) => object,
        Value::Null => return Err(ParseError::Missing("object")),
        _ => return Err(ParseError::NotObject("object")),
    };
    serde_json::from_value(m.clone()).map_err(|e| invalid("object", e.to_string()))
}

fn id(s: String, field: &'static str) -> Result<String, ParseError> {
    normalize_external_id(&s).map_err(|e| invalid(field, e.to_string()))
}

/// The key of a message: `{peer_id}:{conversation_message_id}` (group chats give
/// `id: 0`, so never `id` alone).
pub fn message_key(peer_id: i64, cmid: i64) -> String {
    format!("{peer_id}:{cmid}")
}

fn timestamp(secs: Option<i64>) -> Option<OffsetDateTime> {
    secs.and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
}

fn event_key(env: &Envelope) -> Result<String, ParseError> {
    let eid = env
        .event_id
        .clone()
        .ok_or(ParseError::Missing("event_id"))?;
    id(format!("event:{eid}"), "event_id")
}

/// Maps one event. `ours` tells whether a `random_id` of a `message_reply` is one the
/// connector produced.
///
/// # Errors
///
/// [`ParseError`] when a message lacks `peer_id` / `conversation_message_id` / `from_id`
/// or has fields of the wrong type, or an unmapped event has no `event_id`.
pub fn map_event(env: &Envelope, ours: &dyn Fn(i64) -> OurSend) -> Result<Mapped, ParseError> {
    match env.event_type.as_str() {
        "message_new" | "message_edit" => map_message(env),
        "message_reply" => map_reply(env, ours),
        other => Ok(Mapped {
            external_id: event_key(env)?,
            event_id: env.event_id.clone(),
            occurred_at: None,
            kind: InboundKind::Unknown {
                description: format!("vk event \"{}\"", truncate(other, 64)),
            },
            files: vec![],
            raw: env.raw.clone(),
        }),
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => s.get(..i).unwrap_or(s),
        None => s,
    }
}

fn map_message(env: &Envelope) -> Result<Mapped, ParseError> {
    let edit = env.event_type == "message_edit";
    let m = message_of(&env.object, !edit)?;
    if edit && m.out == Some(1) {
        return Ok(Mapped {
            external_id: event_key(env)?,
            event_id: env.event_id.clone(),
            occurred_at: timestamp(m.update_time.or(m.date)),
            kind: InboundKind::Unknown {
                description: "vk message_edit of a community message".to_owned(),
            },
            files: vec![],
            raw: env.raw.clone(),
        });
    }
    let peer = m.peer_id.ok_or(ParseError::Missing("peer_id"))?;
    let cmid = m
        .conversation_message_id
        .ok_or(ParseError::Missing("conversation_message_id"))?;
    let from = m.from_id.ok_or(ParseError::Missing("from_id"))?;
    let key = id(message_key(peer, cmid), "peer_id")?;
    let thread = id(peer.to_string(), "peer_id")?;
    let sender = Party::from_identity(PartyIdentity::new(IdentityKind::Vk, from.to_string()));
    let text = m.text.clone().filter(|t| !t.is_empty());
    let mut msg = InboundMessage::text(thread, sender, text);
    msg.reply_to_external_id = m.reply_message.as_ref().and_then(|r| {
        let p = r.get("peer_id").and_then(as_i64).unwrap_or(peer);
        let from = r.get("from_id").and_then(as_i64).unwrap_or(0);
        let rid = r.get("id").and_then(as_i64).unwrap_or(0);
        // A community message (ours) is known by the id our ack gave it.
        let key = if from < 0 && rid > 0 {
            format!("{p}:id:{rid}")
        } else {
            message_key(p, r.get("conversation_message_id").and_then(as_i64)?)
        };
        normalize_external_id(&key).ok()
    });
    let external_id = if edit {
        msg.edit_of = Some(key.clone());
        let when = match m.update_time.or(m.date) {
            Some(t) => t.to_string(),
            None => format!("event:{}", env.event_id.clone().unwrap_or_default()),
        };
        id(format!("{key}:edit:{when}"), "update_time")?
    } else {
        key
    };
    let files = m
        .attachments
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(remote_file)
        .collect();
    Ok(Mapped {
        external_id,
        event_id: env.event_id.clone(),
        occurred_at: timestamp(if edit {
            m.update_time.or(m.date)
        } else {
            m.date
        }),
        kind: InboundKind::Message(msg),
        files,
        raw: env.raw.clone(),
    })
}

fn map_reply(env: &Envelope, ours: &dyn Fn(i64) -> OurSend) -> Result<Mapped, ParseError> {
    let m = message_of(&env.object, false)?;
    let peer = m.peer_id.ok_or(ParseError::Missing("peer_id"))?;
    let random_id = m.random_id.unwrap_or(0);
    let mine = if random_id == 0 {
        OurSend::No
    } else {
        ours(random_id)
    };
    let their_id = match mine {
        OurSend::No => None,
        OurSend::Acked(t) => Some(t),
        // The same rule the ack uses for a `messages.send` answering a bare message id.
        // What the ack will say for the `peer_id` form of `messages.send`, which answers
        // the message id (0 in group chats).
        OurSend::Pending => Some(match m.id {
            Some(mid) if mid > 0 => format!("{peer}:id:{mid}"),
            _ => format!("{peer}:random:{random_id}"),
        }),
    };
    let occurred_at = timestamp(m.date);
    if let Some(their_id) = their_id {
        let their_id = id(their_id, "peer_id")?;
        let status = DeliveryState::Delivered;
        return Ok(Mapped {
            external_id: id(format!("{their_id}:{}", status.as_str()), "peer_id")?,
            event_id: env.event_id.clone(),
            occurred_at,
            kind: InboundKind::DeliveryStatus {
                message_external_id: their_id,
                status,
            },
            files: vec![],
            raw: env.raw.clone(),
        });
    }
    let external_id = match (&env.event_id, m.conversation_message_id) {
        (Some(_), _) => event_key(env)?,
        (None, Some(c)) => id(format!("{}:reply", message_key(peer, c)), "peer_id")?,
        (None, None) => return Err(ParseError::Missing("event_id")),
    };
    Ok(Mapped {
        external_id,
        event_id: env.event_id.clone(),
        occurred_at,
        kind: InboundKind::Unknown {
            description: "vk message_reply sent by the community outside the hub".to_owned(),
        },
        files: vec![],
        raw: env.raw.clone(),
    })
}

fn obj<'a>(v: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    v.get(key).and_then(Value::as_object)
}

fn str_of<'a>(o: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    o.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn int_of(o: &Map<String, Value>, key: &str) -> Option<i64> {
    o.get(key).and_then(as_i64)
}

fn is_http(url: &str) -> bool {
    url.starts_with("https://") || url.starts_with("http://")
}

/// The MIME type of a file extension VK gives for documents (`pdf`, `jpg`, …).
pub fn mime_of_ext(ext: &str) -> &'static str {
    match ext.to_ascii_lowercase().as_str() {
        "pdf" => "application/pdf",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "txt" => "text/plain",
        "csv" => "text/csv",
        "doc" => "application/msword",
        "docx" => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "xls" => "application/vnd.ms-excel",
        "xlsx" => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "zip" => "application/zip",
        "ogg" => "audio/ogg",
        "mp3" => "audio/mpeg",
        "mp4" => "video/mp4",
        _ => "application/octet-stream",
    }
}

/// One element of `attachments`: `{type, <type>: {...}}`.
fn remote_file(att: &Value) -> RemoteFile {
    let kind = att.get("type").and_then(Value::as_str).unwrap_or("unknown");
    let kind = truncate(kind, 32);
    let body = obj(att, kind);
    let ids = body.map(|b| (int_of(b, "owner_id"), int_of(b, "id")));
    let vk_ref = match ids {
        Some((Some(owner), Some(i))) => format!("vk:{kind}{owner}_{i}"),
        _ => format!("vk:{kind}"),
    };
    let reference = |name: String| RemoteFile {
        name,
        mime_type: "application/octet-stream".to_owned(),
        size: None,
        url: vk_ref.clone(),
        download: false,
    };
    let Some(b) = body else {
        return reference(kind.to_owned());
    };
    let base = vk_ref.strip_prefix("vk:").unwrap_or(kind).to_owned();
    match kind {
        "photo" => {
            // The largest size by area; `url` in current versions.
            let best = b
                .get("sizes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|s| {
                    let url = s
                        .get("url")
                        .and_then(Value::as_str)
                        .filter(|u| is_http(u))?;
                    let w = s.get("width").and_then(as_i64).unwrap_or(0);
                    let h = s.get("height").and_then(as_i64).unwrap_or(0);
                    Some((w.saturating_mul(h), url))
                })
                .fold(None, |best: Option<(i64, &str)>, cur| match best {
                    Some(b) if b.0 >= cur.0 => Some(b),
                    _ => Some(cur),
                });
            match best {
                Some((_, url)) => RemoteFile {
                    name: format!("{base}.jpg"),
                    mime_type: "image/jpeg".to_owned(),
                    size: None,
                    url: url.to_owned(),
                    download: true,
                },
                None => reference(format!("{base}.jpg")),
            }
        }
        "doc" => {
            let ext = str_of(b, "ext").unwrap_or("");
            let name = str_of(b, "title").map_or_else(
                || {
                    if ext.is_empty() {
                        base.clone()
                    } else {
                        format!("{base}.{ext}")
                    }
                },
                str::to_owned,
            );
            let size = int_of(b, "size").and_then(|s| u64::try_from(s).ok());
            match str_of(b, "url").filter(|u| is_http(u)) {
                Some(url) => RemoteFile {
                    name,
                    mime_type: mime_of_ext(ext).to_owned(),
                    size,
                    url: url.to_owned(),
                    download: true,
                },
                None => RemoteFile {
                    size,
                    ..reference(name)
                },
            }
        }
        "audio_message" => {
            let (url, ext, mime) = match (str_of(b, "link_ogg"), str_of(b, "link_mp3")) {
                (Some(u), _) if is_http(u) => (u, "ogg", "audio/ogg"),
                (_, Some(u)) if is_http(u) => (u, "mp3", "audio/mpeg"),
                _ => return reference(format!("{base}.ogg")),
            };
            RemoteFile {
                name: format!("{base}.{ext}"),
                mime_type: mime.to_owned(),
                size: None,
                url: url.to_owned(),
                download: true,
            }
        }
        _ => reference(base),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn not_ours(_: i64) -> OurSend {
        OurSend::No
    }

    fn env(v: Value) -> Envelope {
        envelope_from_value(v).unwrap()
    }

    #[test]
    fn message_new_maps_to_a_message_keyed_by_peer_and_cmid() {
        let e = env(json!({
            "type": "message_new", "group_id": 1, "event_id": "e1", "v": "5.199",
            "secret": "s3cret",
            "object": {"message": {"date": 1_700_000_000, "from_id": 42, "id": 0,
                "peer_id": 2_000_000_001_i64, "text": "hi", "conversation_message_id": 7,
                "reply_message": {"conversation_message_id": 5, "from_id": 43}},
                "client_info": {}}
        }));
        assert_eq!(e.secret.as_deref(), Some("s3cret"));
        assert!(!e.raw.to_string().contains("s3cret"));
        let m = map_event(&e, &not_ours).unwrap();
        assert_eq!(m.external_id, "2000000001:7");
        assert_eq!(m.occurred_at.unwrap().unix_timestamp(), 1_700_000_000);
        let InboundKind::Message(msg) = m.kind else {
            panic!("{:?}", m.kind)
        };
        assert_eq!(msg.thread_id, "2000000001");
        assert_eq!(msg.text.as_deref(), Some("hi"));
        assert_eq!(msg.sender.identities[0].kind, IdentityKind::Vk);
        assert_eq!(msg.sender.identities[0].value, "42");
        assert_eq!(msg.reply_to_external_id.as_deref(), Some("2000000001:5"));
    }

    #[test]
    fn edit_and_reply_and_unknown() {
        let edit = env(json!({"type": "message_edit", "event_id": "e2", "object":
            {"date": 10, "update_time": 20, "from_id": 42, "peer_id": 42, "text": "fixed",
             "conversation_message_id": 3}}));
        let m = map_event(&edit, &not_ours).unwrap();
        assert_eq!(m.external_id, "42:3:edit:20");
        let InboundKind::Message(msg) = m.kind else {
            panic!()
        };
        assert_eq!(msg.edit_of.as_deref(), Some("42:3"));

        let reply = env(json!({"type": "message_reply", "event_id": "e3", "object":
            {"date": 10, "from_id": -1, "id": 99, "peer_id": 42, "text": "ours",
             "conversation_message_id": 4, "random_id": 555}}));
        let m = map_event(&reply, &not_ours).unwrap();
        assert_eq!(m.external_id, "event:e3");
        assert!(matches!(m.kind, InboundKind::Unknown { .. }));
        let m = map_event(&reply, &|r| {
            if r == 555 {
                OurSend::Acked("42:id:99".into())
            } else {
                OurSend::No
            }
        })
        .unwrap();
        assert_eq!(m.external_id, "42:id:99:delivered");
        let m = map_event(&reply, &|_| OurSend::Pending).unwrap();
        assert_eq!(m.external_id, "42:id:99:delivered");
        assert_eq!(
            m.kind,
            InboundKind::DeliveryStatus {
                message_external_id: "42:id:99".into(),
                status: DeliveryState::Delivered
            }
        );

        let other = env(json!({"type": "group_join", "event_id": "e4", "object": {}}));
        let m = map_event(&other, &not_ours).unwrap();
        assert_eq!(m.external_id, "event:e4");
        let no_id = env(json!({"type": "group_join", "object": {}}));
        assert_eq!(
            map_event(&no_id, &not_ours).unwrap_err(),
            ParseError::Missing("event_id")
        );
    }

    #[test]
    fn replies_to_our_messages_and_edits_of_ours() {
        let e = env(
            json!({"type": "message_new", "event_id": "e5", "object": {"message":
            {"date": 1, "from_id": 42, "id": 120, "peer_id": 42, "text": "thanks",
             "conversation_message_id": 9,
             "reply_message": {"id": 118, "from_id": -1, "conversation_message_id": 8}}}}),
        );
        let InboundKind::Message(msg) = map_event(&e, &not_ours).unwrap().kind else {
            panic!()
        };
        assert_eq!(msg.reply_to_external_id.as_deref(), Some("42:id:118"));
        let e = env(json!({"type": "message_edit", "event_id": "e6", "object":
            {"date": 1, "from_id": -1, "id": 118, "out": 1, "peer_id": 42,
             "conversation_message_id": 8, "text": "edited by an admin"}}));
        let m = map_event(&e, &not_ours).unwrap();
        assert_eq!(m.external_id, "event:e6");
        assert!(matches!(m.kind, InboundKind::Unknown { .. }));
    }

    #[test]
    fn bad_input_gives_specific_errors() {
        assert!(matches!(parse_callback(b"{"), Err(ParseError::Json(_))));
        assert_eq!(
            parse_callback(b"[]").unwrap_err(),
            ParseError::NotObject("event")
        );
        assert_eq!(
            parse_callback(b"{}").unwrap_err(),
            ParseError::Missing("type")
        );
        assert!(parse_callback(br#"{"type":"x","group_id":-1}"#).is_err());
        let e = env(json!({"type": "message_new", "object": {"message": {"peer_id": 1}}}));
        assert_eq!(
            map_event(&e, &not_ours).unwrap_err(),
            ParseError::Missing("conversation_message_id")
        );
        let e = env(json!({"type": "message_new", "object": {"message": {"peer_id": "x"}}}));
        assert!(matches!(
            map_event(&e, &not_ours).unwrap_err(),
            ParseError::Invalid { .. }
        ));
    }

    #[test]
    fn attachments_pick_the_right_url() {
        let photo = json!({"type": "photo", "photo": {"id": 5, "owner_id": 42, "sizes": [
            {"type": "s", "url": "https://x/s.jpg", "width": 75, "height": 50},
            {"type": "w", "url": "https://x/w.jpg", "width": 1280, "height": 960},
            {"type": "m", "url": "https://x/m.jpg", "width": 130, "height": 100}]}});
        let f = remote_file(&photo);
        assert_eq!(
            (f.url.as_str(), f.name.as_str()),
            ("https://x/w.jpg", "photo42_5.jpg")
        );
        let doc = json!({"type": "doc", "doc": {"id": 1, "owner_id": 2, "title": "a.pdf",
            "ext": "pdf", "size": 10, "url": "https://x/d"}});
        let f = remote_file(&doc);
        assert_eq!(
            (f.mime_type.as_str(), f.size),
            ("application/pdf", Some(10))
        );
        let voice = json!({"type": "audio_message", "audio_message": {"id": 1, "owner_id": 2,
            "link_mp3": "https://x/a.mp3", "link_ogg": "https://x/a.ogg"}});
        assert_eq!(remote_file(&voice).url, "https://x/a.ogg");
        let sticker = json!({"type": "sticker", "sticker": {"sticker_id": 9}});
        let f = remote_file(&sticker);
        assert_eq!((f.url.as_str(), f.download), ("vk:sticker", false));
        assert!(!remote_file(&json!(3)).download);
    }

    #[test]
    fn long_poll_answers() {
        assert_eq!(
            parse_long_poll(br#"{"failed":1,"ts":"30"}"#).unwrap(),
            LongPollAnswer::Failed {
                code: 1,
                ts: Some("30".into())
            }
        );
        assert_eq!(
            parse_long_poll(br#"{"ts":"31","updates":[]}"#).unwrap(),
            LongPollAnswer::Updates {
                ts: "31".into(),
                updates: vec![]
            }
        );
        assert_eq!(
            parse_long_poll(br#"{"updates":[]}"#).unwrap_err(),
            ParseError::Missing("ts")
        );
        assert!(parse_long_poll(b"nope").is_err());
    }
}
