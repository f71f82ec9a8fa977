//! Pure mapping of Bot API `Update` objects (as JSON values) to [`InboundEvent`]s.
//!
//! No I/O and no panic on any input: every field is read with `get`/`as_*`. Media are
//! not downloaded here; they come back as [`MediaRef`]s for the I/O layer to resolve.

use kommutator_sdk::{
    normalize_external_id, ConnectorId, IdentityKind, InboundEvent, InboundKind, InboundMessage,
    Party, PartyIdentity,
};
use serde_json::{Map, Value};
use time::OffsetDateTime;

/// Why an update could not be mapped: the input is not a valid Bot API update.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

impl ParseError {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// A file the message carries, to fetch with `getFile` and store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRef {
    /// Telegram's `file_id` (for `getFile` and the fallback reference `tg-file:{file_id}`).
    pub file_id: String,
    /// The file name to store it under.
    pub name: String,
    /// Its MIME type.
    pub mime_type: String,
    /// Its size in bytes, when Telegram says.
    pub size: Option<u64>,
}

/// One update, mapped: the event to hand over (without the attachments of `media` yet)
/// and the files to fetch.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedUpdate {
    /// Telegram's `update_id`: the polling offset and the duplicate filter key.
    pub update_id: i64,
    /// The event, `raw` set to the update.
    pub event: InboundEvent,
    /// Files to download and attach to the message, in order.
    pub media: Vec<MediaRef>,
}

/// The reference kept on an attachment that could not be downloaded.
pub fn file_ref(file_id: &str) -> String {
    format!("tg-file:{file_id}")
}

/// Parses a webhook body: JSON, then [`parse_update`].
///
/// # Errors
///
/// [`ParseError`] when the body is not JSON or not an update.
pub fn parse_update_bytes(
    connector: &ConnectorId,
    body: &[u8],
) -> Result<ParsedUpdate, ParseError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ParseError::new(format!("body is not valid JSON: {e}")))?;
    parse_update(connector, &value)
}

/// Maps one `Update` object.
///
/// - `message` / `edited_message` in a private chat, group or supergroup → a message (an
///   edit has `edit_of` set);
/// - anything else (callback queries, member updates, channel posts, …) and messages
///   with no content we map (service messages, polls, dice…) → [`InboundKind::Unknown`].
///
/// # Errors
///
/// [`ParseError`] when the value is not an object with an integer `update_id`, or a
/// message lacks `message_id`, `date` or `chat.id`.
pub fn parse_update(connector: &ConnectorId, value: &Value) -> Result<ParsedUpdate, ParseError> {
    let obj = value
        .as_object()
        .ok_or_else(|| ParseError::new("update is not a JSON object"))?;
    let update_id = obj
        .get("update_id")
        .and_then(Value::as_i64)
        .ok_or_else(|| ParseError::new("update has no integer `update_id`"))?;
    let unknown = |description: String, occurred_at: OffsetDateTime| ParsedUpdate {
        update_id,
        event: InboundEvent::new(
            connector.clone(),
            format!("update:{update_id}"),
            occurred_at,
            InboundKind::Unknown { description },
        )
        .with_raw(value.clone()),
        media: Vec::new(),
    };

    let (msg, is_edit) = match (obj.get("message"), obj.get("edited_message")) {
        (Some(m), _) => (m, false),
        (None, Some(m)) => (m, true),
        (None, None) => {
            let kind = obj
                .keys()
                .find(|k| k.as_str() != "update_id")
                .map_or("empty", String::as_str);
            let at = first_date(obj).unwrap_or_else(OffsetDateTime::now_utc);
            return Ok(unknown(format!("telegram update {kind:?}"), at));
        }
    };
    let msg = msg
        .as_object()
        .ok_or_else(|| ParseError::new("`message` is not an object"))?;
    let header = MessageHeader::read(msg)?;
    let at = if is_edit {
        match msg.get("edit_date") {
            Some(d) => unix_time(d, "edit_date")?,
            None => header.date,
        }
    } else {
        header.date
    };

    match header.chat_type.as_str() {
        "private" | "group" | "supergroup" => {}
        other => {
            return Ok(unknown(format!("telegram message in a {other:?} chat"), at));
        }
    }
    let Some(content) = Content::read(msg) else {
        let what = SERVICE_KEYS
            .iter()
            .find(|k| msg.contains_key(**k))
            .copied()
            .unwrap_or("unsupported content");
        let prefix = if is_edit { "edited " } else { "" };
        return Ok(unknown(format!("telegram {prefix}message: {what}"), at));
    };

    let chat = header.chat_id;
    let message_key = normalize(&format!("{chat}:{}", header.message_id))?;
    let external_id = if is_edit {
        let edit = msg.get("edit_date").and_then(Value::as_i64).unwrap_or(0);
        normalize(&format!("{message_key}:edit:{edit}"))?
    } else {
        message_key.clone()
    };

    let mut sender = sender_of(msg);
    if let Some(phone) = content.own_phone(msg) {
        sender
            .identities
            .push(PartyIdentity::new(IdentityKind::Phone, phone));
    }
    let mut m = InboundMessage::text(normalize(&chat.to_string())?, sender, content.text);
    m.reply_to_external_id = msg
        .get("reply_to_message")
        .and_then(|r| r.get("message_id"))
        .and_then(Value::as_i64)
        .map(|id| format!("{chat}:{id}"));
    if is_edit {
        m.edit_of = Some(message_key);
    }
    Ok(ParsedUpdate {
        update_id,
        event: InboundEvent::new(connector.clone(), external_id, at, InboundKind::Message(m))
            .with_raw(value.clone()),
        media: content.media,
    })
}

