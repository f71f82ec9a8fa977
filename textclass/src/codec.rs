//! The [`NgramModel`] file format: compact, versioned, checksummed.
//!
//! All integers and floats are little-endian; weights are `f32`.
//!
//! ```text
//! magic            4   "KTXC"
//! format version   u16 (1)
//! engine           u8  (1 = ngram)
//! reserved         u8  (0)
//! config           bits, char_min, char_max, word_max, sign_hash, fold_cyrillic, algorithm,
//!                  reserved (8 × u8); char_weight, word_weight, learning_rate,
//!                  aggressiveness (4 × f32)
//! temperature      f32
//! updates          u64
//! bias accumulator f32
//! labels           u32 count, then per label u16 length + UTF-8 bytes
//! bias             count × f32
//! accumulators     u32 count, then (u32 bucket, f32) for each non-zero one, buckets ascending
//! weights          u8 layout, then
//!                    0 = rows:    u32 count, (u32 bucket, labels × f32) per non-zero row
//!                    1 = entries: u32 count, (u32 bucket × labels + label, f32) per
//!                                 non-zero weight
//!                  indices strictly ascending; the writer picks the smaller layout
//! checksum         u32 CRC-32 (IEEE) of every byte before it
//! ```
//!
//! Zero rows are skipped, so a model trained on a few thousand short messages takes a few
//! megabytes, not `labels × 2^18 × 4` bytes. Decoding checks the length, magic, version and
//! checksum first, then every count against the bytes left and every value's range, and
//! returns a [`DecodeError`] for anything wrong; it never panics and never allocates more
//! than the input can describe.

use crate::classifier::{validate_label, ClassifyError};
use crate::ngram::{Algorithm, NgramConfig, NgramModel, MAX_LABELS};

const MAGIC: &[u8; 4] = b"KTXC";
/// The current format version.
pub const FORMAT_VERSION: u16 = 1;
const ENGINE_NGRAM: u8 = 1;
const LAYOUT_ROWS: u8 = 0;
const LAYOUT_ENTRIES: u8 = 1;

/// Why model bytes could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the smallest possible model.
    #[error("model data too short: {0} bytes")]
    TooShort(usize),
    /// The bytes do not start with the model magic: not a model file.
    #[error("not a model file (bad magic)")]
    BadMagic,
    /// A format version this build cannot read.
    #[error("unsupported model format version {0} (this build reads {FORMAT_VERSION})")]
    UnsupportedVersion(u16),
    /// A model of another engine.
    #[error("unsupported engine id {0}")]
    UnsupportedEngine(u8),
    /// The checksum does not match: the data is corrupt or truncated.
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): corrupt or truncated model")]
    ChecksumMismatch {
        /// The checksum in the data.
        stored: u32,
        /// The checksum of the data.
        computed: u32,
    },
    /// The data ends in the middle of a section.
    #[error("model data truncated in {0}")]
    Truncated(&'static str),
    /// A value out of range or inconsistent.
    #[error("invalid model data: {0}")]
    Invalid(String),
    /// The stored configuration or labels are not valid.
    #[error("invalid model: {0}")]
    Model(#[from] ClassifyError),
}

/// Encodes a model (see the module docs for the layout).
pub(crate) fn encode(model: &NgramModel) -> Vec<u8> {
    let c = &model.config;
    // A model has at least one label (checked when it is built); max(1) keeps
    // `chunks_exact` well-defined regardless.
    let n = model.labels.len().max(1);
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&[ENGINE_NGRAM, 0]);
    let algorithm = match c.algorithm {
        Algorithm::Logistic => 0,
        Algorithm::PassiveAggressive => 1,
    };
    out.extend_from_slice(&[
        c.bits,
        c.char_min,
        c.char_max,
        c.word_max,
        u8::from(c.sign_hash),
        u8::from(c.fold_cyrillic),
        algorithm,
        0,
    ]);
    for v in [
        c.char_weight,
        c.word_weight,
        c.learning_rate,
        c.aggressiveness,
        model.temperature,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&model.updates.to_le_bytes());
    out.extend_from_slice(&model.bias_accumulator.to_le_bytes());

    put_u32(&mut out, n);
    for label in &model.labels {
        // Labels are at most MAX_LABEL_BYTES (128) long: validated on the way in.
        out.extend_from_slice(&(label.len() as u16).to_le_bytes());
        out.extend_from_slice(label.as_bytes());
    }
    for b in &model.bias {
        out.extend_from_slice(&b.to_le_bytes());
    }

    let accumulators: Vec<(usize, f32)> = model
        .accumulators
        .iter()
        .copied()
        .enumerate()
        .filter(|&(_, a)| a != 0.0)
        .collect();
    put_u32(&mut out, accumulators.len());
    for (bucket, a) in accumulators {
        put_u32(&mut out, bucket);
        out.extend_from_slice(&a.to_le_bytes());
    }

    let rows = model
        .weights
        .chunks_exact(n)
        .filter(|row| row.iter().any(|&w| w != 0.0))
        .count();
    let entries = model.weights.iter().filter(|&&w| w != 0.0).count();
    if rows * (4 + 4 * n) <= entries * 8 {
        out.push(LAYOUT_ROWS);
        put_u32(&mut out, rows);
        for (bucket, row) in model.weights.chunks_exact(n).enumerate() {
            if row.iter().any(|&w| w != 0.0) {
                put_u32(&mut out, bucket);
                for w in row {
                    out.extend_from_slice(&w.to_le_bytes());
                }
            }
        }
    } else {
        out.push(LAYOUT_ENTRIES);
        put_u32(&mut out, entries);
        for (index, &w) in model.weights.iter().enumerate() {
            if w != 0.0 {
                put_u32(&mut out, index);
                out.extend_from_slice(&w.to_le_bytes());
            }
        }
    }
    let checksum = crc32fast::hash(&out);
    out.extend_from_slice(&checksum.to_le_bytes());
    out
}

