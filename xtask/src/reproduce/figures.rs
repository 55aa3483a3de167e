//! The paper's figures: what each runs (tasks) and how its numbers become charts, CSV and report
//! tables.

use std::collections::BTreeMap;

use lt_lottery::{
    BranchKind, BranchSpec, Instability, Interpolation, LotterySpec, Outcome, Probe, StabilityKind, StabilityReport,
    TrainSpec,
};
use lt_stability::Stats;
use serde::{Deserialize, Serialize};

use super::plot::{Band, COLORS, Chart, Point, Series};
use super::setup::Setup;

/// One unit of work, idempotent in the experiment store.
#[derive(Debug, Clone, Serialize)]
pub enum Task {
    /// IMP levels 0..=levels.
    Lottery { spec: LotterySpec, levels: u32 },
    /// A branch at levels.
    Branch { spec: LotterySpec, branch: BranchSpec, levels: Vec<u32> },
    /// Stability of one level, with the random control.
    Stability { spec: LotterySpec, level: u32, kind: StabilityKind, samples: usize },
    /// The error barrier between data-order copies 0 and 1 of a level (its sparse instability).
    Interpolate { spec: LotterySpec, level: u32, points: usize, bn_batches: u64 },
    /// The dense network's instability from W_k for every k of `ks` (one pair of copies each).
    Instability { train: TrainSpec, ks: Vec<u64>, probe: Probe },
}

impl Task {
    pub fn key(&self) -> String {
        lt_lottery::spec::hash(self)
    }

    /// The lottery run a task belongs to (none for the dense instability).
    pub fn lottery(&self) -> Option<&LotterySpec> {
        match self {
            Task::Lottery { spec, .. }
            | Task::Branch { spec, .. }
            | Task::Stability { spec, .. }
            | Task::Interpolate { spec, .. } => Some(spec),
            Task::Instability { .. } => None,
        }
    }

    /// The training setup.
    pub fn train(&self) -> &TrainSpec {
        match self {
            Task::Instability { train, .. } => train,
            Task::Lottery { spec, .. }
            | Task::Branch { spec, .. }
            | Task::Stability { spec, .. }
            | Task::Interpolate { spec, .. } => &spec.train,
        }
    }

    /// The iteration its jobs (other than level 0) start from.
    pub fn rewind(&self) -> u64 {
        self.lottery().map_or(0, |s| s.rewind)
    }

    /// Training iterations if nothing were done yet (stability: the extra copies and partners).
    pub fn iterations(&self) -> u64 {
        let t = self.train().iterations;
        let k = self.rewind();
        match self {
            Task::Lottery { levels, .. } => t + *levels as u64 * (t - k),
            Task::Branch { levels, .. } => levels.len() as u64 * (t - k),
            Task::Stability { kind: StabilityKind::DataOrder, samples, .. } => (2 * *samples as u64 - 1) * (t - k),
            // The data-order copies, then the dense partners.
            Task::Stability { samples, .. } => (2 * *samples as u64 - 1) * (t - k) + self.pruning_partners(),
            // Copies 0 and 1 are the data-order stability's.
            Task::Interpolate { .. } => 0,
            Task::Instability { ks, .. } => {
                ks.iter().map(|k| 2 * (t - k)).sum::<u64>() + ks.iter().max().copied().unwrap_or(0)
            }
        }
    }

    /// Training iterations of a pruning stability's dense partners (the full network from W_k
    /// with each copy's data order, shared by the IMP and the random subnetwork): one per sample,
    /// less the first at k = 0, which is the dense level itself. 0 for other tasks.
    pub fn pruning_partners(&self) -> u64 {
        let Task::Stability { kind: StabilityKind::Pruning, samples, .. } = self else { return 0 };
        let (t, k) = (self.train().iterations, self.rewind());
        let partners = *samples as u64 - u64::from(k == 0);
        partners * (t - k)
    }

    /// Examples passed forward for evaluation besides the one test evaluation per job (the
    /// points of interpolations, with their BatchNorm batches), given the test split's size.
    pub fn evaluation_examples(&self, test: usize) -> u64 {
        let batch = self.train().batch_size as u64;
        match self {
            Task::Interpolate { points, bn_batches, .. } => *points as u64 * (test as u64 + bn_batches * batch),
            Task::Instability { ks, probe, .. } => {
                ks.len() as u64
                    * probe.points as u64
                    * (test as u64 + probe.train_examples as u64 + probe.bn_batches * batch)
            }
            _ => 0,
        }
    }
}

