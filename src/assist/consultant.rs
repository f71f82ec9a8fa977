//! iConsultant's classifier in the hub.
//!
//! ```text
//! start: newest stored model (else one trained on the seed set) + replay of the feedback
//!        it has not seen ──► live model (RwLock)
//! pipeline: subject + text ──► predict ──► ranked over the current request types;
//!           top ≥ its type's threshold ──► applied (routing to the type's department)
//! verdict (like / dislike + right type) ──► stored ──► learned at once (this node);
//!           other nodes learn it from the store within `SYNC_EVERY`
//! retrain: seed + feedback outside the held-back slice ──► candidate; stored and swapped
//!          in only if it is not worse than the stored model on the held-back slice
//! ```
//!
//! The held-back slice is every fifth verdict (by id): stored models never train on it, so
//! it measures them fairly; the live model still learns it online, because the operator who
//! gave the verdict expects the next similar inquiry to be read right.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use kommutator_textclass::{Classifier, Example, FitOptions, NgramConfig, NgramModel, Signal};
use tokio_util::sync::CancellationToken;

use crate::domain::*;
use crate::storage::{Store, StoreError, StoreResult};

/// The seed training set (written for this project; `textclass/seed/README.md`).
const SEED: &str = include_str!("../../textclass/seed/train.tsv");

/// The engine name models are stored under.
const ENGINE: &str = "ngram";

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

/// How much one operator verdict weighs against one seed example.
const FEEDBACK_WEIGHT: f32 = 3.0;

/// At most this many more updates make a disliked text read as the operator's type.
const DISLIKE_REPEATS: usize = 8;

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

