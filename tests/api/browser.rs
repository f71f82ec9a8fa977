//! A small Chrome DevTools Protocol client, so tests can drive a real headless Chromium:
//! open a page of the hub, click, type, press keys and read what a person would see.
//!
//! [`Browser::launch`] starts a fresh Chromium (its own profile in a temp dir, a free
//! debugging port) and returns `None`, loudly, when the machine has none, unless `CI` is
//! set. One WebSocket carries every command: a background task routes replies by `id` to
//! the caller waiting for them, and events by `sessionId` to the [`Page`] they belong to,
//! which collects JS errors and console errors and dismisses `alert`/`confirm` dialogs.
//!
//! ```ignore
//! let Some(browser) = Browser::launch().await else { return };
//! let page = browser.new_page().await;
//! page.goto(&format!("{}/", app.base)).await;
//! page.fill("#login", "admin").await;
//! page.click("button[type=submit]").await;
//! page.wait_for("document.querySelector('.inbox')", Duration::from_secs(5)).await;
//! assert!(page.errors().is_empty(), "{:?}", page.errors());
//! ```

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long Chromium may take to print its DevTools address.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one protocol command may take before the test fails.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a navigation may take to reach its `load` event.
const LOAD_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`Page::click`] and [`Page::fill`] wait for their element.
const ELEMENT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often [`Page::wait_for`] evaluates its expression again.
const POLL_EVERY: Duration = Duration::from_millis(50);
/// The viewport of every page: a common laptop screen.
const VIEWPORT: (u32, u32) = (1366, 850);
/// How much of the page text a failed [`Page::wait_for`] shows.
const BODY_TEXT_SHOWN: usize = 2000;
/// The largest message accepted from Chromium (screenshots arrive as one base64 string).
const MAX_MESSAGE: usize = 256 << 20;

/// Flags for every launch, besides the profile directory. The first line is what the
/// tests rely on; the rest keeps Chromium quiet (no background traffic, no first-run UI)
/// and pages deterministic (no throttling of a page that is not in front).
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--remote-debugging-port=0",
    "--no-first-run",
    "--no-default-browser-check",
    "--window-size=1366,850",
    "--lang=en-US",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--disable-component-extensions-with-background-pages",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-sync",
    "--disable-breakpad",
    "--disable-client-side-phishing-detection",
    "--disable-hang-monitor",
    "--disable-prompt-on-repost",
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
    "--disable-renderer-backgrounding",
    "--disable-ipc-flooding-protection",
    "--disable-features=Translate,MediaRouter,OptimizationHints,AutofillServerCommunication",
    "--metrics-recording-only",
    "--password-store=basic",
    "--use-mock-keychain",
    "--mute-audio",
    "--hide-scrollbars",
    "--force-color-profile=srgb",
];

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A command's reply: its `result`, or its `error` object.
type Reply = Result<Value, Value>;

/// Locks, ignoring poisoning: a test that panicked while holding a lock must not turn
/// every later failure into a confusing `PoisonError`.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------
// Browser
// ---------------------------------------------------------------------------------------

/// A headless Chromium for one test; killed (and its profile dir removed) on drop.
pub struct Browser {
    conn: Arc<Conn>,
    process: ChromiumProcess,
    ws_url: String,
}

impl fmt::Debug for Browser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Browser")
            .field("pid", &self.process.child.id())
            .field("ws_url", &self.ws_url)
            .field("profile", &self.process.profile)
            .finish()
    }
}

