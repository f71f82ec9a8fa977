//! The I/O loop: connect, log in, resync, then read events, ping, place click-to-calls,
//! and reconnect with backoff when the connection is lost.
//!
//! Tasks and queues of one session:
//!
//! ```text
//! socket ─▶ reader task ─▶ backlog (bounded: max_backlog_messages, 64 MiB) ─▶ session task ─▶ ctx.send (hub)
//!                                                                             │ tracker (pure)
//! socket ◀──────────────── Ping / CoreShowChannels / Originate / Logoff ◀─────┘
//! ```
//!
//! The reader only decodes and queues with `try_send`: it never waits for anyone, so the
//! socket is drained however slow the hub is (Asterisk drops a client that leaves its
//! writes pending for `writetimeout`, 100 ms by default). The session task waits on the
//! hub's `send` (the backpressure); meanwhile the backlog absorbs the stream. If the
//! backlog fills, the reader ends the session with a protocol error instead of dropping
//! messages silently: the events read so far are still processed and sent, the
//! connection is closed, and after the reconnect the `CoreShowChannels` resync closes
//! every call that ended in the gap (`hangup` / `missed` with a "disconnected" cause),
//! so a call's terminal state is never lost, only its exact cause and talk time.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use kommutator_sdk::{
    normalize_external_id, ConnectorCommand, ConnectorContext, ConnectorError, InboundEvent,
    OriginateRequest,
};
use md5::{Digest, Md5};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{timeout, Instant};
use tokio_util::codec::{Decoder, Encoder};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::codec::{AmiCodec, AmiFrame, AmiMessage};
use crate::config::{AuthMethod, Settings};
use crate::tracker::{failed_update, CallTracker, CallUpdate};

/// Connecting, and each login step, give up after this long.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// A write to the socket that takes longer means the connection is dead.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// A session that stayed up this long resets the backoff.
const STABLE_SESSION: Duration = Duration::from_secs(30);
/// Bytes the backlog may hold, whatever the message count.
const MAX_BACKLOG_BYTES: usize = 64 * 1024 * 1024;
/// Asterisk's longest Uniqueid (`AST_MAX_UNIQUEID` 150, with its NUL).
const MAX_CHANNEL_ID_LEN: usize = 149;

/// How a session ended.
enum End {
    /// Shutdown requested: `run` returns `Ok`.
    Shutdown,
    /// The connection failed; reconnect after a backoff.
    Retry(ConnectorError),
    /// Give up: bad credentials, or the hub is gone.
    Stop(ConnectorError),
}

/// Runs the connector until shutdown; see the module docs.
pub(crate) async fn run(
    settings: Settings,
    mut ctx: ConnectorContext,
) -> Result<(), ConnectorError> {
    let shutdown = ctx.shutdown().clone();
    let mut tracker = CallTracker::new(settings.tracker.clone());
    let mut backoff = Backoff::new(settings.max_backoff);
    let mut session_no: u64 = 0;
    let mut ever_up = false;
    loop {
        session_no += 1;
        let started = Instant::now();
        let mut session = Session {
            settings: &settings,
            tracker: &mut tracker,
            session_no,
            next_action: 0,
            rejected: 0,
            ping_id: None,
            resync: None,
            originates: HashSet::new(),
        };
        match session.run(&mut ctx, &shutdown, &mut ever_up).await {
            End::Shutdown => return Ok(()),
            End::Stop(e) => {
                if shutdown.is_cancelled() {
                    return Ok(());
                }
                return Err(e);
            }
            End::Retry(e) => {
                if shutdown.is_cancelled() {
                    return Ok(());
                }
                if !ever_up {
                    // Nothing to keep yet: let the supervisor retry and show the state.
                    return Err(e);
                }
                if started.elapsed() >= STABLE_SESSION {
                    backoff.reset();
                }
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "ami session ended; reconnecting");
                if wait_between_sessions(delay, &mut ctx, &shutdown).await? {
                    return Ok(());
                }
            }
        }
    }
}

