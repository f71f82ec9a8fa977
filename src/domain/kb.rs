//! The knowledge base (1C:CRM "база знаний"): ready answers with images and links that
//! iConsultant suggests to the operator while a dialog is open.
//!
//! An article's body is plain text with two pieces of markup, so that one action can put
//! its text, links and images into a reply on any channel:
//! - `[text](url)`: a link;
//! - `![alt](url)`: an image.
//!
//! A URL is `http(s)://…`, `mailto:`, `tel:` or a path on the hub (`/api/v1/files/…`);
//! anything else (`javascript:`, `data:`) is refused when the article is saved.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::validate::{required_text, FieldError};
use super::{Actor, Id, Role, Scope, Timestamp};

/// Longest article body, in characters.
pub const KB_BODY_MAX: usize = 64_000;
/// Most tags on an article.
pub const KB_TAGS_MAX: usize = 20;
/// Longest tag, in characters.
pub const KB_TAG_MAX: usize = 40;
/// Most articles in a knowledge base: each node keeps them all in its index.
pub const KB_ARTICLES_MAX: i64 = 50_000;
/// How many suggestions an open dialog gets.
pub const SUGGESTIONS: usize = 5;

/// An article.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct KbArticle {
    /// Article id.
    pub id: Id,
    /// One line.
    pub title: String,
    /// Text with `[text](url)` links and `![alt](url)` images.
    pub body: String,
    /// Keywords, lowercase.
    pub tags: Vec<String>,
    /// `ru`, `en` (or another two-letter code): the language it is written in.
    pub language: String,
    /// The department it belongs to: suggested in that department's dialogs only, and
    /// managed by its supervisors. `null`: everyone's.
    pub department_id: Option<Id>,
    /// Whether it may be sent to customers as it is; an internal article is for operators.
    pub public: bool,
    /// How many times operators put it into a reply from the suggestions.
    pub used_count: i64,
    /// Who wrote it.
    pub created_by: Option<Id>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// Input for a new article.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKbArticle {
    /// 1 to 200 characters, one line.
    pub title: String,
    /// 1 to 64,000 characters; see the module docs for links and images.
    pub body: String,
    /// Up to 20 keywords of up to 40 characters.
    #[serde(default)]
    pub tags: Vec<String>,
    /// A two-letter language code; `ru` when not given.
    #[serde(default)]
    pub language: Option<String>,
    /// The department; `null` for everyone's.
    #[serde(default)]
    pub department_id: Option<Id>,
    /// Whether customers may be sent it (default true).
    #[serde(default)]
    pub public: Option<bool>,
}

/// Changes to an article; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KbArticlePatch {
    /// New title.
    #[serde(default)]
    pub title: Option<String>,
    /// New body.
    #[serde(default)]
    pub body: Option<String>,
    /// New tags (replace the old ones).
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// New language.
    #[serde(default)]
    pub language: Option<String>,
    /// New department: a number, or `null` to make it everyone's.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Id>)]
    pub department_id: Option<Option<Id>>,
    /// New audience.
    #[serde(default)]
    pub public: Option<bool>,
}

/// A field that is present in the JSON, possibly as `null`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<Id>>, D::Error> {
    Option::<Id>::deserialize(d).map(Some)
}

/// An article's fields after checking.
#[derive(Debug, Clone, PartialEq)]
pub struct KbFields {
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Language.
    pub language: String,
}

impl NewKbArticle {
    /// Checks and trims the text fields.
    ///
    /// # Errors
    /// The first field that is wrong.
    pub fn normalized(&self) -> Result<KbFields, FieldError> {
        Ok(KbFields {
            title: kb_title(&self.title)?,
            body: kb_body(&self.body)?,
            tags: kb_tags(&self.tags)?,
            language: kb_language(self.language.as_deref().unwrap_or("ru"))?,
        })
    }
}

fn kb_title(v: &str) -> Result<String, FieldError> {
    let t = required_text("title", v, super::Limits::NAME)?;
    if t.contains(['\n', '\r', '\t']) {
        return Err(FieldError::new(
            "title",
            "invalid_characters",
            "the title is one line",
        ));
    }
    Ok(t)
}

