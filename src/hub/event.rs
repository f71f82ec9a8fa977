//! [`Event`]: one change-log entry (or one ephemeral signal such as typing), serialized once
//! into the frame every subscriber receives.

use axum::extract::ws::Utf8Bytes;
use serde::Serialize;

use crate::domain::{Actor, ChangeEntry, Id, Timestamp, Topic};
use crate::storage::access;

/// Who owns the record an event is about, for per-connection filtering of live events
/// with the same rule the SQL access predicates use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// Assignee or responsible user.
    pub user_id: Option<Id>,
    /// Department.
    pub department_id: Option<Id>,
    /// Shared with the department.
    pub shared: bool,
}

impl Owner {
    /// Whether `actor` sees the record.
    pub fn visible_to(&self, actor: &Actor) -> bool {
        access::owned_visible(actor, self.user_id, self.department_id, self.shared)
    }
}

/// One event as the hub routes it. The frame is built once and shared by every connection.
#[derive(Debug)]
pub struct Event {
    /// The change-log sequence number; ephemeral events carry the hub position at which
    /// they were published and [`Event::ephemeral`] is set.
    pub seq: i64,
    /// Not stored and never replayed (typing).
    pub ephemeral: bool,
    /// Where it is published.
    pub topics: Box<[Topic]>,
    /// Entity type (`dialog`, `message`, `presence`, `typing`, ...).
    pub entity: Box<str>,
    /// Entity id.
    pub entity_id: Id,
    /// Operation.
    pub op: Box<str>,
    /// The owner of the record, when the change names one.
    pub owner: Option<Owner>,
    /// The JSON text frame.
    pub frame: Utf8Bytes,
}

#[derive(Serialize)]
struct ActorRef {
    user_id: Option<Id>,
    api_key_id: Option<Id>,
}

#[derive(Serialize)]
struct Frame<'a> {
    #[serde(rename = "type")]
    ty: &'static str,
    seq: i64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    ephemeral: bool,
    at: Timestamp,
    topics: Vec<String>,
    entity: &'a str,
    entity_id: Id,
    op: &'a str,
    actor: ActorRef,
    data: &'a serde_json::Value,
}

impl Event {
    /// The event of a committed change. Live and replayed events of the same entry have
    /// byte-identical frames.
    pub fn from_entry(e: &ChangeEntry) -> Self {
        let frame = Frame {
            ty: "event",
            seq: e.seq,
            ephemeral: false,
            at: e.at,
            topics: e.topics.iter().map(ToString::to_string).collect(),
            entity: &e.entity,
            entity_id: e.entity_id,
            op: &e.op,
            actor: ActorRef {
                user_id: e.actor_user_id,
                api_key_id: e.actor_api_key_id,
            },
            data: &e.data,
        };
        let text = serde_json::to_string(&frame).unwrap_or_default();
        Self {
            seq: e.seq,
            ephemeral: false,
            topics: e.topics.clone().into_boxed_slice(),
            entity: e.entity.as_str().into(),
            entity_id: e.entity_id,
            op: e.op.as_str().into(),
            owner: e.shared.map(|shared| Owner {
                user_id: e.owner_id,
                department_id: e.department_id,
                shared,
            }),
            frame: Utf8Bytes::from(text),
        }
    }

    /// An ephemeral event (typing), published at hub position `seq`.
    #[allow(clippy::too_many_arguments)]
    pub fn ephemeral(
        seq: i64,
        topics: Vec<Topic>,
        entity: &str,
        entity_id: Id,
        op: &str,
        actor: &Actor,
        owner: Option<Owner>,
        data: &serde_json::Value,
    ) -> Self {
        let frame = Frame {
            ty: "event",
            seq,
            ephemeral: true,
            at: Timestamp::now(),
            topics: topics.iter().map(ToString::to_string).collect(),
            entity,
            entity_id,
            op,
            actor: ActorRef {
                user_id: actor.user_id(),
                api_key_id: actor.api_key_id(),
            },
            data,
        };
        let text = serde_json::to_string(&frame).unwrap_or_default();
        Self {
            seq,
            ephemeral: true,
            topics: topics.into_boxed_slice(),
            entity: entity.into(),
            entity_id,
            op: op.into(),
            owner,
            frame: Utf8Bytes::from(text),
        }
    }

    /// Whether the event is about the record a topic follows (a `dialog` event on
    /// `dialog:{id}`, a `client` event on `client:{id}`): such events carry the record's
    /// current owner, so a subscription re-checks access on them.
    pub fn is_root_of(&self, topic: Topic) -> bool {
        use crate::domain::TopicKind as K;
        let kind = match topic.kind {
            K::Dialog => "dialog",
            K::Client => "client",
            K::Lead => "lead",
            K::Interest => "interest",
            K::User | K::Dept => return false,
        };
        &*self.entity == kind && self.entity_id == topic.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_is_stable_json() {
        let e = ChangeEntry {
            seq: 42,
            at: Timestamp(1_700_000_000_000_000),
            actor_user_id: Some(3),
            actor_api_key_id: None,
            entity: "message".into(),
            entity_id: 9,
            op: "create".into(),
            data: serde_json::json!({"id": 9, "body": "привет"}),
            client_id: Some(5),
            lead_id: None,
            interest_id: None,
            dialog_id: Some(7),
            department_id: Some(1),
            topics: vec![Topic::dialog(7), Topic::client(5)],
            owner_id: Some(3),
            shared: Some(true),
        };
        let ev = Event::from_entry(&e);
        let v: serde_json::Value = serde_json::from_str(ev.frame.as_str()).expect("json");
        assert_eq!(v["type"], "event");
        assert_eq!(v["seq"], 42);
        assert_eq!(v["topics"], serde_json::json!(["dialog:7", "client:5"]));
        assert_eq!(v["data"]["body"], "привет");
        assert!(v.get("ephemeral").is_none());
        assert_eq!(
            ev.owner,
            Some(Owner {
                user_id: Some(3),
                department_id: Some(1),
                shared: true
            })
        );
        assert!(!ev.is_root_of(Topic::dialog(7)));
    }
}
