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

use kommutator_sdk::store::{BoxFuture, MAX_FILE_SIZE};
use kommutator_sdk::{
    Attachment, Connector, ConnectorCommand, ConnectorContext, ConnectorError, ConnectorId,
    FileStore, OriginateRequest, OutboundMessage, StateStore, StoredFile,
};
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

/// What an instance did on this node since the process started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ConnectorCounters {
    /// Events the pipeline took (messages, calls, delivery reports, acks).
    pub events: u64,
    /// Events that were already stored (a redelivery).
    pub duplicates: u64,
    /// Events the pipeline refused (bad input from the channel, or a bug).
    pub refused: u64,
    /// Replies handed to the connector to send.
    pub outbound: u64,
    /// Restarts after a failure.
    pub restarts: u64,
    /// When the last event was taken.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>)]
    pub last_event_at: Option<time::OffsetDateTime>,
    /// Why the last refused event was refused.
    pub last_refusal: Option<String>,
}

/// The states of every instance on this node.
#[derive(Debug, Default)]
pub struct ConnectorStates {
    states: RwLock<BTreeMap<String, (&'static str, ConnectorState, ConnectorCounters)>>,
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
    /// What it did on this node since the process started.
    pub counters: ConnectorCounters,
}

impl ConnectorStates {
    /// Records an instance's state.
    pub fn set(&self, id: &str, kind: &'static str, state: ConnectorState) {
        let up = matches!(state, ConnectorState::Running);
        if let Ok(mut m) = self.states.write() {
            let e = m
                .entry(id.to_owned())
                .or_insert_with(|| (kind, ConnectorState::Stopped, ConnectorCounters::default()));
            if matches!(state, ConnectorState::Reconnecting { .. }) {
                e.2.restarts += 1;
            }
            e.0 = kind;
            e.1 = state;
        }
        metrics::gauge!("kommutator_connector_up", "connector" => id.to_owned()).set(if up {
            1.0
        } else {
            0.0
        });
    }

    /// Updates an instance's counters.
    pub fn count(&self, id: &str, f: impl FnOnce(&mut ConnectorCounters)) {
        if let Ok(mut m) = self.states.write() {
            if let Some(e) = m.get_mut(id) {
                f(&mut e.2);
            }
        }
    }

