//! iConsultant's knowledge base at work: every node keeps all articles in an in-memory
//! full-text index ([`kommutator_kb::KbIndex`]), rebuilt from the database at start and kept
//! in step by following the hub's events (`kb_article` changes, from this node or, through
//! the bus, from others). While a console on this node has a dialog open, an inbound message
//! in it makes the node work out the best answers again (debounced) and push them to that
//! dialog's followers as an ephemeral `kb_suggestions` event.
//!
//! Ranking: BM25 over Russian- and English-stemmed title, body and tags (the `kb` crate;
//! Latin words are also read as transliterated Russian). With iConsultant's engine 2
//! loaded, each article also has a sentence embedding (title and body, as a `passage:`),
//! the question is embedded as a `query:`, and the articles at least [`MIN_SIMILARITY`]
//! close are fused with the keyword hits by score ([`kommutator_kb::hybrid`], keyword
//! weight [`kommutator_kb::HYBRID_KEYWORD_WEIGHT`]): a question in English finds the
//! Russian article. Embeddings are made in the background at start (keywords alone serve
//! until an article has one) and on every change of an article's text.
//!
//! Then each score is multiplied by `1 + USE_BOOST * ln(1 + uses)`, where `uses` counts the
//! times operators put the article into a reply from the suggestions: of two articles about
//! equally relevant, the one operators pick wins, but usage never lifts an article that does
//! not match the question.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use kommutator_encoder::{Encoder, Kind};
use kommutator_kb::{KbDoc, KbFilter, KbIndex};
use tokio_util::sync::CancellationToken;

use crate::domain::*;
use crate::hub::event::{Event, Owner};
use crate::hub::Hub;
use crate::storage::{Store, StoreError, StoreResult};

/// How much each use lifts an article's score (see the module docs).
pub const USE_BOOST: f32 = 0.15;
/// How long after an inbound message the suggestions are worked out: messages that arrive
/// meanwhile are answered together.
pub const SUGGEST_DEBOUNCE: Duration = Duration::from_millis(250);
/// How many of the dialog's latest inbound messages make the question.
const QUESTION_MESSAGES: i64 = 3;
/// How much of them (bytes).
const QUESTION_MAX: usize = 8 * 1024;
/// How many hits the index is asked for before the usage boost reorders them.
const CANDIDATES: usize = 50;
/// The least cosine similarity (e5 embeddings) at which an article is a candidate by
/// meaning alone; below it only a keyword match brings it. Chosen on `kb/eval` (see
/// `docs/iconsultant.md`): questions and their articles score above it, off-topic
/// questions against every article below.
pub const MIN_SIMILARITY: f32 = 0.80;
/// Articles embedded per blocking task at start-up.
const EMBED_CHUNK: usize = 16;

/// An article's embedding with the text it was made from.
type Embedded = (Arc<str>, Arc<[f32]>);

/// Engine 2's part of the knowledge base.
struct Vectors {
    encoder: Arc<Encoder>,
    /// Each article's embedding with the text it was made from, by id.
    by_id: RwLock<HashMap<Id, Embedded>>,
}

/// The text an article is embedded from: its title and plain body.
fn passage_of(a: &KbArticle) -> String {
    format!("{}\n{}", a.title, kb_plain_text(&a.body))
}

/// The knowledge base of this node.
pub struct Knowledge {
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    index: KbIndex,
    /// With engine 2: the embeddings.
    vectors: Option<Vectors>,
    /// Every article by id, as last read from the store.
    articles: RwLock<HashMap<Id, Arc<KbArticle>>>,
    /// Dialogs whose suggestions are about to be worked out.
    pending: Mutex<HashSet<Id>>,
}

impl std::fmt::Debug for Knowledge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Knowledge")
            .field("articles", &self.index.len())
            .field("vectors", &self.vectors.is_some())
            .finish_non_exhaustive()
    }
}

fn doc_of(a: &KbArticle) -> KbDoc {
    KbDoc {
        id: a.id,
        title: a.title.clone(),
        body: kb_plain_text(&a.body),
        tags: a.tags.clone(),
        language: a.language.clone(),
        department_id: a.department_id,
        public: a.public,
    }
}