/// `tasks` with a task of its own for the dense level (level 0 of the first of them) before the
/// first lottery run or branch of every training that two or more of them share
/// ([`LotterySpec::shares_dense_level`]): the runs rewound to different points (or reset)
/// then all wait for the one dense network, as in Algorithm 1, instead of each training it when
/// they run side by side (`--executor slurm`). Run in order, nothing changes: the first run
/// trained the dense level and the others borrowed it.
fn with_shared_dense_levels(tasks: Vec<Task>) -> Vec<Task> {
    let runs = |t: &Task| match t {
        Task::Lottery { spec, levels } if *levels > 0 => Some(spec.clone()),
        Task::Branch { spec, .. } => Some(spec.clone()),
        _ => None,
    };
    let mut out: Vec<Task> = Vec::with_capacity(tasks.len());
    for (i, t) in tasks.iter().enumerate() {
        if let Some(spec) = runs(t) {
            let shared = |s: &LotterySpec| s.shares_dense_level(&spec);
            let first = !tasks[..i].iter().filter_map(runs).any(|s| shared(&s));
            let others = tasks[i + 1..].iter().filter_map(runs).any(|s| shared(&s) && s != spec);
            let dense_planned = tasks.iter().any(|e| matches!(e, Task::Lottery { spec: s, levels: 0 } if shared(s)));
            if first && others && !dense_planned {
                out.push(Task::Lottery { spec, levels: 0 });
            }
        }
        out.push(t.clone());
    }
    out
}

/// Training iterations of task `i` of `tasks` if nothing were done yet: [`Task::iterations`],
/// less the dense level of a lottery run that borrows it from an earlier task of the plan (a
/// dense-level task, or a run with the same training, whose dense level saves W_k at every
/// rewind point of the plan: [`shared_rewinds`]).
pub fn planned_iterations(tasks: &[Task], i: usize) -> u64 {
    let t = &tasks[i];
    if let Task::Lottery { spec, levels } = t
        && *levels > 0
        && tasks[..i].iter().any(|e| match e {
            Task::Lottery { spec: s, levels: 0 } => s.shares_dense_level(spec),
            Task::Lottery { spec: s, .. } | Task::Branch { spec: s, .. } => s.shares_dense_level(spec) && s != spec,
            _ => false,
        })
    {
        return t.iterations() - spec.train.iterations;
    }
    // A pruning stability after the data-order stability of the same level with as many copies
    // reuses them: only its dense partners are left to train.
    if let Task::Stability { spec, level, kind: StabilityKind::Pruning, samples } = t
        && tasks[..i].iter().any(|e| {
            matches!(e, Task::Stability { spec: s, level: l, kind: StabilityKind::DataOrder, samples: n }
                if s == spec && l == level && n >= samples)
        })
    {
        return t.pruning_partners();
    }
    t.iterations()
}

/// The rewind points of every lottery run of the plan with the same training as task `i`'s:
/// the dense level, wherever it is trained first, saves W_k at each ([`Lottery::saving_for`]),
/// so the runs rewound to the others borrow it and the plan trains each dense network once.
pub fn shared_rewinds(tasks: &[Task], i: usize) -> Vec<u64> {
    let Some(spec) = tasks[i].lottery() else { return Vec::new() };
    let mut ks: Vec<u64> =
        tasks.iter().filter_map(|t| t.lottery()).filter(|s| s.train == spec.train).map(|s| s.rewind).collect();
    ks.sort_unstable();
    ks.dedup();
    ks
}

/// What a task produced.
#[derive(Debug, Clone, Serialize)]
pub enum TaskResult {
    Levels(Vec<Outcome>),
    Branch(Vec<(u32, Outcome)>),
    Stability(Box<StabilityReport>),
    Interpolation(Interpolation),
    Instability(Vec<Instability>),
}

pub type Results = BTreeMap<String, TaskResult>;

/// A curve of an accuracy-vs-sparsity figure.
#[derive(Debug, Clone)]
pub struct Curve {
    pub name: String,
    /// The rewind point (an iteration of the figure's scale).
    pub k: u64,
    pub branch: Option<BranchKind>,
    /// One-shot pruning to each of the setup's `one_shot_densities` (one run each) instead of
    /// the levels of one iterative run.
    pub one_shot: bool,
}

impl Curve {
    fn new(name: impl Into<String>, k: u64, branch: Option<BranchKind>) -> Curve {
        Curve { name: name.into(), k, branch, one_shot: false }
    }

    /// The randomly reinitialized controls are drawn dashed.
    fn dashed(&self) -> bool {
        self.branch == Some(BranchKind::Reinit)
    }

    fn one_shot(self) -> Curve {
        Curve { one_shot: true, ..self }
    }
}

/// The three kinds of figures.
#[derive(Debug, Clone)]
pub enum Kind {
    /// Test accuracy vs % weights remaining.
    Accuracy { curves: Vec<Curve> },
    /// Stability at one sparsity per network, IMP vs random.
    Stability { angle: bool },
    /// Stability and accuracy vs the rewind iteration.
    Rewind { angle: bool },
    /// The dense network's instability (error barrier, L2) vs the rewind iteration.
    Instability,
    /// The unpruned networks' accuracy (top-1 and top-5), one run per replicate.
    Dense,
}

/// A figure at a scale: its panels (one network each) and what they show.
pub struct Figure {
    pub name: &'static str,
    pub title: &'static str,
    pub kind: Kind,
    pub panels: Vec<Setup>,
}

/// What a figure is, before choosing a scale.
pub struct Definition {
    pub name: &'static str,
    pub title: &'static str,
    pub presets: &'static [&'static str],
    pub about: &'static str,
}