struct Live {
    model: Box<dyn Classifier>,
    /// `ngram:seed` or `ngram:<stored model id>`, plus how many verdicts it learned since.
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

/// iConsultant's classifier, shared by the pipeline and the API.
pub struct Consultant {
    store: Arc<dyn Store>,
    live: RwLock<Live>,
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

/// A fresh model over `labels`, trained on the seed set plus `extra`.
fn train(
    labels: &[String],
    extra: &[(String, String, f32)],
) -> Result<Box<dyn Classifier>, String> {
    let mut model = NgramModel::new(NgramConfig::default(), labels).map_err(|e| e.to_string())?;
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
        return Ok(Box::new(model));
    }
    model
        .fit(&examples, &FitOptions::default())
        .map_err(|e| e.to_string())?;
    Ok(Box::new(model))
}

/// The labels a model needs: the request types' keys, then the seed set's.
fn labels_for(types: &[RequestType]) -> Vec<String> {
    let mut labels: Vec<String> = types.iter().map(|t| t.key.clone()).collect();
    for (l, _) in seed_examples() {
        if !labels.contains(&l) {
            labels.push(l);
        }
    }
    labels
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
    /// Loads the newest stored model (or trains one on the seed set) and replays the
    /// verdicts it has not learned.
    ///
    /// # Errors
    /// The store failed.
    pub async fn start(store: Arc<dyn Store>) -> StoreResult<Arc<Self>> {
        let types = store.list_request_types().await?;
        let labels = labels_for(&types);
        let stored = store.latest_model(ENGINE).await?;
        let (model, version, base_id, upto) = match stored {
            Some(m) => match NgramModel::from_bytes(&m.model) {
                Ok(model) => (
                    Box::new(model) as Box<dyn Classifier>,
                    format!("{ENGINE}:{}", m.id),
                    m.id,
                    m.feedback_upto,
                ),
                Err(e) => {
                    tracing::warn!(model = m.id, error = %e, "the stored classifier model cannot be read; training one on the seed set");
                    (Self::seed_model(&labels)?, format!("{ENGINE}:seed"), 0, 0)
                }
            },
            None => (Self::seed_model(&labels)?, format!("{ENGINE}:seed"), 0, 0),
        };
        let me = Arc::new(Self {
            store,
            live: RwLock::new(Live {
                model,
                version,
                base_id,
                feedback_upto: 0,
            }),
            types: RwLock::new(types),
            retraining: tokio::sync::Mutex::new(()),
        });
        // A stored model trained on every verdict up to `upto` except the held-back ones.
        me.replay(|f| f.id > upto || held_back(f.id)).await?;
        tracing::info!(version = %me.version(), types = me.types().len(), "iConsultant classifier ready (engine 1: hashed n-grams; no sentence encoder configured)");
        Ok(me)
    }

    fn seed_model(labels: &[String]) -> StoreResult<Box<dyn Classifier>> {
        train(labels, &[]).map_err(|e| StoreError::Corrupt(format!("classifier seed model: {e}")))
    }

    /// Learns every stored verdict after the live model's last one that `wanted` accepts.
    async fn replay(&self, wanted: impl Fn(&Feedback) -> bool) -> StoreResult<usize> {
        let mut learned = 0;
        let mut after = 0;
        loop {
            let batch = self.store.feedback_after(after, 1_000).await?;
            let Some(last) = batch.last() else { break };
            after = last.id;
            for f in batch.iter().filter(|f| wanted(f)) {
                self.learn_one(f);
                learned += 1;
            }
        }
        Ok(learned)
    }

    fn learn_one(&self, f: &Feedback) {
        let Ok(mut live) = self.live.write() else {
            return;
        };
        if f.id <= live.feedback_upto {
            return;
        }
        if let Err(e) = live.model.add_label(&f.label) {
            tracing::warn!(label = %f.label, error = %e, "cannot add the request type to the classifier");
            return;
        }
        let text = head(&f.text, READ_AT_MOST);
        if let Err(e) = live.model.learn(text, &f.label, FEEDBACK_WEIGHT) {
            tracing::warn!(feedback = f.id, error = %e, "the classifier could not learn a verdict");
        }
        // A dislike is an operator saying "this text is of that type": keep learning it
        // (a bounded number of times) until the model reads it so, so that the next
        // near-identical inquiry is read right. Deterministic, so every node that replays
        // the verdict ends with the same model.
        if f.verdict == Verdict::Dislike {
            for _ in 0..DISLIKE_REPEATS {
                if live.model.predict(text).label() == Some(f.label.as_str()) {
                    break;
                }
                let _ = live.model.learn(text, &f.label, FEEDBACK_WEIGHT);
            }
        }
        live.feedback_upto = f.id;
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
            }
        }
        if let Ok(mut cur) = self.types.write() {
            *cur = types;
        }
        Ok(())
    }

    /// Reads an inquiry: every current request type ranked by probability, and the top one
    /// applied when it reaches its threshold. `None` when there is no text or no type.
    pub fn classify(&self, subject: Option<&str>, text: Option<&str>) -> Option<Classification> {
        let text = classifiable_text(subject, text)?;
        let types = self.types();
        if types.is_empty() {
            return None;
        }
        let live = self.live.read().ok()?;
        let prediction = live.model.predict(head(&text, READ_AT_MOST));
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
            model: format!("{}+{}", live.version, live.feedback_upto),
            ranked,
            applied,
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
        self.learn_one(&fb);
        let again = self.classify(message.subject.as_deref(), message.body.as_deref());
        Ok((fb, dialog, again))
    }

    /// Picks up what other nodes changed: request types, verdicts, a newer stored model.
    ///
    /// # Errors
    /// The store failed.
    pub async fn sync(&self) -> StoreResult<()> {
        self.reload_types().await?;
        let base = self.live.read().map(|l| l.base_id).unwrap_or(0);
        if let Some(m) = self.store.latest_model(ENGINE).await? {
            if m.id > base {
                self.adopt(m).await?;
                return Ok(());
            }
        }
        let upto = self.live.read().map(|l| l.feedback_upto).unwrap_or(0);
        for f in self.store.feedback_after(upto, 1_000).await? {
            self.learn_one(&f);
        }
        Ok(())
    }

    /// Makes stored model `m` live and replays the verdicts it lacks.
    async fn adopt(&self, m: StoredModel) -> StoreResult<()> {
        let model = match NgramModel::from_bytes(&m.model) {
            Ok(model) => model,
            Err(e) => {
                tracing::warn!(model = m.id, error = %e, "a stored classifier model cannot be read; keeping the live one");
                return Ok(());
            }
        };
        if let Ok(mut live) = self.live.write() {
            *live = Live {
                model: Box::new(model),
                version: format!("{ENGINE}:{}", m.id),
                base_id: m.id,
                feedback_upto: 0,
            };
        }
        let upto = m.feedback_upto;
        self.replay(|f| f.id > upto || held_back(f.id)).await?;
        for t in self.types() {
            if let Ok(mut live) = self.live.write() {
                let _ = live.model.add_label(&t.key);
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
        // Training takes a while on a big history: off the async threads.
        let (candidate, previous) = {
            let stored = self.store.latest_model(ENGINE).await?;
            let labels2 = labels.clone();
            tokio::task::spawn_blocking(move || {
                let candidate = train(&labels2, &extra);
                let previous: Option<Box<dyn Classifier>> = match stored {
                    Some(m) => NgramModel::from_bytes(&m.model)
                        .ok()
                        .map(|m| Box::new(m) as Box<dyn Classifier>),
                    None => train(&labels2, &[]).ok(),
                };
                (candidate, previous)
            })
            .await
            .map_err(|e| StoreError::Corrupt(format!("retraining stopped: {e}")))?
        };
        let candidate =
            candidate.map_err(|e| StoreError::Corrupt(format!("retraining failed: {e}")))?;
        report.candidate_accuracy = accuracy(candidate.as_ref(), &holdout);
        report.previous_accuracy = previous.as_deref().and_then(|p| accuracy(p, &holdout));
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
            engine: ENGINE.into(),
            model: candidate.to_bytes(),
            feedback_upto: upto,
            examples: i64::try_from(examples).unwrap_or(i64::MAX),
            holdout_size: i64::try_from(holdout.len()).unwrap_or(i64::MAX),
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
