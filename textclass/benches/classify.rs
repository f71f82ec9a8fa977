//! Cost of the n-gram engine's hot paths, with the default configuration (2^18 buckets) and
//! the four default request types:
//!
//! - `predict/short`: a ~60-character messenger message;
//! - `predict/long`: a ~2 KB e-mail;
//! - `learn/one`: one online update from an operator verdict (a ~60-character text);
//! - `featurize/1MB`: featurising 1 MB of mixed Russian/English text, which is cut to the
//!   first 64 KiB (`MAX_INPUT_BYTES`): the worst case a single inquiry can cost.
//!
//! Run with `cargo bench -p kommutator-textclass --bench classify`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kommutator_textclass::{Classifier, Example, FitOptions, NgramConfig, NgramModel};

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

const SHORT: &str = "Здравствуйте! Заказ 4471 не пришёл, где мой refund?? 😡";

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

fn megabyte() -> String {
    let base = "Мой zakaz не пришёл вовремя, refund please!!! Оплата прошла 12.03, код 55501. ";
    base.repeat((1 << 20) / base.len() + 1)
}

fn model() -> NgramModel {
    let labels = ["interest", "claim", "bug", "other"];
    let mut model = NgramModel::new(NgramConfig::default(), &labels).expect("valid labels");
    let examples: Vec<Example<'_>> = TRAIN.iter().map(|&(t, l)| Example::new(t, l)).collect();
    model
        .fit(
            &examples,
            &FitOptions {
                calibration_holdout: 0.0,
                ..FitOptions::default()
            },
        )
        .expect("valid examples");
    model
}

fn bench(c: &mut Criterion) {
    let model = model();
    let long = long_text();
    let mut group = c.benchmark_group("predict");
    group.throughput(Throughput::Bytes(SHORT.len() as u64));
    group.bench_function("short", |b| b.iter(|| model.predict(black_box(SHORT))));
    group.throughput(Throughput::Bytes(long.len() as u64));
    group.bench_function("long", |b| b.iter(|| model.predict(black_box(&long))));
    group.finish();

    let mut group = c.benchmark_group("learn");
    let mut learner = model.clone();
    group.bench_function("one", |b| {
        b.iter(|| learner.learn(black_box(SHORT), "claim", 1.0));
    });
    group.finish();

    let text = megabyte();
    let mut group = c.benchmark_group("featurize");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.sample_size(20);
    group.bench_function("1MB", |b| b.iter(|| model.featurize(black_box(&text))));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
