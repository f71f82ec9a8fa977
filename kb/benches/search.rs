//! Search and write latency on 5,000 synthetic articles (80 % Russian, 20 % English), made
//! deterministically from a small vocabulary of real word forms.
//!
//! `cargo bench -p kommutator-kb --bench search`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use kommutator_kb::{KbDoc, KbFilter, KbIndex};

const ARTICLES: i64 = 5_000;

const RU: &[&str] = &[
    "доставка",
    "доставки",
    "доставку",
    "заказ",
    "заказа",
    "заказы",
    "оплата",
    "оплаты",
    "оплатить",
    "возврат",
    "возврата",
    "товар",
    "товара",
    "товары",
    "курьер",
    "курьера",
    "пункт",
    "выдачи",
    "срок",
    "сроки",
    "счёт",
    "счета",
    "карта",
    "картой",
    "банк",
    "банка",
    "договор",
    "договора",
    "тариф",
    "тарифы",
    "подключение",
    "подключить",
    "интернет",
    "роутер",
    "роутера",
    "настройка",
    "настройки",
    "пароль",
    "пароля",
    "вход",
    "личный",
    "кабинет",
    "кабинета",
    "скидка",
    "скидки",
    "акция",
    "гарантия",
    "гарантии",
    "ремонт",
    "сервис",
    "клиент",
    "клиента",
    "менеджер",
    "звонок",
    "звонка",
    "письмо",
    "адрес",
    "адреса",
    "телефон",
    "номер",
    "документы",
    "паспорт",
    "неделя",
    "день",
    "дня",
    "рабочих",
];

const EN: &[&str] = &[
    "delivery",
    "delivered",
    "deliveries",
    "order",
    "orders",
    "ordered",
    "payment",
    "pay",
    "paid",
    "refund",
    "refunds",
    "refunded",
    "item",
    "items",
    "courier",
    "pickup",
    "point",
    "invoice",
    "invoices",
    "card",
    "bank",
    "contract",
    "plan",
    "plans",
    "connection",
    "connect",
    "internet",
    "router",
    "settings",
    "password",
    "login",
    "account",
    "discount",
    "warranty",
    "repair",
    "service",
    "customer",
    "manager",
    "call",
    "email",
    "address",
    "phone",
    "number",
    "documents",
    "week",
    "day",
    "days",
    "business",
    "shipping",
    "tracking",
];

const GLUE_RU: &[&str] = &["и", "в", "на", "для", "по", "с", "не", "как", "это", "если"];
const GLUE_EN: &[&str] = &[
    "the", "and", "for", "to", "of", "with", "is", "your", "if", "a",
];

const TAGS: &[&str] = &[
    "доставка",
    "оплата",
    "возврат",
    "интернет",
    "Wi-Fi",
    "тарифы",
    "личный кабинет",
    "billing",
];

/// A small deterministic generator (xorshift64*): no dependency, the same corpus every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        // n is a small slice length: the modulo bias is irrelevant here.
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, words: &[&'a str]) -> &'a str {
        words
            .get(self.below(words.len()))
            .copied()
            .unwrap_or_default()
    }

    fn sentence(&mut self, words: &[&str], glue: &[&str], len: usize) -> String {
        let mut out = String::new();
        for i in 0..len {
            if i > 0 {
                out.push(' ');
            }
            let word = if self.below(4) == 0 {
                self.pick(glue)
            } else {
                self.pick(words)
            };
            out.push_str(word);
        }
        out
    }
}

fn corpus() -> Vec<KbDoc> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    (0..ARTICLES)
        .map(|id| {
            let english = rng.below(5) == 0;
            let (words, glue, language) = if english {
                (EN, GLUE_EN, "en")
            } else {
                (RU, GLUE_RU, "ru")
            };
            let title_len = 3 + rng.below(4);
            let title = rng.sentence(words, glue, title_len);
            let mut body = String::new();
            for _ in 0..(4 + rng.below(8)) {
                let len = 8 + rng.below(14);
                body.push_str(&rng.sentence(words, glue, len));
                body.push_str(". ");
            }
            let tags = (0..rng.below(3))
                .map(|_| rng.pick(TAGS).to_owned())
                .collect();
            KbDoc {
                id,
                title,
                body,
                tags,
                language: language.to_owned(),
                department_id: (rng.below(3) != 0).then(|| rng.below(10) as i64),
                public: rng.below(10) < 7,
            }
        })
        .collect()
}

const SENTENCE: &str = "Здравствуйте! Когда будет доставка моего заказа, курьер не звонил?";

const PARAGRAPH: &str = "Добрый день. Я оформил заказ на прошлой неделе и оплатил его картой, \
    но до сих пор не получил ни письма, ни звонка от курьера. В личном кабинете написано, что \
    заказ передан в доставку, а номер для отслеживания не работает. Подскажите, пожалуйста, \
    какие сроки доставки в мой город, можно ли изменить адрес и как оформить возврат денег, \
    если товар так и не привезут. Also my invoice was not delivered by email.";

fn benches(c: &mut Criterion) {
    let docs = corpus();
    let index = KbIndex::new().expect("index");
    index.upsert_many(&docs).expect("build");
    let all = KbFilter::default();
    let filtered = KbFilter {
        department_ids: Some(vec![1, 2, 3]),
        public_only: true,
        language: Some("ru".to_owned()),
    };

    let mut group = c.benchmark_group("search_5000");
    group.bench_function("sentence", |b| {
        b.iter(|| index.search(black_box(SENTENCE), &all, 10).expect("search"))
    });
    group.bench_function("sentence_filtered", |b| {
        b.iter(|| {
            index
                .search(black_box(SENTENCE), &filtered, 10)
                .expect("search")
        })
    });
    group.bench_function("paragraph", |b| {
        b.iter(|| {
            index
                .search(black_box(PARAGRAPH), &all, 10)
                .expect("search")
        })
    });
    let megabyte = PARAGRAPH.repeat((1 << 20) / PARAGRAPH.len() + 1);
    group.bench_function("hostile_1mb", |b| {
        b.iter(|| {
            index
                .search(black_box(&megabyte), &all, 10)
                .expect("search")
        })
    });
    group.finish();

    let mut group = c.benchmark_group("write_5000");
    let mut next = 0usize;
    group.bench_function("upsert", |b| {
        b.iter_batched(
            || {
                // Replace an existing article by a slightly changed copy.
                let mut doc = docs.get(next % docs.len()).cloned().unwrap_or_default();
                next += 1;
                doc.title.push_str(" обновлено");
                doc
            },
            |doc| index.upsert(&doc).expect("upsert"),
            BatchSize::SmallInput,
        )
    });
    group.sample_size(10);
    group.bench_function("rebuild_upsert_many", |b| {
        b.iter_batched(
            || KbIndex::new().expect("index"),
            |fresh| {
                fresh.upsert_many(&docs).expect("build");
                fresh
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(search, benches);
criterion_main!(search);
