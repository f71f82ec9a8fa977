//! Any text the hub can receive: empty, blank, huge, binary-looking, mixed scripts, emoji.
//! Prediction and learning never panic, and predictions are always well-formed.
//! (No wall-clock assertions: the cost of a 1 MB text is measured by the bench.)

mod common;

use common::{assert_well_formed, small_config, trained};
use kommutator_textclass::normalize::{normalize, MAX_INPUT_BYTES};
use kommutator_textclass::{Classifier, NgramModel, Signal};

fn hostile_texts() -> Vec<String> {
    let mut control: String = (0u8..32).map(char::from).collect();
    control.push('\u{7F}');
    control.extend([
        '\u{80}', '\u{9F}', '\u{200B}', '\u{FEFF}', '\u{202E}', '\u{FFFD}',
    ]);
    let binary: String = (0..4096u32)
        .map(|i| char::from_u32((i * 7919) % 0xD7FF).unwrap_or('\u{FFFD}'))
        .collect();
    vec![
        String::new(),
        " ".to_owned(),
        " \t\r\n\u{00A0}\u{3000}  \n".to_owned(),
        "...,,,---!!!???".to_owned(),
        control.repeat(100),
        binary,
        "а".repeat(1 << 20),     // 2 MB of one Cyrillic letter, no space
        "word ".repeat(220_000), // 1.1 MB of short words
        "😡🔥👍🏽‍♂️".repeat(50_000), // emoji, modifiers and joiners
        "Мой zakaz не пришёл, refund pls!!! 😡 Привет hello мир world".repeat(20_000),
        "1234567890".repeat(100_000),
        "\u{0301}\u{0308}".repeat(10_000), // combining marks only
        "ЁЖИК ёжик ЁЛКА".to_owned(),
        "İstanbul ΣΊΣΥΦΟΣ straße ﬁnance".to_owned(), // case mappings that change length
        "cпасибо за заказ".to_owned(),               // Latin c in a Cyrillic word
        "\u{FFFF}\u{10FFFF}\u{E000}".to_owned(),
        "a\u{0000}b\u{0000}c".to_owned(),
    ]
}

#[test]
fn predictions_on_hostile_text_are_well_formed() {
    let model = trained(small_config());
    for text in hostile_texts() {
        let prediction = model.predict(&text);
        assert_well_formed(&prediction, model.labels());
    }
}

#[test]
fn learning_from_hostile_text_keeps_the_model_sound() {
    let mut model = trained(small_config());
    for text in hostile_texts() {
        model.learn(&text, "other", 1.0).expect("learn");
    }
    let prediction = model.predict("The app crashes when I open settings");
    assert_well_formed(&prediction, model.labels());
    assert!(model.to_bytes().len() > 8);
    let restored = NgramModel::from_bytes(&model.to_bytes()).expect("decode");
    assert_eq!(restored, model);
}

#[test]
fn blank_text_gives_the_uniform_no_signal_prediction() {
    let model = trained(small_config());
    for text in [
        "",
        "   ",
        "\n\t",
        "\u{200B}\u{FEFF}",
        "\u{0007}\u{001B}",
        "...",
        "— «» ()",
    ] {
        let prediction = model.predict(text);
        assert_eq!(prediction.signal(), Signal::NoFeatures, "{text:?}");
        assert!(prediction
            .ranked()
            .iter()
            .all(|s| (s.probability - 0.25).abs() < 1e-6));
        assert_eq!(prediction.margin(), 0.0);
    }
    assert_eq!(model.predict("ок").signal(), Signal::Features);
    assert_eq!(model.predict("👍").signal(), Signal::Features);
}

#[test]
fn only_the_first_64_kib_count() {
    let model = trained(small_config());
    let head = "Хочу купить диван с доставкой. ".repeat(2200);
    assert!(head.len() > MAX_INPUT_BYTES);
    let tail = "The app crashes on start. ".repeat(10_000);
    let with_tail = format!("{head}{tail}");
    assert_eq!(model.predict(&with_tail), model.predict(&head));
    assert_eq!(model.featurize(&with_tail), model.featurize(&head));
}

#[test]
fn normalisation_output_is_bounded() {
    for text in hostile_texts() {
        let normalized = normalize(&text, true);
        // Transliteration at most triples a letter (щ → sch), one separator per char.
        assert!(
            normalized.len() <= 4 * MAX_INPUT_BYTES,
            "{}",
            normalized.len()
        );
        assert!(!normalized.contains("  "));
        assert!(!normalized.starts_with(' ') && !normalized.ends_with(' '));
        assert!(!normalized.chars().any(char::is_control));
    }
}