impl Browser {
    /// Launches `$KOMMUTATOR_TEST_CHROMIUM` or `/usr/bin/chromium` (then `chromium`,
    /// `chromium-browser` on `PATH`) headless, on a free debugging port with a fresh
    /// profile, and connects to it.
    ///
    /// Returns `None` after printing a loud `SKIPPED` line when there is no Chromium,
    /// unless the `CI` environment variable is set: then it panics, since CI must run the
    /// browser tests. A Chromium that is there but does not start also panics.
    pub async fn launch() -> Option<Browser> {
        let Some(binary) = find_chromium() else {
            if running_in_ci() {
                panic!(
                    "no Chromium found and CI is set, so the browser tests cannot be skipped: \
                     install the `chromium` package or set KOMMUTATOR_TEST_CHROMIUM"
                );
            }
            eprintln!(
                "SKIPPED: no Chromium (looked for $KOMMUTATOR_TEST_CHROMIUM, /usr/bin/chromium, \
                 chromium and chromium-browser on PATH); this browser test did not run"
            );
            return None;
        };
        let profile = fresh_profile_dir();
        let child = Command::new(&binary)
            .args(CHROMIUM_FLAGS)
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let child = match child {
            Ok(child) => child,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&profile);
                panic!("could not start Chromium `{}`: {e}", binary.display());
            }
        };
        // From here on, a panic kills Chromium and removes the profile.
        let mut process = ChromiumProcess { child, profile };

        let stderr = process
            .child
            .stderr
            .take()
            .expect("Chromium's stderr is piped");
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let (found_tx, found_rx) = oneshot::channel();
        let tail_for_reader = Arc::clone(&tail);
        std::thread::Builder::new()
            .name("chromium-stderr".into())
            .spawn(move || watch_stderr(stderr, found_tx, &tail_for_reader))
            .expect("spawn the thread that reads Chromium's stderr");

        let ws_url = match tokio::time::timeout(LAUNCH_TIMEOUT, found_rx).await {
            Ok(Ok(url)) => url,
            outcome => {
                let why = match outcome {
                    Err(_) => format!("it printed no DevTools address within {LAUNCH_TIMEOUT:?}"),
                    _ => "it closed its stderr before printing a DevTools address".to_owned(),
                };
                let status = match process.child.try_wait() {
                    Ok(Some(status)) => format!("exited with {status}"),
                    _ => "still running".to_owned(),
                };
                let tail = lock(&tail).iter().cloned().collect::<Vec<_>>();
                let tail = if tail.is_empty() {
                    "(none)".to_owned()
                } else {
                    tail.join("\n    ")
                };
                panic!(
                    "Chromium `{}` did not start: {why} ({status}); last stderr lines:\n    {tail}",
                    binary.display()
                );
            }
        };

        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE));
        let (socket, _) =
            tokio_tungstenite::connect_async_with_config(ws_url.as_str(), Some(config), true)
                .await
                .unwrap_or_else(|e| panic!("connect to Chromium's DevTools at {ws_url}: {e}"));
        let (sink, stream) = socket.split();
        let (out, outbox) = mpsc::unbounded_channel();
        let conn = Arc::new(Conn {
            out,
            next_id: AtomicU64::new(1),
            routes: Mutex::new(Routes::default()),
        });
        tokio::spawn(write_loop(sink, outbox));
        tokio::spawn(read_loop(stream, Arc::clone(&conn)));
        Some(Browser {
            conn,
            process,
            ws_url,
        })
    }

    /// A new tab (`about:blank`) with the Page, Runtime and Log domains enabled, so its
    /// errors and dialogs are collected from the start. Its viewport is 1366×850 and it
    /// behaves as focused even when another tab was used last.
    pub async fn new_page(&self) -> Page {
        let created = self
            .call("Target.createTarget", json!({ "url": "about:blank" }))
            .await;
        let target_id = created["targetId"]
            .as_str()
            .unwrap_or_else(|| panic!("Target.createTarget returned no targetId: {created}"))
            .to_owned();
        let attached = self
            .call(
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await;
        let session = attached["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("Target.attachToTarget returned no sessionId: {attached}"))
            .to_owned();
        let state = Arc::new(PageState::new(target_id));
        lock(&self.conn.routes)
            .pages
            .insert(session.clone(), Arc::clone(&state));
        let page = Page {
            conn: Arc::clone(&self.conn),
            session,
            state,
        };
        page.cmd("Page.enable", json!({})).await;
        page.cmd("Page.setLifecycleEventsEnabled", json!({ "enabled": true }))
            .await;
        page.cmd("Runtime.enable", json!({})).await;
        page.cmd("Log.enable", json!({})).await;
        // The viewport is exactly the window size asked for (headless Chromium takes its
        // own toolbar height off the window), the same in every tab.
        page.cmd(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": VIEWPORT.0, "height": VIEWPORT.1, "deviceScaleFactor": 1, "mobile": false }),
        )
        .await;
        // Every tab behaves as the focused one, so focus/blur and key events work the
        // same whichever tab a test touched last.
        page.cmd(
            "Emulation.setFocusEmulationEnabled",
            json!({ "enabled": true }),
        )
        .await;
        page
    }

    /// A browser-level command (no session); panics on failure.
    async fn call(&self, method: &str, params: Value) -> Value {
        match self.conn.call(None, method, params, COMMAND_TIMEOUT).await {
            Ok(v) => v,
            Err(e) => panic!("browser: {method} failed: {e}"),
        }
    }
}

/// The Chromium child process and its profile directory; both go away on drop.
struct ChromiumProcess {
    child: Child,
    profile: PathBuf,
}

impl Drop for ChromiumProcess {
    fn drop(&mut self) {
        // SIGKILL: Chromium's helper processes notice their parent is gone and exit too.
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A helper may still be writing into the profile for a moment.
        for _ in 0..20 {
            match std::fs::remove_dir_all(&self.profile) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    std::thread::sleep(Duration::from_millis(25));
                }
                _ => break,
            }
        }
    }
}

/// Reads Chromium's stderr: sends the `DevTools listening on ws://...` address once, keeps
/// the last lines for a launch failure message, and drains the rest so Chromium never
/// blocks on a full pipe.
fn watch_stderr(stderr: impl Read, found: oneshot::Sender<String>, tail: &Mutex<VecDeque<String>>) {
    const PREFIX: &str = "DevTools listening on ";
    let mut found = Some(found);
    let mut reader = BufReader::new(stderr);
    let mut raw = Vec::new();
    loop {
        raw.clear();
        match reader.read_until(b'\n', &mut raw) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&raw).trim_end().to_owned();
        if let Some(at) = line.find(PREFIX) {
            if let Some(tx) = found.take() {
                let _ = tx.send(line[at + PREFIX.len()..].trim().to_owned());
            }
        }
        if found.is_some() {
            let mut tail = lock(tail);
            if tail.len() == 40 {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    }
}

/// `$KOMMUTATOR_TEST_CHROMIUM`, `/usr/bin/chromium`, or `chromium`/`chromium-browser` on
/// `PATH`.
fn find_chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("KOMMUTATOR_TEST_CHROMIUM").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "KOMMUTATOR_TEST_CHROMIUM={} is not a file",
            path.display()
        );
        return Some(path);
    }
    let system = Path::new("/usr/bin/chromium");
    if system.is_file() {
        return Some(system.to_path_buf());
    }
    let dirs = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser"].iter().find_map(|name| {
        std::env::split_paths(&dirs)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// Whether the `CI` environment variable is set (to anything but the empty string).
