//! Branches off a lottery run: for chosen levels, a variant of the level's subnetwork trained
//! under the same setup. They live under `RUN/branches/<kind>-<hash>/level_L/`, named by a hash of
//! the branch's own parameters, and reuse the run's W_0, W_k and masks.
//!
//! - `random-prune`: a random mask with the level's per-tensor survivor counts, trained from W_k
//!   (the paper's random pruning).
//! - `reinit`: the level's mask on freshly initialized weights, trained from iteration k
//!   (the paper's random reinitialization).
//! - `reset`: the level's mask on W_0, trained from iteration 0.
//! - `snip`: a SNIP mask (global, one shot) at the level's density, scored and trained from W_k,
//!   or from W_0 at iteration 0 with `from_init`.
//! - `retrain`: the level's subnetwork from W_k with another learning rate.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use lt_prune::{Amount, Mask, MaskMeta, Scope};
use serde::{Deserialize, Serialize};

use crate::job::{self, Context, Init, Job, Outcome};
use crate::lottery::{MASK, claim};
use crate::{Error, Lottery, TrainSpec};

/// What a branch changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BranchKind {
    /// Random mask with the same per-tensor counts, from W_k.
    RandomPrune,
    /// Same mask, fresh weights.
    Reinit,
    /// Same mask, W_0 and iteration 0.
    Reset,
    /// SNIP mask at the same density.
    Snip,
    /// Same subnetwork, another learning rate.
    Retrain,
}

impl BranchKind {
    /// Every kind with its command-line name.
    pub const ALL: [(&'static str, BranchKind); 5] = [
        ("random-prune", BranchKind::RandomPrune),
        ("reinit", BranchKind::Reinit),
        ("reset", BranchKind::Reset),
        ("snip", BranchKind::Snip),
        ("retrain", BranchKind::Retrain),
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, k)| *k == self).map_or("?", |(n, _)| n)
    }
}

impl FromStr for BranchKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, k)| *k).ok_or_else(|| {
            Error::Request(format!(
                "unknown branch {s:?}; branches are {}",
                Self::ALL.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ))
        })
    }
}

/// A branch's parameters (its hash names its folder).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BranchSpec {
    /// The kind.
    pub kind: BranchKind,
    /// Seed of the random mask (`random-prune`, default: the run's seed) or of the fresh weights
    /// (`reinit`, default: the run's seed + 1,000,000, so they differ from every replicate's W_0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// `snip`: score and train from W_0 at iteration 0 instead of W_k.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_init: Option<bool>,
    /// `snip`: mini-batches whose gradients are summed (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snip_batches: Option<u64>,
    /// `retrain`: the base learning rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
}

impl BranchSpec {
    /// A branch of `kind` with default parameters.
    pub fn new(kind: BranchKind) -> Self {
        BranchSpec { kind, seed: None, from_init: None, snip_batches: None, lr: None }
    }
}

/// A branch of a lottery run.
#[derive(Debug, Clone)]
pub struct Branch {
    run: Lottery,
    spec: BranchSpec,
    dir: PathBuf,
}

impl Branch {
    /// The branch `spec` of `run` (its folder is created if new).
    pub fn create(run: &Lottery, spec: BranchSpec) -> Result<Self, Error> {
        if spec.kind == BranchKind::Retrain && spec.lr.is_none() {
            return Err(Error::Request("a retrain branch needs a learning rate (--lr)".into()));
        }
        if let Some(lr) = spec.lr.filter(|lr| !(lr.is_finite() && *lr > 0.0)) {
            return Err(Error::Request(format!("learning rate must be positive, got {lr}")));
        }
        let dir = run.dir().join("branches").join(format!("{}-{}", spec.kind.name(), &crate::spec::hash(&spec)[..12]));
        claim(&dir.join(crate::HPARAMS), &spec, "branch")?;
        Ok(Branch { run: run.clone(), spec, dir })
    }

    /// The folder of branch `spec` of the run in `run_dir` (whether or not it exists).
    pub fn folder(run_dir: &Path, spec: &BranchSpec) -> PathBuf {
        run_dir.join("branches").join(format!("{}-{}", spec.kind.name(), &crate::spec::hash(spec)[..12]))
    }

