//! [`Encoder`]: multilingual-e5-small (ONNX, run by tract) plus its tokenizer, giving one
//! L2-normalised 384-dimensional vector per text.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokenizers::Tokenizer;
use tract_onnx::prelude::*;

/// The embedding size of multilingual-e5-small.
pub const DIM: usize = 384;

/// The longest input the model accepts, in tokens (its position table), special tokens
/// included.
pub const MAX_MODEL_TOKENS: usize = 512;

/// The default token cap of [`EncoderConfig::max_tokens`]: inquiries are rarely longer, and
/// the cost of a text grows faster than linearly with its length.
pub const DEFAULT_MAX_TOKENS: usize = 256;

/// The model file name inside the models folder.
pub const MODEL_FILE: &str = "model.onnx";

/// The tokenizer file name inside the models folder.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// Token ids of the XLM-R vocabulary that the graph and the pooling rely on.
const PAD_ID: u32 = 1;
const EOS_ID: u32 = 2;

/// What a text is, for the e5 prefixes: the model was trained with `"query: "` before
/// questions and `"passage: "` before documents to be retrieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A question or an inquiry (also for symmetric tasks such as classification).
    Query,
    /// A document to be found (a knowledge-base article or paragraph).
    Passage,
}

impl Kind {
    /// The prefix the model expects.
    #[must_use]
    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Query => "query: ",
            Kind::Passage => "passage: ",
        }
    }
}

/// How an [`Encoder`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderConfig {
    /// Texts are cut to this many tokens, special tokens included (1 ..= 512).
    pub max_tokens: usize,
    /// Texts per model call in [`Encoder::embed_batch`] (texts of similar length are
    /// grouped; at least 1).
    pub batch_size: usize,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self {
            max_tokens: DEFAULT_MAX_TOKENS,
            batch_size: 8,
        }
    }
}

/// Why the model folder could not be loaded. Every message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A model file is not there.
    #[error(
        "model file {} not found: run models/fetch.sh to download and convert the \
         multilingual-e5-small model (or point the models directory at models/e5)",
        path.display()
    )]
    Missing {
        /// The missing file.
        path: PathBuf,
    },
    /// A file exists but cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The tokenizer file is not a usable `tokenizer.json`.
    #[error(
        "bad tokenizer file {}: {reason}; re-run models/fetch.sh to restore it",
        path.display()
    )]
    Tokenizer {
        /// The file.
        path: PathBuf,
        /// What the tokenizer library said.
        reason: String,
    },
    /// The ONNX file is corrupt, truncated or uses something tract cannot run.
    #[error(
        "corrupt or unsupported ONNX model {}: {reason}; re-run models/fetch.sh to restore it",
        path.display()
    )]
    Model {
        /// The file.
        path: PathBuf,
        /// What tract said.
        reason: String,
    },
    /// The model loads but is not the expected encoder.
    #[error(
        "unexpected model {}: {reason} (expected inputs input_ids, attention_mask and an \
         output [batch, seq, {DIM}]); re-run models/fetch.sh",
        path.display()
    )]
    Shape {
        /// The file.
        path: PathBuf,
        /// What differs.
        reason: String,
    },
    /// A configuration value is out of range.
    #[error("invalid encoder configuration: {0}")]
    Config(String),
}

/// Why an embedding could not be computed. [`Encoder::embed`] never returns it: it falls
/// back to a zero vector; [`Encoder::try_embed_batch`] does.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The tokenizer refused the text.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The model run failed.
    #[error("model run: {0}")]
    Run(String),
}

type Plan = TypedSimplePlan;

/// The sentence encoder: tokenizer + optimised model, immutable after loading.
///
/// `Send + Sync`: share one `Arc<Encoder>` between threads; each call runs the model on
/// the calling thread (tract runs single-threaded per call), so `n` threads embed `n`
/// texts at once.
pub struct Encoder {
    tokenizer: Tokenizer,
    plan: Arc<Plan>,
    config: EncoderConfig,
    dir: PathBuf,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("dir", &self.dir)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// One tokenized text: ids with special tokens, cut to the cap.
fn cut(ids: &[u32], max_tokens: usize) -> Vec<u32> {
    if ids.len() <= max_tokens {
        return ids.to_vec();
    }
    // Keep `<s>` and the first tokens, end with `</s>` as the model saw in training.
    let mut out = ids[..max_tokens - 1].to_vec();
    out.push(EOS_ID);
    out
}

impl Encoder {
    /// Loads `dir/model.onnx` and `dir/tokenizer.json` with the default configuration.
    ///
    /// # Errors
    ///
    /// A [`LoadError`] saying which file is missing, corrupt or of the wrong shape.
    pub fn load(dir: &Path) -> Result<Encoder, LoadError> {
        Self::load_with(dir, EncoderConfig::default())
    }

