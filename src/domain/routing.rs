//! Routing: operator presence and load, department routing settings, assignment reasons,
//! and the normalized inbound message the ingest pipeline persists.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Attachment, Dialog, Id, IdentityKind, Message, Timestamp};

/// An operator's presence as routing sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PresenceStatus {
    /// Connected and taking dialogs.
    Online,
    /// Connected, not taking new dialogs.
    Away,
    /// No connection for longer than the grace period.
    Offline,
}

impl PresenceStatus {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            PresenceStatus::Online => "online",
            PresenceStatus::Away => "away",
            PresenceStatus::Offline => "offline",
        }
    }
    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "online" => Some(PresenceStatus::Online),
            "away" => Some(PresenceStatus::Away),
            "offline" => Some(PresenceStatus::Offline),
            _ => None,
        }
    }
}

/// How a department's queue picks an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoutingPolicy {
    /// In turn, by user id, skipping who is full, away or offline.
    RoundRobin,
    /// Whoever has the fewest open dialogs; ties go to who waited longest since their last
    /// assignment.
    LeastLoaded,
}

impl RoutingPolicy {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            RoutingPolicy::RoundRobin => "round_robin",
            RoutingPolicy::LeastLoaded => "least_loaded",
        }
    }
    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "round_robin" => Some(RoutingPolicy::RoundRobin),
            "least_loaded" => Some(RoutingPolicy::LeastLoaded),
            _ => None,
        }
    }
}

/// Why a dialog went where it went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AssignReason {
    /// The client's (or lead's) responsible manager, online with free capacity.
    StickyManager,
    /// The department's round-robin turn.
    RoundRobin,
    /// The least-loaded operator of the department.
    LeastLoaded,
    /// Unanswered for the department's offer timeout: offered to the next operator.
    ReofferTimeout,
    /// Assigned by a person.
    Manual,
    /// Transferred by a person to an operator or a department.
    Transfer,
    /// Handed over by a bot.
    Handover,
    /// Held for the department's bot (its `bot_first` setting) until it hands over.
    Bot,
    /// Nobody could take it: waiting in the department queue.
    Queued,
}

impl AssignReason {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            AssignReason::StickyManager => "sticky_manager",
            AssignReason::RoundRobin => "round_robin",
            AssignReason::LeastLoaded => "least_loaded",
            AssignReason::ReofferTimeout => "reoffer_timeout",
            AssignReason::Manual => "manual",
            AssignReason::Transfer => "transfer",
            AssignReason::Handover => "handover",
            AssignReason::Bot => "bot",
            AssignReason::Queued => "queued",
        }
    }

    /// Whether routing made the choice (so an unanswered dialog may be re-offered).
    pub fn is_automatic(self) -> bool {
        matches!(
            self,
            AssignReason::StickyManager
                | AssignReason::RoundRobin
                | AssignReason::LeastLoaded
                | AssignReason::ReofferTimeout
        )
    }
}

/// One assignment of a dialog, as recorded.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Assignment {
    /// Dialog.
    pub dialog_id: Id,
    /// The operator, or none when queued.
    pub user_id: Option<Id>,
    /// Department.
    pub department_id: Option<Id>,
    /// Why.
    pub reason: AssignReason,
    /// Who did it (manual assignments and transfers).
    pub by_user_id: Option<Id>,
    /// When.
    pub at: Timestamp,
}

/// An operator's presence and load.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OperatorState {
    /// User.
    pub user_id: Id,
    /// Department.
    pub department_id: Option<Id>,
    /// Presence.
    pub status: PresenceStatus,
    /// What the operator chose for when they are connected.
    pub chosen: PresenceStatus,
    /// On a call (full load).
    pub on_call: bool,
    /// Open dialogs assigned.
    pub open_dialogs: i64,
    /// Capacity.
    pub max_dialogs: i64,
    /// Since when the presence holds.
    pub since: Timestamp,
}

/// A department's routing settings.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RoutingSettings {
    /// Department.
    pub department_id: Id,
    /// Policy.
    pub policy: RoutingPolicy,
    /// Seconds before an unanswered dialog is offered to the next operator (0: never).
    pub offer_timeout_secs: i64,
    /// New dialogs wait for the department's bot until it hands them over (or the offer
    /// timeout passes unanswered).
    pub bot_first: bool,
}

/// Changes to a department's routing settings.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoutingPatch {
    /// Policy.
    #[serde(default)]
    pub policy: Option<RoutingPolicy>,
    /// Offer timeout in seconds, 0 to 86400.
    #[serde(default)]
    pub offer_timeout_secs: Option<i64>,
    /// New dialogs go to the bot first.
    #[serde(default)]
    pub bot_first: Option<bool>,
}

/// When the pipeline opens an Interest for an inquiry (the intake wizard's rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OpenInterest {
    /// Never: only link to an open Interest if the party has one.
    Never,
    /// For a new sender (a lead created by this inquiry).
    #[default]
    NewParty,
    /// Whenever the party has no open Interest.
    WhenNoneOpen,
}

/// One inbound message, normalized by the pipeline from a connector's event.
#[derive(Debug, Clone)]
pub struct IngestMessage {
    /// Connector instance.
    pub connector_id: String,
    /// Channel kind (`telegram`, `widget`, `api`, ...).
    pub channel: String,
    /// Idempotency key of the message.
    pub external_id: String,
    /// The channel's conversation id.
    pub thread_id: String,
    /// When the channel says it was sent.
    pub sent_at: Timestamp,
    /// Sender identities, most specific first.
    pub identities: Vec<(IdentityKind, String)>,
    /// Sender's display name.
    pub display_name: Option<String>,
    /// Text.
    pub text: Option<String>,
    /// Attachments.
    pub attachments: Vec<Attachment>,
    /// Department whose queue new dialogs join.
    pub department_id: Option<Id>,
    /// Subject (email, forms).
    pub subject: Option<String>,
    /// HTML body, sanitized by the connector (email).
    pub html: Option<String>,
    /// Quoted history and signature, separated from the new text (email).
    pub quoted: Option<String>,
    /// Where the sender came from (utm_*, referrer, landing page, client ids), as a form or
    /// call tracking reports it: recorded on a lead the message creates.
    pub traffic_source: Option<serde_json::Value>,
    /// The intake rule.
    pub open_interest: OpenInterest,
    /// iConsultant's reading of the text; an applied type sets the dialog's request type
    /// (and `department_id` above is then the type's department, when it has one).
    pub classification: Option<super::Classification>,
}

/// What ingesting a message did.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum IngestOutcome {
    /// Stored now.
    Stored {
        /// The message.
        message: Box<Message>,
        /// Its dialog after the message.
        dialog: Box<Dialog>,
        /// The dialog was opened by this message.
        new_dialog: bool,
        /// A lead was created for an unknown sender.
        new_lead: Option<Id>,
        /// An Interest was opened.
        new_interest: Option<Id>,
        /// Where routing put the dialog, when it routed.
        assignment: Option<Assignment>,
    },
    /// Seen before: nothing changed.
    Duplicate {
        /// The stored message.
        message_id: Id,
        /// Its dialog.
        dialog_id: Id,
    },
}
