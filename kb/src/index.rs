//! [`KbIndex`]: the in-RAM tantivy index, its writes and its search.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tantivy::collector::TopDocs;
use tantivy::columnar::Column;
use tantivy::indexer::IndexWriterOptions;
use tantivy::query::{
    BooleanQuery, BoostQuery, ConstScoreQuery, Occur, Query, TermQuery, TermSetQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, FAST,
    INDEXED, STRING,
};
use tantivy::tokenizer::{Language, TextAnalyzer, TokenizerManager};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, TantivyDocument, Term};

use crate::analysis::{self, QueryAnalyzers, QueryWord};
use crate::{Hit, KbDoc, KbError, KbFilter};

/// At most this many distinct query words (or tag word pairs) become clauses; when a text
/// has more, the rarest in the index are kept (each word gives up to five term clauses).
pub const MAX_QUERY_WORDS: usize = 64;

/// Distinct candidates looked up in the term dictionary before the rarest are chosen: bounds
/// the cost of a long text whose words mostly match nothing.
const MAX_CANDIDATES: usize = 1024;

/// Title terms weigh this much more than body terms.
pub const TITLE_BOOST: f32 = 2.0;
/// A query word (or pair of adjacent words) equal to one of an article's tags.
pub const TAG_BOOST: f32 = 1.5;

/// Memory for the single indexing thread before it flushes a segment (tantivy's floor is
/// 15 MB); a rebuild of a few thousand articles fits in one segment.
const WRITER_MEMORY: usize = 32_000_000;

/// Field names: internal, the schema is not persisted anywhere.
mod name {
    pub const ID: &str = "id";
    pub const TITLE_RU: &str = "title_ru";
    pub const BODY_RU: &str = "body_ru";
    pub const TITLE_EN: &str = "title_en";
    pub const BODY_EN: &str = "body_en";
    pub const TAGS: &str = "tags";
    pub const LANGUAGE: &str = "language";
    pub const DEPARTMENT: &str = "department";
    pub const ALL_DEPARTMENTS: &str = "all_departments";
    pub const PUBLIC: &str = "public";
}

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    title_ru: Field,
    body_ru: Field,
    title_en: Field,
    body_en: Field,
    tags: Field,
    language: Field,
    department: Field,
    all_departments: Field,
    public: Field,
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let text = |tokenizer: &str| {
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(tokenizer)
                // Frequencies for BM25; no positions: no phrase queries are ever built.
                .set_index_option(IndexRecordOption::WithFreqs),
        )
    };
    let fields = Fields {
        // Indexed to delete by it, fast to read it back from a hit without a doc store.
        id: builder.add_i64_field(name::ID, INDEXED | FAST),
        title_ru: builder.add_text_field(name::TITLE_RU, text(analysis::RU)),
        body_ru: builder.add_text_field(name::BODY_RU, text(analysis::RU)),
        title_en: builder.add_text_field(name::TITLE_EN, text(analysis::EN)),
        body_en: builder.add_text_field(name::BODY_EN, text(analysis::EN)),
        // Already normalised by `analysis::normalize_tag`: indexed as one raw term each.
        tags: builder.add_text_field(name::TAGS, text("raw")),
        language: builder.add_text_field(name::LANGUAGE, STRING),
        department: builder
            .add_i64_field(name::DEPARTMENT, NumericOptions::default().set_indexed()),
        all_departments: builder.add_bool_field(name::ALL_DEPARTMENTS, INDEXED),
        public: builder.add_bool_field(name::PUBLIC, INDEXED),
    };
    (builder.build(), fields)
}

/// The language code as stored and as filtered on: trimmed, ASCII-lowercased.
fn normalize_language(language: &str) -> String {
    language.trim().to_ascii_lowercase()
}

/// The full-text index of the knowledge base: in RAM, one per node, rebuilt from the database
/// at start ([`KbIndex::upsert_many`]) and kept in step from change events ([`KbIndex::upsert`],
/// [`KbIndex::delete`]).
///
/// # Concurrency and visibility
///
/// All methods take `&self`; share it in an `Arc`. Writes are serialised by an internal mutex
/// (one tantivy `IndexWriter`); searches take no lock and run in parallel with writes and with
/// each other, each on a consistent snapshot of the index.
///
/// Every write commits and reloads the reader before it returns, so once `upsert`, `delete`,
/// `upsert_many` or `replace_all` has returned `Ok`, every search *started* afterwards, on any
/// thread, sees the change. A search already running keeps the snapshot it started with: it
/// sees the index wholly before or wholly after a write, never half of a batch.
///
/// A write that fails is rolled back: the index stays as it was after the last successful write.
/// (The one exception is [`KbError::Reload`]: the change is committed but becomes visible
/// only with the next write that succeeds.)
pub struct KbIndex {
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    fields: Fields,
    /// Prototypes cloned for each search (analysis needs `&mut`).
    analyzers: QueryAnalyzers,
    /// The analyzer of tags, cloned per write for the same reason.
    tag_analyzer: TextAnalyzer,
}

