//! `cargo xtask reproduce figN [--scale smoke|small|medium|paper] [--dataset NAME] [--only PRESETS]
//! [--out DIR] [--store DIR] [--dry-run]`: one command per figure of the paper.
//!
//! A figure is a list of tasks (lottery runs, branches, stability measurements) in the experiment
//! store of `lt-lottery` (default `results/store`, shared by all figures, so fig1 and fig5 share
//! their k = 0 runs). Every task is idempotent: re-running a figure skips what is done, resumes
//! what was interrupted, and re-renders. Output goes to `results/figN/` (or `--out`):
//! `figure.svg`, `figure.png`, `data.csv` (one row per measurement), `data.json` (the same, with
//! the plan) and `report.md` (this run's values beside the paper's, the hyperparameters, the
//! dataset and its checksums, the code version, wall time and scale).

mod figures;
mod plot;
mod setup;
mod slurm;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use candle_core::Device;
use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use lt_data::Locations;
use lt_lottery::{Branch, Context, Data, Event, Exec, Lottery};

use figures::{CSV_HEADER, DEFINITIONS, Figure, Results, Row, Task, TaskResult};
use lt_slurm::{Executor, SlurmArgs};
use lt_train::DeviceSpec;
use setup::{Scale, Setup};

/// Regenerate a figure of "Stabilizing the Lottery Ticket Hypothesis".
#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask reproduce",
    after_help = "figures: fig1 fig3 fig4 fig5 fig9 fig10 fig11 instability; ImageNet: fig6 fig7 fig8 fig12 (`cargo xtask reproduce FIG --help` shows each plan)"
)]
struct Args {
    /// fig1, fig3, fig4, fig5, fig9, fig10, fig11, instability; ImageNet: fig6, fig7, fig8, fig12.
    figure: String,
    /// paper: the exact protocol; small: shortened to run on one CPU (not the ImageNet figures);
    /// smoke: minutes, on the bundled sample (ImageNet: a generated miniature).
    #[arg(long, value_enum, default_value = "small")]
    scale: Scale,
    /// Run the figure's procedure on this dataset (default: the paper's; smoke: fashion-mnist-sample).
    #[arg(long)]
    dataset: Option<String>,
    /// Only these networks (comma-separated presets, e.g. lenet).
    #[arg(long)]
    only: Option<String>,
    /// Where the figure's files go (default results/FIG).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The experiment store (runs are shared between figures).
    #[arg(long, default_value = "results/store")]
    store: PathBuf,
    /// Run only the first N replicates of each network (default: the scale's): a long figure can
    /// be split into sittings, and later ones add replicates to what the store holds.
    #[arg(long)]
    replicates: Option<u64>,
    /// Only these rewind points, in the scale's iterations (comma-separated): the grid of figures
    /// 4, 7, 11 and 12, the instability grid, or the rewound curve of figure 5 or 8 (one point),
    /// e.g. to run the two ends of a grid first.
    #[arg(long, value_delimiter = ',')]
    rewind: Option<Vec<u64>>,
    /// Pruning levels of the accuracy-vs-sparsity curves (fig1, fig5, fig9; fig8's iterative
    /// ResNet-50) instead of the scale's: more levels reach sparser subnetworks, and the store keeps the levels already
    /// trained.
    #[arg(long)]
    levels: Option<u32>,
    /// Gradient accumulation: pass each batch in K micro-batches (the paper's batch of 1,024 on
    /// a GPU whose memory holds fewer examples; BatchNorm sees K smaller batches). A
    /// hyperparameter: its runs are other folders of the store.
    #[arg(long, value_name = "K")]
    accumulate: Option<usize>,
    /// Train with batches of B for the scale's number of epochs: iterations, the rate's
    /// milestones, warmup and the scale's rewind points stretch by (the scale's batch) / B, the
    /// learning rate stays, so a smaller batch trains with more gradient noise (the batch-size
    /// lever on stability). `--rewind` is then in the new iterations. A hyperparameter: its runs
    /// are other folders of the store.
    #[arg(long, value_name = "B")]
    batch: Option<usize>,
    /// Print the plan and the time estimate, run nothing.
    #[arg(long)]
    dry_run: bool,
    /// Which tasks are done, and the state of their Slurm jobs.
    #[arg(long)]
    status: bool,
    /// Run task N of the plan (as numbered there) alone and exit without rendering: what a Slurm
    /// job runs, and a way to choose what a sitting trains.
    #[arg(long)]
    task: Option<usize>,
    /// Where to train: cpu, or cuda / cuda:N (an NVIDIA GPU, in a build with `--features cuda`).
    /// Not a hyperparameter: the store's runs are the same whichever device trains them.
    #[arg(long, default_value = "cpu")]
    device: DeviceSpec,
    #[command(flatten)]
    slurm: SlurmArgs,
}

impl Args {
    /// This binary with the options that define the figure's plan (what a Slurm job runs).
    fn command(&self, out: &Path) -> Result<Vec<String>> {
        let exe = std::env::current_exe().context("locating this binary")?;
        let mut c = vec![
            exe.display().to_string(),
            "reproduce".into(),
            self.figure.clone(),
            "--scale".into(),
            self.scale.name().into(),
            "--store".into(),
            self.store.display().to_string(),
            "--out".into(),
            out.display().to_string(),
        ];
        let mut opt = |flag: &str, value: Option<String>| {
            if let Some(v) = value {
                c.extend([flag.to_string(), v]);
            }
        };
        opt("--dataset", self.dataset.clone());
        opt("--only", self.only.clone());
        opt("--replicates", self.replicates.map(|n| n.to_string()));
        opt("--rewind", self.rewind.as_ref().map(|ks| ks.iter().map(u64::to_string).collect::<Vec<_>>().join(",")));
        opt("--levels", self.levels.map(|n| n.to_string()));
        opt("--accumulate", self.accumulate.map(|n| n.to_string()));
        opt("--batch", self.batch.map(|n| n.to_string()));
        opt("--device", self.device.is_cuda().then(|| self.device.to_string()));
        Ok(c)
    }
}

/// What a training setup's data depends on: the dataset, how many of its training examples, and
/// the image size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataKey {
    pub dataset: String,
    pub train_examples: Option<usize>,
    pub image_size: Option<u32>,
}

