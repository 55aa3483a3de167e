//! Optimizers with PyTorch's exact update rules, applying the pruning mask inside the update.
//!
//! SGD (`torch.optim.SGD`, dampening 0, no Nesterov): `g = ∇ + λw`, `b = g` on the first step and
//! `b = μb + g` after, `w -= lr·b`. Adam (`torch.optim.Adam`, L2 weight decay): `g = ∇ + λw`,
//! `m = β1·m + (1-β1)·g`, `v = β2·v + (1-β2)·g²`, `w -= lr/(1-β1^t) · m / (√v/√(1-β2^t) + ε)`.
//! RMSProp as TensorFlow's `RMSPropOptimizer`, which the paper's Inception-v3 reference used (the
//! square average starts at 1, ε is inside the root, the momentum buffer holds the rate):
//! `g = ∇ + λw`, `s = ρs + (1-ρ)g²`, `b = μb + lr·g/√(s + ε)`, `w -= b`.
//! With a mask, `g` is multiplied by it before anything else. A pruned weight that is zero before the
//! step (the trainer zeroes pruned weights once, when a run starts) then stays exactly zero: its
//! gradient and weight decay are 0, so SGD's buffer and Adam's moments stay 0 and the update is
//! `w - lr * 0`. The weights are not re-masked after each step: that would be one more pass over
//! every masked tensor on the hottest path, for nothing.

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::trainer::Masks;

/// Which optimizer, with its hyperparameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum OptimizerConfig {
    /// SGD with momentum and (L2) weight decay.
    Sgd {
        /// Momentum μ.
        momentum: f64,
        /// Weight decay λ.
        weight_decay: f64,
    },
    /// Adam.
    Adam {
        /// β1.
        beta1: f64,
        /// β2.
        beta2: f64,
        /// ε.
        eps: f64,
        /// Weight decay λ (L2, added to the gradient).
        weight_decay: f64,
    },
    /// RMSProp with momentum, TensorFlow's rule (module doc).
    #[serde(rename = "rmsprop")]
    RmsProp {
        /// Decay ρ of the square average.
        decay: f64,
        /// Momentum μ.
        momentum: f64,
        /// ε, inside the square root.
        eps: f64,
        /// Weight decay λ (L2, added to the gradient).
        weight_decay: f64,
    },
}

impl OptimizerConfig {
    /// Adam with PyTorch's defaults.
    pub fn adam() -> Self {
        OptimizerConfig::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<(), Error> {
        let ok = match *self {
            OptimizerConfig::Sgd { momentum, weight_decay } => (0.0..1.0).contains(&momentum) && weight_decay >= 0.0,
            OptimizerConfig::Adam { beta1, beta2, eps, weight_decay } => {
                (0.0..1.0).contains(&beta1) && (0.0..1.0).contains(&beta2) && eps > 0.0 && weight_decay >= 0.0
            }
            OptimizerConfig::RmsProp { decay, momentum, eps, weight_decay } => {
                (0.0..1.0).contains(&decay) && (0.0..1.0).contains(&momentum) && eps > 0.0 && weight_decay >= 0.0
            }
        };
        if ok { Ok(()) } else { Err(Error::Config(format!("invalid optimizer hyperparameters {self:?}"))) }
    }
}

/// An optimizer and its per-parameter state.
#[derive(Debug)]
pub struct Optimizer {
    config: OptimizerConfig,
    /// Per parameter: SGD's momentum buffer, or Adam's first and second moments.
    state: BTreeMap<String, Vec<Tensor>>,
    steps: u64,
    /// Use candle's composed ops even where the fused kernels could run (to test one against the other).
    composed_only: bool,
}

impl Optimizer {
    /// A fresh optimizer.
    pub fn new(config: OptimizerConfig) -> Result<Self, Error> {
        config.validate()?;
        Ok(Optimizer { config, state: BTreeMap::new(), steps: 0, composed_only: false })
    }

