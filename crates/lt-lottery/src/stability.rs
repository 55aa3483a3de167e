//! Stability of a level's subnetwork (W_k, m), as Section 2 of the paper defines it, with the
//! random-pruning control, and linear-mode interpolation (Frankle et al., ICML 2020).
//!
//! Copies are jobs like any other: copy `S` of a subnetwork is trained with data-order seed `S`;
//! the copy whose seed is the run's own is the level's run itself (reused, not retrained), other
//! copies live in `data_order_S/` under the level's folder. The pruning partner (the full network
//! from W_k with the same data order) is level 0 itself when k = 0; otherwise it is trained once
//! per seed under `RUN/dense_from_k/` and shared by every level. Rewinding starts a fresh
//! optimizer (OpenLTH's convention), which is why level 0 is not the partner when k > 0.

use std::path::PathBuf;

use lt_prune::Mask;
use lt_stability::{Distances, MaskBits, Stats};
use serde::{Deserialize, Serialize};

use crate::job::{self, Context, Init, Job};
use crate::{Branch, BranchKind, BranchSpec, Error, Lottery};

/// Which stability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StabilityKind {
    /// Two copies of the subnetwork, different data orders.
    DataOrder,
    /// The full network and the subnetwork, the same data order.
    Pruning,
}

/// The distance between two trained networks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    /// The first (e.g. `data order 0`).
    pub a: String,
    /// The second.
    pub b: String,
    /// Their distance under the subnetwork's mask.
    pub distance: Distances,
}

/// Stability and accuracy of one subnetwork over samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// `imp` or `random`.
    pub subnetwork: String,
    /// Its density.
    pub density: f64,
    /// L2 distance over the samples.
    pub l2: Stats,
    /// Angle (degrees) over the samples.
    pub angle: Stats,
    /// Test accuracy of the subnetwork's copies.
    pub accuracy: Stats,
    /// Every measured pair.
    pub pairs: Vec<Pair>,
}

/// A stability measurement of one level, with its random control.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StabilityReport {
    /// Which stability.
    pub kind: StabilityKind,
    /// The level.
    pub level: u32,
    /// The rewind iteration k.
    pub rewind: u64,
    /// Copies (data order) or pairs (pruning) per subnetwork.
    pub samples: usize,
    /// The IMP subnetwork.
    pub imp: Measurement,
    /// The random control.
    pub random: Option<Measurement>,
    /// Mean random L2 / mean IMP L2 (the paper's "comp").
    pub ratio_l2: Option<f64>,
    /// Mean random angle / mean IMP angle.
    pub ratio_angle: Option<f64>,
}

/// A subnetwork and where its copies live.
struct Subnet {
    name: &'static str,
    mask: Mask,
    base: Job,
    /// Copies sit beside the base (`dense_from_k/data_order_S`, shared with the pruning partners)
    /// rather than under it.
    siblings: bool,
}

impl Subnet {
    fn copy(&self, seed: u64) -> Job {
        let mut job = self.base.clone();
        if seed != self.base.data_order_seed {
            job.dir = match self.base.dir.parent() {
                Some(parent) if self.siblings => parent.join(format!("data_order_{seed}")),
                _ => self.base.dir.join(format!("data_order_{seed}")),
            };
            job.label = format!("{}, data order {seed}", self.base.label);
            job.data_order_seed = seed;
            job.save_at = vec![];
        }
        job
    }
}

fn imp_subnet(run: &Lottery, level: u32) -> Result<Subnet, Error> {
    run.outcome(level)?;
    let mask = run.mask(level)?;
    let siblings = level == 0 && run.spec().rewind > 0;
    let base = if siblings { dense_partner(run, run.spec().train.data_order_seed) } else { run.level_job(level)? };
    Ok(Subnet { name: "imp", mask, base, siblings })
}

fn random_subnet(run: &Lottery, level: u32, ctx: &mut Context) -> Result<Subnet, Error> {
    let branch = Branch::create(run, BranchSpec::new(BranchKind::RandomPrune))?;
    let base = branch.level_job(level, ctx)?;
    let mask = branch.mask(level, ctx)?;
    Ok(Subnet { name: "random", mask, base, siblings: false })
}

