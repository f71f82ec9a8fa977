//! Dialogs (a conversation on one channel with one party), their messages, and calls.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Id, Timestamp};

/// Open or closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DialogStatus {
    /// Waiting for or in conversation.
    Open,
    /// Finished; a new message reopens it.
    Closed,
}

impl DialogStatus {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            DialogStatus::Open => "open",
            DialogStatus::Closed => "closed",
        }
    }
    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(DialogStatus::Open),
            "closed" => Some(DialogStatus::Closed),
            _ => None,
        }
    }
}

/// A conversation on one channel with one party.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Dialog {
    /// Dialog id.
    pub id: Id,
    /// Channel kind (`telegram`, `email`, `widget`, ...).
    pub channel: String,
    /// Connector instance it runs through.
    pub connector_id: String,
    /// The conversation's id on that channel (chat id, thread root).
    pub external_thread_id: String,
    /// The party's identity on the channel.
    pub identity_id: Option<Id>,
    /// Client (or `lead_id`).
    pub client_id: Option<Id>,
    /// Contact.
    pub contact_id: Option<Id>,
    /// Lead.
    pub lead_id: Option<Id>,
    /// Interest it feeds.
    pub interest_id: Option<Id>,
    /// Operator it is assigned to.
    pub assignee_id: Option<Id>,
    /// Department queue.
    pub department_id: Option<Id>,
    /// Visible to the whole department.
    pub shared: bool,
    /// Open or closed.
    pub status: DialogStatus,
    /// Subject (email threads).
    pub subject: Option<String>,
    /// Time of the last message.
    pub last_message_at: Option<Timestamp>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
    /// When it was closed.
    pub closed_at: Option<Timestamp>,
    /// When the current assignee got it.
    pub assigned_at: Option<Timestamp>,
    /// Why the current assignee got it (`sticky_manager`, `round_robin`, `least_loaded`,
    /// `manual`, `transfer`, `reoffer_timeout`, `handover`), or `queued`.
    pub assign_reason: Option<String>,
    /// Waiting for an operator's answer since (the first unanswered inbound message).
    pub waiting_since: Option<Timestamp>,
    /// Inbound messages the assignee has not marked read.
    pub unread: i64,
    /// The inquiry's request type (iConsultant), when applied.
    pub request_type: Option<String>,
    /// Who applied it: `classifier` or `operator`.
    pub request_type_by: Option<String>,
}

/// Input for a new dialog (connectors and integrations; the pipeline opens most dialogs).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDialog {
    /// Channel kind.
    pub channel: String,
    /// Connector instance id.
    pub connector_id: String,
    /// Conversation id on the channel; unique per connector.
    pub external_thread_id: String,
    /// The party's identity.
    #[serde(default)]
    pub identity_id: Option<Id>,
    /// Client.
    #[serde(default)]
    pub client_id: Option<Id>,
    /// Contact.
    #[serde(default)]
    pub contact_id: Option<Id>,
    /// Lead.
    #[serde(default)]
    pub lead_id: Option<Id>,
    /// Interest.
    #[serde(default)]
    pub interest_id: Option<Id>,
    /// Assignee.
    #[serde(default)]
    pub assignee_id: Option<Id>,
    /// Department queue.
    #[serde(default)]
    pub department_id: Option<Id>,
    /// Subject.
    #[serde(default)]
    pub subject: Option<String>,
}

/// Changes to a dialog: assign, transfer, link, close or reopen.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DialogPatch {
    /// New assignee.
    #[serde(default)]
    pub assignee_id: Option<Id>,
    /// New department queue.
    #[serde(default)]
    pub department_id: Option<Id>,
    /// Link to an Interest (of the dialog's client or lead, after any relink below).
    #[serde(default)]
    pub interest_id: Option<Id>,
    /// Link the dialog to this client instead of its lead or a wrongly identified client
    /// (the intake wizard). Its messages' Feed entries move along; an Interest of the old
    /// party is unlinked unless `interest_id` names one of the new party.
    #[serde(default)]
    pub client_id: Option<Id>,
    /// Link the dialog to this lead instead (exclusive with `client_id`).
    #[serde(default)]
    pub lead_id: Option<Id>,
    /// With `client_id` / `lead_id`: also give the sender's channel identity (the phone,
    /// email or messenger id the dialog came from) to the new party, so the sender's next
    /// messages are recognised as theirs.
    #[serde(default)]
    pub move_identity: bool,
    /// Close or reopen.
    #[serde(default)]
    pub status: Option<DialogStatus>,
    /// Visible to the department.
    #[serde(default)]
    pub shared: Option<bool>,
}

