//! Measures [`NgramModel`] on public intent data sets and on the iConsultant seed set.
//!
//! ```text
//! cargo run --release -p kommutator-textclass --bin evaluate -- [--data ../shared/datasets]
//! ```
//!
//! For BANKING77 (`banking77/{train,test}.csv`, columns `text,category`) and CLINC150
//! (`clinc150/data_full.json`, in-scope test, trained on `train` only) it trains on (a) the
//! full training data and (b) 10 examples per label (a seeded selection), and (c, `online`)
//! starts from (b) and then learns the rest of the training data one
//! [`learn`](Classifier::learn) call per example, once, as operator feedback would arrive;
//! it reports the
//! test accuracy, the training time, the prediction latency per text, the model file size
//! and the calibration (expected calibration error, log-loss). On CLINC150 it also reports
//! the AUROC of the top probability for in-scope test vs `oos_test` texts: how well the
//! confidence separates "show as a hint" from "apply". The seed set (`textclass/seed/`) is
//! evaluated on its held-out file. Missing data is reported and skipped.
//!
//! Options:
//!
//! - `--data DIR`: the folder holding `banking77/` and `clinc150/` (default
//!   `../shared/datasets`, then the one beside the workspace);
//! - `--seed-set DIR`: the seed set folder (default `textclass/seed`);
//! - `--only NAME`: `banking77`, `clinc150` or `seed`;
//! - `--config JSON`: [`NgramConfig`] fields to override, e.g. `'{"bits":20}'`;
//! - `--passes N`, `--seed N`, `--holdout F`: [`FitOptions`];
//! - `--seeds N`: repeat every row with seeds `seed..seed + N` (the training shuffle and
//!   the 10-shot selection) and report the means, with the accuracy's standard deviation;
//! - `--dev`: the tuning split instead of the test sets (CLINC150 `val` / `oos_val`; a
//!   seeded 10 % of BANKING77's training data), which is what hyper-parameters were chosen
//!   on, so that the test numbers stay honest;
//! - `--errors`: also list the misread test texts of sets of at most 12 classes (the seed
//!   set), to see what the confusion matrix counts.
//!
//! Output: a table, then one `EVAL_JSON {...}` line per row.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use kommutator_textclass::metrics::{
    accuracy, auroc, expected_calibration_error, log_loss, Confusion,
};
use kommutator_textclass::rng::SplitMix64;
use kommutator_textclass::{Classifier, Example, FitOptions, NgramConfig, NgramModel};

/// Labelled texts: `(text, label)`.
type Labelled = Vec<(String, String)>;

/// One data set to evaluate.
#[derive(Debug)]
struct Dataset {
    name: &'static str,
    train: Labelled,
    test: Labelled,
    /// Out-of-scope texts (CLINC150), scored against the in-scope test set.
    out_of_scope: Vec<String>,
    /// Also evaluate a 10-shot training set.
    few_shot: bool,
}

/// One evaluated (data set, training set) pair.
#[derive(Debug, serde::Serialize)]
struct Row {
    dataset: String,
    setting: String,
    labels: usize,
    train_examples: usize,
    test_examples: usize,
    accuracy: f64,
    /// The standard deviation of the accuracy over the seeds (0 for one seed).
    accuracy_std: f64,
    seeds: u64,
    train_seconds: f64,
    predict_us_per_text: f64,
    model_bytes: usize,
    temperature: f32,
    holdout_accuracy: Option<f32>,
    ece: f64,
    log_loss: f64,
    oos_auroc: Option<f64>,
    config: NgramConfig,
    fit: FitOptions,
    /// Sets of at most 12 classes (the seed set): the confusion matrix (the first seed's).
    #[serde(skip_serializing_if = "Option::is_none")]
    confusion: Option<Confusion>,
    /// With `--errors`, on sets of at most 12 classes: (text, true, predicted) of every
    /// misread test text.
    #[serde(skip)]
    errors: Vec<(String, String, String)>,
}

