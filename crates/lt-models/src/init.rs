//! Deterministic initialization, keyed by `(seed, tensor name)`.
//!
//! Conv and linear weights: Kaiming normal, fan-in, ReLU gain (std = sqrt(2 / fan_in)), as
//! `torch.nn.init.kaiming_normal_`. Biases of conv and linear layers: PyTorch's default,
//! uniform in ±1/sqrt(fan_in). BatchNorm: weight uniform in [0, 1) (OpenLTH's convention) or 1,
//! bias 0, running mean 0, running variance 1.

use lt_data::Rng;

/// How BatchNorm weights start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BnWeightInit {
    /// Uniform in [0, 1), as OpenLTH (the paper's framework) does.
    #[default]
    Uniform,
    /// All ones, as PyTorch does.
    Ones,
}

/// Initialization choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InitConfig {
    /// BatchNorm weights.
    pub bn_weight: BnWeightInit,
}

/// A stream of random numbers for the tensor `name` under `seed`.
pub(crate) fn rng_for(seed: u64, name: &str) -> Rng {
    // FNV-1a of the name, then mixed with the seed by the stream itself.
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3));
    let mut rng = Rng::new(seed ^ h.rotate_left(17));
    rng.next_u64();
    rng
}

/// `n` draws from N(0, std²) (Box-Muller).
pub(crate) fn normal(rng: &mut Rng, n: usize, std: f64) -> Vec<f32> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let u1 = 1.0 - rng.unit(); // (0, 1]
        let u2 = rng.unit();
        let r = (-2.0 * u1.ln()).sqrt() * std;
        let t = std::f64::consts::TAU * u2;
        out.push((r * t.cos()) as f32);
        out.push((r * t.sin()) as f32);
    }
    out.truncate(n);
    out
}

/// `n` draws from U[lo, hi).
pub(crate) fn uniform(rng: &mut Rng, n: usize, lo: f64, hi: f64) -> Vec<f32> {
    (0..n).map(|_| (lo + (hi - lo) * rng.unit()) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_has_the_right_moments() {
        let v = normal(&mut rng_for(1, "w"), 100_000, 0.5);
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(mean.abs() < 0.01 && (var.sqrt() - 0.5).abs() < 0.01, "{mean} {var}");
    }

    #[test]
    fn streams_depend_on_seed_and_name() {
        let a = normal(&mut rng_for(1, "fc.weight"), 4, 1.0);
        assert_eq!(a, normal(&mut rng_for(1, "fc.weight"), 4, 1.0));
        assert_ne!(a, normal(&mut rng_for(2, "fc.weight"), 4, 1.0));
        assert_ne!(a, normal(&mut rng_for(1, "fc.bias"), 4, 1.0));
    }
}