impl DataKey {
    fn of(s: &lt_lottery::TrainSpec) -> DataKey {
        DataKey { dataset: s.dataset.clone(), train_examples: s.train_examples, image_size: s.image_size }
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The help of one figure: what it runs at each scale and how long that takes here.
fn figure_help(name: &str) -> Result<String> {
    let def = figures::definition(name).context("unknown figure")?;
    let mut s = format!(
        "{}\n\n{}\n\nAt each scale (estimates: this project's engine on the 2-core CPU, from measured step times):\n",
        def.title, def.about
    );
    if def.presets.iter().all(|p| lt_train::Preset::named(p).is_ok_and(|p| p.dataset == "imagenet")) {
        return imagenet_help(def);
    }
    for scale in [Scale::Smoke, Scale::Small, Scale::Medium, Scale::Paper] {
        let panels: Vec<Setup> = def.presets.iter().map(|p| Setup::new(p, scale, None)).collect::<Result<_>>()?;
        let fig = Figure::new(def, panels);
        let tasks = fig.tasks();
        let iters: u64 = (0..tasks.len()).map(|i| figures::planned_iterations(&tasks, i)).sum();
        let mut per_network: Vec<(&str, f64)> = fig.panels.iter().map(|p| (p.preset.name, 0.0)).collect();
        for (i, t) in tasks.iter().enumerate() {
            if let Some((p, ms)) =
                fig.panels.iter().zip(per_network.iter_mut()).find(|(p, _)| p.preset.name == t.train().preset)
            {
                let test = if p.dataset.ends_with("sample") { 500 } else { 10_000 };
                let n = figures::planned_iterations(&tasks, i);
                ms.1 += estimate_seconds(t, n, p.ms_per_example() * p.batch as f64, test);
            }
        }
        let ms: f64 = per_network.iter().map(|(_, ms)| ms).sum();
        let first = &fig.panels[0];
        let each: Vec<String> = per_network.iter().map(|(n, ms)| format!("{n} {}", human(ms / 1e3))).collect();
        let each = (per_network.len() > 1 && scale.shortened())
            .then(|| format!("         (per network, e.g. one per sitting with --only: {})\n", each.join(", ")));
        if def.name == "instability" {
            let probe = first.probe();
            let _ = writeln!(
                s,
                "  {:<6} {} tasks, {iters} training iterations, about {}; e.g. {}: T = {}, batch {}, {} replicate(s), k = {:?}, {} points per line, dataset {}",
                scale.name(),
                tasks.len(),
                human(ms / 1e3),
                first.preset.name,
                first.iterations,
                first.batch,
                first.replicates,
                first.instability_points(),
                probe.points,
                first.dataset
            );
            s.push_str(each.as_deref().unwrap_or(""));
            continue;
        }
        let _ = writeln!(
            s,
            "  {:<6} {} tasks, {iters} training iterations, about {}; e.g. {}: T = {}, batch {}, {} replicate(s), {} levels (curves) / level {} (stability), dataset {}",
            scale.name(),
            tasks.len(),
            human(ms / 1e3),
            first.preset.name,
            first.iterations,
            first.batch,
            first.replicates,
            first.curve_levels(),
            first.stability_level(),
            first.dataset
        );
        s.push_str(each.as_deref().unwrap_or(""));
    }
    s.push_str("\nThe small and medium scales' estimates are for every network; `--only lenet` (or another preset) runs one row.\nmedium runs for days here: one network, replicate (--replicates) or rewind point (--rewind) per sitting, the store resuming the rest (or a GPU: --device cuda).\nsmall, medium and paper use the paper's dataset (CIFAR-10: `lt data fetch cifar10`) unless --dataset names another (e.g. fashion-mnist).\n");
    Ok(s)
}

/// The help of an ImageNet figure: smoke on this CPU; paper in GPU time at an assumed throughput.
fn imagenet_help(def: &figures::Definition) -> Result<String> {
    let mut s = format!("{}\n\n{}\n\nAt each scale:\n", def.title, def.about);
    let smoke: Vec<Setup> = def.presets.iter().map(|p| Setup::new(p, Scale::Smoke, None)).collect::<Result<_>>()?;
    let fig = Figure::new(def, smoke);
    let tasks = fig.tasks();
    let (mut iters, mut ms) = (0, 0.0);
    for (i, t) in tasks.iter().enumerate() {
        let p = fig.panels.iter().find(|p| p.preset.name == t.train().preset).context("panel")?;
        let n = figures::planned_iterations(&tasks, i);
        iters += n;
        ms += estimate_seconds(t, n, p.ms_per_example() * p.batch as f64, 50);
    }
    let first = &fig.panels[0];
    let _ = writeln!(
        s,
        "  smoke  {} tasks, {iters} training iterations, about {} on a 2-core CPU: T = {}, batch {}, 1 replicate, on the generated {} (written on first use; 64 pixels, Inception-v3 80). Checks the pipeline; its numbers mean nothing.",
        tasks.len(),
        human(ms / 1e3),
        first.iterations,
        first.batch,
        first.dataset
    );
    let _ = writeln!(
        s,
        "  small  not defined: no ImageNet subset is at hand to size and check one on (paper scale with --replicates 1 and --only is the smallest real run)\n  medium not defined, for the same reason"
    );
    let mut panels: Vec<Setup> =
        def.presets.iter().map(|p| Setup::new(p, Scale::Paper, None)).collect::<Result<_>>()?;
    if def.name == "fig6" {
        panels.iter_mut().for_each(|p| p.replicates = 5);
    }
    let fig = Figure::new(def, panels);
    let tasks = fig.tasks();
    let _ = writeln!(
        s,
        "  paper  {} tasks on ImageNet (`lt data pack imagenet`; 1,281,167 training images, batch 1024), one GPU each; GPU time at an assumed fp32 throughput of one data-centre GPU (not measured here: `cargo xtask gpu-check` times this engine where a GPU is lent):",
        tasks.len()
    );
    for p in &fig.panels {
        let ips = p.gpu_images_per_second();
        let step_ms = 1e3 * p.batch as f64 / ips;
        let (mut n, mut total) = (0, 0.0);
        for (i, t) in tasks.iter().enumerate().filter(|(_, t)| t.train().preset == p.preset.name) {
            let planned = figures::planned_iterations(&tasks, i);
            n += planned;
            total += estimate_seconds(t, planned, step_ms, 50_000) / 1e3;
        }
        let dense = p.iterations as f64 * step_ms / 1e3;
        let _ = writeln!(
            s,
            "         {}: T = {} iterations ({} epochs); one dense run ≈ {:.0} GPU-hours at {ips:.0} images/s; the figure's {n} iterations over {} replicate(s) ≈ {} of GPU time",
            p.preset.name,
            p.iterations,
            p.preset.iterations.iterations(1),
            dense / 3600.0,
            p.replicates,
            human(total)
        );
    }
    s.push_str("\nOn a GPU: build with `--features cuda` and pass `--device cuda`; on a cluster, `--executor slurm --gpus 1` runs one task per job (README).\n");
    Ok(s)
}

/// `--rewind`'s points, checked against the figure and the setup.
fn rewind_points(figure: &str, setup: &Setup, ks: &[u64]) -> Result<Vec<u64>> {
    let grid = matches!(figure, "fig4" | "fig7" | "fig11" | "fig12" | "instability");
    let one = matches!(figure, "fig5" | "fig8");
    if !grid && !one {
        bail!(
            "{figure} has no rewind point to choose (--rewind applies to fig4, fig5, fig7, fig8, fig11, fig12 and instability)"
        );
    }
    if one && ks.len() != 1 {
        bail!("{figure} rewinds to one point (its reset curve is k = 0); --rewind got {ks:?}");
    }
    let mut ks = ks.to_vec();
    ks.sort_unstable();
    ks.dedup();
    if let Some(k) = ks.iter().find(|k| **k >= setup.iterations) {
        bail!(
            "--rewind {k} is not before the end of training ({} runs {} iterations at {})",
            setup.preset.name,
            setup.iterations,
            setup.scale.name()
        );
    }
    Ok(ks)
}

fn human(seconds: f64) -> String {
    if seconds < 120.0 {
        format!("{seconds:.0} s")
    } else if seconds < 7200.0 {
        format!("{:.0} min", seconds / 60.0)
    } else if seconds < 3.0 * 86400.0 {
        format!("{:.1} h", seconds / 3600.0)
    } else {
        format!("{:.0} days", seconds / 86400.0)
    }
}

pub fn run(raw: &[String]) -> Result<()> {
    if let (Some(fig), true) = (raw.first(), raw.iter().any(|a| a == "--help" || a == "-h"))
        && figures::definition(fig).is_some()
    {
        {
            print!("{}", figure_help(fig)?);
            println!(
                "\noptions: --scale smoke|small|medium|paper  --dataset NAME  --only PRESETS  --replicates N  --rewind K,K  --levels N  --accumulate K  --batch B  --out DIR  --store DIR  --dry-run\n         --task N (one task of the plan, as numbered there)  --executor local|slurm  --status  (Slurm: --partition --account --time --gpus --cpus --sbatch-arg --prologue; `--help` without a figure describes them)"
            );
            return Ok(());
        }
    }
    let args = match Args::try_parse_from(std::iter::once("reproduce".to_string()).chain(raw.iter().cloned())) {
        Ok(args) => args,
        // `--help` (with no figure, or an unknown one) is an answer, not an error.
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => {
            print!("{e}");
            return Ok(());
        }
        Err(e) => bail!("{e}"),
    };
    let def = figures::definition(&args.figure).with_context(|| {
        format!(
            "unknown figure {:?}; figures are {} (fig2 is a table of hyperparameters: `lt presets`)",
            args.figure,
            DEFINITIONS.iter().map(|d| d.name).collect::<Vec<_>>().join(", ")
        )
    })?;
    let only: Option<Vec<&str>> = args.only.as_deref().map(|o| o.split(',').map(str::trim).collect());
    if let Some(o) = &only
        && let Some(bad) = o.iter().find(|p| !def.presets.contains(p))
    {
        bail!("{} has no network {bad:?}; its networks are {}", def.name, def.presets.join(", "));
    }
    let panels: Vec<Setup> = def
        .presets
        .iter()
        .filter(|p| only.as_ref().is_none_or(|o| o.contains(p)))
        .map(|p| {
            let mut setup = Setup::new(p, args.scale, args.dataset.as_deref())?;
            if let Some(b) = args.batch {
                setup.with_batch(b)?;
            }
            if let Some(n) = args.replicates {
                if n == 0 {
                    bail!("--replicates must be at least 1");
                }
                setup.replicates = n;
            }
            if let Some(ks) = &args.rewind {
                setup.rewind = Some(rewind_points(def.name, &setup, ks)?);
            }
            if let Some(k) = args.accumulate.filter(|k| *k > 1) {
                if !setup.batch.is_multiple_of(k) {
                    bail!(
                        "--accumulate {k}: {}'s batch of {} does not split into {k} equal micro-batches",
                        p,
                        setup.batch
                    );
                }
                setup.accumulate = Some(k);
            }
            if def.name == "fig6" && args.scale == Scale::Paper && args.replicates.is_none() {
                // The paper's Figure 6: five trials.
                setup.replicates = 5;
            }
            if let Some(levels) = args.levels {
                if !matches!(def.name, "fig1" | "fig5" | "fig8" | "fig9") {
                    bail!(
                        "{} measures one sparsity; --levels applies to the curves of fig1, fig5, fig8 and fig9",
                        def.name
                    );
                }
                if levels == 0 {
                    bail!("--levels must be at least 1");
                }
                setup.levels = Some(levels);
            }
            Ok(setup)
        })
        .collect::<Result<_>>()?;
    let fig = Figure::new(def, panels);
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("results").join(def.name));
    let mut loc = Locations::from_env(None);
    if loc.data_dir.is_none() {
        // The bundled sample lives in the repository's datasets/ folder.
        loc.data_dir = Some(repo_root().join("datasets"));
    }
    let tasks = fig.tasks();
    let started = Instant::now();
    // The code that runs is the code of now, not of when the report is written.
    let version = code_version();

    println!("{} — scale {}, {} task(s)", fig.title, args.scale.name(), tasks.len());
    for p in &fig.panels {
        let note =
            if p.dataset != p.preset.dataset { format!(" (the paper: {})", p.preset.dataset) } else { String::new() };
        println!(
            "  {}: {} on {}{note}, T = {} iterations, batch {}, {} replicate(s)",
            p.preset.name, p.preset.model, p.dataset, p.iterations, p.batch, p.replicates
        );
    }
    // Open each dataset once; measure a step of each network for the estimate.
    let mut datas: Vec<(DataKey, Data)> = Vec::new();
    for t in &tasks {
        let s = t.train();
        if !datas.iter().any(|(key, _)| *key == DataKey::of(s)) {
            if s.dataset == lt_data::miniature::NAME {
                let dir = loc.cache_dir.join("datasets").join(lt_data::miniature::NAME);
                if !dir.join("index.json").is_file() {
                    println!("generating {} in {}", lt_data::miniature::NAME, dir.display());
                }
                lt_data::miniature::generate(&dir).with_context(|| format!("generating {}", dir.display()))?;
            }
            let data = Data::for_train(s, &loc).with_context(|| {
                format!(
                    "opening {} (CIFAR-10: `lt data fetch cifar10`; ImageNet: `lt data pack imagenet`, see README; or choose --dataset)",
                    s.dataset
                )
            })?;
            datas.push((DataKey::of(s), data));
        }
    }
    let data_for = |t: &Task| -> Result<&Data> {
        let key = DataKey::of(t.train());
        datas.iter().find(|(k, _)| *k == key).map(|(_, d)| d).context("data")
    };
    // A submission only plans: the GPU is where the jobs run, and the estimate is this CPU's.
    let submitting = args.slurm.executor == Executor::Slurm && args.task.is_none();
    let device = if submitting || args.status { Device::Cpu } else { args.device.open()? };
    let exec = exec_for(&tasks, &device);
    if let Some(n) = args.task {
        let task = tasks
            .get(n.wrapping_sub(1))
            .with_context(|| format!("--task {n}: the plan has tasks 1 to {}", tasks.len()))?;
        let label = format!("[{n}/{}] {}", tasks.len(), describe(task));
        let rewinds = figures::shared_rewinds(&tasks, n - 1);
        run_shown(task, &label, &args.store, &exec, data_for(task)?, &rewinds, &ProgressBar::hidden())?;
        println!("{label}: done in {}", human(started.elapsed().as_secs_f64()));
        return Ok(());
    }
    // A branch trains its lottery run first, unless an earlier task of the plan is that run.
    let planned = |i: usize, t: &Task| {
        tasks[..i].iter().any(|e| {
            matches!(e, Task::Lottery { spec, levels } if Some(spec) == t.lottery() && match t {
                Task::Branch { levels: l, .. } => l.iter().all(|l| l <= levels),
                _ => false,
            })
        })
    };
    let todo: Vec<(usize, u64)> = tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut n = remaining_iterations(t, &args.store, planned(i, t))?;
            // A dense level borrowed from an earlier run of the plan is not trained again.
            let borrowed = t.iterations() - figures::planned_iterations(&tasks, i);
            if n >= t.iterations() {
                n -= borrowed;
            }
            Ok((i, n))
        })
        .collect::<Result<_>>()?;
    // What a Slurm job still has to do: train, or evaluate the points of a line.
    let unfinished = |i: usize| {
        let t = &tasks[i];
        todo[i].1 > 0 || (matches!(t, Task::Interpolate { .. } | Task::Instability { .. }) && !measured(t, &args.store))
    };
    if args.status {
        let labels: Vec<String> = tasks.iter().map(describe).collect();
        let done: Vec<bool> = (0..tasks.len()).map(|i| !unfinished(i)).collect();
        print!("{}", slurm::status(&labels, &done, &out)?);
        return Ok(());
    }
    let mut seconds_per_iteration = std::collections::BTreeMap::new();
    for p in &fig.panels {
        let spec = p.lottery(0, 0);
        let key = DataKey::of(&spec.train);
        let data = datas.iter().find(|(k, _)| *k == key).map(|(_, d)| d).context("data")?;
        seconds_per_iteration.insert(p.preset.name, measure_step(&spec, data, &device)?);
    }
    let total_todo: u64 = todo.iter().map(|(_, n)| n).sum();
    // Training and evaluation, plus 15% for checkpoints and everything else.
    let estimate: f64 = todo
        .iter()
        .map(|(i, n)| {
            let t = &tasks[*i];
            let step = seconds_per_iteration.get(t.train().preset.as_str()).copied().unwrap_or(0.0);
            let test = data_for(t).map_or(0, |d| d.test.len());
            // A measured interpolation is not evaluated again.
            if measured(t, &args.store) { 0.0 } else { estimate_seconds(t, *n, step * 1e3, test) / 1e3 }
        })
        .sum::<f64>()
        * 1.15;
    println!("plan:");
    for (i, t) in tasks.iter().enumerate() {
        println!("  [{:>3}] {:<60} {:>9} iterations to train", i + 1, describe(t), todo[i].1);
    }
    println!(
        "{total_todo} iterations to train; estimated {} here{} (measured step times: {})",
        human(estimate),
        if device.is_cuda() { format!(" on {}", args.device) } else { String::new() },
        seconds_per_iteration.iter().map(|(k, v)| format!("{k} {:.0} ms", v * 1e3)).collect::<Vec<_>>().join(", ")
    );
    if args.dry_run {
        return Ok(());
    }
    if args.slurm.executor == Executor::Slurm {
        let nodes: Vec<slurm::Node> =
            (0..tasks.len()).map(|i| slurm::Node { todo: unfinished(i), needs: needs(&tasks, i) }).collect();
        let sub = slurm::submit(fig.name, &nodes, &args.command(&out)?, &out, &args.slurm)?;
        let queued: usize = sub.waves.iter().map(|w| w.tasks.len()).sum();
        println!(
            "submitted {queued} task(s) in {} job array(s) and the rendering job {}:",
            sub.waves.len(),
            sub.render
        );
        for (w, wave) in sub.waves.iter().enumerate() {
            println!(
                "  wave {w}: job {} (tasks {})",
                wave.job,
                wave.tasks.iter().map(usize::to_string).collect::<Vec<_>>().join(",")
            );
        }
        println!(
            "logs in {}; follow with `cargo xtask reproduce {} --status` and the same options",
            out.join("slurm").join("logs").display(),
            fig.name
        );
        return Ok(());
    }

    let bar = ProgressBar::with_draw_target(Some(total_todo.max(1)), ProgressDrawTarget::hidden());
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(ProgressDrawTarget::stderr());
    }
    bar.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} it  {msg}  eta {eta}")?.progress_chars("=> "));
    let mut results = Results::new();
    for (i, task) in tasks.iter().enumerate() {
        let label = format!("[{}/{}] {}", i + 1, tasks.len(), describe(task));
        let rewinds = figures::shared_rewinds(&tasks, i);
        let result = run_shown(task, &label, &args.store, &exec, data_for(task)?, &rewinds, &bar)?;
        results.insert(task.key(), result);
    }
    bar.finish_and_clear();

    let rows = fig.rows(&results);
    write_outputs(&fig, &args, &out, &tasks, &rows, &datas, (&version, started.elapsed().as_secs_f64()))?;
    if fig.name == "instability" {
        for line in onset_lines(&fig, &rows) {
            println!("{line}");
        }
    }
    println!("done in {}: {}", human(started.elapsed().as_secs_f64()), out.display());
    Ok(())
}

