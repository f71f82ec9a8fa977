//! Engine 1: [`NgramModel`], a linear classifier over hashed character and word n-grams.
//!
//! Why this engine: it needs no pretrained model, learns online from a single operator
//! verdict in microseconds, handles Russian morphology, typos and transliteration through
//! character n-grams, and on the public intent benchmarks comes within a few points of a
//! frozen sentence encoder (see the crate README for the measured numbers).
//!
//! - Features: [`crate::normalize`] then [`crate::features`] (char_wb 2–5 + word 1–2,
//!   `2^18` hashed buckets, sublinear tf, L2-normalised).
//! - Model: one weight per (bucket, label) plus a bias per label, stored bucket-major
//!   (`weights[bucket * labels + label]`) so scoring a text reads one contiguous row per
//!   feature. Adding a label re-lays the matrix out with one more column.
//! - Training ([`Algorithm`]): multinomial logistic regression by SGD on the log-loss with
//!   per-bucket AdaGrad step sizes (the default), or one-vs-rest passive-aggressive (PA-I).
//!   Probabilities are a softmax of the scores divided by a temperature fitted on held-out
//!   examples ([`FitOptions::calibration_holdout`]).

use serde::{Deserialize, Serialize};

use crate::classifier::{
    validate_label, validate_weight, Classifier, ClassifyError, Example, FitOptions, FitReport,
    Prediction, Signal,
};
use crate::features::{Featurizer, SparseVector};
use crate::normalize::normalize;
use crate::rng::SplitMix64;

/// The most weights (buckets × labels) a model may have: 2^28 f32 = 1 GiB.
pub const MAX_WEIGHTS: usize = 1 << 28;

/// The largest number of labels a model may have.
pub const MAX_LABELS: usize = 4096;

/// How the weights are learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Multinomial logistic regression: SGD on the log-loss with AdaGrad step sizes shared
    /// by all labels of a bucket. Its scores are log-odds, so its probabilities are
    /// meaningful even before calibration.
    Logistic,
    /// One-vs-rest passive-aggressive (PA-I, Crammer et al. 2006) on the hinge loss, with
    /// aggressiveness [`NgramConfig::aggressiveness`]; its margins become probabilities
    /// only through the fitted softmax temperature.
    PassiveAggressive,
}

/// The configuration of an [`NgramModel`]: featurisation and learning.
///
/// The defaults are the values measured best on the public benchmarks (crate README).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NgramConfig {
    /// log2 of the number of hash buckets, 10–24. Default 18 (262,144 buckets: 1 MiB of
    /// weights per label).
    pub bits: u8,
    /// The shortest character n-gram, 1–8. Default 2.
    pub char_min: u8,
    /// The longest character n-gram, `char_min`–8. Default 5.
    pub char_max: u8,
    /// The longest word n-gram, 0–3 (0: no word features). Default 2 (words and pairs).
    pub word_max: u8,
    /// Multiply each feature by a ±1 sign taken from its hash, so collisions cancel on
    /// average. Default true.
    pub sign_hash: bool,
    /// Weight of the character n-gram block (≥ 0). Default 1.
    pub char_weight: f32,
    /// Weight of the word n-gram block (≥ 0). Default 1.
    pub word_weight: f32,
    /// Transliterate Cyrillic to Latin before featurisation, so "хочу" and "hochu" share
    /// features. Default true.
    pub fold_cyrillic: bool,
    /// The learning algorithm. Default [`Algorithm::Logistic`].
    pub algorithm: Algorithm,
    /// The base step size of [`Algorithm::Logistic`] (> 0). Default 1.
    pub learning_rate: f32,
    /// The aggressiveness `C` of [`Algorithm::PassiveAggressive`] (> 0). Default 0.5.
    pub aggressiveness: f32,
}

impl Default for NgramConfig {
    fn default() -> Self {
        Self {
            bits: 18,
            char_min: 2,
            char_max: 5,
            word_max: 2,
            sign_hash: true,
            char_weight: 1.0,
            word_weight: 1.0,
            fold_cyrillic: true,
            algorithm: Algorithm::Logistic,
            learning_rate: 1.0,
            aggressiveness: 0.5,
        }
    }
}

impl NgramConfig {
    /// The number of hash buckets, `2^bits`.
    #[must_use]
    pub fn buckets(&self) -> usize {
        1usize << self.bits.min(24)
    }

