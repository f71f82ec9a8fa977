//! The domain model: entities with the names of the 1C:CRM glossary (see PRODUCT.md), their
//! inputs, and the pure validation and normalization rules every write goes through.
//!
//! Nothing here does I/O. Storage turns these into rows; HTTP turns them into JSON.

mod assist;
mod canned;
mod clients;
mod dialogs;
mod feed;
mod identity;
mod interests;
mod kb;
mod routing;
mod telephony;
mod time_util;
mod topic;
mod users;
pub mod validate;

pub use assist::*;
pub use canned::*;
pub use clients::*;
pub use dialogs::*;
pub use feed::*;
pub use identity::*;
pub use interests::*;
pub use kb::*;
pub use routing::*;
pub use telephony::*;
pub use time_util::Timestamp;
pub use topic::{ParseTopicError, Topic, TopicKind};
pub use users::*;
pub use validate::{FieldError, Limits};

/// Database id of any entity.
pub type Id = i64;

/// Who a row belongs to: a client (optionally one of its contacts) or a lead.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PartyRef {
    /// A known client.
    Client(Id),
    /// A lead: an unknown sender not yet turned into a client.
    Lead(Id),
}

/// A page of results with an opaque cursor for the next one (absent on the last page).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; `null` when there is none.
    pub next_cursor: Option<String>,
}