    /// Every instance with its state.
    pub fn list(&self) -> Vec<ConnectorStatus> {
        self.states
            .read()
            .map(|m| {
                m.iter()
                    .map(|(id, (kind, state, counters))| ConnectorStatus {
                        id: id.clone(),
                        kind: (*kind).to_owned(),
                        state: state.clone(),
                        counters: counters.clone(),
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
        let (in_tx, in_rx) = mpsc::channel(64);
        let (out_tx, out_rx) = mpsc::channel::<OutboundMessage>(64);
        let mut ctx = ConnectorContext::new(
            ConnectorId::new(id.clone()),
            in_tx,
            out_rx,
            run_token.clone(),
        )
        .with_files(hub_files(&deps, &id))
        .with_state(hub_state(&deps, &id));
        let originates = if C::CAN_ORIGINATE {
            let (cmd_tx, cmd_rx) = mpsc::channel::<ConnectorCommand>(16);
            ctx = ctx.with_commands(cmd_rx);
            Some(tokio::spawn(feed_originates(
                deps.clone(),
                id.clone(),
                cmd_tx,
                run_token.clone(),
            )))
        } else {
            None
        };
        deps.states.set(&id, C::KIND, ConnectorState::Running);
        tracing::info!(connector = %id, kind = C::KIND, node = %deps.node_id, "connector running");
        let mut run = tokio::spawn(connector.run(ctx));
        let forward = tokio::spawn(forward(deps.clone(), id.clone(), in_rx));
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
        if let Some(o) = originates {
            o.abort();
        }
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

/// Hands the events of instance `id` to the pipeline, one at a time, and counts them.
async fn forward(deps: HostDeps, id: String, mut rx: mpsc::Receiver<kommutator_sdk::InboundEvent>) {
    use super::Processed;
    use crate::domain::{CallOutcome, IngestOutcome};
    while let Some(ev) = rx.recv().await {
        let key = ev.external_id.clone();
        let result = deps.pipeline.submit(ev).await;
        let label = match &result {
            Ok(
                Processed::Message(IngestOutcome::Duplicate { .. })
                | Processed::Call(CallOutcome::Duplicate),
            ) => "duplicate",
            Ok(_) => "taken",
            Err(_) => "refused",
        };
        metrics::counter!("kommutator_connector_events_total", "connector" => id.clone(), "result" => label)
            .increment(1);
        let now = time::OffsetDateTime::now_utc();
        match result {
            Ok(_) => deps.states.count(&id, |c| {
                if label == "duplicate" {
                    c.duplicates += 1;
                } else {
                    c.events += 1;
                }
                c.last_event_at = Some(now);
            }),
            Err(e) => {
                // A refused event is the connector's bug or hostile input: logged and
                // counted, and the connector goes on.
                tracing::warn!(connector = %id, external_id = %key, error = %e, "inbound event refused");
                let why = e.to_string();
                deps.states.count(&id, |c| {
                    c.refused += 1;
                    c.last_refusal = Some(why);
                });
            }
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
                    // Where the conversation goes: the identity the dialog is with (the
                    // first mail of a conversation the hub starts has no thread to follow).
                    let to = match d.identity_id {
                        Some(i) => match deps.store.identity_value(i).await {
                            Ok(Some((kind, value))) => kind
                                .parse::<kommutator_sdk::IdentityKind>()
                                .ok()
                                .map(|k| kommutator_sdk::PartyIdentity::new(k, value)),
                            Ok(None) => None,
                            Err(e) => {
                                tracing::warn!(error = %e, connector = %id, "cannot read the dialog's identity");
                                None
                            }
                        },
                        None => None,
                    };
                    let out = OutboundMessage {
                        id: m.id,
                        connector_id: ConnectorId::new(id.clone()),
                        thread_id: d.external_thread_id.clone(),
                        to,
                        subject: d.subject.clone(),
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
                    deps.states.count(&id, |c| c.outbound += 1);
                    metrics::counter!("kommutator_connector_outbound_total", "connector" => id.clone())
                        .increment(1);
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

/// Hands the click-to-calls pending for instance `id` to the connector, each once: it is
/// marked `sent` before it goes, so a restart never rings the operator's phone twice (a
/// request lost with a crash is dropped as stale after a minute, and the operator clicks
/// again).
async fn feed_originates(
    deps: HostDeps,
    id: String,
    tx: mpsc::Sender<ConnectorCommand>,
    run: CancellationToken,
) {
    let mut head = deps.hub.watch_head();
    let mut pos = deps.hub.head();
    let mut sweep = tokio::time::interval(Duration::from_secs(5));
    sweep.tick().await;
    loop {
        match deps.store.pending_originates(&id, 0, 50).await {
            Ok(calls) => {
                for k in calls {
                    match deps.store.originate_sent(k.id).await {
                        Ok(true) => {}
                        Ok(false) => continue,
                        Err(e) => {
                            tracing::warn!(error = %e, connector = %id, "cannot mark a click-to-call sent");
                            continue;
                        }
                    }
                    let Some(extension) = k.extension.clone() else {
                        continue;
                    };
                    let cmd = ConnectorCommand::Originate(OriginateRequest {
                        call_external_id: k.external_id.clone(),
                        extension,
                        to: k.to_number.clone(),
                        caller_id: None,
                    });
                    tokio::select! {
                        () = run.cancelled() => return,
                        r = tx.send(cmd) => if r.is_err() { return },
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, connector = %id, "cannot read pending click-to-calls")
            }
        }
        loop {
            tokio::select! {
                () = run.cancelled() => return,
                r = head.changed() => if r.is_err() { return },
                // Stale requests are dropped by the scan, so it runs now and then anyway.
                _ = sweep.tick() => break,
            }
            if super::new_originate_for(&deps.hub, &mut pos, &id).await {
                break;
            }
        }
    }
}

/// Starts webhook connector instance `id`: the returned routes (the caller mounts them
/// under `/hooks/{id}`) hand events to the pipeline through one context that lives as long
/// as the process; its `run` waits for shutdown. Nothing is returned when the config is
/// refused (the instance is then `failed`) or the connector has no routes.
pub fn start_webhook_connector<C: Connector>(
    id: String,
    config: C::Config,
    deps: HostDeps,
    shutdown: CancellationToken,
) -> Option<axum::Router> {
    let connector = match C::new(config) {
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
            return None;
        }
    };
    let (in_tx, in_rx) = mpsc::channel(64);
    let (_out_tx, out_rx) = mpsc::channel::<OutboundMessage>(1);
    let ctx = ConnectorContext::new(
        ConnectorId::new(id.clone()),
        in_tx,
        out_rx,
        shutdown.clone(),
    )
    .with_files(hub_files(&deps, &id))
    .with_state(hub_state(&deps, &id));
    let routes = connector.routes(&ctx);
    tokio::spawn(forward(deps.clone(), id.clone(), in_rx));
    let states = deps.states.clone();
    states.set(&id, C::KIND, ConnectorState::Running);
    tokio::spawn(async move {
        // Keeps `_out_tx` alive: a webhook connector that reads outbound must not see the
        // hub gone.
        let _keep = _out_tx;
        let result = connector.run(ctx).await;
        let state = match result {
            Ok(()) => ConnectorState::Stopped,
            Err(e) => ConnectorState::Failed {
                reason: e.to_string(),
            },
        };
        states.set(&id, C::KIND, state);
    });
    routes
}

/// Starts instance `id` of a connector that has webhook routes and also runs: a messenger
/// that takes webhooks (or polls) and sends replies. The routes (the caller mounts them
/// under `/hooks/{id}`) come from an instance of their own whose context lives as long as
/// the process; `run` goes under [`run_connector`]'s supervisor (`singleton`: once per
/// cluster). Nothing is returned when the config is refused (the instance is then
/// `failed`) or the connector has no routes.
pub fn start_connector<C>(
    id: String,
    config: C::Config,
    singleton: bool,
    deps: HostDeps,
    shutdown: CancellationToken,
) -> Option<axum::Router>
where
    C: Connector,
    C::Config: Clone,
{
    let for_routes = match C::new(config.clone()) {
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
            return None;
        }
    };
    let (in_tx, in_rx) = mpsc::channel(64);
    let (_out_tx, out_rx) = mpsc::channel::<OutboundMessage>(1);
    let ctx = ConnectorContext::new(
        ConnectorId::new(id.clone()),
        in_tx,
        out_rx,
        shutdown.clone(),
    )
    .with_files(hub_files(&deps, &id))
    .with_state(hub_state(&deps, &id));
    let routes = for_routes.routes(&ctx);
    tokio::spawn(forward(deps.clone(), id.clone(), in_rx));
    tokio::spawn(run_connector::<C>(id, config, singleton, deps, shutdown));
    routes
}

/// The path under which the API serves a stored file (`GET /api/v1/files/{key}/{name}`).
pub fn file_url(key: &str, name: &str) -> String {
    let mut s = format!("/api/v1/files/{key}/");
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            s.push(char::from(b));
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// The key of a [`file_url`], if `url` is one.
pub fn file_key(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("/api/v1/files/")?;
    let key = rest.split(['/', '?']).next()?;
    crate::storage::is_file_key(key).then_some(key)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| char::from(c).to_digit(16);
        match (
            b.get(i),
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (Some(b'%'), Some(h), Some(l)) => {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
            }
            (Some(c), _, _) => {
                out.push(*c);
                i += 1;
            }
            (None, _, _) => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The hub's [`FileStore`] for one instance: files in the database, served at
/// [`file_url`].
#[derive(Debug)]
struct HubFiles {
    store: Arc<dyn Store>,
    connector: String,
}

fn hub_files(deps: &HostDeps, id: &str) -> Arc<dyn FileStore> {
    Arc::new(HubFiles {
        store: deps.store.clone(),
        connector: id.to_owned(),
    })
}

impl FileStore for HubFiles {
    fn put<'a>(
        &'a self,
        name: &'a str,
        mime_type: &'a str,
        content: Vec<u8>,
    ) -> BoxFuture<'a, Result<Attachment, ConnectorError>> {
        Box::pin(async move {
            if content.len() > MAX_FILE_SIZE {
                return Err(ConnectorError::other(format!(
                    "file `{name}` is {} bytes, over the {MAX_FILE_SIZE}-byte limit",
                    content.len()
                )));
            }
            let mime = if mime_type.trim().is_empty() || mime_type.len() > 200 {
                "application/octet-stream"
            } else {
                mime_type.trim()
            };
            let name: String = name.chars().filter(|c| !c.is_control()).take(200).collect();
            let name = if name.trim().is_empty() {
                "file".to_owned()
            } else {
                name
            };
            let size = content.len() as u64;
            let key = self
                .store
                .put_file(&self.connector, mime, &content)
                .await
                .map_err(|e| ConnectorError::other(format!("cannot store file `{name}`: {e}")))?;
            metrics::counter!("kommutator_files_stored_total", "connector" => self.connector.clone())
                .increment(1);
            Ok(Attachment {
                url_or_ref: file_url(&key, &name),
                name,
                mime_type: mime.to_owned(),
                size: Some(size),
            })
        })
    }

    fn get<'a>(
        &'a self,
        url_or_ref: &'a str,
    ) -> BoxFuture<'a, Result<Option<StoredFile>, ConnectorError>> {
        Box::pin(async move {
            let Some(key) = file_key(url_or_ref) else {
                return Ok(None);
            };
            let name = url_or_ref
                .strip_prefix("/api/v1/files/")
                .and_then(|r| r.split_once('/'))
                .map(|(_, n)| percent_decode(n.split('?').next().unwrap_or_default()))
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| "file".to_owned());
            let file = self
                .store
                .get_file(key)
                .await
                .map_err(|e| ConnectorError::other(format!("cannot read file {key}: {e}")))?;
            Ok(file.map(|f| StoredFile {
                name,
                mime_type: f.mime_type,
                content: f.content,
            }))
        })
    }
}

/// The hub's [`StateStore`] for one instance: the `connector_state` table.
#[derive(Debug)]
struct HubState {
    store: Arc<dyn Store>,
    connector: String,
}

fn hub_state(deps: &HostDeps, id: &str) -> Arc<dyn StateStore> {
    Arc::new(HubState {
        store: deps.store.clone(),
        connector: id.to_owned(),
    })
}

impl StateStore for HubState {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<String>, ConnectorError>> {
        Box::pin(async move {
            self.store
                .connector_state(&self.connector, key)
                .await
                .map_err(|e| ConnectorError::other(format!("cannot read connector state: {e}")))
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: &'a str,
    ) -> BoxFuture<'a, Result<(), ConnectorError>> {
        Box::pin(async move {
            self.store
                .set_connector_state(&self.connector, key, value)
                .await
                .map_err(|e| ConnectorError::other(format!("cannot write connector state: {e}")))
        })
    }
}

#[cfg(test)]
mod file_url_tests {
    use super::*;

    #[test]
    fn file_urls_round_trip_their_key_and_name() {
        let key = "ab".repeat(32);
        let url = file_url(&key, "Счёт №1.pdf");
        assert!(url.starts_with(&format!("/api/v1/files/{key}/")));
        assert!(url.is_ascii());
        assert_eq!(file_key(&url), Some(key.as_str()));
        let name = url.rsplit_once('/').map(|(_, n)| percent_decode(n));
        assert_eq!(name.as_deref(), Some("Счёт №1.pdf"));
        assert_eq!(file_key("/api/v1/files/../../etc"), None);
        assert_eq!(file_key("https://x/api/v1/files/aa"), None);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
