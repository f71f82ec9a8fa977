//! Text classifiers for iConsultant: every customer inquiry (e-mail, messenger, chat, web
//! form; Russian and English, mixed, with typos and transliteration) is classified into an
//! admin-defined set of request types (by default interest / claim / bug / other).
//!
//! - [`Classifier`] is the engine contract the hub programs against: ranked, calibrated
//!   [`Prediction`]s, online [`learn`](Classifier::learn)ing from operator verdicts,
//!   labels added at run time, re-training by a background retrainer, snapshots as bytes.
//! - [`NgramModel`] is engine 1: hashed character and word n-grams and a linear model
//!   (multinomial logistic regression with AdaGrad, or passive-aggressive). It needs no
//!   pretrained model and learns from the first verdict. Engine 2 (a sentence encoder plus a
//!   linear head) implements the same trait.
//! - [`normalize`] and [`features`] are the text pipeline, exposed for tests, benches and
//!   other engines; [`metrics`] the evaluation measures; [`rng`] the seeded generator of
//!   the training shuffle.
//!
//! The library is pure: no I/O, no threads, no panics on any input. Text beyond
//! [`normalize::MAX_INPUT_BYTES`] (64 KiB) is ignored. The `evaluate` binary measures the
//! engine on public intent data sets (see the crate README).

mod classifier;
mod codec;
pub mod features;
pub mod metrics;
mod ngram;
pub mod normalize;
pub mod rng;

pub use classifier::{
    validate_label, validate_weight, Classifier, ClassifyError, Example, FitOptions, FitReport,
    LabelScore, Prediction, Signal, MAX_EXAMPLE_WEIGHT, MAX_LABEL_BYTES,
};
pub use codec::{DecodeError, FORMAT_VERSION};
pub use features::SparseVector;
pub use ngram::{Algorithm, NgramConfig, NgramModel, MAX_LABELS, MAX_WEIGHTS};