fn running_in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// A new, empty directory under the system temp dir, unique across tests and processes.
fn fresh_profile_dir() -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "kommutator-chromium-{}-{n}-{nanos}",
            std::process::id()
        ));
        match std::fs::create_dir(&dir) {
            Ok(()) => return dir,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("create a Chromium profile dir {}: {e}", dir.display()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The connection: commands out, replies and events in
// ---------------------------------------------------------------------------------------

/// The one WebSocket to Chromium, shared by the browser and its pages.
struct Conn {
    /// Frames for the writer task.
    out: mpsc::UnboundedSender<Message>,
    next_id: AtomicU64,
    routes: Mutex<Routes>,
}

/// Where incoming messages go.
#[derive(Default)]
struct Routes {
    /// Callers waiting for a reply, by command id.
    pending: HashMap<u64, oneshot::Sender<Reply>>,
    /// Pages, by session id.
    pages: HashMap<String, Arc<PageState>>,
    /// The socket is gone: no reply will ever come.
    closed: bool,
}

/// Why a command has no result.
#[derive(Debug)]
enum CallError {
    /// Chromium answered with an error.
    Protocol(String),
    /// No answer in time.
    Timeout(Duration),
    /// The connection is gone (Chromium exited or was killed).
    Closed,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Protocol(e) => write!(f, "Chromium answered: {e}"),
            CallError::Timeout(after) => write!(f, "no answer from Chromium within {after:?}"),
            CallError::Closed => write!(f, "the connection to Chromium is closed"),
        }
    }
}

/// Forgets a pending command when its caller stops waiting (timeout or cancellation).
struct PendingGuard<'a> {
    conn: &'a Conn,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        lock(&self.conn.routes).pending.remove(&self.id);
    }
}

impl Conn {
    /// Sends a command without waiting for its reply; returns its id.
    fn send(&self, session: Option<&str>, method: &str, params: Value) -> Option<u64> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut frame = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            frame["sessionId"] = Value::from(session);
        }
        self.out.send(Message::text(frame.to_string())).ok()?;
        Some(id)
    }

    /// Sends a command and waits up to `timeout` for its reply.
    async fn call(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut routes = lock(&self.routes);
            if routes.closed {
                return Err(CallError::Closed);
            }
            routes.pending.insert(id, tx);
        }
        let _forget = PendingGuard { conn: self, id };
        let mut frame = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            frame["sessionId"] = Value::from(session);
        }
        if self.out.send(Message::text(frame.to_string())).is_err() {
            return Err(CallError::Closed);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(result))) => Ok(result),
            Ok(Ok(Err(error))) => Err(CallError::Protocol(describe_protocol_error(&error))),
            Ok(Err(_)) => Err(CallError::Closed),
            Err(_) => Err(CallError::Timeout(timeout)),
        }
    }

    /// Hands one incoming message to whoever waits for it.
    fn dispatch(&self, mut msg: Value) {
        if let Some(id) = msg.get("id").and_then(Value::as_u64) {
            let waiter = lock(&self.routes).pending.remove(&id);
            if let Some(waiter) = waiter {
                let reply = match msg.get_mut("error") {
                    Some(error) => Err(error.take()),
                    None => Ok(msg.get_mut("result").map(Value::take).unwrap_or_default()),
                };
                let _ = waiter.send(reply);
            }
            return;
        }
        let (Some(method), Some(session)) = (msg["method"].as_str(), msg["sessionId"].as_str())
        else {
            return;
        };
        let page = lock(&self.routes).pages.get(session).cloned();
        if let Some(page) = page {
            page.on_event(self, session, method, &msg["params"]);
        }
    }

    /// The socket is gone: wakes every waiting caller (their senders drop) and refuses
    /// new commands.
    fn shut_down(&self) {
        let mut routes = lock(&self.routes);
        routes.closed = true;
        routes.pending.clear();
    }
}

/// `message (code): data` of a protocol error object.
fn describe_protocol_error(error: &Value) -> String {
    let mut text = error["message"]
        .as_str()
        .unwrap_or("unknown error")
        .to_owned();
    if let Some(code) = error["code"].as_i64() {
        text.push_str(&format!(" ({code})"));
    }
    if let Some(data) = error["data"].as_str() {
        text.push_str(&format!(": {data}"));
    }
    text
}

/// Writes queued frames until every sender is gone or the socket fails.
async fn write_loop(
    mut sink: SplitSink<Ws, Message>,
    mut outbox: mpsc::UnboundedReceiver<Message>,
) {
    while let Some(frame) = outbox.recv().await {
        if sink.send(frame).await.is_err() {
            break;
        }
    }
}

