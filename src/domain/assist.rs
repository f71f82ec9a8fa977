//! iConsultant's vocabulary: request types, the classifier's reading of an inquiry, and
//! operators' verdicts on it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Id, Timestamp};

/// A request type (1C:CRM "тип обращения"): a class of inquiries defined by an admin, such
/// as a sales inquiry, a claim or a bug report. Its `key` is the classifier's label.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RequestType {
    /// Stable key (`interest`, `claim`, `bug`, `other`, or the admin's own): lowercase
    /// letters, digits, `_` and `-`, at most 64 bytes.
    pub key: String,
    /// Display name.
    pub name: String,
    /// The department whose queue a new inquiry of this type joins when the type is applied
    /// on arrival; none keeps the channel's department.
    pub department_id: Option<Id>,
    /// The classifier applies the type by itself when its probability is at least this
    /// (0 < threshold ≤ 1); below it the operator sees a hint.
    pub auto_threshold: f64,
    /// Order in pickers.
    pub position: i64,
    /// Created.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
}

/// Creating or changing a request type (`PUT /api/v1/request-types/{key}`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestTypeInput {
    /// Display name.
    pub name: String,
    /// Department for inquiries of this type (null: the channel's).
    #[serde(default)]
    pub department_id: Option<Id>,
    /// Auto-apply threshold, 0 < t ≤ 1 (default 0.8).
    #[serde(default)]
    pub auto_threshold: Option<f64>,
    /// Order in pickers (default: after the others).
    #[serde(default)]
    pub position: Option<i64>,
}

/// One type with its probability in a [`Classification`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TypeScore {
    /// Request type key.
    #[serde(rename = "type")]
    pub request_type: String,
    /// Probability, 0..1.
    pub p: f64,
}

/// The classifier's reading of an inbound text message, stored with the message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Classification {
    /// The model that read it (`ngram:<id or seed>`).
    pub model: String,
    /// Every current request type, most probable first.
    pub ranked: Vec<TypeScore>,
    /// The type applied to the inquiry because its probability reached its threshold;
    /// none means the reading is a hint for the operator.
    pub applied: Option<String>,
    /// A quick reading by engine 1's model kept beside engine 2. On a stored inbound
    /// message, engine 2's reading replaces it a moment later (see `docs/iconsultant.md`):
    /// the message is never held back while the encoder reads it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub provisional: bool,
}

impl Classification {
    /// The most probable type.
    pub fn top(&self) -> Option<&TypeScore> {
        self.ranked.first()
    }
}

/// An operator's verdict on a reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The top type is right.
    Like,
    /// It is wrong; `request_type` says which is right.
    Dislike,
}

impl Verdict {
    /// Stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Like => "like",
            Verdict::Dislike => "dislike",
        }
    }
    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "like" => Some(Verdict::Like),
            "dislike" => Some(Verdict::Dislike),
            _ => None,
        }
    }
}

/// `POST /api/v1/messages/{id}/classification`: like the reading, or dislike it and name
/// the right type.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackInput {
    /// Like or dislike.
    pub verdict: Verdict,
    /// The right type: required with `dislike`; with `like` it must be the top type or
    /// absent.
    #[serde(default)]
    pub request_type: Option<String>,
}

/// A stored verdict: one labelled example for the classifier.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Feedback {
    /// Id (increasing: the order the classifier learns them in).
    pub id: Id,
    /// The message judged.
    pub message_id: Id,
    /// Who judged it.
    pub user_id: Id,
    /// The top type of the reading, when there was one.
    pub predicted: Option<String>,
    /// The right type.
    pub label: String,
    /// Like or dislike.
    pub verdict: Verdict,
    /// The text that was classified.
    pub text: String,
    /// When it was given (last changed).
    pub updated_at: Timestamp,
}

/// A trained model as stored.
#[derive(Debug, Clone)]
pub struct StoredModel {
    /// Id.
    pub id: Id,
    /// Engine (`ngram`).
    pub engine: String,
    /// The engine's serialized model.
    pub model: Vec<u8>,
    /// The last feedback id it was trained on.
    pub feedback_upto: Id,
    /// Examples trained on.
    pub examples: i64,
    /// Size of the held-back slice it was measured on.
    pub holdout_size: i64,
    /// Its accuracy there.
    pub holdout_accuracy: Option<f64>,
    /// The accuracy of the model it replaced on the same slice.
    pub previous_accuracy: Option<f64>,
    /// When it was trained.
    pub created_at: Timestamp,
}

/// The text the classifier reads for a message: the subject and the new text.
pub fn classifiable_text(subject: Option<&str>, text: Option<&str>) -> Option<String> {
    let parts: Vec<&str> = [subject, text]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if parts.is_empty() {
        None
    } else {
        Some(parts.join("\n"))
    }
}

/// Checks a request type key.
pub fn valid_type_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 64
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}
