//! The webhook side of the Cloud API, pure: the `X-Hub-Signature-256` check and the
//! mapping of a notification (`entry[].changes[]`) to events. No I/O, no panic on any
//! input. Media are only referenced here (`wa-media:{id}`); fetching them is the
//! handler's job.

use hmac::{Hmac, Mac};
use kommutator_sdk::{
    normalize_external_id, Attachment, DeliveryState, IdentityKind, InboundKind, InboundMessage,
    Party, PartyIdentity,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// The largest webhook body read, in bytes (3 MiB); a larger one is answered 413.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// The prefix of the reference kept for a medium that was not stored:
/// `wa-media:{media id}`.
pub const MEDIA_REF_PREFIX: &str = "wa-media:";

/// Why a notification is not valid. The message is safe to send back with a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// Why a request's `X-Hub-Signature-256` was refused (answered 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header is absent.
    #[error("missing header X-Hub-Signature-256")]
    Missing,
    /// The header is not `sha256=` and 64 hex digits.
    #[error("header X-Hub-Signature-256 is not `sha256=<hex>`")]
    Malformed,
    /// The HMAC does not match the body.
    #[error("X-Hub-Signature-256 does not match the body")]
    Mismatch,
}

/// `sha256=` and the hex HMAC-SHA256 of `body` keyed with the app secret: the value Meta
/// puts in `X-Hub-Signature-256`.
pub fn hub_signature(app_secret: &[u8], body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(app_secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks `X-Hub-Signature-256` (`header`) against the raw `body`, in constant time.
///
/// # Errors
///
/// [`SignatureError`] saying whether the header is missing, malformed or wrong.
pub fn verify_signature(
    app_secret: &[u8],
    header: Option<&str>,
    body: &[u8],
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?.trim();
    let hex_sig = header
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    if hex_sig.len() != 64 {
        return Err(SignatureError::Malformed);
    }
    let expected = hex::decode(hex_sig).map_err(|_| SignatureError::Malformed)?;
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(app_secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// A medium of a received message, to be fetched by id through the Graph API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRef {
    /// The media id (`image.id`, …).
    pub id: String,
    /// The message type it came in (`image`, `video`, `audio`, `voice`, `document`,
    /// `sticker`).
    pub kind: String,
}

/// One event of a notification: everything of an `InboundEvent` but the connector id.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    /// The idempotency key: the wamid for a message, `{wamid}:{status}` for a status,
    /// `change:{hash}` for a change without an id.
    pub external_id: String,
    /// The channel's time (`timestamp`), when given.
    pub occurred_at: Option<OffsetDateTime>,
    /// What happened. A message with a medium carries a placeholder attachment whose
    /// `url_or_ref` is `wa-media:{id}`.
    pub kind: InboundKind,
    /// The item as received, with the `metadata` (and `contacts`) of its change.
    pub raw: Value,
    /// The medium to fetch and store in place of the placeholder attachment.
    pub media: Option<MediaRef>,
}

impl Mapped {
    fn unknown(external_id: String, description: String, raw: Value) -> Self {
        Self {
            external_id,
            occurred_at: None,
            kind: InboundKind::Unknown { description },
            raw,
            media: None,
        }
    }
}

/// What a notification holds for this instance.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Notification {
    /// The events, in the order of the payload.
    pub events: Vec<Mapped>,
    /// The `phone_number_id`s of changes skipped because they are for another number.
    pub ignored: Vec<String>,
}

/// Parses a webhook body and maps every change for `phone_number_id` (messages, statuses)
/// to events; changes of other fields become `Unknown`, changes for another phone number
/// are skipped and listed in [`Notification::ignored`].
///
/// # Errors
///
/// [`ParseError`] when the body is not JSON, not a notification (`entry` not an array),
/// or an item lacks what identifies it (`id`, `from`, `status`, `metadata`).
pub fn parse_webhook(body: &[u8], phone_number_id: &str) -> Result<Notification, ParseError> {
    let root: Value = serde_json::from_slice(body)
        .map_err(|e| ParseError(format!("body is not valid JSON: {e}")))?;
    let Some(obj) = root.as_object() else {
        return Err(ParseError("body is not a JSON object".to_owned()));
    };
    let mut out = Notification::default();
    let object = obj.get("object").and_then(Value::as_str).unwrap_or("");
    if object != "whatsapp_business_account" {
        out.events.push(Mapped::unknown(
            format!("webhook:{}", digest(&root)),
            format!("webhook for object {:?}", clip(object)),
            root.clone(),
        ));
        return Ok(out);
    }
    let entries = obj
        .get("entry")
        .and_then(Value::as_array)
        .ok_or_else(|| ParseError("`entry` is missing or not an array".to_owned()))?;
    for (i, entry) in entries.iter().enumerate() {
        let changes = entry
            .get("changes")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                ParseError(format!("`entry[{i}].changes` is missing or not an array"))
            })?;
        for (j, change) in changes.iter().enumerate() {
            let at = format!("entry[{i}].changes[{j}]");
            map_change(change, &at, phone_number_id, &mut out)?;
        }
    }
    Ok(out)
}