    /// Checks every value's range.
    ///
    /// # Errors
    ///
    /// [`ClassifyError::InvalidConfig`] naming the first value out of range.
    pub fn validate(&self) -> Result<(), ClassifyError> {
        let bad = |what: &str| Err(ClassifyError::InvalidConfig(what.to_owned()));
        if !(10..=24).contains(&self.bits) {
            return bad("bits must be 10-24");
        }
        if !(1..=8).contains(&self.char_min) || !(self.char_min..=8).contains(&self.char_max) {
            return bad("char n-grams must satisfy 1 <= char_min <= char_max <= 8");
        }
        if self.word_max > 3 {
            return bad("word_max must be 0-3");
        }
        let weight_ok = |w: f32| w.is_finite() && (0.0..=100.0).contains(&w);
        if !weight_ok(self.char_weight) || !weight_ok(self.word_weight) {
            return bad("char_weight and word_weight must be 0-100");
        }
        if self.char_weight == 0.0 && (self.word_weight == 0.0 || self.word_max == 0) {
            return bad("at least one feature block needs a positive weight");
        }
        if !(self.learning_rate.is_finite()
            && self.learning_rate > 0.0
            && self.learning_rate <= 100.0)
        {
            return bad("learning_rate must be in (0, 100]");
        }
        if !(self.aggressiveness.is_finite()
            && self.aggressiveness > 0.0
            && self.aggressiveness <= 100.0)
        {
            return bad("aggressiveness must be in (0, 100]");
        }
        Ok(())
    }

    pub(crate) fn featurizer(&self) -> Featurizer {
        Featurizer {
            bits: self.bits,
            char_min: self.char_min,
            char_max: self.char_max,
            word_max: self.word_max,
            sign_hash: self.sign_hash,
            char_weight: self.char_weight,
            word_weight: self.word_weight,
        }
    }
}

/// The value of the constant bias feature: small next to a text's L2-normalised features
/// (each text has a few hundred, so a typical one is ~0.05), so that the per-label prior
/// moves more slowly than the evidence.
const BIAS_VALUE: f32 = 0.1;

/// Engine 1: hashed character and word n-grams and a linear model.
///
/// - Text is truncated to 64 KiB, normalised ([`crate::normalize`]) and hashed into
///   `2^bits` buckets ([`crate::features`]): char n-grams 2–5 within words, word unigrams
///   and bigrams, sublinear tf, L2-normalised.
/// - One weight per (bucket, label) plus a bias per label, stored bucket-major so scoring a
///   text reads one contiguous row per feature: a prediction costs O(features × labels).
/// - [`Algorithm::Logistic`] (default): multinomial logistic regression, SGD on the log-loss
///   with per-bucket AdaGrad step sizes, which keep a single [`learn`](Classifier::learn)
///   effective after thousands of examples. [`Algorithm::PassiveAggressive`]: one-vs-rest
///   PA-I. Probabilities are `softmax(scores / T)` with `T` fitted on held-out examples by
///   [`fit`](Classifier::fit) ([`FitOptions::calibration_holdout`]).
/// - [`to_bytes`](Classifier::to_bytes) / [`from_bytes`](NgramModel::from_bytes): a
///   versioned, CRC-32-checked file that skips all-zero rows and keeps the AdaGrad state, so
///   online learning continues after a restart.
///
/// Measured accuracy, latency and sizes are in the crate README.
#[derive(Debug, Clone, PartialEq)]
pub struct NgramModel {
    pub(crate) config: NgramConfig,
    pub(crate) featurizer: Featurizer,
    pub(crate) labels: Vec<String>,
    /// Bucket-major: `weights[bucket * labels.len() + label]`.
    pub(crate) weights: Vec<f32>,
    /// Per-label bias (the weight of the constant feature [`BIAS_VALUE`]).
    pub(crate) bias: Vec<f32>,
    /// Per-bucket AdaGrad sums of squared gradients ([`Algorithm::Logistic`]).
    pub(crate) accumulators: Vec<f32>,
    /// The AdaGrad sum of the bias.
    pub(crate) bias_accumulator: f32,
    /// The softmax temperature (calibration); scores are divided by it.
    pub(crate) temperature: f32,
    /// Examples learned since the last reset (fit passes count each example once per pass).
    pub(crate) updates: u64,
}

