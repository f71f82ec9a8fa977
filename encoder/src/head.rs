//! [`LinearHead`]: multinomial logistic regression over frozen sentence embeddings, trained
//! online with AdaGrad, with a softmax temperature for calibrated probabilities, and its
//! checksummed byte format.

use kommutator_textclass::rng::SplitMix64;
use kommutator_textclass::{
    validate_label, validate_weight, ClassifyError, FitOptions, FitReport, Prediction, Signal,
};

/// The most labels a head may have.
pub const MAX_LABELS: usize = 4096;

/// The largest embedding size a head accepts.
pub const MAX_DIM: usize = 4096;

/// The byte format's version written by [`LinearHead::to_bytes`].
pub const HEAD_FORMAT_VERSION: u32 = 1;

const MAGIC: &[u8; 4] = b"KENC";

/// Training hyper-parameters of a [`LinearHead`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadConfig {
    /// AdaGrad's base learning rate (> 0).
    pub learning_rate: f32,
    /// L2 regularisation per update (>= 0).
    pub l2: f32,
}

impl Default for HeadConfig {
    fn default() -> Self {
        Self {
            learning_rate: 0.02,
            l2: 1e-5,
        }
    }
}

impl HeadConfig {
    fn validate(&self) -> Result<(), ClassifyError> {
        if !(self.learning_rate.is_finite()
            && self.learning_rate > 0.0
            && self.learning_rate <= 10.0)
        {
            return Err(ClassifyError::InvalidConfig(format!(
                "learning_rate {} must be in (0, 10]",
                self.learning_rate
            )));
        }
        if !(self.l2.is_finite() && (0.0..=1.0).contains(&self.l2)) {
            return Err(ClassifyError::InvalidConfig(format!(
                "l2 {} must be in [0, 1]",
                self.l2
            )));
        }
        Ok(())
    }
}

/// Why bytes are not a head.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HeadDecodeError {
    /// Not this format at all.
    #[error("not an encoder head (bad magic)")]
    BadMagic,
    /// A version this build cannot read.
    #[error(
        "unsupported encoder head format version {0} (this build reads {HEAD_FORMAT_VERSION})"
    )]
    Version(u32),
    /// Cut short.
    #[error("truncated encoder head")]
    Truncated,
    /// The checksum does not match: the bytes were damaged.
    #[error("encoder head checksum mismatch (the data is corrupt)")]
    Checksum,
    /// Well-formed bytes with values that make no sense.
    #[error("invalid encoder head: {0}")]
    Invalid(String),
}

/// A linear softmax classifier over embeddings of a fixed size.
///
/// Inputs are centred on the training data's mean embedding and scaled to unit variance
/// per dimension on average (set by [`fit`](Self::fit); online learning keeps them), which
/// lets the same learning rate work for any encoder.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearHead {
    config: HeadConfig,
    dim: usize,
    labels: Vec<String>,
    center: Vec<f32>,
    scale: f32,
    /// labels × dim, row per label.
    weights: Vec<f32>,
    bias: Vec<f32>,
    /// AdaGrad's sums of squared gradients: labels × (dim + 1), the bias last.
    grad_sq: Vec<f32>,
    temperature: f32,
}

impl LinearHead {
    /// An untrained head over `labels` for embeddings of size `dim`.
    ///
    /// # Errors
    ///
    /// [`ClassifyError::NoLabels`], [`ClassifyError::DuplicateLabel`],
    /// [`ClassifyError::InvalidLabel`], [`ClassifyError::InvalidConfig`] (bad config or
    /// `dim`), [`ClassifyError::TooLarge`] (over [`MAX_LABELS`]).
    pub fn new(labels: &[&str], dim: usize, config: HeadConfig) -> Result<Self, ClassifyError> {
        config.validate()?;
        if dim == 0 || dim > MAX_DIM {
            return Err(ClassifyError::InvalidConfig(format!(
                "embedding size {dim} must be in 1..={MAX_DIM}"
            )));
        }
        if labels.is_empty() {
            return Err(ClassifyError::NoLabels);
        }
        let mut head = Self {
            config,
            dim,
            labels: Vec::new(),
            center: vec![0.0; dim],
            scale: (dim as f32).sqrt(),
            weights: Vec::new(),
            bias: Vec::new(),
            grad_sq: Vec::new(),
            temperature: 1.0,
        };
        for label in labels {
            if head.labels.iter().any(|l| l == label) {
                return Err(ClassifyError::DuplicateLabel((*label).to_owned()));
            }
            head.add_label(label)?;
        }
        Ok(head)
    }