/// Writes a count or index that fits in `u32` by construction (at most `MAX_WEIGHTS`).
fn put_u32(out: &mut Vec<u8>, value: usize) {
    out.extend_from_slice(&(value as u32).to_le_bytes());
}

/// Decodes a model written by [`encode`].
pub(crate) fn decode(bytes: &[u8]) -> Result<NgramModel, DecodeError> {
    const MIN_LEN: usize = 4 + 2 + 2 + 8 + 20 + 8 + 4 + 4 + 4 + 4;
    if bytes.len() < 4 || bytes.get(..4) != Some(MAGIC.as_slice()) {
        return Err(if bytes.len() < 4 {
            DecodeError::TooShort(bytes.len())
        } else {
            DecodeError::BadMagic
        });
    }
    if bytes.len() < MIN_LEN {
        return Err(DecodeError::TooShort(bytes.len()));
    }
    let (body, tail) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]);
    let version = u16::from_le_bytes([body[4], body[5]]);
    if version != FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(DecodeError::ChecksumMismatch { stored, computed });
    }
    let mut r = Reader { bytes: body, at: 6 };
    let engine = r.u8("header")?;
    if engine != ENGINE_NGRAM {
        return Err(DecodeError::UnsupportedEngine(engine));
    }
    r.u8("header")?;

    let raw = r.take(8, "config")?;
    let algorithm = match raw[6] {
        0 => Algorithm::Logistic,
        1 => Algorithm::PassiveAggressive,
        other => {
            return Err(DecodeError::Invalid(format!(
                "unknown algorithm id {other}"
            )))
        }
    };
    let flag = |v: u8, what: &str| match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::Invalid(format!("{what} flag is {v}"))),
    };
    let config = NgramConfig {
        bits: raw[0],
        char_min: raw[1],
        char_max: raw[2],
        word_max: raw[3],
        sign_hash: flag(raw[4], "sign_hash")?,
        fold_cyrillic: flag(raw[5], "fold_cyrillic")?,
        algorithm,
        char_weight: r.f32("config")?,
        word_weight: r.f32("config")?,
        learning_rate: r.f32("config")?,
        aggressiveness: r.f32("config")?,
    };
    config.validate()?;
    let temperature = r.f32("header")?;
    let updates = r.u64("header")?;
    let bias_accumulator = r.f32("header")?;
    if !(0.01..=100.0).contains(&temperature) {
        return Err(DecodeError::Invalid(format!("temperature {temperature}")));
    }
    if bias_accumulator < 0.0 {
        return Err(DecodeError::Invalid("negative bias accumulator".to_owned()));
    }

    let count = r.u32("labels")? as usize;
    if count == 0 || count > MAX_LABELS || count * 2 > r.left() {
        return Err(DecodeError::Invalid(format!("label count {count}")));
    }
    let mut labels = Vec::with_capacity(count);
    for _ in 0..count {
        let len = usize::from(r.u16("labels")?);
        let raw = r.take(len, "labels")?;
        let label = std::str::from_utf8(raw)
            .map_err(|_| DecodeError::Invalid("label is not UTF-8".to_owned()))?;
        validate_label(label)?;
        labels.push(label.to_owned());
    }
    // `new` checks uniqueness and the size limit before allocating the weights.
    let mut model = NgramModel::new(config, &labels)?;
    let n = labels.len();
    let buckets = config.buckets();
    for b in &mut model.bias {
        *b = r.f32("bias")?;
    }
    model.temperature = temperature;
    model.updates = updates;
    model.bias_accumulator = bias_accumulator;

    let count = r.u32("accumulators")? as usize;
    if count > buckets || count * 8 > r.left() {
        return Err(DecodeError::Invalid(format!("accumulator count {count}")));
    }
    let mut last = None;
    for _ in 0..count {
        let bucket = r.index(buckets, &mut last, "accumulators")?;
        let value = r.f32("accumulators")?;
        if value < 0.0 {
            return Err(DecodeError::Invalid("negative accumulator".to_owned()));
        }
        model.accumulators[bucket] = value;
    }

    let layout = r.u8("weights")?;
    let count = r.u32("weights")? as usize;
    let mut last = None;
    match layout {
        LAYOUT_ROWS => {
            if count > buckets || count * (4 + 4 * n) > r.left() {
                return Err(DecodeError::Invalid(format!("weight row count {count}")));
            }
            for _ in 0..count {
                let bucket = r.index(buckets, &mut last, "weights")?;
                for k in 0..n {
                    model.weights[bucket * n + k] = r.f32("weights")?;
                }
            }
        }
        LAYOUT_ENTRIES => {
            if count > buckets * n || count * 8 > r.left() {
                return Err(DecodeError::Invalid(format!("weight entry count {count}")));
            }
            for _ in 0..count {
                let index = r.index(buckets * n, &mut last, "weights")?;
                model.weights[index] = r.f32("weights")?;
            }
        }
        other => {
            return Err(DecodeError::Invalid(format!(
                "unknown weight layout {other}"
            )))
        }
    }
    if r.left() != 0 {
        return Err(DecodeError::Invalid(format!(
            "{} unexpected bytes after the weights",
            r.left()
        )));
    }
    Ok(model)
}

