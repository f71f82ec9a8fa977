//! HTML bodies: sanitizing for display (ammonia) and converting to plain text for the
//! quote splitter and the hub's `text`.

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;

/// The sanitizer for display: ammonia's safe defaults (no script, style, forms, iframes,
/// event handlers), plus: links open in a new tab without a referrer; relative URLs are
/// dropped; images keep only `cid:` sources (a remote image would let the sender see when
/// an operator opens the mail), see [`sanitize_html`] for what happens to the others;
/// `style` attributes keep a few presentational properties.
static SANITIZER: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
    let mut b = ammonia::Builder::default();
    b.add_url_schemes(["cid"])
        .url_relative(ammonia::UrlRelative::Deny)
        .link_rel(Some("noopener noreferrer"))
        .set_tag_attribute_value("a", "target", "_blank")
        .add_generic_attributes(["style"])
        .filter_style_properties(HashSet::from([
            "color",
            "background-color",
            "font-weight",
            "font-style",
            "font-size",
            "text-align",
            "text-decoration",
            "vertical-align",
            "white-space",
        ]))
        .attribute_filter(|element, attribute, value| {
            if element == "img" && attribute == "src" {
                let v = value.trim_start();
                if v.len() >= 4 && v.get(..4).is_some_and(|s| s.eq_ignore_ascii_case("cid:")) {
                    return Some(value.into());
                }
                return None;
            }
            Some(value.into())
        });
    b
});

/// An `<img ...>` tag as ammonia serializes it: attributes always double-quoted, `"` inside
/// a value escaped, so `[^"]*` matches a whole value.
static IMG_TAG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"<img((?:\s+[a-zA-Z0-9_:-]+="[^"]*")*)\s*/?>"#).expect("static regex compiles")
});
static ATTR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"\s+([a-zA-Z0-9_:-]+)="([^"]*)""#).expect("static regex compiles")
});

/// Sanitizes an HTML body for display. Images without a `cid:` source lose their `src` in
/// ammonia's filter; here they are replaced by their alt text (escaped), or removed.
pub(crate) fn sanitize_html(html: &str) -> String {
    let cleaned = SANITIZER.clean(html).to_string();
    IMG_TAG
        .replace_all(&cleaned, |caps: &regex::Captures<'_>| {
            let attrs = caps.get(1).map_or("", |m| m.as_str());
            let mut has_src = false;
            let mut alt = None;
            for a in ATTR.captures_iter(attrs) {
                match a.get(1).map(|m| m.as_str()) {
                    Some("src") => has_src = true,
                    Some("alt") => alt = a.get(2).map(|m| m.as_str()),
                    _ => {}
                }
            }
            if has_src {
                caps.get(0).map_or(String::new(), |m| m.as_str().to_owned())
            } else {
                alt.map(|a| escape_text(&decode_entities(a)))
                    .unwrap_or_default()
            }
        })
        .into_owned()
}

fn escape_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

/// Elements whose content is not text to show.
const SKIP_CONTENT: &[&str] = &["script", "style", "head", "title", "template", "noscript"];
/// Elements that start and end a line.
const BLOCK: &[&str] = &[
    "address",
    "article",
    "aside",
    "blockquote",
    "center",
    "dd",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "li",
    "main",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "table",
    "tbody",
    "tfoot",
    "thead",
    "tr",
    "ul",
];
/// Blocks separated from what follows by a blank line.
const PARAGRAPH: &[&str] = &["p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol"];

/// Converts an HTML body to plain text: tags stripped, entities decoded, a line break for
/// `<br>` and at each block element, `<li>` as "- ", and the content of `<blockquote>`
/// prefixed with "> " per level (so the quote splitter sees it as quoted). Whitespace is
/// collapsed as a browser would, except inside `<pre>`.
pub(crate) fn html_to_text(html: &str) -> String {
    let mut w = TextWriter::default();
    let mut rest = html;
    let mut skip_until: Option<String> = None;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            if skip_until.is_none() {
                w.text(rest);
            }
            break;
        };
        let (before, from_lt) = rest.split_at(lt);
        if skip_until.is_none() {
            w.text(before);
        }
        // A comment or a declaration: skip it whole.
        if let Some(after) = from_lt.strip_prefix("<!--") {
            rest = after
                .find("-->")
                .map_or("", |i| after.get(i + 3..).unwrap_or(""));
            continue;
        }
        let Some((tag, after)) = split_tag(from_lt) else {
            // A lone '<' that does not open a tag is text.
            if skip_until.is_none() {
                w.text("<");
            }
            rest = from_lt.get(1..).unwrap_or("");
            continue;
        };
        rest = after;
        let (closing, name) = tag_name(tag);
        if let Some(until) = &skip_until {
            if closing && name == *until {
                skip_until = None;
            } else if until == "head" && !closing && name == "body" {
                // A head that is never closed ends where the body starts.
                skip_until = None;
            }
            continue;
        }
        if name.is_empty() {
            continue;
        }
        if !closing && SKIP_CONTENT.contains(&name.as_str()) && !tag.ends_with("/>") {
            skip_until = Some(name);
            continue;
        }
        match name.as_str() {
            "br" => w.newline(),
            "blockquote" => {
                w.block(false);
                if closing {
                    w.quote_depth = w.quote_depth.saturating_sub(1);
                } else {
                    w.quote_depth = w.quote_depth.saturating_add(1);
                }
            }
            "pre" => {
                w.block(false);
                w.pre = !closing;
            }
            "li" if !closing => {
                w.block(false);
                w.text_raw("- ");
            }
            "td" | "th" if closing => w.text_raw(" "),
            n if BLOCK.contains(&n) => w.block(PARAGRAPH.contains(&n)),
            _ => {}
        }
    }
    w.finish()
}

