//! A measurement of the operator console at scale, in a real headless Chromium: how fast
//! a customer's message shows up, how a list of 500 open dialogs loads and scrolls, what a
//! dialog of 10,000 messages costs, and how many bytes the console is. It is not a test of
//! speed: it prints a table and one `BENCH_JSON {...}` line and asserts only correctness
//! (every message painted, every dialog listed), never a timing.
//!
//! Run it by hand, on a release build of the test binary (building it takes minutes):
//!
//! ```sh
//! cargo test --release --test api console_bench -- --ignored --nocapture
//! ```
//!
//! It runs on SQLite, or on PostgreSQL when `KOMMUTATOR_TEST_DATABASE_URL` is set, like
//! every API test; without Chromium it prints `SKIPPED` and measures nothing. Each part
//! starts its own hub (an `api` channel `site` routed to "Sales"):
//!
//! 1. **Live paint.** The operator has one dialog open; the test posts 1,000 inbound
//!    messages into its thread through `POST /api/v1/connectors/site/events`, one at a
//!    time at 20 per second, noting the wall clock just before each POST. In the page, a
//!    `MutationObserver` notes each added `li.msg` with the time taken in the
//!    `requestAnimationFrame` callback after the mutation (the start of the frame that
//!    paints it). Latency = that time − the time before the POST. The clocks are the same
//!    machine's: the offset between `performance.timeOrigin + performance.now()` and the
//!    test's wall clock is measured and printed. The console's socket is watched too (a
//!    subclass of `WebSocket` installed before sign-in), which splits the latency into
//!    POST → event frame received and frame → painted.
//! 2. **500 open dialogs.** 500 threads (one message each) are preloaded through the batch
//!    endpoint while the operator, whose capacity is raised to 500, is online on a plain
//!    socket, so routing gives her all of them; then she signs in in the browser. Measured:
//!    sign-in submit → list rendered, and a cold load of `/` (navigation start → the first
//!    `.dialog-item` with the tab counts Mine 500 / Queue 0). Then the list is scrolled from
//!    top to bottom, `scrollTop += 300` px every frame: frame times from `requestAnimationFrame`
//!    deltas, long tasks (`PerformanceObserver`, `longtask`, buffered), the most
//!    `.dialog-item` elements in the DOM at once (the windowing), frames whose visible rows
//!    were not rendered, the party-name requests the rows made and the whole-list renders
//!    they caused; then once more, with every name already known.
//! 3. **A dialog of 10,000 messages.** Preloaded in batches of 500 into one thread (queued:
//!    no operator is online); an admin opens it from the Queue tab. Measured: click → the
//!    newest message painted, long tasks meanwhile, `li.msg` in the DOM, requests made. Then,
//!    while it is open, 50 more messages at 10 per second, their paint latency, and frame
//!    times while the message list is scrolled up (150 px a frame) with `#show-earlier`
//!    clicked three times (each click's handler time too). Last, the dialog is opened again
//!    in a new tab, to see whether the newest message is there.
//! 4. **Asset size.** A fresh Chromium profile loads `/`; every `/assets/...` file it loaded
//!    (from `performance.getEntriesByType`) and `/` itself are fetched again by the test,
//!    with `Accept-Encoding: gzip, br`, to see what the hub sends. No gzip crate is a
//!    dependency, so the gzip sizes are computed in the page with `CompressionStream`, for
//!    reference only: the hub serves these files uncompressed.
//!
//! The machine's load average is printed with the results: on a busy 2-core machine p99 and
//! max include scheduling noise (Chromium, the hub and the test share the cores).

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kommutator::domain::{Role, Scope};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::browser::{Browser, Page};
use crate::helpers::*;
use crate::ws_client::*;

/// Messages posted into the open dialog in part 1, and how many per second.
const LIVE_MESSAGES: usize = 1000;
const LIVE_PER_SEC: u64 = 20;
/// Open dialogs in part 2, and the list's scroll step per frame.
const LIST_DIALOGS: usize = 500;
const SCROLL_STEP_PX: u32 = 300;
/// Messages preloaded into the big dialog in part 3; then live ones, and their rate.
const BIG_MESSAGES: usize = 10_000;
const BIG_LIVE: usize = 50;
const BIG_LIVE_PER_SEC: u64 = 10;
/// Times `#show-earlier` is clicked in part 3, and the message list's scroll step.
const EARLIER_CLICKS: u32 = 3;
const MESSAGES_SCROLL_STEP_PX: u32 = 150;
/// The batch endpoint takes at most this many events (`MAX_BATCH` in `realtime.rs`).
const BATCH: usize = 500;

/// How long the console may take for an ordinary step (sign-in, a list, one message).
const WAIT: Duration = Duration::from_secs(15);
/// How long the last messages of a run may take to be painted, or a big dialog to open.
const SLOW_WAIT: Duration = Duration::from_secs(90);
/// Pause between two polls of the page.
const POLL: Duration = Duration::from_millis(50);

/// Instruments a console page (once per document). Everything it notes goes to
/// `window.__kb`:
///
/// - `longtasks`: `[startTime, duration]` of every long task (buffered: from page start);
/// - `clicks`, `submits`: `event.timeStamp` of every click and form submission (capture);
/// - `frames`: `[epoch ms, raw JSON]` of every `message` event frame the console's socket
///   received (only for sockets opened after this ran: install it before signing in);
/// - `paints` (after `watchPaints()`): `[text, epoch ms]` for each `li.msg` added under
///   `#app`, the time taken in the animation frame after the mutation; `targetAt`: that
///   time for the first one whose text is `target`;
/// - `whenList(mine, queue, ms)`: a promise of `{already, t}` (ms since navigation start,
///   in the frame after) once a `.dialog-item` is listed and the Mine and Queue tabs count
///   `mine` and `queue`, or `null` after `ms`.
const KIT: &str = r#"(() => {
  if (window.__kb) return 'present';
  const kb = { longtasks: [], clicks: [], submits: [], frames: [], paints: [], target: null };
  window.__kb = kb;
  kb.epoch = () => performance.timeOrigin + performance.now();
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) kb.longtasks.push([e.startTime, e.duration]);
    }).observe({ type: 'longtask', buffered: true });
    kb.longtaskSupported = PerformanceObserver.supportedEntryTypes.includes('longtask');
  } catch (_) {
    kb.longtaskSupported = false;
  }
  document.addEventListener('click', (e) => kb.clicks.push(e.timeStamp), true);
  document.addEventListener('submit', (e) => kb.submits.push(e.timeStamp), true);
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (ev) => {
        if (typeof ev.data === 'string' && ev.data.includes('"entity":"message"')) {
          kb.frames.push([kb.epoch(), ev.data]);
        }
      });
    }
  };
  kb.watchPaints = () => {
    if (kb.watching) return;
    kb.watching = true;
    new MutationObserver((records) => {
      const texts = [];
      for (const r of records) {
        for (const n of r.addedNodes) {
          if (n.nodeType !== 1) continue;
          const lis = n.matches('li.msg') ? [n] : n.querySelectorAll('li.msg');
          for (const li of lis) {
            if (li.classList.contains('pending')) continue;
            const body = li.querySelector('.body');
            texts.push(body ? body.textContent : '');
          }
        }
      }
      if (!texts.length) return;
      requestAnimationFrame(() => {
        const t = kb.epoch();
        for (const x of texts) {
          kb.paints.push([x, t]);
          if (x === kb.target && kb.targetAt === undefined) kb.targetAt = t;
        }
      });
    }).observe(document.getElementById('app'), { childList: true, subtree: true });
  };
  kb.listReady = (mine, queue) => {
    const count = (tab) => {
      const el = document.querySelector(`#tab-${tab} .count`);
      return el ? el.textContent : null;
    };
    return !!document.querySelector('#dialog-list .dialog-item')
      && count('mine') === String(mine) && count('queue') === String(queue);
  };
  kb.whenList = (mine, queue, ms) => new Promise((resolve) => {
    if (kb.listReady(mine, queue)) {
      resolve({ already: true, t: performance.now() });
      return;
    }
    const mo = new MutationObserver(() => {
      if (!kb.listReady(mine, queue)) return;
      mo.disconnect();
      clearTimeout(timer);
      requestAnimationFrame(() => resolve({ already: false, t: performance.now() }));
    });
    mo.observe(document.body, { childList: true, subtree: true, characterData: true });
    const timer = setTimeout(() => { mo.disconnect(); resolve(null); }, ms);
  });
  return 'installed';
})()"#;