/// Routes incoming messages until the socket closes, then fails every waiting command.
async fn read_loop(mut stream: SplitStream<Ws>, conn: Arc<Conn>) {
    while let Some(frame) = stream.next().await {
        let text = match frame {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        if let Ok(msg) = serde_json::from_str::<Value>(text.as_str()) {
            conn.dispatch(msg);
        }
    }
    conn.shut_down();
}

// ---------------------------------------------------------------------------------------
// Page
// ---------------------------------------------------------------------------------------

/// What the background reader learned about one tab.
struct PageState {
    /// The tab's target id, which is also its main frame's id.
    target_id: String,
    /// The main frame's URL as last seen (or as last asked for).
    url: Mutex<String>,
    errors: Mutex<Vec<String>>,
    dialogs: AtomicUsize,
    loads: watch::Sender<Loads>,
}

/// The main frame's `load` events so far.
#[derive(Default)]
struct Loads {
    count: u64,
    /// Loader ids of the latest loads, newest last.
    recent: VecDeque<String>,
}

impl PageState {
    fn new(target_id: String) -> PageState {
        PageState {
            target_id,
            url: Mutex::new("about:blank".to_owned()),
            errors: Mutex::new(Vec::new()),
            dialogs: AtomicUsize::new(0),
            loads: watch::Sender::new(Loads::default()),
        }
    }

    /// One event of this tab's session.
    fn on_event(&self, conn: &Conn, session: &str, method: &str, params: &Value) {
        match method {
            "Runtime.exceptionThrown" => {
                self.error(exception_text(&params["exceptionDetails"]));
            }
            "Runtime.consoleAPICalled"
                if matches!(params["type"].as_str(), Some("error" | "assert")) =>
            {
                let args = params["args"].as_array().map_or_else(Vec::new, |args| {
                    args.iter().map(remote_object_text).collect()
                });
                let kind = params["type"].as_str().unwrap_or_default();
                self.error(format!("console.{kind}: {}", args.join(" ")));
            }
            "Log.entryAdded" if params["entry"]["level"] == "error" => {
                let entry = &params["entry"];
                let mut text = format!(
                    "{} error: {}",
                    entry["source"].as_str().unwrap_or("browser"),
                    entry["text"].as_str().unwrap_or_default()
                );
                if let Some(url) = entry["url"].as_str() {
                    text.push_str(&format!(" ({url})"));
                }
                self.error(text);
            }
            "Page.javascriptDialogOpening" => {
                self.dialogs.fetch_add(1, Ordering::SeqCst);
                // The page is frozen until the dialog goes; nobody waits for this reply.
                conn.send(
                    Some(session),
                    "Page.handleJavaScriptDialog",
                    json!({ "accept": false }),
                );
            }
            "Page.lifecycleEvent"
                if params["name"] == "load" && params["frameId"] == self.target_id.as_str() =>
            {
                let loader = params["loaderId"].as_str().unwrap_or_default().to_owned();
                self.loads.send_modify(|loads| {
                    loads.count += 1;
                    if loads.recent.len() == 16 {
                        loads.recent.pop_front();
                    }
                    loads.recent.push_back(loader);
                });
            }
            "Page.frameNavigated" if params["frame"].get("parentId").is_none() => {
                if let Some(url) = params["frame"]["url"].as_str() {
                    *lock(&self.url) = url.to_owned();
                }
            }
            "Page.navigatedWithinDocument" if params["frameId"] == self.target_id.as_str() => {
                if let Some(url) = params["url"].as_str() {
                    *lock(&self.url) = url.to_owned();
                }
            }
            "Inspector.targetCrashed" => self.error("the page crashed".to_owned()),
            _ => {}
        }
    }

    fn error(&self, text: String) {
        lock(&self.errors).push(text);
    }
}

/// The text of a JS exception: its description (message and stack) when it has one.
fn exception_text(details: &Value) -> String {
    let text = details["text"].as_str().unwrap_or("Uncaught");
    let exception = &details["exception"];
    if let Some(description) = exception["description"].as_str() {
        return format!("{text} {description}");
    }
    match exception.get("value") {
        Some(Value::String(s)) => format!("{text} {s}"),
        Some(v) if !v.is_null() => format!("{text} {v}"),
        _ => text.to_owned(),
    }
}

/// A console argument as text: strings as they are, other values as JSON or as Chromium
/// describes them.
fn remote_object_text(object: &Value) -> String {
    match object.get("value") {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => object["unserializableValue"]
            .as_str()
            .or_else(|| object["description"].as_str())
            .or_else(|| object["type"].as_str())
            .unwrap_or("?")
            .to_owned(),
    }
}

/// The value of an evaluation result (returned by value): `null` for `undefined`, and the
/// string Chromium uses for values JSON cannot hold (`"NaN"`, `"Infinity"`, `"-0"`,
/// `"12n"`).
fn value_of(mut object: Value) -> Value {
    if let Some(value) = object.get_mut("value") {
        return value.take();
    }
    object
        .get_mut("unserializableValue")
        .map(Value::take)
        .unwrap_or_default()
}

/// JS truthiness of an evaluation result.
fn truthy(object: &Value) -> bool {
    if let Some(special) = object["unserializableValue"].as_str() {
        return !matches!(special, "NaN" | "-0" | "0n" | "-0n");
    }
    match object.get("value") {
        None => object["type"] != "undefined",
        Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

/// At most `max` characters of `s`, with `…` when cut.
fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

/// `s` as a JS string literal.
fn js_string(s: &str) -> String {
    Value::from(s).to_string()
}

/// Why an evaluation has no value.
#[derive(Debug)]
enum EvalError {
    /// The expression threw (or did not compile).
    Thrown {
        text: String,
        /// A `SyntaxError`: evaluating again cannot help.
        syntax: bool,
    },
    /// The command itself failed.
    Call(CallError),
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalError::Thrown { text, .. } => write!(f, "JS exception: {text}"),
            EvalError::Call(e) => e.fmt(f),
        }
    }
}

/// One tab. Every method panics with a clear message (naming the page URL, the JS
/// exception if any, and the JS errors seen so far) when it cannot do its job.
pub struct Page {
    conn: Arc<Conn>,
    session: String,
    state: Arc<PageState>,
}

impl fmt::Debug for Page {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Page")
            .field("session", &self.session)
            .field("url", &*lock(&self.state.url))
            .finish()
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        lock(&self.conn.routes).pages.remove(&self.session);
        self.conn.send(
            None,
            "Target.closeTarget",
            json!({ "targetId": self.state.target_id }),
        );
    }
}

