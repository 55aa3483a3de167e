//! `lt-stability` owns the paper's stability measures as pure math with no IO: the L2 distance and
//! the angle between two trained weight vectors, restricted to a subnetwork's mask, over all the
//! prunable tensors together and per tensor (Section 2 of the paper); summaries over samples
//! (mean, min, max, as the paper's error bars); and the error barrier of a linear interpolation
//! (Frankle et al., ICML 2020).
//!
//! It does not train, load or choose anything: weights arrive as flat `f32` vectors keyed by tensor
//! name, masks as `u8` 0/1 vectors; the lottery runner trains the copies and calls in here.
//! Sums are accumulated in `f64`, in tensor-name order, so results do not depend on thread counts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Flat weights by tensor name.
pub type Weights = BTreeMap<String, Vec<f32>>;

/// A 0/1 mask by tensor name (the subnetwork m).
pub type MaskBits = BTreeMap<String, Vec<u8>>;

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor of the mask is missing from one of the weight sets, or has another length.
    #[error("tensor {tensor}: {message}")]
    Tensor {
        /// The tensor.
        tensor: String,
        /// What is wrong.
        message: String,
    },
    /// Nothing to measure.
    #[error("{0}")]
    Empty(String),
}

/// The distance between two weight vectors.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Distance {
    /// ‖m⊙a − m⊙b‖₂.
    pub l2: f64,
    /// The angle between m⊙a and m⊙b in degrees (0 when either is the zero vector and the other
    /// is too, 90 when only one is).
    pub angle: f64,
}

/// Overall and per-tensor distances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Distances {
    /// Over all the mask's tensors as one vector.
    pub total: Distance,
    /// Per tensor.
    pub per_tensor: BTreeMap<String, Distance>,
}

#[derive(Default, Clone, Copy)]
struct Sums {
    diff2: f64,
    dot: f64,
    a2: f64,
    b2: f64,
}

impl Sums {
    fn add(&mut self, o: Sums) {
        self.diff2 += o.diff2;
        self.dot += o.dot;
        self.a2 += o.a2;
        self.b2 += o.b2;
    }

    fn distance(self) -> Distance {
        let norms = (self.a2 * self.b2).sqrt();
        let angle = if norms == 0.0 {
            if self.a2 == self.b2 { 0.0 } else { 90.0 }
        } else {
            (self.dot / norms).clamp(-1.0, 1.0).acos().to_degrees()
        };
        Distance { l2: self.diff2.sqrt(), angle }
    }
}

/// The distance between `a` and `b` restricted to `mask` (every tensor of the mask must be in
/// both weight sets with the mask's length). Tensors not in the mask are ignored.
pub fn distance(a: &Weights, b: &Weights, mask: &MaskBits) -> Result<Distances, Error> {
    if mask.is_empty() {
        return Err(Error::Empty("the mask has no tensors".into()));
    }
    let mut total = Sums::default();
    let mut per_tensor = BTreeMap::new();
    for (name, bits) in mask {
        fn get<'w>(w: &'w Weights, name: &str, bits: &[u8], which: &str) -> Result<&'w Vec<f32>, Error> {
            let v = w.get(name).ok_or_else(|| Error::Tensor {
                tensor: name.to_string(),
                message: format!("missing from the {which} weights"),
            })?;
            if v.len() != bits.len() {
                return Err(Error::Tensor {
                    tensor: name.to_string(),
                    message: format!("{} values in the {which} weights, the mask has {}", v.len(), bits.len()),
                });
            }
            Ok(v)
        }
        let (va, vb) = (get(a, name, bits, "first")?, get(b, name, bits, "second")?);
        let mut s = Sums::default();
        for ((&x, &y), &m) in va.iter().zip(vb).zip(bits) {
            if m != 0 {
                let (x, y) = (x as f64, y as f64);
                s.diff2 += (x - y) * (x - y);
                s.dot += x * y;
                s.a2 += x * x;
                s.b2 += y * y;
            }
        }
        total.add(s);
        per_tensor.insert(name.clone(), s.distance());
    }
    Ok(Distances { total: total.distance(), per_tensor })
}

/// Mean, min and max over samples (the paper's error bars are min and max).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Number of samples.
    pub n: usize,
    /// Mean.
    pub mean: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl Stats {
    /// The statistics of `values`; `None` when empty.
    pub fn of(values: &[f64]) -> Option<Stats> {
        if values.is_empty() {
            return None;
        }
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(Stats { n: values.len(), mean: values.iter().sum::<f64>() / values.len() as f64, min, max })
    }
}

/// All unordered pairs `(i, j)`, `i < j`, of `n` samples, in order.
pub fn pairs(n: usize) -> Vec<(usize, usize)> {
    (0..n).flat_map(|i| (i + 1..n).map(move |j| (i, j))).collect()
}

/// The point `(1 − α)·a + α·b` of the line between two weight sets, tensor by tensor (the same
/// tensors must be in both). Used for linear-mode interpolation.
pub fn interpolate(a: &Weights, b: &Weights, alpha: f32) -> Result<Weights, Error> {
    a.iter()
        .map(|(name, va)| {
            let vb = b.get(name).filter(|vb| vb.len() == va.len()).ok_or_else(|| Error::Tensor {
                tensor: name.clone(),
                message: "missing from the second weights or of another length".into(),
            })?;
            Ok((name.clone(), va.iter().zip(vb).map(|(x, y)| (1.0 - alpha) * x + alpha * y).collect()))
        })
        .collect()
}

