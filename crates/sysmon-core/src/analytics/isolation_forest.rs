//! An Isolation Forest (Liu, Ting and Zhou, ICDM 2008), the legacy system's
//! anomaly model (there: scikit-learn's `IsolationForest`).
//!
//! * Each tree is grown on a sub-sample of `sample_size` rows (256 by default)
//!   drawn without replacement, by choosing a random feature among those not
//!   constant in the node and a split uniformly between its min and max, down to
//!   the height limit `ceil(log2(sample_size))`.
//! * The path length of `x` in a tree is the number of edges to the leaf it falls
//!   into plus the correction [`average_path_length`]`(leaf size)` for the rows
//!   the leaf still holds.
//! * The score is `s(x) = 2^(-E[h(x)] / c(ψ))` with `ψ = min(sample_size, rows)`:
//!   close to 1 for anomalies, about 0.5 or below for normal points.
//! * [`Contamination::Auto`] flags scores above 0.5 (scikit-learn's `offset_ = -0.5`);
//!   [`Contamination::Fraction`] sets the threshold at that quantile of the scores
//!   of the training rows.
//!
//! Trees are stored compactly (8 bytes a node, children allocated in pairs) so
//! that a forest per machine stays small: about 100 trees x 300 nodes = 240 KB.
//! The forest is deterministic for a given seed.

use serde::{Deserialize, Serialize};

use crate::error::CoreError;
use crate::synth::Rng;

/// Euler–Mascheroni constant.
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// `c(n)`: the average path length of an unsuccessful search in a binary search
/// tree of `n` points, `2 H(n-1) - 2 (n-1) / n` with `H(i) ≈ ln(i) + γ`;
/// `c(1) = 0` and `c(2) = 1` (as in scikit-learn).
pub fn average_path_length(n: usize) -> f64 {
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        _ => {
            let n = n as f64;
            2.0 * ((n - 1.0).ln() + EULER_GAMMA) - 2.0 * (n - 1.0) / n
        }
    }
}

/// How the decision threshold on the score is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Contamination {
    /// A score above 0.5 is an anomaly (scikit-learn's `contamination="auto"`).
    #[default]
    Auto,
    /// The expected share of anomalies in the training data, in `(0, 0.5]`: the
    /// threshold is the `1 - fraction` quantile of the training rows' scores.
    Fraction(f64),
}

impl Serialize for Contamination {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Contamination::Auto => s.serialize_str("auto"),
            Contamination::Fraction(f) => s.serialize_f64(*f),
        }
    }
}

impl<'de> Deserialize<'de> for Contamination {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Contamination;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"auto\" or a fraction in (0, 0.5]")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Contamination, E> {
                if v.eq_ignore_ascii_case("auto") {
                    Ok(Contamination::Auto)
                } else {
                    Err(E::custom(format!(
                        "contamination `{v}` is neither \"auto\" nor a fraction in (0, 0.5]"
                    )))
                }
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Contamination, E> {
                if v > 0.0 && v <= 0.5 {
                    Ok(Contamination::Fraction(v))
                } else {
                    Err(E::custom(format!("contamination {v} is outside (0, 0.5]")))
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Contamination, E> {
                self.visit_f64(v as f64)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Contamination, E> {
                self.visit_f64(v as f64)
            }
        }
        d.deserialize_any(V)
    }
}

/// Parameters of [`IsolationForest::fit`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ForestParams {
    /// Number of trees (scikit-learn's default 100; the legacy used 120–200).
    pub trees: usize,
    /// Rows per tree (ψ), 256 in the paper and in scikit-learn.
    pub sample_size: usize,
    /// How the threshold is chosen.
    pub contamination: Contamination,
    /// The random seed: the same seed and data give the same forest.
    pub seed: u64,
}

impl Default for ForestParams {
    fn default() -> Self {
        ForestParams {
            trees: 100,
            sample_size: 256,
            contamination: Contamination::Auto,
            seed: 0,
        }
    }
}

/// One node: an internal split (`feature < LEAF`) or a leaf whose `value` is the
/// path length contribution `depth + c(size)`.
#[derive(Debug, Clone, Copy)]
struct Node {
    /// Split value (internal) or path length (leaf).
    value: f32,
    /// Index of the left child inside the tree; the right child is `left + 1`.
    left: u16,
    /// The split feature, or [`LEAF`].
    feature: u8,
}

const LEAF: u8 = u8::MAX;

/// The most features a forest takes.
pub const MAX_DIMS: usize = 16;

