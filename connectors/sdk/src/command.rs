//! [`ConnectorCommand`]: a request from the hub that is not a message to send. Today that
//! is click-to-call ([`OriginateRequest`]); a connector that can place calls says so with
//! [`Connector::CAN_ORIGINATE`](crate::Connector::CAN_ORIGINATE) and reads
//! [`ConnectorContext::recv_command`](crate::ConnectorContext::recv_command).
//!
//! The outcome comes back as ordinary call events: the call's events carry
//! [`OriginateRequest::call_external_id`] as their
//! [`CallEvent::call_external_id`](crate::CallEvent::call_external_id), so the hub ties
//! them to the operator who clicked; a PBX that refuses the call is reported as
//! [`CallEventKind::Failed`](crate::CallEventKind::Failed).

use serde::{Deserialize, Serialize};

/// What the hub asks a connector to do besides sending messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ConnectorCommand {
    /// Click-to-call: ring the operator's extension first; when they pick up, dial the
    /// customer.
    Originate(OriginateRequest),
}

/// A click-to-call request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginateRequest {
    /// The id the hub gave the call before it exists. The connector MUST use it as the
    /// `call_external_id` of every event of this call (Asterisk: pass it as the channel
    /// id of the `Originate` so `Linkedid` equals it), and as the key of a
    /// [`CallEventKind::Failed`](crate::CallEventKind::Failed) event if the PBX refuses.
    pub call_external_id: String,
    /// The operator's extension, rung first (e.g. `101`).
    pub extension: String,
    /// The customer's number to dial once the operator answers, in E.164 (`+74951234567`).
    pub to: String,
    /// Caller id to present to the operator's phone, if the connector can set it.
    pub caller_id: Option<String>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn originate_round_trip() {
        let cmd = ConnectorCommand::Originate(OriginateRequest {
            call_external_id: "k-17".to_owned(),
            extension: "101".to_owned(),
            to: "+74951234567".to_owned(),
            caller_id: None,
        });
        let v = serde_json::to_value(&cmd).unwrap();
        assert_eq!(
            v,
            json!({"type": "originate", "call_external_id": "k-17", "extension": "101",
                   "to": "+74951234567", "caller_id": null})
        );
        assert_eq!(serde_json::from_value::<ConnectorCommand>(v).unwrap(), cmd);
    }
}
