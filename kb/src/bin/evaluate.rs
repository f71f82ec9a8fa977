//! Keyword-only retrieval quality of [`KbIndex`] on the labelled set of `kb/eval/`.
//!
//! ```text
//! cargo run --release -p kommutator-kb --bin kb-evaluate [-- --dir kb/eval]
//! ```
//!
//! Indexes the set's articles, runs every query through [`KbIndex::search`] (default filter,
//! 10 hits) and prints recall@1, recall@3 and MRR overall and per kind, one `EVAL_JSON {…}`
//! line with the same numbers and the search latency, and the `same` queries that missed the
//! top 3. `--all` lists every query with its rank; `--query TEXT` only shows the hits of a
//! text among the set's articles (to tune); `--help` tells the rest.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use kommutator_kb::eval::{self, EvalSet};
use kommutator_kb::{KbFilter, KbIndex};

/// Hits asked of each search (and the depth MRR looks at).
const LIMIT: usize = eval::MRR_CUTOFF;
/// Timed passes over all queries after one untimed warm-up pass.
const TIMED_PASSES: usize = 5;
/// At most this many missed `same` queries are listed.
const MAX_MISSES_SHOWN: usize = 20;

type Error = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let mut message = error.to_string();
            let mut source = error.source();
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("evaluate: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The command line.
#[derive(Debug)]
struct Args {
    /// The directory of the set.
    dir: PathBuf,
    /// Print every query's rank and top 3, not only the `same` misses.
    all: bool,
    /// Only run these texts against the set's articles and print their hits.
    queries: Vec<String>,
}

const USAGE: &str = "usage: evaluate [--dir DIR] [--all] [--query TEXT]...
  --dir DIR     the set: DIR/articles.tsv and DIR/queries.tsv (default: the crate's eval/)
  --all         list every query with the rank of its first relevant article
  --query TEXT  only search TEXT among the set's articles and print the hits (repeatable)";

fn parse_args() -> Result<Option<Args>, Error> {
    let mut args = Args {
        dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/eval")),
        all: false,
        queries: Vec::new(),
    };
    let mut argv = std::env::args().skip(1);
    while let Some(arg) = argv.next() {
        match arg.as_str() {
            "--dir" => args.dir = argv.next().ok_or("--dir needs a directory")?.into(),
            "--all" => args.all = true,
            "--query" => args
                .queries
                .push(argv.next().ok_or("--query needs a text")?),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}").into()),
        }
    }
    Ok(Some(args))
}

fn run() -> Result<(), Error> {
    let Some(Args { dir, all, queries }) = parse_args()? else {
        return Ok(());
    };
    let set = eval::load(&dir)?;
    let index = KbIndex::new()?;
    let started = Instant::now();
    index.upsert_many(&set.articles)?;
    let indexing = started.elapsed();

    let filter = KbFilter::default();
    if !queries.is_empty() {
        let titles = titles(&set);
        for text in &queries {
            println!("{text:?}");
            for hit in index.search(text, &filter, LIMIT)? {
                let title = titles.get(&hit.id).copied().unwrap_or("?");
                println!("  {:>4} {:>8.3}  {title}", hit.id, hit.score);
            }
        }
        return Ok(());
    }
    let mut rankings: Vec<Vec<i64>> = Vec::with_capacity(set.queries.len());
    for query in &set.queries {
        let hits = index.search(&query.text, &filter, LIMIT)?;
        rankings.push(hits.iter().map(|hit| hit.id).collect());
    }
    let mut latencies: Vec<Duration> = Vec::with_capacity(set.queries.len() * TIMED_PASSES);
    for _ in 0..TIMED_PASSES {
        for query in &set.queries {
            let started = Instant::now();
            let hits = index.search(&query.text, &filter, LIMIT)?;
            latencies.push(started.elapsed());
            std::hint::black_box(hits);
        }
    }
    latencies.sort_unstable();
    let p50 = percentile(&latencies, 0.50);
    let p99 = percentile(&latencies, 0.99);

    let metrics = eval::metrics(&set, &rankings);
    println!(
        "kommutator-kb keyword-only evaluation: {} articles, {} queries ({}), indexed in {:.1} ms",
        set.articles.len(),
        set.queries.len(),
        dir.display(),
        indexing.as_secs_f64() * 1e3
    );
    println!();
    print!("{metrics}");
    println!();
    println!(
        "search latency over {} searches: p50 {} µs, p99 {} µs",
        latencies.len(),
        p50.as_micros(),
        p99.as_micros()
    );
    println!();
    if all {
        print_all(&set, &rankings);
        println!();
    }
    print_misses(&set, &rankings);
    println!();
    let json = metrics.to_json();
    // Insert the run's context after the opening brace of the metrics object.
    let body = json.strip_prefix('{').unwrap_or(&json);
    println!(
        "EVAL_JSON {{\"ranker\":\"keyword\",\"articles\":{},\"queries\":{},\"latency_us\":{{\"p50\":{},\"p99\":{}}},{body}",
        set.articles.len(),
        set.queries.len(),
        p50.as_micros(),
        p99.as_micros()
    );
    Ok(())
}

/// Article titles by id.
fn titles(set: &EvalSet) -> HashMap<i64, &str> {
    set.articles
        .iter()
        .map(|a| (a.id, a.title.as_str()))
        .collect()
}

/// Every query: kind, rank of the first relevant article (`-` beyond the hits), relevant ids,
/// top three ids, text.
fn print_all(set: &EvalSet, rankings: &[Vec<i64>]) {
    println!("kind      rank  relevant  top 3         query");
    for (i, query) in set.queries.iter().enumerate() {
        let ranking = rankings.get(i).map_or(&[][..], |r| &r[..]);
        let rank = eval::first_relevant_rank(query, ranking)
            .map_or_else(|| "-".to_owned(), |r| r.to_string());
        let ids = |ids: &[i64]| ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        println!(
            "{:<9} {:>4}  {:<8}  {:<12}  {}",
            query.kind,
            rank,
            ids(&query.relevant),
            ids(ranking.get(..3).unwrap_or(ranking)),
            query.text
        );
    }
}

/// The `q`-quantile of sorted durations (nearest rank).
fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Nearest rank: ceil(q·n), 1-based; the lengths here are small, exact in f64.
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.clamp(1, sorted.len()) - 1)
        .copied()
        .unwrap_or_default()
}

