//! The website chat widget (`/widget.js`) on a customer's page, in headless Chromium: the
//! visitor's message reaches the operator's console, the operator's reply appears in the
//! widget, and a page reload keeps the conversation (and later replies still arrive).

use std::time::Duration;

use axum::response::Html;
use axum::routing::get;
use kommutator::config::WidgetSite;
use kommutator::domain::Role;
use serde_json::{json, Value};

use crate::browser::{Browser, Page};
use crate::helpers::*;

const WAIT: Duration = Duration::from_secs(10);

/// Serves the customer's page (another origin than the hub's) with the widget's tag.
fn serve_shop_page(listener: tokio::net::TcpListener, hub: &str) {
    let html = format!(
        "<!doctype html><html><head><meta charset=utf-8><title>Shop</title><link rel=icon href=\"data:,\">\
         <style>* {{ color: red !important; font-size: 30px !important; }}</style>\
         <script>window.__before = Object.keys(window);</script></head>\
         <body><h1>Our shop</h1>\
         <script src=\"{hub}/widget.js\" data-site=\"shop\" data-lang=\"en\" async></script>\
         </body></html>"
    );
    let app = axum::Router::new().route(
        "/",
        get(move || {
            let html = html.clone();
            async move { Html(html) }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
}

/// Runs `body` with `r` bound to the widget's shadow root.
async fn in_widget(page: &Page, body: &str) -> Value {
    page.eval(&format!(
        "(() => {{ const r = document.querySelector('#kommutator-widget').shadowRoot; {body} }})()"
    ))
    .await
}

/// A JS condition on the widget's shadow root `r`, for `wait_for`.
fn widget_cond(cond: &str) -> String {
    format!(
        "(() => {{ const h = document.querySelector('#kommutator-widget'); \
         const r = h && h.shadowRoot; return !!r && ({cond}); }})()"
    )
}

fn widget_shows(dir: &str, text: &str) -> String {
    widget_cond(&format!(
        "[...r.querySelectorAll('.m.{dir}')].some(e => e.textContent === {})",
        json!(text)
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_chats_with_an_operator_and_a_reload_keeps_the_conversation() {
    let Some(operator_browser) = Browser::launch().await else {
        return;
    };
    let Some(visitor_browser) = Browser::launch().await else {
        return;
    };
    // The customer's site, on its own origin, which the hub's site config allows.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let shop = format!("http://{}", listener.local_addr().expect("addr"));
    let origin = shop.clone();
    let app = spawn_app_with(move |c| {
        c.widget.sites.insert(
            "shop".into(),
            WidgetSite {
                department: Some("Sales".into()),
                origins: vec![origin],
                identity_secret: None,
            },
        );
        c.realtime.presence_grace_secs = 1;
    })
    .await;
    let sales = app.department("Sales").await;
    app.user("anna", Role::Operator, Some(sales)).await;
    serve_shop_page(listener, &app.base);

    // The operator is online.
    let op = operator_browser.new_page().await;
    op.goto(&app.base).await;
    op.eval("localStorage.setItem('kommutator.lang', 'en')")
        .await;
    op.reload().await;
    op.fill("#login", "anna").await;
    op.fill("#password", PASSWORD).await;
    op.press("Enter").await;
    op.wait_for(
        "document.querySelector('#conn')?.dataset.state === 'live'",
        WAIT,
    )
    .await;

    // The visitor opens the chat, fills the pre-chat form and writes.
    let visitor = visitor_browser.new_page().await;
    visitor.goto(&shop).await;
    visitor
        .wait_for(&widget_cond("!!r.querySelector('.bubble')"), WAIT)
        .await;
    let globals = visitor
        .eval("Object.keys(window).filter(k => !window.__before.includes(k) && k !== '__before')")
        .await;
    assert_eq!(globals, json!(["KommutatorWidget"]), "one global only");
    in_widget(&visitor, "r.querySelector('.bubble').click();").await;
    visitor
        .wait_for(&widget_cond("!!r.querySelector('form.pre')"), WAIT)
        .await;
    in_widget(
        &visitor,
        "r.querySelector('input[name=name]').value = 'Maria';
         r.querySelector('input[name=contact]').value = 'maria@example.com';
         r.querySelector('input[name=consent]').checked = true;
         r.querySelector('form.pre').requestSubmit();",
    )
    .await;
    let say = |text: &str| {
        format!(
            "r.querySelector('textarea').value = {}; r.querySelector('form:not(.pre)').requestSubmit();",
            json!(text)
        )
    };
    in_widget(&visitor, &say("Hello! Is the blue sofa in stock?")).await;
    visitor
        .wait_for(
            &widget_cond(
                "[...r.querySelectorAll('.m.in')].some(e => e.textContent === 'Hello! Is the blue sofa in stock?' && !e.classList.contains('pending'))",
            ),
            WAIT,
        )
        .await;

    // It reaches the operator's console, live.
    op.wait_for(
        "document.querySelector('.dialog-item .channel.ch-widget')",
        WAIT,
    )
    .await;
    op.click(".dialog-item").await;
    op.wait_for(
        "[...document.querySelectorAll('#messages .msg.inbound .body')].some(e => e.textContent === 'Hello! Is the blue sofa in stock?')",
        WAIT,
    )
    .await;
    op.wait_for(
        "document.querySelector('#party-name')?.textContent === 'Maria'",
        WAIT,
    )
    .await;

    // The operator answers; the visitor sees it.
    op.fill("#reply-text", "Yes, we have two in stock.").await;
    op.press("Enter").await;
    visitor
        .wait_for(&widget_shows("out", "Yes, we have two in stock."), WAIT)
        .await;
    visitor.screenshot(&screenshot_path("widget")).await;

    // A reload keeps the conversation; a reply sent meanwhile arrives too.
    visitor.reload().await;
    op.fill("#reply-text", "Shall I reserve one?").await;
    op.press("Enter").await;
    visitor
        .wait_for(&widget_cond("!!r.querySelector('.bubble')"), WAIT)
        .await;
    in_widget(&visitor, "r.querySelector('.bubble').click();").await;
    visitor
        .wait_for(
            &widget_shows("in", "Hello! Is the blue sofa in stock?"),
            WAIT,
        )
        .await;
    visitor
        .wait_for(&widget_shows("out", "Yes, we have two in stock."), WAIT)
        .await;
    visitor
        .wait_for(&widget_shows("out", "Shall I reserve one?"), WAIT)
        .await;
    let shown = in_widget(
        &visitor,
        "return [...r.querySelectorAll('.m')].map(e => e.textContent);",
    )
    .await;
    assert_eq!(
        shown,
        json!([
            "Hello! Is the blue sofa in stock?",
            "Yes, we have two in stock.",
            "Shall I reserve one?"
        ]),
        "each message once, in order"
    );

    // The visitor writes again after the reload: the same dialog.
    in_widget(&visitor, &say("Yes please, until Saturday.")).await;
    op.wait_for(
        "[...document.querySelectorAll('#messages .msg.inbound .body')].some(e => e.textContent === 'Yes please, until Saturday.')",
        WAIT,
    )
    .await;
    assert_eq!(op.count(".dialog-item").await, 1);
    let errors: Vec<String> = visitor.errors();
    assert!(
        errors.is_empty(),
        "errors on the customer's page: {errors:?}"
    );
}
