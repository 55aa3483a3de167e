//! Instability analysis of the dense network (Frankle, Dziugaite, Roy, Carbin, "Linear Mode
//! Connectivity and the Lottery Ticket Hypothesis", ICML 2020): train two copies of the network
//! from W_k with different data orders and measure the error barrier on the straight line between
//! their final weights. Where the barrier is large, training from W_k is unstable to data order;
//! the k from which it is about zero is the onset of stability, the earliest iteration rewinding
//! should go back to.
//!
//! ```text
//! ROOT/instability/<preset>-<hash of the TrainSpec>/
//!   hparams.toml                  the TrainSpec (its hash names the folder)
//!   trajectory-<hash of the ks>/  the dense run from W_0 (the spec's data order) up to the largest
//!                                 k, with step_K.safetensors for every k of the grid
//!   k_K/data_order_S/             a copy trained from W_k to T with data-order seed S
//!   k_K/path-p<P>-b<B>-n<N>.json  the measurement of the pair (P points, B batches to recompute
//!                                 BatchNorm statistics, N training examples for the train error)
//! ```
//!
//! Copies are jobs like any other (idempotent, resumable). As everywhere in this project, a copy
//! from W_k starts a fresh optimizer (OpenLTH's rewinding) and continues the schedule from k.
//!
//! BatchNorm: a point on the line between two networks has no running statistics of its own, so
//! every point, the two ends included, is evaluated with statistics recomputed from training
//! batches (the follow-up paper's practice). The copies' own evaluations (`done.json`) use the
//! running statistics accumulated during training; both are reported, because at a high learning
//! rate they can differ by several points.

use std::path::{Path, PathBuf};

use candle_core::Tensor;
use lt_data::Loader;
use lt_stability::{Distances, Weights};
use serde::{Deserialize, Serialize};

use crate::job::{self, Context, Init, Job};
use crate::lottery::claim;
use crate::{Error, TrainSpec};

/// How a pair of copies is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    /// Evenly spaced points from α = 0 to α = 1 (at least 2).
    pub points: usize,
    /// Training batches run through each point to recompute its BatchNorm statistics (momentum
    /// 0.1 from reset values: 50 batches leave 0.5% of them).
    pub bn_batches: u64,
    /// The first N training examples (evaluation transform) give the train error; 0: none.
    pub train_examples: usize,
}

/// Test (and train) error along the line between two networks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// α of each point (0 = the first network, 1 = the second).
    pub alphas: Vec<f64>,
    /// Test error at each point, with recomputed BatchNorm statistics.
    pub test_errors: Vec<f64>,
    /// Train error at each point (empty when not measured).
    pub train_errors: Vec<f64>,
    /// Batches used to recompute BatchNorm statistics at each point (0: the network has none).
    pub bn_batches: u64,
    /// Training examples of the train error (0: not measured).
    pub train_examples: usize,
}

impl Line {
    /// The test error barrier: the largest rise above the mean of the end points' errors.
    pub fn test_barrier(&self) -> f64 {
        lt_stability::error_barrier(&self.test_errors).unwrap_or(0.0)
    }

    /// The train error barrier, when measured.
    pub fn train_barrier(&self) -> Option<f64> {
        lt_stability::error_barrier(&self.train_errors)
    }
}

/// The instability of training from W_k: one pair of copies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instability {
    /// The rewind iteration k.
    pub rewind: u64,
    /// The two copies' data-order seeds.
    pub seeds: [u64; 2],
    /// The errors along the line.
    pub path: Line,
    /// Test error barrier (recomputed BatchNorm statistics), in [−1, 1].
    pub barrier: f64,
    /// Train error barrier, when measured.
    pub train_barrier: Option<f64>,
    /// Distance of the copies' final weights over the prunable tensors.
    pub distance: Distances,
    /// The copies' test accuracy from their own evaluation (BatchNorm running statistics).
    pub accuracy_running: [f64; 2],
    /// The copies' test accuracy with recomputed statistics (the ends of `path`).
    pub accuracy_recomputed: [f64; 2],
}

/// The dense network of one training setup, trained from W_k for several k.
#[derive(Debug, Clone)]
pub struct DenseRuns {
    spec: TrainSpec,
    dir: PathBuf,
}

