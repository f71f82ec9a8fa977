//! The Feed (timeline of a client, contact, lead or Interest) and the change log.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Id, Timestamp, Topic};

/// What a Feed entry shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FeedKind {
    /// A note.
    Note,
    /// A task.
    Task,
    /// A meeting.
    Meeting,
    /// A phone call.
    Call,
    /// An email.
    Email,
    /// A messenger or chat message.
    Message,
    /// An Interest was opened.
    Interest,
}

impl FeedKind {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            FeedKind::Note => "note",
            FeedKind::Task => "task",
            FeedKind::Meeting => "meeting",
            FeedKind::Call => "call",
            FeedKind::Email => "email",
            FeedKind::Message => "message",
            FeedKind::Interest => "interest",
        }
    }
    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "note" => FeedKind::Note,
            "task" => FeedKind::Task,
            "meeting" => FeedKind::Meeting,
            "call" => FeedKind::Call,
            "email" => FeedKind::Email,
            "message" => FeedKind::Message,
            "interest" => FeedKind::Interest,
            _ => return None,
        })
    }
}

/// One item on a timeline.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FeedEntry {
    /// Entry id.
    pub id: Id,
    /// What it is.
    pub kind: FeedKind,
    /// The record it shows: `interaction`, `message`, `call`, `interest`.
    pub ref_type: String,
    /// That record's id.
    pub ref_id: Id,
    /// Client.
    pub client_id: Option<Id>,
    /// Contact.
    pub contact_id: Option<Id>,
    /// Lead.
    pub lead_id: Option<Id>,
    /// Interest.
    pub interest_id: Option<Id>,
    /// When it happened.
    pub occurred_at: Timestamp,
    /// One-line title.
    pub title: String,
    /// Start of the text.
    pub preview: Option<String>,
}

/// One change: who changed what, when, with the sequence number consoles resume from.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChangeEntry {
    /// Sequence number, growing in commit order.
    pub seq: i64,
    /// When.
    pub at: Timestamp,
    /// Acting user.
    pub actor_user_id: Option<Id>,
    /// Acting API key.
    pub actor_api_key_id: Option<Id>,
    /// Entity type (`client`, `interest`, `message`, ...).
    pub entity: String,
    /// Entity id.
    pub entity_id: Id,
    /// `create`, `update`, `delete`, `stage`, `convert`, ...
    pub op: String,
    /// The entity after the change (or what changed).
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// Client concerned.
    pub client_id: Option<Id>,
    /// Lead concerned.
    pub lead_id: Option<Id>,
    /// Interest concerned.
    pub interest_id: Option<Id>,
    /// Dialog concerned.
    pub dialog_id: Option<Id>,
    /// Department concerned.
    pub department_id: Option<Id>,
    /// The topics the change was published on (`dialog:7`, `user:3`, ...).
    #[schema(value_type = Vec<String>)]
    #[serde(
        serialize_with = "topics_as_strings",
        deserialize_with = "topics_from_strings"
    )]
    pub topics: Vec<Topic>,
    /// The user who owns the record the change is about (assignee, responsible), when known.
    pub owner_id: Option<Id>,
    /// Whether that record is shared with its department, when known.
    pub shared: Option<bool>,
}

fn topics_as_strings<S: serde::Serializer>(t: &[Topic], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(t.iter().map(ToString::to_string))
}

fn topics_from_strings<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Topic>, D::Error> {
    let v: Vec<String> = Vec::deserialize(d)?;
    // A topic kind from a newer node is skipped, as when reading the stored list.
    Ok(v.iter().filter_map(|t| t.parse().ok()).collect())
}

/// Preview of a text for the Feed: the first 200 characters on one line.
pub fn preview(text: Option<&str>) -> Option<String> {
    let t = text?.split_whitespace().collect::<Vec<_>>().join(" ");
    if t.is_empty() {
        return None;
    }
    let mut out: String = t.chars().take(200).collect();
    if t.chars().count() > 200 {
        out.push('…');
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_are_short_single_lines() {
        assert_eq!(preview(Some("  a\n\n b ")).as_deref(), Some("a b"));
        assert_eq!(preview(Some("   ")), None);
        let long = "x".repeat(500);
        assert_eq!(preview(Some(&long)).expect("some").chars().count(), 201);
    }
}
