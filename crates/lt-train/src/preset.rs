//! The paper's training setups (Figure 2 of the paper and its appendix).

use crate::optim::OptimizerConfig;
use crate::schedule::Schedule;
use crate::steps::Steps;

/// A named training setup.
#[derive(Debug, Clone, PartialEq)]
pub struct Preset {
    /// Name (`resnet18-warmup`).
    pub name: &'static str,
    /// The network.
    pub model: &'static str,
    /// The dataset the paper used.
    pub dataset: &'static str,
    /// Training length.
    pub iterations: Steps,
    /// Batch size.
    pub batch_size: usize,
    /// Optimizer.
    pub optimizer: OptimizerConfig,
    /// Base learning rate.
    pub lr: f64,
    /// Milestones (iterations) where the rate is divided by 10.
    pub milestones: &'static [u64],
    /// Linear warmup length in iterations.
    pub warmup: u64,
}

const SGD: OptimizerConfig = OptimizerConfig::Sgd { momentum: 0.9, weight_decay: 1e-4 };
const ADAM: OptimizerConfig = OptimizerConfig::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 };

const fn resnet(name: &'static str, lr: f64, warmup: u64) -> Preset {
    Preset {
        name,
        model: "cifar_resnet_20",
        dataset: "cifar10",
        iterations: Steps::Iterations(30_000),
        batch_size: 128,
        optimizer: SGD,
        lr,
        milestones: &[20_000, 25_000],
        warmup,
    }
}

const fn vgg(name: &'static str, lr: f64, warmup: u64) -> Preset {
    Preset {
        name,
        model: "cifar_vgg_19",
        dataset: "cifar10",
        iterations: Steps::Iterations(112_000),
        batch_size: 64,
        optimizer: SGD,
        lr,
        milestones: &[56_000, 84_000],
        warmup,
    }
}

/// Every preset.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "lenet",
        model: "mnist_lenet_300_100",
        dataset: "mnist",
        iterations: Steps::Iterations(50_000),
        batch_size: 60,
        optimizer: ADAM,
        lr: 1.2e-3,
        milestones: &[],
        warmup: 0,
    },
    resnet("resnet18-standard", 0.1, 0),
    resnet("resnet18-low", 0.01, 0),
    resnet("resnet18-warmup", 0.03, 20_000),
    vgg("vgg19-standard", 0.1, 0),
    vgg("vgg19-low", 0.01, 0),
    vgg("vgg19-warmup", 0.1, 10_000),
];

impl Preset {
    /// The preset called `name`.
    pub fn named(name: &str) -> Result<&'static Preset, crate::Error> {
        PRESETS.iter().find(|p| p.name == name).ok_or_else(|| {
            crate::Error::Config(format!(
                "unknown preset {name:?}; presets are {}",
                PRESETS.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// The learning-rate schedule.
    pub fn schedule(&self) -> Schedule {
        Schedule { lr: self.lr, milestones: self.milestones.to_vec(), gamma: 0.1, warmup: self.warmup }
    }
}
