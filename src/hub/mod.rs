//! The hub of one node: puts committed changes in sequence order and fans them out to the
//! WebSocket connections subscribed to their topics.
//!
//! ```text
//! store commit ──► Inbox (bounded) ──► sequencer task ──► ring (last N events)
//!  (and the bus,        │ full: drop,        │ in seq order,   └► Router: topic → connections
//!   multi-node)         │ read the log later │ gaps filled         (bounded queue each;
//!                       ▼                    │ from the store       full: kicked as `slow`)
//!                   known_max ───────────────┘
//! ```
//!
//! Why it cannot lose or duplicate: the change log is the source of truth and every seq is
//! delivered exactly once, in order, by one task. The in-memory path only saves a read: an
//! entry dropped because the inbox was full, or a seq that arrives late (two PostgreSQL
//! writers committing at once), is read back from the store once a later seq is known to be
//! committed, which the commit-order lock makes authoritative (see `storage`).
//! A connection that subscribes with `since` is served from the ring when it reaches back
//! far enough, else from the store, and then live; the handover is gap-free because the
//! connection is registered before the replay's upper bound is read (see `http::ws`).

pub mod event;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

pub use event::{Event, Owner};

use crate::bus::{Bus, BusBody};
use crate::domain::{ChangeEntry, Topic};
use crate::storage::{CommitSink, Store, StoreResult};

/// The most events one subscription may replay (`realtime.max_replay` is capped to it).
pub const MAX_REPLAY: usize = 10_000;

/// Tuning of the hub; see `[realtime]` in the config.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Entries the inbox holds before it drops (and the sequencer reads the log instead).
    pub inbox_capacity: usize,
    /// Events kept in memory for resuming connections.
    pub ring_capacity: usize,
    /// How long a missing seq is awaited before it is read from the store.
    pub gap_wait: Duration,
    /// Period of the check of the store's last seq (catches bus losses); zero turns it off.
    pub position_check: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            inbox_capacity: 16_384,
            ring_capacity: 20_000,
            gap_wait: Duration::from_millis(3),
            position_check: Duration::ZERO,
        }
    }
}

/// A connection's receiving end as the router sees it.
#[derive(Debug)]
pub struct ConnHandle {
    /// Unique per node.
    pub id: u64,
    tx: mpsc::Sender<Arc<Event>>,
    /// Set when the queue overflowed; the connection closes with a resumable `slow` code.
    slow: AtomicBool,
    /// Wakes the connection when it was marked slow.
    pub kicked: Notify,
    /// The last seq put in the queue (one delivery per event even when several of the
    /// connection's topics match).
    last_enqueued: AtomicI64,
}

impl ConnHandle {
    /// Whether the connection fell behind and must close.
    pub fn is_slow(&self) -> bool {
        self.slow.load(Ordering::Acquire)
    }
}

/// A subscriber's queue: the handle to register and the receiving end to drain.
#[derive(Debug)]
pub struct Subscriber {
    /// Registered with [`Hub::subscribe`].
    pub handle: Arc<ConnHandle>,
    /// Events in hub order.
    pub rx: mpsc::Receiver<Arc<Event>>,
}

/// Topic → connections.
#[derive(Debug, Default)]
struct Router {
    topics: RwLock<HashMap<Topic, Vec<Arc<ConnHandle>>>>,
}

impl Router {
    fn add(&self, topic: Topic, h: &Arc<ConnHandle>) {
        if let Ok(mut m) = self.topics.write() {
            let v = m.entry(topic).or_default();
            if !v.iter().any(|x| x.id == h.id) {
                v.push(h.clone());
            }
        }
    }

    fn remove(&self, topic: Topic, id: u64) {
        if let Ok(mut m) = self.topics.write() {
            if let Some(v) = m.get_mut(&topic) {
                v.retain(|x| x.id != id);
                if v.is_empty() {
                    m.remove(&topic);
                }
            }
        }
    }