/// A bounds-checked little-endian reader.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.bytes.len().saturating_sub(self.at)
    }

    fn take(&mut self, len: usize, section: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self
            .at
            .checked_add(len)
            .ok_or(DecodeError::Truncated(section))?;
        let slice = self
            .bytes
            .get(self.at..end)
            .ok_or(DecodeError::Truncated(section))?;
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, section: &'static str) -> Result<[u8; N], DecodeError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N, section)?);
        Ok(array)
    }

    fn u8(&mut self, section: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(section)?[0])
    }

    fn u16(&mut self, section: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(section)?))
    }

    fn u32(&mut self, section: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(section)?))
    }

    fn u64(&mut self, section: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(section)?))
    }

    /// A finite `f32`.
    fn f32(&mut self, section: &'static str) -> Result<f32, DecodeError> {
        let v = f32::from_le_bytes(self.array(section)?);
        if v.is_finite() {
            Ok(v)
        } else {
            Err(DecodeError::Invalid(format!(
                "non-finite number in {section}"
            )))
        }
    }

    /// An index below `limit`, strictly above the previous one.
    fn index(
        &mut self,
        limit: usize,
        last: &mut Option<usize>,
        section: &'static str,
    ) -> Result<usize, DecodeError> {
        let index = self.u32(section)? as usize;
        if index >= limit || last.is_some_and(|l| index <= l) {
            return Err(DecodeError::Invalid(format!(
                "index {index} out of order or range in {section}"
            )));
        }
        *last = Some(index);
        Ok(index)
    }
}

impl NgramModel {
    /// Restores a model written by [`Classifier::to_bytes`](crate::Classifier::to_bytes).
    ///
    /// The layout (little-endian): magic `KTXC`, format version (u16, [`FORMAT_VERSION`]),
    /// engine id, the configuration, temperature, counters, the labels, the biases, the
    /// non-zero AdaGrad accumulators, the non-zero weights (as rows or as single entries,
    /// whichever is smaller) and a CRC-32 of everything before it. Every count is checked
    /// against the bytes left before anything is allocated.
    ///
    /// # Errors
    ///
    /// A [`DecodeError`] for anything that is not an intact model file of a supported
    /// version: wrong magic, other version or engine, checksum mismatch (corruption or
    /// truncation), out-of-range values.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode(bytes)
    }
}