/// Scrolls `#dialog-list` from the top to the bottom, `STEP` px every frame; resolves with
/// the frame deltas, the most `.dialog-item` elements at once, the frames whose visible
/// part was not covered by rendered rows, where it ended, and how many times the whole
/// list was rendered again meanwhile (`renderList` replaces the tab buttons each time;
/// scrolling alone only re-renders the window of rows).
const SCROLL_LIST: &str = r#"new Promise((resolve) => {
  const el = document.getElementById('dialog-list');
  const first = el.querySelector('.dialog-item');
  const r = { frames: [], maxItems: 0, blank: 0, steps: 0, rowPx: first ? first.offsetHeight : 0, listRenders: 0 };
  const tabs = new MutationObserver((records) => {
    for (const m of records) if (m.removedNodes.length) r.listRenders += 1;
  });
  tabs.observe(document.querySelector('.tabs'), { childList: true });
  let last = null;
  let atEnd = 0;
  const step = (ts) => {
    if (last !== null) r.frames.push(ts - last);
    last = ts;
    const items = el.querySelectorAll('.dialog-item');
    r.maxItems = Math.max(r.maxItems, items.length);
    const head = el.firstElementChild;
    const above = head && head.classList.contains('spacer-row') ? (parseFloat(head.style.height) || 0) : 0;
    const top = el.scrollTop;
    const bottom = Math.min(top + el.clientHeight, el.scrollHeight);
    if (above > top + 0.5 || above + items.length * r.rowPx < bottom - 0.5) r.blank += 1;
    if (top + el.clientHeight >= el.scrollHeight - 1) {
      atEnd += 1;
      if (atEnd >= 3) {
        r.t1 = performance.now();
        r.lastIndex = r.rowPx ? Math.round(above / r.rowPx) + items.length - 1 : -1;
        r.scrollHeight = el.scrollHeight;
        r.clientHeight = el.clientHeight;
        tabs.disconnect();
        resolve(r);
        return;
      }
    } else {
      el.scrollTop = top + STEP;
      r.steps += 1;
    }
    requestAnimationFrame(step);
  };
  // From the top, once the console has rendered the rows there (a jump back from the
  // bottom is rendered in the frame after its scroll event).
  el.scrollTop = 0;
  requestAnimationFrame(() => requestAnimationFrame(() => requestAnimationFrame((ts) => {
    r.t0 = performance.now();
    step(ts);
  })));
})"#;

/// Starts (and returns at once) a scroll of `#messages` upwards, `STEP` px every frame,
/// clicking `#show-earlier` each time the top is reached, `CLICKS` times; then it scrolls to
/// the top once more and stops (or after 30 s). Results in `window.__kb.scroll`.
const SCROLL_MESSAGES: &str = r#"(() => {
  const kb = window.__kb;
  const r = kb.scroll = { frames: [], clickMs: [], done: false, t0: performance.now() };
  let last = null;
  let topFrames = 0;
  const step = (ts) => {
    if (last !== null) r.frames.push(ts - last);
    last = ts;
    const el = document.getElementById('messages');
    if (el.scrollTop <= 0) {
      const more = document.getElementById('show-earlier');
      if (r.clickMs.length < CLICKS && more) {
        const a = performance.now();
        more.click();
        r.clickMs.push(performance.now() - a);
        topFrames = 0;
      } else {
        topFrames += 1;
      }
    }
    const timedOut = performance.now() - r.t0 > 30000;
    if (topFrames >= 5 || timedOut) {
      r.t1 = performance.now();
      r.timedOut = timedOut;
      r.li = document.querySelectorAll('#messages li.msg').length;
      r.done = true;
      return;
    }
    el.scrollTop -= STEP;
    requestAnimationFrame(step);
  };
  requestAnimationFrame(step);
  return true;
})()"#;

/// The texts and arrival times (epoch ms) of the `message` `create` event frames whose text
/// starts with `PREFIX`.
const FRAMES_OF: &str = r#"window.__kb.frames.map(([t, raw]) => {
  let f = null;
  try { f = JSON.parse(raw); } catch (_) { return null; }
  const body = f && f.data && f.data.body;
  return f && f.op === 'create' && typeof body === 'string' && body.startsWith(PREFIX) ? [body, t] : null;
}).filter((x) => x !== null)"#;

