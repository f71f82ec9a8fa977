//! A tiny built-in corpus of customer inquiries (Russian, English, transliterated), written
//! for these tests, and helpers shared by the test binaries.

#![allow(dead_code)] // each test binary uses a different part

use kommutator_textclass::{Classifier, Example, FitOptions, NgramConfig, NgramModel, Prediction};

/// The default request types.
pub const LABELS: [&str; 4] = ["interest", "claim", "bug", "other"];

/// `(text, label)` pairs: about a dozen per label, both languages.
pub const CORPUS: &[(&str, &str)] = &[
    ("Сколько стоит тариф Про на 10 пользователей?", "interest"),
    ("Хочу купить диван, есть ли доставка в Казань?", "interest"),
    (
        "Пришлите коммерческое предложение на 50 ноутбуков",
        "interest",
    ),
    ("Можно записаться на пробный урок в субботу?", "interest"),
    ("Есть ли в наличии шины 205/55 R16?", "interest"),
    ("hochu zakazat konsultaciyu, skolko stoit?", "interest"),
    (
        "How much is the annual plan for a team of five?",
        "interest",
    ),
    (
        "Do you ship to Germany and how long does delivery take?",
        "interest",
    ),
    ("Can we book a demo of your CRM next week?", "interest"),
    ("I'd like a quote for 20 office chairs", "interest"),
    (
        "Is the premium package available with a discount?",
        "interest",
    ),
    ("We want to buy 3 more licences", "interest"),
    ("Курьер привёз разбитую вазу, верните деньги", "claim"),
    ("Заказ опоздал на неделю, требую компенсацию", "claim"),
    (
        "С меня дважды списали оплату, верните деньги за второй платёж",
        "claim",
    ),
    (
        "Мастер не пришёл в назначенное время, отмените заказ",
        "claim",
    ),
    ("Прислали не тот размер куртки, хочу обменять", "claim"),
    ("vernite dengi za zakaz, tovar prishel slomannyi", "claim"),
    ("The parcel arrived damaged, I want a refund", "claim"),
    (
        "You charged me twice for the same order, refund please",
        "claim",
    ),
    ("Wrong item delivered, please exchange it", "claim"),
    (
        "Please cancel my subscription and return the money",
        "claim",
    ),
    (
        "The technician never showed up, I demand compensation",
        "claim",
    ),
    (
        "Your staff was rude to me, I want to file a complaint",
        "claim",
    ),
    ("Приложение вылетает при открытии корзины", "bug"),
    ("Не могу войти в личный кабинет, ошибка 500", "bug"),
    ("Кнопка «Оплатить» не нажимается на сайте", "bug"),
    ("Код подтверждения по СМС не приходит", "bug"),
    ("Отчёт показывает неправильные суммы за март", "bug"),
    ("prilozhenie zavisaet posle obnovleniya", "bug"),
    ("The app crashes when I open settings", "bug"),
    ("Login page shows error 403 after the update", "bug"),
    ("The export button does nothing in Chrome", "bug"),
    ("API returns 502 for every request since morning", "bug"),
    ("Password reset email never arrives", "bug"),
    ("The dashboard numbers are wrong after sync", "bug"),
    ("Спасибо, всё получили!", "other"),
    ("Предлагаем услуги SEO-продвижения вашего сайта", "other"),
    ("Я в отпуске до 20 числа, отвечу позже", "other"),
    ("Отпишите меня от рассылки", "other"),
    ("Добрый день", "other"),
    ("spasibo, vse ok", "other"),
    ("Thanks, got it!", "other"),
    ("We offer cheap backlinks for your website", "other"),
    ("I am out of office until Monday", "other"),
    ("Please remove me from your mailing list", "other"),
    ("Hello", "other"),
    ("Is this the pizza place? Wrong chat, sorry", "other"),
];

/// The corpus as [`Example`]s of weight 1.
pub fn examples() -> Vec<Example<'static>> {
    CORPUS
        .iter()
        .map(|&(text, label)| Example::new(text, label))
        .collect()
}

/// A small model (2^14 buckets) trained on the corpus.
pub fn trained(config: NgramConfig) -> NgramModel {
    let mut model = NgramModel::new(config, &LABELS).expect("valid labels");
    model
        .fit(
            &examples(),
            &FitOptions {
                passes: 5,
                seed: 7,
                calibration_holdout: 0.0,
            },
        )
        .expect("valid examples");
    model
}

/// The default configuration with fewer buckets, to keep test models small.
pub fn small_config() -> NgramConfig {
    NgramConfig {
        bits: 14,
        ..NgramConfig::default()
    }
}

/// Checks the prediction contract: every label once, probabilities finite, in [0, 1],
/// summing to 1, ranked highest first.
pub fn assert_well_formed(prediction: &Prediction, labels: &[String]) {
    let ranked = prediction.ranked();
    assert_eq!(ranked.len(), labels.len());
    let mut indices: Vec<usize> = ranked.iter().map(|s| s.index).collect();
    indices.sort_unstable();
    assert_eq!(indices, (0..labels.len()).collect::<Vec<_>>());
    for score in ranked {
        assert!(score.probability.is_finite(), "{score:?}");
        assert!((0.0..=1.0).contains(&score.probability), "{score:?}");
        assert_eq!(labels[score.index], score.label);
    }
    let sum: f32 = ranked.iter().map(|s| s.probability).sum();
    assert!((sum - 1.0).abs() < 1e-4, "sum {sum}");
    assert!(ranked
        .windows(2)
        .all(|w| w[0].probability >= w[1].probability));
}