    /// The same optimizer computing with candle's composed ops instead of the fused kernels: slower,
    /// for checking one against the other.
    pub fn composed_ops(mut self) -> Self {
        self.composed_only = true;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// One update of every parameter that has a gradient. Weights pruned by `masks` must already be
    /// zero ([`crate::Trainer`] zeroes them when a run starts); they then stay exactly zero.
    pub fn step(&mut self, params: &[(String, Var)], grads: &GradStore, lr: f64, masks: &Masks) -> Result<(), Error> {
        self.steps += 1;
        let t = self.steps as i32;
        for (name, var) in params {
            let Some(grad) = grads.get(var.as_tensor()) else { continue };
            let w = var.as_tensor();
            let mask = masks.get(name);
            // RMSProp has no fused kernel: candle's ops everywhere (Inception-v3 trains on GPUs).
            let fused = !matches!(self.config, OptimizerConfig::RmsProp { .. });
            let new_w = if fused && lt_kernels::fused_available(w) && !self.composed_only {
                self.fused(name, w, grad, mask, lr, t)?
            } else {
                self.composed(name, w, grad, mask, lr, t)?
            };
            var.set(&new_w)?;
        }
        Ok(())
    }

    /// One parameter's update in one pass (`lt-kernels`).
    fn fused(
        &mut self,
        name: &str,
        w: &Tensor,
        grad: &Tensor,
        mask: Option<&Tensor>,
        lr: f64,
        t: i32,
    ) -> Result<Tensor, Error> {
        Ok(match self.config {
            OptimizerConfig::Sgd { momentum, weight_decay } => {
                let buf = self.state.get(name).and_then(|s| s.first());
                let (new_w, new_buf) =
                    lt_kernels::sgd_update(w, grad, buf, mask, lt_kernels::Sgd { lr, momentum, weight_decay })?;
                match new_buf {
                    Some(b) => {
                        self.state.insert(name.to_string(), vec![b]);
                    }
                    None => {
                        self.state.remove(name);
                    }
                }
                new_w
            }
            OptimizerConfig::Adam { beta1, beta2, eps, weight_decay } => {
                let moments = self.state.get(name).filter(|s| s.len() == 2).map(|s| (&s[0], &s[1]));
                let p = lt_kernels::Adam {
                    lr,
                    beta1,
                    beta2,
                    eps,
                    weight_decay,
                    bias_correction1: 1.0 - beta1.powi(t),
                    bias_correction2: 1.0 - beta2.powi(t),
                };
                let (new_w, m, v) = lt_kernels::adam_update(w, grad, moments, mask, p)?;
                self.state.insert(name.to_string(), vec![m, v]);
                new_w
            }
            OptimizerConfig::RmsProp { .. } => return self.composed(name, w, grad, mask, lr, t),
        })
    }

    /// One parameter's update with candle's ops (other devices and dtypes).
    fn composed(
        &mut self,
        name: &str,
        w: &Tensor,
        grad: &Tensor,
        mask: Option<&Tensor>,
        lr: f64,
        t: i32,
    ) -> Result<Tensor, Error> {
        let mut g = match mask {
            Some(m) => (grad * m)?,
            None => grad.clone(),
        };
        Ok(match self.config {
            OptimizerConfig::Sgd { momentum, weight_decay } => {
                if weight_decay != 0.0 {
                    g = (g + (w * weight_decay)?)?;
                }
                let buf = match self.state.get(name) {
                    Some(s) if momentum != 0.0 => ((&s[0] * momentum)? + g)?,
                    _ => g,
                };
                let new_w = (w - (&buf * lr)?)?;
                self.state.insert(name.to_string(), vec![buf]);
                new_w
            }
            OptimizerConfig::Adam { beta1, beta2, eps, weight_decay } => {
                if weight_decay != 0.0 {
                    g = (g + (w * weight_decay)?)?;
                }
                let (m, v) = match self.state.get(name) {
                    Some(s) => {
                        (((&s[0] * beta1)? + (&g * (1.0 - beta1))?)?, ((&s[1] * beta2)? + (g.sqr()? * (1.0 - beta2))?)?)
                    }
                    None => ((&g * (1.0 - beta1))?, (g.sqr()? * (1.0 - beta2))?),
                };
                let bc1 = 1.0 - beta1.powi(t);
                let bc2 = 1.0 - beta2.powi(t);
                let denom = ((v.sqrt()? / bc2.sqrt())? + eps)?;
                let new_w = (w - ((&m / &denom)? * (lr / bc1))?)?;
                self.state.insert(name.to_string(), vec![m, v]);
                new_w
            }
            OptimizerConfig::RmsProp { decay, momentum, eps, weight_decay } => {
                if weight_decay != 0.0 {
                    g = (g + (w * weight_decay)?)?;
                }
                let sq = (g.sqr()? * (1.0 - decay))?;
                let (s, b) = match self.state.get(name) {
                    Some(state) => (((&state[0] * decay)? + sq)?, Some(&state[1])),
                    // TensorFlow starts the square average at 1.
                    None => ((sq + decay)?, None),
                };
                let step = ((&g / (&s + eps)?.sqrt()?)? * lr)?;
                let b = match b {
                    Some(b) if momentum != 0.0 => ((b * momentum)? + step)?,
                    _ => step,
                };
                let new_w = (w - &b)?;
                self.state.insert(name.to_string(), vec![s, b]);
                new_w
            }
        })
    }

    /// The state as named tensors (`NAME/0`, `NAME/1`) for checkpoints.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        self.state
            .iter()
            .flat_map(|(n, v)| v.iter().enumerate().map(move |(i, t)| (format!("{n}/{i}"), t.clone())))
            .collect()
    }