/// Direction of a message or call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the customer.
    Inbound,
    /// To the customer.
    Outbound,
}

impl Direction {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "inbound" => Some(Direction::Inbound),
            "outbound" => Some(Direction::Outbound),
            _ => None,
        }
    }
}

/// Delivery state of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// An inbound message we received.
    Received,
    /// Outbound, not yet handed to the channel.
    Pending,
    /// Accepted by the channel.
    Sent,
    /// Delivered to the recipient.
    Delivered,
    /// Read by the recipient.
    Read,
    /// Could not be delivered.
    Failed,
}

impl DeliveryStatus {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Received => "received",
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Read => "read",
            DeliveryStatus::Failed => "failed",
        }
    }
    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "received" => DeliveryStatus::Received,
            "pending" => DeliveryStatus::Pending,
            "sent" => DeliveryStatus::Sent,
            "delivered" => DeliveryStatus::Delivered,
            "read" => DeliveryStatus::Read,
            "failed" => DeliveryStatus::Failed,
            _ => return None,
        })
    }

    /// Order of progress: a late `sent` must not overwrite `read` (channels report out of
    /// order). `failed` can follow anything but `read`.
    pub fn rank(self) -> u8 {
        match self {
            DeliveryStatus::Received | DeliveryStatus::Pending => 0,
            DeliveryStatus::Sent => 1,
            DeliveryStatus::Delivered => 2,
            DeliveryStatus::Failed => 3,
            DeliveryStatus::Read => 4,
        }
    }
}

/// Metadata of an attachment (the file itself lives in attachment storage).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Attachment {
    /// File name.
    pub name: String,
    /// MIME type.
    pub mime_type: String,
    /// Size in bytes.
    #[serde(default)]
    pub size: Option<u64>,
    /// Where to get it: URL or storage reference.
    pub url: String,
}

/// A message in a dialog.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Message {
    /// Message id.
    pub id: Id,
    /// Dialog.
    pub dialog_id: Id,
    /// Inbound or outbound.
    pub direction: Direction,
    /// Connector instance.
    pub connector_id: String,
    /// Idempotency key: the channel's message id for inbound, the sender's key for outbound.
    pub external_id: String,
    /// The channel's id of an outbound message once sent.
    pub provider_message_id: Option<String>,
    /// Text (for mail, the new text only).
    pub body: Option<String>,
    /// Subject (email, forms).
    pub subject: Option<String>,
    /// HTML body sanitized by the connector (email). Not in the JSON (it can be large, and
    /// it is shown only from `GET /api/v1/messages/{id}/html`, in a sandbox).
    #[serde(skip)]
    #[schema(ignore)]
    pub html: Option<String>,
    /// Whether the message has an HTML body at `GET /api/v1/messages/{id}/html`.
    pub has_html: bool,
    /// Quoted history and signature, separated from the new text (email).
    pub quoted: Option<String>,
    /// Attachments.
    pub attachments: Vec<Attachment>,
    /// iConsultant's reading of an inbound text (request type probabilities).
    pub classification: Option<super::Classification>,
    /// Delivery state.
    pub delivery_status: DeliveryStatus,
    /// Why delivery failed.
    pub delivery_error: Option<String>,
    /// Operator who wrote an outbound message.
    pub author_user_id: Option<Id>,
    /// When it was sent.
    pub sent_at: Timestamp,
    /// When it was stored.
    pub created_at: Timestamp,
}

/// Input for a message. Inbound ones come from connectors (API key with `dialogs:write`);
/// operators post outbound ones. Repeating the same `external_id` returns the stored message
/// and changes nothing.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    /// Direction (default `outbound`).
    #[serde(default)]
    pub direction: Option<Direction>,
    /// Idempotency key (channel message id for inbound). Generated when absent.
    #[serde(default)]
    pub external_id: Option<String>,
    /// Text.
    #[serde(default)]
    pub body: Option<String>,
    /// Attachments (at most 20).
    #[serde(default)]
    pub attachments: Vec<Attachment>,
    /// When it was sent (default: now).
    #[serde(default)]
    pub sent_at: Option<Timestamp>,
}

/// A delivery status report.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryUpdate {
    /// New state (not `received`).
    pub status: DeliveryStatus,
    /// The channel's message id, learned on `sent`.
    #[serde(default)]
    pub provider_message_id: Option<String>,
    /// Reason for `failed`.
    #[serde(default)]
    pub error: Option<String>,
}