    /// The branch's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The parameters.
    pub fn spec(&self) -> &BranchSpec {
        &self.spec
    }

    /// The folder of level `level`.
    pub fn level_dir(&self, level: u32) -> PathBuf {
        self.dir.join(format!("level_{level}"))
    }

    /// The training setup (the run's, with a retrain branch's learning rate).
    pub fn train_spec(&self) -> TrainSpec {
        let mut spec = self.run.spec().train.clone();
        if let Some(lr) = self.spec.lr {
            spec.schedule.lr = lr;
        }
        spec
    }

    fn start(&self) -> (Init, u64) {
        let k = self.run.spec().rewind;
        let wk = Init::Checkpoint(self.run.rewind_checkpoint());
        let w0 = Init::Checkpoint(self.run.init_checkpoint());
        match self.spec.kind {
            BranchKind::RandomPrune | BranchKind::Retrain => (wk, k),
            BranchKind::Reinit => {
                (Init::Fresh { seed: self.spec.seed.unwrap_or(self.run.spec().train.seed + 1_000_000) }, k)
            }
            BranchKind::Reset => (w0, 0),
            BranchKind::Snip if self.spec.from_init == Some(true) => (w0, 0),
            BranchKind::Snip => (wk, k),
        }
    }

    /// The branch's mask at level `level` (computed and saved the first time).
    pub fn mask(&self, level: u32, ctx: &mut Context) -> Result<Mask, Error> {
        let imp = self.run.mask(level)?;
        let path = self.level_dir(level).join(MASK);
        let mask = match self.spec.kind {
            BranchKind::Reinit | BranchKind::Reset | BranchKind::Retrain => return Ok(imp),
            _ if path.is_file() => return Ok(Mask::load(&path)?.0),
            BranchKind::RandomPrune => {
                let seed = self.spec.seed.unwrap_or(self.run.spec().train.seed);
                lt_prune::random_like(&imp, seed.wrapping_mul(1_000_003).wrapping_add(level as u64))
            }
            BranchKind::Snip => {
                let dense = self.run.mask(0)?;
                let names: Vec<String> = dense.names().map(String::from).collect();
                let (init, t0) = self.start();
                let train = &self.run.spec().train;
                let batches = crate::prune::Batches {
                    data_order_seed: train.data_order_seed,
                    t0,
                    count: self.spec.snip_batches.unwrap_or(1),
                };
                let grads = crate::prune::snip_gradients(train, ctx, &init, None, batches, &names)?;
                let at = match &init {
                    Init::Checkpoint(p) => p.clone(),
                    Init::Fresh { .. } => self.run.init_checkpoint(),
                };
                let weights = job::checkpoint_weights(&at, Some(&names))?;
                lt_prune::snip(&weights, &grads, &dense, &Scope::Global(Amount::Density(imp.density())))?
            }
        };
        std::fs::create_dir_all(self.level_dir(level)).map_err(Error::io(self.level_dir(level)))?;
        let meta = MaskMeta {
            model: self.run.spec().train.model.clone(),
            level,
            strategy: self.spec.kind.name().into(),
            parent: Some(imp.hash()),
        };
        mask.save(&path, &meta)?;
        Ok(mask)
    }

    /// The job of level `level`.
    pub fn level_job(&self, level: u32, ctx: &mut Context) -> Result<Job, Error> {
        let mask = self.mask(level, ctx)?;
        let (init, start) = self.start();
        Ok(Job {
            label: format!("{} level {level} ({:.1}% left)", self.spec.kind.name(), 100.0 * mask.density()),
            dir: self.level_dir(level),
            init,
            mask: Some(mask),
            start,
            data_order_seed: self.run.spec().train.data_order_seed,
            save_at: vec![],
        })
    }

    /// Trains the branch at each of `levels` (each must be trained in the run).
    pub fn run(&self, levels: &[u32], ctx: &mut Context) -> Result<Vec<(u32, Outcome)>, Error> {
        for &level in levels {
            self.run.outcome(level)?;
        }
        let spec = self.train_spec();
        levels
            .iter()
            .map(|&level| {
                let job = self.level_job(level, ctx)?;
                Ok((level, job::run(&spec, &job, ctx)?))
            })
            .collect()
    }
}
