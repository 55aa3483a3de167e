//! Scales and the protocol of one network at a scale.
//!
//! - `paper`: the exact protocol of the paper (its Figure 2 and appendix): the preset's iterations,
//!   batch, schedule; 3 replicates; levels down to the figure's sparsities.
//! - `small`: the same procedure with fewer iterations, the schedule's milestones, warmup and the
//!   rewind points scaled by the same factor, fewer levels and replicates, on this project's
//!   2-core CPU. LeNet: 5,000 iterations, 2 replicates, the paper's levels. ResNet-20: 500
//!   iterations (the rate-0.1 phase lasts 333 of them), VGG-19: 300; 2 replicates each; sized
//!   by the instability figure, whose copies must leave the early chaotic phase for the
//!   question of rewinding to arise (140 and 30 iterations, the first sizes, never did). Both
//!   prune 36% per level, two of the paper's 20% levels at once, so that 4 levels reach the
//!   paper's 16.8% (and every point lies on the paper's grid of 0.8^n). A figure of several
//!   networks at small runs for several hours: `--help` gives the estimate per network, and
//!   `--only` runs one per sitting (the store resumes). Far too little training for CIFAR-10
//!   accuracies: small shows the procedure's trends on an easy dataset (Fashion-MNIST), not the
//!   paper's numbers.
//! - `medium`: the `small` protocol trained long enough for the networks to learn (ResNet-20
//!   3,000 iterations, 6.4 epochs of Fashion-MNIST; VGG-19 2,000, 2.1 epochs; LeNet 20,000),
//!   ResNet-20 and VGG-19 one level deeper (10.7% of the weights) and rewound past the onsets
//!   of stability measured at small (k = 100). `small` answered the question it was sized for
//!   with "no gap": at T = 500 the k = 0 subnetworks are stable and match the rewound ones
//!   (RESULTS.md); medium is the next step up on a CPU. It runs for hours to days on the 2-core
//!   machine, so it is meant for several sittings (`--only`, `--replicates`, `--rewind`,
//!   `--task` and the resumable store), or a GPU (`--device cuda`).
//! - `smoke`: minutes, on the bundled `fashion-mnist-sample`: a handful of iterations, 2 levels,
//!   1 replicate. It checks the pipeline; its numbers mean nothing, and its figure says so.
//!
//! The ImageNet networks (figures 6, 7, 8 and 12) have `paper` (the TPU reference schedules in
//! epochs of ImageNet's 1,281,167 images at batch 1024; the paper's rewind epochs and
//! sparsities) and `smoke` (the generated `imagenet-miniature`, 6 iterations of batch 8 at 64
//! pixels, 80 for Inception-v3). There is no `small`: no ImageNet subset is at hand to size and
//! check one on.

use anyhow::{Result, bail};
use lt_lottery::{LotterySpec, PruneSpec, TrainSpec};
use lt_train::Preset;

/// How much of the paper's protocol to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    /// Minutes, on the bundled sample dataset: checks the pipeline.
    Smoke,
    /// The same procedure, shortened to finish on one CPU.
    Small,
    /// Small's protocol trained for several epochs: several sittings through the resumable store.
    Medium,
    /// The paper's exact protocol.
    Paper,
}

impl Scale {
    pub fn name(self) -> &'static str {
        match self {
            Scale::Smoke => "smoke",
            Scale::Small => "small",
            Scale::Medium => "medium",
            Scale::Paper => "paper",
        }
    }

    /// Whether this scale shortens the paper's protocol for a CPU (small and medium: fewer
    /// iterations, 36% per level, the instability figure's rewind grid).
    pub fn shortened(self) -> bool {
        matches!(self, Scale::Small | Scale::Medium)
    }
}

/// The network families: the paper's CIFAR-10 and MNIST experiments, and its ImageNet ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Lenet,
    Resnet,
    Vgg,
    Imagenet,
}

pub fn family(preset: &Preset) -> Family {
    if preset.model.starts_with("mnist_lenet") {
        Family::Lenet
    } else if preset.model.starts_with("cifar_resnet") {
        Family::Resnet
    } else if preset.model.starts_with("imagenet_") {
        Family::Imagenet
    } else {
        Family::Vgg
    }
}