/// The CIFAR-10 networks under the paper's three hyperparameter settings.
const CIFAR6: &[&str] =
    &["resnet18-standard", "resnet18-low", "resnet18-warmup", "vgg19-standard", "vgg19-low", "vgg19-warmup"];

/// The paper's ImageNet networks (its Figure 6).
const IMAGENET3: &[&str] = &["resnet50", "inception-v3", "squeezenet"];

const ALL7: &[&str] =
    &["lenet", "resnet18-standard", "resnet18-low", "resnet18-warmup", "vgg19-standard", "vgg19-low", "vgg19-warmup"];

pub const DEFINITIONS: &[Definition] = &[
    Definition {
        name: "fig1",
        title: "Figure 1: IMP reset to iteration 0 (solid) vs randomly reinitialized (dashed)",
        presets: CIFAR6,
        about: "IMP with k = 0 and the reinit branch at every level; accuracy vs % weights remaining.",
    },
    Definition {
        name: "fig3",
        title: "Figure 3: data-order and pruning stability (L2) of IMP vs random subnetworks",
        presets: ALL7,
        about: "IMP with k = 0 to LeNet 10.7% / ResNet-18 16.7% / VGG-19 2.2%; data-order stability (copies per replicate) and pruning stability of the IMP and a random subnetwork with the same layer-wise counts; accuracy.",
    },
    Definition {
        name: "fig4",
        title: "Figure 4: stability (L2) and accuracy vs the rewind iteration, IMP vs random",
        presets: ALL7,
        about: "IMP rewound to each of several iterations k (the paper's, scaled; small: the instability figure's grid, on both sides of the dense network's onset of stability), to the figure-3 sparsity; data-order and pruning stability, the error barrier between two data-order copies of the IMP subnetwork (its instability), and accuracy of IMP and random subnetworks beside the unpruned network's.",
    },
    Definition {
        name: "instability",
        title: "Instability of the dense network: error barrier between two copies trained from W_k",
        presets: CIFAR6,
        about: "For each k of a grid from 0 to a fraction of T: two copies of the dense network trained from W_k with different data orders; the test (and train) error barrier on the line between their final weights (BatchNorm statistics recomputed at every point), their L2 distance and angle; the onset of stability k* (the first k from which the mean barrier stays under 2 points). Linear mode connectivity, Frankle et al., ICML 2020.",
    },
    Definition {
        name: "fig5",
        title: "Figure 5: IMP rewound early in training vs reset to iteration 0",
        presets: &["resnet18-standard", "vgg19-standard"],
        about: "IMP with k = 0 and with k = 500 (ResNet-18) / 100 (VGG-19) at paper scale (small: k = 50 / 25 of T = 500 / 300, past the dense network's measured onset of stability; smoke: scaled), the reinit branch of the rewound run (dashed), the unpruned accuracy as a band.",
    },
    Definition {
        name: "fig9",
        title: "Figure 9: IMP vs random reinitialization vs SNIP (warmup)",
        presets: &["vgg19-warmup", "resnet18-warmup"],
        about: "IMP with k = 0, its reinit branch and SNIP at the same densities; accuracy vs % weights remaining.",
    },
    Definition {
        name: "fig10",
        title: "Figure 10: data-order and pruning stability (angle) of IMP vs random subnetworks",
        presets: ALL7,
        about: "Figure 3's runs, measured as angles.",
    },
    Definition {
        name: "fig11",
        title: "Figure 11: stability (angle) and accuracy vs the rewind iteration, IMP vs random",
        presets: ALL7,
        about: "Figure 4's runs, measured as angles.",
    },
    Definition {
        name: "fig6",
        title: "Figure 6: the ImageNet networks, trained unpruned",
        presets: IMAGENET3,
        about: "Each network trained dense with the TPU reference schedule (ResNet-50: 90 epochs, batch 1024, rate 0.4, 5 warmup epochs, ÷10 at 30/60/80; Inception-v3: 171 epochs, RMSProp; SqueezeNet: 150 epochs, momentum); top-1 and top-5 accuracy, 5 replicates at paper scale (the paper: five trials).",
    },
    Definition {
        name: "fig7",
        title: "Figure 7: ImageNet, data-order stability (L2) and accuracy vs the rewind epoch",
        presets: IMAGENET3,
        about: "One-shot magnitude pruning to the figure-6 sparsity (ResNet-50 and Inception-v3 70%, SqueezeNet 50%) after rewinding to each of several epochs around the paper's thresholds (4 of 90, 6 of 171, 10 of 150); data-order and pruning stability of the IMP and a random subnetwork, the IMP subnetwork's error barrier, and accuracy (top-1) beside the unpruned network's.",
    },
    Definition {
        name: "fig8",
        title: "Figure 8: ImageNet, rewound vs reset to iteration 0 vs randomly reinitialized",
        presets: IMAGENET3,
        about: "Accuracy vs % weights remaining. One-shot pruning to each density of 0.8^n (80% to 21%) rewound just past the rewinding threshold (ResNet-50 epoch 6, Inception-v3 8, SqueezeNet 12), reset to iteration 0, and the rewound subnetwork randomly reinitialized (dashed); ResNet-50 also iteratively (20% per level, rewound to epoch 6, reset, reinitialized).",
    },
    Definition {
        name: "fig12",
        title: "Figure 12: ImageNet, data-order and pruning stability (angle) and accuracy vs the rewind epoch",
        presets: IMAGENET3,
        about: "Figure 7's runs, measured as angles.",
    },
];

