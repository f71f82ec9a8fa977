//! The two engines behind iConsultant's classifier, and loading engine 2 at start-up.
//!
//! Engine 1 (`ngram`, [`NgramModel`]) is built in and always there. Engine 2 (`encoder`,
//! [`EncoderClassifier`]) is the multilingual sentence encoder from `models/` (see
//! `models/README.md`) with a linear head; it is used when `[assist] engine` allows it and
//! its files load. A missing or damaged model never stops the hub: it says why in the log
//! and in `GET /api/v1/assist/status`, and engine 1 classifies.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use kommutator_encoder::{Encoder, EncoderClassifier, EncoderClassifierConfig, LoadError};
use kommutator_textclass::{Classifier, NgramConfig, NgramModel};

use crate::config::{AssistConfig, EngineChoice};

/// The stored-model engine name of engine 1.
pub const NGRAM: &str = "ngram";
/// The stored-model engine name of engine 2.
pub const ENCODER: &str = "encoder";

/// One of the two engines: how to make, decode and name its models.
#[derive(Clone)]
pub enum Engine {
    /// Engine 1: hashed character and word n-grams.
    Ngram,
    /// Engine 2: the sentence encoder with a linear head. `prototype` is an untrained model
    /// whose fresh copies share its embedding cache, so a retraining does not run the
    /// encoder again on texts it has seen.
    Encoder {
        /// The loaded encoder.
        encoder: Arc<Encoder>,
        /// Trains on this many threads.
        threads: usize,
        /// Untrained; its `fresh()` copies share one embedding cache.
        prototype: Arc<EncoderClassifier>,
    },
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Engine {
    /// Engine 2 around a loaded encoder, training on `threads` threads; its fresh models
    /// start with `labels` (at least one).
    ///
    /// # Errors
    /// No or invalid labels.
    pub fn encoder(
        encoder: Arc<Encoder>,
        threads: usize,
        labels: &[String],
    ) -> Result<Self, String> {
        let threads = threads.clamp(1, 64);
        let config = EncoderClassifierConfig {
            fit_threads: threads,
            ..EncoderClassifierConfig::default()
        };
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        let prototype = EncoderClassifier::new(Arc::clone(&encoder), &labels, config)
            .map_err(|e| e.to_string())?;
        Ok(Self::Encoder {
            encoder,
            threads,
            prototype: Arc::new(prototype),
        })
    }

    /// The name its models are stored under (`ngram`, `encoder`).
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ngram => NGRAM,
            Self::Encoder { .. } => ENCODER,
        }
    }

    /// Whether a prediction costs milliseconds (engine 2), so callers on async threads
    /// should move it to a blocking thread.
    #[must_use]
    pub fn is_slow(&self) -> bool {
        matches!(self, Self::Encoder { .. })
    }

    /// An untrained model over `labels`.
    ///
    /// # Errors
    /// A label is invalid (empty, too long, too many).
    pub fn fresh(&self, labels: &[String]) -> Result<Box<dyn Classifier>, String> {
        let mut model: Box<dyn Classifier> = match self {
            Self::Ngram => {
                let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
                return NgramModel::new(NgramConfig::default(), &labels)
                    .map(|m| Box::new(m) as Box<dyn Classifier>)
                    .map_err(|e| e.to_string());
            }
            Self::Encoder { prototype, .. } => prototype.fresh(),
        };
        for l in labels {
            if !model.labels().contains(l) {
                model.add_label(l).map_err(|e| e.to_string())?;
            }
        }
        Ok(model)
    }

    /// A stored model of this engine.
    ///
    /// # Errors
    /// The bytes are damaged or of another engine.
    pub fn decode(&self, bytes: &[u8]) -> Result<Box<dyn Classifier>, String> {
        match self {
            Self::Ngram => NgramModel::from_bytes(bytes)
                .map(|m| Box::new(m) as Box<dyn Classifier>)
                .map_err(|e| e.to_string()),
            Self::Encoder {
                encoder, threads, ..
            } => {
                let config = EncoderClassifierConfig {
                    fit_threads: *threads,
                    ..EncoderClassifierConfig::default()
                };
                EncoderClassifier::from_bytes(Arc::clone(encoder), bytes, config)
                    .map(|m| Box::new(m) as Box<dyn Classifier>)
                    .map_err(|e| e.to_string())
            }
        }
    }
}

