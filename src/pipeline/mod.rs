//! The ingest pipeline: every [`InboundEvent`] from every channel goes through here.
//!
//! ```text
//! connector / HTTP / widget ──► submit ──► worker[hash(connector, thread) % N] (bounded)
//!      ──► normalize ──► store.ingest_messages (per message: dedupe → identify → dialog →
//!          Interest → route → message, Feed, change log; all that queued up while the
//!          worker was busy: one transaction) ──► commit sink ──► hub ──► sockets
//! ```
//!
//! Group commit: a statement costs a round trip to the database (on SQLite, two thread
//! hand-overs inside sqlx), and a commit a WAL write or an fsync; one transaction for what
//! queued up pays the commit once and takes the department and change-log locks once.
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
    /// A call event was stored and applied (or was a duplicate, or waits for its call).
    Call(CallOutcome),
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
    /// iConsultant: reads each inbound text (set once at start-up).
    consultant: std::sync::OnceLock<Arc<crate::assist::Consultant>>,
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
            consultant: std::sync::OnceLock::new(),
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

    /// Gives the pipeline iConsultant's classifier: from then on every inbound text is
    /// read, and an applied request type routes a new inquiry to its department. Only the
    /// first call counts.
    pub fn set_consultant(&self, consultant: Arc<crate::assist::Consultant>) {
        let _ = self.inner.consultant.set(consultant);
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
    new_outbound_entity(hub, pos, connector_id, "message").await
}

/// Whether the hub's events after `*pos` include a new click-to-call of connector
/// `connector_id` (moves `*pos` on); on a read error, yes.
pub(crate) async fn new_originate_for(hub: &Hub, pos: &mut i64, connector_id: &str) -> bool {
    new_outbound_entity(hub, pos, connector_id, "call").await
}

/// Whether an outbound `entity` of `connector_id` was created after `*pos`.
async fn new_outbound_entity(hub: &Hub, pos: &mut i64, connector_id: &str, entity: &str) -> bool {
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
            &*e.entity == entity
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
        // A call's events in order, on one worker.
        InboundKind::Call(c) => Some(&c.call_external_id),
        _ => None,
    }
}

/// Most events one worker takes from its queue at once. Under load a worker stores what
/// queued up while it was busy in one transaction (group commit); when it keeps up, each
/// event is stored alone, as soon as it arrives.
const MAX_BATCH: usize = 32;

type Reply = oneshot::Sender<Result<Processed, PipelineError>>;

async fn run_worker(inner: Arc<Inner>, mut rx: mpsc::Receiver<Job>, shutdown: CancellationToken) {
    let mut jobs: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut messages: Vec<(Reply, IngestMessage)> = Vec::with_capacity(MAX_BATCH);
    loop {
        let job = tokio::select! {
            () = shutdown.cancelled() => return,
            j = rx.recv() => match j { Some(j) => j, None => return },
        };
        jobs.push(job);
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        // In queue order: consecutive messages go in one batch; any other event (a delivery
        // report, typing) waits until the messages before it are stored.
        for job in jobs.drain(..) {
            if let InboundKind::Message(m) = &job.event.kind {
                let input = match header(&inner, &job.event) {
                    Ok((info, connector, external_id)) => {
                        message_input(
                            &inner,
                            &info,
                            connector,
                            external_id,
                            job.event.occurred_at,
                            m,
                            job.event.raw.as_ref(),
                        )
                        .await
                    }
                    Err(e) => Err(e),
                };
                match input {
                    Ok(input) => messages.push((job.reply, input)),
                    Err(e) => finish(job.reply, Err(e), started),
                }
            } else {
                store_batch(&inner, &mut messages, started).await;
                let result = process(&inner, job.event).await;
                finish(job.reply, result, started);
            }
        }
        store_batch(&inner, &mut messages, started).await;
    }
}

/// After a message is stored with a provisional reading (engine 1's, engine 2 live), has
/// engine 2 read it off the ingest path; its reading follows as a message update.
async fn refine_later(inner: &Inner, result: &Result<Processed, PipelineError>) {
    let Ok(Processed::Message(IngestOutcome::Stored {
        message, dialog, ..
    })) = result
    else {
        return;
    };
    if !message
        .classification
        .as_ref()
        .is_some_and(|c| c.provisional)
    {
        return;
    }
    let Some(consultant) = inner.consultant.get() else {
        return;
    };
    // Where the message would have gone with no type of its own: the channel's department.
    let channel_department = inner.channels.read().ok().and_then(|c| {
        c.get(&dialog.connector_id)
            .and_then(|i| i.department.clone())
    });
    let default_department = department_id(inner, channel_department.as_deref()).await;
    consultant.refine_later(
        message.id,
        message.subject.clone(),
        message.body.clone(),
        default_department,
    );
}

