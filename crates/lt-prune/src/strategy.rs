//! Choosing which surviving weights to prune.
//!
//! Magnitude and SNIP are the same operation on different scores (|w| and |∂L/∂w · w|): prune the
//! lowest-scoring survivors, globally or per tensor. Selection is `select_nth_unstable` on packed
//! `(score bits, position)` keys, so it is linear in the number of weights and the tie rule (lower
//! position first) falls out of the key order.

use std::collections::BTreeMap;

use lt_data::Rng;

use crate::{Error, Mask};

/// How much to prune.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Amount {
    /// This fraction of the surviving weights, in (0, 1).
    Fraction(f64),
    /// Down to this fraction of all weights, in (0, 1]; not above the current density.
    Density(f64),
}

impl Amount {
    /// How many of `survivors` (out of `total`) to prune.
    pub fn count(self, survivors: usize, total: usize) -> Result<usize, Error> {
        match self {
            Amount::Fraction(f) if f > 0.0 && f < 1.0 => Ok((f * survivors as f64).round() as usize),
            Amount::Fraction(f) => Err(Error::Amount(format!("a pruning fraction must be in (0, 1), got {f}"))),
            Amount::Density(d) if d > 0.0 && d <= 1.0 => {
                let target = (d * total as f64).round() as usize;
                if target > survivors {
                    return Err(Error::Amount(format!(
                        "density {d} keeps {target} weights, but only {survivors} of {total} survive (density {:.4}): pruning cannot add weights",
                        survivors as f64 / total.max(1) as f64
                    )));
                }
                Ok(survivors - target)
            }
            Amount::Density(d) => Err(Error::Amount(format!("a density must be in (0, 1], got {d}"))),
        }
    }
}

/// Where the amount applies.
#[derive(Debug, Clone, PartialEq)]
pub enum Scope {
    /// Over all the mask's tensors together (the paper's ResNet and VGG).
    Global(Amount),
    /// Per tensor: `per_tensor` where given, else `default` (the paper's LeNet: 20% of each hidden
    /// layer, 10% of the output layer).
    LayerWise {
        /// The amount for tensors not listed.
        default: Amount,
        /// Amounts by tensor name.
        per_tensor: BTreeMap<String, Amount>,
    },
}

/// How many weights a scope prunes: in all, or per tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expected {
    /// In all tensors together.
    Total(usize),
    /// Per tensor.
    PerTensor(BTreeMap<String, usize>),
}

impl Scope {
    /// The counts this scope prunes from `mask`.
    pub fn expected(&self, mask: &Mask) -> Result<Expected, Error> {
        match self {
            Scope::Global(amount) => Ok(Expected::Total(amount.count(mask.survivors(), mask.total())?)),
            Scope::LayerWise { default, per_tensor } => {
                if let Some(unknown) = per_tensor.keys().find(|k| mask.get(k).is_none()) {
                    return Err(Error::Tensor {
                        tensor: unknown.clone(),
                        message: "has an amount but is not in the mask".into(),
                    });
                }
                mask.iter()
                    .map(|(name, _, bits)| {
                        let amount = per_tensor.get(name).copied().unwrap_or(*default);
                        Ok((name.to_string(), amount.count(mask.survivors_of(name), bits.len())?))
                    })
                    .collect::<Result<_, _>>()
                    .map(Expected::PerTensor)
            }
        }
    }
}

/// Magnitude pruning: prunes the surviving weights of lowest |w|.
pub fn magnitude(weights: &BTreeMap<String, Vec<f32>>, mask: &Mask, scope: &Scope) -> Result<Mask, Error> {
    let scores = scores_from(
        mask,
        |name| {
            let w = weights.get(name)?;
            Some(w.iter().map(|v| v.abs()).collect())
        },
        "weights",
    )?;
    prune_lowest(&scores, mask, scope)
}

/// SNIP: prunes the surviving weights of lowest connection sensitivity |∂L/∂w · w| (gradients on one
/// or more batches, computed by the caller).
pub fn snip(
    weights: &BTreeMap<String, Vec<f32>>,
    grads: &BTreeMap<String, Vec<f32>>,
    mask: &Mask,
    scope: &Scope,
) -> Result<Mask, Error> {
    let scores = scores_from(
        mask,
        |name| {
            let (w, g) = (weights.get(name)?, grads.get(name)?);
            (w.len() == g.len()).then(|| w.iter().zip(g).map(|(w, g)| (w * g).abs()).collect())
        },
        "weights and gradients of the same length",
    )?;
    prune_lowest(&scores, mask, scope)
}