    /// Restores state saved by [`Optimizer::state_tensors`] after `steps` steps.
    pub fn load_state(&mut self, tensors: impl IntoIterator<Item = (String, Tensor)>, steps: u64) -> Result<(), Error> {
        let mut state: BTreeMap<String, Vec<(usize, Tensor)>> = BTreeMap::new();
        for (key, t) in tensors {
            let (name, slot) =
                key.rsplit_once('/').ok_or_else(|| Error::Config(format!("bad optimizer state key {key}")))?;
            let slot: usize = slot.parse().map_err(|_| Error::Config(format!("bad optimizer state key {key}")))?;
            state.entry(name.into()).or_default().push((slot, t));
        }
        let slots = match self.config {
            OptimizerConfig::Sgd { .. } => 1,
            OptimizerConfig::Adam { .. } | OptimizerConfig::RmsProp { .. } => 2,
        };
        self.state = state
            .into_iter()
            .map(|(n, mut v)| {
                v.sort_by_key(|(i, _)| *i);
                if v.len() != slots {
                    return Err(Error::Config(format!(
                        "optimizer state of {n} has {} slots, expected {slots}",
                        v.len()
                    )));
                }
                Ok((n, v.into_iter().map(|(_, t)| t).collect()))
            })
            .collect::<Result<_, _>>()?;
        self.steps = steps;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

    use candle_core::{Device, Var};

    use super::*;

    /// Deterministic values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = lt_data::Rng::new(seed);
        (0..n).map(|_| rng.unit() as f32 * 2.0 - 1.0).collect()
    }

