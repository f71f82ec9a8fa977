//! The I/O of the collector: UDP and TCP receivers feed a bounded queue; one processing
//! loop parses, checks the auth key, tracks calls and hands events to the hub.
//!
//! The receivers never wait on the hub: a UDP packet that finds the queue full is
//! dropped and counted (the kernel would drop it anyway once its buffer filled), while a
//! TCP reader waits for room, which pushes back on the sender through TCP itself.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kommutator_sdk::{CancellationToken, ConnectorContext, ConnectorError, InboundEvent};
use time::OffsetDateTime;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::calls::{CallTracker, CallUpdate, Captured, Ingest};
use crate::config::Settings;
use crate::hep::{hep_frame_len, parse_hep, HEP_HEADER_LEN, PROTO_SIP};
use crate::sip::{parse_sip, SipError};
use crate::stats::{Counter, HepStats, WarnGate};

/// Packets waiting between the receivers and the processing loop.
const QUEUE_CAPACITY: usize = 4096;
/// Concurrent TCP connections accepted; more are closed at once.
const MAX_TCP_CONNECTIONS: usize = 64;
/// The longest correlation id kept for `raw`.
const MAX_CORRELATION_ID_LEN: usize = 256;

/// One packet as received.
#[derive(Debug)]
struct Datagram {
    bytes: Vec<u8>,
    peer: SocketAddr,
    received_at: OffsetDateTime,
}

fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}

/// Binds the sockets and runs until shutdown.
pub(crate) async fn run(
    settings: Settings,
    stats: Arc<HepStats>,
    mut ctx: ConnectorContext,
) -> Result<(), ConnectorError> {
    let udp = UdpSocket::bind(settings.udp_bind).await.map_err(|e| {
        ConnectorError::connect_with(format!("cannot bind HEP UDP {}", settings.udp_bind), e)
    })?;
    let udp_addr = udp.local_addr().ok();
    let tcp =
        match settings.tcp_bind {
            Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| {
                ConnectorError::connect_with(format!("cannot bind HEP TCP {addr}"), e)
            })?),
            None => None,
        };
    let tcp_addr = tcp.as_ref().and_then(|l| l.local_addr().ok());
    stats.set_addrs(udp_addr, tcp_addr);
    info!(udp = ?udp_addr, tcp = ?tcp_addr, "HEP collector listening");

    // Not a child of the shutdown token: the receivers stop after the processing loop,
    // so their end never races with shutdown there.
    let receivers = CancellationToken::new();
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    let mut tasks = JoinSet::new();
    tasks.spawn(receive_udp(
        udp,
        tx.clone(),
        stats.clone(),
        receivers.clone(),
    ));
    if let Some(listener) = tcp {
        tasks.spawn(accept_tcp(
            listener,
            tx.clone(),
            stats.clone(),
            receivers.clone(),
        ));
    }
    drop(tx);

    let result = process(&mut ctx, &settings, &stats, rx, &mut tasks).await;
    receivers.cancel();
    while tasks.join_next().await.is_some() {}
    stats.set_addrs(None, None);
    info!("HEP collector stopped");
    result
}

#[derive(Debug, Default)]
struct Gates {
    hep: WarnGate,
    auth: WarnGate,
    sip: WarnGate,
}