/// The full network trained from W_k with data-order seed `seed`.
fn dense_partner(run: &Lottery, seed: u64) -> Job {
    let k = run.spec().rewind;
    if k == 0 && seed == run.spec().train.data_order_seed {
        return Job {
            label: "level 0 (dense)".into(),
            dir: run.level_dir(0),
            init: Init::Fresh { seed: run.spec().train.seed },
            mask: None,
            start: 0,
            data_order_seed: seed,
            save_at: vec![0],
        };
    }
    Job {
        label: format!("dense from iteration {k}, data order {seed}"),
        dir: run.dir().join("dense_from_k").join(format!("data_order_{seed}")),
        init: Init::Checkpoint(run.rewind_checkpoint()),
        mask: None,
        start: k,
        data_order_seed: seed,
        save_at: vec![],
    }
}

fn bits(mask: &Mask) -> MaskBits {
    mask.iter().map(|(n, _, b)| (n.to_string(), b.to_vec())).collect()
}

fn final_weights(job: &Job, mask: &Mask) -> Result<lt_stability::Weights, Error> {
    let names: Vec<String> = mask.names().map(String::from).collect();
    job::checkpoint_weights(&job.dir.join("final.safetensors"), Some(&names))
}

fn seeds(run: &Lottery, samples: usize) -> Vec<u64> {
    let base = run.spec().train.data_order_seed;
    (0..samples as u64).map(|i| base + i).collect()
}

fn measure(
    run: &Lottery,
    subnet: &Subnet,
    kind: StabilityKind,
    samples: usize,
    ctx: &mut Context,
) -> Result<Measurement, Error> {
    let spec = &run.spec().train;
    let mask_bits = bits(&subnet.mask);
    let mut pairs = Vec::new();
    let mut accuracies = Vec::new();
    let copies: Vec<Job> = seeds(run, samples).into_iter().map(|s| subnet.copy(s)).collect();
    for copy in &copies {
        accuracies.push(job::run(spec, copy, ctx)?.accuracy);
    }
    match kind {
        StabilityKind::DataOrder => {
            let weights: Vec<_> = copies.iter().map(|c| final_weights(c, &subnet.mask)).collect::<Result<_, _>>()?;
            for (i, j) in lt_stability::pairs(copies.len()) {
                pairs.push(Pair {
                    a: format!("data order {}", copies[i].data_order_seed),
                    b: format!("data order {}", copies[j].data_order_seed),
                    distance: lt_stability::distance(&weights[i], &weights[j], &mask_bits)?,
                });
            }
        }
        StabilityKind::Pruning => {
            for copy in &copies {
                let partner = dense_partner(run, copy.data_order_seed);
                job::run(spec, &partner, ctx)?;
                pairs.push(Pair {
                    a: format!("dense, data order {}", copy.data_order_seed),
                    b: format!("{}, data order {}", subnet.name, copy.data_order_seed),
                    distance: lt_stability::distance(
                        &final_weights(&partner, &subnet.mask)?,
                        &final_weights(copy, &subnet.mask)?,
                        &mask_bits,
                    )?,
                });
            }
        }
    }
    let stat =
        |v: Vec<f64>| Stats::of(&v).ok_or_else(|| Error::Request("a stability measurement needs samples".into()));
    Ok(Measurement {
        subnetwork: subnet.name.into(),
        density: subnet.mask.density(),
        l2: stat(pairs.iter().map(|p| p.distance.total.l2).collect())?,
        angle: stat(pairs.iter().map(|p| p.distance.total.angle).collect())?,
        accuracy: stat(accuracies)?,
        pairs,
    })
}

fn report(
    run: &Lottery,
    kind: StabilityKind,
    level: u32,
    samples: usize,
    control: bool,
    ctx: &mut Context,
) -> Result<StabilityReport, Error> {
    let min = if kind == StabilityKind::DataOrder { 2 } else { 1 };
    if samples < min {
        return Err(Error::Request(format!("{kind:?} stability needs at least {min} samples, got {samples}")));
    }
    let imp = measure(run, &imp_subnet(run, level)?, kind, samples, ctx)?;
    let random = if control { Some(measure(run, &random_subnet(run, level, ctx)?, kind, samples, ctx)?) } else { None };
    let ratio = |f: fn(&Measurement) -> f64| random.as_ref().map(|r| f(r) / f(&imp));
    let report = StabilityReport {
        kind,
        level,
        rewind: run.spec().rewind,
        samples,
        ratio_l2: ratio(|m| m.l2.mean),
        ratio_angle: ratio(|m| m.angle.mean),
        imp,
        random,
    };
    let name = match kind {
        StabilityKind::DataOrder => "data-order",
        StabilityKind::Pruning => "pruning",
    };
    let path = run.dir().join("stability").join(format!("{name}-level_{level}-n{samples}.json"));
    std::fs::create_dir_all(run.dir().join("stability")).map_err(Error::io(run.dir().join("stability")))?;
    let json = serde_json::to_string_pretty(&report).map_err(|e| Error::Request(e.to_string()))?;
    lt_data::write_atomic(&path, json.as_bytes())?;
    Ok(report)
}