fn scores_from(
    mask: &Mask,
    f: impl Fn(&str) -> Option<Vec<f32>>,
    what: &str,
) -> Result<BTreeMap<String, Vec<f32>>, Error> {
    mask.iter()
        .map(|(name, _, bits)| {
            let s = f(name).filter(|s| s.len() == bits.len()).ok_or_else(|| Error::Tensor {
                tensor: name.into(),
                message: format!("needs {what} with {} values", bits.len()),
            })?;
            if let Some(i) = s.iter().position(|v| !v.is_finite()) {
                return Err(Error::Tensor {
                    tensor: name.into(),
                    message: format!("score {} at element {i} is not finite", s[i]),
                });
            }
            Ok((name.to_string(), s))
        })
        .collect()
}

/// A key that orders by score, then by position: non-negative f32 bits order like the floats.
fn key(score: f32, position: usize) -> u64 {
    ((score.to_bits() as u64) << 32) | position as u64
}

fn prune_lowest(scores: &BTreeMap<String, Vec<f32>>, mask: &Mask, scope: &Scope) -> Result<Mask, Error> {
    if mask.total() > u32::MAX as usize {
        return Err(Error::Amount("more than 2^32 weights".into()));
    }
    let expected = scope.expected(mask)?;
    let mut out = mask.clone();
    let groups: Vec<(Vec<&str>, usize)> = match &expected {
        Expected::Total(k) => vec![(mask.names().collect(), *k)],
        Expected::PerTensor(ks) => ks.iter().map(|(n, k)| (vec![n.as_str()], *k)).collect(),
    };
    for (names, k) in groups {
        if k == 0 {
            continue;
        }
        let mut keys = Vec::new();
        let mut offsets = Vec::new();
        let mut offset = 0;
        for name in &names {
            let (_, bits) = mask.get(name).unwrap_or_default();
            let s = &scores[*name];
            keys.extend(bits.iter().enumerate().filter(|(_, b)| **b == 1).map(|(i, _)| key(s[i], offset + i)));
            offsets.push((offset, *name));
            offset += bits.len();
        }
        keys.select_nth_unstable(k - 1);
        for &kk in &keys[..k] {
            let position = (kk & 0xFFFF_FFFF) as usize;
            let at = offsets.partition_point(|(o, _)| *o <= position) - 1;
            let (start, name) = offsets[at];
            if let Some(bits) = out.bits_mut(name) {
                bits[position - start] = 0;
            }
        }
    }
    validate(mask, &out, &expected, "the built-in strategy")?;
    Ok(out)
}

