//! Hashed n-gram features: normalised text → a sparse, L2-normalised vector.
//!
//! Two blocks share one hashed space of `2^bits` buckets (each block hashes with its own
//! seed, so they collide no more than any two features do):
//!
//! - **character n-grams** of `char_min..=char_max` characters taken within each word padded
//!   with a space on both sides (scikit-learn's `char_wb`): " card " gives " c", "ca", ...,
//!   " card", "card ". They make the model tolerant to typos, inflection (Russian
//!   morphology) and unseen word forms. A word shorter than an n-gram gives itself once.
//! - **word n-grams** up to `word_max` (unigrams and bigrams by default): exact words and
//!   short phrases ("not working", "не работает").
//!
//! Each distinct n-gram counts `1 + ln(count)` (sublinear term frequency); each block is
//! L2-normalised and scaled by its weight, the blocks are summed into buckets and the result
//! is L2-normalised again, so long and short texts live on the same scale. With sign hashing
//! a feature's value is multiplied by ±1 from one bit of its hash, which makes collisions
//! cancel on average instead of adding up.
//!
//! Cost: O(n log n) in the normalised length for the sorting (the input is capped at 64 KiB
//! by [`crate::normalize`]), no allocation per n-gram.

/// A sparse vector: strictly increasing bucket indices and their values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseVector {
    /// Bucket indices, strictly increasing.
    pub indices: Vec<u32>,
    /// The value of each bucket in [`indices`](Self::indices).
    pub values: Vec<f32>,
}

impl SparseVector {
    /// Number of non-zero buckets.
    #[must_use]
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// True when the vector has no non-zero bucket (the text had no features).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// Iterates over `(bucket, value)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (usize, f32)> + '_ {
        self.indices
            .iter()
            .zip(&self.values)
            .map(|(&i, &v)| (i as usize, v))
    }

    /// The squared L2 norm.
    #[must_use]
    pub fn norm_squared(&self) -> f32 {
        self.values.iter().map(|v| v * v).sum()
    }
}

/// The featurisation settings; see [`crate::NgramConfig`] for their meaning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Featurizer {
    pub bits: u8,
    pub char_min: u8,
    pub char_max: u8,
    pub word_max: u8,
    pub sign_hash: bool,
    pub char_weight: f32,
    pub word_weight: f32,
}

const CHAR_SEED: u64 = 0x6b6f_6d6d_7574_6174; // "kommutat"
const WORD_SEED: u64 = 0x7465_7874_636c_6173; // "textclas"

impl Featurizer {
    /// The feature vector of an already normalised text (words separated by single spaces).
    pub fn featurize(&self, normalized: &str) -> SparseVector {
        let mut char_hashes = Vec::with_capacity(normalized.len() * 4 + 8);
        let mut word_hashes = Vec::with_capacity(normalized.len() / 2 + 8);
        if self.char_weight > 0.0 && self.char_max > 0 {
            self.char_ngrams(normalized, &mut char_hashes);
        }
        if self.word_weight > 0.0 && self.word_max > 0 {
            self.word_ngrams(normalized, &mut word_hashes);
        }
        let mut entries: Vec<(u32, f32)> =
            Vec::with_capacity(char_hashes.len() + word_hashes.len());
        self.add_block(&mut char_hashes, self.char_weight, &mut entries);
        self.add_block(&mut word_hashes, self.word_weight, &mut entries);
        entries.sort_unstable_by_key(|&(index, _)| index);

        let mut vector = SparseVector {
            indices: Vec::with_capacity(entries.len()),
            values: Vec::with_capacity(entries.len()),
        };
        for (index, value) in entries {
            match (vector.indices.last(), vector.values.last_mut()) {
                (Some(&last), Some(sum)) if last == index => *sum += value,
                _ => {
                    vector.indices.push(index);
                    vector.values.push(value);
                }
            }
        }
        // Opposite signs can cancel exactly; a zero entry carries nothing.
        let mut keep = 0;
        for i in 0..vector.indices.len() {
            if vector.values[i] != 0.0 {
                vector.indices[keep] = vector.indices[i];
                vector.values[keep] = vector.values[i];
                keep += 1;
            }
        }
        vector.indices.truncate(keep);
        vector.values.truncate(keep);
        let norm = vector.norm_squared().sqrt();
        if norm > 0.0 && norm.is_finite() {
            for v in &mut vector.values {
                *v /= norm;
            }
        }
        vector
    }

    fn char_ngrams(&self, normalized: &str, out: &mut Vec<u64>) {
        let min = usize::from(self.char_min.max(1));
        let max = usize::from(self.char_max.max(self.char_min).max(1));
        let mut padded = String::new();
        let mut bounds: Vec<usize> = Vec::new();
        for word in normalized.split(' ').filter(|w| !w.is_empty()) {
            padded.clear();
            padded.push(' ');
            padded.push_str(word);
            padded.push(' ');
            bounds.clear();
            bounds.extend(padded.char_indices().map(|(i, _)| i));
            bounds.push(padded.len());
            let chars = bounds.len() - 1;
            let bytes = padded.as_bytes();
            for n in min..=max {
                if n >= chars {
                    out.push(hash_bytes(CHAR_SEED, bytes));
                    break;
                }
                for start in 0..=chars - n {
                    let slice = bytes
                        .get(bounds[start]..bounds[start + n])
                        .unwrap_or_default();
                    out.push(hash_bytes(CHAR_SEED, slice));
                }
            }
        }
    }