pub fn definition(name: &str) -> Option<&'static Definition> {
    DEFINITIONS.iter().find(|d| d.name == name)
}

/// Figure 4's rewind points (iterations of the setup's scale).
fn rewind_points(setup: &Setup) -> Vec<u64> {
    setup.rewind_points()
}

impl Figure {
    pub fn new(def: &Definition, panels: Vec<Setup>) -> Figure {
        let kind = match def.name {
            "fig1" => Kind::Accuracy {
                curves: vec![
                    Curve::new("IMP reset to iteration 0", 0, None),
                    Curve::new("random reinit", 0, Some(BranchKind::Reinit)),
                ],
            },
            "fig5" | "fig8" => Kind::Accuracy { curves: Vec::new() },
            "fig9" => Kind::Accuracy {
                curves: vec![
                    Curve::new("IMP (original init)", 0, None),
                    Curve::new("random reinit", 0, Some(BranchKind::Reinit)),
                    Curve::new("SNIP", 0, Some(BranchKind::Snip)),
                ],
            },
            "fig3" => Kind::Stability { angle: false },
            "fig10" => Kind::Stability { angle: true },
            "fig4" | "fig7" => Kind::Rewind { angle: false },
            "instability" => Kind::Instability,
            "fig6" => Kind::Dense,
            _ => Kind::Rewind { angle: true },
        };
        Figure { name: def.name, title: def.title, kind, panels }
    }

    /// fig5's and fig8's curves depend on the network (its rewind point).
    fn curves(&self, setup: &Setup) -> Vec<Curve> {
        match &self.kind {
            Kind::Accuracy { curves } if !curves.is_empty() => curves.clone(),
            _ if self.name == "fig8" => {
                let k = setup.fig5_rewind();
                let at = setup.rewind_label(k);
                // Rewound runs first: their dense level holds W_0 too, so the reset runs borrow it.
                let mut curves = vec![
                    Curve::new(format!("one-shot, rewound to {at}"), k, None).one_shot(),
                    Curve::new("one-shot, reset to iteration 0", 0, None).one_shot(),
                    Curve::new(format!("one-shot, random reinit (rewound to {at})"), k, Some(BranchKind::Reinit))
                        .one_shot(),
                ];
                if setup.preset.name == "resnet50" {
                    curves.extend([
                        Curve::new(format!("iterative, rewound to {at}"), k, None),
                        Curve::new("iterative, reset to iteration 0", 0, None),
                        Curve::new(format!("iterative, random reinit (rewound to {at})"), k, Some(BranchKind::Reinit)),
                    ]);
                }
                curves
            }
            _ => {
                let k = setup.fig5_rewind();
                vec![
                    Curve::new("IMP reset to iteration 0", 0, None),
                    Curve::new(format!("IMP rewound to iteration {k}"), k, None),
                    Curve::new(format!("random reinit (rewound to {k})"), k, Some(BranchKind::Reinit)),
                ]
            }
        }
    }

    /// The runs of one curve of replicate `r`: one iterative run, or one one-shot run per density.
    fn curve_specs(&self, setup: &Setup, r: u64, curve: &Curve) -> Vec<(LotterySpec, Vec<u32>)> {
        if curve.one_shot {
            setup.one_shot_densities().into_iter().map(|d| (setup.lottery_with(r, curve.k, Some(d)), vec![1])).collect()
        } else {
            vec![(setup.lottery_with(r, curve.k, None), (1..=setup.curve_levels()).collect())]
        }
    }