fn map_change(
    change: &Value,
    at: &str,
    phone_number_id: &str,
    out: &mut Notification,
) -> Result<(), ParseError> {
    let field = change
        .get("field")
        .and_then(Value::as_str)
        .ok_or_else(|| ParseError(format!("`{at}.field` is missing or not a string")))?;
    if field != "messages" {
        out.events.push(Mapped::unknown(
            format!("change:{}", digest(change)),
            format!("whatsapp change {:?}", clip(field)),
            change.clone(),
        ));
        return Ok(());
    }
    let value = change
        .get("value")
        .and_then(Value::as_object)
        .ok_or_else(|| ParseError(format!("`{at}.value` is missing or not an object")))?;
    let metadata = value.get("metadata").cloned().unwrap_or(Value::Null);
    let number = metadata
        .get("phone_number_id")
        .and_then(text_of)
        .ok_or_else(|| ParseError(format!("`{at}.value.metadata.phone_number_id` is missing")))?;
    if number != phone_number_id {
        out.ignored.push(clip(&number).to_owned());
        return Ok(());
    }
    let contacts = value.get("contacts").cloned().unwrap_or(Value::Null);
    let mut seen = false;
    if let Some(messages) = value.get("messages") {
        let messages = messages
            .as_array()
            .ok_or_else(|| ParseError(format!("`{at}.value.messages` is not an array")))?;
        for (k, msg) in messages.iter().enumerate() {
            let at = format!("{at}.value.messages[{k}]");
            out.events
                .push(map_message(msg, &at, &metadata, &contacts)?);
            seen = true;
        }
    }
    if let Some(statuses) = value.get("statuses") {
        let statuses = statuses
            .as_array()
            .ok_or_else(|| ParseError(format!("`{at}.value.statuses` is not an array")))?;
        for (k, st) in statuses.iter().enumerate() {
            let at = format!("{at}.value.statuses[{k}]");
            out.events.push(map_status(st, &at, &metadata)?);
            seen = true;
        }
    }
    if !seen {
        // Errors of the number (`value.errors`) or an empty change: kept for audit.
        out.events.push(Mapped::unknown(
            format!("change:{}", digest(change)),
            "whatsapp messages change without messages or statuses".to_owned(),
            change.clone(),
        ));
    }
    Ok(())
}

