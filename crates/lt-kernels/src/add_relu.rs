//! `relu(a + b)`, the end of every residual block, as one pass forward and one backward (candle's
//! composed version makes an add, a ReLU, and in the backward a comparison, a cast and a product).

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::record::apply2;
use crate::simd::{self, written};
use crate::slices::contiguous;

/// `max(0, a + b)` for two tensors of the same shape; differentiable in both.
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if !a.device().is_cpu() || a.dtype() != DType::F32 || b.dtype() != DType::F32 || a.dims() != b.dims() {
        return (a + b)?.relu();
    }
    apply2(&a.contiguous()?, &b.contiguous()?, AddRelu)
}

/// Elements per parallel task: big enough to amortize scheduling.
const CHUNK: usize = 1 << 14;

struct AddRelu;

impl CustomOp2 for AddRelu {
    fn name(&self) -> &'static str {
        "lt-add-relu"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (a, b) = (contiguous(s1, l1)?, contiguous(s2, l2)?);
        if a.len() != b.len() {
            candle_core::bail!("add_relu: {} and {} elements", a.len(), b.len());
        }
        // SAFETY: the chunks cover the output and `simd::add_relu` writes each whole.
        let y = unsafe {
            written(a.len(), |y| {
                y.par_chunks_mut(CHUNK)
                    .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
                    .for_each(|(y, (a, b))| simd::add_relu(y, a, b))
            })
        };
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(&self, _a: &Tensor, _b: &Tensor, res: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = res.apply_op2_no_bwd(&dy.contiguous()?, &ReluGrad)?;
        Ok((Some(g.clone()), Some(g)))
    }
}

/// `dy · (y > 0)` from (y, dy).
struct ReluGrad;

impl CustomOp2 for ReluGrad {
    fn name(&self) -> &'static str {
        "lt-relu-grad"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let (y, dy) = (contiguous(s1, l1)?, contiguous(s2, l2)?);
        if y.len() != dy.len() {
            candle_core::bail!("relu gradient: {} and {} elements", y.len(), dy.len());
        }
        // SAFETY: the chunks cover the output and `simd::relu_grad` writes each whole.
        let g = unsafe {
            written(y.len(), |g| {
                g.par_chunks_mut(CHUNK)
                    .zip(y.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK)))
                    .for_each(|(g, (y, dy))| simd::relu_grad(g, y, dy))
            })
        };
        Ok((CpuStorage::F32(g), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

    use candle_core::Var;

    use super::*;
    use crate::testing::{max_diff, rand};

    #[test]
    fn matches_candles_add_then_relu_forward_and_backward() {
        for (shape, seed) in [(vec![3, 4, 5, 5], 1u64), (vec![70_001], 2)] {
            let a = Var::from_tensor(&rand(&shape, seed)).unwrap();
            let b = Var::from_tensor(&rand(&shape, seed + 1)).unwrap();
            let ours = add_relu(a.as_tensor(), b.as_tensor()).unwrap();
            let reference = (a.as_tensor() + b.as_tensor()).unwrap().relu().unwrap();
            assert_eq!(max_diff(&ours, &reference), 0.0);
            let probe = rand(&shape, seed + 2);
            let g1 = (&ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            let g2 = (&reference * &probe).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [&a, &b] {
                assert_eq!(max_diff(g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap()), 0.0);
            }
        }
    }
}
