//! The hub's connector host: a connector crate's `run` under the supervisor. Its events go
//! through the pipeline (a replay after a restart stores nothing twice), replies come out
//! through `recv_outbound` and their acks come back, a retryable failure restarts it, a
//! bad configuration marks it failed, and a singleton instance waits for the lease.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kommutator::domain::*;
use kommutator::hub::{Hub, HubConfig};
use kommutator::pipeline::host::{run_connector, ConnectorState, ConnectorStates, HostDeps};
use kommutator::pipeline::{ChannelInfo, Pipeline};
use kommutator::storage::{SqlStore, Store};
use kommutator_sdk::*;
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

#[derive(Debug, Clone, Default, serde::Deserialize)]
struct FlakyConfig {
    #[serde(default)]
    refuse: bool,
    #[serde(skip)]
    runs: Arc<AtomicU32>,
    #[serde(skip)]
    sent: Arc<Mutex<Vec<OutboundMessage>>>,
}

#[derive(Debug)]
struct Flaky(FlakyConfig);

fn message(ctx: &ConnectorContext, key: &str, text: &str) -> InboundEvent {
    InboundEvent::new(
        ctx.id().clone(),
        key,
        time::OffsetDateTime::now_utc(),
        InboundKind::Message(InboundMessage {
            thread_id: "chat-1".into(),
            sender: Party::from_identity(PartyIdentity::new(IdentityKind::Telegram, "100500"))
                .with_display_name("Фёдор"),
            text: Some(text.into()),
            subject: None,
            html: None,
            quoted: None,
            attachments: vec![],
            reply_to_external_id: None,
            edit_of: None,
        }),
    )
}

impl Connector for Flaky {
    const KIND: &'static str = "flaky";
    type Config = FlakyConfig;

    fn new(config: FlakyConfig) -> Result<Self, ConnectorError> {
        if config.refuse {
            return Err(ConnectorError::config("token", "must be set"));
        }
        Ok(Self(config))
    }

    async fn run(self, mut ctx: ConnectorContext) -> Result<(), ConnectorError> {
        let n = self.0.runs.fetch_add(1, Ordering::SeqCst) + 1;
        ctx.send(message(&ctx, "m-1", "первое")).await?;
        if n == 1 {
            // The link dropped: the hub restarts us, and we replay m-1.
            return Err(ConnectorError::Closed);
        }
        ctx.send(message(&ctx, "m-2", "второе")).await?;
        let shutdown = ctx.shutdown().clone();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                out = ctx.recv_outbound() => {
                    let out = out.ok_or(ConnectorError::Closed)?;
                    let ack = InboundEvent::outbound_ack(ctx.id().clone(), out.id, format!("tg-{}", out.id), time::OffsetDateTime::now_utc());
                    self.0.sent.lock().expect("lock").push(out);
                    ctx.send(ack).await?;
                }
            }
        }
    }
}

struct Rig {
    store: Arc<dyn Store>,
    deps: HostDeps,
    states: Arc<ConnectorStates>,
    shutdown: CancellationToken,
}

