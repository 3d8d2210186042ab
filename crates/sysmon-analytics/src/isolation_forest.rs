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
//! Features are quantized to 16 bits over their training range (which changes
//! no split an Isolation Forest can make, see `Quantizer`), so a node takes 4
//! bytes; trees are laid out breadth first from a cache-line boundary. A forest
//! per machine thus stays small (100 trees of ~120 nodes on the detector's
//! inputs: ~50 KB) and is scored with branch-free, fixed-length walks of sixteen
//! trees at a time. The forest is deterministic for a given seed.

use serde::{Deserialize, Serialize};

use sysmon_core::error::CoreError;
use sysmon_core::synth::Rng;

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

/// One node, 4 bytes, on features quantized to `u16` ([`Quantizer`]).
/// Internal: go to `left` when `x[feature] <= value`, else to `left + 1`. Leaf:
/// `feature` is the forest's `dims` (a slot that always reads 0, so the walk stays
/// put), `left` is the leaf's own index and `value` its path length
/// `depth + c(size)` in units of 1/[`PATH_SCALE`]. Walks are thus branch-free and
/// of fixed length.
#[derive(Debug, Clone, Copy, Default)]
struct Node {
    /// Split (internal) or scaled path length (leaf).
    value: u16,
    /// `left | feature << 12`.
    meta: u16,
}

impl Node {
    fn new(value: u16, left: usize, feature: usize) -> Node {
        Node {
            value,
            meta: (left as u16 & 0x0FFF) | ((feature as u16) << 12),
        }
    }
    fn left(self) -> usize {
        (self.meta & 0x0FFF) as usize
    }
    fn feature(self) -> usize {
        (self.meta >> 12) as usize
    }
}

/// Sixteen nodes: a cache line. Trees start on a line, so a tree's top four
/// levels (15 nodes, breadth first) are one line.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
struct Line([Node; 16]);

/// Leaves store path lengths in units of 1/1024.
const PATH_SCALE: f64 = 1024.0;

/// The most features a forest takes.
pub const MAX_DIMS: usize = 15;

/// The largest `sample_size` (ψ): a tree has at most `2ψ - 1 < 4096` nodes.
pub const MAX_SAMPLE_SIZE: usize = 2048;

/// Maps each feature linearly onto `0..=65535` over its training range; values
/// outside the range clamp to the ends. This loses nothing an Isolation Forest
/// uses: splits fall strictly inside a node's training range, so a value beyond
/// the range takes the same path as the range's end.
#[derive(Debug, Clone, Copy)]
struct Quantizer {
    lo: [f32; MAX_DIMS],
    scale: [f32; MAX_DIMS],
}

impl Quantizer {
    fn fit(data: &[f32], dims: usize) -> Quantizer {
        let mut lo = [f32::INFINITY; MAX_DIMS];
        let mut hi = [f32::NEG_INFINITY; MAX_DIMS];
        for row in data.chunks_exact(dims) {
            for ((l, h), v) in lo.iter_mut().zip(hi.iter_mut()).zip(row) {
                *l = l.min(*v);
                *h = h.max(*v);
            }
        }
        let mut scale = [0f32; MAX_DIMS];
        for f in 0..dims {
            if hi[f] > lo[f] {
                scale[f] = 65535.0 / (hi[f] - lo[f]);
            } else {
                lo[f] = if lo[f].is_finite() { lo[f] } else { 0.0 };
            }
        }
        Quantizer { lo, scale }
    }

    /// `x` quantized, plus the leaves' slot (0) at index `dims`.
    fn quantize(&self, x: &[f32], dims: usize) -> [u16; MAX_DIMS + 1] {
        let mut q = [0u16; MAX_DIMS + 1];
        for (f, slot) in q.iter_mut().enumerate().take(dims) {
            let v = x.get(f).copied().unwrap_or(0.0);
            // `as` saturates (and maps NaN to 0).
            *slot = ((v - self.lo[f]) * self.scale[f] + 0.5).clamp(0.0, 65535.0) as u16;
        }
        q
    }
}