    /// The labels in their stable order.
    #[must_use]
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The embedding size.
    #[must_use]
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> HeadConfig {
        self.config
    }

    /// The softmax temperature (1 = uncalibrated).
    #[must_use]
    pub fn temperature(&self) -> f32 {
        self.temperature
    }

    /// The index of `label`.
    #[must_use]
    pub fn index_of(&self, label: &str) -> Option<usize> {
        self.labels.iter().position(|l| l == label)
    }

    /// Adds a label (or returns the index of an existing one).
    ///
    /// # Errors
    ///
    /// [`ClassifyError::InvalidLabel`]; [`ClassifyError::TooLarge`] past [`MAX_LABELS`].
    pub fn add_label(&mut self, label: &str) -> Result<usize, ClassifyError> {
        if let Some(i) = self.index_of(label) {
            return Ok(i);
        }
        validate_label(label)?;
        if self.labels.len() >= MAX_LABELS {
            return Err(ClassifyError::TooLarge {
                buckets: self.dim,
                labels: self.labels.len() + 1,
                limit: MAX_LABELS * self.dim,
            });
        }
        self.labels.push(label.to_owned());
        self.weights.extend(std::iter::repeat_n(0.0, self.dim));
        self.bias.push(0.0);
        self.grad_sq.extend(std::iter::repeat_n(0.0, self.dim + 1));
        Ok(self.labels.len() - 1)
    }

    /// Forgets all training (labels, configuration and input normalisation stay).
    pub fn reset(&mut self) {
        self.weights.iter_mut().for_each(|w| *w = 0.0);
        self.bias.iter_mut().for_each(|w| *w = 0.0);
        self.grad_sq.iter_mut().for_each(|w| *w = 0.0);
        self.temperature = 1.0;
    }

    fn features(&self, embedding: &[f32]) -> Option<Vec<f32>> {
        if embedding.len() != self.dim || !embedding.iter().all(|x| x.is_finite()) {
            return None;
        }
        Some(
            embedding
                .iter()
                .zip(&self.center)
                .map(|(x, c)| (x - c) * self.scale)
                .collect(),
        )
    }

    fn logits(&self, x: &[f32]) -> Vec<f32> {
        self.weights
            .chunks_exact(self.dim)
            .zip(&self.bias)
            .map(|(row, b)| row.iter().zip(x).map(|(w, v)| w * v).sum::<f32>() + b)
            .collect()
    }

    fn softmax(logits: &[f32], temperature: f32) -> Vec<f32> {
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut p: Vec<f32> = logits
            .iter()
            .map(|z| ((z - max) / temperature).exp())
            .collect();
        let total: f32 = p.iter().sum();
        if total.is_finite() && total > 0.0 {
            p.iter_mut().for_each(|v| *v /= total);
        }
        p
    }

    /// Calibrated probabilities per label, in label order (`None` for an embedding of the
    /// wrong size or with non-finite values).
    #[must_use]
    pub fn probabilities(&self, embedding: &[f32]) -> Option<Vec<f32>> {
        let x = self.features(embedding)?;
        Some(Self::softmax(&self.logits(&x), self.temperature))
    }