/// The error barrier of an interpolation curve (test errors at evenly spaced α from 0 to 1): the
/// largest rise of the error above the mean of the two end points' errors (Frankle et al. 2020's
/// instability). Zero or negative means the two networks are linearly connected.
pub fn error_barrier(errors: &[f64]) -> Option<f64> {
    let (first, last) = (errors.first()?, errors.last()?);
    let ends = (first + last) / 2.0;
    errors.iter().map(|e| e - ends).fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

    use proptest::prelude::*;

    use super::*;

    fn one(name: &str, v: Vec<f32>) -> Weights {
        BTreeMap::from([(name.to_string(), v)])
    }

    fn ones(name: &str, n: usize) -> MaskBits {
        BTreeMap::from([(name.to_string(), vec![1; n])])
    }

    #[test]
    fn the_distance_between_w_and_2w_has_angle_zero_and_l2_of_w() {
        let w = vec![3.0, -4.0, 0.0];
        let d = distance(&one("a", w.clone()), &one("a", w.iter().map(|x| 2.0 * x).collect()), &ones("a", 3)).unwrap();
        assert!(d.total.angle.abs() < 1e-6, "{d:?}");
        assert!((d.total.l2 - 5.0).abs() < 1e-12);
    }

    #[test]
    fn orthogonal_and_opposite_vectors() {
        let m = ones("a", 2);
        let d = distance(&one("a", vec![1.0, 0.0]), &one("a", vec![0.0, 1.0]), &m).unwrap();
        assert!((d.total.angle - 90.0).abs() < 1e-9);
        let d = distance(&one("a", vec![1.0, 1.0]), &one("a", vec![-1.0, -1.0]), &m).unwrap();
        assert!((d.total.angle - 180.0).abs() < 1e-6);
    }

    #[test]
    fn pruned_weights_do_not_count() {
        let mask = BTreeMap::from([("a".to_string(), vec![1, 0])]);
        let d = distance(&one("a", vec![1.0, 100.0]), &one("a", vec![1.0, -100.0]), &mask).unwrap();
        assert_eq!(d.total, Distance { l2: 0.0, angle: 0.0 });
    }

    #[test]
    fn the_total_is_over_all_tensors_as_one_vector() {
        let a = BTreeMap::from([("x".to_string(), vec![1.0]), ("y".to_string(), vec![0.0])]);
        let b = BTreeMap::from([("x".to_string(), vec![0.0]), ("y".to_string(), vec![1.0])]);
        let mask = BTreeMap::from([("x".to_string(), vec![1]), ("y".to_string(), vec![1])]);
        let d = distance(&a, &b, &mask).unwrap();
        assert!((d.total.l2 - 2f64.sqrt()).abs() < 1e-12);
        assert!((d.total.angle - 90.0).abs() < 1e-9);
        assert_eq!(d.per_tensor["x"].angle, 90.0, "one side is the zero vector");
    }

    #[test]
    fn missing_or_misshapen_tensors_are_named() {
        let e = distance(&one("a", vec![1.0]), &one("b", vec![1.0]), &ones("a", 1)).unwrap_err();
        assert_eq!(e.to_string(), "tensor a: missing from the second weights");
        let e = distance(&one("a", vec![1.0]), &one("a", vec![1.0, 2.0]), &ones("a", 1)).unwrap_err();
        assert!(e.to_string().contains("2 values in the second weights, the mask has 1"));
    }

    #[test]
    fn stats_pairs_and_barrier() {
        assert_eq!(Stats::of(&[1.0, 3.0, 2.0]), Some(Stats { n: 3, mean: 2.0, min: 1.0, max: 3.0 }));
        assert_eq!(Stats::of(&[]), None);
        assert_eq!(pairs(3), [(0, 1), (0, 2), (1, 2)]);
        assert_eq!(error_barrier(&[0.1, 0.5, 0.3]), Some(0.3));
        assert_eq!(error_barrier(&[0.2, 0.1, 0.2]), Some(0.0));
    }

    fn weights_and_mask() -> impl Strategy<Value = (Vec<f32>, Vec<f32>, Vec<u8>)> {
        (1usize..64).prop_flat_map(|n| {
            (
                proptest::collection::vec(-1e3f32..1e3, n),
                proptest::collection::vec(-1e3f32..1e3, n),
                proptest::collection::vec(0u8..=1, n),
            )
        })
    }

    proptest! {
        #[test]
        fn distances_are_zero_for_identical_runs_and_symmetric((a, b, m) in weights_and_mask()) {
            let (wa, wb, mask) = (one("t", a), one("t", b), BTreeMap::from([("t".to_string(), m)]));
            let same = distance(&wa, &wa, &mask).unwrap().total;
            prop_assert_eq!(same.l2, 0.0);
            prop_assert!(same.angle < 1e-3, "{:?}", same);
            let (ab, ba) = (distance(&wa, &wb, &mask).unwrap(), distance(&wb, &wa, &mask).unwrap());
            prop_assert_eq!(&ab, &ba);
            prop_assert!((0.0..=180.0).contains(&ab.total.angle));
        }

        #[test]
        fn interpolation_ends_at_the_end_points((a, b, _) in weights_and_mask()) {
            let (wa, wb) = (one("t", a), one("t", b));
            prop_assert_eq!(interpolate(&wa, &wb, 0.0).unwrap(), wa.clone());
            prop_assert_eq!(interpolate(&wa, &wb, 1.0).unwrap(), wb);
        }
    }
}