    /// Every task, in the order they run: panel by panel, replicate by replicate.
    pub fn tasks(&self) -> Vec<Task> {
        let mut tasks = Vec::new();
        for setup in &self.panels {
            for r in 0..setup.replicates {
                match &self.kind {
                    Kind::Accuracy { .. } => {
                        for curve in self.curves(setup) {
                            for (spec, levels) in self.curve_specs(setup, r, &curve) {
                                match curve.branch {
                                    None => tasks.push(Task::Lottery { spec, levels: levels.len() as u32 }),
                                    Some(kind) => {
                                        tasks.push(Task::Branch { spec, branch: BranchSpec::new(kind), levels })
                                    }
                                }
                            }
                        }
                    }
                    Kind::Dense => tasks.push(Task::Lottery { spec: setup.lottery(r, 0), levels: 0 }),
                    Kind::Stability { .. } => self.stability_tasks(setup, r, 0, &mut tasks),
                    Kind::Rewind { .. } => {
                        for k in rewind_points(setup) {
                            self.stability_tasks(setup, r, k, &mut tasks);
                            let (points, bn_batches) = (setup.probe().points, setup.probe().bn_batches);
                            let (spec, level) = (setup.lottery(r, k), setup.stability_level());
                            tasks.push(Task::Interpolate { spec, level, points, bn_batches });
                        }
                    }
                    Kind::Instability => tasks.push(Task::Instability {
                        train: setup.train_spec(r),
                        ks: setup.instability_points(),
                        probe: setup.probe(),
                    }),
                }
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        tasks.retain(|t| seen.insert(t.key()));
        with_shared_dense_levels(tasks)
    }

    fn stability_tasks(&self, setup: &Setup, r: u64, k: u64, tasks: &mut Vec<Task>) {
        let spec = setup.lottery(r, k);
        let level = setup.stability_level();
        tasks.push(Task::Lottery { spec: spec.clone(), levels: level });
        tasks.push(Task::Stability {
            spec: spec.clone(),
            level,
            kind: StabilityKind::DataOrder,
            samples: setup.copies(),
        });
        tasks.push(Task::Stability { spec, level, kind: StabilityKind::Pruning, samples: 1 });
    }
}

/// The rows of one pair of dense copies from W_k: barriers, distance, both accuracies of the ends,
/// and the error at each point of the line.
fn instability_rows(p: &Instability, row: &RowFn, rows: &mut Vec<Row>) {
    let k = p.rewind;
    let mut push = |metric: &str, value: f64| rows.push(row("dense", k, 0, 1.0, metric, value));
    push("barrier-test", p.barrier);
    if let Some(b) = p.train_barrier {
        push("barrier-train", b);
    }
    push("l2", p.distance.total.l2);
    push("angle", p.distance.total.angle);
    for (i, (run, recomputed)) in p.accuracy_running.iter().zip(&p.accuracy_recomputed).enumerate() {
        push(&format!("accuracy-running-bn-{i}"), *run);
        push(&format!("accuracy-recomputed-bn-{i}"), *recomputed);
    }
    for (alpha, e) in p.path.alphas.iter().zip(&p.path.test_errors) {
        push(&format!("test-error-at-{alpha:.3}"), *e);
    }
    for (alpha, e) in p.path.alphas.iter().zip(&p.path.train_errors) {
        push(&format!("train-error-at-{alpha:.3}"), *e);
    }
}

/// The accuracy (and top-5, where measured) rows of one trained level.
fn outcome_rows(series: &str, k: u64, level: u32, o: &Outcome, row: &RowFn, rows: &mut Vec<Row>) {
    rows.push(row(series, k, level, o.density, "accuracy", o.accuracy));
    if let Some(top5) = o.top5 {
        rows.push(row(series, k, level, o.density, "top5", top5));
    }
}

/// The onset of stability: the first k from which the mean test barrier stays under `threshold`
/// (a fraction) at every larger k of the grid, with the barrier at each k. (A k under the threshold
/// followed by one above it is noise, not stability.)
pub fn onset(rows: &[Row], network: &str, metric: &str, threshold: f64) -> (Option<u64>, Vec<(u64, Stats)>) {
    let mut by_k: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.network == network && r.metric == metric) {
        by_k.entry(r.rewind).or_default().push(r.value);
    }
    let barriers: Vec<(u64, Stats)> = by_k.iter().filter_map(|(k, v)| Some((*k, stats(v)?))).collect();
    let stable_from = barriers.iter().rposition(|(_, s)| s.mean >= threshold).map_or(0, |i| i + 1);
    (barriers.get(stable_from).map(|(k, _)| *k), barriers)
}

/// Makes a row from (series, rewind, level, density, metric, value).
type RowFn<'a> = dyn Fn(&str, u64, u32, f64, &str, f64) -> Row + 'a;

/// One row of the figure's CSV.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub figure: String,
    pub network: String,
    pub series: String,
    pub replicate: u64,
    pub rewind: u64,
    pub level: u32,
    pub weights_remaining: f64,
    pub metric: String,
    pub value: f64,
}

pub const CSV_HEADER: &str = "figure,network,series,replicate,rewind,level,weights_remaining,metric,value";

impl Row {
    pub fn csv(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{},{}",
            self.figure,
            self.network,
            csv_field(&self.series),
            self.replicate,
            self.rewind,
            self.level,
            self.weights_remaining,
            self.metric,
            self.value
        )
    }
}

/// A CSV field, quoted when it holds a comma or a quote.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

fn find<'a>(results: &'a Results, task: &Task) -> Option<&'a TaskResult> {
    results.get(&task.key())
}

fn stats(values: &[f64]) -> Option<Stats> {
    Stats::of(values)
}

/// Where a row sits on an accuracy-vs-sparsity curve: its level and its density (to 0.01%).
pub fn point_key(r: &Row) -> (u32, i64) {
    (r.level, (100.0 * r.weights_remaining).round() as i64)
}

fn point(x: f64, s: Stats) -> Point {
    Point { x, y: s.mean, lo: s.min, hi: s.max }
}

/// Mean [min, max] (× `scale`) of the rows that `keep` selects, one point per network at its
/// position in `nets` (the categorical charts).
fn by_network(nets: &[String], rows: &[Row], scale: f64, keep: impl Fn(&Row) -> bool) -> Vec<Point> {
    nets.iter()
        .enumerate()
        .filter_map(|(x, net)| {
            let v: Vec<f64> = rows.iter().filter(|r| &r.network == net && keep(r)).map(|r| scale * r.value).collect();
            Some(point(x as f64, stats(&v)?))
        })
        .collect()
}

