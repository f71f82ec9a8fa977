//! [`RedisBus`]: the bus over Redis PUB/SUB on channel `kommutator:events`, with our own
//! small RESP2 client (two connections: one publishes, pipelined; one subscribes).
//! Both reconnect with backoff; while Redis is away, nodes still deliver everything
//! through the store, only later.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::resp::{self, Frame};
use super::{Bus, BusBody, BusMessage};
use crate::hub::Hub;

/// The PUB/SUB channel.
pub const CHANNEL: &str = "kommutator:events";

/// Where Redis is: `redis://[:password@]host[:port][/db]`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisAddr {
    /// `host:port`.
    pub host_port: String,
    /// Password for `AUTH`.
    pub password: Option<String>,
}

impl std::fmt::Debug for RedisAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisAddr")
            .field("host_port", &self.host_port)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl RedisAddr {
    /// Parses a `redis://` URL.
    ///
    /// # Errors
    /// A message naming what is wrong.
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("redis://")
            .ok_or("use redis://host:port")?;
        let rest = rest.split('/').next().unwrap_or("");
        let (auth, host) = match rest.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, rest),
        };
        if host.is_empty() {
            return Err("the redis URL has no host".into());
        }
        let host_port = if host.contains(':') && !host.ends_with(']') {
            host.to_owned()
        } else {
            format!("{host}:6379")
        };
        let password = auth
            .map(|a| a.split_once(':').map_or(a, |(_, p)| p).to_owned())
            .filter(|p| !p.is_empty());
        Ok(Self {
            host_port,
            password,
        })
    }
}

/// The Redis bus of one node.
#[derive(Debug)]
pub struct RedisBus {
    node: String,
    tx: mpsc::Sender<Vec<u8>>,
    /// Messages dropped because the publisher could not keep up or Redis was away.
    pub dropped: AtomicU64,
}

impl Bus for RedisBus {
    fn publish(&self, body: BusBody) {
        let msg = BusMessage {
            node: self.node.clone(),
            body,
        };
        let Ok(payload) = serde_json::to_vec(&msg) else {
            return;
        };
        if self.tx.try_send(payload).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("kommutator_bus_dropped_total").increment(1);
        }
    }
}

impl RedisBus {
    /// Starts the publisher and the subscriber; the subscriber hands other nodes' messages
    /// to `hub`.
    pub fn start(
        addr: RedisAddr,
        node: String,
        hub: Arc<Hub>,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(8192);
        let bus = Arc::new(Self {
            node: node.clone(),
            tx,
            dropped: AtomicU64::new(0),
        });
        tokio::spawn(run_publisher(addr.clone(), rx, shutdown.clone()));
        tokio::spawn(run_subscriber(addr, node, hub, shutdown));
        bus
    }
}

async fn connect(addr: &RedisAddr) -> std::io::Result<TcpStream> {
    let s = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(&addr.host_port))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Sends `AUTH` when a password is set and checks the answer.
async fn auth(s: &mut TcpStream, addr: &RedisAddr, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let Some(p) = &addr.password else {
        return Ok(());
    };
    let mut out = Vec::new();
    resp::command(&[b"AUTH", p.as_bytes()], &mut out);
    s.write_all(&out).await?;
    match read_frame(s, buf).await? {
        Frame::Simple(_) => Ok(()),
        other => Err(std::io::Error::other(format!(
            "redis AUTH refused: {other:?}"
        ))),
    }
}

