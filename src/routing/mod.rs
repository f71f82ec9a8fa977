//! Operator routing at run time: presence from connections (with a grace period), queue
//! re-drain the moment capacity frees up, re-offer of unanswered dialogs, node heartbeats.
//!
//! The decisions themselves (sticky manager, round-robin, least-loaded, capacity) are made
//! in the store, inside the transaction that assigns (see `storage::routing`). This module
//! decides *when*: it follows the hub's event stream and drains a department's queue on
//! every event that can free or add capacity (a dialog closed, transferred or queued, an
//! operator coming online, a capacity raised, a call ended) instead of polling.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::domain::{Id, Timestamp};
use crate::hub::Hub;
use crate::storage::Store;

/// How often a node says it is alive, and after how long without it a node counts as dead.
const HEARTBEAT: Duration = Duration::from_secs(5);
const NODE_DEAD_AFTER: Duration = Duration::from_secs(20);

/// The routing service of one node.
#[derive(Debug)]
pub struct Routing {
    store: Arc<dyn Store>,
    /// Open operator connections on this node, per user: the store hears only of a user's
    /// first and last connection here (a console with many tabs, a reconnect storm).
    local: std::sync::Mutex<std::collections::HashMap<Id, usize>>,
    node_id: String,
    grace: Duration,
    started: Timestamp,
    shutdown: CancellationToken,
}

impl Routing {
    /// Starts the background tasks: heartbeat and node sweep, event-driven re-drain,
    /// re-offer timer, and the expiry of presence left by a previous run.
    pub fn start(
        store: Arc<dyn Store>,
        hub: Arc<Hub>,
        node_id: String,
        grace: Duration,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let r = Arc::new(Self {
            store,
            local: std::sync::Mutex::new(std::collections::HashMap::new()),
            node_id,
            grace,
            started: Timestamp::now(),
            shutdown,
        });
        tokio::spawn(r.clone().run_heartbeat());
        tokio::spawn(r.clone().run_reactions(hub));
        tokio::spawn(r.clone().run_reoffer());
        tokio::spawn(r.clone().expire_leftovers());
        r
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// An operator connection opened: presence back to what they chose.
    pub async fn connected(&self, user_id: Id) {
        let first = match self.local.lock() {
            Ok(mut m) => {
                let n = m.entry(user_id).or_insert(0);
                *n += 1;
                *n == 1
            }
            Err(_) => true,
        };
        if !first {
            return;
        }
        if let Err(e) = self.store.presence_connected(user_id, &self.node_id).await {
            tracing::warn!(error = %e, user_id, "cannot record an operator connection");
        }
    }

    /// An operator connection closed: after the grace period, offline unless they came back.
    pub fn disconnected(self: &Arc<Self>, user_id: Id) {
        let last = match self.local.lock() {
            Ok(mut m) => match m.get_mut(&user_id) {
                Some(n) if *n > 1 => {
                    *n -= 1;
                    false
                }
                _ => {
                    m.remove(&user_id);
                    true
                }
            },
            Err(_) => true,
        };
        if !last {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            if let Err(e) = me.store.presence_disconnected(user_id, &me.node_id).await {
                tracing::warn!(error = %e, user_id, "cannot record an operator disconnect");
            }
            tokio::select! {
                () = me.shutdown.cancelled() => return,
                () = tokio::time::sleep(me.grace) => {}
            }
            me.expire(user_id).await;
        });
    }

    async fn expire(&self, user_id: Id) {
        let alive_after = Timestamp(Timestamp::now().micros() - micros(NODE_DEAD_AFTER));
        if let Err(e) = self.store.presence_expire(user_id, alive_after).await {
            tracing::warn!(error = %e, user_id, "cannot expire presence");
        }
    }

    /// Drains every department that has a queue.
    pub async fn drain_all(&self) {
        match self.store.departments_with_queue().await {
            Ok(deps) => {
                for d in deps {
                    if let Err(e) = self.store.drain_queue(d, 100).await {
                        tracing::warn!(error = %e, department = d, "cannot drain the queue");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list queues"),
        }
    }

    async fn run_heartbeat(self: Arc<Self>) {
        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.store.node_heartbeat(&self.node_id, self.started).await {
                tracing::warn!(error = %e, "heartbeat failed");
                continue;
            }
            let dead_before = Timestamp(Timestamp::now().micros() - micros(NODE_DEAD_AFTER));
            match self.store.sweep_nodes(dead_before).await {
                Ok(users) => {
                    for u in users {
                        self.expire(u).await;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "node sweep failed"),
            }
        }
    }

    /// Presence left online by a node that stopped (or this node's previous run): expire it
    /// once the grace period has passed since start.
    async fn expire_leftovers(self: Arc<Self>) {
        tokio::select! {
            () = self.shutdown.cancelled() => return,
            () = tokio::time::sleep(self.grace) => {}
        }
        match self.store.present_without_connections().await {
            Ok(users) => {
                for u in users {
                    self.expire(u).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list presence to expire"),
        }
    }

    async fn run_reactions(self: Arc<Self>, hub: Arc<Hub>) {
        let mut head = hub.watch_head();
        let mut pos = hub.head();
        // Whatever queued up while no node was running.
        self.drain_all().await;
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                r = head.changed() => if r.is_err() { return },
            }
            loop {
                let events = match hub.events_after(pos, 500).await {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!(error = %e, "routing cannot read events");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        break;
                    }
                };
                let Some(last) = events.last().map(|e| e.seq) else {
                    break;
                };
                pos = last;
                let frees = events.iter().any(|e| {
                    matches!(
                        (&*e.entity, &*e.op),
                        ("dialog", "close" | "transfer" | "queue") | ("presence" | "routing", _)
                    )
                });
                if frees {
                    self.drain_all().await;
                }
            }
        }
    }

    async fn run_reoffer(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.store.reoffer_due(Timestamp::now()).await {
                tracing::warn!(error = %e, "re-offer failed");
            }
        }
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}
