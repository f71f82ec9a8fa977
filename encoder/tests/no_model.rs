//! Tests that need no model files: damaged model folders give a clear `LoadError` (never a
//! panic), the head's byte format, and the head's training contract.

use std::path::PathBuf;

use kommutator_encoder::{
    Encoder, EncoderConfig, HeadConfig, HeadDecodeError, LinearHead, LoadError,
};
use kommutator_textclass::rng::SplitMix64;
use kommutator_textclass::{ClassifyError, FitOptions, Signal};

/// A minimal tokenizer.json with the special-token ids e5 uses.
const TINY_TOKENIZER: &str = r#"{"version":"1.0","truncation":null,"padding":null,
"added_tokens":[],"normalizer":null,"pre_tokenizer":{"type":"Whitespace"},
"post_processor":null,"decoder":null,
"model":{"type":"WordLevel","vocab":{"<s>":0,"<pad>":1,"</s>":2,"<unk>":3,"hello":4},
"unk_token":"<unk>"}}"#;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "kommutator-encoder-test-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a scratch folder");
    dir
}

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut rng = SplitMix64::new(seed);
    (0..n).map(|_| rng.next_u64() as u8).collect()
}

#[test]
fn missing_files_say_to_run_fetch() {
    let dir = scratch("missing");
    let err = Encoder::load(&dir).expect_err("an empty folder cannot load");
    assert!(matches!(err, LoadError::Missing { .. }), "{err:?}");
    assert!(err.to_string().contains("models/fetch.sh"), "{err}");
    // Only the tokenizer present: the model is reported missing.
    std::fs::write(dir.join("tokenizer.json"), TINY_TOKENIZER).expect("write");
    let err = Encoder::load(&dir).expect_err("no model");
    assert!(matches!(err, LoadError::Missing { ref path } if path.ends_with("model.onnx")));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn garbage_model_files_are_load_errors() {
    let dir = scratch("garbage-model");
    std::fs::write(dir.join("tokenizer.json"), TINY_TOKENIZER).expect("write");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        (
            "text",
            b"version https://git-lfs.github.com/spec/v1\noid sha256:00\n".to_vec(),
        ),
        ("random 1 KiB", random_bytes(1024, 1)),
        ("random 64 KiB", random_bytes(65536, 2)),
        ("protobuf-looking", {
            let mut b = vec![0x08, 0x08, 0x12, 0x05];
            b.extend_from_slice(b"hello");
            b.extend(random_bytes(300, 3));
            b
        }),
    ];
    for (name, bytes) in cases {
        std::fs::write(dir.join("model.onnx"), &bytes).expect("write");
        match Encoder::load(&dir) {
            Err(LoadError::Model { .. } | LoadError::Shape { .. }) => {}
            other => panic!("{name}: expected a model error, got {other:?}"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn garbage_tokenizer_is_a_load_error() {
    let dir = scratch("garbage-tokenizer");
    std::fs::write(dir.join("model.onnx"), random_bytes(100, 4)).expect("write");
    let wrong_ids = TINY_TOKENIZER.replace("\"<pad>\":1", "\"<pad>\":5");
    for (name, bytes) in [
        ("empty", Vec::new()),
        ("random", random_bytes(5000, 5)),
        ("truncated json", TINY_TOKENIZER.as_bytes()[..60].to_vec()),
        ("not e5's vocabulary", wrong_ids.into_bytes()),
    ] {
        std::fs::write(dir.join("tokenizer.json"), &bytes).expect("write");
        let err = Encoder::load(&dir).expect_err(name);
        assert!(
            matches!(err, LoadError::Tokenizer { .. }),
            "{name}: {err:?}"
        );
        assert!(err.to_string().contains("fetch.sh"), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_configuration_is_refused() {
    let dir = scratch("config");
    for config in [
        EncoderConfig {
            max_tokens: 0,
            ..EncoderConfig::default()
        },
        EncoderConfig {
            max_tokens: 513,
            ..EncoderConfig::default()
        },
        EncoderConfig {
            batch_size: 0,
            ..EncoderConfig::default()
        },
    ] {
        let err = Encoder::load_with(&dir, config).expect_err("bad config");
        assert!(matches!(err, LoadError::Config(_)), "{err:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Synthetic embeddings: `labels` clusters around random unit centres.
fn clusters(labels: usize, per_label: usize, dim: usize, seed: u64) -> Vec<(Vec<f32>, usize)> {
    let mut rng = SplitMix64::new(seed);
    let mut unit = |scale: f32| -> Vec<f32> {
        (0..dim)
            .map(|_| ((rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale)
            .collect()
    };
    let centres: Vec<Vec<f32>> = (0..labels).map(|_| unit(2.0)).collect();
    let mut out = Vec::new();
    for i in 0..per_label {
        for (l, c) in centres.iter().enumerate() {
            let noise = unit(1.0);
            let mut v: Vec<f32> = c.iter().zip(&noise).map(|(a, b)| a + b).collect();
            kommutator_encoder::normalize(&mut v);
            out.push((v, l));
            let _ = i;
        }
    }
    out
}

fn trained_head() -> (LinearHead, Vec<(Vec<f32>, usize)>) {
    let data = clusters(4, 30, 32, 9);
    let mut head = LinearHead::new(
        &["interest", "claim", "bug", "other"],
        32,
        HeadConfig::default(),
    )
    .expect("valid head");
    let triples: Vec<(&[f32], usize, f32)> =
        data.iter().map(|(v, l)| (v.as_slice(), *l, 1.0)).collect();
    let report = head.fit(&triples, &FitOptions::default()).expect("fit");
    assert_eq!(report.examples, 120);
    assert!(
        report.holdout_accuracy.is_none(),
        "12 held out is below the minimum of 20"
    );
    (head, data)
}

#[test]
fn head_learns_separable_clusters_deterministically() {
    let (head, data) = trained_head();
    let correct = data
        .iter()
        .filter(|(v, l)| {
            let p = head.predict(v);
            p.top().map(|s| s.index) == Some(*l)
        })
        .count();
    assert!(correct >= 114, "{correct}/120 correct");
    let (again, _) = trained_head();
    assert_eq!(
        head.to_bytes(),
        again.to_bytes(),
        "same data and seed, same bytes"
    );
    let p = head.predict(&data[0].0);
    let sum: f32 = p.ranked().iter().map(|s| s.probability).sum();
    assert!((sum - 1.0).abs() < 1e-5);
    // Wrong size or NaN: uniform, no signal.
    assert_eq!(head.predict(&[0.5; 7]).signal(), Signal::NoFeatures);
    assert_eq!(head.predict(&[f32::NAN; 32]).signal(), Signal::NoFeatures);
}

#[test]
fn head_calibrates_on_a_holdout() {
    let data = clusters(3, 40, 16, 11);
    let mut head = LinearHead::new(&["a", "b", "c"], 16, HeadConfig::default()).expect("head");
    let triples: Vec<(&[f32], usize, f32)> =
        data.iter().map(|(v, l)| (v.as_slice(), *l, 1.0)).collect();
    let options = FitOptions {
        passes: 5,
        seed: 3,
        calibration_holdout: 0.25,
    };
    let report = head.fit(&triples, &options).expect("fit");
    let acc = report.holdout_accuracy.expect("30 held out");
    assert!(acc > 0.9, "{acc}");
    assert!(report.temperature > 0.0 && report.temperature.is_finite());
    assert_eq!(head.temperature(), report.temperature);
}

#[test]
fn head_bytes_round_trip_and_reject_damage() {
    let (head, _) = trained_head();
    let bytes = head.to_bytes();
    assert_eq!(LinearHead::from_bytes(&bytes).expect("round trip"), head);
    // Every truncation is an error.
    for n in [0, 3, 4, 8, 11, 12, 50, bytes.len() / 2, bytes.len() - 1] {
        assert!(
            LinearHead::from_bytes(&bytes[..n]).is_err(),
            "truncated to {n}"
        );
    }
    // Every single flipped byte is caught (magic, version or checksum).
    for i in (0..bytes.len()).step_by(7) {
        let mut bad = bytes.clone();
        bad[i] ^= 0x20;
        assert!(LinearHead::from_bytes(&bad).is_err(), "flip at {i}");
    }
    assert_eq!(
        LinearHead::from_bytes(b"NGRM1234"),
        Err(HeadDecodeError::BadMagic)
    );
    let mut future = bytes.clone();
    future[4] = 9;
    assert_eq!(
        LinearHead::from_bytes(&future),
        Err(HeadDecodeError::Version(9))
    );
    for seed in 0..50 {
        let noise = random_bytes((seed as usize) * 37, seed);
        assert!(LinearHead::from_bytes(&noise).is_err());
        let mut prefixed = b"KENC\x01\x00\x00\x00".to_vec();
        prefixed.extend(noise);
        assert!(LinearHead::from_bytes(&prefixed).is_err());
    }
}

#[test]
fn head_api_errors() {
    assert_eq!(
        LinearHead::new(&[], 8, HeadConfig::default()).expect_err("no labels"),
        ClassifyError::NoLabels
    );
    assert!(matches!(
        LinearHead::new(&["a", "a"], 8, HeadConfig::default()),
        Err(ClassifyError::DuplicateLabel(_))
    ));
    assert!(matches!(
        LinearHead::new(&["a"], 0, HeadConfig::default()),
        Err(ClassifyError::InvalidConfig(_))
    ));
    let bad = HeadConfig {
        learning_rate: f32::NAN,
        ..HeadConfig::default()
    };
    assert!(LinearHead::new(&["a"], 8, bad).is_err());
    let mut head = LinearHead::new(&["a", "b"], 4, HeadConfig::default()).expect("head");
    assert_eq!(head.add_label("b").expect("existing"), 1);
    assert_eq!(head.add_label("c").expect("new"), 2);
    assert!(head.add_label("").is_err());
    assert!(matches!(
        head.learn(&[1.0; 4], 0, 0.0),
        Err(ClassifyError::InvalidWeight(_))
    ));
    assert!(head.learn(&[1.0; 4], 9, 1.0).is_err());
    head.learn(&[1.0; 4], 2, 1.0).expect("learn");
    assert_eq!(head.predict(&[1.0; 4]).label(), Some("c"));
    assert_eq!(
        head.fit(&[], &FitOptions::default()),
        Err(ClassifyError::NoExamples)
    );
    let zero_passes = FitOptions {
        passes: 0,
        ..FitOptions::default()
    };
    assert!(head.fit(&[(&[1.0; 4], 0, 1.0)], &zero_passes).is_err());
}
