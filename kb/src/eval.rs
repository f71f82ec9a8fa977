//! Retrieval-quality evaluation: the labelled set in `kb/eval/` and the metrics computed on
//! any ranking of it.
//!
//! [`load`] reads a directory holding `articles.tsv` and `queries.tsv` (the format is described
//! in `kb/eval/README.md`) into an [`EvalSet`]; [`metrics`] scores one ranking of article ids
//! per query — recall@1, recall@3 and MRR, overall and per [`Query::kind`]. How the rankings
//! were produced (keyword search alone, keyword fused with vector similarity, …) is up to the
//! caller: the module never searches by itself.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use crate::KbDoc;

/// The kinds of query a set may hold: `same` (the query is in the language of its article),
/// `translit` (Russian written in Latin letters, for a Russian article) and `cross` (the other
/// language than the article's).
pub const KINDS: [&str; 3] = ["same", "translit", "cross"];

/// The rank up to which [`Scores::mrr`] credits a relevant article; a query whose first
/// relevant article is further down (or absent) counts 0.
pub const MRR_CUTOFF: usize = 10;

/// The file of articles in a set's directory.
pub const ARTICLES_FILE: &str = "articles.tsv";
/// The file of queries in a set's directory.
pub const QUERIES_FILE: &str = "queries.tsv";

const ARTICLES_HEADER: &str = "id\tlanguage\ttitle\ttags\tbody";
const QUERIES_HEADER: &str = "query\trelevant\tkind";

/// A labelled evaluation set: the articles to index and the queries to run against them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvalSet {
    /// The articles, in file order; all public, with no department.
    pub articles: Vec<KbDoc>,
    /// The queries, in file order.
    pub queries: Vec<Query>,
}

/// One labelled query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// The text as a customer would type it.
    pub text: String,
    /// The ids of the articles that answer it (at least one, all present in the set).
    pub relevant: Vec<i64>,
    /// One of [`KINDS`].
    pub kind: String,
}

/// Why a set could not be loaded. Line numbers count from 1 and include the header.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system reported.
        #[source]
        source: std::io::Error,
    },
    /// A line is malformed, or contradicts another (a repeated id, an unknown article).
    #[error("{}:{line}: {message}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
}

/// Reads `dir/articles.tsv` and `dir/queries.tsv`.
///
/// Both files are UTF-8, tab-separated, with a header line; empty lines are skipped. In a
/// field, `\n`, `\t` and `\\` stand for a newline, a tab and a backslash.
///
/// # Errors
///
/// [`EvalError::Read`] if a file cannot be read; [`EvalError::Line`] for the first line with
/// the wrong header or number of fields, an id that is not an integer, a repeated article id,
/// an empty title or language, a query with no text or no relevant id, a relevant id that
/// names no article, a repeated query text, or a kind not in [`KINDS`].
pub fn load(dir: &Path) -> Result<EvalSet, EvalError> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path)
            .map(|text| (path.clone(), text))
            .map_err(|source| EvalError::Read { path, source })
    };
    let (articles_path, articles_text) = read(ARTICLES_FILE)?;
    let (queries_path, queries_text) = read(QUERIES_FILE)?;
    let articles = parse_articles(&articles_path, &articles_text)?;
    let ids: HashSet<i64> = articles.iter().map(|a| a.id).collect();
    let queries = parse_queries(&queries_path, &queries_text, &ids)?;
    Ok(EvalSet { articles, queries })
}

/// The non-empty lines of `text` after its header, with their numbers; an error if the first
/// line is not `header`.
fn body_lines<'a>(
    path: &Path,
    text: &'a str,
    header: &str,
) -> Result<impl Iterator<Item = (usize, &'a str)>, EvalError> {
    let mut lines = text.lines().enumerate().map(|(i, line)| (i + 1, line));
    let first = lines.next().map(|(_, line)| line.trim_end_matches('\r'));
    if first != Some(header) {
        return Err(line_error(
            path,
            1,
            format!("expected the header {:?}", header.replace('\t', "<TAB>")),
        ));
    }
    Ok(lines
        .map(|(number, line)| (number, line.trim_end_matches('\r')))
        .filter(|(_, line)| !line.trim().is_empty()))
}