    /// Loads the model folder with `config`.
    ///
    /// # Errors
    ///
    /// As [`Encoder::load`]; [`LoadError::Config`] for an out-of-range configuration.
    pub fn load_with(dir: &Path, config: EncoderConfig) -> Result<Encoder, LoadError> {
        if config.max_tokens < 3 || config.max_tokens > MAX_MODEL_TOKENS {
            return Err(LoadError::Config(format!(
                "max_tokens {} is outside 3..={MAX_MODEL_TOKENS}",
                config.max_tokens
            )));
        }
        if config.batch_size == 0 || config.batch_size > 256 {
            return Err(LoadError::Config(format!(
                "batch_size {} is outside 1..=256",
                config.batch_size
            )));
        }
        let model_path = dir.join(MODEL_FILE);
        let tokenizer_path = dir.join(TOKENIZER_FILE);
        for path in [&model_path, &tokenizer_path] {
            if !path.is_file() {
                return Err(LoadError::Missing { path: path.clone() });
            }
        }
        let tokenizer = load_tokenizer(&tokenizer_path)?;
        let plan = load_plan(&model_path)?;
        Ok(Encoder {
            tokenizer,
            plan,
            config,
            dir: dir.to_path_buf(),
        })
    }

    /// The configuration it runs with.
    #[must_use]
    pub fn config(&self) -> EncoderConfig {
        self.config
    }

    /// The embedding size (384).
    #[must_use]
    pub fn dim(&self) -> usize {
        DIM
    }

    /// The token ids the model would see for `text` (prefix, special tokens, cap applied).
    ///
    /// # Errors
    ///
    /// [`EmbedError::Tokenizer`] if the tokenizer fails on the text.
    pub fn token_ids(&self, text: &str, kind: Kind) -> Result<Vec<u32>, EmbedError> {
        // Bound the tokenizer's work on huge texts: a token is rarely shorter than one
        // byte, so this many bytes always yield at least `max_tokens` tokens.
        let limit = self.config.max_tokens * 16;
        let mut end = text.len().min(limit);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let input = format!("{}{}", kind.prefix(), &text[..end]);
        let encoding = self
            .tokenizer
            .encode_fast(input.as_str(), true)
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        Ok(cut(encoding.get_ids(), self.config.max_tokens))
    }

    /// The embedding of `text`: mean of the last hidden states over its tokens,
    /// L2-normalised (length 384). Never panics; if the tokenizer or the model fails
    /// (which the tests never saw happen), a zero vector is returned.
    #[must_use]
    pub fn embed(&self, text: &str, kind: Kind) -> Vec<f32> {
        self.try_embed_batch(&[text], kind)
            .ok()
            .and_then(|mut v| v.pop())
            .unwrap_or_else(|| vec![0.0; DIM])
    }

    /// The embeddings of `texts`, in order; texts of similar length are run together in
    /// batches of [`EncoderConfig::batch_size`]. Failed texts get a zero vector.
    #[must_use]
    pub fn embed_batch(&self, texts: &[&str], kind: Kind) -> Vec<Vec<f32>> {
        match self.try_embed_batch(texts, kind) {
            Ok(v) => v,
            Err(_) => texts.iter().map(|t| self.embed(t, kind)).collect(),
        }
    }

    /// [`embed_batch`](Self::embed_batch) on `threads` threads (each runs the shared model
    /// on its own part of the texts).
    #[must_use]
    pub fn embed_parallel(&self, texts: &[&str], kind: Kind, threads: usize) -> Vec<Vec<f32>> {
        let threads = threads.clamp(1, 64);
        if threads == 1 || texts.len() < 2 {
            return self.embed_batch(texts, kind);
        }
        let chunk = texts.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = texts
                .chunks(chunk)
                .map(|part| scope.spawn(move || self.embed_batch(part, kind)))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        })
    }

    /// The embeddings of `texts`, or the first error.
    ///
    /// # Errors
    ///
    /// [`EmbedError`] if a text cannot be tokenized or the model run fails.
    pub fn try_embed_batch(&self, texts: &[&str], kind: Kind) -> Result<Vec<Vec<f32>>, EmbedError> {
        let ids: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| self.token_ids(t, kind))
            .collect::<Result<_, _>>()?;
        // Group by length so that little padding is computed.
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| ids[i].len());
        let mut out = vec![Vec::new(); ids.len()];
        for group in order.chunks(self.config.batch_size) {
            let batch: Vec<&[u32]> = group.iter().map(|&i| ids[i].as_slice()).collect();
            let vectors = self.run(&batch)?;
            for (&i, v) in group.iter().zip(vectors) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// Runs the model on one padded batch and pools it.
    fn run(&self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let b = batch.len();
        let s = batch.iter().map(|ids| ids.len()).max().unwrap_or(0).max(1);
        let mut input_ids = vec![i64::from(PAD_ID); b * s];
        let mut mask = vec![0i64; b * s];
        for (row, ids) in batch.iter().enumerate() {
            for (col, &id) in ids.iter().enumerate() {
                input_ids[row * s + col] = i64::from(id);
                mask[row * s + col] = 1;
            }
        }
        let run_err = |e: TractError| EmbedError::Run(e.to_string());
        let ids_t = Tensor::from_shape(&[b, s], &input_ids).map_err(run_err)?;
        let mask_t = Tensor::from_shape(&[b, s], &mask).map_err(run_err)?;
        let outputs = self
            .plan
            .run(tvec!(ids_t.into_tvalue(), mask_t.into_tvalue()))
            .map_err(run_err)?;
        let hidden = outputs
            .first()
            .ok_or_else(|| EmbedError::Run("the model returned no output".into()))?;
        let view = hidden.to_plain_array_view::<f32>().map_err(run_err)?;
        if view.shape() != [b, s, DIM] {
            return Err(EmbedError::Run(format!(
                "output shape {:?}, expected [{b}, {s}, {DIM}]",
                view.shape()
            )));
        }
        let owned;
        let flat: &[f32] = match view.as_slice() {
            Some(slice) => slice,
            None => {
                owned = view.iter().copied().collect::<Vec<f32>>();
                &owned
            }
        };
        Ok(batch
            .iter()
            .enumerate()
            .map(|(row, ids)| {
                let mut sum = vec![0f32; DIM];
                for col in 0..ids.len() {
                    let start = (row * s + col) * DIM;
                    for (acc, &x) in sum.iter_mut().zip(&flat[start..start + DIM]) {
                        *acc += x;
                    }
                }
                crate::normalize(&mut sum);
                sum
            })
            .collect())
    }
}