/// Sizes of the document and of every `/assets/` file the page loaded, from the resource
/// timing entries, with the gzip size of each computed here by `CompressionStream`.
const ASSET_ENTRIES: &str = r#"(async () => {
  const nav = performance.getEntriesByType('navigation')[0];
  const res = performance.getEntriesByType('resource')
    .filter((e) => new URL(e.name).pathname.startsWith('/assets/'));
  const rows = [nav, ...res].map((e) => ({
    url: e.name, kind: e.initiatorType || 'navigation',
    transfer: e.transferSize, encoded: e.encodedBodySize, decoded: e.decodedBodySize,
  }));
  for (const r of rows) {
    const buf = await (await fetch(r.url, { cache: 'no-store' })).arrayBuffer();
    const gz = new Blob([buf]).stream().pipeThrough(new CompressionStream('gzip'));
    r.gzip = (await new Response(gz).arrayBuffer()).byteLength;
  }
  return rows;
})()"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand: see docs/benchmarks.md"]
async fn console_at_scale() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let mut report = Report::default();
    let load_before = load_average();
    let started = Instant::now();

    let live = live_paint(&browser, &mut report).await;
    let list = open_dialogs(&browser, &mut report).await;
    let big = big_dialog(&browser, &mut report).await;
    drop(browser);
    let assets = asset_sizes(&mut report).await;

    let load_after = load_average();
    let machine = json!({
        "cores": std::thread::available_parallelism().map_or(0, usize::from),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "backend": backend_name(),
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
        "user_agent": report.user_agent,
        "wall_s": round(started.elapsed().as_secs_f64()),
    });
    println!();
    println!(
        "console bench: {} cores, {} build, {}; load average before {load_before}, after {load_after}; {:.0} s",
        machine["cores"],
        machine["build"].as_str().unwrap_or_default(),
        backend_name(),
        started.elapsed().as_secs_f64()
    );
    println!("{}", report.user_agent);
    report.print();
    let doc = json!({
        "bench": "console",
        "machine": machine,
        "live_paint": live,
        "open_dialogs": list,
        "big_dialog": big,
        "assets": assets,
        "findings": report.findings,
        "problems": report.problems,
    });
    println!("BENCH_JSON {doc}");
    for finding in &report.findings {
        println!("FINDING: {finding}");
    }
    // Correctness only: a measurement of something that did not happen is no measurement.
    assert!(
        report.problems.is_empty(),
        "the console did not do what was measured:\n  {}",
        report.problems.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------
// 1. Inbound event → message painted
// ---------------------------------------------------------------------------------------

async fn live_paint(browser: &Browser, report: &mut Report) -> Value {
    const SECTION: &str = "1 live paint";
    let app = spawn_app_with(with_api_channel("Sales", None)).await;
    let sales = app.department("Sales").await;
    let key = app.api_key(&[Scope::DialogsWrite]).await;
    app.user("anna", Role::Operator, Some(sales)).await;
    let page = browser.new_page().await;
    sign_in(&page, &app.base, "anna").await;
    report.user_agent = page
        .eval("navigator.userAgent")
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned();

    // The dialog, with its first message; Anna is online, so it is hers.
    let thread = "t-live";
    let from = phone(9001);
    let (status, out) = ingest(&app, &key, &message("live-open", thread, &from, "Hello")).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let dialog = out["dialog"]["id"].as_i64().expect("dialog id");
    page.click(&format!(".dialog-item[data-id=\"{dialog}\"]"))
        .await;
    page.wait_for(
        "document.querySelectorAll('#messages li.msg').length === 1",
        WAIT,
    )
    .await;
    // Let the client panel and the name requests settle before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;
    page.eval("window.__kb.watchPaints()").await;
    let clock = clock_offset(&page).await;
    let from_perf = perf_now(&page).await;

    let mut sent = HashMap::with_capacity(LIVE_MESSAGES);
    let mut post_ms = Vec::with_capacity(LIVE_MESSAGES);
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / LIVE_PER_SEC));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let posting = Instant::now();
    for i in 0..LIVE_MESSAGES {
        tick.tick().await;
        let text = format!("bench {i}");
        let ev = message(&format!("live-{i}"), thread, &from, &text);
        let at = epoch_ms();
        let (status, out) = ingest(&app, &key, &ev).await;
        post_ms.push(epoch_ms() - at);
        assert_eq!(status, StatusCode::OK, "{out}");
        assert_eq!(out["status"], "stored", "{out}");
        sent.insert(text, at);
    }
    let rate = LIVE_MESSAGES as f64 / posting.elapsed().as_secs_f64();
    let all_painted = format!(
        "new Set(window.__kb.paints.filter((p) => p[0].startsWith('bench ')).map((p) => p[0])).size >= {LIVE_MESSAGES}"
    );
    let complete = poll(&page, &all_painted, SLOW_WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let to_perf = perf_now(&page).await;

    let paints = page
        .eval("window.__kb.paints.filter((p) => p[0].startsWith('bench '))")
        .await;
    let frames = page.eval(&FRAMES_OF.replace("PREFIX", "'bench '")).await;
    let painted = times_by_text(&paints);
    let received = times_by_text(&frames);
    let mut latency = Vec::new();
    let mut to_frame = Vec::new();
    let mut frame_to_paint = Vec::new();
    let mut missing = Vec::new();
    let mut repeated = Vec::new();
    for i in 0..LIVE_MESSAGES {
        let text = format!("bench {i}");
        let at = sent[&text];
        match painted.get(&text).map(Vec::as_slice) {
            None | Some([]) => missing.push(text.clone()),
            Some(times) => {
                if times.len() > 1 {
                    repeated.push(format!("{text} ×{}", times.len()));
                }
                latency.push(times[0] - at);
                if let Some(&frame) = received.get(&text).and_then(|t| t.first()) {
                    to_frame.push(frame - at);
                    frame_to_paint.push(times[0] - frame);
                }
            }
        }
    }
    let latency = Stats::of(&latency);
    let to_frame = Stats::of(&to_frame);
    let frame_to_paint = Stats::of(&frame_to_paint);
    let post = Stats::of(&post_ms);
    let tasks = long_tasks(&page, from_perf, to_perf).await;
    let dom = page.count("#messages li.msg").await;
    let errors = unexpected_errors(&page);

    if !complete || !missing.is_empty() {
        report.problem(format!(
            "live paint: {} of {LIVE_MESSAGES} messages never painted (first: {:?})",
            missing.len(),
            missing.iter().take(5).collect::<Vec<_>>()
        ));
    }
    if !repeated.is_empty() {
        report.problem(format!(
            "live paint: {} messages painted more than once (first: {:?})",
            repeated.len(),
            repeated.iter().take(5).collect::<Vec<_>>()
        ));
    }
    if !errors.is_empty() {
        report.finding(format!("live paint: JS errors on the page: {errors:?}"));
    }

    let r = report.section(SECTION);
    r.row(
        "messages posted / painted / painted twice or more",
        format!("{LIVE_MESSAGES} / {} / {}", latency.n, repeated.len()),
    );
    r.row("posting rate (msg/s)", format!("{rate:.1}"));
    r.row("POST → painted (ms)", latency.line());
    r.row("POST → event frame received (ms)", to_frame.line());
    r.row("event frame → painted (ms)", frame_to_paint.line());
    r.row("POST round trip (ms)", post.line());
    r.row("long tasks during the run", tasks.line());
    r.row("li.msg in the DOM at the end", dom.to_string());
    r.row(
        "clock offset browser − test (ms)",
        format!("{:+.2} ± {:.2}", clock.0, clock.1),
    );
    json!({
        "messages": LIVE_MESSAGES,
        "rate_per_s": round(rate),
        "painted": latency.n,
        "missing": missing.len(),
        "painted_more_than_once": repeated.len(),
        "latency_ms": latency.json(),
        "post_to_frame_ms": to_frame.json(),
        "frame_to_paint_ms": frame_to_paint.json(),
        "post_round_trip_ms": post.json(),
        "long_tasks": tasks.json(),
        "dom_li_msg": dom,
        "clock_offset_ms": round(clock.0),
        "clock_uncertainty_ms": round(clock.1),
        "js_errors": errors.len(),
    })
}

