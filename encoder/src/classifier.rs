//! [`EncoderClassifier`]: iConsultant engine 2, frozen e5 embeddings + [`LinearHead`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use kommutator_textclass::{
    validate_weight, Classifier, ClassifyError, Example, FitOptions, FitReport, Prediction, Signal,
};

use crate::encoder::{Encoder, Kind};
use crate::head::{HeadConfig, HeadDecodeError, LinearHead};

/// The default number of embeddings kept in memory (about 1.6 KB each).
pub const DEFAULT_CACHE_ENTRIES: usize = 20_000;

/// Texts learned online ([`Classifier::learn`]) that the classifier remembers verbatim, at
/// most (the oldest are forgotten first).
pub const MEMORY_ENTRIES: usize = 5_000;

/// The least cosine similarity at which a text counts as a near copy of a remembered one.
/// Paraphrases and texts about the same thing score lower; the same message with a date,
/// a number or punctuation changed scores above it.
pub const MEMORY_SIMILARITY: f32 = 0.95;

/// How much a remembered label weighs in the reading of a near copy (the head's
/// probabilities get the rest).
pub const MEMORY_WEIGHT: f32 = 0.8;

/// Options of an [`EncoderClassifier`] (not part of its bytes: they concern the process).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EncoderClassifierConfig {
    /// The head's hyper-parameters (these are saved with the head).
    pub head: HeadConfig,
    /// Threads used to embed the training texts in [`Classifier::fit`] (at least 1).
    pub fit_threads: usize,
    /// Texts whose embeddings are remembered (shared with [`Classifier::fresh`] copies), so
    /// that a retrain over the replay buffer and a verdict on a just-predicted text do not
    /// run the encoder again. 0 disables the cache.
    pub cache_entries: usize,
}

impl Default for EncoderClassifierConfig {
    fn default() -> Self {
        Self {
            head: HeadConfig::default(),
            fit_threads: 1,
            cache_entries: DEFAULT_CACHE_ENTRIES,
        }
    }
}

/// A bounded text → embedding map with first-in-first-out eviction.
#[derive(Debug, Default)]
struct EmbeddingCache {
    map: HashMap<String, Arc<[f32]>>,
    order: VecDeque<String>,
    capacity: usize,
}

impl EmbeddingCache {
    fn get(&self, text: &str) -> Option<Arc<[f32]>> {
        self.map.get(text).cloned()
    }

    fn put(&mut self, text: &str, v: Arc<[f32]>) {
        if self.capacity == 0 || self.map.contains_key(text) {
            return;
        }
        while self.map.len() >= self.capacity {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        self.map.insert(text.to_owned(), v);
        self.order.push_back(text.to_owned());
    }
}

/// Whether a text gives the encoder anything to go on: some letter or digit.
fn has_features(text: &str) -> bool {
    text.chars().take(1 << 16).any(char::is_alphanumeric)
}

/// Engine 2 of iConsultant: the text's e5 embedding (as a query) goes through a
/// multinomial logistic regression head trained online. See [`Classifier`] for the
/// contract.
#[derive(Debug)]
pub struct EncoderClassifier {
    encoder: Arc<Encoder>,
    head: LinearHead,
    config: EncoderClassifierConfig,
    cache: Arc<Mutex<EmbeddingCache>>,
    /// Texts learned online, newest last: (embedding, label index). A linear head moved by
    /// a few online steps generalises a correction poorly to a near copy of the corrected
    /// text (the head reads centred embeddings, where a changed date weighs as much as the
    /// rest); the memory makes a near copy read as the operator said.
    memory: VecDeque<(Arc<[f32]>, usize)>,
}

impl EncoderClassifier {
    /// An untrained classifier over `labels`.
    ///
    /// # Errors
    ///
    /// As [`LinearHead::new`]; [`ClassifyError::InvalidConfig`] for `fit_threads == 0`.
    pub fn new(
        encoder: Arc<Encoder>,
        labels: &[&str],
        config: EncoderClassifierConfig,
    ) -> Result<Self, ClassifyError> {
        if config.fit_threads == 0 || config.fit_threads > 64 {
            return Err(ClassifyError::InvalidConfig(
                "fit_threads must be in 1..=64".into(),
            ));
        }
        let head = LinearHead::new(labels, encoder.dim(), config.head)?;
        Ok(Self::assemble(encoder, head, config))
    }

    fn assemble(encoder: Arc<Encoder>, head: LinearHead, config: EncoderClassifierConfig) -> Self {
        let cache = EmbeddingCache {
            capacity: config.cache_entries,
            ..EmbeddingCache::default()
        };
        Self {
            encoder,
            head,
            config,
            cache: Arc::new(Mutex::new(cache)),
            memory: VecDeque::new(),
        }
    }

    /// Restores a classifier from [`Classifier::to_bytes`] output.
    ///
    /// # Errors
    ///
    /// [`HeadDecodeError`] for corrupt, truncated or foreign bytes, or a head whose
    /// embedding size is not the encoder's.
    pub fn from_bytes(
        encoder: Arc<Encoder>,
        bytes: &[u8],
        config: EncoderClassifierConfig,
    ) -> Result<Self, HeadDecodeError> {
        let head = LinearHead::from_bytes(bytes)?;
        if head.dim() != encoder.dim() {
            return Err(HeadDecodeError::Invalid(format!(
                "head for {}-dimensional embeddings, the encoder gives {}",
                head.dim(),
                encoder.dim()
            )));
        }
        let config = EncoderClassifierConfig {
            head: head.config(),
            ..config
        };
        Ok(Self::assemble(encoder, head, config))
    }

    /// The shared encoder.
    #[must_use]
    pub fn encoder(&self) -> &Arc<Encoder> {
        &self.encoder
    }