async fn process(
    ctx: &mut ConnectorContext,
    settings: &Settings,
    stats: &HepStats,
    mut rx: mpsc::Receiver<Datagram>,
    tasks: &mut JoinSet<Result<(), ConnectorError>>,
) -> Result<(), ConnectorError> {
    let shutdown = ctx.shutdown().clone();
    let mut tracker = CallTracker::new(settings.tracker.clone());
    let mut gates = Gates::default();
    let mut out: Vec<CallUpdate> = Vec::new();
    let mut outbound_open = true;
    loop {
        let deadline = tracker.next_deadline();
        let mut reply: Option<InboundEvent> = None;
        tokio::select! {
            biased;
            () = shutdown.cancelled() => {
                // Hand over what is held, as far as the hub still takes it.
                tracker.flush(&mut out);
                for update in out.drain(..) {
                    if ctx.send(update.into_event(ctx.id().clone())).await.is_err() {
                        break;
                    }
                    stats.bump(Counter::Events);
                }
                return Ok(());
            }
            item = rx.recv() => {
                let Some(datagram) = item else {
                    return Err(ConnectorError::other("HEP receivers stopped"));
                };
                handle(datagram, settings, stats, &mut tracker, &mut gates, &mut out);
                tracker.poll(now(), &mut out);
            }
            () = sleep_until(deadline), if deadline.is_some() => {
                tracker.poll(now(), &mut out);
            }
            msg = ctx.recv_outbound(), if outbound_open => match msg {
                Some(msg) => {
                    reply = Some(InboundEvent::outbound_failed(
                        ctx.id().clone(),
                        msg.id,
                        "a HEP collector only listens and cannot send messages",
                        OffsetDateTime::now_utc(),
                    ));
                }
                None => outbound_open = false,
            },
            Some(ended) = tasks.join_next() => {
                let err = match ended {
                    Ok(Ok(())) => ConnectorError::other("HEP receiver stopped"),
                    Ok(Err(e)) => e,
                    Err(join) => ConnectorError::other(join),
                };
                return Err(err);
            }
        }
        stats.set_calls(tracker.len(), tracker.evicted());
        let events = out
            .drain(..)
            .map(|u| u.into_event(ctx.id().clone()))
            .chain(reply);
        for ev in events {
            debug!(external_id = %ev.external_id, kind = ?ev.kind, "call event");
            match ctx.send(ev).await {
                Ok(()) => stats.bump(Counter::Events),
                Err(ConnectorError::Closed) if shutdown.is_cancelled() => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

fn handle(
    d: Datagram,
    settings: &Settings,
    stats: &HepStats,
    tracker: &mut CallTracker,
    gates: &mut Gates,
    out: &mut Vec<CallUpdate>,
) {
    stats.bump(Counter::Packets);
    let peer = d.peer;
    let packet = match parse_hep(&d.bytes) {
        Ok(p) => p,
        Err(error) => {
            stats.bump(Counter::HepErrors);
            if let Some(suppressed) = gates.hep.check(now()) {
                warn!(%peer, %error, suppressed, "HEP packet rejected");
            }
            return;
        }
    };
    if let Some(key) = &settings.auth_key {
        if !packet.auth_key.is_some_and(|k| key.matches(k)) {
            stats.bump(Counter::AuthFailures);
            if let Some(suppressed) = gates.auth.check(now()) {
                warn!(%peer, suppressed, "HEP packet with a missing or wrong auth key dropped");
            }
            return;
        }
    }
    if packet.proto_type != Some(PROTO_SIP) {
        stats.bump(Counter::Ignored);
        debug!(%peer, proto_type = ?packet.proto_type, "HEP packet of a protocol other than SIP ignored");
        return;
    }
    let Some(payload) = packet.payload else {
        if packet.compressed_payload.is_some() {
            stats.bump(Counter::Ignored);
            debug!(%peer, "compressed HEP payload ignored: not supported");
        } else {
            stats.bump(Counter::HepErrors);
            if let Some(suppressed) = gates.hep.check(now()) {
                warn!(%peer, suppressed, "HEP packet rejected: SIP packet without a payload chunk");
            }
        }
        return;
    };
    let msg = match parse_sip(payload) {
        Ok(m) => m,
        Err(SipError::Empty) => {
            stats.bump(Counter::Ignored);
            debug!(%peer, "empty SIP payload (keepalive) ignored");
            return;
        }
        Err(error) => {
            stats.bump(Counter::SipErrors);
            if let Some(suppressed) = gates.sip.check(now()) {
                warn!(%peer, %error, suppressed, "SIP payload rejected");
            }
            return;
        }
    };
    // For the DEBUG line of an ignored message: the method or status, no addresses.
    let what = match msg.status() {
        Some(code) => format!("{code} to {}", msg.cseq.method),
        None => msg.method().map(ToString::to_string).unwrap_or_default(),
    };
    let captured = Captured {
        msg,
        ts: packet.timestamp().unwrap_or(d.received_at),
        src: packet.src(),
        dst: packet.dst(),
        capture_id: packet.capture_id,
        correlation_id: packet.correlation_id.map(|c| {
            String::from_utf8_lossy(c)
                .chars()
                .take(MAX_CORRELATION_ID_LEN)
                .collect()
        }),
    };
    match tracker.ingest(captured, now(), out) {
        Ok(Ingest::Held) => {}
        Ok(Ingest::Duplicate) => stats.bump(Counter::Duplicates),
        Ok(Ingest::Ignored) => {
            stats.bump(Counter::Ignored);
            debug!(%peer, sip = %what, "SIP message with no effect on call state ignored");
        }
        Err(error) => {
            stats.bump(Counter::SipErrors);
            if let Some(suppressed) = gates.sip.check(now()) {
                warn!(%peer, %error, suppressed, "SIP message rejected");
            }
        }
    }
}

async fn receive_udp(
    socket: UdpSocket,
    tx: mpsc::Sender<Datagram>,
    stats: Arc<HepStats>,
    token: CancellationToken,
) -> Result<(), ConnectorError> {
    let mut buf = vec![0u8; 65_536];
    let mut gate = WarnGate::default();
    loop {
        let received = tokio::select! {
            () = token.cancelled() => return Ok(()),
            r = socket.recv_from(&mut buf) => r,
        };
        let (len, peer) =
            received.map_err(|e| ConnectorError::connect_with("HEP UDP receive failed", e))?;
        let datagram = Datagram {
            bytes: buf.get(..len).unwrap_or_default().to_vec(),
            peer,
            received_at: OffsetDateTime::now_utc(),
        };
        match tx.try_send(datagram) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                stats.bump(Counter::QueueFull);
                if let Some(suppressed) = gate.check(now()) {
                    warn!(%peer, suppressed, "HEP queue full, UDP packet dropped");
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Ok(()),
        }
    }
}

async fn accept_tcp(
    listener: TcpListener,
    tx: mpsc::Sender<Datagram>,
    stats: Arc<HepStats>,
    token: CancellationToken,
) -> Result<(), ConnectorError> {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = token.cancelled() => break,
            Some(_) = connections.join_next() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if connections.len() >= MAX_TCP_CONNECTIONS {
                        warn!(%peer, "too many HEP TCP connections, closing the new one");
                        continue;
                    }
                    stats.bump(Counter::TcpConnections);
                    debug!(%peer, "HEP TCP connection accepted");
                    connections.spawn(read_tcp(stream, peer, tx.clone(), stats.clone(), token.clone()));
                }
                Err(error) => {
                    // Out of file descriptors and the like: wait a little, then go on.
                    warn!(%error, "accepting a HEP TCP connection failed");
                    tokio::select! {
                        () = token.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_millis(100)) => {}
                    }
                }
            },
        }
    }
    connections.shutdown().await;
    Ok(())
}