/// One network's protocol at a scale.
#[derive(Debug, Clone)]
pub struct Setup {
    pub preset: &'static Preset,
    pub family: Family,
    pub scale: Scale,
    pub dataset: String,
    pub iterations: u64,
    pub batch: usize,
    pub replicates: u64,
    /// iterations / the paper's iterations: rewind points, milestones and warmup scale by it.
    pub factor: f64,
    /// Fraction of the surviving weights pruned per level (the paper: 20%).
    pub fraction: f64,
    /// `--rewind`: the rewind points to run instead of the scale's (figure 4's grid, the
    /// instability grid, figure 5's rewound curve), in this scale's iterations.
    pub rewind: Option<Vec<u64>>,
    /// `--levels`: the pruning levels of the accuracy-vs-sparsity curves instead of the scale's.
    pub levels: Option<u32>,
    /// The image side of training and evaluation when not the dataset's.
    pub image_size: Option<u32>,
    /// `--accumulate`: micro-batches per batch.
    pub accumulate: Option<usize>,
    /// The scale's batch / `--batch`'s (1 without it): the rewind points this scale lists in
    /// its own iterations stretch by it, so that they stay at the same epoch.
    pub stretch: f64,
}

/// Iterations per epoch of `preset` on its own dataset at its batch size (ImageNet at 1024:
/// 1,252), which turns the paper's epochs into iterations.
pub fn paper_per_epoch(preset: &Preset) -> usize {
    lt_data::Manifest::named(preset.dataset)
        .ok()
        .and_then(|m| m.splits.get("train").map(|s| s.count))
        .and_then(|n| lt_data::DataOrder::new(0, n, preset.batch_size).ok())
        .map_or(1, |order| order.iterations_per_epoch())
}

/// The paper's training length of `preset`.
fn paper_iterations(preset: &Preset) -> u64 {
    preset.iterations.iterations(paper_per_epoch(preset))
}

impl Setup {
    pub fn new(preset: &str, scale: Scale, dataset: Option<&str>) -> Result<Setup> {
        let preset = Preset::named(preset)?;
        let family = family(preset);
        let (iterations, batch, replicates) = match (scale, family) {
            (Scale::Small | Scale::Medium, Family::Imagenet) => bail!(
                "{}: the ImageNet figures have no {} scale (no ImageNet subset is at hand to size one on); \
                 --scale smoke runs them in minutes on a generated miniature ImageNet, --scale paper on ImageNet",
                preset.name,
                scale.name()
            ),
            (Scale::Paper, _) => (paper_iterations(preset), preset.batch_size, 3),
            (Scale::Small, Family::Lenet) => (5_000, preset.batch_size, 2),
            (Scale::Small, Family::Resnet) => (500, preset.batch_size, 2),
            (Scale::Small, Family::Vgg) => (300, preset.batch_size, 2),
            (Scale::Medium, Family::Lenet) => (20_000, preset.batch_size, 2),
            (Scale::Medium, Family::Resnet) => (3_000, preset.batch_size, 2),
            (Scale::Medium, Family::Vgg) => (2_000, preset.batch_size, 2),
            (Scale::Smoke, Family::Lenet) => (100, preset.batch_size, 1),
            (Scale::Smoke, Family::Resnet) => (10, 16, 1),
            (Scale::Smoke, Family::Vgg) => (4, 8, 1),
            (Scale::Smoke, Family::Imagenet) => (6, 8, 1),
        };
        let default_dataset = match (scale, family) {
            (Scale::Smoke, Family::Imagenet) => lt_data::miniature::NAME,
            (Scale::Smoke, _) => "fashion-mnist-sample",
            _ => preset.dataset,
        };
        let dataset = dataset.unwrap_or(default_dataset).to_string();
        if lt_data::Manifest::named(&dataset).is_err() {
            bail!("unknown dataset {dataset:?}; `lt data list` shows the registry");
        }
        // The preset's own size on its own dataset; on the miniature, 64 pixels (its manifest's)
        // except for Inception-v3, whose stem and reductions need at least 75.
        let image_size = match (scale, family) {
            (Scale::Smoke, Family::Imagenet) => preset.image_size.map(|_| 80),
            _ => preset.image_size_on(&dataset),
        };
        let factor = iterations as f64 / paper_iterations(preset) as f64;
        let paper = PruneSpec::for_preset(preset).fraction;
        // Two of the paper's levels at once: 1 - 0.8² = 0.36.
        let fraction = if scale.shortened() && family != Family::Lenet { 1.0 - (1.0 - paper).powi(2) } else { paper };
        Ok(Setup {
            preset,
            family,
            scale,
            dataset,
            iterations,
            batch,
            replicates,
            factor,
            fraction,
            rewind: None,
            levels: None,
            image_size,
            accumulate: None,
            stretch: 1.0,
        })
    }

