//! Fully connected layers: `y = x · Wᵀ + b` for x (N × I), W (O × I) in PyTorch's layout, b (O).
//!
//! Backward: `dx = dy · W`, `dW = dyᵀ · x` and `db = Σₙ dy`. candle's own linear layer multiplies
//! by the transposed view `Wᵀ`, so its weight gradient arrives transposed and is copied into
//! place (a strided copy of the whole matrix per layer and step: 14% of a LeNet step), and the
//! bias is a separate broadcast add and reduction. Here each product reads its operands through
//! strides and writes its result in the layout the parameter has.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};

use crate::matmul::{matmul_parallel, row_major, transposed};
use crate::record::{apply2, apply3};
use crate::simd::{add_into, relu_grad, relu_in_place, written};
use crate::slices::{contiguous, with_slice};

/// `x · wᵀ (+ b)` for `x` (N, I), `w` (O, I) and `b` (O), then `max(·, 0)` when `relu`;
/// differentiable in all of them. Other ranks, devices and dtypes go through candle's ops.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>, relu: bool) -> Result<Tensor> {
    if !fast_path(x, w, b) {
        let y = x.broadcast_matmul(&w.t()?)?;
        let y = match b {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        };
        return if relu { y.relu() } else { Ok(y) };
    }
    let ((n, i), (o, i2)) = (x.dims2()?, w.dims2()?);
    if i != i2 {
        candle_core::bail!("linear: input has {i} features, the weight {:?} expects {i2}", w.dims())
    }
    let op = Linear { n, i, o, relu };
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    match b {
        Some(b) if b.dims() != [o] => candle_core::bail!("linear: bias of shape {:?} for {o} outputs", b.dims()),
        Some(b) => apply3(&x, &w, &b.contiguous()?, op),
        None => apply2(&x, &w, op),
    }
}

/// Whether this crate computes the layer: a matrix input on the CPU, everything f32. Otherwise
/// candle's ops do.
pub(crate) fn fast_path(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> bool {
    x.device().is_cpu()
        && x.rank() == 2
        && [x.dtype(), w.dtype()].iter().chain(b.map(|b| b.dtype()).as_ref()).all(|d| *d == DType::F32)
}

/// The gradient at a layer's product: `dy`, gated by the ReLU's output `y` when `relu`.
pub(crate) fn product_gradient(y: &Tensor, dy: &Tensor, relu: bool) -> Result<Tensor> {
    let dy = dy.contiguous()?;
    if !relu {
        return Ok(dy);
    }
    let gated = with_slice(&y.contiguous()?, |y| {
        with_slice(&dy, |d| {
            // SAFETY: `relu_grad` writes every element of an output as long as `y`.
            Ok(unsafe { written(y.len(), |out| relu_grad(out, y, d)) })
        })
    })?;
    Tensor::from_vec(gated, dy.shape(), dy.device())
}

/// The bias gradient: the sums over the batch of `dy` (N, O), a vector of O.
pub(crate) fn column_sums(dy: &Tensor) -> Result<Tensor> {
    let (_, o) = dy.dims2()?;
    let sums = with_slice(&dy.contiguous()?, |dy| {
        let mut db = vec![0f32; o];
        dy.chunks_exact(o.max(1)).for_each(|row| add_into(&mut db, row));
        Ok(db)
    })?;
    Tensor::from_vec(sums, o, dy.device())
}

/// Sizes (batch, inputs, outputs) and whether a ReLU follows.
#[derive(Clone, Copy)]
struct Linear {
    n: usize,
    i: usize,
    o: usize,
    relu: bool,
}

impl Linear {
    fn forward(&self, x: &[f32], w: &[f32], b: Option<&[f32]>) -> (CpuStorage, Shape) {
        let (n, i, o) = (self.n, self.i, self.o);
        // SAFETY: `matmul_parallel` writes the whole n × o product.
        let mut y = unsafe { written(n * o, |y| matmul_parallel(y, n, o, i, row_major(x, i), transposed(w, o, i))) };
        if let Some(b) = b {
            y.chunks_exact_mut(o.max(1)).for_each(|row| add_into(row, b));
        }
        if self.relu {
            relu_in_place(&mut y);
        }
        (CpuStorage::F32(y), Shape::from((n, o)))
    }

    /// dx and dw from the product's gradient (only those whose tensor tracks gradients).
    fn backward(&self, x: &Tensor, w: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dx = if x.track_op() { Some(dy.apply_op2_no_bwd(w, &BackwardData(*self))?) } else { None };
        let dw = if w.track_op() { Some(dy.apply_op2_no_bwd(x, &BackwardWeight(*self))?) } else { None };
        Ok((dx, dw))
    }
}

impl CustomOp2 for Linear {
    fn name(&self) -> &'static str {
        "lt-linear"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        Ok(self.forward(contiguous(s1, l1)?, contiguous(s2, l2)?, None))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, res: &Tensor, dy: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        self.backward(x, w, &product_gradient(res, dy, self.relu)?)
    }
}

