//! Bots Long Poll: `groups.getLongPollServer`, then `a_check` in a loop, the cursor (`ts`)
//! kept in the state store once everything before it was handed over.

use std::sync::Arc;
use std::time::Duration;

use kommutator_sdk::{CancellationToken, ConnectorError, InboundSender, StateStore};

use crate::api::{Api, ApiError, Class, LongPollServer};
use crate::inbound::{deliver, Shared};
use crate::parse::{envelope_from_value, map_event, parse_long_poll, LongPollAnswer};

/// The state key of the cursor: `{group_id}:{ts}`.
pub const TS_KEY: &str = "long_poll_ts";

/// Exponential backoff between `base` and 60 times `base`.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    base: Duration,
    n: u32,
}

impl Backoff {
    pub(crate) fn new(base: Duration) -> Self {
        Self { base, n: 0 }
    }

    pub(crate) fn reset(&mut self) {
        self.n = 0;
    }

    /// Sleeps the next delay; `false` when shutdown came first.
    pub(crate) async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let factor = 1_u32 << self.n.min(6);
        self.n = self.n.saturating_add(1);
        let delay = self
            .base
            .saturating_mul(factor)
            .min(self.base.saturating_mul(60));
        tokio::select! {
            () = shutdown.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        }
    }
}

pub(crate) struct Poller {
    pub(crate) sender: InboundSender,
    pub(crate) state: Arc<dyn StateStore>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) api: Api,
    pub(crate) group_id: u64,
    pub(crate) wait_secs: u64,
    pub(crate) max_file_bytes: u64,
    pub(crate) retry_base: Duration,
}

/// What to do before the next `a_check`.
enum Refresh {
    /// At start: a new key, and the saved `ts` if there is one.
    Startup,
    /// `failed: 2`: a new key, the same `ts`.
    Key(String),
    /// `failed: 3` or an unreadable answer: a new key and `ts`.
    KeyAndTs,
}

/// The error `run` ends with for an API failure that retrying cannot fix.
fn fatal(e: ApiError) -> ConnectorError {
    match &e {
        ApiError::Vk {
            code: 5 | 27 | 28, ..
        } => ConnectorError::auth(e.to_string()),
        ApiError::Vk { code: 100, .. } => ConnectorError::config("group_id", e.to_string()),
        _ => ConnectorError::protocol(format!("groups.getLongPollServer: {e}")),
    }
}

impl Poller {
    async fn saved_ts(&self) -> Result<Option<String>, ConnectorError> {
        let v = self.state.get(TS_KEY).await?;
        Ok(v.and_then(|v| {
            let (g, ts) = v.split_once(':')?;
            (g == self.group_id.to_string() && !ts.is_empty()).then(|| ts.to_owned())
        }))
    }

    async fn save_ts(&self, ts: &str) -> Result<(), ConnectorError> {
        self.state
            .put(TS_KEY, &format!("{}:{ts}", self.group_id))
            .await
    }