    /// `--batch`: train with batches of `batch` for the scale's number of epochs. Iterations,
    /// the schedule's milestones and warmup, and the scale's rewind points all stretch by the
    /// scale's batch / `batch`, so each stays at the same epoch; the learning rate stays, so a
    /// smaller batch trains with more gradient noise per example (the batch-size lever on
    /// stability). Apply before `--rewind`, whose points are in the new iterations.
    pub fn with_batch(&mut self, batch: usize) -> Result<()> {
        if batch == 0 {
            bail!("--batch must be at least 1");
        }
        let stretch = self.batch as f64 / batch as f64;
        let iterations = (self.iterations as f64 * stretch).round() as u64;
        if iterations == 0 {
            bail!(
                "--batch {batch}: {}'s {} iterations at batch {} leave no iteration at batch {batch}",
                self.preset.name,
                self.iterations,
                self.batch
            );
        }
        self.factor *= iterations as f64 / self.iterations as f64;
        self.iterations = iterations;
        self.batch = batch;
        self.stretch *= stretch;
        Ok(())
    }

    /// One of the rewind points this scale lists in its own iterations, stretched by `--batch`.
    fn listed(&self, k: u64) -> u64 {
        ((k as f64 * self.stretch).round() as u64).min(self.iterations)
    }

    /// `e` epochs of the paper's schedule, in this scale's iterations.
    pub fn epochs(&self, e: u64) -> u64 {
        self.scaled(e * paper_per_epoch(self.preset) as u64)
    }

    /// The sparsity of the paper's ImageNet figures 6, 7 and 12, as the density left: ResNet-50
    /// and Inception-v3 70% pruned, SqueezeNet 50%.
    pub fn imagenet_density(&self) -> f64 {
        if self.preset.name == "squeezenet" { 0.5 } else { 0.3 }
    }

    /// The densities of figure 8's one-shot curves: the paper's grid of 0.8^n down to 21% at
    /// paper scale, two points at smoke.
    pub fn one_shot_densities(&self) -> Vec<f64> {
        match self.scale {
            Scale::Smoke => vec![0.5, 0.3],
            _ => (1..=7).map(|n| 0.8f64.powi(n)).collect(),
        }
    }

    /// Rewind point `k` in words: "epoch E" (of the paper's schedule) for ImageNet, else
    /// "iteration k".
    pub fn rewind_label(&self, k: u64) -> String {
        match self.rewind_axis() {
            (per, _) if self.family == Family::Imagenet && per > 0.0 => {
                let e = k as f64 / per;
                if (e - e.round()).abs() < 0.05 { format!("epoch {e:.0}") } else { format!("epoch {e:.1}") }
            }
            _ => format!("iteration {k}"),
        }
    }

    /// How rewind points are shown: ImageNet's in epochs of the paper's schedule (the divisor
    /// turns this scale's iterations into them), the others in iterations.
    pub fn rewind_axis(&self) -> (f64, &'static str) {
        match self.family {
            Family::Imagenet => (paper_per_epoch(self.preset) as f64 * self.factor, "rewind epoch"),
            _ => (1.0, "rewind iteration k"),
        }
    }

    /// The paper's iteration `k` at this scale (never 0 unless `k` is).
    pub fn scaled(&self, k: u64) -> u64 {
        if k == 0 { 0 } else { ((k as f64 * self.factor).round() as u64).clamp(1, self.iterations) }
    }

    /// Pruning levels of the accuracy-vs-sparsity figures.
    pub fn curve_levels(&self) -> u32 {
        if let Some(levels) = self.levels {
            return levels;
        }
        match (self.scale, self.family) {
            (Scale::Smoke, _) => 2,
            (Scale::Small | Scale::Medium, Family::Lenet) => 10,
            // 36% per level: 16.8% of the weights left; medium one level deeper, 10.7%.
            (Scale::Small, _) => 4,
            (Scale::Medium, _) => 5,
            (Scale::Paper, Family::Lenet | Family::Resnet) => 16,
            (Scale::Paper, Family::Vgg) => 20,
            // Figure 8's iterative ResNet-50: 20% per level to 16.8% of the weights.
            (Scale::Paper, Family::Imagenet) => 8,
        }
    }