impl NgramModel {
    /// An untrained model over `labels` (at least one, unique).
    ///
    /// # Errors
    ///
    /// [`ClassifyError::InvalidConfig`], [`ClassifyError::NoLabels`],
    /// [`ClassifyError::InvalidLabel`], [`ClassifyError::DuplicateLabel`] or
    /// [`ClassifyError::TooLarge`].
    pub fn new<S: AsRef<str>>(config: NgramConfig, labels: &[S]) -> Result<Self, ClassifyError> {
        config.validate()?;
        if labels.is_empty() {
            return Err(ClassifyError::NoLabels);
        }
        check_size(config.buckets(), labels.len())?;
        let mut owned: Vec<String> = Vec::with_capacity(labels.len());
        for label in labels {
            let label = label.as_ref();
            validate_label(label)?;
            if owned.iter().any(|l| l == label) {
                return Err(ClassifyError::DuplicateLabel(label.to_owned()));
            }
            owned.push(label.to_owned());
        }
        let buckets = config.buckets();
        Ok(Self {
            config,
            featurizer: config.featurizer(),
            weights: vec![0.0; buckets * owned.len()],
            bias: vec![0.0; owned.len()],
            labels: owned,
            accumulators: vec![0.0; buckets],
            bias_accumulator: 0.0,
            temperature: 1.0,
            updates: 0,
        })
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &NgramConfig {
        &self.config
    }

    /// The softmax temperature fitted by the last [`fit`](Classifier::fit) (1 if none).
    #[must_use]
    pub fn temperature(&self) -> f32 {
        self.temperature
    }

    /// Sets the softmax temperature (for a calibration done outside `fit`).
    ///
    /// # Errors
    ///
    /// [`ClassifyError::InvalidConfig`] unless `0.01 <= temperature <= 100`.
    pub fn set_temperature(&mut self, temperature: f32) -> Result<(), ClassifyError> {
        if temperature.is_finite() && (0.01..=100.0).contains(&temperature) {
            self.temperature = temperature;
            Ok(())
        } else {
            Err(ClassifyError::InvalidConfig(
                "temperature must be 0.01-100".to_owned(),
            ))
        }
    }

    /// Examples learned since the model was created or last re-trained.
    #[must_use]
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// The feature vector of `text`: truncated, normalised, hashed.
    #[must_use]
    pub fn featurize(&self, text: &str) -> SparseVector {
        self.featurizer
            .featurize(&normalize(text, self.config.fold_cyrillic))
    }

    /// Raw scores (before softmax and temperature) of a feature vector, in label order.
    fn scores(&self, x: &SparseVector) -> Vec<f32> {
        let n = self.labels.len();
        let mut scores: Vec<f32> = self.bias.iter().map(|b| b * BIAS_VALUE).collect();
        for (bucket, value) in x.iter() {
            if let Some(row) = self.weights.get(bucket * n..(bucket + 1) * n) {
                for (s, w) in scores.iter_mut().zip(row) {
                    *s += value * w;
                }
            }
        }
        scores
    }

    /// Probabilities of each label for `text` in label order, or `None` when the text has
    /// no features. The evaluation uses it to avoid building [`Prediction`]s.
    #[must_use]
    pub fn probabilities(&self, text: &str) -> Option<Vec<f32>> {
        let x = self.featurize(text);
        if x.is_empty() {
            return None;
        }
        let mut scores = self.scores(&x);
        softmax(&mut scores, self.temperature);
        Some(scores)
    }

    fn label_index(&self, label: &str) -> Result<usize, ClassifyError> {
        self.labels
            .iter()
            .position(|l| l == label)
            .ok_or_else(|| ClassifyError::UnknownLabel(label.chars().take(64).collect()))
    }

    /// Forgets everything learned, keeping the configuration and labels.
    pub fn reset(&mut self) {
        self.weights.fill(0.0);
        self.bias.fill(0.0);
        self.accumulators.fill(0.0);
        self.bias_accumulator = 0.0;
        self.temperature = 1.0;
        self.updates = 0;
    }

    /// One update on a featurised example.
    fn update(&mut self, x: &SparseVector, label: usize, weight: f32) {
        if x.is_empty() || label >= self.labels.len() {
            return;
        }
        self.updates += 1;
        let scores = self.scores(x);
        let step = match self.config.algorithm {
            Algorithm::Logistic => self.step_logistic(x, label, weight, scores),
            Algorithm::PassiveAggressive => self.step_pa(x, label, weight, &scores),
        };
        let Some(Step {
            direction,
            coefficients,
            bias,
        }) = step
        else {
            return;
        };
        let n = self.labels.len();
        for ((bucket, _), coefficient) in x.iter().zip(&coefficients) {
            if let Some(row) = self.weights.get_mut(bucket * n..(bucket + 1) * n) {
                for (w, d) in row.iter_mut().zip(&direction) {
                    *w += coefficient * d;
                }
            }
        }
        for (b, d) in self.bias.iter_mut().zip(&direction) {
            *b += bias * d;
        }
    }

    /// The logistic-regression step: direction `onehot(label) - p`, per-bucket AdaGrad
    /// step sizes.
    fn step_logistic(
        &mut self,
        x: &SparseVector,
        label: usize,
        weight: f32,
        mut scores: Vec<f32>,
    ) -> Option<Step> {
        softmax(&mut scores, 1.0);
        // The negative gradient of the log-loss with respect to the scores.
        let mut direction: Vec<f32> = scores.iter().map(|p| -p).collect();
        *direction.get_mut(label)? += 1.0;
        let error_sq: f32 = direction.iter().map(|e| e * e).sum();
        if error_sq < 1e-12 {
            return None;
        }
        let eta = self.config.learning_rate * weight;
        let coefficients = x
            .iter()
            .map(|(bucket, value)| match self.accumulators.get_mut(bucket) {
                Some(acc) => {
                    *acc += value * value * error_sq;
                    eta * value / acc.sqrt()
                }
                None => 0.0,
            })
            .collect();
        self.bias_accumulator += BIAS_VALUE * BIAS_VALUE * error_sq;
        let bias = eta * BIAS_VALUE / self.bias_accumulator.sqrt();
        Some(Step {
            direction,
            coefficients,
            bias,
        })
    }

    /// The one-vs-rest PA-I step: for each label, the binary PA step towards +1 for
    /// `label` and -1 for the others, capped by the aggressiveness.
    fn step_pa(&self, x: &SparseVector, label: usize, weight: f32, scores: &[f32]) -> Option<Step> {
        let norm_sq = x.norm_squared() + BIAS_VALUE * BIAS_VALUE;
        let c = self.config.aggressiveness * weight;
        let direction: Vec<f32> = scores
            .iter()
            .enumerate()
            .map(|(k, &s)| {
                let y = if k == label { 1.0 } else { -1.0 };
                let loss = (1.0 - y * s).max(0.0);
                y * (loss / norm_sq).min(c)
            })
            .collect();
        if direction.iter().all(|&t| t == 0.0) {
            return None;
        }
        Some(Step {
            direction,
            coefficients: x.values.clone(),
            bias: BIAS_VALUE,
        })
    }

    /// `passes` passes over the featurised examples listed in `order`, reshuffled before
    /// each pass.
    fn train(
        &mut self,
        data: &[(SparseVector, usize, f32)],
        order: &mut [usize],
        passes: u32,
        rng: &mut SplitMix64,
    ) {
        for _ in 0..passes {
            rng.shuffle(order);
            for &i in order.iter() {
                if let Some((x, label, weight)) = data.get(i) {
                    self.update(x, *label, *weight);
                }
            }
        }
    }
}

/// One update: `row(bucket) += coefficients[i] * direction` for the i-th feature of the
/// text, `bias += bias * direction`.
#[derive(Debug)]
struct Step {
    direction: Vec<f32>,
    coefficients: Vec<f32>,
    bias: f32,
}

fn check_size(buckets: usize, labels: usize) -> Result<(), ClassifyError> {
    if labels > MAX_LABELS || buckets.saturating_mul(labels) > MAX_WEIGHTS {
        return Err(ClassifyError::TooLarge {
            buckets,
            labels,
            limit: MAX_WEIGHTS,
        });
    }
    Ok(())
}

/// In-place softmax of `scores / temperature`, stable for any finite input; a non-finite
/// result (which cannot come from finite weights) falls back to uniform.
pub(crate) fn softmax(scores: &mut [f32], temperature: f32) {
    if scores.is_empty() {
        return;
    }
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut total = 0.0;
    for s in scores.iter_mut() {
        *s = ((*s - max) / temperature).exp();
        total += *s;
    }
    if total.is_finite() && total > 0.0 {
        for s in scores.iter_mut() {
            *s /= total;
        }
    } else {
        let uniform = 1.0 / scores.len() as f32;
        scores.fill(uniform);
    }
}

/// The temperature minimising the mean weighted log-loss of `held_out` (raw scores, label,
/// weight): a golden-section search over `ln(1/T)` on the convex log-loss.
fn fit_temperature(held_out: &[(Vec<f32>, usize, f32)]) -> f32 {
    let loss = |inverse: f64| -> f64 {
        let mut total = 0.0;
        let mut weights = 0.0;
        for (scores, label, weight) in held_out {
            let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let log_sum = scores
                .iter()
                .map(|&s| (f64::from(s - max) * inverse).exp())
                .sum::<f64>()
                .ln();
            let target = scores
                .get(*label)
                .map_or(0.0, |&s| f64::from(s - max) * inverse);
            total += f64::from(*weight) * (log_sum - target);
            weights += f64::from(*weight);
        }
        if weights > 0.0 {
            total / weights
        } else {
            0.0
        }
    };
    // T between 0.1 and 10: a held-out part that the model gets all right (or all wrong)
    // would otherwise push T to an extreme that new text does not justify.
    let (mut lo, mut hi) = (-(10f64.ln()), 10f64.ln());
    let ratio = (5f64.sqrt() - 1.0) / 2.0;
    let mut a = hi - ratio * (hi - lo);
    let mut b = lo + ratio * (hi - lo);
    let (mut fa, mut fb) = (loss(a.exp()), loss(b.exp()));
    for _ in 0..60 {
        if fa <= fb {
            hi = b;
            b = a;
            fb = fa;
            a = hi - ratio * (hi - lo);
            fa = loss(a.exp());
        } else {
            lo = a;
            a = b;
            fa = fb;
            b = lo + ratio * (hi - lo);
            fb = loss(b.exp());
        }
    }
    let inverse = ((lo + hi) / 2.0).exp();
    ((1.0 / inverse) as f32).clamp(0.1, 10.0)
}

impl Classifier for NgramModel {
    fn engine(&self) -> &'static str {
        "ngram"
    }