#[derive(Debug)]
struct Args {
    data: Option<PathBuf>,
    seed_set: PathBuf,
    only: Option<String>,
    config: NgramConfig,
    fit: FitOptions,
    seeds: u64,
    dev: bool,
    errors: bool,
}

const SHOTS: usize = 10;

/// `println!` that ends the program quietly when standard output is closed (`| head`),
/// instead of panicking.
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
        Err(error) => {
            eprintln!("evaluate: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args = parse_args()?;
    args.config.validate().context("--config")?;
    let mut datasets = Vec::new();
    let wanted = |name: &str| args.only.as_deref().is_none_or(|only| only == name);
    match &args.data {
        Some(dir) => {
            if wanted("banking77") {
                datasets.push(load_banking77(dir, args.dev)?);
            }
            if wanted("clinc150") {
                datasets.push(load_clinc150(dir, args.dev)?);
            }
        }
        None if wanted("banking77") || wanted("clinc150") => out!(
            "public data sets not found (no --data, no ../shared/datasets); skipping BANKING77 and CLINC150"
        ),
        None => {}
    }
    if wanted("seed") {
        let seed = load_seed_set(&args.seed_set)?;
        if seed.is_empty() {
            out!(
                "seed set not found in {}; skipping it",
                args.seed_set.display()
            );
        }
        datasets.extend(seed);
    }

    out!(
        "split: {}; config: {}; fit: {}",
        if args.dev {
            "dev (CLINC150 val/oos_val, 10 % of BANKING77 train)"
        } else {
            "test"
        },
        serde_json::to_string(&args.config)?,
        serde_json::to_string(&FitOptions {
            seed: args.fit.seed,
            ..args.fit
        })?,
    );
    let mut rows = Vec::new();
    for dataset in &datasets {
        let mut full = Vec::new();
        let mut few = Vec::new();
        let mut online = Vec::new();
        for seed in args.fit.seed..args.fit.seed.saturating_add(args.seeds.max(1)) {
            let fit = FitOptions { seed, ..args.fit };
            full.push(evaluate(
                dataset,
                &dataset.train,
                "full",
                &args.config,
                &fit,
                &[],
            )?);
            if dataset.few_shot {
                let train = few_shot(&dataset.train, SHOTS, seed);
                few.push(evaluate(
                    dataset,
                    &train,
                    "10-shot",
                    &args.config,
                    &fit,
                    &[],
                )?);
                let rest = rest_of(&dataset.train, &train, seed);
                online.push(evaluate(
                    dataset,
                    &train,
                    "online",
                    &args.config,
                    &fit,
                    &rest,
                )?);
            }
        }
        rows.extend(mean(full));
        rows.extend(mean(few));
        rows.extend(mean(online));
    }
    print_table(&rows);
    for row in &rows {
        if let Some(c) = &row.confusion {
            out!("");
            out!(
                "{} {} ({} texts): confusion matrix",
                row.dataset,
                row.setting,
                c.total()
            );
            out!("{}", c.render().trim_end());
        }
        if args.errors && !row.errors.is_empty() {
            out!("");
            out!(
                "{} {}: misread texts (true -> predicted)",
                row.dataset,
                row.setting
            );
            for (text, truth, predicted) in &row.errors {
                out!("{truth:>9} -> {predicted:<9} {text}");
            }
        }
    }
    for row in &rows {
        out!("EVAL_JSON {}", serde_json::to_string(row)?);
    }
    Ok(())
}

fn parse_args() -> anyhow::Result<Args> {
    let mut data = None;
    let mut seed_set = Path::new(env!("CARGO_MANIFEST_DIR")).join("seed");
    let mut only = None;
    let mut config = NgramConfig::default();
    let mut fit = FitOptions::default();
    let mut seeds = 1;
    let mut dev = false;
    let mut errors = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--data" => data = Some(PathBuf::from(value("--data")?)),
            "--seed-set" => seed_set = PathBuf::from(value("--seed-set")?),
            "--only" => only = Some(value("--only")?),
            "--config" => {
                let json = value("--config")?;
                // Overrides on top of the defaults: merge the given fields into them.
                let mut merged = serde_json::to_value(config)?;
                let patch: serde_json::Value =
                    serde_json::from_str(&json).context("--config is not JSON")?;
                let (Some(target), Some(fields)) = (merged.as_object_mut(), patch.as_object())
                else {
                    bail!("--config must be a JSON object");
                };
                for (key, v) in fields {
                    target.insert(key.clone(), v.clone());
                }
                config = serde_json::from_value(merged).context("--config")?;
            }
            "--passes" => fit.passes = value("--passes")?.parse().context("--passes")?,
            "--seed" => fit.seed = value("--seed")?.parse().context("--seed")?,
            "--holdout" => {
                fit.calibration_holdout = value("--holdout")?.parse().context("--holdout")?
            }
            "--seeds" => seeds = value("--seeds")?.parse().context("--seeds")?,
            "--dev" => dev = true,
            "--errors" => errors = true,
            "--help" | "-h" => {
                out!("usage: evaluate [--data DIR] [--seed-set DIR] [--only banking77|clinc150|seed] [--config JSON] [--passes N] [--seed N] [--seeds N] [--holdout F] [--dev] [--errors]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    let data = match data {
        Some(dir) if dir.is_dir() => Some(dir),
        Some(dir) => {
            out!("data folder {} does not exist", dir.display());
            None
        }
        None => [
            PathBuf::from("../shared/datasets"),
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/datasets"),
        ]
        .into_iter()
        .find(|dir| dir.is_dir()),
    };
    Ok(Args {
        data,
        seed_set,
        only,
        config,
        fit,
        seeds,
        dev,
        errors,
    })
}

fn evaluate(
    dataset: &Dataset,
    train: &[(String, String)],
    setting: &str,
    config: &NgramConfig,
    fit: &FitOptions,
    feedback: &[(String, String)],
) -> anyhow::Result<Row> {
    let labels: Vec<&str> = {
        let mut seen = std::collections::BTreeSet::new();
        let mut labels = Vec::new();
        for (_, label) in train {
            if seen.insert(label.as_str()) {
                labels.push(label.as_str());
            }
        }
        labels
    };
    let mut model = NgramModel::new(*config, &labels)?;
    let examples: Vec<Example<'_>> = train.iter().map(|(t, l)| Example::new(t, l)).collect();
    let started = Instant::now();
    let report = model.fit(&examples, fit)?;
    // Operator verdicts, one `learn` each, in the order they come.
    for (text, label) in feedback {
        model.learn(text, label, 1.0)?;
    }
    let train_seconds = started.elapsed().as_secs_f64();

    let mut pairs = Vec::with_capacity(dataset.test.len());
    let mut errors = Vec::new();
    let mut confidence = Vec::with_capacity(dataset.test.len());
    let mut truth_probability = Vec::with_capacity(dataset.test.len());
    let started = Instant::now();
    for (text, label) in &dataset.test {
        let prediction = model.predict(text);
        let predicted = prediction.top().map_or(usize::MAX, |s| s.index);
        let truth = labels
            .iter()
            .position(|l| l == label)
            .unwrap_or(usize::MAX - 1);
        pairs.push((predicted, truth));
        if predicted != truth && labels.len() <= 12 {
            let name = labels.get(predicted).copied().unwrap_or("(none)");
            errors.push((text.clone(), label.clone(), name.to_owned()));
        }
        confidence.push((prediction.confidence(), predicted == truth));
        truth_probability.push(prediction.probability(label).unwrap_or(0.0));
    }
    let predict_us = started.elapsed().as_secs_f64() * 1e6 / dataset.test.len().max(1) as f64;
    let confusion = (labels.len() <= 12).then(|| {
        let mut c = Confusion::new(&labels);
        for &(predicted, truth) in &pairs {
            c.add(truth, predicted);
        }
        c.sorted()
    });
    let oos_auroc = if dataset.out_of_scope.is_empty() {
        None
    } else {
        let in_scope: Vec<f32> = confidence.iter().map(|&(c, _)| c).collect();
        let out: Vec<f32> = dataset
            .out_of_scope
            .iter()
            .map(|t| model.predict(t).confidence())
            .collect();
        auroc(&in_scope, &out)
    };
    Ok(Row {
        dataset: dataset.name.to_owned(),
        setting: setting.to_owned(),
        labels: labels.len(),
        train_examples: train.len() + feedback.len(),
        test_examples: dataset.test.len(),
        accuracy: accuracy(&pairs),
        accuracy_std: 0.0,
        seeds: 1,
        train_seconds,
        predict_us_per_text: predict_us,
        model_bytes: model.to_bytes().len(),
        temperature: report.temperature,
        holdout_accuracy: report.holdout_accuracy,
        ece: expected_calibration_error(&confidence, 15),
        log_loss: log_loss(&truth_probability),
        oos_auroc,
        config: *config,
        fit: *fit,
        confusion,
        errors,
    })
}

/// The mean of the rows of one (data set, setting) over seeds; `None` for no rows.
fn mean(rows: Vec<Row>) -> Option<Row> {
    let n = rows.len() as f64;
    let avg = |f: &dyn Fn(&Row) -> f64| rows.iter().map(f).sum::<f64>() / n;
    let accuracy = avg(&|r| r.accuracy);
    let accuracy_std = avg(&|r| (r.accuracy - accuracy).powi(2)).sqrt();
    let train_seconds = avg(&|r| r.train_seconds);
    let predict_us_per_text = avg(&|r| r.predict_us_per_text);
    let model_bytes = avg(&|r| r.model_bytes as f64).round() as usize;
    let temperature = avg(&|r| f64::from(r.temperature)) as f32;
    let holdout = avg(&|r| f64::from(r.holdout_accuracy.unwrap_or(f32::NAN))) as f32;
    let ece = avg(&|r| r.ece);
    let log_loss = avg(&|r| r.log_loss);
    let oos_auroc = avg(&|r| r.oos_auroc.unwrap_or(f64::NAN));
    let mut first = rows.into_iter().next()?;
    first.seeds = n as u64;
    first.accuracy = accuracy;
    first.accuracy_std = accuracy_std;
    first.train_seconds = train_seconds;
    first.predict_us_per_text = predict_us_per_text;
    first.model_bytes = model_bytes;
    first.temperature = temperature;
    first.holdout_accuracy = holdout.is_finite().then_some(holdout);
    first.ece = ece;
    first.log_loss = log_loss;
    first.oos_auroc = oos_auroc.is_finite().then_some(oos_auroc);
    Some(first)
}

fn print_table(rows: &[Row]) {
    out!(
        "{:<13} {:<8} {:>6} {:>7} {:>6} {:>9} {:>6} {:>8} {:>10} {:>12} {:>6} {:>6} {:>8} {:>9}",
        "dataset",
        "setting",
        "labels",
        "train",
        "test",
        "accuracy",
        "± std",
        "train s",
        "predict µs",
        "model bytes",
        "T",
        "ECE",
        "logloss",
        "OOS AUROC"
    );
    for r in rows {
        out!(
            "{:<13} {:<8} {:>6} {:>7} {:>6} {:>8.2}% {:>6.2} {:>8.2} {:>10.1} {:>12} {:>6.2} {:>6.3} {:>8.3} {:>9}",
            r.dataset,
            r.setting,
            r.labels,
            r.train_examples,
            r.test_examples,
            r.accuracy * 100.0,
            r.accuracy_std * 100.0,
            r.train_seconds,
            r.predict_us_per_text,
            r.model_bytes,
            r.temperature,
            r.ece,
            r.log_loss,
            r.oos_auroc.map_or_else(|| "-".to_owned(), |a| format!("{a:.3}")),
        );
    }
}

/// `shots` examples per label, chosen by a seeded shuffle, in the original order.
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

/// The training examples not in `chosen` (matched by text and label), in a seeded order:
/// the stream of operator feedback after a 10-shot start.
fn rest_of(train: &[(String, String)], chosen: &[(String, String)], seed: u64) -> Labelled {
    let chosen: std::collections::HashSet<&(String, String)> = chosen.iter().collect();
    let mut rest: Labelled = train
        .iter()
        .filter(|row| !chosen.contains(row))
        .cloned()
        .collect();
    SplitMix64::new(seed ^ 0x5eed).shuffle(&mut rest);
    rest
}

/// A seeded split off `all`: `(rest, held)` with `held` the given fraction.
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
            out.push(row)
        } else {
            rest.push(row)
        }
    }
    (rest, out)
}