fn load_tokenizer(path: &Path) -> Result<Tokenizer, LoadError> {
    let bad = |reason: String| LoadError::Tokenizer {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut tokenizer: Tokenizer = catch_unwind(AssertUnwindSafe(|| Tokenizer::from_bytes(&bytes)))
        .map_err(|_| bad("the tokenizer library panicked on it".into()))?
        .map_err(|e| bad(e.to_string()))?;
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(None)
        .map_err(|e| bad(e.to_string()))?;
    // The graph's special tokens must be where the model expects them.
    for (token, id) in [("<s>", 0), ("<pad>", PAD_ID), ("</s>", EOS_ID)] {
        if tokenizer.token_to_id(token) != Some(id) {
            return Err(bad(format!(
                "token {token} does not have id {id} (not the XLM-R vocabulary of e5)"
            )));
        }
    }
    Ok(tokenizer)
}

fn load_plan(path: &Path) -> Result<Arc<Plan>, LoadError> {
    let bad = |reason: String| LoadError::Model {
        path: path.to_path_buf(),
        reason,
    };
    let shape = |reason: String| LoadError::Shape {
        path: path.to_path_buf(),
        reason,
    };
    // tract reports errors as values; the unwind guard is only a belt for a parser panic
    // on hostile bytes, which must not take the hub down.
    let loaded = catch_unwind(AssertUnwindSafe(|| -> TractResult<InferenceModel> {
        tract_onnx::onnx().model_for_path(path)
    }))
    .map_err(|_| bad("the ONNX parser panicked on it".into()))?
    .map_err(|e| bad(format!("{e:#}")))?;
    let names: Vec<String> = loaded
        .input_outlets()
        .map_err(|e| bad(format!("{e:#}")))?
        .iter()
        .map(|o| loaded.node(o.node).name.clone())
        .collect();
    if names != ["input_ids", "attention_mask"] {
        return Err(shape(format!("inputs are {names:?}")));
    }
    let optimized = catch_unwind(AssertUnwindSafe(|| loaded.into_optimized()))
        .map_err(|_| bad("tract panicked while optimising it".into()))?
        .map_err(|e| bad(format!("{e:#}")))?;
    if optimized.outputs.len() != 1 {
        return Err(shape(format!("{} outputs", optimized.outputs.len())));
    }
    let fact = optimized
        .output_fact(0)
        .map_err(|e| bad(format!("{e:#}")))?;
    if fact.datum_type != f32::datum_type() {
        return Err(shape(format!("output type {:?}", fact.datum_type)));
    }
    let dims: Vec<TDim> = fact.shape.iter().cloned().collect();
    if dims.len() != 3 || dims[2] != TDim::Val(DIM as i64) {
        return Err(shape(format!("output shape {:?}", fact.shape)));
    }
    catch_unwind(AssertUnwindSafe(|| optimized.into_runnable()))
        .map_err(|_| bad("tract panicked while planning it".into()))?
        .map_err(|e| bad(format!("{e:#}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_the_end_token() {
        let ids: Vec<u32> = (0..10).collect();
        assert_eq!(cut(&ids, 20), ids);
        assert_eq!(cut(&ids, 4), vec![0, 1, 2, EOS_ID]);
    }

    #[test]
    fn prefixes() {
        assert_eq!(Kind::Query.prefix(), "query: ");
        assert_eq!(Kind::Passage.prefix(), "passage: ");
    }
}