/// Splits `<...>` off the front of `s` (which starts with '<'), honouring quoted attribute
/// values. `None` when this '<' does not open a tag.
fn split_tag(s: &str) -> Option<(&str, &str)> {
    let mut chars = s.char_indices();
    chars.next(); // '<'
    match chars.clone().next() {
        Some((_, c)) if c.is_ascii_alphabetic() || c == '/' || c == '!' || c == '?' => {}
        _ => return None,
    }
    let mut quote: Option<char> = None;
    for (i, c) in chars {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '>' => {
                let end = i + c.len_utf8();
                return Some((s.get(..end)?, s.get(end..)?));
            }
            None => {}
        }
    }
    // Unterminated tag: the rest of the input is inside it.
    Some((s, ""))
}

fn tag_name(tag: &str) -> (bool, String) {
    let inner = tag.trim_start_matches('<');
    let (closing, inner) = match inner.strip_prefix('/') {
        Some(r) => (true, r),
        None => (false, inner),
    };
    let name: String = inner
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (closing, name)
}

#[derive(Default)]
struct TextWriter {
    out: String,
    /// Text of the current line is pending whitespace (collapse to one space).
    pending_space: bool,
    at_line_start: bool,
    quote_depth: usize,
    pre: bool,
    /// Newlines owed before the next text (1 = line break, 2 = blank line).
    owed_newlines: usize,
}

impl TextWriter {
    fn flush_newlines(&mut self) {
        if self.owed_newlines > 0 && !self.out.is_empty() {
            for _ in 0..self.owed_newlines {
                self.out.push('\n');
            }
            self.at_line_start = true;
        }
        self.owed_newlines = 0;
    }

    fn start_text(&mut self) {
        self.flush_newlines();
        if self.out.is_empty() {
            self.at_line_start = true;
        }
        if self.at_line_start {
            if self.quote_depth > 0 {
                for _ in 0..self.quote_depth.min(32) {
                    self.out.push('>');
                }
                self.out.push(' ');
            }
            self.at_line_start = false;
            self.pending_space = false;
        } else if self.pending_space {
            self.out.push(' ');
            self.pending_space = false;
        }
    }

    fn text(&mut self, raw: &str) {
        let decoded = decode_entities(raw);
        if self.pre {
            for (i, line) in decoded.split('\n').enumerate() {
                if i > 0 {
                    self.newline();
                }
                let line = line.trim_end_matches('\r');
                if !line.is_empty() {
                    self.start_text();
                    self.out.push_str(line);
                }
            }
            return;
        }
        for (i, word) in decoded
            .split(|c: char| c.is_whitespace() && c != '\u{a0}')
            .enumerate()
        {
            if i > 0 {
                self.pending_space = true;
            }
            if word.is_empty() {
                continue;
            }
            self.start_text();
            self.out.push_str(&word.replace('\u{a0}', " "));
            self.pending_space = false;
        }
    }

    fn text_raw(&mut self, s: &str) {
        self.start_text();
        self.out.push_str(s);
    }

    fn newline(&mut self) {
        self.flush_newlines();
        self.out.push('\n');
        self.at_line_start = true;
        self.pending_space = false;
    }

    fn block(&mut self, paragraph: bool) {
        let want = if paragraph { 2 } else { 1 };
        if self.at_line_start || self.out.is_empty() {
            // Already at a line start: a paragraph still wants its blank line.
            if paragraph && !self.out.is_empty() && !self.out.ends_with("\n\n") {
                self.owed_newlines = self.owed_newlines.max(1);
            }
        } else {
            self.owed_newlines = self.owed_newlines.max(want);
        }
        self.pending_space = false;
    }