fn finish(reply: Reply, result: Result<Processed, PipelineError>, started: Instant) {
    metrics::histogram!("kommutator_ingest_seconds").record(started.elapsed().as_secs_f64());
    let label = match &result {
        Ok(Processed::Message(IngestOutcome::Stored { .. })) => "stored",
        Ok(Processed::Message(IngestOutcome::Duplicate { .. })) => "duplicate",
        Ok(Processed::Call(CallOutcome::Duplicate)) => "duplicate",
        Ok(Processed::Call(_)) => "call",
        Ok(Processed::Delivery { .. }) => "delivery",
        Ok(Processed::Published) => "published",
        Ok(Processed::Ignored { .. }) => "ignored",
        Err(_) => "rejected",
    };
    metrics::counter!("kommutator_inbound_events_total", "result" => label).increment(1);
    let _ = reply.send(result);
}

/// Stores the queued messages: one alone, several in one transaction. A batch that fails
/// as a whole has stored nothing; its messages are then taken one at a time, each with its
/// own retries, so a bad one is refused alone.
async fn store_batch(inner: &Inner, messages: &mut Vec<(Reply, IngestMessage)>, started: Instant) {
    if messages.len() == 1 {
        if let Some((reply, input)) = messages.pop() {
            let result = store_message(inner, &input).await;
            refine_later(inner, &result).await;
            finish(reply, result, started);
        }
        return;
    }
    if messages.is_empty() {
        return;
    }
    metrics::histogram!("kommutator_ingest_batch_size").record(messages.len() as f64);
    let (replies, inputs): (Vec<Reply>, Vec<IngestMessage>) = messages.drain(..).unzip();
    match inner.store.ingest_messages(&inputs).await {
        Ok(results) if results.len() == inputs.len() => {
            for (reply, result) in replies.into_iter().zip(results) {
                let result = result.map(Processed::Message).map_err(PipelineError::from);
                refine_later(inner, &result).await;
                finish(reply, result, started);
            }
        }
        other => {
            if let Err(e) = &other {
                tracing::debug!(error = %e, n = inputs.len(), "a batch was not stored; taking its messages one at a time");
            }
            for (reply, input) in replies.into_iter().zip(&inputs) {
                let result = store_message(inner, input).await;
                refine_later(inner, &result).await;
                finish(reply, result, started);
            }
        }
    }
}

