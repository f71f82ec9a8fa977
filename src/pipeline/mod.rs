//! The ingest pipeline: every [`InboundEvent`] from every channel goes through here.
//!
//! ```text
//! connector / HTTP / widget ──► submit ──► worker[hash(connector, thread) % N] (bounded)
//!      ──► normalize ──► store.ingest_message (dedupe → identify → dialog → Interest → route
//!          → message, Feed, change log: one transaction) ──► commit sink ──► hub ──► sockets
//! ```
//!
//! Persist first, then publish: nothing reaches a socket that is not committed, and the
//! hub reads what it sends from the change log. Backpressure: [`Pipeline::submit`] waits
//! for room in its worker's bounded queue, then for the result; a connector that awaits it
//! slows down instead of buffering. Events of one thread always go to the same worker, in
//! order.

pub mod host;
pub mod outbound;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kommutator_sdk::{DeliveryState, InboundEvent, InboundKind};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::domain::*;
use crate::hub::{Event, Hub, Owner};
use crate::storage::{Store, StoreError};

/// A channel instance as the pipeline knows it.
#[derive(Debug, Clone)]
pub struct ChannelInfo {
    /// Instance id.
    pub connector_id: String,
    /// Channel name on dialogs (`api`, `widget`, `telegram`, ...).
    pub channel: String,
    /// Department (by name) whose queue new dialogs join.
    pub department: Option<String>,
}

/// Why an event was refused.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// No such channel instance.
    #[error("unknown connector `{0}`")]
    UnknownConnector(String),
    /// The event's content is invalid.
    #[error("{0}")]
    Invalid(FieldError),
    /// The event refers to something that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The store failed.
    #[error("store error")]
    Store(#[source] StoreError),
    /// The hub is shutting down.
    #[error("the pipeline is shutting down")]
    Closed,
}

impl From<StoreError> for PipelineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(f) => PipelineError::Invalid(f),
            other => PipelineError::Store(other),
        }
    }
}

/// What an event did.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Processed {
    /// A message was stored (or was a duplicate).
    Message(IngestOutcome),
    /// A delivery report or ack was applied to message `message_id`.
    Delivery {
        /// Our message id.
        message_id: Id,
        /// The status now (it never moves backwards).
        status: DeliveryStatus,
    },
    /// Published to consoles, not stored (typing).
    Published,
    /// Valid but nothing to do (unknown input, call events before telephony is configured).
    Ignored {
        /// Why.
        reason: String,
    },
}

struct Job {
    event: InboundEvent,
    reply: oneshot::Sender<Result<Processed, PipelineError>>,
}

/// The pipeline. Cheap to clone. When every clone is gone, the workers' queues close and
/// the ingest thread ends (it holds no handle of its own, so nothing keeps it alive).
#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
    workers: Arc<Vec<mpsc::Sender<Job>>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("workers", &self.workers.len())
            .finish()
    }
}

struct Inner {
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    channels: std::sync::RwLock<HashMap<String, ChannelInfo>>,
    open_interest: OpenInterest,
    departments: Mutex<HashMap<String, (Option<Id>, Instant)>>,
}