impl DenseRuns {
    /// The dense runs of `spec` in the store `root` (the folder is created if new).
    pub fn create(root: &Path, spec: TrainSpec) -> Result<Self, Error> {
        if spec.iterations == 0 {
            return Err(Error::Request("an instability measurement needs T > 0 iterations".into()));
        }
        let dir = Self::folder(root, &spec);
        claim(&dir.join(crate::HPARAMS), &spec, "training setup")?;
        Ok(DenseRuns { spec, dir })
    }

    /// The folder of `spec`'s runs in `root`, without touching the disk.
    pub fn folder(root: &Path, spec: &TrainSpec) -> PathBuf {
        root.join("instability").join(format!("{}-{}", spec.preset, &crate::spec::hash(spec)[..12]))
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The two data-order seeds of a pair.
    pub fn seeds(&self) -> [u64; 2] {
        let s = self.spec.data_order_seed;
        [s, s + 1]
    }

    /// The trajectory job that saves W_k for every k of `ks` (None when every k is 0).
    fn trajectory(&self, ks: &[u64]) -> Option<(TrainSpec, Job)> {
        let last = *ks.iter().max()?;
        if last == 0 {
            return None;
        }
        let mut spec = self.spec.clone();
        // The schedule is a function of the iteration alone, so the run to `last` passes through
        // the same weights as the run to T would.
        spec.iterations = last;
        let mut save_at: Vec<u64> = ks.iter().copied().filter(|k| *k > 0).collect();
        save_at.sort_unstable();
        save_at.dedup();
        let job = Job {
            label: format!("dense trajectory to iteration {last}"),
            dir: self.dir.join(format!("trajectory-{}", &crate::spec::hash(&save_at)[..8])),
            init: Init::Fresh { seed: self.spec.seed },
            mask: None,
            start: 0,
            data_order_seed: self.spec.data_order_seed,
            save_at,
        };
        Some((spec, job))
    }

    /// The copy from W_k with data-order seed `seed` (`ks`: the grid, which names the trajectory).
    pub fn copy(&self, k: u64, seed: u64, ks: &[u64]) -> Result<Job, Error> {
        let init = if k == 0 {
            Init::Fresh { seed: self.spec.seed }
        } else {
            let (_, traj) = self.trajectory(ks).ok_or_else(|| Error::Request(format!("k = {k} is not in the grid")))?;
            Init::Checkpoint(traj.dir.join(format!("step_{k}.safetensors")))
        };
        Ok(Job {
            label: format!("dense from iteration {k}, data order {seed}"),
            dir: self.dir.join(format!("k_{k}")).join(format!("data_order_{seed}")),
            init,
            mask: None,
            start: k,
            data_order_seed: seed,
            save_at: vec![],
        })
    }

    /// Where the measurement of k under `probe` is kept.
    pub fn result_path(&self, k: u64, probe: &Probe) -> PathBuf {
        self.dir
            .join(format!("k_{k}"))
            .join(format!("path-p{}-b{}-n{}.json", probe.points, probe.bn_batches, probe.train_examples))
    }

    /// The measurement of k under `probe`, if it was made.
    pub fn result(&self, k: u64, probe: &Probe) -> Result<Option<Instability>, Error> {
        let path = self.result_path(k, probe);
        if !path.is_file() {
            return Ok(None);
        }
        crate::lottery::read_json(&path).map(Some)
    }

    /// Iterations still to train for the grid `ks` (an upper bound: counts every copy not done).
    pub fn remaining(&self, ks: &[u64]) -> Result<u64, Error> {
        let mut n = 0;
        if let Some((spec, traj)) = self.trajectory(ks)
            && job::outcome(&traj.dir)?.is_none()
        {
            n += spec.iterations;
        }
        for &k in ks {
            for seed in self.seeds() {
                if job::outcome(&self.copy(k, seed, ks)?.dir)?.is_none() {
                    n += self.spec.iterations.saturating_sub(k);
                }
            }
        }
        Ok(n)
    }

    /// Measures the instability from W_k for every k of `ks` (training what is missing, reusing
    /// what is done).
    pub fn measure(&self, ks: &[u64], probe: &Probe, ctx: &mut Context) -> Result<Vec<Instability>, Error> {
        if probe.points < 2 {
            return Err(Error::Request(format!("a path needs at least 2 points, got {}", probe.points)));
        }
        if let Some(k) = ks.iter().find(|k| **k >= self.spec.iterations) {
            return Err(Error::Request(format!(
                "rewind point {k} is not before the end of training ({})",
                self.spec.iterations
            )));
        }
        if let Some((spec, traj)) = self.trajectory(ks) {
            job::run(&spec, &traj, ctx)?;
        }
        let mut out = Vec::new();
        for &k in ks {
            if let Some(done) = self.result(k, probe)? {
                out.push(done);
                continue;
            }
            let seeds = self.seeds();
            let mut running = [0.0; 2];
            let mut copies = Vec::new();
            for (i, seed) in seeds.iter().enumerate() {
                let copy = self.copy(k, *seed, ks)?;
                running[i] = job::run(&self.spec, &copy, ctx)?.accuracy;
                copies.push(copy);
            }
            let ends: Vec<Weights> = copies
                .iter()
                .map(|c| job::checkpoint_weights(&c.dir.join("final.safetensors"), None))
                .collect::<Result<_, _>>()?;
            let path = errors_along(&self.spec, ctx, &ends[0], &ends[1], probe)?;
            let model = job::new_model(&self.spec, ctx.data, self.spec.seed, &ctx.exec.device)?;
            let mask: lt_stability::MaskBits =
                model.prunable().into_iter().filter_map(|n| ends[0].get(&n).map(|w| (n, vec![1u8; w.len()]))).collect();
            let distance = lt_stability::distance(&ends[0], &ends[1], &mask)?;
            let last = path.test_errors.len() - 1;
            let result = Instability {
                rewind: k,
                seeds,
                barrier: path.test_barrier(),
                train_barrier: path.train_barrier(),
                distance,
                accuracy_running: running,
                accuracy_recomputed: [1.0 - path.test_errors[0], 1.0 - path.test_errors[last]],
                path,
            };
            let file = self.result_path(k, probe);
            let json = serde_json::to_string_pretty(&result).map_err(|e| Error::Request(e.to_string()))?;
            lt_data::write_atomic(&file, json.as_bytes())?;
            out.push(result);
        }
        Ok(out)
    }
}

/// Test (and train) error at `probe.points` evenly spaced points of the line from `a` to `b`
/// (all of a model's tensors, BatchNorm statistics recomputed at each point).
pub(crate) fn errors_along(
    spec: &TrainSpec,
    ctx: &mut Context,
    a: &Weights,
    b: &Weights,
    probe: &Probe,
) -> Result<Line, Error> {
    let device = ctx.exec.device.clone();
    let model = job::new_model(spec, ctx.data, spec.seed, &device)?;
    let has_bn = model.tensors().iter().any(|(_, k, _)| *k == lt_models::ParamKind::Buffer);
    let bn_batches = if has_bn { probe.bn_batches.max(1) } else { 0 };
    let mut path = Line {
        alphas: Vec::new(),
        test_errors: Vec::new(),
        train_errors: Vec::new(),
        bn_batches,
        train_examples: probe.train_examples.min(ctx.data.train.len()),
    };
    let points = probe.points.max(2);
    for i in 0..points {
        let alpha = i as f64 / (points - 1) as f64;
        let w = lt_stability::interpolate(a, b, alpha as f32)?;
        let mut state = std::collections::HashMap::new();
        for (name, _, var) in model.tensors() {
            let mut values =
                w.get(&name).cloned().ok_or_else(|| Error::Request(format!("checkpoint lacks tensor {name}")))?;
            if name.ends_with("running_mean") {
                values.fill(0.0);
            } else if name.ends_with("running_var") {
                values.fill(1.0);
            }
            state.insert(name, Tensor::from_vec(values, var.dims(), &device)?);
        }
        model.load_state(&state)?;
        if bn_batches > 0 {
            let mut loader = Loader::new(ctx.data.train.clone(), spec.data_order_seed, spec.batch_size, &device)?;
            for t in 0..bn_batches {
                model.forward_t(&loader.batch(t)?.images, true)?;
            }
        }
        let test = lt_train::evaluate(&model, &ctx.data.test, lt_train::EVAL_BATCH, &device)?;
        path.alphas.push(alpha);
        path.test_errors.push(1.0 - test.accuracy);
        if path.train_examples > 0 {
            let train =
                lt_train::evaluate_first(&model, &ctx.data.train, path.train_examples, lt_train::EVAL_BATCH, &device)?;
            path.train_errors.push(1.0 - train.accuracy);
        }
    }
    Ok(path)
}
