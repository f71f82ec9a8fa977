//! iConsultant's classifier in the hub.
//!
//! ```text
//! start: newest stored model (else one trained on the seed set) + replay of the feedback
//!        it has not seen ──► live model (RwLock)
//! pipeline: subject + text ──► predict ──► ranked over the current request types;
//!           top ≥ its type's threshold ──► applied (routing to the type's department);
//!           with engine 2: engine 1 first (provisional), engine 2's after the store
//! verdict (like / dislike + right type) ──► stored ──► learned at once (this node);
//!           other nodes learn it from the store within `SYNC_EVERY`
//! retrain: seed + feedback outside the held-back slice ──► candidate; stored and swapped
//!          in only if it is not worse than the stored model on the held-back slice
//! ```
//!
//! The held-back slice is every fifth verdict (by id): stored models never train on it, so
//! it measures them fairly; the live model still learns it online, because the operator who
//! gave the verdict expects the next similar inquiry to be read right.
//!
//! The engine ([`Engine`]) is engine 2 (the sentence encoder) when it loaded at start-up,
//! else engine 1; models are stored per engine. With engine 2 and no stored model of it yet,
//! engine 1 classifies while engine 2's head trains on the seed set in the background (a
//! few seconds per core); the trained head is stored, so the next start and the other
//! nodes take it as it is. Engine 2's predictions cost milliseconds, so the pipeline never
//! waits for them: it reads a new inquiry with engine 1's model, kept beside engine 2 as a
//! standby that learns the same verdicts ([`Consultant::classify_at_ingest`], a
//! provisional reading), stores it, and then has engine 2 read it on a blocking thread
//! ([`Consultant::refine_later`]); engine 2's reading replaces the provisional one. The
//! API uses [`Consultant::classify_off_thread`], which reads at most one inquiry per core
//! at a time with engine 2 and hands the overflow of a burst to the standby.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use kommutator_textclass::{Classifier, Example, FitOptions, Signal};
use tokio_util::sync::CancellationToken;

use super::engine::{Engine, EngineSetup, NGRAM};
use crate::domain::*;
use crate::storage::{Store, StoreError, StoreResult};

/// The seed training set (written for this project; `textclass/seed/README.md`).
const SEED: &str = include_str!("../../textclass/seed/train.tsv");

/// How often a node picks up other nodes' verdicts, request type changes and models.
const SYNC_EVERY: Duration = Duration::from_secs(5);

/// The classifier reads at most this much of an inquiry (its beginning says what it is
/// about; a 40 KiB mail costs no more than an 8 KiB one).
const READ_AT_MOST: usize = 8 * 1024;

/// `text` cut to at most `max` bytes at a char boundary.
fn head(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// How long an inquiry waits for engine 2 when every core is reading another before engine
/// 1's standby model reads it (see [`Consultant::classify_off_thread`]).
pub const ENCODER_WAIT: Duration = Duration::from_millis(100);

/// At most this many stored inquiries wait for (or are in) engine 2's reading after
/// engine 1's quick one; beyond it a burst keeps engine 1's readings (counted in
/// `kommutator_classify_refine_skipped_total`).
pub const REFINE_BACKLOG: usize = 256;
/// How long a stored inquiry waits for a free core for engine 2's reading before it keeps
/// engine 1's.
pub const REFINE_WAIT: Duration = Duration::from_secs(5);
/// How much one operator verdict weighs against one seed example.
const FEEDBACK_WEIGHT: f32 = 3.0;

/// At most this many more updates make a disliked text read as the operator's type.
const DISLIKE_REPEATS: usize = 12;

/// A disliked text is learned again until the operator's type leads with at least this
/// probability (not merely leads), so that a near-identical text is read so too: engine
/// 2's smooth embeddings need the margin more than engine 1's sparse n-grams.
const DISLIKE_CONFIDENCE: f32 = 0.6;

/// Fewest verdicts before a retraining is attempted (below it the held-back slice is too
/// small to tell a better model from a worse one).
pub const MIN_FEEDBACK_TO_RETRAIN: usize = 50;

/// Whether verdict `id` belongs to the held-back slice.
fn held_back(id: Id) -> bool {
    id % 5 == 0
}

/// The seed set's examples: `label<TAB>text` lines, `\n` written as two characters.
fn seed_examples() -> Vec<(String, String)> {
    SEED.lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(label, text)| (label.trim().to_owned(), text.replace("\\n", "\n")))
        .filter(|(l, t)| !l.is_empty() && !t.trim().is_empty())
        .collect()
}

/// The seed set's labels, in first-seen order.
pub(crate) fn seed_labels() -> Vec<String> {
    let mut labels: Vec<String> = Vec::new();
    for (l, _) in seed_examples() {
        if !labels.contains(&l) {
            labels.push(l);
        }
    }
    labels
}

