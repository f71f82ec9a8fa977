//! Knowledge base retrieval with and without the encoder, on the labelled set of `kb/eval/`:
//! keyword-only (BM25, [`KbIndex`]), vector-only (cosine of e5 embeddings: `passage:` for
//! articles, `query:` for questions), the two fused by reciprocal rank (k = 60; `rrf-v2`:
//! the vector list weighted twice) and by score ([`kommutator_kb::hybrid`], at keyword
//! weights 0.1–0.5; the hub uses [`kommutator_kb::HYBRID_KEYWORD_WEIGHT`]).
//!
//! ```text
//! bash models/fetch.sh
//! cargo run -p kommutator-encoder --bin kb-fused -- [--models models/e5] [--dir kb/eval]
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

/// The hub's least cosine for a candidate by meaning alone (`knowledge::MIN_SIMILARITY`).
const MIN_SIMILARITY: f32 = 0.80;

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
    let mut weighted = Vec::with_capacity(set.queries.len());
    // The hybrid score fusion at a few keyword weights (the hub uses HYBRID_KEYWORD_WEIGHT).
    const WEIGHTS: [f32; 4] = [0.1, 0.2, 0.3, 0.5];
    let mut convex: Vec<Vec<Vec<i64>>> = vec![Vec::new(); WEIGHTS.len()];
    // As the hub ranks: only articles at least MIN_SIMILARITY close by meaning, then the
    // hybrid fusion at HYBRID_KEYWORD_WEIGHT.
    let mut hub = Vec::with_capacity(set.queries.len());
    for (q, qv) in set.queries.iter().zip(&query_vecs) {
        let hits = index.search(&q.text, &KbFilter::default(), CANDIDATES)?;
        let k: Vec<i64> = hits.iter().map(|h| h.id).collect();
        let scored = nearest_scored(&set, &article_vecs, qv, CANDIDATES);
        let v: Vec<i64> = scored.iter().map(|(_, id)| *id).collect();
        let f: Vec<i64> = rrf(&[k.clone(), v.clone()], RRF_K)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let w: Vec<i64> = rrf_weighted(&[(&k, 1.0), (&v, 2.0)], RRF_K)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let kw: Vec<(i64, f32)> = hits.iter().map(|h| (h.id, h.score)).collect();
        let vs: Vec<(i64, f32)> = scored.iter().map(|(s, id)| (*id, *s)).collect();
        let close: Vec<(i64, f32)> = vs
            .iter()
            .copied()
            .filter(|(_, s)| *s >= MIN_SIMILARITY)
            .collect();
        hub.push(
            kommutator_kb::hybrid(&kw, &close, kommutator_kb::HYBRID_KEYWORD_WEIGHT)
                .into_iter()
                .map(|(id, _)| id)
                .collect::<Vec<i64>>(),
        );
        for (slot, w) in convex.iter_mut().zip(WEIGHTS) {
            slot.push(
                kommutator_kb::hybrid(&kw, &vs, w)
                    .into_iter()
                    .map(|(id, _)| id)
                    .collect(),
            );
        }
        keyword.push(k);
        vector.push(v);
        fused.push(f);
        weighted.push(w);
    }
    similarity_report(&set, &encoder, &article_vecs, &query_vecs);
    let names = ["hyb-0.1", "hyb-0.2", "hyb-0.3", "hyb-0.5"];
    let mut results = vec![
        ("keyword", eval::metrics(&set, &keyword)),
        ("vector", eval::metrics(&set, &vector)),
        ("rrf", eval::metrics(&set, &fused)),
        ("rrf-v2", eval::metrics(&set, &weighted)),
    ];
    for (name, rankings) in names.iter().zip(&convex) {
        results.push((name, eval::metrics(&set, rankings)));
    }
    results.push(("hub", eval::metrics(&set, &hub)));
    print_table(&results);
    let json: Vec<String> = results
        .iter()
        .map(|(name, m)| format!("{}:{}", eval::json_string(name), m.to_json()))
        .collect();
    println!("EVAL_JSON {{{}}}", json.join(","));
    Ok(())
}

