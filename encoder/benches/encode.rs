//! Cost of engine 2's hot paths with multilingual-e5-small (`models/e5`, made by
//! `models/fetch.sh`), one thread, as the hub runs one reading per core:
//!
//! - `embed/short`: a 54-character messenger message;
//! - `embed/long`: a ~2 KB e-mail, cut to the encoder's token limit (the worst case a
//!   single inquiry can cost: longer texts are cut to the same number of tokens);
//! - `head/predict`: the linear head over one embedding (four request types);
//! - `classify/short-uncached`: a whole reading of a text not seen before (embedding +
//!   head), what the hub pays per new inquiry.
//!
//! Without the model files the benches are skipped with a message (the hub runs without
//! them too). Run with `cargo bench -p kommutator-encoder --bench encode`; the folder can be
//! set with `KOMMUTATOR_MODELS_DIR`.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use kommutator_encoder::{Encoder, EncoderClassifier, EncoderClassifierConfig, Kind};
use kommutator_textclass::{Classifier, Example, FitOptions};

const SHORT: &str = "Здравствуйте! Заказ 4471 не пришёл, где мой refund?? 😡";

const TRAIN: &[(&str, &str)] = &[
    ("Сколько стоит тариф Про на 10 пользователей?", "interest"),
    (
        "How much is the annual plan for a team of five?",
        "interest",
    ),
    ("Хочу купить диван, есть ли доставка в Казань?", "interest"),
    ("Курьер привёз разбитую вазу, верните деньги", "claim"),
    ("The parcel arrived damaged, I want a refund", "claim"),
    ("Заказ опоздал на неделю, требую компенсацию", "claim"),
    ("Приложение вылетает при открытии корзины", "bug"),
    ("The app crashes when I open settings", "bug"),
    ("Не могу войти в личный кабинет, ошибка 500", "bug"),
    ("Спасибо, всё получили!", "other"),
    ("We offer cheap backlinks for your website", "other"),
    ("Я в отпуске до 20 числа, отвечу позже", "other"),
];

fn long_text() -> String {
    let mut text = String::from(
        "Добрый день, коллеги!\n\nПишу по поводу нашего договора № 2024-117 на поставку оборудования. \
         We received the second batch yesterday, but three of the units were damaged in transit \
         and one arrived without the power supply. ",
    );
    while text.len() < 2000 {
        text.push_str(
            "Просим заменить повреждённые позиции или вернуть деньги за них, а также прислать \
             недостающий блок питания. Photos of the boxes and the delivery note are attached. ",
        );
    }
    text.push_str("\n\nС уважением,\nИван Петров\nотдел закупок, ООО «Ромашка»\n+7 900 000-00-00");
    text
}

fn models_dir() -> PathBuf {
    std::env::var_os("KOMMUTATOR_MODELS_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/e5"),
        PathBuf::from,
    )
}

fn benches(c: &mut Criterion) {
    let dir = models_dir();
    let encoder = match Encoder::load(&dir) {
        Ok(e) => Arc::new(e),
        Err(e) => {
            eprintln!("encode bench skipped: {e} (make the model with `bash models/fetch.sh`)");
            return;
        }
    };
    let long = long_text();

    let mut group = c.benchmark_group("embed");
    group.sample_size(30);
    group.bench_function("short", |b| {
        b.iter(|| encoder.embed(black_box(SHORT), Kind::Query));
    });
    group.bench_function("long", |b| {
        b.iter(|| encoder.embed(black_box(&long), Kind::Query));
    });
    group.finish();

    let labels = ["interest", "claim", "bug", "other"];
    let config = EncoderClassifierConfig {
        cache_entries: 0,
        ..EncoderClassifierConfig::default()
    };
    let mut classifier =
        EncoderClassifier::new(Arc::clone(&encoder), &labels, config).expect("valid labels");
    let examples: Vec<Example> = TRAIN
        .iter()
        .map(|(text, label)| Example::new(text, label))
        .collect();
    classifier
        .fit(&examples, &FitOptions::default())
        .expect("the head trains");

    let embedding = encoder.embed(SHORT, Kind::Query);
    c.bench_function("head/predict", |b| {
        b.iter(|| classifier.head().predict(black_box(&embedding)));
    });

    // A different text each time, so no cache or memory can answer it.
    let counter = AtomicU64::new(0);
    let mut group = c.benchmark_group("classify");
    group.sample_size(30);
    group.bench_function("short-uncached", |b| {
        b.iter(|| {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            let text = format!("{SHORT} #{n}");
            classifier.predict(black_box(&text))
        });
    });
    group.finish();
}

criterion_group!(encode, benches);
criterion_main!(encode);