/// Reads HEP frames from one TCP connection until it closes, loses its framing, or
/// shutdown.
async fn read_tcp(
    mut stream: TcpStream,
    peer: SocketAddr,
    tx: mpsc::Sender<Datagram>,
    stats: Arc<HepStats>,
    token: CancellationToken,
) {
    let mut header = [0u8; HEP_HEADER_LEN];
    loop {
        let read = tokio::select! {
            () = token.cancelled() => return,
            r = stream.read_exact(&mut header) => r,
        };
        if let Err(error) = read {
            debug!(%peer, %error, "HEP TCP connection closed");
            return;
        }
        let len = match hep_frame_len(&header) {
            Ok(len) => len,
            Err(error) => {
                stats.bump(Counter::HepErrors);
                warn!(%peer, %error, "HEP TCP stream lost its framing, closing the connection");
                return;
            }
        };
        let mut bytes = Vec::with_capacity(len);
        bytes.extend_from_slice(&header);
        bytes.resize(len, 0);
        if let Some(rest) = bytes.get_mut(HEP_HEADER_LEN..) {
            let read = tokio::select! {
                () = token.cancelled() => return,
                r = stream.read_exact(rest) => r,
            };
            if let Err(error) = read {
                stats.bump(Counter::HepErrors);
                warn!(%peer, %error, "HEP TCP connection closed inside a packet");
                return;
            }
        }
        let datagram = Datagram {
            bytes,
            peer,
            received_at: OffsetDateTime::now_utc(),
        };
        let sent = tokio::select! {
            () = token.cancelled() => return,
            r = tx.send(datagram) => r,
        };
        if sent.is_err() {
            return;
        }
    }
}