/// Keys of service messages and contents we do not map, to name them in `Unknown`.
const SERVICE_KEYS: &[&str] = &[
    "new_chat_members",
    "left_chat_member",
    "new_chat_title",
    "new_chat_photo",
    "delete_chat_photo",
    "group_chat_created",
    "supergroup_chat_created",
    "migrate_to_chat_id",
    "migrate_from_chat_id",
    "pinned_message",
    "poll",
    "dice",
    "game",
    "invoice",
    "successful_payment",
    "story",
    "paid_media",
];

fn normalize(id: &str) -> Result<String, ParseError> {
    normalize_external_id(id).map_err(|e| ParseError::new(e.to_string()))
}

fn unix_time(v: &Value, field: &str) -> Result<OffsetDateTime, ParseError> {
    v.as_i64()
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
        .ok_or_else(|| ParseError::new(format!("`{field}` is not a unix time")))
}

/// The `date` of the first object inside the update that has one (a callback query's
/// message, a member update), for `occurred_at` of unknown updates.
fn first_date(obj: &Map<String, Value>) -> Option<OffsetDateTime> {
    obj.values().find_map(|v| {
        let d = v
            .get("date")
            .or_else(|| v.get("message").and_then(|m| m.get("date")))?;
        OffsetDateTime::from_unix_timestamp(d.as_i64()?).ok()
    })
}

struct MessageHeader {
    message_id: i64,
    date: OffsetDateTime,
    chat_id: i64,
    chat_type: String,
}