fn load_banking77(dir: &Path, dev: bool) -> anyhow::Result<Dataset> {
    let read = |name: &str| -> anyhow::Result<Labelled> {
        let path = dir.join("banking77").join(name);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let records = parse_csv(&text).with_context(|| format!("parsing {}", path.display()))?;
        let mut rows = records.into_iter();
        let header = rows.next().unwrap_or_default();
        if header != ["text", "category"] {
            bail!(
                "{}: expected the header text,category, got {header:?}",
                path.display()
            );
        }
        rows.enumerate()
            .map(|(i, mut r)| match (r.pop(), r.pop(), r.is_empty()) {
                (Some(label), Some(text), true) => Ok((text, label)),
                _ => bail!(
                    "{}: record {} does not have 2 fields",
                    path.display(),
                    i + 2
                ),
            })
            .collect()
    };
    let train = read("train.csv")?;
    let (train, test) = if dev {
        split(train, 0.1, 77)
    } else {
        (train, read("test.csv")?)
    };
    Ok(Dataset {
        name: "banking77",
        train,
        test,
        out_of_scope: Vec::new(),
        few_shot: true,
    })
}

fn load_clinc150(dir: &Path, dev: bool) -> anyhow::Result<Dataset> {
    let path = dir.join("clinc150").join("data_full.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let part = |key: &str| -> anyhow::Result<Labelled> {
        let rows = json
            .get(key)
            .and_then(|v| v.as_array())
            .with_context(|| format!("{}: no array {key}", path.display()))?;
        rows.iter()
            .map(|row| match row.as_array().map(Vec::as_slice) {
                Some([serde_json::Value::String(t), serde_json::Value::String(l)]) => {
                    Ok((t.clone(), l.clone()))
                }
                _ => bail!(
                    "{}: {key} has an entry that is not [text, label]",
                    path.display()
                ),
            })
            .collect()
    };
    let (test, oos) = if dev {
        ("val", "oos_val")
    } else {
        ("test", "oos_test")
    };
    Ok(Dataset {
        name: "clinc150",
        train: part("train")?,
        test: part(test)?,
        out_of_scope: part(oos)?.into_iter().map(|(t, _)| t).collect(),
        few_shot: true,
    })
}