    fn word_ngrams(&self, normalized: &str, out: &mut Vec<u64>) {
        let tokens: Vec<u64> = normalized
            .split(' ')
            .filter(|w| !w.is_empty())
            .map(|w| hash_bytes(WORD_SEED, w.as_bytes()))
            .collect();
        let max = usize::from(self.word_max);
        for n in 1..=max {
            for window in tokens.windows(n) {
                let mut h = WORD_SEED ^ (n as u64);
                for &t in window {
                    h = mix64(h ^ t);
                }
                out.push(h);
            }
        }
    }

    /// Counts the distinct n-grams of one block, weighs them (sublinear tf, block L2 norm ×
    /// `weight`) and appends them as `(bucket, value)`.
    fn add_block(&self, hashes: &mut [u64], weight: f32, out: &mut Vec<(u32, f32)>) {
        if hashes.is_empty() {
            return;
        }
        hashes.sort_unstable();
        let mut counted: Vec<(u64, f32)> = Vec::with_capacity(hashes.len());
        let mut run = 0u32;
        for i in 0..hashes.len() {
            run += 1;
            if i + 1 == hashes.len() || hashes[i + 1] != hashes[i] {
                counted.push((hashes[i], 1.0 + (run as f32).ln()));
                run = 0;
            }
        }
        let norm = counted.iter().map(|&(_, v)| v * v).sum::<f32>().sqrt();
        let scale = weight / norm;
        let mask = (1u64 << self.bits) - 1;
        for (h, v) in counted {
            let index = (h & mask) as u32;
            let sign = if self.sign_hash && (h >> 63) == 1 {
                -1.0
            } else {
                1.0
            };
            out.push((index, sign * v * scale));
        }
    }
}

/// A 64-bit hash of a byte string: 8-byte words folded in with multiply-mix rounds, then a
/// final avalanche. Fixed (little-endian) so that model files are portable.
pub(crate) fn hash_bytes(seed: u64, bytes: &[u8]) -> u64 {
    const P: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut h = seed ^ (bytes.len() as u64).wrapping_mul(P);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        h = mix64(h ^ u64::from_le_bytes(word));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        h = mix64(h ^ u64::from_le_bytes(word));
    }
    mix64(h)
}

/// The 64-bit finaliser of MurmurHash3 (fmix64): a bijection with full avalanche.
pub(crate) fn mix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn featurizer() -> Featurizer {
        Featurizer {
            bits: 18,
            char_min: 2,
            char_max: 5,
            word_max: 2,
            sign_hash: true,
            char_weight: 1.0,
            word_weight: 1.0,
        }
    }

    #[test]
    fn unit_norm_and_sorted() {
        let v = featurizer().featurize("my card has not arrived");
        assert!(!v.is_empty());
        assert!((v.norm_squared() - 1.0).abs() < 1e-4);
        assert!(v.indices.windows(2).all(|w| w[0] < w[1]));
        assert!(v.indices.iter().all(|&i| i < 1 << 18));
    }

    #[test]
    fn empty_text_has_no_features() {
        assert!(featurizer().featurize("").is_empty());
    }

    #[test]
    fn counts_char_wb_ngrams() {
        let f = Featurizer {
            word_weight: 0.0,
            sign_hash: false,
            ..featurizer()
        };
        let mut hashes = Vec::new();
        f.char_ngrams("ab", &mut hashes);
        // " ab " : " a", "ab", "b " ; " ab", "ab " ; " ab " (once)
        assert_eq!(hashes.len(), 6);
        hashes.clear();
        f.char_ngrams("a", &mut hashes);
        // " a " : " a", "a " ; " a "
        assert_eq!(hashes.len(), 3);
    }

    #[test]
    fn word_bigrams_are_order_sensitive() {
        let f = featurizer();
        let mut ab = Vec::new();
        f.word_ngrams("a b", &mut ab);
        let mut ba = Vec::new();
        f.word_ngrams("b a", &mut ba);
        assert_eq!(ab.len(), 3);
        assert_ne!(ab[2], ba[2]);
    }

    #[test]
    fn hash_is_stable() {
        // Model files depend on it: a change here must bump the format version.
        assert_eq!(hash_bytes(0, b" card "), 14_411_210_036_058_970_240);
        assert_eq!(
            hash_bytes(CHAR_SEED, "привет".as_bytes()),
            10_279_748_686_545_115_634
        );
        assert_ne!(hash_bytes(0, b"ab"), hash_bytes(0, b"ba"));
        assert_ne!(hash_bytes(1, b"ab"), hash_bytes(0, b"ab"));
    }
}
