//! [`ConnectorContext`]: the only link between a running connector and the hub.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::store::{FileStore, MemoryFiles, MemoryState, StateStore};
use crate::{ConnectorCommand, ConnectorError, ConnectorId, InboundEvent, OutboundMessage};

/// What the hub gives a connector instance to run with: its id, a bounded sender of
/// [`InboundEvent`]s, a receiver of [`OutboundMessage`]s for this instance, and a
/// shutdown token.
///
/// It is not `Clone` because it owns the outbound receiver; tasks that only send (a
/// webhook router, a per-connection reader) take an [`InboundSender`] from
/// [`sender`](Self::sender).
#[derive(Debug)]
pub struct ConnectorContext {
    inbound: InboundSender,
    outbound: mpsc::Receiver<OutboundMessage>,
    commands: Option<mpsc::Receiver<ConnectorCommand>>,
    state: Arc<dyn StateStore>,
}

impl ConnectorContext {
    /// Builds the context of instance `id`. Called by the hub; connector tests use
    /// `for_test` (feature `testing`).
    ///
    /// `inbound_tx` should be bounded to a small capacity: its fullness is the
    /// backpressure on the connector. Cancelling `shutdown` asks the connector to return
    /// from [`Connector::run`](crate::Connector::run).
    pub fn new(
        id: ConnectorId,
        inbound_tx: mpsc::Sender<InboundEvent>,
        outbound_rx: mpsc::Receiver<OutboundMessage>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            inbound: InboundSender {
                id,
                tx: inbound_tx,
                shutdown,
                files: Arc::new(MemoryFiles::default()),
            },
            outbound: outbound_rx,
            commands: None,
            state: Arc::new(MemoryState::default()),
        }
    }

    /// Gives the context the hub's [`FileStore`] (the default keeps files in memory).
    #[must_use]
    pub fn with_files(mut self, files: Arc<dyn FileStore>) -> Self {
        self.inbound.files = files;
        self
    }

    /// Gives the context the hub's [`StateStore`] for this instance (the default keeps
    /// values in memory, so they do not survive a restart).
    #[must_use]
    pub fn with_state(mut self, state: Arc<dyn StateStore>) -> Self {
        self.state = state;
        self
    }

    /// Where to store the content of received files; also on [`InboundSender::files`].
    pub fn files(&self) -> &Arc<dyn FileStore> {
        &self.inbound.files
    }

    /// What this instance remembers across restarts (mailbox cursors, poll offsets).
    /// Advance a cursor only after [`send`](Self::send) returned `Ok` for what it covers.
    pub fn state(&self) -> &Arc<dyn StateStore> {
        &self.state
    }

    /// Gives the context a receiver of [`ConnectorCommand`]s (click-to-call). The hub does
    /// this for connectors whose [`Connector::CAN_ORIGINATE`](crate::Connector::CAN_ORIGINATE)
    /// is true.
    #[must_use]
    pub fn with_commands(mut self, commands: mpsc::Receiver<ConnectorCommand>) -> Self {
        self.commands = Some(commands);
        self
    }

    /// The next command from the hub; never resolves when the context has no command
    /// receiver, and `None` once the hub has dropped its sender. Cancel-safe, for
    /// `tokio::select!` next to [`recv_outbound`](Self::recv_outbound).
    pub async fn recv_command(&mut self) -> Option<ConnectorCommand> {
        match &mut self.commands {
            Some(rx) => rx.recv().await,
            None => std::future::pending().await,
        }
    }

    /// The instance id; put it in every [`InboundEvent::connector_id`].
    pub fn id(&self) -> &ConnectorId {
        &self.inbound.id
    }

    /// Hands an event to the hub, waiting while the hub's queue is full.
    ///
    /// Acknowledge the item upstream (commit an offset, answer a webhook with 2xx, mark a
    /// mail seen) only after this returns `Ok`: the hub then owns it.
    ///
    /// # Errors
    ///
    /// - [`ConnectorError::Closed`] when the hub has dropped its receiver, or when shutdown
    ///   was requested while waiting for room; the event was not handed over.
    /// - [`ConnectorError::Other`] when `ev.connector_id` is not this instance's id (a bug
    ///   in the connector).
    pub async fn send(&self, ev: InboundEvent) -> Result<(), ConnectorError> {
        self.inbound.send(ev).await
    }

    /// A cloneable handle that sends events for this instance, for spawned tasks and
    /// webhook routers.
    pub fn sender(&self) -> InboundSender {
        self.inbound.clone()
    }

    /// The next message the hub wants sent through this instance, or `None` once the hub
    /// has dropped its sender. Cancel-safe: use it in `tokio::select!` next to the
    /// protocol reads and [`shutdown`](Self::shutdown).
    pub async fn recv_outbound(&mut self) -> Option<OutboundMessage> {
        self.outbound.recv().await
    }

    /// The outbound receiver itself, for `poll_recv`, `try_recv` or `recv_many`.
    pub fn outbound(&mut self) -> &mut mpsc::Receiver<OutboundMessage> {
        &mut self.outbound
    }

    /// The token the hub cancels to stop the instance. `run` selects on its `cancelled()`
    /// and returns `Ok(())` promptly once it fires; tasks the connector spawns take a clone
    /// or a `child_token()`.
    ///
    /// Clone it before a `select!` that also awaits [`recv_outbound`](Self::recv_outbound),
    /// which borrows the context mutably:
    ///
    /// ```
    /// # use kommutator_sdk::{ConnectorContext, ConnectorError};
    /// async fn run(mut ctx: ConnectorContext) -> Result<(), ConnectorError> {
    ///     let shutdown = ctx.shutdown().clone();
    ///     loop {
    ///         tokio::select! {
    ///             () = shutdown.cancelled() => return Ok(()),
    ///             msg = ctx.recv_outbound() => {
    ///                 let Some(msg) = msg else { return Err(ConnectorError::Closed) };
    ///                 // send `msg` on the channel, then report an outbound ack
    ///                 # drop(msg);
    ///             }
    ///             // and the protocol's own reads
    ///         }
    ///     }
    /// }
    /// ```
    pub fn shutdown(&self) -> &CancellationToken {
        &self.inbound.shutdown
    }

    /// Whether shutdown has been requested.
    pub fn is_shutting_down(&self) -> bool {
        self.inbound.shutdown.is_cancelled()
    }
}