fn line_error(path: &Path, line: usize, message: String) -> EvalError {
    EvalError::Line {
        path: path.to_path_buf(),
        line,
        message,
    }
}

/// Splits a line into exactly `N` tab-separated fields.
fn fields<'a, const N: usize>(
    path: &Path,
    number: usize,
    line: &'a str,
) -> Result<[&'a str; N], EvalError> {
    let parts: Vec<&str> = line.split('\t').collect();
    <[&str; N]>::try_from(parts.as_slice()).map_err(|_| {
        line_error(
            path,
            number,
            format!("expected {N} tab-separated fields, found {}", parts.len()),
        )
    })
}

/// Undoes the escapes of a field: `\n`, `\t`, `\\`; any other backslash stays as it is.
fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

fn parse_id(path: &Path, number: usize, text: &str) -> Result<i64, EvalError> {
    text.trim()
        .parse()
        .map_err(|_| line_error(path, number, format!("{text:?} is not an integer id")))
}

fn parse_articles(path: &Path, text: &str) -> Result<Vec<KbDoc>, EvalError> {
    let mut articles = Vec::new();
    let mut seen: HashMap<i64, usize> = HashMap::new();
    for (number, line) in body_lines(path, text, ARTICLES_HEADER)? {
        let [id, language, title, tags, body] = fields::<5>(path, number, line)?;
        let id = parse_id(path, number, id)?;
        if let Some(first) = seen.insert(id, number) {
            return Err(line_error(
                path,
                number,
                format!("article id {id} already used on line {first}"),
            ));
        }
        let language = language.trim();
        let title = unescape(title.trim());
        if language.is_empty() || title.is_empty() {
            return Err(line_error(
                path,
                number,
                "empty language or title".to_owned(),
            ));
        }
        articles.push(KbDoc {
            id,
            title,
            body: unescape(body.trim()),
            tags: tags
                .split(',')
                .map(|tag| unescape(tag.trim()))
                .filter(|tag| !tag.is_empty())
                .collect(),
            language: language.to_owned(),
            department_id: None,
            public: true,
        });
    }
    Ok(articles)
}

fn parse_queries(path: &Path, text: &str, ids: &HashSet<i64>) -> Result<Vec<Query>, EvalError> {
    let mut queries = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (number, line) in body_lines(path, text, QUERIES_HEADER)? {
        let [query, relevant, kind] = fields::<3>(path, number, line)?;
        let query = unescape(query.trim());
        if query.is_empty() {
            return Err(line_error(path, number, "empty query".to_owned()));
        }
        if let Some(first) = seen.insert(query.clone(), number) {
            return Err(line_error(
                path,
                number,
                format!("query {query:?} already on line {first}"),
            ));
        }
        let mut ids_of_query = Vec::new();
        for part in relevant.split(',').filter(|part| !part.trim().is_empty()) {
            let id = parse_id(path, number, part)?;
            if !ids.contains(&id) {
                return Err(line_error(
                    path,
                    number,
                    format!("relevant id {id} is not an article of the set"),
                ));
            }
            if !ids_of_query.contains(&id) {
                ids_of_query.push(id);
            }
        }
        if ids_of_query.is_empty() {
            return Err(line_error(path, number, "no relevant id".to_owned()));
        }
        let kind = kind.trim();
        if !KINDS.contains(&kind) {
            return Err(line_error(
                path,
                number,
                format!("kind {kind:?} is not one of {}", KINDS.join(", ")),
            ));
        }
        queries.push(Query {
            text: query,
            relevant: ids_of_query,
            kind: kind.to_owned(),
        });
    }
    Ok(queries)
}