/// A random mask with exactly the same number of survivors per tensor as `reference` (the paper's
/// random pruning), positions drawn uniformly over each whole tensor from `seed`.
pub fn random_like(reference: &Mask, seed: u64) -> Mask {
    let mut out = reference.clone();
    for (t, name) in reference.names().enumerate() {
        let keep = reference.survivors_of(name);
        let Some(bits) = out.bits_mut(name) else { continue };
        let n = bits.len();
        // Partial Fisher-Yates: the first `keep` entries of a shuffled 0..n are the survivors.
        let mut idx: Vec<u32> = (0..n as u32).collect();
        let mut rng = Rng::new(seed ^ (t as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        for i in 0..keep.min(n) {
            let j = i + rng.below((n - i) as u64) as usize;
            idx.swap(i, j);
        }
        bits.fill(0);
        for &i in &idx[..keep] {
            bits[i as usize] = 1;
        }
    }
    out
}

/// Checks a new mask against the old one: the same tensors and shapes, no weight revived, and
/// exactly the expected number pruned. `source` names who made it (a strategy or a plugin).
pub fn validate(old: &Mask, new: &Mask, expected: &Expected, source: &str) -> Result<(), Error> {
    let bad = |tensor: &str, message: String| {
        Err(Error::Invalid { source_name: source.into(), tensor: tensor.into(), message })
    };
    if let Some(extra) = new.names().find(|n| old.get(n).is_none()) {
        return bad(extra, "is not a tensor of the old mask".into());
    }
    let mut total = 0;
    for (name, shape, bits) in old.iter() {
        let Some((nshape, nbits)) = new.get(name) else { return bad(name, "is missing".into()) };
        if nshape != shape {
            return bad(name, format!("has shape {nshape:?}, expected {shape:?}"));
        }
        if let Some(i) = nbits.iter().position(|&b| b > 1) {
            return bad(name, format!("holds {} at element {i}; masks hold only 0 and 1", nbits[i]));
        }
        if let Some(i) = bits.iter().zip(nbits).position(|(&o, &n)| o == 0 && n == 1) {
            return bad(name, format!("revives pruned weight {i}"));
        }
        let pruned = old.survivors_of(name) - new.survivors_of(name);
        if let Expected::PerTensor(ks) = expected
            && ks.get(name).is_some_and(|&k| k != pruned)
        {
            return bad(name, format!("prunes {pruned} weights, expected {}", ks[name]));
        }
        total += pruned;
    }
    if let Expected::Total(k) = expected
        && total != *k
    {
        return bad("(all)", format!("prunes {total} weights in all, expected {k}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn layers() -> impl Strategy<Value = Vec<Vec<f32>>> {
        // Few distinct magnitudes, so ties are common; zeros and large values included.
        let value = prop_oneof![Just(0.0f32), Just(1.0), Just(-1.0), -1e30f32..1e30, -2.0f32..2.0];
        prop::collection::vec(prop::collection::vec(value, 1..60), 1..4)
    }

    fn setup(layers: &[Vec<f32>]) -> (BTreeMap<String, Vec<f32>>, Mask) {
        let weights: BTreeMap<String, Vec<f32>> =
            layers.iter().enumerate().map(|(i, l)| (format!("l{i}.weight"), l.clone())).collect();
        let shapes: Vec<(String, Vec<usize>)> = weights.iter().map(|(n, w)| (n.clone(), vec![w.len()])).collect();
        let mask = Mask::dense(shapes.iter().map(|(n, s)| (n.as_str(), s.as_slice())));
        (weights, mask)
    }

    /// Every survivor scores at least as high as every weight pruned at this level (per group).
    fn check_keeps_largest(weights: &BTreeMap<String, Vec<f32>>, old: &Mask, new: &Mask, names: &[&str]) {
        let (mut max_pruned, mut min_kept) = (f32::NEG_INFINITY, f32::INFINITY);
        for name in names {
            let (_, o) = old.get(name).unwrap();
            let (_, n) = new.get(name).unwrap();
            for i in 0..o.len() {
                let a = weights[*name][i].abs();
                if o[i] == 1 && n[i] == 0 {
                    max_pruned = max_pruned.max(a);
                }
                if n[i] == 1 {
                    min_kept = min_kept.min(a);
                }
            }
        }
        assert!(max_pruned <= min_kept, "pruned {max_pruned} > kept {min_kept}");
    }

    proptest! {
        #[test]
        fn global_magnitude_over_levels(layers in layers(), fraction in 0.01f64..0.99, levels in 1usize..4) {
            let (weights, mut mask) = setup(&layers);
            for _ in 0..levels {
                let survivors = mask.survivors();
                let next = magnitude(&weights, &mask, &Scope::Global(Amount::Fraction(fraction))).unwrap();
                prop_assert_eq!(survivors - next.survivors(), (fraction * survivors as f64).round() as usize);
                let names: Vec<&str> = mask.names().collect();
                check_keeps_largest(&weights, &mask, &next, &names);
                // never revives (also checked inside), and the same input gives the same mask
                prop_assert_eq!(&magnitude(&weights, &mask, &Scope::Global(Amount::Fraction(fraction))).unwrap(), &next);
                mask = next;
            }
        }

        #[test]
        fn layer_wise_magnitude_prunes_each_tensor_by_its_fraction(layers in layers(), f in 0.01f64..0.99, g in 0.01f64..0.99) {
            let (weights, mask) = setup(&layers);
            let scope = Scope::LayerWise { default: Amount::Fraction(f), per_tensor: BTreeMap::from([("l0.weight".to_string(), Amount::Fraction(g))]) };
            let next = magnitude(&weights, &mask, &scope).unwrap();
            for name in mask.names() {
                let frac = if name == "l0.weight" { g } else { f };
                let before = mask.survivors_of(name);
                prop_assert_eq!(before - next.survivors_of(name), (frac * before as f64).round() as usize);
                check_keeps_largest(&weights, &mask, &next, &[name]);
            }
        }

        #[test]
        fn random_pruning_keeps_each_tensors_count(layers in layers(), fraction in 0.01f64..0.99, seed: u64) {
            let (weights, mask) = setup(&layers);
            let imp = magnitude(&weights, &mask, &Scope::Global(Amount::Fraction(fraction))).unwrap();
            let random = random_like(&imp, seed);
            for name in imp.names() {
                prop_assert_eq!(random.survivors_of(name), imp.survivors_of(name));
            }
            prop_assert_eq!(random_like(&imp, seed), random);
        }

        #[test]
        fn save_and_load_round_trip(layers in layers(), fraction in 0.01f64..0.99, level in 0u32..20) {
            let (weights, mask) = setup(&layers);
            let mask = magnitude(&weights, &mask, &Scope::Global(Amount::Fraction(fraction))).unwrap();
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("mask.safetensors");
            let meta = crate::MaskMeta { model: "m".into(), level, strategy: "magnitude".into(), parent: Some("abc".into()) };
            mask.save(&path, &meta).unwrap();
            prop_assert_eq!(Mask::load(&path).unwrap(), (mask, meta));
        }

        /// The validator refuses every corruption of a valid mask: a flipped bit, a revived weight,
        /// a wrong count, a wrong shape, a value other than 0 and 1.
        #[test]
        fn the_validator_rejects_every_corrupted_mask(layers in layers(), fraction in 0.1f64..0.9, which in 0usize..4, at: prop::sample::Index) {
            let (weights, dense) = setup(&layers);
            let scope = Scope::Global(Amount::Fraction(fraction));
            let old = magnitude(&weights, &dense, &scope).unwrap();
            let expected = scope.expected(&old).unwrap();
            let good = magnitude(&weights, &old, &scope).unwrap();
            prop_assert!(validate(&old, &good, &expected, "p").is_ok());
            let mut arrays: BTreeMap<String, (Vec<usize>, Vec<u8>)> = good.iter().map(|(n, s, b)| (n.to_string(), (s.to_vec(), b.to_vec()))).collect();
            let name = arrays.keys().next().unwrap().clone();
            let (shape, bits) = arrays.get_mut(&name).unwrap();
            let i = at.index(bits.len());
            match which {
                0 => bits[i] ^= 1,                   // revives, or prunes one too many
                1 => bits[i] = 2,                    // not 0/1
                2 => { shape.push(1); }              // wrong shape
                _ => { arrays.remove(&name); }       // missing tensor
            }
            let corrupted = Mask { tensors: arrays };
            let err = validate(&old, &corrupted, &expected, "plugin:fuzz").unwrap_err().to_string();
            prop_assert!(err.contains("plugin:fuzz"), "{}", err);
        }
    }

    #[test]
    fn ties_are_broken_by_position_and_amounts_are_checked() {
        let (weights, mask) = setup(&[vec![1.0, 1.0, 1.0, 1.0]]);
        let next = magnitude(&weights, &mask, &Scope::Global(Amount::Fraction(0.5))).unwrap();
        assert_eq!(next.get("l0.weight").unwrap().1, &[0, 0, 1, 1]);
        let err = magnitude(&weights, &next, &Scope::Global(Amount::Density(0.9))).unwrap_err().to_string();
        assert!(err.contains("pruning cannot add weights"), "{err}");
        assert!(magnitude(&weights, &mask, &Scope::Global(Amount::Fraction(1.0))).is_err());
        assert!(magnitude(&weights, &mask, &Scope::Global(Amount::Fraction(0.0))).is_err());
        let density = magnitude(&weights, &mask, &Scope::Global(Amount::Density(0.25))).unwrap();
        assert_eq!(density.survivors(), 1);
    }

    #[test]
    fn snip_uses_gradient_times_weight() {
        let (weights, mask) = setup(&[vec![10.0, 1.0, 1.0, 0.1]]);
        let grads = BTreeMap::from([("l0.weight".to_string(), vec![0.001, 1.0, 0.5, 100.0])]);
        let next = snip(&weights, &grads, &mask, &Scope::Global(Amount::Fraction(0.5))).unwrap();
        // |g w| = 0.01, 1, 0.5, 10: the first and third go
        assert_eq!(next.get("l0.weight").unwrap().1, &[0, 1, 0, 1]);
    }
}
