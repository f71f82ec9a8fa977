//! Evaluation measures shared by the `evaluate` binary, the tests and (later) the hub's
//! model-quality report: accuracy, AUROC, expected calibration error, log-loss, and a
//! confusion matrix with per-class precision / recall.
//!
//! Pure functions over plain slices; no classifier involved.

/// The fraction of `(predicted, truth)` pairs that agree (0 for no pairs).
#[must_use]
pub fn accuracy(pairs: &[(usize, usize)]) -> f64 {
    if pairs.is_empty() {
        return 0.0;
    }
    pairs.iter().filter(|(p, t)| p == t).count() as f64 / pairs.len() as f64
}

/// The area under the ROC curve of a score that should be higher for `positives` than for
/// `negatives`: the probability that a random positive outscores a random negative, ties
/// counting one half (the Mann–Whitney U statistic). `None` if either side is empty.
#[must_use]
pub fn auroc(positives: &[f32], negatives: &[f32]) -> Option<f64> {
    if positives.is_empty() || negatives.is_empty() {
        return None;
    }
    let mut all: Vec<(f32, bool)> = positives
        .iter()
        .map(|&s| (s, true))
        .chain(negatives.iter().map(|&s| (s, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Sum of the (average, for ties) ranks of the positives.
    let mut rank_sum = 0.0f64;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let average_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += average_rank * all[i..=j].iter().filter(|(_, p)| *p).count() as f64;
        i = j + 1;
    }
    let np = positives.len() as f64;
    let nn = negatives.len() as f64;
    Some((rank_sum - np * (np + 1.0) / 2.0) / (np * nn))
}

/// Expected calibration error over `bins` equal-width confidence bins: the
/// example-weighted mean of |accuracy − mean confidence| per bin, for `(confidence,
/// correct)` pairs. 0 for no pairs.
#[must_use]
pub fn expected_calibration_error(pairs: &[(f32, bool)], bins: usize) -> f64 {
    let bins = bins.max(1);
    if pairs.is_empty() {
        return 0.0;
    }
    let mut count = vec![0usize; bins];
    let mut confidence = vec![0.0f64; bins];
    let mut correct = vec![0.0f64; bins];
    for &(c, ok) in pairs {
        let c = f64::from(c).clamp(0.0, 1.0);
        let bin = ((c * bins as f64) as usize).min(bins - 1);
        count[bin] += 1;
        confidence[bin] += c;
        correct[bin] += if ok { 1.0 } else { 0.0 };
    }
    let total = pairs.len() as f64;
    (0..bins)
        .filter(|&b| count[b] > 0)
        .map(|b| (correct[b] - confidence[b]).abs() / total)
        .sum()
}

/// Mean negative log-likelihood of the true labels' probabilities (floored at 1e-7).
#[must_use]
pub fn log_loss(true_probabilities: &[f32]) -> f64 {
    if true_probabilities.is_empty() {
        return 0.0;
    }
    true_probabilities
        .iter()
        .map(|&p| -f64::from(p).max(1e-7).ln())
        .sum::<f64>()
        / true_probabilities.len() as f64
}

/// A confusion matrix: `counts[truth][predicted]` over `labels`, with per-class precision,
/// recall and F1.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Confusion {
    /// The classes, in row (truth) and column (prediction) order.
    pub labels: Vec<String>,
    /// `counts[truth][predicted]`.
    pub counts: Vec<Vec<usize>>,
}

impl Confusion {
    /// An empty matrix over `labels`.
    #[must_use]
    pub fn new(labels: &[impl AsRef<str>]) -> Self {
        let n = labels.len();
        Self {
            labels: labels.iter().map(|l| l.as_ref().to_owned()).collect(),
            counts: vec![vec![0; n]; n],
        }
    }

    /// The same matrix with the classes in alphabetical order (so that matrices of one
    /// data set read alike whatever order the classes were met in).
    #[must_use]
    pub fn sorted(&self) -> Self {
        let mut order: Vec<usize> = (0..self.labels.len()).collect();
        order.sort_by(|&a, &b| self.labels[a].cmp(&self.labels[b]));
        Self {
            labels: order.iter().map(|&i| self.labels[i].clone()).collect(),
            counts: order
                .iter()
                .map(|&t| order.iter().map(|&p| self.counts[t][p]).collect())
                .collect(),
        }
    }

    /// Counts one text of class `truth` predicted as `predicted`; indices outside the
    /// matrix are ignored.
    pub fn add(&mut self, truth: usize, predicted: usize) {
        let n = self.labels.len();
        if truth < n && predicted < n {
            self.counts[truth][predicted] += 1;
        }
    }

    /// Texts counted.
    #[must_use]
    pub fn total(&self) -> usize {
        self.counts.iter().flatten().sum()
    }

    /// Texts of class `i`.
    #[must_use]
    pub fn support(&self, i: usize) -> usize {
        self.counts.get(i).map_or(0, |r| r.iter().sum())
    }

    /// Texts predicted as class `i`.
    #[must_use]
    pub fn predicted(&self, i: usize) -> usize {
        self.counts.iter().filter_map(|r| r.get(i)).sum()
    }

    fn hits(&self, i: usize) -> usize {
        self.counts
            .get(i)
            .and_then(|r| r.get(i))
            .copied()
            .unwrap_or(0)
    }

    /// Of the texts predicted as class `i`, the fraction that are (0 when none is).
    #[must_use]
    pub fn precision(&self, i: usize) -> f64 {
        ratio(self.hits(i), self.predicted(i))
    }

    /// Of the texts of class `i`, the fraction predicted so (0 when there are none).
    #[must_use]
    pub fn recall(&self, i: usize) -> f64 {
        ratio(self.hits(i), self.support(i))
    }

    /// The harmonic mean of precision and recall of class `i`.
    #[must_use]
    pub fn f1(&self, i: usize) -> f64 {
        let (p, r) = (self.precision(i), self.recall(i));
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }

    /// The fraction on the diagonal.
    #[must_use]
    pub fn accuracy(&self) -> f64 {
        ratio(
            (0..self.labels.len()).map(|i| self.hits(i)).sum(),
            self.total(),
        )
    }

    /// The matrix as a text table (rows: the true class; columns: the predicted one),
    /// followed by each class's precision, recall, F1 and support.
    #[must_use]
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let width = self
            .labels
            .iter()
            .map(String::len)
            .max()
            .unwrap_or(0)
            .max(8);
        let mut out = String::new();
        let _ = write!(out, "{:<width$}", "true \\ predicted");
        for l in &self.labels {
            let _ = write!(out, " {l:>width$}");
        }
        let _ = writeln!(
            out,
            " {:>9} {:>9} {:>6} {:>7}",
            "precision", "recall", "F1", "support"
        );
        for (i, l) in self.labels.iter().enumerate() {
            let _ = write!(out, "{l:<width$}");
            for c in &self.counts[i] {
                let _ = write!(out, " {c:>width$}");
            }
            let _ = writeln!(
                out,
                " {:>8.1}% {:>8.1}% {:>6.3} {:>7}",
                self.precision(i) * 100.0,
                self.recall(i) * 100.0,
                self.f1(i),
                self.support(i)
            );
        }
        out
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auroc_cases() {
        assert_eq!(auroc(&[0.9, 0.8], &[0.1, 0.2]), Some(1.0));
        assert_eq!(auroc(&[0.1], &[0.9]), Some(0.0));
        assert_eq!(auroc(&[0.5], &[0.5]), Some(0.5));
        assert_eq!(auroc(&[0.3, 0.7], &[0.5]), Some(0.5));
        assert_eq!(auroc(&[], &[0.5]), None);
    }

    #[test]
    fn calibration_error_cases() {
        // Perfectly calibrated: 80 % confident, 80 % right.
        let pairs: Vec<(f32, bool)> = (0..10).map(|i| (0.8, i < 8)).collect();
        assert!(expected_calibration_error(&pairs, 10) < 1e-6);
        let overconfident: Vec<(f32, bool)> = (0..10).map(|i| (1.0, i < 5)).collect();
        assert!((expected_calibration_error(&overconfident, 10) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn accuracy_and_log_loss() {
        assert_eq!(accuracy(&[(1, 1), (2, 1)]), 0.5);
        assert!((log_loss(&[1.0, 1.0])).abs() < 1e-9);
        assert!((log_loss(&[0.5]) - std::f64::consts::LN_2).abs() < 1e-9);
    }

    #[test]
    fn confusion_counts_precision_and_recall() {
        let mut c = Confusion::new(&["a", "b"]);
        for (t, p) in [(0, 0), (0, 0), (0, 1), (1, 1), (1, 9), (9, 0)] {
            c.add(t, p);
        }
        assert_eq!(c.total(), 4);
        assert_eq!(c.counts, vec![vec![2, 1], vec![0, 1]]);
        assert!((c.precision(0) - 1.0).abs() < 1e-9);
        assert!((c.recall(0) - 2.0 / 3.0).abs() < 1e-9);
        assert!((c.precision(1) - 0.5).abs() < 1e-9);
        assert!((c.accuracy() - 0.75).abs() < 1e-9);
        assert_eq!(Confusion::new(&["x"]).precision(0), 0.0);
        let table = c.render();
        assert!(
            table.contains("precision") && table.lines().count() == 3,
            "{table}"
        );
        let mut c = Confusion::new(&["other", "bug"]);
        c.add(0, 1);
        c.add(1, 1);
        let s = c.sorted();
        assert_eq!(s.labels, ["bug", "other"]);
        assert_eq!(s.counts, vec![vec![1, 0], vec![1, 0]]);
    }
}