/// Engine 1's model kept beside engine 2's, learning the same verdicts: it reads an
/// inquiry when engine 2 is busy (see [`Consultant::classify_off_thread`]).
struct Standby {
    model: Box<dyn Classifier>,
    /// The last verdict it learned.
    feedback_upto: Id,
}

/// Which of the live models a replay feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Main,
    Standby,
    Both,
}

struct Live {
    /// With engine 2 live: engine 1's model beside it.
    standby: Option<Standby>,
    model: Box<dyn Classifier>,
    /// The engine of `model` (`ngram`, `encoder`).
    engine: &'static str,
    /// `ngram:seed` or `ngram:<stored model id>` (`encoder:…` for engine 2).
    version: String,
    /// The stored model it started from (0: the seed set).
    base_id: Id,
    /// The last verdict it learned.
    feedback_upto: Id,
}

/// What a retraining did.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct RetrainReport {
    /// Whether the candidate replaced the model in use.
    pub swapped: bool,
    /// Why not, when it did not.
    pub reason: Option<String>,
    /// Examples the candidate trained on (seed + verdicts outside the held-back slice).
    pub examples: usize,
    /// Size of the held-back slice.
    pub holdout_size: usize,
    /// The candidate's accuracy on it.
    pub candidate_accuracy: Option<f64>,
    /// The stored model's (or the seed model's) accuracy on it.
    pub previous_accuracy: Option<f64>,
    /// The stored model's id when swapped.
    pub model_id: Option<Id>,
}

/// Which engine classifies and why, for `GET /api/v1/assist/status`.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct EngineStatus {
    /// The engine of the model in use: `ngram` (engine 1) or `encoder` (engine 2).
    pub engine: String,
    /// The model in use (`encoder:12+40`: stored model 12, verdicts up to 40 learned).
    pub model: String,
    /// `[assist] engine`: `auto`, `encoder` or `ngram`.
    pub configured: String,
    /// Engine 2: `ready` (classifying), `training` (its head learns the seed set; engine 1
    /// classifies meanwhile), `off` (switched off, or no model files with `auto`) or
    /// `failed` (its files did not load; engine 1 classifies).
    pub encoder: String,
    /// Why engine 2 is not classifying, when it is not.
    pub note: Option<String>,
    /// Knowledge-base articles on this node.
    pub kb_articles: usize,
    /// Of them, those with an embedding (engine 2 finds them by meaning too; 0 without it).
    pub kb_embedded: usize,
}

/// iConsultant's classifier, shared by the pipeline and the API.
pub struct Consultant {
    store: Arc<dyn Store>,
    /// The engine wanted: engine 2 when it loaded, else engine 1.
    engine: Engine,
    setup: EngineSetup,
    /// One per core: engine 2 readings in progress.
    slots: Arc<tokio::sync::Semaphore>,
    /// Engine 2 readings of stored inquiries waiting or in progress, at most
    /// [`REFINE_BACKLOG`] (see [`Consultant::refine_later`]).
    refines: Arc<tokio::sync::Semaphore>,
    live: Arc<RwLock<Live>>,
    types: RwLock<Vec<RequestType>>,
    retraining: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Consultant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consultant")
            .field("version", &self.version())
            .finish_non_exhaustive()
    }
}

/// A fresh model of `engine` over `labels`, trained on the seed set plus `extra`.
fn train(
    engine: &Engine,
    labels: &[String],
    extra: &[(String, String, f32)],
) -> Result<Box<dyn Classifier>, String> {
    let mut model = engine.fresh(labels)?;
    let seed = seed_examples();
    let mut examples: Vec<Example<'_>> = seed
        .iter()
        .filter(|(l, _)| labels.contains(l))
        .map(|(l, t)| Example::new(t, l))
        .collect();
    examples.extend(
        extra
            .iter()
            .filter(|(l, _, _)| labels.contains(l))
            .map(|(l, t, w)| Example::new(t, l).weighted(*w)),
    );
    if examples.is_empty() {
        return Ok(model);
    }
    model
        .fit(&examples, &FitOptions::default())
        .map_err(|e| e.to_string())?;
    Ok(model)
}

/// The labels a model needs: the request types' keys, then the seed set's.
fn labels_for(types: &[RequestType]) -> Vec<String> {
    let mut labels: Vec<String> = types.iter().map(|t| t.key.clone()).collect();
    for l in seed_labels() {
        if !labels.contains(&l) {
            labels.push(l);
        }
    }
    labels
}