fn index_error(e: &kommutator_kb::KbError) -> StoreError {
    StoreError::Corrupt(format!("knowledge base index: {e}"))
}

impl Knowledge {
    /// Reads every article, indexes them and starts following the hub.
    ///
    /// # Errors
    /// The store cannot list the articles or the index cannot be built.
    pub async fn start(
        store: Arc<dyn Store>,
        hub: Arc<Hub>,
        shutdown: CancellationToken,
        encoder: Option<Arc<Encoder>>,
    ) -> StoreResult<Arc<Self>> {
        // Position first, then the snapshot: a change committed in between is applied
        // twice, which is harmless; none is missed.
        let pos = hub.head();
        let index = KbIndex::new().map_err(|e| index_error(&e))?;
        let all = store.list_kb_articles().await?;
        let k = Arc::new(Self {
            store,
            hub,
            index,
            vectors: encoder.map(|encoder| Vectors {
                encoder,
                by_id: RwLock::new(HashMap::new()),
            }),
            articles: RwLock::new(HashMap::new()),
            pending: Mutex::new(HashSet::new()),
        });
        let n = all.len();
        k.replace_all(all).await?;
        tracing::info!(
            articles = n,
            vectors = k.vectors.is_some(),
            "knowledge base indexed"
        );
        if k.vectors.is_some() {
            tokio::spawn(k.clone().embed_all());
        }
        tokio::spawn(k.clone().follow(pos, shutdown));
        Ok(k)
    }

    /// How many articles are indexed.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// How many articles have an embedding (0 without engine 2).
    pub fn embedded(&self) -> usize {
        self.vectors
            .as_ref()
            .and_then(|v| v.by_id.read().ok().map(|m| m.len()))
            .unwrap_or(0)
    }

    /// Embeds every article that has no embedding of its current text, a chunk per
    /// blocking task so that changes and searches go on meanwhile.
    async fn embed_all(self: Arc<Self>) {
        let started = std::time::Instant::now();
        let todo: Vec<(Id, String)> = match self.articles.read() {
            Ok(m) => m.values().map(|a| (a.id, passage_of(a))).collect(),
            Err(_) => return,
        };
        for chunk in todo.chunks(EMBED_CHUNK) {
            let chunk = chunk.to_vec();
            let this = self.clone();
            let done = tokio::task::spawn_blocking(move || this.embed_passages(chunk)).await;
            if done.is_err() {
                tracing::warn!("knowledge base embedding stopped");
                return;
            }
        }
        tracing::info!(
            articles = self.embedded(),
            ms = started.elapsed().as_millis(),
            "knowledge base articles embedded (engine 2)"
        );
    }

    /// Embeds `(id, passage)` pairs and keeps each vector, unless the article changed or
    /// went meanwhile (its newer text is embedded by the refresh that saw the change).
    /// Blocking: milliseconds per article.
    fn embed_passages(&self, items: Vec<(Id, String)>) {
        let Some(v) = &self.vectors else { return };
        let fresh: Vec<&(Id, String)> = match v.by_id.read() {
            Ok(m) => items
                .iter()
                .filter(|(id, text)| m.get(id).is_none_or(|(t, _)| **t != **text))
                .collect(),
            Err(_) => return,
        };
        if fresh.is_empty() {
            return;
        }
        let texts: Vec<&str> = fresh.iter().map(|(_, t)| t.as_str()).collect();
        let vectors = v.encoder.embed_batch(&texts, Kind::Passage);
        let current = self.articles.read().ok();
        let Ok(mut m) = v.by_id.write() else { return };
        for ((id, text), vector) in fresh.into_iter().zip(vectors) {
            let still = current
                .as_ref()
                .and_then(|c| c.get(id))
                .is_some_and(|a| passage_of(a) == *text);
            if still && vector.iter().any(|x| *x != 0.0) {
                m.insert(*id, (Arc::from(text.as_str()), Arc::from(vector)));
            }
        }
    }