/// Stability to data order of level `level`: `samples` copies, every pair; with the random control
/// when `control`.
pub fn data_order(
    run: &Lottery,
    level: u32,
    samples: usize,
    control: bool,
    ctx: &mut Context,
) -> Result<StabilityReport, Error> {
    report(run, StabilityKind::DataOrder, level, samples, control, ctx)
}

/// Stability to pruning of level `level`: `samples` pairs (dense, subnetwork), one per data order.
pub fn pruning(
    run: &Lottery,
    level: u32,
    samples: usize,
    control: bool,
    ctx: &mut Context,
) -> Result<StabilityReport, Error> {
    report(run, StabilityKind::Pruning, level, samples, control, ctx)
}

/// Test error along the line between two data-order copies of a level's subnetwork.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interpolation {
    /// The level.
    pub level: u32,
    /// α of each point (0 = the first copy, 1 = the second).
    pub alphas: Vec<f64>,
    /// Test error at each point.
    pub errors: Vec<f64>,
    /// The error barrier (largest rise above the mean of the end points).
    pub barrier: f64,
    /// Training batches used to recompute BatchNorm statistics at each point (0: none needed).
    pub bn_batches: u64,
    /// The two copies' test accuracy from their own evaluation (BatchNorm running statistics;
    /// `errors` recomputes the statistics at every point, the ends included).
    #[serde(default)]
    pub accuracy_running: Vec<f64>,
}

/// Linear-mode interpolation between copies 0 and 1 of level `level` at `points` evenly spaced
/// points. Pruned weights are zero in both ends and so on the whole line; BatchNorm running
/// statistics are recomputed at each point from `bn_batches` training batches (momentum 0.1, so 50
/// batches leave 0.5% of the reset value).
pub fn interpolate(
    run: &Lottery,
    level: u32,
    points: usize,
    bn_batches: u64,
    ctx: &mut Context,
) -> Result<Interpolation, Error> {
    if points < 2 {
        return Err(Error::Request(format!("an interpolation needs at least 2 points, got {points}")));
    }
    let dir: PathBuf = run.dir().join("stability");
    let file = dir.join(format!("interpolate-level_{level}-p{points}.json"));
    if file.is_file() {
        let done: Interpolation = crate::lottery::read_json(&file)?;
        if done.bn_batches == bn_batches || done.bn_batches == 0 {
            return Ok(done);
        }
    }
    let subnet = imp_subnet(run, level)?;
    let spec = &run.spec().train;
    let copies: Vec<Job> = seeds(run, 2).into_iter().map(|s| subnet.copy(s)).collect();
    let mut accuracy_running = Vec::new();
    for copy in &copies {
        accuracy_running.push(job::run(spec, copy, ctx)?.accuracy);
    }
    let ends: Vec<_> = copies
        .iter()
        .map(|c| job::checkpoint_weights(&c.dir.join("final.safetensors"), None))
        .collect::<Result<_, _>>()?;
    let probe = crate::Probe { points, bn_batches, train_examples: 0 };
    let line = crate::instability::errors_along(spec, ctx, &ends[0], &ends[1], &probe)?;
    let barrier = line.test_barrier();
    let (alphas, errors, bn_batches) = (line.alphas, line.test_errors, line.bn_batches);
    let result = Interpolation { level, alphas, errors, barrier, bn_batches, accuracy_running };
    std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
    let json = serde_json::to_string_pretty(&result).map_err(|e| Error::Request(e.to_string()))?;
    lt_data::write_atomic(&file, json.as_bytes())?;
    Ok(result)
}