/// A cloneable sender of [`InboundEvent`]s for one connector instance, taken from
/// [`ConnectorContext::sender`].
#[derive(Debug, Clone)]
pub struct InboundSender {
    id: ConnectorId,
    tx: mpsc::Sender<InboundEvent>,
    shutdown: CancellationToken,
    files: Arc<dyn FileStore>,
}

impl InboundSender {
    /// The instance id this sender sends for.
    pub fn id(&self) -> &ConnectorId {
        &self.id
    }

    /// Where to store the content of received files (the context's [`FileStore`]).
    pub fn files(&self) -> &Arc<dyn FileStore> {
        &self.files
    }

    /// Hands an event to the hub, waiting while the hub's queue is full; the same as
    /// [`ConnectorContext::send`].
    ///
    /// # Errors
    ///
    /// - [`ConnectorError::Closed`] when the hub has dropped its receiver, or when shutdown
    ///   was requested while waiting for room; the event was not handed over.
    /// - [`ConnectorError::Other`] when `ev.connector_id` is not this instance's id.
    pub async fn send(&self, ev: InboundEvent) -> Result<(), ConnectorError> {
        if ev.connector_id != self.id {
            return Err(ConnectorError::other(format!(
                "event for connector `{}` sent through the context of `{}`",
                ev.connector_id, self.id
            )));
        }
        // Room in the queue wins over shutdown, so a draining hub still gets the event;
        // only a wait for room is cut short, which keeps shutdown prompt when the hub has
        // stopped reading.
        tokio::select! {
            biased;
            sent = self.tx.send(ev) => sent.map_err(|_| ConnectorError::Closed),
            () = self.shutdown.cancelled() => Err(ConnectorError::Closed),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use time::macros::datetime;
    use tokio::time::timeout;

    use super::*;
    use crate::InboundKind;

    fn ev(connector: &str, external_id: &str) -> InboundEvent {
        InboundEvent::new(
            ConnectorId::new(connector),
            external_id,
            datetime!(2024-05-01 12:30:00 UTC),
            InboundKind::Unknown {
                description: "test".to_owned(),
            },
        )
    }

    fn context(
        capacity: usize,
    ) -> (
        ConnectorContext,
        mpsc::Receiver<InboundEvent>,
        mpsc::Sender<OutboundMessage>,
        CancellationToken,
    ) {
        let (in_tx, in_rx) = mpsc::channel(capacity);
        let (out_tx, out_rx) = mpsc::channel(capacity);
        let token = CancellationToken::new();
        let ctx = ConnectorContext::new(ConnectorId::new("c1"), in_tx, out_rx, token.clone());
        (ctx, in_rx, out_tx, token)
    }

    // Paused time makes the timeout below deterministic: the clock only jumps once every
    // task is idle, i.e. once the second send is really parked on the full queue.
    #[tokio::test(start_paused = true)]
    async fn send_waits_for_room() {
        let (ctx, mut in_rx, _out_tx, _token) = context(1);
        ctx.send(ev("c1", "a")).await.unwrap();

        // The queue holds one event, so the second send must wait for the hub to read.
        let blocked = timeout(Duration::from_millis(50), ctx.send(ev("c1", "b"))).await;
        assert!(
            blocked.is_err(),
            "second send returned while the queue was full"
        );

        let sender = ctx.sender();
        let pending = tokio::spawn(async move { sender.send(ev("c1", "b")).await });
        tokio::task::yield_now().await;
        assert!(!pending.is_finished());

        assert_eq!(in_rx.recv().await.unwrap().external_id, "a");
        timeout(Duration::from_secs(5), pending)
            .await
            .expect("send completes once the hub reads")
            .unwrap()
            .unwrap();
        assert_eq!(in_rx.recv().await.unwrap().external_id, "b");
    }

    #[tokio::test]
    async fn send_after_hub_dropped_is_closed() {
        let (ctx, in_rx, _out_tx, _token) = context(4);
        drop(in_rx);
        let err = ctx.send(ev("c1", "a")).await.unwrap_err();
        assert!(matches!(err, ConnectorError::Closed), "{err:?}");
        let err = ctx.sender().send(ev("c1", "a")).await.unwrap_err();
        assert!(matches!(err, ConnectorError::Closed), "{err:?}");
    }

    #[tokio::test]
    async fn shutdown_cuts_a_blocked_send_short() {
        let (ctx, mut in_rx, _out_tx, token) = context(1);
        ctx.send(ev("c1", "a")).await.unwrap();
        let sender = ctx.sender();
        let pending = tokio::spawn(async move { sender.send(ev("c1", "b")).await });
        tokio::task::yield_now().await;
        token.cancel();
        let err = timeout(Duration::from_secs(5), pending)
            .await
            .expect("send returns on shutdown")
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, ConnectorError::Closed), "{err:?}");
        assert!(ctx.is_shutting_down());

        // With room in the queue, an event still goes through during shutdown.
        assert_eq!(in_rx.recv().await.unwrap().external_id, "a");
        ctx.send(ev("c1", "c")).await.unwrap();
        assert_eq!(in_rx.recv().await.unwrap().external_id, "c");
    }

