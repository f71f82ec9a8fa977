//! IMAP: connecting (implicit TLS, STARTTLS or plain), the per-mailbox loop (fetch new
//! mail by UID, then IDLE or poll), and APPEND of our sent copies.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_imap::types::UnsolicitedResponse;
use futures_util::TryStreamExt;
use kommutator_sdk::{CancellationToken, ConnectorError, InboundSender, StateStore};
use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::rustls;

use crate::{inbound, mime, ImapConfig, Shared, TlsMode};

/// How many of the newest messages a first start imports (besides every UNSEEN one).
pub const FIRST_START_IMPORT: usize = 50;

/// How long one network step (connect, login, a command) may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest wait between two reconnects.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// An IMAP session over [`ImapStream`].
pub type ImapSession = async_imap::Session<ImapStream>;

/// A TCP stream, in the clear or inside TLS.
pub enum ImapStream {
    /// No TLS.
    Plain(TcpStream),
    /// TLS (implicit or after STARTTLS).
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl std::fmt::Debug for ImapStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Plain(_) => "ImapStream::Plain",
            Self::Tls(_) => "ImapStream::Tls",
        })
    }
}

impl AsyncRead for ImapStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ImapStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A TLS connector trusting the web PKI roots, on the ring provider.
pub(crate) fn tls_connector() -> Result<tokio_rustls::TlsConnector, ConnectorError> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ConnectorError::other(format!("tls setup: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

async fn tls_wrap(host: &str, tcp: TcpStream) -> Result<ImapStream, ConnectorError> {
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|_| ConnectorError::config("imap.host", "is not a valid TLS server name"))?;
    let tls = tls_connector()?
        .connect(name, tcp)
        .await
        .map_err(|e| ConnectorError::connect_with(format!("imap tls to {host}"), e))?;
    Ok(ImapStream::Tls(Box::new(tls)))
}

async fn step<T, E>(
    what: &str,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, ConnectorError>
where
    E: Into<ImapFailure>,
{
    match tokio::time::timeout(STEP_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.into().into_error(what)),
        Err(_) => Err(ConnectorError::connect(format!(
            "imap {what}: no answer within {}s",
            STEP_TIMEOUT.as_secs()
        ))),
    }
}

/// An IMAP-side failure, before it is classified into a [`ConnectorError`].
pub(crate) struct ImapFailure(async_imap::error::Error);

impl From<async_imap::error::Error> for ImapFailure {
    fn from(e: async_imap::error::Error) -> Self {
        Self(e)
    }
}

impl From<io::Error> for ImapFailure {
    fn from(e: io::Error) -> Self {
        Self(async_imap::error::Error::Io(e))
    }
}

impl ImapFailure {
    fn into_error(self, what: &str) -> ConnectorError {
        use async_imap::error::Error;
        match self.0 {
            Error::Io(e) => ConnectorError::connect_with(format!("imap {what}"), e),
            Error::ConnectionLost => {
                ConnectorError::connect(format!("imap {what}: connection lost"))
            }
            e @ (Error::No(_) | Error::Bad(_) | Error::Append) => {
                ConnectorError::protocol(format!("imap {what}: {e}"))
            }
            e => ConnectorError::protocol(format!("imap {what}: {e}")),
        }
    }
}

/// Connects and logs in.
///
/// # Errors
///
/// [`ConnectorError::Auth`] when the server refuses the credentials,
/// [`ConnectorError::Connect`] on network and TLS failures, `Protocol` otherwise.
pub async fn connect(cfg: &ImapConfig) -> Result<ImapSession, ConnectorError> {
    let addr = (cfg.host.as_str(), cfg.port());
    let tcp = match tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            return Err(ConnectorError::connect_with(
                format!("imap connect to {}:{}", cfg.host, cfg.port()),
                e,
            ))
        }
        Err(_) => {
            return Err(ConnectorError::connect(format!(
                "imap connect to {}:{}: timed out",
                cfg.host,
                cfg.port()
            )))
        }
    };
    let stream = match cfg.tls {
        TlsMode::Implicit => tls_wrap(&cfg.host, tcp).await?,
        TlsMode::None => ImapStream::Plain(tcp),
        TlsMode::Starttls => {
            let mut client = async_imap::Client::new(ImapStream::Plain(tcp));
            greeting(&mut client).await?;
            step(
                "starttls",
                client.run_command_and_check_ok("STARTTLS", None),
            )
            .await?;
            let ImapStream::Plain(tcp) = client.into_inner() else {
                return Err(ConnectorError::other("imap starttls on a tls stream"));
            };
            // No greeting after STARTTLS (RFC 3501 6.2.1).
            let stream = tls_wrap(&cfg.host, tcp).await?;
            return login(async_imap::Client::new(stream), cfg).await;
        }
    };
    let mut client = async_imap::Client::new(stream);
    greeting(&mut client).await?;
    login(client, cfg).await
}