fn map_message(
    msg: &Value,
    at: &str,
    metadata: &Value,
    contacts: &Value,
) -> Result<Mapped, ParseError> {
    let id = required_id(msg, "id", at)?;
    let from = required_id(msg, "from", at)?;
    let kind = msg
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| ParseError(format!("`{at}.type` is missing or not a string")))?;
    let occurred_at = msg.get("timestamp").and_then(parse_timestamp);
    let raw = json!({
        "field": "messages",
        "metadata": metadata,
        "contacts": contacts,
        "message": msg,
    });
    let unknown = |description: String| Mapped {
        external_id: id.clone(),
        occurred_at,
        kind: InboundKind::Unknown { description },
        raw: raw.clone(),
        media: None,
    };

    let mut media = None;
    let mut attachments = Vec::new();
    let text = match kind {
        "text" => msg.pointer("/text/body").and_then(text_of),
        "image" | "video" | "audio" | "voice" | "document" | "sticker" => {
            let Some(m) = msg.get(kind).filter(|m| m.is_object()) else {
                return Ok(unknown(format!("whatsapp {kind} message without `{kind}`")));
            };
            let caption = m.get("caption").and_then(text_of);
            if let Some(media_id) = m
                .get("id")
                .and_then(text_of)
                .and_then(|i| normalize_external_id(&i).ok())
            {
                let mime_type = m
                    .get("mime_type")
                    .and_then(text_of)
                    .map(|t| clip(&t).to_owned())
                    .unwrap_or_else(|| "application/octet-stream".to_owned());
                let name = m
                    .get("filename")
                    .and_then(text_of)
                    .map(|f| clip(&f).to_owned())
                    .unwrap_or_else(|| default_file_name(kind, &media_id, &mime_type));
                attachments.push(Attachment {
                    name,
                    mime_type,
                    size: None,
                    url_or_ref: format!("{MEDIA_REF_PREFIX}{media_id}"),
                });
                media = Some(MediaRef {
                    id: media_id,
                    kind: kind.to_owned(),
                });
            }
            caption
        }
        "location" => {
            let loc = msg.get("location").unwrap_or(&Value::Null);
            let (Some(lat), Some(lon)) = (
                loc.get("latitude").and_then(number_text),
                loc.get("longitude").and_then(number_text),
            ) else {
                return Ok(unknown(
                    "whatsapp location without latitude and longitude".to_owned(),
                ));
            };
            let place: Vec<String> = ["name", "address"]
                .iter()
                .filter_map(|k| loc.get(*k).and_then(text_of))
                .collect();
            Some(if place.is_empty() {
                format!("📍 ({lat}, {lon})")
            } else {
                format!("📍 {} ({lat}, {lon})", place.join(", "))
            })
        }
        "contacts" => {
            let lines: Vec<String> = msg
                .get("contacts")
                .and_then(Value::as_array)
                .map(|cs| cs.iter().filter_map(contact_line).collect())
                .unwrap_or_default();
            if lines.is_empty() {
                return Ok(unknown(
                    "whatsapp contacts message without contacts".to_owned(),
                ));
            }
            Some(lines.join("\n"))
        }
        "interactive" => {
            let sub = msg
                .pointer("/interactive/type")
                .and_then(Value::as_str)
                .unwrap_or("");
            match sub {
                "button_reply" | "list_reply" => {
                    let title = msg
                        .get("interactive")
                        .and_then(|i| i.get(sub))
                        .and_then(|r| r.get("title"))
                        .and_then(text_of);
                    if title.is_none() {
                        return Ok(unknown(format!("whatsapp {sub} without a title")));
                    }
                    title
                }
                other => {
                    return Ok(unknown(format!(
                        "whatsapp interactive message {:?}",
                        clip(other)
                    )))
                }
            }
        }
        "button" => {
            let t = msg.pointer("/button/text").and_then(text_of);
            if t.is_none() {
                return Ok(unknown("whatsapp button reply without text".to_owned()));
            }
            t
        }
        other => return Ok(unknown(format!("whatsapp message type {:?}", clip(other)))),
    };

    let mut sender = Party::from_identity(PartyIdentity::new(IdentityKind::Whatsapp, &from));
    if !from.is_empty() && from.bytes().all(|b| b.is_ascii_digit()) {
        sender
            .identities
            .push(PartyIdentity::new(IdentityKind::Phone, format!("+{from}")));
    }
    sender.display_name = display_name(contacts, &from);
    let mut message = InboundMessage::text(from, sender, text);
    message.attachments = attachments;
    message.reply_to_external_id = msg
        .pointer("/context/id")
        .and_then(text_of)
        .and_then(|c| normalize_external_id(&c).ok());
    Ok(Mapped {
        external_id: id,
        occurred_at,
        kind: InboundKind::Message(message),
        raw,
        media,
    })
}

fn map_status(st: &Value, at: &str, metadata: &Value) -> Result<Mapped, ParseError> {
    let id = required_id(st, "id", at)?;
    let status = st
        .get("status")
        .and_then(Value::as_str)
        .ok_or_else(|| ParseError(format!("`{at}.status` is missing or not a string")))?;
    let external_id = normalize_external_id(&format!("{id}:{status}"))
        .map_err(|e| ParseError(format!("`{at}`: {e}")))?;
    let state = match status {
        "sent" => Some(DeliveryState::Sent),
        "delivered" => Some(DeliveryState::Delivered),
        "read" => Some(DeliveryState::Read),
        "failed" => Some(DeliveryState::Failed {
            reason: failure_reason(st.pointer("/errors/0")),
        }),
        _ => None,
    };
    let kind = match state {
        Some(status) => InboundKind::DeliveryStatus {
            message_external_id: id,
            status,
        },
        None => InboundKind::Unknown {
            description: format!("whatsapp status {:?}", clip(status)),
        },
    };
    Ok(Mapped {
        external_id,
        occurred_at: st.get("timestamp").and_then(parse_timestamp),
        kind,
        raw: json!({"field": "messages", "metadata": metadata, "status": st}),
        media: None,
    })
}