/// State of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    /// Ringing.
    Ringing,
    /// In conversation.
    Answered,
    /// Ended after an answer.
    Completed,
    /// Ended without an answer.
    Missed,
}

impl CallStatus {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Ringing => "ringing",
            CallStatus::Answered => "answered",
            CallStatus::Completed => "completed",
            CallStatus::Missed => "missed",
        }
    }
    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ringing" => CallStatus::Ringing,
            "answered" => CallStatus::Answered,
            "completed" => CallStatus::Completed,
            "missed" => CallStatus::Missed,
            _ => return None,
        })
    }
    /// Whether the call has ended.
    pub fn is_final(self) -> bool {
        matches!(self, CallStatus::Completed | CallStatus::Missed)
    }
}

/// Direction of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CallDirection {
    /// From a customer.
    Inbound,
    /// To a customer.
    Outbound,
    /// Between extensions.
    Internal,
}

impl CallDirection {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            CallDirection::Inbound => "inbound",
            CallDirection::Outbound => "outbound",
            CallDirection::Internal => "internal",
        }
    }
    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "inbound" => CallDirection::Inbound,
            "outbound" => CallDirection::Outbound,
            "internal" => CallDirection::Internal,
            _ => return None,
        })
    }
}

/// A phone call, grouped per PBX call (not per leg).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Call {
    /// Call id.
    pub id: Id,
    /// Connector instance.
    pub connector_id: String,
    /// The PBX's call id (Linkedid, Call-ID).
    pub external_id: String,
    /// Direction.
    pub direction: CallDirection,
    /// Caller, E.164 where it is a phone number.
    pub from_number: String,
    /// Called number.
    pub to_number: String,
    /// State.
    pub status: CallStatus,
    /// Why it was missed (`cancelled`, `busy`, `no_answer`, `rejected`).
    pub missed_reason: Option<String>,
    /// Operator on the call.
    pub operator_id: Option<Id>,
    /// Extension that rang or answered.
    pub extension: Option<String>,
    /// Client (or `lead_id`).
    pub client_id: Option<Id>,
    /// Contact.
    pub contact_id: Option<Id>,
    /// Lead.
    pub lead_id: Option<Id>,
    /// Interest.
    pub interest_id: Option<Id>,
    /// When it started ringing.
    pub started_at: Timestamp,
    /// When it was answered.
    pub answered_at: Option<Timestamp>,
    /// When it ended.
    pub ended_at: Option<Timestamp>,
    /// Talk time in seconds.
    pub duration_secs: Option<i64>,
    /// Recording location.
    pub recording_url: Option<String>,
    /// Where the caller came from, per call tracking: `utm_source`, `utm_medium`,
    /// `utm_campaign`, `utm_term`, `utm_content`, `visit_id`, `landing_page`, `provider`.
    #[schema(value_type = Option<Object>)]
    pub traffic_source: Option<serde_json::Value>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// Input for a call record. Idempotent on `(connector_id, external_id)`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCall {
    /// Connector instance.
    pub connector_id: String,
    /// The PBX's call id.
    pub external_id: String,
    /// Direction.
    pub direction: CallDirection,
    /// Caller number.
    pub from_number: String,
    /// Called number.
    pub to_number: String,
    /// State (default `ringing`).
    #[serde(default)]
    pub status: Option<CallStatus>,
    /// Operator.
    #[serde(default)]
    pub operator_id: Option<Id>,
    /// Extension.
    #[serde(default)]
    pub extension: Option<String>,
    /// Client (found from the customer's number when absent).
    #[serde(default)]
    pub client_id: Option<Id>,
    /// Lead.
    #[serde(default)]
    pub lead_id: Option<Id>,
    /// Interest.
    #[serde(default)]
    pub interest_id: Option<Id>,
    /// Start time (default now).
    #[serde(default)]
    pub started_at: Option<Timestamp>,
}

/// A change of call state.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallPatch {
    /// New state; a final call cannot change state again.
    #[serde(default)]
    pub status: Option<CallStatus>,
    /// Why missed.
    #[serde(default)]
    pub missed_reason: Option<String>,
    /// Operator.
    #[serde(default)]
    pub operator_id: Option<Id>,
    /// Extension.
    #[serde(default)]
    pub extension: Option<String>,
    /// Answer time (default now on `answered`).
    #[serde(default)]
    pub answered_at: Option<Timestamp>,
    /// End time (default now on a final state).
    #[serde(default)]
    pub ended_at: Option<Timestamp>,
    /// Recording location.
    #[serde(default)]
    pub recording_url: Option<String>,
    /// Interest.
    #[serde(default)]
    pub interest_id: Option<Id>,
}