/// A trained Isolation Forest.
#[derive(Debug, Clone)]
pub struct IsolationForest {
    nodes: Vec<Node>,
    /// Start of each tree in `nodes`.
    roots: Vec<u32>,
    dims: usize,
    psi: usize,
    c_psi: f64,
    threshold: f64,
}

impl IsolationForest {
    /// Grows a forest on `rows` (every row the same length, 1 to [`MAX_DIMS`] features,
    /// all values finite).
    pub fn fit<R: AsRef<[f64]>>(rows: &[R], params: &ForestParams) -> Result<Self, CoreError> {
        let bad = |m: String| Err(CoreError::Config(format!("isolation forest: {m}")));
        if rows.is_empty() {
            return bad("no training rows".into());
        }
        if params.trees == 0 {
            return bad("trees must be at least 1".into());
        }
        if params.sample_size < 2 || params.sample_size > u16::MAX as usize / 2 {
            return bad(format!(
                "sample_size must be in 2..={}, not {}",
                u16::MAX / 2,
                params.sample_size
            ));
        }
        if let Contamination::Fraction(f) = params.contamination {
            if !(f > 0.0 && f <= 0.5) {
                return bad(format!("contamination {f} is outside (0, 0.5]"));
            }
        }
        let dims = rows[0].as_ref().len();
        if dims == 0 || dims > MAX_DIMS {
            return bad(format!(
                "rows must have 1..={MAX_DIMS} features, not {dims}"
            ));
        }
        let mut data: Vec<f32> = Vec::with_capacity(rows.len() * dims);
        for (i, r) in rows.iter().enumerate() {
            let r = r.as_ref();
            if r.len() != dims {
                return bad(format!(
                    "row {i} has {} features, row 0 has {dims}",
                    r.len()
                ));
            }
            if let Some(v) = r.iter().find(|v| !v.is_finite()) {
                return bad(format!("row {i} holds a non-finite value {v}"));
            }
            data.extend(r.iter().map(|&v| v as f32));
        }
        Ok(Self::fit_f32(&data, dims, params))
    }

    /// Grows a forest on row-major `data` of `dims` columns, already checked.
    pub(crate) fn fit_f32(data: &[f32], dims: usize, params: &ForestParams) -> Self {
        let n = data.len() / dims;
        let psi = params.sample_size.min(n).max(1);
        let height_limit = (psi as f64).log2().ceil().max(1.0) as usize;
        let mut rng = Rng::new(params.seed);
        let mut perm: Vec<u32> = (0..n as u32).collect();
        let mut nodes = Vec::with_capacity(params.trees * psi);
        let mut roots = Vec::with_capacity(params.trees);
        let mut builder = Builder {
            data,
            dims,
            height_limit,
            rng: &mut rng,
            tree: Vec::with_capacity(2 * psi),
        };
        for _ in 0..params.trees {
            // Partial Fisher–Yates: the first psi entries become a uniform sample
            // without replacement (from any starting permutation).
            for i in 0..psi {
                let j = i + (builder.rng.next_u64() % (n - i) as u64) as usize;
                perm.swap(i, j);
            }
            let mut sample: Vec<u32> = perm[..psi].to_vec();
            builder.tree.clear();
            builder.tree.push(Node {
                value: 0.0,
                left: 0,
                feature: LEAF,
            });
            builder.grow(0, &mut sample, 0);
            roots.push(nodes.len() as u32);
            nodes.extend_from_slice(&builder.tree);
        }
        let mut forest = IsolationForest {
            nodes,
            roots,
            dims,
            psi,
            c_psi: average_path_length(psi).max(f64::MIN_POSITIVE),
            threshold: 0.5,
        };
        if let Contamination::Fraction(f) = params.contamination {
            let mut scores: Vec<f64> = data
                .chunks_exact(dims)
                .map(|r| forest.score_f32(r))
                .collect();
            forest.threshold = quantile(&mut scores, 1.0 - f);
        }
        forest
    }

    /// The number of features the forest was trained on.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// The number of trees.
    pub fn trees(&self) -> usize {
        self.roots.len()
    }

    /// ψ, the rows per tree actually used (`min(sample_size, rows)`).
    pub fn sample_size(&self) -> usize {
        self.psi
    }

    /// The total number of nodes (for memory accounting: 8 bytes each).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Scores above this are anomalies.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// Overrides the decision threshold.
    pub fn set_threshold(&mut self, threshold: f64) {
        self.threshold = threshold;
    }

