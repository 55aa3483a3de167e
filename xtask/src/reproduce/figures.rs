//! The paper's figures: what each runs (tasks) and how its numbers become charts, CSV and report
//! tables.

use std::collections::BTreeMap;

use lt_lottery::{BranchKind, BranchSpec, LotterySpec, Outcome, StabilityKind, StabilityReport};
use lt_stability::Stats;
use serde::Serialize;

use super::plot::{Band, COLORS, Chart, Point, Series};
use super::setup::{Family, Setup};

/// One unit of work, idempotent in the experiment store.
#[derive(Debug, Clone, Serialize)]
pub enum Task {
    /// IMP levels 0..=levels.
    Lottery { spec: LotterySpec, levels: u32 },
    /// A branch at levels.
    Branch { spec: LotterySpec, branch: BranchSpec, levels: Vec<u32> },
    /// Stability of one level, with the random control.
    Stability { spec: LotterySpec, level: u32, kind: StabilityKind, samples: usize },
}

impl Task {
    pub fn key(&self) -> String {
        lt_lottery::spec::hash(self)
    }

    pub fn spec(&self) -> &LotterySpec {
        match self {
            Task::Lottery { spec, .. } | Task::Branch { spec, .. } | Task::Stability { spec, .. } => spec,
        }
    }

    /// Training iterations if nothing were done yet (stability: the extra copies and partners).
    pub fn iterations(&self) -> u64 {
        let s = self.spec();
        let (t, k) = (s.train.iterations, s.rewind);
        match self {
            Task::Lottery { levels, .. } => t + *levels as u64 * (t - k),
            Task::Branch { levels, .. } => levels.len() as u64 * (t - k),
            Task::Stability { kind: StabilityKind::DataOrder, samples, .. } => (2 * *samples as u64 - 1) * (t - k),
            Task::Stability { samples, .. } => (2 * *samples as u64) * (t - k),
        }
    }
}

/// What a task produced.
#[derive(Debug, Clone, Serialize)]
pub enum TaskResult {
    Levels(Vec<Outcome>),
    Branch(Vec<(u32, Outcome)>),
    Stability(Box<StabilityReport>),
}

pub type Results = BTreeMap<String, TaskResult>;

/// A curve of an accuracy-vs-sparsity figure.
#[derive(Debug, Clone)]
pub struct Curve {
    pub name: String,
    pub dashed: bool,
    /// The rewind point in the paper's iterations.
    pub k: u64,
    pub branch: Option<BranchKind>,
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

const ALL7: &[&str] =
    &["lenet", "resnet18-standard", "resnet18-low", "resnet18-warmup", "vgg19-standard", "vgg19-low", "vgg19-warmup"];

pub const DEFINITIONS: &[Definition] = &[
    Definition {
        name: "fig1",
        title: "Figure 1: IMP reset to iteration 0 (solid) vs randomly reinitialized (dashed)",
        presets: &[
            "resnet18-standard",
            "resnet18-low",
            "resnet18-warmup",
            "vgg19-standard",
            "vgg19-low",
            "vgg19-warmup",
        ],
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
        about: "IMP rewound to each of several iterations k, to the figure-3 sparsity; data-order and pruning stability and accuracy of IMP and random subnetworks.",
    },
    Definition {
        name: "fig5",
        title: "Figure 5: IMP rewound early in training vs reset to iteration 0",
        presets: &["resnet18-standard", "vgg19-standard"],
        about: "IMP with k = 0 and with k = 500 (ResNet-18) / 100 (VGG-19), the reinit branch of the rewound run (dashed), the unpruned accuracy as a band.",
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
];

pub fn definition(name: &str) -> Option<&'static Definition> {
    DEFINITIONS.iter().find(|d| d.name == name)
}

/// The paper's rewind points for figure 4 by family.
fn rewind_points(setup: &Setup) -> Vec<u64> {
    let paper: &[u64] = match setup.family {
        Family::Vgg => &[0, 25, 50, 100, 250, 500, 1000],
        _ => &[0, 100, 250, 500, 1000, 2000],
    };
    let mut ks: Vec<u64> = paper.to_vec();
    // Scaled points that coincide are one point.
    ks.dedup_by_key(|k| setup.scaled(*k));
    ks
}

impl Figure {
    pub fn new(def: &Definition, panels: Vec<Setup>) -> Figure {
        let kind = match def.name {
            "fig1" => Kind::Accuracy {
                curves: vec![
                    Curve { name: "IMP reset to iteration 0".into(), dashed: false, k: 0, branch: None },
                    Curve { name: "random reinit".into(), dashed: true, k: 0, branch: Some(BranchKind::Reinit) },
                ],
            },
            "fig5" => Kind::Accuracy { curves: Vec::new() },
            "fig9" => Kind::Accuracy {
                curves: vec![
                    Curve { name: "IMP (original init)".into(), dashed: false, k: 0, branch: None },
                    Curve { name: "random reinit".into(), dashed: true, k: 0, branch: Some(BranchKind::Reinit) },
                    Curve { name: "SNIP".into(), dashed: false, k: 0, branch: Some(BranchKind::Snip) },
                ],
            },
            "fig3" => Kind::Stability { angle: false },
            "fig10" => Kind::Stability { angle: true },
            "fig4" => Kind::Rewind { angle: false },
            _ => Kind::Rewind { angle: true },
        };
        Figure { name: def.name, title: def.title, kind, panels }
    }