async fn rig(node: &str) -> Rig {
    let url = fresh_database_url().await;
    let store: Arc<dyn Store> = Arc::new(
        SqlStore::open(&url, IdentityRules::default())
            .await
            .expect("store"),
    );
    let shutdown = CancellationToken::new();
    let hub = Hub::start(store.clone(), HubConfig::default(), shutdown.clone())
        .await
        .expect("hub");
    let pipeline = Pipeline::start(
        store.clone(),
        hub.clone(),
        vec![ChannelInfo {
            connector_id: "tg".into(),
            channel: "telegram".into(),
            department: None,
        }],
        OpenInterest::NewParty,
        2,
        16,
        shutdown.clone(),
    );
    let states = Arc::new(ConnectorStates::default());
    let deps = HostDeps {
        store: store.clone(),
        hub,
        pipeline,
        states: states.clone(),
        node_id: node.into(),
        lease: Duration::from_secs(3),
    };
    Rig {
        store,
        deps,
        states,
        shutdown,
    }
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_restarts_replays_once_and_delivers_replies() {
    let r = rig("n1").await;
    eprintln!("connector host on {}", backend_name());
    let config = FlakyConfig::default();
    let task = tokio::spawn(run_connector::<Flaky>(
        "tg".into(),
        config.clone(),
        false,
        r.deps.clone(),
        r.shutdown.clone(),
    ));
    // Two runs: the first failed after m-1, the second replayed m-1 and sent m-2.
    until("the restart", || config.runs.load(Ordering::SeqCst) >= 2).await;
    let dialog = loop {
        if let Some(d) = r
            .store
            .dialog_by_thread("tg", "chat-1")
            .await
            .expect("read")
        {
            let page = r
                .store
                .list_messages(&Actor::System, d.id, 50, None)
                .await
                .expect("messages");
            if page.items.len() >= 2 {
                let bodies: Vec<_> = page
                    .items
                    .iter()
                    .map(|m| m.body.clone().unwrap_or_default())
                    .collect();
                assert_eq!(bodies, vec!["первое", "второе"], "m-1 is stored once");
                break d;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let states = r.states.list();
    assert_eq!(states[0].state, ConnectorState::Running, "{states:?}");

    // A reply goes out through the connector and its ack comes back.
    let key = r
        .store
        .create_api_key(
            &Actor::System,
            &NewApiKey {
                name: "op".into(),
                scopes: vec![Scope::DialogsWrite],
            },
            "kmt_testprefix",
            "hash",
        )
        .await
        .expect("key");
    let bot = Actor::ApiKey {
        id: key.id,
        scopes: key.scopes.clone(),
    };
    let (m, _) = r
        .store
        .add_message(
            &bot,
            dialog.id,
            &NewMessage {
                direction: Some(kommutator::domain::Direction::Outbound),
                external_id: Some("reply-1".into()),
                body: Some("ответ".into()),
                attachments: vec![],
                sent_at: None,
            },
        )
        .await
        .expect("reply");
    until("the reply to reach the connector", || {
        config
            .sent
            .lock()
            .expect("lock")
            .iter()
            .any(|o| o.id == m.id)
    })
    .await;
    let sent = config.sent.lock().expect("lock").clone();
    assert_eq!(sent[0].thread_id, "chat-1");
    assert_eq!(sent[0].text.as_deref(), Some("ответ"));
    assert_eq!(
        sent[0].to,
        Some(PartyIdentity::new(IdentityKind::Telegram, "100500")),
        "the identity the dialog is with"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let page = r
            .store
            .list_messages(&Actor::System, dialog.id, 50, None)
            .await
            .expect("messages");
        let stored = page
            .items
            .iter()
            .find(|x| x.id == m.id)
            .expect("reply stored");
        if stored.delivery_status == DeliveryStatus::Sent {
            assert_eq!(
                stored.provider_message_id.as_deref(),
                Some(format!("tg-{}", m.id).as_str())
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no ack");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What it did, as `GET /api/v1/connectors` shows it. The host counts an event after the
    // pipeline has stored it, so the ack's count may follow the stored status by a moment.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let c = loop {
        let c = r.states.list()[0].counters.clone();
        if c.events >= 3 || tokio::time::Instant::now() >= deadline {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(c.duplicates, 1, "m-1 was replayed once: {c:?}");
    assert!(c.events >= 3, "m-1, m-2 and the ack: {c:?}");
    assert_eq!(c.restarts, 1, "{c:?}");
    assert!(c.outbound >= 1, "{c:?}");
    assert_eq!(c.refused, 0, "{c:?}");
    assert!(c.last_event_at.is_some());
    r.shutdown.cancel();
    task.await.expect("host ends");
    assert_eq!(r.states.list()[0].state, ConnectorState::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_marks_failed() {
    let r = rig("n1").await;
    let config = FlakyConfig {
        refuse: true,
        ..FlakyConfig::default()
    };
    run_connector::<Flaky>(
        "tg".into(),
        config,
        false,
        r.deps.clone(),
        r.shutdown.clone(),
    )
    .await;
    let states = r.states.list();
    assert!(
        matches!(&states[0].state, ConnectorState::Failed { reason } if reason.contains("token")),
        "{states:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn singleton_waits_for_the_lease() {
    let r = rig("n1").await;
    // Another node holds it.
    let until_ts = Timestamp(Timestamp::now().micros() + 60_000_000);
    assert!(r
        .store
        .try_lease("connector:tg", "other-node", until_ts)
        .await
        .expect("lease"));
    let config = FlakyConfig::default();
    let task = tokio::spawn(run_connector::<Flaky>(
        "tg".into(),
        config.clone(),
        true,
        r.deps.clone(),
        r.shutdown.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        config.runs.load(Ordering::SeqCst),
        0,
        "it must not run without the lease"
    );
    assert_eq!(r.states.list()[0].state, ConnectorState::Standby);
    // The other node gives it up: this one takes over.
    r.store
        .release_lease("connector:tg", "other-node")
        .await
        .expect("release");
    until("the takeover", || config.runs.load(Ordering::SeqCst) >= 1).await;
    r.shutdown.cancel();
    task.await.expect("host ends");
}

/// A connector that counts its runs in the hub's state store and stores a received file.
#[derive(Debug)]
struct Keeper(KeeperConfig);

/// What one run read back: the state before it, and its stored file.
type Seen = (Option<String>, Option<StoredFile>);

#[derive(Debug, Clone, Default, serde::Deserialize)]
struct KeeperConfig {
    #[serde(skip)]
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Connector for Keeper {
    const KIND: &'static str = "keeper";
    type Config = KeeperConfig;

    fn new(config: KeeperConfig) -> Result<Self, ConnectorError> {
        Ok(Self(config))
    }

    async fn run(self, ctx: ConnectorContext) -> Result<(), ConnectorError> {
        let before = ctx.state().get("runs").await?;
        let n: u32 = before.as_deref().and_then(|s| s.parse().ok()).unwrap_or(0) + 1;
        ctx.state().put("runs", &n.to_string()).await?;
        let file = ctx
            .files()
            .put(
                "Счёт 1.pdf",
                "application/pdf",
                b"%PDF-1.4 invoice".to_vec(),
            )
            .await?;
        let back = ctx.files().get(&file.url_or_ref).await?;
        self.0.seen.lock().expect("lock").push((before, back));
        let mut msg = InboundMessage::text(
            "chat-2",
            Party::from_identity(PartyIdentity::new(IdentityKind::Telegram, "100501")),
            Some(format!("run {n}")),
        );
        msg.attachments.push(file);
        ctx.send(InboundEvent::new(
            ctx.id().clone(),
            format!("k-{n}"),
            time::OffsetDateTime::now_utc(),
            InboundKind::Message(msg),
        ))
        .await?;
        if n == 1 {
            return Err(ConnectorError::Closed);
        }
        ctx.shutdown().cancelled().await;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_keeps_its_state_and_files_in_the_hub_across_restarts() {
    let r = rig("n1").await;
    let config = KeeperConfig::default();
    let task = tokio::spawn(run_connector::<Keeper>(
        "tg".into(),
        config.clone(),
        false,
        r.deps.clone(),
        r.shutdown.clone(),
    ));
    until("two runs", || config.seen.lock().expect("lock").len() >= 2).await;
    let seen = config.seen.lock().expect("lock").clone();
    assert_eq!(seen[0].0, None, "nothing remembered at first");
    assert_eq!(
        seen[1].0.as_deref(),
        Some("1"),
        "the second run reads what the first stored"
    );
    let file = seen[1]
        .1
        .clone()
        .expect("the connector reads its file back");
    assert_eq!(file.name, "Счёт 1.pdf");
    assert_eq!(file.mime_type, "application/pdf");
    assert_eq!(file.content, b"%PDF-1.4 invoice");
    assert_eq!(
        r.store
            .connector_state("tg", "runs")
            .await
            .expect("read")
            .as_deref(),
        Some("2")
    );
    assert_eq!(
        r.store
            .connector_state("other", "runs")
            .await
            .expect("read"),
        None,
        "per instance"
    );

    // The message carries a link the API serves.
    let dialog = loop {
        if let Some(d) = r
            .store
            .dialog_by_thread("tg", "chat-2")
            .await
            .expect("read")
        {
            break d;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let page = r
        .store
        .list_messages(&Actor::System, dialog.id, 50, None)
        .await
        .expect("messages");
    let a = &page.items[0].attachments[0];
    assert_eq!(a.name, "Счёт 1.pdf");
    assert_eq!(a.size, Some(16));
    let key = a
        .url
        .strip_prefix("/api/v1/files/")
        .and_then(|rest| rest.split('/').next())
        .expect("a hub file URL");
    let stored = r.store.get_file(key).await.expect("read").expect("stored");
    assert_eq!(stored.content, b"%PDF-1.4 invoice");
    r.shutdown.cancel();
    task.await.expect("host ends");
}