/// Mean [min, max] of `metric` for `series` of `network` at each rewind point (× `scale`).
fn by_rewind(rows: &[Row], network: &str, series: &str, metric: &str, scale: f64) -> Vec<Point> {
    let mut by_k: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.network == network && r.series == series && r.metric == metric) {
        by_k.entry(r.rewind).or_default().push(scale * r.value);
    }
    by_k.iter().filter_map(|(k, v)| Some(point(*k as f64, stats(v)?))).collect()
}

impl Figure {
    /// The CSV rows of the results.
    pub fn rows(&self, results: &Results) -> Vec<Row> {
        let mut rows = Vec::new();
        for setup in &self.panels {
            let network = setup.preset.name.to_string();
            for r in 0..setup.replicates {
                let row = |series: &str, rewind: u64, level: u32, density: f64, metric: &str, value: f64| Row {
                    figure: self.name.into(),
                    network: network.clone(),
                    series: series.into(),
                    replicate: r,
                    rewind,
                    level,
                    weights_remaining: 100.0 * density,
                    metric: metric.into(),
                    value,
                };
                match &self.kind {
                    Kind::Accuracy { .. } => {
                        for curve in self.curves(setup) {
                            for (i, (spec, levels)) in self.curve_specs(setup, r, &curve).into_iter().enumerate() {
                                let outcomes: Vec<(u32, Outcome)> = match curve.branch {
                                    None => {
                                        let task = Task::Lottery { spec: spec.clone(), levels: levels.len() as u32 };
                                        match find(results, &task) {
                                            Some(TaskResult::Levels(o)) => {
                                                o.iter().enumerate().map(|(l, o)| (l as u32, o.clone())).collect()
                                            }
                                            _ => Vec::new(),
                                        }
                                    }
                                    Some(kind) => {
                                        let branch = BranchSpec::new(kind);
                                        match find(results, &Task::Branch { spec: spec.clone(), branch, levels }) {
                                            Some(TaskResult::Branch(o)) => o.clone(),
                                            _ => Vec::new(),
                                        }
                                    }
                                };
                                // One-shot runs share their dense level: one point, not one per density.
                                for (level, o) in outcomes.into_iter().filter(|(l, _)| *l > 0 || i == 0) {
                                    outcome_rows(&curve.name, spec.rewind, level, &o, &row, &mut rows);
                                }
                            }
                        }
                    }
                    Kind::Dense => {
                        let task = Task::Lottery { spec: setup.lottery(r, 0), levels: 0 };
                        if let Some(TaskResult::Levels(o)) = find(results, &task)
                            && let Some(dense) = o.first()
                        {
                            outcome_rows("dense", 0, 0, dense, &row, &mut rows);
                        }
                    }
                    Kind::Stability { .. } => self.stability_rows(setup, r, 0, results, &mut rows, &row),
                    Kind::Rewind { .. } => {
                        for k in rewind_points(setup) {
                            self.stability_rows(setup, r, k, results, &mut rows, &row);
                            let (spec, level) = (setup.lottery(r, k), setup.stability_level());
                            let probe = setup.probe();
                            let task = Task::Interpolate {
                                spec: spec.clone(),
                                level,
                                points: probe.points,
                                bn_batches: probe.bn_batches,
                            };
                            if let Some(TaskResult::Interpolation(i)) = find(results, &task) {
                                let density = rows
                                    .iter()
                                    .rev()
                                    .find(|x| x.network == network && x.series == "imp" && x.rewind == spec.rewind)
                                    .map_or(0.0, |x| x.weights_remaining / 100.0);
                                rows.push(row("imp", spec.rewind, level, density, "data-order-barrier", i.barrier));
                            }
                            let levels = Task::Lottery { spec: spec.clone(), levels: level };
                            if let Some(TaskResult::Levels(o)) = find(results, &levels)
                                && let Some(dense) = o.first()
                            {
                                rows.push(row("dense", spec.rewind, 0, 1.0, "accuracy", dense.accuracy));
                            }
                        }
                    }
                    Kind::Instability => {
                        let task = Task::Instability {
                            train: setup.train_spec(r),
                            ks: setup.instability_points(),
                            probe: setup.probe(),
                        };
                        if let Some(TaskResult::Instability(points)) = find(results, &task) {
                            for p in points {
                                instability_rows(p, &row, &mut rows);
                            }
                        }
                    }
                }
            }
        }
        rows
    }

