//! The [`Classifier`] trait every iConsultant engine implements, and its vocabulary:
//! [`Prediction`], [`Example`], [`FitOptions`], [`FitReport`], [`ClassifyError`].
//!
//! The hub holds one classifier behind a lock and calls [`Classifier::predict`] for every
//! inquiry (shared access, many at once) and [`Classifier::learn`] for every operator
//! verdict (exclusive access, microseconds for the n-gram engine). A retrainer builds a new
//! model off the lock with [`Classifier::fresh`] + [`Classifier::fit`] on its replay buffer
//! and swaps it in; [`Classifier::to_bytes`] snapshots it.

use serde::{Deserialize, Serialize};

/// The longest label accepted, in bytes.
pub const MAX_LABEL_BYTES: usize = 128;

/// The largest weight [`Classifier::learn`] accepts for one example.
pub const MAX_EXAMPLE_WEIGHT: f32 = 100.0;

/// A text classifier over an admin-defined, growable set of labels (request types).
///
/// # Contract
///
/// - A classifier always has at least one label; labels are never removed or reordered, so
///   a label's index in [`labels`](Self::labels) is stable for the classifier's lifetime
///   (and across [`to_bytes`](Self::to_bytes)). To drop a request type, build a new
///   classifier without it and re-train it.
/// - [`predict`](Self::predict) is infallible and never panics: every input, including
///   empty, huge or binary-looking text, gives a [`Prediction`] whose probabilities are
///   finite and sum to 1 over all labels. A text that yields no features (empty, whitespace
///   or punctuation only) gives the uniform distribution with [`Signal::NoFeatures`], so a
///   confidence threshold never auto-applies a type to it. An engine must validate
///   everything that could fail (model files, configuration) when it is built.
/// - Learning is deterministic: the same sequence of calls gives the same model.
///
/// `Send + Sync` so one model can be shared behind `Arc<RwLock<_>>`: `predict` takes `&self`
/// (read lock, concurrent), learning takes `&mut self` (write lock). The trait is
/// object-safe: the hub picks the engine from its configuration as a
/// `Box<dyn Classifier>`.
pub trait Classifier: Send + Sync + std::fmt::Debug {
    /// A short, stable name of the engine ("ngram", "encoder"), for logs and metrics.
    fn engine(&self) -> &'static str;

    /// The labels in their stable order.
    fn labels(&self) -> &[String];

    /// Adds a label at run time and returns its index; an existing label just returns its
    /// index. A new label starts with no evidence: it is predicted only after it is learned.
    ///
    /// # Errors
    ///
    /// [`ClassifyError::InvalidLabel`] for an empty, over-long or control-character label;
    /// [`ClassifyError::TooLarge`] when the model would exceed its size limit.
    fn add_label(&mut self, label: &str) -> Result<usize, ClassifyError>;

    /// Ranks all labels for `text` with calibrated probabilities.
    fn predict(&self, text: &str) -> Prediction;

    /// One online update: the operator confirmed (`like`: the predicted label) or corrected
    /// (`dislike` with a corrected type: the corrected label) the type of `text`. `weight`
    /// counts the example as that many ordinary ones (operator verdicts may weigh more than
    /// the seed data). A text without features changes nothing.
    ///
    /// # Errors
    ///
    /// [`ClassifyError::UnknownLabel`] when `label` is not one of [`labels`](Self::labels)
    /// (add it first); [`ClassifyError::InvalidWeight`] unless `0 < weight <=`
    /// [`MAX_EXAMPLE_WEIGHT`].
    fn learn(&mut self, text: &str, label: &str, weight: f32) -> Result<(), ClassifyError>;

    /// Trains from scratch on `examples`: forgets everything learned so far (keeping the
    /// configuration and labels), then makes `options.passes` passes over the examples in
    /// an order shuffled by `options.seed`, and (optionally) fits the probability
    /// calibration on a held-out part.
    ///
    /// # Errors
    ///
    /// [`ClassifyError::NoExamples`] for an empty slice; [`ClassifyError::UnknownLabel`] or
    /// [`ClassifyError::InvalidWeight`] for a bad example (checked before anything changes).
    fn fit(
        &mut self,
        examples: &[Example<'_>],
        options: &FitOptions,
    ) -> Result<FitReport, ClassifyError>;

    /// A new, untrained classifier with the same configuration and labels, for training in
    /// the background while this one keeps serving.
    fn fresh(&self) -> Box<dyn Classifier>;

    /// The model as bytes (configuration, labels, weights, calibration), to be restored by
    /// the engine's own `from_bytes`.
    fn to_bytes(&self) -> Vec<u8>;
}

/// One labelled training text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Example<'a> {
    /// The inquiry text, as received.
    pub text: &'a str,
    /// Its request type; must be one of the classifier's labels.
    pub label: &'a str,
    /// How many ordinary examples this one counts as (`0 < weight <= 100`).
    pub weight: f32,
}