/// Runs `task`, saying (as `label`) when each of its jobs starts, waits for another worker, or
/// finishes, and moving `bar` with its training iterations. A dense level it trains also saves
/// W_k at `rewinds` (the plan's other rewind points with its training: `shared_rewinds`).
fn run_shown(
    task: &Task,
    label: &str,
    store: &Path,
    exec: &Exec,
    data: &Data,
    rewinds: &[u64],
    bar: &ProgressBar,
) -> Result<TaskResult> {
    let mut last = 0u64;
    let mut events = |e: Event| match e {
        Event::Started { label: job, from, to, resumed } => {
            last = from;
            let how = if resumed { "resuming" } else { "training" };
            say(bar, format!("{label}: {job}: {how} iterations {from}..{to}"));
            bar.set_message(job);
        }
        Event::Train(lt_train::Progress::Step { iteration, .. }) => {
            bar.inc(iteration.saturating_sub(last));
            last = iteration;
        }
        Event::Waiting { label: job } => say(bar, format!("{label}: {job}: another worker trains it; waiting")),
        Event::Borrowed { label: job, from, .. } => {
            say(bar, format!("{label}: {job}: the same training as run {from}: linked, not trained again"))
        }
        Event::Finished { label: job, outcome } => say(
            bar,
            format!("{label}: {job}: {:.2}% test accuracy ({:.0} s)", 100.0 * outcome.accuracy, outcome.wall_s),
        ),
        _ => {}
    };
    let mut ctx = Context { data, exec, events: &mut events };
    run_task(task, store, rewinds, &mut ctx).with_context(|| format!("task {}", describe(task)))
}

