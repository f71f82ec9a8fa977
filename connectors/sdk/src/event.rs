//! [`InboundEvent`]: everything a connector hands to the hub, in one protocol-neutral shape.
//!
//! The JSON shape of these types is stable: the hub stores `raw` and may put events on the
//! bus, so enums are tagged with a `"type"` field in `snake_case`, fields are `snake_case`,
//! and times are RFC 3339 strings. Changing a name here is a breaking change.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ConnectorError;

/// The instance id of a connector: the key of its table in the config file
/// (`[connectors.office_pbx]` → `office_pbx`).
///
/// Two instances of the same [`Connector::KIND`](crate::Connector::KIND) have different ids,
/// so external ids only need to be unique within one instance.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ConnectorId(String);

impl ConnectorId {
    /// Wraps an instance id. The hub validates ids when it loads the config.
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConnectorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ConnectorId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<String> for ConnectorId {
    fn from(id: String) -> Self {
        Self(id)
    }
}

impl From<&str> for ConnectorId {
    fn from(id: &str) -> Self {
        Self(id.to_owned())
    }
}

/// The longest external id, in bytes, that [`normalize_external_id`] accepts.
pub const MAX_EXTERNAL_ID_LEN: usize = 256;

/// Normalizes an id taken from the wire for use as an `external_id`, a `thread_id` or a
/// `call_external_id`: trims surrounding whitespace and rejects what cannot be a key.
///
/// Pure: no I/O, no panic on any input.
///
/// # Errors
///
/// [`ConnectorError::Protocol`] when the trimmed id is empty, longer than
/// [`MAX_EXTERNAL_ID_LEN`] bytes, or contains a control character.
pub fn normalize_external_id(s: &str) -> Result<String, ConnectorError> {
    let id = s.trim();
    if id.is_empty() {
        return Err(ConnectorError::protocol("external id is empty"));
    }
    if id.len() > MAX_EXTERNAL_ID_LEN {
        return Err(ConnectorError::protocol(format!(
            "external id is {} bytes long, at most {MAX_EXTERNAL_ID_LEN} allowed",
            id.len()
        )));
    }
    if let Some((at, c)) = id.char_indices().find(|(_, c)| c.is_control()) {
        return Err(ConnectorError::protocol(format!(
            "external id contains control character {c:?} at byte {at}"
        )));
    }
    Ok(id.to_owned())
}

/// One item a connector hands to the hub: a message, a delivery report, a call event, …
///
/// `(connector_id, external_id)` is the idempotency key. Delivery is at-least-once: a
/// connector may send the same event again (after a reconnect, a webhook retry, a replayed
/// mailbox), and the hub persists it once. So two events with the same key are the same
/// event, whatever their kind, and two different events must never share a key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboundEvent {
    /// The instance that produced the event; must equal the context's
    /// [`id`](crate::ConnectorContext::id).
    pub connector_id: ConnectorId,
    /// The idempotency key, unique within the instance across all kinds. For a message it is
    /// the channel's message id (made unique per instance, e.g. `chat_id:message_id`); for an
    /// event derived from another item, the item's id plus a suffix (see [`InboundKind`]).
    /// Pass ids from the wire through [`normalize_external_id`].
    pub external_id: String,
    /// When it happened according to the channel (not when we received it, unless the
    /// channel gives no time).
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    /// The payload as received (or a JSON rendering of it), kept for audit. The core
    /// stores it and never parses it. A JSON `null` reads back as `None`.
    #[serde(default)]
    pub raw: Option<serde_json::Value>,
    /// What happened.
    pub kind: InboundKind,
}

impl InboundEvent {
    /// An event without a raw payload; add one with [`with_raw`](Self::with_raw).
    pub fn new(
        connector_id: ConnectorId,
        external_id: impl Into<String>,
        occurred_at: OffsetDateTime,
        kind: InboundKind,
    ) -> Self {
        Self {
            connector_id,
            external_id: external_id.into(),
            occurred_at,
            raw: None,
            kind,
        }
    }

