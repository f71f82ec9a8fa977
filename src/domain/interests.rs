//! Interests (deals) with their sales scenarios and stages, and Interactions.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Id, Timestamp};

/// What reaching a stage means for the Interest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StageOutcome {
    /// Still in progress.
    Open,
    /// The goal is reached.
    Won,
    /// Given up.
    Lost,
}

impl StageOutcome {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            StageOutcome::Open => "open",
            StageOutcome::Won => "won",
            StageOutcome::Lost => "lost",
        }
    }
    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(StageOutcome::Open),
            "won" => Some(StageOutcome::Won),
            "lost" => Some(StageOutcome::Lost),
            _ => None,
        }
    }
}

/// A stage of a sales scenario.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Stage {
    /// Stage id.
    pub id: Id,
    /// Order within the scenario, from 1.
    pub position: i64,
    /// Name.
    pub name: String,
    /// What reaching it means.
    pub outcome: StageOutcome,
}

/// The pipeline an Interest moves through.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SalesScenario {
    /// Scenario id.
    pub id: Id,
    /// Unique name.
    pub name: String,
    /// Stages in order.
    pub stages: Vec<Stage>,
}

/// A stage of a new scenario.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewStage {
    /// Name.
    pub name: String,
    /// Outcome (default `open`).
    #[serde(default = "open_outcome")]
    pub outcome: StageOutcome,
}

fn open_outcome() -> StageOutcome {
    StageOutcome::Open
}

/// Input for a new sales scenario: at least one open stage first, 2 to 30 stages.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSalesScenario {
    /// Unique name.
    pub name: String,
    /// Stages in order.
    pub stages: Vec<NewStage>,
}

/// A deal: lives from the first request to its goal.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Interest {
    /// Interest id.
    pub id: Id,
    /// Short description.
    pub title: String,
    /// The client (or `lead_id`).
    pub client_id: Option<Id>,
    /// The contact person at the client.
    pub contact_id: Option<Id>,
    /// The lead, before conversion.
    pub lead_id: Option<Id>,
    /// Sales scenario.
    pub scenario_id: Id,
    /// Current stage.
    pub stage_id: Id,
    /// Open, won or lost (follows the stage's outcome).
    pub status: StageOutcome,
    /// Amount in minor units (kopecks, cents).
    pub amount_minor: Option<i64>,
    /// ISO 4217 currency.
    pub currency: String,
    /// Source (channel, campaign).
    pub source: Option<String>,
    /// The responsible manager.
    pub responsible_id: Option<Id>,
    /// The owning department.
    pub department_id: Option<Id>,
    /// Shared with the department.
    pub shared: bool,
    /// When it was won or lost.
    pub closed_at: Option<Timestamp>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// Input for a new Interest.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInterest {
    /// Short description.
    pub title: String,
    /// The client (exactly one of `client_id`, `lead_id`).
    #[serde(default)]
    pub client_id: Option<Id>,
    /// A contact of that client.
    #[serde(default)]
    pub contact_id: Option<Id>,
    /// The lead.
    #[serde(default)]
    pub lead_id: Option<Id>,
    /// Scenario (default: the first one).
    #[serde(default)]
    pub scenario_id: Option<Id>,
    /// Amount in minor units, 0 or more.
    #[serde(default)]
    pub amount_minor: Option<i64>,
    /// Currency (default `RUB`).
    #[serde(default)]
    pub currency: Option<String>,
    /// Source.
    #[serde(default)]
    pub source: Option<String>,
    /// Responsible manager (default: the client's, else the creating user).
    #[serde(default)]
    pub responsible_id: Option<Id>,
    /// Share with the department.
    #[serde(default)]
    pub shared: bool,
}

/// Changes to an Interest (stage moves have their own endpoint).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InterestPatch {
    /// Title.
    #[serde(default)]
    pub title: Option<String>,
    /// Amount in minor units.
    #[serde(default)]
    pub amount_minor: Option<i64>,
    /// Currency.
    #[serde(default)]
    pub currency: Option<String>,
    /// Contact.
    #[serde(default)]
    pub contact_id: Option<Id>,
    /// Responsible manager.
    #[serde(default)]
    pub responsible_id: Option<Id>,
    /// Shared with the department.
    #[serde(default)]
    pub shared: Option<bool>,
}

/// Move an Interest to a stage of its scenario.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StageMove {
    /// Target stage.
    pub stage_id: Id,
}