// ---------------------------------------------------------------------------------------
// 2. 500 open dialogs
// ---------------------------------------------------------------------------------------

async fn open_dialogs(browser: &Browser, report: &mut Report) -> Value {
    const SECTION: &str = "2 500 dialogs";
    let app = spawn_app_with(with_api_channel("Sales", None)).await;
    let sales = app.department("Sales").await;
    let key = app.api_key(&[Scope::DialogsWrite]).await;
    let anna = app.user("anna", Role::Operator, Some(sales)).await;
    let (status, body) = app
        .request(
            Method::PUT,
            Some(&app.admin),
            &format!("/api/v1/users/{}/capacity", anna.id),
            Some(&json!({ "max_dialogs": LIST_DIALOGS })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Anna online on a plain socket while the inquiries come: routing gives her each one.
    let (ws, _) = Ws::operator(&app, &anna).await;
    let events: Vec<Value> = (0..LIST_DIALOGS)
        .map(|i| {
            message(
                &format!("inq-{i}"),
                &format!("t-{i}"),
                &phone(i),
                &format!("Inquiry number {i}: do you deliver?"),
            )
        })
        .collect();
    let preload = Instant::now();
    let outcomes = post_batches(&app, &key, &events).await;
    let preload_s = preload.elapsed().as_secs_f64();
    drop(ws);
    let hers = outcomes
        .iter()
        .filter(|o| o["dialog"]["assignee_id"] == anna.id)
        .count();
    let queued = LIST_DIALOGS - hers;
    if hers != LIST_DIALOGS {
        report.problem(format!(
            "500 dialogs: routing gave Anna {hers} of {LIST_DIALOGS} dialogs"
        ));
    }

    // Sign-in: from the form's submission to the list rendered with the right counts.
    let page = browser.new_page().await;
    open_login(&page, &app.base).await;
    page.eval(&format!(
        "(() => {{ window.__kb.whenList({hers}, {queued}, 60000).then((r) => {{ window.__kb.afterSignIn = r; }}); return true; }})()"
    ))
    .await;
    submit_login(&page, "anna").await;
    let signed_in = poll(&page, "window.__kb.afterSignIn !== undefined", SLOW_WAIT).await;
    let submit_to_list = page
        .eval("(() => { const r = window.__kb.afterSignIn; const s = window.__kb.submits[0]; return r && s !== undefined ? r.t - s : null; })()")
        .await
        .as_f64();

    // A cold load of `/`, signed in: navigation start → list rendered.
    page.reload().await;
    page.eval(KIT).await;
    let shown = page
        .eval(&format!("window.__kb.whenList({hers}, {queued}, 25000)"))
        .await;
    let nav_to_list = shown["t"].as_f64();
    let rendered_before_check = shown["already"] == true;
    let timing = page
        .eval(
            r#"(() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const res = performance.getEntriesByType('resource');
  const dialogs = res.filter((e) => e.name.includes('/api/v1/dialogs?'));
  const me = res.find((e) => e.name.includes('/api/v1/auth/me'));
  return {
    response_end: nav.responseEnd,
    dom_content_loaded: nav.domContentLoadedEventEnd,
    load_event: nav.loadEventEnd,
    me_end: me ? me.responseEnd : null,
    dialogs_requests: dialogs.length,
    dialogs_end: dialogs.length ? Math.max(...dialogs.map((e) => e.responseEnd)) : null,
    dialogs_bytes: dialogs.reduce((n, e) => n + e.encodedBodySize, 0),
  };
})()"#,
        )
        .await;
    if !signed_in || nav_to_list.is_none() {
        report.problem(format!(
            "500 dialogs: the list never showed Mine {hers} / Queue {queued}"
        ));
    }
    if rendered_before_check {
        report.finding(
            "500 dialogs: the list was rendered before the check was installed; nav → list is an upper bound"
                .to_owned(),
        );
    }
    let tabs = page
        .eval("[...document.querySelectorAll('.tabs .tab')].map((b) => b.id + '=' + (b.querySelector('.count')?.textContent ?? ''))")
        .await;

    // The scroll, top to bottom: first as the operator would (each row that comes into
    // view asks for its party's name), then again with every name known.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let names_before = name_requests(&page).await;
    let first = scroll_list(&page).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let names = name_requests(&page).await - names_before;
    let again = scroll_list(&page).await;
    for (pass, s) in [("first", &first), ("second", &again)] {
        if s.last_index != i64::try_from(hers).unwrap_or(0) - 1 {
            report.problem(format!(
                "500 dialogs: at the bottom of the list ({pass} pass) the last row rendered is #{}, not #{}",
                s.last_index,
                hers - 1
            ));
        }
        if s.blank > 0 {
            report.finding(format!(
                "500 dialogs: {} frames of the {pass} scroll showed blank rows (window behind the scroll)",
                s.blank
            ));
        }
    }
    if names > 0 && first.list_renders > 0 {
        report.finding(format!(
            "500 dialogs: one scroll made {names} party-name requests and {} whole-list renders \
             (frame p50 {:.1} ms, p99 {:.1} ms; {:.1} / {:.1} ms again with every name known): \
             workspace.js partyName() asks /api/v1/clients|leads/{{id}} for each row as it comes \
             into view, and each answer calls queueRender() -> renderList(), which filters and \
             sorts all {hers} dialogs four times (three tab counts and the list) and rebuilds the \
             tabs and the window of rows",
            first.list_renders,
            first.frames.p50,
            first.frames.p99,
            again.frames.p50,
            again.frames.p99
        ));
    }
    let errors = unexpected_errors(&page);
    if !errors.is_empty() {
        report.finding(format!("500 dialogs: JS errors on the page: {errors:?}"));
    }
    let at = |k: &str| timing[k].as_f64();

    let r = report.section(SECTION);
    r.row(
        "preload (batch endpoint)",
        format!("{LIST_DIALOGS} dialogs in {preload_s:.1} s, {hers} routed to the operator"),
    );
    r.row(
        "sign-in submit → list rendered (ms)",
        opt_ms(submit_to_list),
    );
    r.row(
        "cold load: navigation → list rendered (ms)",
        opt_ms(nav_to_list),
    );
    r.row(
        "  of which: document / DOMContentLoaded / load (ms)",
        format!(
            "{} / {} / {}",
            opt_ms(at("response_end")),
            opt_ms(at("dom_content_loaded")),
            opt_ms(at("load_event"))
        ),
    );
    r.row(
        "  /auth/me done / dialogs fetched (ms)",
        format!(
            "{} / {} ({} requests, {} bytes)",
            opt_ms(at("me_end")),
            opt_ms(at("dialogs_end")),
            timing["dialogs_requests"],
            timing["dialogs_bytes"]
        ),
    );
    r.row("tabs", tabs.to_string());
    r.row(
        "scroll: frames / steps of 300 px",
        format!("{} / {}", first.frames.n, first.steps),
    );
    r.row("scroll: frame time (ms)", first.frames.line());
    r.row("scroll: long tasks", first.tasks.line());
    r.row(
        "scroll: most .dialog-item in the DOM",
        format!("{} of {hers} (row {} px)", first.max_items, first.row_px),
    );
    r.row("scroll: frames with blank rows", first.blank.to_string());
    r.row(
        "scroll: party-name requests / whole-list renders",
        format!("{names} / {}", first.list_renders),
    );
    r.row(
        "scroll again, names known: frame time (ms)",
        again.frames.line(),
    );
    r.row("  long tasks", again.tasks.line());
    r.row("  whole-list renders", again.list_renders.to_string());
    json!({
        "dialogs": LIST_DIALOGS,
        "routed_to_operator": hers,
        "preload_s": round(preload_s),
        "submit_to_list_ms": submit_to_list.map(round),
        "nav_to_list_ms": nav_to_list.map(round),
        "nav_to_list_upper_bound": rendered_before_check,
        "nav_timing_ms": {
            "response_end": at("response_end").map(round),
            "dom_content_loaded": at("dom_content_loaded").map(round),
            "load_event": at("load_event").map(round),
            "auth_me_end": at("me_end").map(round),
            "dialogs_end": at("dialogs_end").map(round),
        },
        "dialogs_requests": timing["dialogs_requests"],
        "dialogs_bytes": timing["dialogs_bytes"],
        "scroll": first.json(Some(names)),
        "scroll_names_known": again.json(None),
        "js_errors": errors.len(),
    })
}