    /// The mean path length `E[h(x)]` over the trees. `x` must have [`Self::dims`]
    /// values; missing ones read as 0 and extra ones are ignored.
    pub fn mean_path_length(&self, x: &[f64]) -> f64 {
        let mut buf = [0f32; MAX_DIMS];
        for (b, v) in buf.iter_mut().zip(x) {
            *b = *v as f32;
        }
        self.path_f32(&buf[..self.dims])
    }

    /// The anomaly score `2^(-E[h(x)] / c(ψ))`, in (0, 1).
    pub fn score(&self, x: &[f64]) -> f64 {
        (-self.mean_path_length(x) / self.c_psi).exp2()
    }

    /// True when `x` scores above the threshold.
    pub fn is_anomaly(&self, x: &[f64]) -> bool {
        self.score(x) > self.threshold
    }

    pub(crate) fn score_f32(&self, x: &[f32]) -> f64 {
        (-self.path_f32(x) / self.c_psi).exp2()
    }

    fn path_f32(&self, x: &[f32]) -> f64 {
        // Walk the trees four at a time so that their (independent) memory loads
        // overlap: with a forest per machine the nodes are rarely in cache.
        const LANES: usize = 4;
        let mut total = 0.0f64;
        let nodes = &self.nodes[..];
        let mut chunks = self.roots.chunks_exact(LANES);
        for chunk in &mut chunks {
            let mut base = [0usize; LANES];
            let mut cur = [0usize; LANES];
            let mut done = [false; LANES];
            for l in 0..LANES {
                base[l] = chunk[l] as usize;
                cur[l] = base[l];
            }
            loop {
                let mut all = true;
                for l in 0..LANES {
                    if done[l] {
                        continue;
                    }
                    let n = nodes[cur[l]];
                    if n.feature == LEAF {
                        done[l] = true;
                        total += n.value as f64;
                    } else {
                        all = false;
                        let go_right = x.get(n.feature as usize).copied().unwrap_or(0.0) > n.value;
                        cur[l] = base[l] + n.left as usize + go_right as usize;
                    }
                }
                if all {
                    break;
                }
            }
        }
        for &root in chunks.remainder() {
            let base = root as usize;
            let mut i = base;
            loop {
                let n = nodes[i];
                if n.feature == LEAF {
                    total += n.value as f64;
                    break;
                }
                let go_right = x.get(n.feature as usize).copied().unwrap_or(0.0) > n.value;
                i = base + n.left as usize + go_right as usize;
            }
        }
        total / self.roots.len().max(1) as f64
    }
}

struct Builder<'a> {
    data: &'a [f32],
    dims: usize,
    height_limit: usize,
    rng: &'a mut Rng,
    tree: Vec<Node>,
}

impl Builder<'_> {
    fn leaf(&mut self, at: usize, depth: usize, size: usize) {
        self.tree[at] = Node {
            value: (depth as f64 + average_path_length(size)) as f32,
            left: 0,
            feature: LEAF,
        };
    }

    fn grow(&mut self, at: usize, rows: &mut [u32], depth: usize) {
        if depth >= self.height_limit || rows.len() <= 1 {
            self.leaf(at, depth, rows.len());
            return;
        }
        // Ranges of every feature in this node; pick among the non-constant ones.
        let mut lo_all = [f32::INFINITY; MAX_DIMS];
        let mut hi_all = [f32::NEG_INFINITY; MAX_DIMS];
        let lo = &mut lo_all[..self.dims];
        let hi = &mut hi_all[..self.dims];
        for &r in rows.iter() {
            let row = &self.data[r as usize * self.dims..][..self.dims];
            for ((l, h), &v) in lo.iter_mut().zip(hi.iter_mut()).zip(row) {
                *l = l.min(v);
                *h = h.max(v);
            }
        }
        let varying = lo.iter().zip(hi.iter()).filter(|(l, h)| h > l).count();
        if varying == 0 {
            // Identical rows cannot be separated.
            self.leaf(at, depth, rows.len());
            return;
        }
        let mut pick = (self.rng.next_u64() % varying as u64) as usize;
        let mut feature = 0;
        for (f, (l, h)) in lo.iter().zip(hi.iter()).enumerate() {
            if h > l {
                if pick == 0 {
                    feature = f;
                    break;
                }
                pick -= 1;
            }
        }
        let (l, h) = (lo[feature], hi[feature]);
        let mut split = l + (self.rng.unit() as f32) * (h - l);
        if !(split >= l && split < h) {
            // Rounding pushed it to the max: both sides must stay non-empty.
            split = l;
        }
        // Partition: `<= split` to the left (holds the min), `> split` to the right.
        let mut i = 0;
        for j in 0..rows.len() {
            if self.data[rows[j] as usize * self.dims + feature] <= split {
                rows.swap(i, j);
                i += 1;
            }
        }
        let left = self.tree.len();
        let blank = Node {
            value: 0.0,
            left: 0,
            feature: LEAF,
        };
        self.tree.push(blank);
        self.tree.push(blank);
        self.tree[at] = Node {
            value: split,
            left: left as u16,
            feature: feature as u8,
        };
        let (a, b) = rows.split_at_mut(i);
        self.grow(left, a, depth + 1);
        self.grow(left + 1, b, depth + 1);
    }
}

