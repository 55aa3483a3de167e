//! Batch normalization in training mode (statistics of the batch), optionally followed by ReLU,
//! as one candle custom op with its backward pass.
//!
//! Per channel c over the M = N·H·W values: mean μ, biased variance σ², x̂ = (x − μ)/√(σ² + ε),
//! y = γ·x̂ + β (then max(0, ·)). Backward, with g = dy (masked by y > 0 after a ReLU):
//! dβ = Σg, dγ = Σ g·x̂, dx = γ/√(σ² + ε) · (g − dβ/M − x̂·dγ/M). Two passes forward (statistics,
//! normalize) and two backward, parallel over channels, instead of the dozen elementwise passes
//! and two transposed copies of the composed version.

use std::sync::{Arc, Mutex};

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::record::apply3;
use crate::simd::{gated_affine, gated_sums, scale_shift, written};
use crate::slices::{contiguous, with_slice};

/// The output of [`batch_norm_train`]: y and the batch statistics (for the running averages).
#[derive(Debug)]
pub struct BatchNormOutput {
    /// The normalized (and ReLU-ed) output.
    pub y: Tensor,
    /// Per-channel batch mean.
    pub mean: Vec<f32>,
    /// Per-channel biased batch variance.
    pub var: Vec<f32>,
    /// Values per channel (N·H·W), for the unbiased correction.
    pub count: usize,
}

/// Training-mode batch normalization of `x` (N, C, H, W) with scale `gamma` and shift `beta` (C),
/// followed by ReLU when `relu`; differentiable in all three.
pub fn batch_norm_train(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64, relu: bool) -> Result<BatchNormOutput> {
    let (n, c, h, w) = x.dims4()?;
    if gamma.dims() != [c] || beta.dims() != [c] {
        candle_core::bail!("batch norm: {c} channels, scale {:?}, shift {:?}", gamma.dims(), beta.dims())
    }
    let count = n * h * w;
    if count < 2 {
        candle_core::bail!("batch norm in training mode needs more than one value per channel, got {count}")
    }
    if !x.device().is_cpu() || x.dtype() != DType::F32 {
        return composed(x, gamma, beta, eps, relu);
    }
    let stats = Arc::new(Mutex::new(None));
    let op = BatchNorm { eps, relu, stats: stats.clone() };
    let y = apply3(&x.contiguous()?, &gamma.contiguous()?, &beta.contiguous()?, op)?;
    // The op keeps the statistics for its backward pass; the caller reads a copy.
    let (mean, var) = stats
        .lock()
        .map_err(|_| candle_core::Error::Msg("batch norm statistics lock poisoned".into()))?
        .as_ref()
        .map(|s| (s.iter().map(|s| s.0 as f32).collect(), s.iter().map(|s| s.1 as f32).collect()))
        .ok_or_else(|| candle_core::Error::Msg("batch norm forward did not run".into()))?;
    Ok(BatchNormOutput { y, mean, var, count })
}

/// `y = x · scale[c] + shift[c]` per channel of `x` (N, C, H, W), then ReLU when `relu`, in one
/// pass: evaluation-mode batch normalization with its running statistics folded into `scale` and
/// `shift`. Returns `None` where the fast path does not apply (a tensor that tracks gradients,
/// another device or dtype), so that the caller composes candle's ops instead.
pub fn channel_affine(x: &Tensor, scale: &[f32], shift: &[f32], relu: bool) -> Result<Option<Tensor>> {
    let (_, c, h, w) = x.dims4()?;
    if scale.len() != c || shift.len() != c {
        candle_core::bail!("channel affine: {c} channels, {} scales, {} shifts", scale.len(), shift.len())
    }
    if x.track_op() || !x.device().is_cpu() || x.dtype() != DType::F32 {
        return Ok(None);
    }
    let x = x.contiguous()?;
    let hw = h * w;
    let y = with_slice(&x, |xv| {
        // SAFETY: the planes of `hw` values cover the output, and `scale_shift` writes each whole.
        Ok(unsafe {
            written(xv.len(), |y| {
                y.par_chunks_mut(hw.max(1)).zip(xv.par_chunks(hw.max(1))).enumerate().for_each(|(plane, (out, xs))| {
                    scale_shift(out, xs, scale[plane % c], shift[plane % c], relu);
                })
            })
        })
    })?;
    Ok(Some(Tensor::from_vec(y, x.shape(), x.device())?))
}

/// The same with candle's ops, for other devices and dtypes.
fn composed(x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f64, relu: bool) -> Result<BatchNormOutput> {
    let (n, c, h, w) = x.dims4()?;
    let xt = x.transpose(0, 1)?.reshape((c, n * h * w))?;
    let mean = xt.mean_keepdim(1)?;
    let centered = xt.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(1)?;
    let xhat = centered.broadcast_div(&(&var + eps)?.sqrt()?)?;
    let y = xhat.broadcast_mul(&gamma.reshape((c, 1))?)?.broadcast_add(&beta.reshape((c, 1))?)?;
    let y = y.reshape((c, n, h, w))?.transpose(0, 1)?;
    let y = if relu { y.relu()? } else { y };
    Ok(BatchNormOutput {
        y,
        mean: mean.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?,
        var: var.flatten_all()?.to_dtype(DType::F32)?.to_vec1()?,
        count: n * h * w,
    })
}