    /// Polls until shutdown; returns an error only when retrying cannot help (bad token,
    /// bad version) or the hub is gone.
    pub(crate) async fn run(self, shutdown: CancellationToken) -> Result<(), ConnectorError> {
        let id = self.sender.id().clone();
        let mut backoff = Backoff::new(self.retry_base);
        let mut refresh = Some(Refresh::Startup);
        let mut lp: Option<LongPollServer> = None;
        loop {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            if let Some(r) = refresh.take() {
                let got = tokio::select! {
                    () = shutdown.cancelled() => return Ok(()),
                    got = self.api.long_poll_server(self.group_id) => got,
                };
                let mut server = match got {
                    Ok(s) => s,
                    Err(e) if e.class() == Class::Transient => {
                        tracing::warn!(connector = %id, error = %e, "vk: long poll server not obtained, retrying");
                        refresh = Some(r);
                        if !backoff.wait(&shutdown).await {
                            return Ok(());
                        }
                        continue;
                    }
                    Err(e) => return Err(fatal(e)),
                };
                match r {
                    Refresh::Startup => {
                        if let Some(ts) = self.saved_ts().await? {
                            server.ts = ts;
                        }
                    }
                    Refresh::Key(ts) => server.ts = ts,
                    Refresh::KeyAndTs => self.save_ts(&server.ts).await?,
                }
                tracing::info!(connector = %id, ts = %server.ts, "vk: long poll session started");
                lp = Some(server);
            }
            let Some(server) = lp.as_mut() else {
                refresh = Some(Refresh::KeyAndTs);
                continue;
            };
            let body = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                b = self.api.a_check(server, self.wait_secs) => b,
            };
            let body = match body {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(connector = %id, error = %e, "vk: long poll request failed, retrying");
                    if !backoff.wait(&shutdown).await {
                        return Ok(());
                    }
                    continue;
                }
            };
            match parse_long_poll(&body) {
                Err(e) => {
                    tracing::warn!(connector = %id, error = %e, "vk: unreadable long poll answer, new session");
                    refresh = Some(Refresh::KeyAndTs);
                    if !backoff.wait(&shutdown).await {
                        return Ok(());
                    }
                }
                Ok(LongPollAnswer::Updates { ts, updates }) => {
                    backoff.reset();
                    for u in updates {
                        match self.handle(u).await {
                            Ok(()) => {}
                            Err(ConnectorError::Closed) if shutdown.is_cancelled() => return Ok(()),
                            Err(e) => return Err(e),
                        }
                    }
                    self.save_ts(&ts).await?;
                    server.ts = ts;
                }
                Ok(LongPollAnswer::Failed { code: 1, ts }) => {
                    tracing::warn!(connector = %id, "vk: long poll history out of date, events may be lost");
                    match ts {
                        Some(ts) => {
                            self.save_ts(&ts).await?;
                            server.ts = ts;
                        }
                        None => refresh = Some(Refresh::KeyAndTs),
                    }
                }
                Ok(LongPollAnswer::Failed { code: 2, .. }) => {
                    tracing::info!(connector = %id, "vk: long poll key expired, renewing");
                    refresh = Some(Refresh::Key(server.ts.clone()));
                }
                Ok(LongPollAnswer::Failed { code: 3, .. }) => {
                    tracing::warn!(connector = %id, "vk: long poll information lost, new key and ts");
                    refresh = Some(Refresh::KeyAndTs);
                }
                Ok(LongPollAnswer::Failed { code: 4, .. }) => {
                    return Err(ConnectorError::config(
                        "api_version",
                        "the long poll server refused the API version",
                    ));
                }
                Ok(LongPollAnswer::Failed { code, .. }) => {
                    tracing::warn!(connector = %id, code, "vk: unknown long poll failure, new session");
                    refresh = Some(Refresh::KeyAndTs);
                    if !backoff.wait(&shutdown).await {
                        return Ok(());
                    }
                }
            }
        }
    }

    async fn handle(&self, update: serde_json::Value) -> Result<(), ConnectorError> {
        let id = self.sender.id();
        let env = match envelope_from_value(update) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(connector = %id, error = %e, "vk: long poll update rejected");
                return Ok(());
            }
        };
        if env.group_id.is_some_and(|g| g != self.group_id) {
            tracing::warn!(connector = %id, "vk: long poll update of another group skipped");
            return Ok(());
        }
        if env.event_id.as_deref().is_some_and(|e| self.shared.seen(e)) {
            return Ok(());
        }
        let mapped = match map_event(&env, &|r| self.shared.our_send(r)) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(connector = %id, error = %e, event_type = %env.event_type,
                    "vk: long poll update rejected");
                return Ok(());
            }
        };
        deliver(
            &self.sender,
            &self.shared,
            &self.api,
            self.max_file_bytes,
            mapped,
        )
        .await
    }
}
