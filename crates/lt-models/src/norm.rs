//! BatchNorm over (N, C, H, W) with PyTorch's semantics (momentum 0.1, biased variance to
//! normalize, unbiased variance in the running average), whose training-mode arithmetic is
//! `lt_kernels::batch_norm_train` (fused with the following ReLU where the network has one).

use candle_core::{Tensor, Var};
use candle_nn::{Init, VarBuilder};

/// A BatchNorm layer: `weight`, `bias`, `running_mean`, `running_var`, as PyTorch names them.
#[derive(Debug, Clone)]
pub(crate) struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    eps: f64,
    momentum: f64,
}

impl BatchNorm {
    pub(crate) fn new(vb: &VarBuilder, c: usize, eps: f64) -> candle_core::Result<Self> {
        Ok(BatchNorm {
            running_mean: Var::from_tensor(&vb.get_with_hints(c, "running_mean", Init::Const(0.0))?)?,
            running_var: Var::from_tensor(&vb.get_with_hints(c, "running_var", Init::Const(1.0))?)?,
            weight: vb.get_with_hints(c, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(c, "bias", Init::Const(0.0))?,
            eps,
            momentum: 0.1,
        })
    }

    /// BatchNorm of `x`, then ReLU when `relu`. Training mode normalizes with the batch's
    /// statistics and updates the running averages; evaluation uses the running averages.
    pub(crate) fn forward(&self, x: &Tensor, train: bool, relu: bool) -> candle_core::Result<Tensor> {
        if train {
            let out = lt_kernels::batch_norm_train(x, &self.weight, &self.bias, self.eps, relu)?;
            let m = self.momentum as f32;
            let unbiased = out.count as f32 / (out.count as f32 - 1.0);
            let rm: Vec<f32> = self.running_mean.as_tensor().to_vec1()?;
            let rv: Vec<f32> = self.running_var.as_tensor().to_vec1()?;
            let rm: Vec<f32> = rm.iter().zip(&out.mean).map(|(r, b)| (1.0 - m) * r + m * b).collect();
            let rv: Vec<f32> = rv.iter().zip(&out.var).map(|(r, b)| (1.0 - m) * r + m * b * unbiased).collect();
            let dev = x.device();
            self.running_mean.set(&Tensor::from_vec(rm, out.mean.len(), dev)?)?;
            self.running_var.set(&Tensor::from_vec(rv, out.var.len(), dev)?)?;
            return Ok(out.y);
        }
        let c = self.weight.elem_count();
        let scale = (&self.weight / (self.running_var.as_detached_tensor() + self.eps)?.sqrt()?)?;
        let shift = (&self.bias - (self.running_mean.as_detached_tensor() * &scale)?)?;
        if x.dtype() == candle_core::DType::F32
            && let Some(y) = lt_kernels::channel_affine(x, &scale.to_vec1()?, &shift.to_vec1()?, relu)?
        {
            return Ok(y);
        }
        let y = x.broadcast_mul(&scale.reshape((1, c, 1, 1))?)?.broadcast_add(&shift.reshape((1, c, 1, 1))?)?;
        if relu { y.relu() } else { Ok(y) }
    }

    /// [`BatchNorm::forward`] without ReLU.
    pub(crate) fn forward_t(&self, x: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        self.forward(x, train, false)
    }
}