async fn read_frame(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Frame> {
    loop {
        match resp::parse(buf) {
            Ok(Some((f, used))) => {
                buf.drain(..used);
                return Ok(f);
            }
            Ok(None) => {}
            Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        }
        let mut chunk = [0u8; 16 * 1024];
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn backoff(attempt: &mut u32, shutdown: &CancellationToken) -> bool {
    *attempt = (*attempt + 1).min(6);
    let ms = 100u64 << *attempt;
    let jitter = rand::random::<u64>() % (ms / 2 + 1);
    tokio::select! {
        () = shutdown.cancelled() => false,
        () = tokio::time::sleep(Duration::from_millis(ms + jitter)) => true,
    }
}

async fn run_publisher(
    addr: RedisAddr,
    mut rx: mpsc::Receiver<Vec<u8>>,
    shutdown: CancellationToken,
) {
    let mut attempt = 0;
    loop {
        let mut s = match connect(&addr).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "redis publisher cannot connect");
                if !backoff(&mut attempt, &shutdown).await {
                    return;
                }
                continue;
            }
        };
        let mut buf = Vec::new();
        if let Err(e) = auth(&mut s, &addr, &mut buf).await {
            tracing::warn!(error = %e, "redis publisher");
            if !backoff(&mut attempt, &shutdown).await {
                return;
            }
            continue;
        }
        attempt = 0;
        let (mut rd, mut wr) = s.into_split();
        // Replies (subscriber counts) are read and dropped; a closed read side ends the loop.
        let reader = tokio::spawn(async move {
            let mut chunk = vec![0u8; 16 * 1024];
            loop {
                match rd.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        });
        let mut out = Vec::with_capacity(64 * 1024);
        let failed = loop {
            let first = tokio::select! {
                () = shutdown.cancelled() => { reader.abort(); return; }
                m = rx.recv() => match m { Some(m) => m, None => { reader.abort(); return; } },
            };
            out.clear();
            resp::command(&[b"PUBLISH", CHANNEL.as_bytes(), &first], &mut out);
            // Pipeline whatever else is queued into the same write.
            let mut n = 1;
            while n < 256 {
                match rx.try_recv() {
                    Ok(m) => {
                        resp::command(&[b"PUBLISH", CHANNEL.as_bytes(), &m], &mut out);
                        n += 1;
                    }
                    Err(_) => break,
                }
            }
            if let Err(e) = wr.write_all(&out).await {
                break e;
            }
            if reader.is_finished() {
                break std::io::ErrorKind::ConnectionReset.into();
            }
        };
        reader.abort();
        tracing::warn!(error = %failed, "redis publisher lost its connection; reconnecting");
        metrics::counter!("kommutator_bus_reconnects_total").increment(1);
    }
}

async fn run_subscriber(addr: RedisAddr, node: String, hub: Arc<Hub>, shutdown: CancellationToken) {
    let mut attempt = 0;
    loop {
        let result = subscribe_once(&addr, &node, &hub, &shutdown, &mut attempt).await;
        if shutdown.is_cancelled() {
            return;
        }
        if let Err(e) = result {
            tracing::warn!(error = %e, "redis subscriber lost its connection; reconnecting");
            metrics::counter!("kommutator_bus_reconnects_total").increment(1);
        }
        if !backoff(&mut attempt, &shutdown).await {
            return;
        }
    }
}

async fn subscribe_once(
    addr: &RedisAddr,
    node: &str,
    hub: &Arc<Hub>,
    shutdown: &CancellationToken,
    attempt: &mut u32,
) -> std::io::Result<()> {
    let mut s = connect(addr).await?;
    let mut buf = Vec::new();
    auth(&mut s, addr, &mut buf).await?;
    let mut out = Vec::new();
    resp::command(&[b"SUBSCRIBE", CHANNEL.as_bytes()], &mut out);
    s.write_all(&out).await?;
    loop {
        let frame = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            f = read_frame(&mut s, &mut buf) => f?,
        };
        let Frame::Array(Some(items)) = frame else {
            continue;
        };
        match items.as_slice() {
            [Frame::Bulk(Some(kind)), _, Frame::Integer(_)] if kind == b"subscribe" => {
                *attempt = 0;
                tracing::info!("subscribed to the redis bus");
                // Anything published while we were away is in the store: look now.
                if let Ok(seq) = hub.store().last_seq().await {
                    hub.known_committed(seq);
                }
            }
            [Frame::Bulk(Some(kind)), _, Frame::Bulk(Some(payload))] if kind == b"message" => {
                let msg: BusMessage = match serde_json::from_slice(payload) {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::debug!(error = %e, "undecodable bus message");
                        metrics::counter!("kommutator_bus_bad_messages_total").increment(1);
                        continue;
                    }
                };
                if msg.node == node {
                    continue;
                }
                hub.receive_remote(msg.body);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        assert_eq!(
            RedisAddr::parse("redis://127.0.0.1:6379").expect("ok"),
            RedisAddr {
                host_port: "127.0.0.1:6379".into(),
                password: None
            }
        );
        assert_eq!(
            RedisAddr::parse("redis://:s3cret@cache/0").expect("ok"),
            RedisAddr {
                host_port: "cache:6379".into(),
                password: Some("s3cret".into())
            }
        );
        assert!(RedisAddr::parse("http://x").is_err());
        assert!(RedisAddr::parse("redis://").is_err());
    }
}
