//! The bus between hub nodes. One node needs none: the store's commit sink feeds its hub
//! directly. Several nodes behind a load balancer share one PostgreSQL and a Redis: each
//! node publishes the entries it commits (and ephemeral events such as typing), and every
//! other node hands them to its hub, which sequences them with its own.
//!
//! The bus is an accelerator, never the source of truth: Redis PUB/SUB is at-most-once,
//! so a node also checks the store's last seq every second and reads any gap from the
//! change log (see `hub`). A lost bus message delays an event by at most that second; it
//! never loses it.

pub mod redis;
pub mod resp;

use serde::{Deserialize, Serialize};

use crate::domain::{ChangeEntry, Id};

/// What travels between nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BusMessage {
    /// The publishing node (a node ignores its own messages).
    pub node: String,
    /// The payload.
    #[serde(flatten)]
    pub body: BusBody,
}

/// Payloads.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BusBody {
    /// Entries a node committed, oldest first.
    Changes {
        /// The entries.
        entries: Vec<ChangeEntry>,
    },
    /// An ephemeral event (typing), with its frame already built.
    Ephemeral {
        /// Topics.
        topics: Vec<String>,
        /// Entity.
        entity: String,
        /// Entity id.
        entity_id: Id,
        /// Op.
        op: String,
        /// Owner: user, department, shared.
        owner: Option<(Option<Id>, Option<Id>, bool)>,
        /// The JSON frame.
        frame: String,
    },
}

/// A way to reach the other nodes.
pub trait Bus: Send + Sync + std::fmt::Debug {
    /// Publishes to the other nodes. Never blocks: when the bus cannot keep up the message
    /// is dropped (and counted); the other nodes read committed entries from the store.
    fn publish(&self, body: BusBody);
}