impl Pipeline {
    /// Starts `workers` workers, each with a queue of `queue` events.
    pub fn start(
        store: Arc<dyn Store>,
        hub: Arc<Hub>,
        channels: Vec<ChannelInfo>,
        open_interest: OpenInterest,
        workers: usize,
        queue: usize,
        shutdown: CancellationToken,
    ) -> Self {
        let mut senders = Vec::new();
        let mut receivers = Vec::new();
        for _ in 0..workers.max(1) {
            let (tx, rx) = mpsc::channel(queue.max(1));
            senders.push(tx);
            receivers.push(rx);
        }
        let inner = Arc::new(Inner {
            store,
            hub,
            channels: std::sync::RwLock::new(
                channels
                    .into_iter()
                    .map(|c| (c.connector_id.clone(), c))
                    .collect(),
            ),
            open_interest,
            departments: Mutex::new(HashMap::new()),
        });
        // The workers get a thread of their own. Each ingest is a dozen statements in one
        // write transaction (on SQLite, under the one writer lock); on the shared runtime
        // every statement's wake-up queued behind thousands of socket tasks, and ingest
        // throughput collapsed under fan-out load.
        let spawned = std::thread::Builder::new()
            .name("kommutator-ingest".into())
            .spawn({
                let inner = inner.clone();
                let shutdown = shutdown.clone();
                move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot start the ingest runtime");
                            return;
                        }
                    };
                    rt.block_on(async move {
                        let mut tasks = Vec::new();
                        for rx in receivers {
                            tasks.push(tokio::spawn(run_worker(
                                inner.clone(),
                                rx,
                                shutdown.clone(),
                            )));
                        }
                        for t in tasks {
                            let _ = t.await;
                        }
                    });
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the ingest thread");
        }
        Self {
            inner,
            workers: Arc::new(senders),
        }
    }

    /// Adds (or replaces) a channel instance (built-in channels register themselves).
    pub fn register(&self, info: ChannelInfo) {
        if let Ok(mut m) = self.inner.channels.write() {
            m.insert(info.connector_id.clone(), info);
        }
    }

    /// The channel instance `id`, if registered.
    pub fn channel(&self, id: &str) -> Option<ChannelInfo> {
        self.inner.channels.read().ok()?.get(id).cloned()
    }

    /// Processes one event and waits until it is persisted (or refused). Waits for room in
    /// the worker's queue first: this is the backpressure.
    ///
    /// # Errors
    /// [`PipelineError`] naming what is wrong with the event.
    pub async fn submit(&self, event: InboundEvent) -> Result<Processed, PipelineError> {
        if self.channel(event.connector_id.as_str()).is_none() {
            return Err(PipelineError::UnknownConnector(
                event.connector_id.to_string(),
            ));
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        event.connector_id.as_str().hash(&mut h);
        thread_of(&event.kind)
            .unwrap_or(&event.external_id)
            .hash(&mut h);
        let n = self.workers.len() as u64;
        let idx = usize::try_from(h.finish() % n).unwrap_or(0);
        let (reply, rx) = oneshot::channel();
        self.workers[idx]
            .send(Job { event, reply })
            .await
            .map_err(|_| PipelineError::Closed)?;
        rx.await.map_err(|_| PipelineError::Closed)?
    }
}

/// Whether the hub's events after `*pos` include a new outbound message of connector
/// `connector_id` (moves `*pos` on). On a read error it answers yes: a needless scan of
/// pending replies is harmless, a missed one is not.
pub(crate) async fn new_outbound_for(hub: &Hub, pos: &mut i64, connector_id: &str) -> bool {
    let needle = format!("\"connector_id\":{}", serde_json::Value::from(connector_id));
    let mut found = false;
    loop {
        let events = match hub.events_after(*pos, 500).await {
            Ok(e) => e,
            Err(_) => return true,
        };
        let Some(last) = events.last().map(|e| e.seq) else {
            return found;
        };
        *pos = last;
        found |= events.iter().any(|e| {
            &*e.entity == "message"
                && &*e.op == "create"
                && e.frame.as_str().contains("\"direction\":\"outbound\"")
                && e.frame.as_str().contains(&needle)
        });
    }
}

fn thread_of(kind: &InboundKind) -> Option<&str> {
    match kind {
        InboundKind::Message(m) => Some(&m.thread_id),
        InboundKind::Typing { thread_id, .. } => Some(thread_id),
        _ => None,
    }
}

async fn run_worker(inner: Arc<Inner>, mut rx: mpsc::Receiver<Job>, shutdown: CancellationToken) {
    loop {
        let job = tokio::select! {
            () = shutdown.cancelled() => return,
            j = rx.recv() => match j { Some(j) => j, None => return },
        };
        let started = Instant::now();
        let result = process(&inner, job.event).await;
        metrics::histogram!("kommutator_ingest_seconds").record(started.elapsed().as_secs_f64());
        let label = match &result {
            Ok(Processed::Message(IngestOutcome::Stored { .. })) => "stored",
            Ok(Processed::Message(IngestOutcome::Duplicate { .. })) => "duplicate",
            Ok(Processed::Delivery { .. }) => "delivery",
            Ok(Processed::Published) => "published",
            Ok(Processed::Ignored { .. }) => "ignored",
            Err(_) => "rejected",
        };
        metrics::counter!("kommutator_inbound_events_total", "result" => label).increment(1);
        let _ = job.reply.send(result);
    }
}

