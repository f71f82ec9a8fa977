//! The model file: round trips, and every kind of damage gives an error, never a panic.

mod common;

use common::{small_config, trained, CORPUS};
use kommutator_textclass::{
    Algorithm, Classifier, DecodeError, NgramConfig, NgramModel, FORMAT_VERSION,
};

/// A model with 2^10 buckets: small enough to damage every byte of it in turn.
fn model() -> NgramModel {
    trained(NgramConfig {
        bits: 10,
        ..small_config()
    })
}

#[test]
fn round_trip_gives_identical_predictions() {
    for algorithm in [Algorithm::Logistic, Algorithm::PassiveAggressive] {
        let mut model = trained(NgramConfig {
            algorithm,
            ..small_config()
        });
        model.set_temperature(0.7).expect("valid temperature");
        let bytes = model.to_bytes();
        let restored = NgramModel::from_bytes(&bytes).expect("decode");
        assert_eq!(restored, model);
        for (text, _) in CORPUS {
            assert_eq!(restored.predict(text), model.predict(text));
        }
        assert_eq!(restored.to_bytes(), bytes);
    }
}

#[test]
fn online_learning_continues_after_a_round_trip() {
    let mut model = model();
    let mut restored = NgramModel::from_bytes(&model.to_bytes()).expect("decode");
    model
        .learn("где мой возврат?", "claim", 2.0)
        .expect("learn");
    restored
        .learn("где мой возврат?", "claim", 2.0)
        .expect("learn");
    assert_eq!(restored, model, "accumulators and counters are saved too");
}

#[test]
fn untrained_and_default_size_models_are_compact() {
    let untrained = NgramModel::new(NgramConfig::default(), &common::LABELS).expect("model");
    assert!(untrained.to_bytes().len() < 200);
    let trained_default = trained(NgramConfig::default());
    let bytes = trained_default.to_bytes();
    // Only the rows the corpus touched: far below 4 labels x 2^18 x 4 bytes.
    assert!(bytes.len() < 1_000_000, "{}", bytes.len());
    assert_eq!(
        NgramModel::from_bytes(&bytes).expect("decode"),
        trained_default
    );
}

#[test]
fn wrong_magic_version_and_emptiness_are_named() {
    let bytes = model().to_bytes();
    assert_eq!(NgramModel::from_bytes(&[]), Err(DecodeError::TooShort(0)));
    assert_eq!(
        NgramModel::from_bytes(b"KTX"),
        Err(DecodeError::TooShort(3))
    );
    assert_eq!(
        NgramModel::from_bytes(b"PK\x03\x04 a zip file"),
        Err(DecodeError::BadMagic)
    );
    let mut other = bytes.clone();
    other[0] = b'X';
    assert_eq!(NgramModel::from_bytes(&other), Err(DecodeError::BadMagic));
    let mut newer = bytes;
    newer[4..6].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
    assert_eq!(
        NgramModel::from_bytes(&newer),
        Err(DecodeError::UnsupportedVersion(FORMAT_VERSION + 1))
    );
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = model().to_bytes();
    for len in 0..bytes.len() {
        assert!(
            NgramModel::from_bytes(&bytes[..len]).is_err(),
            "prefix of {len} bytes"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(NgramModel::from_bytes(&longer).is_err());
}

#[test]
fn every_flipped_byte_is_an_error() {
    let bytes = model().to_bytes();
    // Every position, one bit each: the checksum catches all of them.
    for at in 0..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[at] ^= 1 << (at % 8);
        assert!(NgramModel::from_bytes(&damaged).is_err(), "byte {at}");
    }
    let mut damaged = bytes.clone();
    let middle = bytes.len() / 2;
    damaged[middle] ^= 0xFF;
    assert!(matches!(
        NgramModel::from_bytes(&damaged),
        Err(DecodeError::ChecksumMismatch { .. })
    ));
}

/// Damage behind a valid checksum (a buggy writer, a crafted file) is caught by the range
/// checks: rewrite bytes, then fix the checksum.
#[test]
fn invalid_content_with_a_valid_checksum_is_an_error() {
    let bytes = model().to_bytes();
    let reseal = |mut body: Vec<u8>| {
        body.truncate(body.len() - 4);
        let crc = crc32fast::hash(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        body
    };
    // Offsets from the layout in codec.rs: header 0..8, config bytes 8..16, config floats
    // 16..32, temperature 32..36, updates 36..44, bias accumulator 44..48, label count 48.
    let cases: [(usize, &[u8]); 6] = [
        (6, &[2]),                     // engine id
        (8, &[40]),                    // bits
        (14, &[7]),                    // algorithm id
        (12, &[2]),                    // sign_hash flag
        (32, &f32::NAN.to_le_bytes()), // temperature
        (48, &u32::MAX.to_le_bytes()), // label count
    ];
    for (at, patch) in cases {
        let mut body = bytes.clone();
        body[at..at + patch.len()].copy_from_slice(patch);
        let result = NgramModel::from_bytes(&reseal(body));
        assert!(result.is_err(), "patch at {at}: {result:?}");
    }
    // Bytes of a sealed file set to 0xFF in turn: every byte of the header, labels and
    // bias, then every 31st (decoding is slow in debug builds): never a panic.
    let positions = (0..200).chain((200..bytes.len() - 4).step_by(31));
    for at in positions {
        let mut body = bytes.clone();
        body[at] = 0xFF;
        let _ = NgramModel::from_bytes(&reseal(body));
    }
}

#[test]
fn the_checksum_is_crc32_ieee_of_the_body() {
    let bytes = model().to_bytes();
    let (body, stored) = bytes.split_at(bytes.len() - 4);
    assert_eq!(stored, crc32(body).to_le_bytes());
}

/// CRC-32 (IEEE), bit by bit: an independent implementation of the file's checksum.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