fn kb_body(v: &str) -> Result<String, FieldError> {
    let b = required_text("body", v, KB_BODY_MAX)?;
    for piece in parse_markup(&b) {
        if let Piece::Link { url, .. } | Piece::Image { url, .. } = piece {
            if !safe_url(url) {
                return Err(FieldError::new(
                    "body",
                    "unsafe_link",
                    format!(
                        "links and images must be http(s), mailto:, tel: or a path on the hub; not {}",
                        url.chars().take(60).collect::<String>()
                    ),
                ));
            }
        }
    }
    Ok(b)
}

fn kb_tags(tags: &[String]) -> Result<Vec<String>, FieldError> {
    if tags.len() > KB_TAGS_MAX {
        return Err(FieldError::new(
            "tags",
            "too_many",
            format!("at most {KB_TAGS_MAX} tags"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    for t in tags {
        let t = required_text("tags", t, KB_TAG_MAX)?.to_lowercase();
        if t.contains(['\n', '\r', '\t']) {
            return Err(FieldError::new(
                "tags",
                "invalid_characters",
                "a tag is one line",
            ));
        }
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

fn kb_language(v: &str) -> Result<String, FieldError> {
    let l = v.trim().to_ascii_lowercase();
    if l.len() == 2 && l.bytes().all(|b| b.is_ascii_lowercase()) {
        Ok(l)
    } else {
        Err(FieldError::new(
            "language",
            "invalid_value",
            "the language is a two-letter code such as ru or en",
        ))
    }
}

impl KbArticlePatch {
    /// Applies the patch to `a` after checking it.
    ///
    /// # Errors
    /// The first field that is wrong.
    pub fn apply(&self, a: &mut KbArticle) -> Result<(), FieldError> {
        if let Some(t) = &self.title {
            a.title = kb_title(t)?;
        }
        if let Some(b) = &self.body {
            a.body = kb_body(b)?;
        }
        if let Some(t) = &self.tags {
            a.tags = kb_tags(t)?;
        }
        if let Some(l) = &self.language {
            a.language = kb_language(l)?;
        }
        if let Some(d) = self.department_id {
            a.department_id = d;
        }
        if let Some(p) = self.public {
            a.public = p;
        }
        Ok(())
    }
}

/// Whether `actor` may write, change or delete an article of `department_id`: admins any;
/// supervisors those of their department and everyone's.
pub fn may_manage_kb(actor: &Actor, department_id: Option<Id>) -> bool {
    match actor {
        Actor::System => true,
        Actor::User {
            role: Role::Admin, ..
        } => true,
        Actor::User {
            role: Role::Supervisor,
            department_id: own,
            ..
        } => department_id.is_none() || department_id == *own,
        Actor::User { .. } => false,
        Actor::ApiKey { .. } => actor.has_scope(Scope::Admin),
    }
}

/// A link or image of an article.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct KbLink {
    /// The link's text or the image's description.
    pub text: String,
    /// Where it points.
    pub url: String,
}

/// One suggested answer for an open dialog.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct KbSuggestion {
    /// The article.
    pub article_id: Id,
    /// Its title.
    pub title: String,
    /// The first words of its text.
    pub snippet: String,
    /// What goes into the reply box: the text with each link as `text (url)` and each image
    /// as its URL on a line of its own.
    pub reply_text: String,
    /// Its links.
    pub links: Vec<KbLink>,
    /// Its images.
    pub images: Vec<KbLink>,
    /// Whether it may be sent to the customer as it is.
    pub public: bool,
    /// Its language.
    pub language: String,
    /// How many times it was used.
    pub used_count: i64,
    /// Relevance, comparable within one list only.
    pub score: f32,
}

impl KbSuggestion {
    /// The suggestion of `a` with relevance `score`.
    pub fn of(a: &KbArticle, score: f32) -> Self {
        let pieces = parse_markup(&a.body);
        let mut links = Vec::new();
        let mut images = Vec::new();
        let mut reply = String::with_capacity(a.body.len());
        for p in &pieces {
            match p {
                Piece::Text(t) => reply.push_str(t),
                Piece::Link { text, url } => {
                    links.push(KbLink {
                        text: (*text).to_owned(),
                        url: (*url).to_owned(),
                    });
                    if text.trim().is_empty() || text == url {
                        reply.push_str(url);
                    } else {
                        reply.push_str(&format!("{text} ({url})"));
                    }
                }
                Piece::Image { alt, url } => {
                    images.push(KbLink {
                        text: (*alt).to_owned(),
                        url: (*url).to_owned(),
                    });
                    if !reply.is_empty() && !reply.ends_with('\n') {
                        reply.push('\n');
                    }
                    reply.push_str(url);
                    reply.push('\n');
                }
            }
        }
        let plain = kb_plain_text(&a.body);
        let snippet = snippet(&plain, 240);
        Self {
            article_id: a.id,
            title: a.title.clone(),
            snippet,
            reply_text: reply.trim().to_owned(),
            links,
            images,
            public: a.public,
            language: a.language.clone(),
            used_count: a.used_count,
            score,
        }
    }
}

/// The first `max` characters of `text` on one line, cut at a word with `…`.
fn snippet(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    let cut: String = flat.chars().take(max).collect();
    let cut = match cut.rfind(' ') {
        Some(i) if i > max / 2 => &cut[..i],
        _ => &cut,
    };
    format!("{cut}…")
}

/// A piece of an article body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Plain text.
    Text(&'a str),
    /// `[text](url)`.
    Link {
        /// The link's text.
        text: &'a str,
        /// Its target.
        url: &'a str,
    },
    /// `![alt](url)`.
    Image {
        /// The description.
        alt: &'a str,
        /// The image's address.
        url: &'a str,
    },
}

/// Splits an article body into text, links and images. Anything that is not exactly
/// `[text](url)` or `![alt](url)` (no newline inside, no space in the URL) stays text.
pub fn parse_markup(body: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut text_start = 0;
    let mut i = 0;
    let b = body.as_bytes();
    while i < b.len() {
        let image = b[i] == b'!' && b.get(i + 1) == Some(&b'[');
        let open = if image { i + 1 } else { i };
        if b[open] != b'[' {
            i += 1;
            continue;
        }
        if let Some((label, url, end)) = link_at(body, open) {
            if text_start < i {
                out.push(Piece::Text(&body[text_start..i]));
            }
            out.push(if image {
                Piece::Image { alt: label, url }
            } else {
                Piece::Link { text: label, url }
            });
            i = end;
            text_start = end;
        } else {
            i = open + 1;
        }
    }
    if text_start < body.len() {
        out.push(Piece::Text(&body[text_start..]));
    }
    out
}

/// `[label](url)` starting at byte `open` (a `[`): the label, the URL and the byte after `)`.
fn link_at(body: &str, open: usize) -> Option<(&str, &str, usize)> {
    let rest = &body[open + 1..];
    let close = rest.find([']', '\n', '['])?;
    if rest.as_bytes()[close] != b']' {
        return None;
    }
    let label = &rest[..close];
    let after = &rest[close + 1..];
    let inner = after.strip_prefix('(')?;
    let end = inner.find([')', '\n', ' ', '\t'])?;
    if inner.as_bytes()[end] != b')' || end == 0 {
        return None;
    }
    let url = &inner[..end];
    // open + '[' + label + ']' + '(' + url + ')'
    let next = open + 1 + close + 1 + 1 + end + 1;
    Some((label, url, next))
}

/// Whether a link or image URL is one the console may show and a reply may carry.
pub fn safe_url(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with('/') {
        return !lower.starts_with("//");
    }
    ["https://", "http://", "mailto:", "tel:"]
        .iter()
        .any(|p| lower.starts_with(p) && lower.len() > p.len())
}

/// The body without markup, for the index: links become their text, images their
/// description.
pub fn kb_plain_text(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    for p in parse_markup(body) {
        match p {
            Piece::Text(t) => out.push_str(t),
            Piece::Link { text, .. } => out.push_str(text),
            Piece::Image { alt, .. } => out.push_str(alt),
        }
    }
    out
}

/// A search over the knowledge base.
#[derive(Debug, Clone, Default, Deserialize, ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct KbQuery {
    /// Free text (any length; the first 32 KiB count). Without it the articles are listed
    /// newest first.
    #[serde(default)]
    pub q: Option<String>,
    /// Only this department's articles and everyone's.
    #[serde(default)]
    pub department_id: Option<Id>,
    /// Only public articles.
    #[serde(default)]
    pub public: Option<bool>,
    /// Only articles in this language.
    #[serde(default)]
    pub language: Option<String>,
    /// At most this many (1 to 200, default 50).
    #[serde(default)]
    pub limit: Option<i64>,
}

/// That an operator used a suggestion in a reply.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KbUseInput {
    /// The dialog it was used in.
    pub dialog_id: Id,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_splits_links_and_images_and_leaves_the_rest() {
        let body = "See [the guide](https://ex.com/g) and ![screen](/api/v1/files/ab).\n[not a link] (x) [x](no space)";
        let p = parse_markup(body);
        assert_eq!(
            p,
            vec![
                Piece::Text("See "),
                Piece::Link {
                    text: "the guide",
                    url: "https://ex.com/g"
                },
                Piece::Text(" and "),
                Piece::Image {
                    alt: "screen",
                    url: "/api/v1/files/ab"
                },
                Piece::Text(".\n[not a link] (x) [x](no space)"),
            ]
        );
        assert_eq!(
            kb_plain_text(body),
            "See the guide and screen.\n[not a link] (x) [x](no space)"
        );
    }

    #[test]
    fn unbalanced_and_hostile_markup_is_text() {
        for body in [
            "[", "]", "![", "[a](", "[a]()", "[a](b", "![](", "[[[[(((", "[]()", "!!![x]",
            "[ü](é)", "[a]\n(b)",
        ] {
            let p = parse_markup(body);
            let joined: String = p
                .iter()
                .map(|p| match p {
                    Piece::Text(t) => (*t).to_owned(),
                    Piece::Link { text, url } => format!("[{text}]({url})"),
                    Piece::Image { alt, url } => format!("![{alt}]({url})"),
                })
                .collect();
            assert_eq!(joined, body, "{body:?} → {p:?}");
        }
    }

    #[test]
    fn unsafe_links_are_refused() {
        for bad in [
            "[x](javascript:alert(1))",
            "![x](data:image/png;base64,AAAA)",
            "[x](//evil.example/)",
            "[x](http://)",
            "[x](vbscript:x)",
        ] {
            let e = kb_body(bad).expect_err(bad);
            assert_eq!(e.code, "unsafe_link", "{bad}");
        }
        for good in [
            "[x](https://ex.com)",
            "[x](mailto:a@b.c)",
            "[x](tel:+79161234567)",
            "![x](/api/v1/files/abc)",
        ] {
            assert!(kb_body(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn the_reply_text_carries_links_and_images() {
        let a = KbArticle {
            id: 7,
            title: "Returns".into(),
            body: "Fill in [the form](https://ex.com/return).\n![Where the label goes](https://ex.com/l.png)\nThanks!".into(),
            tags: vec![],
            language: "en".into(),
            department_id: None,
            public: true,
            used_count: 3,
            created_by: None,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        };
        let s = KbSuggestion::of(&a, 1.0);
        assert_eq!(
            s.reply_text,
            "Fill in the form (https://ex.com/return).\nhttps://ex.com/l.png\n\nThanks!"
        );
        assert_eq!(s.links[0].url, "https://ex.com/return");
        assert_eq!(s.images[0].text, "Where the label goes");
        assert_eq!(s.snippet, "Fill in the form. Where the label goes Thanks!");
    }

    #[test]
    fn tags_and_languages_are_checked() {
        assert_eq!(
            kb_tags(&["Delivery".into(), "delivery".into(), " Доставка ".into()]).expect("tags"),
            vec!["delivery", "доставка"]
        );
        assert!(kb_tags(&vec!["x".to_owned(); 21]).is_err());
        assert!(kb_tags(&["".into()]).is_err());
        assert!(kb_language("RU").is_ok());
        for bad in ["rus", "", "r1", "рy"] {
            assert!(kb_language(bad).is_err(), "{bad}");
        }
    }
}