// ---------------------------------------------------------------------------------------
// 3. A dialog of 10,000 messages
// ---------------------------------------------------------------------------------------

async fn big_dialog(browser: &Browser, report: &mut Report) -> Value {
    const SECTION: &str = "3 10k messages";
    let app = spawn_app_with(with_api_channel("Sales", None)).await;
    let _sales = app.department("Sales").await;
    let key = app.api_key(&[Scope::DialogsWrite]).await;

    let thread = "t-big";
    let from = phone(9002);
    let events: Vec<Value> = (0..BIG_MESSAGES)
        .map(|i| message(&format!("big-{i}"), thread, &from, &format!("big {i}")))
        .collect();
    let preload = Instant::now();
    let outcomes = post_batches(&app, &key, &events).await;
    let preload_s = preload.elapsed().as_secs_f64();
    let dialog = outcomes[0]["dialog"]["id"].as_i64().expect("dialog id");
    let stored = outcomes
        .iter()
        .filter(|o| o["status"] == "stored" && o["dialog"]["id"] == dialog)
        .count();
    if stored != BIG_MESSAGES {
        report.problem(format!(
            "10k messages: {stored} of {BIG_MESSAGES} stored in one dialog"
        ));
    }

    // An admin opens it from the Queue tab (nobody is online to take it).
    let page = browser.new_page().await;
    sign_in(&page, &app.base, "admin").await;
    page.click("#tab-queue").await;
    let item = format!(".dialog-item[data-id=\"{dialog}\"]");
    page.wait_for(
        &format!("document.querySelector('{}')", item.replace('\'', "\\'")),
        WAIT,
    )
    .await;
    page.eval(&format!(
        "(() => {{ window.__kb.target = 'big {}'; window.__kb.watchPaints(); return true; }})()",
        BIG_MESSAGES - 1
    ))
    .await;
    let clock = clock_offset(&page).await;
    page.click(&item).await;
    let opened = poll(&page, "window.__kb.targetAt !== undefined", SLOW_WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let open = page
        .eval(&format!(
            r#"(() => {{
  const kb = window.__kb;
  const click = kb.clicks[kb.clicks.length - 1];
  const done = kb.targetAt === undefined ? null : kb.targetAt - performance.timeOrigin;
  const res = performance.getEntriesByType('resource').filter((e) => e.startTime >= click);
  const msgs = res.filter((e) => e.name.includes('/api/v1/dialogs/{dialog}/messages'));
  const feed = res.filter((e) => e.name.includes('/feed'));
  return {{
    click, done,
    li: document.querySelectorAll('#messages li.msg').length,
    last: document.querySelector('#messages li.msg:last-child .body')?.textContent ?? null,
    earlier: document.getElementById('show-earlier')?.textContent ?? null,
    messages_requests: msgs.length,
    messages_bytes: msgs.reduce((n, e) => n + e.encodedBodySize, 0),
    messages_fetch_end: msgs.length ? Math.max(...msgs.map((e) => e.responseEnd)) : null,
    feed_requests: feed.length,
  }};
}})()"#
        ))
        .await;
    let click = open["click"].as_f64().unwrap_or(0.0);
    let done = open["done"].as_f64();
    let open_ms = done.map(|d| d - click);
    let fetched_ms = open["messages_fetch_end"].as_f64().map(|e| e - click);
    let open_tasks = long_tasks(&page, click, done.unwrap_or(click)).await;
    let open_li = open["li"].as_u64().unwrap_or(0);
    if !opened {
        report.problem(format!(
            "10k messages: 'big {}' was never painted after opening the dialog (last shown: {})",
            BIG_MESSAGES - 1,
            open["last"]
        ));
    }

    // 50 more at 10/s while the list is scrolled up and earlier messages are shown.
    let from_perf = perf_now(&page).await;
    page.eval(
        &SCROLL_MESSAGES
            .replace("STEP", &MESSAGES_SCROLL_STEP_PX.to_string())
            .replace("CLICKS", &EARLIER_CLICKS.to_string()),
    )
    .await;
    let mut sent = HashMap::with_capacity(BIG_LIVE);
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / BIG_LIVE_PER_SEC));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for i in 0..BIG_LIVE {
        tick.tick().await;
        let text = format!("more {i}");
        let ev = message(&format!("more-{i}"), thread, &from, &text);
        let at = epoch_ms();
        let (status, out) = ingest(&app, &key, &ev).await;
        assert_eq!(status, StatusCode::OK, "{out}");
        sent.insert(text, at);
    }
    let live_done = format!(
        "window.__kb.scroll.done && new Set(window.__kb.paints.filter((p) => p[0].startsWith('more ')).map((p) => p[0])).size >= {BIG_LIVE}"
    );
    let complete = poll(&page, &live_done, SLOW_WAIT).await;
    let scroll = page.eval("window.__kb.scroll").await;
    let paints = page
        .eval("window.__kb.paints.filter((p) => p[0].startsWith('more '))")
        .await;
    let painted = times_by_text(&paints);
    let mut latency = Vec::new();
    let mut missing = 0;
    let mut repainted = 0;
    for (text, at) in &sent {
        match painted.get(text).map(Vec::as_slice) {
            None | Some([]) => missing += 1,
            Some(times) => {
                repainted += times.len() - 1;
                latency.push(times[0] - at);
            }
        }
    }
    let latency = Stats::of(&latency);
    let frames = Stats::of(&f64s(&scroll["frames"]));
    let clicks = f64s(&scroll["clickMs"]);
    let scroll_tasks = long_tasks(
        &page,
        scroll["t0"].as_f64().unwrap_or(from_perf),
        scroll["t1"].as_f64().unwrap_or(from_perf),
    )
    .await;
    let live_tasks = long_tasks(&page, from_perf, perf_now(&page).await).await;
    let after_li = page.count("#messages li.msg").await;
    if !complete || missing > 0 {
        report.problem(format!(
            "10k messages: {missing} of {BIG_LIVE} live messages never painted (scroll done: {})",
            scroll["done"]
        ));
    }
    if clicks.len() < EARLIER_CLICKS as usize {
        report.problem(format!(
            "10k messages: #show-earlier was clicked {} times, not {EARLIER_CLICKS}",
            clicks.len()
        ));
    }
    if let (Some(open_ms), Some(fetched_ms)) = (open_ms, fetched_ms) {
        // Opening reads the newest page only (`order=desc`); more requests mean the console
        // went back to reading the whole history first.
        if open["messages_requests"].as_i64().unwrap_or(0) > 1 {
            report.finding(format!(
                "10k messages: click -> newest painted {open_ms:.0} ms, of which {fetched_ms:.0} ms \
                 fetching {} pages one after the other ({} bytes) though {} are shown: \
                 workspace.js loadMessages() should read only the newest page",
                open["messages_requests"], open["messages_bytes"], open_li
            ));
        }
    }
    if clicks.iter().any(|&c| c > 50.0) {
        report.finding(format!(
            "10k messages: each #show-earlier click blocks the page for {:?} ms (a long task): \
             renderMessages() sorts every message of the dialog again and rebuilds all shown \
             rows (400, 600, 800, ...) instead of adding the 200 earlier ones",
            clicks.iter().map(|&c| round(c)).collect::<Vec<_>>()
        ));
    }
    let errors = unexpected_errors(&page);
    if !errors.is_empty() {
        report.finding(format!("10k messages: JS errors on the page: {errors:?}"));
    }

    // The same dialog opened again in a new tab: is the newest message there?
    let total = BIG_MESSAGES + BIG_LIVE;
    let newest = format!("more {}", BIG_LIVE - 1);
    let again = browser.new_page().await;
    again
        .goto(&format!("{}/#/dialogs/{dialog}", app.base))
        .await;
    let reopened = poll(
        &again,
        "document.querySelectorAll('#messages li.msg').length >= 200",
        SLOW_WAIT,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let last_shown = again.text("#messages li.msg:last-child .body").await;
    let earlier_label = again.text("#show-earlier").await;
    if reopened && last_shown != newest {
        report.finding(format!(
            "10k messages: opened again with {total} messages, the dialog ends at {last_shown:?}, not \
             the newest {newest:?} (the button says {earlier_label:?}): workspace.js loadMessages() \
             reads at most 10,000 messages oldest first (all(..., 10000), pages of 200), so the \
             newest ones of a longer dialog are never shown"
        ));
    }
    if !reopened {
        report.problem("10k messages: the dialog opened again showed no messages".to_owned());
    }

    let r = report.section(SECTION);
    r.row(
        "preload (batch endpoint)",
        format!(
            "{stored} messages in {preload_s:.1} s ({:.0} msg/s)",
            stored as f64 / preload_s
        ),
    );
    r.row("click → newest message painted (ms)", opt_ms(open_ms));
    r.row(
        "  of which: messages fetched (ms)",
        format!(
            "{} ({} requests, {} bytes)",
            opt_ms(fetched_ms),
            open["messages_requests"],
            open["messages_bytes"]
        ),
    );
    r.row("  long tasks", open_tasks.line());
    r.row("li.msg in the DOM after opening", open_li.to_string());
    r.row(
        "live: POST → painted (ms)",
        format!("{} (painted {} of {BIG_LIVE})", latency.line(), latency.n),
    );
    r.row("scroll up + show earlier: frame time (ms)", frames.line());
    r.row(
        "  #show-earlier handler (ms each)",
        clicks
            .iter()
            .map(|c| format!("{c:.1}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    r.row("  long tasks while scrolling", scroll_tasks.line());
    r.row("  long tasks, live part in all", live_tasks.line());
    r.row("li.msg in the DOM at the end", after_li.to_string());
    r.row(
        "opened again: last message shown",
        format!("{last_shown:?} (newest is {newest:?})"),
    );
    r.row(
        "clock offset browser − test (ms)",
        format!("{:+.2} ± {:.2}", clock.0, clock.1),
    );
    json!({
        "messages": BIG_MESSAGES,
        "stored": stored,
        "preload_s": round(preload_s),
        "open": {
            "click_to_newest_painted_ms": open_ms.map(round),
            "messages_fetched_ms": fetched_ms.map(round),
            "messages_requests": open["messages_requests"],
            "messages_bytes": open["messages_bytes"],
            "feed_requests": open["feed_requests"],
            "long_tasks": open_tasks.json(),
            "dom_li_msg": open_li,
        },
        "live": {
            "messages": BIG_LIVE,
            "rate_per_s": BIG_LIVE_PER_SEC,
            "painted": latency.n,
            "repainted": repainted,
            "latency_ms": latency.json(),
        },
        "scroll": {
            "step_px": MESSAGES_SCROLL_STEP_PX,
            "frame_ms": frames.json(),
            "show_earlier_handler_ms": clicks.iter().map(|&c| round(c)).collect::<Vec<_>>(),
            "long_tasks": scroll_tasks.json(),
            "timed_out": scroll["timedOut"],
        },
        "live_long_tasks": live_tasks.json(),
        "dom_li_msg_end": after_li,
        "reopened": {
            "total_messages": total,
            "last_shown": last_shown,
            "newest": newest,
            "earlier_label": earlier_label,
        },
        "clock_offset_ms": round(clock.0),
        "js_errors": errors.len(),
    })
}

// ---------------------------------------------------------------------------------------
// 4. Asset size
// ---------------------------------------------------------------------------------------

async fn asset_sizes(report: &mut Report) -> Value {
    const SECTION: &str = "4 assets";
    // A fresh profile: nothing cached, so the transfer sizes are a first visit's.
    let Some(browser) = Browser::launch().await else {
        return Value::Null;
    };
    let app = spawn_app().await;
    let page = browser.new_page().await;
    page.goto(&app.base).await;
    page.wait_for("document.querySelector('#login-form')", WAIT)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let entries = page.eval(ASSET_ENTRIES).await;
    let mut files = Vec::new();
    let mut rows = Vec::new();
    let (mut raw, mut gzip, mut transfer) = (0u64, 0u64, 0u64);
    let mut encodings: Vec<String> = Vec::new();
    for e in entries.as_array().map(Vec::as_slice).unwrap_or_default() {
        let url = e["url"].as_str().unwrap_or_default();
        let resp = app
            .http
            .get(url)
            .header("accept-encoding", "gzip, br")
            .send()
            .await
            .expect("fetch an asset");
        let status = resp.status();
        let encoding = resp
            .headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("identity")
            .to_owned();
        let bytes = resp.bytes().await.expect("asset body").len() as u64;
        assert_eq!(status, StatusCode::OK, "{url}");
        let path = url.trim_start_matches(app.base.as_str()).to_owned();
        let gz = e["gzip"].as_u64().unwrap_or(0);
        let sent = e["transfer"].as_u64().unwrap_or(0);
        raw += bytes;
        gzip += gz;
        transfer += sent;
        if !encodings.contains(&encoding) {
            encodings.push(encoding.clone());
        }
        rows.push((path.clone(), bytes, sent, gz));
        files.push(json!({
            "path": path, "kind": e["kind"], "bytes": bytes, "transfer": sent,
            "encoded": e["encoded"], "decoded": e["decoded"], "gzip": gz,
            "content_encoding": encoding,
        }));
    }
    let sizes = |bytes: u64, sent: u64, gz: u64| {
        format!("{bytes:>7} B raw  {sent:>7} B sent  {gz:>6} B gzip")
    };
    let r = report.section(SECTION);
    for (path, bytes, sent, gz) in &rows {
        r.row(path, sizes(*bytes, *sent, *gz));
    }
    r.row(
        &format!("total ({} files)", rows.len()),
        sizes(raw, transfer, gzip),
    );
    r.row(
        "Content-Encoding with Accept-Encoding: gzip, br",
        encodings.join(", "),
    );
    if encodings.iter().all(|e| e == "identity") {
        report.finding(format!(
            "assets: the hub serves the console uncompressed ({raw} bytes; {gzip} with gzip)"
        ));
    }
    json!({
        "files": files,
        "total_bytes": raw,
        "total_transfer": transfer,
        "total_gzip_browser": gzip,
        "content_encodings": encodings,
    })
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Opens the console's sign-in form in English with the instruments of [`KIT`] installed.
async fn open_login(page: &Page, base: &str) {
    page.goto(base).await;
    page.wait_for("document.querySelector('#login-form')", WAIT)
        .await;
    page.eval("localStorage.setItem('kommutator.lang', 'en')")
        .await;
    page.reload().await;
    page.wait_for("document.querySelector('#login-form')", WAIT)
        .await;
    page.eval(KIT).await;
}

/// Fills and submits the sign-in form as `login`; waits until the socket is live.
async fn submit_login(page: &Page, login: &str) {
    page.fill("#login", login).await;
    page.fill("#password", PASSWORD).await;
    page.press("Enter").await;
    page.wait_for(
        "document.querySelector('#conn')?.dataset.state === 'live'",
        WAIT,
    )
    .await;
}

/// Signs in as `login` on a page instrumented by [`KIT`].
async fn sign_in(page: &Page, base: &str, login: &str) {
    open_login(page, base).await;
    submit_login(page, login).await;
}

/// An inbound message event of channel `site` sent now.
fn message(external_id: &str, thread: &str, from: &str, text: &str) -> Value {
    let mut ev = inbound(external_id, thread, from, text);
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format now");
    ev["occurred_at"] = json!(now);
    ev
}

/// A distinct mobile number per `n` (below 10,000).
fn phone(n: usize) -> String {
    format!("+7 916 555-{:02}-{:02}", n / 100 % 100, n % 100)
}

/// Posts `events` through the batch endpoint, [`BATCH`] at a time; returns each event's
/// outcome, in order. Any refused event fails the run.
async fn post_batches(app: &TestApp, key: &Principal, events: &[Value]) -> Vec<Value> {
    let mut out = Vec::with_capacity(events.len());
    for chunk in events.chunks(BATCH) {
        let (status, body) = app
            .post(
                Some(key),
                "/api/v1/connectors/site/events/batch",
                &json!({ "events": chunk }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let items = body.as_array().expect("a batch answers an array");
        assert_eq!(items.len(), chunk.len(), "one result per event");
        for item in items {
            assert!(item["error"].is_null(), "a refused event: {item}");
            out.push(item["outcome"].clone());
        }
    }
    out
}

/// Evaluates `js` until it is `true`; `false` after `timeout` (no panic: the run goes on
/// and reports what is missing).
async fn poll(page: &Page, js: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if page.eval(js).await == Value::Bool(true) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The page's `performance.now()`.
async fn perf_now(page: &Page) -> f64 {
    page.eval("performance.now()")
        .await
        .as_f64()
        .expect("a number")
}

/// Milliseconds since the epoch, as the test sees them.
fn epoch_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// The page's clock (`performance.timeOrigin + performance.now()`) minus the test's, from
/// the quickest of 20 round trips, and half that round trip (the uncertainty).
async fn clock_offset(page: &Page) -> (f64, f64) {
    let mut best = (0.0, f64::INFINITY);
    for _ in 0..20 {
        let before = epoch_ms();
        let theirs = page
            .eval("performance.timeOrigin + performance.now()")
            .await
            .as_f64()
            .expect("a number");
        let after = epoch_ms();
        let half = (after - before) / 2.0;
        if half < best.1 {
            best = (theirs - (before + half), half);
        }
    }
    best
}

/// `[text, time]` pairs as times per text, in order.
fn times_by_text(pairs: &Value) -> HashMap<String, Vec<f64>> {
    let mut out: HashMap<String, Vec<f64>> = HashMap::new();
    for p in pairs.as_array().map(Vec::as_slice).unwrap_or_default() {
        if let (Some(text), Some(t)) = (p[0].as_str(), p[1].as_f64()) {
            out.entry(text.to_owned()).or_default().push(t);
        }
    }
    out
}

/// The numbers of a JSON array.
fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

/// Requests for a party's name or record (`/api/v1/clients/{id}`, `/api/v1/leads/{id}`)
/// the page made so far.
async fn name_requests(page: &Page) -> u64 {
    page.eval(
        "performance.getEntriesByType('resource').filter((e) => /\\/api\\/v1\\/(clients|leads)\\/\\d+$/.test(new URL(e.name).pathname)).length",
    )
    .await
    .as_u64()
    .unwrap_or(0)
}

/// Long tasks that started between `from` and `to` (`performance.now()` times).
async fn long_tasks(page: &Page, from: f64, to: f64) -> LongTasks {
    let all = page.eval("window.__kb.longtasks").await;
    let supported = page.eval("window.__kb.longtaskSupported").await == Value::Bool(true);
    let mut out = LongTasks {
        supported,
        ..LongTasks::default()
    };
    for t in all.as_array().map(Vec::as_slice).unwrap_or_default() {
        let (Some(start), Some(duration)) = (t[0].as_f64(), t[1].as_f64()) else {
            continue;
        };
        if start >= from && start <= to {
            out.count += 1;
            out.total_ms += duration;
            out.max_ms = out.max_ms.max(duration);
        }
    }
    out
}

/// The page's errors but the expected 401 of the sign-in page asking who is signed in.
fn unexpected_errors(page: &Page) -> Vec<String> {
    page.errors()
        .into_iter()
        .filter(|e| !(e.starts_with("network error") && e.contains("status of 401 ")))
        .collect()
}

/// The 1, 5 and 15 minute load averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Two decimals, for the JSON.
fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Milliseconds, or `-` when there is no value.
fn opt_ms(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_owned(), |x| format!("{x:.1}"))
}

/// One scroll of the dialog list from top to bottom ([`SCROLL_LIST`]).
#[derive(Debug, Default)]
struct ListScroll {
    frames: Stats,
    tasks: LongTasks,
    steps: u64,
    max_items: u64,
    row_px: u64,
    blank: u64,
    last_index: i64,
    list_renders: u64,
}

impl ListScroll {
    fn json(&self, name_requests: Option<u64>) -> Value {
        json!({
            "step_px": SCROLL_STEP_PX,
            "steps": self.steps,
            "frame_ms": self.frames.json(),
            "long_tasks": self.tasks.json(),
            "max_dialog_items_in_dom": self.max_items,
            "row_px": self.row_px,
            "blank_frames": self.blank,
            "last_row_index": self.last_index,
            "whole_list_renders": self.list_renders,
            "name_requests": name_requests,
        })
    }
}

/// Scrolls the dialog list from top to bottom, [`SCROLL_STEP_PX`] a frame.
async fn scroll_list(page: &Page) -> ListScroll {
    let r = page
        .eval(&SCROLL_LIST.replace("STEP", &SCROLL_STEP_PX.to_string()))
        .await;
    let (t0, t1) = (
        r["t0"].as_f64().unwrap_or(0.0),
        r["t1"].as_f64().unwrap_or(0.0),
    );
    ListScroll {
        frames: Stats::of(&f64s(&r["frames"])),
        tasks: long_tasks(page, t0, t1).await,
        steps: r["steps"].as_u64().unwrap_or(0),
        max_items: r["maxItems"].as_u64().unwrap_or(0),
        row_px: r["rowPx"].as_u64().unwrap_or(0),
        blank: r["blank"].as_u64().unwrap_or(0),
        last_index: r["lastIndex"].as_i64().unwrap_or(-1),
        list_renders: r["listRenders"].as_u64().unwrap_or(0),
    }
}

/// Long tasks in a span of time.
#[derive(Debug, Default, Clone, Copy)]
struct LongTasks {
    supported: bool,
    count: usize,
    total_ms: f64,
    max_ms: f64,
}

impl LongTasks {
    fn line(&self) -> String {
        if !self.supported {
            return "not supported by this browser".to_owned();
        }
        format!(
            "{} (total {:.0} ms, longest {:.0} ms)",
            self.count, self.total_ms, self.max_ms
        )
    }

    fn json(&self) -> Value {
        json!({
            "supported": self.supported,
            "count": self.count,
            "total_ms": round(self.total_ms),
            "max_ms": round(self.max_ms),
        })
    }
}

/// Percentiles (nearest rank) of a set of durations in ms.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    n: usize,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    mean: f64,
}

impl Stats {
    fn of(values: &[f64]) -> Stats {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Stats::default();
        }
        v.sort_by(f64::total_cmp);
        let at = |p: f64| {
            let rank = (p / 100.0 * v.len() as f64).ceil() as usize;
            v[rank.clamp(1, v.len()) - 1]
        };
        Stats {
            n: v.len(),
            p50: at(50.0),
            p90: at(90.0),
            p99: at(99.0),
            max: v[v.len() - 1],
            mean: v.iter().sum::<f64>() / v.len() as f64,
        }
    }

    fn line(&self) -> String {
        if self.n == 0 {
            return "-".to_owned();
        }
        format!(
            "p50 {:>7.1}  p90 {:>7.1}  p99 {:>7.1}  max {:>7.1}  (n {})",
            self.p50, self.p90, self.p99, self.max, self.n
        )
    }

    fn json(&self) -> Value {
        json!({
            "n": self.n,
            "p50": round(self.p50),
            "p90": round(self.p90),
            "p99": round(self.p99),
            "max": round(self.max),
            "mean": round(self.mean),
        })
    }
}

/// What the run measured, for people (a table), and what went wrong.
#[derive(Debug, Default)]
struct Report {
    sections: Vec<Section>,
    /// Something the console did not do: the run fails after printing.
    problems: Vec<String>,
    /// Something worth knowing (slow, lossy, uncompressed): printed, not failed.
    findings: Vec<String>,
    user_agent: String,
}

#[derive(Debug)]
struct Section {
    name: &'static str,
    rows: Vec<(String, String)>,
}

impl Section {
    fn row(&mut self, metric: &str, value: String) {
        self.rows.push((metric.to_owned(), value));
    }
}

impl Report {
    fn section(&mut self, name: &'static str) -> &mut Section {
        self.sections.push(Section {
            name,
            rows: Vec::new(),
        });
        self.sections.last_mut().expect("just pushed")
    }

    fn problem(&mut self, what: String) {
        eprintln!("PROBLEM: {what}");
        self.problems.push(what);
    }

    fn finding(&mut self, what: String) {
        self.findings.push(what);
    }

    fn print(&self) {
        let name_w = self
            .sections
            .iter()
            .map(|s| s.name.len())
            .max()
            .unwrap_or(0);
        let metric_w = self
            .sections
            .iter()
            .flat_map(|s| s.rows.iter().map(|(m, _)| m.chars().count()))
            .max()
            .unwrap_or(0);
        println!();
        println!("{:<name_w$}  {:<metric_w$}  value", "part", "metric");
        println!("{}", "-".repeat(name_w + metric_w + 60));
        for s in &self.sections {
            for (i, (metric, value)) in s.rows.iter().enumerate() {
                let name = if i == 0 { s.name } else { "" };
                println!("{name:<name_w$}  {metric:<metric_w$}  {value}");
            }
        }
        println!();
    }
}
