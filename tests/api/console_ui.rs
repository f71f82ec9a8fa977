//! The operator console in a real headless Chromium: sign-in, an inquiry appearing live
//! without a reload, a reply going out through the channel, hostile customer text shown as
//! text, and one operator kept out of another department's dialogs. Screenshots of the
//! screens go to `target/screenshots/` (`KOMMUTATOR_SCREENSHOTS` to put them elsewhere).

use std::time::Duration;

use kommutator::domain::{Role, Scope};
use reqwest::StatusCode;
use serde_json::json;

use crate::browser::{Browser, Page};
use crate::helpers::*;
use crate::realtime_e2e::receiver;
use crate::ws_client::*;

const WAIT: Duration = Duration::from_secs(10);

/// Opens the console and signs in as `login`; waits until the socket is live.
async fn sign_in(page: &Page, base: &str, login: &str) {
    page.goto(base).await;
    page.wait_for("document.querySelector('#login-form')", WAIT)
        .await;
    page.fill("#login", login).await;
    page.fill("#password", PASSWORD).await;
    page.click("#login-form button[type=submit]").await;
    page.wait_for(
        "document.querySelector('#conn')?.dataset.state === 'live'",
        WAIT,
    )
    .await;
}

/// A new tab of `browser` with the console in English, signed in as `login` and live.
async fn console(browser: &Browser, base: &str, login: &str) -> Page {
    let page = browser.new_page().await;
    page.goto(base).await;
    page.eval("localStorage.setItem('kommutator.lang', 'en')")
        .await;
    sign_in(&page, base, login).await;
    page
}