impl<'a> Example<'a> {
    /// An example of weight 1.
    #[must_use]
    pub fn new(text: &'a str, label: &'a str) -> Self {
        Self {
            text,
            label,
            weight: 1.0,
        }
    }

    /// The same example counted `weight` times.
    #[must_use]
    pub fn weighted(self, weight: f32) -> Self {
        Self { weight, ..self }
    }
}

/// How [`Classifier::fit`] trains.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FitOptions {
    /// Passes over the training data (epochs); at least 1. Default 5.
    pub passes: u32,
    /// The seed of the shuffling (and of the calibration split). Default 0.
    pub seed: u64,
    /// The fraction of examples (0 – 0.5) held out to fit the probability calibration
    /// (a softmax temperature): the model is trained on the rest, the temperature that
    /// minimises the log-loss of the held-out part is kept, and the model is trained again
    /// on everything. `0` disables calibration (temperature 1), as does a held-out part of
    /// fewer than [`FitOptions::MIN_CALIBRATION_EXAMPLES`] examples. Default 0.1.
    pub calibration_holdout: f32,
}

impl FitOptions {
    /// The smallest held-out set a temperature is fitted on.
    pub const MIN_CALIBRATION_EXAMPLES: usize = 20;
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            passes: 5,
            seed: 0,
            calibration_holdout: 0.1,
        }
    }
}

/// What [`Classifier::fit`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FitReport {
    /// Examples trained on (those without features are skipped).
    pub examples: usize,
    /// Examples skipped because their text gave no features.
    pub skipped: usize,
    /// Passes made over the examples.
    pub passes: u32,
    /// The fitted softmax temperature (1 when calibration was off or skipped).
    pub temperature: f32,
    /// Accuracy on the held-out calibration part before the final re-training, when there
    /// was one: an honest estimate of the accuracy on new text.
    pub holdout_accuracy: Option<f32>,
}

/// Whether a prediction rests on anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// The text had features; the probabilities are the model's.
    Features,
    /// The text had no features (empty, whitespace or punctuation only): the probabilities
    /// are uniform and mean "no idea".
    NoFeatures,
}

/// One label with its probability.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelScore {
    /// The label.
    pub label: String,
    /// Its index in [`Classifier::labels`].
    pub index: usize,
    /// Its calibrated probability, in `[0, 1]`.
    pub probability: f32,
}

/// The labels ranked by probability (highest first; ties in label order).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    ranked: Vec<LabelScore>,
    signal: Signal,
}

impl Prediction {
    /// Builds a prediction from per-label scores in label order: non-finite or negative
    /// scores count as 0, and the scores are normalised to sum to 1 (uniform when they are
    /// all 0). For engines; `labels` and `scores` are paired up to the shorter length.
    #[must_use]
    pub fn from_scores(labels: &[String], scores: &[f32], signal: Signal) -> Self {
        let n = labels.len().min(scores.len());
        let clean: Vec<f32> = scores[..n]
            .iter()
            .map(|&s| if s.is_finite() && s > 0.0 { s } else { 0.0 })
            .collect();
        let total: f32 = clean.iter().sum();
        let mut ranked: Vec<LabelScore> = labels[..n]
            .iter()
            .zip(&clean)
            .enumerate()
            .map(|(index, (label, &s))| LabelScore {
                label: label.clone(),
                index,
                probability: if total > 0.0 && total.is_finite() {
                    s / total
                } else {
                    1.0 / n as f32
                },
            })
            .collect();
        ranked.sort_by(|a, b| {
            b.probability
                .total_cmp(&a.probability)
                .then(a.index.cmp(&b.index))
        });
        Self { ranked, signal }
    }

    /// The uniform "no idea" prediction over `labels`.
    #[must_use]
    pub fn no_signal(labels: &[String]) -> Self {
        Self::from_scores(labels, &vec![1.0; labels.len()], Signal::NoFeatures)
    }

    /// All labels, most probable first.
    #[must_use]
    pub fn ranked(&self) -> &[LabelScore] {
        &self.ranked
    }

    /// The most probable label (`None` only for a classifier without labels, which the
    /// [`Classifier`] contract rules out).
    #[must_use]
    pub fn top(&self) -> Option<&LabelScore> {
        self.ranked.first()
    }

    /// The most probable label's name.
    #[must_use]
    pub fn label(&self) -> Option<&str> {
        self.top().map(|s| s.label.as_str())
    }

    /// The most probable label's probability (0 without labels).
    #[must_use]
    pub fn confidence(&self) -> f32 {
        self.top().map_or(0.0, |s| s.probability)
    }