/// The operator-facing reason of a failed status, from `errors[0]`.
fn failure_reason(err: Option<&Value>) -> String {
    let Some(err) = err else {
        return "delivery failed".to_owned();
    };
    let title = err.get("title").and_then(text_of);
    let message = err.get("message").and_then(text_of);
    let details = err.pointer("/error_data/details").and_then(text_of);
    let mut reason = match (title, message) {
        (Some(t), Some(m)) if t != m => format!("{t}: {m}"),
        (Some(t), _) => t,
        (None, Some(m)) => m,
        (None, None) => "delivery failed".to_owned(),
    };
    if let Some(d) = details {
        if !reason.contains(&d) {
            reason = format!("{reason} ({d})");
        }
    }
    if let Some(code) = err.get("code").and_then(text_of) {
        reason = format!("{reason} [code {code}]");
    }
    reason
}

/// One line of a shared contact card: `👤 name: phone, phone`.
fn contact_line(c: &Value) -> Option<String> {
    let name = c
        .pointer("/name/formatted_name")
        .and_then(text_of)
        .or_else(|| {
            let parts: Vec<String> = ["first_name", "last_name"]
                .iter()
                .filter_map(|k| c.get("name").and_then(|n| n.get(*k)).and_then(text_of))
                .collect();
            (!parts.is_empty()).then(|| parts.join(" "))
        });
    let phones: Vec<String> = c
        .get("phones")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p.get("phone").and_then(text_of))
                .collect()
        })
        .unwrap_or_default();
    match (name, phones.is_empty()) {
        (Some(n), false) => Some(format!("👤 {n}: {}", phones.join(", "))),
        (Some(n), true) => Some(format!("👤 {n}")),
        (None, false) => Some(format!("👤 {}", phones.join(", "))),
        (None, true) => None,
    }
}

/// `contacts[].profile.name` of the sender (or of the only contact).
fn display_name(contacts: &Value, wa_id: &str) -> Option<String> {
    let list = contacts.as_array()?;
    let name_of = |c: &Value| c.pointer("/profile/name").and_then(text_of);
    list.iter()
        .find(|c| c.get("wa_id").and_then(text_of).as_deref() == Some(wa_id))
        .and_then(name_of)
        .or_else(|| match list.as_slice() {
            [only] => name_of(only),
            _ => None,
        })
}

fn required_id(v: &Value, key: &str, at: &str) -> Result<String, ParseError> {
    let raw = v
        .get(key)
        .and_then(text_of)
        .ok_or_else(|| ParseError(format!("`{at}.{key}` is missing or empty")))?;
    normalize_external_id(&raw).map_err(|e| ParseError(format!("`{at}.{key}`: {e}")))
}

/// A string (trimmed, non-empty) or a number, as text.
fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => {
            let t = s.trim();
            (!t.is_empty()).then(|| t.to_owned())
        }
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A coordinate as written on the wire (number or numeric string).
fn number_text(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => s.trim().parse::<f64>().ok().map(|_| s.trim().to_owned()),
        _ => None,
    }
}

/// Unix seconds, as a string (what Meta sends) or a number.
fn parse_timestamp(v: &Value) -> Option<OffsetDateTime> {
    let secs = match v {
        Value::String(s) => s.trim().parse::<i64>().ok()?,
        Value::Number(n) => n.as_i64()?,
        _ => return None,
    };
    OffsetDateTime::from_unix_timestamp(secs).ok()
}

/// At most 128 bytes of `s`, cut on a character boundary: wire strings in descriptions.
fn clip(s: &str) -> &str {
    let mut end = s.len().min(128);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or("")
}

/// 32 hex digits of the SHA-256 of the value's JSON (serde_json sorts object keys, so the
/// same content always gives the same key).
fn digest(v: &Value) -> String {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    let mut h = hex::encode(Sha256::digest(&bytes));
    h.truncate(32);
    h
}