/// The named keys [`Page::press`] knows: `key`, `code`, Windows virtual key code, and the
/// text the key types.
const KEYS: &[(&str, &str, u32, Option<&str>)] = &[
    ("Enter", "Enter", 13, Some("\r")),
    ("Escape", "Escape", 27, None),
    ("Tab", "Tab", 9, None),
    ("Backspace", "Backspace", 8, None),
    ("Delete", "Delete", 46, None),
    ("ArrowLeft", "ArrowLeft", 37, None),
    ("ArrowUp", "ArrowUp", 38, None),
    ("ArrowRight", "ArrowRight", 39, None),
    ("ArrowDown", "ArrowDown", 40, None),
    ("Home", "Home", 36, None),
    ("End", "End", 35, None),
    ("PageUp", "PageUp", 33, None),
    ("PageDown", "PageDown", 34, None),
];

/// How long an element must keep its place before [`Page::click`] clicks it, and how
/// many times it looks again before clicking wherever the element is now.
const STABLE_FOR: Duration = Duration::from_millis(50);
const STABLE_TRIES: usize = 40;

/// The part of [`Page::click`]'s probe that runs on the element: scrolls it into view
/// and returns the point to click, or why it cannot be clicked yet.
const CLICK_PROBE: &str = r#"(el) => {
  if (el.disabled) return 'it is disabled';
  el.scrollIntoView({ block: 'center', inline: 'center', behavior: 'instant' });
  const r = el.getBoundingClientRect();
  if (r.width === 0 || r.height === 0 || getComputedStyle(el).visibility === 'hidden') {
    return 'it is not visible';
  }
  const left = Math.max(r.left, 0), top = Math.max(r.top, 0);
  const right = Math.min(r.right, window.innerWidth), bottom = Math.min(r.bottom, window.innerHeight);
  if (right <= left || bottom <= top) return 'it is outside the viewport';
  const x = (left + right) / 2, y = (top + bottom) / 2;
  const hit = document.elementFromPoint(x, y);
  if (hit && hit !== el && !el.contains(hit)) {
    let name = hit.tagName.toLowerCase();
    if (hit.id) name += '#' + hit.id;
    if (typeof hit.className === 'string' && hit.className.trim()) {
      name += '.' + hit.className.trim().split(/\s+/).join('.');
    }
    return 'it is covered by <' + name + '>';
  }
  return { x, y };
}"#;

/// The part of [`Page::fill`]'s probe that runs on the element: focuses it and selects
/// its text, or says why it cannot be filled.
const FILL_PROBE: &str = r#"(el) => {
  const notText = ['checkbox', 'radio', 'button', 'submit', 'reset', 'file', 'image', 'range',
    'color', 'hidden', 'date', 'time', 'datetime-local', 'month', 'week'];
  const field = el.tagName === 'TEXTAREA' || (el.tagName === 'INPUT' && !notText.includes(el.type));
  if (!field && !el.isContentEditable) {
    return { fatal: 'it is <' + el.tagName.toLowerCase() + (el.type ? ' type=' + el.type : '')
      + '>, not a text field (set it with eval)' };
  }
  if (el.disabled) return 'it is disabled';
  if (el.readOnly) return 'it is read-only';
  el.scrollIntoView({ block: 'center', inline: 'center', behavior: 'instant' });
  el.focus();
  if (document.activeElement !== el && !el.contains(document.activeElement)) {
    return 'it does not take focus (hidden?)';
  }
  if (field) {
    el.select();
  } else {
    const range = document.createRange();
    range.selectNodeContents(el);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }
  return { ready: true };
}"#;

impl Page {
    /// Navigates to `url` and waits (20 s) for the new document's `load` event; a
    /// same-document navigation (only the `#fragment` changes) returns at once.
    pub async fn goto(&self, url: &str) {
        *lock(&self.state.url) = url.to_owned();
        let mut loads = self.state.loads.subscribe();
        let reply = self.cmd("Page.navigate", json!({ "url": url })).await;
        if let Some(error) = reply["errorText"].as_str() {
            self.fail(&format!("goto {}", shorten(url, 200)), error);
        }
        let Some(loader) = reply["loaderId"].as_str() else {
            return;
        };
        let loaded = tokio::time::timeout(
            LOAD_TIMEOUT,
            loads.wait_for(|l| l.recent.iter().any(|id| id == loader)),
        )
        .await;
        self.check_loaded(loaded.map(|r| r.map(drop)), "goto").await;
    }

    /// Reloads the page and waits (20 s) for its `load` event.
    pub async fn reload(&self) {
        let mut loads = self.state.loads.subscribe();
        let before = loads.borrow_and_update().count;
        self.cmd("Page.reload", json!({})).await;
        let loaded = tokio::time::timeout(LOAD_TIMEOUT, loads.wait_for(|l| l.count > before)).await;
        self.check_loaded(loaded.map(|r| r.map(drop)), "reload")
            .await;
    }