    /// The gap between the two most probable labels (the confidence with one label).
    #[must_use]
    pub fn margin(&self) -> f32 {
        match self.ranked.as_slice() {
            [first, second, ..] => first.probability - second.probability,
            [only] => only.probability,
            [] => 0.0,
        }
    }

    /// The probability of `label`, if it is one of the labels.
    #[must_use]
    pub fn probability(&self, label: &str) -> Option<f32> {
        self.ranked
            .iter()
            .find(|s| s.label == label)
            .map(|s| s.probability)
    }

    /// Whether the text gave the model anything to go on.
    #[must_use]
    pub fn signal(&self) -> Signal {
        self.signal
    }
}

/// Why a classifier refused a request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClassifyError {
    /// A classifier needs at least one label.
    #[error("a classifier needs at least one label")]
    NoLabels,
    /// A label that is not among the classifier's labels.
    #[error("unknown label {0:?}")]
    UnknownLabel(String),
    /// A label given twice when building a classifier.
    #[error("duplicate label {0:?}")]
    DuplicateLabel(String),
    /// A label that cannot be used.
    #[error("invalid label {label:?}: {reason}")]
    InvalidLabel {
        /// The label as given.
        label: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An example weight outside `(0, MAX_EXAMPLE_WEIGHT]` or not finite.
    #[error("invalid example weight {0}: must be finite, above 0 and at most 100")]
    InvalidWeight(f32),
    /// `fit` was given no examples.
    #[error("no training examples")]
    NoExamples,
    /// A configuration value out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The weight matrix would exceed the size limit.
    #[error(
        "model too large: {buckets} buckets x {labels} labels exceeds the limit of {limit} weights"
    )]
    TooLarge {
        /// Hash buckets.
        buckets: usize,
        /// Labels.
        labels: usize,
        /// The most weights a model may have.
        limit: usize,
    },
}

/// Checks a label against the rules every engine shares.
///
/// # Errors
///
/// [`ClassifyError::InvalidLabel`] for an empty or whitespace-only label, one over
/// [`MAX_LABEL_BYTES`] or one containing a control character.
pub fn validate_label(label: &str) -> Result<(), ClassifyError> {
    let reason = if label.trim().is_empty() {
        "empty"
    } else if label.len() > MAX_LABEL_BYTES {
        "longer than 128 bytes"
    } else if label.chars().any(char::is_control) {
        "contains a control character"
    } else {
        return Ok(());
    };
    Err(ClassifyError::InvalidLabel {
        label: label.chars().take(64).collect(),
        reason,
    })
}

/// Checks an example weight.
///
/// # Errors
///
/// [`ClassifyError::InvalidWeight`] unless `0 < weight <= MAX_EXAMPLE_WEIGHT`.
pub fn validate_weight(weight: f32) -> Result<(), ClassifyError> {
    if weight.is_finite() && weight > 0.0 && weight <= MAX_EXAMPLE_WEIGHT {
        Ok(())
    } else {
        Err(ClassifyError::InvalidWeight(weight))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<String> {
        ["interest", "claim", "bug", "other"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn from_scores_normalises_and_ranks() {
        let p = Prediction::from_scores(&labels(), &[1.0, 3.0, f32::NAN, 0.0], Signal::Features);
        assert_eq!(p.label(), Some("claim"));
        assert!((p.confidence() - 0.75).abs() < 1e-6);
        assert!((p.margin() - 0.5).abs() < 1e-6);
        assert_eq!(p.probability("bug"), Some(0.0));
        let sum: f32 = p.ranked().iter().map(|s| s.probability).sum();
        assert!((sum - 1.0).abs() < 1e-6);
    }

    #[test]
    fn no_signal_is_uniform_in_label_order() {
        let p = Prediction::no_signal(&labels());
        assert_eq!(p.signal(), Signal::NoFeatures);
        assert_eq!(p.label(), Some("interest"));
        assert!(p
            .ranked()
            .iter()
            .all(|s| (s.probability - 0.25).abs() < 1e-6));
        assert_eq!(p.margin(), 0.0);
    }

    #[test]
    fn label_rules() {
        assert!(validate_label("interest").is_ok());
        assert!(validate_label("претензия").is_ok());
        assert!(validate_label(" ").is_err());
        assert!(validate_label("a\nb").is_err());
        assert!(validate_label(&"x".repeat(129)).is_err());
    }

    #[test]
    fn weight_rules() {
        assert!(validate_weight(1.0).is_ok());
        assert!(validate_weight(100.0).is_ok());
        for bad in [0.0, -1.0, f32::NAN, f32::INFINITY, 100.5] {
            assert!(validate_weight(bad).is_err(), "{bad}");
        }
    }
}