/// The `same` queries with no relevant article in the top 3: the text, the relevant ids and
/// the top three returned, with titles.
fn print_misses(set: &EvalSet, rankings: &[Vec<i64>]) {
    let titles = titles(set);
    let title = |id: &i64| titles.get(id).copied().unwrap_or("?");
    let misses: Vec<(usize, &eval::Query)> = set
        .queries
        .iter()
        .enumerate()
        .filter(|(i, q)| {
            q.kind == "same"
                && eval::first_relevant_rank(q, rankings.get(*i).map_or(&[][..], |r| &r[..]))
                    .is_none_or(|rank| rank > 3)
        })
        .collect();
    println!(
        "`same` queries missing the top 3: {}{}",
        misses.len(),
        if misses.len() > MAX_MISSES_SHOWN {
            format!(" (first {MAX_MISSES_SHOWN} shown)")
        } else {
            String::new()
        }
    );
    for (i, query) in misses.into_iter().take(MAX_MISSES_SHOWN) {
        let ranking = rankings.get(i).map_or(&[][..], |r| &r[..]);
        let rank = eval::first_relevant_rank(query, ranking)
            .map_or_else(|| "-".to_owned(), |r| r.to_string());
        let want: Vec<String> = query
            .relevant
            .iter()
            .map(|id| format!("{id} «{}»", title(id)))
            .collect();
        let got: Vec<String> = ranking
            .iter()
            .take(3)
            .map(|id| format!("{id} «{}»", title(id)))
            .collect();
        println!(
            "  {:?} → want {} (rank {rank}); got [{}]",
            query.text,
            want.join(", "),
            got.join(", ")
        );
    }
}
