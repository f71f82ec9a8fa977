//! The connector contract of Kommutator.
//!
//! A connector turns one protocol (Asterisk AMI, HEP, the Telegram Bot API, IMAP, a
//! webhook, …) into [`InboundEvent`]s, and [`OutboundMessage`]s back into that protocol.
//! Nothing else: it knows nothing of storage, the bus, WebSockets or the assistants, and
//! this crate is all it sees of the hub.
//!
//! - [`Connector`]: the trait a connector crate implements; one value per configured
//!   instance.
//! - [`ConnectorContext`]: what the hub hands to [`Connector::run`]: the instance id,
//!   a bounded event sender whose [`send`](ConnectorContext::send) is the backpressure,
//!   the instance's outbound queue, and a shutdown token. [`InboundSender`] is its
//!   cloneable sending half.
//! - [`InboundEvent`] / [`InboundKind`]: messages, delivery reports, outbound acks, call
//!   events, typing, and [`InboundKind::Unknown`] for valid input with no mapping. Every
//!   event carries `(connector_id, external_id)`, the key the hub persists idempotently
//!   on, because delivery is at-least-once.
//! - [`OutboundMessage`]: what to send; the result comes back as an
//!   [`InboundKind::OutboundAck`], [`InboundKind::DeliveryStatus`] or
//!   [`InboundKind::OutboundFailed`] event.
//! - [`ConnectorError`]: why a connector failed; [`ConnectorError::is_retryable`] tells
//!   the hub's supervisor whether to restart it with backoff or mark it `failed`.
//! - [`normalize_external_id`]: the pure check every id from the wire goes through.
//!
//! Helpers shared by connector crates:
//!
//! - [`phone`]: phone numbers toward E.164 under a [`NumberPlan`](phone::NumberPlan)
//!   (country code, extension length), best effort and pure.
//! - [`CallTable`]: a bounded map of per-call state that forgets the oldest call first.
//! - [`Secret`]: a config credential whose `Debug` prints `"***"`.
//! - [`store`]: the hub's [`FileStore`] for received files and [`StateStore`] for values
//!   an instance remembers across restarts, both on the context.
//! - `testing` (feature `testing`): `ConnectorContext::for_test` and `TestHarness`, the
//!   hub's side of a context, for unit and replay tests, and `testing::http_request`, one
//!   raw HTTP/1.1 request over loopback for webhook replay tests.
//!
//! The full contract, in MUST/SHOULD form, and the checklist for adding a connector are
//! in `connectors/README.md`.

mod call_table;
mod command;
mod context;
mod error;
mod event;
mod outbound;
pub mod phone;
mod secret;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;

pub use call_table::CallTable;
pub use command::{ConnectorCommand, OriginateRequest};
pub use context::{ConnectorContext, InboundSender};
pub use error::{BoxError, ConnectorError};
pub use event::{
    normalize_external_id, Attachment, CallEvent, CallEventKind, ConnectorId, DeliveryState,
    Direction, IdentityKind, InboundEvent, InboundKind, InboundMessage, MissedReason,
    ParseIdentityKindError, Party, PartyIdentity, MAX_EXTERNAL_ID_LEN,
};
pub use outbound::OutboundMessage;
pub use secret::Secret;
pub use store::{FileStore, StateStore, StoredFile};
#[cfg(feature = "testing")]
pub use testing::{TestHarness, TEST_CHANNEL_CAPACITY};
/// The shutdown token type of [`ConnectorContext::shutdown`], re-exported so connector
/// crates need not name `tokio-util` themselves.
pub use tokio_util::sync::CancellationToken;

