//! Test kit for connector crates (feature `testing`): a [`ConnectorContext`] wired to a
//! [`TestHarness`] that plays the hub, and [`http_request`], one raw HTTP/1.1 request for
//! replaying webhooks over loopback.
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

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::store::{MemoryFiles, MemoryState};
use crate::{
    ConnectorCommand, ConnectorContext, ConnectorError, ConnectorId, InboundEvent, OutboundMessage,
};

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
        let (commands, commands_rx) = mpsc::channel(capacity);
        let shutdown = CancellationToken::new();
        let files = MemoryFiles::new();
        let state = MemoryState::new();
        let ctx = ConnectorContext::new(id.clone(), inbound_tx, outbound_rx, shutdown.clone())
            .with_commands(commands_rx)
            .with_files(files.clone())
            .with_state(state.clone());
        let harness = TestHarness {
            id,
            inbound,
            outbound,
            commands,
            shutdown,
            files,
            state,
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
    commands: mpsc::Sender<ConnectorCommand>,
    shutdown: CancellationToken,
    files: Arc<MemoryFiles>,
    state: Arc<MemoryState>,
}

impl TestHarness {
    /// The instance id the context was built with.
    pub fn id(&self) -> &ConnectorId {
        &self.id
    }

    /// The files the connector stored through the context.
    pub fn files(&self) -> &Arc<MemoryFiles> {
        &self.files
    }

    /// The state the connector stored through the context. To test a restart, build the
    /// next context with `for_test(..)` and `.with_state(harness.state().clone())`.
    pub fn state(&self) -> &Arc<MemoryState> {
        &self.state
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

    /// Hands the connector a command (click-to-call), waiting while its queue is full.
    ///
    /// # Errors
    ///
    /// [`ConnectorError::Closed`] when the connector has dropped its context.
    pub async fn send_command(&self, cmd: ConnectorCommand) -> Result<(), ConnectorError> {
        self.commands
            .send(cmd)
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

/// Sends one HTTP/1.1 request on a fresh connection to `addr`, the way a PBX or a
/// webhook provider would, and returns the status code and the body of the answer.
///
/// The request carries `Host`, `Connection: close`, `Content-Length` and then `headers`
/// as given; the answer is read until the server closes the connection, and its body is
/// returned as sent (no chunked decoding: fine for the small bodies axum writes with a
/// `Content-Length`).
///
/// # Errors
///
/// Any I/O error, or [`io::ErrorKind::InvalidData`] when the answer is not UTF-8 or has
/// no status line and blank line.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> io::Result<(u16, String)> {
    let stream = TcpStream::connect(addr).await?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(k);
        req.push_str(": ");
        req.push_str(v);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req.push_str(body);

    // `readable`/`try_read` and `writable`/`try_write` rather than the `AsyncReadExt`
    // helpers, so the kit needs no tokio feature beyond `net`.
    let mut rest = req.as_bytes();
    while !rest.is_empty() {
        stream.writable().await?;
        match stream.try_write(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => rest = rest.get(n..).unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    let mut resp = Vec::new();
    let mut chunk = [0_u8; 4096];
    loop {
        stream.readable().await?;
        match stream.try_read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => resp.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }

    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let text = String::from_utf8(resp).map_err(|_| invalid("answer is not UTF-8"))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| invalid("answer has no end of head"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("answer has no status code"))?;
    Ok((status, body.to_owned()))
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
            subject: None,
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

    #[tokio::test]
    async fn http_request_speaks_to_a_real_server() {
        use axum::http::{HeaderMap, Method, StatusCode};

        async fn echo_http(
            method: Method,
            headers: HeaderMap,
            body: String,
        ) -> (StatusCode, String) {
            let x = headers
                .get("x-test")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned();
            (StatusCode::CREATED, format!("{method} {x} {body}"))
        }

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = axum::Router::new().route("/hook", axum::routing::any(echo_http));
        let server = tokio::spawn(async move { axum::serve(listener, router).await });

        let (status, body) = http_request(addr, "POST", "/hook", &[("X-Test", "yes")], "a=1")
            .await
            .unwrap();
        assert_eq!((status, body.as_str()), (201, "POST yes a=1"));
        let (status, body) = http_request(addr, "GET", "/hook?q=1", &[], "")
            .await
            .unwrap();
        assert_eq!((status, body.as_str()), (201, "GET - "));
        let (status, _) = http_request(addr, "POST", "/nope", &[], "").await.unwrap();
        assert_eq!(status, 404);
        server.abort();
    }
}