/// The `n` articles most similar to `q` as (cosine, id) (embeddings are L2-normalised: the
/// dot product is the cosine), best first, ties by ascending id.
fn nearest_scored(set: &EvalSet, articles: &[Vec<f32>], q: &[f32], n: usize) -> Vec<(f32, i64)> {
    let mut scored: Vec<(f32, i64)> = set
        .articles
        .iter()
        .zip(articles)
        .map(|(a, v)| (v.iter().zip(q).map(|(x, y)| x * y).sum::<f32>(), a.id))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.truncate(n);
    scored
}

/// Reciprocal rank fusion with a weight per list: `Σ w / (k + rank)`.
fn rrf_weighted(lists: &[(&Vec<i64>, f32)], k: f32) -> Vec<(i64, f32)> {
    let mut score: std::collections::HashMap<i64, f32> = std::collections::HashMap::new();
    for (list, w) in lists {
        for (i, id) in list.iter().enumerate() {
            *score.entry(*id).or_default() += w / (k + i as f32 + 1.0);
        }
    }
    let mut out: Vec<(i64, f32)> = score.into_iter().collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}

/// Questions about nothing in the knowledge base (written for this check): their best
/// article's cosine is what the hub's `MIN_SIMILARITY` must stay above.
const OFF_TOPIC: [&str; 12] = [
    "какая погода будет завтра в Москве",
    "рецепт борща со свёклой",
    "кто выиграл чемпионат мира по футболу",
    "посоветуйте хороший фильм на вечер",
    "как выучить английский за месяц",
    "сколько лет живут черепахи",
    "what is the capital of Australia",
    "how do I bake sourdough bread",
    "who wrote War and Peace",
    "best hiking trails in Norway",
    "asdf qwerty zxcv",
    "ok",
];

/// Prints where the cosine of a question's relevant article falls, and the best cosine of
/// off-topic questions, at a few thresholds.
fn similarity_report(
    set: &EvalSet,
    encoder: &Encoder,
    articles: &[Vec<f32>],
    queries: &[Vec<f32>],
) {
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let mut relevant: Vec<f32> = Vec::new();
    for (q, qv) in set.queries.iter().zip(queries) {
        let best = set
            .articles
            .iter()
            .zip(articles)
            .filter(|(a, _)| q.relevant.contains(&a.id))
            .map(|(_, v)| dot(v, qv))
            .fold(f32::NEG_INFINITY, f32::max);
        relevant.push(best);
    }
    let mut off: Vec<f32> = OFF_TOPIC
        .iter()
        .map(|t| {
            let qv = encoder.embed(t, Kind::Query);
            articles
                .iter()
                .map(|v| dot(v, &qv))
                .fold(f32::NEG_INFINITY, f32::max)
        })
        .collect();
    relevant.sort_by(f32::total_cmp);
    off.sort_by(f32::total_cmp);
    let pct = |v: &[f32], p: f32| {
        let i = ((v.len() as f32 - 1.0) * p).round() as usize;
        v.get(i).copied().unwrap_or(f32::NAN)
    };
    println!(
        "cosine of the relevant article: min {:.3} p5 {:.3} p10 {:.3} p50 {:.3}; off-topic best: p50 {:.3} p90 {:.3} max {:.3}",
        pct(&relevant, 0.0),
        pct(&relevant, 0.05),
        pct(&relevant, 0.10),
        pct(&relevant, 0.5),
        pct(&off, 0.5),
        pct(&off, 0.9),
        pct(&off, 1.0)
    );
    for t in [0.75_f32, 0.78, 0.80, 0.82, 0.84] {
        let kept = relevant.iter().filter(|c| **c >= t).count();
        let noise = off.iter().filter(|c| **c >= t).count();
        println!(
            "  threshold {t:.2}: relevant article reachable for {kept}/{} questions; {noise}/{} off-topic questions get a suggestion",
            relevant.len(),
            off.len()
        );
    }
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
