//! The options that name a lottery run (shared by `lt lottery`, `lt branch`, `lt stability` and
//! `lt plan`) and the progress display of experiments.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lt_data::Locations;
use lt_lottery::{Data, Event, Lottery, LotterySpec, PruneSpec, TrainSpec};
use lt_train::{DeviceSpec, Preset, Progress, Steps};

use crate::say;

/// Options that name a lottery run.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// The setup: lenet, resnet18-standard|low|warmup, vgg19-standard|low|warmup.
    #[arg(long)]
    pub preset: String,
    /// Train on this dataset instead of the preset's (e.g. fashion-mnist where CIFAR-10 is absent).
    #[arg(long)]
    pub dataset: Option<String>,
    /// Training length T, e.g. 300it or 6ep (default: the preset's).
    #[arg(long)]
    pub iters: Option<Steps>,
    /// Batch size (default: the preset's).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Base learning rate (default: the preset's).
    #[arg(long)]
    pub lr: Option<f64>,
    #[command(flatten)]
    pub schedule: ScheduleArgs,
    /// Rewind point k, e.g. 500it, 2ep, or 0 to reset to initialization.
    #[arg(long, default_value = "0")]
    pub rewind: Steps,
    /// Pruning strategy per level: magnitude, snip, or plugin:NAME / plugin:PATH.
    #[arg(long, default_value = "magnitude")]
    pub strategy: String,
    /// Fraction of the surviving weights pruned per level (default: the preset's, 0.2).
    #[arg(long)]
    pub fraction: Option<f64>,
    /// Prune once, to this density, instead of iteratively (use with --levels 1).
    #[arg(long, value_name = "DENSITY")]
    pub one_shot: Option<f64>,
    /// The replicate: its own seed for the initialization and the data order.
    #[arg(long, default_value_t = 0)]
    pub replicate: u64,
    /// Seed of the data order (default: the replicate).
    #[arg(long)]
    pub data_order_seed: Option<u64>,
    /// Use only the first N training examples (reduced-scale runs).
    #[arg(long, value_name = "N")]
    pub train_examples: Option<usize>,
    /// Gradient accumulation: pass each batch in K micro-batches and sum their gradients before
    /// the step (the preset's batch where memory holds fewer examples; BatchNorm sees K smaller
    /// batches). A hyperparameter: it names the run's folder.
    #[arg(long, value_name = "K")]
    pub accumulate: Option<usize>,
    /// Train and evaluate at N×N pixels instead of the preset's (ImageNet-style datasets: the
    /// random crop of training, the central crop of evaluation), e.g. 64 for a quick check.
    #[arg(long, value_name = "N")]
    pub image_size: Option<u32>,
    /// Evaluate (and checkpoint) every this often, e.g. 1ep (default: 10 times per job).
    #[arg(long)]
    pub eval_every: Option<Steps>,
    /// The experiment store (runs are folders in it named by their hyperparameters).
    #[arg(long, default_value = "results/store")]
    pub out: PathBuf,
    #[command(flatten)]
    pub device: DeviceArg,
}

/// Where to train (shared by `lt train` and the lottery commands).
#[derive(Debug, Args, Clone, Default)]
pub struct DeviceArg {
    /// Where to train: cpu, or cuda / cuda:N (an NVIDIA GPU, in a build with `--features cuda`).
    /// Not a hyperparameter: a run keeps its folder and resumes on another device.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
}

impl DeviceArg {
    /// Opens the device; a GPU that cannot be used is an error naming the flag.
    pub fn open(&self) -> Result<candle_core::Device> {
        Ok(self.device.open()?)
    }
}

/// Overrides of the preset's learning-rate schedule (shared by `lt train` and the lottery commands).
#[derive(Debug, Args, Clone, Default)]
pub struct ScheduleArgs {
    /// Iterations at which the rate drops by 10x, e.g. 1000it,1500it or 3ep,4ep (default: the
    /// preset's; `none` for a constant rate).
    #[arg(long, value_delimiter = ',', value_parser = parse_milestone)]
    pub milestones: Option<Vec<Option<Steps>>>,
    /// Length of the linear warmup from 0, e.g. 500it (default: the preset's; 0 for none).
    #[arg(long)]
    pub warmup: Option<Steps>,
}

fn parse_milestone(text: &str) -> Result<Option<Steps>, String> {
    if text == "none" { Ok(None) } else { Steps::parse(text).map(Some).map_err(|e| e.to_string()) }
}

impl ScheduleArgs {
    /// Applies the overrides to `schedule` for a run of `iterations`; returns a note when the
    /// preset's milestones or warmup lie beyond the run's end and were not overridden, so that a
    /// shortened run does not silently train at a constant rate.
    pub fn apply(&self, schedule: &mut lt_train::Schedule, per_epoch: usize, iterations: u64) -> Option<String> {
        if let Some(m) = &self.milestones {
            schedule.milestones = m.iter().flatten().map(|s| s.iterations(per_epoch)).collect();
            schedule.milestones.sort_unstable();
            schedule.milestones.dedup();
        }
        if let Some(w) = self.warmup {
            schedule.warmup = w.iterations(per_epoch);
        }
        let late: Vec<String> =
            schedule.milestones.iter().filter(|m| **m >= iterations).map(|m| m.to_string()).collect();
        let mut notes = Vec::new();
        if !late.is_empty() && self.milestones.is_none() {
            notes.push(format!(
                "note: the preset's rate drops at iteration(s) {} lie beyond this run's {iterations}; set --milestones to scale them",
                late.join(", ")
            ));
        }
        if schedule.warmup > iterations && self.warmup.is_none() {
            notes.push(format!(
                "note: the preset's warmup of {} iterations is longer than this run's {iterations}; set --warmup to scale it",
                schedule.warmup
            ));
        }
        (!notes.is_empty()).then(|| notes.join("\n"))
    }
}

