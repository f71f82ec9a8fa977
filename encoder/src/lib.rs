//! iConsultant engine 2: the multilingual sentence encoder multilingual-e5-small (Russian,
//! English and ~100 other languages), run in-process with tract, and a text classifier on
//! top of it.
//!
//! - [`Encoder`] loads `model.onnx` + `tokenizer.json` (produced by `models/fetch.sh`) and
//!   turns a text into an L2-normalised 384-dimensional vector ([`Kind::Query`] for
//!   inquiries, [`Kind::Passage`] for knowledge-base texts). It is `Send + Sync`: share one
//!   `Arc<Encoder>` between threads.
//! - [`LinearHead`] is a multinomial logistic regression over embeddings, trained online
//!   (AdaGrad), with a fitted softmax temperature and a checksummed byte format.
//! - [`EncoderClassifier`] implements [`kommutator_textclass::Classifier`] with the two.
//!
//! Nothing here panics on bad input: a missing or damaged model folder is a [`LoadError`]
//! that says to run `models/fetch.sh`, damaged head bytes a [`HeadDecodeError`].

mod classifier;
mod encoder;
mod head;

pub use classifier::{EncoderClassifier, EncoderClassifierConfig, DEFAULT_CACHE_ENTRIES};
pub use encoder::{
    EmbedError, Encoder, EncoderConfig, Kind, LoadError, DEFAULT_MAX_TOKENS, DIM, MAX_MODEL_TOKENS,
    MODEL_FILE, TOKENIZER_FILE,
};
pub use head::{HeadConfig, HeadDecodeError, LinearHead, HEAD_FORMAT_VERSION, MAX_DIM, MAX_LABELS};

/// Scales `v` to unit L2 length in place (a zero or non-finite vector becomes all zeros).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm.is_finite() && norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    } else {
        v.iter_mut().for_each(|x| *x = 0.0);
    }
}

/// The cosine similarity of two vectors (their dot product over their lengths; 0 if either
/// is zero or they differ in length).
#[must_use]
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    if na > 0.0 && nb > 0.0 {
        dot / (na * nb)
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn encoder_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<super::Encoder>();
        check::<super::EncoderClassifier>();
    }
}