    /// Sets the raw payload kept for audit.
    #[must_use]
    pub fn with_raw(mut self, raw: serde_json::Value) -> Self {
        self.raw = Some(raw);
        self
    }

    /// The report that our outbound message `message_id` was accepted by the channel
    /// under the channel's id `external_id`. Its own key is `outbound:{message_id}:ack`.
    pub fn outbound_ack(
        connector_id: ConnectorId,
        message_id: i64,
        external_id: impl Into<String>,
        occurred_at: OffsetDateTime,
    ) -> Self {
        Self::new(
            connector_id,
            format!("outbound:{message_id}:ack"),
            occurred_at,
            InboundKind::OutboundAck {
                message_id,
                external_id: external_id.into(),
            },
        )
    }

    /// The report that the channel refused our outbound message `message_id`.
    /// Its own key is `outbound:{message_id}:failed`.
    pub fn outbound_failed(
        connector_id: ConnectorId,
        message_id: i64,
        reason: impl Into<String>,
        occurred_at: OffsetDateTime,
    ) -> Self {
        Self::new(
            connector_id,
            format!("outbound:{message_id}:failed"),
            occurred_at,
            InboundKind::OutboundFailed {
                message_id,
                reason: reason.into(),
            },
        )
    }
}

/// What an [`InboundEvent`] reports. The core matches on every variant.
///
/// Keys of derived events: when the channel gives an id to a status update, use it;
/// otherwise build the event's `external_id` from the item it is about, e.g.
/// `{message_external_id}:{status}` for a [`DeliveryStatus`](Self::DeliveryStatus)
/// (see [`DeliveryState::as_str`]) or `{call_external_id}:{step}` for a call event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InboundKind {
    /// A message from a customer (or a message in a thread we take part in).
    Message(InboundMessage),

    /// The channel's delivery state of a message changed.
    ///
    /// `message_external_id` is the channel's id of the message: the `external_id` of an
    /// inbound message event, or the `external_id` the connector reported for one of our
    /// outbound messages in an [`OutboundAck`](Self::OutboundAck).
    DeliveryStatus {
        /// The channel's id of the message the status is about.
        message_external_id: String,
        /// The new state.
        status: DeliveryState,
    },

    /// The channel accepted our [`OutboundMessage`](crate::OutboundMessage) `message_id`
    /// and gave it the id `external_id`; later [`DeliveryStatus`](Self::DeliveryStatus)
    /// events and replies refer to that id. Build it with [`InboundEvent::outbound_ack`].
    OutboundAck {
        /// Our id of the message ([`OutboundMessage::id`](crate::OutboundMessage::id)).
        message_id: i64,
        /// The channel's id of the sent message.
        external_id: String,
    },

    /// The channel refused our [`OutboundMessage`](crate::OutboundMessage) `message_id`
    /// for good (blocked by the recipient, unknown chat, content rejected); the operator
    /// sees `reason`. A transient failure is not reported this way: the connector returns
    /// a retryable [`ConnectorError`] and the hub delivers the message again.
    /// Build it with [`InboundEvent::outbound_failed`].
    OutboundFailed {
        /// Our id of the message.
        message_id: i64,
        /// Why, in words an operator can act on.
        reason: String,
    },

    /// A telephony event of one call.
    Call(CallEvent),

    /// Someone is typing in a thread. Ephemeral: the hub may publish it without storing it.
    Typing {
        /// The channel's id of the conversation.
        thread_id: String,
        /// Who is typing.
        sender: Party,
    },

    /// Input the connector recognised as valid for its protocol but has no mapping for
    /// (a new update type, a service message). The raw payload holds the details; the
    /// connector also logs it at DEBUG.
    Unknown {
        /// A short description for the audit log, e.g. `telegram update "poll_answer"`.
        description: String,
    },
}