    /// Whether the knowledge base is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    async fn replace_all(self: &Arc<Self>, all: Vec<KbArticle>) -> StoreResult<()> {
        let docs: Vec<KbDoc> = all.iter().map(doc_of).collect();
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.index.replace_all(&docs))
            .await
            .map_err(|e| StoreError::Corrupt(format!("indexing stopped: {e}")))?
            .map_err(|e| index_error(&e))?;
        if let Ok(mut m) = self.articles.write() {
            *m = all.into_iter().map(|a| (a.id, Arc::new(a))).collect();
        }
        Ok(())
    }

    /// Brings the index in step with the store for these article ids: re-reads them, indexes
    /// those that exist and drops the others.
    ///
    /// # Errors
    /// The store or the index failed; the caller retries.
    pub async fn refresh(self: &Arc<Self>, ids: &[Id]) -> StoreResult<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let found = self.store.get_kb_articles(ids).await?;
        let present: HashSet<Id> = found.iter().map(|a| a.id).collect();
        let gone: Vec<Id> = ids
            .iter()
            .copied()
            .filter(|id| !present.contains(id))
            .collect();
        // Only what the index sees changed (a use changes the count alone).
        let stale: Vec<KbDoc> = {
            let m = self.articles.read().map_err(|_| poisoned())?;
            found
                .iter()
                .filter(|a| m.get(&a.id).is_none_or(|old| doc_of(old) != doc_of(a)))
                .map(doc_of)
                .collect()
        };
        let this = self.clone();
        let gone_ids = gone.clone();
        tokio::task::spawn_blocking(move || -> Result<(), kommutator_kb::KbError> {
            this.index.upsert_many(&stale)?;
            for id in gone_ids {
                this.index.delete(id)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("indexing stopped: {e}")))?
        .map_err(|e| index_error(&e))?;
        let mut to_embed = Vec::new();
        {
            let mut m = self.articles.write().map_err(|_| poisoned())?;
            for a in found {
                if self.vectors.is_some() {
                    to_embed.push((a.id, passage_of(&a)));
                }
                m.insert(a.id, Arc::new(a));
            }
            for id in &gone {
                m.remove(id);
            }
        }
        if let Some(v) = &self.vectors {
            if let Ok(mut m) = v.by_id.write() {
                for id in &gone {
                    m.remove(id);
                }
            }
            // Unchanged texts are skipped inside (a use changes only the count).
            let this = self.clone();
            tokio::task::spawn_blocking(move || this.embed_passages(to_embed))
                .await
                .map_err(|e| StoreError::Corrupt(format!("embedding stopped: {e}")))?;
        }
        Ok(())
    }

    /// The best `limit` articles for free text `q` under `filter`, with their scores.
    ///
    /// # Errors
    /// The index failed.
    pub async fn search(
        self: &Arc<Self>,
        q: &str,
        filter: KbFilter,
        limit: usize,
    ) -> StoreResult<Vec<(Arc<KbArticle>, f32)>> {
        let this = self.clone();
        let q = q.to_owned();
        let want = limit.max(1).saturating_mul(4).max(CANDIDATES);
        // One blocking task: the keyword search (microseconds) and, with engine 2, the
        // question's embedding (milliseconds) and the nearest articles.
        let scored = tokio::task::spawn_blocking(
            move || -> Result<Vec<(Id, f32)>, kommutator_kb::KbError> {
                let hits = this.index.search(&q, &filter, want)?;
                let keyword: Vec<(Id, f32)> = hits.iter().map(|h| (h.id, h.score)).collect();
                match this.nearest(&q, &filter, want) {
                    Some(near) => Ok(kommutator_kb::hybrid(
                        &keyword,
                        &near,
                        kommutator_kb::HYBRID_KEYWORD_WEIGHT,
                    )),
                    None => Ok(keyword),
                }
            },
        )
        .await
        .map_err(|e| StoreError::Corrupt(format!("search stopped: {e}")))?
        .map_err(|e| index_error(&e))?;
        let m = self.articles.read().map_err(|_| poisoned())?;
        let mut out: Vec<(Arc<KbArticle>, f32)> = scored
            .iter()
            .filter_map(|(id, score)| {
                m.get(id)
                    .map(|a| (a.clone(), boosted(*score, a.used_count)))
            })
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.id.cmp(&b.0.id)));
        out.truncate(limit);
        Ok(out)
    }

    /// With engine 2: the `n` articles under `filter` most similar in meaning to `q`, at
    /// least [`MIN_SIMILARITY`] close, as (id, cosine), best first. `None` without engine 2
    /// or embeddings. Blocking: embeds `q`.
    fn nearest(&self, q: &str, filter: &KbFilter, n: usize) -> Option<Vec<(Id, f32)>> {
        let v = self.vectors.as_ref()?;
        if v.by_id.read().ok()?.is_empty() {
            return None;
        }
        let query = v.encoder.embed(q, Kind::Query);
        if query.iter().all(|x| *x == 0.0) {
            return Some(Vec::new());
        }
        // Lock order everywhere: the articles, then the vectors.
        let articles = self.articles.read().ok()?;
        let vectors = v.by_id.read().ok()?;
        let mut near: Vec<(Id, f32)> = vectors
            .iter()
            .filter(|(id, _)| {
                articles
                    .get(id)
                    .is_some_and(|a| filter.admits(a.department_id, a.public, &a.language))
            })
            .map(|(id, (_, e))| (*id, kommutator_encoder::cosine(&query, e)))
            .filter(|(_, s)| *s >= MIN_SIMILARITY)
            .collect();
        near.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        near.truncate(n);
        Some(near)
    }

    /// The suggestions for a dialog: the best articles for its latest inbound messages,
    /// among its department's and everyone's. Two rankings are fused by reciprocal rank:
    /// one for the newest message alone and one for the last few together, so the
    /// customer's latest question leads and the earlier ones still count.
    ///
    /// # Errors
    /// The store or the index failed.
    pub async fn suggestions_for(self: &Arc<Self>, d: &Dialog) -> StoreResult<Vec<KbSuggestion>> {
        let question = self.question_of(d.id).await?;
        let Some(newest) = question.first() else {
            return Ok(Vec::new());
        };
        let filter = KbFilter {
            department_ids: d.department_id.map(|dep| vec![dep]),
            ..KbFilter::default()
        };
        let mut lists = vec![self.search(newest, filter.clone(), CANDIDATES).await?];
        if question.len() > 1 {
            let mut all = question.join("\n");
            cut_at(&mut all, QUESTION_MAX);
            lists.push(self.search(&all, filter, CANDIDATES).await?);
        }
        let articles: HashMap<Id, Arc<KbArticle>> = lists
            .iter()
            .flatten()
            .map(|(a, _)| (a.id, a.clone()))
            .collect();
        let ids: Vec<Vec<Id>> = lists
            .iter()
            .map(|l| l.iter().map(|(a, _)| a.id).collect())
            .collect();
        Ok(kommutator_kb::rrf(&ids, kommutator_kb::RRF_K)
            .into_iter()
            .take(SUGGESTIONS)
            .filter_map(|(id, score)| articles.get(&id).map(|a| KbSuggestion::of(a, score)))
            .collect())
    }

    /// The texts of the dialog's latest inbound messages, newest first.
    async fn question_of(&self, dialog_id: Id) -> StoreResult<Vec<String>> {
        let page = self
            .store
            .list_messages_newest(&Actor::System, dialog_id, QUESTION_MESSAGES * 3, None)
            .await?;
        Ok(page
            .items
            .iter()
            .filter(|m| m.direction == Direction::Inbound)
            .filter_map(|m| classifiable_text(m.subject.as_deref(), m.body.as_deref()))
            .take(usize::try_from(QUESTION_MESSAGES).unwrap_or(3))
            .map(|mut t| {
                cut_at(&mut t, QUESTION_MAX);
                t
            })
            .collect())
    }

    /// Follows the hub: article changes go into the index; an inbound message in a dialog
    /// a console here has open schedules its suggestions.
    async fn follow(self: Arc<Self>, mut pos: i64, shutdown: CancellationToken) {
        let mut head = self.hub.watch_head();
        loop {
            loop {
                let events = match self.hub.events_after(pos, 500).await {
                    Ok(e) => e,
                    Err(e) => {
                        tracing::warn!(error = %e, "knowledge base cannot read events");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        break;
                    }
                };
                let Some(last) = events.last().map(|e| e.seq) else {
                    break;
                };
                let mut changed: Vec<Id> = Vec::new();
                for e in &events {
                    match &*e.entity {
                        "kb_article" if !changed.contains(&e.entity_id) => {
                            changed.push(e.entity_id);
                        }
                        "message" if &*e.op == "create" => self.on_message(e),
                        _ => {}
                    }
                }
                if let Err(err) = self.refresh(&changed).await {
                    // Not moving on: the same events are read again.
                    tracing::warn!(error = %err, "knowledge base cannot apply changes; retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                    break;
                }
                pos = last;
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                r = head.changed() => if r.is_err() { return },
            }
        }
    }

    fn on_message(self: &Arc<Self>, e: &Event) {
        let Some(dialog) = e
            .topics
            .iter()
            .find(|t| t.kind == TopicKind::Dialog)
            .copied()
        else {
            return;
        };
        if !self.hub.followed_here(dialog) {
            return;
        }
        // Only the customer's messages change the question.
        let inbound = serde_json::from_str::<serde_json::Value>(e.frame.as_str())
            .ok()
            .and_then(|f| {
                f.pointer("/data/direction")
                    .and_then(|d| d.as_str())
                    .map(|d| d == "inbound")
            })
            .unwrap_or(false);
        if !inbound {
            return;
        }
        let fresh = self
            .pending
            .lock()
            .map(|mut p| p.insert(dialog.id))
            .unwrap_or(false);
        if fresh {
            let this = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(SUGGEST_DEBOUNCE).await;
                if let Ok(mut p) = this.pending.lock() {
                    p.remove(&dialog.id);
                }
                if let Err(err) = this.push_suggestions(dialog.id).await {
                    tracing::warn!(dialog = dialog.id, error = %err, "cannot suggest answers");
                }
            });
        }
    }

    /// Works out the dialog's suggestions and sends them to its followers on this node.
    async fn push_suggestions(self: &Arc<Self>, dialog_id: Id) -> StoreResult<()> {
        let d = self.store.get_dialog(&Actor::System, dialog_id).await?;
        let suggestions = self.suggestions_for(&d).await?;
        let data = serde_json::json!({"dialog_id": d.id, "suggestions": suggestions});
        self.hub.publish_local(Event::ephemeral(
            self.hub.head(),
            vec![Topic::dialog(d.id)],
            "kb_suggestions",
            d.id,
            "suggest",
            &Actor::System,
            Some(Owner {
                user_id: d.assignee_id,
                department_id: d.department_id,
                shared: d.shared,
            }),
            &data,
        ));
        Ok(())
    }
}

fn boosted(score: f32, uses: i64) -> f32 {
    #[allow(clippy::cast_precision_loss)]
    let uses = uses.max(0) as f32;
    score * (1.0 + USE_BOOST * uses.ln_1p())
}

/// Cuts `s` to at most `max` bytes, at a character boundary.
fn cut_at(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

fn poisoned() -> StoreError {
    StoreError::Corrupt("knowledge base state is poisoned".into())
}

#[cfg(test)]
mod tests {
    use super::boosted;

    #[test]
    fn uses_lift_but_do_not_dominate() {
        assert!((boosted(2.0, 0) - 2.0).abs() < 1e-6);
        assert!(boosted(2.0, 10) > boosted(2.0, 1));
        // A hundred uses do not lift a clearly weaker match over a strong one.
        assert!(boosted(1.0, 100) < boosted(2.0, 0));
        assert!((boosted(2.0, -5) - 2.0).abs() < 1e-6);
    }
}