/// The seed set, if its folder exists (`train.tsv` and `test.tsv`: `label<TAB>text` per
/// line, line breaks inside a text written as the two characters `\n`; see its README),
/// and a robustness check built from it, `seed-translit`: the same training data, tested
/// on the held-out texts written mostly in Cyrillic, transliterated to Latin with a scheme
/// other than the model's folding table (`х` → `kh`, `й` → `j`, `я` → `ja` ...), the way
/// customers without a Cyrillic keyboard write.
fn load_seed_set(dir: &Path) -> anyhow::Result<Vec<Dataset>> {
    let (train, test) = (dir.join("train.tsv"), dir.join("test.tsv"));
    if !train.is_file() || !test.is_file() {
        return Ok(Vec::new());
    }
    let train = read_tsv(&train)?;
    let test = read_tsv(&test)?;
    let translit: Labelled = test
        .iter()
        .filter(|(text, _)| {
            let cyrillic = text
                .chars()
                .filter(|c| ('\u{0400}'..='\u{04FF}').contains(c))
                .count();
            cyrillic * 2 > text.chars().filter(|c| c.is_alphabetic()).count()
        })
        .map(|(text, label)| (transliterate_gost_like(text), label.clone()))
        .collect();
    Ok(vec![
        Dataset {
            name: "seed",
            train: train.clone(),
            test,
            out_of_scope: Vec::new(),
            few_shot: true,
        },
        Dataset {
            name: "seed-translit",
            train,
            test: translit,
            out_of_scope: Vec::new(),
            few_shot: false,
        },
    ])
}

