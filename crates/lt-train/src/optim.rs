//! Optimizers with PyTorch's exact update rules, applying the pruning mask inside the update.
//!
//! SGD (`torch.optim.SGD`, dampening 0, no Nesterov): `g = ∇ + λw`, `b = g` on the first step and
//! `b = μb + g` after, `w -= lr·b`. Adam (`torch.optim.Adam`, L2 weight decay): `g = ∇ + λw`,
//! `m = β1·m + (1-β1)·g`, `v = β2·v + (1-β2)·g²`, `w -= lr/(1-β1^t) · m / (√v/√(1-β2^t) + ε)`.
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
}

impl Optimizer {
    /// A fresh optimizer.
    pub fn new(config: OptimizerConfig) -> Result<Self, Error> {
        config.validate()?;
        Ok(Optimizer { config, state: BTreeMap::new(), steps: 0 })
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
            let mut g = match mask {
                Some(m) => (grad * m)?,
                None => grad.clone(),
            };
            let new_w = match self.config {
                OptimizerConfig::Sgd { momentum, weight_decay } => {
                    if weight_decay != 0.0 {
                        g = (g + (w * weight_decay)?)?;
                    }
                    let buf = match self.state.get(name) {
                        Some(s) if momentum != 0.0 => ((&s[0] * momentum)? + g)?,
                        _ => g,
                    };
                    let new_w = (w - (&buf * lr)?)?;
                    self.state.insert(name.clone(), vec![buf]);
                    new_w
                }
                OptimizerConfig::Adam { beta1, beta2, eps, weight_decay } => {
                    if weight_decay != 0.0 {
                        g = (g + (w * weight_decay)?)?;
                    }
                    let (m, v) = match self.state.get(name) {
                        Some(s) => (
                            ((&s[0] * beta1)? + (&g * (1.0 - beta1))?)?,
                            ((&s[1] * beta2)? + (g.sqr()? * (1.0 - beta2))?)?,
                        ),
                        None => ((&g * (1.0 - beta1))?, (g.sqr()? * (1.0 - beta2))?),
                    };
                    let bc1 = 1.0 - beta1.powi(t);
                    let bc2 = 1.0 - beta2.powi(t);
                    let denom = ((v.sqrt()? / bc2.sqrt())? + eps)?;
                    let new_w = (w - ((&m / &denom)? * (lr / bc1))?)?;
                    self.state.insert(name.clone(), vec![m, v]);
                    new_w
                }
            };
            var.set(&new_w)?;
        }
        Ok(())
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
            OptimizerConfig::Adam { .. } => 2,
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
