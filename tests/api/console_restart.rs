//! The operator console across a hub crash: the real hub binary on a SQLite file, an
//! operator with a dialog open in headless Chromium, a channel posting 60 messages into
//! that dialog, and the hub killed with SIGKILL partway and started again on the same port
//! and database. After the console reconnects, every message is on screen exactly once and
//! in order, and the hub stored each one once (the channel retried through the outage).

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kommutator::domain::{Actor, IdentityRules, NewApiKey, NewDepartment, NewUser, Role, Scope};
use kommutator::storage::{SqlStore, Store};
use serde_json::{json, Value};

use crate::browser::{Browser, Page};
use crate::helpers::{free_port, password_hash, screenshot_path, PASSWORD};
use crate::ws_client::inbound;

/// How long the console may take for one step while the hub is up.
const WAIT: Duration = Duration::from_secs(10);
/// How long the console may take to show everything after the restart.
const RECOVER: Duration = Duration::from_secs(20);
/// Messages the channel posts into the open dialog.
const MESSAGES: usize = 60;
/// The hub is killed once this many of them were stored.
const KILL_AFTER: usize = 15;
/// The pause between two messages of the channel.
const EVERY: Duration = Duration::from_millis(50);
/// How long the hub stays down (at least until the console noticed).
const DOWN: Duration = Duration::from_secs(1);
/// The first message of the dialog.
const FIRST: &str = "the first inquiry";
/// The channel's thread of the dialog.
const THREAD: &str = "t-restart";
/// The customer's phone.
const PHONE: &str = "+7 916 321-00-00";

/// A temp dir for the database, the config and the hub's logs; removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "kommutator-console-restart-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("create the test's temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One run of the hub binary; killed (SIGKILL) on drop.
struct Hub {
    child: Child,
    log: PathBuf,
}

