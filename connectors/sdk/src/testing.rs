//! Test kit for connector crates (feature `testing`): a [`ConnectorContext`] wired to a
//! [`TestHarness`] that plays the hub.
//!
//! ```
//! # use std::time::Duration;
//! # use kommutator_sdk::{ConnectorContext, InboundEvent, InboundKind};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let (ctx, mut hub) = ConnectorContext::for_test("tg_test");
//! let task = tokio::spawn(async move {
//!     // a connector's `run(ctx)` goes here
//!     let ev = InboundEvent::new(
//!         ctx.id().clone(),
//!         "1",
//!         time::OffsetDateTime::UNIX_EPOCH,
//!         InboundKind::Unknown { description: "hello".into() },
//!     );
//!     ctx.send(ev).await
//! });
//! let ev = hub.next_event(Duration::from_secs(5)).await.expect("an event");
//! assert_eq!(ev.external_id, "1");
//! hub.shutdown();
//! task.await.expect("no panic").expect("sent");
//! # }
//! ```

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{ConnectorContext, ConnectorError, ConnectorId, InboundEvent, OutboundMessage};

/// The queue capacity [`ConnectorContext::for_test`] uses in both directions.
pub const TEST_CHANNEL_CAPACITY: usize = 64;

impl ConnectorContext {
    /// A context for instance `id` whose other ends are held by the returned
    /// [`TestHarness`], with queues of [`TEST_CHANNEL_CAPACITY`].
    pub fn for_test(id: impl Into<ConnectorId>) -> (ConnectorContext, TestHarness) {
        Self::for_test_with_capacity(id, TEST_CHANNEL_CAPACITY)
    }

    /// Like [`for_test`](Self::for_test) with queues of `capacity` (at least 1), e.g. 1
    /// to test how a connector behaves under backpressure.
    pub fn for_test_with_capacity(
        id: impl Into<ConnectorId>,
        capacity: usize,
    ) -> (ConnectorContext, TestHarness) {
        let id = id.into();
        let capacity = capacity.max(1);
        let (inbound_tx, inbound) = mpsc::channel(capacity);
        let (outbound, outbound_rx) = mpsc::channel(capacity);
        let shutdown = CancellationToken::new();
        let ctx = ConnectorContext::new(id.clone(), inbound_tx, outbound_rx, shutdown.clone());
        let harness = TestHarness {
            id,
            inbound,
            outbound,
            shutdown,
        };
        (ctx, harness)
    }
}

/// The hub's side of a test context: reads the events the connector sends, feeds it
/// outbound messages, and requests shutdown. Dropping it looks to the connector like the
/// hub going away.
#[derive(Debug)]
pub struct TestHarness {
    id: ConnectorId,
    inbound: mpsc::Receiver<InboundEvent>,
    outbound: mpsc::Sender<OutboundMessage>,
    shutdown: CancellationToken,
}

impl TestHarness {
    /// The instance id the context was built with.
    pub fn id(&self) -> &ConnectorId {
        &self.id
    }

    /// The next event the connector sent, waiting at most `timeout`; `None` when the wait
    /// timed out or every sender (the context and its [`InboundSender`](crate::InboundSender)s)
    /// is gone and the queue is empty.
    pub async fn next_event(&mut self, timeout: Duration) -> Option<InboundEvent> {
        tokio::time::timeout(timeout, self.inbound.recv())
            .await
            .ok()
            .flatten()
    }

    /// An event already in the queue, without waiting; `None` when there is none. Handy
    /// to assert that nothing more was sent.
    pub fn try_next_event(&mut self) -> Option<InboundEvent> {
        self.inbound.try_recv().ok()
    }

    /// Hands the connector a message to send, waiting while its outbound queue is full.
    ///
    /// # Errors
    ///
    /// [`ConnectorError::Closed`] when the connector has dropped its context.
    pub async fn send_outbound(&self, msg: OutboundMessage) -> Result<(), ConnectorError> {
        self.outbound
            .send(msg)
            .await
            .map_err(|_| ConnectorError::Closed)
    }

    /// Requests shutdown: cancels the context's token.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// The shutdown token shared with the context.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Stops accepting events, as a hub that is gone: later sends fail with
    /// [`ConnectorError::Closed`]; events already queued can still be read.
    pub fn close_inbound(&mut self) {
        self.inbound.close();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::InboundKind;

    fn ev(external_id: &str) -> InboundEvent {
        InboundEvent::new(
            ConnectorId::new("t"),
            external_id,
            datetime!(2024-05-01 12:30:00 UTC),
            InboundKind::Unknown {
                description: "test".to_owned(),
            },
        )
    }

    fn outbound(id: i64) -> OutboundMessage {
        OutboundMessage {
            id,
            connector_id: ConnectorId::new("t"),
            thread_id: "th".to_owned(),
            to: None,
            text: Some("hi".to_owned()),
            attachments: vec![],
            reply_to_external_id: None,
        }
    }

    /// A stand-in connector loop: echoes each outbound message as an ack until shutdown.
    async fn echo(mut ctx: ConnectorContext) -> Result<(), ConnectorError> {
        // An owned token: `select!` cannot borrow `ctx` for it while `recv_outbound`
        // borrows `ctx` mutably.
        let shutdown = ctx.shutdown().clone();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                msg = ctx.recv_outbound() => {
                    let Some(msg) = msg else { return Err(ConnectorError::Closed) };
                    let ack = InboundEvent::outbound_ack(
                        ctx.id().clone(),
                        msg.id,
                        format!("ext-{}", msg.id),
                        datetime!(2024-05-01 12:30:00 UTC),
                    );
                    ctx.send(ack).await?;
                }
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn harness_drives_a_connector_loop() {
        let (ctx, mut hub) = ConnectorContext::for_test("t");
        assert_eq!(hub.id().as_str(), "t");
        let task = tokio::spawn(echo(ctx));

        hub.send_outbound(outbound(7)).await.unwrap();
        let ack = hub.next_event(Duration::from_secs(5)).await.unwrap();
        assert_eq!(
            ack.kind,
            InboundKind::OutboundAck {
                message_id: 7,
                external_id: "ext-7".to_owned()
            }
        );
        assert_eq!(hub.next_event(Duration::from_millis(100)).await, None);
        assert_eq!(hub.try_next_event(), None);

        hub.shutdown();
        assert!(hub.shutdown_token().is_cancelled());
        task.await.unwrap().unwrap();
        let err = hub.send_outbound(outbound(8)).await.unwrap_err();
        assert!(matches!(err, ConnectorError::Closed), "{err:?}");
    }

    #[tokio::test]
    async fn closing_inbound_looks_like_the_hub_gone() {
        let (ctx, mut hub) = ConnectorContext::for_test_with_capacity("t", 0);
        ctx.send(ev("a")).await.unwrap();
        hub.close_inbound();
        let err = ctx.send(ev("b")).await.unwrap_err();
        assert!(matches!(err, ConnectorError::Closed), "{err:?}");
        assert_eq!(hub.try_next_event().unwrap().external_id, "a");
        drop(ctx);
        assert_eq!(hub.next_event(Duration::from_secs(5)).await, None);
    }
}