    /// Queues `ev` once for every connection following one of its topics, then runs `done`
    /// while still holding the routing table. Returns the number of deliveries queued.
    fn fan_out(&self, ev: &Arc<Event>, metrics: &HubMetrics, done: impl FnOnce()) -> u64 {
        let Ok(m) = self.topics.read() else {
            done();
            return 0;
        };
        let mut n = 0;
        for t in ev.topics.iter() {
            let Some(conns) = m.get(t) else { continue };
            for h in conns {
                // Only the sequencer writes `last_enqueued`; ephemeral events (published from
                // any task) do not touch it and may reach a connection twice, which is harmless.
                if !ev.ephemeral && h.last_enqueued.swap(ev.seq, Ordering::Relaxed) == ev.seq {
                    continue;
                }
                if h.is_slow() {
                    continue;
                }
                match h.tx.try_send(ev.clone()) {
                    Ok(()) => n += 1,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        h.slow.store(true, Ordering::Release);
                        h.kicked.notify_one();
                        metrics.slow_kicks.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
        }
        done();
        n
    }
}

/// Counters for `/metrics` and the load harness.
#[derive(Debug, Default)]
pub struct HubMetrics {
    /// Events sequenced.
    pub events: AtomicU64,
    /// Deliveries queued to connections.
    pub deliveries: AtomicU64,
    /// Entries dropped by the full inbox (and read back from the store).
    pub inbox_drops: AtomicU64,
    /// Reads of the store to fill gaps.
    pub gap_reads: AtomicU64,
    /// Connections kicked as slow.
    pub slow_kicks: AtomicU64,
}

/// Committed entries waiting for the sequencer.
#[derive(Debug)]
struct Inbox {
    queue: Mutex<VecDeque<ChangeEntry>>,
    capacity: usize,
    known_max: AtomicI64,
    notify: Notify,
}

/// The store's link to the hub. Weak: the hub holds the store, and a strong link back would
/// keep both (and the database pool) alive after the app is gone.
#[derive(Debug)]
struct HubSink(std::sync::Weak<Hub>);

impl CommitSink for HubSink {
    fn committed(&self, entries: Vec<ChangeEntry>) {
        let Some(hub) = self.0.upgrade() else { return };
        if let Some(bus) = hub.bus() {
            bus.publish(BusBody::Changes {
                entries: entries.clone(),
            });
        }
        hub.offer(entries);
    }
}

/// What a replay found.
#[derive(Debug)]
pub enum Replay {
    /// The events of the topic after `since`, oldest first (possibly none).
    Events(Vec<Arc<Event>>),
    /// More than the limit was missed: reload a snapshot.
    TooOld,
}

/// The hub of this node. Build with [`Hub::start`].
#[derive(Debug)]
pub struct Hub {
    store: Arc<dyn Store>,
    config: HubConfig,
    inbox: Inbox,
    router: Router,
    ring: RwLock<VecDeque<Arc<Event>>>,
    head: AtomicI64,
    /// Wakes waiters (routing reactions, tests) when the head moves.
    head_moved: tokio::sync::watch::Sender<i64>,
    next_conn: AtomicU64,
    bus: RwLock<Option<Arc<dyn Bus>>>,
    /// Counters.
    pub metrics: HubMetrics,
}

impl Hub {
    /// Creates the hub at the store's current position, registers it as the store's commit
    /// sink and starts the sequencer.
    ///
    /// # Errors
    /// The store cannot tell its last seq.
    pub async fn start(
        store: Arc<dyn Store>,
        config: HubConfig,
        shutdown: CancellationToken,
    ) -> StoreResult<Arc<Self>> {
        let head = store.last_seq().await?;
        let (head_moved, _) = tokio::sync::watch::channel(head);
        let hub = Arc::new(Self {
            store: store.clone(),
            inbox: Inbox {
                queue: Mutex::new(VecDeque::new()),
                capacity: config.inbox_capacity.max(16),
                known_max: AtomicI64::new(head),
                notify: Notify::new(),
            },
            config,
            router: Router::default(),
            ring: RwLock::new(VecDeque::new()),
            head: AtomicI64::new(head),
            head_moved,
            next_conn: AtomicU64::new(1),
            bus: RwLock::new(None),
            metrics: HubMetrics::default(),
        });
        store.set_commit_sink(Arc::new(HubSink(Arc::downgrade(&hub))));
        tokio::spawn(hub.clone().run_sequencer(shutdown));
        Ok(hub)
    }

    /// Connects the hub to other nodes: local commits and ephemeral events are published.
    pub fn set_bus(&self, bus: Arc<dyn Bus>) {
        if let Ok(mut b) = self.bus.write() {
            *b = Some(bus);
        }
    }

    fn bus(&self) -> Option<Arc<dyn Bus>> {
        self.bus.read().ok().and_then(|b| b.clone())
    }

    /// A message from another node.
    pub fn receive_remote(&self, body: BusBody) {
        match body {
            BusBody::Changes { entries } => self.offer(entries),
            BusBody::Ephemeral {
                topics,
                entity,
                entity_id,
                op,
                owner,
                frame,
            } => {
                let ev = Event {
                    seq: self.head(),
                    ephemeral: true,
                    topics: topics.iter().filter_map(|t| t.parse().ok()).collect(),
                    entity: entity.into(),
                    entity_id,
                    op: op.into(),
                    owner: owner.map(|(user_id, department_id, shared)| Owner {
                        user_id,
                        department_id,
                        shared,
                    }),
                    frame: frame.into(),
                };
                self.fan_out_ephemeral(ev);
            }
        }
    }

    /// The last seq delivered to connections.
    pub fn head(&self) -> i64 {
        self.head.load(Ordering::Acquire)
    }

    /// A receiver that sees the head move.
    pub fn watch_head(&self) -> tokio::sync::watch::Receiver<i64> {
        self.head_moved.subscribe()
    }

    /// The store behind the hub.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Hands committed entries to the sequencer. Never blocks: when the inbox is full the
    /// entries are dropped and read back from the store.
    pub fn offer(&self, entries: Vec<ChangeEntry>) {
        let Some(max) = entries.iter().map(|e| e.seq).max() else {
            return;
        };
        if let Ok(mut q) = self.inbox.queue.lock() {
            for e in entries {
                if q.len() < self.inbox.capacity {
                    q.push_back(e);
                } else {
                    self.metrics.inbox_drops.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.inbox.known_max.fetch_max(max, Ordering::AcqRel);
        self.inbox.notify.notify_one();
    }

    /// Tells the sequencer that `seq` is committed (from a bus or a position check), so a
    /// gap up to it is read from the store.
    pub fn known_committed(&self, seq: i64) {
        if self.inbox.known_max.fetch_max(seq, Ordering::AcqRel) < seq {
            self.inbox.notify.notify_one();
        }
    }

    /// A new subscriber queue of `capacity` events.
    pub fn connect(&self, capacity: usize) -> Subscriber {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        Subscriber {
            handle: Arc::new(ConnHandle {
                id: self.next_conn.fetch_add(1, Ordering::Relaxed),
                tx,
                slow: AtomicBool::new(false),
                kicked: Notify::new(),
                last_enqueued: AtomicI64::new(0),
            }),
            rx,
        }
    }

    /// Routes `topic`'s events to the connection from now on.
    pub fn subscribe(&self, topic: Topic, h: &Arc<ConnHandle>) {
        self.router.add(topic, h);
    }

    /// Stops routing `topic` to the connection.
    pub fn unsubscribe(&self, topic: Topic, id: u64) {
        self.router.remove(topic, id);
    }

    /// Publishes an ephemeral event (typing) to the connections of this node and, through
    /// the bus, of the others. It is not stored, not sequenced and not replayed.
    pub fn publish_ephemeral(&self, ev: Event) {
        if let Some(bus) = self.bus() {
            bus.publish(BusBody::Ephemeral {
                topics: ev.topics.iter().map(ToString::to_string).collect(),
                entity: ev.entity.to_string(),
                entity_id: ev.entity_id,
                op: ev.op.to_string(),
                owner: ev.owner.map(|o| (o.user_id, o.department_id, o.shared)),
                frame: ev.frame.as_str().to_owned(),
            });
        }
        self.fan_out_ephemeral(ev);
    }

    /// Publishes an ephemeral event to this node's connections only: for what each node
    /// works out for its own consoles (suggestions for the dialogs they have open).
    pub fn publish_local(&self, ev: Event) {
        self.fan_out_ephemeral(ev);
    }

    /// Whether a connection of this node follows `topic`.
    pub fn followed_here(&self, topic: Topic) -> bool {
        self.router
            .topics
            .read()
            .map(|m| m.get(&topic).is_some_and(|v| !v.is_empty()))
            .unwrap_or(false)
    }

    fn fan_out_ephemeral(&self, ev: Event) {
        let ev = Arc::new(ev);
        let n = self.router.fan_out(&ev, &self.metrics, || {});
        self.metrics.deliveries.fetch_add(n, Ordering::Relaxed);
    }

    /// Events of `topic` with `since < seq <= until`, at most `limit`; from memory when the
    /// ring reaches back far enough, else from the store.
    ///
    /// # Errors
    /// The store failed.
    pub async fn replay(
        &self,
        topic: Topic,
        since: i64,
        until: i64,
        limit: usize,
    ) -> StoreResult<Replay> {
        if since >= until {
            return Ok(Replay::Events(Vec::new()));
        }
        // The store answers at most 10,001 rows per read: a longer replay is a resync.
        let limit = limit.clamp(1, MAX_REPLAY);
        if let Some(r) = self.replay_from_ring(topic, since, until, limit) {
            return Ok(r);
        }
        let limit_i = i64::try_from(limit).unwrap_or(i64::MAX - 1);
        let entries = self
            .store
            .topic_changes(topic, since, until, limit_i + 1)
            .await?;
        if entries.len() > limit {
            return Ok(Replay::TooOld);
        }
        Ok(Replay::Events(
            entries
                .iter()
                .map(|e| Arc::new(Event::from_entry(e)))
                .collect(),
        ))
    }

    fn replay_from_ring(
        &self,
        topic: Topic,
        since: i64,
        until: i64,
        limit: usize,
    ) -> Option<Replay> {
        let ring = self.ring.read().ok()?;
        let first = ring.front()?.seq;
        // The ring holds every event from `first` on; anything at or before `since` is not
        // needed, so it answers when `since + 1 >= first`.
        if since + 1 < first {
            return None;
        }
        let start = ring.partition_point(|e| e.seq <= since);
        let mut out = Vec::new();
        for e in ring.range(start..) {
            if e.seq > until {
                break;
            }
            if e.topics.contains(&topic) {
                if out.len() == limit {
                    return Some(Replay::TooOld);
                }
                out.push(e.clone());
            }
        }
        Some(Replay::Events(out))
    }

    /// Events after `since` in hub order, at most `limit` (for in-process consumers such as
    /// routing reactions); from the ring or the store.
    ///
    /// # Errors
    /// The store failed.
    pub async fn events_after(&self, since: i64, limit: usize) -> StoreResult<Vec<Arc<Event>>> {
        let head = self.head();
        if since >= head {
            return Ok(Vec::new());
        }
        if let Ok(ring) = self.ring.read() {
            if let Some(first) = ring.front().map(|e| e.seq) {
                if since + 1 >= first {
                    let start = ring.partition_point(|e| e.seq <= since);
                    return Ok(ring.range(start..).take(limit).cloned().collect());
                }
            }
        }
        let entries = self
            .store
            .changes_since(since, i64::try_from(limit).unwrap_or(1000))
            .await?;
        Ok(entries
            .iter()
            .filter(|e| e.seq <= head)
            .map(|e| Arc::new(Event::from_entry(e)))
            .collect())
    }

    async fn run_sequencer(self: Arc<Self>, shutdown: CancellationToken) {
        let mut pending: BTreeMap<i64, ChangeEntry> = BTreeMap::new();
        let mut gap_since: Option<tokio::time::Instant> = None;
        let mut position = if self.config.position_check.is_zero() {
            None
        } else {
            Some(tokio::time::interval(self.config.position_check))
        };
        loop {
            let gap_deadline = gap_since.map(|t| t + self.config.gap_wait);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.inbox.notify.notified() => {}
                () = async {
                    match gap_deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                } => {}
                _ = async {
                    match position.as_mut() {
                        Some(p) => p.tick().await,
                        None => std::future::pending().await,
                    }
                } => {
                    match self.store.last_seq().await {
                        Ok(s) => self.known_committed(s),
                        Err(e) => tracing::warn!(error = %e, "position check failed"),
                    }
                }
            }
            let drained: Vec<ChangeEntry> = match self.inbox.queue.lock() {
                Ok(mut q) => q.drain(..).collect(),
                Err(_) => Vec::new(),
            };
            let head = self.head();
            for e in drained {
                if e.seq > head {
                    pending.insert(e.seq, e);
                }
            }
            self.deliver_contiguous(&mut pending);
            let head = self.head();
            let known = self.inbox.known_max.load(Ordering::Acquire);
            if known <= head {
                gap_since = None;
                continue;
            }
            let now = tokio::time::Instant::now();
            let overdue = gap_since.is_some_and(|t| now >= t + self.config.gap_wait);
            if gap_since.is_none() && pending.len() < self.inbox.capacity {
                gap_since = Some(now);
                continue;
            }
            if !overdue && pending.len() < self.inbox.capacity {
                continue;
            }
            // A later seq is committed while an earlier one has not come: read the log.
            self.metrics.gap_reads.fetch_add(1, Ordering::Relaxed);
            match self.store.changes_since(head, 1000).await {
                Ok(entries) if !entries.is_empty() => {
                    let upto = entries.last().map_or(head, |e| e.seq);
                    for e in entries {
                        pending.entry(e.seq).or_insert(e);
                    }
                    // Every seq at or below `upto` that is not in the log never will be
                    // (a rolled-back transaction): deliver what exists, in order.
                    let mut ready: Vec<ChangeEntry> = Vec::new();
                    while let Some(entry) = pending.first_entry() {
                        if *entry.key() > upto {
                            break;
                        }
                        ready.push(entry.remove());
                    }
                    for e in ready {
                        self.deliver(&e);
                    }
                    self.deliver_contiguous(&mut pending);
                    gap_since = (self.inbox.known_max.load(Ordering::Acquire) > self.head())
                        .then_some(tokio::time::Instant::now());
                }
                Ok(_) => gap_since = Some(tokio::time::Instant::now()),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the change log to fill a gap");
                    gap_since = Some(tokio::time::Instant::now() + Duration::from_millis(100));
                }
            }
        }
    }

    fn deliver_contiguous(&self, pending: &mut BTreeMap<i64, ChangeEntry>) {
        loop {
            let next = self.head() + 1;
            match pending.remove(&next) {
                Some(e) => self.deliver(&e),
                None => break,
            }
        }
        // Anything at or below the head is a duplicate (a bus echo, a late gap fill).
        let head = self.head();
        while pending.first_key_value().is_some_and(|(k, _)| *k <= head) {
            pending.pop_first();
        }
    }

    fn deliver(&self, entry: &ChangeEntry) {
        if entry.seq <= self.head() {
            return;
        }
        let ev = Arc::new(Event::from_entry(entry));
        if let Ok(mut ring) = self.ring.write() {
            ring.push_back(ev.clone());
            while ring.len() > self.config.ring_capacity.max(1) {
                ring.pop_front();
            }
        }
        // The head moves after the fan-out and before the routing table is released: a
        // connection registers a topic under the table's write lock and then reads the head,
        // so every event up to that head was routed before it registered (and is in the
        // replay) or after (and is in its queue). Moving the head after the release would
        // let an event slip between the two (see `http::ws::subscriptions`).
        let seq = entry.seq;
        let n = self.router.fan_out(&ev, &self.metrics, || {
            self.head.store(seq, Ordering::Release)
        });
        self.metrics.events.fetch_add(1, Ordering::Relaxed);
        self.metrics.deliveries.fetch_add(n, Ordering::Relaxed);
        self.head_moved.send_replace(entry.seq);
    }
}
