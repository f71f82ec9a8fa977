//! [`OutboundMessage`]: what an operator (or a bot) sends back through a connector.
//!
//! The hub puts outbound messages on the connector's outbound channel
//! ([`ConnectorContext::recv_outbound`](crate::ConnectorContext::recv_outbound)). The
//! connector reports the result back as inbound events, so it stays ignorant of storage:
//!
//! 1. the channel accepted the message → [`InboundEvent::outbound_ack`](crate::InboundEvent::outbound_ack)
//!    with the channel's id of the sent message; from then on the hub knows our `id` by
//!    that external id;
//! 2. the channel reports progress → [`InboundKind::DeliveryStatus`](crate::InboundKind::DeliveryStatus)
//!    keyed by that external id (`Sent`, `Delivered`, `Read`, `Failed`);
//! 3. the channel refused it for good → [`InboundEvent::outbound_failed`](crate::InboundEvent::outbound_failed).
//!
//! Delivery to the connector is at-least-once: after a restart the hub may hand over a
//! message again when it never saw its ack. Where the channel supports an idempotency key,
//! pass it [`OutboundMessage::id`].

use serde::{Deserialize, Serialize};

use crate::{Attachment, ConnectorId, PartyIdentity};

/// A message to send through one connector instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundMessage {
    /// Our id of the message, echoed in
    /// [`InboundKind::OutboundAck`](crate::InboundKind::OutboundAck) and
    /// [`InboundKind::OutboundFailed`](crate::InboundKind::OutboundFailed).
    pub id: i64,
    /// The instance that must send it.
    pub connector_id: ConnectorId,
    /// The channel's id of the conversation to post into (as it came in
    /// [`InboundMessage::thread_id`](crate::InboundMessage::thread_id)).
    pub thread_id: String,
    /// The recipient, when the thread alone does not say where to send (the first email
    /// to an address, a WhatsApp template to a phone number).
    pub to: Option<PartyIdentity>,
    /// The subject, on channels that have one (email): the dialog's subject, for the first
    /// message of a conversation the hub starts. A reply in a known thread keeps the
    /// thread's own subject.
    #[serde(default)]
    pub subject: Option<String>,
    /// The text, if any.
    pub text: Option<String>,
    /// Files to attach; `url_or_ref` is a URL the connector can fetch.
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// The channel's id of the message this one answers, if any.
    pub reply_to_external_id: Option<String>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::IdentityKind;
    use serde_json::json;

    #[test]
    fn outbound_round_trip() {
        let msg = OutboundMessage {
            id: 17,
            connector_id: ConnectorId::new("mail"),
            thread_id: "<a@b>".to_owned(),
            to: Some(PartyIdentity::new(IdentityKind::Email, "ivan@example.com")),
            subject: Some("Your order".to_owned()),
            text: Some("Hello".to_owned()),
            attachments: vec![Attachment {
                name: "offer.pdf".to_owned(),
                mime_type: "application/pdf".to_owned(),
                size: None,
                url_or_ref: "https://hub.example/files/1".to_owned(),
            }],
            reply_to_external_id: Some("<x@y>".to_owned()),
        };
        let value = serde_json::to_value(&msg).unwrap();
        assert_eq!(
            value,
            json!({
                "id": 17,
                "connector_id": "mail",
                "thread_id": "<a@b>",
                "to": {"kind": "email", "value": "ivan@example.com"},
                "subject": "Your order",
                "text": "Hello",
                "attachments": [{
                    "name": "offer.pdf",
                    "mime_type": "application/pdf",
                    "size": null,
                    "url_or_ref": "https://hub.example/files/1"
                }],
                "reply_to_external_id": "<x@y>"
            })
        );
        assert_eq!(
            serde_json::from_value::<OutboundMessage>(value).unwrap(),
            msg
        );
    }
}