/// Russian → Latin in the style of GOST 7.79 system B / passports, deliberately unlike the
/// model's own folding table.
fn transliterate_gost_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        let lower = c.to_lowercase().next().unwrap_or(c);
        let latin = match lower {
            'а' => "a",
            'б' => "b",
            'в' => "v",
            'г' => "g",
            'д' => "d",
            'е' => "e",
            'ё' => "jo",
            'ж' => "zh",
            'з' => "z",
            'и' => "i",
            'й' => "j",
            'к' => "k",
            'л' => "l",
            'м' => "m",
            'н' => "n",
            'о' => "o",
            'п' => "p",
            'р' => "r",
            'с' => "s",
            'т' => "t",
            'у' => "u",
            'ф' => "f",
            'х' => "kh",
            'ц' => "c",
            'ч' => "ch",
            'ш' => "sh",
            'щ' => "shh",
            'ъ' => "",
            'ы' => "y",
            'ь' => "",
            'э' => "e",
            'ю' => "ju",
            'я' => "ja",
            _ => {
                out.push(c);
                continue;
            }
        };
        out.push_str(latin);
    }
    out
}

fn read_tsv(path: &Path) -> anyhow::Result<Labelled> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| match line.split_once('\t') {
            Some((label, text)) if !label.is_empty() => {
                Ok((text.replace("\\n", "\n"), label.to_owned()))
            }
            _ => bail!("{}:{}: expected label<TAB>text", path.display(), i + 1),
        })
        .collect()
}