    /// The linear head (for evaluation and inspection).
    #[must_use]
    pub fn head(&self) -> &LinearHead {
        &self.head
    }

    /// The head, mutably (for training on precomputed embeddings).
    pub fn head_mut(&mut self) -> &mut LinearHead {
        &mut self.head
    }

    /// The embedding of `text` as a query, from the cache or the encoder.
    #[must_use]
    pub fn embedding(&self, text: &str) -> Arc<[f32]> {
        if let Some(v) = self.cache_lock().get(text) {
            return v;
        }
        let v: Arc<[f32]> = self.encoder.embed(text, Kind::Query).into();
        self.cache_lock().put(text, Arc::clone(&v));
        v
    }

    fn cache_lock(&self) -> std::sync::MutexGuard<'_, EmbeddingCache> {
        // A panic while holding the lock cannot leave the map inconsistent in a way
        // that matters (entries are immutable), so a poisoned lock is used as is.
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Embeddings of all `texts`, missing ones computed on `fit_threads` threads.
    fn embeddings(&self, texts: &[&str]) -> Vec<Arc<[f32]>> {
        let mut found: Vec<Option<Arc<[f32]>>> = {
            let cache = self.cache_lock();
            texts.iter().map(|t| cache.get(t)).collect()
        };
        let mut missing: Vec<&str> = texts
            .iter()
            .zip(&found)
            .filter(|(_, f)| f.is_none())
            .map(|(t, _)| *t)
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            let vectors =
                self.encoder
                    .embed_parallel(&missing, Kind::Query, self.config.fit_threads);
            let computed: HashMap<&str, Arc<[f32]>> = missing
                .iter()
                .zip(vectors)
                .map(|(t, v)| (*t, Arc::<[f32]>::from(v)))
                .collect();
            let mut cache = self.cache_lock();
            for (t, v) in &computed {
                cache.put(t, Arc::clone(v));
            }
            for (slot, t) in found.iter_mut().zip(texts) {
                if slot.is_none() {
                    *slot = computed.get(t).cloned();
                }
            }
        }
        found
            .into_iter()
            .map(|f| f.unwrap_or_else(|| Arc::from(vec![0.0; self.encoder.dim()])))
            .collect()
    }
}

impl Classifier for EncoderClassifier {
    fn engine(&self) -> &'static str {
        "encoder"
    }

    fn labels(&self) -> &[String] {
        self.head.labels()
    }

    fn add_label(&mut self, label: &str) -> Result<usize, ClassifyError> {
        self.head.add_label(label)
    }

    fn predict(&self, text: &str) -> Prediction {
        if !has_features(text) {
            return Prediction::no_signal(self.head.labels());
        }
        let e = self.embedding(text);
        let Some(mut p) = self.head.probabilities(&e) else {
            return Prediction::no_signal(self.head.labels());
        };
        // The nearest remembered text, if it is a near copy.
        let nearest = self
            .memory
            .iter()
            .rev()
            .map(|(m, label)| (crate::cosine(m, &e), *label))
            .filter(|(sim, _)| *sim >= MEMORY_SIMILARITY)
            .max_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((_, label)) = nearest {
            for (k, v) in p.iter_mut().enumerate() {
                *v = (1.0 - MEMORY_WEIGHT) * *v + if k == label { MEMORY_WEIGHT } else { 0.0 };
            }
        }
        Prediction::from_scores(self.head.labels(), &p, Signal::Features)
    }

    fn learn(&mut self, text: &str, label: &str, weight: f32) -> Result<(), ClassifyError> {
        let index = self
            .head
            .index_of(label)
            .ok_or_else(|| ClassifyError::UnknownLabel(label.to_owned()))?;
        validate_weight(weight)?;
        if !has_features(text) {
            return Ok(());
        }
        let e = self.embedding(text);
        self.head.learn(&e, index, weight)?;
        // The newest verdict on the same text wins.
        self.memory
            .retain(|(m, _)| !Arc::ptr_eq(m, &e) && m[..] != e[..]);
        if self.memory.len() >= MEMORY_ENTRIES {
            self.memory.pop_front();
        }
        self.memory.push_back((e, index));
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
        let mut indices = Vec::with_capacity(examples.len());
        for ex in examples {
            let i = self
                .head
                .index_of(ex.label)
                .ok_or_else(|| ClassifyError::UnknownLabel(ex.label.to_owned()))?;
            validate_weight(ex.weight)?;
            indices.push(i);
        }
        let usable: Vec<usize> = (0..examples.len())
            .filter(|&i| has_features(examples[i].text))
            .collect();
        let skipped = examples.len() - usable.len();
        if usable.is_empty() {
            return Err(ClassifyError::NoExamples);
        }
        let texts: Vec<&str> = usable.iter().map(|&i| examples[i].text).collect();
        let vectors = self.embeddings(&texts);
        let triples: Vec<(&[f32], usize, f32)> = usable
            .iter()
            .zip(&vectors)
            .map(|(&i, v)| (&v[..], indices[i], examples[i].weight))
            .collect();
        let mut report = self.head.fit(&triples, options)?;
        report.skipped += skipped;
        Ok(report)
    }

    fn fresh(&self) -> Box<dyn Classifier> {
        let mut head = self.head.clone();
        head.reset();
        Box::new(Self {
            encoder: Arc::clone(&self.encoder),
            head,
            config: self.config,
            cache: Arc::clone(&self.cache),
            memory: VecDeque::new(),
        })
    }

    /// The head only: the memory of online verdicts is not kept (a stored model comes from
    /// `fit`, where the verdicts are training examples; the hub replays the newer ones).
    fn to_bytes(&self) -> Vec<u8> {
        self.head.to_bytes()
    }
}