/// How the tasks run: one evaluation per job (at its end: evaluating a CIFAR network on 10,000
/// test images costs as much as many training steps), checkpoints every tenth of a job.
fn exec_for(tasks: &[Task], device: &Device) -> Exec {
    let longest = tasks.iter().map(|t| t.train().iterations).max().unwrap_or(1);
    Exec { eval_every: u64::MAX, checkpoint_every: (longest / 10).max(1), device: device.clone() }
}

/// The tasks (indices) that task `i` needs done first: its lottery run for a branch, a stability
/// measurement or an interpolation; the data-order copies for an interpolation; the dense-level
/// task of its training for a lottery run or a branch.
fn needs(tasks: &[Task], i: usize) -> Vec<usize> {
    let t = &tasks[i];
    let Some(spec) = t.lottery() else { return Vec::new() };
    tasks
        .iter()
        .enumerate()
        .filter(|(j, e)| {
            *j != i
                && match (e, t) {
                    (Task::Lottery { spec: s, levels: 0 }, Task::Lottery { levels: 1.., .. } | Task::Branch { .. }) => {
                        s.shares_dense_level(spec)
                    }
                    (Task::Lottery { .. }, Task::Lottery { .. }) => false,
                    (Task::Lottery { spec: s, .. }, _) => s == spec,
                    (
                        Task::Stability { spec: s, level: l, kind: lt_lottery::StabilityKind::DataOrder, .. },
                        Task::Interpolate { level, .. },
                    ) => s == spec && l == level,
                    _ => false,
                }
        })
        .map(|(j, _)| j)
        .collect()
}

fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        println!("{line}");
    } else {
        bar.println(line);
    }
}

/// Milliseconds to train `iterations` of `task` and run its evaluations, from the cost of one
/// training step: an evaluation passes an example forward only, about a third of a training step
/// per example; one test evaluation per job, plus the task's interpolation points.
fn estimate_seconds(task: &Task, iterations: u64, step_ms: f64, test: usize) -> f64 {
    let s = task.train();
    let per_example = step_ms / s.batch_size.max(1) as f64;
    let jobs = iterations.div_ceil((s.iterations - task.rewind()).max(1)) as f64;
    let forward = jobs * test as f64 + task.evaluation_examples(test) as f64;
    iterations as f64 * step_ms + forward * per_example / 3.0
}

fn describe(t: &Task) -> String {
    let s = t.train();
    let base = format!("{} r{} k={}", s.preset, s.seed, t.rewind());
    match t {
        Task::Instability { ks, probe, .. } => format!(
            "{} r{}: dense instability at k = {}, {} points",
            s.preset,
            s.seed,
            ks.iter().map(u64::to_string).collect::<Vec<_>>().join(","),
            probe.points
        ),
        Task::Interpolate { level, points, .. } => format!("{base}: error barrier at level {level}, {points} points"),
        Task::Lottery { levels: 0, .. } => format!("{base}: dense network (level 0)"),
        Task::Lottery { levels, .. } => format!("{base}: IMP levels 0-{levels}"),
        Task::Branch { branch, levels, .. } => {
            format!(
                "{base}: {} levels {}-{}",
                branch.kind.name(),
                levels.first().unwrap_or(&0),
                levels.last().unwrap_or(&0)
            )
        }
        Task::Stability { level, kind, samples, .. } => {
            format!("{base}: {kind:?} stability at level {level}, {samples} sample(s)")
        }
    }
}