/// What start-up made of `[assist] engine`: engine 2 loaded, or why not.
#[derive(Debug, Clone)]
pub struct EngineSetup {
    /// The configured choice.
    pub configured: EngineChoice,
    /// Engine 2, when it loaded.
    pub encoder: Option<Engine>,
    /// Why engine 2 is not used (`None` when it is).
    pub note: Option<String>,
    /// Whether that is a failure (a configured or present model that does not load) rather
    /// than a choice (`ngram`, or `auto` without model files).
    pub failed: bool,
}

impl EngineSetup {
    /// The loaded sentence encoder, when engine 2 loaded (the knowledge base uses it too).
    #[must_use]
    pub fn sentence_encoder(&self) -> Option<Arc<Encoder>> {
        match &self.encoder {
            Some(Engine::Encoder { encoder, .. }) => Some(Arc::clone(encoder)),
            _ => None,
        }
    }

    /// Engine 1 only, by choice.
    #[must_use]
    pub fn ngram_only() -> Self {
        Self {
            configured: EngineChoice::Ngram,
            encoder: None,
            note: Some("engine 2 is switched off ([assist] engine = \"ngram\")".into()),
            failed: false,
        }
    }
}

/// Loads engine 2 as `[assist]` says, off the async threads (1–3 s), and logs the outcome
/// in one line that says what to do about it. Never fails: engine 1 is the fallback.
pub async fn load(config: &AssistConfig) -> EngineSetup {
    let configured = config.engine;
    if configured == EngineChoice::Ngram {
        tracing::info!(
            "iConsultant classifies with engine 1 (hashed n-grams): [assist] engine = \"ngram\""
        );
        return EngineSetup::ngram_only();
    }
    let dir = config.models_dir.clone();
    if configured == EngineChoice::Auto && !has_any_model_file(&dir) {
        let note = format!(
            "no sentence encoder in {} (bash models/fetch.sh installs engine 2, see models/README.md)",
            dir.display()
        );
        tracing::info!("iConsultant classifies with engine 1 (hashed n-grams): {note}");
        return EngineSetup {
            configured,
            encoder: None,
            note: Some(note),
            failed: false,
        };
    }
    let threads = match config.encoder_threads {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        n => n,
    };
    let started = Instant::now();
    let loaded = tokio::task::spawn_blocking(move || load_blocking(&dir, threads)).await;
    let loaded = match loaded {
        Ok(r) => r,
        Err(e) => Err(format!("loading stopped: {e}")),
    };
    match loaded {
        Ok(engine) => {
            tracing::info!(
                models_dir = %config.models_dir.display(),
                ms = started.elapsed().as_millis(),
                threads,
                "iConsultant classifies with engine 2 (multilingual-e5-small sentence encoder + linear head)"
            );
            EngineSetup {
                configured,
                encoder: Some(engine),
                note: None,
                failed: false,
            }
        }
        Err(reason) => {
            tracing::error!(
                "iConsultant's engine 2 cannot be used, engine 1 (hashed n-grams) classifies instead: {reason}"
            );
            EngineSetup {
                configured,
                encoder: None,
                note: Some(reason),
                failed: true,
            }
        }
    }
}

fn has_any_model_file(dir: &Path) -> bool {
    [
        kommutator_encoder::MODEL_FILE,
        kommutator_encoder::TOKENIZER_FILE,
    ]
    .iter()
    .any(|f| dir.join(f).exists())
}

fn load_blocking(dir: &Path, threads: usize) -> Result<Engine, String> {
    let encoder = Encoder::load(dir).map_err(|e: LoadError| e.to_string())?;
    // A model that loads but cannot embed (a graph tract accepts that fails at run time)
    // must not reach the pipeline: one trial text, checked.
    let probe = encoder
        .try_embed_batch(&["проверка check"], kommutator_encoder::Kind::Query)
        .map_err(|e| format!("the model loaded but cannot embed a text: {e}"))?;
    if probe.first().is_none_or(|v| v.iter().all(|x| *x == 0.0)) {
        return Err("the model loaded but gives empty embeddings; re-run models/fetch.sh".into());
    }
    Engine::encoder(
        Arc::new(encoder),
        threads,
        &super::consultant::seed_labels(),
    )
}
