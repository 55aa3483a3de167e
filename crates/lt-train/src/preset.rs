//! The paper's training setups (Figure 2 of the paper and its appendix; ImageNet: the paragraph
//! of Figure 6 in `EXPERIMENTS.md`, TPU reference implementations at batch 1024).

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
    /// Milestones where the rate is multiplied by `gamma` (iterations or epochs).
    pub milestones: &'static [Steps],
    /// The factor at each milestone (0.1 for the paper's CIFAR and ResNet-50 schedules).
    pub gamma: f64,
    /// Linear warmup length.
    pub warmup: Steps,
    /// The image side it trains at when not the dataset's (Inception-v3: 299 on ImageNet's 224).
    pub image_size: Option<u32>,
}

const SGD: OptimizerConfig = OptimizerConfig::Sgd { momentum: 0.9, weight_decay: 1e-4 };
/// TensorFlow's RMSProp as the Inception-v3 reference configures it.
const RMSPROP: OptimizerConfig = OptimizerConfig::RmsProp { decay: 0.9, momentum: 0.9, eps: 1.0, weight_decay: 4e-5 };
const fn it(n: u64) -> Steps {
    Steps::Iterations(n)
}
const fn ep(n: u64) -> Steps {
    Steps::Epochs(n)
}

/// Inception-v3's rate: ×0.94 every 3 epochs over its 171.
const INCEPTION_DROPS: [Steps; 56] = {
    let mut drops = [Steps::Epochs(0); 56];
    let mut i = 0;
    while i < drops.len() {
        drops[i] = Steps::Epochs(3 * (i as u64 + 1));
        i += 1;
    }
    drops
};
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
        milestones: &[Steps::Iterations(20_000), Steps::Iterations(25_000)],
        gamma: 0.1,
        warmup: it(warmup),
        image_size: None,
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
        milestones: &[Steps::Iterations(56_000), Steps::Iterations(84_000)],
        gamma: 0.1,
        warmup: it(warmup),
        image_size: None,
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
        gamma: 0.1,
        warmup: it(0),
        image_size: None,
    },
    resnet("resnet18-standard", 0.1, 0),
    resnet("resnet18-low", 0.01, 0),
    resnet("resnet18-warmup", 0.03, 20_000),
    vgg("vgg19-standard", 0.1, 0),
    vgg("vgg19-low", 0.01, 0),
    vgg("vgg19-warmup", 0.1, 10_000),
    // ImageNet. ResNet-50: all values the paper's.
    Preset {
        name: "resnet50",
        model: "imagenet_resnet_50",
        dataset: "imagenet",
        iterations: ep(90),
        batch_size: 1024,
        optimizer: SGD,
        lr: 0.4,
        milestones: &[ep(30), ep(60), ep(80)],
        gamma: 0.1,
        warmup: ep(5),
        image_size: None,
    },
    // Inception-v3: 171 epochs with RMSProp are the paper's; the rate (0.165 at batch 1024, ×0.94
    // every 3 epochs) and RMSProp's constants are the TPU reference's as this project knows them.
    Preset {
        name: "inception-v3",
        model: "imagenet_inception_v3",
        dataset: "imagenet",
        iterations: ep(171),
        batch_size: 1024,
        optimizer: RMSPROP,
        lr: 0.165,
        milestones: &INCEPTION_DROPS,
        gamma: 0.94,
        warmup: ep(0),
        image_size: Some(299),
    },
    // SqueezeNet 1.1: 150 epochs with momentum are the paper's; the rate and its drops (0.04 at
    // batch 1024, ÷10 at 50, 100 and 130 epochs) are this project's choice, the paper names none.
    Preset {
        name: "squeezenet",
        model: "imagenet_squeezenet_1_1",
        dataset: "imagenet",
        iterations: ep(150),
        batch_size: 1024,
        optimizer: SGD,
        lr: 0.04,
        milestones: &[ep(50), ep(100), ep(130)],
        gamma: 0.1,
        warmup: ep(0),
        image_size: None,
    },
];

impl Preset {
    /// The image side it trains at on `dataset`: its own on the dataset it was made for
    /// (Inception-v3: 299 on ImageNet), else the dataset's (`None`).
    pub fn image_size_on(&self, dataset: &str) -> Option<u32> {
        self.image_size.filter(|_| dataset == self.dataset)
    }

    /// The preset called `name`.
    pub fn named(name: &str) -> Result<&'static Preset, crate::Error> {
        PRESETS.iter().find(|p| p.name == name).ok_or_else(|| {
            crate::Error::Config(format!(
                "unknown preset {name:?}; presets are {}",
                PRESETS.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// The learning-rate schedule, in iterations of `per_epoch` per epoch.
    pub fn schedule(&self, per_epoch: usize) -> Schedule {
        Schedule {
            lr: self.lr,
            milestones: self.milestones.iter().map(|m| m.iterations(per_epoch)).collect(),
            gamma: self.gamma,
            warmup: self.warmup.iterations(per_epoch),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

    use super::*;

    #[test]
    fn every_preset_has_a_valid_schedule_and_optimizer() {
        for p in PRESETS {
            let s = p.schedule(1251);
            s.validate().unwrap();
            p.optimizer.validate().unwrap();
            assert!(s.milestones.iter().all(|m| *m < p.iterations.iterations(1251)), "{}", p.name);
        }
    }

    #[test]
    fn imagenet_schedules_count_epochs() {
        // ImageNet at batch 1024: 1,281,167 / 1024 = 1251 iterations per epoch.
        let r = Preset::named("resnet50").unwrap().schedule(1251);
        assert_eq!((r.warmup, r.milestones.clone()), (5 * 1251, vec![30 * 1251, 60 * 1251, 80 * 1251]));
        let i = Preset::named("inception-v3").unwrap().schedule(1251);
        assert_eq!((i.milestones.len(), i.milestones[0], i.gamma), (56, 3 * 1251, 0.94));
        assert!((i.lr_at(170 * 1251) / i.lr - 0.94f64.powi(56)).abs() < 1e-12);
    }
}