/// Learns verdict `f` into the `target` models of `live` that do not have it yet.
fn learn_into(live: &RwLock<Live>, f: &Feedback, target: Target) {
    let text = head(&f.text, READ_AT_MOST);
    let main = matches!(target, Target::Main | Target::Both);
    let standby = matches!(target, Target::Standby | Target::Both);
    // Engine 2 embeds the text once and caches it: do that under the read lock, so that
    // classification goes on meanwhile, and the write below is quick.
    if let Ok(l) = live.read() {
        if main && f.id > l.feedback_upto {
            let _ = l.model.predict(text);
        }
    }
    let Ok(mut live) = live.write() else {
        return;
    };
    if main && f.id > live.feedback_upto {
        learn_model(live.model.as_mut(), f, text);
        live.feedback_upto = f.id;
    }
    if let Some(s) = live
        .standby
        .as_mut()
        .filter(|s| standby && f.id > s.feedback_upto)
    {
        learn_model(s.model.as_mut(), f, text);
        s.feedback_upto = f.id;
    }
}

/// One verdict into one model.
fn learn_model(model: &mut dyn Classifier, f: &Feedback, text: &str) {
    if let Err(e) = model.add_label(&f.label) {
        tracing::warn!(label = %f.label, error = %e, "cannot add the request type to the classifier");
        return;
    }
    if let Err(e) = model.learn(text, &f.label, FEEDBACK_WEIGHT) {
        tracing::warn!(feedback = f.id, error = %e, "the classifier could not learn a verdict");
    }
    // A dislike is an operator saying "this text is of that type": keep learning it
    // (a bounded number of times) until the model reads it so, so that the next
    // near-identical inquiry is read right. Deterministic, so every node that replays
    // the verdict ends with the same model.
    if f.verdict == Verdict::Dislike {
        for _ in 0..DISLIKE_REPEATS {
            let p = model.predict(text);
            let sure = p.label() == Some(f.label.as_str())
                && p.ranked()
                    .first()
                    .is_some_and(|s| s.probability >= DISLIKE_CONFIDENCE);
            if sure {
                break;
            }
            let _ = model.learn(text, &f.label, FEEDBACK_WEIGHT);
        }
    }
}

/// Accuracy of `model` on `examples` (label, text).
fn accuracy(model: &dyn Classifier, examples: &[(String, String)]) -> Option<f64> {
    if examples.is_empty() {
        return None;
    }
    let right = examples
        .iter()
        .filter(|(l, t)| model.predict(t).label() == Some(l.as_str()))
        .count();
    Some(right as f64 / examples.len() as f64)
}