    /// fig5's curves depend on the network (its rewind point).
    fn curves(&self, setup: &Setup) -> Vec<Curve> {
        match &self.kind {
            Kind::Accuracy { curves } if !curves.is_empty() => curves.clone(),
            _ => {
                let k = if setup.family == Family::Vgg { 100 } else { 500 };
                vec![
                    Curve { name: "IMP reset to iteration 0".into(), dashed: false, k: 0, branch: None },
                    Curve {
                        name: format!("IMP rewound to iteration {}", setup.scaled(k)),
                        dashed: false,
                        k,
                        branch: None,
                    },
                    Curve {
                        name: format!("random reinit (rewound to {})", setup.scaled(k)),
                        dashed: true,
                        k,
                        branch: Some(BranchKind::Reinit),
                    },
                ]
            }
        }
    }

    /// Every task, in the order they run: panel by panel, replicate by replicate.
    pub fn tasks(&self) -> Vec<Task> {
        let mut tasks = Vec::new();
        for setup in &self.panels {
            for r in 0..setup.replicates {
                match &self.kind {
                    Kind::Accuracy { .. } => {
                        let levels = setup.curve_levels();
                        for curve in self.curves(setup) {
                            let spec = setup.lottery(r, curve.k);
                            match curve.branch {
                                None => tasks.push(Task::Lottery { spec, levels }),
                                Some(kind) => tasks.push(Task::Branch {
                                    spec,
                                    branch: BranchSpec::new(kind),
                                    levels: (1..=levels).collect(),
                                }),
                            }
                        }
                    }
                    Kind::Stability { .. } => self.stability_tasks(setup, r, 0, &mut tasks),
                    Kind::Rewind { .. } => {
                        for k in rewind_points(setup) {
                            self.stability_tasks(setup, r, k, &mut tasks);
                        }
                    }
                }
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        tasks.retain(|t| seen.insert(t.key()));
        tasks
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

/// Makes a row from (series, rewind, level, density, metric, value).
type RowFn<'a> = dyn Fn(&str, u64, u32, f64, &str, f64) -> Row + 'a;

/// One row of the figure's CSV.
#[derive(Debug, Clone, Serialize)]
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

fn point(x: f64, s: Stats) -> Point {
    Point { x, y: s.mean, lo: s.min, hi: s.max }
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
                        let levels = setup.curve_levels();
                        for curve in self.curves(setup) {
                            let spec = setup.lottery(r, curve.k);
                            let outcomes: Vec<(u32, Outcome)> = match curve.branch {
                                None => match find(results, &Task::Lottery { spec: spec.clone(), levels }) {
                                    Some(TaskResult::Levels(o)) => {
                                        o.iter().enumerate().map(|(l, o)| (l as u32, o.clone())).collect()
                                    }
                                    _ => Vec::new(),
                                },
                                Some(kind) => match find(
                                    results,
                                    &Task::Branch {
                                        spec: spec.clone(),
                                        branch: BranchSpec::new(kind),
                                        levels: (1..=levels).collect(),
                                    },
                                ) {
                                    Some(TaskResult::Branch(o)) => o.clone(),
                                    _ => Vec::new(),
                                },
                            };
                            for (level, o) in outcomes {
                                rows.push(row(&curve.name, spec.rewind, level, o.density, "accuracy", o.accuracy));
                            }
                        }
                    }
                    Kind::Stability { .. } => self.stability_rows(setup, r, 0, results, &mut rows, &row),
                    Kind::Rewind { .. } => {
                        for k in rewind_points(setup) {
                            self.stability_rows(setup, r, k, results, &mut rows, &row);
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
                        let mut by_level: BTreeMap<u32, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
                        for r in mine.iter().filter(|r| r.series == curve.name) {
                            let e = by_level.entry(r.level).or_default();
                            e.0.push(r.weights_remaining);
                            e.1.push(100.0 * r.value);
                        }
                        let points =
                            by_level.values().filter_map(|(x, y)| Some(point(stats(x)?.mean, stats(y)?))).collect();
                        series.push(Series {
                            name: curve.name.clone(),
                            color: COLORS[i % COLORS.len()],
                            dashed: curve.dashed,
                            points,
                        });
                    }
                    let dense: Vec<f64> = mine
                        .iter()
                        .filter(|r| r.level == 0 && r.series == self.curves(setup)[0].name)
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
                            points: nets
                                .iter()
                                .enumerate()
                                .filter_map(|(x, net)| {
                                    let v: Vec<f64> = rows
                                        .iter()
                                        .filter(|r| {
                                            &r.network == net
                                                && r.series == *sub
                                                && r.metric == format!("{what}-{metric}")
                                        })
                                        .map(|r| r.value)
                                        .collect();
                                    Some(point(x as f64, stats(&v)?))
                                })
                                .collect(),
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
            Kind::Rewind { angle } => {
                let metric = if *angle { "angle" } else { "l2" };
                for setup in &self.panels {
                    let net = setup.preset.name;
                    for (what, ylabel) in [
                        (format!("data-order-{metric}"), "data-order stability"),
                        (format!("pruning-{metric}"), "pruning stability"),
                        ("accuracy-mean".to_string(), "test accuracy (%)"),
                    ] {
                        let series = ["imp", "random"]
                            .iter()
                            .enumerate()
                            .map(|(i, sub)| {
                                let mut by_k: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
                                for r in
                                    rows.iter().filter(|r| r.network == net && r.series == *sub && r.metric == what)
                                {
                                    let scale = if what.starts_with("accuracy") { 100.0 } else { 1.0 };
                                    by_k.entry(r.rewind).or_default().push(scale * r.value);
                                }
                                Series {
                                    name: if *sub == "imp" { "IMP".into() } else { "random pruning".into() },
                                    color: COLORS[i],
                                    dashed: false,
                                    // k = 0 sits at the left edge of a linear axis.
                                    points: by_k
                                        .iter()
                                        .filter_map(|(k, v)| Some(point(*k as f64, stats(v)?)))
                                        .collect(),
                                }
                            })
                            .collect();
                        charts.push(Chart {
                            title: format!("{net}: {ylabel}"),
                            x_label: "rewind iteration k".into(),
                            y_label: ylabel.into(),
                            series,
                            ..Default::default()
                        });
                    }
                }
            }
        }
        charts
    }

    pub fn columns(&self) -> usize {
        match self.kind {
            Kind::Stability { .. } => 2,
            Kind::Rewind { .. } => 3,
            Kind::Accuracy { .. } => 3.min(self.panels.len()),
        }
    }
}
