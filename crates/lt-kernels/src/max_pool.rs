//! Max-pooling with a `kh` x `kw` window at the same stride (floor mode), forward and backward in
//! one pass each. The gradient goes whole to the first maximum of each window in row-major order,
//! as in PyTorch. (candle 0.11.1's own `max_pool2d` backward scales the gradient by the fraction
//! of the window at the maximum; its composed replacement of reshapes and `max` reductions costs
//! about ten passes over the activations.)

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::record::apply1;
use crate::simd::written;
use crate::slices::{contiguous, with_slice};

/// Max-pool of `x` (N, C, H, W) with a `kh` x `kw` window and the same stride; rows and columns
/// that do not fill a window are dropped. On other devices or dtypes (a CUDA build's GPU): the
/// same function composed of candle ops ([`composed`]), gradient to the first maximum too.
pub fn max_pool2d(x: &Tensor, kh: usize, kw: usize) -> Result<Tensor> {
    let (n, c, h, w) = x.dims4()?;
    let (oh, ow) = (h / kh.max(1), w / kw.max(1));
    if kh == 0 || kw == 0 || oh == 0 || ow == 0 {
        candle_core::bail!("max-pool {kh}x{kw} of a {h}x{w} input");
    }
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        return apply1(&x.contiguous()?, MaxPool { kh, kw });
    }
    composed(x, (n, c, oh, ow), kh, kw)
}

/// The pool from candle ops on any device: each window's values side by side, a one-hot of its
/// first maximum in row-major order (from a cumulative count of the maxima, outside the graph),
/// and the selected value. Its gradient goes whole to that element, as in PyTorch, where
/// candle's `max` reduction would give it to every maximum of a tie and candle's own
/// `max_pool2d` scales it wrongly (lt-models' `pool.rs`).
fn composed(x: &Tensor, (n, c, oh, ow): (usize, usize, usize, usize), kh: usize, kw: usize) -> Result<Tensor> {
    let x = x.narrow(2, 0, oh * kh)?.narrow(3, 0, ow * kw)?;
    let windows = x
        .contiguous()?
        .reshape((n, c, oh, kh, ow, kw))?
        .permute((0, 1, 2, 4, 3, 5))?
        .contiguous()?
        .reshape((n, c, oh, ow, kh * kw))?;
    let values = windows.detach();
    let at_max = values.broadcast_eq(&values.max_keepdim(4)?)?;
    let first = at_max.to_dtype(DType::F32)?.cumsum(4)?.eq(1f64)?.mul(&at_max)?;
    first.where_cond(&windows, &windows.zeros_like()?)?.sum(4)
}

struct MaxPool {
    kh: usize,
    kw: usize,
}

impl MaxPool {
    /// The output size of an (h, w) plane.
    fn out(&self, h: usize, w: usize) -> (usize, usize) {
        (h / self.kh, w / self.kw)
    }

    /// The index in its plane of the first maximum of window (i, j).
    #[inline]
    fn argmax(&self, plane: &[f32], w: usize, i: usize, j: usize) -> usize {
        let mut best = (i * self.kh) * w + j * self.kw;
        let mut value = plane[best];
        for r in 0..self.kh {
            let row = (i * self.kh + r) * w + j * self.kw;
            for (s, v) in plane[row..row + self.kw].iter().enumerate() {
                if *v > value {
                    value = *v;
                    best = row + s;
                }
            }
        }
        best
    }
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "lt-max-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = l.shape().dims4()?;
        let x = contiguous(s, l)?;
        let (oh, ow) = self.out(h, w);
        // SAFETY: the output planes of oh·ow values cover the output, and each is written whole.
        let y = unsafe {
            written(n * c * oh * ow, |y| {
                y.par_chunks_mut(oh * ow).zip(x.par_chunks(h * w)).for_each(|(yp, xp)| {
                    for i in 0..oh {
                        for j in 0..ow {
                            yp[i * ow + j].write(xp[self.argmax(xp, w, i, j)]);
                        }
                    }
                })
            })
        };
        Ok((CpuStorage::F32(y), Shape::from((n, c, oh, ow))))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let (n, c, h, w) = x.dims4()?;
        let (oh, ow) = self.out(h, w);
        let (x, dy) = (x.contiguous()?, dy.contiguous()?);
        let dx = with_slice(&x, |xv| {
            with_slice(&dy, |gv| {
                // SAFETY: the planes of h·w values cover dx; each is zeroed, then written at maxima.
                Ok(unsafe {
                    written(n * c * h * w, |dx| {
                        dx.par_chunks_mut(h * w).zip(xv.par_chunks(h * w).zip(gv.par_chunks(oh * ow))).for_each(
                            |(dp, (xp, gp))| {
                                dp.fill(MaybeUninit::new(0.0));
                                for i in 0..oh {
                                    for j in 0..ow {
                                        dp[self.argmax(xp, w, i, j)].write(gp[i * ow + j]);
                                    }
                                }
                            },
                        )
                    })
                })
            })
        })?;
        Ok(Some(Tensor::from_vec(dx, (n, c, h, w), x.device())?))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