    fn labels(&self) -> &[String] {
        &self.labels
    }

    fn add_label(&mut self, label: &str) -> Result<usize, ClassifyError> {
        if let Ok(index) = self.label_index(label) {
            return Ok(index);
        }
        validate_label(label)?;
        // At least one label exists (checked in `new`); max(1) keeps `chunks_exact` sound.
        let old = self.labels.len().max(1);
        let new = old + 1;
        let buckets = self.config.buckets();
        check_size(buckets, new)?;
        let mut weights = vec![0.0; buckets * new];
        for (to, from) in weights
            .chunks_exact_mut(new)
            .zip(self.weights.chunks_exact(old))
        {
            to[..old].copy_from_slice(from);
        }
        self.weights = weights;
        self.bias.push(0.0);
        self.labels.push(label.to_owned());
        Ok(self.labels.len() - 1)
    }

    /// See the trait. A text without features gives [`Prediction::no_signal`].
    fn predict(&self, text: &str) -> Prediction {
        match self.probabilities(text) {
            Some(p) => Prediction::from_scores(&self.labels, &p, Signal::Features),
            None => Prediction::no_signal(&self.labels),
        }
    }

    fn learn(&mut self, text: &str, label: &str, weight: f32) -> Result<(), ClassifyError> {
        validate_weight(weight)?;
        let label = self.label_index(label)?;
        let x = self.featurize(text);
        self.update(&x, label, weight);
        Ok(())
    }

