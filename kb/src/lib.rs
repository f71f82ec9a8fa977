//! The knowledge base's full-text index for iConsultant.
//!
//! [`KbIndex`] keeps the articles of the knowledge base in an in-RAM tantivy index (each
//! node has its own, rebuilt from the database at start and kept in step from change events)
//! and answers free-text queries — a customer's message as it came — with BM25 over Russian-
//! and English-stemmed fields; a Latin word is also read as transliterated Russian
//! ([`translit`]: `dostavka` finds «доставка»). [`rrf`] fuses its ranking with others (the sentence encoder's
//! nearest neighbours) by reciprocal rank.
//!
//! The hub strips markup before indexing: [`KbDoc::body`] is plain text.

mod analysis;
pub mod eval;
mod hybrid;
mod index;
mod rrf;
pub mod translit;

pub use hybrid::{hybrid, HYBRID_KEYWORD_WEIGHT};
pub use index::{KbIndex, MAX_QUERY_WORDS, TAG_BOOST, TITLE_BOOST};
pub use rrf::{rrf, RRF_K};

/// One article of the knowledge base, as indexed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KbDoc {
    /// The article's id in the hub's database; the index holds at most one article per id.
    pub id: i64,
    /// The title; its words weigh [`TITLE_BOOST`] times those of the body.
    pub title: String,
    /// The body as plain text.
    pub body: String,
    /// Keywords; each is matched whole (case, `ё` and punctuation aside) against one word or
    /// two adjacent words of a query.
    pub tags: Vec<String>,
    /// `"ru"`, `"en"` or any other code; only [`KbFilter::language`] looks at it. Both
    /// stemmers index every article whatever its language.
    pub language: String,
    /// The department the article belongs to; `None`: visible to all departments.
    pub department_id: Option<i64>,
    /// Whether customers may see it (the widget, bots), not only operators.
    pub public: bool,
}

/// Which articles a search may return. The default lets every article through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KbFilter {
    /// `None`: all departments. `Some(ids)`: articles of these departments, plus the articles
    /// with no department (those are visible to all); `Some(vec![])` leaves only the latter.
    pub department_ids: Option<Vec<i64>>,
    /// Only articles with [`KbDoc::public`] set.
    pub public_only: bool,
    /// Only articles whose language code equals this one (trimmed, ASCII case ignored).
    pub language: Option<String>,
}

impl KbFilter {
    /// Whether an article with these attributes passes the filter, exactly as a search
    /// applies it (for rankings made outside the index, such as vector similarity).
    #[must_use]
    pub fn admits(&self, department_id: Option<i64>, public: bool, language: &str) -> bool {
        let department_ok = match (&self.department_ids, department_id) {
            (None, _) | (Some(_), None) => true,
            (Some(ids), Some(d)) => ids.contains(&d),
        };
        let language_ok = self
            .language
            .as_deref()
            .is_none_or(|want| want.trim().eq_ignore_ascii_case(language.trim()));
        department_ok && (public || !self.public_only) && language_ok
    }
}

/// One search result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// The article's id.
    pub id: i64,
    /// Its BM25 score for the query (boosted sum over fields); comparable within one search
    /// only.
    pub score: f32,
}

/// What can go wrong in the index. Any query text is valid input: searching fails only if
/// tantivy itself does.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KbError {
    /// Creating the index, its writer or its reader failed.
    #[error("cannot create the in-memory index")]
    Create(#[source] tantivy::TantivyError),
    /// Handing an article to the writer failed (its indexing thread died); the batch was
    /// rolled back.
    #[error("cannot index article {id}")]
    Index {
        /// The article's id.
        id: i64,
        /// What tantivy reported.
        #[source]
        source: tantivy::TantivyError,
    },
    /// The commit failed; the write was rolled back.
    #[error("cannot commit the index")]
    Commit(#[source] tantivy::TantivyError),
    /// The change is committed but the reader could not reload: it becomes searchable with
    /// the next successful write.
    #[error("cannot reload the index reader")]
    Reload(#[source] tantivy::TantivyError),
    /// Executing a search failed.
    #[error("search failed")]
    Search(#[source] tantivy::TantivyError),
}