    /// The level of the stability figures' sparsity (LeNet 10.7%, ResNet-18 16.7%, VGG-19 2.2%;
    /// ImageNet: level 1 of a one-shot run to the figure-6 sparsity).
    pub fn stability_level(&self) -> u32 {
        match (self.scale, self.family) {
            (_, Family::Imagenet) => 1,
            (Scale::Smoke, _) => 2,
            (_, Family::Lenet) => 10,
            // 36% per level at small: 16.8% and 1.8% of the weights left.
            (Scale::Small | Scale::Medium, Family::Resnet) => 4,
            (Scale::Small | Scale::Medium, Family::Vgg) => 9,
            (_, Family::Resnet) => 8,
            (_, Family::Vgg) => 17,
        }
    }

    /// The rewind points of the instability figure (iterations of this scale, not the paper's):
    /// roughly geometric from 0 to 40% of T at small (the onset of stability in the follow-up
    /// paper is a few percent of a full CIFAR-10 run, a larger fraction of a short one), to 17%
    /// (ResNet) / 4.5% (VGG) of T at paper scale.
    pub fn instability_points(&self) -> Vec<u64> {
        if let Some(ks) = &self.rewind {
            return ks.clone();
        }
        let ks: &[u64] = match (self.scale, self.family) {
            (Scale::Smoke, Family::Vgg) => &[0, 1, 2],
            (Scale::Smoke, Family::Imagenet) => &[0, 2],
            (Scale::Smoke, _) => &[0, 1, 2, 5],
            (Scale::Small, Family::Lenet) => &[0, 50, 100, 250, 500, 1000],
            (Scale::Small, Family::Resnet) => &[0, 25, 50, 100, 200],
            (Scale::Small, Family::Vgg) => &[0, 10, 25, 50, 100],
            // Around the onsets measured at small (ResNet-20 25, VGG-19 25-100), and later.
            (Scale::Medium, Family::Lenet) => &[0, 100, 250, 500, 1000, 2000],
            (Scale::Medium, Family::Resnet) => &[0, 25, 50, 100, 250, 500],
            (Scale::Medium, Family::Vgg) => &[0, 25, 50, 100, 250],
            (_, Family::Imagenet) => {
                // Epochs around the paper's thresholds: 4 of 90, 6 of 171, 10 of 150.
                let epochs: &[u64] = match self.preset.name {
                    "resnet50" => &[0, 1, 2, 4, 6, 8],
                    "inception-v3" => &[0, 2, 4, 6, 8, 12],
                    _ => &[0, 2, 4, 6, 10, 14],
                };
                let mut ks: Vec<u64> = epochs.iter().map(|e| self.epochs(*e)).collect();
                ks.dedup();
                return ks.into_iter().filter(|k| *k < self.iterations).collect();
            }
            (Scale::Paper, _) => &[0, 100, 250, 500, 1000, 2000, 5000],
        };
        let mut ks: Vec<u64> = ks.iter().map(|k| self.listed(*k)).collect();
        ks.dedup();
        ks.into_iter().filter(|k| *k < self.iterations).collect()
    }

    /// How a pair of copies is measured: points on the line, batches to recompute BatchNorm
    /// statistics at each, training examples of the train error. VGG-19's evaluation costs as much
    /// as 30 of its training steps per 1,000 images, hence fewer points and examples at small.
    pub fn probe(&self) -> lt_lottery::Probe {
        let (points, bn_batches, train_examples) = match (self.scale, self.family) {
            (Scale::Smoke, _) => (3, 2, 100),
            (Scale::Small | Scale::Medium, Family::Vgg) => (3, 30, 2_000),
            (Scale::Small | Scale::Medium, _) => (5, 30, 5_000),
            (Scale::Paper, _) => (11, 50, 10_000),
        };
        lt_lottery::Probe { points, bn_batches, train_examples }
    }

    /// Data-order copies per replicate (paper: 4 copies = 6 pairs × 3 replicates = 18 samples).
    pub fn copies(&self) -> usize {
        match self.scale {
            Scale::Paper => 4,
            Scale::Small | Scale::Medium => 3,
            Scale::Smoke => 2,
        }
    }

    /// The training setup of replicate `r`.
    pub fn train_spec(&self, r: u64) -> TrainSpec {
        let mut t = TrainSpec::from_preset(self.preset, Some(&self.dataset), r, paper_per_epoch(self.preset));
        t.iterations = self.iterations;
        t.batch_size = self.batch;
        t.image_size = self.image_size;
        t.accumulate = self.accumulate;
        if self.scale != Scale::Paper || self.stretch != 1.0 {
            t.schedule.milestones = t.schedule.milestones.iter().map(|m| self.scaled(*m)).collect();
            t.schedule.milestones.dedup();
            t.schedule.warmup = self.scaled(t.schedule.warmup);
        }
        t
    }