async fn process(inner: &Inner, ev: InboundEvent) -> Result<Processed, PipelineError> {
    let connector = ev.connector_id.as_str().to_owned();
    let info = inner
        .channels
        .read()
        .ok()
        .and_then(|m| m.get(&connector).cloned())
        .ok_or_else(|| PipelineError::UnknownConnector(connector.clone()))?;
    let external_id = kommutator_sdk::normalize_external_id(&ev.external_id).map_err(|_| {
        PipelineError::Invalid(FieldError::new(
            "external_id",
            "invalid_external_id",
            "external_id is 1 to 256 characters without control characters",
        ))
    })?;
    match ev.kind {
        InboundKind::Message(m) => {
            // An edit is stored as a message of its own (its own external id); the original
            // stays for audit.
            let thread_id = kommutator_sdk::normalize_external_id(&m.thread_id).map_err(|_| {
                PipelineError::Invalid(FieldError::new(
                    "thread_id",
                    "invalid_external_id",
                    "thread_id is 1 to 256 characters without control characters",
                ))
            })?;
            if m.sender.identities.len() > 20 {
                return Err(PipelineError::Invalid(FieldError::new(
                    "sender.identities",
                    "too_many",
                    "at most 20 identities",
                )));
            }
            let department_id = department_id(inner, info.department.as_deref()).await;
            let input = IngestMessage {
                connector_id: connector,
                channel: info.channel.clone(),
                external_id,
                thread_id,
                sent_at: Timestamp::from_datetime(ev.occurred_at),
                identities: m
                    .sender
                    .identities
                    .iter()
                    .map(|i| (i.kind, i.value.clone()))
                    .collect(),
                display_name: m.sender.display_name.clone(),
                text: m.text.clone(),
                attachments: m
                    .attachments
                    .iter()
                    .map(|a| Attachment {
                        name: a.name.clone(),
                        mime_type: a.mime_type.clone(),
                        size: a.size,
                        url: a.url_or_ref.clone(),
                    })
                    .collect(),
                department_id,
                subject: None,
                open_interest: inner.open_interest,
            };
            // Two nodes (or two webhook retries) may race on a new sender or thread; the
            // loser's transaction rolls back whole and the retry finds what the winner stored.
            let mut attempt: u32 = 0;
            loop {
                attempt += 1;
                match inner.store.ingest_message(&input).await {
                    Ok(outcome) => return Ok(Processed::Message(outcome)),
                    Err(StoreError::Duplicate { .. }) if attempt < 4 => continue,
                    // A deadlock with another node's transaction rolled ours back whole.
                    Err(e) if e.is_transient() && attempt < 4 => {
                        tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        InboundKind::OutboundAck {
            message_id,
            external_id,
        } => {
            let external_id = channel_id("external_id", &external_id)?;
            let update = DeliveryUpdate {
                status: DeliveryStatus::Sent,
                provider_message_id: Some(external_id),
                error: None,
            };
            delivery(inner, message_id, &update).await
        }
        InboundKind::OutboundFailed { message_id, reason } => {
            let update = DeliveryUpdate {
                status: DeliveryStatus::Failed,
                provider_message_id: None,
                error: Some(reason.chars().take(1000).collect()),
            };
            delivery(inner, message_id, &update).await
        }
        InboundKind::DeliveryStatus {
            message_external_id,
            status,
        } => {
            let message_external_id = channel_id("message_external_id", &message_external_id)?;
            let Some(m) = inner
                .store
                .message_by_channel_id(&connector, &message_external_id)
                .await?
            else {
                return Err(PipelineError::NotFound(format!(
                    "no message `{message_external_id}` on connector `{connector}`"
                )));
            };
            if m.direction == Direction::Inbound {
                return Ok(Processed::Ignored {
                    reason: "delivery reports of inbound messages are not tracked".into(),
                });
            }
            let (status, error) = match status {
                DeliveryState::Pending => {
                    return Ok(Processed::Ignored {
                        reason: "pending is where a message starts".into(),
                    })
                }
                DeliveryState::Sent => (DeliveryStatus::Sent, None),
                DeliveryState::Delivered => (DeliveryStatus::Delivered, None),
                DeliveryState::Read => (DeliveryStatus::Read, None),
                DeliveryState::Failed { reason } => (
                    DeliveryStatus::Failed,
                    Some(reason.chars().take(1000).collect()),
                ),
            };
            let update = DeliveryUpdate {
                status,
                provider_message_id: None,
                error,
            };
            delivery(inner, m.id, &update).await
        }
        InboundKind::Typing { thread_id, sender } => {
            let thread_id = channel_id("thread_id", &thread_id)?;
            let Some(d) = inner.store.dialog_by_thread(&connector, &thread_id).await? else {
                return Ok(Processed::Ignored {
                    reason: "typing in a thread with no dialog".into(),
                });
            };
            let data = serde_json::json!({
                "dialog_id": d.id,
                "who": "customer",
                "name": sender.display_name,
            });
            inner.hub.publish_ephemeral(Event::ephemeral(
                inner.hub.head(),
                vec![Topic::dialog(d.id)],
                "typing",
                d.id,
                "customer",
                &Actor::System,
                Some(Owner {
                    user_id: d.assignee_id,
                    department_id: d.department_id,
                    shared: d.shared,
                }),
                &data,
            ));
            Ok(Processed::Published)
        }
        InboundKind::Call(_) => Ok(Processed::Ignored {
            reason: "call events are handled by the telephony integration".into(),
        }),
        InboundKind::Unknown { description } => {
            tracing::debug!(connector = %connector, %description, "unknown inbound event");
            Ok(Processed::Ignored {
                reason: format!("unknown input: {description}"),
            })
        }
    }
}

/// An id from the channel, checked like every key (no control characters, 1 to 256 bytes).
fn channel_id(field: &str, v: &str) -> Result<String, PipelineError> {
    kommutator_sdk::normalize_external_id(v).map_err(|_| {
        PipelineError::Invalid(FieldError::new(
            field,
            "invalid_external_id",
            format!("{field} is 1 to 256 characters without control characters"),
        ))
    })
}

async fn delivery(
    inner: &Inner,
    message_id: Id,
    update: &DeliveryUpdate,
) -> Result<Processed, PipelineError> {
    match inner
        .store
        .update_delivery(&Actor::System, message_id, update)
        .await
    {
        Ok(m) => Ok(Processed::Delivery {
            message_id,
            status: m.delivery_status,
        }),
        Err(StoreError::NotFound { .. }) => {
            Err(PipelineError::NotFound(format!("no message {message_id}")))
        }
        Err(StoreError::Conflict { message, .. }) => Ok(Processed::Ignored { reason: message }),
        Err(e) => Err(e.into()),
    }
}

/// A department id by name, cached for a minute (departments are rarely renamed).
async fn department_id(inner: &Inner, name: Option<&str>) -> Option<Id> {
    let name = name?;
    if let Ok(m) = inner.departments.lock() {
        if let Some((id, at)) = m.get(name) {
            if at.elapsed() < Duration::from_secs(60) {
                return *id;
            }
        }
    }
    let id = match inner.store.list_departments().await {
        Ok(list) => list.into_iter().find(|d| d.name == name).map(|d| d.id),
        Err(e) => {
            tracing::warn!(error = %e, "cannot look up departments");
            return None;
        }
    };
    if id.is_none() {
        tracing::warn!(
            department = name,
            "a connector names a department that does not exist; dialogs stay unrouted"
        );
    }
    if let Ok(mut m) = inner.departments.lock() {
        m.insert(name.to_owned(), (id, Instant::now()));
    }
    id
}