/// A message received on a channel. Its channel id is the event's `external_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboundMessage {
    /// The channel's id of the conversation (chat id, email thread, widget session).
    pub thread_id: String,
    /// Who sent it.
    pub sender: Party,
    /// The text, if any (as plain text; markup is the connector's to flatten). For mail,
    /// the new text only: quoted replies and the signature go in `quoted`.
    pub text: Option<String>,
    /// The subject, on channels that have one (email, forms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The HTML body, already sanitized by the connector for display (no script, no
    /// event handlers, no remote images), on channels that have one (email).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    /// What the connector separated from the new text: quoted earlier messages and the
    /// signature (email).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quoted: Option<String>,
    /// Files attached to the message.
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// The channel's id of the message this one answers, if any.
    pub reply_to_external_id: Option<String>,
    /// Set when this event is an edit: the channel's id of the message that was edited.
    ///
    /// An edit is a new event with its own `external_id` (e.g. `{message id}:edit:{edit
    /// time}`), so it is not dropped as a duplicate of the original; its content replaces
    /// the original's.
    pub edit_of: Option<String>,
}

impl InboundMessage {
    /// A message in `thread_id` from `sender` with `text` and nothing else; set the other
    /// fields on the value.
    pub fn text(thread_id: impl Into<String>, sender: Party, text: Option<String>) -> Self {
        Self {
            thread_id: thread_id.into(),
            sender,
            text,
            subject: None,
            html: None,
            quoted: None,
            attachments: Vec::new(),
            reply_to_external_id: None,
            edit_of: None,
        }
    }

    /// Whether this event edits an earlier message.
    pub fn is_edit(&self) -> bool {
        self.edit_of.is_some()
    }
}

/// A person or account on the other side, as the channel knows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Party {
    /// Every identity the channel gives for them (a Telegram user id and a phone, a VK id,
    /// an email address). The core matches them to a Client, Contact or Lead.
    pub identities: Vec<PartyIdentity>,
    /// The name the channel shows, if any.
    pub display_name: Option<String>,
}

impl Party {
    /// A party known by a single identity.
    pub fn from_identity(identity: PartyIdentity) -> Self {
        Self {
            identities: vec![identity],
            display_name: None,
        }
    }

    /// Sets the display name.
    #[must_use]
    pub fn with_display_name(mut self, name: impl Into<String>) -> Self {
        self.display_name = Some(name.into());
        self
    }
}

/// One identity of a [`Party`] on one kind of channel.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PartyIdentity {
    /// Which namespace `value` belongs to.
    pub kind: IdentityKind,
    /// The identity as the channel gives it (a phone number, an email address, a user id),
    /// trimmed. The core normalizes it further before matching.
    pub value: String,
}

impl PartyIdentity {
    /// An identity of `kind`.
    pub fn new(kind: IdentityKind, value: impl Into<String>) -> Self {
        Self {
            kind,
            value: value.into(),
        }
    }
}

/// The namespace of a [`PartyIdentity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentityKind {
    /// A phone number (calls, SMS, call tracking).
    Phone,
    /// An email address.
    Email,
    /// A Telegram user id.
    Telegram,
    /// A VK user id.
    Vk,
    /// A WhatsApp id (the phone number WhatsApp reports).
    Whatsapp,
    /// A website visitor id issued by the chat widget or form.
    WebVisitor,
}

impl IdentityKind {
    /// Every kind, in declaration order.
    pub const ALL: [IdentityKind; 6] = [
        Self::Phone,
        Self::Email,
        Self::Telegram,
        Self::Vk,
        Self::Whatsapp,
        Self::WebVisitor,
    ];

    /// The `snake_case` name, the same as in JSON (`"web_visitor"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Phone => "phone",
            Self::Email => "email",
            Self::Telegram => "telegram",
            Self::Vk => "vk",
            Self::Whatsapp => "whatsapp",
            Self::WebVisitor => "web_visitor",
        }
    }
}

impl fmt::Display for IdentityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for IdentityKind {
    type Err = ParseIdentityKindError;

    /// Parses the `snake_case` name, exactly as [`as_str`](IdentityKind::as_str) writes it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ParseIdentityKindError {
                input: s.to_owned(),
            })
    }
}