    /// IMP of replicate `r` rewound to iteration `k` of this scale (the ImageNet networks: one-shot
    /// to the figure-6 sparsity, as the paper's ImageNet stability figures prune).
    pub fn lottery(&self, r: u64, k: u64) -> LotterySpec {
        let one_shot = (self.family == Family::Imagenet).then(|| self.imagenet_density());
        self.lottery_with(r, k, one_shot)
    }

    /// IMP of replicate `r` rewound to `k`, pruned iteratively (`None`) or once to a density.
    pub fn lottery_with(&self, r: u64, k: u64, one_shot: Option<f64>) -> LotterySpec {
        let prune = PruneSpec { fraction: self.fraction, one_shot, ..PruneSpec::for_preset(self.preset) };
        LotterySpec { train: self.train_spec(r), rewind: k, prune }
    }

    /// Figure 4's rewind points at this scale: the paper's, scaled (points that coincide are one);
    /// at small, three points that bracket the dense network's measured onset of stability
    /// (RESULTS.md: ResNet-20 k* = 25 of 500, VGG-19 between 25 and 100 of 300), ResNet-20's two
    /// lower ones figure 5's (whose IMP runs fig4 then reuses): each of fig4's points costs about
    /// 50 min at small, so the instability figure's five would not fit one sitting; at medium,
    /// the instability figure's grid.
    pub fn rewind_points(&self) -> Vec<u64> {
        if let Some(ks) = &self.rewind {
            return ks.clone();
        }
        match (self.scale, self.family) {
            (Scale::Small, Family::Resnet) => return [0, 50, 200].map(|k| self.listed(k)).to_vec(),
            (Scale::Small, Family::Vgg) => return [0, 25, 100].map(|k| self.listed(k)).to_vec(),
            _ => {}
        }
        if (self.scale.shortened() && self.family != Family::Lenet) || self.family == Family::Imagenet {
            return self.instability_points();
        }
        let paper: &[u64] = match self.family {
            Family::Vgg => &[0, 25, 50, 100, 250, 500, 1000],
            _ => &[0, 100, 250, 500, 1000, 2000],
        };
        let mut ks: Vec<u64> = paper.iter().map(|k| self.scaled(*k)).collect();
        ks.dedup();
        ks
    }

    /// Figure 5's rewind point at this scale: the paper's 500 (ResNet-20) and 100 (VGG-19) of
    /// T = 30,000 and 112,000, scaled; at small, a point past the dense network's measured onset
    /// of stability, where the paper's claim says rewinding works. ResNet-20 on Fashion-MNIST,
    /// T = 500: the barrier is 3.8 points at k = 0, 1.3 at 25 (k*) and 0.4 at 50 (RESULTS.md), so
    /// k = 50. VGG-19, T = 300: 31.2 points at k = 0, 0.59 at 25 (one replicate), so k = 25 (a
    /// second replicate put the onset between 25 and 100). Medium: k = 100 for both, past either.
    pub fn fig5_rewind(&self) -> u64 {
        if let Some(&k) = self.rewind.as_ref().and_then(|ks| ks.last()) {
            return k;
        }
        match (self.scale, self.family) {
            (Scale::Small, Family::Resnet) => self.listed(50),
            (Scale::Small, Family::Vgg) => self.listed(25),
            (Scale::Medium, Family::Resnet | Family::Vgg) => self.listed(100),
            (_, Family::Vgg) => self.scaled(100),
            (Scale::Smoke, Family::Imagenet) => self.listed(2),
            // Figure 8: just past the epochs where rewinding matched the dense network (4, 6 and
            // 10); ResNet-50's 6 is the paper's own (its iterative panel).
            (_, Family::Imagenet) => self.epochs(match self.preset.name {
                "resnet50" => 6,
                "inception-v3" => 8,
                _ => 12,
            }),
            _ => self.scaled(500),
        }
    }

    /// Training-step cost in ms per example on this project's 2-core machine (`cargo xtask bench
    /// train`, 2026-11-25, third kernels session: LeNet 0.9 ms / 60, ResNet-20 335 ms / 128,
    /// VGG-19 1,150 ms / 64, rounded up), for the estimates printed by `--help`.
    pub fn ms_per_example(&self) -> f64 {
        match self.family {
            Family::Lenet => 0.025,
            Family::Resnet => 3.0,
            Family::Vgg => 19.0,
            // At the smoke scale's 64-80 pixels (about 1/10 of the FLOPs at 224-299).
            Family::Imagenet => match self.preset.name {
                "squeezenet" => 3.0,
                "inception-v3" => 25.0,
                _ => 20.0,
            },
        }
    }