    fn fit(
        &mut self,
        examples: &[Example<'_>],
        options: &FitOptions,
    ) -> Result<FitReport, ClassifyError> {
        if examples.is_empty() {
            return Err(ClassifyError::NoExamples);
        }
        let mut labelled = Vec::with_capacity(examples.len());
        for example in examples {
            validate_weight(example.weight)?;
            labelled.push((
                example.text,
                self.label_index(example.label)?,
                example.weight,
            ));
        }
        let passes = options.passes.max(1);
        let mut data: Vec<(SparseVector, usize, f32)> = Vec::with_capacity(labelled.len());
        let mut skipped = 0;
        for (text, label, weight) in labelled {
            let x = self.featurize(text);
            if x.is_empty() {
                skipped += 1;
            } else {
                data.push((x, label, weight));
            }
        }
        let mut rng = SplitMix64::new(options.seed);
        let mut order: Vec<usize> = (0..data.len()).collect();

        let holdout = options.calibration_holdout;
        let held = if holdout.is_finite() && holdout > 0.0 {
            ((data.len() as f64) * f64::from(holdout.min(0.5))).round() as usize
        } else {
            0
        };
        let mut temperature = 1.0;
        let mut holdout_accuracy = None;
        if held >= FitOptions::MIN_CALIBRATION_EXAMPLES && held < data.len() {
            rng.shuffle(&mut order);
            let (held_out, train) = order.split_at(held);
            let held_out = held_out.to_vec();
            let mut train = train.to_vec();
            self.reset();
            self.train(&data, &mut train, passes, &mut rng);
            let mut correct = 0usize;
            let scored: Vec<(Vec<f32>, usize, f32)> = held_out
                .iter()
                .filter_map(|&i| data.get(i))
                .map(|(x, label, weight)| {
                    let scores = self.scores(x);
                    if argmax(&scores) == *label {
                        correct += 1;
                    }
                    (scores, *label, *weight)
                })
                .collect();
            holdout_accuracy = Some(correct as f32 / held as f32);
            temperature = fit_temperature(&scored);
        }
        self.reset();
        self.train(&data, &mut order, passes, &mut rng);
        self.temperature = temperature;
        Ok(FitReport {
            examples: data.len(),
            skipped,
            passes,
            temperature,
            holdout_accuracy,
        })
    }

    fn fresh(&self) -> Box<dyn Classifier> {
        // A new matrix rather than a clone: no copy of weights about to be discarded. The
        // configuration and labels were validated when this model was built, so `new`
        // succeeds; the clone is only a fallback that cannot panic.
        match NgramModel::new(self.config, &self.labels) {
            Ok(model) => Box::new(model),
            Err(_) => {
                let mut model = self.clone();
                model.reset();
                Box::new(model)
            }
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        crate::codec::encode(self)
    }
}

/// The index of the highest score (the first on ties).
fn argmax(scores: &[f32]) -> usize {
    let mut best = 0;
    for (i, &s) in scores.iter().enumerate() {
        if s > scores.get(best).copied().unwrap_or(f32::NEG_INFINITY) {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_is_stable() {
        let mut s = [1000.0, 0.0, -1000.0];
        softmax(&mut s, 1.0);
        assert!((s.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(s[0] > 0.999);
    }

    #[test]
    fn temperature_fit_recovers_a_known_scale() {
        // Scores that are 3x too confident: the true distribution is softmax(s / 3).
        let mut rng = SplitMix64::new(1);
        let mut held = Vec::new();
        for _ in 0..4000 {
            let scores: Vec<f32> = (0..4)
                .map(|_| (rng.below(1000) as f32 / 100.0) - 5.0)
                .collect();
            let mut p = scores.clone();
            softmax(&mut p, 3.0);
            let u = rng.below(1_000_000) as f32 / 1_000_000.0;
            let mut acc = 0.0;
            let mut label = 3;
            for (k, &q) in p.iter().enumerate() {
                acc += q;
                if u < acc {
                    label = k;
                    break;
                }
            }
            held.push((scores, label, 1.0));
        }
        let t = fit_temperature(&held);
        assert!((t - 3.0).abs() < 0.4, "{t}");
    }

    #[test]
    fn config_validation() {
        assert!(NgramConfig::default().validate().is_ok());
        let bad = [
            NgramConfig {
                bits: 9,
                ..NgramConfig::default()
            },
            NgramConfig {
                char_min: 4,
                char_max: 3,
                ..NgramConfig::default()
            },
            NgramConfig {
                learning_rate: f32::NAN,
                ..NgramConfig::default()
            },
            NgramConfig {
                char_weight: 0.0,
                word_max: 0,
                ..NgramConfig::default()
            },
        ];
        for config in bad {
            assert!(config.validate().is_err(), "{config:?}");
        }
    }

    #[test]
    fn size_limits() {
        let config = NgramConfig {
            bits: 24,
            ..NgramConfig::default()
        };
        let labels: Vec<String> = (0..17).map(|i| format!("l{i}")).collect();
        assert!(matches!(
            NgramModel::new(config, &labels),
            Err(ClassifyError::TooLarge { .. })
        ));
    }
}