/// The error of parsing an [`IdentityKind`] from a string that names none.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown identity kind {input:?}, expected one of: phone, email, telegram, vk, whatsapp, web_visitor"
)]
pub struct ParseIdentityKindError {
    /// The string that did not parse.
    pub input: String,
}

/// A file attached to a message, inbound or outbound.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// The file name as shown to the user.
    pub name: String,
    /// The MIME type; `application/octet-stream` when the channel does not say.
    pub mime_type: String,
    /// The size in bytes, if known.
    pub size: Option<u64>,
    /// Where to get the content: a URL, or a channel-specific reference (a Telegram
    /// `file_id`) that the same connector can resolve.
    pub url_or_ref: String,
}

/// The delivery state of a message on its channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DeliveryState {
    /// Queued by the channel, not yet sent.
    Pending,
    /// Sent by the channel.
    Sent,
    /// Delivered to the recipient's device or mailbox.
    Delivered,
    /// Read by the recipient.
    Read,
    /// The channel gave up delivering it.
    Failed {
        /// The channel's reason.
        reason: String,
    },
}

impl DeliveryState {
    /// The `snake_case` name of the state (`"delivered"`), e.g. for building event keys.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Read => "read",
            Self::Failed { .. } => "failed",
        }
    }
}

/// One event in the life of a call. The event's `external_id` identifies this event;
/// `call_external_id` groups the events of one call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallEvent {
    /// The channel's id of the call, shared by all its legs and events (e.g. Asterisk's
    /// `Linkedid`, a SIP `Call-ID`).
    pub call_external_id: String,
    /// What happened.
    pub kind: CallEventKind,
}

/// What happened in a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CallEventKind {
    /// The call started ringing.
    Ringing {
        /// The calling number or address.
        from: String,
        /// The called number or address.
        to: String,
        /// Whether the customer called us or we called them.
        direction: Direction,
        /// The internal extension involved, if known.
        extension: Option<String>,
    },
    /// Someone picked up.
    Answered {
        /// The extension that answered, if known (an IVR or queue may answer first).
        by_extension: Option<String>,
    },
    /// The call was transferred.
    Transferred {
        /// The extension or number it went to.
        to_extension: String,
    },
    /// The call ended after it was answered.
    HungUp {
        /// Talk time in seconds, if the channel reports it.
        duration_secs: Option<u64>,
        /// The hangup cause as the PBX states it (e.g. `Normal Clearing`), if given.
        cause: Option<String>,
    },
    /// The call ended without being answered.
    Missed {
        /// Why.
        reason: MissedReason,
    },
    /// The call could not be placed: the PBX refused a click-to-call
    /// ([`OriginateRequest`](crate::OriginateRequest)), e.g. the operator's extension is
    /// unreachable.
    Failed {
        /// Why, in words an operator can act on.
        reason: String,
    },
    /// A recording of the call can be fetched.
    RecordingAvailable {
        /// Where to fetch it.
        url: String,
    },
}

/// Which way a call goes, seen from us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The customer called us.
    Inbound,
    /// We called the customer.
    Outbound,
}

