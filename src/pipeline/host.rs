//! The hub's side of the connector contract: runs one [`Connector`] instance under a
//! supervisor.
//!
//! - Inbound: the instance's bounded queue is drained into [`Pipeline::submit`], one event
//!   at a time. The connector's `send` waits while the pipeline is busy, so the
//!   backpressure reaches the protocol.
//! - Outbound: replies stored for this instance (delivery status `pending`) are handed to
//!   the connector in order, and again after a restart until their ack arrives
//!   (at-least-once; the message `id` is the idempotency key).
//! - Failures: a retryable error restarts the instance with jittered backoff (0.5 s
//!   doubling to 60 s); a permanent one (`Config`, `Auth`) marks it `failed` until an admin
//!   acts. The state is in [`ConnectorStates`], shown by `GET /api/v1/connectors`.
//! - Once per cluster: an instance that owns a connection (an AMI socket, an IMAP mailbox)
//!   runs only while this node holds the lease `connector:<id>`.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kommutator_sdk::{Attachment, Connector, ConnectorContext, ConnectorId, OutboundMessage};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::outbound::lease_until;
use super::Pipeline;
use crate::domain::Id;
use crate::hub::Hub;
use crate::storage::Store;

/// A connector instance's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ConnectorState {
    /// Waiting for the cluster lease (another node runs it).
    Standby,
    /// Running.
    Running,
    /// Restarting after a transient failure.
    Reconnecting {
        /// The last error.
        reason: String,
        /// Restarts so far.
        attempt: u32,
    },
    /// Stopped for good until the configuration is fixed.
    Failed {
        /// Why.
        reason: String,
    },
    /// Stopped (shutdown).
    Stopped,
}

/// The states of every instance on this node.
#[derive(Debug, Default)]
pub struct ConnectorStates {
    states: RwLock<BTreeMap<String, (&'static str, ConnectorState)>>,
}

/// One row of [`ConnectorStates::list`].
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConnectorStatus {
    /// Instance id.
    pub id: String,
    /// Connector type.
    pub kind: String,
    /// State on this node.
    #[serde(flatten)]
    pub state: ConnectorState,
}

impl ConnectorStates {
    /// Records an instance's state.
    pub fn set(&self, id: &str, kind: &'static str, state: ConnectorState) {
        if let Ok(mut m) = self.states.write() {
            m.insert(id.to_owned(), (kind, state));
        }
    }