    fn stability_rows(&self, setup: &Setup, r: u64, k: u64, results: &Results, rows: &mut Vec<Row>, row: &RowFn) {
        let spec = setup.lottery(r, k);
        let level = setup.stability_level();
        for (kind, samples, name) in
            [(StabilityKind::DataOrder, setup.copies(), "data-order"), (StabilityKind::Pruning, 1, "pruning")]
        {
            let task = Task::Stability { spec: spec.clone(), level, kind, samples };
            let Some(TaskResult::Stability(rep)) = find(results, &task) else { continue };
            for m in std::iter::once(&rep.imp).chain(rep.random.as_ref()) {
                for p in &m.pairs {
                    rows.push(row(
                        &m.subnetwork,
                        spec.rewind,
                        level,
                        m.density,
                        &format!("{name}-l2"),
                        p.distance.total.l2,
                    ));
                    rows.push(row(
                        &m.subnetwork,
                        spec.rewind,
                        level,
                        m.density,
                        &format!("{name}-angle"),
                        p.distance.total.angle,
                    ));
                }
                if kind == StabilityKind::DataOrder {
                    // The copies' accuracies: min, mean and max of each replicate's copies.
                    for (what, v) in [
                        ("accuracy-mean", m.accuracy.mean),
                        ("accuracy-min", m.accuracy.min),
                        ("accuracy-max", m.accuracy.max),
                    ] {
                        rows.push(row(&m.subnetwork, spec.rewind, level, m.density, what, v));
                    }
                }
            }
        }
    }