/// Per-channel (mean, biased variance) of the forward pass, shared with the caller and reused by
/// the backward pass.
type Stats = Arc<Mutex<Option<Vec<(f64, f64)>>>>;

struct BatchNorm {
    eps: f64,
    relu: bool,
    stats: Stats,
}

/// Per-channel mean and biased variance of `x` (N, C, HW), in f64.
fn channel_stats(x: &[f32], n: usize, c: usize, hw: usize) -> Vec<(f64, f64)> {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let (mut s, mut s2) = (0f64, 0f64);
            for i in 0..n {
                // Sum in f32 lanes per plane (vectorized), accumulate planes in f64.
                let (a, b) = crate::simd::sum_and_sum_sq(&x[(i * c + ch) * hw..][..hw]);
                s += a as f64;
                s2 += b as f64;
            }
            let m = (n * hw) as f64;
            let mean = s / m;
            (mean, (s2 / m - mean * mean).max(0.0))
        })
        .collect()
}

impl CustomOp3 for BatchNorm {
    fn name(&self) -> &'static str {
        "lt-batch-norm-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l1.shape().dims4()?;
        let hw = h * w;
        let (x, gamma, beta) = (contiguous(s1, l1)?, contiguous(s2, l2)?, contiguous(s3, l3)?);
        let stats = channel_stats(x, n, c, hw);
        let scale: Vec<f32> =
            stats.iter().zip(gamma).map(|((_, v), g)| (*g as f64 / (v + self.eps).sqrt()) as f32).collect();
        let shift: Vec<f32> =
            stats.iter().zip(beta).zip(&scale).map(|(((m, _), b), s)| (*b as f64 - m * *s as f64) as f32).collect();
        // SAFETY: the planes of `hw` values cover the output, and `scale_shift` writes each plane whole.
        let y = unsafe {
            written(x.len(), |y| {
                y.par_chunks_mut(hw).zip(x.par_chunks(hw)).enumerate().for_each(|(plane, (yp, xp))| {
                    let ch = plane % c;
                    scale_shift(yp, xp, scale[ch], shift[ch], self.relu);
                })
            })
        };
        if let Ok(mut slot) = self.stats.lock() {
            *slot = Some(stats);
        }
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        _beta: &Tensor,
        res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, c, h, w) = x.dims4()?;
        let hw = h * w;
        let gamma: Vec<f32> = gamma.to_vec1()?;
        let (x, dy) = (x.contiguous()?, dy.contiguous()?);
        // The relu mask comes from the output; without relu the output is not read at all.
        let res = if self.relu { Some(res.contiguous()?) } else { None };
        let saved = self.stats.lock().ok().and_then(|s| s.clone());
        let (sums, dx) = with_slice(&x, |xv| {
            // The forward pass's statistics; recomputed only if they are somehow missing.
            let stats = match &saved {
                Some(s) if s.len() == c => s.clone(),
                _ => channel_stats(xv, n, c, hw),
            };
            with_slice(&dy, |gv| match &res {
                Some(r) => with_slice(r, |yv| Ok(backward(xv, gv, Some(yv), &stats, &gamma, n, hw, self.eps))),
                None => Ok(backward(xv, gv, None, &stats, &gamma, n, hw, self.eps)),
            })
        })?;
        let dev = x.device();
        let dx = Tensor::from_vec(dx, (n, c, h, w), dev)?;
        let dgamma = Tensor::from_vec(sums.iter().map(|s| s.1 as f32).collect::<Vec<_>>(), c, dev)?;
        let dbeta = Tensor::from_vec(sums.iter().map(|s| s.0 as f32).collect::<Vec<_>>(), c, dev)?;
        Ok((Some(dx), Some(dgamma), Some(dbeta)))
    }
}