/// One kind of channel. The hub builds one value per configured instance with
/// [`new`](Self::new), mounts its [`routes`](Self::routes) if any, and drives
/// [`run`](Self::run) under a supervisor that restarts it with backoff while the error
/// [`is_retryable`](ConnectorError::is_retryable).
pub trait Connector: Sized + Send + 'static {
    /// The `snake_case` name of the protocol or service (`"asterisk_ami"`): the `type` in
    /// the config file, the `kind` label of metrics and logs.
    const KIND: &'static str;

    /// The instance's config table, minus `type`. Its `Debug` must not print secrets:
    /// the hub logs it.
    type Config: serde::de::DeserializeOwned + std::fmt::Debug + Send;

    /// Validates `config` and builds the connector. No I/O: nothing is opened or
    /// connected until [`run`](Self::run).
    ///
    /// # Errors
    ///
    /// [`ConnectorError::Config`] naming the field at fault.
    fn new(config: Self::Config) -> Result<Self, ConnectorError>;

    /// Whether the instance can place calls on request ([`ConnectorCommand::Originate`],
    /// click-to-call). The hub sends commands only to connectors that say yes; they read
    /// them with [`ConnectorContext::recv_command`].
    const CAN_ORIGINATE: bool = false;

    /// Routes for push channels (webhooks), relative to a prefix the hub chooses for
    /// this instance. Handlers hand events over through a [`ConnectorContext::sender`]
    /// captured here, and answer 2xx only after its `send` succeeded. Called once,
    /// before `run`. The default is none.
    fn routes(&self, _ctx: &ConnectorContext) -> Option<axum::Router> {
        None
    }

    /// Runs the instance until [`ConnectorContext::shutdown`] is cancelled, then returns
    /// `Ok(())` promptly.
    ///
    /// # Errors
    ///
    /// Any [`ConnectorError`] that ended the run. A connector may reconnect by itself on
    /// transient errors or return a retryable error and let the supervisor restart it
    /// with backoff; a non-retryable error (`Config`, `Auth`) marks the instance
    /// `failed` until an admin acts.
    fn run(
        self,
        ctx: ConnectorContext,
    ) -> impl std::future::Future<Output = Result<(), ConnectorError>> + Send;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A minimal connector, to check that the trait is implementable as documented.
    #[derive(Debug)]
    struct Echo {
        greeting: String,
    }

    #[derive(Debug, serde::Deserialize)]
    struct EchoConfig {
        greeting: String,
    }

    impl Connector for Echo {
        const KIND: &'static str = "echo";
        type Config = EchoConfig;

        fn new(config: EchoConfig) -> Result<Self, ConnectorError> {
            if config.greeting.is_empty() {
                return Err(ConnectorError::config("greeting", "must not be empty"));
            }
            Ok(Self {
                greeting: config.greeting,
            })
        }

        async fn run(self, mut ctx: ConnectorContext) -> Result<(), ConnectorError> {
            // An owned token: `select!` cannot borrow `ctx` for it while `recv_outbound`
            // borrows `ctx` mutably.
            let shutdown = ctx.shutdown().clone();
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    msg = ctx.recv_outbound() => {
                        let msg = msg.ok_or(ConnectorError::Closed)?;
                        let ev = InboundEvent::outbound_ack(
                            ctx.id().clone(),
                            msg.id,
                            format!("{}-{}", self.greeting, msg.id),
                            time::OffsetDateTime::UNIX_EPOCH,
                        );
                        ctx.send(ev).await?;
                    }
                }
            }
        }
    }

    #[test]
    fn new_validates_config() {
        let cfg: EchoConfig = serde_json::from_str(r#"{"greeting": ""}"#).unwrap();
        let err = Echo::new(cfg).unwrap_err();
        assert!(!err.is_retryable());
        assert_eq!(
            err.to_string(),
            "invalid config field `greeting`: must not be empty"
        );
        assert_eq!(Echo::KIND, "echo");
    }

    #[tokio::test]
    async fn run_is_spawnable_and_stops_on_shutdown() {
        let (in_tx, mut in_rx) = tokio::sync::mpsc::channel(4);
        let (out_tx, out_rx) = tokio::sync::mpsc::channel(4);
        let token = CancellationToken::new();
        let ctx = ConnectorContext::new(ConnectorId::new("e1"), in_tx, out_rx, token.clone());
        let echo = Echo::new(EchoConfig {
            greeting: "hi".to_owned(),
        })
        .unwrap();
        assert!(echo.routes(&ctx).is_none());
        let task = tokio::spawn(echo.run(ctx));

        out_tx
            .send(OutboundMessage {
                id: 3,
                connector_id: ConnectorId::new("e1"),
                thread_id: "t".to_owned(),
                to: None,
                subject: None,
                text: None,
                attachments: vec![],
                reply_to_external_id: None,
            })
            .await
            .unwrap();
        let ev = in_rx.recv().await.unwrap();
        assert_eq!(
            ev.kind,
            InboundKind::OutboundAck {
                message_id: 3,
                external_id: "hi-3".to_owned()
            }
        );
        token.cancel();
        task.await.unwrap().unwrap();
    }
}