/// One entry of an Interest's stage history.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StageChange {
    /// From (absent for the first stage).
    pub from_stage_id: Option<Id>,
    /// To.
    pub to_stage_id: Id,
    /// Who moved it.
    pub changed_by: Option<Id>,
    /// When.
    pub changed_at: Timestamp,
}

/// Kind of an Interaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InteractionKind {
    /// Phone call.
    Call,
    /// Meeting.
    Meeting,
    /// Email.
    Email,
    /// Messenger or chat message.
    Message,
    /// Note.
    Note,
    /// Task.
    Task,
}

impl InteractionKind {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            InteractionKind::Call => "call",
            InteractionKind::Meeting => "meeting",
            InteractionKind::Email => "email",
            InteractionKind::Message => "message",
            InteractionKind::Note => "note",
            InteractionKind::Task => "task",
        }
    }
    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "call" => InteractionKind::Call,
            "meeting" => InteractionKind::Meeting,
            "email" => InteractionKind::Email,
            "message" => InteractionKind::Message,
            "note" => InteractionKind::Note,
            "task" => InteractionKind::Task,
            _ => return None,
        })
    }
}

/// Planned, done or cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InteractionStatus {
    /// In the calendar.
    Planned,
    /// Happened.
    Done,
    /// Will not happen.
    Cancelled,
}

impl InteractionStatus {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            InteractionStatus::Planned => "planned",
            InteractionStatus::Done => "done",
            InteractionStatus::Cancelled => "cancelled",
        }
    }
    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "planned" => InteractionStatus::Planned,
            "done" => InteractionStatus::Done,
            "cancelled" => InteractionStatus::Cancelled,
            _ => return None,
        })
    }
}

/// A logged or planned touch: call, meeting, email, message, note, task.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Interaction {
    /// Interaction id.
    pub id: Id,
    /// Kind.
    pub kind: InteractionKind,
    /// Status.
    pub status: InteractionStatus,
    /// Subject.
    pub subject: String,
    /// Body text.
    pub body: Option<String>,
    /// The client (or `lead_id`).
    pub client_id: Option<Id>,
    /// Contact at the client.
    pub contact_id: Option<Id>,
    /// The lead.
    pub lead_id: Option<Id>,
    /// The Interest it belongs to.
    pub interest_id: Option<Id>,
    /// The dialog it came from.
    pub dialog_id: Option<Id>,
    /// The call it records.
    pub call_id: Option<Id>,
    /// Who does it.
    pub responsible_id: Option<Id>,
    /// When it is planned.
    pub planned_at: Option<Timestamp>,
    /// When it was done.
    pub done_at: Option<Timestamp>,
    /// Who recorded it.
    pub created_by: Option<Id>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// Input for a new Interaction. Give `interest_id`, or exactly one of `client_id`, `lead_id`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInteraction {
    /// Kind.
    pub kind: InteractionKind,
    /// Status (default: `planned` with `planned_at`, else `done`).
    #[serde(default)]
    pub status: Option<InteractionStatus>,
    /// Subject.
    pub subject: String,
    /// Body.
    #[serde(default)]
    pub body: Option<String>,
    /// Client.
    #[serde(default)]
    pub client_id: Option<Id>,
    /// Contact of the client.
    #[serde(default)]
    pub contact_id: Option<Id>,
    /// Lead.
    #[serde(default)]
    pub lead_id: Option<Id>,
    /// Interest (its client or lead is used when none is given).
    #[serde(default)]
    pub interest_id: Option<Id>,
    /// Responsible user (default: the creating user).
    #[serde(default)]
    pub responsible_id: Option<Id>,
    /// When it is planned.
    #[serde(default)]
    pub planned_at: Option<Timestamp>,
    /// When it was done (default: now, for `done`).
    #[serde(default)]
    pub done_at: Option<Timestamp>,
}

/// Changes to an Interaction.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InteractionPatch {
    /// Status; `done` stamps `done_at` when not given.
    #[serde(default)]
    pub status: Option<InteractionStatus>,
    /// Subject.
    #[serde(default)]
    pub subject: Option<String>,
    /// Body (empty clears).
    #[serde(default)]
    pub body: Option<String>,
    /// Planned time.
    #[serde(default)]
    pub planned_at: Option<Timestamp>,
    /// Done time.
    #[serde(default)]
    pub done_at: Option<Timestamp>,
    /// Responsible.
    #[serde(default)]
    pub responsible_id: Option<Id>,
}
