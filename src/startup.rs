//! Assembling the process: store, first admin, HTTP server, graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;

use crate::auth::{self, LoginLimiter};
use crate::config::{redact_url, Config};
use crate::domain::{Actor, IdentityRules, NewUser, Role};
use crate::http::{self, AppState};
use crate::storage::{SqlStore, Store, StoreError};

/// Opens the configured store, creating and migrating it as needed.
///
/// # Errors
/// Connection or migration failure, with the (redacted) URL in the message.
pub async fn open_store(config: &Config) -> anyhow::Result<SqlStore> {
    let rules =
        IdentityRules::for_region(&config.identity.default_region).map_err(anyhow::Error::msg)?;
    SqlStore::open(&config.database.url, rules)
        .await
        .with_context(|| {
            format!(
                "cannot open the database at {}",
                redact_url(&config.database.url)
            )
        })
}

/// On an empty database, creates the first administrator with a one-time password and
/// returns `(login, password)`; otherwise `None`.
///
/// # Errors
/// Database failure.
pub async fn ensure_first_admin(store: &dyn Store) -> anyhow::Result<Option<(String, String)>> {
    if store.count_users().await? > 0 {
        return Ok(None);
    }
    let password = auth::one_time_password();
    let pw = password.clone();
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&pw))
        .await?
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))?;
    let input = NewUser {
        login: "admin".into(),
        name: "Administrator".into(),
        email: None,
        role: Role::Admin,
        department_id: None,
        password: password.clone(),
        must_change_password: true,
    };
    match store.create_user(&Actor::System, &input, &hash).await {
        Ok(_) => Ok(Some(("admin".into(), password))),
        // Another node created it at the same moment.
        Err(StoreError::Duplicate { .. }) => Ok(None),
        Err(e) => Err(e).context("cannot create the first administrator"),
    }
}

/// A built application, bound to its port, not yet serving.
#[derive(Debug)]
pub struct App {
    state: AppState,
    listener: TcpListener,
}