async fn greeting(client: &mut async_imap::Client<ImapStream>) -> Result<(), ConnectorError> {
    match step("greeting", client.read_response()).await? {
        Some(_) => Ok(()),
        None => Err(ConnectorError::connect(
            "imap server closed before its greeting",
        )),
    }
}

async fn login(
    client: async_imap::Client<ImapStream>,
    cfg: &ImapConfig,
) -> Result<ImapSession, ConnectorError> {
    let fut = client.login(&cfg.username, cfg.password.expose());
    match tokio::time::timeout(STEP_TIMEOUT, fut).await {
        Err(_) => Err(ConnectorError::connect("imap login: no answer")),
        Ok(Ok(session)) => Ok(session),
        Ok(Err((async_imap::error::Error::No(text), _))) => {
            // RFC 5530: UNAVAILABLE / INUSE are transient; anything else is the credentials.
            let upper = text.to_ascii_uppercase();
            if upper.contains("UNAVAILABLE") || upper.contains("INUSE") {
                Err(ConnectorError::connect(format!("imap login: {text}")))
            } else {
                Err(ConnectorError::auth(format!(
                    "imap login of {:?} refused: {text}",
                    cfg.username
                )))
            }
        }
        Ok(Err((e, _))) => Err(ImapFailure(e).into_error("login")),
    }
}

/// Watches one mailbox until `shutdown`, reconnecting with backoff on errors.
///
/// # Errors
///
/// Only errors that must stop the instance (`Auth`, `Config`).
pub(crate) async fn run_mailbox(
    shared: Arc<Shared>,
    mailbox: String,
    sender: InboundSender,
    state: Arc<dyn StateStore>,
    shutdown: CancellationToken,
) -> Result<(), ConnectorError> {
    let mut attempt: u32 = 0;
    loop {
        let res = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            r = session(&shared, &mailbox, &sender, state.as_ref(), &shutdown, &mut attempt) => r,
        };
        if shutdown.is_cancelled() {
            return Ok(());
        }
        let e = match res {
            Ok(()) => return Ok(()),
            Err(e) if !e.is_retryable() => {
                tracing::error!(mailbox = %mailbox, error = %e, "imap mailbox stopped");
                return Err(e);
            }
            Err(e) => e,
        };
        attempt = attempt.saturating_add(1);
        let delay = backoff(attempt);
        tracing::warn!(
            mailbox = %mailbox,
            error = %e,
            retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "imap session failed, reconnecting"
        );
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// `2^attempt` seconds up to [`MAX_BACKOFF`], times a jitter in [0.5, 1).
pub(crate) fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_secs(1u64 << attempt.min(9)).min(MAX_BACKOFF);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    // Cheap jitter from the clock: spreads instances that failed together.
    let frac = 0.5 + f64::from(nanos % 1000) / 2000.0;
    base.mul_f64(frac)
}

/// The cursor of a mailbox: `"{uidvalidity}:{last_uid}"`.
pub(crate) fn parse_cursor(s: &str) -> Option<(u32, u32)> {
    let (v, u) = s.split_once(':')?;
    Some((v.trim().parse().ok()?, u.trim().parse().ok()?))
}

struct Fetched {
    uid: u32,
    size: usize,
    internal_date: Option<OffsetDateTime>,
}