    /// Training images per second assumed for one data-centre GPU (fp32, the paper's input size)
    /// in the paper-scale estimates of the ImageNet figures: torchvision-class throughput, not a
    /// measurement of this engine (`cargo xtask gpu-check` measures it where a GPU is at hand).
    pub fn gpu_images_per_second(&self) -> f64 {
        match self.preset.name {
            "squeezenet" => 4_000.0,
            "inception-v3" => 800.0,
            _ => 1_200.0,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

    use super::*;

    /// `medium` is small's protocol (36% per level, the instability grid, 3 copies) trained for
    /// longer, one level deeper, rewound past the onsets measured at small; ImageNet has none.
    #[test]
    fn medium_trains_smalls_protocol_longer() {
        let (small, medium) = (
            Setup::new("resnet18-standard", Scale::Small, Some("fashion-mnist")).unwrap(),
            Setup::new("resnet18-standard", Scale::Medium, Some("fashion-mnist")).unwrap(),
        );
        assert_eq!((small.iterations, medium.iterations), (500, 3_000));
        assert_eq!(medium.fraction, small.fraction);
        assert_eq!((small.curve_levels(), medium.curve_levels()), (4, 5));
        assert_eq!((small.fig5_rewind(), medium.fig5_rewind()), (50, 100));
        // Small's fig4 grid: both sides of k* = 25, fig5's two runs among its points.
        assert_eq!(small.rewind_points(), vec![0, 50, 200]);
        assert!(small.rewind_points().contains(&small.fig5_rewind()));
        assert_eq!(medium.rewind_points(), medium.instability_points());
        assert_eq!(medium.copies(), small.copies());
        // The paper's rate drops at 20,000 and 25,000 of 30,000, scaled by a tenth.
        assert_eq!(medium.train_spec(0).schedule.milestones, vec![2_000, 2_500]);
        let vgg = Setup::new("vgg19-standard", Scale::Medium, Some("fashion-mnist")).unwrap();
        assert_eq!((vgg.iterations, vgg.fig5_rewind()), (2_000, 100));
        let e = Setup::new("resnet50", Scale::Medium, None).err().unwrap().to_string();
        assert!(e.contains("no medium scale"), "{e}");
    }

    /// `--batch 32` at small trains ResNet-20 for the same 1.07 epochs as batch 128: 4x the
    /// iterations, the rate drops, warmup and every rewind point at the same epoch.
    #[test]
    fn a_smaller_batch_keeps_the_epochs() {
        let mut s = Setup::new("resnet18-standard", Scale::Small, Some("fashion-mnist")).unwrap();
        s.with_batch(32).unwrap();
        assert_eq!((s.iterations, s.batch), (2_000, 32));
        assert_eq!(s.train_spec(0).schedule.milestones, vec![1_333, 1_667]);
        assert_eq!(s.instability_points(), vec![0, 100, 200, 400, 800]);
        assert_eq!(s.rewind_points(), vec![0, 200, 800]);
        assert_eq!(s.fig5_rewind(), 200);
        let mut w = Setup::new("resnet18-warmup", Scale::Small, Some("fashion-mnist")).unwrap();
        assert_eq!(w.train_spec(0).schedule.warmup, 333);
        w.with_batch(32).unwrap();
        // 20,000 of the paper's 30,000 iterations, now of 2,000.
        assert_eq!(w.train_spec(0).schedule.warmup, 1_333);
        // At paper scale the milestones stretch too (they are left alone without --batch).
        let mut p = Setup::new("resnet18-standard", Scale::Paper, None).unwrap();
        let before = p.train_spec(0).schedule.milestones;
        p.with_batch(256).unwrap();
        let after = p.train_spec(0).schedule.milestones;
        assert_eq!(after, before.iter().map(|m| m / 2).collect::<Vec<_>>());
        let e = s.with_batch(0).err().unwrap().to_string();
        assert!(e.contains("--batch must be at least 1"), "{e}");
        let mut tiny = Setup::new("resnet18-standard", Scale::Smoke, None).unwrap();
        let e = tiny.with_batch(100_000).err().unwrap().to_string();
        assert!(e.contains("leave no iteration"), "{e}");
    }
}
