//! Knowledge base retrieval with and without the encoder, on the labelled set of `kb/eval/`:
//! keyword-only (BM25, [`KbIndex`]), vector-only (cosine of e5 embeddings: `passage:` for
//! articles, `query:` for questions) and the two fused by reciprocal rank (k = 60), as the
//! hub fuses them.
//!
//! ```text
//! bash models/fetch.sh
//! cargo run --release -p kommutator-encoder --bin kb-fused -- [--models models/e5] [--dir kb/eval]
//! ```
//!
//! Prints recall@1, recall@3 and MRR per ranking, overall and per kind (`same`, `translit`,
//! `cross`), and one `EVAL_JSON {…}` line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use kommutator_encoder::{Encoder, Kind};
use kommutator_kb::eval::{self, EvalSet, Metrics};
use kommutator_kb::{rrf, KbFilter, KbIndex, RRF_K};

/// How many candidates each ranking gives the fusion.
const CANDIDATES: usize = 50;

type Error = Box<dyn std::error::Error>;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kb-fused: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Error> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut models = std::env::var_os("KOMMUTATOR_MODELS_DIR")
        .map_or_else(|| root.join("models/e5"), PathBuf::from);
    let mut dir = root.join("kb/eval");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--models" => models = args.next().ok_or("--models needs a directory")?.into(),
            "--dir" => dir = args.next().ok_or("--dir needs a directory")?.into(),
            "--help" | "-h" => {
                println!("usage: kb-fused [--models DIR] [--dir DIR]");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let set = eval::load(&dir)?;
    let t = Instant::now();
    let encoder = Encoder::load(&models)?;
    eprintln!("encoder loaded in {:.1} s", t.elapsed().as_secs_f64());

    let index = KbIndex::new()?;
    index.upsert_many(&set.articles)?;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let t = Instant::now();
    let passages: Vec<String> = set
        .articles
        .iter()
        .map(|a| format!("{}\n{}", a.title, a.body))
        .collect();
    let passage_refs: Vec<&str> = passages.iter().map(String::as_str).collect();
    let article_vecs = encoder.embed_parallel(&passage_refs, Kind::Passage, threads);
    let query_refs: Vec<&str> = set.queries.iter().map(|q| q.text.as_str()).collect();
    let query_vecs = encoder.embed_parallel(&query_refs, Kind::Query, threads);
    eprintln!(
        "embedded {} articles and {} queries in {:.1} s",
        passages.len(),
        query_refs.len(),
        t.elapsed().as_secs_f64()
    );

    let mut keyword = Vec::with_capacity(set.queries.len());
    let mut vector = Vec::with_capacity(set.queries.len());
    let mut fused = Vec::with_capacity(set.queries.len());
    for (q, qv) in set.queries.iter().zip(&query_vecs) {
        let k: Vec<i64> = index
            .search(&q.text, &KbFilter::default(), CANDIDATES)?
            .iter()
            .map(|h| h.id)
            .collect();
        let v = nearest(&set, &article_vecs, qv, CANDIDATES);
        let f: Vec<i64> = rrf(&[k.clone(), v.clone()], RRF_K)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        keyword.push(k);
        vector.push(v);
        fused.push(f);
    }
    let results = [
        ("keyword", eval::metrics(&set, &keyword)),
        ("vector", eval::metrics(&set, &vector)),
        ("fused", eval::metrics(&set, &fused)),
    ];
    print_table(&results);
    let json: Vec<String> = results
        .iter()
        .map(|(name, m)| format!("{}:{}", eval::json_string(name), m.to_json()))
        .collect();
    println!("EVAL_JSON {{{}}}", json.join(","));
    Ok(())
}

/// The ids of the `n` articles most similar to `q` (embeddings are L2-normalised: the dot
/// product is the cosine), best first, ties by ascending id.
fn nearest(set: &EvalSet, articles: &[Vec<f32>], q: &[f32], n: usize) -> Vec<i64> {
    let mut scored: Vec<(f32, i64)> = set
        .articles
        .iter()
        .zip(articles)
        .map(|(a, v)| (v.iter().zip(q).map(|(x, y)| x * y).sum::<f32>(), a.id))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.into_iter().take(n).map(|(_, id)| id).collect()
}

fn print_table(results: &[(&str, Metrics)]) {
    println!(
        "{:<8} {:<10} {:>4} {:>9} {:>9} {:>7}",
        "ranking", "group", "n", "recall@1", "recall@3", "MRR"
    );
    for (name, m) in results {
        let rows = std::iter::once(("overall", &m.overall))
            .chain(m.per_kind.iter().map(|(k, s)| (k.as_str(), s)));
        for (group, s) in rows {
            println!(
                "{:<8} {:<10} {:>4} {:>9.3} {:>9.3} {:>7.3}",
                name, group, s.n, s.recall_at_1, s.recall_at_3, s.mrr
            );
        }
    }
}