/// `image-{id}.jpg` and the like, for media sent without a file name.
fn default_file_name(kind: &str, id: &str, mime: &str) -> String {
    let essence = mime.split(';').next().unwrap_or("").trim();
    let ext = match essence {
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/webp" => "webp",
        "video/mp4" => "mp4",
        "video/3gpp" => "3gp",
        "audio/ogg" => "ogg",
        "audio/mpeg" => "mp3",
        "audio/mp4" => "m4a",
        "audio/aac" => "aac",
        "audio/amr" => "amr",
        "application/pdf" => "pdf",
        "text/plain" => "txt",
        _ => "bin",
    };
    let safe_id: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(64)
        .collect();
    format!("{kind}-{safe_id}.{ext}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const PNID: &str = "106540352242922";

    fn wrap(value: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}]
        }))
        .unwrap()
    }

    fn value_with(messages: Value) -> Value {
        json!({
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550783881", "phone_number_id": PNID},
            "contacts": [{"profile": {"name": "Kerry Fisher"}, "wa_id": "16315551234"}],
            "messages": messages
        })
    }

    fn one(value: Value) -> Mapped {
        let n = parse_webhook(&wrap(value), PNID).unwrap();
        assert_eq!(n.events.len(), 1, "{n:?}");
        n.events.into_iter().next().unwrap()
    }

    fn message(m: &Mapped) -> &InboundMessage {
        match &m.kind {
            InboundKind::Message(msg) => msg,
            other => panic!("not a message: {other:?}"),
        }
    }

    #[test]
    fn documented_signature_vector() {
        let expected = "0329a06b62cd16b33eb6792be8c60b158d89a2ee3a876fce9a881ebb488c0914";
        assert_eq!(
            hub_signature(b"secret", b"test"),
            format!("sha256={expected}")
        );
        verify_signature(b"secret", Some(&format!("sha256={expected}")), b"test").unwrap();
        let upper = format!("sha256={}", expected.to_uppercase());
        verify_signature(b"secret", Some(&upper), b"test").unwrap();
    }

    #[test]
    fn signature_errors() {
        let good = hub_signature(b"secret", b"test");
        assert_eq!(
            verify_signature(b"secret", None, b"test"),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_signature(b"other", Some(&good), b"test"),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(b"secret", Some(&good), b"test2"),
            Err(SignatureError::Mismatch)
        );
        for bad in [
            "",
            "sha1=abc",
            "sha256=",
            "sha256=zz",
            &good[7..],
            "sha256=0329",
        ] {
            assert_eq!(
                verify_signature(b"secret", Some(bad), b"test"),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn text_message() {
        let m = one(value_with(json!([{
            "from": "16315551234", "id": "wamid.HBgLMTYzMTU1NTEyMzQVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
            "timestamp": "1683229471", "type": "text", "text": {"body": "Hello"}
        }])));
        assert_eq!(
            m.external_id,
            "wamid.HBgLMTYzMTU1NTEyMzQVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="
        );
        assert_eq!(m.occurred_at.unwrap().unix_timestamp(), 1_683_229_471);
        let msg = message(&m);
        assert_eq!(msg.thread_id, "16315551234");
        assert_eq!(msg.text.as_deref(), Some("Hello"));
        assert_eq!(msg.sender.display_name.as_deref(), Some("Kerry Fisher"));
        assert_eq!(
            msg.sender.identities,
            vec![
                PartyIdentity::new(IdentityKind::Whatsapp, "16315551234"),
                PartyIdentity::new(IdentityKind::Phone, "+16315551234"),
            ]
        );
        assert_eq!(m.raw["message"]["text"]["body"], "Hello");
        assert_eq!(m.raw["metadata"]["phone_number_id"], PNID);
    }

    #[test]
    fn reply_context_and_media() {
        let m = one(value_with(json!([{
            "from": "16315551234", "id": "wamid.B", "timestamp": 1683229471, "type": "document",
            "context": {"from": "15550783881", "id": "wamid.A"},
            "document": {"caption": "the offer", "filename": "offer.pdf",
                         "mime_type": "application/pdf", "sha256": "x", "id": "2154863021"}
        }])));
        let msg = message(&m);
        assert_eq!(msg.reply_to_external_id.as_deref(), Some("wamid.A"));
        assert_eq!(msg.text.as_deref(), Some("the offer"));
        assert_eq!(
            msg.attachments,
            vec![Attachment {
                name: "offer.pdf".to_owned(),
                mime_type: "application/pdf".to_owned(),
                size: None,
                url_or_ref: "wa-media:2154863021".to_owned(),
            }]
        );
        assert_eq!(
            m.media,
            Some(MediaRef {
                id: "2154863021".to_owned(),
                kind: "document".to_owned()
            })
        );
        let m = one(value_with(json!([{
            "from": "16315551234", "id": "wamid.C", "timestamp": "1", "type": "audio",
            "audio": {"mime_type": "audio/ogg; codecs=opus", "id": "77", "voice": true}
        }])));
        assert_eq!(message(&m).attachments[0].name, "audio-77.ogg");
        assert_eq!(message(&m).text, None);
    }

    #[test]
    fn location_contacts_interactive_button() {
        let m = one(value_with(json!([{
            "from": "16315551234", "id": "wamid.L", "timestamp": "1", "type": "location",
            "location": {"latitude": 38.9806263495, "longitude": -131.9428612257,
                         "name": "Philz Coffee", "address": "101 Forest Ave, Palo Alto, CA 94301"}
        }])));
        assert_eq!(
            message(&m).text.as_deref(),
            Some("📍 Philz Coffee, 101 Forest Ave, Palo Alto, CA 94301 (38.9806263495, -131.9428612257)")
        );
        let m = one(value_with(json!([{
            "from": "16315551234", "id": "wamid.L2", "timestamp": "1", "type": "location",
            "location": {"latitude": 1.5, "longitude": 2}
        }])));
        assert_eq!(message(&m).text.as_deref(), Some("📍 (1.5, 2)"));

        let m = one(value_with(json!([{
            "from": "16315551234", "id": "wamid.K", "timestamp": "1", "type": "contacts",
            "contacts": [
                {"name": {"formatted_name": "John Smith", "first_name": "John"},
                 "phones": [{"phone": "+1 (940) 555-1234", "type": "HOME"}, {"phone": "+1 940 555 9999", "wa_id": "19405559999"}]},
                {"name": {"first_name": "Ann", "last_name": "Lee"}}
            ]
        }])));
        assert_eq!(
            message(&m).text.as_deref(),
            Some("👤 John Smith: +1 (940) 555-1234, +1 940 555 9999\n👤 Ann Lee")
        );

        for (sub, title) in [("button_reply", "Yes"), ("list_reply", "Tuesday")] {
            let m = one(value_with(json!([{
                "from": "16315551234", "id": "wamid.I", "timestamp": "1", "type": "interactive",
                "interactive": {"type": sub, sub: {"id": "opt-1", "title": title}}
            }])));
            assert_eq!(message(&m).text.as_deref(), Some(title));
            assert_eq!(m.raw["message"]["interactive"][sub]["id"], "opt-1");
        }
        let m = one(value_with(json!([{
            "from": "16315551234", "id": "wamid.Bt", "timestamp": "1", "type": "button",
            "button": {"payload": "STOP", "text": "Stop promotions"}
        }])));
        assert_eq!(message(&m).text.as_deref(), Some("Stop promotions"));
    }

    #[test]
    fn unmapped_messages_are_unknown() {
        for (msg, description) in [
            (
                json!({"from": "1", "id": "wamid.R", "timestamp": "1", "type": "reaction",
                       "reaction": {"message_id": "wamid.X", "emoji": "👍"}}),
                "whatsapp message type \"reaction\"",
            ),
            (
                json!({"from": "1", "id": "wamid.U", "timestamp": "1", "type": "unsupported",
                       "errors": [{"code": 131051, "title": "Message type unknown"}]}),
                "whatsapp message type \"unsupported\"",
            ),
            (
                json!({"from": "1", "id": "wamid.N", "timestamp": "1", "type": "interactive",
                       "interactive": {"type": "nfm_reply", "nfm_reply": {}}}),
                "whatsapp interactive message \"nfm_reply\"",
            ),
            (
                json!({"from": "1", "id": "wamid.I", "timestamp": "1", "type": "image"}),
                "whatsapp image message without `image`",
            ),
        ] {
            let m = one(value_with(json!([msg])));
            assert_eq!(
                m.kind,
                InboundKind::Unknown {
                    description: description.to_owned()
                }
            );
            assert_eq!(m.external_id, msg["id"]);
        }
    }

    #[test]
    fn statuses() {
        let n = parse_webhook(
            &wrap(json!({
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550783881", "phone_number_id": PNID},
                "statuses": [
                    {"id": "wamid.O", "status": "sent", "timestamp": "10", "recipient_id": "1"},
                    {"id": "wamid.O", "status": "read", "timestamp": "12", "recipient_id": "1"},
                    {"id": "wamid.O", "status": "failed", "timestamp": "13", "recipient_id": "1",
                     "errors": [{"code": 131047, "title": "Re-engagement message",
                                 "message": "Re-engagement message",
                                 "error_data": {"details": "More than 24 hours have passed"}}]},
                    {"id": "wamid.O", "status": "deleted", "timestamp": "14"}
                ]
            })),
            PNID,
        )
        .unwrap();
        let keys: Vec<&str> = n.events.iter().map(|e| e.external_id.as_str()).collect();
        assert_eq!(
            keys,
            [
                "wamid.O:sent",
                "wamid.O:read",
                "wamid.O:failed",
                "wamid.O:deleted"
            ]
        );
        assert_eq!(
            n.events[2].kind,
            InboundKind::DeliveryStatus {
                message_external_id: "wamid.O".to_owned(),
                status: DeliveryState::Failed {
                    reason: "Re-engagement message (More than 24 hours have passed) [code 131047]"
                        .to_owned()
                }
            }
        );
        assert!(matches!(n.events[3].kind, InboundKind::Unknown { .. }));
        assert_eq!(failure_reason(None), "delivery failed");
    }

    #[test]
    fn other_numbers_and_fields() {
        let mut v = value_with(
            json!([{"from": "1", "id": "wamid.X", "type": "text", "text": {"body": "x"}}]),
        );
        v["metadata"]["phone_number_id"] = json!("999");
        let n = parse_webhook(&wrap(v), PNID).unwrap();
        assert!(n.events.is_empty());
        assert_eq!(n.ignored, ["999"]);

        let body = serde_json::to_vec(&json!({
            "object": "whatsapp_business_account",
            "entry": [{"id": "1", "changes": [{"field": "account_update", "value": {"event": "VERIFIED_ACCOUNT"}}]}]
        }))
        .unwrap();
        let a = parse_webhook(&body, PNID).unwrap();
        let b = parse_webhook(&body, PNID).unwrap();
        assert_eq!(a, b, "the key of a change without id is stable");
        assert!(a.events[0].external_id.starts_with("change:"));
        assert_eq!(
            a.events[0].kind,
            InboundKind::Unknown {
                description: "whatsapp change \"account_update\"".to_owned()
            }
        );
        let page = parse_webhook(br#"{"object":"page","entry":[]}"#, PNID).unwrap();
        assert!(page.events[0].external_id.starts_with("webhook:"));
    }

    #[test]
    fn invalid_notifications() {
        for (body, message) in [
            (&b"{"[..], "body is not valid JSON"),
            (b"[]", "body is not a JSON object"),
            (br#"{"object":"whatsapp_business_account"}"#, "`entry` is missing or not an array"),
            (br#"{"object":"whatsapp_business_account","entry":[{}]}"#, "`entry[0].changes` is missing"),
            (br#"{"object":"whatsapp_business_account","entry":[{"changes":[{}]}]}"#, "`entry[0].changes[0].field` is missing"),
            (br#"{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{}}]}]}"#, "`entry[0].changes[0].value.metadata.phone_number_id` is missing"),
        ] {
            let err = parse_webhook(body, PNID).unwrap_err();
            assert!(err.0.starts_with(message), "{err}");
        }
        let no_id = wrap(value_with(json!([{"from": "1", "type": "text"}])));
        assert_eq!(
            parse_webhook(&no_id, PNID).unwrap_err().0,
            "`entry[0].changes[0].value.messages[0].id` is missing or empty"
        );
        let no_from = wrap(value_with(
            json!([{"id": "wamid.1", "from": " ", "type": "text"}]),
        ));
        assert!(parse_webhook(&no_from, PNID).is_err());
    }

    #[test]
    fn clip_respects_char_boundaries() {
        let s = "я".repeat(100);
        assert_eq!(clip(&s).len(), 128);
        assert_eq!(clip("ab"), "ab");
    }
}