    #[tokio::test]
    async fn send_rejects_a_foreign_connector_id() {
        let (ctx, mut in_rx, _out_tx, _token) = context(4);
        let err = ctx.send(ev("other", "a")).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "event for connector `other` sent through the context of `c1`"
        );
        assert!(in_rx.try_recv().is_err(), "nothing was handed over");
    }

    #[tokio::test]
    async fn outbound_and_shutdown_reach_the_connector() {
        let (mut ctx, _in_rx, out_tx, token) = context(4);
        assert_eq!(ctx.id().as_str(), "c1");
        assert_eq!(ctx.sender().id(), ctx.id());
        let msg = OutboundMessage {
            id: 1,
            connector_id: ConnectorId::new("c1"),
            thread_id: "t".to_owned(),
            to: None,
            subject: None,
            text: Some("hi".to_owned()),
            attachments: vec![],
            reply_to_external_id: None,
        };
        out_tx.send(msg.clone()).await.unwrap();
        assert_eq!(ctx.recv_outbound().await, Some(msg));
        assert!(ctx.outbound().try_recv().is_err());

        assert!(!ctx.is_shutting_down());
        token.cancel();
        assert!(ctx.is_shutting_down());
        assert!(ctx.shutdown().is_cancelled());

        drop(out_tx);
        assert_eq!(ctx.recv_outbound().await, None);
    }
}