/// Iterations a task still has to train (an upper bound for stability tasks whose copies are
/// partly done); a branch's lottery run counts unless `run_planned` (an earlier task trains it).
fn remaining_iterations(t: &Task, store: &Path, run_planned: bool) -> Result<u64> {
    let spec = match t {
        Task::Instability { train, ks, probe } => {
            let runs = lt_lottery::DenseRuns::folder(store, train);
            if !runs.exists() {
                return Ok(t.iterations());
            }
            let runs = lt_lottery::DenseRuns::create(store, train.clone())?;
            let measured = ks.iter().map(|k| runs.result(*k, probe)).collect::<Result<Vec<_>, _>>()?;
            return Ok(if measured.iter().all(Option::is_some) { 0 } else { runs.remaining(ks)? });
        }
        // Copies 0 and 1 come from the data-order stability task before it.
        Task::Interpolate { .. } => return Ok(0),
        t => t.lottery().context("a lottery task")?,
    };
    let dir = store.join("lottery").join(spec.id());
    let (tt, k) = (spec.train.iterations, spec.rewind);
    Ok(match t {
        Task::Lottery { levels, .. } => (0..=*levels)
            .filter(|l| lt_lottery::outcome(&dir.join(format!("level_{l}"))).ok().flatten().is_none())
            .map(|l| if l == 0 { tt } else { tt - k })
            .sum(),
        Task::Stability { level, kind, samples, .. } => {
            let name = if *kind == lt_lottery::StabilityKind::DataOrder { "data-order" } else { "pruning" };
            if dir.join("stability").join(format!("{name}-level_{level}-n{samples}.json")).is_file() {
                0
            } else {
                t.iterations()
            }
        }
        Task::Branch { branch, levels, .. } => {
            let bdir = Branch::folder(&dir, branch);
            let run = Task::Lottery { spec: spec.clone(), levels: *levels.iter().max().unwrap_or(&0) };
            let run = if run_planned { 0 } else { remaining_iterations(&run, store, false)? };
            run + levels
                .iter()
                .filter(|l| lt_lottery::outcome(&bdir.join(format!("level_{l}"))).ok().flatten().is_none())
                .count() as u64
                * (tt - k)
        }
        Task::Interpolate { .. } | Task::Instability { .. } => 0,
    })
}

/// Whether a task's interpolations are all on disk (tasks without any: whether nothing is left).
fn measured(t: &Task, store: &Path) -> bool {
    match t {
        Task::Interpolate { spec, level, points, .. } => store
            .join("lottery")
            .join(spec.id())
            .join("stability")
            .join(format!("interpolate-level_{level}-p{points}.json"))
            .is_file(),
        Task::Instability { train, ks, probe } => {
            lt_lottery::DenseRuns::folder(store, train).exists()
                && lt_lottery::DenseRuns::create(store, train.clone())
                    .is_ok_and(|r| ks.iter().all(|k| r.result(*k, probe).is_ok_and(|m| m.is_some())))
        }
        _ => false,
    }
}

fn run_task(task: &Task, store: &Path, rewinds: &[u64], ctx: &mut Context) -> Result<TaskResult> {
    let lottery = |spec: &lt_lottery::LotterySpec| {
        Ok::<_, lt_lottery::Error>(Lottery::create(store, spec.clone())?.saving_for(rewinds.iter().copied()))
    };
    Ok(match task {
        Task::Lottery { spec, levels } => TaskResult::Levels(lottery(spec)?.run(*levels, ctx)?),
        Task::Branch { spec, branch, levels } => {
            let run = lottery(spec)?;
            let top = *levels.iter().max().unwrap_or(&0);
            run.run(top, ctx)?;
            TaskResult::Branch(Branch::create(&run, branch.clone())?.run(levels, ctx)?)
        }
        Task::Stability { spec, level, kind, samples } => {
            let run = Lottery::create(store, spec.clone())?;
            let report = match kind {
                lt_lottery::StabilityKind::DataOrder => lt_lottery::data_order(&run, *level, *samples, true, ctx)?,
                lt_lottery::StabilityKind::Pruning => lt_lottery::pruning(&run, *level, *samples, true, ctx)?,
            };
            TaskResult::Stability(Box::new(report))
        }
        Task::Interpolate { spec, level, points, bn_batches } => {
            let run = Lottery::create(store, spec.clone())?;
            TaskResult::Interpolation(lt_lottery::interpolate(&run, *level, *points, *bn_batches, ctx)?)
        }
        Task::Instability { train, ks, probe } => {
            let runs = lt_lottery::DenseRuns::create(store, train.clone())?;
            TaskResult::Instability(runs.measure(ks, probe, ctx)?)
        }
    })
}

/// Seconds per training iteration of `spec`'s network on `data` (median of 3 after one warm-up).
fn measure_step(spec: &lt_lottery::LotterySpec, data: &Data, dev: &Device) -> Result<f64> {
    let model = lt_models::Model::new(&spec.train.model, data.input, 0, Default::default(), dev)?;
    let params = model.parameters();
    let mut opt = lt_train::Optimizer::new(spec.train.optimizer)?;
    let mut loader = lt_data::Loader::new(data.train.clone(), 0, spec.train.batch_size, dev)?;
    let mut times = Vec::new();
    for t in 0..4 {
        let start = Instant::now();
        let batch = loader.batch(t)?;
        let loss = candle_nn::loss::cross_entropy(&model.forward_t(&batch.images, true)?, &batch.labels)?;
        opt.step(&params, &loss.backward()?, 1e-9, &lt_train::Masks::new())?;
        dev.synchronize()?;
        if t > 0 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    Ok(times[1])
}

fn code_version() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(repo_root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "HEAD"]) {
        Some(head) => {
            let dirty = git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty());
            format!("{head}{}", if dirty { " (with uncommitted changes)" } else { "" })
        }
        None => format!("lt {} (not a git checkout)", env!("CARGO_PKG_VERSION")),
    }
}

/// The paper's Figure 3 (L2) numbers by preset: data order IMP, random, pruning IMP, random, accuracy IMP, random.
const PAPER_FIG3: &[(&str, &str, [&str; 8])] = &[
    ("lenet", "10.7%", ["20.7±0.6", "58.6±4.0", "2.8x", "48.1±0.6", "75.7±0.5", "1.6x", "98.3±0.1", "97.5±0.3"]),
    (
        "resnet18-standard",
        "16.7%",
        ["66.4±0.7", "66.7±1.1", "1.0x", "54.4±0.2", "53.4±0.4", "1.0x", "87.7±0.4", "87.7±0.5"],
    ),
    ("resnet18-low", "16.7%", ["7.1±1.2", "28.9±3.2", "4.1x", "19.8±1.4", "26.6±0.1", "1.3x", "89.1±0.4", "86.1±0.6"]),
    (
        "resnet18-warmup",
        "16.7%",
        ["9.5±0.1", "37.4±1.9", "3.9x", "24.8±0.9", "34.6±0.2", "1.4x", "90.3±0.4", "86.8±0.5"],
    ),
    ("vgg19-standard", "2.2%", ["285±3", "245±34", "0.8x", "216±1", "212±1", "1.0x", "90.0±0.3", "90.2±0.5"]),
    ("vgg19-low", "2.2%", ["36.8±2.6", "90.3±0.7", "2.5x", "44.0±0.3", "66.1±0.4", "1.5x", "91.0±0.3", "88.0±0.3"]),
    ("vgg19-warmup", "2.2%", ["97±0.6", "267±2", "2.7x", "138±1", "201±1", "1.5x", "92.4±0.2", "90.3±0.3"]),
];

/// The paper's unpruned accuracies (Figure 2, mean of three trials).
const PAPER_DENSE: &[(&str, &str)] = &[
    ("lenet", "98.0±0.2"),
    ("resnet18-standard", "90.5±0.0"),
    ("resnet18-low", "89.1±0.1"),
    ("resnet18-warmup", "89.6±0.1"),
    ("vgg19-standard", "91.5±0.2"),
    ("vgg19-low", "92.0±0.1"),
    ("vgg19-warmup", "92.3±0.1"),
];

fn mean_of(rows: &[Row], f: impl Fn(&Row) -> bool) -> Option<lt_stability::Stats> {
    lt_stability::Stats::of(&rows.iter().filter(|r| f(r)).map(|r| r.value).collect::<Vec<_>>())
}