async fn session(
    shared: &Arc<Shared>,
    mailbox: &str,
    sender: &InboundSender,
    state: &dyn StateStore,
    shutdown: &CancellationToken,
    attempt: &mut u32,
) -> Result<(), ConnectorError> {
    let cfg = &shared.cfg.imap;
    let mut session = connect(cfg).await?;
    let caps = step("capability", session.capabilities()).await?;
    let has_idle = caps.has_str("IDLE");
    let selected = step("select", session.select(mailbox)).await?;
    let uidvalidity = selected.uid_validity.unwrap_or(0);
    let cursor = state.get(mailbox).await?.as_deref().and_then(parse_cursor);
    let mut last_uid = match cursor {
        Some((v, last)) if v == uidvalidity => last,
        Some((v, _)) => {
            tracing::info!(
                mailbox,
                old = v,
                new = uidvalidity,
                "uidvalidity changed, rescanning the mailbox"
            );
            0
        }
        None => {
            let last = first_start(shared, mailbox, uidvalidity, &mut session, sender).await?;
            state.put(mailbox, &format!("{uidvalidity}:{last}")).await?;
            last
        }
    };
    tracing::info!(
        mailbox,
        uidvalidity,
        exists = selected.exists,
        last_uid,
        idle = has_idle,
        "imap mailbox selected"
    );
    *attempt = 0;
    let unsolicited = session.unsolicited_responses.clone();
    loop {
        while unsolicited.try_recv().is_ok() {}
        last_uid = fetch_new(
            shared,
            mailbox,
            uidvalidity,
            last_uid,
            &mut session,
            sender,
            state,
        )
        .await?;
        if !has_idle {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(Duration::from_secs(cfg.poll_secs)) => {}
            }
            step("noop", session.noop()).await?;
            continue;
        }
        let mut idle = session.idle();
        step("idle", idle.init()).await?;
        let mut pending = false;
        while let Ok(r) = unsolicited.try_recv() {
            pending |= matches!(
                r,
                UnsolicitedResponse::Exists(_) | UnsolicitedResponse::Recent(_)
            );
        }
        let mut stop = false;
        if !pending {
            let (wait, interrupt) =
                idle.wait_with_timeout(Duration::from_secs(cfg.idle_renew_secs));
            let res = tokio::select! {
                r = wait => Some(r),
                () = shutdown.cancelled() => None,
            };
            drop(interrupt);
            match res {
                None => stop = true,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(ImapFailure(e).into_error("idle")),
            }
        }
        session = step("done", idle.done()).await?;
        if stop {
            let _ = tokio::time::timeout(Duration::from_secs(5), session.logout()).await;
            return Ok(());
        }
    }
}

/// On a first start: import the last [`FIRST_START_IMPORT`] messages and every UNSEEN one;
/// returns the highest UID of the mailbox, the new cursor.
async fn first_start(
    shared: &Arc<Shared>,
    mailbox: &str,
    uidvalidity: u32,
    session: &mut ImapSession,
    sender: &InboundSender,
) -> Result<u32, ConnectorError> {
    // The cursor is written once at the end: a crash during the import re-imports it,
    // which the hub dedupes by Message-ID.
    let mut all: Vec<u32> = step("search", session.uid_search("ALL"))
        .await?
        .into_iter()
        .collect();
    all.sort_unstable();
    let max = all.last().copied().unwrap_or(0);
    let unseen = step("search", session.uid_search("UNSEEN")).await?;
    let mut pick: Vec<u32> = all
        .iter()
        .rev()
        .take(FIRST_START_IMPORT)
        .copied()
        .chain(unseen)
        .collect();
    pick.sort_unstable();
    pick.dedup();
    tracing::info!(
        mailbox,
        messages = all.len(),
        importing = pick.len(),
        "first start of the mailbox"
    );
    for uid in pick {
        let set = uid.to_string();
        let meta = fetch_meta(session, &set).await?;
        for m in meta.into_iter().filter(|m| m.uid == uid) {
            fetch_one(shared, mailbox, uidvalidity, &m, session, sender).await?;
        }
    }
    Ok(max)
}