    #[test]
    fn fused_updates_match_the_composed_ones_with_masks_decay_and_momentum() {
        let configs = [
            OptimizerConfig::Sgd { momentum: 0.9, weight_decay: 1e-4 },
            OptimizerConfig::Sgd { momentum: 0.0, weight_decay: 0.0 },
            OptimizerConfig::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-3 },
        ];
        let dev = Device::Cpu;
        for config in configs {
            let n = 100_003;
            let start = values(n, 1);
            let mask: Vec<f32> = values(n, 2).iter().map(|v| f32::from(*v > 0.0)).collect();
            let masks = Masks::from([("w".to_string(), Tensor::from_vec(mask.clone(), n, &dev).unwrap())]);
            let run = |mut opt: Optimizer| {
                let w0: Vec<f32> = start.iter().zip(&mask).map(|(w, m)| w * m).collect();
                let var = Var::from_vec(w0, n, &dev).unwrap();
                let params = vec![("w".to_string(), var.clone())];
                for step in 0..4u64 {
                    let target = Tensor::from_vec(values(n, 10 + step), n, &dev).unwrap();
                    let loss = (var.as_tensor() - &target).unwrap().sqr().unwrap().sum_all().unwrap();
                    opt.step(&params, &loss.backward().unwrap(), 0.01, &masks).unwrap();
                }
                var.as_tensor().to_vec1::<f32>().unwrap()
            };
            let fused = run(Optimizer::new(config).unwrap());
            let composed = run(Optimizer::new(config).unwrap().composed_ops());
            let worst = fused.iter().zip(&composed).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-6, "{config:?}: {worst}");
            assert!(fused.iter().zip(&mask).all(|(w, m)| *m == 1.0 || *w == 0.0), "a pruned weight moved");
        }
    }

    /// RMSProp against TensorFlow's rule written out in f64, with a mask, weight decay and momentum
    /// over three steps; pruned weights stay zero.
    #[test]
    fn rmsprop_follows_tensorflows_rule() {
        let (decay, momentum, eps, wd, lr) = (0.9, 0.9, 1.0, 1e-3, 0.05);
        let config = OptimizerConfig::RmsProp { decay, momentum, eps, weight_decay: wd };
        let dev = Device::Cpu;
        let n = 1001;
        let mask: Vec<f32> = values(n, 2).iter().map(|v| f32::from(*v > -0.3)).collect();
        let w0: Vec<f32> = values(n, 1).iter().zip(&mask).map(|(w, m)| w * m).collect();
        let var = Var::from_vec(w0.clone(), n, &dev).unwrap();
        let params = vec![("w".to_string(), var.clone())];
        let masks = Masks::from([("w".to_string(), Tensor::from_vec(mask.clone(), n, &dev).unwrap())]);
        let mut opt = Optimizer::new(config).unwrap();
        let (mut w, mut sq, mut buf): (Vec<f64>, Vec<f64>, Vec<f64>) =
            (w0.iter().map(|v| *v as f64).collect(), vec![1.0; n], vec![0.0; n]);
        for step in 0..3u64 {
            let target = values(n, 10 + step);
            let t = Tensor::from_vec(target.clone(), n, &dev).unwrap();
            let loss = (var.as_tensor() - &t).unwrap().sqr().unwrap().sum_all().unwrap();
            opt.step(&params, &loss.backward().unwrap(), lr, &masks).unwrap();
            for i in 0..n {
                let g = 2.0 * (w[i] - target[i] as f64) * mask[i] as f64 + wd * w[i];
                sq[i] = decay * sq[i] + (1.0 - decay) * g * g;
                buf[i] = momentum * buf[i] + lr * g / (sq[i] + eps).sqrt();
                w[i] -= buf[i];
            }
        }
        let ours = var.as_tensor().to_vec1::<f32>().unwrap();
        let worst = ours.iter().zip(&w).map(|(a, b)| (*a as f64 - b).abs()).fold(0f64, f64::max);
        assert!(worst < 1e-5, "{worst}");
        assert!(ours.iter().zip(&mask).all(|(w, m)| *m == 1.0 || *w == 0.0), "a pruned weight moved");
        assert!(config.validate().is_ok());
        assert!(OptimizerConfig::RmsProp { decay: 1.0, momentum, eps, weight_decay: wd }.validate().is_err());
    }
}