impl App {
    /// Opens the store, binds the listener (port 0 picks a free one).
    ///
    /// # Errors
    /// Store or bind failure.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let store = open_store(&config).await?;
        Self::with_store(config, Arc::new(store)).await
    }

    /// Like [`App::build`] with an already opened store.
    ///
    /// # Errors
    /// Bind failure.
    pub async fn with_store(config: Config, store: Arc<dyn Store>) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.server.listen))?;
        let limiter = LoginLimiter::new(
            Duration::from_secs(config.auth.failure_window_secs),
            config.auth.max_failures_per_login,
            config.auth.max_failures_per_address,
        );
        let shutdown = tokio_util::sync::CancellationToken::new();
        let rt = &config.realtime;
        let hub = crate::hub::Hub::start(
            store.clone(),
            crate::hub::HubConfig {
                ring_capacity: rt.replay_ring,
                position_check: if rt.redis_url.is_empty() {
                    Duration::ZERO
                } else {
                    Duration::from_secs(1)
                },
                ..crate::hub::HubConfig::default()
            },
            shutdown.clone(),
        )
        .await
        .context("cannot start the hub")?;
        let node_id = if rt.node_id.is_empty() {
            default_node_id()
        } else {
            rt.node_id.clone()
        };
        if !rt.redis_url.is_empty() {
            let addr = crate::bus::redis::RedisAddr::parse(&rt.redis_url)
                .map_err(|m| anyhow::anyhow!("realtime.redis_url: {m}"))?;
            let bus = crate::bus::redis::RedisBus::start(
                addr,
                node_id.clone(),
                hub.clone(),
                shutdown.clone(),
            );
            hub.set_bus(bus);
            tracing::info!(node = %node_id, "multi-node: events go over redis too");
        }
        let mut channels: Vec<crate::pipeline::ChannelInfo> = config
            .connectors
            .iter()
            .map(|(id, c)| crate::pipeline::ChannelInfo {
                connector_id: id.clone(),
                channel: c.channel(),
                department: c.department().map(str::to_owned),
            })
            .collect();
        channels.extend(crate::http::ws::widget::channels(&config.widget.sites));
        let widget_key = store
            .hub_setting("widget_token_key", &new_secret())
            .await
            .context("cannot read the widget token key")?;
        let visitor_tokens = Some(crate::http::ws::widget::VisitorTokens::new(
            widget_key.as_bytes(),
        ));
        let pipeline = crate::pipeline::Pipeline::start(
            store.clone(),
            hub.clone(),
            channels,
            config.intake.open_interest,
            rt.pipeline_workers,
            256,
            shutdown.clone(),
        );
        let engines = crate::assist::engine::load(&config.assist).await;
        let encoder = engines.sentence_encoder();
        let consultant = crate::assist::Consultant::start(store.clone(), engines)
            .await
            .context("cannot start iConsultant's classifier")?;
        pipeline.set_consultant(consultant.clone());
        let knowledge =
            crate::assist::Knowledge::start(store.clone(), hub.clone(), shutdown.clone(), encoder)
                .await
                .context("cannot start iConsultant's knowledge base")?;
        let routing = crate::routing::Routing::start(
            store.clone(),
            hub.clone(),
            node_id,
            Duration::from_secs(rt.presence_grace_secs),
            shutdown.clone(),
        );
        if !config.telephony.extensions.is_empty() {
            let pairs: Vec<(String, String)> = config
                .telephony
                .extensions
                .iter()
                .map(|(x, l)| (x.clone(), l.clone()))
                .collect();
            for w in store
                .assign_extensions(&pairs)
                .await
                .context("cannot apply telephony.extensions")?
            {
                tracing::warn!("{w}");
            }
        }
        consultant.spawn_sync(
            routing.node_id().to_owned(),
            Duration::from_secs(config.assist.retrain_every_secs),
            shutdown.clone(),
        );
        let connector_states = Arc::new(crate::pipeline::host::ConnectorStates::default());
        let host = crate::pipeline::host::HostDeps {
            store: store.clone(),
            hub: hub.clone(),
            pipeline: pipeline.clone(),
            states: connector_states.clone(),
            node_id: routing.node_id().to_owned(),
            lease: Duration::from_secs(config.realtime.lease_secs),
        };
        let hooks = start_connectors(&config, &host, &shutdown);
        for (id, c) in &config.connectors {
            if c.kind() != "api" {
                continue;
            }
            connector_states.set(id, c.kind(), crate::pipeline::host::ConnectorState::Running);
            let crate::config::ConnectorConfig::Api {
                outbound_url: Some(url),
                outbound_secret,
                ..
            } = c
            else {
                continue;
            };
            tokio::spawn(crate::pipeline::outbound::run_webhook(
                crate::pipeline::outbound::WebhookTarget {
                    connector_id: id.clone(),
                    url: url.clone(),
                    secret: outbound_secret.clone(),
                    lease: Duration::from_secs(config.realtime.lease_secs),
                },
                store.clone(),
                hub.clone(),
                pipeline.clone(),
                routing.node_id().to_owned(),
                connector_states.clone(),
                shutdown.clone(),
            ));
        }
        let state = AppState {
            store,
            config: Arc::new(config),
            limiter: Arc::new(limiter),
            metrics: crate::telemetry::metrics(),
            started: Instant::now(),
            hub,
            pipeline,
            routing,
            shutdown,
            visitor_tokens,
            connectors: connector_states,
            hooks,
            consultant,
            knowledge,
        };
        Ok(Self { state, listener })
    }

    /// The address actually bound.
    ///
    /// # Errors
    /// When the OS cannot tell.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The shared state (tests reach the store through it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests.
    ///
    /// # Errors
    /// Server failure.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let router = http::router(self.state.clone());
        let token = self.state.shutdown.clone();
        // No Nagle delay: an event often goes out as two small frames, and the second would
        // wait for the client's delayed ACK (tens of milliseconds).
        let listener = axum::serve::ListenerExt::tap_io(self.listener, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        let result = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            // WebSockets and background tasks end on this; graceful shutdown then waits
            // for their connections to close.
            token.cancel();
        })
        .await
        .context("server failed");
        self.state.shutdown.cancel();
        result
    }
}

/// A random 256-bit secret, hex.
fn new_secret() -> String {
    crate::auth::hex(&rand::random::<[u8; 32]>())
}

/// The node id when none is configured: host name and process id.
fn default_node_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "node".into());
    format!("{host}-{}", std::process::id())
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

