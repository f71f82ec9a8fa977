//! The operator console: static files from `console/`, embedded in the binary at build time
//! (no Node.js, no build step, nothing loaded from elsewhere).
//!
//! `/` is the console's page; `/assets/<name>` its scripts, styles and icons. Every answer
//! carries an `ETag` (the first 16 hex digits of the file's SHA-256) and `no-cache`, so a
//! browser revalidates with one cheap request and never runs a stale console after an
//! upgrade. The page's Content-Security-Policy allows scripts, styles, images and sockets
//! from the hub only: customer text that slipped into markup could still not run a script
//! or load a remote image.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// One embedded file.
struct Asset {
    name: &'static str,
    mime: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $mime:expr) => {
        Asset {
            name: $name,
            mime: $mime,
            body: include_bytes!(concat!("../../console/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("canned.js", JS),
    asset!("dom.js", JS),
    asset!("i18n.js", JS),
    asset!("callbacks.js", JS),
    asset!("calls.js", JS),
    asset!("hint.js", JS),
    asset!("suggest.js", JS),
    asset!("client.js", JS),
    asset!("intake.js", JS),
    asset!("interest.js", JS),
    asset!("live.js", JS),
    asset!("notify.js", JS),
    asset!("party.js", JS),
    asset!("supervisor.js", JS),
    asset!("widget.js", JS),
    asset!("workspace.js", JS),
];

/// The console's Content-Security-Policy.
pub const CSP: &str =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; font-src 'self'; media-src 'self'; manifest-src 'self'; base-uri 'none'; \
    form-action 'self'; frame-src 'self'; frame-ancestors 'none'";

fn etags() -> &'static Vec<String> {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let d = Sha256::digest(a.body);
                let hex: String = d.iter().take(8).map(|b| format!("{b:02x}")).collect();
                format!("\"{hex}\"")
            })
            .collect()
    })
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.name == name) else {
        return (StatusCode::NOT_FOUND, "no such console file").into_response();
    };
    let asset = &ASSETS[i];
    let etag = &etags()[i];
    let mut out = HeaderMap::new();
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(etag) {
        out.insert(header::ETAG, v);
    }
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    if fresh {
        return (StatusCode::NOT_MODIFIED, out).into_response();
    }
    out.insert(header::CONTENT_TYPE, HeaderValue::from_static(asset.mime));
    if asset.mime.starts_with("text/html") {
        out.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        out.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        out.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
    }
    (StatusCode::OK, out, asset.body).into_response()
}

/// `GET /`: the console.
pub async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `GET /widget.js`: the website chat widget (one script tag on a customer's site).
pub async fn widget(headers: HeaderMap) -> Response {
    serve("widget.js", &headers)
}

/// `GET /assets/{name}`.
pub async fn asset(Path(name): Path<String>, headers: HeaderMap) -> Response {
    if name == "index.html" {
        return (StatusCode::NOT_FOUND, "no such console file").into_response();
    }
    serve(&name, &headers)
}

/// Names and sizes of the embedded files (for the size report).
pub fn sizes() -> impl Iterator<Item = (&'static str, usize)> {
    ASSETS.iter().map(|a| (a.name, a.body.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_is_served_as_javascript() {
        for a in ASSETS {
            if a.name.ends_with(".js") {
                assert_eq!(a.mime, JS, "{}", a.name);
            }
            assert!(!a.body.is_empty(), "{} is empty", a.name);
        }
    }

    #[test]
    fn the_console_stays_small() {
        // The budget is 300 KB compressed on first load; uncompressed is stricter.
        let total: usize = sizes().map(|(_, n)| n).sum();
        assert!(total < 300 * 1024, "the console is {total} bytes");
    }

    #[test]
    fn etags_differ_and_revalidate() {
        let tags = etags();
        assert_eq!(tags.len(), ASSETS.len());
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_str(&tags[1]).expect("etag"),
        );
        assert_eq!(serve(ASSETS[1].name, &h).status(), StatusCode::NOT_MODIFIED);
        assert_eq!(serve(ASSETS[0].name, &h).status(), StatusCode::OK);
        assert_eq!(
            serve("nope.js", &HeaderMap::new()).status(),
            StatusCode::NOT_FOUND
        );
    }
}