/// A trained Isolation Forest.
#[derive(Debug, Clone)]
pub struct IsolationForest {
    lines: Vec<Line>,
    /// First line of each tree.
    roots: Vec<u32>,
    quantizer: Quantizer,
    /// The height limit: every walk takes exactly this many steps.
    height: usize,
    dims: usize,
    psi: usize,
    nodes: usize,
    c_psi: f64,
    threshold: f64,
}

impl IsolationForest {
    /// Grows a forest on `rows` (every row the same length, 1 to [`MAX_DIMS`]
    /// features, all values finite).
    pub fn fit<R: AsRef<[f64]>>(rows: &[R], params: &ForestParams) -> Result<Self, CoreError> {
        let bad = |m: String| Err(CoreError::Config(format!("isolation forest: {m}")));
        if rows.is_empty() {
            return bad("no training rows".into());
        }
        if params.trees == 0 {
            return bad("trees must be at least 1".into());
        }
        if params.sample_size < 2 || params.sample_size > MAX_SAMPLE_SIZE {
            return bad(format!(
                "sample_size must be in 2..={MAX_SAMPLE_SIZE}, not {}",
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

    /// Grows a forest on row-major `data` of `dims` columns (1..=[`MAX_DIMS`]),
    /// already checked; `sample_size` is capped at [`MAX_SAMPLE_SIZE`].
    pub(crate) fn fit_f32(data: &[f32], dims: usize, params: &ForestParams) -> Self {
        let dims = dims.clamp(1, MAX_DIMS);
        let n = data.len() / dims;
        let psi = params.sample_size.min(MAX_SAMPLE_SIZE).min(n).max(1);
        let height_limit = (psi as f64).log2().ceil().max(1.0) as usize;
        let quantizer = Quantizer::fit(&data[..n * dims], dims);
        let qdata: Vec<u16> = data[..n * dims]
            .chunks_exact(dims)
            .flat_map(|r| {
                let q = quantizer.quantize(r, dims);
                q.into_iter().take(dims)
            })
            .collect();
        let mut rng = Rng::new(params.seed);
        let mut perm: Vec<u32> = (0..n as u32).collect();
        let mut lines: Vec<Line> = Vec::with_capacity(params.trees * psi / 8);
        let mut roots = Vec::with_capacity(params.trees);
        let mut nodes = 0;
        let mut builder = Builder {
            data: &qdata,
            dims,
            height_limit,
            rng: &mut rng,
            tree: Vec::with_capacity(2 * psi),
            c_table: (0..=psi).map(average_path_length).collect(),
            queue: std::collections::VecDeque::with_capacity(psi),
        };
        let mut sample: Vec<u32> = vec![0; psi];
        for _ in 0..params.trees {
            // Partial Fisher–Yates: the first psi entries become a uniform sample
            // without replacement (from any starting permutation).
            for i in 0..psi {
                let j = i + (builder.rng.next_u64() % (n - i) as u64) as usize;
                perm.swap(i, j);
            }
            sample.copy_from_slice(&perm[..psi]);
            builder.grow(&mut sample);
            roots.push(lines.len() as u32);
            nodes += builder.tree.len();
            for chunk in builder.tree.chunks(16) {
                let mut line = Line::default();
                line.0[..chunk.len()].copy_from_slice(chunk);
                lines.push(line);
            }
        }
        let mut forest = IsolationForest {
            lines,
            roots,
            quantizer,
            height: height_limit,
            dims,
            psi,
            nodes,
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

    /// The total number of nodes.
    pub fn node_count(&self) -> usize {
        self.nodes
    }

    /// Bytes the trees occupy (4 bytes a node, each tree padded to 64 bytes).
    pub fn memory_bytes(&self) -> usize {
        self.lines.len() * std::mem::size_of::<Line>() + self.roots.len() * 4
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
        let xs = self.quantizer.quantize(x, self.dims);
        // Walk sixteen trees at a time, in lock-step and without branches: their
        // (independent) memory loads overlap, which matters when a forest per
        // machine is rarely in cache, and no comparison is mispredicted.
        const LANES: usize = 16;
        let lines = &self.lines[..];
        let mut total = 0u64;
        for chunk in self.roots.chunks(LANES) {
            let mut base = [0usize; LANES];
            for (b, r) in base.iter_mut().zip(chunk) {
                *b = *r as usize;
            }
            let k = chunk.len();
            let mut cur = [0usize; LANES];
            for _ in 0..self.height {
                for l in 0..k {
                    let i = cur[l];
                    let n = lines[base[l] + i / 16].0[i % 16];
                    let right = xs[n.feature()] > n.value;
                    cur[l] = n.left() + right as usize;
                }
            }
            for l in 0..k {
                let i = cur[l];
                total += lines[base[l] + i / 16].0[i % 16].value as u64;
            }
        }
        total as f64 / PATH_SCALE / self.roots.len().max(1) as f64
    }
}

struct Builder<'a> {
    data: &'a [u16],
    dims: usize,
    height_limit: usize,
    rng: &'a mut Rng,
    tree: Vec<Node>,
    /// `c(n)` for `n` in `0..=ψ`.
    c_table: Vec<f64>,
    /// Nodes to grow: (node index, rows start, rows end, depth).
    queue: std::collections::VecDeque<(usize, usize, usize, usize)>,
}

impl Builder<'_> {
    fn leaf(&mut self, at: usize, depth: usize, size: usize) {
        let path = depth as f64 + self.c_table.get(size).copied().unwrap_or(0.0);
        self.tree[at] = Node::new((path * PATH_SCALE).round() as u16, at, self.dims);
    }

    /// Grows one tree on `rows` into `self.tree`, breadth first, so that the top
    /// levels of a tree share a cache line.
    fn grow(&mut self, rows: &mut [u32]) {
        self.tree.clear();
        self.tree.push(Node::default());
        self.queue.clear();
        self.queue.push_back((0, 0, rows.len(), 0));
        let dims = self.dims;
        while let Some((at, start, end, depth)) = self.queue.pop_front() {
            let rows = &mut rows[start..end];
            if depth >= self.height_limit || rows.len() <= 1 {
                self.leaf(at, depth, rows.len());
                continue;
            }
            // A feature drawn uniformly among those not constant in this node:
            // draw without replacement until one varies.
            let mut order = [0u8; MAX_DIMS];
            for (i, o) in order.iter_mut().enumerate().take(dims) {
                *o = i as u8;
            }
            let mut chosen = None;
            for k in 0..dims {
                let j = k + (self.rng.next_u64() % (dims - k) as u64) as usize;
                order.swap(k, j);
                let f = order[k] as usize;
                let (mut lo, mut hi) = (u16::MAX, 0u16);
                for &r in rows.iter() {
                    let v = self.data[r as usize * dims + f];
                    lo = lo.min(v);
                    hi = hi.max(v);
                }
                if hi > lo {
                    chosen = Some((f, lo, hi));
                    break;
                }
            }
            let Some((feature, l, h)) = chosen else {
                // Identical rows cannot be separated.
                self.leaf(at, depth, rows.len());
                continue;
            };
            // Uniform on the grid in [l, h): both sides stay non-empty.
            let split = l + (self.rng.unit() * (h - l) as f64) as u16;
            let split = split.min(h - 1);
            // Partition: `<= split` to the left (holds the min), `> split` right.
            // Branch-free: always swap, advance only past left rows (rows[..i]
            // are left, rows[i..j] right).
            let mut i = 0;
            for j in 0..rows.len() {
                let r = rows[j];
                let goes_left = self.data[r as usize * dims + feature] <= split;
                rows[j] = rows[i];
                rows[i] = r;
                i += goes_left as usize;
            }
            let left = self.tree.len();
            self.tree.push(Node::default());
            self.tree.push(Node::default());
            self.tree[at] = Node::new(split, left, feature);
            self.queue.push_back((left, start, start + i, depth + 1));
            self.queue.push_back((left + 1, start + i, end, depth + 1));
        }
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
        assert!((f.score(&[1.0, 1.0]) - 0.5).abs() < 1e-3);
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
        assert!(f.memory_bytes() <= 100 * 512 * 4 + 100 * 64 + 400);
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