    /// Fails `what` unless the wait for a load succeeded.
    async fn check_loaded(
        &self,
        loaded: Result<Result<(), watch::error::RecvError>, tokio::time::error::Elapsed>,
        what: &str,
    ) {
        match loaded {
            Ok(Ok(())) => {}
            Ok(Err(_)) => self.fail(what, CallError::Closed),
            Err(_) => {
                let state = match self
                    .evaluate("document.readyState", Duration::from_secs(2))
                    .await
                {
                    Ok(object) => value_of(object).to_string(),
                    Err(e) => format!("unknown ({e})"),
                };
                self.fail(
                    what,
                    format!("no load event within {LOAD_TIMEOUT:?} (document.readyState: {state})"),
                );
            }
        }
    }

    /// Evaluates `js` in the page (awaiting a promise) and returns its value as JSON
    /// (`null` for `undefined`). A JS exception panics with its description.
    pub async fn eval(&self, js: &str) -> Value {
        match self.evaluate(js, COMMAND_TIMEOUT).await {
            Ok(object) => value_of(object),
            Err(e) => self.fail(&format!("eval `{}`", shorten(js, 300)), e),
        }
    }

    /// Evaluates `js` every 50 ms until its value is truthy (not `null`, `undefined`,
    /// `false`, `0`, `NaN` or `""`) and returns it. An exception counts as "not yet",
    /// except a `SyntaxError`, which fails at once. On timeout, panics showing the
    /// expression, the last value and the start of the page's text.
    pub async fn wait_for(&self, js: &str, timeout: Duration) -> Value {
        let what = format!("wait_for `{}`", shorten(js, 300));
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let attempt = (left + Duration::from_secs(1)).min(COMMAND_TIMEOUT);
            let last = match self.evaluate(js, attempt).await {
                Ok(object) if truthy(&object) => return value_of(object),
                Ok(object) if object["type"] == "undefined" => "undefined".to_owned(),
                Ok(object) => value_of(object).to_string(),
                Err(e @ EvalError::Thrown { syntax: true, .. })
                | Err(e @ EvalError::Call(CallError::Closed)) => self.fail(&what, e),
                Err(e) => format!("({e})"),
            };
            if Instant::now() >= deadline {
                let text = self.body_text().await;
                self.fail(
                    &what,
                    format!(
                        "still not truthy after {timeout:?}; last value: {}\n  page text:\n{text}",
                        shorten(&last, 500)
                    ),
                );
            }
            tokio::time::sleep(POLL_EVERY.min(left)).await;
        }
    }

    /// Waits (5 s) until the element is there, enabled, visible and not covered, scrolls
    /// it into view and clicks its center with real mouse events.
    pub async fn click(&self, selector: &str) {
        // A panel still loading moves what is below it: click only once the element
        // has stayed put for a moment, as Playwright's "stable" check does.
        let mut point = self.probe_element(selector, "click", CLICK_PROBE).await;
        for _ in 0..STABLE_TRIES {
            tokio::time::sleep(STABLE_FOR).await;
            let again = self.probe_element(selector, "click", CLICK_PROBE).await;
            if again == point {
                break;
            }
            point = again;
        }
        let (Some(x), Some(y)) = (point["x"].as_f64(), point["y"].as_f64()) else {
            self.fail(
                &format!("click {selector}"),
                format!("bad probe result {point}"),
            );
        };
        for (kind, button, buttons) in [
            ("mouseMoved", "none", 0),
            ("mousePressed", "left", 1),
            ("mouseReleased", "left", 0),
        ] {
            self.cmd(
                "Input.dispatchMouseEvent",
                json!({
                    "type": kind,
                    "x": x,
                    "y": y,
                    "button": button,
                    "buttons": buttons,
                    "clickCount": 1,
                }),
            )
            .await;
        }
    }

    /// Waits (5 s) for a text field (input, textarea or contenteditable), focuses it,
    /// selects its text and replaces it with `text` as typing would (`input` events
    /// fire). An empty `text` deletes the old text with the Delete key.
    pub async fn fill(&self, selector: &str, text: &str) {
        self.probe_element(selector, "fill", FILL_PROBE).await;
        if text.is_empty() {
            self.press("Delete").await;
        } else {
            self.cmd("Input.insertText", json!({ "text": text })).await;
        }
    }

    /// Presses and releases a named key in the focused element: `Enter`, `Escape`,
    /// `Tab`, `Backspace`, `Delete`, `ArrowLeft`/`Up`/`Right`/`Down`, `Home`, `End`,
    /// `PageUp`, `PageDown`.
    pub async fn press(&self, key: &str) {
        let Some(&(key, code, vk, text)) = KEYS.iter().find(|(name, ..)| *name == key) else {
            let known: Vec<&str> = KEYS.iter().map(|(name, ..)| *name).collect();
            panic!(
                "press: unknown key {key:?}; known keys: {}",
                known.join(", ")
            );
        };
        let mut down = json!({
            "type": if text.is_some() { "keyDown" } else { "rawKeyDown" },
            "key": key,
            "code": code,
            "windowsVirtualKeyCode": vk,
            "nativeVirtualKeyCode": vk,
        });
        if let Some(text) = text {
            down["text"] = Value::from(text);
            down["unmodifiedText"] = Value::from(text);
        }
        self.cmd("Input.dispatchKeyEvent", down).await;
        self.cmd(
            "Input.dispatchKeyEvent",
            json!({
                "type": "keyUp",
                "key": key,
                "code": code,
                "windowsVirtualKeyCode": vk,
                "nativeVirtualKeyCode": vk,
            }),
        )
        .await;
    }

    /// The `innerText` of the first element matching `selector` (`""` when none does).
    pub async fn text(&self, selector: &str) -> String {
        let js = format!(
            "(() => {{ const el = document.querySelector({}); return el ? el.innerText : ''; }})()",
            js_string(selector)
        );
        match self.eval(&js).await {
            Value::String(s) => s,
            other => self.fail(&format!("text {selector}"), format!("got {other}")),
        }
    }

    /// How many elements match `selector`.
    pub async fn count(&self, selector: &str) -> usize {
        let js = format!("document.querySelectorAll({}).length", js_string(selector));
        let n = self.eval(&js).await;
        n.as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or_else(|| self.fail(&format!("count {selector}"), format!("got {n}")))
    }

    /// Saves a PNG of the viewport to `path`, creating its parent directories.
    pub async fn screenshot(&self, path: &Path) {
        let what = format!("screenshot to {}", path.display());
        let reply = self
            .cmd("Page.captureScreenshot", json!({ "format": "png" }))
            .await;
        let Some(data) = reply["data"].as_str() else {
            self.fail(&what, "the reply has no data");
        };
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap_or_else(|e| self.fail(&what, format!("bad base64: {e}")));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .unwrap_or_else(|e| self.fail(&what, format!("create {}: {e}", dir.display())));
        }
        std::fs::write(path, png).unwrap_or_else(|e| self.fail(&what, e));
    }

    /// JS exceptions nobody caught, `console.error`/`console.assert` messages and
    /// browser log errors (a failed resource load, ...) seen so far, oldest first.
    pub fn errors(&self) -> Vec<String> {
        lock(&self.state.errors).clone()
    }

    /// How many `alert`/`confirm`/`prompt` dialogs the page opened so far. Each was
    /// dismissed at once (`confirm` returned `false`).
    pub fn dialogs_opened(&self) -> usize {
        self.state.dialogs.load(Ordering::SeqCst)
    }

    /// A command in this tab's session; panics on failure.
    async fn cmd(&self, method: &str, params: Value) -> Value {
        match self
            .conn
            .call(Some(&self.session), method, params, COMMAND_TIMEOUT)
            .await
        {
            Ok(result) => result,
            Err(e) => self.fail(method, e),
        }
    }

    /// `Runtime.evaluate` of `js`: the result's remote object, or why there is none.
    async fn evaluate(&self, js: &str, timeout: Duration) -> Result<Value, EvalError> {
        let params = json!({ "expression": js, "awaitPromise": true, "returnByValue": true });
        let mut reply = self
            .conn
            .call(Some(&self.session), "Runtime.evaluate", params, timeout)
            .await
            .map_err(EvalError::Call)?;
        if let Some(details) = reply.get("exceptionDetails") {
            let exception = &details["exception"];
            let syntax = exception["className"] == "SyntaxError"
                || exception["description"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("SyntaxError"));
            return Err(EvalError::Thrown {
                text: exception_text(details),
                syntax,
            });
        }
        Ok(reply.get_mut("result").map(Value::take).unwrap_or_default())
    }

    /// Polls (5 s) the element `selector` with `probe`, a JS function of the element that
    /// returns an object when the element is ready, a string saying why it is not yet, or
    /// `{fatal: why}` when it never will be; returns the ready object.
    async fn probe_element(&self, selector: &str, action: &str, probe: &str) -> Value {
        let what = format!("{action} {selector}");
        let js = format!(
            "(() => {{ const el = document.querySelector({}); \
             if (!el) return 'no element matches'; return ({probe})(el); }})()",
            js_string(selector)
        );
        let deadline = Instant::now() + ELEMENT_TIMEOUT;
        loop {
            let last = match self.evaluate(&js, COMMAND_TIMEOUT).await {
                Ok(object) => match value_of(object) {
                    Value::String(why) => why,
                    Value::Object(ready) => {
                        if let Some(why) = ready.get("fatal") {
                            self.fail(&what, why.as_str().unwrap_or_default());
                        }
                        return Value::Object(ready);
                    }
                    other => self.fail(&what, format!("bad probe result {other}")),
                },
                // Probes are our code: an exception means a bad selector.
                Err(e @ (EvalError::Thrown { .. } | EvalError::Call(CallError::Closed))) => {
                    self.fail(&what, e)
                }
                // The document is being replaced; try again.
                Err(e) => e.to_string(),
            };
            if Instant::now() >= deadline {
                self.fail(&what, format!("after {ELEMENT_TIMEOUT:?}: {last}"));
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// The start of the page's visible text, for failure messages.
    async fn body_text(&self) -> String {
        let js = "document.body ? document.body.innerText : '(no body)'";
        match self.evaluate(js, Duration::from_secs(5)).await {
            Ok(object) => match value_of(object) {
                Value::String(text) => shorten(&text, BODY_TEXT_SHOWN),
                other => other.to_string(),
            },
            Err(e) => format!("(unavailable: {e})"),
        }
    }

    /// Panics: `what` failed on this page, because of `detail`; lists the page's JS
    /// errors so far.
    fn fail(&self, what: &str, detail: impl fmt::Display) -> ! {
        let url = shorten(&lock(&self.state.url), 300);
        let mut message = format!("browser: {what} failed on {url}: {detail}");
        let errors = self.errors();
        if !errors.is_empty() {
            message.push_str("\n  JS errors on the page so far:");
            for error in &errors {
                message.push_str(&format!("\n    - {}", shorten(error, 500)));
            }
        }
        panic!("{message}");
    }
}

/// A `data:text/html` URL of `html`, for tests that need a page without a server.
pub fn html_data_url(html: &str) -> String {
    let mut url = String::from("data:text/html;charset=utf-8,");
    for byte in html.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            url.push(char::from(byte));
        } else {
            url.push_str(&format!("%{byte:02X}"));
        }
    }
    url
}