/// The 1-based rank of the first article of `ranking` that is relevant to `query`, if any.
pub fn first_relevant_rank(query: &Query, ranking: &[i64]) -> Option<usize> {
    ranking
        .iter()
        .position(|id| query.relevant.contains(id))
        .map(|i| i + 1)
}

/// The scores of a group of queries.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Scores {
    /// The number of queries in the group.
    pub n: usize,
    /// The share of queries whose top article is relevant.
    pub recall_at_1: f64,
    /// The share of queries with a relevant article among the top three.
    pub recall_at_3: f64,
    /// Mean reciprocal rank of the first relevant article, counting 0 beyond
    /// [`MRR_CUTOFF`].
    pub mrr: f64,
}

/// Running sums behind [`Scores`].
#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    n: usize,
    at_1: usize,
    at_3: usize,
    reciprocal: f64,
}

impl Sums {
    fn add(&mut self, rank: Option<usize>) {
        self.n += 1;
        if let Some(rank) = rank {
            if rank <= 1 {
                self.at_1 += 1;
            }
            if rank <= 3 {
                self.at_3 += 1;
            }
            if rank <= MRR_CUTOFF {
                // Ranks are at most MRR_CUTOFF here: exact in f64.
                self.reciprocal += 1.0 / rank as f64;
            }
        }
    }

    fn scores(self) -> Scores {
        if self.n == 0 {
            return Scores::default();
        }
        let n = self.n as f64;
        Scores {
            n: self.n,
            recall_at_1: self.at_1 as f64 / n,
            recall_at_3: self.at_3 as f64 / n,
            mrr: self.reciprocal / n,
        }
    }
}

/// The scores of one ranking of a set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    /// All queries.
    pub overall: Scores,
    /// Per [`Query::kind`], in alphabetical order of kind.
    pub per_kind: BTreeMap<String, Scores>,
    /// Per kind and language of the query's first relevant article, keyed `"kind/language"`
    /// (`"cross/ru"`: English queries answered by Russian articles).
    pub per_kind_language: BTreeMap<String, Scores>,
}

/// Scores `rankings` against `set`: `rankings[i]` is the ranking (article ids, best first)
/// returned for `set.queries[i]`. A query with no ranking (`rankings` too short) counts as a
/// miss; extra rankings are ignored. Ids absent from the set are allowed (they are never
/// relevant).
pub fn metrics(set: &EvalSet, rankings: &[Vec<i64>]) -> Metrics {
    let languages: HashMap<i64, &str> = set
        .articles
        .iter()
        .map(|a| (a.id, a.language.as_str()))
        .collect();
    let mut overall = Sums::default();
    let mut per_kind: BTreeMap<String, Sums> = BTreeMap::new();
    let mut per_kind_language: BTreeMap<String, Sums> = BTreeMap::new();
    for (i, query) in set.queries.iter().enumerate() {
        let ranking = rankings.get(i).map(Vec::as_slice).unwrap_or_default();
        let rank = first_relevant_rank(query, ranking);
        overall.add(rank);
        per_kind.entry(query.kind.clone()).or_default().add(rank);
        let language = query
            .relevant
            .first()
            .and_then(|id| languages.get(id))
            .copied()
            .unwrap_or("?");
        per_kind_language
            .entry(format!("{}/{language}", query.kind))
            .or_default()
            .add(rank);
    }
    Metrics {
        overall: overall.scores(),
        per_kind: per_kind.into_iter().map(|(k, s)| (k, s.scores())).collect(),
        per_kind_language: per_kind_language
            .into_iter()
            .map(|(k, s)| (k, s.scores()))
            .collect(),
    }
}

impl Scores {
    fn write_json(&self, out: &mut String) {
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "{{\"n\":{},\"recall_at_1\":{:.4},\"recall_at_3\":{:.4},\"mrr\":{:.4}}}",
            self.n, self.recall_at_1, self.recall_at_3, self.mrr
        );
    }
}