/// Stores one message, retrying what a concurrent writer can cause.
async fn store_message(inner: &Inner, input: &IngestMessage) -> Result<Processed, PipelineError> {
    // Two nodes (or two webhook retries) may race on a new sender or thread; the loser's
    // transaction rolls back whole and the retry finds what the winner stored.
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        match inner.store.ingest_message(input).await {
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

/// The channel instance, connector id and checked external id of an event.
fn header(
    inner: &Inner,
    ev: &InboundEvent,
) -> Result<(ChannelInfo, String, String), PipelineError> {
    let connector = ev.connector_id.as_str().to_owned();
    let info = inner
        .channels
        .read()
        .ok()
        .and_then(|c| c.get(&connector).cloned())
        .ok_or_else(|| PipelineError::UnknownConnector(connector.clone()))?;
    let external_id = channel_id("external_id", &ev.external_id)?;
    Ok((info, connector, external_id))
}

/// A message event checked and turned into what the store takes.
async fn message_input(
    inner: &Inner,
    info: &ChannelInfo,
    connector: String,
    external_id: String,
    occurred_at: time::OffsetDateTime,
    m: &kommutator_sdk::InboundMessage,
    raw: Option<&serde_json::Value>,
) -> Result<IngestMessage, PipelineError> {
    // An edit is stored as a message of its own (its own external id); the original stays
    // for audit.
    let thread_id = channel_id("thread_id", &m.thread_id)?;
    if m.sender.identities.len() > 20 {
        return Err(PipelineError::Invalid(FieldError::new(
            "sender.identities",
            "too_many",
            "at most 20 identities",
        )));
    }
    let mut department_id = department_id(inner, info.department.as_deref()).await;
    // iConsultant reads the text with engine 1 (microseconds), so the message is never
    // held back; with engine 2 live that reading is provisional and engine 2's follows once
    // the message is stored (`refine_later`). An applied type with a department of its own
    // sends a new inquiry there.
    let classification = inner
        .consultant
        .get()
        .and_then(|c| c.classify_at_ingest(m.subject.as_deref(), m.text.as_deref()));
    if let Some(dept) = classification
        .as_ref()
        .and_then(|c| c.applied.as_deref())
        .and_then(|t| inner.consultant.get().and_then(|c| c.department_of(t)))
    {
        department_id = Some(dept);
    }
    Ok(IngestMessage {
        connector_id: connector,
        channel: info.channel.clone(),
        external_id,
        thread_id,
        sent_at: Timestamp::from_datetime(occurred_at),
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
        subject: m.subject.clone(),
        html: m.html.clone(),
        quoted: m.quoted.clone(),
        // Forms put the traffic source into the raw payload, as call tracking does
        // (see connectors/README.md).
        traffic_source: traffic_source(raw),
        open_interest: inner.open_interest,
        classification,
    })
}

async fn process(inner: &Inner, ev: InboundEvent) -> Result<Processed, PipelineError> {
    let (info, connector, external_id) = header(inner, &ev)?;
    match ev.kind {
        InboundKind::Message(ref m) => {
            let input = message_input(
                inner,
                &info,
                connector,
                external_id,
                ev.occurred_at,
                m,
                ev.raw.as_ref(),
            )
            .await?;
            let result = store_message(inner, &input).await;
            refine_later(inner, &result).await;
            result
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
        InboundKind::Call(ref c) => {
            let input = call_input(inner, &info, connector, external_id, &ev, c).await?;
            store_call(inner, &input).await
        }
        InboundKind::Unknown { description } => {
            tracing::debug!(connector = %connector, %description, "unknown inbound event");
            Ok(Processed::Ignored {
                reason: format!("unknown input: {description}"),
            })
        }
    }
}

/// The `traffic_source` object of an event's raw payload, if it has one.
fn traffic_source(raw: Option<&serde_json::Value>) -> Option<serde_json::Value> {
    raw.and_then(|r| r.get("traffic_source"))
        .filter(|t| t.is_object())
        .cloned()
}

/// A call event checked and turned into what the store takes.
async fn call_input(
    inner: &Inner,
    info: &ChannelInfo,
    connector: String,
    external_id: String,
    ev: &InboundEvent,
    c: &kommutator_sdk::CallEvent,
) -> Result<IngestCall, PipelineError> {
    use kommutator_sdk::{CallEventKind as K, Direction as D, MissedReason as M};
    let call_external_id = channel_id("call_external_id", &c.call_external_id)?;
    let step = match &c.kind {
        K::Ringing {
            from,
            to,
            direction,
            extension,
        } => CallStep::Ringing {
            from: from.clone(),
            to: to.clone(),
            direction: match direction {
                D::Inbound => CallDirection::Inbound,
                D::Outbound => CallDirection::Outbound,
            },
            extension: extension.clone(),
        },
        K::Answered { by_extension } => CallStep::Answered {
            by_extension: by_extension.clone(),
        },
        K::Transferred { to_extension } => CallStep::Transferred {
            to_extension: to_extension.clone(),
        },
        K::HungUp {
            duration_secs,
            cause,
        } => CallStep::HungUp {
            duration_secs: *duration_secs,
            cause: cause.clone(),
        },
        K::Missed { reason } => CallStep::Missed {
            reason: match reason {
                M::Cancelled => "cancelled",
                M::Busy => "busy",
                M::NoAnswer => "no_answer",
                M::Rejected => "rejected",
            }
            .to_owned(),
        },
        K::Failed { reason } => CallStep::Failed {
            reason: reason.clone(),
        },
        K::RecordingAvailable { url } => CallStep::Recording { url: url.clone() },
    };
    // Call tracking puts the traffic source into the raw payload (see connectors/README.md).
    let traffic_source = traffic_source(ev.raw.as_ref());
    Ok(IngestCall {
        connector_id: connector,
        channel: info.channel.clone(),
        department_id: department_id(inner, info.department.as_deref()).await,
        external_id,
        call_external_id,
        occurred_at: Timestamp::from_datetime(ev.occurred_at),
        step,
        traffic_source,
        open_interest: inner.open_interest,
    })
}

async fn store_call(inner: &Inner, input: &IngestCall) -> Result<Processed, PipelineError> {
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        match inner.store.ingest_call(input).await {
            Ok(outcome) => return Ok(Processed::Call(outcome)),
            // Two nodes opening the same call: the second finds it on the next try.
            Err(StoreError::Duplicate { .. }) if attempt < 4 => continue,
            Err(e) if e.is_transient() && attempt < 4 => {
                tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
                continue;
            }
            Err(e) => return Err(e.into()),
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