// ---------------------------------------------------------------------------------------
// Tests of the client itself
// ---------------------------------------------------------------------------------------

/// Waits up to 5 s for `page.errors()` to satisfy `done`.
async fn errors_until(page: &Page, done: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let errors = page.errors();
        if done(&errors) || Instant::now() >= deadline {
            return errors;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

#[tokio::test]
async fn launches_and_evaluates() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let page = browser.new_page().await;
    page.goto(&html_data_url(
        r#"<!doctype html><title>start</title>
        <button id="b" onclick="document.title = 'clicked'">Go</button>
        <input id="name" value="old" oninput="window.inputs = (window.inputs || 0) + 1">
        <form id="f" onsubmit="event.preventDefault(); window.submitted = this.q.value">
          <input id="q" name="q"><button id="send">Send</button>
        </form>
        <ul><li>a</li><li>b</li><li>c</li></ul>
        <p id="greeting">Hello, <b>world</b> #1 &amp; 100%</p>
        <script>
          window.keys = [];
          document.addEventListener('keydown', (e) => window.keys.push(e.key));
        </script>"#,
    ))
    .await;
    assert_eq!(page.eval("document.title").await, "start");
    assert_eq!(page.eval("1 + 1").await, 2);
    assert_eq!(page.eval("undefined").await, Value::Null);
    assert_eq!(
        page.eval("new Promise((r) => setTimeout(() => r({ n: 42 }), 20))")
            .await,
        json!({ "n": 42 })
    );

    page.click("#b").await;
    assert_eq!(page.eval("document.title").await, "clicked");

    page.fill("#name", "Ada Lovelace").await;
    assert_eq!(
        page.eval("document.querySelector('#name').value").await,
        "Ada Lovelace"
    );
    assert!(page.eval("window.inputs").await.as_u64() > Some(0));
    page.fill("#name", "Grace").await;
    assert_eq!(
        page.eval("document.querySelector('#name').value").await,
        "Grace"
    );
    page.fill("#name", "").await;
    assert_eq!(page.eval("document.querySelector('#name').value").await, "");

    page.fill("#q", "hello").await;
    page.press("Enter").await;
    assert_eq!(
        page.wait_for("window.submitted", Duration::from_secs(5))
            .await,
        "hello"
    );
    page.press("Tab").await;
    assert_eq!(page.eval("document.activeElement.id").await, "send");
    for key in ["Escape", "ArrowDown", "ArrowUp"] {
        page.press(key).await;
    }
    let keys = page.eval("window.keys").await;
    for key in ["Enter", "Tab", "Escape", "ArrowDown", "ArrowUp"] {
        assert!(
            keys.as_array().is_some_and(|k| k.iter().any(|k| k == key)),
            "{key} in {keys}"
        );
    }

    assert_eq!(page.text("#greeting").await, "Hello, world #1 & 100%");
    assert_eq!(page.text("#missing").await, "");
    assert_eq!(page.count("li").await, 3);
    assert_eq!(page.count(".nothing").await, 0);

    let thrown = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
        page.eval("throw new Error('kaboom')"),
    ))
    .await
    .expect_err("a JS exception panics");
    let message = thrown.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("kaboom") && message.contains("data:text/html"),
        "{message}"
    );

    page.reload().await;
    assert_eq!(page.eval("document.title").await, "start");
    assert!(page.errors().is_empty(), "{:?}", page.errors());
}