impl MessageHeader {
    fn read(msg: &Map<String, Value>) -> Result<Self, ParseError> {
        let message_id = msg
            .get("message_id")
            .and_then(Value::as_i64)
            .ok_or_else(|| ParseError::new("message has no integer `message_id`"))?;
        let date = unix_time(
            msg.get("date")
                .ok_or_else(|| ParseError::new("message has no `date`"))?,
            "date",
        )?;
        let chat = msg
            .get("chat")
            .and_then(Value::as_object)
            .ok_or_else(|| ParseError::new("message has no `chat` object"))?;
        let chat_id = chat
            .get("id")
            .and_then(Value::as_i64)
            .ok_or_else(|| ParseError::new("message chat has no integer `id`"))?;
        let chat_type = chat
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("private")
            .to_owned();
        Ok(Self {
            message_id,
            date,
            chat_id,
            chat_type,
        })
    }
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// `first_name last_name`, trimmed; `None` when both are empty.
fn full_name(v: &Value) -> Option<String> {
    let first = str_field(v, "first_name").unwrap_or_default();
    let last = str_field(v, "last_name").unwrap_or_default();
    let name = format!("{first} {last}").trim().to_owned();
    (!name.is_empty()).then_some(name)
}

fn sender_of(msg: &Map<String, Value>) -> Party {
    if let Some(from) = msg.get("from") {
        let mut identities = Vec::new();
        if let Some(id) = from.get("id").and_then(Value::as_i64) {
            identities.push(PartyIdentity::new(IdentityKind::Telegram, id.to_string()));
        }
        return Party {
            identities,
            display_name: full_name(from)
                .or_else(|| str_field(from, "username").map(|u| format!("@{u}"))),
        };
    }
    // An anonymous group admin or a channel writing in a group: no user, only a chat.
    Party {
        identities: Vec::new(),
        display_name: msg
            .get("sender_chat")
            .and_then(|c| str_field(c, "title"))
            .map(str::to_owned),
    }
}

/// What a message says and carries.
struct Content {
    text: Option<String>,
    media: Vec<MediaRef>,
    contact: Option<Value>,
}

impl Content {
    /// `None` when the message has nothing we map.
    fn read(msg: &Map<String, Value>) -> Option<Self> {
        let mut text = msg
            .get("text")
            .or_else(|| msg.get("caption"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let mut media = Vec::new();
        let mut contact = None;
        let mut found = text.is_some();

        if let Some(sizes) = msg.get("photo").and_then(Value::as_array) {
            found = true;
            let area = |p: &Value| {
                let w = p.get("width").and_then(Value::as_u64).unwrap_or(0);
                let h = p.get("height").and_then(Value::as_u64).unwrap_or(0);
                let size = p.get("file_size").and_then(Value::as_u64).unwrap_or(0);
                (w.saturating_mul(h), size)
            };
            if let Some(best) = sizes.iter().max_by_key(|p| area(p)) {
                if let Some(m) = media_ref(best, "photo", "jpg", "image/jpeg", false) {
                    media.push(m);
                }
            }
        }
        for (key, ext, mime) in [
            ("document", "bin", "application/octet-stream"),
            ("voice", "ogg", "audio/ogg"),
            ("audio", "mp3", "audio/mpeg"),
            ("video", "mp4", "video/mp4"),
            ("video_note", "mp4", "video/mp4"),
            ("animation", "mp4", "video/mp4"),
        ] {
            // A GIF comes as both `animation` and `document`: take it once.
            if key == "document" && msg.contains_key("animation") {
                continue;
            }
            if let Some(v) = msg.get(key) {
                found = true;
                if let Some(m) = media_ref(v, key, ext, mime, true) {
                    media.push(m);
                }
            }
        }
        if let Some(sticker) = msg.get("sticker") {
            found = true;
            let label = match str_field(sticker, "emoji") {
                Some(e) => format!("[sticker {e}]"),
                None => "[sticker]".to_owned(),
            };
            text = Some(label);
        }
        if let Some(c) = msg.get("contact") {
            found = true;
            let name = full_name(c).unwrap_or_default();
            let phone = str_field(c, "phone_number").unwrap_or_default();
            let parts: Vec<&str> = [name.as_str(), phone]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect();
            text = Some(if parts.is_empty() {
                "[contact]".to_owned()
            } else {
                format!("[contact {}]", parts.join(" "))
            });
            contact = Some(c.clone());
        }
        if let Some(venue) = msg.get("venue") {
            found = true;
            let title = str_field(venue, "title").unwrap_or_default();
            let address = str_field(venue, "address").unwrap_or_default();
            let at = venue.get("location").map(coords).unwrap_or_default();
            text = Some(format!("[venue {title}, {address} ({at})]"));
        } else if let Some(loc) = msg.get("location") {
            found = true;
            text = Some(format!("[location {}]", coords(loc)));
        }
        found.then_some(Self {
            text,
            media,
            contact,
        })
    }

    /// The phone of a contact the sender shared about themselves (`contact.user_id` is
    /// the sender's id): it links the chat to that number.
    fn own_phone(&self, msg: &Map<String, Value>) -> Option<String> {
        let c = self.contact.as_ref()?;
        let from = msg.get("from")?.get("id")?.as_i64()?;
        let owner = c.get("user_id")?.as_i64()?;
        let phone = str_field(c, "phone_number")?.trim();
        (owner == from && !phone.is_empty()).then(|| phone.to_owned())
    }
}

fn coords(loc: &Value) -> String {
    let lat = loc.get("latitude").and_then(Value::as_f64).unwrap_or(0.0);
    let lon = loc.get("longitude").and_then(Value::as_f64).unwrap_or(0.0);
    format!("{lat}, {lon}")
}

/// A [`MediaRef`] from a `PhotoSize`, `Document`, `Voice`, … object.
fn media_ref(
    v: &Value,
    kind: &str,
    ext: &str,
    default_mime: &str,
    named: bool,
) -> Option<MediaRef> {
    let file_id = str_field(v, "file_id")?.trim();
    if file_id.is_empty() {
        return None;
    }
    let unique = str_field(v, "file_unique_id").unwrap_or(file_id);
    let name = named
        .then(|| str_field(v, "file_name"))
        .flatten()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map_or_else(|| format!("{kind}_{unique}.{ext}"), str::to_owned);
    Some(MediaRef {
        file_id: file_id.to_owned(),
        name,
        mime_type: str_field(v, "mime_type")
            .filter(|m| !m.trim().is_empty())
            .unwrap_or(default_mime)
            .to_owned(),
        size: v.get("file_size").and_then(Value::as_u64),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use kommutator_sdk::InboundKind;
    use serde_json::json;

    use super::*;

    fn id() -> ConnectorId {
        ConnectorId::new("tg")
    }

    fn message(extra: Value) -> Value {
        let mut msg = json!({
            "message_id": 7,
            "date": 1_714_575_600,
            "chat": {"id": 1001, "type": "private", "first_name": "Ivan"},
            "from": {"id": 1001, "is_bot": false, "first_name": "Ivan", "last_name": "Petrov", "username": "ivanp"}
        });
        for (k, v) in extra.as_object().unwrap() {
            msg[k] = v.clone();
        }
        json!({"update_id": 500, "message": msg})
    }

    fn msg_of(p: &ParsedUpdate) -> &InboundMessage {
        match &p.event.kind {
            InboundKind::Message(m) => m,
            other => panic!("not a message: {other:?}"),
        }
    }

    #[test]
    fn text_message() {
        let p = parse_update(&id(), &message(json!({"text": "hello"}))).unwrap();
        assert_eq!(p.update_id, 500);
        assert_eq!(p.event.external_id, "1001:7");
        assert_eq!(p.event.occurred_at.unix_timestamp(), 1_714_575_600);
        let m = msg_of(&p);
        assert_eq!(m.thread_id, "1001");
        assert_eq!(m.text.as_deref(), Some("hello"));
        assert_eq!(m.sender.display_name.as_deref(), Some("Ivan Petrov"));
        assert_eq!(
            m.sender.identities,
            [PartyIdentity::new(IdentityKind::Telegram, "1001")]
        );
        assert!(p.media.is_empty());
        assert_eq!(
            p.event.raw.as_ref().unwrap()["message"]["from"]["username"],
            "ivanp"
        );
    }

    #[test]
    fn photo_takes_the_largest_size_and_the_caption() {
        let p = parse_update(
            &id(),
            &message(json!({"caption": "look", "photo": [
                {"file_id": "small", "file_unique_id": "s", "width": 90, "height": 90, "file_size": 1000},
                {"file_id": "big", "file_unique_id": "b", "width": 1280, "height": 960, "file_size": 90000},
                {"file_id": "mid", "file_unique_id": "m", "width": 320, "height": 240}
            ]})),
        )
        .unwrap();
        assert_eq!(msg_of(&p).text.as_deref(), Some("look"));
        assert_eq!(
            p.media,
            [MediaRef {
                file_id: "big".into(),
                name: "photo_b.jpg".into(),
                mime_type: "image/jpeg".into(),
                size: Some(90000)
            }]
        );
    }

    #[test]
    fn documents_voice_and_stickers() {
        let p = parse_update(
            &id(),
            &message(json!({"document": {"file_id": "d1", "file_unique_id": "u", "file_name": "offer.pdf", "mime_type": "application/pdf", "file_size": 10}})),
        )
        .unwrap();
        assert_eq!(p.media[0].name, "offer.pdf");
        assert_eq!(p.media[0].mime_type, "application/pdf");
        assert_eq!(msg_of(&p).text, None);

        let p = parse_update(
            &id(),
            &message(json!({"voice": {"file_id": "v1", "file_unique_id": "vu", "duration": 3}})),
        )
        .unwrap();
        assert_eq!(p.media[0].name, "voice_vu.ogg");
        assert_eq!(p.media[0].mime_type, "audio/ogg");

        let p = parse_update(
            &id(),
            &message(json!({"sticker": {"file_id": "s", "emoji": "😀"}})),
        )
        .unwrap();
        assert_eq!(msg_of(&p).text.as_deref(), Some("[sticker 😀]"));
        assert!(p.media.is_empty());
    }

    #[test]
    fn own_contact_adds_a_phone_identity_and_a_foreign_one_does_not() {
        let own = json!({"contact": {"phone_number": "+79161234567", "first_name": "Ivan", "user_id": 1001}});
        let p = parse_update(&id(), &message(own)).unwrap();
        let m = msg_of(&p);
        assert_eq!(m.text.as_deref(), Some("[contact Ivan +79161234567]"));
        assert_eq!(
            m.sender.identities,
            [
                PartyIdentity::new(IdentityKind::Telegram, "1001"),
                PartyIdentity::new(IdentityKind::Phone, "+79161234567")
            ]
        );
        let other = json!({"contact": {"phone_number": "+79990000000", "first_name": "Olga", "user_id": 42}});
        let p = parse_update(&id(), &message(other)).unwrap();
        assert_eq!(msg_of(&p).sender.identities.len(), 1);
    }

    #[test]
    fn location_and_reply() {
        let p = parse_update(
            &id(),
            &message(json!({"location": {"latitude": 55.75, "longitude": 37.62}, "reply_to_message": {"message_id": 3, "date": 1, "chat": {"id": 1001, "type": "private"}}})),
        )
        .unwrap();
        let m = msg_of(&p);
        assert_eq!(m.text.as_deref(), Some("[location 55.75, 37.62]"));
        assert_eq!(m.reply_to_external_id.as_deref(), Some("1001:3"));
    }

    #[test]
    fn edit_has_its_own_key_and_points_at_the_original() {
        let v = json!({"update_id": 501, "edited_message": {
            "message_id": 7, "date": 1_714_575_600, "edit_date": 1_714_575_660,
            "chat": {"id": 1001, "type": "private"}, "from": {"id": 1001, "first_name": "Ivan"},
            "text": "hello, fixed"}});
        let p = parse_update(&id(), &v).unwrap();
        assert_eq!(p.event.external_id, "1001:7:edit:1714575660");
        assert_eq!(p.event.occurred_at.unix_timestamp(), 1_714_575_660);
        assert_eq!(msg_of(&p).edit_of.as_deref(), Some("1001:7"));
    }

    #[test]
    fn other_updates_and_service_messages_are_unknown() {
        let v = json!({"update_id": 9, "callback_query": {"id": "1", "from": {"id": 1}, "chat_instance": "x"}});
        let p = parse_update(&id(), &v).unwrap();
        assert_eq!(p.event.external_id, "update:9");
        assert_eq!(
            p.event.kind,
            InboundKind::Unknown {
                description: "telegram update \"callback_query\"".into()
            }
        );
        let p = parse_update(&id(), &message(json!({"new_chat_members": []}))).unwrap();
        assert_eq!(
            p.event.kind,
            InboundKind::Unknown {
                description: "telegram message: new_chat_members".into()
            }
        );
        let v = json!({"update_id": 10, "message": {"message_id": 1, "date": 5, "chat": {"id": -100, "type": "channel"}, "text": "x"}});
        assert!(matches!(
            parse_update(&id(), &v).unwrap().event.kind,
            InboundKind::Unknown { .. }
        ));
    }

    #[test]
    fn invalid_updates_are_errors() {
        for (v, err) in [
            (json!([]), "update is not a JSON object"),
            (json!({"message": {}}), "update has no integer `update_id`"),
            (
                json!({"update_id": 1, "message": 5}),
                "`message` is not an object",
            ),
            (
                json!({"update_id": 1, "message": {"date": 1, "chat": {"id": 1}}}),
                "message has no integer `message_id`",
            ),
            (
                json!({"update_id": 1, "message": {"message_id": 1, "chat": {"id": 1}}}),
                "message has no `date`",
            ),
            (
                json!({"update_id": 1, "message": {"message_id": 1, "date": "x", "chat": {"id": 1}}}),
                "`date` is not a unix time",
            ),
            (
                json!({"update_id": 1, "message": {"message_id": 1, "date": 1, "chat": {}}}),
                "message chat has no integer `id`",
            ),
        ] {
            assert_eq!(parse_update(&id(), &v).unwrap_err().0, err, "{v}");
        }
        let e = parse_update_bytes(&id(), b"{not json").unwrap_err();
        assert!(e.0.starts_with("body is not valid JSON"), "{e}");
    }
}