/// Why a call was not answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissedReason {
    /// The caller hung up before anyone answered.
    Cancelled,
    /// The called side was busy.
    Busy,
    /// Nobody answered in time.
    NoAnswer,
    /// The called side declined the call.
    Rejected,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    fn event(kind: InboundKind) -> InboundEvent {
        InboundEvent::new(
            ConnectorId::new("tg_main"),
            "e1",
            datetime!(2024-05-01 12:30:00 UTC),
            kind,
        )
    }

    fn customer() -> Party {
        Party {
            identities: vec![
                PartyIdentity::new(IdentityKind::Telegram, "42"),
                PartyIdentity::new(IdentityKind::Phone, "+74951234567"),
            ],
            display_name: Some("Ivan".to_owned()),
        }
    }

    fn customer_json() -> serde_json::Value {
        json!({
            "identities": [
                {"kind": "telegram", "value": "42"},
                {"kind": "phone", "value": "+74951234567"}
            ],
            "display_name": "Ivan"
        })
    }

    /// Serializes, compares with the expected JSON (the stable shape), reads it back.
    fn check(ev: InboundEvent, kind_json: serde_json::Value) {
        let expected = json!({
            "connector_id": "tg_main",
            "external_id": "e1",
            "occurred_at": "2024-05-01T12:30:00Z",
            "raw": null,
            "kind": kind_json
        });
        let value = serde_json::to_value(&ev).unwrap();
        assert_eq!(value, expected);
        let back: InboundEvent = serde_json::from_value(value).unwrap();
        assert_eq!(back, ev);
        let text = serde_json::to_string(&ev).unwrap();
        assert_eq!(serde_json::from_str::<InboundEvent>(&text).unwrap(), ev);
    }

    #[test]
    fn message_round_trip() {
        check(
            event(InboundKind::Message(InboundMessage {
                thread_id: "chat-7".to_owned(),
                sender: customer(),
                text: Some("Hello".to_owned()),
                subject: None,
                html: None,
                quoted: None,
                attachments: vec![Attachment {
                    name: "photo.jpg".to_owned(),
                    mime_type: "image/jpeg".to_owned(),
                    size: Some(2048),
                    url_or_ref: "file:AgAD".to_owned(),
                }],
                reply_to_external_id: Some("e0".to_owned()),
                edit_of: None,
            })),
            json!({
                "type": "message",
                "thread_id": "chat-7",
                "sender": customer_json(),
                "text": "Hello",
                "attachments": [{
                    "name": "photo.jpg",
                    "mime_type": "image/jpeg",
                    "size": 2048,
                    "url_or_ref": "file:AgAD"
                }],
                "reply_to_external_id": "e0",
                "edit_of": null
            }),
        );
    }

    #[test]
    fn edited_message_round_trip() {
        let msg = InboundMessage {
            thread_id: "chat-7".to_owned(),
            sender: Party::from_identity(PartyIdentity::new(IdentityKind::Vk, "1")),
            text: None,
            subject: None,
            html: None,
            quoted: None,
            attachments: vec![],
            reply_to_external_id: None,
            edit_of: Some("e0".to_owned()),
        };
        assert!(msg.is_edit());
        check(
            event(InboundKind::Message(msg)),
            json!({
                "type": "message",
                "thread_id": "chat-7",
                "sender": {"identities": [{"kind": "vk", "value": "1"}], "display_name": null},
                "text": null,
                "attachments": [],
                "reply_to_external_id": null,
                "edit_of": "e0"
            }),
        );
    }

    #[test]
    fn delivery_status_round_trip() {
        check(
            event(InboundKind::DeliveryStatus {
                message_external_id: "m9".to_owned(),
                status: DeliveryState::Read,
            }),
            json!({"type": "delivery_status", "message_external_id": "m9", "status": {"type": "read"}}),
        );
        check(
            event(InboundKind::DeliveryStatus {
                message_external_id: "m9".to_owned(),
                status: DeliveryState::Failed {
                    reason: "blocked".to_owned(),
                },
            }),
            json!({
                "type": "delivery_status",
                "message_external_id": "m9",
                "status": {"type": "failed", "reason": "blocked"}
            }),
        );
        for (state, name) in [
            (DeliveryState::Pending, "pending"),
            (DeliveryState::Sent, "sent"),
            (DeliveryState::Delivered, "delivered"),
        ] {
            assert_eq!(state.as_str(), name);
            check(
                event(InboundKind::DeliveryStatus {
                    message_external_id: "m9".to_owned(),
                    status: state,
                }),
                json!({"type": "delivery_status", "message_external_id": "m9", "status": {"type": name}}),
            );
        }
    }

    #[test]
    fn outbound_ack_and_failed_round_trip() {
        let at = datetime!(2024-05-01 12:30:00 UTC);
        let ack = InboundEvent::outbound_ack(ConnectorId::new("tg_main"), 17, "chat-7:555", at);
        assert_eq!(ack.external_id, "outbound:17:ack");
        let ack = InboundEvent {
            external_id: "e1".to_owned(),
            ..ack
        };
        check(
            ack,
            json!({"type": "outbound_ack", "message_id": 17, "external_id": "chat-7:555"}),
        );

        let failed =
            InboundEvent::outbound_failed(ConnectorId::new("tg_main"), 17, "bot blocked", at);
        assert_eq!(failed.external_id, "outbound:17:failed");
        let failed = InboundEvent {
            external_id: "e1".to_owned(),
            ..failed
        };
        check(
            failed,
            json!({"type": "outbound_failed", "message_id": 17, "reason": "bot blocked"}),
        );
    }

    #[test]
    fn call_events_round_trip() {
        let cases = [
            (
                CallEventKind::Ringing {
                    from: "+74951234567".to_owned(),
                    to: "+74957654321".to_owned(),
                    direction: Direction::Inbound,
                    extension: Some("101".to_owned()),
                },
                json!({
                    "type": "ringing",
                    "from": "+74951234567",
                    "to": "+74957654321",
                    "direction": "inbound",
                    "extension": "101"
                }),
            ),
            (
                CallEventKind::Ringing {
                    from: "101".to_owned(),
                    to: "+74951234567".to_owned(),
                    direction: Direction::Outbound,
                    extension: None,
                },
                json!({
                    "type": "ringing",
                    "from": "101",
                    "to": "+74951234567",
                    "direction": "outbound",
                    "extension": null
                }),
            ),
            (
                CallEventKind::Answered {
                    by_extension: Some("101".to_owned()),
                },
                json!({"type": "answered", "by_extension": "101"}),
            ),
            (
                CallEventKind::Transferred {
                    to_extension: "102".to_owned(),
                },
                json!({"type": "transferred", "to_extension": "102"}),
            ),
            (
                CallEventKind::HungUp {
                    duration_secs: Some(93),
                    cause: Some("Normal Clearing".to_owned()),
                },
                json!({"type": "hung_up", "duration_secs": 93, "cause": "Normal Clearing"}),
            ),
            (
                CallEventKind::RecordingAvailable {
                    url: "https://pbx.example/rec/1.wav".to_owned(),
                },
                json!({"type": "recording_available", "url": "https://pbx.example/rec/1.wav"}),
            ),
        ];
        for (kind, kind_json) in cases {
            check(
                event(InboundKind::Call(CallEvent {
                    call_external_id: "1714566600.12".to_owned(),
                    kind,
                })),
                json!({"type": "call", "call_external_id": "1714566600.12", "kind": kind_json}),
            );
        }
        for (reason, name) in [
            (MissedReason::Cancelled, "cancelled"),
            (MissedReason::Busy, "busy"),
            (MissedReason::NoAnswer, "no_answer"),
            (MissedReason::Rejected, "rejected"),
        ] {
            check(
                event(InboundKind::Call(CallEvent {
                    call_external_id: "c".to_owned(),
                    kind: CallEventKind::Missed { reason },
                })),
                json!({
                    "type": "call",
                    "call_external_id": "c",
                    "kind": {"type": "missed", "reason": name}
                }),
            );
        }
    }

    #[test]
    fn typing_and_unknown_round_trip() {
        check(
            event(InboundKind::Typing {
                thread_id: "chat-7".to_owned(),
                sender: customer(),
            }),
            json!({"type": "typing", "thread_id": "chat-7", "sender": customer_json()}),
        );
        check(
            event(InboundKind::Unknown {
                description: "telegram update \"poll_answer\"".to_owned(),
            }),
            json!({"type": "unknown", "description": "telegram update \"poll_answer\""}),
        );
    }

    #[test]
    fn raw_payload_is_kept() {
        let ev = event(InboundKind::Unknown {
            description: "x".to_owned(),
        })
        .with_raw(json!({"update_id": 1, "poll_answer": {}}));
        let value = serde_json::to_value(&ev).unwrap();
        assert_eq!(value["raw"], json!({"update_id": 1, "poll_answer": {}}));
        assert_eq!(serde_json::from_value::<InboundEvent>(value).unwrap(), ev);
    }

    #[test]
    fn missing_raw_and_attachments_default() {
        let ev: InboundEvent = serde_json::from_value(json!({
            "connector_id": "tg_main",
            "external_id": "e1",
            "occurred_at": "2024-05-01T15:30:00+03:00",
            "kind": {
                "type": "message",
                "thread_id": "t",
                "sender": {"identities": [], "display_name": null},
                "text": "hi",
                "reply_to_external_id": null,
                "edit_of": null
            }
        }))
        .unwrap();
        assert_eq!(ev.raw, None);
        assert_eq!(ev.occurred_at, datetime!(2024-05-01 12:30:00 UTC));
        let InboundKind::Message(msg) = ev.kind else {
            panic!("expected a message, got {:?}", ev.kind);
        };
        assert!(msg.attachments.is_empty());
    }

    #[test]
    fn unknown_type_tag_is_an_error() {
        let err = serde_json::from_value::<InboundKind>(json!({"type": "fax"})).unwrap_err();
        assert!(err.to_string().contains("unknown variant `fax`"), "{err}");
    }

    #[test]
    fn identity_kind_names() {
        for kind in IdentityKind::ALL {
            assert_eq!(kind.as_str().parse::<IdentityKind>().unwrap(), kind);
            assert_eq!(kind.to_string(), kind.as_str());
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                json!(kind.as_str()),
                "serde and as_str agree"
            );
        }
        assert_eq!(
            "web_visitor".parse::<IdentityKind>().unwrap(),
            IdentityKind::WebVisitor
        );
    }

    #[test]
    fn identity_kind_parse_errors() {
        for bad in ["", "Phone", " phone", "webvisitor", "web-visitor", "sms"] {
            let err = bad.parse::<IdentityKind>().unwrap_err();
            assert_eq!(err.input, bad);
            assert_eq!(
                err.to_string(),
                format!(
                    "unknown identity kind {bad:?}, expected one of: \
                     phone, email, telegram, vk, whatsapp, web_visitor"
                )
            );
        }
    }

    #[test]
    fn normalize_external_id_trims_and_accepts() {
        assert_eq!(normalize_external_id("  abc-1 \n").unwrap(), "abc-1");
        assert_eq!(normalize_external_id("сообщение:1").unwrap(), "сообщение:1");
        let longest = "x".repeat(MAX_EXTERNAL_ID_LEN);
        assert_eq!(normalize_external_id(&longest).unwrap(), longest);
        let padded = format!("  {longest}  ");
        assert_eq!(normalize_external_id(&padded).unwrap(), longest);
    }

    #[test]
    fn normalize_external_id_rejects() {
        let too_long = "x".repeat(MAX_EXTERNAL_ID_LEN + 1);
        // 129 two-byte characters: 258 bytes, fewer than 256 chars.
        let too_long_utf8 = "я".repeat(129);
        let cases = [
            ("", "external id is empty"),
            ("   \t\r\n", "external id is empty"),
            (
                too_long.as_str(),
                "external id is 257 bytes long, at most 256 allowed",
            ),
            (
                too_long_utf8.as_str(),
                "external id is 258 bytes long, at most 256 allowed",
            ),
            (
                "a\u{0}b",
                "external id contains control character '\\0' at byte 1",
            ),
            (
                "ab\u{1b}[31m",
                "external id contains control character '\\u{1b}' at byte 2",
            ),
            (
                "a\nb",
                "external id contains control character '\\n' at byte 1",
            ),
        ];
        for (input, message) in cases {
            let err = normalize_external_id(input).unwrap_err();
            assert!(matches!(err, ConnectorError::Protocol(_)), "{err:?}");
            assert_eq!(err.to_string(), format!("protocol error: {message}"));
        }
    }

    #[test]
    fn connector_id_is_a_transparent_string() {
        let id = ConnectorId::from("office_pbx");
        assert_eq!(serde_json::to_value(&id).unwrap(), json!("office_pbx"));
        assert_eq!(id.to_string(), "office_pbx");
        assert_eq!(id.as_str(), "office_pbx");
        assert_eq!(id, ConnectorId::new(String::from("office_pbx")));
    }
}