/// Sleeps `delay`, failing click-to-calls meanwhile. Returns whether shutdown came.
async fn wait_between_sessions(
    delay: Duration,
    ctx: &mut ConnectorContext,
    shutdown: &CancellationToken,
) -> Result<bool, ConnectorError> {
    let sleep = tokio::time::sleep(delay);
    tokio::pin!(sleep);
    let mut commands_open = true;
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => return Ok(true),
            () = &mut sleep => return Ok(false),
            cmd = ctx.recv_command(), if commands_open => match cmd {
                None => commands_open = false,
                Some(ConnectorCommand::Originate(req)) => {
                    let reason = "the connection to the PBX is down; try again in a moment";
                    if let Some(update) = failed_update(&req.call_external_id, reason, OffsetDateTime::now_utc()) {
                        if let Err(e) = ctx.send(update.into_inbound(ctx.id().clone())).await {
                            return if shutdown.is_cancelled() { Ok(true) } else { Err(e) };
                        }
                    }
                }
            },
        }
    }
}

/// `md5(challenge + secret)` in lowercase hex: the `Key` of an MD5 login.
pub(crate) fn md5_login_key(challenge: &str, secret: &str) -> String {
    let mut hasher = Md5::new();
    hasher.update(challenge.as_bytes());
    hasher.update(secret.as_bytes());
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Aborts the reader task when the session goes away.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One TCP connection: the write half, and the backlog the reader task fills.
struct Conn {
    writer: OwnedWriteHalf,
    frames: mpsc::Receiver<(AmiFrame, usize)>,
    backlog_bytes: Arc<AtomicUsize>,
    reader: AbortOnDrop<ConnectorError>,
    codec: AmiCodec,
    out: BytesMut,
}

impl Conn {
    async fn send(&mut self, msg: &AmiMessage) -> Result<(), End> {
        self.out.clear();
        self.codec
            .encode(msg, &mut self.out)
            .map_err(|e| End::Retry(ConnectorError::protocol(e.to_string())))?;
        match timeout(WRITE_TIMEOUT, self.writer.write_all(&self.out)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(End::Retry(ConnectorError::connect_with(
                "writing to the AMI socket failed",
                e,
            ))),
            Err(_) => Err(End::Retry(ConnectorError::connect(
                "writing to the AMI socket timed out",
            ))),
        }
    }

    /// The next frame, or why the reader stopped.
    async fn next_frame(&mut self) -> Result<AmiFrame, End> {
        match self.frames.recv().await {
            Some((frame, size)) => {
                self.backlog_bytes.fetch_sub(size, Ordering::Relaxed);
                Ok(frame)
            }
            None => Err(End::Retry(self.reader_end().await)),
        }
    }

    /// The next frame before `deadline`, or `None` once it passed.
    async fn next_frame_until(&mut self, deadline: Instant) -> Result<Option<AmiFrame>, End> {
        match tokio::time::timeout_at(deadline, self.next_frame()).await {
            Ok(frame) => frame.map(Some),
            Err(_) => Ok(self.try_next_frame()),
        }
    }

    fn try_next_frame(&mut self) -> Option<AmiFrame> {
        let (frame, size) = self.frames.try_recv().ok()?;
        self.backlog_bytes.fetch_sub(size, Ordering::Relaxed);
        Some(frame)
    }

    async fn reader_end(&mut self) -> ConnectorError {
        match (&mut self.reader.0).await {
            Ok(e) => e,
            Err(e) => ConnectorError::other(format!("the ami reader task failed: {e}")),
        }
    }
}

/// Reads and decodes the socket into the backlog until EOF, an error, or overflow.
async fn read_loop(
    mut rd: OwnedReadHalf,
    tx: mpsc::Sender<(AmiFrame, usize)>,
    backlog_bytes: Arc<AtomicUsize>,
    max_messages: usize,
) -> ConnectorError {
    let mut codec = AmiCodec::new();
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let queue = |frame: AmiFrame| -> Result<(), ConnectorError> {
        let size = frame_size(&frame);
        let queued = backlog_bytes.fetch_add(size, Ordering::Relaxed) + size;
        let overflow = || {
            ConnectorError::protocol(format!(
                "over {max_messages} ami messages or {} MiB waiting for the hub; dropping the session to resync",
                MAX_BACKLOG_BYTES / (1024 * 1024)
            ))
        };
        if queued > MAX_BACKLOG_BYTES {
            return Err(overflow());
        }
        tx.try_send((frame, size)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => overflow(),
            mpsc::error::TrySendError::Closed(_) => ConnectorError::Closed,
        })
    };
    loop {
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    if let Err(e) = queue(frame) {
                        return e;
                    }
                }
                Ok(None) => break,
                Err(e) => return ConnectorError::protocol(e.to_string()),
            }
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) => {
                while let Ok(Some(frame)) = codec.decode_eof(&mut buf) {
                    if let Err(e) = queue(frame) {
                        return e;
                    }
                }
                return ConnectorError::connect("the PBX closed the AMI connection");
            }
            Ok(_) => {}
            Err(e) => return ConnectorError::connect_with("reading from the AMI socket failed", e),
        }
    }
}