    use candle_core::{Device, Var};

    use super::*;
    use crate::testing::max_diff;

    #[test]
    fn forward_matches_candle_and_the_gradient_goes_to_the_first_maximum() {
        for (h, w, kh, kw) in [(8, 6, 2, 2), (7, 5, 2, 2), (9, 9, 3, 3), (6, 4, 2, 1), (5, 8, 1, 2)] {
            let x = Tensor::randn(0f32, 1.0, (2, 3, h, w), &Device::Cpu).unwrap();
            let ours = max_pool2d(&x, kh, kw).unwrap();
            let theirs = x.narrow(2, 0, h / kh * kh).unwrap().narrow(3, 0, w / kw * kw).unwrap();
            let theirs = theirs.max_pool2d_with_stride((kh, kw), (kh, kw)).unwrap();
            assert_eq!(max_diff(&ours, &theirs), 0.0, "{h}x{w} / {kh}x{kw}");
        }
        // A tie: the first maximum in row-major order takes the whole gradient, as in PyTorch.
        let x = Var::new(&[[[[1f32, 5.0, 2.0], [5.0, 4.0, 0.0], [9.0, 8.0, 7.0]]]], &Device::Cpu).unwrap();
        let y = max_pool2d(x.as_tensor(), 2, 2).unwrap();
        assert_eq!(y.flatten_all().unwrap().to_vec1::<f32>().unwrap(), [5.0]);
        let g = (y * 3.0).unwrap().sum_all().unwrap().backward().unwrap();
        let g = g.get(x.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(g, [0.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    }

    /// The version a GPU runs, checked here on the CPU: the same values and gradients as the
    /// kernel, ties included (so CPU and GPU runs of a network differ only by rounding).
    #[test]
    fn the_composed_pool_equals_the_kernel_ties_included() {
        for (h, w, kh, kw) in [(8, 6, 2, 2), (7, 5, 2, 2), (9, 9, 3, 3), (6, 4, 2, 1)] {
            // Rounded values: many windows hold a tie.
            let x = Tensor::randn(0f32, 2.0, (2, 3, h, w), &Device::Cpu).unwrap().round().unwrap();
            let x = Var::from_tensor(&x).unwrap();
            let probe = Tensor::randn(0f32, 1.0, (2, 3, h / kh, w / kw), &Device::Cpu).unwrap();
            let ours = max_pool2d(&x, kh, kw).unwrap();
            let theirs = composed(&x, (2, 3, h / kh, w / kw), kh, kw).unwrap();
            assert_eq!(max_diff(&ours, &theirs), 0.0, "{h}x{w} / {kh}x{kw}");
            let ga = (ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let gb = (theirs * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            assert_eq!(max_diff(ga.get(&x).unwrap(), gb.get(&x).unwrap()), 0.0, "{h}x{w} / {kh}x{kw}");
        }
        // Off f32 the public function takes the composed path.
        let x = Tensor::new(&[[[[1f64, 5.0, 2.0], [5.0, 4.0, 0.0], [9.0, 8.0, 7.0]]]], &Device::Cpu).unwrap();
        let x = Var::from_tensor(&x).unwrap();
        let g = max_pool2d(&x, 2, 2).unwrap().sum_all().unwrap().backward().unwrap();
        let g = g.get(&x).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
        assert_eq!(g, [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn the_gradient_matches_the_composed_version_without_ties() {
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (3, 4, 10, 7), &Device::Cpu).unwrap()).unwrap();
        let probe = Tensor::randn(0f32, 1.0, (3, 4, 5, 3), &Device::Cpu).unwrap();
        let composed = |x: &Tensor| {
            x.narrow(3, 0, 6).unwrap().contiguous().unwrap().reshape((3, 4, 5, 2, 3, 2)).unwrap().max(5).unwrap().max(3)
        };
        let ga = (max_pool2d(&x, 2, 2).unwrap() * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let gb = (composed(&x).unwrap() * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        assert_eq!(max_diff(ga.get(&x).unwrap(), gb.get(&x).unwrap()), 0.0);
    }
}
