//! `lt train`: one training run from a preset, with overrides, a progress bar and a summary.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lt_data::Locations;
use lt_models::{InitConfig, Model};
use lt_train::{Masks, Preset, Progress, RunConfig, Steps, Trainer};

use crate::experiment::{DeviceArg, ScheduleArgs};
use crate::say;

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The setup: lenet, resnet18-standard|low|warmup, vgg19-standard|low|warmup.
    #[arg(long)]
    preset: String,
    /// Train on this dataset instead of the preset's (e.g. fashion-mnist where CIFAR-10 is absent).
    #[arg(long)]
    dataset: Option<String>,
    /// Training length, e.g. 500it or 6ep (default: the preset's).
    #[arg(long)]
    iters: Option<Steps>,
    /// Batch size (default: the preset's).
    #[arg(long)]
    batch: Option<usize>,
    /// Base learning rate (default: the preset's).
    #[arg(long)]
    lr: Option<f64>,
    #[command(flatten)]
    schedule: ScheduleArgs,
    /// Seed of the initialization.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Seed of the data order (default: the initialization seed).
    #[arg(long)]
    data_order_seed: Option<u64>,
    /// Evaluate on the test split every this often (e.g. 1ep); default: 10 times per run.
    #[arg(long)]
    eval_every: Option<Steps>,
    /// Use only the first N training examples (reduced-scale runs).
    #[arg(long, value_name = "N")]
    train_examples: Option<usize>,
    /// Gradient accumulation: pass each batch in K micro-batches and sum their gradients before
    /// the step (the preset's batch where memory holds fewer examples; BatchNorm sees K smaller
    /// batches).
    #[arg(long, value_name = "K", default_value_t = 1)]
    accumulate: usize,
    /// Train and evaluate at N×N pixels instead of the preset's (ImageNet-style datasets).
    #[arg(long, value_name = "N")]
    image_size: Option<u32>,
    /// The run's folder (checkpoints, metrics.jsonl); an existing run there is resumed.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArg,
}

pub fn run(args: TrainArgs, loc: &Locations) -> Result<std::process::ExitCode> {
    let preset = Preset::named(&args.preset)?;
    let dataset = args.dataset.as_deref().unwrap_or(preset.dataset);
    let spec_device = args.device.device;
    let device = args.device.open()?;
    let image_size = crate::experiment::image_size(args.image_size, preset, dataset);
    let data = lt_lottery::Data::open_sized(dataset, args.train_examples, image_size, loc)
        .with_context(|| format!("opening {dataset}"))?;
    let (train, test, input) = (data.train.clone(), data.test.clone(), data.input);
    let model = Model::new(preset.model, input, args.seed, InitConfig::default(), &device)?;

    let batch_size = args.batch.unwrap_or(preset.batch_size);
    let per_epoch = data.iterations_per_epoch(batch_size)?;
    let iterations = args.iters.unwrap_or(preset.iterations).iterations(per_epoch);
    let mut schedule = preset.schedule(per_epoch);
    if let Some(lr) = args.lr {
        schedule.lr = lr;
    }
    let schedule_note = args.schedule.apply(&mut schedule, per_epoch, iterations);
    let eval_every = args.eval_every.map_or((iterations / 10).max(1), |s| s.iterations(per_epoch));
    let config = RunConfig {
        start_iteration: 0,
        iterations,
        batch_size,
        optimizer: preset.optimizer,
        schedule,
        data_order_seed: args.data_order_seed.unwrap_or(args.seed),
        eval_every,
        checkpoint_every: eval_every,
        save_at: vec![],
        accumulate: args.accumulate,
    };
    let dir =
        args.out.unwrap_or_else(|| PathBuf::from(format!("results/train/{}-{dataset}-seed{}", preset.name, args.seed)));
    let mut out = std::io::stdout();
    writeln!(
        out,
        "preset {} ({}) on {dataset}: {iterations} iterations of batch {batch_size} ({per_epoch} per epoch), {} parameters",
        preset.name,
        preset.model,
        model.num_parameters()
    )?;
    writeln!(out, "run folder {}", dir.display())?;
    if spec_device.is_cuda() {
        writeln!(out, "training on {spec_device}")?;
    }
    if let Some(note) = schedule_note {
        writeln!(out, "{note}")?;
    }
    if dataset != preset.dataset {
        writeln!(out, "note: the paper trains this preset on {}; this run uses {dataset}", preset.dataset)?;
    }
    let mut trainer = Trainer::new(model, train, Some(test), Masks::new(), config, &dir, &device)?;
    let bar = ProgressBar::new(iterations).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} it  {msg}  {per_sec}  eta {eta}")?.progress_chars("=> "),
    );
    bar.set_position(trainer.iteration());
    let mut last_acc = String::new();
    let summary = trainer
        .run(&mut |p| match p {
            Progress::Step { iteration, loss } => {
                bar.set_position(iteration);
                if iteration % 20 == 0 {
                    bar.set_message(format!("loss {loss:.4}{last_acc}"));
                }
            }
            Progress::Evaluated(r) => {
                if let Some(a) = r.test_accuracy {
                    last_acc = format!("  test acc {:.2}%", 100.0 * a);
                }
                say(
                    &bar,
                    format!(
                        "iteration {:>7}  lr {:.2e}  train loss {:.4}  test loss {}  test accuracy {}",
                        r.iteration,
                        r.lr,
                        r.train_loss,
                        r.test_loss.map_or("-".into(), |l| format!("{l:.4}")),
                        r.test_accuracy.map_or("-".into(), |a| format!("{:.2}%", 100.0 * a)),
                    ),
                );
            }
            Progress::Resumed { iteration } => {
                say(&bar, format!("resuming from the checkpoint at iteration {iteration}"))
            }
        })
        .with_context(|| format!("training in {}", dir.display()))?;
    bar.finish_and_clear();
    if let Some(e) = summary.evaluation {
        let top5 = e.top5.map_or(String::new(), |t| format!(" (top-5 {:.2}%)", 100.0 * t));
        writeln!(
            out,
            "done: {} iterations, test accuracy {:.2}%{top5}, test loss {:.4}",
            summary.iterations,
            100.0 * e.accuracy,
            e.loss
        )?;
    }
    Ok(std::process::ExitCode::SUCCESS)
}