    /// The ranked prediction for an embedding; uniform with [`Signal::NoFeatures`] for an
    /// unusable one.
    #[must_use]
    pub fn predict(&self, embedding: &[f32]) -> Prediction {
        match self.probabilities(embedding) {
            Some(p) => Prediction::from_scores(&self.labels, &p, Signal::Features),
            None => Prediction::no_signal(&self.labels),
        }
    }

    /// One AdaGrad step of the log-loss on `(embedding, label)`, counted `weight` times. An
    /// unusable embedding changes nothing.
    ///
    /// # Errors
    ///
    /// [`ClassifyError::InvalidWeight`]; [`ClassifyError::InvalidConfig`] for a label index
    /// out of range.
    pub fn learn(
        &mut self,
        embedding: &[f32],
        label: usize,
        weight: f32,
    ) -> Result<(), ClassifyError> {
        validate_weight(weight)?;
        if label >= self.labels.len() {
            return Err(ClassifyError::InvalidConfig(format!(
                "label index {label} out of range"
            )));
        }
        if let Some(x) = self.features(embedding) {
            self.step(&x, label, weight);
        }
        Ok(())
    }

    fn step(&mut self, x: &[f32], label: usize, weight: f32) {
        let p = Self::softmax(&self.logits(x), 1.0);
        let lr = self.config.learning_rate;
        let l2 = self.config.l2;
        let dim = self.dim;
        for (k, pk) in p.iter().enumerate() {
            let g = weight * (pk - if k == label { 1.0 } else { 0.0 });
            if g.abs() < 1e-6 {
                continue;
            }
            let row = &mut self.weights[k * dim..(k + 1) * dim];
            let acc = &mut self.grad_sq[k * (dim + 1)..(k + 1) * (dim + 1)];
            for ((w, a), xi) in row.iter_mut().zip(acc.iter_mut()).zip(x) {
                let grad = g * xi + l2 * *w;
                *a += grad * grad;
                *w -= lr * grad / (a.sqrt() + 1e-8);
            }
            let a = &mut acc[dim];
            *a += g * g;
            self.bias[k] -= lr * g / (a.sqrt() + 1e-8);
        }
    }

    /// Trains from scratch on `(embedding, label index, weight)` triples, as
    /// [`Classifier::fit`](kommutator_textclass::Classifier::fit) describes: sets the input
    /// normalisation from the training data, makes `options.passes` seeded passes, and fits
    /// the temperature on a held-out part if asked.
    ///
    /// # Errors
    ///
    /// [`ClassifyError::NoExamples`] if no example is usable; [`ClassifyError::InvalidWeight`]
    /// or [`ClassifyError::InvalidConfig`] (label index, passes) before anything changes.
    pub fn fit(
        &mut self,
        examples: &[(&[f32], usize, f32)],
        options: &FitOptions,
    ) -> Result<FitReport, ClassifyError> {
        if options.passes == 0 || options.passes > 1000 {
            return Err(ClassifyError::InvalidConfig(format!(
                "passes {} must be in 1..=1000",
                options.passes
            )));
        }
        let holdout = options.calibration_holdout;
        if !(holdout.is_finite() && (0.0..=0.5).contains(&holdout)) {
            return Err(ClassifyError::InvalidConfig(format!(
                "calibration_holdout {holdout} must be in [0, 0.5]"
            )));
        }
        for &(_, label, weight) in examples {
            validate_weight(weight)?;
            if label >= self.labels.len() {
                return Err(ClassifyError::InvalidConfig(format!(
                    "label index {label} out of range"
                )));
            }
        }
        let usable: Vec<(&[f32], usize, f32)> = examples
            .iter()
            .filter(|(e, _, _)| e.len() == self.dim && e.iter().all(|x| x.is_finite()))
            .copied()
            .collect();
        if usable.is_empty() {
            return Err(ClassifyError::NoExamples);
        }
        let skipped = examples.len() - usable.len();
        self.set_normalisation(&usable);
        let features: Vec<(Vec<f32>, usize, f32)> = usable
            .iter()
            .filter_map(|&(e, l, w)| self.features(e).map(|x| (x, l, w)))
            .collect();

        let mut rng = SplitMix64::new(options.seed);
        let held_count = (features.len() as f64 * f64::from(holdout)).round() as usize;
        let mut temperature = 1.0;
        let mut holdout_accuracy = None;
        if held_count >= FitOptions::MIN_CALIBRATION_EXAMPLES && held_count < features.len() {
            let mut order: Vec<usize> = (0..features.len()).collect();
            rng.shuffle(&mut order);
            let (held, rest) = order.split_at(held_count);
            self.reset();
            self.train(&features, rest, options.passes, &mut rng);
            let logits: Vec<(Vec<f32>, usize)> = held
                .iter()
                .map(|&i| (self.logits(&features[i].0), features[i].1))
                .collect();
            let correct = logits.iter().filter(|(z, l)| argmax(z) == Some(*l)).count();
            holdout_accuracy = Some(correct as f32 / held.len() as f32);
            temperature = best_temperature(&logits);
        }
        self.reset();
        let all: Vec<usize> = (0..features.len()).collect();
        self.train(&features, &all, options.passes, &mut rng);
        self.temperature = temperature;
        Ok(FitReport {
            examples: features.len(),
            skipped,
            passes: options.passes,
            temperature,
            holdout_accuracy,
        })
    }