/// Parses RFC 4180 CSV: comma-separated fields, optionally double-quoted, `""` for a quote
/// inside quotes, records ended by LF or CRLF (also inside quotes, where they are kept).
fn parse_csv(text: &str) -> anyhow::Result<Vec<Vec<String>>> {
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
    let mut field_started = false; // a field is pending, even if empty
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
        bail!("unterminated quoted field at line {line}");
    }
    if field_started || !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_commas_and_newlines() {
        let text = "text,category\r\n\"Hi, \"\"you\"\"\nthere\",a\nplain,b\n\n\"\",c";
        let records = parse_csv(text).expect("valid csv");
        assert_eq!(
            records,
            vec![
                vec!["text".to_owned(), "category".to_owned()],
                vec!["Hi, \"you\"\nthere".to_owned(), "a".to_owned()],
                vec!["plain".to_owned(), "b".to_owned()],
                vec![String::new(), "c".to_owned()],
            ]
        );
        assert!(parse_csv("\"open,a\n").is_err());
    }

    #[test]
    fn few_shot_takes_at_most_k_per_label() {
        let train: Labelled = (0..100)
            .map(|i| (format!("t{i}"), format!("l{}", i % 3)))
            .collect();
        let few = few_shot(&train, 5, 0);
        assert_eq!(few.len(), 15);
        assert_eq!(few, few_shot(&train, 5, 0));
    }
}