/// The image side a run trains at: `--image-size`, else the preset's own on the preset's dataset
/// (Inception-v3: 299 on ImageNet), else the dataset's.
pub fn image_size(arg: Option<u32>, preset: &Preset, dataset: &str) -> Option<u32> {
    arg.or(preset.image_size_on(dataset))
}

/// What opening a run may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Create the run's folder if it is new.
    Create,
    /// The run must exist.
    Existing,
    /// Touch nothing.
    Plan,
}

/// A run's spec with its data opened.
pub struct Opened {
    pub run: Lottery,
    pub data: Data,
    pub exec: lt_lottery::Exec,
}

impl RunArgs {
    /// The run these options name: created in the store if new (`Mode::Create`), required to
    /// exist (`Mode::Existing`), or only named (`Mode::Plan`).
    pub fn open(&self, loc: &Locations, mode: Mode) -> Result<Opened> {
        let preset = Preset::named(&self.preset)?;
        // First, so that a GPU that cannot be used leaves no folder behind. Planning touches no
        // device (a plan may be made where the GPU is absent).
        let device = if mode == Mode::Plan { candle_core::Device::Cpu } else { self.device.open()? };
        let dataset = self.dataset.as_deref().unwrap_or(preset.dataset);
        let image_size = image_size(self.image_size, preset, dataset);
        let data = Data::open_sized(dataset, self.train_examples, image_size, loc)
            .with_context(|| format!("opening {dataset}"))?;
        let batch = self.batch.unwrap_or(preset.batch_size);
        let per_epoch = data.iterations_per_epoch(batch)?;
        let mut train = TrainSpec::from_preset(preset, Some(dataset), self.replicate, per_epoch);
        train.batch_size = batch;
        train.iterations = self.iters.unwrap_or(preset.iterations).iterations(per_epoch);
        train.train_examples = self.train_examples;
        train.image_size = image_size;
        train.accumulate = self.accumulate.filter(|k| *k > 1);
        if let Some(lr) = self.lr {
            train.schedule.lr = lr;
        }
        if let Some(note) = self.schedule.apply(&mut train.schedule, per_epoch, train.iterations) {
            println!("{note}");
        }
        if let Some(seed) = self.data_order_seed {
            train.data_order_seed = seed;
        }
        let mut prune = PruneSpec::for_preset(preset);
        prune.strategy = self.strategy.clone();
        if let Some(f) = self.fraction {
            prune.fraction = f;
        }
        prune.one_shot = self.one_shot;
        let spec = LotterySpec { train, rewind: self.rewind.iterations(per_epoch), prune };
        let run = match mode {
            Mode::Create => Lottery::create(&self.out, spec)?,
            Mode::Existing => Lottery::existing(&self.out, spec)?,
            Mode::Plan => Lottery::planned(&self.out, spec)?,
        };
        let eval_every = self.eval_every.map_or(0, |s| s.iterations(per_epoch));
        let exec = lt_lottery::Exec { eval_every, device, ..Default::default() };
        if dataset != preset.dataset {
            println!("note: the paper trains {} on {}; this run uses {dataset}", preset.name, preset.dataset);
        }
        Ok(Opened { run, data, exec })
    }
}

/// Shows experiment events: one line per job, a bar for the running one.
pub struct Reporter {
    bar: ProgressBar,
}

impl Reporter {
    pub fn new() -> Result<Self> {
        let bar = ProgressBar::hidden();
        bar.set_style(
            ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} it  {msg}  eta {eta}")?.progress_chars("=> "),
        );
        Ok(Reporter { bar })
    }

    pub fn handle(&mut self, event: Event) {
        match event {
            Event::Started { label, from, to, resumed } => {
                if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                    self.bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                }
                self.bar.set_length(to);
                self.bar.set_position(from);
                self.bar.reset_eta();
                self.bar.set_prefix(label.clone());
                let how = if resumed {
                    format!("resuming at iteration {from}")
                } else {
                    format!("starting at iteration {from}")
                };
                say(&self.bar, format!("{label}: {how}, training to iteration {to}"));
            }
            Event::Train(Progress::Step { iteration, loss }) => {
                self.bar.set_position(iteration);
                if iteration % 20 == 0 {
                    self.bar.set_message(format!("loss {loss:.4}"));
                }
            }
            Event::Train(_) => {}
            Event::Waiting { label } => {
                say(&self.bar, format!("{label}: another process is training it; waiting for it to finish"))
            }
            Event::Skipped { label, outcome } => say(
                &self.bar,
                format!(
                    "{label}: done before ({:.2}% test accuracy, {:.1}% of weights left)",
                    100.0 * outcome.accuracy,
                    100.0 * outcome.density
                ),
            ),
            Event::Borrowed { label, from, outcome } => say(
                &self.bar,
                format!(
                    "{label}: the same training as run {from}, done there ({:.2}% test accuracy): linked, not trained again",
                    100.0 * outcome.accuracy
                ),
            ),
            Event::Finished { label, outcome } => {
                self.bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
                say(
                    &self.bar,
                    format!(
                        "{label}: {:.2}% test accuracy, {:.1}% of weights left, {:.0} s",
                        100.0 * outcome.accuracy,
                        100.0 * outcome.density,
                        outcome.wall_s
                    ),
                );
            }
        }
    }
}