/// The `q` quantile (0..=1) of `values` by linear interpolation; sorts `values`.
pub(crate) fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (values.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    values[lo] + (values[hi] - values[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaussian(n: usize, dims: usize, seed: u64) -> Vec<Vec<f64>> {
        let mut r = Rng::new(seed);
        (0..n)
            .map(|_| (0..dims).map(|_| r.normal()).collect())
            .collect()
    }

    #[test]
    fn c_n_matches_the_formula() {
        assert_eq!(average_path_length(0), 0.0);
        assert_eq!(average_path_length(1), 0.0);
        assert_eq!(average_path_length(2), 1.0);
        // 2 (ln 2 + γ) - 2·2/3
        assert!((average_path_length(3) - 1.207_392_357_589_813).abs() < 1e-12);
        // c(256) = 2 (ln 255 + γ) - 2·255/256 ≈ 10.2448
        let c256 = 2.0 * (255f64.ln() + EULER_GAMMA) - 2.0 * 255.0 / 256.0;
        assert!((average_path_length(256) - c256).abs() < 1e-12);
        assert!((average_path_length(256) - 10.2448).abs() < 1e-3);
        // Grows like 2 ln n.
        assert!(average_path_length(1 << 20) > average_path_length(1 << 10));
    }

    #[test]
    fn an_obvious_outlier_scores_higher_than_inliers() {
        let rows = gaussian(1000, 3, 1);
        let f = IsolationForest::fit(&rows, &ForestParams::default()).unwrap();
        let outlier = f.score(&[8.0, -8.0, 8.0]);
        let centre = f.score(&[0.0, 0.0, 0.0]);
        assert!(outlier > 0.7, "outlier {outlier}");
        assert!(centre < 0.5, "centre {centre}");
        let max_inlier = rows.iter().map(|r| f.score(r)).fold(0.0, f64::max);
        assert!(outlier > max_inlier, "{outlier} vs {max_inlier}");
        assert!(f.is_anomaly(&[8.0, -8.0, 8.0]));
        assert!(!f.is_anomaly(&[0.0, 0.0, 0.0]));
    }

    #[test]
    fn scores_are_in_the_open_unit_interval() {
        let rows = gaussian(600, 4, 2);
        let f = IsolationForest::fit(&rows, &ForestParams::default()).unwrap();
        for x in rows.iter().chain(&gaussian(50, 4, 3)) {
            let s = f.score(x);
            assert!(s > 0.0 && s < 1.0, "{s}");
        }
        for x in [[1e9, 1e9, 1e9, 1e9], [-1e9, 0.0, 0.0, 0.0]] {
            let s = f.score(&x);
            assert!(s > 0.0 && s < 1.0, "{s}");
        }
        // A tiny forest on identical rows: every path is the root leaf with c(ψ).
        let same = vec![vec![1.0, 1.0]; 10];
        let f = IsolationForest::fit(&same, &ForestParams::default()).unwrap();
        assert!((f.score(&[1.0, 1.0]) - 0.5).abs() < 1e-6);
    }

    #[test]
    fn deterministic_for_a_seed_and_different_across_seeds() {
        let rows = gaussian(500, 3, 4);
        let p = ForestParams {
            seed: 77,
            ..ForestParams::default()
        };
        let a = IsolationForest::fit(&rows, &p).unwrap();
        let b = IsolationForest::fit(&rows, &p).unwrap();
        let c = IsolationForest::fit(&rows, &ForestParams { seed: 78, ..p }).unwrap();
        let probe = [0.5, 1.5, -2.0];
        assert_eq!(a.score(&probe), b.score(&probe));
        assert_eq!(a.node_count(), b.node_count());
        assert_ne!(a.score(&probe), c.score(&probe));
    }

    #[test]
    fn uniform_data_scores_around_one_half() {
        // On uniform data no region is easier to isolate: scores gather near 0.5
        // (a little below on average, since ψ < n and the trees are height-limited).
        let mut r = Rng::new(5);
        let rows: Vec<Vec<f64>> = (0..2000).map(|_| vec![r.unit(), r.unit()]).collect();
        let f = IsolationForest::fit(&rows, &ForestParams::default()).unwrap();
        let scores: Vec<f64> = (0..500).map(|_| f.score(&[r.unit(), r.unit()])).collect();
        let mean = scores.iter().sum::<f64>() / scores.len() as f64;
        assert!((0.38..=0.55).contains(&mean), "mean {mean}");
        let spread = scores.iter().fold(0.0f64, |m, s| m.max((s - mean).abs()));
        assert!(spread < 0.2, "spread {spread}");
    }

    #[test]
    fn an_injected_far_cluster_is_flagged() {
        let mut rows = gaussian(990, 2, 6);
        let mut r = Rng::new(7);
        for _ in 0..10 {
            rows.push(vec![10.0 + r.normal() * 0.1, 10.0 + r.normal() * 0.1]);
        }
        let f = IsolationForest::fit(
            &rows,
            &ForestParams {
                contamination: Contamination::Fraction(0.01),
                ..ForestParams::default()
            },
        )
        .unwrap();
        let flagged: Vec<usize> = (0..rows.len())
            .filter(|&i| f.is_anomaly(&rows[i]))
            .collect();
        let cluster_flagged = flagged.iter().filter(|&&i| i >= 990).count();
        assert!(
            cluster_flagged >= 9,
            "cluster flagged {cluster_flagged}, all {flagged:?}"
        );
        // The threshold is the 99 % quantile: about 1 % of the rows are above it.
        assert!(flagged.len() <= 12, "{}", flagged.len());
    }

    #[test]
    fn contamination_sets_the_training_quantile() {
        let rows = gaussian(1000, 3, 8);
        let p = ForestParams {
            contamination: Contamination::Fraction(0.1),
            ..ForestParams::default()
        };
        let f = IsolationForest::fit(&rows, &p).unwrap();
        let above = rows.iter().filter(|r| f.is_anomaly(r)).count();
        assert!((90..=110).contains(&above), "{above}");
        let auto = IsolationForest::fit(&rows, &ForestParams::default()).unwrap();
        assert_eq!(auto.threshold(), 0.5);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let empty: Vec<Vec<f64>> = vec![];
        assert!(IsolationForest::fit(&empty, &ForestParams::default()).is_err());
        let ragged = vec![vec![1.0, 2.0], vec![1.0]];
        let e = IsolationForest::fit(&ragged, &ForestParams::default()).unwrap_err();
        assert!(e.to_string().contains("row 1"), "{e}");
        let nan = vec![vec![1.0, f64::NAN]];
        assert!(IsolationForest::fit(&nan, &ForestParams::default()).is_err());
        let p = ForestParams {
            trees: 0,
            ..ForestParams::default()
        };
        assert!(IsolationForest::fit(&[vec![1.0]], &p).is_err());
        let p = ForestParams {
            contamination: Contamination::Fraction(0.9),
            ..ForestParams::default()
        };
        assert!(IsolationForest::fit(&[vec![1.0]], &p).is_err());
    }

    #[test]
    fn trees_respect_the_height_limit() {
        let rows = gaussian(256, 2, 9);
        let f = IsolationForest::fit(&rows, &ForestParams::default()).unwrap();
        // Height limit 8: the longest path is 8 + c(leaf size) and no tree has
        // more than 2^9 - 1 nodes.
        assert!(f.node_count() <= 100 * 511);
        assert!(f.mean_path_length(&[0.0, 0.0]) < 8.0 + average_path_length(256));
        assert_eq!(f.sample_size(), 256);
        assert_eq!(f.trees(), 100);
    }

    #[test]
    fn quantile_interpolates() {
        let mut v = vec![4.0, 1.0, 3.0, 2.0, 5.0];
        assert_eq!(quantile(&mut v, 0.5), 3.0);
        assert_eq!(quantile(&mut v, 1.0), 5.0);
        assert_eq!(quantile(&mut v, 0.125), 1.5);
    }
}