impl CustomOp3 for Linear {
    fn name(&self) -> &'static str {
        "lt-linear-bias"
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
        Ok(self.forward(contiguous(s1, l1)?, contiguous(s2, l2)?, Some(contiguous(s3, l3)?)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = product_gradient(res, dy, self.relu)?;
        let (dx, dw) = self.backward(x, w, &dy)?;
        let db = if b.track_op() { Some(column_sums(&dy)?) } else { None };
        Ok((dx, dw, db))
    }
}

/// dx (N × I) = dy (N × O) · W (O × I).
struct BackwardData(Linear);

impl CustomOp2 for BackwardData {
    fn name(&self) -> &'static str {
        "lt-linear-backward-data"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let Linear { n, i, o, .. } = self.0;
        let (dy, w) = (contiguous(s1, l1)?, contiguous(s2, l2)?);
        // SAFETY: `matmul_parallel` writes the whole n × i product.
        let dx = unsafe { written(n * i, |dx| matmul_parallel(dx, n, i, o, row_major(dy, o), row_major(w, i))) };
        Ok((CpuStorage::F32(dx), Shape::from((n, i))))
    }
}

/// dW (O × I) = dyᵀ (O × N) · x (N × I).
struct BackwardWeight(Linear);

impl CustomOp2 for BackwardWeight {
    fn name(&self) -> &'static str {
        "lt-linear-backward-weight"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        let Linear { n, i, o, .. } = self.0;
        let (dy, x) = (contiguous(s1, l1)?, contiguous(s2, l2)?);
        // SAFETY: `matmul_parallel` writes the whole o × i product.
        let dw = unsafe { written(o * i, |dw| matmul_parallel(dw, o, i, n, transposed(dy, n, o), row_major(x, i))) };
        Ok((CpuStorage::F32(dw), Shape::from((o, i))))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

    use candle_core::{Device, Var};
    use proptest::prelude::*;

    use super::*;
    use crate::testing::{max_diff, rand};

    /// Forward and every gradient against candle's `x.matmul(wᵀ) + b`, then ReLU.
    fn check(n: usize, i: usize, o: usize, bias: bool, relu: bool, seed: u64) {
        let x = Var::from_tensor(&rand(&[n, i], seed)).unwrap();
        let w = Var::from_tensor(&rand(&[o, i], seed + 1)).unwrap();
        let b = Var::from_tensor(&rand(&[o], seed + 2)).unwrap();
        let bt = bias.then(|| b.as_tensor());
        let ours = linear(x.as_tensor(), w.as_tensor(), bt, relu).unwrap();
        let mut reference = x.as_tensor().matmul(&w.as_tensor().t().unwrap()).unwrap();
        if bias {
            reference = reference.broadcast_add(b.as_tensor()).unwrap();
        }
        if relu {
            reference = reference.relu().unwrap();
        }
        let tol = 1e-5 * (i as f32).max(1.0);
        assert!(max_diff(&ours, &reference) <= tol, "forward {n}x{i}x{o}");
        let probe = rand(ours.dims(), seed + 3);
        let g1 = (&ours * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let g2 = (&reference * &probe).unwrap().sum_all().unwrap().backward().unwrap();
        let mut vars = vec![("input", &x), ("weight", &w)];
        if bias {
            vars.push(("bias", &b));
        }
        for (name, v) in vars {
            let (a, e) = (g1.get(v.as_tensor()).unwrap(), g2.get(v.as_tensor()).unwrap());
            assert!(max_diff(a, e) <= 1e-5 * (n.max(o) as f32), "{name} gradient {n}x{i}x{o}");
        }
        if !bias {
            assert!(g1.get(b.as_tensor()).is_none());
        }
    }

    #[test]
    fn lenet_shapes_match_candle() {
        check(60, 784, 300, true, true, 1);
        check(60, 300, 100, true, true, 2);
        check(60, 100, 10, true, false, 3);
        check(7, 20, 5, false, true, 4);
        // Above PARALLEL_WORK with an odd number of rows: split 31 + 30 between two threads.
        check(61, 200, 90, true, false, 5);
    }

    #[test]
    fn the_input_of_a_network_gets_no_gradient() {
        let x = rand(&[3, 4], 9);
        let w = Var::from_tensor(&rand(&[2, 4], 10)).unwrap();
        let y = linear(&x, w.as_tensor(), None, false).unwrap();
        let grads = y.sum_all().unwrap().backward().unwrap();
        assert!(grads.get(&x).is_none());
        assert!(grads.get(w.as_tensor()).is_some());
    }

    #[test]
    fn mismatched_shapes_are_errors_that_say_which() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((2, 3), DType::F32, &dev).unwrap();
        let e = linear(&x, &Tensor::zeros((4, 5), DType::F32, &dev).unwrap(), None, false).unwrap_err().to_string();
        assert!(e.contains("input has 3 features"), "{e}");
        let w = Tensor::zeros((4, 3), DType::F32, &dev).unwrap();
        let e = linear(&x, &w, Some(&Tensor::zeros(5, DType::F32, &dev).unwrap()), false).unwrap_err().to_string();
        assert!(e.contains("bias of shape [5] for 4 outputs"), "{e}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn random_shapes_match_candle(n in 1usize..40, i in 1usize..70, o in 1usize..40, bias: bool, relu: bool, seed in 0u64..1000) {
            check(n, i, o, bias, relu, seed);
        }
    }
}
