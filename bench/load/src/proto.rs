//! What the orchestrator and its worker processes say to each other: the worker's spec
//! (first line on its stdin), commands (one word a line on stdin), and reports (lines that
//! start with [`REPORT_PREFIX`] on its stdout, one JSON object each).

use serde::{Deserialize, Serialize};

use crate::hist::SparseHist;

/// Lines of a worker's stdout that carry a report start with this.
pub const REPORT_PREFIX: &str = "@@report ";

/// Which server a worker talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Proto {
    /// Kommutator's `/ws/operator` (protocol v1).
    Hub,
    /// Centrifuge client protocol v1, JSON.
    Peer,
}

/// A signed-in operator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Cred {
    /// User id.
    pub user_id: i64,
    /// Session token (`Authorization: Bearer`).
    pub token: String,
}

/// What one worker process does.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSpec {
    /// Protocol.
    pub proto: Proto,
    /// WebSocket URLs; connection `g` uses `urls[g % len]`.
    pub urls: Vec<String>,
    /// Global index of this worker's first connection (source address, user, node).
    pub first: usize,
    /// Connections.
    pub count: usize,
    /// Hub: connection `g` signs in as `creds[g % len]`.
    pub creds: Vec<Cred>,
    /// Hub topics per connection: `user` (its own user), `dept` (`dept_id`), or a literal
    /// topic.
    pub topics: Vec<String>,
    /// Department of the `dept` topic.
    pub dept_id: i64,
    /// Peer: the channel to subscribe to.
    pub channel: String,
    /// Handshakes in flight at once.
    pub concurrency: usize,
    /// WebSocket read buffer per connection, bytes.
    pub read_buffer: usize,
    /// Keep every `dept` seq each connection receives (the storm's ground truth).
    pub reference: bool,
    /// Attempts at the first connection before it counts as failed.
    pub connect_attempts: u32,
    /// Set TCP_QUICKACK after every read (ACK at once instead of delayed).
    #[serde(default)]
    pub quickack: bool,
}

/// A connection's record of the events it received on the `dept` topic (after its first
/// subscription), for the gap/duplicate check.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Digest {
    /// Index into the worker's `creds` (whose reference stream applies).
    pub user_id: i64,
    /// `until` of the first `dept` subscription: events after it are expected.
    pub start: i64,
    /// Events received with `seq > start`.
    pub count: u64,
    /// Wrapping sum of their seqs.
    pub sum: u64,
    /// Wrapping sum of a mix of each seq (tells swapped sets apart).
    pub mix: u64,
    /// Highest seq received.
    pub last: i64,
    /// Events that came with a seq not above the highest one received before (out of
    /// order, or a duplicate; duplicates also make `count` too high).
    pub dups: u64,
    /// Every seq, for reference connections only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seqs: Vec<i64>,
    /// Whether the connection is up now.
    pub up: bool,
}

/// A 64-bit mix of a seq (splitmix64), summed into [`Digest::mix`].
pub fn mix(seq: i64) -> u64 {
    let mut z = (seq as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Counters of a worker since it started (the orchestrator takes differences).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Stats {
    /// WebSocket text frames received.
    pub frames: u64,
    /// Events received (hub: `event` frames; peer: publications, one per line).
    pub events: u64,
    /// Hub: `message`/`create` events; peer: publications.
    pub msgs: u64,
    /// Of those, the ones carrying the harness's send timestamp.
    pub stamped: u64,
    /// Bytes of text received.
    pub bytes: u64,
    /// Connections up now.
    pub up: u64,
    /// Successful (re)subscriptions after the first.
    pub reconnects: u64,
    /// Closes by the server, by close code (0: dropped without a close frame).
    pub closes: Vec<(u16, u64)>,
    /// `resync` replies (more missed than the hub replays).
    pub resyncs: u64,
    /// `error` frames.
    pub errors: u64,
    /// Failed connection attempts.
    pub connect_failures: u64,
    /// Digest duplicates (see [`Digest::dups`]), all connections.
    pub dups: u64,
    /// The first error seen, for the log.
    pub first_error: Option<String>,
    /// Latency of stamped messages since the last `reset`, microseconds.
    pub latency: SparseHist,
    /// Hub: from the send time to the event's `at` (the write transaction's start).
    #[serde(default)]
    pub to_commit: SparseHist,
    /// Hub: from the event's `at` to receipt.
    #[serde(default)]
    pub from_commit: SparseHist,
    /// Lowest highest-`dept`-seq over the connections that are up (for draining).
    pub min_last: i64,
}

/// A worker's report.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Report {
    /// Every connection made its first attempt(s).
    Ready {
        /// Connected and subscribed.
        ok: usize,
        /// Gave up.
        failed: usize,
        /// Since the worker started.
        elapsed_ms: u64,
        /// Counters.
        stats: Stats,
    },
    /// Answer to `stats` and `reset`.
    Stats {
        /// Counters.
        stats: Stats,
    },
    /// Answer to `storm`: every connection was dropped and has resubscribed.
    Resumed {
        /// Resubscribed.
        ok: usize,
        /// Connections that were up before the storm.
        target: usize,
        /// From the drop to the last `subscribed`.
        elapsed_ms: u64,
        /// Counters.
        stats: Stats,
    },
    /// Answer to `final`: counters and each connection's digest.
    Final {
        /// Counters.
        stats: Stats,
        /// One per connection.
        digests: Vec<Digest>,
    },
}