    /// The charts of the figure.
    pub fn charts(&self, rows: &[Row]) -> Vec<Chart> {
        let mut charts = Vec::new();
        match &self.kind {
            Kind::Accuracy { .. } => {
                for setup in &self.panels {
                    let net = setup.preset.name;
                    let mine: Vec<&Row> = rows.iter().filter(|r| r.network == net).collect();
                    let mut series = Vec::new();
                    for (i, curve) in self.curves(setup).iter().enumerate() {
                        // By level and density: one-shot runs are all level 1, at their own densities.
                        let mut by_level: BTreeMap<(u32, i64), (Vec<f64>, Vec<f64>)> = BTreeMap::new();
                        for r in mine.iter().filter(|r| r.series == curve.name && r.metric == "accuracy") {
                            let e = by_level.entry(point_key(r)).or_default();
                            e.0.push(r.weights_remaining);
                            e.1.push(100.0 * r.value);
                        }
                        let points =
                            by_level.values().filter_map(|(x, y)| Some(point(stats(x)?.mean, stats(y)?))).collect();
                        series.push(Series {
                            name: curve.name.clone(),
                            color: COLORS[i % COLORS.len()],
                            dashed: curve.dashed(),
                            points,
                        });
                    }
                    let dense: Vec<f64> = mine
                        .iter()
                        .filter(|r| r.level == 0 && r.series == self.curves(setup)[0].name && r.metric == "accuracy")
                        .map(|r| 100.0 * r.value)
                        .collect();
                    charts.push(Chart {
                        title: format!("{net} on {}", setup.dataset),
                        x_label: "% of weights remaining".into(),
                        y_label: "test accuracy (%)".into(),
                        x_log: true,
                        x_reversed: true,
                        series,
                        band: stats(&dense).map(|s| Band {
                            name: "unpruned".into(),
                            mean: s.mean,
                            lo: s.min,
                            hi: s.max,
                        }),
                        ..Default::default()
                    });
                }
            }
            Kind::Stability { angle } => {
                let metric = if *angle { "angle" } else { "l2" };
                let nets: Vec<String> = self.panels.iter().map(|s| s.preset.name.to_string()).collect();
                for (what, title) in [("data-order", "data-order stability"), ("pruning", "pruning stability")] {
                    let series = ["imp", "random"]
                        .iter()
                        .enumerate()
                        .map(|(i, sub)| Series {
                            name: if *sub == "imp" { "IMP".into() } else { "random pruning".into() },
                            color: COLORS[i],
                            dashed: false,
                            points: by_network(&nets, rows, 1.0, |r| {
                                r.series == *sub && r.metric == format!("{what}-{metric}")
                            }),
                        })
                        .collect();
                    charts.push(Chart {
                        title: format!("{title} ({})", if *angle { "angle, degrees" } else { "L2 distance" }),
                        x_label: "network".into(),
                        y_label: if *angle { "angle (deg)".into() } else { "L2 distance".into() },
                        categories: nets.clone(),
                        series,
                        ..Default::default()
                    });
                }
            }
            Kind::Dense => {
                let nets: Vec<String> = self.panels.iter().map(|s| s.preset.name.to_string()).collect();
                let series = [("accuracy", "top-1"), ("top5", "top-5")]
                    .iter()
                    .enumerate()
                    .map(|(i, (metric, name))| Series {
                        name: (*name).into(),
                        color: COLORS[i],
                        dashed: false,
                        points: by_network(&nets, rows, 100.0, |r| r.metric == *metric),
                    })
                    .collect();
                charts.push(Chart {
                    title: "unpruned test accuracy".into(),
                    x_label: "network".into(),
                    y_label: "test accuracy (%)".into(),
                    categories: nets,
                    series,
                    ..Default::default()
                });
            }
            Kind::Rewind { angle } => {
                let metric = if *angle { "angle" } else { "l2" };
                for setup in &self.panels {
                    let net = setup.preset.name;
                    let (per_unit, x_label) = setup.rewind_axis();
                    for (what, ylabel) in [
                        (format!("data-order-{metric}"), "data-order stability"),
                        (format!("pruning-{metric}"), "pruning stability"),
                        ("data-order-barrier".to_string(), "error barrier (points)"),
                        ("accuracy-mean".to_string(), "test accuracy (%)"),
                    ] {
                        let scale = if what.starts_with("accuracy") || what.ends_with("barrier") { 100.0 } else { 1.0 };
                        let subs: &[&str] = if what.ends_with("barrier") { &["imp"] } else { &["imp", "random"] };
                        let series = subs
                            .iter()
                            .enumerate()
                            .map(|(i, sub)| Series {
                                name: if *sub == "imp" { "IMP".into() } else { "random pruning".into() },
                                color: COLORS[i],
                                dashed: false,
                                // k = 0 sits at the left edge of a linear axis.
                                points: by_rewind(rows, net, sub, &what, scale)
                                    .into_iter()
                                    .map(|p| Point { x: p.x / per_unit, ..p })
                                    .collect(),
                            })
                            .collect();
                        // The unpruned network's accuracy (level 0 of every rewind point's run).
                        let band = if what.starts_with("accuracy") {
                            let dense: Vec<f64> = rows
                                .iter()
                                .filter(|r| r.network == net && r.series == "dense" && r.metric == "accuracy")
                                .map(|r| 100.0 * r.value)
                                .collect();
                            stats(&dense).map(|s| Band { name: "unpruned".into(), mean: s.mean, lo: s.min, hi: s.max })
                        } else if what.ends_with("barrier") {
                            // On the scale of the threshold, so that a barrier of 0.1 looks like one.
                            Some(Band { name: "2-point threshold".into(), mean: 2.0, lo: 2.0, hi: 2.0 })
                        } else {
                            None
                        };
                        charts.push(Chart {
                            title: format!("{net}: {ylabel}"),
                            x_label: x_label.into(),
                            y_label: ylabel.into(),
                            series,
                            band,
                            ..Default::default()
                        });
                    }
                }
            }
            Kind::Instability => {
                for setup in &self.panels {
                    let net = setup.preset.name;
                    let ks = setup.instability_points();
                    let categories: Vec<String> = ks.iter().map(|k| k.to_string()).collect();
                    // k on categorical positions: the grid is roughly geometric.
                    let at_k = |metric: &str, scale: f64| -> Vec<Point> {
                        by_rewind(rows, net, "dense", metric, scale)
                            .into_iter()
                            .filter_map(|p| Some(Point { x: ks.iter().position(|k| *k as f64 == p.x)? as f64, ..p }))
                            .collect()
                    };
                    let mut barrier = vec![Series {
                        name: "test".into(),
                        color: COLORS[0],
                        dashed: false,
                        points: at_k("barrier-test", 100.0),
                    }];
                    let train = at_k("barrier-train", 100.0);
                    if !train.is_empty() {
                        barrier.push(Series { name: "train".into(), color: COLORS[1], dashed: true, points: train });
                    }
                    charts.push(Chart {
                        title: format!("{net}: error barrier"),
                        x_label: "rewind iteration k".into(),
                        y_label: "barrier (points)".into(),
                        categories: categories.clone(),
                        connect: true,
                        series: barrier,
                        band: Some(Band { name: "2-point threshold".into(), mean: 2.0, lo: 2.0, hi: 2.0 }),
                        ..Default::default()
                    });
                    charts.push(Chart {
                        title: format!("{net}: L2 distance of the copies"),
                        x_label: "rewind iteration k".into(),
                        y_label: "L2 distance".into(),
                        categories,
                        connect: true,
                        series: vec![Series {
                            name: "dense".into(),
                            color: COLORS[0],
                            dashed: false,
                            points: at_k("l2", 1.0),
                        }],
                        ..Default::default()
                    });
                    // Test error along the line, one curve per k.
                    let series = ks
                        .iter()
                        .enumerate()
                        .map(|(i, k)| {
                            let mut by_alpha: BTreeMap<String, Vec<f64>> = BTreeMap::new();
                            for r in rows.iter().filter(|r| {
                                r.network == net && r.rewind == *k && r.metric.starts_with("test-error-at-")
                            }) {
                                by_alpha
                                    .entry(r.metric.trim_start_matches("test-error-at-").to_string())
                                    .or_default()
                                    .push(100.0 * r.value);
                            }
                            Series {
                                name: format!("k = {k}"),
                                color: COLORS[i % COLORS.len()],
                                dashed: i >= COLORS.len(),
                                points: by_alpha
                                    .iter()
                                    .filter_map(|(a, v)| Some(point(a.parse().ok()?, stats(v)?)))
                                    .collect(),
                            }
                        })
                        .collect();
                    charts.push(Chart {
                        title: format!("{net}: test error along the line"),
                        x_label: "interpolation alpha".into(),
                        y_label: "test error (%)".into(),
                        series,
                        ..Default::default()
                    });
                }
            }
        }
        charts
    }

    pub fn columns(&self) -> usize {
        match self.kind {
            Kind::Dense => 1,
            Kind::Stability { .. } => 2,
            Kind::Rewind { .. } => 4,
            Kind::Instability => 3,
            Kind::Accuracy { .. } => 3.min(self.panels.len()),
        }
    }
}