fn fmt_stats(s: Option<lt_stability::Stats>, scale: f64) -> String {
    s.map_or("-".into(), |s| format!("{:.2} [{:.2}, {:.2}]", scale * s.mean, scale * s.min, scale * s.max))
}

/// The onset-of-stability threshold: a mean test error barrier under 2 points.
const ONSET: f64 = 0.02;

/// The onset k* of each panel, as a sentence (the dense network's for the instability figure,
/// the IMP subnetwork's for fig4 and fig11).
fn onset_lines(fig: &Figure, rows: &[Row]) -> Vec<String> {
    let metric = if fig.name == "instability" { "barrier-test" } else { "data-order-barrier" };
    fig.panels
        .iter()
        .map(|p| {
            let net = p.preset.name;
            let (k, barriers) = figures::onset(rows, net, metric, ONSET);
            let t = p.iterations;
            match (k, barriers.is_empty()) {
                (_, true) => format!("{net}: not measured"),
                (Some(k), _) => format!(
                    "{net}: onset of stability k* = {k} of T = {t} ({:.1}% of training): the first k from which the mean test error barrier stays under {:.0} points",
                    100.0 * k as f64 / t as f64,
                    100.0 * ONSET
                ),
                (None, _) => format!(
                    "{net}: no onset of stability in the grid: the mean test error barrier is still {:.2} points (at least {:.0}) at its last k = {}",
                    barriers.last().map_or(0.0, |(_, s)| 100.0 * s.mean),
                    100.0 * ONSET,
                    barriers.last().map_or(0, |(k, _)| *k)
                ),
            }
        })
        .collect()
}

fn instability_report(fig: &Figure, rows: &[Row], r: &mut String) {
    let _ = writeln!(
        r,
        "Mean [min, max] over replicates (one pair of copies from W_k per replicate). Barriers and accuracies in points (%). \
         Every point of the line, the ends included, is evaluated with BatchNorm statistics recomputed from training batches \
         (the line's interior has no running statistics of its own); the copies' own evaluation uses the running statistics \
         accumulated while training, and is shown beside it: where they differ, the running statistics lag behind the weights \
         (a high learning rate moves the weights faster than their momentum-0.1 average follows). The barriers and the figure \
         use the recomputed statistics.\n"
    );
    for line in onset_lines(fig, rows) {
        let _ = writeln!(r, "- **{line}**");
    }
    for p in &fig.panels {
        let net = p.preset.name;
        let probe = p.probe();
        let _ = writeln!(
            r,
            "\n### {net} (T = {}, {} points on the line, BatchNorm recomputed from {} batches, train error on the first {} training examples)\n",
            p.iterations, probe.points, probe.bn_batches, probe.train_examples
        );
        let _ = writeln!(
            r,
            "| k | % of T | test barrier | train barrier | L2 distance | angle (deg) | accuracy, recomputed BN | accuracy, running BN |"
        );
        let _ = writeln!(r, "|---|---|---|---|---|---|---|---|");
        for k in p.instability_points() {
            let get = |f: &dyn Fn(&str) -> bool| mean_of(rows, |x| x.network == net && x.rewind == k && f(&x.metric));
            let barrier = get(&|m| m == "barrier-test");
            if barrier.is_none() {
                continue;
            }
            let _ = writeln!(
                r,
                "| {k} | {:.1}% | {} | {} | {} | {} | {} | {} |",
                100.0 * k as f64 / p.iterations as f64,
                fmt_stats(barrier, 100.0),
                fmt_stats(get(&|m| m == "barrier-train"), 100.0),
                fmt_stats(get(&|m| m == "l2"), 1.0),
                fmt_stats(get(&|m| m == "angle"), 1.0),
                fmt_stats(get(&|m| m.starts_with("accuracy-recomputed-bn")), 100.0),
                fmt_stats(get(&|m| m.starts_with("accuracy-running-bn")), 100.0),
            );
        }
    }
    let _ = writeln!(
        r,
        "\nThe follow-up's claims (Frankle et al., ICML 2020; `EXPERIMENTS.md`): LeNet on MNIST is stable at initialization; the CIFAR-10 \
         ResNet-20 and VGG-16 are unstable at k = 0 and become stable early in training; IMP subnetworks reach the dense network's \
         accuracy only when they are stable, which is why rewinding to an early k works where k = 0 fails. *Stabilizing the Lottery \
         Ticket Hypothesis* rewinds to k = 500 (ResNet-20) and 100 (VGG-19) of T = 30,000 and 112,000. Onset here: the first k \
         from which the barrier stays under 2 points (the specification's \"smallest stable k\" would let one noisy low barrier \
         before an unstable k count as the onset)."
    );
}

/// `cargo xtask render DIR...`: re-draws `figure.svg` and `figure.png` of finished figures from
/// their `data.json`, training nothing and reading no store (e.g. after a change of the renderer).
pub fn render(dirs: &[String]) -> Result<()> {
    if dirs.is_empty() {
        bail!("usage: cargo xtask render DIR... (folders of finished figures, each with its data.json)");
    }
    for dir in dirs.iter().map(Path::new) {
        let path = dir.join("data.json");
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        #[derive(serde::Deserialize)]
        struct Saved {
            figure: String,
            scale: Scale,
            datasets: Vec<String>,
            rows: Vec<Row>,
        }
        let saved: Saved = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let def = figures::definition(&saved.figure)
            .with_context(|| format!("{}: unknown figure {:?}", path.display(), saved.figure))?;
        // The networks the saved rows hold, in the definition's order, each on its saved dataset.
        let presets: Vec<&str> =
            def.presets.iter().copied().filter(|p| saved.rows.iter().any(|r| r.network == *p)).collect();
        let panels: Vec<Setup> = presets
            .iter()
            .enumerate()
            .map(|(i, p)| {
                Setup::new(p, saved.scale, saved.datasets.get(i).or(saved.datasets.first()).map(String::as_str))
            })
            .collect::<Result<_>>()?;
        let fig = Figure::new(def, panels);
        draw(&fig, saved.scale, &saved.rows, dir)?;
        println!("{}: figure.svg and figure.png re-drawn from data.json", dir.display());
    }
    Ok(())
}

/// `figure.svg` and `figure.png` of `fig` from `rows`, into `out`.
fn draw(fig: &Figure, scale: Scale, rows: &[Row], out: &Path) -> Result<()> {
    let datasets: Vec<&str> = fig.panels.iter().map(|p| p.dataset.as_str()).collect();
    let title = format!("{} [scale {}, {}]", fig.title, scale.name(), datasets.first().copied().unwrap_or("?"));
    let warning = (scale == Scale::Smoke).then_some("SMOKE RUN: a pipeline check on a tiny sample, not a result");
    let charts = fig.charts(rows);
    let figure = plot::Figure::new(&title, warning, &charts, fig.columns());
    lt_data::write_atomic(&out.join("figure.svg"), figure.svg()?.as_bytes())?;
    let mut png = Vec::new();
    figure.png()?.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)?;
    lt_data::write_atomic(&out.join("figure.png"), &png)?;
    Ok(())
}