impl Consultant {
    /// Loads the newest stored model of the engine `setup` allows (or trains one on the
    /// seed set) and replays the verdicts it has not learned. With engine 2 and no stored
    /// model of it, engine 1 classifies until engine 2's seed head is trained (in the
    /// background).
    ///
    /// # Errors
    /// The store failed.
    pub async fn start(store: Arc<dyn Store>, setup: EngineSetup) -> StoreResult<Arc<Self>> {
        let types = store.list_request_types().await?;
        let labels = labels_for(&types);
        let engine = setup.encoder.clone().unwrap_or(Engine::Ngram);
        // Engine 1's model: the newest stored one, else one trained on the seed set. It is
        // the live model with engine 1, the stand-in while engine 2 learns the seed set,
        // and the standby beside engine 2.
        let mut ngram = None;
        if let Some(m) = store.latest_model(NGRAM).await? {
            match Engine::Ngram.decode(&m.model) {
                Ok(model) => ngram = Some((model, m.id, m.feedback_upto)),
                Err(e) => {
                    tracing::warn!(model = m.id, engine = NGRAM, error = %e, "the stored classifier model cannot be read; training one on the seed set");
                }
            }
        }
        let ngram = match ngram {
            Some(n) => n,
            None => (Self::seed_model(&Engine::Ngram, &labels)?, 0, 0),
        };
        let mut encoder_model = None;
        if engine.is_slow() {
            if let Some(m) = store.latest_model(engine.name()).await? {
                match engine.decode(&m.model) {
                    Ok(model) => encoder_model = Some((model, m.id, m.feedback_upto)),
                    Err(e) => {
                        tracing::warn!(model = m.id, engine = engine.name(), error = %e, "the stored classifier model cannot be read; engine 2 learns the seed set again");
                    }
                }
            }
        }
        let bootstrap = engine.is_slow() && encoder_model.is_none();
        let version = |name: &str, id: Id| {
            if id == 0 {
                format!("{name}:seed")
            } else {
                format!("{name}:{id}")
            }
        };
        let (live, main_upto, standby_upto) = match encoder_model {
            Some((model, id, upto)) => (
                Live {
                    standby: Some(Standby {
                        model: ngram.0,
                        feedback_upto: 0,
                    }),
                    model,
                    engine: engine.name(),
                    version: version(engine.name(), id),
                    base_id: id,
                    feedback_upto: 0,
                },
                upto,
                Some(ngram.2),
            ),
            None => (
                Live {
                    standby: None,
                    model: ngram.0,
                    engine: NGRAM,
                    version: version(NGRAM, ngram.1),
                    base_id: ngram.1,
                    feedback_upto: 0,
                },
                ngram.2,
                None,
            ),
        };
        let me = Arc::new(Self {
            store,
            engine,
            setup,
            slots: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            )),
            refines: Arc::new(tokio::sync::Semaphore::new(REFINE_BACKLOG)),
            live: Arc::new(RwLock::new(live)),
            types: RwLock::new(types),
            retraining: tokio::sync::Mutex::new(()),
        });
        // A stored model trained on every verdict up to `upto` except the held-back ones.
        me.replay(|f| f.id > main_upto || held_back(f.id), Target::Main)
            .await?;
        if let Some(upto) = standby_upto {
            me.replay(|f| f.id > upto || held_back(f.id), Target::Standby)
                .await?;
        }
        tracing::info!(version = %me.version(), types = me.types().len(), "iConsultant classifier ready");
        if bootstrap {
            me.spawn_bootstrap(labels);
        }
        Ok(me)
    }

    fn seed_model(engine: &Engine, labels: &[String]) -> StoreResult<Box<dyn Classifier>> {
        train(engine, labels, &[])
            .map_err(|e| StoreError::Corrupt(format!("classifier seed model: {e}")))
    }

    /// Trains engine 2's head on the seed set off the async threads, stores it and makes it
    /// live. Until then engine 1 classifies.
    fn spawn_bootstrap(self: &Arc<Self>, labels: Vec<String>) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            tracing::info!(
                examples = seed_examples().len(),
                "iConsultant's engine 2 is learning the seed set; engine 1 classifies until it is done"
            );
            let started = std::time::Instant::now();
            let engine = me.engine.clone();
            let trained = tokio::task::spawn_blocking(move || train(&engine, &labels, &[]))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r);
            let model = match trained {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(error = %e, "iConsultant's engine 2 could not learn the seed set; engine 1 goes on classifying");
                    return;
                }
            };
            let stored = StoredModel {
                id: 0,
                engine: me.engine.name().into(),
                model: model.to_bytes(),
                feedback_upto: 0,
                examples: i64::try_from(seed_examples().len()).unwrap_or(i64::MAX),
                holdout_size: 0,
                holdout_accuracy: None,
                previous_accuracy: None,
                created_at: Timestamp::now(),
            };
            let saved = match me.store.save_model(&stored).await {
                Ok(id) => StoredModel { id, ..stored },
                Err(e) => {
                    tracing::error!(error = %e, "iConsultant's engine 2 head could not be stored; engine 1 goes on classifying");
                    return;
                }
            };
            match me.adopt(saved).await {
                Ok(()) => tracing::info!(
                    ms = started.elapsed().as_millis(),
                    version = %me.version(),
                    "iConsultant's engine 2 learned the seed set and now classifies"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "iConsultant's engine 2 could not replay the verdicts")
                }
            }
        });
    }

    /// Learns every stored verdict that `wanted` accepts into the `target` models (each
    /// skips what it has).
    async fn replay(
        &self,
        wanted: impl Fn(&Feedback) -> bool,
        target: Target,
    ) -> StoreResult<usize> {
        let mut learned = 0;
        let mut after = 0;
        loop {
            let batch = self.store.feedback_after(after, 1_000).await?;
            let Some(last) = batch.last() else { break };
            after = last.id;
            let batch: Vec<Feedback> = batch.into_iter().filter(|f| wanted(f)).collect();
            learned += batch.len();
            self.learn_batch(batch, target).await;
        }
        Ok(learned)
    }

    /// Learns `batch` in order; engine 2 (milliseconds a text) on a blocking thread.
    async fn learn_batch(&self, batch: Vec<Feedback>, target: Target) {
        if batch.is_empty() {
            return;
        }
        if self.engine.is_slow() {
            let live = Arc::clone(&self.live);
            let _ = tokio::task::spawn_blocking(move || {
                for f in &batch {
                    learn_into(&live, f, target);
                }
            })
            .await;
        } else {
            for f in &batch {
                learn_into(&self.live, f, target);
            }
        }
    }

    /// Which engine classifies and why.
    pub fn status(&self) -> EngineStatus {
        let (engine, model) = self
            .live
            .read()
            .map(|l| {
                (
                    l.engine.to_owned(),
                    format!("{}+{}", l.version, l.feedback_upto),
                )
            })
            .unwrap_or_default();
        let encoder = if self.setup.encoder.is_none() {
            if self.setup.failed {
                "failed"
            } else {
                "off"
            }
        } else if engine == self.engine.name() {
            "ready"
        } else {
            "training"
        };
        let configured = match self.setup.configured {
            crate::config::EngineChoice::Auto => "auto",
            crate::config::EngineChoice::Encoder => "encoder",
            crate::config::EngineChoice::Ngram => "ngram",
        };
        EngineStatus {
            engine,
            model,
            configured: configured.into(),
            encoder: encoder.into(),
            note: match encoder {
                "training" => Some(
                    "engine 2 is learning the seed set; engine 1 classifies until it is done"
                        .into(),
                ),
                _ => self.setup.note.clone(),
            },
            kb_articles: 0,
            kb_embedded: 0,
        }
    }

    /// The live model's version (`ngram:seed`, `ngram:12`) and the last verdict it learned.
    pub fn version(&self) -> String {
        self.live
            .read()
            .map(|l| format!("{}+{}", l.version, l.feedback_upto))
            .unwrap_or_default()
    }

    /// The current request types.
    pub fn types(&self) -> Vec<RequestType> {
        self.types.read().map(|t| t.clone()).unwrap_or_default()
    }

    /// Reloads the request types (after an admin changed them).
    ///
    /// # Errors
    /// The store failed.
    pub async fn reload_types(&self) -> StoreResult<()> {
        let types = self.store.list_request_types().await?;
        if let Ok(mut live) = self.live.write() {
            for t in &types {
                let _ = live.model.add_label(&t.key);
                if let Some(s) = live.standby.as_mut() {
                    let _ = s.model.add_label(&t.key);
                }
            }
        }
        if let Ok(mut cur) = self.types.write() {
            *cur = types;
        }
        Ok(())
    }

    /// [`Consultant::classify`] for async callers (the API). With
    /// engine 1 inline (microseconds). With engine 2 on a blocking thread (milliseconds),
    /// at most one reading per core at a time: an inquiry that finds every core reading
    /// another for longer than [`ENCODER_WAIT`] is read by engine 1's standby model
    /// instead, so a burst of inquiries is never queued behind the encoder.
    pub async fn classify_off_thread(
        self: &Arc<Self>,
        subject: Option<&str>,
        text: Option<&str>,
    ) -> Option<Classification> {
        if !self.engine.is_slow() {
            return self.classify(subject, text);
        }
        let slot = match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(slot) => Some(slot),
            Err(_) => tokio::time::timeout(ENCODER_WAIT, Arc::clone(&self.slots).acquire_owned())
                .await
                .ok()
                .and_then(Result::ok),
        };
        let Some(slot) = slot else {
            metrics::counter!("kommutator_classify_standby_total").increment(1);
            return self.classify_with(subject, text, true);
        };
        // Only the part that is read crosses to the other thread.
        let subject = subject.map(|s| head(s, READ_AT_MOST).to_owned());
        let text = text.map(|t| head(t, READ_AT_MOST).to_owned());
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            me.classify(subject.as_deref(), text.as_deref())
        })
        .await
        .ok()
        .flatten()
    }

    /// Reads an inquiry: every current request type ranked by probability, and the top one
    /// applied when it reaches its threshold. `None` when there is no text or no type.
    pub fn classify(&self, subject: Option<&str>, text: Option<&str>) -> Option<Classification> {
        self.classify_with(subject, text, false)
    }

    /// The pipeline's reading of a new inquiry, never slower than engine 1 (microseconds),
    /// so that classification never holds the message back: with engine 2 live, engine 1's
    /// standby reads it now and the reading is marked
    /// [`provisional`](Classification::provisional); the pipeline then stores the message
    /// and has engine 2 read it ([`Consultant::refine_later`]). With engine 1 live, its
    /// reading is final.
    pub fn classify_at_ingest(
        &self,
        subject: Option<&str>,
        text: Option<&str>,
    ) -> Option<Classification> {
        self.classify_with(subject, text, true)
    }

    /// Has engine 2 read stored inbound message `message_id` (its subject and text) off
    /// the ingest path and put its reading in place of the provisional one
    /// ([`Store::refine_classification`]): the message event is updated, and a new dialog
    /// that nobody has touched since goes to the department of the type engine 2 applies
    /// (`default_department`, the channel's, when that type has none). When
    /// [`REFINE_BACKLOG`] readings are already waiting, or no core frees up within
    /// [`REFINE_WAIT`], engine 1's reading stays.
    pub fn refine_later(
        self: &Arc<Self>,
        message_id: Id,
        subject: Option<String>,
        text: Option<String>,
        default_department: Option<Id>,
    ) {
        let Ok(queued) = Arc::clone(&self.refines).try_acquire_owned() else {
            metrics::counter!("kommutator_classify_refine_skipped_total").increment(1);
            return;
        };
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let _queued = queued;
            let started = std::time::Instant::now();
            let slot = tokio::time::timeout(REFINE_WAIT, Arc::clone(&me.slots).acquire_owned())
                .await
                .ok()
                .and_then(Result::ok);
            let Some(slot) = slot else {
                metrics::counter!("kommutator_classify_refine_skipped_total").increment(1);
                return;
            };
            let subject = subject.map(|s| head(&s, READ_AT_MOST).to_owned());
            let text = text.map(|t| head(&t, READ_AT_MOST).to_owned());
            let reader = Arc::clone(&me);
            let reading = tokio::task::spawn_blocking(move || {
                let _slot = slot;
                reader.classify(subject.as_deref(), text.as_deref())
            })
            .await
            .ok()
            .flatten();
            // Engine 1 may have taken over meanwhile (a stored model of engine 1 adopted):
            // only engine 2's reading replaces the quick one.
            let Some(reading) =
                reading.filter(|c| !c.provisional && c.model.starts_with(me.engine.name()))
            else {
                return;
            };
            let department = reading
                .applied
                .as_deref()
                .and_then(|t| me.department_of(t))
                .or(default_department);
            for attempt in 1..=4u32 {
                match me
                    .store
                    .refine_classification(message_id, &reading, department)
                    .await
                {
                    Ok(_) => break,
                    Err(e) if e.is_transient() && attempt < 4 => {
                        tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
                    }
                    Err(e) => {
                        tracing::warn!(message = message_id, error = %e, "engine 2's reading of a stored inquiry was not saved; engine 1's stays");
                        break;
                    }
                }
            }
            metrics::histogram!("kommutator_classify_refine_seconds")
                .record(started.elapsed().as_secs_f64());
        });
    }

    /// [`Consultant::classify`] by the main model, or by the standby when `standby` is set
    /// and there is one.
    fn classify_with(
        &self,
        subject: Option<&str>,
        text: Option<&str>,
        standby: bool,
    ) -> Option<Classification> {
        let text = classifiable_text(subject, text)?;
        let types = self.types();
        if types.is_empty() {
            return None;
        }
        let live = self.live.read().ok()?;
        let (model, version, provisional) = match live.standby.as_ref().filter(|_| standby) {
            Some(s) => (
                s.model.as_ref(),
                format!("{NGRAM}:standby+{}", s.feedback_upto),
                true,
            ),
            None => (
                live.model.as_ref(),
                format!("{}+{}", live.version, live.feedback_upto),
                false,
            ),
        };
        let prediction = model.predict(head(&text, READ_AT_MOST));
        // Only the current types, renormalized (a deleted type's label stays in the model).
        let mut ranked: Vec<TypeScore> = prediction
            .ranked()
            .iter()
            .filter(|s| types.iter().any(|t| t.key == s.label))
            .map(|s| TypeScore {
                request_type: s.label.clone(),
                p: f64::from(s.probability),
            })
            .collect();
        let total: f64 = ranked.iter().map(|s| s.p).sum();
        if total > 0.0 {
            for s in &mut ranked {
                s.p = (s.p / total * 1000.0).round() / 1000.0;
            }
        }
        let applied = match (prediction.signal(), ranked.first()) {
            (Signal::Features, Some(top)) => types
                .iter()
                .find(|t| t.key == top.request_type)
                .filter(|t| top.p >= t.auto_threshold)
                .map(|t| t.key.clone()),
            _ => None,
        };
        Some(Classification {
            model: version,
            ranked,
            applied,
            provisional,
        })
    }

    /// The department an inquiry of type `key` goes to, when the type has one.
    pub fn department_of(&self, key: &str) -> Option<Id> {
        self.types
            .read()
            .ok()?
            .iter()
            .find(|t| t.key == key)
            .and_then(|t| t.department_id)
    }

    /// Stores an operator's verdict and learns it at once.
    ///
    /// # Errors
    /// Bad input (unknown type, a `like` naming another type than the top one), no access,
    /// or the store failed.
    pub async fn feedback(
        &self,
        actor: &Actor,
        message_id: Id,
        input: &FeedbackInput,
    ) -> StoreResult<(Feedback, Dialog, Option<Classification>)> {
        if input.verdict == Verdict::Dislike && input.request_type.is_none() {
            return Err(FieldError::new(
                "request_type",
                "required",
                "a dislike names the right request type",
            )
            .into());
        }
        let (fb, dialog, message) = self
            .store
            .save_feedback(
                actor,
                message_id,
                input.verdict,
                input.request_type.as_deref(),
            )
            .await?;
        if self.engine.is_slow() {
            let live = Arc::clone(&self.live);
            let one = fb.clone();
            let _ =
                tokio::task::spawn_blocking(move || learn_into(&live, &one, Target::Both)).await;
        } else {
            learn_into(&self.live, &fb, Target::Both);
        }
        // With engine 2 the text was embedded by the learning just now: a cache hit.
        let again = self.classify(message.subject.as_deref(), message.body.as_deref());
        Ok((fb, dialog, again))
    }

    /// Picks up what other nodes changed: request types, verdicts, a newer stored model.
    ///
    /// # Errors
    /// The store failed.
    pub async fn sync(&self) -> StoreResult<()> {
        self.reload_types().await?;
        let (base, live_engine) = self
            .live
            .read()
            .map(|l| (l.base_id, l.engine))
            .unwrap_or((0, NGRAM));
        if let Some(m) = self.store.latest_model(self.engine.name()).await? {
            // Newer, or the first of the wanted engine (engine 1 was standing in).
            if m.id > base || live_engine != self.engine.name() {
                self.adopt(m).await?;
                return Ok(());
            }
        }
        let upto = self.live.read().map(|l| l.feedback_upto).unwrap_or(0);
        let batch = self.store.feedback_after(upto, 1_000).await?;
        self.learn_batch(batch, Target::Both).await;
        Ok(())
    }

    /// Makes stored model `m` live and replays the verdicts it lacks.
    async fn adopt(&self, m: StoredModel) -> StoreResult<()> {
        let model = match self.engine.decode(&m.model) {
            Ok(model) => model,
            Err(e) => {
                tracing::warn!(model = m.id, error = %e, "a stored classifier model cannot be read; keeping the live one");
                return Ok(());
            }
        };
        if let Ok(mut live) = self.live.write() {
            let old = std::mem::replace(
                &mut *live,
                Live {
                    standby: None,
                    model,
                    engine: self.engine.name(),
                    version: format!("{}:{}", self.engine.name(), m.id),
                    base_id: m.id,
                    feedback_upto: 0,
                },
            );
            // Engine 2 keeps engine 1's model beside it: the one standing in until now, or
            // the standby it had.
            if self.engine.is_slow() {
                live.standby = if old.engine == NGRAM {
                    Some(Standby {
                        model: old.model,
                        feedback_upto: old.feedback_upto,
                    })
                } else {
                    old.standby
                };
            }
        }
        let upto = m.feedback_upto;
        self.replay(|f| f.id > upto || held_back(f.id), Target::Main)
            .await?;
        for t in self.types() {
            if let Ok(mut live) = self.live.write() {
                let _ = live.model.add_label(&t.key);
                if let Some(s) = live.standby.as_mut() {
                    let _ = s.model.add_label(&t.key);
                }
            }
        }
        Ok(())
    }

    /// Retrains on the seed set and every verdict outside the held-back slice; stores the
    /// candidate and makes it live only if it is not worse than the stored model (or the
    /// seed model) on the held-back slice.
    ///
    /// # Errors
    /// The store failed.
    pub async fn retrain(&self) -> StoreResult<RetrainReport> {
        let _one = self.retraining.lock().await;
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let batch = self.store.feedback_after(after, 10_000).await?;
            let Some(last) = batch.last() else { break };
            after = last.id;
            all.extend(batch);
        }
        let upto = after;
        let (holdout, train_part): (Vec<&Feedback>, Vec<&Feedback>) =
            all.iter().partition(|f| held_back(f.id));
        let holdout: Vec<(String, String)> = holdout
            .iter()
            .map(|f| (f.label.clone(), head(&f.text, READ_AT_MOST).to_owned()))
            .collect();
        let examples = seed_examples().len() + train_part.len();
        let mut report = RetrainReport {
            swapped: false,
            reason: None,
            examples,
            holdout_size: holdout.len(),
            candidate_accuracy: None,
            previous_accuracy: None,
            model_id: None,
        };
        if all.len() < MIN_FEEDBACK_TO_RETRAIN {
            report.reason = Some(format!(
                "{} verdicts so far; retraining waits for {MIN_FEEDBACK_TO_RETRAIN}",
                all.len()
            ));
            return Ok(report);
        }
        let types = self.types();
        let mut labels = labels_for(&types);
        for f in &all {
            if !labels.contains(&f.label) {
                labels.push(f.label.clone());
            }
        }
        let extra: Vec<(String, String, f32)> = train_part
            .iter()
            .map(|f| {
                (
                    f.label.clone(),
                    head(&f.text, READ_AT_MOST).to_owned(),
                    FEEDBACK_WEIGHT,
                )
            })
            .collect();
        // Training and measuring take a while on a big history (engine 2 embeds every
        // text): off the async threads.
        let (candidate, candidate_accuracy, previous_accuracy) = {
            let stored = self.store.latest_model(self.engine.name()).await?;
            let labels2 = labels.clone();
            let engine = self.engine.clone();
            tokio::task::spawn_blocking(move || {
                let candidate = train(&engine, &labels2, &extra);
                let previous: Option<Box<dyn Classifier>> = match stored {
                    Some(m) => engine.decode(&m.model).ok(),
                    None => train(&engine, &labels2, &[]).ok(),
                };
                let c = candidate
                    .as_ref()
                    .ok()
                    .and_then(|c| accuracy(c.as_ref(), &holdout));
                let p = previous.as_deref().and_then(|p| accuracy(p, &holdout));
                (candidate, c, p)
            })
            .await
            .map_err(|e| StoreError::Corrupt(format!("retraining stopped: {e}")))?
        };
        let candidate =
            candidate.map_err(|e| StoreError::Corrupt(format!("retraining failed: {e}")))?;
        report.candidate_accuracy = candidate_accuracy;
        report.previous_accuracy = previous_accuracy;
        if let (Some(c), Some(p)) = (report.candidate_accuracy, report.previous_accuracy) {
            if c < p {
                report.reason = Some(format!(
                    "the candidate is worse on the held-back verdicts ({c:.3} < {p:.3}); the model in use stays"
                ));
                tracing::info!(
                    candidate = c,
                    previous = p,
                    "classifier retraining rejected"
                );
                return Ok(report);
            }
        }
        let stored = StoredModel {
            id: 0,
            engine: self.engine.name().into(),
            model: candidate.to_bytes(),
            feedback_upto: upto,
            examples: i64::try_from(examples).unwrap_or(i64::MAX),
            holdout_size: i64::try_from(report.holdout_size).unwrap_or(i64::MAX),
            holdout_accuracy: report.candidate_accuracy,
            previous_accuracy: report.previous_accuracy,
            created_at: Timestamp::now(),
        };
        let id = self.store.save_model(&stored).await?;
        let mut saved = stored;
        saved.id = id;
        self.adopt(saved).await?;
        report.swapped = true;
        report.model_id = Some(id);
        tracing::info!(model = id, candidate = ?report.candidate_accuracy, previous = ?report.previous_accuracy, "classifier retrained and swapped in");
        Ok(report)
    }

    /// Keeps this node's classifier in step with the others until `shutdown`, and every
    /// `retrain_every` retrains it on the node that takes the lease `assist:retrain` (one
    /// node per period; the others adopt the stored model at their next sync).
    pub fn spawn_sync(
        self: &Arc<Self>,
        node_id: String,
        retrain_every: Duration,
        shutdown: CancellationToken,
    ) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut last_retrain = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(SYNC_EVERY) => {}
                }
                if let Err(e) = me.sync().await {
                    tracing::warn!(error = %e, "iConsultant could not sync with the store");
                }
                if retrain_every.is_zero() || last_retrain.elapsed() < retrain_every {
                    continue;
                }
                last_retrain = tokio::time::Instant::now();
                let until = crate::pipeline::outbound::lease_until(retrain_every / 2);
                match me.store.try_lease("assist:retrain", &node_id, until).await {
                    Ok(true) => match me.retrain().await {
                        Ok(r) => {
                            tracing::info!(swapped = r.swapped, reason = ?r.reason, "scheduled classifier retraining")
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "scheduled classifier retraining failed")
                        }
                    },
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot take the retraining lease"),
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_of_a_text_ends_on_a_char_boundary() {
        let ru = "привет".repeat(2_000);
        for max in [0, 1, 7, 8 * 1024, 8 * 1024 + 1] {
            let h = head(&ru, max);
            assert!(h.len() <= max);
            assert!(ru.starts_with(h));
        }
        assert_eq!(head("short", READ_AT_MOST), "short");
    }

    #[test]
    fn the_seed_set_is_embedded_whole() {
        let seed = seed_examples();
        assert!(seed.len() >= 600, "{}", seed.len());
        for label in ["interest", "claim", "bug", "other"] {
            assert!(
                seed.iter().filter(|(l, _)| l == label).count() >= 150,
                "{label}"
            );
        }
        assert!(seed.iter().all(|(_, t)| !t.contains("\\n")));
    }

    #[test]
    fn the_held_back_slice_is_every_fifth_verdict() {
        assert_eq!((1..=20).filter(|&i| held_back(i)).count(), 4);
    }
}