impl Metrics {
    /// The metrics as one line of JSON: `{"overall":{…},"per_kind":{"same":{…},…},
    /// "per_kind_language":{…}}`, each group `{"n","recall_at_1","recall_at_3","mrr"}`.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{\"overall\":");
        self.overall.write_json(&mut out);
        for (name, groups) in [
            ("per_kind", &self.per_kind),
            ("per_kind_language", &self.per_kind_language),
        ] {
            let _ = write!(out, ",\"{name}\":{{");
            for (i, (key, scores)) in groups.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&json_string(key));
                out.push(':');
                scores.write_json(&mut out);
            }
            out.push('}');
        }
        out.push('}');
        out
    }
}

/// `text` as a JSON string literal.
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl fmt::Display for Metrics {
    /// A table: one row overall, one per kind, one per kind and language.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<14} {:>5} {:>9} {:>9} {:>7}",
            "group", "n", "recall@1", "recall@3", "MRR@10"
        )?;
        let row = |f: &mut fmt::Formatter<'_>, name: &str, s: &Scores| {
            writeln!(
                f,
                "{:<14} {:>5} {:>9.3} {:>9.3} {:>7.3}",
                name, s.n, s.recall_at_1, s.recall_at_3, s.mrr
            )
        };
        row(f, "overall", &self.overall)?;
        for (kind, scores) in &self.per_kind {
            row(f, kind, scores)?;
        }
        for (key, scores) in &self.per_kind_language {
            row(f, &format!("  {key}"), scores)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> EvalSet {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("eval");
        match load(&dir) {
            Ok(set) => set,
            Err(error) => panic!("{error}"),
        }
    }

    /// The set shipped in `kb/eval/` loads (ids exist, no repeated id or query, kinds valid)
    /// and has the shape its README describes.
    #[test]
    fn shipped_set_is_well_formed() {
        let set = shipped();
        assert!(set.articles.len() >= 50, "{} articles", set.articles.len());
        assert!(set.queries.len() >= 140, "{} queries", set.queries.len());
        for language in ["ru", "en"] {
            assert!(set.articles.iter().any(|a| a.language == language));
        }
        for article in &set.articles {
            assert!(
                !article.body.is_empty(),
                "article {} has no body",
                article.id
            );
            assert!(
                !article.tags.is_empty(),
                "article {} has no tags",
                article.id
            );
            assert!(!article.body.contains('\t'));
        }
        let languages: HashMap<i64, &str> = set
            .articles
            .iter()
            .map(|a| (a.id, a.language.as_str()))
            .collect();
        for query in &set.queries {
            assert!(KINDS.contains(&query.kind.as_str()));
            assert!((1..=2).contains(&query.relevant.len()), "{}", query.text);
            let has_cyrillic = query
                .text
                .chars()
                .any(|c| ('\u{400}'..='\u{4ff}').contains(&c));
            for id in &query.relevant {
                let language = languages[id];
                // The kind agrees with the scripts: transliterated queries have no Cyrillic
                // and point at Russian articles; a cross query is Cyrillic exactly when its
                // article is English.
                match query.kind.as_str() {
                    "translit" => assert!(!has_cyrillic && language == "ru", "{}", query.text),
                    "cross" => assert_eq!(has_cyrillic, language == "en", "{}", query.text),
                    _ => {}
                }
            }
        }
        let kinds: HashSet<&str> = set.queries.iter().map(|q| q.kind.as_str()).collect();
        assert_eq!(kinds.len(), KINDS.len());
        // Every article is the answer to at least one query.
        let answered: HashSet<i64> = set
            .queries
            .iter()
            .flat_map(|q| q.relevant.iter().copied())
            .collect();
        for article in &set.articles {
            assert!(answered.contains(&article.id), "article {}", article.id);
        }
    }

    fn error_of(articles: &str, queries: &str) -> String {
        let path = Path::new("x.tsv");
        let result = parse_articles(path, articles).and_then(|articles| {
            let ids = articles.iter().map(|a| a.id).collect();
            parse_queries(path, queries, &ids)
        });
        match result {
            Ok(_) => String::new(),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn malformed_lines_are_reported_with_their_number() {
        let articles = "id\tlanguage\ttitle\ttags\tbody\n1\tru\tT\ta,b\tline\\nnext\n";
        let queries = "query\trelevant\tkind\n";
        assert_eq!(error_of(articles, queries), "");
        assert_eq!(
            error_of(&format!("{articles}\n1\ten\tU\t\tb\n"), queries),
            "x.tsv:4: article id 1 already used on line 2"
        );
        assert!(
            error_of(&format!("{articles}2\ten\tU\n"), queries).starts_with("x.tsv:3: expected 5")
        );
        assert!(error_of("id\ttitle\n", queries).starts_with("x.tsv:1: expected the header"));
        assert_eq!(
            error_of(articles, &format!("{queries}q\t1,7\tsame\n")),
            "x.tsv:2: relevant id 7 is not an article of the set"
        );
        assert!(error_of(articles, &format!("{queries}q\t1\tother\n"))
            .starts_with("x.tsv:2: kind \"other\""));
        assert!(error_of(articles, &format!("{queries}q\tx\tsame\n"))
            .starts_with("x.tsv:2: \"x\" is not an integer"));
        assert_eq!(
            error_of(articles, &format!("{queries}q\t1\tsame\nq\t1\tcross\n")),
            "x.tsv:3: query \"q\" already on line 2"
        );
    }

    #[test]
    fn fields_are_unescaped() {
        let set = parse_articles(
            Path::new("x"),
            "id\tlanguage\ttitle\ttags\tbody\n5\ten\tT\t a , ,b\ta\\nb\\\\n\\q\n",
        );
        let Ok(set) = set else {
            panic!("{set:?}");
        };
        assert_eq!(set[0].body, "a\nb\\n\\q");
        assert_eq!(set[0].tags, vec!["a".to_owned(), "b".to_owned()]);
        assert!(set[0].public);
    }

    #[test]
    fn metrics_count_ranks() {
        let query = |relevant: Vec<i64>, kind: &str| Query {
            text: String::new(),
            relevant,
            kind: kind.to_owned(),
        };
        let doc = |id, language: &str| KbDoc {
            id,
            language: language.to_owned(),
            ..KbDoc::default()
        };
        let set = EvalSet {
            articles: vec![doc(1, "ru"), doc(2, "en"), doc(3, "ru")],
            queries: vec![
                query(vec![1], "same"),
                query(vec![2, 3], "same"),
                query(vec![3], "cross"),
                query(vec![1], "cross"),
            ],
        };
        let rankings = vec![
            vec![1, 2],
            vec![9, 8, 3, 2],
            (10..20).chain([3]).collect(),
            // The fourth query has no ranking: a miss.
        ];
        let m = metrics(&set, &rankings);
        assert_eq!(m.overall.n, 4);
        assert!((m.overall.recall_at_1 - 0.25).abs() < 1e-9);
        assert!((m.overall.recall_at_3 - 0.5).abs() < 1e-9);
        assert!((m.overall.mrr - (1.0 + 1.0 / 3.0) / 4.0).abs() < 1e-9);
        let same = m.per_kind["same"];
        assert_eq!(same.n, 2);
        assert!((same.recall_at_3 - 1.0).abs() < 1e-9);
        assert_eq!(m.per_kind["cross"].mrr, 0.0);
        assert_eq!(m.per_kind_language["same/en"].n, 1);
        assert_eq!(m.per_kind_language["cross/ru"].n, 2);
        let json = m.to_json();
        assert!(json.starts_with("{\"overall\":{\"n\":4,\"recall_at_1\":0.2500,"));
        assert!(json.contains("\"per_kind\":{\"cross\":{\"n\":2,"));
        assert_eq!(json_string("a\"b\\\n\u{1}"), "\"a\\\"b\\\\\\n\\u0001\"");
    }
}