async fn fetch_meta(session: &mut ImapSession, set: &str) -> Result<Vec<Fetched>, ConnectorError> {
    let fetches: Vec<async_imap::types::Fetch> = step("fetch", async {
        session
            .uid_fetch(set, "(UID RFC822.SIZE INTERNALDATE)")
            .await?
            .try_collect::<Vec<_>>()
            .await
    })
    .await?;
    let mut out: Vec<Fetched> = fetches
        .iter()
        .filter_map(|f| {
            Some(Fetched {
                uid: f.uid?,
                size: f.size.map_or(0, |s| s as usize),
                internal_date: f
                    .internal_date()
                    .and_then(|d| OffsetDateTime::from_unix_timestamp(d.timestamp()).ok()),
            })
        })
        .collect();
    out.sort_by_key(|f| f.uid);
    Ok(out)
}

/// Fetches every message above `last_uid`, hands each to the hub and advances the cursor
/// after each; returns the new last UID.
async fn fetch_new(
    shared: &Arc<Shared>,
    mailbox: &str,
    uidvalidity: u32,
    mut last_uid: u32,
    session: &mut ImapSession,
    sender: &InboundSender,
    state: &dyn StateStore,
) -> Result<u32, ConnectorError> {
    let from = last_uid.saturating_add(1);
    // `N:*` always includes the highest UID, even below N (RFC 3501 6.4.8): filter.
    let meta = fetch_meta(session, &format!("{from}:*")).await?;
    let floor = last_uid;
    for m in meta.into_iter().filter(|m| m.uid > floor) {
        fetch_one(shared, mailbox, uidvalidity, &m, session, sender).await?;
        last_uid = m.uid;
        state
            .put(mailbox, &format!("{uidvalidity}:{last_uid}"))
            .await?;
    }
    Ok(last_uid)
}

async fn fetch_one(
    shared: &Arc<Shared>,
    mailbox: &str,
    uidvalidity: u32,
    meta: &Fetched,
    session: &mut ImapSession,
    sender: &InboundSender,
) -> Result<(), ConnectorError> {
    let max = mime::Limits::default().max_message_bytes;
    let too_big = meta.size > max;
    let query = if too_big {
        "(UID BODY.PEEK[HEADER])"
    } else {
        "(UID BODY.PEEK[])"
    };
    let uid = meta.uid.to_string();
    let fetches: Vec<async_imap::types::Fetch> = step("fetch", async {
        session
            .uid_fetch(&uid, query)
            .await?
            .try_collect::<Vec<_>>()
            .await
    })
    .await?;
    let Some(f) = fetches.iter().find(|f| f.uid == Some(meta.uid)) else {
        // Expunged between the two fetches.
        tracing::debug!(
            mailbox,
            uid = meta.uid,
            "message gone before its body was fetched"
        );
        return Ok(());
    };
    let raw = if too_big { f.header() } else { f.body() }.unwrap_or_default();
    let item = inbound::Item {
        mailbox,
        uidvalidity,
        uid: meta.uid,
        size: meta.size,
        truncated: too_big,
        internal_date: meta.internal_date,
    };
    inbound::process(shared, sender, &item, raw).await
}

/// Appends `raw` to `mailbox` with `\Seen`, creating the mailbox when the server says
/// it does not exist.
///
/// # Errors
///
/// Any connection or IMAP error.
pub async fn append(cfg: &ImapConfig, mailbox: &str, raw: &[u8]) -> Result<(), ConnectorError> {
    let mut session = connect(cfg).await?;
    let first = step(
        "append",
        session.append(mailbox, Some("(\\Seen)"), None, raw),
    )
    .await;
    if first.is_err() {
        // Most servers answer `NO [TRYCREATE]`; async-imap reports it as a failed append.
        let _ = step("create", session.create(mailbox)).await;
        step(
            "append",
            session.append(mailbox, Some("(\\Seen)"), None, raw),
        )
        .await?;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), session.logout()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors() {
        assert_eq!(parse_cursor("1700000000:42"), Some((1_700_000_000, 42)));
        assert_eq!(parse_cursor("x:1"), None);
        assert_eq!(parse_cursor("12"), None);
        assert_eq!(parse_cursor(""), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let b1 = backoff(1);
        assert!(
            b1 >= Duration::from_secs(1) && b1 <= Duration::from_secs(2),
            "{b1:?}"
        );
        let b20 = backoff(20);
        assert!(b20 <= MAX_BACKOFF && b20 >= MAX_BACKOFF / 2, "{b20:?}");
    }
}