/// dβ and dγ per channel, and dx, from the input, the output gradient and (after a ReLU) the
/// output.
#[allow(clippy::too_many_arguments, reason = "the sizes of one batch norm")]
fn backward(
    xv: &[f32],
    gv: &[f32],
    yv: Option<&[f32]>,
    stats: &[(f64, f64)],
    gamma: &[f32],
    n: usize,
    hw: usize,
    eps: f64,
) -> (Vec<(f64, f64)>, Vec<f32>) {
    let c = stats.len();
    let m = (n * hw) as f64;
    // Pass 1, per channel: dβ = Σg and dγ = Σ g·x̂ = inv·(Σ g·x − mean·Σg) (g masked by the ReLU);
    // f32 lanes per plane, planes accumulated in f64.
    let sums: Vec<(f64, f64)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let (mean, var) = stats[ch];
            let inv = 1.0 / (var + eps).sqrt();
            let (mut db, mut gx) = (0f64, 0f64);
            for i in 0..n {
                let off = (i * c + ch) * hw;
                let (a, b) = gated_sums(&gv[off..off + hw], &xv[off..off + hw], yv.map(|y| &y[off..off + hw]));
                db += a as f64;
                gx += b as f64;
            }
            (db, inv * (gx - mean * db))
        })
        .collect();
    // Pass 2: dx = γ·inv·(g − dβ/m − x̂·dγ/m), an affine function of (g, x) per channel.
    // SAFETY: the planes of `hw` values cover dx, and `gated_affine` writes each plane whole.
    let dx = unsafe {
        written(xv.len(), |dx| {
            dx.par_chunks_mut(hw).enumerate().for_each(|(plane, out)| {
                let ch = plane % c;
                let off = plane * hw;
                let (mean, var) = stats[ch];
                let inv = 1.0 / (var + eps).sqrt();
                let (db, dg) = sums[ch];
                let k = gamma[ch] as f64 * inv;
                let b = -k * inv * dg / m;
                let c0 = -k * db / m - b * mean;
                let y = yv.map(|y| &y[off..off + hw]);
                gated_affine(out, &gv[off..off + hw], &xv[off..off + hw], y, k as f32, b as f32, c0 as f32);
            })
        })
    };
    (sums, dx)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

    use candle_core::{Device, Var};

    use super::*;
    use crate::testing::{max_diff, rand};

    #[test]
    fn channel_affine_matches_broadcast_ops_and_leaves_tracked_tensors_to_candle() {
        for (shape, relu) in [([3, 4, 5, 5], false), ([2, 3, 1, 7], true)] {
            let x = rand(&shape, 7);
            let scale: Vec<f32> = (0..shape[1]).map(|i| 0.5 + i as f32).collect();
            let shift: Vec<f32> = (0..shape[1]).map(|i| i as f32 * 0.3 - 0.4).collect();
            let ours = channel_affine(&x, &scale, &shift, relu).unwrap().unwrap();
            let (s, t) = (
                Tensor::new(scale.as_slice(), &Device::Cpu).unwrap().reshape((1, shape[1], 1, 1)).unwrap(),
                Tensor::new(shift.as_slice(), &Device::Cpu).unwrap().reshape((1, shape[1], 1, 1)).unwrap(),
            );
            let mut reference = x.broadcast_mul(&s).unwrap().broadcast_add(&t).unwrap();
            if relu {
                reference = reference.relu().unwrap();
            }
            assert!(max_diff(&ours, &reference) <= 1e-6, "{shape:?}");
        }
        let tracked = Var::from_tensor(&rand(&[1, 2, 2, 2], 8)).unwrap();
        assert!(channel_affine(tracked.as_tensor(), &[1.0, 1.0], &[0.0, 0.0], false).unwrap().is_none());
        let e = channel_affine(&rand(&[1, 2, 2, 2], 9), &[1.0], &[0.0, 0.0], false).unwrap_err().to_string();
        assert!(e.contains("2 channels, 1 scales"), "{e}");
    }

    #[test]
    fn forward_statistics_and_gradients_match_the_composed_version() {
        for (shape, relu, seed) in [([4, 3, 5, 5], false, 1), ([2, 8, 3, 7], true, 2), ([16, 2, 1, 1], true, 3)] {
            let x = Var::from_tensor(&(rand(&shape, seed) * 3.0).unwrap().affine(1.0, 0.5).unwrap()).unwrap();
            let g = Var::from_tensor(&rand(&[shape[1]], seed + 1)).unwrap();
            let b = Var::from_tensor(&rand(&[shape[1]], seed + 2)).unwrap();
            let ours = batch_norm_train(x.as_tensor(), g.as_tensor(), b.as_tensor(), 1e-5, relu).unwrap();
            let reference = composed(x.as_tensor(), g.as_tensor(), b.as_tensor(), 1e-5, relu).unwrap();
            assert!(max_diff(&ours.y, &reference.y) < 1e-5, "forward {shape:?}");
            for (a, r) in ours.mean.iter().zip(&reference.mean).chain(ours.var.iter().zip(&reference.var)) {
                assert!((a - r).abs() < 1e-5, "statistics {shape:?}");
            }
            let probe = rand(ours.y.dims(), seed + 3);
            let ga = (&ours.y * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let gr = (&reference.y * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, v) in [("x", &x), ("gamma", &g), ("beta", &b)] {
                let d = max_diff(ga.get(v.as_tensor()).unwrap(), gr.get(v.as_tensor()).unwrap());
                assert!(d < 1e-4, "{name} gradient {shape:?}: {d}");
            }
        }
    }

    #[test]
    fn one_value_per_channel_is_an_error() {
        let x = Tensor::zeros((1, 2, 1, 1), DType::F32, &Device::Cpu).unwrap();
        let g = Tensor::ones(2, DType::F32, &Device::Cpu).unwrap();
        let e = batch_norm_train(&x, &g, &g, 1e-5, false).unwrap_err().to_string();
        assert!(e.contains("more than one value per channel"), "{e}");
    }
}