#[tokio::test]
async fn collects_errors_and_dialogs() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let page = browser.new_page().await;
    page.goto(&html_data_url(
        r#"<!doctype html><p>errors</p><script>
          setTimeout(() => { throw new Error('boom from a timer'); }, 0);
          console.error('console says', 42);
          alert(1);
        </script>"#,
    ))
    .await;
    let errors = errors_until(&page, |e| e.len() >= 2).await;
    assert!(
        errors.iter().any(|e| e.contains("boom from a timer")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("console says 42")),
        "{errors:?}"
    );
    assert_eq!(page.dialogs_opened(), 1);

    assert_eq!(
        page.eval("document.querySelector('p').textContent").await,
        "errors"
    );
    assert_eq!(page.eval("confirm('sure?')").await, false);
    assert_eq!(page.dialogs_opened(), 2);
    page.click("p").await;
    assert_eq!(page.count("p").await, 1);
}

#[tokio::test]
async fn screenshot_writes_a_png() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let page = browser.new_page().await;
    page.goto(&html_data_url(
        r#"<!doctype html><body style="background: linear-gradient(90deg, #123, #fc0)">
        <h1 style="color: white">Kommutator</h1></body>"#,
    ))
    .await;
    let dir = fresh_profile_dir();
    let path = dir.join("nested").join("shot.png");
    page.screenshot(&path).await;
    let png = std::fs::read(&path).expect("the screenshot file exists");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG: {:?}",
        &png[..png.len().min(16)]
    );
    assert!(png.len() > 1000, "only {} bytes", png.len());
    let width = u32::from_be_bytes([png[16], png[17], png[18], png[19]]);
    let height = u32::from_be_bytes([png[20], png[21], png[22], png[23]]);
    assert_eq!((width, height), VIEWPORT, "the screenshot is the viewport");
}