    fn set_normalisation(&mut self, examples: &[(&[f32], usize, f32)]) {
        let n = examples.len() as f64;
        let mut mean = vec![0f64; self.dim];
        for (e, _, _) in examples {
            for (m, &x) in mean.iter_mut().zip(e.iter()) {
                *m += f64::from(x);
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut sq = 0f64;
        for (e, _, _) in examples {
            for (m, &x) in mean.iter().zip(e.iter()) {
                sq += (f64::from(x) - m).powi(2);
            }
        }
        let var_per_dim = sq / n / self.dim as f64;
        self.center = mean.iter().map(|&m| m as f32).collect();
        self.scale = if var_per_dim > 1e-12 {
            (1.0 / var_per_dim.sqrt()) as f32
        } else {
            (self.dim as f32).sqrt()
        };
    }

    fn train(
        &mut self,
        features: &[(Vec<f32>, usize, f32)],
        subset: &[usize],
        passes: u32,
        rng: &mut SplitMix64,
    ) {
        let mut order = subset.to_vec();
        for _ in 0..passes {
            rng.shuffle(&mut order);
            for &i in &order {
                let (x, label, weight) = &features[i];
                self.step(x, *label, *weight);
            }
        }
    }

    /// The head as bytes: magic, version, configuration, labels, normalisation, weights,
    /// AdaGrad state, temperature, and a CRC-32 of all of it.
    #[must_use]
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + (self.weights.len() + self.grad_sq.len()) * 4);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&HEAD_FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.dim as u32).to_le_bytes());
        for v in [
            self.config.learning_rate,
            self.config.l2,
            self.temperature,
            self.scale,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&(self.labels.len() as u32).to_le_bytes());
        for label in &self.labels {
            out.extend_from_slice(&(label.len() as u32).to_le_bytes());
            out.extend_from_slice(label.as_bytes());
        }
        for v in self
            .center
            .iter()
            .chain(&self.weights)
            .chain(&self.bias)
            .chain(&self.grad_sq)
        {
            out.extend_from_slice(&v.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads bytes written by [`to_bytes`](Self::to_bytes). Never panics.
    ///
    /// # Errors
    ///
    /// A [`HeadDecodeError`] for anything that is not an intact head of a supported version.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, HeadDecodeError> {
        if bytes.len() < 8 || &bytes[..4] != MAGIC {
            return Err(if bytes.len() < 4 || &bytes[..4] == MAGIC {
                HeadDecodeError::Truncated
            } else {
                HeadDecodeError::BadMagic
            });
        }
        let mut r = ByteReader {
            bytes,
            pos: 4,
            end: bytes.len(),
        };
        let version = r.u32()?;
        if version != HEAD_FORMAT_VERSION {
            return Err(HeadDecodeError::Version(version));
        }
        if bytes.len() < 12 {
            return Err(HeadDecodeError::Truncated);
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if crc32fast::hash(body) != stored {
            return Err(HeadDecodeError::Checksum);
        }
        r.end = body.len();
        let invalid = |m: &str| HeadDecodeError::Invalid(m.to_owned());
        let dim = r.u32()? as usize;
        if dim == 0 || dim > MAX_DIM {
            return Err(invalid("embedding size out of range"));
        }
        let config = HeadConfig {
            learning_rate: r.f32()?,
            l2: r.f32()?,
        };
        config
            .validate()
            .map_err(|e| HeadDecodeError::Invalid(e.to_string()))?;
        let temperature = r.f32()?;
        let scale = r.f32()?;
        if !(temperature.is_finite() && temperature > 0.0 && scale.is_finite() && scale > 0.0) {
            return Err(invalid("temperature or scale not positive"));
        }
        let n = r.u32()? as usize;
        if n == 0 || n > MAX_LABELS {
            return Err(invalid("label count out of range"));
        }
        let mut labels: Vec<String> = Vec::with_capacity(n);
        for _ in 0..n {
            let len = r.u32()? as usize;
            let raw = r.take(len)?;
            let label = std::str::from_utf8(raw).map_err(|_| invalid("label is not UTF-8"))?;
            validate_label(label).map_err(|e| HeadDecodeError::Invalid(e.to_string()))?;
            if labels.iter().any(|l| l == label) {
                return Err(invalid("duplicate label"));
            }
            labels.push(label.to_owned());
        }
        let floats = dim + n * dim + n + n * (dim + 1);
        if r.remaining() != floats * 4 {
            return Err(if r.remaining() < floats * 4 {
                HeadDecodeError::Truncated
            } else {
                invalid("trailing bytes")
            });
        }
        let mut read = |count: usize| -> Result<Vec<f32>, HeadDecodeError> {
            let v = (0..count)
                .map(|_| r.f32())
                .collect::<Result<Vec<f32>, _>>()?;
            if v.iter().all(|x| x.is_finite()) {
                Ok(v)
            } else {
                Err(HeadDecodeError::Invalid("non-finite value".into()))
            }
        };
        let center = read(dim)?;
        let weights = read(n * dim)?;
        let bias = read(n)?;
        let grad_sq = read(n * (dim + 1))?;
        Ok(Self {
            config,
            dim,
            labels,
            center,
            scale,
            weights,
            bias,
            grad_sq,
            temperature,
        })
    }
}

fn argmax(values: &[f32]) -> Option<usize> {
    values
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
        .map(|(i, _)| i)
}

/// The temperature (on a log grid from 0.05 to 20) minimising the log-loss of `logits`.
fn best_temperature(logits: &[(Vec<f32>, usize)]) -> f32 {
    let mut best = (f64::INFINITY, 1.0f32);
    for step in 0..=60 {
        let t = (0.05f64.ln() + (20f64.ln() - 0.05f64.ln()) * f64::from(step) / 60.0).exp() as f32;
        let loss: f64 = logits
            .iter()
            .map(|(z, l)| {
                let p = LinearHead::softmax(z, t);
                -f64::from(p[*l].max(1e-12)).ln()
            })
            .sum();
        if loss < best.0 {
            best = (loss, t);
        }
    }
    best.1
}

struct ByteReader<'a> {
    bytes: &'a [u8],
    pos: usize,
    end: usize,
}

impl ByteReader<'_> {
    fn remaining(&self) -> usize {
        self.end.saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize) -> Result<&[u8], HeadDecodeError> {
        if n > self.remaining() {
            return Err(HeadDecodeError::Truncated);
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32, HeadDecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn f32(&mut self) -> Result<f32, HeadDecodeError> {
        Ok(f32::from_bits(self.u32()?))
    }
}