impl Hub {
    /// Starts `kommutator serve` on `port` with the database `db` and the config file
    /// `config`, its log in `log`; waits until `/readyz` answers.
    async fn start(port: u16, db: &str, config: &Path, log: PathBuf) -> Hub {
        let stderr = File::create(&log).expect("create the hub's log file");
        let child = Command::new(env!("CARGO_BIN_EXE_kommutator"))
            .arg("serve")
            .env("KOMMUTATOR_CONFIG", config)
            .env("KOMMUTATOR_ASSIST__ENGINE", "ngram")
            .env("KOMMUTATOR_SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .env("KOMMUTATOR_DATABASE__URL", db)
            .env("KOMMUTATOR_LOG__LEVEL", "warn")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("start the hub binary");
        let mut hub = Hub { child, log };
        let http = reqwest::Client::new();
        let ready = format!("http://127.0.0.1:{port}/readyz");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(&ready).send().await {
                if r.status().is_success() {
                    return hub;
                }
            }
            if let Ok(Some(status)) = hub.child.try_wait() {
                panic!("the hub exited with {status} at start:\n{}", hub.log_tail());
            }
            if Instant::now() >= deadline {
                panic!("the hub was not ready within 30 s:\n{}", hub.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, and waits for the process to be gone.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The end of the hub's log, for failure messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.kill();
    }
}

fn new_user(login: &str, role: Role, department_id: Option<i64>) -> NewUser {
    NewUser {
        login: login.into(),
        name: login.into(),
        email: None,
        role,
        department_id,
        password: PASSWORD.into(),
        must_change_password: false,
    }
}

/// The database before the first start: department Sales, the operator `anna` in it, the
/// admin `boss` (so the hub creates no first admin) and a channel key; returns the key.
async fn prepare(db: &str) -> String {
    let store = SqlStore::open(db, IdentityRules::default())
        .await
        .expect("open the store");
    let sales = store
        .create_department(
            &Actor::System,
            &NewDepartment {
                name: "Sales".into(),
            },
        )
        .await
        .expect("department");
    let hash = password_hash();
    store
        .create_user(&Actor::System, &new_user("boss", Role::Admin, None), hash)
        .await
        .expect("admin");
    store
        .create_user(
            &Actor::System,
            &new_user("anna", Role::Operator, Some(sales.id)),
            hash,
        )
        .await
        .expect("operator");
    let (secret, prefix, key_hash) = kommutator::auth::new_api_key();
    store
        .create_api_key(
            &Actor::System,
            &NewApiKey {
                name: "site".into(),
                scopes: vec![Scope::DialogsWrite],
            },
            &prefix,
            &key_hash,
        )
        .await
        .expect("api key");
    store.close().await;
    secret
}

/// Milliseconds since the Unix epoch, as the page's `Date.now()`.
fn epoch_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// The body of message `n` (0: the inquiry that opens the dialog).
fn body(n: usize) -> String {
    if n == 0 {
        FIRST.to_owned()
    } else {
        format!("message {n}")
    }
}

/// Posts message `n` of the thread; the hub's answer, or why there is none.
async fn post(http: &reqwest::Client, base: &str, key: &str, n: usize) -> Result<Value, String> {
    let event = inbound(&format!("m-{n}"), THREAD, PHONE, &body(n));
    let r = http
        .post(format!("{base}/api/v1/connectors/site/events"))
        .bearer_auth(key)
        .json(&event)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status();
    let text = r.text().await.map_err(|e| e.to_string())?;
    if status != reqwest::StatusCode::OK {
        return Err(format!("{status}: {text}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))
}

/// Wraps the page's `WebSocket` so every socket the console opens from now on records its
/// frames in `window.__frames` (for a failure message) and `#conn`'s states are recorded in
/// `window.__states`. The console looks `WebSocket` up at each reconnect.
const RECORDER: &str = r#"(() => {
  const Native = window.WebSocket;
  window.__frames = [];
  window.__states = [document.querySelector('#conn')?.dataset.state ?? null];
  const note = (f) => {
    window.__frames.push(f);
    if (window.__frames.length > 400) window.__frames.shift();
  };
  class Recording extends Native {
    constructor(...args) {
      super(...args);
      note({ at: Date.now(), dir: 'open' });
      this.addEventListener('message', (m) => {
        let f = null;
        try { f = JSON.parse(m.data); } catch (_) { /* recorded as it is */ }
        const type = f ? f.type : null;
        const body = f && f.data && f.data.body ? ` ${JSON.stringify(f.data.body)}` : '';
        const data = type === 'event'
          ? `seq ${f.seq} ${f.entity}.${f.op} #${f.entity_id}${body}`
          : String(m.data).slice(0, 400);
        note({ at: Date.now(), dir: 'in', type, data });
      });
      this.addEventListener('close', (e) => note({ at: Date.now(), dir: 'close', code: e.code }));
    }
    send(data) {
      note({ at: Date.now(), dir: 'out', data: String(data).slice(0, 400) });
      super.send(data);
    }
  }
  window.WebSocket = Recording;
  const conn = document.querySelector('#conn');
  new MutationObserver(() => window.__states.push(conn.dataset.state))
    .observe(conn, { attributes: true, attributeFilter: ['data-state'] });
  return true;
})()"#;

/// What the console shows: connection state, and the id and body text of every message.
const SHOWN: &str = r#"(() => {
  const items = [...document.querySelectorAll('#messages li.msg')];
  return {
    state: document.querySelector('#conn')?.dataset.state ?? null,
    ids: items.map((li) => Number(li.dataset.id)),
    bodies: items.map((li) => li.querySelector('.body')?.textContent ?? null),
    flash: document.querySelector('#flash')?.textContent ?? '',
  };
})()"#;

/// The messages of `dialog` as the REST API lists them, every page.
async fn stored_messages(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    dialog: i64,
) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut req = http
            .get(format!("{base}/api/v1/dialogs/{dialog}/messages"))
            .bearer_auth(token)
            .query(&[("limit", "200")]);
        if let Some(c) = &cursor {
            req = req.query(&[("cursor", c.as_str())]);
        }
        let r = req.send().await.expect("list messages");
        assert!(r.status().is_success(), "list messages: {}", r.status());
        let page: Value = r.json().await.expect("a JSON page");
        out.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

/// A `network error` expected on this page: asking who is signed in before anna signs in
/// (401), and, while the hub is down, a request or the socket that could not connect or
/// whose connection was cut.
fn is_expected_error(e: &str) -> bool {
    let not_signed_in = e.contains("status of 401 ") && e.contains("/api/v1/auth/me)");
    e.starts_with("network error")
        && (not_signed_in
            || [
                "net::ERR_CONNECTION_REFUSED",
                "net::ERR_CONNECTION_RESET",
                "net::ERR_CONNECTION_CLOSED",
                "net::ERR_EMPTY_RESPONSE",
                "WebSocket connection to",
            ]
            .iter()
            .any(|what| e.contains(what)))
}

/// Signs `anna` in (English) and waits until the socket is live.
async fn sign_in(page: &Page, base: &str) {
    page.goto(base).await;
    page.wait_for("document.querySelector('#login-form')", WAIT)
        .await;
    page.eval("localStorage.setItem('kommutator.lang', 'en')")
        .await;
    page.reload().await;
    page.fill("#login", "anna").await;
    page.fill("#password", PASSWORD).await;
    page.click("#login-form button[type=submit]").await;
    page.wait_for(
        "document.querySelector('#conn')?.dataset.state === 'live'",
        WAIT,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_hub_restart_the_console_shows_every_message_once() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let started = Instant::now();
    let dir = TempDir::new();
    let db = format!("sqlite://{}", dir.0.join("hub.db").display());
    let config = dir.0.join("hub.toml");
    std::fs::write(
        &config,
        "[connectors.site]\ntype = \"api\"\nchannel = \"api\"\ndepartment = \"Sales\"\n",
    )
    .expect("write the config");
    let key = prepare(&db).await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut hub = Hub::start(port, &db, &config, dir.0.join("hub-1.log")).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");

    // Anna signs in; an inquiry arrives and she opens its dialog.
    let page = browser.new_page().await;
    sign_in(&page, &base).await;
    let out = post(&http, &base, &key, 0)
        .await
        .expect("the first inquiry");
    let dialog = out["dialog"]["id"].as_i64().expect("dialog id");
    page.click(&format!(".dialog-item[data-id=\"{dialog}\"]"))
        .await;
    page.wait_for(
        "document.querySelectorAll('#messages li.msg').length === 1",
        WAIT,
    )
    .await;
    assert_eq!(page.text("#messages li.msg .body").await, FIRST);
    assert_eq!(page.eval(RECORDER).await, true);

    // The channel posts messages 1..=60, each until the hub answers 200 (the hub dedupes a
    // repeated external id).
    let stored = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let stored_at: Arc<Mutex<Vec<u128>>> = Arc::default();
    let feeder = {
        let (http, base, key) = (http.clone(), base.clone(), key.clone());
        let (stored, failures, stored_at) = (
            Arc::clone(&stored),
            Arc::clone(&failures),
            Arc::clone(&stored_at),
        );
        tokio::spawn(async move {
            for n in 1..=MESSAGES {
                let give_up = Instant::now() + Duration::from_secs(60);
                loop {
                    match post(&http, &base, &key, n).await {
                        Ok(out) => {
                            assert_eq!(out["dialog"]["id"], dialog, "message {n}: {out}");
                            break;
                        }
                        Err(e) => {
                            failures.fetch_add(1, Ordering::SeqCst);
                            assert!(
                                Instant::now() < give_up,
                                "message {n} not accepted within 60 s; last error: {e}"
                            );
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                stored_at.lock().expect("stored_at").push(epoch_millis());
                stored.store(n, Ordering::SeqCst);
                tokio::time::sleep(EVERY).await;
            }
        })
    };

    // Midway, the hub dies; the console notices; the hub comes back on the same port and
    // database.
    let deadline = Instant::now() + Duration::from_secs(30);
    while stored.load(Ordering::SeqCst) < KILL_AFTER {
        assert!(
            !feeder.is_finished() && Instant::now() < deadline,
            "the channel did not get {KILL_AFTER} messages in"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    hub.kill();
    let killed_at = Instant::now();
    let stored_before_kill = stored.load(Ordering::SeqCst);
    page.wait_for(
        "document.querySelector('#conn')?.dataset.state !== 'live'",
        Duration::from_secs(5),
    )
    .await;
    tokio::time::sleep(DOWN.saturating_sub(killed_at.elapsed())).await;
    let stored_at_restart = stored.load(Ordering::SeqCst);
    let mut hub = Hub::start(port, &db, &config, dir.0.join("hub-2.log")).await;
    let down_for = killed_at.elapsed();

    tokio::time::timeout(Duration::from_secs(90), feeder)
        .await
        .expect("the channel finishes within 90 s")
        .expect("the channel got every message in");

    // The console is live again and shows the 61 messages, each once, in order.
    let expected: Vec<String> = (0..=MESSAGES).map(body).collect();
    let shown_deadline = Instant::now() + RECOVER;
    let shown = loop {
        let shown = page.eval(SHOWN).await;
        let bodies: Vec<String> = shown["bodies"]
            .as_array()
            .map(|b| {
                b.iter()
                    .map(|s| s.as_str().unwrap_or("<none>").to_owned())
                    .collect()
            })
            .unwrap_or_default();
        if shown["state"] == "live" && bodies == expected {
            break shown;
        }
        if Instant::now() >= shown_deadline {
            page.screenshot(&screenshot_path("console-restart-failed"))
                .await;
            let mut seen = BTreeSet::new();
            let twice: Vec<&String> = bodies.iter().filter(|b| !seen.insert(*b)).collect();
            let missing: Vec<&String> = expected.iter().filter(|b| !bodies.contains(b)).collect();
            let frames = page
                .eval(
                    "window.__frames.map((f) => `${f.at} ${f.dir} ${f.code ?? ''}${f.data ?? ''}`)",
                )
                .await;
            let frames: Vec<&str> = frames
                .as_array()
                .map(|f| f.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            panic!(
                "after the restart the console did not show every message once within \
                 {RECOVER:?}\n  #conn state: {}\n  #conn states since the dialog opened: {}\n  \
                 flash: {}\n  {} shown; missing: {missing:?}\n  shown twice: {twice:?}\n  \
                 bodies: {bodies:?}\n  ids: {}\n  page errors: {:?}\n  \
                 socket frames since the dialog opened (ms since the epoch):\n    {}\n  \
                 hub log:\n{}",
                shown["state"],
                page.eval("window.__states").await,
                shown["flash"],
                bodies.len(),
                shown["ids"],
                page.errors(),
                frames.join("\n    "),
                hub.log_tail(),
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let recovered_after = killed_at.elapsed();
    let states = page.eval("window.__states").await;
    let states: Vec<&str> = states
        .as_array()
        .map(|s| s.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert!(
        states.first() == Some(&"live")
            && states.iter().any(|s| *s != "live")
            && states.last() == Some(&"live"),
        "the console went offline and came back: {states:?}"
    );
    let opened = page
        .eval("window.__frames.filter((f) => f.dir === 'open').length")
        .await;
    assert!(
        opened.as_u64() >= Some(1),
        "the console opened a new socket after the restart ({opened})"
    );

    // The hub stored each message once: the REST API lists the same 61, with the ids the
    // console shows.
    let r = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"login": "boss", "password": PASSWORD}))
        .send()
        .await
        .expect("login");
    assert!(r.status().is_success(), "login boss: {}", r.status());
    let token = r.json::<Value>().await.expect("login answer")["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let items = stored_messages(&http, &base, &token, dialog).await;
    let stored_bodies: Vec<&str> = items
        .iter()
        .map(|m| m["body"].as_str().unwrap_or("<none>"))
        .collect();
    assert_eq!(stored_bodies, expected, "the messages the hub stored");
    let external: BTreeSet<&str> = items
        .iter()
        .filter_map(|m| m["external_id"].as_str())
        .collect();
    assert_eq!(external.len(), MESSAGES + 1, "one message per external id");
    let stored_ids: Vec<i64> = items.iter().filter_map(|m| m["id"].as_i64()).collect();
    let shown_ids: Vec<i64> = shown["ids"]
        .as_array()
        .map(|ids| ids.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    assert_eq!(
        shown_ids, stored_ids,
        "the console shows the stored messages"
    );

    page.screenshot(&screenshot_path("console-restart")).await;

    // Only expected network errors were logged: no script error.
    let errors = page.errors();
    let unexpected: Vec<&String> = errors.iter().filter(|e| !is_expected_error(e)).collect();
    assert!(
        unexpected.is_empty(),
        "unexpected console errors: {unexpected:?}"
    );
    assert_eq!(page.dialogs_opened(), 0);

    // How many messages the hub stored after the restart before the console's new socket
    // said hello: the console had them from its resume, not live.
    let hello_at = page
        .eval("window.__frames.filter((f) => f.type === 'hello').pop()?.at ?? 0")
        .await
        .as_u64()
        .map_or(0, u128::from);
    let resumed = stored_at.lock().expect("stored_at")[stored_before_kill..]
        .iter()
        .filter(|at| **at < hello_at)
        .count();

    hub.kill();
    eprintln!(
        "console_restart: hub killed after {stored_before_kill} messages, down {down_for:?} \
         ({stored_at_restart} stored when it came back; {} posts failed and were retried); \
         {resumed} messages stored before the console's new hello; console complete \
         {recovered_after:?} after the kill; #conn {states:?}; test took {:?}; expected \
         network errors: {errors:#?}",
        failures.load(Ordering::SeqCst),
        started.elapsed()
    );
}