fn write_outputs(
    fig: &Figure,
    args: &Args,
    out: &Path,
    tasks: &[Task],
    rows: &[Row],
    datas: &[(DataKey, Data)],
    (version, wall): (&str, f64),
) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let smoke = args.scale == Scale::Smoke;
    let datasets: Vec<&str> = fig.panels.iter().map(|p| p.dataset.as_str()).collect();
    draw(fig, args.scale, rows, out)?;
    let mut csv = String::from(CSV_HEADER);
    csv.push('\n');
    for r in rows {
        csv.push_str(&r.csv());
        csv.push('\n');
    }
    lt_data::write_atomic(&out.join("data.csv"), csv.as_bytes())?;
    let json = serde_json::json!({
        "figure": fig.name, "scale": args.scale, "datasets": datasets, "rows": rows,
        "tasks": tasks.iter().map(describe).collect::<Vec<_>>(),
    });
    lt_data::write_atomic(&out.join("data.json"), serde_json::to_string_pretty(&json)?.as_bytes())?;

    // report.md
    let mut r = String::new();
    let _ = writeln!(r, "# {}\n", fig.title);
    if smoke {
        let _ = writeln!(
            r,
            "**SMOKE RUN**: a check of the whole pipeline on the bundled sample dataset with a handful of iterations. Its numbers mean nothing.\n"
        );
    }
    let _ = writeln!(r, "- scale: **{}**", args.scale.name());
    let _ = writeln!(r, "- code version: {version}");
    let _ = writeln!(r, "- wall time of this invocation: {}", human(wall));
    let _ = writeln!(r, "- experiment store: {}", args.store.display());
    for (key, data) in datas {
        let _ = writeln!(
            r,
            "- dataset **{}**{}{}: {} training examples, {} test examples",
            key.dataset,
            key.train_examples.map_or(String::new(), |n| format!(" (first {n})")),
            key.image_size.map_or(String::new(), |n| format!(" at {n}x{n} pixels")),
            data.train.len(),
            data.test.len()
        );
        for f in data.train.files().iter().chain(data.test.files().iter()) {
            if let Ok(d) = lt_data::digest_file(f) {
                let _ = writeln!(r, "  - `{}` sha256 {} (decompressed bytes)", f.display(), d.sha256);
            }
        }
    }
    for p in &fig.panels {
        if p.dataset != p.preset.dataset {
            let _ = writeln!(
                r,
                "- note: the paper trains {} on {}; this run uses {}",
                p.preset.name, p.preset.dataset, p.dataset
            );
        }
    }
    let _ = writeln!(r, "\n## Values\n");
    match fig.name {
        "instability" => instability_report(fig, rows, &mut r),
        "fig3" | "fig10" => {
            let m = if fig.name == "fig3" { "l2" } else { "angle" };
            let _ = writeln!(r, "Mean [min, max] over samples ({m}); the paper's values (L2, Figure 3) beside them.\n");
            let _ = writeln!(
                r,
                "| network | weights left | data order IMP | random | comp | paper IMP | paper random | paper comp | pruning IMP | random | comp | paper IMP | paper random | paper comp | acc IMP | acc random | paper acc IMP | paper acc random |"
            );
            let _ = writeln!(r, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
            for p in &fig.panels {
                let net = p.preset.name;
                let get = |sub: &str, metric: &str| {
                    mean_of(rows, |x| x.network == net && x.series == sub && x.metric == metric)
                };
                let d =
                    rows.iter().find(|x| x.network == net && x.series == "imp").map_or(0.0, |x| x.weights_remaining);
                let paper = PAPER_FIG3.iter().find(|(n, _, _)| *n == net).map(|(_, _, v)| *v).unwrap_or(["-"; 8]);
                let comp = |a: Option<lt_stability::Stats>, b: Option<lt_stability::Stats>| match (a, b) {
                    (Some(a), Some(b)) if a.mean > 0.0 => format!("{:.2}x", b.mean / a.mean),
                    _ => "-".into(),
                };
                let (di, dr) = (get("imp", &format!("data-order-{m}")), get("random", &format!("data-order-{m}")));
                let (pi, pr) = (get("imp", &format!("pruning-{m}")), get("random", &format!("pruning-{m}")));
                let (ai, ar) = (get("imp", "accuracy-mean"), get("random", "accuracy-mean"));
                let _ = writeln!(
                    r,
                    "| {net} | {d:.1}% | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    fmt_stats(di, 1.0),
                    fmt_stats(dr, 1.0),
                    comp(di, dr),
                    paper[0],
                    paper[1],
                    paper[2],
                    fmt_stats(pi, 1.0),
                    fmt_stats(pr, 1.0),
                    comp(pi, pr),
                    paper[3],
                    paper[4],
                    paper[5],
                    fmt_stats(ai, 100.0),
                    fmt_stats(ar, 100.0),
                    paper[6],
                    paper[7]
                );
            }
            let _ = writeln!(
                r,
                "\nThe paper's finding: where IMP finds winning tickets (LeNet; ResNet-18 and VGG-19 with low rates or warmup) they are more stable than random subnetworks (comp > 1) and more accurate; for the standard ResNet-18 and VGG-19 they are not (comp ≈ 1)."
            );
        }
        "fig6" => {
            let _ = writeln!(
                r,
                "Unpruned test accuracy (%), mean [min, max] over replicates. The paper's Figure 6 (TPU reference implementations, five trials) is garbled in our copy of its text; the value it shows is 78.1±0.1% top-1, and the sparsities at which rewinding matches these networks are 70% (ResNet-50, Inception-v3) and 50% (SqueezeNet).\n"
            );
            let _ = writeln!(r, "| network | model | epochs | batch | image | iterations | top-1 | top-5 |");
            let _ = writeln!(r, "|---|---|---|---|---|---|---|---|");
            for p in &fig.panels {
                let net = p.preset.name;
                let get = |m: &str| mean_of(rows, |x| x.network == net && x.metric == m);
                let _ = writeln!(
                    r,
                    "| {net} | {} | {} | {} | {} | {} | {} | {} |",
                    p.preset.model,
                    p.preset.iterations.iterations(1),
                    p.batch,
                    p.image_size.map_or("dataset's".to_string(), |n| format!("{n}x{n}")),
                    p.iterations,
                    fmt_stats(get("accuracy"), 100.0),
                    fmt_stats(get("top5"), 100.0)
                );
            }
        }
        _ => {
            let top5 = rows.iter().any(|x| x.metric == "top5");
            let _ = writeln!(r, "Test accuracy (%) mean [min, max] over replicates, by series and level.\n");
            let _ = writeln!(
                r,
                "| network | series | k | level | weights left | accuracy |{}\n|---|---|---|---|---|---|{}",
                if top5 { " top-5 |" } else { "" },
                if top5 { "---|" } else { "" }
            );
            let mut keys: Vec<(String, String, (u32, i64), u64)> =
                rows.iter().map(|x| (x.network.clone(), x.series.clone(), figures::point_key(x), x.rewind)).collect();
            keys.sort();
            keys.dedup();
            for (net, series, key, rewind) in keys {
                let of = |metrics: &[&str]| {
                    let sel: Vec<&Row> = rows
                        .iter()
                        .filter(|x| {
                            x.network == net
                                && x.series == series
                                && figures::point_key(x) == key
                                && x.rewind == rewind
                                && metrics.contains(&x.metric.as_str())
                        })
                        .collect();
                    let values: Vec<f64> = sel.iter().map(|x| x.value).collect();
                    (sel.first().map(|x| x.weights_remaining), lt_stability::Stats::of(&values))
                };
                let (left, acc) = of(&["accuracy", "accuracy-mean"]);
                let Some(left) = left else { continue };
                let t5 = if top5 { format!(" {} |", fmt_stats(of(&["top5"]).1, 100.0)) } else { String::new() };
                let _ = writeln!(
                    r,
                    "| {net} | {series} | {rewind} | {} | {left:.1}% | {} |{t5}",
                    key.0,
                    fmt_stats(acc, 100.0)
                );
            }
            let dense: Vec<String> = PAPER_DENSE
                .iter()
                .filter(|(n, _)| fig.panels.iter().any(|p| p.preset.name == *n))
                .map(|(n, v)| format!("{n} {v}%"))
                .collect();
            if !dense.is_empty() {
                let _ = writeln!(r, "\nThe paper's unpruned accuracies (Figure 2): {}.", dense.join(", "));
            }
            if matches!(fig.name, "fig4" | "fig11" | "fig7" | "fig12") {
                let _ = writeln!(
                    r,
                    "\nThe IMP subnetwork's instability: the test error barrier (points, mean [min, max] over replicates) between its data-order copies 0 and 1, BatchNorm statistics recomputed at each point of the line.\n"
                );
                for line in onset_lines(fig, rows) {
                    let _ = writeln!(r, "- {line}");
                }
                let metric = if matches!(fig.name, "fig4" | "fig7") { "l2" } else { "angle" };
                let _ = writeln!(
                    r,
                    "\nStability by rewind point ({metric}; mean [min, max] over the pairs of all replicates; comp = random / IMP, the paper's ratio):\n\n| network | k | data order IMP | random | comp | pruning IMP | random | comp |\n|---|---|---|---|---|---|---|---|"
                );
                for p in &fig.panels {
                    let net = p.preset.name;
                    let mut ks: Vec<u64> = rows.iter().filter(|x| x.network == net).map(|x| x.rewind).collect();
                    ks.sort_unstable();
                    ks.dedup();
                    for k in ks {
                        let mut cells = Vec::new();
                        for kind in ["data-order", "pruning"] {
                            let name = format!("{kind}-{metric}");
                            let of = |series: &str| {
                                mean_of(rows, |x| {
                                    x.network == net && x.rewind == k && x.series == series && x.metric == name
                                })
                            };
                            let (imp, random) = (of("imp"), of("random"));
                            let comp = match (imp, random) {
                                (Some(i), Some(r)) if i.mean > 0.0 => format!("{:.2}x", r.mean / i.mean),
                                _ => "-".into(),
                            };
                            cells.extend([fmt_stats(imp, 1.0), fmt_stats(random, 1.0), comp]);
                        }
                        let _ = writeln!(r, "| {net} | {k} | {} |", cells.join(" | "));
                    }
                }
                let _ = writeln!(r, "\n| network | k | barrier |\n|---|---|---|");
                for p in &fig.panels {
                    let net = p.preset.name;
                    for (k, s) in figures::onset(rows, net, "data-order-barrier", ONSET).1 {
                        let _ = writeln!(r, "| {net} | {k} | {} |", fmt_stats(Some(s), 100.0));
                    }
                }
            }
            if fig.name == "fig5" {
                for p in &fig.panels {
                    let net = p.preset.name;
                    let last = rows
                        .iter()
                        .filter(|x| x.network == net && x.metric == "accuracy")
                        .map(|x| x.level)
                        .max()
                        .unwrap_or(0);
                    let at = |prefix: &str| {
                        mean_of(rows, |x| {
                            x.network == net
                                && x.level == last
                                && x.series.starts_with(prefix)
                                && x.metric == "accuracy"
                        })
                    };
                    if let (Some(reset), Some(rewind)) = (at("IMP reset"), at("IMP rewound")) {
                        let diff = 100.0 * (rewind.mean - reset.mean);
                        let overlap = rewind.min <= reset.max && reset.min <= rewind.max && rewind.min < rewind.max;
                        let verdict = if overlap {
                            format!("the two overlap over the replicates (rewound − reset = {diff:+.2} points)")
                        } else if diff > 0.0 {
                            format!("rewinding beats resetting by {diff:.2} points")
                        } else {
                            format!("resetting beats rewinding by {:.2} points", -diff)
                        };
                        let _ = writeln!(
                            r,
                            "\n{net} at the sparsest level ({last}): rewound {} vs reset {} (mean [min, max]): {verdict} (the paper: rewinding beats resetting at high sparsity).",
                            fmt_stats(Some(rewind), 100.0),
                            fmt_stats(Some(reset), 100.0),
                        );
                    }
                }
            }
        }
    }
    let _ = writeln!(r, "\n## Hyperparameters\n");
    for p in &fig.panels {
        let spec = p.lottery(0, 0);
        let _ = writeln!(
            r,
            "### {}\n\n{} replicate(s); scale factor {:.4} of the paper's iterations (rewind points, milestones and warmup scaled by it).\n\n```toml\n{}```\n",
            p.preset.name,
            p.replicates,
            p.factor,
            toml::to_string(&spec).unwrap_or_else(|e| format!("# not serializable: {e}\n"))
        );
    }
    let _ = writeln!(r, "## Tasks\n");
    for t in tasks {
        let _ = writeln!(r, "- {}", describe(t));
    }
    lt_data::write_atomic(&out.join("report.md"), r.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code: a failed unwrap is a failed test")]

    use super::*;

    fn plan(figure: &str, preset: &str, scale: Scale) -> Vec<Task> {
        let def = figures::definition(figure).unwrap();
        Figure::new(def, vec![Setup::new(preset, scale, Some("fashion-mnist")).unwrap()]).tasks()
    }

    /// The runs reset and rewound (and fig4's rewind points) share one dense network per
    /// replicate: a task of its own, which every run of that training waits for on Slurm, and
    /// which the plan's iterations count once.
    #[test]
    fn runs_of_one_training_wait_for_one_dense_level() {
        for (figure, points) in [("fig5", 2), ("fig4", 3)] {
            let tasks = plan(figure, "resnet18-standard", Scale::Small);
            let dense: Vec<usize> =
                (0..tasks.len()).filter(|&i| matches!(tasks[i], Task::Lottery { levels: 0, .. })).collect();
            assert_eq!(dense.len(), 2, "{figure}: one dense task per replicate");
            for &d in &dense {
                let train = &tasks[d].train().clone();
                let runs: Vec<usize> = (0..tasks.len())
                    .filter(|&i| {
                        matches!(tasks[i], Task::Lottery { levels: 1.., .. } | Task::Branch { .. })
                            && tasks[i].train() == train
                    })
                    .collect();
                assert!(runs.len() >= points, "{figure}: {runs:?}");
                for i in runs {
                    assert!(i > d && needs(&tasks, i).contains(&d), "{figure}: task {i} does not wait for {d}");
                    let t = &tasks[i];
                    if matches!(t, Task::Lottery { .. }) {
                        assert_eq!(
                            figures::planned_iterations(&tasks, i),
                            t.iterations() - t.train().iterations,
                            "{figure}: task {i} trains the dense network again"
                        );
                    }
                }
                assert_eq!(figures::planned_iterations(&tasks, d), tasks[d].train().iterations);
                assert!(needs(&tasks, d).is_empty());
                assert!(describe(&tasks[d]).ends_with("k=0: dense network (level 0)"), "{}", describe(&tasks[d]));
            }
        }
        // One lottery run per training (fig3's stability at k = 0) has no dense task to share.
        let fig3 = plan("fig3", "lenet", Scale::Small);
        assert!(!fig3.iter().any(|t| matches!(t, Task::Lottery { levels: 0, .. })));
    }

    /// fig4's pruning stability (one sample) follows the data-order copies of its level and
    /// trains only the dense partner from W_k, none at k = 0 (the dense level is the partner):
    /// the plan says so instead of counting the copies again.
    #[test]
    fn a_pruning_stability_counts_only_its_dense_partner() {
        let tasks = plan("fig4", "resnet18-standard", Scale::Small);
        let mut seen = Vec::new();
        for (i, t) in tasks.iter().enumerate() {
            if let Task::Stability { kind: lt_lottery::StabilityKind::Pruning, spec, .. } = t {
                let (tt, k) = (spec.train.iterations, spec.rewind);
                assert_eq!(figures::planned_iterations(&tasks, i), if k == 0 { 0 } else { tt - k }, "k = {k}");
                seen.push(k);
            }
        }
        assert_eq!(seen, [0, 50, 200, 0, 50, 200]);
        // Alone, it trains its copies too: the IMP level's run is copy 0, the random one is not.
        let pruning = |t: &&Task| matches!(t, Task::Stability { kind: lt_lottery::StabilityKind::Pruning, .. });
        let alone = [tasks.iter().filter(pruning).find(|t| t.rewind() == 50).unwrap().clone()];
        assert_eq!(figures::planned_iterations(&alone, 0), 2 * 450);
    }
}