fn frame_size(frame: &AmiFrame) -> usize {
    match frame {
        AmiFrame::Message(m) => m.headers().iter().map(|(k, v)| k.len() + v.len() + 4).sum(),
        AmiFrame::Banner { version } => version.len(),
        AmiFrame::Rejected { reason } => reason.len(),
    }
}

/// Runs `fut` unless shutdown comes first.
async fn or_shutdown<T>(
    shutdown: &CancellationToken,
    fut: impl std::future::Future<Output = Result<T, End>>,
) -> Result<T, End> {
    tokio::select! {
        biased;
        () = shutdown.cancelled() => Err(End::Shutdown),
        r = fut => r,
    }
}

struct Session<'a> {
    settings: &'a Settings,
    tracker: &'a mut CallTracker,
    session_no: u64,
    next_action: u64,
    rejected: u64,
    /// The ActionID of the `Ping` awaiting its `Pong`.
    ping_id: Option<String>,
    /// The `CoreShowChannels` in progress: its ActionID and the channels so far.
    resync: Option<(String, Vec<AmiMessage>)>,
    /// ActionIDs of `Originate`s awaiting their response.
    originates: HashSet<String>,
}

impl Session<'_> {
    fn action_id(&mut self) -> String {
        self.next_action += 1;
        format!("kommutator-{}-{}", self.session_no, self.next_action)
    }

    async fn run(
        &mut self,
        ctx: &mut ConnectorContext,
        shutdown: &CancellationToken,
        ever_up: &mut bool,
    ) -> End {
        let mut conn = match or_shutdown(shutdown, self.connect()).await {
            Ok(conn) => conn,
            Err(end) => return end,
        };
        if let Err(end) = or_shutdown(shutdown, self.login(&mut conn)).await {
            return end;
        }
        *ever_up = true;
        self.tracker.begin_session();
        tracing::info!(host = %self.settings.host, port = self.settings.port, "ami session up");
        match self.serve(&mut conn, ctx, shutdown).await {
            Ok(()) => End::Shutdown,
            Err(end) => end,
        }
    }

    async fn connect(&mut self) -> Result<Conn, End> {
        let (host, port) = (self.settings.host.as_str(), self.settings.port);
        let stream = match timeout(STEP_TIMEOUT, TcpStream::connect((host, port))).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(End::Retry(ConnectorError::connect_with(
                    format!("ami {host}:{port}"),
                    e,
                )))
            }
            Err(_) => {
                return Err(End::Retry(ConnectorError::connect(format!(
                    "ami {host}:{port}: connect timed out"
                ))))
            }
        };
        // Small actions; do not let Nagle hold a Pong.
        let _ = stream.set_nodelay(true);
        let (rd, writer) = stream.into_split();
        let (tx, frames) = mpsc::channel(self.settings.max_backlog);
        let backlog_bytes = Arc::new(AtomicUsize::new(0));
        let reader = AbortOnDrop(tokio::spawn(read_loop(
            rd,
            tx,
            backlog_bytes.clone(),
            self.settings.max_backlog,
        )));
        let mut conn = Conn {
            writer,
            frames,
            backlog_bytes,
            reader,
            codec: AmiCodec::without_banner(),
            out: BytesMut::new(),
        };
        match conn.next_frame_until(Instant::now() + STEP_TIMEOUT).await? {
            Some(AmiFrame::Banner { version }) => {
                tracing::debug!(%version, "ami banner");
                Ok(conn)
            }
            Some(_) => Err(End::Retry(ConnectorError::protocol(
                "the ami server sent no banner",
            ))),
            None => Err(End::Retry(ConnectorError::connect(format!(
                "ami {host}:{port}: no banner within 10s"
            )))),
        }
    }

    /// Waits for the response to `action_id`, skipping anything else.
    async fn response(&mut self, conn: &mut Conn, action_id: &str) -> Result<AmiMessage, End> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let Some(frame) = conn.next_frame_until(deadline).await? else {
                return Err(End::Retry(ConnectorError::connect(
                    "the ami server did not answer the login within 10s",
                )));
            };
            match frame {
                AmiFrame::Message(m)
                    if m.response().is_some() && m.action_id() == Some(action_id) =>
                {
                    return Ok(m)
                }
                other => {
                    tracing::debug!(frame = ?other, "ami frame before login completed, skipped")
                }
            }
        }
    }

    async fn login(&mut self, conn: &mut Conn) -> Result<(), End> {
        let s = self.settings;
        let mut login = AmiMessage::action("Login");
        match s.auth {
            AuthMethod::Md5 => {
                let id = self.action_id();
                conn.send(
                    &AmiMessage::action("Challenge")
                        .with("ActionID", &id)
                        .with("AuthType", "MD5"),
                )
                .await?;
                let resp = self.response(conn, &id).await?;
                if !is_success(&resp) {
                    return Err(End::Stop(ConnectorError::auth(format!(
                        "the PBX refused the MD5 challenge: {}",
                        resp.get("Message").unwrap_or("no reason given")
                    ))));
                }
                let Some(challenge) = resp.get_nonempty("Challenge") else {
                    return Err(End::Retry(ConnectorError::protocol(
                        "challenge response without `Challenge`",
                    )));
                };
                let key = md5_login_key(challenge, s.secret.expose());
                let id = self.action_id();
                login = login
                    .with("ActionID", &id)
                    .with("AuthType", "MD5")
                    .with("Username", &s.username)
                    .with("Key", &key);
            }
            AuthMethod::Plain => {
                let id = self.action_id();
                login = login
                    .with("ActionID", &id)
                    .with("Username", &s.username)
                    .with("Secret", s.secret.expose());
            }
        }
        let login = login.with("Events", s.events_mask());
        let id = login.action_id().unwrap_or_default().to_owned();
        conn.send(&login).await?;
        let resp = self.response(conn, &id).await?;
        if !is_success(&resp) {
            return Err(End::Stop(ConnectorError::auth(format!(
                "login as `{}` rejected: {}",
                s.username,
                resp.get("Message").unwrap_or("no reason given")
            ))));
        }
        Ok(())
    }

    /// The session proper, from the resync to shutdown or a failure.
    async fn serve(
        &mut self,
        conn: &mut Conn,
        ctx: &mut ConnectorContext,
        shutdown: &CancellationToken,
    ) -> Result<(), End> {
        let resync_id = self.action_id();
        conn.send(&AmiMessage::action("CoreShowChannels").with("ActionID", &resync_id))
            .await?;
        self.resync = Some((resync_id, vec![]));

        let interval = self.settings.ping_interval;
        let mut next_ping = Instant::now() + interval;
        let mut ping_deadline: Option<Instant> = None;
        let mut commands_open = true;
        loop {
            let wake = ping_deadline.map_or(next_ping, |d| d.min(next_ping));
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    let bye = AmiMessage::action("Logoff").with("ActionID", &self.action_id());
                    let _ = timeout(Duration::from_secs(1), conn.send(&bye)).await;
                    let _ = timeout(Duration::from_secs(1), conn.writer.shutdown()).await;
                    return Ok(());
                }
                cmd = ctx.recv_command(), if commands_open => match cmd {
                    None => commands_open = false,
                    Some(ConnectorCommand::Originate(req)) => self.originate(conn, ctx, req).await?,
                },
                () = tokio::time::sleep_until(wake) => {
                    // What was read meanwhile may hold the Pong.
                    while let Some(frame) = conn.try_next_frame() {
                        self.handle_frame(frame, ctx).await?;
                    }
                    if self.ping_id.is_none() {
                        ping_deadline = None;
                    }
                    let now = Instant::now();
                    if ping_deadline.is_some_and(|d| now >= d) {
                        return Err(End::Retry(ConnectorError::connect(format!(
                            "no answer to Ping within {}s", self.settings.ping_timeout.as_secs()
                        ))));
                    }
                    if now >= next_ping {
                        if self.ping_id.is_none() {
                            let id = self.action_id();
                            conn.send(&AmiMessage::action("Ping").with("ActionID", &id)).await?;
                            self.ping_id = Some(id);
                            ping_deadline = Some(now + self.settings.ping_timeout);
                        }
                        next_ping = now + interval;
                    }
                    self.refuse_outbound(ctx).await?;
                }
                frame = conn.next_frame() => {
                    self.handle_frame(frame?, ctx).await?;
                    if self.ping_id.is_none() {
                        ping_deadline = None;
                    }
                }
            }
        }
    }

    /// AMI cannot send messages: anything the hub queued for this instance fails.
    async fn refuse_outbound(&mut self, ctx: &mut ConnectorContext) -> Result<(), End> {
        while let Ok(msg) = ctx.outbound().try_recv() {
            let ev = InboundEvent::outbound_failed(
                ctx.id().clone(),
                msg.id,
                "an Asterisk AMI connection cannot send messages",
                OffsetDateTime::now_utc(),
            );
            ctx.send(ev).await.map_err(End::Stop)?;
        }
        Ok(())
    }

    async fn emit(&mut self, ctx: &ConnectorContext, updates: Vec<CallUpdate>) -> Result<(), End> {
        for update in updates {
            tracing::debug!(external_id = %update.external_id, "call event");
            ctx.send(update.into_inbound(ctx.id().clone()))
                .await
                .map_err(End::Stop)?;
        }
        Ok(())
    }

    async fn handle_frame(&mut self, frame: AmiFrame, ctx: &ConnectorContext) -> Result<(), End> {
        let msg = match frame {
            AmiFrame::Message(m) => m,
            AmiFrame::Rejected { reason } => {
                self.rejected += 1;
                tracing::warn!(%reason, rejected = self.rejected, "rejected a message that is not valid AMI");
                return Ok(());
            }
            AmiFrame::Banner { .. } => return Ok(()),
        };
        let now = OffsetDateTime::now_utc();
        if msg.response().is_some() {
            let id = msg.action_id().unwrap_or_default().to_owned();
            if self.ping_id.as_deref() == Some(id.as_str()) {
                self.ping_id = None;
            } else if self.resync.as_ref().is_some_and(|(rid, _)| *rid == id) && !is_success(&msg) {
                tracing::warn!(
                    message = msg.get("Message").unwrap_or_default(),
                    "the PBX refused CoreShowChannels: calls that ended while disconnected stay open"
                );
                self.resync = None;
            } else if self.originates.remove(&id) && !is_success(&msg) {
                let message = msg.get("Message").unwrap_or_default().to_owned();
                let updates = self
                    .tracker
                    .originate_rejected(&id, &message, now, msg.to_json());
                self.emit(ctx, updates).await?;
            }
            return Ok(());
        }
        if let (Some((rid, items)), Some(aid)) = (self.resync.as_mut(), msg.action_id()) {
            if rid == aid {
                if msg.is_event("CoreShowChannel") {
                    items.push(msg);
                } else if msg.is_event("CoreShowChannelsComplete") {
                    let items = self
                        .resync
                        .take()
                        .map(|(_, items)| items)
                        .unwrap_or_default();
                    tracing::info!(channels = items.len(), "ami resync");
                    let updates = self.tracker.apply_snapshot(&items, now);
                    self.emit(ctx, updates).await?;
                }
                return Ok(());
            }
        }
        let updates = self.tracker.handle_event(&msg, now);
        self.emit(ctx, updates).await
    }

    /// Click-to-call: `Originate` with the hub's call id as the channel id.
    async fn originate(
        &mut self,
        conn: &mut Conn,
        ctx: &ConnectorContext,
        req: OriginateRequest,
    ) -> Result<(), End> {
        let now = OffsetDateTime::now_utc();
        let Ok(call_id) = normalize_external_id(&req.call_external_id) else {
            tracing::warn!("click-to-call without a usable call id, ignored");
            return Ok(());
        };
        if self.tracker.knows_call(&call_id) {
            tracing::debug!(call_external_id = %call_id, "click-to-call already placed, repeated command ignored");
            return Ok(());
        }
        let fail = |reason: &str| {
            failed_update(&call_id, reason, now)
                .into_iter()
                .collect::<Vec<_>>()
        };
        if call_id.len() > MAX_CHANNEL_ID_LEN {
            return self
                .emit(
                    ctx,
                    fail("the call id is longer than Asterisk accepts (149 characters)"),
                )
                .await;
        }
        let extension = req.extension.trim();
        let ext_ok = !extension.is_empty()
            && extension
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !ext_ok {
            return self
                .emit(
                    ctx,
                    fail("the operator's extension is not a valid extension"),
                )
                .await;
        }
        let digits = req.to.trim().trim_start_matches('+');
        if !(3..=20).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return self
                .emit(ctx, fail("the number to call is not a phone number"))
                .await;
        }
        let caller_id = req
            .caller_id
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty() && !c.chars().any(char::is_control))
            .map_or_else(|| format!("\"+{digits}\" <{digits}>"), str::to_owned);
        let action_id = self.action_id();
        let action = AmiMessage::action("Originate")
            .with("ActionID", &action_id)
            .with(
                "Channel",
                &format!("{}/{extension}", self.settings.technology),
            )
            .with("Context", &self.settings.originate_context)
            .with("Exten", digits)
            .with("Priority", "1")
            .with("CallerID", &caller_id)
            .with(
                "Timeout",
                &(self.settings.originate_timeout.as_millis()).to_string(),
            )
            .with("Async", "true")
            .with("ChannelId", &call_id);
        let req = OriginateRequest {
            call_external_id: call_id.clone(),
            extension: extension.to_owned(),
            ..req
        };
        self.tracker.originate_requested(&req, &action_id);
        self.originates.insert(action_id);
        tracing::info!(call_external_id = %call_id, extension, "click-to-call sent");
        conn.send(&action).await
    }
}

fn is_success(msg: &AmiMessage) -> bool {
    msg.response()
        .is_some_and(|r| r.eq_ignore_ascii_case("Success"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_key_is_lowercase_hex_of_challenge_then_secret() {
        // md5("840716384" + "mysecret"), computed independently with coreutils md5sum.
        assert_eq!(
            md5_login_key("840716384", "mysecret"),
            "7af544301eaf06b7e05be46970205bf9"
        );
        assert_eq!(md5_login_key("", "").len(), 32);
        assert_eq!(md5_login_key("", ""), "d41d8cd98f00b204e9800998ecf8427e");
    }
}