impl fmt::Debug for KbIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KbIndex")
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl KbIndex {
    /// Creates an empty index in RAM, with its analyzers, writer and reader.
    ///
    /// # Errors
    ///
    /// [`KbError::Create`] if tantivy cannot create the index, its writer (a thread could
    /// not be spawned) or its reader.
    pub fn new() -> Result<Self, KbError> {
        let (schema, fields) = schema();
        let tokenizers = TokenizerManager::default();
        tokenizers.register(analysis::RU, analysis::stemming(Language::Russian));
        tokenizers.register(analysis::EN, analysis::stemming(Language::English));
        let index = Index::builder()
            .schema(schema)
            .tokenizers(tokenizers)
            .create_in_ram()
            .map_err(KbError::Create)?;
        let writer = index
            .writer_with_options(
                IndexWriterOptions::builder()
                    .memory_budget_per_thread(WRITER_MEMORY)
                    .num_worker_threads(1)
                    .num_merge_threads(1)
                    .build(),
            )
            .map_err(KbError::Create)?;
        let reader = index
            .reader_builder()
            // Reloaded by each write itself, right after its commit: see the type's docs.
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(KbError::Create)?;
        Ok(Self {
            reader,
            writer: Mutex::new(writer),
            fields,
            analyzers: QueryAnalyzers::new(),
            tag_analyzer: analysis::plain(),
        })
    }

    /// The number of articles in the index, as the next search sees it.
    pub fn len(&self) -> usize {
        usize::try_from(self.reader.searcher().num_docs()).unwrap_or(usize::MAX)
    }

    /// Whether the index holds no article.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds the article, or replaces the one with the same id; visible to the next search
    /// once this returns.
    ///
    /// # Errors
    ///
    /// [`KbError::Index`], [`KbError::Commit`] or [`KbError::Reload`]; see the type's docs.
    pub fn upsert(&self, doc: &KbDoc) -> Result<(), KbError> {
        self.upsert_many(std::slice::from_ref(doc))
    }

    /// Adds or replaces all these articles in one commit (the start-up rebuild, a batch of
    /// change events). Where an id occurs twice in `docs`, the later one wins.
    ///
    /// # Errors
    ///
    /// As [`KbIndex::upsert`]; on error none of the batch is applied.
    pub fn upsert_many(&self, docs: &[KbDoc]) -> Result<(), KbError> {
        if docs.is_empty() {
            return Ok(());
        }
        self.write(|writer, this| this.add_all(writer, docs))
    }

    /// Makes the index hold exactly `docs`, in one commit (a full resync on a running node:
    /// searches see the old set until the new one is complete).
    ///
    /// # Errors
    ///
    /// As [`KbIndex::upsert`]; on error the old set stays.
    pub fn replace_all(&self, docs: &[KbDoc]) -> Result<(), KbError> {
        self.write(|writer, this| {
            writer.delete_all_documents().map_err(KbError::Commit)?;
            this.add_all(writer, docs)
        })
    }

    /// Removes the article with this id, if there is one; visible to the next search once
    /// this returns.
    ///
    /// # Errors
    ///
    /// [`KbError::Commit`] or [`KbError::Reload`].
    pub fn delete(&self, id: i64) -> Result<(), KbError> {
        self.write(|writer, this| {
            writer.delete_term(Term::from_field_i64(this.fields.id, id));
            Ok(())
        })
    }

    /// Runs `ops` on the writer, commits and reloads the reader, all under the writer lock;
    /// rolls back if `ops` or the commit fails.
    fn write(
        &self,
        ops: impl FnOnce(&mut IndexWriter, &Self) -> Result<(), KbError>,
    ) -> Result<(), KbError> {
        let mut writer = self.lock_writer();
        let result = ops(&mut writer, self)
            .and_then(|()| writer.commit().map(drop).map_err(KbError::Commit));
        if let Err(error) = result {
            // Drop the uncommitted operations so the next write does not commit them. A failed
            // rollback leaves nothing better to do: the original error is the one to report.
            let _ = writer.rollback();
            return Err(error);
        }
        // Still under the lock: no other write can commit between ours and this reload, and
        // the caller returns only once the change is searchable.
        self.reader.reload().map_err(KbError::Reload)
    }

    fn lock_writer(&self) -> MutexGuard<'_, IndexWriter> {
        // A panic while the lock was held (tantivy's or ours) leaves at worst uncommitted
        // operations, and every write commits or rolls back before it releases the lock: the
        // writer is safe to reuse.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn add_all(&self, writer: &IndexWriter, docs: &[KbDoc]) -> Result<(), KbError> {
        let mut tag_analyzer = self.tag_analyzer.clone();
        for doc in docs {
            // Deletes apply to documents added before them, so this replaces older versions,
            // including one added earlier in this same batch.
            writer.delete_term(Term::from_field_i64(self.fields.id, doc.id));
            writer
                .add_document(self.document(doc, &mut tag_analyzer))
                .map_err(|source| KbError::Index { id: doc.id, source })?;
        }
        Ok(())
    }

    fn document(&self, doc: &KbDoc, tag_analyzer: &mut TextAnalyzer) -> TantivyDocument {
        let f = &self.fields;
        let mut out = TantivyDocument::default();
        out.add_i64(f.id, doc.id);
        out.add_text(f.title_ru, &doc.title);
        out.add_text(f.title_en, &doc.title);
        out.add_text(f.body_ru, &doc.body);
        out.add_text(f.body_en, &doc.body);
        let mut seen = HashSet::new();
        for tag in &doc.tags {
            if let Some(tag) = analysis::normalize_tag(tag_analyzer, tag) {
                if seen.insert(tag.clone()) {
                    out.add_text(f.tags, tag);
                }
            }
        }
        out.add_text(f.language, normalize_language(&doc.language));
        match doc.department_id {
            Some(department) => out.add_i64(f.department, department),
            None => out.add_bool(f.all_departments, true),
        }
        out.add_bool(f.public, doc.public);
        out
    }

    /// The articles that match `query` and `filter`, best first (ties by ascending id), at most
    /// `limit` of them.
    ///
    /// `query` is free text, typically a customer's message: it is never parsed as query
    /// syntax. It is analysed like the articles (both stemmers), its distinct words become
    /// optional term clauses on the Russian and English title and body fields (titles boosted
    /// by [`TITLE_BOOST`]) and on tags ([`TAG_BOOST`]); at most [`MAX_QUERY_WORDS`] words, the
    /// rarest in the index, are kept. Only the first 32 KiB of the text are read. Any text is
    /// accepted; one with no indexable word (empty, punctuation, stop words only) gives no
    /// hits.
    ///
    /// # Errors
    ///
    /// [`KbError::Search`] if tantivy fails to execute the query (not expected from any input).
    pub fn search(
        &self,
        query: &str,
        filter: &KbFilter,
        limit: usize,
    ) -> Result<Vec<Hit>, KbError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let searcher = self.reader.searcher();
        let num_docs = usize::try_from(searcher.num_docs()).unwrap_or(usize::MAX);
        if num_docs == 0 {
            return Ok(Vec::new());
        }
        let mut analyzers = self.analyzers.clone();
        let words = analysis::query_words(&mut analyzers, query);
        let Some(text_query) = self.text_query(&searcher, &words)? else {
            return Ok(Vec::new());
        };
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Must, text_query)];
        for filter_query in self.filter_queries(filter) {
            // Score 0: filters restrict, they do not rank.
            clauses.push((
                Occur::Must,
                Box::new(ConstScoreQuery::new(filter_query, 0.0)),
            ));
        }
        let query = BooleanQuery::new(clauses);
        let top = searcher
            .search(
                &query,
                &TopDocs::with_limit(limit.min(num_docs)).order_by_score(),
            )
            .map_err(KbError::Search)?;

        let mut ids: HashMap<u32, Column<i64>> = HashMap::new();
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let column = match ids.entry(address.segment_ord) {
                std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::hash_map::Entry::Vacant(entry) => {
                    let Some(segment) =
                        searcher.segment_readers().get(address.segment_ord as usize)
                    else {
                        continue;
                    };
                    entry.insert(
                        segment
                            .fast_fields()
                            .i64(name::ID)
                            .map_err(KbError::Search)?,
                    )
                }
            };
            if let Some(id) = column.first(address.doc_id) {
                hits.push(Hit { id, score });
            }
        }
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
        Ok(hits)
    }

    /// The `SHOULD` clauses of the text part of a query, or `None` when no word of the text
    /// occurs in the index.
    fn text_query(
        &self,
        searcher: &Searcher,
        words: &[QueryWord],
    ) -> Result<Option<Box<dyn Query>>, KbError> {
        let f = &self.fields;
        // Candidates in reading order: each word, then each pair of adjacent plain words
        // (a two-word tag); deduplicated, bounded.
        let mut candidates: Vec<Vec<(Term, f32)>> = Vec::new();
        let mut seen: HashSet<Vec<Term>> = HashSet::new();
        let mut push = |candidates: &mut Vec<Vec<(Term, f32)>>, terms: Vec<(Term, f32)>| {
            let key: Vec<Term> = terms.iter().map(|(term, _)| term.clone()).collect();
            if !key.is_empty() && seen.insert(key) {
                candidates.push(terms);
            }
        };
        for (i, word) in words.iter().enumerate() {
            let mut terms = Vec::with_capacity(5);
            if let Some(ru) = &word.ru {
                terms.push((Term::from_field_text(f.title_ru, ru), TITLE_BOOST));
                terms.push((Term::from_field_text(f.body_ru, ru), 1.0));
            }
            if let Some(en) = &word.en {
                terms.push((Term::from_field_text(f.title_en, en), TITLE_BOOST));
                terms.push((Term::from_field_text(f.body_en, en), 1.0));
            }
            if let Some(plain) = &word.plain {
                terms.push((Term::from_field_text(f.tags, plain), TAG_BOOST));
            }
            // A Latin word may be Russian typed in Latin letters: its Cyrillic reading is
            // one more form of the same word.
            if let Some(ru) = &word.ru_translit {
                terms.push((Term::from_field_text(f.title_ru, ru), TITLE_BOOST));
                terms.push((Term::from_field_text(f.body_ru, ru), 1.0));
            }
            push(&mut candidates, terms);
            if let (Some(first), Some(second)) = (
                word.plain.as_deref(),
                words.get(i + 1).and_then(|next| next.plain.as_deref()),
            ) {
                let pair = format!("{first} {second}");
                push(
                    &mut candidates,
                    vec![(Term::from_field_text(f.tags, &pair), TAG_BOOST)],
                );
            }
            if candidates.len() >= MAX_CANDIDATES {
                break;
            }
        }

        // Keep the words that occur at all, the rarest first (ties in reading order). The
        // document frequencies include deleted documents not yet merged away: good enough
        // to rank rarity.
        let mut ranked: Vec<(u64, usize)> = Vec::with_capacity(candidates.len());
        for (order, terms) in candidates.iter().enumerate() {
            let mut df = 0u64;
            for (term, _) in terms {
                df = df.saturating_add(searcher.doc_freq(term).map_err(KbError::Search)?);
            }
            if df > 0 {
                ranked.push((df, order));
            }
        }
        ranked.sort_unstable();
        ranked.truncate(MAX_QUERY_WORDS);
        ranked.sort_unstable_by_key(|&(_, order)| order);

        let mut clause_terms: HashSet<Term> = HashSet::new();
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (_, order) in ranked {
            for (term, boost) in candidates.get(order).into_iter().flatten() {
                if !clause_terms.insert(term.clone()) {
                    continue;
                }
                let term_query = TermQuery::new(term.clone(), IndexRecordOption::WithFreqs);
                clauses.push((
                    Occur::Should,
                    Box::new(BoostQuery::new(Box::new(term_query), *boost)),
                ));
            }
        }
        if clauses.is_empty() {
            return Ok(None);
        }
        Ok(Some(Box::new(BooleanQuery::new(clauses))))
    }

    /// One query per restriction of the filter; all must match.
    fn filter_queries(&self, filter: &KbFilter) -> Vec<Box<dyn Query>> {
        let f = &self.fields;
        let mut out: Vec<Box<dyn Query>> = Vec::new();
        if let Some(departments) = &filter.department_ids {
            let everyone: Box<dyn Query> = Box::new(TermQuery::new(
                Term::from_field_bool(f.all_departments, true),
                IndexRecordOption::Basic,
            ));
            let mut visible = vec![(Occur::Should, everyone)];
            if !departments.is_empty() {
                let terms = departments
                    .iter()
                    .map(|&d| Term::from_field_i64(f.department, d));
                visible.push((Occur::Should, Box::new(TermSetQuery::new(terms))));
            }
            out.push(Box::new(BooleanQuery::new(visible)));
        }
        if filter.public_only {
            out.push(Box::new(TermQuery::new(
                Term::from_field_bool(f.public, true),
                IndexRecordOption::Basic,
            )));
        }
        if let Some(language) = &filter.language {
            out.push(Box::new(TermQuery::new(
                Term::from_field_text(f.language, &normalize_language(language)),
                IndexRecordOption::Basic,
            )));
        }
        out
    }
}