/// Starts every configured connector crate instance; returns the webhook routes with the
/// path to mount each at: `/hooks/{id}`, and also `/forms/{id}` for a website form.
#[allow(unused_variables, unused_mut)]
fn start_connectors(
    config: &Config,
    host: &crate::pipeline::host::HostDeps,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Vec<(String, axum::Router)> {
    use crate::config::ConnectorConfig as C;
    use crate::pipeline::host::{start_connector, start_webhook_connector};
    let mut hooks = Vec::new();
    for (id, c) in &config.connectors {
        let routes = match c {
            C::Api { .. } => None,
            #[cfg(feature = "connector-hep")]
            C::Hep(_) => None,
            #[cfg(feature = "connector-asterisk-ami")]
            C::AsteriskAmi(_) => None,
            #[cfg(feature = "connector-cti-webhook")]
            C::CtiWebhook(i) => start_webhook_connector::<kommutator_cti_webhook::CtiWebhook>(
                id.clone(),
                i.config.clone(),
                host.clone(),
                shutdown.clone(),
            ),
            #[cfg(feature = "connector-call-tracking")]
            C::CallTracking(i) => {
                start_webhook_connector::<kommutator_call_tracking::CallTracking>(
                    id.clone(),
                    i.config.clone(),
                    host.clone(),
                    shutdown.clone(),
                )
            }
            // Messengers take webhooks (or poll) and send replies: routes, plus `run` under
            // the supervisor. A poller or a mailbox runs once per cluster (the lease).
            #[cfg(feature = "connector-telegram")]
            C::Telegram(i) => start_connector::<kommutator_telegram::Telegram>(
                id.clone(),
                i.config.clone(),
                i.config.mode == kommutator_telegram::Mode::Polling,
                host.clone(),
                shutdown.clone(),
            ),
            #[cfg(feature = "connector-vk")]
            C::Vk(i) => start_connector::<kommutator_vk::Vk>(
                id.clone(),
                i.config.clone(),
                matches!(i.config.mode, kommutator_vk::Mode::LongPoll),
                host.clone(),
                shutdown.clone(),
            ),
            #[cfg(feature = "connector-whatsapp")]
            C::WhatsApp(i) => start_connector::<kommutator_whatsapp::WhatsApp>(
                id.clone(),
                i.config.clone(),
                false,
                host.clone(),
                shutdown.clone(),
            ),
            #[cfg(feature = "connector-email")]
            C::Email(i) => start_connector::<kommutator_email::Email>(
                id.clone(),
                i.config.clone(),
                true,
                host.clone(),
                shutdown.clone(),
            ),
            #[cfg(feature = "connector-web-forms")]
            C::WebForm(i) => {
                let r = start_webhook_connector::<kommutator_web_forms::WebForm>(
                    id.clone(),
                    i.config.clone(),
                    host.clone(),
                    shutdown.clone(),
                );
                if let Some(r) = &r {
                    tracing::info!(connector = %id, path = %format!("/forms/{id}/"), "website form mounted");
                    hooks.push((format!("/forms/{id}"), r.clone()));
                }
                r
            }
        };
        #[cfg(feature = "connector-hep")]
        if let C::Hep(i) = c {
            // Each node collects what is mirrored to it (no cluster lease): the PBX sends to
            // one address, and a call seen twice is stored once.
            tokio::spawn(crate::pipeline::host::run_connector::<
                kommutator_hep::HepConnector,
            >(
                id.clone(),
                i.config.clone(),
                false,
                host.clone(),
                shutdown.clone(),
            ));
        }
        #[cfg(feature = "connector-asterisk-ami")]
        if let C::AsteriskAmi(i) = c {
            // One AMI session per cluster: the node holding the lease runs it (and places
            // the click-to-calls).
            tokio::spawn(crate::pipeline::host::run_connector::<
                kommutator_asterisk_ami::AsteriskAmi,
            >(
                id.clone(),
                i.config.clone(),
                true,
                host.clone(),
                shutdown.clone(),
            ));
        }
        if let Some(r) = routes {
            tracing::info!(connector = %id, kind = c.kind(), path = %format!("/hooks/{id}/"), "webhook routes mounted");
            hooks.push((format!("/hooks/{id}"), r));
        }
    }
    hooks
}
