//! `lt lottery`, `lt branch`, `lt stability`, `lt plan` and `lt runs`: experiments in the store.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use lt_data::Locations;
use lt_lottery::{Branch, BranchKind, BranchSpec, Context, Lottery, StabilityReport};
use lt_slurm::Executor;

use crate::experiment::{Mode, Reporter, RunArgs};

#[derive(Debug, Args)]
pub struct LotteryArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Pruning levels after the dense one (level L keeps 0.8^L of the weights at fraction 0.2).
    #[arg(long, default_value_t = 1)]
    levels: u32,
    #[command(flatten)]
    slurm: lt_slurm::SlurmArgs,
}

#[derive(Debug, Args)]
pub struct BranchArgs {
    /// random-prune, reinit, reset, snip or retrain.
    kind: String,
    #[command(flatten)]
    run: RunArgs,
    /// Levels of the run to branch from: `3`, `0-2` or `1,3,5`.
    #[arg(long, default_value = "0")]
    levels: String,
    /// random-prune: seed of the random masks; reinit: seed of the fresh weights.
    #[arg(long)]
    seed: Option<u64>,
    /// snip: score and train from W_0 at iteration 0 instead of from W_k.
    #[arg(long)]
    from_init: bool,
    /// snip: mini-batches whose gradients are summed.
    #[arg(long)]
    snip_batches: Option<u64>,
    /// retrain: the learning rate of the branch.
    #[arg(long)]
    retrain_lr: Option<f64>,
    #[command(flatten)]
    slurm: lt_slurm::SlurmArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StabilityWhat {
    /// Copies of the subnetwork trained with different data orders.
    DataOrder,
    /// The full network and the subnetwork trained with the same data order.
    Pruning,
    /// Test error along the line between two data-order copies.
    Interpolate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Control {
    /// A random mask with the same per-layer counts.
    Random,
    /// No control.
    None,
}

#[derive(Debug, Args)]
pub struct StabilityArgs {
    /// data-order, pruning or interpolate.
    #[arg(value_enum)]
    what: StabilityWhat,
    #[command(flatten)]
    run: RunArgs,
    /// The level whose subnetwork is measured.
    #[arg(long)]
    level: u32,
    /// Copies (data order; the paper: 18 pairs) or pairs (pruning; the paper: 3).
    #[arg(long, default_value_t = 2)]
    samples: usize,
    /// The control subnetwork.
    #[arg(long, value_enum, default_value = "random")]
    control: Control,
    /// interpolate: points on the line.
    #[arg(long, default_value_t = 11)]
    points: usize,
    /// interpolate: training batches to recompute BatchNorm statistics at each point.
    #[arg(long, default_value_t = 50)]
    bn_batches: u64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    slurm: lt_slurm::SlurmArgs,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Pruning levels after the dense one.
    #[arg(long, default_value_t = 1)]
    levels: u32,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// The runs of a store, one line each.
    List {
        /// The experiment store.
        #[arg(long, default_value = "results/store")]
        out: PathBuf,
    },
    /// One run: its hyperparameters and its level/density/accuracy table, with its branches.
    Show {
        /// The run's folder name (or a unique prefix) or path.
        run: String,
        /// The experiment store.
        #[arg(long, default_value = "results/store")]
        out: PathBuf,
    },
    /// Every finished level and branch of every run, as CSV or JSON lines (for pandas).
    Export {
        /// The experiment store.
        #[arg(long, default_value = "results/store")]
        out: PathBuf,
        /// csv or json.
        #[arg(long, default_value = "csv")]
        format: String,
    },
}

fn with_reporter<T>(f: impl FnOnce(&mut dyn FnMut(lt_lottery::Event)) -> Result<T>) -> Result<T> {
    let mut reporter = Reporter::new()?;
    let mut events = |e| reporter.handle(e);
    f(&mut events)
}

/// `--executor slurm`: this very command line as one Slurm job, with `--executor local` added
/// (the last occurrence of a flag wins), its log and script in `STORE/slurm/`. The job resumes
/// what the store holds and takes the store's per-job locks; it is requeued when its time limit
/// stops it. Jobs that need another's results wait for it with
/// `--sbatch-arg=--dependency=afterok:ID`.
fn submit(what: &str, store: &Path, opts: &lt_slurm::SlurmArgs) -> Result<ExitCode> {
    let exe = std::env::current_exe().context("locating this binary")?;
    let mut command = vec![exe.display().to_string()];
    command.extend(std::env::args().skip(1));
    command.extend(["--executor".to_string(), "local".to_string()]);
    let dir = store.join("slurm");
    std::fs::create_dir_all(dir.join("logs")).with_context(|| format!("creating {}", dir.display()))?;
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let script = dir.join(format!("lt-{what}-{stamp}.sh"));
    let cwd = std::env::current_dir().context("the current directory")?;
    lt_slurm::write_script(&script, &command, "", &cwd, opts)?;
    let log = dir.join("logs").join(format!("lt-{what}-%j.log"));
    let args = [format!("--job-name=lt-{what}"), format!("--output={}", log.display())];
    let job = lt_slurm::sbatch(opts, &args, &script)?;
    println!(
        "submitted job {job}: lt {what} (log {})",
        dir.join("logs").join(format!("lt-{what}-{job}.log")).display()
    );
    println!("`squeue -j {job}` follows it; a job that needs its results: --sbatch-arg=--dependency=afterok:{job}");
    Ok(ExitCode::SUCCESS)
}

pub fn lottery(args: LotteryArgs, loc: &Locations) -> Result<ExitCode> {
    if args.slurm.executor == Executor::Slurm {
        return submit("lottery", &args.run.out, &args.slurm);
    }
    let o = args.run.open(loc, Mode::Create)?;
    let spec = o.run.spec();
    println!(
        "lottery run {}: {} on {}, T = {} iterations, rewind to k = {}, {} levels, strategy {}",
        o.run.dir().display(),
        spec.train.model,
        spec.train.dataset,
        spec.train.iterations,
        spec.rewind,
        args.levels,
        spec.prune.strategy
    );
    let outcomes = with_reporter(|events| {
        let mut ctx = Context { data: &o.data, exec: &o.exec, events };
        Ok(o.run.run(args.levels, &mut ctx)?)
    })
    .with_context(|| format!("lottery run in {}", o.run.dir().display()))?;
    let mut out = std::io::stdout();
    let top5 = outcomes.iter().any(|o| o.top5.is_some());
    writeln!(out, "level  weights left  test accuracy{}", if top5 { "  top-5" } else { "" })?;
    for (level, o) in outcomes.iter().enumerate() {
        let t5 = o.top5.map_or(String::new(), |t| format!("  {:>5.2}%", 100.0 * t));
        writeln!(out, "{level:>5}  {:>11.2}%  {:>12.2}%{t5}", 100.0 * o.density, 100.0 * o.accuracy)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Parses `3`, `0-2` or `1,3,5`.
fn parse_levels(text: &str) -> Result<Vec<u32>> {
    let mut out = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        let bad = || anyhow::anyhow!("bad level list {text:?}: write e.g. 3, 0-2 or 1,3,5");
        if let Some((a, b)) = part.split_once('-') {
            let (a, b): (u32, u32) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
            if a > b {
                return Err(bad());
            }
            out.extend(a..=b);
        } else {
            out.push(part.parse().map_err(|_| bad())?);
        }
    }
    Ok(out)
}

pub fn branch(args: BranchArgs, loc: &Locations) -> Result<ExitCode> {
    if args.slurm.executor == Executor::Slurm {
        return submit("branch", &args.run.out, &args.slurm);
    }
    let kind: BranchKind = args.kind.parse()?;
    let levels = parse_levels(&args.levels)?;
    let o = args.run.open(loc, Mode::Existing)?;
    let spec = BranchSpec {
        kind,
        seed: args.seed,
        from_init: args.from_init.then_some(true),
        snip_batches: args.snip_batches,
        lr: args.retrain_lr,
    };
    let branch = Branch::create(&o.run, spec)?;
    println!("branch {} of run {}", kind.name(), o.run.dir().display());
    let results = with_reporter(|events| {
        let mut ctx = Context { data: &o.data, exec: &o.exec, events };
        Ok(branch.run(&levels, &mut ctx)?)
    })?;
    let mut out = std::io::stdout();
    writeln!(out, "level  weights left  test accuracy  ({})", kind.name())?;
    for (level, o) in results {
        writeln!(out, "{level:>5}  {:>11.2}%  {:>12.2}%", 100.0 * o.density, 100.0 * o.accuracy)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(r: &StabilityReport, out: &mut impl Write) -> Result<()> {
    let what = match r.kind {
        lt_lottery::StabilityKind::DataOrder => "data order",
        lt_lottery::StabilityKind::Pruning => "pruning",
    };
    writeln!(
        out,
        "stability to {what} at level {} ({:.1}% of weights left), rewind k = {}, {} samples",
        r.level,
        100.0 * r.imp.density,
        r.rewind,
        r.samples
    )?;
    writeln!(out, "subnetwork  L2 mean [min, max]         angle° mean [min, max]      test accuracy mean [min, max]")?;
    for m in std::iter::once(&r.imp).chain(r.random.as_ref()) {
        writeln!(
            out,
            "{:<10}  {:>8.3} [{:.3}, {:.3}]  {:>7.2} [{:.2}, {:.2}]  {:>13.2}% [{:.2}, {:.2}]",
            m.subnetwork,
            m.l2.mean,
            m.l2.min,
            m.l2.max,
            m.angle.mean,
            m.angle.min,
            m.angle.max,
            100.0 * m.accuracy.mean,
            100.0 * m.accuracy.min,
            100.0 * m.accuracy.max
        )?;
    }
    if let (Some(l2), Some(angle)) = (r.ratio_l2, r.ratio_angle) {
        writeln!(out, "random / IMP: L2 {l2:.2}x, angle {angle:.2}x (above 1: IMP is more stable)")?;
    }
    Ok(())
}

pub fn stability(args: StabilityArgs, loc: &Locations) -> Result<ExitCode> {
    if args.slurm.executor == Executor::Slurm {
        return submit("stability", &args.run.out, &args.slurm);
    }
    let o = args.run.open(loc, Mode::Existing)?;
    let control = args.control == Control::Random;
    let mut out = std::io::stdout();
    match args.what {
        StabilityWhat::Interpolate => {
            let curve = with_reporter(|events| {
                let mut ctx = Context { data: &o.data, exec: &o.exec, events };
                Ok(lt_lottery::interpolate(&o.run, args.level, args.points, args.bn_batches, &mut ctx)?)
            })?;
            if args.json {
                writeln!(out, "{}", serde_json::to_string(&curve)?)?;
            } else {
                writeln!(out, "linear interpolation at level {} (test error):", args.level)?;
                for (a, e) in curve.alphas.iter().zip(&curve.errors) {
                    writeln!(out, "  alpha {a:.3}  error {:.2}%", 100.0 * e)?;
                }
                writeln!(out, "error barrier {:.2} percentage points", 100.0 * curve.barrier)?;
            }
        }
        what => {
            let report = with_reporter(|events| {
                let mut ctx = Context { data: &o.data, exec: &o.exec, events };
                Ok(match what {
                    StabilityWhat::DataOrder => {
                        lt_lottery::data_order(&o.run, args.level, args.samples, control, &mut ctx)?
                    }
                    _ => lt_lottery::pruning(&o.run, args.level, args.samples, control, &mut ctx)?,
                })
            })?;
            if args.json {
                writeln!(out, "{}", serde_json::to_string(&report)?)?;
            } else {
                print_report(&report, &mut out)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn plan(args: PlanArgs, loc: &Locations) -> Result<ExitCode> {
    let o = args.run.open(loc, Mode::Plan)?;
    let mut out = std::io::stdout();
    writeln!(out, "run {}", o.run.dir().display())?;
    let plan = o.run.plan(args.levels)?;
    for job in &plan {
        writeln!(
            out,
            "{} {:<10} {:>8} iterations  {}",
            if job.done { "done" } else { "todo" },
            job.label,
            job.iterations,
            job.dir.display()
        )?;
    }
    let todo: u64 = plan.iter().filter(|j| !j.done).map(|j| j.iterations).sum();
    writeln!(
        out,
        "{} of {} jobs done; {todo} iterations to train",
        plan.iter().filter(|j| j.done).count(),
        plan.len()
    )?;
    Ok(ExitCode::SUCCESS)
}

fn find_run(store: &Path, name: &str) -> Result<Lottery> {
    let as_path = Path::new(name);
    if as_path.join(lt_lottery::HPARAMS).is_file() {
        return Ok(Lottery::open(as_path)?);
    }
    let runs = Lottery::list(store)?;
    let matches: Vec<_> = runs
        .into_iter()
        .filter(|r| r.dir().file_name().is_some_and(|f| f.to_string_lossy().starts_with(name)))
        .collect();
    match matches.len() {
        1 => Ok(matches.into_iter().next().context("one match")?),
        0 => bail!("no run {name:?} in {}; `lt runs list --out {}` shows them", store.display(), store.display()),
        n => bail!("{n} runs in {} start with {name:?}; give more of the name", store.display()),
    }
}

/// One exported row.
#[derive(serde::Serialize)]
struct Row {
    run: String,
    preset: String,
    model: String,
    dataset: String,
    replicate: u64,
    rewind: u64,
    iterations: u64,
    strategy: String,
    branch: String,
    level: u32,
    density: f64,
    accuracy: f64,
    /// Top-5 accuracy, for datasets of more than 10 classes (ImageNet).
    #[serde(skip_serializing_if = "Option::is_none")]
    top5: Option<f64>,
    loss: f64,
}

fn rows(run: &Lottery) -> Result<Vec<Row>> {
    let s = run.spec();
    let name = run.dir().file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default();
    let row = |branch: &str, level: u32, o: &lt_lottery::Outcome| Row {
        run: name.clone(),
        preset: s.train.preset.clone(),
        model: s.train.model.clone(),
        dataset: s.train.dataset.clone(),
        replicate: s.train.seed,
        rewind: s.rewind,
        iterations: s.train.iterations,
        strategy: s.prune.strategy.clone(),
        branch: branch.into(),
        level,
        density: o.density,
        accuracy: o.accuracy,
        top5: o.top5,
        loss: o.loss,
    };
    let mut out: Vec<Row> = run.finished_levels()?.iter().map(|(l, o)| row("lottery", *l, o)).collect();
    let Ok(entries) = std::fs::read_dir(run.dir().join("branches")) else { return Ok(out) };
    let mut branches: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    branches.sort();
    for dir in branches {
        let label = dir.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default();
        let mut levels: Vec<(u32, lt_lottery::Outcome)> = Vec::new();
        for entry in std::fs::read_dir(&dir)?.filter_map(|e| e.ok()) {
            let fname = entry.file_name().to_string_lossy().to_string();
            if let Some(l) = fname.strip_prefix("level_").and_then(|l| l.parse().ok())
                && let Some(o) = lt_lottery::outcome(&entry.path())?
            {
                levels.push((l, o));
            }
        }
        levels.sort_by_key(|(l, _)| *l);
        out.extend(levels.iter().map(|(l, o)| row(&label, *l, o)));
    }
    Ok(out)
}

pub fn runs(cmd: RunsCommand) -> Result<ExitCode> {
    let mut out = std::io::stdout();
    match cmd {
        RunsCommand::List { out: store } => {
            let runs = Lottery::list(&store)?;
            if runs.is_empty() {
                writeln!(out, "no runs in {}", store.display())?;
            }
            for run in runs {
                let s = run.spec();
                let levels = run.finished_levels()?;
                let last = levels.last().map_or("no level finished".to_string(), |(l, o)| {
                    format!("levels 0-{l} done, last {:.1}% left at {:.2}%", 100.0 * o.density, 100.0 * o.accuracy)
                });
                writeln!(
                    out,
                    "{}  {} on {}, T={} k={} replicate {}  {last}",
                    run.dir().file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default(),
                    s.train.preset,
                    s.train.dataset,
                    s.train.iterations,
                    s.rewind,
                    s.train.seed
                )?;
            }
        }
        RunsCommand::Show { run, out: store } => {
            let run = find_run(&store, &run)?;
            writeln!(out, "{}", run.dir().display())?;
            writeln!(out, "{}", toml::to_string(run.spec())?)?;
            writeln!(out, "{:<28} level  weights left  test accuracy  test loss", "branch")?;
            for r in rows(&run)? {
                writeln!(
                    out,
                    "{:<28} {:>5}  {:>11.2}%  {:>12.2}%  {:>9.4}",
                    r.branch,
                    r.level,
                    100.0 * r.density,
                    100.0 * r.accuracy,
                    r.loss
                )?;
            }
        }
        RunsCommand::Export { out: store, format } => {
            let all: Vec<Row> =
                Lottery::list(&store)?.iter().map(rows).collect::<Result<Vec<_>>>()?.into_iter().flatten().collect();
            match format.as_str() {
                "json" => {
                    for r in &all {
                        writeln!(out, "{}", serde_json::to_string(r)?)?;
                    }
                }
                "csv" => {
                    writeln!(
                        out,
                        "run,preset,model,dataset,replicate,rewind,iterations,strategy,branch,level,density,accuracy,loss,top5"
                    )?;
                    for r in &all {
                        writeln!(
                            out,
                            "{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                            r.run,
                            r.preset,
                            r.model,
                            r.dataset,
                            r.replicate,
                            r.rewind,
                            r.iterations,
                            r.strategy,
                            r.branch,
                            r.level,
                            r.density,
                            r.accuracy,
                            r.loss,
                            r.top5.map_or(String::new(), |t| t.to_string())
                        )?;
                    }
                }
                other => bail!("unknown export format {other:?}: csv or json"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
