//! iConsultant's engine 1 on any text (inquiries come from anyone): a model trained on a
//! few examples predicts every input, as text and as bytes read lossily, with finite
//! probabilities summing to 1, learns it without a panic, and round-trips through its file
//! format with the same prediction; any bytes given as a model file are read or refused,
//! never a panic.
#![no_main]

use std::sync::OnceLock;

use kommutator_textclass::{Classifier, Example, FitOptions, NgramConfig, NgramModel};
use libfuzzer_sys::fuzz_target;

fn trained() -> &'static NgramModel {
    static MODEL: OnceLock<NgramModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        let labels = ["interest", "claim", "bug", "other"];
        let config = NgramConfig {
            bits: 12,
            ..NgramConfig::default()
        };
        let mut m = NgramModel::new(config, &labels).expect("model");
        let ex = [
            Example::new("сколько стоит доставка", "interest"),
            Example::new("how much is the pro plan", "interest"),
            Example::new("верните деньги, товар сломан", "claim"),
            Example::new("refund please, it arrived broken", "claim"),
            Example::new("приложение падает при входе", "bug"),
            Example::new("the app crashes on login", "bug"),
            Example::new("спасибо", "other"),
            Example::new("unsubscribe", "other"),
        ];
        m.fit(&ex, &FitOptions::default()).expect("fit");
        m
    })
}

fuzz_target!(|data: &[u8]| {
    let model = trained();
    let text = String::from_utf8_lossy(data);
    let p = model.predict(&text);
    let sum: f32 = p.ranked().iter().map(|s| s.probability).sum();
    assert!(p.ranked().iter().all(|s| s.probability.is_finite()));
    assert!((sum - 1.0).abs() < 1e-3, "probabilities sum to {sum}");

    let mut copy = model.clone();
    copy.learn(&text, "claim", 1.0).expect("learn");
    let back = NgramModel::from_bytes(&copy.to_bytes()).expect("round trip");
    assert_eq!(back.predict(&text), copy.predict(&text));

    let _ = NgramModel::from_bytes(data);
});