    /// Every instance with its state.
    pub fn list(&self) -> Vec<ConnectorStatus> {
        self.states
            .read()
            .map(|m| {
                m.iter()
                    .map(|(id, (kind, state))| ConnectorStatus {
                        id: id.clone(),
                        kind: (*kind).to_owned(),
                        state: state.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// What the host needs from the hub.
#[derive(Debug, Clone)]
pub struct HostDeps {
    /// The store.
    pub store: Arc<dyn Store>,
    /// This node's hub (to wake the outbound feeder).
    pub hub: Arc<Hub>,
    /// The pipeline.
    pub pipeline: Pipeline,
    /// Where states go.
    pub states: Arc<ConnectorStates>,
    /// This node.
    pub node_id: String,
    /// Lease length.
    pub lease: Duration,
}

/// Runs instance `id` of connector `C` until `shutdown`; `singleton` makes it hold the
/// cluster lease.
pub async fn run_connector<C>(
    id: String,
    config: C::Config,
    singleton: bool,
    deps: HostDeps,
    shutdown: CancellationToken,
) where
    C: Connector,
    C::Config: Clone,
{
    let lease_name = format!("connector:{id}");
    let mut attempt: u32 = 0;
    loop {
        if shutdown.is_cancelled() {
            deps.states.set(&id, C::KIND, ConnectorState::Stopped);
            return;
        }
        if singleton && !wait_for_lease(&deps, &lease_name, &id, C::KIND, &shutdown).await {
            deps.states.set(&id, C::KIND, ConnectorState::Stopped);
            return;
        }
        let connector = match C::new(config.clone()) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(connector = %id, error = %e, "connector configuration refused");
                deps.states.set(
                    &id,
                    C::KIND,
                    ConnectorState::Failed {
                        reason: e.to_string(),
                    },
                );
                return;
            }
        };
        let run_token = shutdown.child_token();
        let (in_tx, mut in_rx) = mpsc::channel(64);
        let (out_tx, out_rx) = mpsc::channel::<OutboundMessage>(64);
        let ctx = ConnectorContext::new(
            ConnectorId::new(id.clone()),
            in_tx,
            out_rx,
            run_token.clone(),
        );
        deps.states.set(&id, C::KIND, ConnectorState::Running);
        tracing::info!(connector = %id, kind = C::KIND, node = %deps.node_id, "connector running");
        let mut run = tokio::spawn(connector.run(ctx));
        let pipeline = deps.pipeline.clone();
        let forward = tokio::spawn(async move {
            while let Some(ev) = in_rx.recv().await {
                let key = ev.external_id.clone();
                if let Err(e) = pipeline.submit(ev).await {
                    // A refused event is the connector's bug or hostile input: logged and
                    // counted, and the connector goes on.
                    tracing::warn!(external_id = %key, error = %e, "inbound event refused");
                }
            }
        });
        let feeder = tokio::spawn(feed_outbound(
            deps.clone(),
            id.clone(),
            out_tx,
            run_token.clone(),
        ));
        let renew = tokio::spawn(renew_lease(
            deps.clone(),
            lease_name.clone(),
            singleton,
            run_token.clone(),
        ));
        let result = tokio::select! {
            r = &mut run => r,
            () = shutdown.cancelled() => {
                run_token.cancel();
                // The contract: `run` returns promptly after shutdown.
                match tokio::time::timeout(Duration::from_secs(10), &mut run).await {
                    Ok(r) => r,
                    Err(_) => { run.abort(); Ok(Ok(())) }
                }
            }
        };
        run_token.cancel();
        feeder.abort();
        renew.abort();
        // Events already handed over are processed before the instance restarts.
        let _ = forward.await;
        if singleton {
            let _ = deps.store.release_lease(&lease_name, &deps.node_id).await;
        }
        if shutdown.is_cancelled() {
            deps.states.set(&id, C::KIND, ConnectorState::Stopped);
            return;
        }
        let error = match result {
            Ok(Ok(())) => {
                // Returned without shutdown: the lease was lost, or the connector ended.
                attempt = 0;
                continue;
            }
            Ok(Err(e)) => e,
            Err(join) => kommutator_sdk::ConnectorError::Other(
                format!("the connector task panicked: {join}").into(),
            ),
        };
        if !error.is_retryable() {
            tracing::error!(connector = %id, error = %error, "connector failed");
            deps.states.set(
                &id,
                C::KIND,
                ConnectorState::Failed {
                    reason: error.to_string(),
                },
            );
            return;
        }
        attempt = attempt.saturating_add(1);
        deps.states.set(
            &id,
            C::KIND,
            ConnectorState::Reconnecting {
                reason: error.to_string(),
                attempt,
            },
        );
        metrics::counter!("kommutator_connector_restarts_total", "connector" => id.clone())
            .increment(1);
        let base = 500u64.saturating_mul(1u64 << attempt.min(7)).min(60_000);
        let mut wait = base / 2 + rand::random::<u64>() % (base / 2 + 1);
        if let Some(after) = error.retry_after() {
            // The remote side asked for at least this much.
            wait = wait.max(u64::try_from(after.as_millis()).unwrap_or(u64::MAX));
        }
        tracing::warn!(connector = %id, error = %error, attempt, wait_ms = wait, "connector restarting");
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(Duration::from_millis(wait)) => {}
        }
    }
}

async fn wait_for_lease(
    deps: &HostDeps,
    name: &str,
    id: &str,
    kind: &'static str,
    shutdown: &CancellationToken,
) -> bool {
    let mut said = false;
    loop {
        match deps
            .store
            .try_lease(name, &deps.node_id, lease_until(deps.lease))
            .await
        {
            Ok(true) => return true,
            Ok(false) => {
                if !said {
                    deps.states.set(id, kind, ConnectorState::Standby);
                    said = true;
                }
            }
            Err(e) => tracing::warn!(error = %e, lease = name, "cannot take the lease"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep(deps.lease / 3) => {}
        }
    }
}

/// Renews the lease; cancels the run when it is lost.
async fn renew_lease(deps: HostDeps, name: String, singleton: bool, run: CancellationToken) {
    if !singleton {
        return;
    }
    let mut tick = tokio::time::interval(deps.lease / 3);
    tick.tick().await;
    loop {
        tokio::select! {
            () = run.cancelled() => return,
            _ = tick.tick() => {}
        }
        match deps
            .store
            .try_lease(&name, &deps.node_id, lease_until(deps.lease))
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(lease = %name, "lost the lease; stopping here, another node runs it");
                run.cancel();
                return;
            }
            Err(e) => tracing::warn!(error = %e, lease = %name, "cannot renew the lease"),
        }
    }
}

/// Hands pending replies of instance `id` to the connector, in order; wakes on every hub
/// event and rescans from the start now and then (an ack that never came).
async fn feed_outbound(
    deps: HostDeps,
    id: String,
    tx: mpsc::Sender<OutboundMessage>,
    run: CancellationToken,
) {
    let mut head = deps.hub.watch_head();
    let mut pos = deps.hub.head();
    let mut after: Id = 0;
    let mut rescan = tokio::time::interval(Duration::from_secs(30));
    rescan.tick().await;
    loop {
        match deps.store.pending_outbound(&id, after, 100).await {
            Ok(batch) => {
                for (m, d) in batch {
                    after = m.id;
                    let out = OutboundMessage {
                        id: m.id,
                        connector_id: ConnectorId::new(id.clone()),
                        thread_id: d.external_thread_id.clone(),
                        to: None,
                        text: m.body.clone(),
                        attachments: m
                            .attachments
                            .iter()
                            .map(|a| Attachment {
                                name: a.name.clone(),
                                mime_type: a.mime_type.clone(),
                                size: a.size,
                                url_or_ref: a.url.clone(),
                            })
                            .collect(),
                        reply_to_external_id: None,
                    };
                    tokio::select! {
                        () = run.cancelled() => return,
                        r = tx.send(out) => if r.is_err() { return },
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, connector = %id, "cannot read pending replies"),
        }
        loop {
            tokio::select! {
                () = run.cancelled() => return,
                r = head.changed() => if r.is_err() { return },
                _ = rescan.tick() => { after = 0; break; }
            }
            if super::new_outbound_for(&deps.hub, &mut pos, &id).await {
                break;
            }
        }
    }
}