/// No script error and no failed request but the expected ones: `expected` statuses (a page
/// not signed in asks who is and gets 401; a dialog one may not see is 404).
#[track_caller]
fn assert_no_errors(page: &Page, expected: &[u16]) {
    let errors: Vec<String> = page
        .errors()
        .into_iter()
        .filter(|e| {
            !(e.starts_with("network error")
                && expected
                    .iter()
                    .any(|s| e.contains(&format!("status of {s} "))))
        })
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inquiry_appears_live_and_the_reply_goes_out_through_its_channel() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let rx = receiver().await;
    let app = spawn_app_with(with_api_channel("Sales", Some(rx.url.clone()))).await;
    let sales = app.department("Sales").await;
    let key = app.api_key(&[Scope::DialogsWrite]).await;
    app.user("anna", Role::Operator, Some(sales)).await;
    let page = browser.new_page().await;

    // A wrong password is answered on the form.
    page.goto(&app.base).await;
    page.wait_for("document.querySelector('#login-form')", WAIT)
        .await;
    page.eval("localStorage.setItem('kommutator.lang', 'en')")
        .await;
    page.reload().await;
    page.fill("#login", "anna").await;
    page.fill("#password", "not her password").await;
    page.press("Enter").await;
    page.wait_for(
        "document.querySelector('#login-error')?.textContent.includes('Wrong login or password')",
        WAIT,
    )
    .await;
    page.screenshot(&screenshot_path("login")).await;

    sign_in(&page, &app.base, "anna").await;
    assert_eq!(page.count(".dialog-item").await, 0);

    // An inquiry with hostile text and name arrives: it shows up without a reload.
    let hostile = "<script>window.__pwned=1</script><img src=x onerror=\"window.__pwned=2\"> \
                   javascript:window.__pwned=3 see https://example.com/price";
    let mut ev = inbound("m-1", "t-1", "+7 916 123-45-67", hostile);
    ev["kind"]["sender"]["display_name"] = json!("<img src=x onerror=\"window.__pwned=4\">Ivan");
    let (status, out) = ingest(&app, &key, &ev).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let dialog = out["dialog"]["id"].as_i64().expect("dialog");
    page.wait_for(
        &format!("document.querySelector('.dialog-item[data-id=\"{dialog}\"]')"),
        WAIT,
    )
    .await;
    page.wait_for(
        "document.querySelector('.dialog-item .name')?.textContent.includes('Ivan')",
        WAIT,
    )
    .await;

    page.click(&format!(".dialog-item[data-id=\"{dialog}\"]"))
        .await;
    page.wait_for(
        "document.querySelectorAll('#messages li.msg').length === 1",
        WAIT,
    )
    .await;
    let body = page.text("#messages li.msg .body").await;
    assert!(body.contains("<script>window.__pwned=1</script>"), "{body}");
    assert!(body.contains("onerror"), "{body}");
    // Shown as text: no element came from the customer's markup, nothing ran.
    assert_eq!(page.count("#app script, #app img, #app iframe").await, 0);
    assert_eq!(
        page.eval("String(window.__pwned)").await,
        json!("undefined"),
        "customer text ran as script"
    );
    let links = page
        .eval("[...document.querySelectorAll('#messages a')].map(a => a.href)")
        .await;
    assert_eq!(
        links,
        json!(["https://example.com/price"]),
        "only the http link is a link"
    );
    assert_eq!(page.dialogs_opened(), 0);

    // The operator replies: the reply goes out through the channel and shows as sent.
    page.fill("#reply-text", "Здравствуйте! Доставка бесплатная.")
        .await;
    page.press("Enter").await;
    let posted = loop {
        let notified = rx.notify.notified();
        if let Some(p) = rx.got.lock().await.first().cloned() {
            break p;
        }
        tokio::time::timeout(WAIT, notified)
            .await
            .expect("the reply is posted to the channel");
    };
    assert_eq!(posted.2["text"], "Здравствуйте! Доставка бесплатная.");
    assert_eq!(posted.2["thread_id"], "t-1");
    page.wait_for(
        "document.querySelector('#messages li.msg.outbound')?.dataset.status === 'sent'",
        WAIT,
    )
    .await;

    // A second message appears in the open dialog, live.
    let (status, out) = ingest(
        &app,
        &key,
        &inbound("m-2", "t-1", "+7 916 123-45-67", "Спасибо!"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    page.wait_for(
        "document.querySelectorAll('#messages li.msg').length === 3",
        WAIT,
    )
    .await;
    assert_eq!(
        page.text("#messages li.msg:last-child .body").await,
        "Спасибо!"
    );
    // Seen in the open dialog: read, so no unread badge.
    page.wait_for("!document.querySelector('.dialog-item .unread')", WAIT)
        .await;

    // The dialog's Feed has both directions.
    let (status, messages) = app
        .get(
            Some(&app.admin),
            &format!("/api/v1/dialogs/{dialog}/messages"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(messages["items"].as_array().map(Vec::len), Some(3));

    // Russian, switched in the console.
    page.click("#lang").await;
    page.wait_for(
        "document.querySelector('#tab-mine')?.textContent.startsWith('Мои')",
        WAIT,
    )
    .await;
    page.screenshot(&screenshot_path("dialogs")).await;
    assert_no_errors(&page, &[401]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_does_not_see_another_departments_dialogs() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let app = spawn_app_with(with_api_channel("Sales", None)).await;
    let sales = app.department("Sales").await;
    let support = app.department("Support").await;
    let key = app.api_key(&[Scope::DialogsWrite]).await;
    app.user("anna", Role::Operator, Some(sales)).await;
    app.user("sofia", Role::Operator, Some(support)).await;
    let (status, out) = ingest(
        &app,
        &key,
        &inbound("m-1", "t-1", "+7 916 000-00-01", "A question for sales"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let dialog = out["dialog"]["id"].as_i64().expect("dialog");

    let page = console(&browser, &app.base, "sofia").await;
    for tab in ["#tab-mine", "#tab-queue"] {
        page.click(tab).await;
        page.wait_for("document.querySelector('.dialog-list .empty')", WAIT)
            .await;
        assert_eq!(page.count(".dialog-item").await, 0, "{tab}");
    }
    assert_eq!(
        page.count("#tab-all").await,
        0,
        "operators have no 'all' list"
    );

    // A new Sales inquiry while she watches: still nothing.
    let (status, _) = ingest(
        &app,
        &key,
        &inbound("m-2", "t-2", "+7 916 000-00-02", "Another one"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(page.count(".dialog-item").await, 0);

    // By URL (a new tab, the same session): no access, and nothing of it shows.
    let page = browser.new_page().await;
    page.goto(&format!("{}/#/dialogs/{dialog}", app.base)).await;
    page.wait_for("document.querySelector('#dialog-error')", WAIT)
        .await;
    assert_eq!(
        page.text("#dialog-error").await,
        "You have no access to this."
    );
    assert_eq!(page.count("#messages li.msg").await, 0);
    let text = page.text("body").await;
    assert!(!text.contains("A question for sales"), "{text}");
    assert_no_errors(&page, &[401, 404]);
}

/// Whether the Feed on `page` shows an entry titled `title`, as a JS expression.
fn feed_has(title: &str) -> String {
    format!(
        "[...document.querySelectorAll('#feed .feed-title')].some(e => e.textContent === {})",
        json!(title)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_note_and_a_task_appear_in_the_feed_at_once_for_both_operators() {
    let Some(first) = Browser::launch().await else {
        return;
    };
    let Some(second) = Browser::launch().await else {
        return;
    };
    let app = spawn_app_with(with_api_channel("Sales", None)).await;
    let sales = app.department("Sales").await;
    let key = app.api_key(&[Scope::DialogsWrite]).await;
    app.user("anna", Role::Operator, Some(sales)).await;
    app.user("boris", Role::Operator, Some(sales)).await;

    // Anna is online: the inquiry goes to her, and its lead shows beside the dialog.
    let a = console(&first, &app.base, "anna").await;
    let (status, out) = ingest(
        &app,
        &key,
        &inbound("m-1", "t-1", "+7 916 123-45-67", "Do you deliver to Kazan?"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let dialog = out["dialog"]["id"].as_i64().expect("dialog");
    a.click(&format!(".dialog-item[data-id=\"{dialog}\"]"))
        .await;
    a.wait_for(
        "document.querySelector('#party-name')?.textContent === 'Ivan Petrov'",
        WAIT,
    )
    .await;
    a.wait_for(
        "document.querySelector('#feed li[data-kind=message]')",
        WAIT,
    )
    .await;
    assert!(a.text("#party-head").await.contains("+79161234567"));

    // Boris, in the same department, watches the same lead (the dialog by its address).
    let _signed_in = console(&second, &app.base, "boris").await;
    let b = second.new_page().await;
    b.goto(&format!("{}/#/dialogs/{dialog}", app.base)).await;
    b.wait_for(
        "document.querySelector('#party-name')?.textContent === 'Ivan Petrov'",
        WAIT,
    )
    .await;

    // A note from Anna's card: in both Feeds at once.
    a.click("#add-note").await;
    a.fill("#note-subject", "Called back").await;
    a.fill("#note-body", "Wants delivery to Kazan by Friday")
        .await;
    a.click("#note-save").await;
    a.wait_for(&feed_has("Called back"), WAIT).await;
    b.wait_for(&feed_has("Called back"), WAIT).await;

    // A task from Boris's card: in both too.
    b.click("#add-task").await;
    b.fill("#task-subject", "Send the price list").await;
    b.click("#task-save").await;
    b.wait_for(&feed_has("Send the price list"), WAIT).await;
    a.wait_for(&feed_has("Send the price list"), WAIT).await;

    // The filter shows one kind.
    a.eval(
        "(() => { const s = document.querySelector('#feed-filter'); s.value = 'note'; \
         s.dispatchEvent(new Event('change')); })()",
    )
    .await;
    a.wait_for(
        "[...document.querySelectorAll('#feed li.feed-item')].every(e => e.dataset.kind === 'note') \
         && document.querySelectorAll('#feed li.feed-item').length === 1",
        WAIT,
    )
    .await;
    a.eval(
        "(() => { const s = document.querySelector('#feed-filter'); s.value = ''; \
         s.dispatchEvent(new Event('change')); })()",
    )
    .await;
    a.wait_for(&feed_has("Send the price list"), WAIT).await;
    a.screenshot(&screenshot_path("client-panel")).await;
    assert_no_errors(&a, &[401]);
    assert_no_errors(&b, &[401]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_moves_the_dialog_and_the_supervisor_sees_load_and_queues_live() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let Some(second) = Browser::launch().await else {
        return;
    };
    let app = spawn_app_with(with_api_channel("Sales", None)).await;
    let sales = app.department("Sales").await;
    let key = app.api_key(&[Scope::DialogsWrite]).await;
    let anna = app.user("anna", Role::Operator, Some(sales)).await;
    let boris = app.user("boris", Role::Operator, Some(sales)).await;
    app.user("sam", Role::Supervisor, Some(sales)).await;

    let a = console(&browser, &app.base, "anna").await;

    let s = console(&second, &app.base, "sam").await;
    s.click("#view-toggle").await;
    s.wait_for(
        &format!(
            "document.querySelector('#sup-operators tr[data-user=\"{}\"]')?.dataset.status === 'online'",
            anna.id
        ),
        WAIT,
    )
    .await;

    // An inquiry goes to Anna: the supervisor sees her load and the unanswered inquiry.
    let (status, out) = ingest(
        &app,
        &key,
        &inbound("m-1", "t-1", "+7 916 000-00-11", "Where is my order?"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let dialog = out["dialog"]["id"].as_i64().expect("dialog");
    assert_eq!(out["dialog"]["assignee_id"], anna.id, "{out}");
    s.wait_for(
        &format!(
            "document.querySelector('#sup-operators tr[data-user=\"{}\"] td.num')?.textContent === '1 / 5'",
            anna.id
        ),
        WAIT,
    )
    .await;
    s.wait_for(
        &format!(
            "document.querySelector('#sup-queues tr[data-department=\"{sales}\"] td:nth-child(3)')?.textContent === '1'"
        ),
        WAIT,
    )
    .await;
    s.screenshot(&screenshot_path("supervisor")).await;

    // Anna transfers it to Boris: it leaves her list, and the record says why.
    a.click(&format!(".dialog-item[data-id=\"{dialog}\"]"))
        .await;
    a.click("#transfer").await;
    a.eval(&format!(
        "document.querySelector('#transfer-to').value = 'user:{}'",
        boris.id
    ))
    .await;
    a.click("#transfer-go").await;
    a.wait_for(
        &format!("!document.querySelector('.dialog-item[data-id=\"{dialog}\"]')"),
        WAIT,
    )
    .await;
    a.wait_for(
        "document.querySelector('.dialog-head .assignee')?.textContent === 'Assigned: boris'",
        WAIT,
    )
    .await;
    let (status, d) = app
        .get(Some(&app.admin), &format!("/api/v1/dialogs/{dialog}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(d["assignee_id"], boris.id, "{d}");
    assert_eq!(d["assign_reason"], "transfer", "{d}");
    s.wait_for(
        &format!(
            "document.querySelector('#sup-operators tr[data-user=\"{}\"] td.num')?.textContent === '0 / 5'",
            anna.id
        ),
        WAIT,
    )
    .await;
    assert_no_errors(&a, &[401]);
    assert_no_errors(&s, &[401]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interest_is_made_from_a_message_in_one_click_and_moves_along_its_stages() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let app = spawn_app_with(with_api_channel("Sales", None)).await;
    let sales = app.department("Sales").await;
    let key = app.api_key(&[Scope::DialogsWrite]).await;
    app.user("anna", Role::Operator, Some(sales)).await;
    let page = console(&browser, &app.base, "anna").await;
    let (status, out) = ingest(
        &app,
        &key,
        &inbound(
            "m-1",
            "t-1",
            "+7 916 555-00-77",
            "We need 40 chairs for the office",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let dialog = out["dialog"]["id"].as_i64().expect("dialog");
    // Counted once, whether it came in the snapshot, the replay or live.
    page.wait_for(
        "document.querySelector('.dialog-item .unread')?.textContent === '1'",
        WAIT,
    )
    .await;
    page.click(&format!(".dialog-item[data-id=\"{dialog}\"]"))
        .await;
    // The new lead's first inquiry opened an Interest (the intake rule).
    page.wait_for(
        "document.querySelectorAll('#interests .interest-row').length === 1",
        WAIT,
    )
    .await;

    // One click on the message: an Interest titled by it, shown at its first stage.
    page.click("#messages li.msg.inbound .to-interest").await;
    page.wait_for(
        "document.querySelector('#interest-title')?.textContent === 'We need 40 chairs for the office'",
        WAIT,
    )
    .await;
    page.wait_for(
        "document.querySelector('#stage-bar li.stage.current')",
        WAIT,
    )
    .await;
    let stages = page
        .eval("[...document.querySelectorAll('#stage-bar li.stage')].map(s => s.className.includes('current'))")
        .await;
    assert_eq!(
        stages[0],
        json!(true),
        "starts at the first stage: {stages}"
    );
    let (status, d) = app
        .get(Some(&app.admin), &format!("/api/v1/dialogs/{dialog}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let interest = d["interest_id"].as_i64().expect("the dialog is linked");
    let (_, i) = app
        .get(Some(&app.admin), &format!("/api/v1/interests/{interest}"))
        .await;
    assert_eq!(i["title"], "We need 40 chairs for the office", "{i}");

    // A click on the next stage moves it, live.
    page.click("#stage-bar li.stage:nth-child(2) button").await;
    page.wait_for(
        "document.querySelector('#stage-bar li.stage:nth-child(2)')?.classList.contains('current')",
        WAIT,
    )
    .await;
    let (_, i) = app
        .get(Some(&app.admin), &format!("/api/v1/interests/{interest}"))
        .await;
    let (_, stages) = app
        .get(
            Some(&app.admin),
            &format!("/api/v1/interests/{interest}/stages"),
        )
        .await;
    assert_eq!(stages.as_array().map(Vec::len), Some(2), "{stages}");
    assert_eq!(i["stage_id"], stages[1]["to_stage_id"], "{i} {stages}");
    page.wait_for(
        "[...document.querySelectorAll('#interest-feed .feed-item')].length >= 1",
        WAIT,
    )
    .await;
    page.screenshot(&screenshot_path("interest")).await;

    // Back to the client panel: two Interests now.
    page.click("#interest-back").await;
    page.wait_for(
        "document.querySelectorAll('#interests .interest-row').length === 2",
        WAIT,
    )
    .await;
    assert_no_errors(&page, &[401]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canned_responses_are_inserted_by_their_shortcut_and_added_from_the_console() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let rx = receiver().await;
    let app = spawn_app_with(with_api_channel("Sales", Some(rx.url.clone()))).await;
    let sales = app.department("Sales").await;
    let key = app.api_key(&[Scope::DialogsWrite]).await;
    let anna = app.user("anna", Role::Operator, Some(sales)).await;
    let (status, body) = app
        .post(
            Some(&app.admin),
            "/api/v1/canned-responses",
            &json!({"scope": "department", "department_id": sales, "shortcut": "price",
                    "title": "Price list", "body": "Our prices: https://example.com/price"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app
        .post(
            Some(&anna),
            "/api/v1/canned-responses",
            &json!({"scope": "personal", "shortcut": "hello", "title": "Greeting",
                    "body": "Здравствуйте! Чем могу помочь?"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let page = console(&browser, &app.base, "anna").await;
    let (status, out) = ingest(
        &app,
        &key,
        &inbound("m-1", "t-1", "+7 916 555-00-88", "How much is it?"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let dialog = out["dialog"]["id"].as_i64().expect("dialog");
    page.click(&format!(".dialog-item[data-id=\"{dialog}\"]"))
        .await;
    page.wait_for(
        "document.querySelectorAll('#messages li.msg').length === 1",
        WAIT,
    )
    .await;

    // "/pr" offers the department's price list; Enter inserts it (it does not send).
    page.fill("#reply-text", "/pr").await;
    page.wait_for(
        "!document.querySelector('#canned-list').hidden && document.querySelector('#canned-list .canned-item.chosen')?.dataset.shortcut === 'price'",
        WAIT,
    )
    .await;
    page.press("Enter").await;
    assert_eq!(
        page.eval("document.querySelector('#reply-text').value")
            .await,
        json!("Our prices: https://example.com/price")
    );
    assert_eq!(page.count("#messages li.msg").await, 1, "nothing sent yet");
    // The second Enter sends it, through the channel.
    page.press("Enter").await;
    page.wait_for(
        "[...document.querySelectorAll('#messages li.msg.outbound .body')].some(e => e.textContent === 'Our prices: https://example.com/price')",
        WAIT,
    )
    .await;

    // A personal one by its title, in the middle of a text; Escape closes the list.
    page.fill("#reply-text", "Hi! /gree").await;
    page.wait_for(
        "document.querySelector('#canned-list .canned-item.chosen')?.dataset.shortcut === 'hello'",
        WAIT,
    )
    .await;
    page.press("Tab").await;
    assert_eq!(
        page.eval("document.querySelector('#reply-text').value")
            .await,
        json!("Hi! Здравствуйте! Чем могу помочь?")
    );
    page.fill("#reply-text", "/zzz").await;
    page.wait_for("document.querySelector('#canned-list').hidden", WAIT)
        .await;

    // A new personal one from the console, used at once.
    page.click("#canned-open").await;
    page.fill("#canned-shortcut", "bye").await;
    page.fill("#canned-title", "Goodbye").await;
    page.fill("#canned-body", "Thank you, have a nice day!")
        .await;
    page.click("#canned-save").await;
    page.wait_for(
        "[...document.querySelectorAll('#canned-manager li')].some(e => e.textContent.includes('/bye'))",
        WAIT,
    )
    .await;
    page.screenshot(&screenshot_path("canned")).await;
    page.press("Escape").await;
    page.fill("#reply-text", "/by").await;
    page.wait_for(
        "document.querySelector('#canned-list .canned-item.chosen')?.dataset.shortcut === 'bye'",
        WAIT,
    )
    .await;
    assert_no_errors(&page, &[401]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_dialog_opens_at_its_end_and_earlier_messages_come_on_demand() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let app = spawn_app_with(with_api_channel("Sales", None)).await;
    let sales = app.department("Sales").await;
    let key = app.api_key(&[Scope::DialogsWrite]).await;
    app.user("anna", Role::Operator, Some(sales)).await;
    let page = console(&browser, &app.base, "anna").await;
    // 450 messages in one thread.
    for chunk in 0..3 {
        let events: Vec<_> = (1..=150)
            .map(|i| {
                let n = chunk * 150 + i;
                inbound(
                    &format!("m-{n}"),
                    "t-1",
                    "+7 916 000-11-22",
                    &format!("line {n}"),
                )
            })
            .collect();
        let (status, out) = app
            .post(
                Some(&key),
                "/api/v1/connectors/site/events/batch",
                &json!({ "events": events }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{out}");
    }
    page.wait_for("document.querySelector('.dialog-item')", WAIT)
        .await;
    page.click(".dialog-item").await;
    page.wait_for(
        "document.querySelectorAll('#messages li.msg').length === 200",
        WAIT,
    )
    .await;
    let shown = |n: usize| format!("document.querySelectorAll('#messages li.msg').length === {n}");
    assert_eq!(
        page.text("#messages li.msg:last-child .body").await,
        "line 450"
    );
    assert_eq!(page.text("#messages li.msg .body").await, "line 251");
    // Earlier pages from the hub, in order, each once.
    page.click("#show-earlier").await;
    page.wait_for(&shown(400), WAIT).await;
    page.click("#show-earlier").await;
    page.wait_for(&shown(450), WAIT).await;
    assert_eq!(page.count("#show-earlier").await, 0, "nothing older left");
    let texts = page
        .eval("[...document.querySelectorAll('#messages li.msg .body')].map(e => e.textContent)")
        .await;
    let want: Vec<String> = (1..=450).map(|n| format!("line {n}")).collect();
    assert_eq!(texts, json!(want));
    assert_no_errors(&page, &[401]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_intake_wizard_finds_the_client_and_links_the_inquiry_to_their_interest() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let app = spawn_app_with(with_api_channel("Sales", None)).await;
    let sales = app.department("Sales").await;
    let key = app.api_key(&[Scope::DialogsWrite]).await;
    let anna = app.user("anna", Role::Operator, Some(sales)).await;
    let (status, client) = app
        .post(
            Some(&app.admin),
            "/api/v1/clients",
            &json!({"kind": "company", "name": "ООО Ромашка", "shared": true, "responsible_id": anna.id,
                "identities": [{"kind": "email", "value": "office@romashka.example"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{client}");
    let client = client["id"].as_i64().expect("client");
    let (status, interest) = app
        .post(
            Some(&app.admin),
            "/api/v1/interests",
            &json!({"client_id": client, "title": "Поставка стульев", "shared": true, "responsible_id": anna.id}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{interest}");
    let interest = interest["id"].as_i64().expect("interest");

    let page = console(&browser, &app.base, "anna").await;
    // The company's buyer writes from a phone nobody knows yet: a lead.
    let (status, out) = ingest(
        &app,
        &key,
        &inbound("m-1", "t-1", "+7 916 555-00-01", "Когда привезёте стулья?"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let dialog = out["dialog"]["id"].as_i64().expect("dialog");
    let lead = out["dialog"]["lead_id"].as_i64().expect("lead");
    page.wait_for(
        &format!("document.querySelector('.dialog-item[data-id=\"{dialog}\"]')"),
        WAIT,
    )
    .await;
    page.click(&format!(".dialog-item[data-id=\"{dialog}\"]"))
        .await;
    page.wait_for(
        "document.querySelector('#party-name')?.textContent === 'Ivan Petrov'",
        WAIT,
    )
    .await;

    // The wizard searches the lead's phone first: no client has it.
    page.click("#intake-open").await;
    page.wait_for("document.querySelector('#intake')?.open", WAIT)
        .await;
    page.wait_for("document.querySelector('#intake-nothing')", WAIT)
        .await;
    assert_eq!(
        page.eval("document.querySelector('#intake-mode').value")
            .await,
        json!("phone")
    );
    // By name, then: the company is there; its open Interest is offered first.
    page.fill("#intake-query", "Ромаш").await;
    page.click("#intake-find").await;
    page.wait_for(
        &format!("document.querySelector('.intake-client[data-id=\"{client}\"]')"),
        WAIT,
    )
    .await;
    page.click(&format!(".intake-client[data-id=\"{client}\"]"))
        .await;
    page.wait_for(
        &format!("document.querySelector('input[name=\"intake-interest\"][value=\"{interest}\"]')?.checked"),
        WAIT,
    )
    .await;
    page.screenshot(&screenshot_path("intake")).await;
    page.click("#intake-link").await;

    // Linked: the panel shows the client, with the message in its Feed, without a reload.
    page.wait_for("!document.querySelector('#intake')", WAIT)
        .await;
    page.wait_for(
        "document.querySelector('#party-name')?.textContent === 'ООО Ромашка'",
        WAIT,
    )
    .await;
    page.wait_for(
        "document.querySelector('#feed .feed-item[data-kind=\"message\"]')",
        WAIT,
    )
    .await;
    let (_, d) = app
        .get(Some(&app.admin), &format!("/api/v1/dialogs/{dialog}"))
        .await;
    assert_eq!(d["client_id"], client, "{d}");
    assert_eq!(d["interest_id"], interest, "{d}");
    let (_, l) = app
        .get(Some(&app.admin), &format!("/api/v1/leads/{lead}"))
        .await;
    assert_eq!(
        l["status"], "converted",
        "the lead merged into the client: {l}"
    );
    let (_, ident) = app
        .get(
            Some(&app.admin),
            "/api/v1/identities/lookup?kind=phone&value=%2B79165550001",
        )
        .await;
    assert_eq!(ident["client_id"], client, "{ident}");
    assert_no_errors(&page, &[401]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_card_edits_custom_fields_and_contacts_live_and_plans_a_meeting() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let app = spawn_app_with(with_api_channel("Sales", None)).await;
    let sales = app.department("Sales").await;
    let key = app.api_key(&[Scope::DialogsWrite]).await;
    let anna = app.user("anna", Role::Operator, Some(sales)).await;
    app.user("boris", Role::Operator, Some(sales)).await;
    for def in [
        json!({"key": "inn", "label": "INN", "field_type": "string", "position": 1}),
        json!({"key": "segment", "label": "Segment", "field_type": "enum", "options": ["retail", "wholesale"], "position": 2}),
        json!({"key": "employees", "label": "Employees", "field_type": "number", "position": 3}),
    ] {
        let (status, body) = app
            .post(Some(&app.admin), "/api/v1/custom-fields", &def)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let client = app
        .company("Horns & Hooves", "+7 916 555-00-42", &anna)
        .await;
    // Anna, the responsible manager, gets the client's inquiry and opens the card from the
    // dialog's client panel; Boris, in another browser, has the card open already.
    let page = console(&browser, &app.base, "anna").await;
    let (status, out) = ingest(
        &app,
        &key,
        &inbound("m-1", "t-1", "+7 916 555-00-42", "Please call me back"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let dialog = out["dialog"]["id"].as_i64().expect("dialog");
    let Some(second) = Browser::launch().await else {
        return;
    };
    let boris = console(&second, &app.base, "boris").await;
    boris
        .eval(&format!(
            "location.hash = '#/clients/{client}'; location.reload()"
        ))
        .await;
    boris
        .wait_for(
            "document.querySelector('#card-name')?.textContent === 'Horns & Hooves'",
            WAIT,
        )
        .await;
    page.wait_for(
        &format!("document.querySelector('.dialog-item[data-id=\"{dialog}\"]')"),
        WAIT,
    )
    .await;
    page.click(&format!(".dialog-item[data-id=\"{dialog}\"]"))
        .await;
    // The panel's head loads after its buttons and pushes them down: wait for it.
    page.wait_for(
        "document.querySelector('#party-name')?.textContent === 'Horns & Hooves'",
        WAIT,
    )
    .await;
    page.click("#open-card").await;
    page.wait_for(
        "document.querySelector('#card-name')?.textContent === 'Horns & Hooves'",
        WAIT,
    )
    .await;
    assert_eq!(
        page.eval("location.hash").await,
        json!(format!("#/clients/{client}"))
    );

    // Custom fields, edited in place.
    page.click("#card-edit").await;
    page.fill("#card-cf-inn", "7701234567").await;
    page.eval("document.querySelector('#card-cf-segment').value = 'wholesale'")
        .await;
    page.fill("#card-cf-employees", "250").await;
    page.click("#card-save").await;
    page.wait_for(
        "document.querySelector('dd[data-field=\"inn\"]')?.textContent === '7701234567'",
        WAIT,
    )
    .await;
    let (_, c) = app
        .get(Some(&app.admin), &format!("/api/v1/clients/{client}"))
        .await;
    assert_eq!(
        c["custom_fields"],
        json!({"inn": "7701234567", "segment": "wholesale", "employees": 250}),
        "{c}"
    );
    // Boris sees it without a reload.
    boris
        .wait_for(
            "document.querySelector('dd[data-field=\"segment\"]')?.textContent === 'wholesale'",
            WAIT,
        )
        .await;

    // A contact person with a phone.
    page.click("#contact-add").await;
    page.fill("#contact-name", "Ostap Bender").await;
    page.fill("#contact-position", "Director").await;
    page.fill("#contact-phone", "+7 916 555-00-43").await;
    page.click("#contact-save").await;
    page.wait_for(
        "document.querySelector('#contacts-list li')?.textContent.includes('+79165550043')",
        WAIT,
    )
    .await;
    boris
        .wait_for(
            "document.querySelector('#contacts-list li')?.textContent.includes('Ostap Bender')",
            WAIT,
        )
        .await;
    // A phone another client already has is refused, and says why.
    page.fill("#identity-value", "+7 916 555-00-43").await;
    page.click("#identity-add").await;
    page.wait_for(
        "document.querySelector('#identity-error')?.textContent.includes('already belongs')",
        WAIT,
    )
    .await;

    // A meeting planned from the panel lands in the Feed at once, for both.
    page.click("#add-plan").await;
    page.eval("document.querySelector('#plan-kind').value = 'meeting'")
        .await;
    page.fill("#plan-subject", "Contract signing").await;
    page.eval("document.querySelector('#plan-due').value = '2026-12-10T10:00'")
        .await;
    page.click("#plan-save").await;
    for p in [&page, &boris] {
        p.wait_for(
            "[...document.querySelectorAll('#feed .feed-item[data-kind=\"meeting\"]')].some(e => e.textContent.includes('Contract signing'))",
            WAIT,
        )
        .await;
    }
    let (_, feed) = app
        .get(
            Some(&app.admin),
            &format!("/api/v1/clients/{client}/feed?kinds=meeting"),
        )
        .await;
    assert_eq!(feed["items"].as_array().map(Vec::len), Some(1), "{feed}");
    page.screenshot(&screenshot_path("client-card")).await;

    // Back to the dialog.
    page.click("#card-back").await;
    page.wait_for("document.querySelector('#reply-text')", WAIT)
        .await;
    assert_no_errors(&page, &[401, 409]);
    assert_no_errors(&boris, &[401]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incoming_call_pops_up_with_the_client_and_their_interest_before_the_answer() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let app = spawn_app_with(with_api_channel("Sales", None)).await;
    let sales = app.department("Sales").await;
    let key = app.api_key(&[Scope::DialogsWrite]).await;
    let anna = app.user("anna", Role::Operator, Some(sales)).await;
    app.set_extension(&anna, "101").await;
    let client = app
        .company("Horns & Hooves", "+7 916 555-00-42", &anna)
        .await;
    let (status, interest) = app
        .post(
            Some(&app.admin),
            "/api/v1/interests",
            &json!({"client_id": client, "title": "Office chairs, 40 pcs", "shared": true, "responsible_id": anna.id}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{interest}");
    let page = console(&browser, &app.base, "anna").await;

    let call = |id: &str, kind: serde_json::Value| {
        json!({"connector_id": "site", "external_id": id, "occurred_at": "2026-12-05T10:00:00Z",
            "kind": {"type": "call", "call_external_id": "pbx-7", "kind": kind}})
    };
    let (status, out) = ingest(
        &app,
        &key,
        &call("pbx-7:ring", json!({"type": "ringing", "from": "+79165550042", "to": "+74950000000", "direction": "inbound", "extension": "101"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    // Before anyone answers: who it is and what they are buying.
    page.wait_for(
        "document.querySelector('.call-pop[data-status=\"ringing\"] .call-who')?.textContent === 'Horns & Hooves'",
        WAIT,
    )
    .await;
    page.wait_for(
        "document.querySelector('.call-pop .call-interest')?.textContent.includes('Office chairs, 40 pcs')",
        WAIT,
    )
    .await;
    page.screenshot(&screenshot_path("call-pop")).await;
    ingest(
        &app,
        &key,
        &call(
            "pbx-7:answer",
            json!({"type": "answered", "by_extension": "101"}),
        ),
    )
    .await;
    page.wait_for(
        "document.querySelector('.call-pop')?.dataset.status === 'answered'",
        WAIT,
    )
    .await;
    ingest(
        &app,
        &key,
        &call(
            "pbx-7:hangup",
            json!({"type": "hung_up", "duration_secs": 95, "cause": null}),
        ),
    )
    .await;
    page.wait_for(
        "document.querySelector('.call-pop')?.dataset.status === 'completed'",
        WAIT,
    )
    .await;

    // A number nobody knows: a lead is made before the pop-up shows.
    let call2 = |id: &str, kind: serde_json::Value| {
        json!({"connector_id": "site", "external_id": id, "occurred_at": "2026-12-05T10:05:00Z",
            "kind": {"type": "call", "call_external_id": "pbx-8", "kind": kind}})
    };
    ingest(
        &app,
        &key,
        &call2("pbx-8:ring", json!({"type": "ringing", "from": "+79165550099", "to": "+74950000000", "direction": "inbound", "extension": "101"})),
    )
    .await;
    page.wait_for(
        "[...document.querySelectorAll('.call-pop')].some(p => p.textContent.includes('new caller'))",
        WAIT,
    )
    .await;

    // Click-to-call from the client panel: here no PBX can dial out, and the console says so.
    let (status, out) = ingest(
        &app,
        &key,
        &inbound("m-1", "t-1", "+7 916 555-00-42", "Call me back please"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let dialog = out["dialog"]["id"].as_i64().expect("dialog");
    page.wait_for(
        &format!("document.querySelector('.dialog-item[data-id=\"{dialog}\"]')"),
        WAIT,
    )
    .await;
    page.click(&format!(".dialog-item[data-id=\"{dialog}\"]"))
        .await;
    page.wait_for("document.querySelector('#party-head button.dial')", WAIT)
        .await;
    page.click("#party-head button.dial").await;
    page.wait_for(
        "document.querySelector('#flash')?.textContent.includes('No telephony')",
        WAIT,
    )
    .await;
    assert_no_errors(&page, &[401, 409]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_call_waits_in_callbacks_until_the_click_to_call_from_the_card_gets_through() {
    use crate::ami_calls::{after, fixture, with_ami, FakeAsterisk};
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("listen");
    let port = listener.local_addr().expect("addr").port();
    let app = spawn_app_with(with_ami(port)).await;
    let sales = app.department("Sales").await;
    let anna = app.user("anna", Role::Operator, Some(sales)).await;
    app.set_extension(&anna, "101").await;
    // The caller of the missed call (fixture missed_cancelled: 8 495 111-22-33).
    let client = app
        .company("Horns & Hooves", "+7 495 111-22-33", &anna)
        .await;
    let mut pbx = FakeAsterisk::accept(&listener).await;
    pbx.login().await;
    let page = console(&browser, &app.base, "anna").await;

    // 101 rings, the caller gives up: a callback for anna, counted at the top.
    pbx.write(&after(&fixture("missed_cancelled"), "ListItems: 0"))
        .await;
    page.wait_for(
        "document.querySelector('#callbacks-count')?.textContent === '1'",
        WAIT,
    )
    .await;
    page.click("#callbacks-toggle").await;
    page.wait_for(
        "document.querySelector('#callbacks-list li.callback')?.textContent.includes('Call back +74951112233')",
        WAIT,
    )
    .await;
    assert!(page
        .text("#callbacks-list li.callback")
        .await
        .contains("caller hung up"));
    page.screenshot(&screenshot_path("callbacks")).await;

    // Anna opens the client's card and clicks its number: the PBX gets the Originate.
    page.eval(&format!(
        "location.hash = '#/clients/{client}'; location.reload()"
    ))
    .await;
    page.wait_for(
        "document.querySelector('#card-identities button.dial')",
        WAIT,
    )
    .await;
    page.click("#card-identities button.dial").await;
    let originate = pbx.action().await;
    assert_eq!(originate["Action"], "Originate", "{originate:?}");
    assert_eq!(originate["Channel"], "PJSIP/101");
    let our_id = originate["ChannelId"].clone();
    pbx.respond(&originate, "Message: Originate successfully queued\r\n")
        .await;
    // The PBX connects the call (fixture click_to_call_ok, to this client's number).
    pbx.write(
        &after(
            &fixture("click_to_call_ok"),
            "Message: Originate successfully queued",
        )
        .replace("kommutator-7", &originate["ActionID"])
        .replace("crm-c2c-0001", &our_id)
        .replace("79161234567", "74951112233"),
    )
    .await;
    // Got through: the callback is done, and the list says so without a reload.
    page.click("#callbacks-toggle").await;
    page.wait_for("document.querySelector('#callbacks-empty')", WAIT)
        .await;
    assert!(
        page.eval("!document.querySelector('#callbacks-count')")
            .await
            == json!(true)
    );
    let (_, calls) = app.get(Some(&app.admin), "/api/v1/calls?limit=10").await;
    let c2c = calls["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|k| k["external_id"] == our_id.as_str())
        .cloned()
        .expect("the click-to-call is on record");
    assert_eq!(c2c["status"], "completed", "{c2c}");
    assert_eq!(c2c["client_id"], client);
    assert_no_errors(&page, &[401]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_classifier_hint_shows_on_a_new_inquiry_and_a_dislike_with_the_right_type_is_saved() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let app = spawn_app_with(with_api_channel("Sales", None)).await;
    let sales = app.department("Sales").await;
    let key = app.api_key(&[Scope::DialogsWrite]).await;
    app.user("anna", Role::Operator, Some(sales)).await;
    // Thresholds of 1: every reading is a hint, none is applied.
    for (k, name) in [
        ("interest", "Sales inquiry"),
        ("claim", "Claim"),
        ("bug", "Bug report"),
        ("other", "Other"),
    ] {
        let (status, body) = app
            .request(
                reqwest::Method::PUT,
                Some(&app.admin),
                &format!("/api/v1/request-types/{k}"),
                Some(&json!({"name": name, "auto_threshold": 1.0})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let page = console(&browser, &app.base, "anna").await;

    let ev = inbound(
        "m-h1",
        "t-h1",
        "+7 916 321-00-11",
        "Верните деньги: стиральная машина течёт после первой же стирки, требую замену",
    );
    let (status, out) = ingest(&app, &key, &ev).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let dialog = out["dialog"]["id"].as_i64().expect("dialog");
    let top = out["message"]["classification"]["ranked"][0]["type"]
        .as_str()
        .expect("top")
        .to_owned();
    page.wait_for(
        &format!("document.querySelector('.dialog-item[data-id=\"{dialog}\"]')"),
        WAIT,
    )
    .await;
    page.click(&format!(".dialog-item[data-id=\"{dialog}\"]"))
        .await;
    page.wait_for("document.querySelector('#messages li.msg .hint')", WAIT)
        .await;
    let hint = page.text("#messages li.msg .hint").await;
    assert!(hint.contains("Looks like:"), "{hint}");
    assert!(hint.contains('%'), "{hint}");
    page.screenshot(&screenshot_path("classifier-hint")).await;

    // Dislike, then pick the right type.
    let right = if top == "bug" { "claim" } else { "bug" };
    page.click("#messages li.msg .hint-dislike").await;
    page.wait_for("document.querySelector('.hint-pick')", WAIT)
        .await;
    page.eval(&format!(
        "(() => {{ const s = document.querySelector('.hint-pick'); s.value = '{right}'; \
         s.dispatchEvent(new Event('change')); }})()"
    ))
    .await;
    page.wait_for("document.querySelector('#messages .hint-done')", WAIT)
        .await;
    let (_, d) = app
        .get(Some(&app.admin), &format!("/api/v1/dialogs/{dialog}"))
        .await;
    assert_eq!(d["request_type"], right, "{d}");
    assert_eq!(d["request_type_by"], "operator", "{d}");
    // The dialog's header shows its type, live.
    page.wait_for(
        "document.querySelector('#request-type')?.textContent.length > 0",
        WAIT,
    )
    .await;
    let badge = page.text("#request-type").await;
    assert_eq!(
        badge,
        if right == "bug" {
            "Bug report"
        } else {
            "Claim"
        },
        "{badge}"
    );
    assert_no_errors(&page, &[401]);
}

#[tokio::test]
async fn a_suggested_answer_is_inserted_into_the_reply_with_its_links_and_refreshed_live() {
    let Some(browser) = Browser::launch().await else {
        return;
    };
    let app = spawn_app_with(with_api_channel("Sales", None)).await;
    let sales = app.department("Sales").await;
    let key = app.api_key(&[Scope::DialogsWrite]).await;
    app.user("anna", Role::Operator, Some(sales)).await;
    for body in [
        json!({"title": "Сроки доставки", "tags": ["доставка"],
            "body": "Доставка по Москве — 1–2 дня. Отследить заказ: [трек-номер](https://shop.example/track).\n![Где трек-номер](https://shop.example/track.png)"}),
        json!({"title": "Returns and refunds", "language": "en",
            "body": "Fill in the [return form](https://shop.example/return); the refund takes 5 to 10 days."}),
    ] {
        let (status, a) = app
            .post(Some(&app.admin), "/api/v1/kb/articles", &body)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{a}");
    }
    let page = console(&browser, &app.base, "anna").await;
    let ev = inbound(
        "m-s1",
        "t-s1",
        "+7 916 321-00-12",
        "Добрый день, когда доставка моего заказа?",
    );
    let (status, out) = ingest(&app, &key, &ev).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    let dialog = out["dialog"]["id"].as_i64().expect("dialog");
    page.wait_for(
        &format!("document.querySelector('.dialog-item[data-id=\"{dialog}\"]')"),
        WAIT,
    )
    .await;
    page.click(&format!(".dialog-item[data-id=\"{dialog}\"]"))
        .await;
    page.wait_for(
        "document.querySelector('#suggestions .suggestion .title')?.textContent === 'Сроки доставки'",
        WAIT,
    )
    .await;
    let links = page
        .eval("[...document.querySelectorAll('#suggestions .suggestion:first-child .links a')].map(a => a.href)")
        .await;
    assert_eq!(
        links,
        json!([
            "https://shop.example/track",
            "https://shop.example/track.png"
        ])
    );
    page.screenshot(&screenshot_path("kb-suggestions")).await;

    // One click puts the answer, with its links and image, into the reply.
    page.click("#suggestions .suggestion:first-child .suggestion-insert")
        .await;
    let reply = page
        .eval("document.querySelector('#reply-text').value")
        .await;
    let reply = reply.as_str().unwrap_or_default().to_owned();
    assert!(
        reply.contains("трек-номер (https://shop.example/track)")
            && reply.contains("https://shop.example/track.png"),
        "{reply}"
    );
    // The use is recorded.
    let mut used = 0;
    for _ in 0..50 {
        let (_, list) = app
            .get(Some(&app.admin), "/api/v1/kb/articles?language=ru")
            .await;
        used = list[0]["article"]["used_count"].as_i64().unwrap_or(0);
        if used == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(used, 1);
    page.click("#reply-send").await;
    page.wait_for(
        "[...document.querySelectorAll('#messages li.msg')].some(e => e.textContent.includes('shop.example/track.png'))",
        WAIT,
    )
    .await;

    // The customer asks something else: the panel follows without a reload.
    let ev = inbound(
        "m-s2",
        "t-s1",
        "+7 916 321-00-12",
        "And how do I return it and get a refund?",
    );
    let (status, out) = ingest(&app, &key, &ev).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    page.wait_for(
        "document.querySelector('#suggestions .suggestion .title')?.textContent === 'Returns and refunds'",
        WAIT,
    )
    .await;
    assert_no_errors(&page, &[401]);
}