    fn finish(self) -> String {
        let mut lines: Vec<&str> = self.out.lines().map(str::trim_end).collect();
        // At most one blank line in a row.
        lines.dedup_by(|a, b| a.is_empty() && b.is_empty());
        lines.join("\n").trim().to_owned()
    }
}

/// Decodes character references: `&#NN;`, `&#xHH;` and the named ones mail-parser knows.
/// A `&` that does not start a reference stays as it is.
pub(crate) fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        let (before, from_amp) = rest.split_at(amp);
        out.push_str(before);
        let body = from_amp.get(1..).unwrap_or("");
        let end = body
            .char_indices()
            .take(32)
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '#'));
        match end {
            Some((i, ';')) if i > 0 => {
                let name = body.get(..i).unwrap_or("");
                if let Some(c) = decode_reference(name) {
                    out.push(c);
                    rest = body.get(i + 1..).unwrap_or("");
                    continue;
                }
                out.push('&');
                rest = body;
            }
            _ => {
                out.push('&');
                rest = body;
            }
        }
    }
    out.push_str(rest);
    out
}

fn decode_reference(name: &str) -> Option<char> {
    if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse::<u32>().ok()?,
        };
        return Some(match char::from_u32(code) {
            Some('\0') | None => '\u{fffd}',
            Some(c) => c,
        });
    }
    // mail-parser's table of named references; it appends the character, or the token
    // itself when the name is unknown.
    let token = format!("&{name};");
    let mut decoded = String::new();
    mail_parser::decoders::html::add_html_token(&mut decoded, token.as_bytes(), false);
    let mut chars = decoded.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Some(c),
        _ => None,
    }
}

#[allow(clippy::unwrap_used)]
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_html_keeps_blocks_and_decodes_entities() {
        let html = "<html><head><title>t</title><style>p{color:red}</style></head><body>\
            <p>Hello&nbsp;world &amp; friends</p><div>line&nbsp;2<br>line 3</div>\
            <ul><li>one</li><li>two</li></ul><script>alert(1)</script>\
            <p>caf&eacute; &#1055;&#x440;&#1080;&#1074;&#1077;&#1090; &unknown; a&b</p></body></html>";
        let text = html_to_text(html);
        assert_eq!(
            text,
            "Hello world & friends\n\nline 2\nline 3\n\n- one\n- two\n\ncafé Привет &unknown; a&b"
        );
    }

    #[test]
    fn blockquote_becomes_quoted_lines() {
        let html = "<div>Reply</div><div class=\"gmail_quote\"><div>On Tue, 1 Dec 2026 at 10:00, A &lt;a@x.ru&gt; wrote:<br></div>\
            <blockquote>old <b>text</b><br>more</blockquote></div>";
        assert_eq!(
            html_to_text(html),
            "Reply\nOn Tue, 1 Dec 2026 at 10:00, A <a@x.ru> wrote:\n> old text\n> more"
        );
    }

    #[test]
    fn broken_html_does_not_panic() {
        for s in [
            "<",
            "<a",
            "<a href='x",
            "&",
            "&#",
            "&#x;",
            "&#99999999;",
            "<!--",
            "<p>é<",
            "<script>never closed",
            "a < b > c",
        ] {
            let _ = html_to_text(s);
            let _ = sanitize_html(s);
        }
        assert_eq!(html_to_text("a < b"), "a < b");
    }

    #[test]
    fn sanitizer_removes_active_content_and_remote_images() {
        let html = r#"<p onclick="x()">Hi<script>alert(1)</script><style>p{}</style>
            <iframe src="https://evil"></iframe><form action="https://evil"><input name="q"></form>
            <img src="https://tracker.example/p.gif" alt="Logo &quot;x&quot; <b>">
            <img src="http://tracker.example/1.gif">
            <img src="cid:part1.abc@example.com" alt="inline">
            <a href="https://example.com/x" onmouseover="x()">link</a>
            <a href="javascript:alert(1)">js</a>
            <span style="color: red; background: url(https://tracker/)">c</span></p>"#;
        let out = sanitize_html(html);
        for bad in [
            "script",
            "alert",
            "iframe",
            "form",
            "input",
            "onclick",
            "onmouseover",
            "tracker",
            "javascript",
            "<style",
            "url(",
        ] {
            assert!(!out.contains(bad), "{bad} in {out}");
        }
        assert!(out.contains(r#"src="cid:part1.abc@example.com""#), "{out}");
        assert!(out.contains("Logo &quot;x&quot; &lt;b&gt;"), "{out}");
        assert!(out.contains(r#"rel="noopener noreferrer""#), "{out}");
        assert!(out.contains(r#"target="_blank""#), "{out}");
        assert!(out.contains("color:red"), "{out}");
    }
}
